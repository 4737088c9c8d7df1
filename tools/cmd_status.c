/* cmd_status.c - bascule status [--json]: where every target stands. */
#include "cmd.h"
#include "ctl.h"
#include "err.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	json_t *req, *st = NULL, *targets, *groups, *t, *g;
	char sock[4096];
	bool as_json = false;
	size_t i, k;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = true; break;
		case 'h':
			printf("Usage: bascule [-c FILE] status [--json]\n\n"
			       "Show each group's last epoch and, per target, the epoch it has and its lag.\n");
			return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if ((r = cmd_socket_path(sock, sizeof(sock))) < 0)
		return cmd_fail("status", r);
	req = json_pack("{s:s}", "cmd", "status");
	r = ctl_call(sock, req, 10000, &st);
	json_decref(req);
	if (r < 0)
		return cmd_fail("status", r);
	if (as_json) {
		json_dumpf(st, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(st);
		return EXIT_OK;
	}
	groups = json_object_get(st, "groups");
	targets = json_object_get(st, "targets");
	json_array_foreach(groups, i, g) {
		const char *gname = json_string_value(json_object_get(g, "name"));
		printf("group %s: epoch %lld (%s)%s\n", gname,
		       (long long)json_integer_value(json_object_get(g, "last_cut")),
		       json_is_true(json_object_get(g, "consistent")) ? "consistent" : "fuzzy",
		       json_is_true(json_object_get(g, "cutting")) ? ", scanning" : "");
		json_array_foreach(targets, k, t) {
			json_t *tg = json_object_get(json_object_get(t, "groups"), gname);
			const char *err = json_string_value(json_object_get(t, "last_error"));
			double lag = json_real_value(json_object_get(tg, "lag_seconds"));
			printf("  target %-12s %-10s epoch %-6lld lag %s%.1fs%s%s\n",
			       json_string_value(json_object_get(t, "name")),
			       json_string_value(json_object_get(t, "state")),
			       (long long)json_integer_value(json_object_get(tg, "acked")),
			       lag < 0 ? "? " : "", lag < 0 ? 0.0 : lag, err && *err ? "  error: " : "",
			       err && *err ? err : "");
		}
	}
	json_decref(st);
	return EXIT_OK;
}
