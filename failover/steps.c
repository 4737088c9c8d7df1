/* steps.c - what each kind of drill step does on its host: runbook commands
 * (a string: sh -c STRING), Bascule's own commands (an argv: the runbook's
 * `bascule` command, itself a string such as "sudo -n bascule", runs as
 * sh -c 'PREFIX "$@"' with the arguments as they are), and the answers
 * read as JSON. */
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

#define ARGS_MAX 24


void step_msg(struct step *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->message, sizeof(s->message), fmt, ap);
	va_end(ap);
}

/* The disks of GROUP as the secondary's commands see them (malloc'd). */
static char *disks_dir(const struct drill *d, const char *group, const struct rb_service *svc)
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
	char *disks = disks_dir(c->d, c->s->group, svc);
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

/* Appends ", TEXT" (or TEXT to an empty BUF), for lists in messages. */
static void list_add(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void list_add(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n && n + 2 < len) {
		memcpy(buf + n, ", ", 3);
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
}

/* Is the primary's replication ready for a failover?  Every group of the
 * runbook replicated and not paused.  Replica targets are the failover path:
 * each one connected (with epochs in flight, "catching-up", is connected:
 * the final sync waits for them) when require_connected, and every group's
 * lag under max_lag.  A vault target is not on that path: between two
 * shipments or catching up it is healthy, in error it is a warning in the
 * report, never a reason to refuse the drill. */
static int do_pre_repl(struct step_ctx *c)
{
	const struct runbook *rb = c->d->rb;
	const char *const args[] = { "--socket", rb->primary.control_socket, "status", "--json", NULL };
	char vaults[300] = "";
	const char *groups[DRILL_MAX_GROUPS];
	size_t ng = drill_groups(rb, groups, DRILL_MAX_GROUPS), n_repl = 0;
	json_t *st, *garr, *tarr, *g, *t;
	json_error_t je;
	double worst = 0;
	size_t k;
	int rc;

	if ((rc = step_run_bascule(c, rb->primary.host, rb->primary.bascule, args, c->s->timeout,
			      "bascule status")) < 0)
		return rc;
	if (!(st = json_loads(c->res.output, 0, &je))) {
		step_msg(c->s, "bascule status --json on %s gave no JSON: %s", rb->primary.host, je.text);
		return -EBADMSG;
	}
	garr = json_object_get(st, "groups");
	tarr = json_object_get(st, "targets");
	rc = 0;
	for (size_t i = 0; i < ng && rc == 0; i++) {
		bool found = false;
		json_array_foreach(garr, k, g) {
			if (strcmp(json_string_value(json_object_get(g, "name")) ?: "", groups[i]))
				continue;
			found = true;
			if (json_is_true(json_object_get(g, "paused"))) {
				step_msg(c->s, "group %s is paused on the primary: resume it (bascule resume "
					       "%s) before a drill", groups[i], groups[i]);
				rc = -EAGAIN;
			}
		}
		if (!found) {
			step_msg(c->s, "group %s of the runbook is not replicated by the daemon on %s",
				 groups[i], rb->primary.host);
			rc = -ENOENT;
		}
	}
	json_array_foreach(tarr, k, t) {
		const char *tn = json_string_value(json_object_get(t, "name")) ?: "?";
		const char *state = json_string_value(json_object_get(t, "state")) ?: "?";
		const char *why = json_string_value(json_object_get(t, "last_error")) ?: "";
		json_t *tg = json_object_get(t, "groups");
		if (rc)
			break;
		if (!strcmp(json_string_value(json_object_get(t, "type")) ?: "", "vault")) {
			/* In error, or trying again after one (the error stays until an ack). */
			bool up = !strcmp(state, "connected") || !strcmp(state, "catching-up");
			if (!strcmp(state, "error") || (!up && *why))
				list_add(c->s->warning, sizeof(c->s->warning), "vault target %s is in error: "
					 "%.150s", tn, *why ? why : "(no message)");
			else
				list_add(vaults, sizeof(vaults), "%s %s", tn, state);
			continue;
		}
		n_repl++;
		if (rb->prechecks.require_connected && strcmp(state, "connected") &&
		    strcmp(state, "catching-up")) {
			if (*why)
				step_msg(c->s, "replica target %s is not connected (%s): %.300s", tn, state,
					 why);
			else
				step_msg(c->s, "replica target %s is not connected (%s, no error recorded "
					       "yet: bascule status on %s shows when it is)", tn, state,
					 rb->primary.host);
			rc = -ENOTCONN;
			break;
		}
		for (size_t i = 0; i < ng && rc == 0; i++) {
			double lag = json_number_value(json_object_get(json_object_get(tg, groups[i]),
								       "lag_seconds"));
			if (rb->prechecks.max_lag && lag * 1e6 > (double)rb->prechecks.max_lag) {
				char d1[32];
				step_msg(c->s, "group %s lags %.1f s behind on replica target %s, more "
					       "than max_lag %s", groups[i], lag, tn,
					 units_fmt_duration(rb->prechecks.max_lag, d1, sizeof(d1)));
				rc = -EAGAIN;
			}
			if (lag > worst)
				worst = lag;
		}
	}
	if (rc == 0)
		rc = db_precheck(c, st);
	if (rc == 0 && !n_repl) {
		step_msg(c->s, "the daemon on %s has no replica target: nothing would reach the "
			       "secondary's replica", rb->primary.host);
		rc = -ENOENT;
	}
	json_decref(st);
	if (rc == 0)
		step_msg(c->s, "%zu group%s on %zu replica target%s, worst lag %.2f s%s%s%s", ng,
			 ng == 1 ? "" : "s", n_repl, n_repl == 1 ? "" : "s", worst,
			 *vaults ? "; vault " : "", vaults, *vaults ? " (not on the failover path)" : "");
	return rc;
}

/* The secondary: its replica readable, and the free space where promoted
 * (or, in test mode, cloned) disks will be written, from `bascule space
 * --json` (statvfs there). */
static int do_pre_sec(struct step_ctx *c)
{
	const struct runbook *rb = c->d->rb;
	const char *dir = c->d->mode == MODE_TEST ? rb->secondary.clone_dir : rb->secondary.replica_root;
	const char *const list[] = { "replica", "list", "--root", rb->secondary.replica_root, NULL };
	const char *const space[] = { "space", "--json", dir, NULL };
	json_int_t avail = -1;
	json_t *j;
	int rc;

	if ((rc = step_run_bascule(c, rb->secondary.host, rb->secondary.bascule, list, c->s->timeout,
			      "the replica check")) < 0 ||
	    (rc = step_run_bascule(c, rb->secondary.host, rb->secondary.bascule, space, c->s->timeout,
			      "bascule space")) < 0)
		return rc;
	if (!(j = step_answer(c, "bascule space")))
		return -EBADMSG;
	if (json_unpack(j, "{s:I}", "available_bytes", &avail) < 0 || avail < 0) {
		json_decref(j);
		step_msg(c->s, "unexpected answer from bascule space: %.200s", subproc_said(&c->res));
		return -EBADMSG;
	}
	json_decref(j);
	if (rb->prechecks.min_free && (uint64_t)avail < rb->prechecks.min_free) {
		step_msg(c->s, "only %" PRIu64 " MiB free under %s on %s, min_free wants %llu MiB",
			 (uint64_t)avail >> 20, dir, rb->secondary.host,
			 (unsigned long long)(rb->prechecks.min_free >> 20));
		return -ENOSPC;
	}
	step_msg(c->s, "replica readable, %" PRIu64 " MiB free under %s", (uint64_t)avail >> 20, dir);
	return 0;
}

static int do_stop(struct step_ctx *c, bool secondary)
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

/* The final sync: `bascule sync GROUP --wait --json` answers the epoch every
 * target acknowledged. */
static int do_sync(struct step_ctx *c, bool reverse)
{
	const struct runbook *rb = c->d->rb;
	char d1[32];
	json_int_t e = 0;
	int ok = 0, rc;
	json_t *j;

	units_fmt_duration(c->s->timeout > MIN(1) ? c->s->timeout - MIN(1) : c->s->timeout, d1, sizeof(d1));
	{
		const char *const args[] = { "--socket", reverse ? rb->failback.control_socket
								 : rb->primary.control_socket,
					     "sync", c->s->group, "--wait", "--timeout", d1, "--json", NULL };
		if ((rc = step_run_bascule(c, c->s->host, reverse ? rb->secondary.bascule : rb->primary.bascule,
				      args, c->s->timeout, "bascule sync --wait")) < 0)
			return rc;
	}
	if (!(j = step_answer(c, "bascule sync")))
		return -EBADMSG;
	if (json_unpack(j, "{s:b, s:{s:I}}", "acknowledged", &ok, "epochs", c->s->group, &e) < 0 || !ok ||
	    e <= 0) {
		json_decref(j);
		step_msg(c->s, "unexpected answer from bascule sync: %.200s", subproc_said(&c->res));
		return -EBADMSG;
	}
	json_decref(j);
	c->s->epoch = (uint64_t)e;
	step_msg(c->s, "epoch %" PRIu64 " written, verified by its digest and acknowledged", c->s->epoch);
	return 0;
}

static int do_pause(struct step_ctx *c, bool reverse, bool resume)
{
	const struct runbook *rb = c->d->rb;
	const char *const args[] = { "--socket", reverse ? rb->failback.control_socket
							 : rb->primary.control_socket,
				     resume ? "resume" : "pause", c->s->group, NULL };
	int rc = step_run_bascule(c, c->s->host, reverse ? rb->secondary.bascule : rb->primary.bascule, args,
			     c->s->timeout, resume ? "bascule resume" : "bascule pause");

	if (rc == 0)
		step_msg(c->s, "%s", resume ? "replication resumed" : "no further epochs will be cut");
	return rc;
}

/* `bascule replica VERB --root ROOT --key KEY --group G [--json] EXTRA...`;
 * promote and clone answer one JSON object. */
static int do_replica(struct step_ctx *c, const char *verb, const char *root, const char *key,
		      const char *bascule, const char *const *extra)
{
	const char *args[ARGS_MAX + 1] = { "replica", verb, "--root", root, "--key", key, "--group",
					   c->s->group };
	bool json = strcmp(verb, "demote") != 0;
	size_t n = 8;
	json_int_t e = 0, t = 0;
	int cons = 0, rc;
	json_t *j;

	if (json)
		args[n++] = "--json";
	for (const char *const *x = extra; x && *x; x++) {
		if (n == ARGS_MAX) {
			step_msg(c->s, "internal error: too many arguments for bascule replica %s", verb);
			return -E2BIG;
		}
		args[n++] = *x;
	}
	args[n] = NULL;
	if ((rc = step_run_bascule(c, c->s->host, bascule, args, c->s->timeout, verb)) < 0)
		return rc;
	if (!json) {
		const char *l = subproc_last_line(&c->res);
		step_msg(c->s, "%s", *l ? l : "demoted");
		return 0;
	}
	if (!(j = step_answer(c, "bascule replica")))
		return -EBADMSG;
	if (json_unpack(j, "{s:I, s:I, s:b}", "epoch", &e, "cut_time_us", &t, "consistent", &cons) < 0) {
		json_decref(j);
		step_msg(c->s, "unexpected answer from bascule replica %s: %.200s", verb,
			 subproc_said(&c->res));
		return -EBADMSG;
	}
	c->s->epoch = (uint64_t)e;
	c->s->cut_time = (uint64_t)t;
	c->s->consistent = cons;
	{
		char when[40], pg[400] = "";
		db_promoted(c, j, pg, sizeof(pg));
		step_msg(c->s, "%s at epoch %llu (%s, cut %s)%s", !strcmp(verb, "clone") ? "cloned" : "promoted",
			 (unsigned long long)e, cons ? "consistent" : "fuzzy",
			 units_fmt_time((uint64_t)t, when, sizeof(when)), pg);
	}
	json_decref(j);
	return 0;
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

static int do_promote(struct step_ctx *c)
{
	struct drill *d = c->d;
	const struct runbook *rb = d->rb;
	const char *extra[ARGS_MAX - 9];
	const struct rb_service *svc = NULL;
	char *dd = NULL, e[24], at[48];
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < rb->services.n; i++)
		if (RB_SVC(rb, i)->group && !strcmp(RB_SVC(rb, i)->group, c->s->group) &&
		    RB_SVC(rb, i)->disk_dir)
			svc = RB_SVC(rb, i);
	if (svc) {
		if (!(dd = disks_dir(d, c->s->group, svc)))
			return -ENOMEM;
		extra[n++] = "--link-dir";
		extra[n++] = dd;
	}
	if (d->mode == MODE_PLANNED) {
		/* RPO 0: exactly the epoch the final sync had acknowledged. */
		/* With databases, the epoch that brought their final LSN (after the sync). */
		uint64_t se = drill_step_epoch(d, c->s->group, ST_SYNC);
		uint64_t de = drill_step_epoch(d, c->s->group, ST_DB_ACKED);
		snprintf(e, sizeof(e), "%" PRIu64, de > se ? de : se);
		extra[n++] = "--epoch";
		extra[n++] = e;
	} else {
		/* WAL epochs are fuzzy: recovery makes a database consistent. */
		bool has_db = false;
		for (size_t i = 0; i < rb->databases.n; i++)
			has_db |= !strcmp(RB_DB(rb, i)->group, c->s->group);
		if (rb->consistent && !has_db)
			extra[n++] = "--consistent";
		if (d->at_epoch) {
			snprintf(e, sizeof(e), "%" PRIu64, d->at_epoch);
			extra[n++] = "--epoch";
			extra[n++] = e;
		}
		if (d->at) {
			snprintf(at, sizeof(at), "@%" PRIu64 ".%06" PRIu64, d->at / 1000000, d->at % 1000000);
			extra[n++] = "--at";
			extra[n++] = at;
		}
	}
	db_promote_args(d, c->s->group, extra, &n, sizeof(extra) / sizeof(extra[0]) - 1);
	extra[n] = NULL;
	rc = do_replica(c, "promote", rb->secondary.replica_root, rb->secondary.site_key,
			rb->secondary.bascule, extra);
	free(dd);
	return rc;
}

static int do_clone(struct step_ctx *c)
{
	const struct runbook *rb = c->d->rb;
	char *to = disks_dir(c->d, c->s->group, NULL);
	const char *extra[12] = { "--to-dir", to };
	size_t n = 2;
	int rc;

	if (!to)
		return -ENOMEM;
	/* Its databases are made with the settings of the promoted ones. */
	db_promote_args(c->d, c->s->group, extra, &n, sizeof(extra) / sizeof(extra[0]) - 1);
	extra[n] = NULL;
	rc = do_replica(c, "clone", rb->secondary.replica_root, rb->secondary.site_key,
			rb->secondary.bascule, extra);
	free(to);
	return rc;
}

static int do_start(struct step_ctx *c, bool test, bool home)
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

static int do_checks(struct step_ctx *c, bool home)
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
static int do_switch(struct step_ctx *c, bool back)
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

static int do_unclone(struct step_ctx *c)
{
	const struct runbook *rb = c->d->rb;
	char *dir = NULL;
	int rc;

	if (asprintf(&dir, "%s/%s", rb->secondary.clone_dir, c->d->id) < 0)
		return -ENOMEM;
	if ((rc = step_run(c, c->s->host, (const char *const[]){ "rm", "-rf", "--", dir, NULL },
		      c->s->timeout, "removing the clones")) == 0)
		step_msg(c->s, "removed %s", dir);
	free(dir);
	return rc;
}

static int do_reverse(struct step_ctx *c)
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

static int exec_kind(struct step_ctx *c)
{
	struct drill *d = c->d;
	const struct runbook *rb = d->rb;

	switch (c->s->kind) {
	case ST_PRE_REPL: return do_pre_repl(c);
	case ST_PRE_SEC: return do_pre_sec(c);
	case ST_PRE_PRIMARY: {
		int rc = step_run(c, c->s->host, (const char *const[]){ "true", NULL }, c->s->timeout,
			     "a command");
		if (rc == 0)
			step_msg(c->s, "reachable");
		return rc;
	}
	case ST_STOP: return do_stop(c, false);
	case ST_SEC_STOP: case ST_TEST_STOP: return do_stop(c, true);
	case ST_SYNC: return do_sync(c, false);
	case ST_FB_SYNC: return do_sync(c, true);
	case ST_PAUSE: return do_pause(c, false, false);
	case ST_FB_PAUSE: return do_pause(c, true, false);
	case ST_RESUME: return do_pause(c, false, true);
	case ST_PROMOTE: return do_promote(c);
	case ST_CLONE: return do_clone(c);
	case ST_FB_PROMOTE: {
		char e[24];
		snprintf(e, sizeof(e), "%" PRIu64, drill_step_epoch(d, c->s->group, ST_FB_SYNC));
		return do_replica(c, "promote", rb->failback.replica_root, rb->failback.site_key,
				  rb->primary.bascule, (const char *const[]){ "--epoch", e, NULL });
	}
	case ST_DEMOTE:
		return do_replica(c, "demote", rb->secondary.replica_root, rb->secondary.site_key,
				  rb->secondary.bascule, NULL);
	case ST_START: return do_start(c, d->mode == MODE_TEST, false);
	case ST_RESTART: return do_start(c, false, true);
	case ST_CHECK: return do_checks(c, false);
	case ST_PCHECK: return do_checks(c, true);
	case ST_SWITCH: return do_switch(c, false);
	case ST_SWITCH_BACK: return do_switch(c, true);
	case ST_UNCLONE: return do_unclone(c);
	case ST_FB_START: case ST_FB_STOP: return do_reverse(c);
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
