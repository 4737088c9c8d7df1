/* Unit tests: drill report signatures (each kind of tampering refused) and
 * the report page as a person reads it (its time axis, steps not reached,
 * databases). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "drill.h"
#include "drill_int.h"
#include "err.h"
#include "fsutil.h"
#include "report.h"
#include "runbook.h"
#include "sign.h"
#include "rbtext.h"
#include "rbbase.h"

/* Write TEXT to PATH with INS inserted at AT (a pointer into TEXT). */
static void write_with(const char *path, const char *text, const char *at, const char *ins)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_non_null(at);
	fwrite(text, 1, (size_t)(at - text), f);
	fputs(ins, f);
	fputs(at, f);
	fclose(f);
}

/* A report signed, then each kind of tampering refused. */
static void test_report_signature(void **state)
{
	char dir[] = "/tmp/bascule-unit-XXXXXX", key[256], pub[256], jp[4400], hp[4400], who[17];
	struct runbook *rb = NULL;
	struct drill *d = NULL;
	json_t *r, *doc;
	char *text;
	size_t len;
	FILE *f;
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(key, sizeof(key), "%s/sign.key", dir);
	snprintf(pub, sizeof(pub), "%s/sign.key.pub", dir);
	assert_int_equal(sign_keygen(key), 0);
	assert_int_equal(parse(base, &rb), 0);
	assert_int_equal(drill_plan(rb, MODE_PLANNED, &d), 0);
	snprintf(d->status, sizeof(d->status), "done");
	r = report_build(d);
	assert_int_equal(report_sign(r, key, &doc), 0);
	assert_int_equal(report_write(doc, dir, jp, hp, sizeof(jp)), 0);
	assert_int_equal(report_verify(jp, pub, who, sizeof(who)), 0);
	assert_int_equal(report_verify(hp, pub, who, sizeof(who)), 0);
	assert_int_equal(report_verify(hp, NULL, who, sizeof(who)), 0);
	/* A key given twice, the first a forged 1: jansson alone keeps the last
	 * (the signed one) and would call it valid; a person reads the first. */
	{
		char dj[300], dh[300];
		snprintf(dj, sizeof(dj), "%s/dup.json", dir);
		snprintf(dh, sizeof(dh), "%s/dup.html", dir);
		assert_int_equal(fs_read_all(jp, 1 << 24, &text, &len), 0);
		write_with(dj, text, strstr(text, "\"rto_us\": "), "\"rto_us\": 1, ");
		free(text);
		assert_int_equal(report_verify(dj, pub, who, sizeof(who)), -EBADMSG);
		assert_non_null(strstr(err_msg(-EBADMSG), "appears twice"));
		assert_int_equal(fs_read_all(hp, 1 << 24, &text, &len), 0);
		write_with(dh, text, strstr(text, "\"rto_us\":"), "\"rto_us\":1,");
		free(text);
		assert_int_equal(report_verify(dh, pub, who, sizeof(who)), -EBADMSG);
	}
	/* change a figure in the JSON */
	assert_int_equal(fs_read_all(jp, 1 << 24, &text, &len), 0);
	*strstr(text, "\"mode\": \"planned\"") = ' ';
	f = fopen(jp, "w");
	fwrite(text, 1, len, f);
	fclose(f);
	free(text);
	assert_int_equal(report_verify(jp, pub, who, sizeof(who)), -EINVAL); /* no longer JSON */
	/* change the visible page only */
	assert_int_equal(fs_read_all(hp, 1 << 24, &text, &len), 0);
	strstr(text, "<h1>")[1] = 'H';
	f = fopen(hp, "w");
	fwrite(text, 1, len, f);
	fclose(f);
	free(text);
	assert_int_equal(report_verify(hp, pub, who, sizeof(who)), -EBADMSG);
	json_decref(doc);
	json_decref(r);
	drill_free(d);
	runbook_free(rb);
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* The planned drill of BASE, every step done: step I from T0 + I * GAP, for
 * LEN (usec). */
static struct drill *timed_drill(struct runbook *rb, uint64_t gap, uint64_t len)
{
	const uint64_t t0 = 1800000000ULL * 1000000;
	struct drill *d = NULL;

	assert_int_equal(drill_plan(rb, MODE_PLANNED, &d), 0);
	d->started = t0;
	for (size_t i = 0; i < d->n; i++) {
		d->steps[i].status = SS_DONE;
		d->steps[i].start = t0 + i * gap;
		d->steps[i].end = t0 + i * gap + len;
		snprintf(d->steps[i].message, sizeof(d->steps[i].message), "done");
	}
	d->ended = d->steps[d->n - 1].end;
	snprintf(d->status, sizeof(d->status), "done");
	return d;
}

/* The page of D (unsigned) and its summary, malloc'd. */
static char *page_of(struct drill *d, char **ret_summary)
{
	json_t *r = report_build(d), *doc = NULL;
	size_t len = 0;
	FILE *f = open_memstream(ret_summary, &len);
	char *html;

	assert_int_equal(report_sign(r, NULL, &doc), 0);
	html = report_html(doc);
	report_summary(r, f);
	fclose(f);
	json_decref(doc);
	json_decref(r);
	assert_non_null(html);
	return html;
}

/* The axis labels of PAGE, space separated, and the x of the last one. */
#define TICK "text-anchor=\"middle\" fill=\"#555\">"
static void ticks_of(const char *page, char *out, size_t len, int *ret_last_x)
{
	const char *p = page, *q;

	out[0] = 0;
	while ((q = strstr(p, TICK))) {
		const char *e = strchr(q, '<'), *x = q;
		while (x > page && strncmp(x, "<text x=\"", 9))
			x--;
		*ret_last_x = atoi(x + 9);
		snprintf(out + strlen(out), len - strlen(out), "%s%.*s", out[0] ? " " : "",
			 (int)(e - q - strlen(TICK)), q + strlen(TICK));
		p = e;
	}
}

/* Axis ticks are round, distinct steps in the precision the span needs,
 * the last label is inside the picture, and the note of an objective beyond
 * the right edge is no alarm on a PASS. */
/* The time axis of a drill of steps GAP apart lasting LEN each reads WANT. */
static void assert_ticks(struct runbook *rb, uint64_t gap, uint64_t len, const char *want)
{
	struct drill *d = timed_drill(rb, gap, len);
	char ticks[400], *sum, *html = page_of(d, &sum);
	int last_x = 0;

	ticks_of(html, ticks, sizeof(ticks), &last_x);
	assert_string_equal(ticks, want);
	free(html);
	free(sum);
	drill_free(d);
}

static void test_report_axis(void **state)
{
	struct runbook *rb = NULL;
	struct drill *d;
	char ticks[400], *html, *sum;
	int last_x = 0;
	(void)state;
	assert_int_equal(parse(base, &rb), 0);
	/* about 0.15 s: the drill of the demo */
	d = timed_drill(rb, 140000 / 15, 5000);
	html = page_of(d, &sum);
	ticks_of(html, ticks, sizeof(ticks), &last_x);
	assert_string_equal(ticks, "0 +0.02 s +0.04 s +0.06 s +0.08 s +0.10 s +0.12 s +0.14 s");
	assert_true(last_x + 4 * 7 <= 1100); /* half of "+0.14 s" at 7 px a character */
	assert_non_null(strstr(html, "PASS"));
	assert_non_null(strstr(html, "fill=\"#555\">RTO objective (1h 00m) is beyond the right edge"));
	free(html);
	free(sum);
	drill_free(d);
	assert_ticks(rb, 20 * 60000000ULL, 10 * 60000000ULL, "0 +1h +2h +3h +4h +5h"); /* hours */
	assert_ticks(rb, 50000000, 20000000, "0 +2m +4m +6m +8m +10m +12m");       /* minutes */
	runbook_free(rb);
}

/* A drill that failed at its first step: no RTO, no RPO ("not reached", not
 * "0.00 s ... NOT met"); a warning shows on the page and in the summary. */
static void test_report_unreached(void **state)
{
	struct runbook *rb = NULL;
	struct drill *d;
	char *html, *sum;
	(void)state;
	assert_int_equal(parse(base, &rb), 0);
	d = timed_drill(rb, 10000, 5000);
	for (size_t i = 1; i < d->n; i++) {
		d->steps[i].status = SS_PENDING;
		d->steps[i].start = d->steps[i].end = 0;
	}
	d->steps[0].status = SS_FAILED;
	snprintf(d->steps[0].message, sizeof(d->steps[0].message), "group web is paused");
	snprintf(d->status, sizeof(d->status), "failed");
	snprintf(d->message, sizeof(d->message), "step 1 failed: group web is paused");
	html = page_of(d, &sum);
	assert_non_null(strstr(html, "<th>achieved RTO</th><td>not reached</td>"));
	assert_non_null(strstr(html, "<th>achieved RPO</th><td>not reached</td>"));
	assert_null(strstr(html, "NOT met"));
	assert_non_null(strstr(sum, "RPO not reached (objective 0.00 s)"));
	assert_null(strstr(sum, "NOT met"));
	free(html);
	free(sum);
	drill_free(d);
	/* done, with a warning */
	d = timed_drill(rb, 10000, 5000);
	snprintf(d->steps[0].warning, sizeof(d->steps[0].warning), "vault target offsite is in error: x");
	html = page_of(d, &sum);
	assert_non_null(strstr(html, "warning: vault target offsite is in error: x"));
	assert_non_null(strstr(sum, "WARNING: step 1 (replication healthy (a)): vault target offsite"));
	free(html);
	free(sum);
	drill_free(d);
	runbook_free(rb);
}

static struct step *kind_step(struct drill *d, enum step_kind k, const char *group)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == k && (!group || !strcmp(d->steps[i].group, group)))
			return &d->steps[i];
	fail_msg("no step of kind %d", (int)k);
	return NULL;
}

/* A drill's database figures: RPO 0 by LSN when the target acknowledged
 * the final LSN and promote recovered to it; else the loss from the last
 * transaction recovered (to the shutdown, or unplanned to the incident). */
static void test_report_databases(void **state)
{
	static const char dbs[] = "databases:\n  - name: shop\n    source: db/pg\n    data_dir: /d\n    stop: s\n";
	char *t = malloc(strlen(base) + sizeof(dbs)), *html, *sum;
	struct runbook *rb = NULL;
	struct drill *d;
	struct step *st, *ack, *pr;
	json_t *r, *db;
	(void)state;
	strcpy(t, base);
	strcat(t, dbs);
	assert_int_equal(parse(t, &rb), 0);
	d = timed_drill(rb, 10000, 5000);
	kind_step(d, ST_SYNC, "db")->epoch = 6;
	st = kind_step(d, ST_DB_STOP, NULL);
	snprintf(st->data, sizeof(st->data), "{\"checkpoint_lsn\":\"0/30000D8\",\"final_lsn\":\"0/3000150\",\"timeline\":1}");
	ack = kind_step(d, ST_DB_ACKED, NULL);
	ack->epoch = 7;
	snprintf(ack->data, sizeof(ack->data), "{\"final_lsn\":\"0/3000150\",\"targets\":{\"secondary\":{\"acked_lsn\":\"0/3000150\",\"epoch\":7}}}");
	pr = kind_step(d, ST_PROMOTE, "db");
	pr->epoch = 7;
	pr->cut_time = st->end + 100;
	snprintf(pr->data, sizeof(pr->data), "{\"postgres\":{\"pg\":{\"data_dir\":\"/r/db/pg\",\"end_lsn\":\"0/3000150\","
		 "\"last_transaction_us\":%llu,\"mode\":\"cold\",\"redo_lsn\":\"0/30000D8\",\"timeline\":2}}}",
		 (unsigned long long)(st->start - 3000000));
	r = report_build(d);
	db = json_array_get(json_object_get(json_array_get(json_object_get(r, "groups"), 1), "databases"), 0);
	assert_non_null(db);
	assert_true(json_is_true(json_object_get(db, "rpo_by_lsn")));
	assert_string_equal(json_string_value(json_object_get(db, "final_lsn")), "0/3000150");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "achieved"), "rpo_us")), 0);
	assert_true(json_is_true(json_object_get(json_object_get(r, "achieved"), "rpo_met")));
	json_decref(r);
	html = page_of(d, &sum);
	assert_non_null(strstr(sum, "database shop (db/pg): final LSN 0/3000150, acknowledged by secondary 0/3000150 (epoch 7), promoted to 0/3000150; RPO 0 by LSN"));
	assert_non_null(strstr(html, "<h2>Databases</h2>"));
	assert_non_null(strstr(html, "0.00 s (0 by LSN)"));
	free(html);
	free(sum);
	/* Promoted short of the final LSN: the loss runs from the last transaction to the shutdown. */
	snprintf(pr->data, sizeof(pr->data), "{\"postgres\":{\"pg\":{\"end_lsn\":\"0/3000100\",\"last_transaction_us\":%llu}}}",
		 (unsigned long long)(st->end - 3000000));
	r = report_build(d);
	db = json_array_get(json_object_get(json_array_get(json_object_get(r, "groups"), 1), "databases"), 0);
	assert_false(json_is_true(json_object_get(db, "rpo_by_lsn")));
	assert_int_equal(json_integer_value(json_object_get(db, "data_loss_us")), 3000000);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "achieved"), "rpo_us")), 3000000);
	assert_false(json_is_true(json_object_get(json_object_get(r, "achieved"), "rpo_met")));
	json_decref(r);
	drill_free(d);
	/* Unplanned: from the last transaction recovered to the incident. */
	assert_int_equal(drill_plan(rb, MODE_UNPLANNED, &d), 0);
	d->incident = 1800000000ULL * 1000000;
	d->started = d->incident + 60000000;
	for (size_t i = 0; i < d->n; i++) {
		d->steps[i].status = SS_DONE;
		d->steps[i].start = d->started + i * 1000;
		d->steps[i].end = d->steps[i].start + 500;
	}
	d->ended = d->steps[d->n - 1].end;
	snprintf(d->status, sizeof(d->status), "done");
	kind_step(d, ST_PROMOTE, "web")->cut_time = d->incident - 1000000; /* a disk group: 1 s */
	pr = kind_step(d, ST_PROMOTE, "db");
	pr->epoch = 9;
	pr->cut_time = d->incident - 1000000;
	snprintf(pr->data, sizeof(pr->data), "{\"postgres\":{\"pg\":{\"end_lsn\":\"0/5000000\",\"last_transaction_us\":%llu}}}",
		 (unsigned long long)(d->incident - 2500000));
	r = report_build(d);
	db = json_array_get(json_object_get(json_array_get(json_object_get(r, "groups"), 1), "databases"), 0);
	assert_int_equal(json_integer_value(json_object_get(db, "data_loss_us")), 2500000);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "achieved"), "rpo_us")), 2500000);
	json_decref(r);
	drill_free(d);
	runbook_free(rb);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_report_signature),
		cmocka_unit_test(test_report_axis),
		cmocka_unit_test(test_report_unreached),
		cmocka_unit_test(test_report_databases),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
