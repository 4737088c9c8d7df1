/* hashbench - bench helper: leaf hashing speed of 4 KiB blocks, keyed
 * XXH3-128 (what Bascule uses) against BLAKE2b-128, on one core, over a
 * buffer in memory.  Prints "xxh3 GB/s blake2b GB/s". */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"
#include "hash.h"

static double now(void)
{
	return (double)clock_mono_usec() / 1e6;
}

int main(void)
{
	size_t len = 256u << 20;
	uint8_t *buf = malloc(len), secret[LEAF_SECRET_BYTES], out[16], acc = 0, key[32] = { 1 };
	double t0, t1, t2;

	if (!buf || sodium_init() < 0)
		return 1;
	randombytes_buf(buf, len);
	randombytes_buf(secret, sizeof(secret));
	t0 = now();
	for (int r = 0; r < 4; r++)
		for (size_t o = 0; o < len; o += 4096) {
			hash_leaf(secret, buf + o, 4096, out);
			acc ^= out[0];
		}
	t1 = now();
	for (size_t o = 0; o < len; o += 4096) {
		crypto_generichash(out, 16, buf + o, 4096, key, sizeof(key));
		acc ^= out[0];
	}
	t2 = now();
	printf("%.2f %.2f %u\n", 4.0 * (double)len / (t1 - t0) / 1e9, (double)len / (t2 - t1) / 1e9, acc & 0);
	return 0;
}
