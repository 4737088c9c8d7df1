/* cache.c - what a receiver remembers from one epoch to the next, so that a
 * WAL-only epoch walks no undo journal and fsyncs no directory it created
 * nothing in: the rollback points of a group as of its state's epoch, and
 * the directories fsync'd since this process last created an entry in them.
 * Only a cache: what it does not know is read from the store (a new process,
 * a state it does not describe, a directory it has not fsync'd yet). */
#include "store.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RB_GROUPS 8      /* groups whose rollback points are kept */
#define RB_MAX 4096      /* points listed, as replica_rollback_points' callers do */
#define DIRS_MAX 64      /* directories known fsync'd */

struct rb_points {
	char group[NAME_MAX_LEN + 1];
	uint64_t at;         /* the state's epoch the list describes */
	size_t n;
	uint64_t epochs[RB_MAX], times[RB_MAX];
};

struct replica_cache {
	struct rb_points *groups[RB_GROUPS];
	char *synced[DIRS_MAX];
};

static struct replica_cache *cache_get(struct replica *r)
{
	if (!r->cache)
		r->cache = calloc(1, sizeof(*r->cache));
	return r->cache;
}

void replica_cache_free(struct replica *r)
{
	if (!r->cache)
		return;
	for (size_t i = 0; i < RB_GROUPS; i++)
		free(r->cache->groups[i]);
	for (size_t i = 0; i < DIRS_MAX; i++)
		free(r->cache->synced[i]);
	free(r->cache);
	r->cache = NULL;
}

/* The entry of GROUP (a new one, the oldest replaced, if CREATE). */
static struct rb_points *rb_find(struct replica *r, const char *group, bool create)
{
	struct replica_cache *c = cache_get(r);
	size_t i;

	if (!c)
		return NULL;
	for (i = 0; i < RB_GROUPS && c->groups[i]; i++)
		if (!strcmp(c->groups[i]->group, group))
			return c->groups[i];
	if (!create)
		return NULL;
	if (i == RB_GROUPS) {
		free(c->groups[RB_GROUPS - 1]);
		memmove(c->groups + 1, c->groups, (RB_GROUPS - 1) * sizeof(c->groups[0]));
		i = 0;
		c->groups[0] = NULL;
	}
	if (!(c->groups[i] = calloc(1, sizeof(*c->groups[i]))))
		return NULL;
	snprintf(c->groups[i]->group, sizeof(c->groups[i]->group), "%s", group);
	c->groups[i]->at = UINT64_MAX;
	return c->groups[i];
}

int rbcache_points(struct replica *r, const char *group, uint64_t at, const uint64_t **ret_epochs,
		   const uint64_t **ret_times, size_t *ret_n)
{
	struct rb_points *p = rb_find(r, group, true);
	int rc;

	if (!p)
		return -ENOMEM;
	if (p->at != at) {
		p->at = UINT64_MAX;
		if ((rc = replica_rollback_points(r, group, p->epochs, p->times, RB_MAX, &p->n)) < 0)
			return rc;
		p->at = at;
	}
	*ret_epochs = p->epochs;
	*ret_times = p->times;
	*ret_n = p->n;
	return 0;
}

void rbcache_committed(struct replica *r, const char *group, uint64_t prev, uint64_t prev_cut_time,
		       uint64_t epoch)
{
	struct rb_points *p = rb_find(r, group, false);

	if (!p)
		return;
	if (p->at != prev) {
		p->at = UINT64_MAX; /* read again when next asked */
		return;
	}
	if (p->n == RB_MAX)
		p->n--;
	memmove(p->epochs + 1, p->epochs, p->n * sizeof(p->epochs[0]));
	memmove(p->times + 1, p->times, p->n * sizeof(p->times[0]));
	p->epochs[0] = prev;
	p->times[0] = prev_cut_time;
	p->n++;
	p->at = epoch;
}

void rbcache_truncate(struct replica *r, const char *group, size_t n)
{
	struct rb_points *p = rb_find(r, group, false);

	if (p && n < p->n)
		p->n = n;
}

void dircache_changed(struct replica *r, const char *rel)
{
	struct replica_cache *c = r->cache;

	for (size_t i = 0; c && i < DIRS_MAX; i++)
		if (c->synced[i] && !strcmp(c->synced[i], rel)) {
			free(c->synced[i]);
			c->synced[i] = NULL;
		}
}

int dircache_fsync(struct replica *r, const char *rel, struct syncset *ss)
{
	struct replica_cache *c = cache_get(r);
	size_t i, free_at = DIRS_MAX;
	int rc;

	for (i = 0; c && i < DIRS_MAX; i++) {
		if (c->synced[i] && !strcmp(c->synced[i], rel))
			return 0;
		if (!c->synced[i] && free_at == DIRS_MAX)
			free_at = i;
	}
	if ((rc = ss ? syncset_dir(r, ss, rel) : tree_fsync_dir(r, rel)) < 0)
		return rc;
	if (c && free_at < DIRS_MAX)
		c->synced[free_at] = strdup(rel); /* NULL (no memory): fsync'd again next time */
	return 0;
}

void dircache_reset(struct replica *r)
{
	for (size_t i = 0; r->cache && i < DIRS_MAX; i++) {
		free(r->cache->synced[i]);
		r->cache->synced[i] = NULL;
	}
}
