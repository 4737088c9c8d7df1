/* vaultput - bench helper: upload SIZE MiB of random data to a vault store
 * as 8 MiB objects (the vault's pack size) through vstore_put (the daemon's
 * path: over SFTP libssh2, exclusive create, one large write call per object
 * so libssh2 pipelines, fsync; over s3:// a HEAD then a locked PUT with its
 * digests), then print MB/s.  With DIR instead of a size, the files of DIR
 * (each read when it is put, as a peer tool reads them), named bench/FILE.
 * With PARALLEL > 1, through a vstore_pool of that many connections (the
 * vault writer's `parallel:` path).
 *   vaultput URL IDENTITY KNOWN_HOSTS SIZE_MIB|DIR [PARALLEL]
 * For s3:// URLs IDENTITY and KNOWN_HOSTS are unused ("-"); the store is
 * S3_ENDPOINT with S3_CREDENTIALS, objects locked (COMPLIANCE) for
 * S3_LOCK_SECONDS if set. */
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"
#include "err.h"
#include "fsutil.h"
#include "vstore.h"
#include "vstore_pool.h"

#define OBJ ((size_t)8 << 20)

/* The next object: the next file of D, or random bytes under a random name. */
static int next_object(DIR *d, const char *dir, size_t i, unsigned char *rnd, char *name, size_t nlen,
		       unsigned char **ret, size_t *ret_len)
{
	if (d) {
		struct dirent *e;
		char path[4096], *data;
		int r;
		while ((e = readdir(d)) && e->d_name[0] == '.')
			;
		if (!e)
			return 0;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		snprintf(name, nlen, "bench/%s", e->d_name);
		if ((r = fs_read_all(path, (size_t)1 << 30, &data, ret_len)) < 0)
			return err_set(r, "%s: %s", path, strerror(-r));
		*ret = (unsigned char *)data;
		return 1;
	}
	rnd[0] = (unsigned char)i;
	rnd[1] = (unsigned char)(i >> 8);
	randombytes_buf(rnd + 2, 14);
	snprintf(name, nlen, "bench/%02x%02x%02x%02x", rnd[2], rnd[3], rnd[4], rnd[5]);
	if (!(*ret = malloc(OBJ)))
		return -ENOMEM;
	memcpy(*ret, rnd, OBJ);
	*ret_len = OBJ;
	return 1;
}

int main(int argc, char **argv)
{
	struct vstore_opts o = { 0 };
	struct vstore *v = NULL;
	struct vstore_pool *pool = NULL;
	unsigned par = argc == 6 ? (unsigned)strtoul(argv[5], NULL, 10) : 1;
	uint64_t a, b, total = 0;
	size_t n;
	unsigned char *rnd;
	DIR *d = NULL;
	int r;

	if ((argc != 5 && argc != 6) || sodium_init() < 0) {
		fprintf(stderr, "usage: vaultput URL IDENTITY KNOWN_HOSTS SIZE_MIB|DIR [PARALLEL]\n");
		return 2;
	}
	o.identity = argv[2];
	o.known_hosts = argv[3];
	o.s3_endpoint = getenv("S3_ENDPOINT");
	o.s3_credentials = getenv("S3_CREDENTIALS");
	if (getenv("S3_LOCK_SECONDS")) {
		o.lock_mode = "COMPLIANCE";
		o.lock_seconds = strtoull(getenv("S3_LOCK_SECONDS"), NULL, 10);
	}
	if (!(d = opendir(argv[4])))
		n = strtoull(argv[4], NULL, 10) / 8;
	else
		n = SIZE_MAX;
	rnd = malloc(OBJ);
	randombytes_buf(rnd, OBJ);
	if ((r = par > 1 ? vstore_pool_open(argv[1], &o, par, NULL, NULL, &pool) : vstore_open(argv[1], &o, &v)) < 0) {
		fprintf(stderr, "vaultput: %s\n", err_msg(r));
		return 1;
	}
	a = clock_mono_usec();
	for (size_t i = 0; i < n; i++) {
		char name[300];
		unsigned char *c = NULL;
		size_t len = 0;
		if ((r = next_object(d, argv[4], i, rnd, name, sizeof(name), &c, &len)) <= 0)
			break;
		total += len;
		if (pool)
			r = vstore_pool_put(pool, name, c, len, NULL);
		else {
			r = vstore_put(v, name, c, len);
			free(c);
		}
		if (r < 0)
			break;
	}
	if (r >= 0 && pool)
		r = vstore_pool_drain(pool);
	if (r < 0) {
		fprintf(stderr, "vaultput: %s\n", err_msg(r));
		return 1;
	}
	b = clock_mono_usec();
	printf("%.1f\n", (double)total / ((double)(b - a) / 1e6) / 1e6);
	if (d)
		closedir(d);
	vstore_close(v);
	vstore_pool_close(pool);
	free(rnd);
	return 0;
}
