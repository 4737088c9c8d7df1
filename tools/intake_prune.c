/* intake_prune.c - bascule intake prune: keep a client's newest N good
 * nights and every night their chains need; remove the rest, whole chains
 * only, in an order that a kill at any moment leaves consistent
 * (docs/hybrid.md, "Retention").  Needs no secret: run by the prune
 * account, which may delete at the intake, unlike the client's. */
#include "cmd.h"
#include "err.h"
#include "fsutil.h"
#include "intake_tool.h"
#include "units.h"
#include "s3.h"
#include "vstore.h"
#include "vstore_s3.h"
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long arg_stop_after = -1; /* BASCULE_TEST_PRUNE_KILL_AFTER: SIGKILL after N removals */
static long removals;

/* Remove NAME from the client's store: -EAGAIN with the date while an S3
 * Object Lock holds it. */
static int remove_obj(struct vstore *v, const char *name)
{
	int r;

	if (arg_stop_after >= 0 && removals++ >= arg_stop_after)
		raise(SIGKILL);
	if ((r = vstore_remove(v, name)) == -ENOENT)
		err_clear();
	return r == -ENOENT ? 0 : r;
}

/* The oldest night that stays: the oldest of the newest KEEP good nights,
 * lowered until no night at or above it names a base below it (so that
 * what is removed is whole chains).  "" when fewer than KEEP good nights. */
static void prune_cut(const struct intake_client *c, unsigned keep, char cut[11])
{
	unsigned seen = 0;
	bool moved = true;

	cut[0] = 0;
	for (size_t i = c->n; i-- > 0 && seen < keep;)
		if (c->nights[i].state == NIGHT_OK && ++seen == keep)
			memcpy(cut, c->nights[i].night, 11);
	if (!cut[0])
		return;
	while (moved) {
		moved = false;
		for (size_t i = 0; i < c->n; i++) {
			const struct intake_night *n = &c->nights[i];
			if (strcmp(n->night, cut) >= 0 && n->have_m && n->m.base_night[0] &&
			    strcmp(n->m.base_night, cut) < 0) {
				memcpy(cut, n->m.base_night, 11);
				moved = true;
			}
		}
	}
}

/* Night directories (with or without a manifest) below CUT, newest first. */
struct doomed {
	const char *cut;
	char (*v)[11];
	size_t n, cap;
};

static int on_entry(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct doomed *d = ctx;
	char night[11];
	size_t len = strlen(name);

	(void)is_dir;
	(void)size;
	(void)mtime;
	if (len != 10 && !(len == 19 && !strcmp(name + 10, ".manifest")))
		return 0;
	memcpy(night, name, 10);
	night[10] = 0;
	if (!intake_night_ok(night) || strcmp(night, d->cut) >= 0)
		return 0;
	if (d->n == d->cap) {
		char (*x)[11] = realloc(d->v, (d->cap = d->cap ? d->cap * 2 : 32) * sizeof(*d->v));
		if (!x)
			return -ENOMEM;
		d->v = x;
	}
	memcpy(d->v[d->n++], night, 11);
	return 0;
}

static int doomed_dirs(struct vstore *v, const char *cut, char (**ret)[11], size_t *ret_n)
{
	struct doomed d = { .cut = cut };
	size_t u = 0;
	int r;

	if ((r = vstore_list(v, "", on_entry, &d)) < 0) {
		free(d.v);
		return r;
	}
	if (d.n)
		qsort(d.v, d.n, sizeof(*d.v), (int (*)(const void *, const void *))strcmp);
	/* unique, then newest first */
	for (size_t i = 0; i < d.n; i++)
		if (!u || strcmp(d.v[u - 1], d.v[i]))
			memcpy(d.v[u++], d.v[i], 11);
	for (size_t i = 0; i < u / 2; i++) {
		char t[11];
		memcpy(t, d.v[i], 11);
		memcpy(d.v[i], d.v[u - 1 - i], 11);
		memcpy(d.v[u - 1 - i], t, 11);
	}
	*ret = d.v;
	*ret_n = u;
	return 0;
}

/* FN(CTX, "NIGHT/NAME") for every object under NIGHT. */
struct objs {
	const char *night;
	int (*fn)(void *ctx, const char *path);
	void *ctx;
};

static int on_obj(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct objs *o = ctx;
	char p[300];

	(void)size;
	(void)mtime;
	if (is_dir)
		return 0;
	snprintf(p, sizeof(p), "%s/%s", o->night, name);
	return o->fn(o->ctx, p);
}

static int night_objects(struct vstore *v, const char *night, int (*fn)(void *ctx, const char *path), void *ctx)
{
	struct objs o = { .night = night, .fn = fn, .ctx = ctx };

	return vstore_list(v, night, on_obj, &o);
}

static int remove_cb(void *ctx, const char *path)
{
	return remove_obj(ctx, path);
}

/* Remove NIGHT: its manifest first (from then on it is no night, only
 * objects no manifest names), made durable, then its objects, then its
 * directory (a local intake's).  -EAGAIN, nothing removed, while S3's
 * Object Lock holds its manifest. */
static int remove_night(struct vstore *v, const char *night)
{
	char mname[32];
	int dfd = vstore_dirfd(v), r;

	intake_manifest_name(night, mname, sizeof(mname));
	if ((r = remove_obj(v, mname)) < 0)
		return r;
	if (dfd >= 0 && fsync(dfd) < 0)
		return err_set(errno, "cannot fsync the intake directory: %s", strerror(errno));
	if ((r = night_objects(v, night, remove_cb, v)) < 0)
		return r;
	if (dfd >= 0 && unlinkat(dfd, night, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return err_set(errno, "cannot remove %s/: %s", night, strerror(errno));
	return 0;
}

/* S3: the Object Lock of what the kept nights are made of (issue 16's
 * rule: a needed object never becomes deletable).  A lock that ends before
 * now + lock_for/2 is extended to now + lock_for, so a prune at least every
 * lock_for/2 keeps every kept night locked; a lock is never shortened (the
 * store refuses), a COMPLIANCE one never becomes GOVERNANCE, an object put
 * unlocked is locked COMPLIANCE. */
struct extend {
	struct vstore_s3 *s3;
	time_t at_least, until;
	bool dry;
	size_t extended, fine;
};

static int extend_one(struct extend *e, const char *path)
{
	time_t got;
	int r = vstore_s3_extend(e->s3, path, "COMPLIANCE", e->at_least, e->dry ? 0 : e->until, &got);

	if (r < 0)
		return err_wrap(r, "cannot extend the lock of %s", path);
	if (r)
		e->extended++;
	else
		e->fine++;
	return 0;
}

static int extend_cb(void *ctx, const char *path)
{
	return extend_one(ctx, path);
}

/* Extend the locks of the nights at or after CUT ("" every night) that
 * have a manifest: the manifest, then every object of the night. */
static int extend_kept(struct vstore *v, const char *name, const struct intake_client *c, const char *cut,
		       uint64_t lock_for, bool dry)
{
	time_t now = time(NULL);
	struct extend e = { .s3 = vstore_s3_of(v), .dry = dry, .until = now + (time_t)(lock_for / 1000000),
			    .at_least = now + (time_t)(lock_for / 2000000) };
	size_t nights = 0;
	char mname[32], date[40];
	int r;

	if (!e.s3 || !lock_for)
		return 0;
	if ((r = s3_date(e.until, date, sizeof(date))) < 0)
		return err_wrap(r, "lock_for %" PRIu64 " s", lock_for / 1000000);
	for (size_t i = 0; i < c->n; i++) {
		const struct intake_night *n = &c->nights[i];
		if (!n->have_m || strcmp(n->night, cut) < 0)
			continue;
		nights++;
		intake_manifest_name(n->night, mname, sizeof(mname));
		if ((r = extend_one(&e, mname)) < 0 || (r = night_objects(v, n->night, extend_cb, &e)) < 0)
			return r;
	}
	printf("%s: locks of the %zu kept night%s: %zu %s until %s, %zu already locked long enough\n", name,
	       nights, nights == 1 ? "" : "s", e.extended, dry ? "would be extended" : "extended", date, e.fine);
	return 0;
}

static int prune_client(const char *dir, const char *name, unsigned keep, uint64_t lock_for, bool dry)
{
	struct intake_client c;
	char cut[11], (*doomed)[11] = NULL, s[32];
	char sub[300];
	size_t nd = 0, kept = 0, locked = 0;
	uint64_t bytes = 0;
	struct vstore *v = NULL;
	int r = 0;

	if ((r = intake_scan(dir, name, true, &c)) < 0)
		return r;
	prune_cut(&c, keep, cut);
	snprintf(sub, sizeof(sub), "%s/incoming", name);
	if ((r = intake_store_open(dir, sub, &v)) < 0 || (r = extend_kept(v, name, &c, cut, lock_for, dry)) < 0)
		goto out;
	if (!cut[0]) {
		for (size_t i = 0; i < c.n; i++)
			kept += c.nights[i].state == NIGHT_OK;
		printf("%s: %zu good night%s, keeping %u: nothing to remove\n", name, kept, kept == 1 ? "" : "s",
		       keep);
		goto out;
	}
	if ((r = doomed_dirs(v, cut, &doomed, &nd)) < 0) {
		r = err_wrap(r, "cannot list %s", c.dir);
		goto out;
	}
	for (size_t i = 0; i < nd; i++) {
		const struct intake_night *n = NULL;
		for (size_t k = 0; k < c.n && !n; k++)
			if (!strcmp(c.nights[k].night, doomed[i]))
				n = &c.nights[k];
		uint64_t nb = n && n->have_m ? n->m.stored + n->m.file_len : 0;
		units_fmt_size(nb, s, sizeof(s));
		printf("%s: %s night %s (%s, %s%s)\n", name, dry ? "would remove" : "removing", doomed[i],
		       !n ? "unfinished run" : n->have_m ? (n->m.kind == INTAKE_FULL ? "full" : "delta")
							: intake_state_name(n->state),
		       s, n && n->state != NIGHT_OK ? ", not a good night" : "");
		fflush(stdout);
		if (!dry && (r = remove_night(v, doomed[i])) == -EAGAIN) {
			/* An older night may be the base of this one: it stays too. */
			printf("%s: %s; it and %zu older night%s stay until then (run prune again)\n", name,
			       err_msg(r), nd - i - 1, nd - i - 1 == 1 ? "" : "s");
			err_clear();
			locked = nd - i;
			break;
		}
		if (r < 0)
			goto out;
		bytes += nb;
	}
	nd -= locked;
	for (size_t i = 0; i < c.n; i++)
		kept += strcmp(c.nights[i].night, cut) >= 0;
	kept += locked;
	units_fmt_size(bytes, s, sizeof(s));
	printf("%s: %s %zu night%s (%s); keeping %zu from %s\n", name, dry ? "would remove" : "removed", nd,
	       nd == 1 ? "" : "s", s, kept, cut);
	r = 0;
out:
	free(doomed);
	vstore_close(v);
	intake_client_free(&c);
	return r;
}

int intake_prune(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client", required_argument, NULL, 'C' },
		{ "all", no_argument, NULL, 'a' },
		{ "keep", required_argument, NULL, 'k' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "lock-for", required_argument, NULL, 'L' },
		INTAKE_STORE_OPTS,
		{ 0 }
	};
	const char *client = NULL, *env = getenv("BASCULE_TEST_PRUNE_KILL_AFTER");
	bool all = false, dry = false;
	long keep = 0;
	uint64_t lock_for = 0;
	bool have_lock_for = false;
	char **names = NULL, *end;
	size_t nn = 0;
	int c, r, code = EXIT_OK;

	if (env)
		arg_stop_after = atol(env);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'C': client = optarg; break;
		case 'a': all = true; break;
		case 'k':
			errno = 0;
			keep = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || keep < 1 || keep > 100000) {
				fprintf(stderr, "bascule intake prune: --keep wants a number of nights, 1 or more "
						"(not '%s')\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'n': dry = true; break;
		case 'L':
			if (units_parse_duration(optarg, &lock_for) < 0 || lock_for > 3650ULL * 86400ULL * 1000000ULL) {
				err_clear();
				fprintf(stderr, "bascule intake prune: --lock-for wants a duration such as 35d, at most "
						"3650d, or 0 (not '%s')\n", optarg);
				return EXIT_USAGE;
			}
			have_lock_for = true;
			break;
		default:
			if (intake_store_opt(c, optarg))
				break;
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !keep || (!client) == (!all)) {
		fprintf(stderr, "Usage: bascule intake prune DIR (--client NAME | --all) --keep N [--dry-run] "
				"[--lock-for DURATION]\n");
		return EXIT_USAGE;
	}
	if (!have_lock_for && (r = intake_store_lock_for(argv[optind], &lock_for)) < 0)
		return cmd_fail("intake prune", r);
	if (intake_store_s3(argv[optind]) && !have_lock_for && !lock_for)
		return cmd_fail("intake prune",
				err_set(EINVAL, "%s is an S3 intake: prune extends the Object Lock of the nights it "
						"keeps, for how long? Give lock_for in the intake file or --lock-for "
						"DURATION (the clients' lock_for, e.g. 35d; 0 for a bucket without Object "
						"Lock)", argv[optind]));
	if (have_lock_for && lock_for && !intake_store_s3(argv[optind])) {
		fprintf(stderr, "bascule intake prune: --lock-for is for an S3 intake (%s is a directory)\n",
			argv[optind]);
		return EXIT_USAGE;
	}
	if ((r = intake_client_list(argv[optind], client, &names, &nn)) < 0)
		return cmd_fail("intake prune", r);
	for (size_t i = 0; i < nn; i++)
		if ((r = prune_client(argv[optind], names[i], (unsigned)keep, lock_for, dry)) < 0)
			code = cmd_fail("intake prune", err_wrap(r, "client %s", names[i]));
	intake_clients_free(names, nn);
	return code;
}
