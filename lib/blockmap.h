/* blockmap.h - the persisted change-tracking map of one source.
 *
 * One 32-byte record per 4 KiB block (the block's keyed leaf hash at the
 * last scan and the epoch in which it last changed), but only for the MiB
 * chunks that ever held data: each MiB of the source has a chunk word that
 * says "never seen", "zero blocks only, since epoch E" (no records: they
 * cost nothing, in memory or on disk) or "records".  The file is mmap'd and
 * sparse: the records of a chunk are written (and paged) only once it holds
 * data, so a 256 GiB image with 2 GiB written costs ~16 MiB, not 2 GiB.
 * A target that has epoch A lacks exactly the blocks whose change epoch is
 * > A: this is each target's out-of-sync set.  Format: docs/design.md. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "hash.h"
#include "merkle.h"

#define BM_CHUNK 256 /* blocks per chunk word: 1 MiB, one level-1 node of the digest tree */

struct bm_rec {
	uint8_t leaf[LEAF_BYTES]; /* all zero: unknown, treated as changed */
	uint64_t epoch;           /* epoch in which the block last changed */
	uint64_t reserved;
};

enum bm_state { BM_UNKNOWN, BM_ZERO, BM_RECS };

struct blockmap {
	int fd;
	char path[4096];
	uint8_t *base;
	size_t map_len;
	uint64_t *words;          /* one per chunk */
	struct bm_rec *recs;      /* nblocks slots; only BM_RECS chunks' are written */
	uint64_t nblocks, nchunks;
	uint64_t size;
	uint64_t dir_bytes;       /* room of the chunk words (page multiple) */
	uint8_t zero_leaf[LEAF_BYTES]; /* the leaf of a 4 KiB zero block */
	/* The digest's cached tree (lib/merkle.h), anonymous memory: built
	 * from the leaves at the first digest, then only the level-1 nodes
	 * touched since are recomputed. */
	struct merkle_tree tree;
	uint8_t *tree_mem;
	size_t tree_len;
	uint8_t zero_node[MERKLE_NODE], unknown_node[MERKLE_NODE];
};

/* Open or create PATH for a source whose leaves are keyed by KEY_ID and
 * whose zero block hashes to ZERO_LEAF; a map made under another key is
 * reset (every block becomes unknown).  A map of the previous format
 * (BSCBMAP1, a record for every block) is converted first: into PATH.new,
 * fsync'd, renamed over PATH (a crash leaves one or the other whole). */
int blockmap_open(const char *path, const uint8_t key_id[KEY_ID_BYTES], const uint8_t zero_leaf[LEAF_BYTES],
		  struct blockmap **ret);
void blockmap_close(struct blockmap *m);
/* Follow the source to SIZE bytes: new blocks are unknown. */
int blockmap_resize(struct blockmap *m, uint64_t size);
/* Make every change durable (msync + fsync). */
int blockmap_sync(struct blockmap *m);

/* Chunk C (blocks [C * BM_CHUNK, ...)): its state, and for BM_ZERO the
 * epoch its blocks became zero. */
enum bm_state blockmap_chunk_state(const struct blockmap *m, uint64_t c, uint64_t *ret_epoch);
/* Chunk C was found all zero blocks (a full chunk only, BM_UNKNOWN or
 * BM_ZERO): BM_ZERO since EPOCH.  Returns whether that changed it. */
bool blockmap_chunk_zero(struct blockmap *m, uint64_t c, uint64_t epoch);
/* The records of chunk C, written out first if it had none (BM_ZERO: its
 * zero leaves and epoch; BM_UNKNOWN: unknown).  Chunks of different C may
 * be taken from several threads at once. */
struct bm_rec *blockmap_chunk_recs(struct blockmap *m, uint64_t c);

/* Block B's leaf changed: its MiB of the tree is recomputed at the next
 * digest.  Thread-safe (scan workers call it at once). */
void blockmap_touch(struct blockmap *m, uint64_t b);
/* The digest (DIGEST_V2) of the source as the map describes it: the first
 * call costs every chunk, later ones the MiB touched since (x log n).
 * 0 or a negative errno with a sentence. */
int blockmap_digest(struct blockmap *m, uint8_t ret[DIGEST_BYTES]);
/* Number of blocks whose change epoch is greater than EPOCH. */
uint64_t blockmap_count_newer(const struct blockmap *m, uint64_t epoch);
