/* fuzz_intake - the decoder of hybrid-PRA manifests (lib/intake.c), what an
 * operator reads from a client's intake directory.  A signature would stop
 * mutated bytes at the door, so besides the raw input the harness signs it
 * with a fixed client key first: the field parser behind the check gets
 * the arbitrary bytes (the body after the magic and length field). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "intake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	static int init;
	struct intake_manifest m;
	struct wbuf w;

	if (!init) {
		uint8_t seed[32];
		if (sodium_init() < 0)
			abort();
		memset(seed, 9, sizeof(seed));
		crypto_sign_seed_keypair(pk, sk, seed);
		init = 1;
	}
	/* 1. arbitrary bytes, as stored */
	if (intake_manifest_decode(pk, data, size, &m) == 0)
		intake_manifest_free(&m);
	/* 2. the input as the signed body of a manifest */
	if (size > INTAKE_MANIFEST_MAX - 128)
		return 0;
	wbuf_init(&w, INTAKE_MANIFEST_MAX);
	wbuf_put_bytes(&w, INTAKE_MAGIC, 8);
	wbuf_put_u32(&w, (uint32_t)(8 + 4 + size + crypto_sign_BYTES));
	wbuf_put_bytes(&w, data, size);
	if (wbuf_reserve(&w, crypto_sign_BYTES) == 0) {
		crypto_sign_detached(w.p + w.len, NULL, w.p, w.len, sk);
		w.len += crypto_sign_BYTES;
		if (intake_manifest_decode(pk, w.p, w.len, &m) == 0) {
			struct intake_secret s;
			(void)intake_manifest_expect(&m, "mairie", "2026-12-02");
			(void)intake_secret_open(&m, pk, sk, &s);
			intake_manifest_free(&m);
		}
	}
	wbuf_free(&w);
	return 0;
}
