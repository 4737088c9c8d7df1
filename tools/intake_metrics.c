/* intake_metrics.c - bascule intake metrics: the intake's freshness and
 * integrity per client in Prometheus' text exposition format, written
 * atomically for node_exporter's textfile collector (docs/hybrid.md,
 * "Metrics").  Needs the clients' public keys only. */
#include "clock.h"
#include "cmd.h"
#include "err.h"
#include "fsutil.h"
#include "intake_tool.h"
#include "units.h"
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metric {
	const char *name, *type, *help;
};

static const struct metric metrics[] = {
	{ "bascule_intake_up", "gauge", "1 if the client's intake directory and key could be read" },
	{ "bascule_intake_last_dump_age_seconds", "gauge", "Age of the newest complete night (since its upload)" },
	{ "bascule_intake_last_dump_timestamp_seconds", "gauge", "Upload time of the newest complete night" },
	{ "bascule_intake_last_dump_bytes", "gauge", "Bytes stored for the newest complete night (objects and manifest)" },
	{ "bascule_intake_nights", "gauge", "Complete nights that verify, chain included" },
	{ "bascule_intake_stored_bytes", "gauge", "Bytes stored for the nights that count" },
	{ "bascule_intake_chain_ok", "gauge", "1 unless a night's base night is missing, bad or replaced" },
	{ "bascule_intake_signature_ok", "gauge", "1 unless a manifest fails its signature or is malformed" },
	{ "bascule_intake_objects_ok", "gauge", "1 unless an object is missing, truncated or altered" },
	{ "bascule_intake_incomplete_nights", "gauge", "Nights whose manifest was cut while written (never counted)" },
	{ "bascule_intake_unfinished_bytes", "gauge", "Bytes of uploads no manifest names (runs cut before the end)" },
	{ "bascule_intake_check_status", "gauge", "What intake check says: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN" },
};
#define N_METRICS (sizeof(metrics) / sizeof(metrics[0]))

struct sample {
	bool have[N_METRICS];
	double v[N_METRICS];
};

static int buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if ((size_t)n < *cap - *len)
			break;
		char *x = realloc(*buf, *cap * 2 + (size_t)n);
		if (!x)
			return -ENOMEM;
		*buf = x;
		*cap = *cap * 2 + (size_t)n;
	}
	*len += (size_t)n;
	return 0;
}

static void client_sample(const char *dir, const char *name, uint64_t now, uint64_t max_age, struct sample *s)
{
	struct intake_client c;
	struct intake_verdict v;
	const struct intake_night *newest;
	unsigned chain_bad = 0, sig_bad = 0, obj_bad = 0, inc = 0, good = 0;

	memset(s, 0, sizeof(*s));
	intake_judge(dir, name, true, now, max_age, 0, &v);
	s->have[11] = true;
	s->v[11] = v.state;
	s->have[0] = true;
	if (intake_scan(dir, name, true, &c) < 0) {
		err_clear();
		return;
	}
	s->v[0] = 1;
	for (size_t i = 0; i < c.n; i++) {
		switch (c.nights[i].state) {
		case NIGHT_OK: good++; break;
		case NIGHT_INCOMPLETE: inc++; break;
		case NIGHT_BAD: sig_bad++; break;
		case NIGHT_DAMAGED: obj_bad++; break;
		case NIGHT_BROKEN: chain_bad++; break;
		}
	}
	if ((newest = intake_newest(&c))) {
		uint64_t t = newest->m.created * 1000000ull;
		s->have[1] = s->have[2] = s->have[3] = true;
		s->v[1] = now > t ? (double)((now - t) / 1000000ull) : 0;
		s->v[2] = (double)newest->m.created;
		s->v[3] = (double)(newest->m.stored + newest->m.file_len);
	}
	for (int i = 4; i <= 10; i++)
		s->have[i] = true;
	s->v[4] = good;
	s->v[5] = (double)c.stored;
	s->v[6] = chain_bad == 0;
	s->v[7] = sig_bad == 0;
	s->v[8] = obj_bad == 0;
	s->v[9] = inc;
	s->v[10] = (double)c.orphan_bytes;
	intake_client_free(&c);
}

int intake_metrics(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client", required_argument, NULL, 'C' },
		{ "out", required_argument, NULL, 'o' },
		{ "max-age", required_argument, NULL, 'm' },
		{ "now", required_argument, NULL, 'n' },
		INTAKE_STORE_OPTS,
		{ 0 }
	};
	const char *client = NULL, *out = NULL;
	uint64_t max_age = 26ull * 3600 * 1000000, now = clock_now_usec();
	char **names = NULL, *text = NULL;
	size_t nn = 0, len = 0, cap = 4096;
	struct sample *s = NULL;
	int c, r = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'C': client = optarg; break;
		case 'o': out = optarg; break;
		case 'm':
			if (units_parse_duration(optarg, &max_age) < 0 || !max_age) {
				fprintf(stderr, "bascule intake metrics: --max-age wants a duration such as 26h\n");
				return EXIT_USAGE;
			}
			break;
		case 'n':
			if (units_parse_time(optarg, &now) < 0) {
				fprintf(stderr, "bascule intake metrics: --now wants @UNIXSECONDS or "
						"YYYY-MM-DDTHH:MM:SSZ\n");
				return EXIT_USAGE;
			}
			break;
		default:
			if (intake_store_opt(c, optarg))
				break;
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "Usage: bascule intake metrics DIR [--client NAME] [--out FILE] [--max-age D] "
				"[--now TIME]\n");
		return EXIT_USAGE;
	}
	if (client && !name_ok(client)) {
		fprintf(stderr, "bascule intake metrics: '%s' is not a client name\n", client);
		return EXIT_USAGE;
	}
	if ((r = intake_client_list(argv[optind], client, &names, &nn)) < 0)
		return cmd_fail("intake metrics", r);
	if (!(s = calloc(nn ? nn : 1, sizeof(*s))) || !(text = malloc(cap))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nn; i++)
		client_sample(argv[optind], names[i], now, max_age, &s[i]);
	/* one HELP and TYPE per family, then its samples (the format wants them together) */
	for (size_t m = 0; m < N_METRICS && r == 0; m++) {
		r = buf_printf(&text, &len, &cap, "# HELP %s %s\n# TYPE %s %s\n", metrics[m].name, metrics[m].help,
			       metrics[m].name, metrics[m].type);
		for (size_t i = 0; i < nn && r == 0; i++)
			if (s[i].have[m])
				r = buf_printf(&text, &len, &cap, "%s{client=\"%s\"} %.17g\n", metrics[m].name,
					       names[i], s[i].v[m]);
	}
	if (r == 0)
		r = buf_printf(&text, &len, &cap,
			       "# HELP bascule_intake_clients Clients enrolled in the intake directory\n"
			       "# TYPE bascule_intake_clients gauge\nbascule_intake_clients %zu\n"
			       "# HELP bascule_intake_metrics_timestamp_seconds When these metrics were written\n"
			       "# TYPE bascule_intake_metrics_timestamp_seconds gauge\n"
			       "bascule_intake_metrics_timestamp_seconds %llu\n",
			       nn, (unsigned long long)(now / 1000000ull));
	if (r < 0)
		goto out;
	if (!out) {
		fwrite(text, 1, len, stdout);
	} else if ((r = fs_write_atomic(out, text, len, 0644)) < 0) {
		r = err_set(-r, "cannot write %s: %s", out, strerror(-r));
		goto out;
	}
out:
	free(text);
	free(s);
	intake_clients_free(names, nn);
	return r < 0 ? cmd_fail("intake metrics", r) : EXIT_OK;
}
