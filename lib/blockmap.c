/* blockmap.c - mmap'd per-source map: chunk words, cold chunks' nodes,
 * sparse records, the conversion of the previous formats, and the digest's
 * cached tree.
 *
 *   0          header (4 KiB): "BSCBMAP3", u64 size (BE), key id, u64 dir_bytes (BE)
 *   4096       chunk words, u64 each (one per MiB), dir_bytes of room
 *   4096+dir   nodes, 32 bytes per chunk (4 x dir_bytes), a hole but for cold chunks
 *   4096+5 dir records, 32 bytes per block, a hole where the chunk has none */
#include "blockmap.h"
#include "buf.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "proto.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BM_MAGIC "BSCBMAP3"
#define BM_MAGIC_V2 "BSCBMAP2" /* no node table: records at 4096 + dir_bytes */
#define BM_MAGIC_V1 "BSCBMAP1" /* a record for every block, at offset 4096 */
#define BM_HDR 4096
#define BM_KEY_OFF 16
#define BM_DIR_OFF 32
#define W_RECS (1ULL << 63)
#define W_ZERO (1ULL << 62)
#define W_EPOCH (W_ZERO - 1)
#define W_COLD (W_RECS | W_ZERO) /* and the epoch */
#define BM_CHUNK_RECS (BM_CHUNK * sizeof(struct bm_rec)) /* 8 KiB, page aligned */

_Static_assert(sizeof(struct bm_rec) == 32, "bm_rec must be 32 bytes");
_Static_assert(BM_CHUNK == MERKLE_FAN, "a chunk is one level-1 node");
_Static_assert(MERKLE_NODE % 8 == 0, "the node table is a multiple of the words' room");

static uint64_t page_up(uint64_t n)
{
	return (n + 4095) / 4096 * 4096;
}

static uint64_t dir_room(uint64_t nchunks)
{
	return nchunks * 8 > 4096 ? page_up(nchunks * 8) : 4096;
}

/* Where the records begin: after the words and a node per word. */
static uint64_t recs_at(uint64_t dir_bytes)
{
	return BM_HDR + dir_bytes + dir_bytes / 8 * MERKLE_NODE;
}

/* ---- plain paths ---- */

static int path_open(void *ctx, const char *name)
{
	int fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	return fd < 0 ? err_set(errno, "cannot open block map %s: %s", name, strerror(errno)) : fd;
}

static int path_create(void *ctx, const char *name)
{
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	return fd < 0 ? err_set(errno, "cannot write block map %s: %s", name, strerror(errno)) : fd;
}

static int path_rename(void *ctx, const char *from, const char *to)
{
	return rename(from, to) < 0 ? err_set(errno, "cannot put block map %s in place: %s", to, strerror(errno))
				    : 0;
}

static int path_fsync_parent(void *ctx, const char *name)
{
	return fs_fsync_parent(name);
}

static int path_unlink(void *ctx, const char *name)
{
	return unlink(name) < 0 ? -errno : 0;
}

static const struct blockmap_fs path_fs = { path_open, path_create, path_rename, path_fsync_parent, path_unlink,
					    NULL };

static void bm_tree_drop(struct blockmap *m)
{
	if (m->tree_mem)
		munmap(m->tree_mem, m->tree_len);
	m->tree_mem = NULL;
	m->tree_len = 0;
}

static void bm_newest_drop(struct blockmap *m)
{
	if (m->newest)
		munmap(m->newest, m->newest_len);
	m->newest = NULL;
	m->newest_len = 0;
	if (m->wakes)
		munmap(m->wakes, m->wakes_len);
	m->wakes = NULL;
	m->wakes_len = 0;
}

static void bm_unmap(struct blockmap *m)
{
	if (m->base)
		munmap(m->base, m->map_len);
	m->base = NULL;
	m->words = NULL;
	m->nodes = NULL;
	m->recs = NULL;
}

static int bm_map(struct blockmap *m)
{
	bm_unmap(m);
	m->map_len = recs_at(m->dir_bytes) + m->nblocks * sizeof(struct bm_rec);
	m->base = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return err_set(errno, "cannot map %s: %s", m->path, strerror(errno));
	}
	/* Records are reached a chunk (8 KiB) at a time, mostly in holes: no
	 * readahead (a fault in a hole would read and map the zeros around). */
	(void)madvise(m->base, m->map_len, MADV_RANDOM);
	m->words = (uint64_t *)(m->base + BM_HDR);
	m->nodes = m->base + BM_HDR + m->dir_bytes;
	m->recs = (struct bm_rec *)(m->base + recs_at(m->dir_bytes));
	return 0;
}

/* ---- writing a whole map afresh (conversion, a directory that grows) ---- */

/* Write PATH.new as a map of SIZE bytes with DIR_BYTES of chunk words, from
 * FROM, make it durable and rename it over PATH. */
static int bm_write_new(const struct blockmap_fs *fs, const char *path, const uint8_t *key_id, uint64_t size,
			uint64_t dir_bytes, const struct blockmap_from *from)
{
	uint64_t nb = (size + PROTO_BLOCK - 1) / PROTO_BLOCK, nc = (nb + BM_CHUNK - 1) / BM_CHUNK;
	uint8_t hdr[BM_HDR] = { 0 };
	uint64_t *words = calloc(dir_bytes / 8, 8);
	char tmp[4200];
	int fd = -1, r;

	if (!words)
		return -ENOMEM;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp)) {
		r = -ENAMETOOLONG;
		goto out;
	}
	if ((fd = fs->create(fs->ctx, tmp)) < 0) {
		r = fd;
		goto out;
	}
	if (ftruncate(fd, (off_t)(recs_at(dir_bytes) + nb * sizeof(struct bm_rec))) < 0) {
		r = err_set(errno, "cannot write block map %s: %s", tmp, strerror(errno));
		goto out;
	}
	for (uint64_t c = 0; c < nc; c++) {
		const struct bm_rec *recs = NULL;
		uint64_t first = c * BM_CHUNK, n = nb - first > BM_CHUNK ? BM_CHUNK : nb - first, epoch = 0;
		enum bm_state st = BM_UNKNOWN;
		if ((r = from->chunk(from->ctx, c, &st, &epoch, &recs)) < 0)
			goto out;
		words[c] = st == BM_RECS ? W_RECS : st == BM_ZERO ? W_ZERO | (epoch & W_EPOCH)
						 : st == BM_COLD ? W_COLD | (epoch & W_EPOCH) : 0;
		if (st == BM_RECS && (r = fs_pwrite_full(fd, recs, (size_t)n * sizeof(*recs),
							 recs_at(dir_bytes) + first * sizeof(*recs))) < 0)
			goto out;
		if (st == BM_COLD && (r = fs_pwrite_full(fd, from->node(from->ctx, c), MERKLE_NODE,
							 BM_HDR + dir_bytes + c * MERKLE_NODE)) < 0)
			goto out;
	}
	memcpy(hdr, BM_MAGIC, 8);
	put_be64(hdr + 8, size);
	memcpy(hdr + BM_KEY_OFF, key_id, KEY_ID_BYTES);
	put_be64(hdr + BM_DIR_OFF, dir_bytes);
	if ((r = fs_pwrite_full(fd, hdr, sizeof(hdr), 0)) < 0 ||
	    (r = fs_pwrite_full(fd, words, (size_t)dir_bytes, BM_HDR)) < 0)
		goto out;
	if (fsync(fd) < 0) {
		r = err_set(errno, "cannot flush block map %s: %s", tmp, strerror(errno));
		goto out;
	}
	if ((r = fs->rename(fs->ctx, tmp, path)) < 0)
		goto out;
	r = fs->fsync_parent(fs->ctx, path);
out:
	if (r < 0 && r != -ENOMEM)
		r = err_wrap(r, "cannot rewrite block map %s", path);
	if (fd >= 0)
		close(fd);
	if (r < 0)
		fs->unlink(fs->ctx, tmp);
	free(words);
	return r;
}

int blockmap_write(const struct blockmap_fs *fs, const char *name, const uint8_t key_id[KEY_ID_BYTES],
		   uint64_t size, const struct blockmap_from *from)
{
	uint64_t nb = (size + PROTO_BLOCK - 1) / PROTO_BLOCK;

	return bm_write_new(fs ? fs : &path_fs, name, key_id, size, dir_room((nb + BM_CHUNK - 1) / BM_CHUNK), from);
}

/* A map of a previous format, mapped: BSCBMAP1, a record for every block
 * (WORDS NULL); BSCBMAP2, chunk words and sparse records. */
struct bm_old {
	const uint64_t *words;
	const struct bm_rec *recs;
	uint64_t nblocks;
	const uint8_t *zero_leaf;
};

static int old_chunk(void *ctx, uint64_t c, enum bm_state *st, uint64_t *epoch, const struct bm_rec **recs)
{
	const struct bm_old *v = ctx;
	static const struct bm_rec unknown;
	uint64_t first = c * BM_CHUNK, n = v->nblocks - first > BM_CHUNK ? BM_CHUNK : v->nblocks - first;
	const struct bm_rec *p = v->recs + first;
	bool zero = n == BM_CHUNK, none = true;

	if (v->words) { /* BSCBMAP2: its words say (it had no cold chunks) */
		uint64_t w = v->words[c];
		*st = (w & W_RECS) ? BM_RECS : (w & W_ZERO) ? BM_ZERO : BM_UNKNOWN;
		*epoch = w & W_EPOCH;
		*recs = p;
		return 0;
	}
	for (uint64_t k = 0; k < n; k++) {
		zero &= memcmp(p[k].leaf, v->zero_leaf, LEAF_BYTES) == 0 && p[k].epoch == p[0].epoch;
		none &= memcmp(&p[k], &unknown, sizeof(unknown)) == 0;
	}
	/* A last partial chunk has records (its short block is no zero block). */
	if (zero && p[0].epoch <= W_EPOCH) {
		*st = BM_ZERO;
		*epoch = p[0].epoch;
	} else if (none) {
		*st = BM_UNKNOWN;
	} else {
		*st = BM_RECS;
		*recs = p;
	}
	return 0;
}

/* PATH is not a map of its length (LEN for NBLOCKS blocks): what moving it
 * away costs differs: the daemon's map is rebuilt by a full scan that sends
 * every target the whole disk; a replica's is rebuilt from the replica file
 * itself. */
static int bm_damaged(const char *path, uint64_t len, uint64_t nblocks, unsigned int flags)
{
	return err_set(EBADMSG, "block map %s is damaged (size %llu for %llu blocks); move it away: %s", path,
		       (unsigned long long)len, (unsigned long long)nblocks,
		       (flags & BLOCKMAP_KEEP) ? "it is rebuilt from the file it describes"
					       : "the next scan rebuilds it and every target is sent the whole disk");
}

/* Convert the BSCBMAP1 or BSCBMAP2 map open on FD (ST) in place. */
static int bm_convert(const struct blockmap_fs *fs, int fd, const char *path, const struct stat *st,
		      const uint8_t *key_id, const uint8_t *zero_leaf, unsigned int flags)
{
	struct bm_old v = { .zero_leaf = zero_leaf };
	uint8_t hdr[BM_HDR];
	uint64_t size, len = (uint64_t)st->st_size, at = BM_HDR, dir = 0;
	void *p;
	int r;

	if (fs_pread_full(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return err_set(EIO, "cannot read block map %s", path);
	size = get_be64(hdr + 8);
	if (memcmp(hdr, BM_MAGIC_V2, 8) == 0) {
		dir = get_be64(hdr + BM_DIR_OFF);
		at = BM_HDR + dir;
		if (dir % 4096 || !dir || len < at || (len - at) % sizeof(struct bm_rec) ||
		    dir < dir_room(((len - at) / sizeof(struct bm_rec) + BM_CHUNK - 1) / BM_CHUNK))
			return bm_damaged(path, len, len < at ? 0 : (len - at) / sizeof(struct bm_rec), flags);
	}
	v.nblocks = (len - at) / sizeof(struct bm_rec);
	if ((size + PROTO_BLOCK - 1) / PROTO_BLOCK != v.nblocks)
		size = v.nblocks * PROTO_BLOCK; /* inconsistent: the next resize marks the tail unknown */
	if (memcmp(hdr + BM_KEY_OFF, key_id, KEY_ID_BYTES) != 0)
		v.nblocks = size = 0; /* another key: nothing to keep */
	p = v.nblocks ? mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0) : NULL;
	if (p == MAP_FAILED)
		return err_set(errno, "cannot map %s: %s", path, strerror(errno));
	v.recs = p ? (const struct bm_rec *)((const uint8_t *)p + at) : NULL;
	v.words = p && dir ? (const uint64_t *)((const uint8_t *)p + BM_HDR) : NULL;
	r = bm_write_new(fs, path, key_id, size, dir_room((v.nblocks + BM_CHUNK - 1) / BM_CHUNK),
			 &(struct blockmap_from){ old_chunk, &v, NULL });
	if (p)
		munmap(p, len);
	return r;
}

/* ---- open, close, resize ---- */

static void bm_nodes(struct blockmap *m)
{
	uint8_t leaves[BM_CHUNK * LEAF_BYTES];

	for (int k = 0; k < BM_CHUNK; k++)
		memcpy(leaves + k * LEAF_BYTES, m->zero_leaf, LEAF_BYTES);
	merkle_node(1, leaves, BM_CHUNK, LEAF_BYTES, m->zero_node);
	memset(leaves, 0, sizeof(leaves));
	merkle_node(1, leaves, BM_CHUNK, LEAF_BYTES, m->unknown_node);
}

/* An empty map of this format on FD (new, or under another key). */
static int bm_init(struct blockmap *m, const uint8_t *key_id)
{
	uint8_t hdr[BM_HDR] = { 0 };

	memcpy(hdr, BM_MAGIC, 8);
	memcpy(hdr + BM_KEY_OFF, key_id, KEY_ID_BYTES);
	put_be64(hdr + BM_DIR_OFF, 4096);
	if (ftruncate(m->fd, 0) < 0 || ftruncate(m->fd, (off_t)recs_at(4096)) < 0)
		return err_set(errno, "cannot size %s: %s", m->path, strerror(errno));
	return fs_pwrite_full(m->fd, hdr, sizeof(hdr), 0);
}

int blockmap_open(const char *path, const uint8_t key_id[KEY_ID_BYTES], const uint8_t zero_leaf[LEAF_BYTES],
		  struct blockmap **ret)
{
	return blockmap_open_fs(NULL, path, key_id, zero_leaf, 0, ret);
}

int blockmap_open_fs(const struct blockmap_fs *fs, const char *path, const uint8_t key_id[KEY_ID_BYTES],
		     const uint8_t zero_leaf[LEAF_BYTES], unsigned int flags, struct blockmap **ret)
{
	struct blockmap *m = calloc(1, sizeof(*m));
	uint8_t hdr[BM_HDR];
	struct stat st;
	int r;

	if (!m)
		return -ENOMEM;
	m->fs = fs ? *fs : path_fs;
	pthread_mutex_init(&m->newest_lock, NULL);
	snprintf(m->path, sizeof(m->path), "%s", path);
	memcpy(m->zero_leaf, zero_leaf, LEAF_BYTES);
	bm_nodes(m);
	m->fd = m->fs.open(m->fs.ctx, path);
	if (m->fd < 0) {
		r = m->fd;
		free(m);
		return r;
	}
	if (fstat(m->fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (st.st_size >= BM_HDR && fs_pread_full(m->fd, hdr, 8, 0) == 8 &&
	    (memcmp(hdr, BM_MAGIC_V1, 8) == 0 || memcmp(hdr, BM_MAGIC_V2, 8) == 0)) {
		if ((r = bm_convert(&m->fs, m->fd, path, &st, key_id, zero_leaf, flags)) < 0)
			goto fail;
		close(m->fd);
		if ((m->fd = m->fs.open(m->fs.ctx, path)) < 0) {
			r = m->fd;
			goto fail;
		}
		if (fstat(m->fd, &st) < 0) {
			r = err_set(errno, "cannot open block map %s: %s", path, strerror(errno));
			goto fail;
		}
	}
	if ((uint64_t)st.st_size < recs_at(4096) || fs_pread_full(m->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    memcmp(hdr, BM_MAGIC, 8) != 0 || memcmp(hdr + BM_KEY_OFF, key_id, KEY_ID_BYTES) != 0) {
		if ((flags & BLOCKMAP_KEEP) && st.st_size) {
			r = err_set(EBADMSG, "%s is not a block map of this format made with this site key; "
					     "move it away: it is rebuilt from the file it describes",
				    path);
			goto fail;
		}
		/* New map, or made with another key: every block is unknown. */
		if ((r = bm_init(m, key_id)) < 0)
			goto fail;
		if (fs_pread_full(m->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
			r = err_set(EIO, "cannot read block map %s", path);
			goto fail;
		}
		st.st_size = (off_t)recs_at(4096);
	}
	m->size = get_be64(hdr + 8);
	m->dir_bytes = get_be64(hdr + BM_DIR_OFF);
	m->nblocks = (m->size + PROTO_BLOCK - 1) / PROTO_BLOCK;
	if (m->dir_bytes % 4096 == 0 && m->dir_bytes < (1ULL << 40) && (uint64_t)st.st_size >= recs_at(m->dir_bytes) &&
	    ((uint64_t)st.st_size - recs_at(m->dir_bytes)) % sizeof(struct bm_rec) == 0 &&
	    ((uint64_t)st.st_size - recs_at(m->dir_bytes)) / sizeof(struct bm_rec) != m->nblocks) {
		/* A crash between a resize's ftruncate and its header: the file
		 * says how many blocks; the next resize sets the size. */
		m->nblocks = ((uint64_t)st.st_size - recs_at(m->dir_bytes)) / sizeof(struct bm_rec);
		m->size = m->nblocks * PROTO_BLOCK;
	}
	m->nchunks = (m->nblocks + BM_CHUNK - 1) / BM_CHUNK;
	if (m->dir_bytes % 4096 || m->dir_bytes < dir_room(m->nchunks) || m->dir_bytes >= (1ULL << 40) ||
	    (uint64_t)st.st_size != recs_at(m->dir_bytes) + m->nblocks * sizeof(struct bm_rec)) {
		r = bm_damaged(path, (uint64_t)st.st_size, m->nblocks, flags);
		goto fail;
	}
	if ((r = bm_map(m)) < 0)
		goto fail;
	*ret = m;
	return 0;
fail:
	blockmap_close(m);
	return r;
}

void blockmap_close(struct blockmap *m)
{
	if (!m)
		return;
	bm_tree_drop(m);
	bm_newest_drop(m);
	bm_unmap(m);
	if (m->fd >= 0)
		close(m->fd);
	pthread_mutex_destroy(&m->newest_lock);
	free(m->cooled);
	free(m);
}

/* The current map as the source of a rewrite. */
static int cur_chunk(void *ctx, uint64_t c, enum bm_state *st, uint64_t *epoch, const struct bm_rec **recs)
{
	const struct blockmap *m = ctx;

	*st = c < m->nchunks ? blockmap_chunk_state(m, c, epoch) : BM_UNKNOWN;
	*recs = *st == BM_RECS ? m->recs + c * BM_CHUNK : NULL;
	return 0;
}

static const uint8_t *cur_node(void *ctx, uint64_t c)
{
	const struct blockmap *m = ctx;

	return m->nodes + c * MERKLE_NODE;
}

int blockmap_resize(struct blockmap *m, uint64_t size)
{
	uint64_t nb = (size + PROTO_BLOCK - 1) / PROTO_BLOCK, nc = (nb + BM_CHUNK - 1) / BM_CHUNK;
	uint64_t old = m->nblocks;
	int r;

	if (nb != m->nblocks) {
		bm_tree_drop(m); /* rebuilt at the next digest */
		bm_newest_drop(m); /* and at the next question */
		/* Chunks past the end are forgotten (a later growth finds them unknown). */
		for (uint64_t c = nc; c < m->nchunks; c++)
			m->words[c] = 0;
		if (dir_room(nc) > m->dir_bytes) {
			/* The chunk words outgrow their room: a new file, the
			 * records of the chunks that have some copied. */
			uint64_t keep = m->size;
			if ((r = bm_write_new(&m->fs, m->path, m->base + BM_KEY_OFF, keep, dir_room(nc),
					      &(struct blockmap_from){ cur_chunk, m, cur_node })) < 0)
				return r;
			bm_unmap(m);
			close(m->fd);
			if ((m->fd = m->fs.open(m->fs.ctx, m->path)) < 0)
				return m->fd;
			m->dir_bytes = dir_room(nc);
		}
		bm_unmap(m);
		if (ftruncate(m->fd, (off_t)(recs_at(m->dir_bytes) + nb * sizeof(struct bm_rec))) < 0)
			return err_set(errno, "cannot resize %s: %s", m->path, strerror(errno));
		m->nblocks = nb;
		m->nchunks = nc;
		if ((r = bm_map(m)) < 0)
			return r;
		/* The old last block may have been partial: its content changed;
		 * a last chunk that is partial now always has records. */
		if (old && nb > old && m->size % PROTO_BLOCK)
			memset(blockmap_chunk_recs(m, (old - 1) / BM_CHUNK)[(old - 1) % BM_CHUNK].leaf, 0, LEAF_BYTES);
		if (nb % BM_CHUNK)
			blockmap_chunk_recs(m, nc - 1);
	}
	if (size != m->size && nb && size % PROTO_BLOCK) {
		memset(blockmap_chunk_recs(m, nc - 1)[(nb - 1) % BM_CHUNK].leaf, 0, LEAF_BYTES);
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
	/* The cold words are durable: their records can go (a crash before a
	 * punch leaves records no word points to; one that was made hot again
	 * since keeps them). */
	for (size_t i = 0, j; i < m->n_cooled; i = j) {
		uint64_t c = m->cooled[i];
		if (c >= m->nchunks || blockmap_chunk_state(m, c, NULL) != BM_COLD) {
			j = i + 1; /* hot again (or gone with a shrink): its records stay */
			continue;
		}
		/* one hole for a run of consecutive chunks (a punch is a journal
		 * transaction: 8,192 of them took 5.6 s on this machine) */
		for (j = i + 1; j < m->n_cooled && m->cooled[j] == m->cooled[j - 1] + 1 && m->cooled[j] < m->nchunks &&
				blockmap_chunk_state(m, m->cooled[j], NULL) == BM_COLD;
		     j++)
			;
		if (fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(recs_at(m->dir_bytes) + c * BM_CHUNK_RECS), (off_t)((j - i) * BM_CHUNK_RECS)) < 0) {
			/* The punch only gives room back: nothing reads a cold
			 * chunk's records.  A filesystem without holes, or one
			 * that refuses this punch (ENOSPC, EIO): they stay, and
			 * replication goes on. */
			if (errno != EOPNOTSUPP)
				log_warn("block map %s: the records of cold chunks stay (cannot punch them: %s)", m->path,
					 strerror(errno));
			break;
		}
	}
	m->n_cooled = 0;
	return 0;
}

/* ---- the newest change epoch of each chunk ---- */

/* The greatest change epoch among chunk C's records. */
static uint64_t bm_recs_newest(const struct blockmap *m, uint64_t c)
{
	uint64_t first = c * BM_CHUNK, n = m->nblocks - first > BM_CHUNK ? BM_CHUNK : m->nblocks - first, e = 0;

	for (uint64_t b = first; b < first + n; b++)
		if (m->recs[b].epoch > e)
			e = m->recs[b].epoch;
	return e;
}

/* The newest epochs, built at the first call (under the lock, which
 * blockmap_changed waits on: a change made during the pass is not lost);
 * NULL if there is no memory for them (the records are asked instead). */
static uint64_t *bm_newest(struct blockmap *m)
{
	uint64_t *p = __atomic_load_n(&m->newest, __ATOMIC_ACQUIRE);

	if (p)
		return p;
	pthread_mutex_lock(&m->newest_lock);
	if (!(p = m->newest) && m->nchunks) {
		size_t len = (size_t)m->nchunks * sizeof(uint64_t);
		void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem != MAP_FAILED) {
			p = mem;
			for (uint64_t c = 0; c < m->nchunks; c++) {
				uint64_t e = blockmap_chunk_state(m, c, NULL) == BM_RECS ? bm_recs_newest(m, c) : 0;
				if (e) /* a page only where chunks have records */
					p[c] = e;
			}
			m->newest_len = len;
			__atomic_store_n(&m->newest, p, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&m->newest_lock);
	return p;
}

uint64_t blockmap_chunk_newest(struct blockmap *m, uint64_t c)
{
	uint64_t e = 0, *p;

	switch (blockmap_chunk_state(m, c, &e)) {
	case BM_ZERO:
	case BM_COLD:
		return e;
	case BM_RECS:
		p = bm_newest(m);
		return p ? __atomic_load_n(&p[c], __ATOMIC_RELAXED) : bm_recs_newest(m, c);
	default:
		return 0;
	}
}

/* Chunk C's records now hold change epoch EPOCH. */
static void bm_note_epoch(struct blockmap *m, uint64_t c, uint64_t epoch)
{
	uint64_t *p = __atomic_load_n(&m->newest, __ATOMIC_ACQUIRE), cur;

	if (!p) {
		/* Not built, or being built: wait for a pass under way (which
		 * may have read the record before this change). */
		pthread_mutex_lock(&m->newest_lock);
		p = m->newest;
		pthread_mutex_unlock(&m->newest_lock);
		if (!p)
			return; /* the pass, when it comes, reads the record */
	}
	p += c;
	cur = __atomic_load_n(p, __ATOMIC_RELAXED);
	while (cur < epoch && !__atomic_compare_exchange_n(p, &cur, epoch, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void blockmap_changed(struct blockmap *m, uint64_t b, uint64_t epoch)
{
	blockmap_touch(m, b);
	bm_note_epoch(m, b / BM_CHUNK, epoch);
}

/* ---- chunks ---- */

enum bm_state blockmap_chunk_state(const struct blockmap *m, uint64_t c, uint64_t *ret_epoch)
{
	uint64_t w = __atomic_load_n(&m->words[c], __ATOMIC_ACQUIRE);

	if ((w & W_COLD) == W_RECS)
		return BM_RECS;
	if (w & W_ZERO) {
		if (ret_epoch)
			*ret_epoch = w & W_EPOCH;
		return w & W_RECS ? BM_COLD : BM_ZERO;
	}
	return BM_UNKNOWN;
}

bool blockmap_chunk_zero(struct blockmap *m, uint64_t c, uint64_t epoch)
{
	uint64_t w = m->words[c];

	if ((w & W_RECS) || (w & W_ZERO) || (c + 1) * BM_CHUNK * PROTO_BLOCK > m->size)
		return false;
	m->words[c] = W_ZERO | (epoch & W_EPOCH);
	if (m->tree_mem)
		merkle_tree_touch(&m->tree, c);
	return true;
}

struct bm_rec *blockmap_chunk_recs(struct blockmap *m, uint64_t c)
{
	struct bm_rec *p = m->recs + c * BM_CHUNK;
	uint64_t w = m->words[c];

	if ((w & W_COLD) == W_RECS)
		return p;
	if ((w & W_COLD) == W_COLD) {
		/* No leaves to give: unknown, the epoch kept (a shrink's new
		 * last chunk, partial; as an unknown chunk's). */
		for (uint64_t k = 0; k < BM_CHUNK && c * BM_CHUNK + k < m->nblocks; k++)
			p[k] = (struct bm_rec){ .epoch = w & W_EPOCH };
		__atomic_store_n(&m->words[c], W_RECS, __ATOMIC_RELEASE);
		bm_note_epoch(m, c, w & W_EPOCH);
		blockmap_touch(m, c * BM_CHUNK);
		return p;
	}
	if (w & W_ZERO) {
		/* Records first, then the word: a crash between leaves the
		 * chunk as it was (zero). */
		for (int k = 0; k < BM_CHUNK; k++) {
			memcpy(p[k].leaf, m->zero_leaf, LEAF_BYTES);
			p[k].epoch = w & W_EPOCH;
			p[k].reserved = 0;
		}
		m->words[c] = W_RECS;
		bm_note_epoch(m, c, w & W_EPOCH);
		return p;
	} else {
		/* Unknown: the records are a hole, all zero (unknown) already. */
	}
	m->words[c] = W_RECS;
	return p;
}

/* ---- cold chunks ---- */

void blockmap_chunk_heat(struct blockmap *m, uint64_t c, const struct bm_rec *recs)
{
	uint64_t e = 0;

	memcpy(m->recs + c * BM_CHUNK, recs, BM_CHUNK_RECS);
	pthread_mutex_lock(&m->newest_lock);
	if (!m->wakes && m->nchunks) {
		void *p = mmap(NULL, m->nchunks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED) {
			m->wakes = p;
			m->wakes_len = m->nchunks;
		}
	}
	pthread_mutex_unlock(&m->newest_lock);
	if (m->wakes && m->wakes[c] < 255)
		m->wakes[c]++; /* chunk C is this thread's alone */
	for (int k = 0; k < BM_CHUNK; k++)
		e = recs[k].epoch > e ? recs[k].epoch : e;
	__atomic_store_n(&m->words[c], W_RECS, __ATOMIC_RELEASE);
	bm_note_epoch(m, c, e);
	blockmap_touch(m, c * BM_CHUNK);
}

/* Whether chunk C may go cold: a whole chunk within the size (the last,
 * partial, keeps its records), every leaf known, newest change E <= UPTO
 * and E + HOLD x 2^(times woken) <= NOW. */
static bool bm_coolable(struct blockmap *m, uint64_t c, uint64_t upto, uint64_t now, uint64_t hold)
{
	static const uint8_t unknown[LEAF_BYTES];
	const struct bm_rec *r = m->recs + c * BM_CHUNK;
	unsigned int woken = m->wakes ? m->wakes[c] : 0;
	uint64_t e, wait = hold << (woken > 20 ? 20 : woken);

	if (blockmap_chunk_state(m, c, NULL) != BM_RECS || (c + 1) * BM_CHUNK * PROTO_BLOCK > m->size ||
	    (e = blockmap_chunk_newest(m, c)) > upto || e + wait > now)
		return false;
	for (int k = 0; k < BM_CHUNK; k++)
		if (memcmp(r[k].leaf, unknown, LEAF_BYTES) == 0)
			return false;
	return true;
}

int blockmap_cool(struct blockmap *m, uint64_t upto, uint64_t now, uint64_t hold, uint64_t limit,
		  uint64_t *ret_n)
{
	uint64_t lo = UINT64_MAX, hi = 0, c = m->cool_next;

	*ret_n = 0;
	if (!m->nchunks || !limit)
		return 0;
	if (m->n_cooled + limit > m->cooled_cap) {
		uint64_t *p = realloc(m->cooled, (m->n_cooled + limit) * sizeof(*p));
		if (!p)
			return -ENOMEM;
		m->cooled = p;
		m->cooled_cap = m->n_cooled + limit;
	}
	/* The nodes first, durable before any word says cold. */
	for (uint64_t seen = 0; seen < m->nchunks && *ret_n < limit; seen++, c = (c + 1) % m->nchunks) {
		if (c >= m->nchunks)
			c = 0;
		if (!bm_coolable(m, c, upto, now, hold))
			continue;
		blockmap_chunk_node(m, c, m->nodes + c * MERKLE_NODE);
		m->cooled[m->n_cooled + (*ret_n)++] = c;
		lo = c < lo ? c : lo;
		hi = c > hi ? c : hi;
	}
	m->cool_next = c;
	if (!*ret_n)
		return 0;
	{
		uint64_t a = (BM_HDR + m->dir_bytes + lo * MERKLE_NODE) / 4096 * 4096;
		uint64_t b = BM_HDR + m->dir_bytes + (hi + 1) * MERKLE_NODE;
		if (msync(m->base + a, b - a, MS_SYNC) < 0 || fdatasync(m->fd) < 0) {
			*ret_n = 0;
			return err_set(errno, "cannot flush block map %s: %s", m->path, strerror(errno));
		}
	}
	for (uint64_t i = 0; i < *ret_n; i++) {
		uint64_t k = m->cooled[m->n_cooled + i];
		__atomic_store_n(&m->words[k], W_COLD | (blockmap_chunk_newest(m, k) & W_EPOCH), __ATOMIC_RELEASE);
	}
	m->n_cooled += *ret_n;
	return 0;
}

uint64_t blockmap_disk_bytes(const struct blockmap *m)
{
	struct stat st;

	return fstat(m->fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* ---- the digest ---- */

void blockmap_touch(struct blockmap *m, uint64_t b)
{
	if (m->tree_mem)
		merkle_tree_touch(&m->tree, b / MERKLE_FAN);
}

void blockmap_chunk_node(const struct blockmap *m, uint64_t c, uint8_t ret[MERKLE_NODE])
{
	static const uint8_t none[LEAF_BYTES];
	uint8_t leaves[MERKLE_FAN * LEAF_BYTES];
	uint64_t first = c * MERKLE_FAN, n = m->nblocks - first;
	enum bm_state st = blockmap_chunk_state(m, c, NULL);

	if (n > MERKLE_FAN)
		n = MERKLE_FAN;
	if (st == BM_COLD) {
		memcpy(ret, m->nodes + c * MERKLE_NODE, MERKLE_NODE);
		return;
	}
	if (st != BM_RECS && n == MERKLE_FAN) {
		memcpy(ret, st == BM_ZERO ? m->zero_node : m->unknown_node, MERKLE_NODE);
		return;
	}
	for (uint64_t k = 0; k < n; k++)
		memcpy(leaves + k * LEAF_BYTES, st == BM_RECS ? m->recs[first + k].leaf : none, LEAF_BYTES);
	merkle_node(1, leaves, (size_t)n, LEAF_BYTES, ret);
}

/* Level-1 node I from its chunk (zero blocks: all-zero, which the tree
 * reads as its substitute; no page of the tree is written for them). */
static int bm_tree_refresh(void *ctx, struct merkle_tree *t, uint64_t i)
{
	struct blockmap *m = ctx;
	static const uint8_t none[MERKLE_NODE];
	uint8_t node[MERKLE_NODE];

	if (blockmap_chunk_state(m, i, NULL) == BM_ZERO) {
		merkle_tree_set(t, i, none);
		return 0;
	}
	blockmap_chunk_node(m, i, node);
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
		memcpy(m->tree.subst, m->zero_node, MERKLE_NODE);
		m->tree.has_subst = true;
	}
	if (!m->nblocks) {
		merkle_digest(m->size, NULL, ret);
		return 0;
	}
	return merkle_tree_digest(&m->tree, m->size, bm_tree_refresh, m, ret);
}

void blockmap_forget_tree(struct blockmap *m)
{
	bm_tree_drop(m);
}

bool blockmap_has_tree(const struct blockmap *m)
{
	return m->tree_mem != NULL;
}

void blockmap_leaves(const struct blockmap *m, uint64_t first, uint64_t n, uint8_t *ret)
{
	for (uint64_t b = first; b < first + n; b++, ret += LEAF_BYTES) {
		enum bm_state st = b < m->nblocks ? blockmap_chunk_state(m, b / BM_CHUNK, NULL) : BM_UNKNOWN;
		if (st == BM_RECS)
			memcpy(ret, m->recs[b].leaf, LEAF_BYTES);
		else if (st == BM_ZERO)
			memcpy(ret, m->zero_leaf, LEAF_BYTES);
		else
			memset(ret, 0, LEAF_BYTES);
	}
}

void blockmap_set_leaves(struct blockmap *m, uint64_t first, uint64_t n, const uint8_t *leaves,
			 uint64_t epoch)
{
	while (n) {
		uint64_t c = first / BM_CHUNK, k = BM_CHUNK - first % BM_CHUNK;
		bool zero = first % BM_CHUNK == 0 && n >= BM_CHUNK;
		enum bm_state st;
		if (k > n)
			k = n;
		for (uint64_t i = 0; zero && i < k; i++)
			zero = memcmp(leaves + i * LEAF_BYTES, m->zero_leaf, LEAF_BYTES) == 0;
		st = blockmap_chunk_state(m, c, NULL);
		/* Zero leaves over a whole chunk without records: its word says so. */
		if (!zero || !(st == BM_ZERO || (st == BM_UNKNOWN && blockmap_chunk_zero(m, c, epoch)))) {
			struct bm_rec *recs = blockmap_chunk_recs(m, c) + first % BM_CHUNK;
			for (uint64_t i = 0; i < k; i++) {
				memcpy(recs[i].leaf, leaves + i * LEAF_BYTES, LEAF_BYTES);
				recs[i].epoch = epoch;
			}
			blockmap_changed(m, first, epoch);
		}
		first += k;
		n -= k;
		leaves += k * LEAF_BYTES;
	}
}

uint64_t blockmap_count_newer(const struct blockmap *m, uint64_t epoch)
{
	uint64_t n = 0, e;

	for (uint64_t c = 0; c < m->nchunks; c++) {
		enum bm_state st = blockmap_chunk_state(m, c, &e);
		uint64_t first = c * BM_CHUNK, k = m->nblocks - first > BM_CHUNK ? BM_CHUNK : m->nblocks - first;
		if (st == BM_ZERO || st == BM_COLD)
			n += e > epoch ? k : 0;
		else if (st == BM_RECS)
			for (uint64_t b = first; b < first + k; b++)
				n += m->recs[b].epoch > epoch;
	}
	return n;
}
