/* cmd_replica.c - bascule replica list|verify|recover|rollback|promote|demote|clone --root DIR */
#include "cmd.h"
#include "err.h"
#include "key.h"
#include "pgwal.h"
#include "replica.h"
#include "units.h"
#include <getopt.h>
#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void replica_usage(FILE *f)
{
	fprintf(f, "Usage: bascule replica COMMAND --root DIR [--key FILE] [--group G]\n\n"
		   "  list                   groups, sources, epochs and rollback points\n"
		   "  verify                 re-read every replica and check it against its digest\n"
		   "  recover                finish any interrupted apply: every replica is left at\n"
		   "                         the last epoch it completed\n"
		   "  rollback --to EPOCH    return the group's disks to an earlier epoch (stop the\n"
		   "                         daemon's replication to this target first)\n"
		   "  promote                make the group live here (failover): take over from\n"
		   "                         bascule recv, recover, roll back to the epoch chosen by\n"
		   "                         --epoch/--at/--consistent, refuse further epochs, and\n"
		   "                         link the disks into --link-dir\n"
		   "  demote                 make a promoted group a replica again (its disks are\n"
		   "                         resynced with librsync on the next connection)\n"
		   "  clone --to-dir DIR     reflink (or copy) the disks at a complete epoch into DIR\n"
		   "                         while replication goes on (test drills); a PostgreSQL\n"
		   "                         source becomes DIR/SOURCE, a stopped database recovered\n"
		   "                         to that epoch on a timeline of its own (--pg-* apply)\n"
		   "  standby                PostgreSQL sources: make (if need be) and start the hot\n"
		   "                         standby DIR/G/SOURCE, replaying the WAL recv commits;\n"
		   "                         promote then promotes it in seconds\n"
		   "  wal-get --source S FILE DEST\n"
		   "                         the standby's restore_command: WAL file FILE of the\n"
		   "                         committed copy into DEST (exit 1: not there yet)\n\n"
		   "  --root DIR   the replica directory (as given to bascule recv)\n"
		   "  --key FILE   site key (default /etc/bascule/site.key); not needed by list\n"
		   "  --group G    the group (default: all; rollback needs it when there are several)\n"
		   "  --epoch N    promote exactly epoch N      --at TIME  newest epoch cut by TIME\n"
		   "               (TIME: @UNIXSECONDS or YYYY-MM-DDTHH:MM:SS[.FFFFFF][Z])\n"
		   "  --consistent promote only a point-in-time (consistent) epoch\n"
		   "  --link-dir D promote: the disks appear as D/SOURCE (symbolic links)\n"
		   "  --json       promote/clone: print the result as one JSON object\n"
		   "  --pg-user U  PostgreSQL runs as U (default: the replica directory's owner)\n"
		   "  --pg-bin D   its programs (default /usr/lib/postgresql/VERSION/bin)\n"
		   "  --pg-conf F  settings appended to postgresql.auto.conf (default\n"
		   "               /etc/bascule/postgresql.conf if it exists)\n"
		   "  --pg-timeout T  recovery may take T (default 1h)\n\n"
		   "Root may run these in a directory that belongs to the receiving user: no link\n"
		   "in it is followed, and state and journals must authenticate with the site key.\n\n"
		   "Exit 0: done; 1: no such group or epoch, not a replica directory; 2: usage;\n"
		   "4: the key is missing, unsafe, not a key or not this replica's; 5: verify found\n"
		   "a mismatch, or a link or file Bascule did not make in the replica directory, or\n"
		   "a journal or state that fails its authentication (refused, nothing changed);\n"
		   "9: the replica is in use by another bascule process (recover, rollback, promote\n"
		   "and demote; verify reads beside it, replication going on).\n");
}

static void print_line(const char *line)
{
	printf("%s\n", line);
}

static const char *fmt_time(uint64_t usec, char *buf, size_t len)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;

	if (!usec)
		return "-";
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

/* How an epoch of a group of N_SOURCES, N_PG of them PostgreSQL, is made.
 * EPOCH_CONSISTENT speaks of the disks' scan; a group of PostgreSQL
 * sources only scans none: its epochs are WAL-only, consistent by
 * construction (each ends at a WAL position, and PostgreSQL's recovery
 * makes the database consistent there), however the flag reads. */
static const char *epoch_label(uint8_t flags, uint32_t n_sources, uint32_t n_pg)
{
	if (n_sources && n_pg == n_sources)
		return "consistent: WAL, by PostgreSQL recovery";
	return flags & EPOCH_CONSISTENT ? "consistent" : "fuzzy";
}

static int do_list(struct replica *r, char **groups, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rstate s;
		uint64_t pts[64], times[64];
		size_t np = 0;
		char t1[32], t2[32];
		uint32_t n_pg = 0;

		if (replica_load_state(r, groups[i], &s) < 0) {
			printf("group %s: no complete epoch yet\n", groups[i]);
			continue;
		}
		for (uint32_t k = 0; k < s.n_sources; k++)
			n_pg += s.sources[k].base_id != 0;
		printf("group %s: epoch %" PRIu64 " (%s), cut %s, applied %s%s%s\n", s.group, s.epoch,
		       epoch_label(s.flags, s.n_sources, n_pg),
		       fmt_time(s.cut_time, t1, sizeof(t1)), fmt_time(s.applied_time, t2, sizeof(t2)),
		       s.alarm[0] ? "\n  ALARM: " : "", s.alarm);
		for (uint32_t k = 0; k < s.n_sources; k++) {
			const struct state_source *x = &s.sources[k];
			char b[PGWAL_LSN_LEN], e[PGWAL_LSN_LEN];
			if (x->base_id)
				printf("  source %-20s epoch %-8" PRIu64 " postgres system %" PRIu64 " base %s timeline %u "
				       "end %s %s\n", x->name, x->epoch, x->system_id, pgwal_lsn_format(x->base_id, b),
				       x->timeline, pgwal_lsn_format(x->end_lsn, e),
				       x->status == SRC_OK ? "ok" : "diverged");
			else
				printf("  source %-20s epoch %-8" PRIu64 " size %-14" PRIu64 " %s\n", x->name,
				       x->epoch, x->size, x->status == SRC_OK ? "ok" : "diverged");
		}
		replica_rollback_points(r, groups[i], pts, times, 64, &np);
		/* Earlier epochs the group can return to, newest first (the
		 * current epoch is where it is; 0 is the replica before its
		 * first epoch). */
		printf("  rollback points:");
		for (size_t k = 0; k < np; k++)
			printf(pts[k] ? " %" PRIu64 : " 0 (empty: before the first epoch)", pts[k]);
		printf("%s\n", np ? "" : " none");
	}
	return 0;
}

static void print_promoted(const char *verb, const char *group, const struct promote_info *pi,
			   bool json, const char *dir)
{
	char t[40];

	if (json) {
		json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:b, s:s?}", "action", verb, "group", group,
				      "epoch", (json_int_t)pi->epoch, "cut_time_us",
				      (json_int_t)pi->cut_time, "consistent",
				      (pi->flags & EPOCH_CONSISTENT) != 0, "dir", dir);
		json_t *a = json_array(), *pg = json_array();
		for (uint32_t i = 0; i < pi->n_sources; i++)
			json_array_append_new(a, json_string(pi->sources[i]));
		json_object_set_new(o, "sources", a);
		for (uint32_t i = 0; i < pi->n_pg; i++) {
			const struct promote_pg *p = &pi->pg[i];
			char e[PGWAL_LSN_LEN], d[PGWAL_LSN_LEN], x[40];
			json_array_append_new(pg, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s?, s:I, s:o?, s:f}",
				"source", p->source, "data_dir", p->data_dir, "mode",
				p->clone ? "clone" : p->hot ? "hot" : "cold",
				"end_lsn", pgwal_lsn_format(p->end_lsn, e), "redo_lsn", pgwal_lsn_format(p->redo_lsn, d),
				"timeline", (int)p->timeline,
				"last_transaction", p->last_xact ? units_fmt_time(p->last_xact, x, sizeof(x)) : NULL,
				"last_transaction_us", (json_int_t)p->last_xact,
				"recovery_target_time_us", p->at ? json_integer((json_int_t)p->at) : NULL,
				"seconds", (double)p->usec / 1e6));
		}
		json_object_set_new(o, "postgres", pg);
		json_dumpf(o, stdout, JSON_COMPACT);
		printf("\n");
		json_decref(o);
		return;
	}
	printf("group %s %s at epoch %" PRIu64 " (%s), cut %s%s%s\n", group,
	       !strcmp(verb, "promote") ? "promoted" : "cloned", pi->epoch,
	       epoch_label(pi->flags, pi->n_sources, pi->n_pg),
	       units_fmt_time(pi->cut_time, t, sizeof(t)), dir ? ", disks in " : "", dir ? dir : "");
	for (uint32_t i = 0; i < pi->n_pg; i++) {
		const struct promote_pg *p = &pi->pg[i];
		char e[PGWAL_LSN_LEN], d[PGWAL_LSN_LEN], x[40];
		printf("  %s: PostgreSQL %s, recovered to %s (last record at %s), timeline %u, last transaction %s, "
		       "in %.1f s; data directory %s%s\n", p->source,
		       p->clone ? "clone" : p->hot ? "standby promoted" : "restored (cold)",
		       pgwal_lsn_format(p->end_lsn, e), pgwal_lsn_format(p->redo_lsn, d), p->timeline,
		       p->last_xact ? units_fmt_time(p->last_xact, x, sizeof(x)) : "none", (double)p->usec / 1e6,
		       p->data_dir, p->hot ? " (running)" : p->clone ? " (stopped: start it on a port of its own, e.g. "
		       "pg_ctl -D DIR -o '-c port=5440' start)" : " (stopped: start it with pg_ctl -D DIR start)");
	}
}

int cmd_replica(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ "group", required_argument, NULL, 'g' },
		{ "to", required_argument, NULL, 't' },
		{ "epoch", required_argument, NULL, 't' },
		{ "at", required_argument, NULL, 'a' },
		{ "consistent", no_argument, NULL, 'C' },
		{ "link-dir", required_argument, NULL, 'L' },
		{ "to-dir", required_argument, NULL, 'D' },
		{ "json", no_argument, NULL, 'j' },
		{ "pg-user", required_argument, NULL, 'U' },
		{ "pg-bin", required_argument, NULL, 'B' },
		{ "pg-conf", required_argument, NULL, 'F' },
		{ "pg-timeout", required_argument, NULL, 'T' },
		{ "source", required_argument, NULL, 's' },
		{ "upto", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *root = NULL, *keyfile = NULL, *group = NULL, *verb;
	struct site_key *key = NULL;
	struct replica *r = NULL;
	char **groups = NULL;
	size_t n = 0;
	uint64_t to = 0;
	bool have_to = false, json = false;
	struct promote_opts po = { 0 };
	const char *to_dir = NULL, *source = NULL;
	uint32_t upto_tli = 0;
	uint64_t upto_lsn = 0;
	int c, rc = 0, ret = EXIT_OK;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		replica_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	verb = argv[1];
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': root = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'g': group = optarg; break;
		case 't': {
			char *end;
			to = strtoull(optarg, &end, 10);
			if (*end || !*optarg) {
				fprintf(stderr, "bascule replica: --to wants an epoch number\n");
				return EXIT_USAGE;
			}
			have_to = true;
			break;
		}
		case 'a':
			if (units_parse_time(optarg, &po.at) < 0) {
				fprintf(stderr, "bascule replica: --at wants @UNIXSECONDS or "
						"YYYY-MM-DDTHH:MM:SS[.FFFFFF][Z], got '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'C': po.consistent = true; break;
		case 'L': po.link_dir = optarg; break;
		case 'D': to_dir = optarg; break;
		case 'j': json = true; break;
		case 'U': po.pg_user = optarg; break;
		case 'B': po.pg_bin = optarg; break;
		case 'F': po.pg_conf = optarg; break;
		case 'T':
			if (units_parse_duration(optarg, &po.pg_timeout) < 0 || !po.pg_timeout) {
				fprintf(stderr, "bascule replica: --pg-timeout wants a duration such as 2h\n");
				return EXIT_USAGE;
			}
			break;
		case 's': source = optarg; break;
		case 'u': {
			char *slash = strchr(optarg, '/');
			upto_tli = (uint32_t)strtoul(optarg, NULL, 10);
			if (!slash || !upto_tli || pgwal_lsn_parse(slash + 1, &upto_lsn) < 0) {
				fprintf(stderr, "bascule replica: --upto wants TIMELINE/LSN such as 1/0/A000000\n");
				return EXIT_USAGE;
			}
			break;
		}
		case 'h': replica_usage(stdout); return EXIT_OK;
		default: replica_usage(stderr); return EXIT_USAGE;
		}
	}
	if (!strcmp(verb, "wal-get")) {
		/* restore_command: PostgreSQL wants 0 (DEST written) or 1 (no such file). */
		if (!root || !group || !source || argc - optind != 2) {
			replica_usage(stderr);
			return EXIT_USAGE;
		}
		if ((rc = cmd_key_load(keyfile, &key)) < 0 || (rc = replica_open(root, REPLICA_READONLY, key, &r)) < 0) {
			key_free(key);
			return cmd_fail("replica wal-get", rc);
		}
		r->key_path = keyfile ? keyfile : CMD_SITE_KEY;
		rc = replica_pg_wal_get(r, group, source, argv[optind], argv[optind + 1], upto_tli, upto_lsn);
		if (rc < 0 && rc != -ENOENT)
			fprintf(stderr, "bascule replica wal-get: %s\n", err_msg(rc));
		replica_close(r);
		key_free(key);
		return rc < 0 ? EXIT_FAILURE : EXIT_OK;
	}
	if (!root || optind != argc || (strcmp(verb, "list") && strcmp(verb, "verify") &&
					strcmp(verb, "recover") && strcmp(verb, "rollback") &&
					strcmp(verb, "promote") && strcmp(verb, "demote") &&
					strcmp(verb, "clone") && strcmp(verb, "standby")) ||
	    (!strcmp(verb, "rollback") && !have_to) || (!strcmp(verb, "clone") && !to_dir) ||
	    ((!strcmp(verb, "promote") || !strcmp(verb, "demote") || !strcmp(verb, "clone")) && !group)) {
		replica_usage(stderr);
		return EXIT_USAGE;
	}
	/* list needs no key, unless recovery has work to do (then it asks). */
	if ((rc = cmd_key_load(keyfile, &key)) < 0 && strcmp(verb, "list") != 0)
		return cmd_fail("replica", rc);
	if (have_to)
		po.epoch = to;
	/* promote and demote take over from a receiver (one left by a dead link,
	 * or one the daemon keeps connected); clone and list read while bascule
	 * recv goes on. */
	rc = replica_open(root, (!strcmp(verb, "list") || !strcmp(verb, "clone") || !strcmp(verb, "standby") ?
				 REPLICA_READONLY : 0) |
				(!strcmp(verb, "promote") || !strcmp(verb, "demote") ? REPLICA_TAKEOVER : 0),
			  key, &r);
	if (rc == -EBUSY && !strcmp(verb, "verify")) {
		/* Replication goes on: verify beside the receiver (docs/replica.md). */
		fprintf(stderr, "bascule replica: %s is in use by bascule recv: verifying beside it "
				"(its next apply waits until the verify ends)\n", root);
		rc = replica_open(root, REPLICA_READONLY, key, &r);
	}
	if (rc < 0) {
		key_free(key);
		return cmd_fail("replica", rc);
	}
	r->key_path = keyfile ? keyfile : CMD_SITE_KEY;
	if ((rc = replica_groups(r, &groups, &n)) < 0)
		goto out;
	if (group) {
		bool found = false;
		for (size_t i = 0; i < n; i++)
			found |= strcmp(groups[i], group) == 0;
		if (!found) {
			rc = err_set(ENOENT, "no group '%s' in %s", group, root);
			goto out;
		}
	}
	if (!strcmp(verb, "list")) {
		if (group)
			do_list(r, (char **)&group, 1);
		else
			do_list(r, groups, n);
		if (r->unauthenticated)
			fprintf(stderr, "bascule replica: without the site key (--key) the state is shown "
					"as the files say, not checked\n");
	} else if (!strcmp(verb, "promote") || !strcmp(verb, "clone")) {
		struct promote_info pi;
		bool promote = !strcmp(verb, "promote");
		rc = promote ? replica_promote(r, group, &po, &pi) : replica_clone(r, group, to_dir, &po, &pi);
		if (rc == 0)
			print_promoted(verb, group, &pi, json, promote ? po.link_dir : to_dir);
	} else if (!strcmp(verb, "standby")) {
		for (size_t i = 0; i < n && rc == 0; i++)
			if (!group || !strcmp(group, groups[i]))
				rc = replica_pg_standby(r, groups[i], &po, print_line);
	} else if (!strcmp(verb, "demote")) {
		if ((rc = replica_demote(r, group)) == 0)
			printf("group %s is a replica again; its disks will be resynced\n", group);
	} else if (!strcmp(verb, "recover")) {
		/* replica_open() has already recovered every group. */
		do_list(r, group ? (char **)&group : groups, group ? 1 : n);
	} else if (!strcmp(verb, "verify")) {
		for (size_t i = 0; i < n; i++) {
			int v;
			if (group && strcmp(group, groups[i]))
				continue;
			v = replica_verify(r, groups[i], print_line);
			if (v < 0 && rc == 0)
				rc = v;
		}
	} else {
		if (!group && n != 1) {
			rc = err_set(EINVAL, "%s holds %zu groups; say which with --group", root, n);
			ret = EXIT_USAGE;
			goto out;
		}
		rc = replica_rollback(r, group ? group : groups[0], to);
		if (rc == 0)
			printf("group %s rolled back to epoch %" PRIu64 "\n", group ? group : groups[0], to);
	}
out:
	if (rc < 0 && ret == EXIT_OK)
		ret = cmd_fail("replica", rc);
	else if (rc < 0)
		fprintf(stderr, "bascule replica: %s\n", err_msg(rc));
	replica_groups_free(groups, n);
	replica_close(r);
	key_free(key);
	return ret;
}
