/* driver.c - runs a libFuzzer-style harness without libFuzzer: every file
 * given on the command line, then N random mutations of the seed files
 * (deterministic: seeded).  Built with gcc and the sanitizers for CI;
 * `make fuzz` builds the same harnesses with clang -fsanitize=fuzzer.
 *   fuzz_X [-n ITERATIONS] [-s SEED] FILE... */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	long iterations = 20000;
	uint8_t *seeds[64];
	size_t lens[64], n = 0;
	int i;

	rng = 0x9e3779b97f4a7c15ULL;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			iterations = atol(argv[++i]);
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			rng = strtoull(argv[++i], NULL, 0) | 1;
		else if (n < 64 && (seeds[n] = slurp(argv[i], &lens[n])))
			LLVMFuzzerTestOneInput(seeds[n], lens[n]), n++;
	}
	if (!n) {
		seeds[n] = calloc(1, 1);
		lens[n++] = 0;
	}
	for (long it = 0; it < iterations; it++) {
		size_t k = next() % n, len = lens[k] + (next() % 4 == 0 ? next() % 64 : 0);
		uint8_t *buf = malloc(len + 1);
		memcpy(buf, seeds[k], lens[k]);
		for (size_t j = lens[k]; j < len; j++)
			buf[j] = (uint8_t)next();
		/* a few byte flips, a truncation now and then */
		for (int m = (int)(next() % 8); m >= 0 && len; m--)
			buf[next() % len] ^= (uint8_t)(1u << (next() % 8));
		if (len && next() % 5 == 0)
			len = next() % len;
		LLVMFuzzerTestOneInput(buf, len);
		free(buf);
	}
	printf("%ld inputs, no crash\n", iterations + (long)n);
	for (size_t k = 0; k < n; k++)
		free(seeds[k]);
	return 0;
}
