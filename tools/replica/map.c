/* map.c - a replica file and its map of leaf hashes (lib/blockmap.h, the
 * daemon's sparse format: a word per MiB, records only for the MiB that
 * held data): writes that keep both in step, resizing, the conversion of
 * the earlier dense map, and the digest from the map (of either version:
 * lib/merkle.h, merkle_sum).  The replica keeps no change epochs (0). */
#include "store.h"
#include "blockmap.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "merkle.h"
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>

uint64_t nblocks(uint64_t size)
{
	return (size + PROTO_BLOCK - 1) / PROTO_BLOCK;
}

const uint8_t zero_block[PROTO_BLOCK];

/* ---- the map's files, beneath the root (tree.c) ---- */

static int mapfs_open(void *ctx, const char *name)
{
	int fd = tree_open(ctx, name, O_RDWR | O_CREAT, 0600);

	return fd == -ENOENT ? err_set(ENOENT, "cannot open %s/%s", ((struct replica *)ctx)->root, name) : fd;
}

static int mapfs_create(void *ctx, const char *name)
{
	return tree_create(ctx, name, 0600);
}

static int mapfs_rename(void *ctx, const char *from, const char *to)
{
	return tree_rename(ctx, from, to);
}

static int mapfs_fsync_parent(void *ctx, const char *name)
{
	return tree_fsync_parent(ctx, name);
}

static int mapfs_unlink(void *ctx, const char *name)
{
	return tree_unlink(ctx, name);
}

/* ---- the earlier format: BSCRMAP1, a 64-byte header (magic, u64 size BE)
 * and the leaf of every block ---- */

struct rmap1 {
	int fd;
	uint64_t nleaves;
	const uint8_t *zero_leaf;
	uint8_t leaves[BM_CHUNK * LEAF_BYTES];
	struct bm_rec recs[BM_CHUNK];
};

static int rmap1_chunk(void *ctx, uint64_t c, enum bm_state *ret_state, uint64_t *ret_epoch,
		       const struct bm_rec **ret_recs)
{
	struct rmap1 *v = ctx;
	uint64_t first = c * BM_CHUNK, n = v->nleaves > first ? v->nleaves - first : 0;
	ssize_t got;
	bool zero;

	if (n > BM_CHUNK)
		n = BM_CHUNK;
	memset(v->leaves, 0, sizeof(v->leaves));
	if (n && (got = fs_pread_full(v->fd, v->leaves, (size_t)n * LEAF_BYTES, MAP_HDR + first * LEAF_BYTES)) < 0)
		return (int)got;
	zero = n == BM_CHUNK;
	for (uint64_t k = 0; zero && k < n; k++)
		zero = memcmp(v->leaves + k * LEAF_BYTES, v->zero_leaf, LEAF_BYTES) == 0;
	*ret_epoch = 0;
	if (zero) {
		*ret_state = BM_ZERO;
		return 0;
	}
	memset(v->recs, 0, sizeof(v->recs));
	for (uint64_t k = 0; k < BM_CHUNK; k++)
		memcpy(v->recs[k].leaf, v->leaves + k * LEAF_BYTES, LEAF_BYTES);
	*ret_state = BM_RECS;
	*ret_recs = v->recs;
	return 0;
}

/* Open the map REL of a replica file whose zero block hashes to ZERO_LEAF,
 * converting the earlier format first (REL.new, fsync'd, renamed over). */
static int map_open(struct replica *r, const char *rel, const uint8_t *zero_leaf, struct blockmap **ret)
{
	const struct blockmap_fs fs = { mapfs_open, mapfs_create, mapfs_rename, mapfs_fsync_parent, mapfs_unlink, r };
	uint8_t kid[KEY_ID_BYTES], hdr[MAP_HDR];
	struct rmap1 *v = NULL;
	struct stat st;
	int fd, rc = 0;

	key_id(r->key, kid);
	if ((fd = mapfs_open(r, rel)) < 0)
		return fd;
	if (fstat(fd, &st) == 0 && st.st_size >= MAP_HDR && fs_pread_full(fd, hdr, MAP_HDR, 0) == MAP_HDR &&
	    memcmp(hdr, MAP_MAGIC, 8) == 0) {
		if (!(v = calloc(1, sizeof(*v)))) {
			rc = -ENOMEM;
			goto out;
		}
		v->fd = fd;
		v->nleaves = ((uint64_t)st.st_size - MAP_HDR) / LEAF_BYTES;
		v->zero_leaf = zero_leaf;
		rc = blockmap_write(&fs, rel, kid, get_be64(hdr + 8), &(struct blockmap_from){ rmap1_chunk, v, NULL });
		if (rc == 0)
			log_info("%s/%s: map converted to the sparse format", r->root, rel);
	}
out:
	close(fd);
	free(v);
	return rc < 0 ? rc : blockmap_open_fs(&fs, rel, kid, zero_leaf, BLOCKMAP_KEEP, ret);
}

/* ---- a replica file ---- */

static void tf_init(struct replica *r, const char *group, const char *source, struct target_file *tf)
{
	memset(tf, 0, sizeof(*tf));
	tf->fd = -1;
	hash_leaf_secret(r->key, group, source, tf->secret);
	hash_leaf(tf->secret, zero_block, PROTO_BLOCK, tf->zero_leaf);
}

int tf_open(struct replica *r, const char *group, const char *source, bool create,
	    struct target_file *tf)
{
	char path[RPATH];
	int rc;

	memset(tf, 0, sizeof(*tf));
	tf->fd = -1;
	if (!r->key)
		return err_set(ENOKEY, "group %s needs its site key for this (give --key FILE)", group);
	tf_init(r, group, source, tf);
	if ((rc = replica_file(r, path, sizeof(path), group, source)) < 0 ||
	    (create && (rc = tree_mkdir(r, group)) < 0))
		return rc;
	if ((tf->fd = tree_open(r, path, O_RDWR | (create ? O_CREAT : 0), 0600)) < 0) {
		rc = tf->fd;
		tf->fd = -1;
		return rc == -ENOENT ? err_set(ENOENT, "replica %s/%s is missing", r->root, path) : rc;
	}
	if ((rc = fs_fd_size(tf->fd, &tf->size)) < 0)
		return rc;
	if ((rc = gpath(r, path, sizeof(path), group, "%s.map", source)) < 0)
		return rc;
	if (dtree_attach(r, group, source, path, tf))
		return 0;
	if ((rc = map_open(r, path, tf->zero_leaf, &tf->map)) < 0)
		return rc;
	dtree_keep(r, group, source, tf);
	return 0;
}

int tf_create_seed(struct replica *r, const char *group, const char *source, struct target_file *tf)
{
	char f[RPATH], mp[RPATH];
	int rc;

	if (!r->key)
		return err_set(ENOKEY, "group %s needs its site key", group);
	tf_init(r, group, source, tf);
	if ((rc = seed_paths(r, group, source, f, mp, sizeof(f))) < 0 || (rc = tree_mkdir(r, group)) < 0)
		return rc;
	if ((tf->fd = tree_create(r, f, 0600)) < 0) {
		rc = tf->fd;
		tf->fd = -1;
		return rc;
	}
	if ((rc = tree_unlink(r, mp)) < 0 && rc != -ENOENT)
		goto fail;
	if ((rc = map_open(r, mp, tf->zero_leaf, &tf->map)) < 0)
		goto fail;
	return 0;
fail:
	tf_close(tf);
	tree_unlink(r, f);
	return rc;
}

void tf_close(struct target_file *tf)
{
	if (tf->fd >= 0)
		close(tf->fd);
	if (tf->tree)
		dtree_release(tf);
	else
		blockmap_close(tf->map);
	tf->fd = -1;
	tf->map = NULL;
	tf->tree = NULL;
	sodium_memzero(tf->secret, sizeof(tf->secret));
}

/* Whether [OFF, OFF + LEN) of FD is a hole (reads as zeros without being
 * read); *DATA caches where the next data starts. */
static bool tf_hole(int fd, uint64_t off, uint64_t len, uint64_t *data)
{
	if (*data <= off) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA);
		*data = d >= 0 ? (uint64_t)d : errno == ENXIO ? UINT64_MAX : off;
	}
	return *data >= off + len;
}

/* Recompute leaves of blocks [first, first+count) from the replica file
 * (within the map); its holes are not read. */
int tf_rehash(struct target_file *tf, uint64_t first, uint64_t count, uint64_t size)
{
	uint8_t *buf = malloc(BM_CHUNK * PROTO_BLOCK), leaves[BM_CHUNK * LEAF_BYTES];
	uint64_t data = 0;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	while (count) {
		uint64_t n = BM_CHUNK - first % BM_CHUNK, off = first * PROTO_BLOCK;
		size_t want;
		ssize_t got;
		if (n > count)
			n = count;
		want = (size_t)(n * PROTO_BLOCK);
		if (off + want > size)
			want = (size_t)(size - off);
		if (want == BM_CHUNK * PROTO_BLOCK && tf_hole(tf->fd, off, want, &data)) {
			for (uint64_t i = 0; i < n; i++)
				memcpy(leaves + i * LEAF_BYTES, tf->zero_leaf, LEAF_BYTES);
		} else {
			if ((got = fs_pread_full(tf->fd, buf, want, off)) < 0) {
				rc = (int)got;
				break;
			}
			if ((size_t)got < want)
				memset(buf + got, 0, want - (size_t)got);
			for (uint64_t i = 0; i < n; i++) {
				size_t bl = want - i * PROTO_BLOCK > PROTO_BLOCK ? PROTO_BLOCK : want - i * PROTO_BLOCK;
				hash_leaf(tf->secret, buf + i * PROTO_BLOCK, bl, leaves + i * LEAF_BYTES);
			}
		}
		blockmap_set_leaves(tf->map, first, n, leaves, 0);
		first += n;
		count -= n;
	}
	free(buf);
	return rc;
}

/* Write one record into the replica and its leaves into the map.  FINAL_SIZE
 * is the size the file has once the journal is applied: a map that is
 * shorter is grown to it first. */
int tf_write(struct target_file *tf, uint64_t off, uint32_t len, const uint8_t *data,
		    uint64_t final_size)
{
	uint8_t leaves[(PROTO_MAX_EXTENT / PROTO_BLOCK) * LEAF_BYTES];
	uint32_t nb = (len + PROTO_BLOCK - 1) / PROTO_BLOCK;
	int rc;

	if (tf->map->nblocks < nblocks(final_size) && (rc = tf_resize(tf, final_size)) < 0)
		return rc;
	if (data)
		rc = fs_pwrite_full(tf->fd, data, len, off);
	else {
		rc = fallocate(tf->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, len) < 0
			     ? -errno : 0;
		if (rc == -EOPNOTSUPP) {
			rc = 0;
			for (uint32_t o = 0; !rc && o < len; o += PROTO_BLOCK)
				rc = fs_pwrite_full(tf->fd, zero_block,
						    len - o < PROTO_BLOCK ? len - o : PROTO_BLOCK, off + o);
		}
	}
	if (rc < 0)
		return err_set(rc, "cannot write replica: %s", strerror(-rc));
	for (uint32_t i = 0; i < nb; i++) {
		uint64_t bo = off + (uint64_t)i * PROTO_BLOCK;
		size_t bl = PROTO_BLOCK;
		if (bo + bl > final_size)
			bl = (size_t)(final_size - bo);
		if (data || bl < PROTO_BLOCK)
			hash_leaf(tf->secret, data ? data + (size_t)i * PROTO_BLOCK : zero_block, bl,
				  leaves + i * LEAF_BYTES);
		else
			memcpy(leaves + i * LEAF_BYTES, tf->zero_leaf, LEAF_BYTES);
	}
	blockmap_set_leaves(tf->map, off / PROTO_BLOCK, nb, leaves, 0);
	return 0;
}

/* Set the file and map to SIZE (growth reads as zeros) and fix the leaves
 * of the blocks whose content the size change altered: the new ones (holes:
 * a word per MiB) and the old and new last blocks, which may be partial. */
int tf_resize(struct target_file *tf, uint64_t size)
{
	uint64_t old_blocks = tf->map->nblocks, new_blocks = nblocks(size), first;
	int rc;

	if (ftruncate(tf->fd, (off_t)size) < 0)
		return err_set(errno, "cannot resize replica: %s", strerror(errno));
	if ((rc = blockmap_resize(tf->map, size)) < 0)
		return err_wrap(rc, "cannot resize replica map");
	first = new_blocks > old_blocks ? (old_blocks ? old_blocks - 1 : 0) : (new_blocks ? new_blocks - 1 : 0);
	if (new_blocks > first && (rc = tf_rehash(tf, first, new_blocks - first, size)) < 0)
		return rc;
	tf->size = size;
	return 0;
}

int tf_sync(struct target_file *tf)
{
	if (fdatasync(tf->fd) < 0)
		return err_set(errno, "cannot flush replica to disk: %s", strerror(errno));
	return blockmap_sync(tf->map);
}

int tf_digest(struct target_file *tf, uint64_t size, uint8_t dv, uint8_t ret[DIGEST_BYTES])
{
	uint64_t n = nblocks(size), off = 0;
	uint8_t *buf = malloc(1 << 20);
	struct merkle_sum *c = malloc(sizeof(*c));

	if (!buf || !c) {
		free(buf);
		free(c);
		return -ENOMEM;
	}
	merkle_sum_init(c, dv, size);
	while (off < n) {
		size_t k = n - off > (1 << 20) / LEAF_BYTES ? (1 << 20) / LEAF_BYTES : (size_t)(n - off);
		blockmap_leaves(tf->map, off, k, buf);
		merkle_sum_leaves(c, buf, k);
		off += k;
	}
	merkle_sum_final(c, ret);
	free(buf);
	free(c);
	return 0;
}
