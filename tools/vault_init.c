/* vault_init.c - bascule vault init: check that an s3:// bucket can hold a
 * write-once vault (it exists, Object Lock is enabled, versioning is on,
 * no default retention) and say what is wrong.  It changes nothing: the
 * bucket is the provider's (docs/vault.md, "S3 object storage"). */
#include "cmd.h"
#include "config.h"
#include "err.h"
#include "s3.h"
#include "vault_tool.h"
#include "vstore_s3.h"
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule vault init -c CONFIG [--target NAME] [--no-lock]\n"
		   "       bascule vault init --vault s3://BUCKET/PREFIX --s3-endpoint URL\n"
		   "                          --s3-credentials FILE [--s3-region R] [--s3-ca FILE]\n"
		   "                          [--s3-url-style path|virtual] [--no-lock]\n\n"
		   "Check that the bucket of an s3:// vault is ready: it exists and the credentials\n"
		   "reach it, Object Lock is enabled (it can only be enabled when the bucket is\n"
		   "created), versioning is on, and there is no default retention.  Changes nothing.\n"
		   "--no-lock accepts a bucket without Object Lock (object_lock: none): the vault is\n"
		   "then only as write-once as the credentials.\n"
		   "Exit 0: ready; 1: the bucket does not exist or cannot be reached; 2: usage;\n"
		   "3: the bucket's configuration (no Object Lock, versioning off, a default\n"
		   "retention) or bascule.yaml is wrong; 4: the credentials are refused or unsafe.\n");
}

/* The bucket's settings against what the vault needs; prints what is fine. */
static int check_bucket(struct s3 *s, const char *bucket, bool lock)
{
	char mode[32];
	int enabled, days, versioning, r;

	if ((r = s3_bucket_versioning(s, &versioning)) < 0) {
		if (r == -ENOENT)
			return err_set(ENOENT, "bucket %s does not exist (or this account cannot see it): "
					       "create it with Object Lock enabled (docs/vault.md, \"S3 object "
					       "storage\") or fix the url", bucket);
		return r;
	}
	if ((r = s3_bucket_lock(s, &enabled, mode, sizeof(mode), &days)) < 0)
		return r;
	if (!enabled && lock)
		return err_set(EINVAL, "bucket %s has no Object Lock: anyone holding the credentials could "
				       "delete the vault.  Object Lock can only be enabled when a bucket is "
				       "created: create a new bucket with it (aws s3api create-bucket --bucket NAME "
				       "--object-lock-enabled-for-bucket), or accept this one with --no-lock and "
				       "object_lock: none", bucket);
	if (enabled && *mode)
		return err_set(EINVAL, "bucket %s has a default retention (%s, %d days): remove it (aws s3api "
				       "put-object-lock-configuration --bucket %s --object-lock-configuration "
				       "ObjectLockEnabled=Enabled).  Bascule locks each object itself for what its "
				       "retention needs; a default would also lock what prune must remove",
			       bucket, mode, days, bucket);
	if (versioning != 1)
		return err_set(EINVAL, "bucket %s: versioning is %s: enable it (aws s3api put-bucket-versioning "
				       "--bucket %s --versioning-configuration Status=Enabled); without versions "
				       "an overwrite replaces an object",
			       bucket, versioning < 0 ? "suspended" : "off", bucket);
	printf("bucket %s: Object Lock %s, versioning on, no default retention\n", bucket,
	       enabled ? "enabled" : "NOT enabled (--no-lock)");
	return 0;
}

int cmd_vault_init(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS, { "no-lock", no_argument, NULL, O_NO_LOCK }, { 0 } };
	struct vopts o = { 0 };
	struct vstore_opts so = { 0 };
	struct s3_opts s3o;
	struct s3 *s = NULL;
	char bucket[64], prefix[512];
	bool lock = true;
	int c, r;

	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		if (vopts_parse(&o, c, optarg))
			continue;
		if (c == O_NO_LOCK)
			lock = false;
		else if (c == 'h') {
			usage(stdout);
			return EXIT_OK;
		} else
			return vopts_usage("vault init");
	}
	if (optind != argc)
		return vopts_usage("vault init");
	if ((r = vopts_finish(&o, "vault init")) < 0)
		goto out;
	if (o.tcfg && o.tcfg->object_lock && !strcmp(o.tcfg->object_lock, "none"))
		lock = false;
	if (strncmp(o.url, "s3://", 5) != 0) {
		o.usage = true;
		r = err_set(EINVAL, "vault init prepares s3:// vaults; %s needs nothing (docs/vault.md)", o.url);
		goto out;
	}
	if ((r = vstore_s3_parse_url(o.url, bucket, sizeof(bucket), prefix, sizeof(prefix))) < 0)
		goto out;
	if (!o.s3_endpoint || !o.s3_credentials) {
		o.usage = !o.tcfg;
		r = err_set(EINVAL, "vault init needs the S3 endpoint and credentials: -c CONFIG, or "
				    "--s3-endpoint URL --s3-credentials FILE");
		goto out;
	}
	vopts_store_opts(&o, &so);
	if ((r = vstore_s3_client_opts(&so, &s3o)) < 0 || (r = s3_open(&s3o, bucket, &s)) < 0 ||
	    (r = check_bucket(s, bucket, lock)) < 0)
		goto out;
	printf("requests name the bucket %s\n", s3_virtual_hosted(s) ? "in the host (virtual-hosted: BUCKET.HOST)"
								    : "in the path (path-style: HOST/BUCKET)");
	if (o.tcfg) {
		const char *mode;
		uint64_t secs;
		config_vault_lock(o.tcfg, &mode, &secs);
		if (mode)
			printf("objects will be put with Object Lock %s for %llu days (the longest retention "
			       "span plus lock_margin)\n", mode, (unsigned long long)((secs + 86399) / 86400));
	}
out:
	s3_close(s);
	config_free(o.cfg);
	return r < 0 ? vopts_fail(&o, "vault init", r) : EXIT_OK;
}
