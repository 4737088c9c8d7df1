/* intake_store.c - where an intake lives, for every intake command: a
 * directory of the operator's host, or an S3 bucket with Object Lock
 * (s3://BUCKET/PREFIX, with the --s3-* options or named by a small YAML
 * file: etc/intake-s3.yaml).  The same layout in both: NAME/client.pub and
 * NAME/incoming/ per client (docs/hybrid.md, "Intake on S3"). */
#include "intake_tool.h"
#include "config.h"
#include "err.h"
#include "s3.h"
#include "vstore.h"
#include "yamltab.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct intake_s3_args arg_intake_s3;

/* DIR given as a file: the S3 intake it names (one per process). */
struct intake_cfg {
	char *intake, *s3_endpoint, *s3_region, *s3_credentials, *s3_ca, *s3_url_style;
	uint64_t lock_for;
};
static const struct cfg_key intake_cfg_keys[] = {
	{ K("intake", CT_STR, struct intake_cfg, intake), .required = true,
	  .note = "the intake: s3://BUCKET/PREFIX (each client under PREFIX/NAME/)" },
	CFG_S3_KEYS(struct intake_cfg, "the intake", "the operator's account"),
	{ K("lock_for", CT_DURATION, struct intake_cfg, lock_for), .def = "0", .max = 3650ULL * 86400ULL * 1000000ULL,
	  .note = "intake prune: extend the Object Lock of the nights it keeps to now + this (the clients' "
		  "lock_for); 0: not given (prune then needs --lock-for)" },
	{ 0 }
};
static const struct cfg_table intake_cfg_table = { "intake", sizeof(struct intake_cfg), intake_cfg_keys };
static struct intake_cfg cfg;
static char cfg_path[4096];

int intake_store_opt(int c, const char *arg)
{
	switch (c) {
	case O_IS3_ENDPOINT: arg_intake_s3.endpoint = arg; return 1;
	case O_IS3_REGION: arg_intake_s3.region = arg; return 1;
	case O_IS3_CREDENTIALS: arg_intake_s3.credentials = arg; return 1;
	case O_IS3_CA: arg_intake_s3.ca = arg; return 1;
	case O_IS3_URL_STYLE: arg_intake_s3.url_style = arg; return 1;
	}
	return 0;
}

static bool is_file(const char *dir)
{
	struct stat st;
	return strncmp(dir, "s3://", 5) != 0 && stat(dir, &st) == 0 && S_ISREG(st.st_mode);
}

/* The config file DIR, read once. */
static int read_cfg(const char *dir)
{
	char *text = NULL;
	size_t len;
	int r;

	if (cfg_path[0])
		return strcmp(cfg_path, dir) ? err_set(EINVAL, "one intake configuration per command (%s, then %s)",
						       cfg_path, dir) : 0;
	if ((r = yamltab_read(dir, "intake configuration", &text, &len)) < 0)
		return err_recode(r, EINVAL);
	memset(&cfg, 0, sizeof(cfg));
	r = yamltab_parse(dir, text, len, false, &intake_cfg_table, &cfg);
	free(text);
	if (r < 0)
		return r;
	if (strncmp(cfg.intake, "s3://", 5) != 0) {
		r = err_set(EINVAL, "%s: intake '%s' must be s3://BUCKET/PREFIX (a local intake is named by its "
				    "directory on the command line)", dir, cfg.intake);
		yamltab_free(&intake_cfg_table, &cfg);
		return r;
	}
	snprintf(cfg_path, sizeof(cfg_path), "%s", dir);
	return 0;
}

int intake_store_lock_for(const char *dir, uint64_t *ret)
{
	int r;

	*ret = 0;
	if (!is_file(dir))
		return 0;
	if ((r = read_cfg(dir)) < 0)
		return r;
	*ret = cfg.lock_for;
	return 0;
}

bool intake_store_s3(const char *dir)
{
	return strncmp(dir, "s3://", 5) == 0 || is_file(dir);
}

int intake_store_open(const char *dir, const char *sub, struct vstore **ret)
{
	struct vstore_opts so = { 0 };
	const char *base = dir;
	char url[4400];
	int r;

	if (is_file(dir)) {
		if ((r = read_cfg(dir)) < 0)
			return r;
		base = cfg.intake;
		so.s3_endpoint = cfg.s3_endpoint;
		so.s3_region = cfg.s3_region;
		so.s3_credentials = cfg.s3_credentials;
		so.s3_ca = cfg.s3_ca;
		so.s3_url_style = cfg.s3_url_style;
	} else if (!strncmp(dir, "s3://", 5)) {
		so.s3_endpoint = arg_intake_s3.endpoint;
		so.s3_region = arg_intake_s3.region;
		so.s3_credentials = arg_intake_s3.credentials;
		so.s3_ca = arg_intake_s3.ca;
		so.s3_url_style = arg_intake_s3.url_style;
		if (!so.s3_endpoint || !so.s3_credentials)
			return err_set(EINVAL, "intake %s needs --s3-endpoint URL and --s3-credentials FILE (or "
					       "give a file naming the intake and its store: etc/intake-s3.yaml)", dir);
	}
	if (!strncmp(base, "s3://", 5)) {
		const struct s3_keys k = { .endpoint = so.s3_endpoint, .region = so.s3_region,
					   .credentials = so.s3_credentials, .ca = so.s3_ca,
					   .url_style = so.s3_url_style };
		char sentence[400];
		const char *why = s3_keys_problem(&k, true, "intake", sentence, sizeof(sentence));
		if (why)
			return err_set(EINVAL, "%s%s: %s", base == dir ? "intake " : "", dir, why);
		snprintf(url, sizeof(url), "%s%s%s", base, *sub ? "/" : "", sub);
	} else
		snprintf(url, sizeof(url), "local:%s%s%s", dir, *sub ? "/" : "", sub);
	return vstore_open(url, &so, ret);
}

int intake_store_pub(const char *dir, const char *name, struct client_pub *ret)
{
	char path[4200];
	struct vstore *v = NULL;
	uint8_t *data = NULL;
	size_t len;
	int r;

	snprintf(path, sizeof(path), "%s/%s/client.pub", dir, name);
	if (!intake_store_s3(dir)) {
		if (access(path, F_OK) != 0)
			return err_set(ENOENT, "client '%s' is not enrolled in %s (no %s; bascule intake add %s "
					       "--client %s --pub FILE.pub)", name, dir, path, dir, name);
		return clientkey_load_pub(path, ret);
	}
	snprintf(path, sizeof(path), "%s/client.pub", name);
	if ((r = intake_store_open(dir, "", &v)) < 0)
		return r;
	r = vstore_get(v, path, 4096, &data, &len);
	vstore_close(v);
	if (r == -ENOENT) {
		err_clear();
		return err_set(ENOENT, "client '%s' is not enrolled in %s (no %s there; bascule intake add %s "
				       "--client %s --pub FILE.pub)", name, dir, path, dir, name);
	}
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s: %s/client.pub", dir, name);
	r = clientkey_parse_pub(path, (const char *)data, len, ret);
	free(data);
	return r;
}

struct names {
	struct vstore *v;
	char **names;
	size_t n, cap;
};

static int on_client(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct names *l = ctx;
	char p[300];

	(void)size;
	(void)mtime;
	if (!is_dir || !name_ok(name))
		return 0;
	snprintf(p, sizeof(p), "%s/client.pub", name);
	if (vstore_stat(l->v, p, NULL, NULL) < 0) {
		err_clear();
		return 0;
	}
	if (l->n == l->cap) {
		char **x = realloc(l->names, (l->cap = l->cap ? l->cap * 2 : 16) * sizeof(*x));
		if (!x)
			return -ENOMEM;
		l->names = x;
	}
	if (!(l->names[l->n] = strdup(name)))
		return -ENOMEM;
	l->n++;
	return 0;
}

int intake_store_clients(const char *dir, char ***ret, size_t *ret_n)
{
	struct names l = { 0 };
	int r;

	if ((r = intake_store_open(dir, "", &l.v)) < 0)
		return r;
	r = vstore_list(l.v, "", on_client, &l);
	vstore_close(l.v);
	if (r < 0) {
		/* a partial list would let check --all say OK about clients it never saw */
		intake_clients_free(l.names, l.n);
		return r == -ENOMEM ? err_set(ENOMEM, "out of memory listing the clients of %s", dir)
				    : err_wrap(r, "cannot list the clients of %s", dir);
	}
	*ret = l.names;
	*ret_n = l.n;
	return 0;
}
