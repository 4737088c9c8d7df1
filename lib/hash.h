/* hash.h - change detection and state digests.
 *
 * Leaves: every 4 KiB block is hashed with XXH3-128 keyed by a per-source
 * secret derived from the site key (fast: ~20 GB/s per core, and an observer
 * without the key learns nothing from a leaf).  Digest (version 2, lib/merkle.h):
 * a Merkle tree over the leaves whose root is what the primary sends with
 * each epoch and the replica recomputes.  Version 1, still checked where a
 * state of the earlier format records it: BLAKE2b-256 over the source size
 * and the ordered array of leaves (hash_digest_*).  docs/design.md, "Hashes". */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "key.h"

#define LEAF_BYTES 16
#define LEAF_SECRET_BYTES 192
#define DIGEST_BYTES 32
#define DIGEST_V1 1 /* flat BLAKE2b over every leaf (states and journals before v2) */
#define DIGEST_V2 2 /* the Merkle tree of lib/merkle.h */

/* Derive the leaf secret of source SOURCE in group GROUP. */
void hash_leaf_secret(const struct site_key *k, const char *group, const char *source,
		      uint8_t ret[LEAF_SECRET_BYTES]);
/* Leaf hash of one block (LEN <= block size; the last block may be short). */
void hash_leaf(const uint8_t secret[LEAF_SECRET_BYTES], const void *data, size_t len,
	       uint8_t ret[LEAF_BYTES]);

struct digest_ctx {
	uint8_t state[384] __attribute__((aligned(64))); /* crypto_generichash_state */
};
void hash_digest_init(struct digest_ctx *c, uint64_t size, uint32_t block_size);
void hash_digest_leaves(struct digest_ctx *c, const uint8_t *leaves, size_t count);
void hash_digest_final(struct digest_ctx *c, uint8_t ret[DIGEST_BYTES]);
/* Hex for messages: the first N bytes. */
void hash_hex(const uint8_t *d, size_t n, char *ret);
