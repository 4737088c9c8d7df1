/* cmd_pgstream.c - bascule pgstream: the process that speaks to a
 * PostgreSQL primary for a postgres source.
 *
 * Without --to-dir or --base-backup it is the child basculed runs per
 * source: it switches to an unprivileged user and enters its sandbox
 * before any connection, then speaks the pipe protocol on stdin/stdout
 * (lib/pgpipe.h).  With --to-dir or --base-backup it is also that child's
 * owner: it runs itself as the child and writes the WAL or the base backup
 * into a directory (tools/pgdir.c), for operators and for tests. */
#include "cmd.h"
#include "err.h"
#include "pgconn.h"
#include "pgpipe.h"
#include "sandbox.h"
#include "pgstream.h"
#include "pgwal.h"
#include "units.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PGSTREAM_DEFAULT_USER "bascule"

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule pgstream --conninfo CONNINFO [--slot NAME] [OPTIONS]\n"
		   "       bascule pgstream --conninfo CONNINFO --slot NAME --to-dir DIR [--endpos LSN]\n"
		   "       bascule pgstream --conninfo CONNINFO --base-backup DIR [--checkpoint fast|spread]\n\n"
		   "Speak PostgreSQL's replication protocol to a primary (libpq, replication=true).\n"
		   "Without --to-dir or --base-backup: the child basculed runs for a postgres source,\n"
		   "framed messages on stdout, commands on stdin (docs/postgres.md).\n\n"
		   "  --conninfo CONNINFO       libpq connection string (no password in it: use passfile=)\n"
		   "  --slot NAME               physical replication slot, created if missing\n"
		   "  --application-name NAME   application_name (synchronous_standby_names can name it)\n"
		   "  --user USER               run as USER when started as root (default %s)\n"
		   "  --status-interval D       standby status updates at least this often (default 10s)\n"
		   "  --connect-timeout D       give up connecting after D (default 30s)\n"
		   "  --to-dir DIR              write WAL segments into DIR as pg_receivewal does\n"
		   "  --endpos LSN              with --to-dir: stop once WAL up to LSN is durable\n"
		   "  --base-backup DIR         write a base backup (tar archives, backup_manifest) into DIR\n"
		   "  --label TEXT              the base backup's label (default \"bascule pgstream\")\n"
		   "  --checkpoint fast|spread  the base backup's checkpoint (default spread)\n"
		   "  --progress                report the base backup's progress (with -v)\n\n"
		   "Exit codes: 0 ok, 1 failure (unreachable, WAL lost), 2 usage, 3 configuration\n"
		   "(conninfo, wal_level), 4 access (authentication, pg_hba.conf, REPLICATION), 5 protocol,\n"
		   "7 no space, 9 busy (slot in use, max_wal_senders).\n", PGSTREAM_DEFAULT_USER);
}

/* Before the engine runs: report an error as the engine would (a line on
 * stderr, PGP_ERROR on stdout) and return its exit code. */
static int refuse(uint32_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(uint32_t code, const char *fmt, ...)
{
	char what[PGP_MAX_TEXT + 1], fix[512], line[PGP_MAX_TEXT + 1];
	struct wbuf b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	pgconn_fix(code, NULL, fix, sizeof(fix));
	if (fix[0])
		snprintf(what + strlen(what), sizeof(what) - strlen(what), ": %s", fix);
	pgpipe_flatten(line, sizeof(line), what);
	fprintf(stderr, "bascule pgstream: %s\n", line);
	wbuf_init(&b, 4096);
	if (pgpipe_put_error(&b, code, line) == 0 && write(STDOUT_FILENO, b.p, b.len) < 0) {
		/* nobody to tell */
	}
	wbuf_free(&b);
	return pgpipe_error_exit(code);
}

static void probe(const char *what)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char addr[64];
	unsigned port;
	int fd = -1, r;

	if (sscanf(what, "tcp:%63[0-9.]:%u", addr, &port) == 2 && inet_pton(AF_INET, addr, &sa.sin_addr) == 1) {
		sa.sin_port = htons((uint16_t)port);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		r = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	} else
		r = fd = open(what, O_RDONLY | O_CLOEXEC);
	fprintf(stderr, "bascule pgstream: sandbox probe %s: %s\n", what, r >= 0 ? "opened" : strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* The child: drop privileges and enter the sandbox, then connect. */
static int run_child(const struct pgstream_opts *o)
{
	struct pgconn_needs needs = { 0 };
	struct sandbox sb = { .prog = "bascule pgstream", .user = o->user ? o->user : PGSTREAM_DEFAULT_USER,
			      .user_key = "--user", .user_given = o->user != NULL };
	char home[512], note[512];
	uid_t uid;
	gid_t gid;
	int r;

	if ((r = sandbox_account(&sb, &uid, &gid, home, sizeof(home))) < 0)
		return refuse(PGE_SANDBOX, "%s", err_msg(r));
	if ((r = pgconn_inspect(o->conninfo, home, &needs)) < 0)
		return refuse(PGE_CONNINFO, "%s", err_msg(r));
	/* Readable: /etc (the resolver), the socket directories and the files
	 * the conninfo names; TCP: its ports and 53, or none at all. */
	sb.resolver = true;
	for (size_t i = 0; i < needs.n_dirs && sb.n_ro < SANDBOX_MAX_PATHS; i++)
		sb.ro[sb.n_ro++] = needs.dirs[i];
	for (size_t i = 0; i < needs.n_files && sb.n_ro < SANDBOX_MAX_PATHS; i++)
		sb.ro[sb.n_ro++] = needs.files[i];
	if (needs.tcp) {
		for (size_t i = 0; i < needs.n_ports && sb.n_ports < SANDBOX_MAX_PORTS - 1; i++)
			sb.tcp_ports[sb.n_ports++] = needs.ports[i];
		sb.tcp_ports[sb.n_ports++] = 53; /* the resolver's TCP fallback */
	}
	r = sandbox_enter(&sb, note, sizeof(note));
	/* Files libpq will open must be readable as the new user: say so now
	 * rather than as a puzzling libpq error later. */
	for (size_t i = 0; r == 0 && i < needs.n_files; i++) {
		int fd = open(needs.files[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0 && errno != ENOENT)
			r = err_set(EACCES, "%s cannot be read by the user pgstream runs as (uid %u): %s; make it "
					    "that user's (chown) and keep it mode 0600", needs.files[i],
				    (unsigned)getuid(), strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	pgconn_needs_free(&needs);
	if (r < 0)
		return refuse(PGE_SANDBOX, "%s", err_msg(r));
	if (note[0])
		fprintf(stderr, "bascule pgstream: warning: %s\n", note);
	if (chdir("/") < 0)
		return refuse(PGE_SANDBOX, "chdir /: %s", strerror(errno));
	/* Test hook (tests/e2e/pgstream.sh): show what the sandbox lets
	 * through, a file (PATH) or a TCP connection (tcp:IPV4:PORT). */
	if (getenv("BASCULE_TEST_SANDBOX_PROBE"))
		probe(getenv("BASCULE_TEST_SANDBOX_PROBE"));
	return pgstream_child_run(o);
}

static int duration_ms(const char *s, int *ret)
{
	uint64_t us;

	if (units_parse_duration(s, &us) < 0 || us < 1000 || us > 3600ull * 1000000)
		return -EINVAL;
	*ret = (int)(us / 1000);
	return 0;
}

int cmd_pgstream(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "conninfo", required_argument, NULL, 'c' },
		{ "slot", required_argument, NULL, 's' },
		{ "application-name", required_argument, NULL, 'a' },
		{ "user", required_argument, NULL, 'u' },
		{ "status-interval", required_argument, NULL, 'i' },
		{ "connect-timeout", required_argument, NULL, 't' },
		{ "to-dir", required_argument, NULL, 'D' },
		{ "endpos", required_argument, NULL, 'E' },
		{ "base-backup", required_argument, NULL, 'B' },
		{ "label", required_argument, NULL, 'l' },
		{ "checkpoint", required_argument, NULL, 'C' },
		{ "progress", no_argument, NULL, 'P' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct pgstream_opts o = { .status_interval_ms = 10000, .connect_timeout_ms = 30000,
				   .label = "bascule pgstream", .verbose = arg_global.verbose };
	const char *status = "10s", *timeout = "30s";
	int c;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o.conninfo = optarg; break;
		case 's': o.slot = optarg; break;
		case 'a': o.appname = optarg; break;
		case 'u': o.user = optarg; break;
		case 'i': status = optarg; break;
		case 't': timeout = optarg; break;
		case 'D': o.to_dir = optarg; break;
		case 'B': o.backup_dir = optarg; break;
		case 'l': o.label = optarg; break;
		case 'P': o.progress = true; break;
		case 'v': o.verbose++; break;
		case 'E':
			if (pgwal_lsn_parse(optarg, &o.endpos) < 0 || !o.endpos) {
				fprintf(stderr, "bascule pgstream: --endpos %s is not an LSN (X/Y, e.g. 0/3000000)\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'C':
			if (strcmp(optarg, "fast") && strcmp(optarg, "spread")) {
				fprintf(stderr, "bascule pgstream: --checkpoint is fast or spread\n");
				return EXIT_USAGE;
			}
			o.fast_checkpoint = !strcmp(optarg, "fast");
			break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc || !o.conninfo) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (duration_ms(status, &o.status_interval_ms) < 0 || duration_ms(timeout, &o.connect_timeout_ms) < 0) {
		fprintf(stderr, "bascule pgstream: --status-interval and --connect-timeout are durations from 1ms "
			"to 1h (e.g. 10s)\n");
		return EXIT_USAGE;
	}
	if (o.slot && !pgwal_slot_name_ok(o.slot)) {
		fprintf(stderr, "bascule pgstream: --slot %s: a slot name is 1 to 63 of a-z, 0-9 and _\n", o.slot);
		return EXIT_USAGE;
	}
	if (!pgpipe_label_ok(o.label)) {
		fprintf(stderr, "bascule pgstream: --label: 1 to %d of letters, digits, space and _.:-\n", PGP_MAX_LABEL);
		return EXIT_USAGE;
	}
	if (o.appname && (strlen(o.appname) > 63 || strpbrk(o.appname, "'\"\\"))) {
		fprintf(stderr, "bascule pgstream: --application-name: at most 63 characters, no quotes\n");
		return EXIT_USAGE;
	}
	if ((o.to_dir && o.backup_dir) || (o.to_dir && !o.slot) || (o.endpos && !o.to_dir)) {
		fprintf(stderr, "bascule pgstream: %s\n", o.to_dir && o.backup_dir ? "--to-dir or --base-backup, not both" :
			o.endpos ? "--endpos goes with --to-dir" : "--to-dir needs --slot (the slot keeps the WAL "
			"not yet written there)");
		return EXIT_USAGE;
	}
	if (o.to_dir || o.backup_dir) {
		char si[32], ct[32];
		char *child[16];
		int n = 0;

		snprintf(si, sizeof(si), "%dms", o.status_interval_ms);
		snprintf(ct, sizeof(ct), "%dms", o.connect_timeout_ms);
		child[n++] = "bascule";
		child[n++] = "pgstream";
		child[n++] = "--conninfo";
		child[n++] = (char *)o.conninfo;
		if (o.slot)
			child[n++] = "--slot", child[n++] = (char *)o.slot;
		if (o.appname)
			child[n++] = "--application-name", child[n++] = (char *)o.appname;
		if (o.user)
			child[n++] = "--user", child[n++] = (char *)o.user;
		child[n++] = "--status-interval";
		child[n++] = si;
		child[n++] = "--connect-timeout";
		child[n++] = ct;
		if (o.verbose)
			child[n++] = "--verbose";
		child[n] = NULL;
		return pgstream_dir_run(&o, child);
	}
	if (isatty(STDOUT_FILENO)) {
		fprintf(stderr, "bascule pgstream: stdout is a terminal, and the child speaks its pipe protocol "
			"there: give --to-dir DIR or --base-backup DIR to write files\n");
		return EXIT_USAGE;
	}
	return run_child(&o);
}
