/* cmd_sync.c - bascule sync [GROUP] [--wait] [--timeout D] [--json]: cut an
 * epoch now and, with --wait, return once every target has applied it
 * durably. */
#include "clock.h"
#include "cmd.h"
#include "ctl.h"
#include "err.h"
#include "units.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void sync_usage(FILE *f)
{
	fprintf(f, "Usage: bascule [-c FILE] sync [GROUP] [--wait] [--timeout D] [--json]\n\n"
		   "Ask basculed to cut an epoch of GROUP (default: every group) now.\n"
		   "  --wait        return only when every target has applied the epoch and made\n"
		   "                it durable: the replica then equals the source as it was when\n"
		   "                the epoch was cut (a postgres source: every transaction\n"
		   "                committed before the call)\n"
		   "  --timeout D   give up waiting after D (default 60s): exit 6 naming the\n"
		   "                targets that lag\n"
		   "  --vault       also wait for vault targets (they take the epoch at once,\n"
		   "                whatever their interval); without it --wait waits for replicas\n"
		   "  --json        print one JSON object: {\"epochs\": {GROUP: EPOCH, ...},\n"
		   "                \"acknowledged\": true} (false without --wait), for scripts and\n"
		   "                the drill\n\n"
		   "Exit 0: cut (and with --wait, acknowledged); 6: --wait ran out of time; 1: the\n"
		   "group is paused; 2: usage, no such group; 3: the configuration cannot be read;\n"
		   "4: not root nor in control_group; 8: the daemon cannot be reached.\n");
}

/* 1 if every target has acked EPOCHS; else 0 with a description in WHY. */
static int all_acked(json_t *status, json_t *epochs, bool vaults, char *why, size_t len)
{
	json_t *targets = json_object_get(status, "targets"), *t;
	size_t i;
	int done = 1;

	why[0] = 0;
	json_array_foreach(targets, i, t) {
		const char *name = json_string_value(json_object_get(t, "name"));
		const char *state = json_string_value(json_object_get(t, "state"));
		const char *lerr = json_string_value(json_object_get(t, "last_error"));
		const char *type = json_string_value(json_object_get(t, "type"));
		json_t *groups = json_object_get(t, "groups");
		const char *g;
		json_t *want;

		if (!vaults && type && !strcmp(type, "vault"))
			continue;
		json_object_foreach(epochs, g, want) {
			json_t *tg = json_object_get(groups, g);
			json_int_t acked = json_integer_value(json_object_get(tg, "acked"));
			if (acked >= json_integer_value(want))
				continue;
			done = 0;
			snprintf(why + strlen(why), len - strlen(why),
				 "%starget %s lags: group %s at epoch %lld, waiting for %lld (state %s%s%s)",
				 why[0] ? "; " : "", name ? name : "?", g, (long long)acked,
				 (long long)json_integer_value(want), state ? state : "?",
				 lerr && *lerr ? ", last error: " : "", lerr && *lerr ? lerr : "");
		}
	}
	return done;
}

/* The answer of --json; takes EPOCHS. */
static int print_json(json_t *epochs, bool acked)
{
	json_t *j = json_pack("{s:o, s:b}", "epochs", epochs, "acknowledged", acked);
	int r = j ? json_dumpf(j, stdout, JSON_COMPACT | JSON_SORT_KEYS) : -1;

	json_decref(j);
	if (r < 0) {
		fprintf(stderr, "bascule sync: out of memory\n");
		return EXIT_FAIL;
	}
	printf("\n");
	return EXIT_OK;
}

int cmd_sync(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "wait", no_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "vault", no_argument, NULL, 'V' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	uint64_t timeout = 60000000, start;
	const char *group = NULL;
	json_t *req = NULL, *resp = NULL, *epochs;
	char sock[4096], why[4096];
	bool wait = false, vaults = false, json = false;
	int c, r, ret = EXIT_FAIL;

	while ((c = getopt_long(argc, argv, "wh", opts, NULL)) != -1) {
		switch (c) {
		case 'w': wait = true; break;
		case 'V': vaults = true; break;
		case 'j': json = true; break;
		case 't':
			if (units_parse_duration(optarg, &timeout) < 0) {
				fprintf(stderr, "bascule sync: --timeout wants a duration such as 60s\n");
				return EXIT_USAGE;
			}
			break;
		case 'h': sync_usage(stdout); return EXIT_OK;
		default: sync_usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc)
		group = argv[optind++];
	if (optind != argc) {
		sync_usage(stderr);
		return EXIT_USAGE;
	}
	if ((r = cmd_socket_path(sock, sizeof(sock))) < 0)
		return cmd_fail("sync", r);
	start = clock_mono_usec();
	req = json_pack("{s:s, s:s?}", "cmd", "sync", "group", group);
	/* For a group with postgres sources the daemon answers once the
	 * primary's WAL position of this moment is in its spool. */
	resp = cmd_ctl_wait("sync", sock, req, timeout > 10000000 ? (int)(timeout / 1000 > 130000 ? 130000 : timeout / 1000)
								    : 10000, &ret);
	json_decref(req);
	if (!resp)
		return ret;
	epochs = json_incref(json_object_get(resp, "epochs"));
	json_decref(resp);
	if (!wait) {
		if (json)
			return print_json(epochs, false);
		const char *g;
		json_t *v;
		json_object_foreach(epochs, g, v)
			printf("%s: epoch %lld requested\n", g, (long long)json_integer_value(v));
		json_decref(epochs);
		return EXIT_OK;
	}
	for (;;) {
		json_t *st;
		req = json_pack("{s:s}", "cmd", "status");
		st = cmd_ctl("sync", sock, req, &ret);
		json_decref(req);
		if (!st)
			break;
		if (all_acked(st, epochs, vaults, why, sizeof(why))) {
			const char *g;
			json_t *v;
			json_decref(st);
			if (json)
				return print_json(epochs, true);
			json_object_foreach(epochs, g, v)
				printf("%s: epoch %lld acknowledged by every target\n", g,
				       (long long)json_integer_value(v));
			ret = EXIT_OK;
			break;
		}
		json_decref(st);
		if (clock_mono_usec() - start > timeout) {
			char d[32];
			fprintf(stderr, "bascule sync: timed out after %s: %s\n",
				units_fmt_duration(timeout, d, sizeof(d)), why);
			ret = EXIT_TIMEOUT;
			break;
		}
		usleep(50000);
	}
	json_decref(epochs);
	return ret;
}
