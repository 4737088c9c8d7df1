/* blockmap.c - mmap'd per-source map of leaves and change epochs. */
#include "blockmap.h"
#include "buf.h"
#include "err.h"
#include "proto.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BM_MAGIC "BSCBMAP1"
#define BM_HDR 4096 /* records start page-aligned */

_Static_assert(sizeof(struct bm_rec) == 32, "bm_rec must be 32 bytes");

static int bm_map(struct blockmap *m)
{
	if (m->base)
		munmap(m->base, m->map_len);
	m->base = NULL;
	m->map_len = BM_HDR + m->nblocks * sizeof(struct bm_rec);
	m->base = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return err_set(errno, "cannot map %s: %s", m->path, strerror(errno));
	}
	m->recs = (struct bm_rec *)(m->base + BM_HDR);
	return 0;
}

int blockmap_open(const char *path, const uint8_t key_id[KEY_ID_BYTES], struct blockmap **ret)
{
	struct blockmap *m = calloc(1, sizeof(*m));
	struct stat st;
	int r;

	if (!m)
		return -ENOMEM;
	snprintf(m->path, sizeof(m->path), "%s", path);
	m->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (m->fd < 0) {
		r = err_set(errno, "cannot open block map %s: %s", path, strerror(errno));
		free(m);
		return r;
	}
	if (fstat(m->fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (st.st_size < BM_HDR) {
		if (ftruncate(m->fd, BM_HDR) < 0) {
			r = err_set(errno, "cannot size %s: %s", path, strerror(errno));
			goto fail;
		}
		m->nblocks = 0;
	} else
		m->nblocks = ((uint64_t)st.st_size - BM_HDR) / sizeof(struct bm_rec);
	if ((r = bm_map(m)) < 0)
		goto fail;
	if (memcmp(m->base, BM_MAGIC, 8) != 0 || memcmp(m->base + 16, key_id, KEY_ID_BYTES) != 0) {
		/* New map, or made with another key: every block is unknown. */
		memset(m->recs, 0, m->nblocks * sizeof(struct bm_rec));
		memcpy(m->base, BM_MAGIC, 8);
		memcpy(m->base + 16, key_id, KEY_ID_BYTES);
	}
	m->size = get_be64(m->base + 8);
	*ret = m;
	return 0;
fail:
	blockmap_close(m);
	return r;
}

static void bm_tree_drop(struct blockmap *m)
{
	if (m->tree_mem)
		munmap(m->tree_mem, m->tree_len);
	m->tree_mem = NULL;
	m->tree_len = 0;
}

void blockmap_close(struct blockmap *m)
{
	if (!m)
		return;
	bm_tree_drop(m);
	if (m->base)
		munmap(m->base, m->map_len);
	if (m->fd >= 0)
		close(m->fd);
	free(m);
}

int blockmap_resize(struct blockmap *m, uint64_t size)
{
	uint64_t nb = (size + PROTO_BLOCK - 1) / PROTO_BLOCK;
	int r;

	if (nb != m->nblocks) {
		uint64_t old = m->nblocks;
		if (m->base)
			munmap(m->base, m->map_len);
		m->base = NULL;
		if (ftruncate(m->fd, (off_t)(BM_HDR + nb * sizeof(struct bm_rec))) < 0)
			return err_set(errno, "cannot resize %s: %s", m->path, strerror(errno));
		m->nblocks = nb;
		bm_tree_drop(m); /* rebuilt at the next digest */
		if ((r = bm_map(m)) < 0)
			return r;
		if (nb > old)
			memset(m->recs + old, 0, (nb - old) * sizeof(struct bm_rec));
		/* The old last block may have been partial: its content changed. */
		if (old && nb > old)
			memset(m->recs[old - 1].leaf, 0, LEAF_BYTES);
	}
	if (size != m->size && nb && size % PROTO_BLOCK) {
		memset(m->recs[nb - 1].leaf, 0, LEAF_BYTES);
		blockmap_touch(m, nb - 1);
	}
	m->size = size;
	put_be64(m->base + 8, size);
	return 0;
}

int blockmap_sync(struct blockmap *m)
{
	if (msync(m->base, m->map_len, MS_SYNC) < 0 || fsync(m->fd) < 0)
		return err_set(errno, "cannot flush block map %s: %s", m->path, strerror(errno));
	return 0;
}

void blockmap_touch(struct blockmap *m, uint64_t b)
{
	if (m->tree_mem)
		merkle_tree_touch(&m->tree, b / MERKLE_FAN);
}

/* Level-1 node I from its (up to) 256 leaves. */
static int bm_tree_refresh(void *ctx, struct merkle_tree *t, uint64_t i)
{
	const struct blockmap *m = ctx;
	uint8_t leaves[MERKLE_FAN * LEAF_BYTES], node[MERKLE_NODE];
	uint64_t first = i * MERKLE_FAN, n = m->nblocks - first;

	if (n > MERKLE_FAN)
		n = MERKLE_FAN;
	for (uint64_t k = 0; k < n; k++)
		memcpy(leaves + k * LEAF_BYTES, m->recs[first + k].leaf, LEAF_BYTES);
	merkle_node(1, leaves, (size_t)n, LEAF_BYTES, node);
	merkle_tree_set(t, i, node);
	return 0;
}

int blockmap_digest(struct blockmap *m, uint8_t ret[DIGEST_BYTES])
{
	if (!m->tree_mem && m->nblocks) {
		size_t len = merkle_tree_bytes(m->nblocks);
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return err_set(errno, "cannot allocate the digest tree of %s (%zu bytes): %s", m->path,
				       len, strerror(errno));
		m->tree_mem = p;
		m->tree_len = len;
		merkle_tree_attach(&m->tree, m->nblocks, m->tree_mem, true);
	}
	if (!m->nblocks) {
		merkle_digest(m->size, NULL, ret);
		return 0;
	}
	return merkle_tree_digest(&m->tree, m->size, bm_tree_refresh, m, ret);
}

uint64_t blockmap_count_newer(const struct blockmap *m, uint64_t epoch)
{
	uint64_t n = 0;

	for (uint64_t b = 0; b < m->nblocks; b++)
		n += m->recs[b].epoch > epoch;
	return n;
}
