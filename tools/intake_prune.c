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
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long arg_stop_after = -1; /* BASCULE_TEST_PRUNE_KILL_AFTER: SIGKILL after N removals */
static long removals;

static int remove_at(int dfd, const char *name, int flags)
{
	if (arg_stop_after >= 0 && removals++ >= arg_stop_after)
		raise(SIGKILL);
	return unlinkat(dfd, name, flags) == 0 || errno == ENOENT ? 0 : -errno;
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
static int doomed_dirs(int dfd, const char *cut, char (**ret)[11], size_t *ret_n)
{
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	char (*v)[11] = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((e = readdir(d))) {
		char night[11];
		size_t len = strlen(e->d_name);
		if (len != 10 && !(len == 19 && !strcmp(e->d_name + 10, ".manifest")))
			continue;
		memcpy(night, e->d_name, 10);
		night[10] = 0;
		if (!intake_night_ok(night) || strcmp(night, cut) >= 0)
			continue;
		if (n == cap) {
			char (*x)[11] = realloc(v, (cap = cap ? cap * 2 : 32) * sizeof(*v));
			if (!x) {
				closedir(d);
				free(v);
				return -ENOMEM;
			}
			v = x;
		}
		memcpy(v[n++], night, 11);
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), (int (*)(const void *, const void *))strcmp);
	/* unique, then newest first */
	size_t u = 0;
	for (size_t i = 0; i < n; i++)
		if (!u || strcmp(v[u - 1], v[i]))
			memcpy(v[u++], v[i], 11);
	for (size_t i = 0; i < u / 2; i++) {
		char t[11];
		memcpy(t, v[i], 11);
		memcpy(v[i], v[u - 1 - i], 11);
		memcpy(v[u - 1 - i], t, 11);
	}
	*ret = v;
	*ret_n = u;
	return 0;
}

/* Remove NIGHT: its manifest first (from then on it is no night, only
 * objects no manifest names), made durable, then its objects, then its
 * directory. */
static int remove_night(int dfd, const char *night)
{
	char mname[32];
	int nfd, r = 0;
	DIR *d;
	struct dirent *e;

	intake_manifest_name(night, mname, sizeof(mname));
	if ((r = remove_at(dfd, mname, 0)) < 0)
		return err_set(-r, "cannot remove %s: %s", mname, strerror(-r));
	if (fsync(dfd) < 0)
		return err_set(errno, "cannot fsync the intake directory: %s", strerror(errno));
	if ((nfd = openat(dfd, night, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 0 : err_set(errno, "cannot open %s/: %s", night, strerror(errno));
	if (!(d = fdopendir(nfd))) {
		close(nfd);
		return err_set(errno, "cannot read %s/: %s", night, strerror(errno));
	}
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((r = remove_at(dirfd(d), e->d_name, 0)) < 0) {
			r = err_set(-r, "cannot remove %s/%s: %s", night, e->d_name, strerror(-r));
			break;
		}
	}
	closedir(d);
	if (r == 0 && (r = remove_at(dfd, night, AT_REMOVEDIR)) < 0)
		r = err_set(-r, "cannot remove %s/: %s", night, strerror(-r));
	return r;
}

static int prune_client(const char *dir, const char *name, unsigned keep, bool dry)
{
	struct intake_client c;
	char cut[11], (*doomed)[11] = NULL, s[32];
	size_t nd = 0, kept = 0;
	uint64_t bytes = 0;
	int dfd = -1, r;

	if ((r = intake_scan(dir, name, true, &c)) < 0)
		return r;
	prune_cut(&c, keep, cut);
	if (!cut[0]) {
		for (size_t i = 0; i < c.n; i++)
			kept += c.nights[i].state == NIGHT_OK;
		printf("%s: %zu good night%s, keeping %u: nothing to remove\n", name, kept, kept == 1 ? "" : "s",
		       keep);
		intake_client_free(&c);
		return 0;
	}
	if ((dfd = open(c.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r = err_set(errno, "cannot open %s: %s", c.dir, strerror(errno));
		goto out;
	}
	if ((r = doomed_dirs(dfd, cut, &doomed, &nd)) < 0) {
		r = err_set(-r, "cannot list %s: %s", c.dir, strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < nd; i++) {
		const struct intake_night *n = NULL;
		for (size_t k = 0; k < c.n && !n; k++)
			if (!strcmp(c.nights[k].night, doomed[i]))
				n = &c.nights[k];
		if (n && n->have_m)
			bytes += n->m.stored + n->m.file_len;
		units_fmt_size(n && n->have_m ? n->m.stored + n->m.file_len : 0, s, sizeof(s));
		printf("%s: %s night %s (%s, %s%s)\n", name, dry ? "would remove" : "removing", doomed[i],
		       !n ? "unfinished run" : n->have_m ? (n->m.kind == INTAKE_FULL ? "full" : "delta")
							: intake_state_name(n->state),
		       s, n && n->state != NIGHT_OK ? ", not a good night" : "");
		fflush(stdout);
		if (!dry && (r = remove_night(dfd, doomed[i])) < 0)
			goto out;
	}
	for (size_t i = 0; i < c.n; i++)
		kept += strcmp(c.nights[i].night, cut) >= 0;
	units_fmt_size(bytes, s, sizeof(s));
	printf("%s: %s %zu night%s (%s); keeping %zu from %s\n", name, dry ? "would remove" : "removed", nd,
	       nd == 1 ? "" : "s", s, kept, cut);
	r = 0;
out:
	free(doomed);
	if (dfd >= 0)
		close(dfd);
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
		{ 0 }
	};
	const char *client = NULL, *env = getenv("BASCULE_TEST_PRUNE_KILL_AFTER");
	bool all = false, dry = false;
	long keep = 0;
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
		default: return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !keep || (!client) == (!all)) {
		fprintf(stderr, "Usage: bascule intake prune DIR (--client NAME | --all) --keep N [--dry-run]\n");
		return EXIT_USAGE;
	}
	if ((r = intake_client_list(argv[optind], client, &names, &nn)) < 0)
		return cmd_fail("intake prune", r);
	for (size_t i = 0; i < nn; i++)
		if ((r = prune_client(argv[optind], names[i], (unsigned)keep, dry)) < 0)
			code = cmd_fail("intake prune", err_wrap(r, "client %s", names[i]));
	intake_clients_free(names, nn);
	return code;
}
