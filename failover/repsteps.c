/* repsteps.c - the replication steps of a drill: the prechecks of the
 * primary's replication and of the replica, the final sync, pause and
 * resume, promote, clone, demote and the clones' removal, each through
 * Bascule's own commands and their JSON answers (steps.c runs them). */
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
int repl_precheck(struct step_ctx *c)
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
int repl_precheck_secondary(struct step_ctx *c)
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

/* The final sync: `bascule sync GROUP --wait --json` answers the epoch every
 * target acknowledged. */
int repl_sync(struct step_ctx *c, bool reverse)
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

int repl_pause(struct step_ctx *c, bool reverse, bool resume)
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
int repl_replica(struct step_ctx *c, const char *verb, const char *root, const char *key,
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

/* `replica VERB` (promote, clone) of the step's group at the secondary with
 * EXTRA[0..N) and its databases' settings (EXTRA has room for CAP). */
static int secondary_replica(struct step_ctx *c, const char *verb, const char **extra, size_t n, size_t cap)
{
	const struct runbook *rb = c->d->rb;

	db_promote_args(c->d, c->s->group, extra, &n, cap - 1);
	extra[n] = NULL;
	return repl_replica(c, verb, rb->secondary.replica_root, rb->secondary.site_key, rb->secondary.bascule,
			    extra);
}

int repl_promote(struct step_ctx *c)
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
		if (!(dd = step_disks_dir(d, c->s->group, svc)))
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
	rc = secondary_replica(c, "promote", extra, n, sizeof(extra) / sizeof(extra[0]));
	free(dd);
	return rc;
}

int repl_clone(struct step_ctx *c)
{
	char *to = step_disks_dir(c->d, c->s->group, NULL);
	const char *extra[12] = { "--to-dir", to };
	int rc;

	if (!to)
		return -ENOMEM;
	/* Its databases are made with the settings of the promoted ones. */
	rc = secondary_replica(c, "clone", extra, 2, sizeof(extra) / sizeof(extra[0]));
	free(to);
	return rc;
}

int repl_unclone(struct step_ctx *c)
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
