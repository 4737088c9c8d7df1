/* steps.c - running a drill step on its host: runbook commands (a string:
 * sh -c STRING), Bascule's own commands (an argv: the runbook's `bascule`
 * command, itself a string such as "sudo -n bascule", runs as
 * sh -c 'PREFIX "$@"' with the arguments as they are), the answers read as
 * JSON, the step's environment, and each kind sent to what does it
 * (repsteps.c, svcsteps.c, dbsteps.c, hybrid.c). */
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

void step_msg(struct step *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->message, sizeof(s->message), fmt, ap);
	va_end(ap);
}

char *step_disks_dir(const struct drill *d, const char *group, const struct rb_service *svc)
{
	const struct runbook *rb = d->rb;
	char *p = NULL;
	int n;

	if (!group || !*group) {
		n = asprintf(&p, "%s", "");
	} else if (d->mode == MODE_TEST) {
		n = asprintf(&p, "%s/%s/%s", rb->secondary.clone_dir, d->id, group);
	} else if (d->mode == MODE_FAILBACK) {
		n = asprintf(&p, "%s/%s", rb->failback.replica_root ?: "", group);
	} else if (svc && svc->disk_dir) {
		n = asprintf(&p, "%s", svc->disk_dir);
	} else {
		for (size_t i = 0; i < rb->services.n; i++)
			if (RB_SVC(rb, i)->group && !strcmp(RB_SVC(rb, i)->group, group) &&
			    RB_SVC(rb, i)->disk_dir)
				return asprintf(&p, "%s", RB_SVC(rb, i)->disk_dir) < 0 ? NULL : p;
		n = asprintf(&p, "%s/%s", rb->secondary.replica_root, group);
	}
	return n < 0 ? NULL : p;
}

static int build_env(struct step_ctx *c, const struct rb_service *svc)
{
	char *disks = step_disks_dir(c->d, c->s->group, svc);
	int n = 0;

	if (!disks)
		return -ENOMEM;
	if (asprintf(&c->env_buf[n++], "BASCULE_DRILL=%s", c->d->id) < 0 ||
	    asprintf(&c->env_buf[n++], "BASCULE_MODE=%s", mode_name(c->d->mode)) < 0 ||
	    asprintf(&c->env_buf[n++], "BASCULE_SERVICE=%s", c->s->service) < 0 ||
	    asprintf(&c->env_buf[n++], "BASCULE_GROUP=%s", c->s->group) < 0 ||
	    asprintf(&c->env_buf[n++], "BASCULE_DISKS=%s", disks) < 0) {
		c->env_buf[n - 1] = NULL;
		free(disks);
		return -ENOMEM;
	}
	free(disks);
	for (int i = 0; i < n; i++)
		c->env[i] = c->env_buf[i];
	c->env[n] = NULL;
	return 0;
}

int step_env_add(struct step_ctx *c, const char *name, const char *value)
{
	size_t n = 0;

	while (c->env[n])
		n++;
	if (n + 1 >= sizeof(c->env_buf) / sizeof(c->env_buf[0]))
		return -E2BIG;
	if (asprintf(&c->env_buf[n], "%s=%s", name, value) < 0) {
		c->env_buf[n] = NULL;
		return -ENOMEM;
	}
	c->env[n] = c->env_buf[n];
	c->env[n + 1] = NULL;
	return 0;
}

int step_run(struct step_ctx *c, const char *host, const char *const *argv, uint64_t timeout,
	       const char *what)
{
	const struct rb_host *h = runbook_host(c->d->rb, host);
	char d[32];
	int rc;

	subproc_result_free(&c->res);
	if (!h) {
		step_msg(c->s, "unknown host %s", host);
		return -EINVAL;
	}
	if ((rc = host_run(h, argv, c->env, timeout, &c->res)) < 0) {
		step_msg(c->s, "%s", err_msg(rc));
		return rc;
	}
	if (c->res.timed_out) {
		step_msg(c->s, "%s on %s did not finish within %s", what, host,
			 units_fmt_duration(timeout, d, sizeof(d)));
		return -ETIMEDOUT;
	}
	if (c->res.exit_status != 0) {
		if (c->res.exit_status < 0)
			step_msg(c->s, "%s on %s was killed by SIG%s: %.300s", what, host,
				 sigabbrev_np(c->res.term_signal) ?: "(unknown)", subproc_said(&c->res));
		else
			step_msg(c->s, "%s on %s failed (exit %d): %.300s", what, host,
				 c->res.exit_status, subproc_said(&c->res));
		return -EIO;
	}
	return 0;
}

int step_run_sh(struct step_ctx *c, const char *host, const char *cmd, uint64_t timeout, const char *what)
{
	return step_run(c, host, SUBPROC_SH(cmd), timeout, what);
}

int step_run_bascule(struct step_ctx *c, const char *host, const char *bascule, const char *const *args,
		       uint64_t timeout, const char *what)
{
	const char *argv[ARGS_MAX + 5] = { "/bin/sh", "-c", NULL, "bascule" };
	char *script = NULL;
	size_t n = 4;
	int rc;

	for (const char *const *a = args; *a; a++) {
		if (n == ARGS_MAX + 4) {
			step_msg(c->s, "internal error: too many arguments for %s", what);
			return -E2BIG;
		}
		argv[n++] = *a;
	}
	argv[n] = NULL;
	if (asprintf(&script, "%s \"$@\"", bascule) < 0)
		return -ENOMEM;
	argv[2] = script;
	rc = step_run(c, host, argv, timeout, what);
	free(script);
	return rc;
}

json_t *step_answer(struct step_ctx *c, const char *what)
{
	const char *line = subproc_last_line(&c->res);
	json_error_t je;
	json_t *j = json_loads(line, 0, &je);

	if (!json_is_object(j)) {
		json_decref(j);
		step_msg(c->s, "unexpected answer from %s: %.200s", what, *line ? line : "(no output)");
		return NULL;
	}
	return j;
}

/* Other steps are read under the lock: a step running beside this one may
 * be writing its result. */
uint64_t drill_step_epoch(struct drill *d, const char *group, enum step_kind kind)
{
	uint64_t e = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == kind && !strcmp(d->steps[i].group, group) &&
		    d->steps[i].status == SS_DONE)
			e = d->steps[i].epoch;
	pthread_mutex_unlock(&d->lock);
	return e;
}

json_t *drill_step_find_data(struct drill *d, enum step_kind kind, const char *group, const char *database)
{
	json_t *o = NULL;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n; i++) {
		const struct step *x = &d->steps[i];
		if (x->kind != kind || x->status != SS_DONE || strcmp(x->group, group) ||
		    (database && strcmp(x->database, database)))
			continue;
		json_decref(o);
		o = drill_step_data(x);
	}
	pthread_mutex_unlock(&d->lock);
	return o;
}

static int exec_kind(struct step_ctx *c)
{
	struct drill *d = c->d;
	const struct runbook *rb = d->rb;

	switch (c->s->kind) {
	case ST_PRE_REPL: return repl_precheck(c);
	case ST_PRE_SEC: return repl_precheck_secondary(c);
	case ST_PRE_PRIMARY: {
		int rc = step_run(c, c->s->host, (const char *const[]){ "true", NULL }, c->s->timeout,
			     "a command");
		if (rc == 0)
			step_msg(c->s, "reachable");
		return rc;
	}
	case ST_STOP: return svc_stop(c, false);
	case ST_SEC_STOP: case ST_TEST_STOP: return svc_stop(c, true);
	case ST_SYNC: return repl_sync(c, false);
	case ST_FB_SYNC: return repl_sync(c, true);
	case ST_PAUSE: return repl_pause(c, false, false);
	case ST_FB_PAUSE: return repl_pause(c, true, false);
	case ST_RESUME: return repl_pause(c, false, true);
	case ST_PROMOTE: return repl_promote(c);
	case ST_CLONE: return repl_clone(c);
	case ST_FB_PROMOTE: {
		char e[24];
		snprintf(e, sizeof(e), "%" PRIu64, drill_step_epoch(d, c->s->group, ST_FB_SYNC));
		return repl_replica(c, "promote", rb->failback.replica_root, rb->failback.site_key,
				  rb->primary.bascule, (const char *const[]){ "--epoch", e, NULL });
	}
	case ST_DEMOTE:
		return repl_replica(c, "demote", rb->secondary.replica_root, rb->secondary.site_key,
				  rb->secondary.bascule, NULL);
	case ST_START: return svc_start(c, d->mode == MODE_TEST, false);
	case ST_RESTART: return svc_start(c, false, true);
	case ST_CHECK: return svc_checks(c, false);
	case ST_PCHECK: return svc_checks(c, true);
	case ST_SWITCH: return svc_switch(c, false);
	case ST_SWITCH_BACK: return svc_switch(c, true);
	case ST_UNCLONE: return repl_unclone(c);
	case ST_FB_START: case ST_FB_STOP: return svc_reverse(c);
	case ST_DB_STOP: return db_stop(c);
	case ST_DB_ACKED: return db_acked(c);
	case ST_DB_START: case ST_DB_TEST_START: return db_start(c, false);
	case ST_DB_SEC_STOP: case ST_DB_TEST_STOP: return db_start(c, true);
	case ST_DB_RESTART: return db_restart(c);
	case ST_DB_REWIND: return db_rewind(c);
	case ST_DB_FB_STANDBY: return db_fb_standby(c);
	case ST_DB_FB_SHUTDOWN: return db_fb_shutdown(c);
	case ST_DB_FB_CAUGHT: return db_fb_caught(c);
	case ST_DB_FB_PROMOTE: return db_fb_promote(c);
	case ST_HY_CHECK: return hybrid_check(c);
	case ST_HY_PICK: return hybrid_pick(c);
	case ST_HY_RESTORE: return hybrid_restore(c);
	case ST_KIND_MAX:
		break;
	}
	step_msg(c->s, "unknown step kind %d", (int)c->s->kind);
	return -EINVAL;
}

int step_exec(struct drill *d, struct step *s)
{
	struct step_ctx c = { .d = d, .s = s };
	int rc;

	err_clear(); /* what an earlier step left in this thread is not this step's */
	if ((rc = build_env(&c, s->service[0] ? drill_service(d->rb, s->service) : NULL)) < 0)
		step_msg(s, "out of memory");
	else
		rc = exec_kind(&c);
	subproc_result_free(&c.res);
	for (size_t i = 0; i < sizeof(c.env_buf) / sizeof(c.env_buf[0]); i++)
		free(c.env_buf[i]);
	if (rc < 0 && !s->message[0])
		step_msg(s, "%s", err_msg(rc));
	return rc;
}
