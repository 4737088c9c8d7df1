/* Unit tests: the failover runbook (every error names FILE:LINE:COLUMN), the
 * boot waves, the steps planned for each mode (the report: test_report.c). */
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
		cmocka_unit_test(test_example),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
