/* s3tool - drive lib/s3.c from the tests (tests/e2e/s3store.sh):
 *   s3tool mkbucket lock|nolock
 *   s3tool put KEY FILE [MODE SECONDS]   print the version id
 *   s3tool get KEY [VERSION]             the body on stdout
 *   s3tool head KEY                      print the size
 *   s3tool del KEY [VERSION]
 *   s3tool ls PREFIX                     "KEY VERSION SIZE latest|old|marker" lines
 *   s3tool ret-get KEY VERSION           "MODE UNTIL_EPOCH"
 *   s3tool ret-put KEY VERSION MODE SECONDS
 *   s3tool lock                          "enabled=N mode=M days=D"
 *   s3tool versioning                    1, 0 or -1
 *   s3tool raw METHOD KEY|- QUERY [BODYFILE]   print the HTTP status
 * Environment: S3_ENDPOINT, S3_BUCKET, S3_CREDENTIALS, S3_CA, S3_REGION,
 * S3_PART_MIB, S3_RETRIES, S3_URL_STYLE (path, virtual).  Exit 0, or 1 with the error's sentence (and
 * err_exit_code's code). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "err.h"
#include "fsutil.h"
#include "s3.h"

static int ls_cb(void *ctx, const struct s3_version *v)
{
	printf("%s %s %llu %s\n", v->key, v->version_id, (unsigned long long)v->size,
	       v->delete_marker ? "marker" : v->is_latest ? "latest" : "old");
	return 0;
}

static int die(int r)
{
	fprintf(stderr, "s3tool: %s\n", err_msg(r));
	return err_exit_code(r);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: s3tool COMMAND ARGS (see the source)\n");
		return 2;
	}
	const char *part = getenv("S3_PART_MIB"), *retries = getenv("S3_RETRIES");
	struct s3_opts o = { .endpoint = getenv("S3_ENDPOINT"), .credentials = getenv("S3_CREDENTIALS"),
			     .ca_file = getenv("S3_CA"), .region = getenv("S3_REGION"),
			     .part_size = part ? strtoull(part, NULL, 10) << 20 : 0,
			     .retries = retries ? atoi(retries) : 0 };
	struct s3 *s;
	int r = o.url_style = s3_url_style(getenv("S3_URL_STYLE"));
	if (r < 0 || (r = s3_open(&o, getenv("S3_BUCKET"), &s)) < 0)
		return die(r);
	const char *c = argv[1];
	char vid[300] = "", mode[32];
	if (!strcmp(c, "mkbucket") && argc == 3) {
		r = s3_bucket_create(s, !strcmp(argv[2], "lock"));
	} else if (!strcmp(c, "put") && (argc == 4 || argc == 6)) {
		char *data;
		size_t n;
		struct s3_lock l = { 0 };
		if (argc == 6) {
			l.mode = argv[4];
			l.retain_until = time(NULL) + atoll(argv[5]);
		}
		if ((r = fs_read_all(argv[3], (size_t)1 << 30, &data, &n)) == 0) {
			r = s3_put(s, argv[2], data, n, argc == 6 ? &l : NULL, vid, sizeof(vid));
			free(data);
			if (r == 0)
				printf("%s\n", vid);
		}
	} else if (!strcmp(c, "get") && (argc == 3 || argc == 4)) {
		uint8_t *b;
		size_t n;
		if ((r = s3_get(s, argv[2], argc == 4 ? argv[3] : NULL, (size_t)1 << 30, &b, &n)) == 0) {
			fwrite(b, 1, n, stdout);
			free(b);
		}
	} else if (!strcmp(c, "head") && argc == 3) {
		uint64_t size;
		if ((r = s3_head(s, argv[2], NULL, &size, NULL)) == 0)
			printf("%llu\n", (unsigned long long)size);
	} else if (!strcmp(c, "del") && (argc == 3 || argc == 4)) {
		r = s3_delete(s, argv[2], argc == 4 ? argv[3] : NULL);
	} else if (!strcmp(c, "ls") && argc == 3) {
		r = s3_list_versions(s, argv[2], ls_cb, NULL);
	} else if (!strcmp(c, "ret-get") && argc == 4) {
		time_t until;
		if ((r = s3_retention_get(s, argv[2], argv[3], mode, sizeof(mode), &until)) == 0)
			printf("%s %lld\n", *mode ? mode : "-", (long long)until);
	} else if (!strcmp(c, "ret-put") && argc == 6) {
		struct s3_lock l = { .mode = argv[4], .retain_until = time(NULL) + atoll(argv[5]) };
		r = s3_retention_put(s, argv[2], argv[3], &l);
	} else if (!strcmp(c, "lock") && argc == 2) {
		int en, days;
		if ((r = s3_bucket_lock(s, &en, mode, sizeof(mode), &days)) == 0)
			printf("enabled=%d mode=%s days=%d\n", en, *mode ? mode : "-", days);
	} else if (!strcmp(c, "versioning") && argc == 2) {
		int st;
		if ((r = s3_bucket_versioning(s, &st)) == 0)
			printf("%d\n", st);
	} else if (!strcmp(c, "raw") && (argc == 5 || argc == 6)) {
		char *data = NULL;
		size_t n = 0;
		if (argc == 6 && (r = fs_read_all(argv[5], (size_t)1 << 20, &data, &n)) < 0)
			return die(r);
		long st = s3_raw(s, argv[2], strcmp(argv[3], "-") ? argv[3] : NULL, argv[4], data, n);
		free(data);
		if (st < 0)
			r = (int)st;
		else
			printf("%ld\n", st);
	} else {
		fprintf(stderr, "s3tool: bad command line\n");
		r = -EINVAL;
	}
	s3_close(s);
	return r < 0 ? die(r) : 0;
}
