/* svcsteps.c - the service steps of a drill: the runbook's stop, start
 * and restart commands, the health checks, the traffic switch and the
 * reverse replication commands (steps.c runs them). */
#include "checks.h"
#include "drill_int.h"
#include "err.h"
#include "hostexec.h"
#include "units.h"
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int svc_stop(struct step_ctx *c, bool secondary)
{
	const struct rb_service *svc = drill_service(c->d->rb, c->s->service);
	const char *cmd = secondary ? svc->secondary_stop : svc->stop;
	char d1[32];
	int rc;

	if (c->s->kind == ST_TEST_STOP)
		cmd = svc->test_stop ?: svc->secondary_stop;
	if (!cmd) {
		step_msg(c->s, "no %s command in the runbook; nothing to do",
			 c->s->kind == ST_TEST_STOP ? "test_stop" : secondary ? "secondary_stop" : "stop");
		return 0;
	}
	if ((rc = step_run_sh(c, c->s->host, cmd, svc->stop_timeout, "stop")) == 0) {
		step_msg(c->s, "stopped");
		return 0;
	}
	if (secondary || !svc->force_stop)
		return rc;
	/* Not stopped in time (or failed): force it, and say so. */
	{
		char why[512];
		snprintf(why, sizeof(why), "%s", c->s->message);
		if ((rc = step_run_sh(c, c->s->host, svc->force_stop, MIN(1), "force_stop")) < 0)
			return rc;
		step_msg(c->s, "forced after %s: %.400s",
			 units_fmt_duration(svc->stop_timeout, d1, sizeof(d1)), why);
	}
	return 0;
}

int svc_start(struct step_ctx *c, bool test, bool home)
{
	const struct rb_service *svc = drill_service(c->d->rb, c->s->service);
	const char *cmd = home ? svc->restart : test && svc->test_start ? svc->test_start : svc->start;
	int rc;

	if (!cmd) {
		step_msg(c->s, "no restart command in the runbook: start %s on %s by hand", svc->name,
			 c->s->host);
		return home && c->s->abort ? -ENOEXEC : 0;
	}
	if (c->d->mode == MODE_HYBRID) {
		/* What the services start on: the night loaded, and where. */
		json_t *p = drill_step_find_data(c->d, ST_HY_RESTORE, "", NULL);
		rc = step_env_add(c, "BASCULE_NIGHT", json_string_value(json_object_get(p, "night")) ?: "");
		if (rc == 0)
			rc = step_env_add(c, "BASCULE_LOAD", c->d->rb->hybrid.load);
		json_decref(p);
		if (rc < 0)
			return rc;
	}
	if ((rc = step_run_sh(c, c->s->host, cmd, svc->start_timeout, "start")) == 0)
		step_msg(c->s, "started%s", test ? " (isolated test copy)" : "");
	return rc;
}

int svc_checks(struct step_ctx *c, bool home)
{
	struct drill *d = c->d;
	const struct rb_service *svc = drill_service(d->rb, c->s->service);
	int attempts = 0;

	for (size_t k = 0; k < svc->checks.n; k++) {
		const struct rb_check *ck = RB_CHECK(svc, k);
		const struct rb_host *h = runbook_host(d->rb, ck->host ?: c->s->host); /* the service's host */
		struct rb_check tc = *ck; /* a test drill queries the clones */
		char why[600] = "";
		int rc = -EAGAIN;
		if (d->mode == MODE_TEST && ck->test_sql)
			tc.sql = ck->test_sql;
		if (d->mode == MODE_FAILBACK && home && ck->failback_sql)
			tc.sql = ck->failback_sql;
		for (uint64_t a = 0; a <= ck->retries; a++) {
			attempts++;
			c->s->attempts = attempts;
			if ((rc = check_once(&tc, h, c->env, why, sizeof(why))) == 0)
				break;
			if (a < ck->retries)
				usleep((useconds_t)ck->interval);
		}
		if (rc < 0) {
			step_msg(c->s, "check %s failed after %llu attempt%s: %.450s", ck->name,
				 (unsigned long long)ck->retries + 1, ck->retries ? "s" : "", why);
			return rc;
		}
	}
	step_msg(c->s, "%zu check%s green (%d attempt%s)", svc->checks.n, svc->checks.n == 1 ? "" : "s",
		 attempts, attempts == 1 ? "" : "s");
	return 0;
}

/* The step's switch is its index in the runbook, never found by its label. */
int svc_switch(struct step_ctx *c, bool back)
{
	const struct runbook *rb = c->d->rb;
	const struct rb_switch *sw;
	int rc;

	if (c->s->sw < 0 || (size_t)c->s->sw >= rb->switches.n) {
		step_msg(c->s, "step %d names no switch of the runbook (a journal written by an older "
			       "bascule: finish this drill with that version)", c->s->id);
		return -ENOENT;
	}
	sw = RB_SW(rb, c->s->sw);
	if ((rc = step_run_sh(c, c->s->host, back ? sw->back : sw->command, sw->timeout, "switch")) == 0)
		step_msg(c->s, "%s", back ? "traffic back on the primary" : "traffic on the secondary");
	return rc;
}

int svc_reverse(struct step_ctx *c)
{
	const struct runbook *rb = c->d->rb;
	bool start = c->s->kind == ST_FB_START;
	const char *fc = start ? rb->failback.start : rb->failback.stop;
	int rc;

	if (!fc) {
		step_msg(c->s, "the runbook has no failback.%s command", start ? "start" : "stop");
		return -ENOEXEC;
	}
	if ((rc = step_run_sh(c, c->s->host, fc, c->s->timeout, "the reverse replication command")) == 0)
		step_msg(c->s, "%s", start ? "reverse replication running" : "reverse replication stopped");
	return rc;
}
