/* bascule.c - the bascule command: one table of subcommands, --help built
 * from it (as WireGuard's wg does). */
#include "cmd.h"
#include "vault_cmd.h"
#include "config.h"
#include "ctl.h"
#include "err.h"
#include "key.h"
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct global_opts arg_global;

static const struct subcommand {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
	const char *description;
} subcommands[] = {
	{ "keygen", cmd_keygen, "keygen site|signing|vault|client FILE",
	  "create a site key, a report signing key pair, a vault key or a hybrid-PRA client's keys" },
	{ "key", cmd_key, "key id FILE", "print the id of a site or signing key file (compare the two sites)" },
	{ "sync", cmd_sync, "sync [GROUP] [--wait] [--timeout D]",
	  "cut an epoch now; with --wait, return once every target has it" },
	{ "status", cmd_status, "status [--json]", "where every group and target stands, with lag" },
	{ "metrics", cmd_metrics, "metrics", "the daemon's metrics, Prometheus text format" },
	{ "history", cmd_history, "history", "recent epochs, acknowledgements and errors" },
	{ "check", cmd_check, "check --max-lag D [--target T]", "monitoring plugin (Nagios/Icinga exit codes)" },
	{ "pause", cmd_pause, "pause [GROUP]", "stop cutting epochs until resume (root or control_group)" },
	{ "resume", cmd_pause, "resume [GROUP]", "cut epochs again" },
	{ "reload", cmd_pause, "reload", "re-read the daemon's configuration (as SIGHUP)" },
	{ "trust-host", cmd_trust_host, "trust-host HOST[:PORT] --known-hosts FILE",
	  "show a secondary's SSH host key fingerprint and trust it once confirmed" },
	{ "recv", cmd_recv, "recv --root DIR [--key FILE]",
	  "receive epochs on stdin/stdout and apply them to the replicas in DIR" },
	{ "relay", cmd_relay, "relay --url ssh://U@H/DIR --identity F --known-hosts F --command C",
	  "the ssh:// transport basculed runs for a replica target (unprivileged, sandboxed)" },
	{ "drill", cmd_drill, "drill RUNBOOK --mode MODE",
	  "failover drill: plan, planned, unplanned, test, failback; signed RTO/RPO report" },
	{ "space", cmd_space, "space [--json] PATH", "space available where PATH is (the drill's precheck)" },
	{ "report", cmd_report, "report verify [--key PUB] REPORT", "check a drill report's signature" },
	{ "vault", cmd_vault, "vault init|ls|check|prune", "check an S3 bucket, list, check and prune the provider-blind vault" },
	{ "restore", cmd_restore, "restore --vault URL --source G/S --to PATH",
	  "rebuild a source at any retained epoch from the vault" },
	{ "ship", cmd_ship, "ship -c ship.yaml [--verbose]",
	  "hybrid PRA, client side: dump, delta, encrypt, sign and upload tonight's dump" },
	{ "intake", cmd_intake, "intake add|ls|check DIR",
	  "hybrid PRA, operator side: enrol clients, list and check their nights (no secret)" },
	{ "pgstream", cmd_pgstream, "pgstream --conninfo C [--slot S] [--to-dir|--base-backup DIR]",
	  "stream a PostgreSQL primary's WAL and base backups (basculed's child, or into a directory)" },
	{ "replica", cmd_replica, "replica VERB --root DIR",
	  "list, verify, recover, rollback, promote, demote, clone the replicas in DIR" },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule [-c FILE] [--socket PATH] COMMAND [ARGS]\n\n"
		   "Bascule replicates VM disks, encrypted, to a secondary site.\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(f, "  %-48s %s\n", subcommands[i].usage, subcommands[i].description);
	fprintf(f, "\nOptions:\n"
		   "  -c, --config FILE   configuration (default /etc/bascule/bascule.yaml)\n"
		   "      --socket PATH   daemon control socket (default: from the configuration)\n"
		   "  -v, --verbose       more messages\n"
		   "  -h, --help          this help; 'bascule COMMAND --help' for a command\n"
		   "  -V, --version       print the version\n\n"
		   "Exit codes: 0 ok, 1 failure, 2 usage, 3 config, 4 key, 5 integrity,\n"
		   "6 timeout, 7 no space, 8 daemon unreachable, 9 busy.  See bascule(1).\n");
}

int cmd_fail(const char *what, int err)
{
	fprintf(stderr, "bascule %s: %s\n", what, err_msg(err));
	return err_exit_code(err);
}

int cmd_key_load(const char *file, struct site_key **ret)
{
	int r = key_load(file ? file : CMD_SITE_KEY, ret);

	if (r < 0 && !file)
		err_wrap(r, "the site key (the default --key %s; give --key FILE for another)", CMD_SITE_KEY);
	return r;
}

json_t *cmd_ctl(const char *what, const char *sock, json_t *req, int *ret_code)
{
	return cmd_ctl_wait(what, sock, req, 10000, ret_code);
}

json_t *cmd_ctl_wait(const char *what, const char *sock, json_t *req, int timeout_ms, int *ret_code)
{
	json_t *resp = NULL;
	int r = ctl_call(sock, req, timeout_ms, &resp);

	if (r < 0) {
		*ret_code = cmd_fail(what, r);
		return NULL;
	}
	if (!json_is_true(json_object_get(resp, "ok"))) {
		const char *e = json_string_value(json_object_get(resp, "error"));
		json_int_t code = json_integer_value(json_object_get(resp, "exit"));
		fprintf(stderr, "bascule %s: %s\n", what, e ? e : "refused by the daemon");
		*ret_code = code > EXIT_OK && code <= EXIT_BUSY ? (int)code : EXIT_FAIL;
		json_decref(resp);
		return NULL;
	}
	return resp;
}

int cmd_socket_path(char *buf, unsigned len)
{
	struct config *c = NULL;
	int r;

	if (arg_global.socket) {
		snprintf(buf, len, "%s", arg_global.socket);
		return 0;
	}
	/* Only the socket is needed: disks and keys need not be readable here. */
	r = config_read(arg_global.config ? arg_global.config : "/etc/bascule/bascule.yaml", false, &c);
	if (r < 0)
		return r;
	snprintf(buf, len, "%s", c->control_socket);
	config_free(c);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	int c;

	/* fds 0-2 open (on /dev/null if closed): a pipe or file opened later
	 * would otherwise take one, and "fd 0" means no stdin to subproc.c
	 * (intake restore --load would give pg_restore /dev/null, then wait
	 * on a pipe nobody reads). */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
			(void)open("/dev/null", fd ? O_WRONLY : O_RDONLY); /* the lowest free fd: this one */

	if (sodium_init() < 0) {
		fprintf(stderr, "bascule: libsodium cannot be initialised\n");
		return EXIT_FAIL;
	}
	while ((c = getopt_long(argc, argv, "+c:vhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': arg_global.config = optarg; break;
		case 'S': arg_global.socket = optarg; break;
		case 'v': arg_global.verbose++; break;
		case 'h': usage(stdout); return EXIT_OK;
		case 'V': printf("bascule %s\n", BASCULE_VERSION); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	log_init("bascule", arg_global.verbose);
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		if (strcmp(argv[optind], subcommands[i].name) == 0) {
			argc -= optind;
			argv += optind;
			optind = 0; /* reset getopt for the subcommand */
			return subcommands[i].fn(argc, argv);
		}
	}
	fprintf(stderr, "bascule: unknown command '%s'; see 'bascule --help'\n", argv[optind]);
	return EXIT_USAGE;
}
