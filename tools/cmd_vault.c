/* cmd_vault.c - bascule vault: its subcommands (ls, check, prune; recv is
 * the writer basculed runs) and what they share with bascule restore: the
 * options naming a vault and its keys, and the objects of a listing.
 *
 * ls and check need only the verify key (FILE.pub): the provider can run
 * them.  prune needs the verify key and an account allowed to delete (not
 * the daemon's write-once one).  restore and `check --read-data` need the
 * vault key. */
#include "cmd.h"
#include "err.h"
#include "units.h"
#include "vault_cmd.h"
#include "vault_tool.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int vopts_jobs(const char *arg, const char *cmd, unsigned *ret)
{
	char *end;
	unsigned long n = strtoul(arg, &end, 10);

	if (!*arg || *end || n < 1 || n > 64) {
		fprintf(stderr, "bascule %s: --jobs wants 1 to 64 (connections at once), not '%s'\n", cmd, arg);
		return -EINVAL;
	}
	*ret = (unsigned)n;
	return 0;
}

int vopts_parse(struct vopts *o, int c, const char *arg)
{
	switch (c) {
	case O_URL: o->url = arg; return 1;
	case O_IDENTITY: o->identity = arg; return 1;
	case O_KNOWN: o->known_hosts = arg; return 1;
	case O_VKEY: o->vault_key = arg; return 1;
	case O_PUB: o->verify_key = arg; return 1;
	case O_TARGET: o->target = arg; return 1;
	case O_RECORD: o->record = arg; o->record_given = true; return 1;
	case O_S3_ENDPOINT: o->s3_endpoint = arg; return 1;
	case O_S3_REGION: o->s3_region = arg; return 1;
	case O_S3_CREDENTIALS: o->s3_credentials = arg; return 1;
	case O_S3_CA: o->s3_ca = arg; return 1;
	case O_S3_URL_STYLE: o->s3_url_style = arg; return 1;
	case 'c': arg_global.config = arg; return 1;
	}
	return 0;
}

/* A command line a vault command cannot use (getopt said why). */
int vopts_usage(const char *cmd)
{
	fprintf(stderr, "Usage: see bascule %s --help\n", cmd);
	return EXIT_USAGE;
}

/* The exit code for an error of a vault command: 2 when its options do not
 * say which vault, else from the error. */
int vopts_fail(const struct vopts *o, const char *what, int r)
{
	int code = cmd_fail(what, r);
	return o->usage ? EXIT_USAGE : code;
}

/* Fill what the command line left out from the configuration's vault target. */
int vopts_finish(struct vopts *o, const char *cmd)
{
	int r;

	if (arg_global.config) {
		const struct cfg_target *t = NULL;
		/* The sources' disks need not exist: restore runs where they are lost. */
		if ((r = config_read(arg_global.config, false, &o->cfg)) < 0)
			return r;
		for (size_t i = 0; i < o->cfg->targets.n; i++) {
			const struct cfg_target *x = CFG_TARGET(o->cfg, i);
			if (x->kind == TARGET_VAULT && (!o->target || !strcmp(x->name, o->target))) {
				t = x;
				break;
			}
		}
		if (!t)
			return err_set(EINVAL, "%s has no vault target%s%s", arg_global.config,
				       o->target ? " named " : "", o->target ? o->target : "");
		if (!o->url)
			o->url = t->url;
		if (!o->identity)
			o->identity = t->identity;
		if (!o->known_hosts)
			o->known_hosts = t->known_hosts;
		if (!o->vault_key && !o->verify_key)
			o->vault_key = t->vault_key;
		if (!o->s3_endpoint)
			o->s3_endpoint = t->s3_endpoint;
		if (!o->s3_region)
			o->s3_region = t->s3_region;
		if (!o->s3_credentials)
			o->s3_credentials = t->s3_credentials;
		if (!o->s3_ca)
			o->s3_ca = t->s3_ca;
		if (!o->s3_url_style)
			o->s3_url_style = t->s3_url_style;
		o->tcfg = t;
		if (!o->policy_given)
			o->policy = t->retention.policy;
		/* The vault writer's record of commits (vrecord.h), kept by the daemon. */
		if (!o->record) {
			snprintf(o->record_buf, sizeof(o->record_buf), "%s/vault/%s/%s", o->cfg->state_dir,
				 t->name, VRECORD_FILE);
			o->record = o->record_buf;
		}
	}
	if (!o->url) {
		o->usage = true;
		return err_set(EINVAL, "which vault? give --vault URL (local:DIR, "
				       "sftp://user@host[:port]/DIR or s3://BUCKET/PREFIX) or -c CONFIG; see --help");
	}
	return 0;
}

void vopts_store_opts(const struct vopts *o, struct vstore_opts *ret)
{
	*ret = (struct vstore_opts){ .identity = o->identity, .known_hosts = o->known_hosts,
				     .s3_endpoint = o->s3_endpoint, .s3_region = o->s3_region,
				     .s3_credentials = o->s3_credentials, .s3_ca = o->s3_ca,
				     .s3_url_style = o->s3_url_style };
}

int vopts_store(const struct vopts *o, struct vstore **ret)
{
	struct vstore_opts so;

	vopts_store_opts(o, &so);
	return vstore_open(o->url, &so, ret);
}

/* The verify key: --verify-key FILE.pub, else derived from the vault key. */
int vopts_keys(const struct vopts *o, bool need_secret, uint8_t pk[32], struct vkeys *k, bool *have_k)
{
	struct vault_key *vk = NULL;
	int r;

	*have_k = false;
	if (o->vault_key) {
		if ((r = vaultkey_load(o->vault_key, &vk)) < 0)
			return r;
		vault_keys(vk, k);
		vaultkey_free(vk);
		memcpy(pk, k->pk, 32);
		*have_k = true;
		return 0;
	}
	if (need_secret)
		return err_set(ENOKEY, "this needs the vault key: give --vault-key FILE (or -c CONFIG); if the "
				       "key is lost, recover it from the escrow copy with `bascule keygen vault "
				       "NEWFILE --from-escrow FILE.escrow`");
	if (!o->verify_key)
		return err_set(ENOKEY, "give --verify-key FILE.pub (written by `bascule keygen vault`), or "
				       "--vault-key FILE");
	return vaultkey_load_public(o->verify_key, pk);
}

void vcmd_on_bad(void *ctx, const char *path, int err)
{
	size_t *bad = ctx;
	(*bad)++;
	fprintf(stderr, "BAD %s: %s\n", path, err_msg(err));
}

const char *vcmd_time(uint64_t usec, char *buf, size_t len)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

void vcmd_size(uint64_t v, char *buf, size_t len)
{
	units_fmt_size(v, buf, (int)len);
}

void vcmd_series(const struct vmanifest *m, char *buf, size_t len)
{
	if (m->opened)
		snprintf(buf, len, "%s", m->group);
	else {
		char hex[33];
		sodium_bin2hex(hex, sizeof(hex), m->series, 16);
		snprintf(buf, len, "series-%.12s", hex);
	}
}

int vcmd_keep(const struct vmanifest *ms, size_t n, const struct retention *policy, uint64_t now, bool *keep)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		uint64_t *times;
		while (j < n && !memcmp(ms[j].series, ms[i].series, 16))
			j++;
		if (!(times = malloc((j - i) * sizeof(*times))))
			return -ENOMEM;
		for (size_t x = i; x < j; x++)
			times[x - i] = ms[x].cut_time / 1000000;
		retention_apply(policy, times, j - i, now, keep + i);
		free(times);
		i = j;
	}
	return 0;
}

int vobj_cmp(const void *a, const void *b)
{
	return memcmp(((const struct vobj *)a)->name, ((const struct vobj *)b)->name, VAULT_NAME);
}

struct vobj *vobj_find(struct vobj *v, size_t n, const uint8_t name[VAULT_NAME])
{
	struct vobj key;
	memcpy(key.name, name, VAULT_NAME);
	return bsearch(&key, v, n, sizeof(*v), vobj_cmp);
}

int cmd_vault(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "ls"))
		return cmd_vault_ls(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return cmd_vault_check(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "prune"))
		return cmd_vault_prune(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "recv"))
		return vault_recv(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "init"))
		return cmd_vault_init(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "extend-locks"))
		return cmd_vault_extend_locks(argc - 1, argv + 1);
	fprintf(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
		"Usage: bascule vault init|ls|check|prune|extend-locks [OPTIONS]   (each has --help)\n\n"
		"  init     check that an s3:// bucket is ready: Object Lock, versioning\n"
		"  ls       epochs the vault holds, with sizes (verify key is enough)\n"
		"  check    signatures and every needed object's digest (no secret needed);\n"
		"           --read-data with the vault key decrypts and verifies every block\n"
		"  prune    apply the retention policy (with a delete-capable account)\n"
		"  extend-locks  s3://: keep what retained epochs need locked (a timer)\n"
		"Restore with `bascule restore`; create keys with `bascule keygen vault`.\n");
	return argc >= 2 && !strcmp(argv[1], "--help") ? EXIT_OK : EXIT_USAGE;
}
