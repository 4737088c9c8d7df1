/* vault_prune.c - bascule vault prune: the retention policy applied by an
 * account allowed to delete. */
#include "cmd.h"
#include "err.h"
#include "units.h"
#include "vault_tool.h"
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

/* ---- prune ---- */

struct liveset {
	struct vobj *v;
	size_t n;
	struct vstore *vs;
	uint64_t grace_before, removed, removed_bytes, young, locked;
	bool dry;
	char dir[16];
};

static int prune_object(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct liveset *l = ctx;
	uint8_t bin[VAULT_NAME];
	char path[300];
	int r = 0;

	if (is_dir || vault_unhex(name, bin) < 0)
		return 0;
	if (vobj_find(l->v, l->n, bin))
		return 0;
	if (mtime > l->grace_before) {
		l->young++;
		return 0; /* may belong to an epoch being written */
	}
	snprintf(path, sizeof(path), "%s/%s", l->dir, name);
	if (!l->dry && (r = vstore_remove(l->vs, path)) == -EAGAIN) {
		err_clear();
		l->locked++; /* S3 Object Lock: until its date */
		return 0;
	}
	if (r < 0)
		return r;
	l->removed++;
	l->removed_bytes += size;
	return 0;
}

static int prune_dir(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct liveset *l = ctx;
	(void)size;
	(void)mtime;
	if (!is_dir || strlen(name) != 2)
		return 0;
	snprintf(l->dir, sizeof(l->dir), "d/%s", name);
	return vstore_list(l->vs, l->dir, prune_object, l);
}

int cmd_vault_prune(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS,
					      { "dry-run", no_argument, NULL, O_DRY },
					      { "grace", required_argument, NULL, O_GRACE },
					      { "keep-all", required_argument, NULL, O_ALL },
					      { "keep-hourly", required_argument, NULL, O_HOURLY },
					      { "keep-daily", required_argument, NULL, O_DAILY },
					      { "keep-monthly", required_argument, NULL, O_MONTHLY },
					      { "now", required_argument, NULL, O_AT },
					      { 0 } };
	struct vopts o = { 0 };
	struct vstore *vs = NULL;
	struct vmanifest *ms = NULL;
	struct liveset live = { 0 };
	size_t n = 0, bad = 0, kept = 0, dropped = 0;
	uint64_t grace = 86400, now = (uint64_t)time(NULL);
	struct vkeys k;
	uint8_t pk[32];
	bool have_k, dry = false, *keep = NULL;
	char desc[128];
	int c, r = 0;

	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		uint64_t *span = NULL;
		if (vopts_parse(&o, c, optarg))
			continue;
		switch (c) {
		case O_DRY: dry = true; continue;
		case O_GRACE:
			if (retention_parse_span(optarg, &grace) < 0) {
				fprintf(stderr, "bascule vault prune: --grace wants a span such as 24h\n");
				return EXIT_USAGE;
			}
			continue;
		case O_AT: {
			uint64_t us;
			if (units_parse_time(optarg, &us) < 0) {
				fprintf(stderr, "bascule vault prune: --now wants @UNIXSECONDS or an ISO time\n");
				return EXIT_USAGE;
			}
			now = us / 1000000;
			continue;
		}
		case O_ALL: span = &o.policy.all; break;
		case O_HOURLY: span = &o.policy.hourly; break;
		case O_DAILY: span = &o.policy.daily; break;
		case O_MONTHLY: span = &o.policy.monthly; break;
		case 'h':
			printf("Usage: bascule vault prune --vault URL --identity FILE --known-hosts FILE\n"
			       "       --verify-key FILE.pub [--keep-all D] [--keep-hourly D] [--keep-daily D]\n"
			       "       [--keep-monthly D] [--grace D] [--dry-run]   (or -c CONFIG [--target T])\n\n"
			       "Apply the retention policy: remove the manifests of epochs it does not keep,\n"
			       "then every object no remaining manifest needs and older than --grace (24h;\n"
			       "younger ones may belong to an epoch being written).  Run it with an account\n"
			       "allowed to delete: the daemon's write-once account cannot.  Spans: 24h, 7d,\n"
			       "2w, 12m (months), 1y.  The newest epoch of each group is always kept.\n"
			       "On s3:// what is still locked (Object Lock) is left, with its date, for a\n"
			       "later prune, and a manifest left keeps what it needs.\n\n"
			       "Exit 0: pruned; 1: the vault cannot be read; 2: usage, no policy given;\n"
			       "3: bad configuration, or no retention in it; 4: no verify key, or an account\n"
			       "that may not delete.\n");
			return EXIT_OK;
		default: return vopts_usage("vault prune");
		}
		if (retention_parse_span(optarg, span) < 0) {
			fprintf(stderr, "bascule vault prune: '%s' is not a span such as 24h, 7d, 12m\n", optarg);
			return EXIT_USAGE;
		}
		o.policy_given = true;
	}
	if ((r = vopts_finish(&o, "vault prune")) < 0 || (r = vopts_keys(&o, false, pk, &k, &have_k)) < 0)
		goto out;
	if (!retention_set(&o.policy)) {
		o.usage = !arg_global.config; /* with -c, the configuration lacks it */
		r = err_set(EINVAL, "no retention policy: give --keep-all/--keep-hourly/--keep-daily/"
				    "--keep-monthly, or retention in the configuration's vault target");
		goto out;
	}
	if ((r = vopts_store(&o, &vs)) < 0 ||
	    (r = vault_manifests(vs, pk, have_k ? &k : NULL, vcmd_on_bad, &bad, &ms, &n)) < 0)
		goto out;
	retention_describe(&o.policy, desc, sizeof(desc));
	/* Per group (series): which epochs the policy keeps. */
	if (!(keep = calloc(n + 1, sizeof(*keep)))) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = vcmd_keep(ms, n, &o.policy, now, keep)) < 0)
		goto out;
	for (size_t x = 0; x < n; x++) {
		char label[80], path[300];
		if (keep[x]) {
			kept++;
			continue;
		}
		vcmd_series(&ms[x], label, sizeof(label));
		vault_path(ms[x].name, true, path, sizeof(path));
		printf("%s %s epoch %" PRIu64 " (%s)\n", dry ? "would remove" : "removing", label, ms[x].epoch,
		       path);
		if (!dry && (r = vstore_remove(vs, path)) == -EAGAIN) {
			/* Still locked (S3 Object Lock): kept, and so are its objects. */
			printf("  kept for now: %s; a later prune removes it\n", err_msg(r));
			err_clear();
			live.locked++;
			kept++;
			continue;
		}
		if (r < 0)
			goto out;
		ms[x].n_objects = 0; /* its objects no longer count as needed */
		dropped++;
	}
	/* Objects every kept manifest needs. */
	{
		size_t no = 0;
		for (size_t i = 0; i < n; i++)
			no += ms[i].n_objects;
		if (!(live.v = calloc(no + 1, sizeof(*live.v)))) {
			r = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			for (uint32_t j = 0; j < ms[i].n_objects; j++)
				memcpy(live.v[live.n++].name, ms[i].obj[j], VAULT_NAME);
		qsort(live.v, live.n, sizeof(*live.v), vobj_cmp);
	}
	live.vs = vs;
	live.dry = dry;
	live.grace_before = now > grace ? now - grace : 0;
	if ((r = vstore_list(vs, "d", prune_dir, &live)) < 0)
		goto out;
	{
		char b[32];
		vcmd_size(live.removed_bytes, b, sizeof(b));
		printf("policy: %s; %zu epochs kept, %zu %s; %" PRIu64 " objects (%s) %s; %" PRIu64
		       " unreferenced objects younger than the grace period left\n",
		       desc, kept, dropped, dry ? "would be removed" : "removed", live.removed, b,
		       dry ? "would be removed" : "removed", live.young);
		if (live.locked)
			printf("%" PRIu64 " unneeded manifests or objects still locked (S3 Object Lock) left for a "
			       "later prune\n", live.locked);
	}
	if (bad)
		fprintf(stderr, "warning: %zu manifest(s) failed their check and were left alone; run `bascule "
				"vault check`\n", bad);
	r = 0;
out:
	if (r == -EACCES || r == -EPERM)
		err_wrap(r, "this account may not delete in the vault (the daemon's write-once account "
			    "cannot): run prune with the provider-side pruning account");
	free(live.v);
	free(keep);
	vault_manifests_free(ms, n);
	vstore_close(vs);
	config_free(o.cfg);
	return r < 0 ? vopts_fail(&o, "vault prune", r) : EXIT_OK;
}
