/* fuzz_vault - the parsers of what a vault provider hands back: manifests
 * (public part, and the sealed private part once opened, its PostgreSQL
 * entries too) and index objects.  Signatures and AEAD would stop mutated bytes at the door, so
 * the harness signs and seals the fuzzed payloads with a fixed key first:
 * the parsers behind the checks get the arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "vault.h"
#include "vpg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vkeys k;
	static int init;
	struct vmanifest m;
	struct vpacks packs = { 0 };
	struct vmap map = { 0 };
	struct wbuf w;
	crypto_sign_state st;
	size_t split = size ? data[0] % (size + 1) : 0;

	if (!init) {
		struct vault_key vk;
		if (sodium_init() < 0)
			abort();
		memset(vk.master, 7, sizeof(vk.master));
		vault_keys(&vk, &k);
		vault_max_source = 64u << 20; /* maps of arbitrary sizes would only test malloc */
		init = 1;
	}
	/* 0. the PostgreSQL part of a manifest's private part (lib/vpg.c) */
	{
		struct rbuf b = rbuf_init(data, size);
		struct vman_pg *pg;
		uint32_t n;
		if (vpg_decode(&b, &pg, &n) == 0)
			vpg_free(pg, n);
	}
	/* 1. arbitrary bytes, as stored */
	if (vault_manifest_decode(k.pk, &k, data, size, &m) == 0)
		vault_manifest_free(&m);
	{
		/* what restore reads of a manifest that failed its check */
		uint8_t series[16];
		uint64_t epoch, cut;
		(void)vault_manifest_peek(data, size, series, &epoch, &cut);
	}
	if (vault_index_apply(&k, data, size, &packs, &map) == 0)
		vmap_free(&map);
	/* 2. a signed manifest whose public and sealed parts are the input */
	wbuf_init(&w, 1u << 24);
	wbuf_put_bytes(&w, "BSCVMAN1", 8);
	wbuf_put_u32(&w, (uint32_t)split);
	wbuf_put_bytes(&w, data, split);
	{
		uint8_t nonce[24] = { 0 }, *c = malloc(size - split + 64);
		unsigned long long clen;
		uint8_t *pt = malloc(size - split + 4);
		put_be32(pt, (uint32_t)(size - split));
		memcpy(pt + 4, data + split, size - split);
		crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, pt, size - split + 4, w.p, w.len, NULL,
							   nonce, k.manifest);
		wbuf_put_u32(&w, (uint32_t)(clen + 24));
		wbuf_put_bytes(&w, nonce, 24);
		wbuf_put_bytes(&w, c, clen);
		free(c);
		free(pt);
	}
	wbuf_reserve(&w, 64);
	crypto_sign_init(&st);
	crypto_sign_update(&st, (const uint8_t *)"bascule-vault-manifest-v1", 26);
	crypto_sign_update(&st, w.p, w.len);
	crypto_sign_final_create(&st, w.p + w.len, NULL, k.sk);
	w.len += 64;
	if (vault_manifest_decode(k.pk, &k, w.p, w.len, &m) == 0)
		vault_manifest_free(&m);
	/* 3. a sealed index whose compressed payload is the input */
	wbuf_reset(&w);
	{
		size_t zc = ZSTD_compressBound(size);
		uint8_t *z = malloc(zc + 4), nonce[24] = { 0 }, *c;
		unsigned long long clen;
		zc = ZSTD_compress(z + 4, zc, data, size, 1);
		put_be32(z, (uint32_t)zc);
		c = malloc(zc + 4 + 16);
		crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, z, zc + 4, (const uint8_t *)"bscv-index-v1",
							   14, NULL, nonce, k.data);
		wbuf_put_bytes(&w, nonce, 24);
		wbuf_put_bytes(&w, c, clen);
		if (vault_index_apply(&k, w.p, w.len, &packs, &map) == 0)
			vmap_free(&map);
		free(z);
		free(c);
	}
	vmap_free(&map);
	vpacks_free(&packs);
	wbuf_free(&w);
	return 0;
}
