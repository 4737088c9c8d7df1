/* vaultput - bench helper: upload SIZE MiB of random data to a vault store
 * as 8 MiB objects through vstore_put (the daemon's SFTP path: libssh2,
 * exclusive create, one large write call per object so libssh2 pipelines,
 * fsync), then print MB/s.
 *   vaultput URL IDENTITY KNOWN_HOSTS SIZE_MIB */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include "clock.h"
#include "err.h"
#include "vstore.h"

int main(int argc, char **argv)
{
	struct vstore_opts o;
	struct vstore *v;
	uint64_t a, b;
	size_t obj = 8u << 20, n;
	unsigned char *buf;
	int r;

	if (argc != 5 || sodium_init() < 0) {
		fprintf(stderr, "usage: vaultput URL IDENTITY KNOWN_HOSTS SIZE_MIB\n");
		return 2;
	}
	o.identity = argv[2];
	o.known_hosts = argv[3];
	n = strtoull(argv[4], NULL, 10) / 8;
	buf = malloc(obj);
	randombytes_buf(buf, obj);
	if ((r = vstore_open(argv[1], &o, &v)) < 0) {
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
		if ((r = vstore_put(v, name, buf, obj)) < 0) {
			fprintf(stderr, "vaultput: %s\n", err_msg(r));
			return 1;
		}
	}
	b = clock_mono_usec();
	printf("%.1f\n", (double)(n * obj) / ((double)(b - a) / 1e6) / 1e6);
	vstore_close(v);
	free(buf);
	return 0;
}
