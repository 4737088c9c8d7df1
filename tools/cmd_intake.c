/* cmd_intake.c - bascule intake add|ls|check|restore: the operator's side of
 * the hybrid PRA (docs/hybrid.md); prune and metrics in their own files.  add, ls, check,
 * prune and metrics need no secret: the
 * client's public key, enrolled by add, verifies everything. */
#include "cmd.h"
#include "err.h"
#include "fsutil.h"
#include "intake_tool.h"
#include "units.h"
#include "vstore.h"
#include <getopt.h>
#include <grp.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule intake add DIR --client NAME --pub FILE.pub [--owner USER] [--force]\n"
		   "       bascule intake ls DIR [--client NAME] [--json]\n"
		   "       bascule intake check DIR (--client NAME | --all) --max-age D [--warn-age D]\n"
		   "                            [--quick] [--now TIME] [--json]\n"
		   "       bascule intake restore DIR --client NAME [--night DATE] --key FILE.key\n"
		   "                            [--passphrase-file P] --to FILE\n"
		   "       bascule intake restore DIR --client NAME [--night DATE] --key FILE.key\n"
		   "                            [--passphrase-file P] --load URL [--jobs N] [--replace]\n"
		   "                            [--tmp DIR] [--pg-bin DIR] [--owners]\n"
		   "       bascule intake open-key --key FILE.key [--passphrase-file P] --out FILE\n"
		   "       bascule intake prune DIR (--client NAME | --all) --keep N [--dry-run]\n"
		   "                            [--lock-for D]\n"
		   "       bascule intake metrics DIR [--client NAME] [--out FILE] [--max-age D] [--now TIME]\n\n"
		   "The operator's side of the hybrid PRA (docs/hybrid.md).  DIR holds one\n"
		   "directory per client: NAME/client.pub (enrolled by add) and NAME/incoming/\n"
		   "(where the client's write-once SFTP account uploads).\n"
		   INTAKE_STORE_USAGE
		   "  On S3 the client's account may only put (a bucket policy) and every object\n"
		   "  is locked (Object Lock): check names a night written over (a newer version)\n"
		   "  as TAMPERED (CRITICAL); restore reads the genuine version.\n\n"
		   "add: enrol a client's public key (FILE.pub of bascule keygen client) and make\n"
		   "  NAME/incoming, owned by USER (the client's SFTP account) with --owner; an\n"
		   "  enrolled NAME/client.pub that no longer reads is replaced only with --force.\n"
		   "ls: every night of every client (or NAME): kind, base night, objects, size,\n"
		   "  upload time, chain, status; unfinished runs (never counted).\n"
		   "check: a Nagios/Icinga plugin: CRITICAL when the newest complete night of a\n"
		   "  client is older than --max-age (the dead man's switch), when any night fails\n"
		   "  its signature, an object is missing or altered, or a chain is broken;\n"
		   "  WARNING above --warn-age or for an incomplete manifest; UNKNOWN when DIR or\n"
		   "  the client cannot be read.  Reads every object (--quick: sizes only).\n"
		   "  --now TIME measures ages from TIME (@UNIXSECONDS or YYYY-MM-DDTHH:MM:SSZ)\n"
		   "  instead of now: what-if checks and tests.  --json: one line of JSON (each\n"
		   "  client's status, text, newest night, age and first bad night), same exit code.\n"
		   "restore: rebuild a night's exact dump (default: the newest) with the client's\n"
		   "  decryption key, verified against the signed digest of the original.\n"
		   "  --load URL (a libpq conninfo or postgresql:// URI naming the database)\n"
		   "  instead of --to: rebuild into a scratch file under --tmp DIR ($TMPDIR or\n"
		   "  /var/tmp), create the database (a non-empty one is refused unless\n"
		   "  --replace, which drops and recreates it), pg_restore --exit-on-error\n"
		   "  --jobs N (default: the CPUs, at most 8) into it, check that every table\n"
		   "  of the dump is there, and print \"loaded NIGHT into DB: T tables, R rows,\n"
		   "  S s\".  The URL's password goes to pg_restore in its environment, never\n"
		   "  on its command line; --pg-bin DIR: pg_restore from DIR.  The connecting\n"
		   "  role owns what is loaded (pg_restore --no-owner --no-privileges: the\n"
		   "  client's roles do not exist here) unless --owners.  --key also takes a\n"
		   "  key opened by open-key (no passphrase then).\n"
		   "open-key: open FILE.key once (its passphrase, its Argon2id: about 0.4 s)\n"
		   "  into the new file --out FILE (mode 0600), the decryption secret in clear,\n"
		   "  which restore --key reads at once: for the hours of a recovery (several\n"
		   "  nights, a drill and its --resume); keep it on a tmpfs (/run) and remove\n"
		   "  it after.  Exit 1 if FILE exists, 4 wrong key or passphrase.\n"
		   "prune: keep the newest N good nights and the chains they need; remove older\n"
		   "  nights, whole chains only, newest first and each manifest before its objects\n"
		   "  (a prune killed midway leaves nothing check calls broken).  Run it as the\n"
		   "  prune account (docs/hybrid.md), never the client's.  --dry-run lists only.\n"
		   "  On S3 it also extends the Object Lock of the nights it keeps: a lock ending\n"
		   "  within lock_for/2 gets now + lock_for (--lock-for D or the intake file's\n"
		   "  lock_for, required there; 0 for a bucket without Object Lock).  Run it more\n"
		   "  often than lock_for/2.\n"
		   "metrics: per client freshness and integrity in Prometheus' text format, on\n"
		   "  stdout or written atomically to --out FILE (node_exporter's textfile\n"
		   "  collector); --max-age as check's, for bascule_intake_check_status.\n\n"
		   "Exit codes: add, ls, restore, open-key, prune, metrics: 0 ok, 1 failure, 2 usage, 4 key, 5 integrity\n"
		   "(restore of a damaged night: nothing is loaded), 7 no space for the restored\n"
		   "dump; restore --load: 1 also for a database that cannot be reached, is not\n"
		   "empty (without --replace), or that pg_restore or the checks fail; check: 0 OK,\n"
		   "1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n");
}

/* Enrol on an S3 intake: NAME/client.pub, put once (unlocked: it is the
 * operator's, and a bucket policy keeps the client's account to
 * NAME/incoming/); nothing to make for incoming/, a prefix. */
static int add_s3(const char *dir, const char *client, const char *pubfile, const struct client_pub *pub,
		  const char *id, const char *owner)
{
	struct client_pub old;
	struct vstore *v = NULL;
	char name[300], *text = NULL;
	size_t len;
	int r;

	if (owner) {
		fprintf(stderr, "bascule intake add: --owner is for an intake directory; on S3 the bucket "
				"policy says what the client's account may do (docs/hybrid.md, \"Intake on S3\")\n");
		return EXIT_USAGE;
	}
	if ((r = intake_store_pub(dir, client, &old)) == 0) {
		if (memcmp(&old, pub, sizeof(*pub)) != 0)
			return cmd_fail("intake add", err_set(EEXIST, "client %s is enrolled with another key "
						"already (%s/%s/client.pub); if the client's keys really changed, "
						"remove it with the operator's account first", client, dir, client));
	} else if (r != -ENOENT) {
		return cmd_fail("intake add", r);
	} else {
		err_clear();
		snprintf(name, sizeof(name), "%s/client.pub", client);
		if ((r = fs_read_all(pubfile, 4096, &text, &len)) < 0 || (r = intake_store_open(dir, "", &v)) < 0 ||
		    (r = vstore_put(v, name, text, len)) < 0) {
			free(text);
			vstore_close(v);
			return cmd_fail("intake add", r);
		}
		free(text);
		vstore_close(v);
	}
	printf("enrolled client %s (key %s) in %s; it uploads to %s/%s/incoming\n", client, id, dir, dir, client);
	return EXIT_OK;
}

int intake_add(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client", required_argument, NULL, 'C' },
		{ "pub", required_argument, NULL, 'p' },
		{ "owner", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		INTAKE_STORE_OPTS,
		{ 0 }
	};
	const char *client = NULL, *pubfile = NULL, *owner = NULL, *dir;
	struct client_pub pub, old;
	char cdir[4200], path[4300], id[17];
	char *text = NULL;
	size_t len;
	struct passwd *pw = NULL;
	bool force = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'C': client = optarg; break;
		case 'p': pubfile = optarg; break;
		case 'o': owner = optarg; break;
		case 'f': force = true; break;
		default:
			if (intake_store_opt(c, optarg))
				break;
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !client || !pubfile) {
		fprintf(stderr, "Usage: bascule intake add DIR --client NAME --pub FILE.pub [--owner USER] [--force]\n");
		return EXIT_USAGE;
	}
	dir = argv[optind];
	if (!name_ok(client)) {
		fprintf(stderr, "bascule intake add: '%s' is not a client name (1-64 of letters, digits, '_', "
				"'-', '.')\n", client);
		return EXIT_USAGE;
	}
	if (owner && !(pw = getpwnam(owner))) {
		fprintf(stderr, "bascule intake add: no user '%s' (the client's SFTP account: create it "
				"first, see docs/hybrid.md)\n", owner);
		return EXIT_USAGE;
	}
	if ((r = clientkey_load_pub(pubfile, &pub)) < 0)
		return cmd_fail("intake add", r);
	clientkey_id(&pub, id);
	if (intake_store_s3(dir))
		return add_s3(dir, client, pubfile, &pub, id, owner);
	snprintf(cdir, sizeof(cdir), "%s/%s", dir, client);
	if ((r = fs_mkdir_p(cdir, 0755)) < 0)
		return cmd_fail("intake add", err_set(-r, "cannot create %s: %s", cdir, strerror(-r)));
	snprintf(path, sizeof(path), "%s/client.pub", cdir);
	if ((r = clientkey_load_pub(path, &old)) == 0) {
		if (memcmp(&old, &pub, sizeof(pub)) != 0)
			return cmd_fail("intake add", err_set(EEXIST, "client %s is enrolled with another key "
						"already (%s); if the client's keys really changed, move that file "
						"away first", client, path));
	} else if (access(path, F_OK) == 0 && !force) {
		/* an enrolled key that no longer reads: damaged, or not ours */
		char why[1024];
		snprintf(why, sizeof(why), "%s", err_msg(r));
		return cmd_fail("intake add", err_set(EEXIST, "%s exists but does not read as a client public key "
						      "(%s): check it, then add --force to replace it",
						      path, why));
	} else {
		err_clear();
		if ((r = fs_read_all(pubfile, 4096, &text, &len)) < 0 ||
		    (r = fs_write_atomic(path, text, len, 0644)) < 0) {
			free(text);
			return cmd_fail("intake add", r);
		}
		free(text);
	}
	snprintf(path, sizeof(path), "%s/incoming", cdir);
	if ((r = fs_mkdir_p(path, 0755)) < 0)
		return cmd_fail("intake add", err_set(-r, "cannot create %s: %s", path, strerror(-r)));
	if (pw && chown(path, pw->pw_uid, pw->pw_gid) < 0)
		return cmd_fail("intake add", err_set(errno, "cannot give %s to %s: %s", path, owner,
						      strerror(errno)));
	printf("enrolled client %s (key %s) in %s; it uploads to %s/incoming%s%s\n", client, id, cdir, cdir,
	       pw ? ", owned by " : " (give it to the client's SFTP account: chown, or --owner)",
	       pw ? owner : "");
	return EXIT_OK;
}

static json_t *night_json(const struct intake_night *n)
{
	json_t *j = json_pack("{s:s, s:s}", "night", n->night, "status", intake_state_name(n->state));

	if (n->have_m) {
		char t[64];
		units_fmt_time(n->m.created * 1000000ull, t, sizeof(t));
		json_object_set_new(j, "kind", json_string(n->m.kind == INTAKE_FULL ? "full" : "delta"));
		json_object_set_new(j, "base", n->m.base_night[0] ? json_string(n->m.base_night) : json_null());
		json_object_set_new(j, "objects", json_integer(n->m.n));
		json_object_set_new(j, "stored_bytes", json_integer((json_int_t)(n->m.stored + n->m.file_len)));
		json_object_set_new(j, "created", json_string(t));
		json_object_set_new(j, "created_unix", json_integer((json_int_t)n->m.created));
	}
	if (n->state == NIGHT_OK) {
		json_object_set_new(j, "chain", json_integer(n->chain));
		json_object_set_new(j, "full", json_string(n->full));
	}
	if (n->problem[0])
		json_object_set_new(j, "problem", json_string(n->problem));
	if (n->tamper[0])
		json_object_set_new(j, "tampered", json_string(n->tamper));
	return j;
}

int intake_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		INTAKE_STORE_OPTS,
		{ 0 }
	};
	const char *client = NULL;
	bool json = false;
	char **names = NULL;
	size_t nn = 0;
	json_t *all = NULL;
	int c, r, code = EXIT_OK;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'C': client = optarg; break;
		case 'j': json = true; break;
		default:
			if (intake_store_opt(c, optarg))
				break;
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "Usage: bascule intake ls DIR [--client NAME] [--json]\n");
		return EXIT_USAGE;
	}
	if ((r = intake_client_list(argv[optind], client, &names, &nn)) < 0)
		return cmd_fail("intake ls", r);
	all = json_array();
	for (size_t i = 0; i < nn; i++) {
		struct intake_client ic;
		char s1[32], s2[32];
		if ((r = intake_scan(argv[optind], names[i], false, &ic)) < 0) {
			code = cmd_fail("intake ls", r);
			continue;
		}
		if (json) {
			json_t *nights = json_array();
			for (size_t k = 0; k < ic.n; k++)
				json_array_append_new(nights, night_json(&ic.nights[k]));
			json_array_append_new(all, json_pack("{s:s, s:s, s:o, s:I, s:I, s:I}", "client", ic.name,
							     "key_id", ic.key_id, "nights", nights, "stored_bytes",
							     (json_int_t)ic.stored, "unfinished_objects",
							     (json_int_t)ic.orphan_objects, "unfinished_bytes",
							     (json_int_t)ic.orphan_bytes));
		} else {
			units_fmt_size(ic.stored, s1, sizeof(s1));
			printf("client %s (key %s): %zu nights, %s\n", ic.name, ic.key_id, ic.n, s1);
			if (ic.n)
				printf("  %-10s  %-5s  %-10s  %7s  %10s  %-20s  %5s  %s\n", "NIGHT", "KIND", "BASE",
				       "OBJECTS", "STORED", "UPLOADED", "CHAIN", "STATUS");
			for (size_t k = 0; k < ic.n; k++) {
				const struct intake_night *n = &ic.nights[k];
				char t[64] = "-";
				if (!n->have_m) {
					printf("  %-10s  %-5s  %-10s  %7s  %10s  %-20s  %5s  %s: %s\n", n->night, "-",
					       "-", "-", "-", "-", "-", intake_state_name(n->state), n->problem);
					continue;
				}
				units_fmt_time(n->m.created * 1000000ull, t, sizeof(t));
				units_fmt_size(n->m.stored + n->m.file_len, s2, sizeof(s2));
				printf("  %-10s  %-5s  %-10s  %7u  %10s  %-20s  %5u  %s%s%s\n", n->night,
				       n->m.kind == INTAKE_FULL ? "full" : "delta",
				       n->m.base_night[0] ? n->m.base_night : "-", n->m.n, s2, t, n->chain,
				       intake_state_name(n->state), n->problem[0] ? ": " : "", n->problem);
				if (n->tamper[0])
					printf("    TAMPERED WITH (the genuine versions are intact and are what is "
					       "read): %s\n", n->tamper);
			}
			if (ic.orphan_objects) {
				units_fmt_size(ic.orphan_bytes, s2, sizeof(s2));
				printf("  unfinished runs: %llu objects, %s (an upload cut before its manifest: "
				       "never counted as a night)\n", (unsigned long long)ic.orphan_objects, s2);
			}
		}
		intake_client_free(&ic);
	}
	if (json) {
		char *s = json_dumps(all, JSON_INDENT(2));
		if (s)
			printf("%s\n", s);
		free(s);
	}
	json_decref(all);
	intake_clients_free(names, nn);
	return code;
}

int cmd_intake(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	/* `bascule intake VERB --help`: the verbs share one usage. */
	for (int i = 2; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return EXIT_OK;
		}
	optind = 0;
	if (!strcmp(argv[1], "add"))
		return intake_add(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ls"))
		return intake_ls(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return intake_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "restore"))
		return intake_restore(argc - 1, argv + 1);
	if (!strcmp(argv[1], "open-key"))
		return intake_open_key(argc - 1, argv + 1);
	if (!strcmp(argv[1], "prune"))
		return intake_prune(argc - 1, argv + 1);
	if (!strcmp(argv[1], "metrics"))
		return intake_metrics(argc - 1, argv + 1);
	fprintf(stderr, "bascule intake: unknown verb '%s' (add, ls, check, restore, open-key, prune, metrics)\n", argv[1]);
	return EXIT_USAGE;
}
