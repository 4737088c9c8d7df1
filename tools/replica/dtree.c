/* dtree.c - the digest trees a receiver keeps between epochs (lib/merkle.h),
 * so that the check of an epoch against the primary's digest costs the MiB
 * it wrote (x log n), not a pass over the whole map: a tree per replica
 * file, built from its map at the first check of this process, told of every
 * leaf written through tf_write, tf_rehash and tf_resize.  Only a cache: a
 * map replaced (its inode: a seed renamed in) or resized builds it afresh,
 * and a cached digest that does not match is computed again from the whole
 * map before anything is called a mismatch. */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "merkle.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define DT_MAX 64 /* replica files whose tree is kept */

struct dtree {
	char group[NAME_MAX_LEN + 1], source[NAME_MAX_LEN + 1];
	dev_t dev;
	ino_t ino;
	uint64_t size;
	bool valid;
	struct merkle_tree t;
	uint8_t *mem;
	size_t len;
};

struct dtrees {
	struct dtree e[DT_MAX];
	size_t next; /* the entry replaced when all are taken */
};

static void dt_drop(struct dtree *d)
{
	if (d->mem)
		munmap(d->mem, d->len);
	d->mem = NULL;
	d->len = 0;
	d->valid = false;
}

void dtree_free(struct replica *r)
{
	for (size_t i = 0; r->dtrees && i < DT_MAX; i++)
		dt_drop(&r->dtrees->e[i]);
	free(r->dtrees);
	r->dtrees = NULL;
}

/* The entry of GROUP/SOURCE (CREATE: a free or the next one taken). */
static struct dtree *dt_find(struct replica *r, const char *group, const char *source, bool create)
{
	struct dtrees *c = r->dtrees;
	size_t i, free_at = DT_MAX;

	if (!c && (!create || !(c = r->dtrees = calloc(1, sizeof(*c)))))
		return NULL;
	for (i = 0; i < DT_MAX; i++) {
		if (c->e[i].group[0] && !strcmp(c->e[i].group, group) && !strcmp(c->e[i].source, source))
			return &c->e[i];
		if (!c->e[i].group[0] && free_at == DT_MAX)
			free_at = i;
	}
	if (!create)
		return NULL;
	if (free_at == DT_MAX) {
		free_at = c->next;
		c->next = (c->next + 1) % DT_MAX;
		dt_drop(&c->e[free_at]);
	}
	snprintf(c->e[free_at].group, sizeof(c->e[free_at].group), "%s", group);
	snprintf(c->e[free_at].source, sizeof(c->e[free_at].source), "%s", source);
	return &c->e[free_at];
}

void dtree_attach(struct replica *r, const char *group, const char *source, struct target_file *tf)
{
	struct dtree *d = dt_find(r, group, source, false);
	struct stat st;

	tf->tree = NULL;
	if (!d || !d->valid)
		return;
	if (fstat(tf->map_fd, &st) < 0 || st.st_dev != d->dev || st.st_ino != d->ino) {
		dt_drop(d); /* another map (a seed renamed in): built again */
		return;
	}
	tf->tree = d;
}

void dtree_touch(struct target_file *tf, uint64_t first, uint64_t count)
{
	struct dtree *d = tf->tree;

	if (!d || !d->valid || !count)
		return;
	for (uint64_t i = first / MERKLE_FAN; i <= (first + count - 1) / MERKLE_FAN; i++)
		if (i < d->t.count[1])
			merkle_tree_touch(&d->t, i);
}

void dtree_forget(struct target_file *tf)
{
	if (tf->tree)
		dt_drop(tf->tree);
	tf->tree = NULL;
}

/* Level-1 node I from its leaves in the map. */
static int dt_refresh(void *ctx, struct merkle_tree *t, uint64_t i)
{
	struct target_file *tf = ctx;
	uint8_t leaves[MERKLE_FAN * LEAF_BYTES], node[MERKLE_NODE];
	uint64_t first = i * MERKLE_FAN, n = t->nleaves - first;

	if (n > MERKLE_FAN)
		n = MERKLE_FAN;
	if (fs_pread_full(tf->map_fd, leaves, (size_t)n * LEAF_BYTES, MAP_HDR + first * LEAF_BYTES) !=
	    (ssize_t)(n * LEAF_BYTES))
		return err_set(EIO, "replica map is short");
	merkle_node(1, leaves, (size_t)n, LEAF_BYTES, node);
	merkle_tree_set(t, i, node);
	return 0;
}

int dtree_digest(struct replica *r, const char *group, const char *source, struct target_file *tf,
		 uint64_t size, uint8_t dv, uint8_t ret[DIGEST_BYTES], bool *ret_cached)
{
	uint64_t n = nblocks(size);
	struct dtree *d;
	struct stat st;
	bool cached;
	int rc;

	*ret_cached = false;
	if (dv != DIGEST_V2 || !n || fstat(tf->map_fd, &st) < 0 ||
	    !(d = dt_find(r, group, source, true)))
		return tf_digest(tf, size, dv, ret);
	cached = d->valid && d->dev == st.st_dev && d->ino == st.st_ino && d->t.nleaves == n && d->size == size;
	if (!cached) {
		void *p;
		dt_drop(d);
		d->len = merkle_tree_bytes(n);
		p = mmap(NULL, d->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			d->len = 0;
			return tf_digest(tf, size, dv, ret);
		}
		d->mem = p;
		merkle_tree_attach(&d->t, n, d->mem, true);
		d->dev = st.st_dev;
		d->ino = st.st_ino;
		d->size = size;
	}
	if ((rc = merkle_tree_digest(&d->t, size, dt_refresh, tf, ret)) < 0) {
		dt_drop(d);
		return rc;
	}
	d->valid = true;
	tf->tree = d;
	*ret_cached = cached;
	return 0;
}
