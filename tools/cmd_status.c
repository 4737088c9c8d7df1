/* cmd_status.c - bascule status | metrics | history | pause | resume:
 * reading and steering the daemon through its control socket. */
#include "cmd.h"
#include "ctl.h"
#include "err.h"
#include "units.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Send {"cmd": CMD[, "group": GROUP]} and return the answer (NULL on error,
 * after printing it; *ret_code is the exit code then). */
static json_t *call(const char *what, const char *cmd, const char *group, int *ret_code)
{
	char sock[4096];
	json_t *req, *resp;
	int r;

	if ((r = cmd_socket_path(sock, sizeof(sock))) < 0) {
		*ret_code = cmd_fail(what, r);
		return NULL;
	}
	req = json_pack("{s:s, s:s?}", "cmd", cmd, "group", group);
	/* A reload that meets a running cut is answered when the cut ends. */
	resp = cmd_ctl_wait(what, sock, req, strcmp(cmd, "reload") ? 10000 : 600000, ret_code);
	json_decref(req);
	return resp;
}

static const char *lag_colour(double lag, bool tty)
{
	if (!tty)
		return "";
	return lag < 0 || lag > 300 ? "\033[31m" : lag > 30 ? "\033[33m" : "\033[32m";
}

static const char *jstr(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v ? v : "-";
}

/* A postgres source: its stream, the slot's retention, the newest base. */
static void print_pg_source(const char *name, json_t *pg)
{
	json_t *base;
	const char *err;
	char age[32] = "";

	if (!pg)
		return;
	base = json_object_get(pg, "base");
	err = json_string_value(json_object_get(pg, "last_error"));
	if (json_is_object(base))
		units_fmt_duration((uint64_t)(json_real_value(json_object_get(base, "age_seconds")) * 1e6), age,
				   sizeof(age));
	printf("  postgres %-10s %-10s received %s durable %s slot retains %.1f MB spool %.1f MB base %s%s%s%s%s%s\n",
	       name, jstr(pg, "state"), jstr(pg, "received_lsn"), jstr(pg, "durable_lsn"),
	       (double)json_integer_value(json_object_get(pg, "slot_retained_bytes")) / 1e6,
	       (double)json_integer_value(json_object_get(pg, "spool_bytes")) / 1e6,
	       json_is_object(base) ? jstr(base, "id") : "none yet", age[0] ? " (" : "", age, age[0] ? " old)" : "",
	       err && *err ? "  error: " : "", err && *err ? err : "");
}

/* A target's copy of each postgres source of a group. */
static void print_pg_target(json_t *pgs)
{
	const char *name;
	json_t *ps;

	json_object_foreach(pgs, name, ps) {
		double lag = json_real_value(json_object_get(ps, "lag_seconds"));
		char lagbuf[32] = "-";
		if (!json_object_get(ps, "acked_lsn"))
			continue;   /* a vault: not shipped there */
		if (lag >= 0)
			units_fmt_duration((uint64_t)(lag * 1e6), lagbuf, sizeof(lagbuf));
		printf("    %-10s acked %s lag %s (%lld bytes)%s\n", name,
		       json_is_string(json_object_get(ps, "acked_lsn")) ? jstr(ps, "acked_lsn") : "none yet", lagbuf,
		       (long long)json_integer_value(json_object_get(ps, "lag_bytes")),
		       json_is_true(json_object_get(ps, "needs_base")) ? "  NEEDS A BASE BACKUP (fell behind the WAL spool)"
									: "");
	}
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	json_t *st, *targets, *groups, *t, *g;
	bool as_json = false, tty = isatty(STDOUT_FILENO);
	size_t i, k;
	int c, code = EXIT_OK;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = true; break;
		case 'h':
			printf("Usage: bascule [-c FILE] status [--json]\n\n"
			       "Each group's last epoch; for each target its state, the epoch it holds and\n"
			       "its lag (the age of that epoch: the data it would lose now).  On a terminal\n"
			       "the lag is green up to 30 s, yellow up to 5 min, red beyond.\n\n"
			       "Exit 0: printed; 3: the configuration cannot be read; 4: may not connect\n"
			       "(not root, nor in the socket's group); 8: the daemon cannot be reached.\n");
			return EXIT_OK;
		default:
			fprintf(stderr, "Usage: bascule [-c FILE] status [--json]\n");
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "Usage: bascule [-c FILE] status [--json]\n");
		return EXIT_USAGE;
	}
	if (!(st = call("status", "status", NULL, &code)))
		return code;
	if (as_json) {
		json_dumpf(st, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(UNITS_REAL_DIGITS));
		putchar('\n');
		json_decref(st);
		return EXIT_OK;
	}
	groups = json_object_get(st, "groups");
	targets = json_object_get(st, "targets");
	json_array_foreach(groups, i, g) {
		const char *gname = json_string_value(json_object_get(g, "name"));
		size_t si, disks = 0;
		json_t *src;
		json_array_foreach(json_object_get(g, "sources"), si, src)
			disks += !json_object_get(src, "postgres");
		printf("group %s: epoch %lld (%s)%s%s%s%s\n", gname,
		       (long long)json_integer_value(json_object_get(g, "last_cut")),
		       !disks ? "WAL" : json_is_true(json_object_get(g, "consistent")) ? "consistent" : "fuzzy",
		       json_is_true(json_object_get(g, "cutting")) ? ", scanning" : "",
		       json_is_true(json_object_get(g, "cut_timed_out"))
			       ? " (HUNG: over cut_timeout, its reads have not returned)" : "",
		       json_is_true(json_object_get(g, "waiting")) ? ", waiting for a scan slot" : "",
		       json_is_true(json_object_get(g, "paused")) ? ", PAUSED" : "");
		json_array_foreach(json_object_get(g, "sources"), si, src)
			print_pg_source(json_string_value(json_object_get(src, "name")), json_object_get(src, "postgres"));
		json_array_foreach(targets, k, t) {
			json_t *tg = json_object_get(json_object_get(t, "groups"), gname);
			const char *err = json_string_value(json_object_get(t, "last_error"));
			double lag = json_real_value(json_object_get(tg, "lag_seconds"));
			char lagbuf[32];
			if (lag < 0)
				snprintf(lagbuf, sizeof(lagbuf), "none yet");
			else
				units_fmt_duration((uint64_t)(lag * 1e6), lagbuf, sizeof(lagbuf));
			printf("  target %-12s %-11s epoch %-6lld lag %s%-8s%s %6.1f MB/s%s%s\n",
			       json_string_value(json_object_get(t, "name")),
			       json_string_value(json_object_get(t, "state")),
			       (long long)json_integer_value(json_object_get(tg, "acked")), lag_colour(lag, tty),
			       lagbuf, tty ? "\033[0m" : "",
			       json_real_value(json_object_get(t, "throughput_bytes_per_second")) / 1e6,
			       err && *err ? "  error: " : "", err && *err ? err : "");
			print_pg_target(json_object_get(tg, "postgres"));
		}
	}
	json_decref(st);
	return EXIT_OK;
}

int cmd_metrics(int argc, char **argv)
{
	json_t *st;
	int code = EXIT_OK;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("Usage: bascule [-c FILE] metrics\n\n"
		       "Print the daemon's metrics in the Prometheus text exposition format\n"
		       "(bascule_target_lag_seconds, bascule_target_up, ...), e.g. for the node\n"
		       "exporter's textfile collector.  With metrics_listen in the configuration,\n"
		       "basculed serves the same text at http://ADDRESS:PORT/metrics.\n\n"
		       "Exit 0: printed; 3: the configuration cannot be read; 4: may not connect;\n"
		       "8: the daemon cannot be reached.\n");
		return EXIT_OK;
	}
	if (!(st = call("metrics", "metrics", NULL, &code)))
		return code;
	fputs(json_string_value(json_object_get(st, "text")), stdout);
	json_decref(st);
	return EXIT_OK;
}

int cmd_history(int argc, char **argv)
{
	json_t *st, *e;
	size_t i;
	int code = EXIT_OK;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("Usage: bascule [-c FILE] history\n\nRecent epochs, acknowledgements and errors.\n\n"
		       "Exit 0: printed; 3: the configuration cannot be read; 4: may not connect;\n"
		       "8: the daemon cannot be reached.\n");
		return EXIT_OK;
	}
	if (!(st = call("history", "history", NULL, &code)))
		return code;
	json_array_foreach(json_object_get(st, "events"), i, e) {
		time_t tt = (time_t)json_real_value(json_object_get(e, "time"));
		struct tm tm;
		char ts[32];
		localtime_r(&tt, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
		printf("%s %-5s %s%s%s epoch %lld %s\n", ts, json_string_value(json_object_get(e, "kind")),
		       json_string_value(json_object_get(e, "group")),
		       *json_string_value(json_object_get(e, "target")) ? " -> " : "",
		       json_string_value(json_object_get(e, "target")),
		       (long long)json_integer_value(json_object_get(e, "epoch")),
		       json_string_value(json_object_get(e, "text")));
	}
	json_decref(st);
	return EXIT_OK;
}

/* bascule pause|resume [GROUP], bascule reload */
int cmd_pause(int argc, char **argv)
{
	json_t *st;
	int code = EXIT_OK;

	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("Usage: bascule [-c FILE] %s%s\n\n%s\n\n"
		       "Exit 0: done; 2: usage%s; 3: the configuration cannot be read%s;\n"
		       "4: not root nor in control_group; 8: the daemon cannot be reached.\n",
		       argv[0], strcmp(argv[0], "reload") ? " [GROUP]" : "",
		       !strcmp(argv[0], "pause") ? "Stop cutting epochs of GROUP (default: all) until resume."
		       : !strcmp(argv[0], "resume") ? "Cut epochs of GROUP (default: all) again, one right away."
		       : "Re-read basculed's configuration file (as SIGHUP does); an invalid file is\n"
			 "refused with its error and the running configuration stays.  A valid one\n"
			 "applies when the running cut, if any, ends; the command returns then\n"
			 "(within 10 minutes).",
		       strcmp(argv[0], "reload") ? ", no such group" : "",
		       strcmp(argv[0], "reload") ? "" : ", or the new one is refused");
		return EXIT_OK;
	}
	if (argc > 2 || (!strcmp(argv[0], "reload") && argc > 1) || (argc > 1 && argv[1][0] == '-')) {
		fprintf(stderr, "Usage: bascule [-c FILE] %s%s\n", argv[0], strcmp(argv[0], "reload") ? " [GROUP]" : "");
		return EXIT_USAGE;
	}
	if (!(st = call(argv[0], argv[0], argc > 1 ? argv[1] : NULL, &code)))
		return code;
	json_decref(st);
	return EXIT_OK;
}
