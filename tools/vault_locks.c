/* vault_locks.c - bascule vault extend-locks: on an s3:// vault, keep every
 * object a retained epoch needs (and the epoch's manifest) locked, so that
 * a needed object never becomes deletable.  An object is locked when it is
 * put for the longest retention span plus lock_margin; later epochs may
 * still need it (dedup) long after.  Run more often than lock_margin. */
#include "cmd.h"
#include "config.h"
#include "err.h"
#include "s3.h"
#include "vault_tool.h"
#include "vstore_s3.h"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule vault extend-locks -c CONFIG [--target NAME] [--verify-key FILE.pub]\n"
		   "                                 [--dry-run]\n\n"
		   "On an s3:// vault, lengthen the Object Lock of every object that the epochs the\n"
		   "retention keeps still need, and of their manifests: an object whose lock ends\n"
		   "within the longest retention span gets a new retain-until of now + that span +\n"
		   "lock_margin.  Run it more often than lock_margin (a daily timer for 1d).\n"
		   "Locks are only ever extended (the store refuses to shorten them).  It needs\n"
		   "the credentials of the target (they may extend, not delete) and the verify key.\n"
		   "Exit 0: done; 1: the vault cannot be read or a lock not extended; 2: usage,\n"
		   "not an s3:// vault; 3: bad configuration, no object_lock or retention in it;\n"
		   "4: no verify key, or the credentials are refused.\n");
}

int cmd_vault_extend_locks(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS, { "dry-run", no_argument, NULL, O_DRY }, { 0 } };
	struct vopts o = { 0 };
	struct vstore *vs = NULL;
	struct vmanifest *ms = NULL;
	struct vobj *need = NULL;
	size_t n = 0, bad = 0, nn = 0, kept = 0;
	uint64_t secs, extended = 0, fine = 0;
	const char *mode;
	time_t now = time(NULL), low = 0;
	bool have_k, dry = false, *keep = NULL;
	struct vkeys k;
	uint8_t pk[32];
	char date[40];
	int c, r;

	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		if (vopts_parse(&o, c, optarg))
			continue;
		if (c == O_DRY)
			dry = true;
		else if (c == 'h') {
			usage(stdout);
			return EXIT_OK;
		} else
			return vopts_usage("vault extend-locks");
	}
	if (optind != argc)
		return vopts_usage("vault extend-locks");
	if ((r = vopts_finish(&o, "vault extend-locks")) < 0)
		goto out;
	if (!o.tcfg || strncmp(o.url, "s3://", 5) != 0) {
		o.usage = true;
		r = err_set(EINVAL, "vault extend-locks works on the s3:// vault target of -c CONFIG (its "
				    "object_lock, retention and lock_margin say how long)");
		goto out;
	}
	config_vault_lock(o.tcfg, &mode, &secs);
	if (!mode) {
		r = err_set(EINVAL, "target %s has object_lock: none: there is no lock to extend", o.tcfg->name);
		goto out;
	}
	if ((r = vopts_keys(&o, false, pk, &k, &have_k)) < 0 || (r = vopts_store(&o, &vs)) < 0 ||
	    (r = vault_manifests(vs, pk, NULL, vcmd_on_bad, &bad, &ms, &n)) < 0)
		goto out;
	if (!(keep = calloc(n + 1, sizeof(*keep))) || (r = vcmd_keep(ms, n, &o.policy, (uint64_t)now, keep)) < 0) {
		r = keep ? r : -ENOMEM;
		goto out;
	}
	/* What the kept epochs need: their manifests, then their objects once each. */
	for (size_t i = 0; i < n; i++)
		nn += keep[i] ? ms[i].n_objects : 0;
	if (!(need = calloc(nn + 1, sizeof(*need)))) {
		r = -ENOMEM;
		goto out;
	}
	nn = 0;
	for (size_t i = 0; i < n; i++)
		for (uint32_t j = 0; keep[i] && j < ms[i].n_objects; j++)
			memcpy(need[nn++].name, ms[i].obj[j], VAULT_NAME);
	qsort(need, nn, sizeof(*need), vobj_cmp);
	{
		/* Extend what ends before now + the longest span (the lock a new
		 * object gets, less the margin) to now + the whole lock. */
		time_t at_least = now + (time_t)(secs - o.tcfg->lock_margin / 1000000), until = now + (time_t)secs;
		struct vstore_s3 *s3 = vstore_s3_of(vs);
		size_t u = 0;
		for (size_t i = 0; i < n + nn && r >= 0; i++) {
			char path[300];
			time_t got;
			if (i < n) {
				if (!keep[i])
					continue;
				kept++;
				vault_path(ms[i].name, true, path, sizeof(path));
			} else {
				const struct vobj *x = &need[i - n];
				if (u && !memcmp(need[u - 1].name, x->name, VAULT_NAME))
					continue;
				need[u++] = *x;
				vault_path(x->name, false, path, sizeof(path));
			}
			r = vstore_s3_extend(s3, path, mode, at_least, dry ? 0 : until, &got);
			if (r == 1) {
				extended++;
				if (dry) {
					if (!got || s3_date(got, date, sizeof(date)) < 0)
						snprintf(date, sizeof(date), "never");
					printf("would extend %s (locked until %s)\n", path, date);
				}
			} else if (r == 0) {
				fine++;
				if (!low || got < low)
					low = got;
			}
		}
		if (r < 0)
			goto out;
		s3_date(until, date, sizeof(date));
		printf("%zu epochs kept, %zu objects they need: %" PRIu64 " locks %s until %s, %" PRIu64
		       " already locked long enough\n", kept, u, extended, dry ? "would be extended" : "extended",
		       date, fine);
	}
	if (bad)
		fprintf(stderr, "warning: %zu manifest(s) failed their check and were left alone; run `bascule "
				"vault check`\n", bad);
	r = 0;
out:
	free(need);
	free(keep);
	vault_manifests_free(ms, n);
	vstore_close(vs);
	config_free(o.cfg);
	return r < 0 ? vopts_fail(&o, "vault extend-locks", r) : EXIT_OK;
}
