/* map.c - a replica file and its map (the leaf hash of every 4 KiB block):
 * writes that keep both in step, resizing, and the digest from the map (of
 * either version: lib/merkle.h, merkle_sum). */
#include "store.h"
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

int tf_open(struct replica *r, const char *group, const char *source, bool create,
	    struct target_file *tf)
{
	char path[RPATH];
	int rc;

	memset(tf, 0, sizeof(*tf));
	tf->fd = tf->map_fd = -1;
	if (!r->key)
		return err_set(ENOKEY, "group %s needs its site key for this (give --key FILE)", group);
	hash_leaf_secret(r->key, group, source, tf->secret);
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
	if ((tf->map_fd = tree_open(r, path, O_RDWR | O_CREAT, 0600)) < 0) {
		rc = tf->map_fd;
		tf->map_fd = -1;
		return rc == -ENOENT ? err_set(ENOENT, "cannot open %s/%s", r->root, path) : rc;
	}
	dtree_attach(r, group, source, tf);
	return 0;
}

void tf_close(struct target_file *tf)
{
	if (tf->fd >= 0)
		close(tf->fd);
	if (tf->map_fd >= 0)
		close(tf->map_fd);
	tf->fd = tf->map_fd = -1;
	tf->tree = NULL;
	sodium_memzero(tf->secret, sizeof(tf->secret));
}

const uint8_t zero_block[PROTO_BLOCK];

/* Recompute leaves of blocks [first, first+count) from the replica file. */
int tf_rehash(struct target_file *tf, uint64_t first, uint64_t count, uint64_t size)
{
	uint8_t *buf = malloc(256 * PROTO_BLOCK), leaves[256 * LEAF_BYTES];
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	dtree_touch(tf, first, count);
	while (count) {
		uint64_t n = count > 256 ? 256 : count, off = first * PROTO_BLOCK;
		size_t want = (size_t)(n * PROTO_BLOCK);
		ssize_t got;
		if (off + want > size)
			want = (size_t)(size - off);
		got = fs_pread_full(tf->fd, buf, want, off);
		if (got < 0) {
			rc = (int)got;
			break;
		}
		if ((size_t)got < want)
			memset(buf + got, 0, want - (size_t)got);
		for (uint64_t i = 0; i < n; i++) {
			size_t bl = want - i * PROTO_BLOCK > PROTO_BLOCK ? PROTO_BLOCK : want - i * PROTO_BLOCK;
			hash_leaf(tf->secret, buf + i * PROTO_BLOCK, bl, leaves + i * LEAF_BYTES);
		}
		rc = fs_pwrite_full(tf->map_fd, leaves, (size_t)n * LEAF_BYTES,
				    MAP_HDR + first * LEAF_BYTES);
		if (rc < 0)
			break;
		first += n;
		count -= n;
	}
	free(buf);
	return rc;
}

/* Write one record into the replica and its leaves into the map.  FINAL_SIZE
 * is the size the file has once the journal is applied. */
int tf_write(struct target_file *tf, uint64_t off, uint32_t len, const uint8_t *data,
		    uint64_t final_size)
{
	uint8_t leaves[(PROTO_MAX_EXTENT / PROTO_BLOCK) * LEAF_BYTES];
	uint32_t nb = (len + PROTO_BLOCK - 1) / PROTO_BLOCK;
	int rc;

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
		hash_leaf(tf->secret, data ? data + (size_t)i * PROTO_BLOCK : zero_block, bl,
			  leaves + i * LEAF_BYTES);
	}
	dtree_touch(tf, off / PROTO_BLOCK, nb);
	rc = fs_pwrite_full(tf->map_fd, leaves, (size_t)nb * LEAF_BYTES,
			    MAP_HDR + (off / PROTO_BLOCK) * LEAF_BYTES);
	return rc < 0 ? err_set(rc, "cannot write replica map: %s", strerror(-rc)) : 0;
}

/* Set the file and map to SIZE (growth reads as zeros) and fix the leaves
 * of the blocks whose content the size change altered. */
int tf_resize(struct target_file *tf, uint64_t size)
{
	uint64_t old_blocks, new_blocks;
	uint8_t hdr[MAP_HDR] = { 0 };
	struct stat st;
	int rc;

	if (fstat(tf->map_fd, &st) < 0)
		return -errno;
	old_blocks = st.st_size > MAP_HDR ? ((uint64_t)st.st_size - MAP_HDR) / LEAF_BYTES : 0;
	new_blocks = nblocks(size);
	if (size != tf->size || new_blocks != old_blocks)
		dtree_forget(tf);
	if (ftruncate(tf->fd, (off_t)size) < 0)
		return err_set(errno, "cannot resize replica: %s", strerror(errno));
	if (ftruncate(tf->map_fd, (off_t)(MAP_HDR + new_blocks * LEAF_BYTES)) < 0)
		return err_set(errno, "cannot resize replica map: %s", strerror(errno));
	memcpy(hdr, MAP_MAGIC, 8);
	put_be64(hdr + 8, size);
	if ((rc = fs_pwrite_full(tf->map_fd, hdr, sizeof(hdr), 0)) < 0)
		return rc;
	/* New blocks read as zeros; the old and new last blocks may be partial. */
	if (new_blocks > old_blocks) {
		uint64_t first = old_blocks ? old_blocks - 1 : 0;
		if ((rc = tf_rehash(tf, first, new_blocks - first, size)) < 0)
			return rc;
	} else if (new_blocks) {
		if ((rc = tf_rehash(tf, new_blocks - 1, 1, size)) < 0)
			return rc;
	}
	tf->size = size;
	return 0;
}

int tf_sync(struct target_file *tf)
{
	if (fdatasync(tf->fd) < 0 || fdatasync(tf->map_fd) < 0)
		return err_set(errno, "cannot flush replica to disk: %s", strerror(errno));
	return 0;
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
		if (fs_pread_full(tf->map_fd, buf, k * LEAF_BYTES, MAP_HDR + off * LEAF_BYTES) !=
		    (ssize_t)(k * LEAF_BYTES)) {
			free(buf);
			free(c);
			return err_set(EIO, "replica map is short");
		}
		merkle_sum_leaves(c, buf, k);
		off += k;
	}
	merkle_sum_final(c, ret);
	free(buf);
	free(c);
	return 0;
}
