/* blockmap.h - the persisted change-tracking map of one source.
 *
 * One 32-byte record per 4 KiB block: the block's keyed leaf hash at the last
 * scan and the epoch in which it last changed.  The file is mmap'd, so the
 * daemon's resident memory stays bounded whatever the disk size (the kernel
 * pages the map in and out).  A target that has epoch A lacks exactly the
 * blocks whose change epoch is > A: this is each target's out-of-sync set. */
#pragma once
#include <stdint.h>
#include "hash.h"
#include "merkle.h"

struct bm_rec {
	uint8_t leaf[LEAF_BYTES]; /* all zero: unknown, treated as changed */
	uint64_t epoch;           /* epoch in which the block last changed */
	uint64_t reserved;
};

struct blockmap {
	int fd;
	char path[4096];
	uint8_t *base;
	size_t map_len;
	struct bm_rec *recs;
	uint64_t nblocks;
	uint64_t size;
	/* The digest's cached tree (lib/merkle.h), anonymous memory: built
	 * from the leaves at the first digest, then only the level-1 nodes
	 * touched since are recomputed. */
	struct merkle_tree tree;
	uint8_t *tree_mem;
	size_t tree_len;
};

/* Open or create PATH for a source whose leaves are keyed by KEY_ID; a map
 * made under another key is reset (every block becomes unknown). */
int blockmap_open(const char *path, const uint8_t key_id[KEY_ID_BYTES], struct blockmap **ret);
void blockmap_close(struct blockmap *m);
/* Follow the source to SIZE bytes: new blocks are unknown. */
int blockmap_resize(struct blockmap *m, uint64_t size);
/* Make every change durable (msync + fsync). */
int blockmap_sync(struct blockmap *m);
/* Block B's leaf changed: its MiB of the tree is recomputed at the next
 * digest.  Thread-safe (scan workers call it at once). */
void blockmap_touch(struct blockmap *m, uint64_t b);
/* The digest (DIGEST_V2) of the source as the map describes it: the first
 * call costs every leaf, later ones the MiB touched since (x log n).
 * 0 or a negative errno with a sentence. */
int blockmap_digest(struct blockmap *m, uint8_t ret[DIGEST_BYTES]);
/* Number of blocks whose change epoch is greater than EPOCH. */
uint64_t blockmap_count_newer(const struct blockmap *m, uint64_t epoch);
