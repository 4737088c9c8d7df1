/* plan.c - which steps a drill runs, per mode, and the steps that undo an
 * interrupted one (see drill.h). */
#include "clock.h"
#include "drill_int.h"
#include "err.h"
#include "units.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[ST_KIND_MAX] = {
	[ST_PRE_REPL] = "precheck-replication", [ST_PRE_SEC] = "precheck-secondary",
	[ST_PRE_PRIMARY] = "precheck-primary", [ST_STOP] = "stop", [ST_SYNC] = "sync",
	[ST_PAUSE] = "pause", [ST_PROMOTE] = "promote", [ST_CLONE] = "clone", [ST_START] = "start",
	[ST_CHECK] = "check", [ST_SWITCH] = "switch", [ST_TEST_STOP] = "test-stop",
	[ST_UNCLONE] = "remove-clones", [ST_FB_START] = "reverse-start", [ST_FB_SYNC] = "reverse-sync",
	[ST_FB_PAUSE] = "reverse-pause", [ST_SEC_STOP] = "secondary-stop",
	[ST_FB_PROMOTE] = "promote-primary", [ST_FB_STOP] = "reverse-stop", [ST_RESTART] = "restart",
	[ST_PCHECK] = "check-primary", [ST_SWITCH_BACK] = "switch-back", [ST_DEMOTE] = "demote",
	[ST_RESUME] = "resume", [ST_DB_STOP] = "database-stop", [ST_DB_ACKED] = "database-acked",
	[ST_DB_START] = "database-start", [ST_DB_SEC_STOP] = "database-secondary-stop",
	[ST_DB_RESTART] = "database-restart", [ST_DB_TEST_START] = "database-test-start",
	[ST_DB_TEST_STOP] = "database-test-stop", [ST_DB_REWIND] = "database-rewind",
	[ST_DB_FB_STANDBY] = "database-standby-start", [ST_DB_FB_SHUTDOWN] = "database-secondary-shutdown",
	[ST_DB_FB_CAUGHT] = "database-caught-up", [ST_DB_FB_PROMOTE] = "database-promote-primary",
	[ST_HY_CHECK] = "intake-check", [ST_HY_PICK] = "intake-night", [ST_HY_RESTORE] = "intake-restore",
};
static const char *const status_names[] = { "pending", "running", "done", "failed", "skipped" };
static const char *const mode_names[] = { "plan", "planned", "unplanned", "test", "failback", "hybrid" };

const char *mode_name(enum drill_mode m) { return mode_names[m]; }
const char *step_kind_name(enum step_kind k) { return kind_names[k]; }
const char *step_status_name(enum step_status s) { return status_names[s]; }

int mode_parse(const char *s, enum drill_mode *ret)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (!strcmp(s, mode_names[i])) {
			*ret = (enum drill_mode)i;
			return 0;
		}
	return -EINVAL;
}

int drill_kind_parse(const char *s, enum step_kind *ret)
{
	for (int k = 0; k < ST_KIND_MAX; k++)
		if (!strcmp(s, kind_names[k])) {
			*ret = (enum step_kind)k;
			return 0;
		}
	return -EINVAL;
}

int drill_status_parse(const char *s, enum step_status *ret)
{
	for (int k = 0; k <= SS_SKIPPED; k++)
		if (!strcmp(s, status_names[k])) {
			*ret = (enum step_status)k;
			return 0;
		}
	return -EINVAL;
}

const struct rb_service *drill_service(const struct runbook *rb, const char *name)
{
	long i = yamltab_find(&rb->services, sizeof(struct rb_service), name);
	return i < 0 ? NULL : RB_SVC(rb, i);
}

static struct step *add_step(struct drill *d, enum step_kind kind, const char *service,
			     const char *group, const char *host, int par, uint64_t timeout,
			     const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static struct step *add_step(struct drill *d, enum step_kind kind, const char *service,
			     const char *group, const char *host, int par, uint64_t timeout,
			     const char *fmt, ...)
{
	struct step *s;
	va_list ap;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 32;
		struct step *n = realloc(d->steps, cap * sizeof(*n));
		if (!n) {
			d->oom = true; /* a plan missing a step must not run */
			return NULL;
		}
		d->steps = n;
		d->cap = cap;
	}
	s = &d->steps[d->n];
	memset(s, 0, sizeof(*s));
	s->id = (int)++d->n;
	s->kind = kind;
	s->sw = -1;
	s->par = par;
	s->timeout = timeout;
	snprintf(s->service, sizeof(s->service), "%s", service ? service : "");
	snprintf(s->group, sizeof(s->group), "%s", group ? group : "");
	snprintf(s->host, sizeof(s->host), "%s", host ? host : "");
	va_start(ap, fmt);
	vsnprintf(s->label, sizeof(s->label), fmt, ap);
	va_end(ap);
	return s;
}

size_t drill_groups(const struct runbook *rb, const char **out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < rb->services.n; i++) {
		const char *g = RB_SVC(rb, i)->group;
		bool seen = false;
		if (!g)
			continue;
		for (size_t k = 0; k < n; k++)
			seen |= !strcmp(out[k], g);
		if (!seen && n < max)
			out[n++] = g;
	}
	return n;
}

/* Services stopped dependents first (highest wave first), one by one. */
static void plan_stops(struct drill *d, enum step_kind kind, const char *host)
{
	const struct runbook *rb = d->rb;
	for (int w = rb->n_waves; w >= 1; w--)
		for (size_t i = 0; i < rb->services.n; i++) {
			const struct rb_service *s = RB_SVC(rb, i);
			if (s->wave != w)
				continue;
			if (kind == ST_TEST_STOP)
				add_step(d, kind, s->name, s->group, host, 0, s->stop_timeout,
					 "stop test copy of %s", s->name);
			else
				add_step(d, kind, s->name, s->group, host, 0, s->stop_timeout,
					 "stop %s on %s", s->name, host);
		}
}

/* One step per group: "VERB GROUP" or "VERB GROUP on HOST". */
static void plan_groups(struct drill *d, const char **groups, size_t ng, enum step_kind kind,
			const char *host, uint64_t timeout, const char *verb, bool on_host)
{
	for (size_t i = 0; i < ng; i++)
		add_step(d, kind, NULL, groups[i], host, 0, timeout, "%s %s%s%s", verb, groups[i],
			 on_host ? " on " : "", on_host ? host : "");
}

/* Traffic to the secondary, or back (only switches that say how). */
static void plan_switches(struct drill *d, bool back)
{
	const struct runbook *rb = d->rb;
	for (size_t i = 0; i < rb->switches.n; i++) {
		const struct rb_switch *sw = RB_SW(rb, i);
		if (back && !sw->back)
			continue;
		struct step *s = add_step(d, back ? ST_SWITCH_BACK : ST_SWITCH, NULL, NULL,
					  sw->host ?: SVC_HOST(d), 0, sw->timeout,
					  back ? "switch %s back" : "switch %s", sw->name);
		if (s)
			s->sw = (int)i;
	}
}

static void plan_prechecks(struct drill *d, bool replication)
{
	if (replication)
		add_step(d, ST_PRE_REPL, NULL, NULL, PRI(d), 0, MIN(1), "replication healthy (%s)", PRI(d));
	add_step(d, ST_PRE_SEC, NULL, NULL, SEC(d), 0, MIN(1), "secondary ready (%s)", SEC(d));
}

/* One step of KIND per database of the runbook, in runbook order. */
static void plan_databases(struct drill *d, enum step_kind kind)
{
	const struct runbook *rb = d->rb;
	for (size_t i = 0; i < rb->databases.n; i++) {
		const struct rb_database *db = RB_DB(rb, i);
		const char *host = db->host ?: PRI(d);
		struct step *s = NULL;
		switch (kind) {
		case ST_DB_STOP:
			s = add_step(d, kind, NULL, db->group, host, 0, db->stop_timeout + MIN(1),
				     "shut down database %s on %s", db->name, host);
			break;
		case ST_DB_ACKED:
			s = add_step(d, kind, NULL, db->group, PRI(d), 0, rb->primary.sync_timeout,
				     "final LSN of %s acknowledged", db->name);
			break;
		case ST_DB_START:
			s = add_step(d, kind, NULL, db->group, SEC(d), 0, db->start_timeout,
				     "start database %s on %s", db->name, SEC(d));
			break;
		case ST_DB_TEST_START:
			s = add_step(d, kind, NULL, db->group, SEC(d), 0, db->start_timeout,
				     "start test copy of database %s", db->name);
			break;
		case ST_DB_TEST_STOP:
			s = add_step(d, kind, NULL, db->group, SEC(d), 0, db->stop_timeout,
				     "stop test copy of database %s", db->name);
			break;
		case ST_DB_REWIND:
			s = add_step(d, kind, NULL, db->group, host, 0, rb->primary.sync_timeout * 6,
				     "rewind database %s on %s (standby of %s)", db->name, host, SEC(d));
			break;
		case ST_DB_FB_STANDBY:
			s = add_step(d, kind, NULL, db->group, host, 0, db->start_timeout,
				     "start database %s on %s as a standby", db->name, host);
			break;
		case ST_DB_FB_SHUTDOWN:
			s = add_step(d, kind, NULL, db->group, SEC(d), 0, db->stop_timeout + MIN(1),
				     "shut down database %s on %s", db->name, SEC(d));
			break;
		case ST_DB_FB_CAUGHT:
			s = add_step(d, kind, NULL, db->group, host, 0, rb->primary.sync_timeout,
				     "final LSN of %s held on %s", db->name, host);
			break;
		case ST_DB_FB_PROMOTE:
			s = add_step(d, kind, NULL, db->group, host, 0, db->start_timeout,
				     "promote database %s on %s", db->name, host);
			break;
		default:
			break;
		}
		if (s)
			snprintf(s->database, sizeof(s->database), "%s", db->name);
	}
}

/* Start each wave in parallel, then check it, wave after wave. */
static void plan_starts(struct drill *d, enum step_kind start, enum step_kind check, const char *host)
{
	const struct runbook *rb = d->rb;
	for (int w = 1; w <= rb->n_waves; w++) {
		for (size_t i = 0; i < rb->services.n; i++) {
			const struct rb_service *s = RB_SVC(rb, i);
			if (s->wave == w)
				add_step(d, start, s->name, s->group, host, 2 * w, s->start_timeout,
					 "%s %s on %s (wave %d)", start == ST_RESTART ? "restart" : "start",
					 s->name, host, w);
		}
		/* On the service's host (where a command check runs unless it names
		 * another); the bound is every attempt timing out, with the pauses
		 * between attempts. */
		for (size_t i = 0; i < rb->services.n; i++) {
			const struct rb_service *s = RB_SVC(rb, i);
			uint64_t t = 0;
			if (s->wave != w || !s->checks.n)
				continue;
			for (size_t k = 0; k < s->checks.n; k++) {
				const struct rb_check *c = RB_CHECK(s, k);
				t += (c->retries + 1) * c->timeout + c->retries * c->interval;
			}
			add_step(d, check, s->name, s->group, host, 2 * w + 1, t,
				 "check %s (%zu check%s, wave %d)", s->name, s->checks.n,
				 s->checks.n == 1 ? "" : "s", w);
		}
	}
}

int drill_plan(const struct runbook *rb, enum drill_mode mode, struct drill **ret)
{
	struct drill *d = calloc(1, sizeof(*d));
	const char *groups[DRILL_MAX_GROUPS];
	size_t ng = drill_groups(rb, groups, DRILL_MAX_GROUPS);
	char t[40];
	int rc;

	if (!d)
		return -ENOMEM;
	d->rb = rb;
	d->mode = mode != MODE_PLAN ? mode : runbook_is_hybrid(rb) ? MODE_HYBRID : MODE_PLANNED;
	d->lock_fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	d->started = clock_now_usec();
	units_fmt_time(d->started, t, sizeof(t));
	/* 2026-11-24T18:03:23Z -> 20261124T180323Z-planned */
	snprintf(d->id, sizeof(d->id), "%.4s%.2s%.2sT%.2s%.2s%.2sZ-%s", t, t + 5, t + 8, t + 11,
		 t + 14, t + 17, mode_name(d->mode));
	snprintf(d->status, sizeof(d->status), "running");

	switch (d->mode) {
	case MODE_PLANNED:
		plan_prechecks(d, true);
		plan_stops(d, ST_STOP, PRI(d));
		plan_groups(d, groups, ng, ST_SYNC, PRI(d), rb->primary.sync_timeout + MIN(1),
			    "final sync of", false);
		plan_databases(d, ST_DB_STOP);
		plan_databases(d, ST_DB_ACKED);
		plan_groups(d, groups, ng, ST_PAUSE, PRI(d), MIN(1), "pause replication of", false);
		plan_groups(d, groups, ng, ST_PROMOTE, SEC(d), MIN(30), "promote", true);
		plan_databases(d, ST_DB_START);
		plan_starts(d, ST_START, ST_CHECK, SEC(d));
		plan_switches(d, false);
		break;
	case MODE_UNPLANNED:
		plan_prechecks(d, false);
		plan_groups(d, groups, ng, ST_PROMOTE, SEC(d), MIN(30), "promote", true);
		plan_databases(d, ST_DB_START);
		plan_starts(d, ST_START, ST_CHECK, SEC(d));
		plan_switches(d, false);
		break;
	case MODE_TEST:
		plan_prechecks(d, true);
		plan_groups(d, groups, ng, ST_CLONE, SEC(d), MIN(60), "clone", true);
		plan_databases(d, ST_DB_TEST_START);
		plan_starts(d, ST_START, ST_CHECK, SEC(d));
		plan_stops(d, ST_TEST_STOP, SEC(d));
		plan_databases(d, ST_DB_TEST_STOP);
		add_step(d, ST_UNCLONE, NULL, NULL, SEC(d), 0, MIN(10), "remove the clones on %s", SEC(d));
		break;
	case MODE_FAILBACK: {
		/* Disks come back through the reverse replication (failback.start);
		 * databases through PostgreSQL's own (pg_rewind, streaming).  A
		 * runbook of databases alone has no failback.start. */
		bool disks = rb->failback.start != NULL;
		add_step(d, ST_PRE_PRIMARY, NULL, NULL, PRI(d), 0, MIN(1), "old primary back (%s)", PRI(d));
		if (disks) {
			add_step(d, ST_FB_START, NULL, NULL, SEC(d), 0, MIN(5), "start reverse replication on %s",
				 SEC(d));
			plan_groups(d, groups, ng, ST_FB_SYNC, SEC(d), rb->primary.sync_timeout * 6,
				    "reverse resync of", false);
		}
		plan_databases(d, ST_DB_REWIND);
		plan_databases(d, ST_DB_FB_STANDBY);
		plan_stops(d, ST_SEC_STOP, SEC(d));
		plan_databases(d, ST_DB_FB_SHUTDOWN);
		plan_databases(d, ST_DB_FB_CAUGHT);
		if (disks) {
			plan_groups(d, groups, ng, ST_FB_SYNC, SEC(d), rb->primary.sync_timeout + MIN(1),
				    "final reverse sync of", false);
			plan_groups(d, groups, ng, ST_FB_PAUSE, SEC(d), MIN(1), "pause reverse replication of",
				    false);
			plan_groups(d, groups, ng, ST_FB_PROMOTE, PRI(d), MIN(30), "promote", true);
			add_step(d, ST_FB_STOP, NULL, NULL, SEC(d), 0, MIN(5), "stop reverse replication");
		}
		plan_databases(d, ST_DB_FB_PROMOTE);
		plan_starts(d, ST_RESTART, ST_PCHECK, PRI(d));
		plan_switches(d, true);
		plan_groups(d, groups, ng, ST_DEMOTE, SEC(d), MIN(5), "demote", true);
		plan_groups(d, groups, ng, ST_RESUME, PRI(d), MIN(1), "resume replication of", false);
		break;
	}
	case MODE_HYBRID: {
		/* On the drill's machine, where the intake is: the intake tool. */
		const struct rb_hybrid *h = &rb->hybrid;
		add_step(d, ST_HY_CHECK, NULL, NULL, "local", 0, h->check_timeout, "intake check of client %s",
			 h->client);
		add_step(d, ST_HY_PICK, NULL, NULL, "local", 0, MIN(10), "night %s of client %s", h->night,
			 h->client);
		add_step(d, ST_HY_RESTORE, NULL, NULL, "local", 0, h->restore_timeout,
			 "restore and load client %s's night", h->client);
		plan_starts(d, ST_START, ST_CHECK, h->host);
		plan_switches(d, false);
		break;
	}
	case MODE_PLAN:
		break;
	}
	if (d->oom || d->n == 0) {
		rc = d->oom ? -ENOMEM : err_set(EINVAL, "the runbook gives the drill nothing to do");
		drill_free(d);
		return rc;
	}
	*ret = d;
	return 0;
}

void drill_print_plan(const struct drill *d, FILE *f)
{
	char t[32];
	const struct runbook *rb = d->rb;

	fprintf(f, "Drill plan: %s, mode %s\n", rb->name, mode_name(d->mode));
	fprintf(f, "Objectives: RTO %s", units_fmt_duration(rb->objectives.rto, t, sizeof(t)));
	fprintf(f, ", RPO %s\n", units_fmt_duration(rb->objectives.rpo, t, sizeof(t)));
	if (d->mode == MODE_HYBRID)
		fprintf(f, "Client %s from the intake %s, night %s, loaded into %s; services on %s; %d start "
			   "wave%s\n\n", rb->hybrid.client, rb->hybrid.intake, rb->hybrid.night, rb->hybrid.load,
			rb->hybrid.host, rb->n_waves, rb->n_waves == 1 ? "" : "s");
	else
		fprintf(f, "Primary %s, secondary %s (replica %s); %d start wave%s\n\n", rb->primary.host,
			rb->secondary.host, rb->secondary.replica_root, rb->n_waves, rb->n_waves == 1 ? "" : "s");
	fprintf(f, "  #  %-22s %-48s %-12s %s\n", "step", "what", "host", "timeout");
	for (size_t i = 0; i < d->n; i++) {
		const struct step *s = &d->steps[i];
		bool par = s->par && ((i > 0 && d->steps[i - 1].par == s->par) ||
				      (i + 1 < d->n && d->steps[i + 1].par == s->par));
		fprintf(f, "%3d  %-22s %-48s %-12s %s%s\n", s->id, kind_names[s->kind], s->label,
			s->host[0] ? s->host : "-", units_fmt_duration(s->timeout, t, sizeof(t)),
			par ? "  (in parallel)" : "");
	}
}

int drill_plan_abort(struct drill *d, size_t n0)
{
	const struct runbook *rb = d->rb;

	/* Undo in reverse order what was done (or may have been: running, failed). */
	for (size_t k = n0; k-- > 0;) {
		struct step s = d->steps[k];
		struct step *a = NULL;
		if (s.abort || s.status == SS_PENDING || s.status == SS_SKIPPED)
			continue;
		switch (s.kind) {
		case ST_SWITCH: {
			const struct rb_switch *sw = s.sw >= 0 && (size_t)s.sw < rb->switches.n
							     ? RB_SW(rb, s.sw) : NULL;
			if (sw && sw->back && (a = add_step(d, ST_SWITCH_BACK, NULL, NULL, s.host, 0,
							   sw->timeout, "switch %s back", sw->name)))
				a->sw = s.sw;
			break;
		}
		case ST_START:
			a = add_step(d, d->mode == MODE_TEST ? ST_TEST_STOP : ST_SEC_STOP, s.service, s.group,
				     s.host, 0, drill_service(rb, s.service)->stop_timeout, "stop %s on %s",
				     s.service, s.host);
			break;
		case ST_CLONE:
			if (d->steps[n0 - 1].kind == ST_UNCLONE && d->steps[n0 - 1].status == SS_DONE)
				break;
			/* one removal for all clones */
			{
				bool have = false;
				for (size_t i = n0; i < d->n; i++)
					have |= d->steps[i].kind == ST_UNCLONE;
				if (!have)
					a = add_step(d, ST_UNCLONE, NULL, NULL, SEC(d), 0, MIN(10),
						     "remove the clones on %s", SEC(d));
			}
			break;
		case ST_PROMOTE:
			a = add_step(d, ST_DEMOTE, NULL, s.group, SEC(d), 0, MIN(5), "demote %s on %s",
				     s.group, SEC(d));
			break;
		case ST_PAUSE:
			a = add_step(d, ST_RESUME, NULL, s.group, PRI(d), 0, MIN(1),
				     "resume replication of %s", s.group);
			break;
		case ST_DB_START: {
			const struct rb_database *db = runbook_database(rb, s.database);
			if (db && (a = add_step(d, ST_DB_SEC_STOP, NULL, s.group, SEC(d), 0, db->stop_timeout,
						"stop database %s on %s", db->name, SEC(d))))
				snprintf(a->database, sizeof(a->database), "%s", db->name);
			break;
		}
		case ST_DB_TEST_START: {
			const struct rb_database *db = runbook_database(rb, s.database);
			if (db && (a = add_step(d, ST_DB_TEST_STOP, NULL, s.group, SEC(d), 0, db->stop_timeout,
						"stop test copy of database %s", db->name)))
				snprintf(a->database, sizeof(a->database), "%s", db->name);
			break;
		}
		case ST_DB_STOP: {
			const struct rb_database *db = runbook_database(rb, s.database);
			if (db && (a = add_step(d, ST_DB_RESTART, NULL, s.group, s.host, 0, db->start_timeout,
						"restart database %s on %s", db->name, s.host)))
				snprintf(a->database, sizeof(a->database), "%s", db->name);
			break;
		}
		case ST_STOP:
			a = add_step(d, ST_RESTART, s.service, s.group, PRI(d), 0,
				     drill_service(rb, s.service)->start_timeout, "restart %s on %s", s.service,
				     PRI(d));
			break;
		default:
			break;
		}
		if (a)
			a->abort = true;
	}
	if (d->oom) {
		d->n = n0; /* a partial undo plan must not run */
		return -ENOMEM;
	}
	return 0;
}
