/* vaultput - bench helper: upload SIZE MiB of random data to a vault store
 * as 8 MiB objects through vstore_put (the daemon's SFTP path: libssh2,
 * exclusive create, one large write call per object so libssh2 pipelines,
 * fsync), then print MB/s.  With PARALLEL > 1, through a vstore_pool of
 * that many SSH connections (the vault writer's `parallel:` path).
 *   vaultput URL IDENTITY KNOWN_HOSTS SIZE_MIB [PARALLEL] */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"
#include "err.h"
#include "vstore.h"
#include "vstore_pool.h"

int main(int argc, char **argv)
{
	struct vstore_opts o = { 0 };
	struct vstore *v = NULL;
	struct vstore_pool *pool = NULL;
	unsigned par = argc == 6 ? (unsigned)strtoul(argv[5], NULL, 10) : 1;
	uint64_t a, b;
	size_t obj = 8u << 20, n;
	unsigned char *buf;
	int r;

	if ((argc != 5 && argc != 6) || sodium_init() < 0) {
		fprintf(stderr, "usage: vaultput URL IDENTITY KNOWN_HOSTS SIZE_MIB [PARALLEL]\n");
		return 2;
	}
	o.identity = argv[2];
	o.known_hosts = argv[3];
	n = strtoull(argv[4], NULL, 10) / 8;
	buf = malloc(obj);
	randombytes_buf(buf, obj);
	if ((r = par > 1 ? vstore_pool_open(argv[1], &o, par, NULL, NULL, &pool) : vstore_open(argv[1], &o, &v)) < 0) {
		fprintf(stderr, "vaultput: %s\n", err_msg(r));
		return 1;
	}
	a = clock_mono_usec();
	for (size_t i = 0; i < n; i++) {
		char name[64];
		buf[0] = (unsigned char)i;
		buf[1] = (unsigned char)(i >> 8);
		randombytes_buf(buf + 2, 14);
		snprintf(name, sizeof(name), "bench/%02x%02x%02x%02x", buf[2], buf[3], buf[4], buf[5]);
		if (pool) {
			unsigned char *c = malloc(obj);
			if (!c)
				return 1;
			memcpy(c, buf, obj);
			r = vstore_pool_put(pool, name, c, obj, NULL);
		} else
			r = vstore_put(v, name, buf, obj);
		if (r < 0) {
			fprintf(stderr, "vaultput: %s\n", err_msg(r));
			return 1;
		}
	}
	if (pool && (r = vstore_pool_drain(pool)) < 0) {
		fprintf(stderr, "vaultput: %s\n", err_msg(r));
		return 1;
	}
	b = clock_mono_usec();
	printf("%.1f\n", (double)(n * obj) / ((double)(b - a) / 1e6) / 1e6);
	vstore_close(v);
	vstore_pool_close(pool);
	free(buf);
	return 0;
}
