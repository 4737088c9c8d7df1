/* Unit tests: the failover runbook (every error names FILE:LINE:COLUMN), the
 * boot waves, the steps planned for each mode, report signatures, and the
 * report page as a person reads it. */
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

static const char base[] =
	"name: test\n"
	"objectives: {rto: 1h, rpo: 0s}\n"
	"hosts:\n"
	"  - name: a\n"
	"    url: local\n"
	"  - name: b\n"
	"    url: ssh://drill@192.0.2.10:2222\n"
	"    identity: /etc/bascule/id\n"
	"    known_hosts: /etc/bascule/known_hosts\n"
	"primary: {host: a}\n"
	"secondary: {host: b, replica_root: /srv/replica}\n"
	"services:\n"
	"  - name: web\n"
	"    group: web\n"
	"    after: [db, cache]\n"
	"    start: start web\n"
	"    stop: stop web\n"
	"  - name: db\n"
	"    group: db\n"
	"    start: start db\n"
	"    stop: stop db\n"
	"    checks:\n"
	"      - name: pg\n"
	"        tcp: 10.0.0.1:5432\n"
	"  - name: cache\n"
	"    after: [db]\n"
	"    start: start cache\n";

/* BASE with FROM replaced by TO. */
static char *edit(const char *from, const char *to)
{
	return rb_edit(base, from, to);
}

static void test_waves(void **state)
{
	struct runbook *rb = NULL;
	(void)state;
	assert_int_equal(parse(base, &rb), 0);
	assert_int_equal(rb->n_waves, 3);
	assert_int_equal(RB_SVC(rb, 0)->wave, 3); /* web after db and cache */
	assert_int_equal(RB_SVC(rb, 1)->wave, 1); /* db */
	assert_int_equal(RB_SVC(rb, 2)->wave, 2); /* cache after db */
	assert_int_equal(rb->objectives.rto, 3600000000ULL);
	assert_string_equal(rb->secondary.clone_dir, "/srv/replica/.drill-clones");
	assert_int_equal(RB_CHECK(RB_SVC(rb, 1), 0)->retries, 30); /* default */
	runbook_free(rb);
}

static void test_errors(void **state)
{
	char *t;
	(void)state;
	expect_error("name: x\n", "rb.yaml:1:1: runbook is missing the required key 'objectives'");
	t = edit("    after: [db]\n", "    after: [web]\n");
	expect_error(t, "part of a dependency cycle");
	free(t);
	t = edit("    after: [db, cache]\n", "    after: [db, nope]\n");
	expect_error(t, "rb.yaml:13:5: service 'web' starts after 'nope', which is not a service");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        tcp: 10.0.0.1:5432\n        command: true\n");
	expect_error(t, "rb.yaml:23:9: check 'pg' of service 'db' must have exactly one of tcp, http, command or sql");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        sql: \"host=/run/postgresql dbname=shop\"\n");
	expect_error(t, "rb.yaml:23:9: check 'pg' of service 'db': a sql check needs query");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        tcp: 10.0.0.1:5432\n        expect: t\n");
	expect_error(t, "rb.yaml:23:9: check 'pg' of service 'db': query and expect go with sql");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        sql: \"dbname=shop password=s3cret\"\n        query: SELECT 1\n");
	expect_error(t, "rb.yaml:23:9: check 'pg' of service 'db': the conninfo holds a password");
	assert_null(strstr(err_msg(-EINVAL), "s3cret"));
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        sql: \"postgresql://drill:s3cret@db/shop\"\n        query: SELECT 1\n");
	expect_error(t, "the conninfo holds a password");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        tcp: 10.0.0.1:5432\n        test_sql: dbname=x\n");
	expect_error(t, "rb.yaml:23:9: check 'pg' of service 'db': test_sql goes with sql");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        sql: dbname=x\n        test_sql: \"port=5440 password=s3cret\"\n"
					       "        query: SELECT 1\n");
	expect_error(t, "rb.yaml:23:9: check 'pg' of service 'db': the conninfo holds a password");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        sql: dbname=x\n        test_sql: \"port\"\n        query: SELECT 1\n");
	expect_error(t, "rb.yaml:23:9: check 'pg' of service 'db': test_sql: the conninfo does not parse");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        sql: \"dbname\"\n        query: SELECT 1\n");
	expect_error(t, "rb.yaml:23:9: check 'pg' of service 'db': the conninfo does not parse");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        sql: dbname=x\n        query: SELECT 1\n        host: a\n");
	expect_error(t, "host applies to command checks");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        tcp: 10.0.0.1\n");
	expect_error(t, "rb.yaml:23:9: check 'pg': tcp must be HOST:PORT");
	free(t);
	t = edit("        tcp: 10.0.0.1:5432\n", "        http: ftp://x/\n");
	expect_error(t, "check 'pg': http must be an http:// or https:// URL");
	free(t);
	t = edit("primary: {host: a}\n", "primary: {host: z}\n");
	expect_error(t, "primary names host 'z', which is not in hosts");
	free(t);
	t = edit("    url: local\n", "    url: x\n"); /* shorter than "ssh://": fuzzing found an overread */
	expect_error(t, "rb.yaml:4:5: host 'a': url must be 'local' or ssh://user@host[:port]");
	free(t);
	t = edit("    url: local\n", "    url: telnet://a\n");
	expect_error(t, "rb.yaml:4:5: host 'a': url must be 'local' or ssh://user@host[:port]");
	free(t);
	t = edit("objectives: {rto: 1h, rpo: 0s}\n", "objectives: {rto: soon, rpo: 0s}\n");
	expect_error(t, "rb.yaml:2:19: rto must be a duration");
	free(t);
	t = edit("    start: start cache\n", "    stop: x\n");
	expect_error(t, "rb.yaml:25:5: service is missing the required key 'start'");
	free(t);
	t = edit("    after: [db]\n", "    after: db\n");
	expect_error(t, "rb.yaml:26:12: after must be a list of names");
	free(t);
	t = edit("  - name: cache\n", "  - name: db\n");
	expect_error(t, "service name 'db' is used twice");
	free(t);
	{
		static const char *const bad[][2] = {
			{ "    source: db\n", "source must be GROUP/SOURCE" },
			{ "    source: nogroup/pg\n", "group 'nogroup' is not the group of any service" },
			{ "    source: db/pg\n    host: z\n", "database names host 'z', which is not in hosts" },
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *x = malloc(strlen(base) + 400);
			sprintf(x, "%sdatabases:\n  - name: shop\n%s    data_dir: /d\n    stop: s\n", base, bad[i][0]);
			expect_error(x, bad[i][1]);
			free(x);
		}
		char *x = malloc(strlen(base) + 400);
		sprintf(x, "%sdatabases:\n  - name: shop\n    source: db/pg\n    data_dir: d\n    stop: s\n", base);
		expect_error(x, "rb.yaml:29:5: database 'shop': data_dir must be an absolute path");
		free(x);
		x = malloc(strlen(base) + 400);
		sprintf(x, "%sdatabases:\n  - name: a\n    source: db/pg\n    data_dir: /d\n    stop: s\n"
			   "  - name: b\n    source: db/pg\n    data_dir: /e\n    stop: s\n", base);
		expect_error(x, "database 'b': source db/pg is already database 'a'");
		free(x);
	}
	t = edit("    stop: stop db\n", "    stop: stop db\n    colour: red\n");
	expect_error(t, "rb.yaml:22:5: unknown key 'colour' in service");
	free(t);
}

static bool has_kind(const struct drill *d, enum step_kind k)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == k)
			return true;
	return false;
}

static int step_index(const struct drill *d, enum step_kind k, bool abort)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == k && d->steps[i].abort == abort)
			return (int)i;
	return -1;
}

/* A database of group db: planned shuts it down after the final sync, waits
 * for its final LSN before the pause, starts it after the promote and
 * before the first wave; an abort restarts it on the primary and stops it
 * on the secondary, in reverse order. */
static void test_plan_databases(void)
{
	static const char dbs[] = "databases:\n"
				  "  - name: shop\n"
				  "    source: db/pg\n"
				  "    data_dir: /var/lib/postgresql/15/main\n"
				  "    stop: pg_ctlcluster 15 main stop\n"
				  "    restart: pg_ctlcluster 15 main start\n";
	char *t = malloc(strlen(base) + sizeof(dbs));
	struct runbook *rb = NULL;
	struct drill *d = NULL;

	strcpy(t, base);
	strcat(t, dbs);
	assert_int_equal(parse(t, &rb), 0);
	assert_int_equal(rb->databases.n, 1);
	assert_string_equal(RB_DB(rb, 0)->group, "db");
	assert_string_equal(RB_DB(rb, 0)->src, "pg");
	assert_null(RB_DB(rb, 0)->user); /* promote's default, pg_ctl as the data directory's owner */
	assert_int_equal(drill_plan(rb, MODE_PLANNED, &d), 0);
	{
		int sync = step_index(d, ST_SYNC, false), stop = step_index(d, ST_DB_STOP, false);
		int acked = step_index(d, ST_DB_ACKED, false), pause = step_index(d, ST_PAUSE, false);
		int promote = step_index(d, ST_PROMOTE, false), start = step_index(d, ST_DB_START, false);
		int wave1 = step_index(d, ST_START, false);
		assert_true(sync >= 0 && sync < stop && stop < acked && acked < pause && pause < promote);
		assert_true(promote < start && start < wave1);
		assert_string_equal(d->steps[stop].database, "shop");
		assert_string_equal(d->steps[stop].host, "a"); /* the primary's host by default */
		assert_string_equal(d->steps[start].host, "b");
		/* Everything up to the database's start ran: the abort undoes it. */
		for (int i = 0; i <= start; i++)
			d->steps[i].status = SS_DONE;
		assert_int_equal(drill_plan_abort(d, d->n), 0);
		int sec_stop = step_index(d, ST_DB_SEC_STOP, true), demote = step_index(d, ST_DEMOTE, true);
		int resume = step_index(d, ST_RESUME, true), restart = step_index(d, ST_DB_RESTART, true);
		int svc = step_index(d, ST_RESTART, true);
		assert_true(sec_stop >= 0 && sec_stop < demote && demote < resume && resume < restart && restart < svc);
		assert_string_equal(d->steps[restart].host, "a");
	}
	drill_free(d);
	assert_int_equal(drill_plan(rb, MODE_UNPLANNED, &d), 0);
	assert_false(has_kind(d, ST_DB_STOP));
	assert_true(step_index(d, ST_PROMOTE, false) < step_index(d, ST_DB_START, false));
	drill_free(d);
	/* Test mode: nothing says where the clone listens: refused with the
	 * database's position and what to add. */
	assert_int_equal(runbook_check_test(rb), -EINVAL);
	assert_non_null(strstr(err_msg(-EINVAL), "rb.yaml:29:5: database 'shop': a test drill starts a clone"));
	assert_non_null(strstr(err_msg(-EINVAL), "give it test_port"));
	runbook_free(rb);
	free(t);

	/* With test_port: the clone's database starts after the clone and
	 * before the first wave, stops after the services' test stops and
	 * before the clones go; an abort stops it before removing them. */
	t = malloc(strlen(base) + sizeof(dbs) + 64);
	strcpy(t, base);
	strcat(t, dbs);
	strcat(t, "    test_port: 5440\n");
	assert_int_equal(parse(t, &rb), 0);
	assert_int_equal(runbook_check_test(rb), 0);
	assert_int_equal(RB_DB(rb, 0)->test_port, 5440);
	assert_int_equal(drill_plan(rb, MODE_TEST, &d), 0);
	{
		int clone = step_index(d, ST_CLONE, false), tstart = step_index(d, ST_DB_TEST_START, false);
		int wave1 = step_index(d, ST_START, false), tstop_svc = step_index(d, ST_TEST_STOP, false);
		int tstop = step_index(d, ST_DB_TEST_STOP, false), unclone = step_index(d, ST_UNCLONE, false);
		assert_true(clone >= 0 && clone < tstart && tstart < wave1 && wave1 < tstop_svc);
		assert_true(tstop_svc < tstop && tstop < unclone);
		assert_string_equal(d->steps[tstart].database, "shop");
		assert_string_equal(d->steps[tstart].host, "b");
		assert_false(has_kind(d, ST_DB_STOP) || has_kind(d, ST_PROMOTE) || has_kind(d, ST_PAUSE));
		for (int i = 0; i <= tstart; i++)
			d->steps[i].status = SS_DONE;
		assert_int_equal(drill_plan_abort(d, d->n), 0);
		int a_stop = step_index(d, ST_DB_TEST_STOP, true), a_unclone = step_index(d, ST_UNCLONE, true);
		assert_true(a_stop >= 0 && a_stop < a_unclone);
		assert_string_equal(d->steps[a_stop].database, "shop");
	}
	drill_free(d);
	runbook_free(rb);
	strcpy(strstr(t, "    test_port: 5440\n"), "    test_port: 80\n");
	assert_int_equal(parse(t, &rb), 0);
	assert_int_equal(runbook_check_test(rb), -EINVAL);
	assert_non_null(strstr(err_msg(-EINVAL), "test_port 80 is a privileged port"));
	runbook_free(rb);
	strcpy(strstr(t, "    test_port: 80\n"), "    test_port: 70000\n");
	expect_error(t, "test_port");
	free(t);

	/* Failback of a database alone (no failback.start): rewind and start
	 * it as a standby, stop the services on the secondary, shut the
	 * promoted database down, see its final LSN at home, promote, restart
	 * the services; no reverse replication steps.  Without
	 * failback_conninfo: refused with the database's position. */
	t = malloc(strlen(base) + sizeof(dbs) + 128);
	strcpy(t, base);
	strcat(t, dbs);
	assert_int_equal(parse(t, &rb), 0);
	assert_int_equal(runbook_check_failback(rb), -EINVAL);
	assert_non_null(strstr(err_msg(-EINVAL), "rb.yaml:29:5: database 'shop': a failback makes the old primary"));
	runbook_free(rb);
	strcat(t, "    failback_conninfo: \"host=b port=5432 user=postgres password=x\"\n");
	assert_int_equal(parse(t, &rb), 0);
	assert_int_equal(runbook_check_failback(rb), -EINVAL);
	assert_non_null(strstr(err_msg(-EINVAL), "failback_conninfo holds a password"));
	runbook_free(rb);
	strcpy(strstr(t, " password=x"), "\"\n");
	assert_int_equal(parse(t, &rb), 0);
	assert_int_equal(runbook_check_failback(rb), 0);
	assert_int_equal(drill_plan(rb, MODE_FAILBACK, &d), 0);
	{
		int rewind = step_index(d, ST_DB_REWIND, false), standby = step_index(d, ST_DB_FB_STANDBY, false);
		int sec_stop = step_index(d, ST_SEC_STOP, false), shut = step_index(d, ST_DB_FB_SHUTDOWN, false);
		int caught = step_index(d, ST_DB_FB_CAUGHT, false), promote = step_index(d, ST_DB_FB_PROMOTE, false);
		int restart = step_index(d, ST_RESTART, false), demote = step_index(d, ST_DEMOTE, false);
		assert_true(rewind >= 0 && rewind < standby && standby < sec_stop && sec_stop < shut);
		assert_true(shut < caught && caught < promote && promote < restart && restart < demote);
		assert_string_equal(d->steps[rewind].host, "a");
		assert_string_equal(d->steps[shut].host, "b");
		assert_false(has_kind(d, ST_FB_START) || has_kind(d, ST_FB_SYNC) || has_kind(d, ST_FB_PROMOTE));
	}
	drill_free(d);
	runbook_free(rb);
	free(t);
}

static void test_plans(void **state)
{
	struct runbook *rb = NULL;
	struct drill *d = NULL;
	(void)state;
	assert_int_equal(parse(base, &rb), 0);
	/* planned: stops dependents first, syncs before promoting, starts in waves */
	assert_int_equal(drill_plan(rb, MODE_PLANNED, &d), 0);
	{
		int stop_web = -1, stop_db = -1, sync = -1, promote = -1, start_db = -1, start_web = -1;
		for (size_t i = 0; i < d->n; i++) {
			struct step *s = &d->steps[i];
			if (s->kind == ST_STOP && !strcmp(s->service, "web")) stop_web = (int)i;
			if (s->kind == ST_STOP && !strcmp(s->service, "db")) stop_db = (int)i;
			if (s->kind == ST_SYNC && sync < 0) sync = (int)i;
			if (s->kind == ST_PROMOTE) promote = (int)i;
			if (s->kind == ST_START && !strcmp(s->service, "db")) start_db = (int)i;
			if (s->kind == ST_START && !strcmp(s->service, "web")) start_web = (int)i;
		}
		assert_true(stop_web >= 0 && stop_web < stop_db);
		assert_true(stop_db < sync && sync < promote && promote < start_db && start_db < start_web);
	}
	/* db's check step: on the secondary, bounded by its one tcp check (defaults
	 * 5s, 30 retries, 2s apart) failing every attempt: 31 x 5 s + 30 x 2 s. */
	{
		const struct step *ck = NULL;
		for (size_t i = 0; i < d->n; i++)
			if (d->steps[i].kind == ST_CHECK)
				ck = &d->steps[i];
		assert_non_null(ck);
		assert_string_equal(ck->service, "db");
		assert_string_equal(ck->host, "b");
		assert_int_equal(ck->timeout, 215 * 1000000ULL);
	}
	drill_free(d);
	assert_int_equal(drill_plan(rb, MODE_UNPLANNED, &d), 0);
	assert_false(has_kind(d, ST_STOP));
	assert_false(has_kind(d, ST_SYNC));
	assert_true(has_kind(d, ST_PROMOTE));
	drill_free(d);
	assert_int_equal(drill_plan(rb, MODE_TEST, &d), 0);
	assert_false(has_kind(d, ST_PROMOTE));
	assert_false(has_kind(d, ST_STOP));
	assert_true(has_kind(d, ST_CLONE) && has_kind(d, ST_UNCLONE) && has_kind(d, ST_TEST_STOP));
	drill_free(d);
	runbook_free(rb);
	test_plan_databases();
}

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
	/* hours */
	d = timed_drill(rb, 20 * 60000000ULL, 10 * 60000000ULL);
	html = page_of(d, &sum);
	ticks_of(html, ticks, sizeof(ticks), &last_x);
	assert_string_equal(ticks, "0 +1h +2h +3h +4h +5h");
	free(html);
	free(sum);
	drill_free(d);
	/* minutes */
	d = timed_drill(rb, 50000000, 20000000);
	html = page_of(d, &sum);
	ticks_of(html, ticks, sizeof(ticks), &last_x);
	assert_string_equal(ticks, "0 +2m +4m +6m +8m +10m +12m");
	free(html);
	free(sum);
	drill_free(d);
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

/* The commented example in etc/ parses (file checks off: its paths are examples). */
static void test_example(void **state)
{
	struct runbook *rb = rb_example("etc/runbook.yaml");
	(void)state;

	assert_int_equal(rb->n_waves, 2);
	assert_int_equal(rb->services.n, 2);
	runbook_free(rb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_waves),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_plans),
		cmocka_unit_test(test_report_signature),
		cmocka_unit_test(test_report_axis),
		cmocka_unit_test(test_report_unreached),
		cmocka_unit_test(test_report_databases),
		cmocka_unit_test(test_example),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
