/* intake_check.c - bascule intake check: the hybrid PRA's dead man's switch
 * and integrity check, as a Nagios/Icinga plugin (0 OK, 1 WARNING,
 * 2 CRITICAL, 3 UNKNOWN; one status line, perfdata, then one line per
 * client).  Needs the clients' public keys only. */
#include "clock.h"
#include "err.h"
#include "intake_tool.h"
#include "units.h"
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_OK = 0, N_WARNING = 1, N_CRITICAL = 2, N_UNKNOWN = 3 };
static const char *const state_names[] = { "OK", "WARNING", "CRITICAL", "UNKNOWN" };

void intake_judge(const char *dir, const char *name, bool read, uint64_t now, uint64_t max_age,
		  uint64_t warn_age, struct intake_verdict *v)
{
	struct intake_client c;
	const struct intake_night *newest;
	char age[32], lim[32];
	size_t bad = 0, incomplete = 0, tampered = 0;
	const struct intake_night *first_bad = NULL, *first_inc = NULL, *first_tamper = NULL;
	uint64_t a;
	int r;

	memset(v, 0, sizeof(*v));
	if ((r = intake_scan(dir, name, read, &c)) < 0) {
		v->state = N_UNKNOWN;
		snprintf(v->text, sizeof(v->text), "%s: %s", name, err_msg(r));
		return;
	}
	for (size_t i = 0; i < c.n; i++) {
		const struct intake_night *n = &c.nights[i];
		if (n->tamper[0]) {
			tampered++;
			first_tamper = first_tamper ? first_tamper : n;
		}
		if (n->state == NIGHT_INCOMPLETE) {
			incomplete++;
			first_inc = first_inc ? first_inc : n;
		} else if (n->state != NIGHT_OK) {
			bad++;
			first_bad = first_bad ? first_bad : n;
		}
	}
	newest = intake_newest(&c);
	if (first_bad) {
		snprintf(v->bad_night, sizeof(v->bad_night), "%s", first_bad->night);
		v->bad_state = first_bad->state;
	}
	units_fmt_duration(max_age, lim, sizeof(lim));
	if (!newest) {
		v->state = N_CRITICAL;
		snprintf(v->text, sizeof(v->text), "%s: no complete night at all%s%s%s%s", name,
			 first_bad ? "; night " : "", first_bad ? first_bad->night : "", first_bad ? " " : "",
			 first_bad ? first_bad->problem : "");
		goto out;
	}
	a = now > newest->m.created * 1000000ull ? now - newest->m.created * 1000000ull : 0;
	snprintf(v->newest, sizeof(v->newest), "%s", newest->night);
	v->age = a;
	units_fmt_duration(a / 1000000ull * 1000000ull, age, sizeof(age));
	snprintf(v->perf, sizeof(v->perf), "'%s_age'=%llus;%llu;%llu '%s_nights'=%zu", name,
		 (unsigned long long)(a / 1000000ull), (unsigned long long)(warn_age / 1000000ull),
		 (unsigned long long)(max_age / 1000000ull), name, c.n - bad - incomplete);
	if (bad) {
		v->state = N_CRITICAL;
		snprintf(v->text, sizeof(v->text), "%s: %zu bad night%s: %s %s: %s (newest good night %s, %s old)",
			 name, bad, bad > 1 ? "s" : "", first_bad->night, intake_state_name(first_bad->state),
			 first_bad->problem, newest->night, age);
	} else if (tampered) {
		/* an account that may write at the intake wrote over a night: the
		 * genuine versions are intact (and are what restore reads), but
		 * someone holding those credentials is at work */
		v->state = N_CRITICAL;
		snprintf(v->text, sizeof(v->text), "%s: %zu night%s TAMPERED WITH: night %s: %s (the genuine "
			 "versions are intact and restore reads them; newest good night %s, %s old)", name, tampered,
			 tampered > 1 ? "s" : "", first_tamper->night, first_tamper->tamper, newest->night, age);
	} else if (a > max_age) {
		v->state = N_CRITICAL;
		snprintf(v->text, sizeof(v->text), "%s: newest complete night %s is %s old (max %s): no dump "
			 "arrived since", name, newest->night, age, lim);
	} else if (warn_age && a > warn_age) {
		char w[32];
		units_fmt_duration(warn_age, w, sizeof(w));
		v->state = N_WARNING;
		snprintf(v->text, sizeof(v->text), "%s: newest complete night %s is %s old (warning at %s)", name,
			 newest->night, age, w);
	} else if (incomplete) {
		v->state = N_WARNING;
		snprintf(v->text, sizeof(v->text), "%s: night %s has an incomplete manifest (%s); newest "
			 "complete night %s, %s old", name, first_inc->night, first_inc->problem, newest->night, age);
	} else {
		snprintf(v->text, sizeof(v->text), "%s: %zu nights, newest %s (%s, %s old), chain of %u from %s",
			 name, c.n, newest->night, newest->m.kind == INTAKE_FULL ? "full" : "delta", age,
			 newest->chain, newest->full);
	}
out:
	intake_client_free(&c);
}

/* --json: the verdicts as one line, for programs (the hybrid drill):
 * {"status", "code", "clients": [{"client", "status", "text", "newest_night",
 * "age_seconds", "bad_night", "bad_state"}]}; the exit code is the same. */
static void print_json(const struct intake_verdict *v, char **names, size_t nn, int worst)
{
	json_t *arr = json_array(), *doc;
	char *s;

	for (size_t i = 0; i < nn; i++)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s}", "client", names[i],
						     "status", state_names[v[i].state], "text", v[i].text,
						     "newest_night", v[i].newest, "age_seconds",
						     (json_int_t)(v[i].age / 1000000ull), "bad_night", v[i].bad_night,
						     "bad_state", v[i].bad_night[0] ? intake_state_name(v[i].bad_state) : ""));
	doc = json_pack("{s:s, s:i, s:o}", "status", state_names[worst], "code", worst, "clients", arr);
	if (doc && (s = json_dumps(doc, JSON_COMPACT))) {
		printf("%s\n", s);
		free(s);
	} else {
		printf("{\"status\":\"UNKNOWN\",\"code\":3,\"clients\":[]}\n");
	}
	json_decref(doc);
}

int intake_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client", required_argument, NULL, 'C' },
		{ "all", no_argument, NULL, 'a' },
		{ "max-age", required_argument, NULL, 'm' },
		{ "warn-age", required_argument, NULL, 'w' },
		{ "quick", no_argument, NULL, 'q' },
		{ "now", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		INTAKE_STORE_OPTS,
		{ 0 }
	};
	const char *client = NULL;
	bool all = false, read = true, json = false;
	uint64_t max_age = 0, warn_age = 0, now = clock_now_usec();
	char **names = NULL, perf[4096] = "";
	size_t nn = 0, worst_i = 0;
	struct intake_verdict *v = NULL;
	int c, r, worst = N_OK;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'C': client = optarg; break;
		case 'a': all = true; break;
		case 'm':
			if (units_parse_duration(optarg, &max_age) < 0 || !max_age) {
				printf("INTAKE UNKNOWN - --max-age wants a duration such as 26h\n");
				return N_UNKNOWN;
			}
			break;
		case 'w':
			if (units_parse_duration(optarg, &warn_age) < 0) {
				printf("INTAKE UNKNOWN - --warn-age wants a duration such as 25h\n");
				return N_UNKNOWN;
			}
			break;
		case 'q': read = false; break;
		case 'j': json = true; break;
		case 'n':
			if (units_parse_time(optarg, &now) < 0) {
				printf("INTAKE UNKNOWN - --now wants @UNIXSECONDS or YYYY-MM-DDTHH:MM:SSZ\n");
				return N_UNKNOWN;
			}
			break;
		default:
			if (intake_store_opt(c, optarg))
				break;
			printf("INTAKE UNKNOWN - bad command line (see bascule intake --help)\n");
			return N_UNKNOWN;
		}
	}
	if (optind + 1 != argc || !max_age || (!client) == (!all)) {
		printf("INTAKE UNKNOWN - usage: bascule intake check DIR (--client NAME | --all) --max-age D\n");
		return N_UNKNOWN;
	}
	if ((r = intake_client_list(argv[optind], client, &names, &nn)) < 0) {
		printf("INTAKE UNKNOWN - %s\n", err_msg(r));
		return N_UNKNOWN;
	}
	if (!nn) {
		printf("INTAKE UNKNOWN - no client enrolled in %s (bascule intake add)\n", argv[optind]);
		intake_clients_free(names, nn);
		return N_UNKNOWN;
	}
	if (!(v = calloc(nn, sizeof(*v)))) {
		intake_clients_free(names, nn);
		printf("INTAKE UNKNOWN - out of memory\n");
		return N_UNKNOWN;
	}
	for (size_t i = 0; i < nn; i++) {
		size_t pl = strlen(perf);
		intake_judge(argv[optind], names[i], read, now, max_age, warn_age, &v[i]);
		/* CRITICAL outranks UNKNOWN for the exit code: a client seen failing matters more */
		int rank = v[i].state == N_UNKNOWN ? 1 : v[i].state == N_WARNING ? 2 : v[i].state == N_CRITICAL ? 3 : 0;
		int wrank = worst == N_UNKNOWN ? 1 : worst == N_WARNING ? 2 : worst == N_CRITICAL ? 3 : 0;
		if (rank > wrank) {
			worst = v[i].state;
			worst_i = i;
		}
		if (v[i].perf[0])
			snprintf(perf + pl, sizeof(perf) - pl, "%s%s", pl ? " " : "", v[i].perf);
	}
	if (json)
		print_json(v, names, nn, worst);
	else if (nn == 1)
		printf("INTAKE %s - %s%s%s\n", state_names[worst], v[0].text, perf[0] ? " | " : "", perf);
	else {
		size_t bad = 0;
		for (size_t i = 0; i < nn; i++)
			bad += v[i].state != N_OK;
		if (worst == N_OK)
			printf("INTAKE OK - %zu clients, every one fresh and intact%s%s\n", nn, perf[0] ? " | " : "",
			       perf);
		else
			printf("INTAKE %s - %zu of %zu clients need attention; %s%s%s\n", state_names[worst], bad, nn,
			       v[worst_i].text, perf[0] ? " | " : "", perf);
		for (size_t i = 0; i < nn; i++)
			printf("%s %s\n", state_names[v[i].state], v[i].text);
	}
	free(v);
	intake_clients_free(names, nn);
	return worst;
}
