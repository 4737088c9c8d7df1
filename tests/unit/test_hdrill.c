/* Unit tests: the hybrid drill (docs/hybrid.md, "The hybrid drill"): the
 * runbook's hybrid section and its refusals (FILE:LINE:COLUMN), the steps
 * planned, and the report's hybrid figures (RPO the dump's age at the
 * declaration, exit 5 for a damaged night). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "drill.h"
#include "drill_int.h"
#include "err.h"
#include "fsutil.h"
#include "report.h"
#include "runbook.h"
#include "rbtext.h"

static const char base[] =
	"name: mairie\n"
	"objectives: {rto: 4h, rpo: 26h}\n"
	"hosts:\n"
	"  - name: app\n"
	"    url: local\n"
	"hybrid:\n"
	"  intake: /srv/intake\n"
	"  client: mairie\n"
	"  key: /etc/bascule/mairie.key\n"
	"  passphrase_file: /etc/bascule/mairie.pass\n"
	"  load: postgresql://drill@/mairie?host=/run/postgresql\n"
	"  host: app\n"
	"services:\n"
	"  - name: web\n"
	"    start: systemctl start mairie-web\n"
	"    checks:\n"
	"      - name: marker\n"
	"        sql: host=/run/postgresql dbname=mairie\n"
	"        query: SELECT count(*) FROM town_secrets\n"
	"        expect: \"1\"\n";

/* BASE with FROM replaced by TO. */
static char *edit(const char *from, const char *to)
{
	return rb_edit(base, from, to);
}

static void expect_edit_error(const char *from, const char *to, const char *want)
{
	char *t = edit(from, to);
	expect_error(t, want);
	free(t);
}

static void test_parse(void **state)
{
	struct runbook *rb = NULL;
	(void)state;

	assert_int_equal(parse(base, &rb), 0);
	assert_true(runbook_is_hybrid(rb));
	assert_string_equal(rb->hybrid.client, "mairie");
	assert_string_equal(rb->hybrid.night, "latest");      /* defaults */
	assert_int_equal(rb->hybrid.max_age, 26ULL * 3600 * 1000000);
	assert_int_equal(rb->hybrid.restore_timeout, 4ULL * 3600 * 1000000);
	assert_int_equal(rb->hybrid.check_timeout, 600ULL * 1000000);
	assert_int_equal(rb->hybrid.jobs, 0);
	assert_false(rb->hybrid.replace);
	assert_null(rb->primary.host);
	assert_null(rb->secondary.host);
	runbook_free(rb);
	{
		char *t = edit("  host: app\n", "  host: app\n  night: 2026-11-02\n  jobs: 4\n  replace: true\n"
						    "  max_age: 2d\n  pg_bin: /usr/lib/postgresql/15/bin\n");
		assert_int_equal(parse(t, &rb), 0);
		assert_string_equal(rb->hybrid.night, "2026-11-02");
		assert_int_equal(rb->hybrid.jobs, 4);
		assert_true(rb->hybrid.replace);
		assert_int_equal(rb->hybrid.max_age, 2ULL * 86400 * 1000000);
		runbook_free(rb);
		free(t);
	}
}

static void test_refusals(void **state)
{
	(void)state;
	expect_edit_error("  client: mairie\n", "", "rb.yaml:7:3: hybrid is missing the required key 'client'");
	expect_edit_error("  key: /etc/bascule/mairie.key\n", "", "hybrid is missing the required key 'key'");
	expect_edit_error("  intake: /srv/intake\n", "", "hybrid is missing the required key 'intake'");
	expect_edit_error("  load: postgresql://drill@/mairie?host=/run/postgresql\n", "",
			  "hybrid is missing the required key 'load'");
	expect_edit_error("  host: app\n", "", "hybrid is missing the required key 'host'");
	expect_edit_error("  host: app\n", "  host: app\n  clinet: x\n",
			  "rb.yaml:13:3: unknown key 'clinet' in hybrid (known keys: intake, client, key,");
	expect_edit_error("  host: app\n", "  host: elsewhere\n", "hybrid.host names host 'elsewhere', which is not in hosts");
	expect_edit_error("  host: app\n", "  host: app\n  night: yesterday\n",
			  "hybrid.night must be latest or a night YYYY-MM-DD, got 'yesterday'");
	expect_edit_error("  intake: /srv/intake\n", "  intake: srv/intake\n", "rb.yaml:7:11:");
	expect_edit_error("postgresql://drill@/mairie", "postgresql://drill:secret@/mairie",
			  "hybrid.load holds a password");
	expect_edit_error("  host: app\n", "  host: app\n  jobs: 65\n", "rb.yaml:13:9:");
	expect_edit_error("    start: systemctl", "    group: web\n    start: systemctl",
			  "service 'web': group has no meaning in a hybrid runbook");
	/* without a hybrid section, both sites are required, as before */
	expect_edit_error("hybrid:\n  intake: /srv/intake\n  client: mairie\n  key: /etc/bascule/mairie.key\n"
			  "  passphrase_file: /etc/bascule/mairie.pass\n"
			  "  load: postgresql://drill@/mairie?host=/run/postgresql\n  host: app\n",
			  "secondary: {host: app, replica_root: /srv/replica}\n",
			  "rb.yaml:1:1: runbook is missing the required key 'primary'");
	expect_edit_error("hybrid:\n  intake: /srv/intake\n  client: mairie\n  key: /etc/bascule/mairie.key\n"
			  "  passphrase_file: /etc/bascule/mairie.pass\n"
			  "  load: postgresql://drill@/mairie?host=/run/postgresql\n  host: app\n",
			  "primary: {host: app}\n", "rb.yaml:1:1: runbook is missing the required key 'secondary'");
	/* a primary given still needs its host */
	expect_edit_error("hybrid:\n", "primary: {bascule: bascule}\nhybrid:\n",
			  "primary is missing the required key 'host'");
}

static void test_plan(void **state)
{
	static const enum step_kind want[] = { ST_HY_CHECK, ST_HY_PICK, ST_HY_RESTORE, ST_START, ST_CHECK };
	struct runbook *rb = NULL;
	struct drill *d = NULL;
	enum drill_mode m;
	(void)state;

	assert_int_equal(mode_parse("hybrid", &m), 0);
	assert_int_equal(m, MODE_HYBRID);
	assert_int_equal(parse(base, &rb), 0);
	/* plan mode of a hybrid runbook shows the hybrid steps */
	assert_int_equal(drill_plan(rb, MODE_PLAN, &d), 0);
	assert_int_equal(d->mode, MODE_HYBRID);
	assert_int_equal(d->n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < d->n; i++)
		assert_int_equal(d->steps[i].kind, want[i]);
	assert_string_equal(d->steps[3].host, "app");
	assert_string_equal(d->steps[4].host, "app");
	assert_int_equal(d->steps[2].timeout, rb->hybrid.restore_timeout);
	assert_string_equal(step_kind_name(ST_HY_RESTORE), "intake-restore");
	/* an abort once the service started: stopped where it started (the
	 * loaded database is left: nothing of production was touched) */
	for (size_t i = 0; i < 4; i++)
		d->steps[i].status = SS_DONE;
	d->steps[4].status = SS_FAILED;
	assert_int_equal(drill_plan_abort(d, 5), 0);
	assert_int_equal(d->n, 6);
	assert_int_equal(d->steps[5].kind, ST_SEC_STOP);
	assert_true(d->steps[5].abort);
	assert_string_equal(d->steps[5].host, "app");
	assert_string_equal(d->steps[5].service, "web");
	drill_free(d);
	runbook_free(rb);
}

/* A hybrid drill that ran: the pick and restore steps' data as hybrid.c
 * writes them, declared at T0 (usec); DAMAGED fails the check step. */
static json_t *hybrid_report(struct runbook *rb, uint64_t t0, uint64_t created, bool damaged)
{
	struct drill *d = NULL;
	json_t *r;

	assert_int_equal(drill_plan(rb, MODE_HYBRID, &d), 0);
	d->started = t0;
	d->ended = t0 + 90000000;
	for (size_t i = 0; i < d->n; i++) {
		struct step *s = &d->steps[i];
		s->start = t0 + i * 10000000;
		s->end = s->start + 9000000;
		s->status = SS_DONE;
	}
	snprintf(d->steps[1].data, sizeof(d->steps[1].data),
		 "{\"chain\":1,\"created_unix\":%llu,\"full\":\"2026-11-01\",\"kind\":\"delta\",\"night\":\"2026-11-02\","
		 "\"stored_bytes\":65553}", (unsigned long long)created / 1000000);
	snprintf(d->steps[2].data, sizeof(d->steps[2].data),
		 "{\"database\":\"mairie\",\"night\":\"2026-11-02\",\"rows\":100013,\"tables\":5}");
	snprintf(d->status, sizeof(d->status), "done");
	if (damaged) {
		snprintf(d->steps[0].data, sizeof(d->steps[0].data), "{\"damaged_night\":\"2026-11-02\"}");
		d->steps[0].status = SS_FAILED;
		d->steps[1].data[0] = d->steps[2].data[0] = 0;
		for (size_t i = 1; i < d->n; i++)
			d->steps[i].status = SS_PENDING, d->steps[i].start = d->steps[i].end = 0;
		snprintf(d->status, sizeof(d->status), "failed");
	}
	r = report_build(d);
	drill_free(d);
	return r;
}

static void test_report(void **state)
{
	const uint64_t t0 = 1764748800000000ULL, created = t0 - 5 * 3600 * 1000000ULL;
	struct runbook *rb = NULL;
	json_t *r, *h, *a, *doc = NULL;
	char *html;
	(void)state;

	assert_int_equal(parse(base, &rb), 0);
	r = hybrid_report(rb, t0, created, false);
	h = json_object_get(r, "hybrid");
	a = json_object_get(r, "achieved");
	assert_string_equal(json_string_value(json_object_get(r, "result")), "PASS");
	assert_string_equal(json_string_value(json_object_get(h, "night")), "2026-11-02");
	assert_string_equal(json_string_value(json_object_get(h, "database")), "mairie");
	assert_int_equal(json_integer_value(json_object_get(h, "rows")), 100013);
	assert_int_equal(json_integer_value(json_object_get(h, "dump_created_us")), (json_int_t)created);
	/* RPO: the dump's age at the declaration; RTO: to the last check */
	assert_int_equal(json_integer_value(json_object_get(a, "rpo_us")), (json_int_t)(t0 - created));
	assert_int_equal(json_integer_value(json_object_get(a, "rto_us")), 49000000);
	assert_int_equal(report_exit_code(r), 0);
	assert_int_equal(report_sign(r, NULL, &doc), 0);
	html = report_html(doc);
	assert_non_null(strstr(html, "<h2>Hybrid restore</h2>"));
	assert_non_null(strstr(html, "2026-11-02"));
	assert_null(strstr(html, "damaged night"));
	assert_null(strstr(html, "<h2>Replicas</h2>")); /* nothing replicated */
	free(html);
	json_decref(doc);
	json_decref(r);

	/* an RPO over the objective fails the drill */
	r = hybrid_report(rb, t0, t0 - 27 * 3600 * 1000000ULL, false);
	assert_string_equal(json_string_value(json_object_get(r, "result")), "FAIL");
	assert_int_equal(report_exit_code(r), 1);
	json_decref(r);

	/* a damaged night: ERROR, exit 5, named; no RPO (no night chosen) */
	r = hybrid_report(rb, t0, created, true);
	h = json_object_get(r, "hybrid");
	assert_string_equal(json_string_value(json_object_get(r, "result")), "ERROR");
	assert_string_equal(json_string_value(json_object_get(h, "damaged_night")), "2026-11-02");
	assert_false(json_is_true(json_object_get(json_object_get(r, "achieved"), "rpo_reached")));
	assert_int_equal(report_exit_code(r), 5);
	doc = NULL;
	assert_int_equal(report_sign(r, NULL, &doc), 0);
	html = report_html(doc);
	assert_non_null(strstr(html, "damaged night"));
	free(html);
	json_decref(doc);
	json_decref(r);
	runbook_free(rb);
}

/* The commented example in etc/ parses (file checks off: its paths are examples). */
static void test_example(void **state)
{
	struct runbook *rb = rb_example("etc/runbook-hybrid.yaml");
	(void)state;

	assert_true(runbook_is_hybrid(rb));
	assert_string_equal(rb->hybrid.client, "mairie");
	assert_int_equal(rb->services.n, 1);
	runbook_free(rb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_report),
		cmocka_unit_test(test_example),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
