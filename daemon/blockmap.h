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
};

/* Open or create PATH for a source whose leaves are keyed by KEY_ID; a map
 * made under another key is reset (every block becomes unknown). */
int blockmap_open(const char *path, const uint8_t key_id[KEY_ID_BYTES], struct blockmap **ret);
void blockmap_close(struct blockmap *m);
/* Follow the source to SIZE bytes: new blocks are unknown. */
int blockmap_resize(struct blockmap *m, uint64_t size);
/* Make every change durable (msync + fsync). */
int blockmap_sync(struct blockmap *m);
/* The digest of the source as the map describes it. */
void blockmap_digest(const struct blockmap *m, uint8_t ret[DIGEST_BYTES]);
/* Number of blocks whose change epoch is greater than EPOCH. */
uint64_t blockmap_count_newer(const struct blockmap *m, uint64_t epoch);
