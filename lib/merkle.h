/* merkle.h - the digest of a source's state: a Merkle tree over its leaves.
 *
 * Level 0 is the array of 16-byte leaf hashes (one per 4 KiB block, hash.h).
 * A node of level L >= 1 is BLAKE2b-256("bascule node" || L || up to 256
 * consecutive nodes of level L-1); levels are added until one holds a single
 * node, the top.  The digest is BLAKE2b-256("bascule digest v2" || u64 size ||
 * u32 block size || top), or without top for an empty source.  A level-1 node
 * covers 1 MiB of the source, level 2 256 MiB, level 3 64 GiB, level 4 16 TiB.
 *
 * Two ways to compute it, equal by construction (tests/unit/test_merkle.c):
 * merkle_stream from the leaves in order (verification, rebuilds), and
 * merkle_tree, which keeps every interior node and recomputes only the
 * ancestors of the level-1 nodes changed since the last root: an epoch
 * costs O(changed MiB x log n).  docs/design.md, "Hashes". */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hash.h"

#define MERKLE_FAN 256
#define MERKLE_NODE DIGEST_BYTES
#define MERKLE_MAX_LEVELS 8 /* 2^50 bytes / 4 KiB = 2^38 leaves: 5 levels */

/* Interior levels above NLEAVES leaves (0 for none) and nodes on level L. */
int merkle_levels(uint64_t nleaves);
uint64_t merkle_count(uint64_t nleaves, int level);
/* Node of level LEVEL over N children of CHILD_BYTES each (16 or 32). */
void merkle_node(int level, const uint8_t *children, size_t n, size_t child_bytes,
		 uint8_t ret[MERKLE_NODE]);
/* The digest from the top node (NULL when SIZE is 0). */
void merkle_digest(uint64_t size, const uint8_t *top, uint8_t ret[DIGEST_BYTES]);

/* Streaming: every leaf of a SIZE-byte source, in order. */
struct merkle_stream {
	uint64_t size, fed, nleaves;
	int levels;
	uint32_t fill[MERKLE_MAX_LEVELS + 1];
	uint8_t buf[MERKLE_MAX_LEVELS + 1][MERKLE_FAN * MERKLE_NODE];
};
void merkle_stream_init(struct merkle_stream *s, uint64_t size);
void merkle_stream_leaves(struct merkle_stream *s, const uint8_t *leaves, size_t count);
/* Leaves not fed count as all-zero bytes. */
void merkle_stream_final(struct merkle_stream *s, uint8_t ret[DIGEST_BYTES]);

/* Cached tree over one region of memory the caller provides (anonymous, or
 * a file mapping to keep it): merkle_tree_bytes(NLEAVES) bytes laid out as a
 * bitmap of the stale level-1 nodes (their ancestors must be recomputed),
 * then the nodes of levels 1, 2, ... top.  A level-1 node never set is all
 * zero (in an anonymous or sparse mapping it costs no memory) and reads as
 * SUBST when has_subst (the node of a MiB of zero blocks), else as itself. */
struct merkle_tree {
	uint64_t nleaves;
	int levels;
	uint64_t count[MERKLE_MAX_LEVELS + 1];
	uint8_t *node[MERKLE_MAX_LEVELS + 1]; /* node[L], L = 1..levels */
	uint64_t *stale;                      /* bit per level-1 node */
	uint8_t subst[MERKLE_NODE];
	bool has_subst;
};
uint64_t merkle_tree_bytes(uint64_t nleaves);
/* Use MEM (merkle_tree_bytes(NLEAVES), as left by a previous user or all
 * zero); FRESH: nothing in it is trusted, every level is recomputed at the
 * next digest (the level-1 nodes are the caller's to set). */
void merkle_tree_attach(struct merkle_tree *t, uint64_t nleaves, uint8_t *mem, bool fresh);
/* Level-1 node I: set it, read it, tell whether it was ever set. */
void merkle_tree_set(struct merkle_tree *t, uint64_t i, const uint8_t node[MERKLE_NODE]);
const uint8_t *merkle_tree_get(const struct merkle_tree *t, uint64_t i);
bool merkle_tree_isset(const struct merkle_tree *t, uint64_t i);
/* Mark level-1 node I stale without changing it (its leaves are the
 * caller's; merkle_tree_digest's REFRESH callback recomputes it).  Safe to
 * call from several threads at once (an atomic OR), not during a digest. */
void merkle_tree_touch(struct merkle_tree *t, uint64_t i);
/* Recompute the stale nodes and return the digest of a SIZE-byte source.
 * REFRESH, when given, is called first for each stale level-1 node to set
 * it from its leaves (it returns 0 or a negative errno, which is returned). */
int merkle_tree_digest(struct merkle_tree *t, uint64_t size,
		       int (*refresh)(void *ctx, struct merkle_tree *t, uint64_t i), void *ctx,
		       uint8_t ret[DIGEST_BYTES]);

/* The digest of either version from the leaves in order, for what must
 * still check states recorded before the tree (DIGEST_V1: hash.h's flat
 * BLAKE2b over every leaf) as well as new ones (DIGEST_V2: the tree above).
 * VERSION is one of the two (anything else reads as DIGEST_V2). */
struct merkle_sum {
	uint8_t version;
	struct digest_ctx flat;
	struct merkle_stream tree;
};
void merkle_sum_init(struct merkle_sum *s, uint8_t version, uint64_t size);
void merkle_sum_leaves(struct merkle_sum *s, const uint8_t *leaves, size_t count);
void merkle_sum_final(struct merkle_sum *s, uint8_t ret[DIGEST_BYTES]);
