/* Unit tests: running a drill with real commands on the local host: the
 * steps of a wave in parallel (each on its own copy, the journal written
 * under the lock: run under TSAN=1 this is the data race check), a switch
 * found by its index in the runbook, never by its printed label, across the
 * journal and into the abort. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "drill.h"
#include "err.h"
#include "fsutil.h"
#include "runbook.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/bascule-drill-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* Two services of one wave (started together, checked together: each
 * check fails once, then passes), two switches, one with a way back. */
static struct runbook *load(void)
{
	char *text = NULL;
	struct runbook *rb = NULL;
	int r;

	assert_true(asprintf(&text,
		"name: drill unit test\n"
		"objectives: {rto: 1h, rpo: 1h}\n"
		"hosts: [{name: here, url: local}]\n"
		"primary: {host: here}\n"
		"secondary: {host: here, replica_root: %1$s/replica}\n"
		"services:\n"
		"  - name: web\n"
		"    start: sleep 0.1; echo web >> %1$s/started\n"
		"    checks:\n"
		"      - {name: up, command: 'test -e %1$s/web-ok || { touch %1$s/web-ok; exit 1; }', retries: 3, interval: 10ms}\n"
		"  - name: api\n"
		"    start: sleep 0.1; echo api >> %1$s/started\n"
		"    checks:\n"
		"      - {name: up, command: 'test -e %1$s/api-ok || { touch %1$s/api-ok; exit 1; }', retries: 3, interval: 10ms}\n"
		"switch:\n"
		"  - name: dns\n"
		"    command: echo to-secondary >> %1$s/traffic\n"
		"    back: echo to-primary >> %1$s/traffic\n"
		"  - name: lb\n"
		"    command: echo lb-on >> %1$s/traffic\n"
		"report: {dir: %1$s/reports}\n"
		"state_dir: %1$s/state\n", dir) > 0);
	r = runbook_parse("rb.yaml", text, strlen(text), false, &rb);
	if (r < 0)
		fail_msg("%s", err_msg(r));
	free(text);
	return rb;
}

static char *slurp(const char *name)
{
	char path[128], *text = NULL;
	size_t len;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (fs_read_all(path, 1 << 20, &text, &len) < 0)
		return strdup("");
	return text;
}

static const struct step *find(const struct drill *d, enum step_kind k, const char *service, int sw)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == k && (!service || !strcmp(d->steps[i].service, service)) &&
		    (sw < 0 || d->steps[i].sw == sw))
			return &d->steps[i];
	return NULL;
}

static void test_run_and_abort(void **state)
{
	struct runbook *rb = load();
	struct drill *d = NULL;
	const struct step *s;
	char *t;
	int par = 0;

	assert_int_equal(drill_plan(rb, MODE_PLANNED, &d), 0);
	d->quiet = true;
	for (size_t i = 0; i < d->n; i++) {
		struct step *st = &d->steps[i];
		switch (st->kind) {
		case ST_START:
			assert_true(!par || st->par == par); /* one wave: together */
			par = st->par;
			break;
		case ST_CHECK:
		case ST_SWITCH:
			break;
		default: /* the daemon's and the replica's steps: not here */
			st->status = SS_SKIPPED;
		}
		/* Another version may word its labels otherwise: a step is never
		 * found by its label. */
		if (st->kind == ST_SWITCH)
			snprintf(st->label, sizeof(st->label), "traffic step %d", st->id);
	}
	assert_non_null(s = find(d, ST_SWITCH, NULL, 0));
	assert_string_equal(RB_SW(rb, s->sw)->name, "dns");
	assert_non_null(find(d, ST_SWITCH, NULL, 1));
	assert_int_equal(drill_begin(d), 0);
	{
		int r = drill_run(d);
		if (r < 0)
			fail_msg("drill_run: %s", err_msg(r));
	}
	t = slurp("traffic");
	assert_string_equal(t, "to-secondary\nlb-on\n");
	free(t);
	t = slurp("started");
	assert_true(!strcmp(t, "web\napi\n") || !strcmp(t, "api\nweb\n"));
	free(t);
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].status != SS_SKIPPED)
			assert_int_equal(d->steps[i].status, SS_DONE);
	assert_int_equal(find(d, ST_CHECK, "web", -1)->attempts, 2);
	assert_int_equal(find(d, ST_CHECK, "api", -1)->attempts, 2);
	drill_free(d);

	/* The journal keeps each step's switch: the abort reloaded from it
	 * switches dns back (lb has no way back), whatever the labels say. */
	d = NULL;
	assert_int_equal(drill_load(rb, &d), 0);
	d->quiet = true;
	assert_int_equal(find(d, ST_CHECK, "api", -1)->attempts, 2);
	assert_non_null(s = find(d, ST_SWITCH, NULL, 0));
	assert_memory_equal(s->label, "traffic step ", 13);
	assert_int_equal(drill_abort(d), 0);
	assert_non_null(s = find(d, ST_SWITCH_BACK, NULL, 0));
	assert_true(s->abort);
	assert_int_equal(s->status, SS_DONE);
	assert_null(find(d, ST_SWITCH_BACK, NULL, 1));
	t = slurp("traffic");
	assert_string_equal(t, "to-secondary\nlb-on\nto-primary\n");
	free(t);
	assert_string_equal(d->status, "aborted");
	drill_free(d);
	runbook_free(rb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_run_and_abort, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
