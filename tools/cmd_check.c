/* cmd_check.c - bascule check: a monitoring plugin following the Nagios /
 * Icinga plugin conventions: one line of text with perfdata; exit 0 OK,
 * 1 WARNING, 2 CRITICAL, 3 UNKNOWN. */
#include "cmd.h"
#include "ctl.h"
#include "err.h"
#include "units.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>

enum { NAGIOS_OK = 0, NAGIOS_WARNING = 1, NAGIOS_CRITICAL = 2, NAGIOS_UNKNOWN = 3 };

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule [-c FILE] check --max-lag D [--warn-lag D] [--target T]\n\n"
		   "Monitoring plugin (Nagios/Icinga): the lag of every target (or T) against\n"
		   "the thresholds.  CRITICAL above --max-lag, or when a target has no epoch;\n"
		   "WARNING above --warn-lag (default: half of --max-lag) or when a target is\n"
		   "not connected; UNKNOWN when the daemon cannot be asked.  Postgres sources:\n"
		   "CRITICAL when their WAL does not stream or a target fell behind the WAL\n"
		   "spool (it needs a base backup); their lag (the age of the oldest WAL a\n"
		   "target lacks) against the same thresholds.\n"
		   "Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n");
}

int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "max-lag", required_argument, NULL, 'c' },
		{ "warn-lag", required_argument, NULL, 'w' },
		{ "target", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	uint64_t crit = 0, warn = 0;
	const char *only = NULL;
	char sock[4096], worst_text[512] = "", perf[4096] = "";
	json_t *req, *st = NULL, *t;
	size_t i;
	int c, r, state = NAGIOS_OK, matched = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (units_parse_duration(optarg, &crit) < 0) {
				printf("BASCULE UNKNOWN - --max-lag wants a duration such as 60s\n");
				return NAGIOS_UNKNOWN;
			}
			break;
		case 'w':
			if (units_parse_duration(optarg, &warn) < 0) {
				printf("BASCULE UNKNOWN - --warn-lag wants a duration such as 30s\n");
				return NAGIOS_UNKNOWN;
			}
			break;
		case 't': only = optarg; break;
		case 'h': usage(stdout); return NAGIOS_OK;
		default: usage(stderr); return NAGIOS_UNKNOWN;
		}
	}
	if (!crit || optind != argc) {
		usage(stderr);
		return NAGIOS_UNKNOWN;
	}
	if (!warn)
		warn = crit / 2;
	if ((r = cmd_socket_path(sock, sizeof(sock))) < 0) {
		printf("BASCULE UNKNOWN - %s\n", err_msg(r));
		return NAGIOS_UNKNOWN;
	}
	req = json_pack("{s:s}", "cmd", "status");
	r = ctl_call(sock, req, 5000, &st);
	json_decref(req);
	if (r < 0) {
		printf("BASCULE UNKNOWN - %s\n", err_msg(r));
		return NAGIOS_UNKNOWN;
	}
	/* Postgres sources whose WAL does not stream lose everything new. */
	json_array_foreach(json_object_get(st, "groups"), i, t) {
		json_t *src;
		size_t k;
		json_array_foreach(json_object_get(t, "sources"), k, src) {
			json_t *pg = json_object_get(src, "postgres");
			const char *pst = json_string_value(json_object_get(pg, "state"));
			const char *perr = json_string_value(json_object_get(pg, "last_error"));
			if (!pg || !pst || !strcmp(pst, "streaming"))
				continue;
			if (!perr)
				perr = "";
			if (NAGIOS_CRITICAL > state || !worst_text[0])
				snprintf(worst_text, sizeof(worst_text), "source %s/%s: WAL not streaming (%s)%s%s",
					 json_string_value(json_object_get(t, "name")),
					 json_string_value(json_object_get(src, "name")), pst, *perr ? ": " : "", perr);
			state = NAGIOS_CRITICAL;
		}
	}
	json_array_foreach(json_object_get(st, "targets"), i, t) {
		const char *name = json_string_value(json_object_get(t, "name"));
		const char *tstate = json_string_value(json_object_get(t, "state"));
		const char *g;
		json_t *tg;

		if (only && strcmp(only, name))
			continue;
		matched++;
		json_object_foreach(json_object_get(t, "groups"), g, tg) {
			double lag = json_real_value(json_object_get(tg, "lag_seconds"));
			int s = NAGIOS_OK;
			if (lag < 0 || lag > (double)crit / 1e6)
				s = NAGIOS_CRITICAL;
			else if (lag > (double)warn / 1e6 || strcmp(tstate, "connected"))
				s = NAGIOS_WARNING;
			snprintf(perf + strlen(perf), sizeof(perf) - strlen(perf), "%s'lag_%s_%s'=%.1fs;%.0f;%.0f;0;",
				 perf[0] ? " " : "", name, g, lag < 0 ? 0 : lag, (double)warn / 1e6,
				 (double)crit / 1e6);
			if (s > state || !worst_text[0]) {
				if (lag < 0)
					snprintf(worst_text, sizeof(worst_text), "%s/%s has no epoch yet (%s)", name, g, tstate);
				else
					snprintf(worst_text, sizeof(worst_text), "%s/%s lag %.1fs (%s)", name, g, lag, tstate);
			}
			if (s > state)
				state = s;
			{
				const char *sname;
				json_t *ps;
				json_object_foreach(json_object_get(tg, "postgres"), sname, ps) {
					double pl = json_real_value(json_object_get(ps, "lag_seconds"));
					json_int_t lb = json_integer_value(json_object_get(ps, "lag_bytes"));
					int q = NAGIOS_OK;
					if (json_is_true(json_object_get(ps, "needs_base")) || pl > (double)crit / 1e6)
						q = NAGIOS_CRITICAL;
					else if (pl > (double)warn / 1e6)
						q = NAGIOS_WARNING;
					snprintf(perf + strlen(perf), sizeof(perf) - strlen(perf),
						 " 'pglag_%s_%s_%s'=%.3fs;%.0f;%.0f;0; 'pglagbytes_%s_%s_%s'=%lldB;;;0;",
						 name, g, sname, pl < 0 ? 0 : pl, (double)warn / 1e6, (double)crit / 1e6,
						 name, g, sname, (long long)(lb < 0 ? 0 : lb));
					if (q > state || (!worst_text[0] && q)) {
						if (json_is_true(json_object_get(ps, "needs_base")))
							snprintf(worst_text, sizeof(worst_text), "%s/%s/%s needs a base backup "
								 "(it fell behind the WAL spool, or holds none yet)", name, g, sname);
						else
							snprintf(worst_text, sizeof(worst_text), "%s/%s/%s WAL lag %.1fs", name,
								 g, sname, pl);
					}
					if (q > state)
						state = q;
				}
			}
		}
	}
	json_decref(st);
	if (!matched) {
		printf("BASCULE UNKNOWN - no target%s%s in the daemon's configuration\n", only ? " " : "",
		       only ? only : "");
		return NAGIOS_UNKNOWN;
	}
	printf("BASCULE %s - %s | %s\n",
	       state == NAGIOS_OK ? "OK" : state == NAGIOS_WARNING ? "WARNING" : "CRITICAL", worst_text, perf);
	return state;
}
