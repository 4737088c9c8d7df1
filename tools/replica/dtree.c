/* dtree.c - the maps a receiver keeps open between epochs, with their
 * digest trees (lib/blockmap.h), so that the check of an epoch against the
 * primary's digest costs the MiB it wrote (x log n), not a pass over the
 * whole map: a map opened by tf_open stays open here after tf_close, its
 * tree built at the first check of this process and told of every leaf
 * written.  Only a cache: a map replaced (another file at its name: a seed
 * renamed in) is opened afresh, and a cached digest that does not match is
 * computed again from the whole map before anything is called a mismatch. */
#include "store.h"
#include "blockmap.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DT_MAX 64 /* maps kept open */

struct dtree {
	char group[NAME_MAX_LEN + 1], source[NAME_MAX_LEN + 1];
	struct blockmap *map;
	unsigned int users; /* target files holding MAP now (they share it): not replaced */
};

struct dtrees {
	struct dtree e[DT_MAX];
	size_t next; /* where to look first for an entry to replace */
};

static void dt_drop(struct dtree *d)
{
	blockmap_close(d->map);
	d->map = NULL;
	d->group[0] = 0;
}

void dtree_free(struct replica *r)
{
	for (size_t i = 0; r->dtrees && i < DT_MAX; i++)
		dt_drop(&r->dtrees->e[i]);
	free(r->dtrees);
	r->dtrees = NULL;
}

static struct dtree *dt_find(struct replica *r, const char *group, const char *source)
{
	for (size_t i = 0; r->dtrees && i < DT_MAX; i++) {
		struct dtree *d = &r->dtrees->e[i];
		if (d->group[0] && !strcmp(d->group, group) && !strcmp(d->source, source))
			return d;
	}
	return NULL;
}

bool dtree_attach(struct replica *r, const char *group, const char *source, const char *rel,
		  struct target_file *tf)
{
	struct dtree *d = dt_find(r, group, source);
	struct stat a, b;
	int fd;

	if (!d)
		return false;
	/* The file at REL now (opened, so no link is followed) is the one kept? */
	fd = tree_open(r, rel, O_RDONLY, 0);
	if (fd < 0 || fstat(fd, &a) < 0 || fstat(d->map->fd, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		if (fd >= 0)
			close(fd);
		if (!d->users)
			dt_drop(d);
		return false;
	}
	close(fd);
	d->users++;
	tf->map = d->map;
	tf->tree = d;
	return true;
}

void dtree_keep(struct replica *r, const char *group, const char *source, struct target_file *tf)
{
	struct dtrees *c = r->dtrees;
	struct dtree *d = dt_find(r, group, source);

	if (d && d->users)
		return; /* the kept one is of a file replaced since: TF's stays its own */
	if (!d) {
		if (!c && !(c = r->dtrees = calloc(1, sizeof(*c))))
			return;
		for (size_t k = 0; k < DT_MAX && !d; k++) {
			struct dtree *e = &c->e[(c->next + k) % DT_MAX];
			if (!e->users)
				d = e;
		}
		if (!d)
			return;
		c->next = (size_t)(d - c->e + 1) % DT_MAX;
	}
	dt_drop(d);
	snprintf(d->group, sizeof(d->group), "%s", group);
	snprintf(d->source, sizeof(d->source), "%s", source);
	d->map = tf->map;
	d->users = 1;
	tf->tree = d;
}

void dtree_release(struct target_file *tf)
{
	if (tf->tree && tf->tree->users)
		tf->tree->users--;
	tf->tree = NULL;
}

int dtree_digest(struct target_file *tf, uint64_t size, uint8_t dv, uint8_t ret[DIGEST_BYTES], bool *ret_cached)
{
	bool cached = blockmap_has_tree(tf->map);

	*ret_cached = false;
	if (dv != DIGEST_V2 || tf->map->size != size)
		return tf_digest(tf, size, dv, ret);
	*ret_cached = cached;
	return blockmap_digest(tf->map, ret);
}
