/* hash.c - keyed XXH3-128 leaves and BLAKE2b-256 digests. */
#define XXH_INLINE_ALL
#include "hash.h"
#include "buf.h"
#include <sodium.h>
#include <string.h>
#include <xxhash.h>

_Static_assert(sizeof(struct digest_ctx) >= sizeof(crypto_generichash_state),
	       "digest_ctx too small");
_Static_assert(LEAF_SECRET_BYTES >= XXH3_SECRET_SIZE_MIN, "leaf secret too small");

void hash_leaf_secret(const struct site_key *k, const char *group, const char *source,
		      uint8_t ret[LEAF_SECRET_BYTES])
{
	crypto_generichash_state st;
	uint8_t seed[32], idx;

	/* seed = BLAKE2b(key, "leaf" || group || 0 || source), then expanded
	 * to 192 bytes as BLAKE2b(seed, i) for i = 0..2. */
	crypto_generichash_init(&st, k->k, KEY_BYTES, sizeof(seed));
	crypto_generichash_update(&st, (const uint8_t *)"bascule leaf v1", 15);
	crypto_generichash_update(&st, (const uint8_t *)group, strlen(group) + 1);
	crypto_generichash_update(&st, (const uint8_t *)source, strlen(source) + 1);
	crypto_generichash_final(&st, seed, sizeof(seed));
	for (idx = 0; idx < LEAF_SECRET_BYTES / 64; idx++)
		crypto_generichash(ret + 64 * idx, 64, &idx, 1, seed, sizeof(seed));
	sodium_memzero(seed, sizeof(seed));
}

void hash_leaf(const uint8_t secret[LEAF_SECRET_BYTES], const void *data, size_t len,
	       uint8_t ret[LEAF_BYTES])
{
	XXH128_hash_t h = XXH3_128bits_withSecret(data, len, secret, LEAF_SECRET_BYTES);
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, h);
	memcpy(ret, c.digest, LEAF_BYTES);
}

void hash_digest_init(struct digest_ctx *c, uint64_t size, uint32_t block_size)
{
	crypto_generichash_state *st = (crypto_generichash_state *)c->state;
	uint8_t hdr[12];

	put_be64(hdr, size);
	put_be32(hdr + 8, block_size);
	crypto_generichash_init(st, NULL, 0, DIGEST_BYTES);
	crypto_generichash_update(st, (const uint8_t *)"bascule digest v1", 17);
	crypto_generichash_update(st, hdr, sizeof(hdr));
}

void hash_digest_leaves(struct digest_ctx *c, const uint8_t *leaves, size_t count)
{
	crypto_generichash_update((crypto_generichash_state *)c->state, leaves,
				  count * LEAF_BYTES);
}

void hash_digest_final(struct digest_ctx *c, uint8_t ret[DIGEST_BYTES])
{
	crypto_generichash_final((crypto_generichash_state *)c->state, ret, DIGEST_BYTES);
}

void hash_hex(const uint8_t *d, size_t n, char *ret)
{
	sodium_bin2hex(ret, 2 * n + 1, d, n);
}
