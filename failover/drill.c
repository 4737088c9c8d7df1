/* drill.c - plan, journal and run a failover drill (see drill.h). */
#include "drill.h"
#include "checks.h"
#include "err.h"
#include "fsutil.h"
#include "hostexec.h"
#include "units.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const kind_names[ST_KIND_MAX] = {
	[ST_PRE_REPL] = "precheck-replication", [ST_PRE_SEC] = "precheck-secondary",
	[ST_PRE_PRIMARY] = "precheck-primary", [ST_STOP] = "stop", [ST_SYNC] = "sync",
	[ST_PAUSE] = "pause", [ST_PROMOTE] = "promote", [ST_CLONE] = "clone", [ST_START] = "start",
	[ST_CHECK] = "check", [ST_SWITCH] = "switch", [ST_TEST_STOP] = "test-stop",
	[ST_UNCLONE] = "remove-clones", [ST_FB_START] = "reverse-start", [ST_FB_SYNC] = "reverse-sync",
	[ST_FB_PAUSE] = "reverse-pause", [ST_SEC_STOP] = "secondary-stop",
	[ST_FB_PROMOTE] = "promote-primary", [ST_FB_STOP] = "reverse-stop", [ST_RESTART] = "restart",
	[ST_PCHECK] = "check-primary", [ST_SWITCH_BACK] = "switch-back", [ST_DEMOTE] = "demote",
	[ST_RESUME] = "resume",
};
static const char *const status_names[] = { "pending", "running", "done", "failed", "skipped" };
static const char *const mode_names[] = { "plan", "planned", "unplanned", "test", "failback" };

const char *mode_name(enum drill_mode m) { return mode_names[m]; }
const char *step_kind_name(enum step_kind k) { return kind_names[k]; }
const char *step_status_name(enum step_status s) { return status_names[s]; }

int mode_parse(const char *s, enum drill_mode *ret)
{
	for (int i = 0; i < 5; i++)
		if (!strcmp(s, mode_names[i])) {
			*ret = (enum drill_mode)i;
			return 0;
		}
	return -EINVAL;
}

static uint64_t now_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const struct rb_service *svc_named(const struct runbook *rb, const char *name)
{
	long i = yamltab_find(&rb->services, sizeof(struct rb_service), name);
	return i < 0 ? NULL : RB_SVC(rb, i);
}

/* ---- planning ---- */

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

#define SEC(d) ((d)->rb->secondary.host)
#define PRI(d) ((d)->rb->primary.host)
#define MIN(x) ((uint64_t)(x) * 60000000ULL)

/* The groups of the runbook's services, each once, in service order. */
static size_t groups_of(const struct runbook *rb, const char **out, size_t max)
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
		add_step(d, back ? ST_SWITCH_BACK : ST_SWITCH, NULL, NULL, sw->host ?: SEC(d), 0,
			 sw->timeout, back ? "switch %s back" : "switch %s", sw->name);
	}
}

static void plan_prechecks(struct drill *d, bool replication)
{
	if (replication)
		add_step(d, ST_PRE_REPL, NULL, NULL, PRI(d), 0, MIN(1), "replication healthy (%s)", PRI(d));
	add_step(d, ST_PRE_SEC, NULL, NULL, SEC(d), 0, MIN(1), "secondary ready (%s)", SEC(d));
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
	const char *groups[256];
	size_t ng = groups_of(rb, groups, 256);
	char t[40];
	int rc;

	if (!d)
		return -ENOMEM;
	d->rb = rb;
	d->mode = mode == MODE_PLAN ? MODE_PLANNED : mode;
	d->lock_fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	d->started = now_usec();
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
		plan_groups(d, groups, ng, ST_PAUSE, PRI(d), MIN(1), "pause replication of", false);
		plan_groups(d, groups, ng, ST_PROMOTE, SEC(d), MIN(30), "promote", true);
		plan_starts(d, ST_START, ST_CHECK, SEC(d));
		plan_switches(d, false);
		break;
	case MODE_UNPLANNED:
		plan_prechecks(d, false);
		plan_groups(d, groups, ng, ST_PROMOTE, SEC(d), MIN(30), "promote", true);
		plan_starts(d, ST_START, ST_CHECK, SEC(d));
		plan_switches(d, false);
		break;
	case MODE_TEST:
		plan_prechecks(d, true);
		plan_groups(d, groups, ng, ST_CLONE, SEC(d), MIN(60), "clone", true);
		plan_starts(d, ST_START, ST_CHECK, SEC(d));
		plan_stops(d, ST_TEST_STOP, SEC(d));
		add_step(d, ST_UNCLONE, NULL, NULL, SEC(d), 0, MIN(10), "remove the clones on %s", SEC(d));
		break;
	case MODE_FAILBACK:
		add_step(d, ST_PRE_PRIMARY, NULL, NULL, PRI(d), 0, MIN(1), "old primary back (%s)", PRI(d));
		add_step(d, ST_FB_START, NULL, NULL, SEC(d), 0, MIN(5), "start reverse replication on %s",
			 SEC(d));
		plan_groups(d, groups, ng, ST_FB_SYNC, SEC(d), rb->primary.sync_timeout * 6,
			    "reverse resync of", false);
		plan_stops(d, ST_SEC_STOP, SEC(d));
		plan_groups(d, groups, ng, ST_FB_SYNC, SEC(d), rb->primary.sync_timeout + MIN(1),
			    "final reverse sync of", false);
		plan_groups(d, groups, ng, ST_FB_PAUSE, SEC(d), MIN(1), "pause reverse replication of",
			    false);
		plan_groups(d, groups, ng, ST_FB_PROMOTE, PRI(d), MIN(30), "promote", true);
		add_step(d, ST_FB_STOP, NULL, NULL, SEC(d), 0, MIN(5), "stop reverse replication");
		plan_starts(d, ST_RESTART, ST_PCHECK, PRI(d));
		plan_switches(d, true);
		plan_groups(d, groups, ng, ST_DEMOTE, SEC(d), MIN(5), "demote", true);
		plan_groups(d, groups, ng, ST_RESUME, PRI(d), MIN(1), "resume replication of", false);
		break;
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

/* ---- journal ---- */

static json_t *step_json(const struct step *s)
{
	return json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:b, s:I, s:s, s:I, s:I, s:i, s:s, "
			 "s:s, s:I, s:I, s:b}",
			 "id", s->id, "kind", kind_names[s->kind], "label", s->label, "service",
			 s->service, "group", s->group, "host", s->host, "par", s->par, "abort", s->abort,
			 "timeout_us", (json_int_t)s->timeout, "status", status_names[s->status],
			 "start_us", (json_int_t)s->start, "end_us", (json_int_t)s->end, "attempts",
			 s->attempts, "message", s->message, "warning", s->warning, "epoch",
			 (json_int_t)s->epoch, "cut_time_us", (json_int_t)s->cut_time, "consistent",
			 s->consistent);
}

json_t *drill_to_json(const struct drill *d)
{
	char dig[65];
	json_t *steps = json_array(), *res = json_array();

	sodium_bin2hex(dig, sizeof(dig), d->rb->digest, sizeof(d->rb->digest));
	for (size_t i = 0; i < d->n; i++)
		json_array_append_new(steps, step_json(&d->steps[i]));
	for (int i = 0; i < d->n_resumed; i++)
		json_array_append_new(res, json_integer((json_int_t)d->resumed[i]));
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:o, s:o}",
			 "format", "bascule-drill-journal-1", "id", d->id, "runbook", d->rb->file,
			 "runbook_blake2b", dig, "mode", mode_name(d->mode), "at_us", (json_int_t)d->at,
			 "at_epoch", (json_int_t)d->at_epoch, "incident_us", (json_int_t)d->incident,
			 "started_us", (json_int_t)d->started, "ended_us", (json_int_t)d->ended, "status",
			 d->status, "message", d->message, "resumed_us", res, "steps", steps);
}

static int journal_write(struct drill *d)
{
	json_t *j = drill_to_json(d);
	char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	int rc;

	json_decref(j);
	if (!text)
		return -ENOMEM;
	rc = fs_write_atomic(d->journal, text, strlen(text), 0600);
	free(text);
	return rc < 0 ? err_wrap(rc, "cannot write the drill journal %s", d->journal) : 0;
}

static int lock_state(struct drill *d)
{
	char path[4200];
	int rc;

	if ((rc = fs_mkdir_p(d->rb->state_dir, 0700)) < 0)
		return err_wrap(rc, "cannot create the drill state directory %s", d->rb->state_dir);
	snprintf(path, sizeof(path), "%s/lock", d->rb->state_dir);
	if ((rc = fs_lock(path)) < 0)
		return rc == -EBUSY ? err_set(EBUSY, "another drill of this runbook is running "
						     "(lock %s held)", path) : rc;
	d->lock_fd = rc;
	snprintf(d->journal, sizeof(d->journal), "%s/current.json", d->rb->state_dir);
	return 0;
}

int drill_begin(struct drill *d)
{
	int rc;

	if ((rc = lock_state(d)) < 0)
		return rc;
	if (access(d->journal, F_OK) == 0)
		return err_set(EEXIST, "an unfinished drill is recorded in %s: run the same command "
				       "with --resume to finish it or --abort to bring production back",
			       d->journal);
	return journal_write(d);
}

static int step_from_json(json_t *o, struct step *s)
{
	const char *kind = NULL, *status = NULL, *label = "", *svc = "", *grp = "", *host = "",
		   *msg = "", *warn = "";
	json_int_t timeout = 0, start = 0, end = 0, epoch = 0, cut = 0;
	int id = 0, par = 0, attempts = 0, ab = 0, cons = 0;

	/* "warning" is optional: journals written before it existed resume. */
	if (json_unpack(o, "{s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:b, s:I, s:s, s:I, s:I, s:i, s:s, "
			   "s?:s, s:I, s:I, s:b}",
			"id", &id, "kind", &kind, "label", &label, "service", &svc, "group", &grp,
			"host", &host, "par", &par, "abort", &ab, "timeout_us", &timeout, "status",
			&status, "start_us", &start, "end_us", &end, "attempts", &attempts, "message",
			&msg, "warning", &warn, "epoch", &epoch, "cut_time_us", &cut, "consistent",
			&cons) < 0)
		return -EBADMSG;
	memset(s, 0, sizeof(*s));
	s->kind = ST_KIND_MAX;
	for (int k = 0; k < ST_KIND_MAX; k++)
		if (!strcmp(kind, kind_names[k]))
			s->kind = (enum step_kind)k;
	{
		int st = -1;
		for (int k = 0; k < 5; k++)
			if (!strcmp(status, status_names[k]))
				st = k;
		if (s->kind == ST_KIND_MAX || st < 0)
			return -EBADMSG;
		s->status = (enum step_status)st;
	}
	s->id = id;
	s->par = par;
	s->abort = ab;
	s->timeout = (uint64_t)timeout;
	s->start = (uint64_t)start;
	s->end = (uint64_t)end;
	s->attempts = attempts;
	s->epoch = (uint64_t)epoch;
	s->cut_time = (uint64_t)cut;
	s->consistent = cons;
	snprintf(s->label, sizeof(s->label), "%s", label);
	snprintf(s->service, sizeof(s->service), "%s", svc);
	snprintf(s->group, sizeof(s->group), "%s", grp);
	snprintf(s->host, sizeof(s->host), "%s", host);
	snprintf(s->message, sizeof(s->message), "%s", msg);
	snprintf(s->warning, sizeof(s->warning), "%s", warn);
	return 0;
}

int drill_load(const struct runbook *rb, struct drill **ret)
{
	struct drill *d = calloc(1, sizeof(*d));
	json_t *j = NULL, *steps, *res;
	json_error_t je;
	const char *id, *mode, *status, *msg, *dig, *file;
	json_int_t at, ate, inc, st, en;
	char want[65];
	int rc;

	if (!d)
		return -ENOMEM;
	d->rb = rb;
	d->lock_fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	if ((rc = lock_state(d)) < 0)
		goto fail;
	if (!(j = json_load_file(d->journal, JSON_REJECT_DUPLICATES, &je))) {
		rc = access(d->journal, F_OK) < 0
			     ? err_set(ENOENT, "no unfinished drill to resume or abort (%s does not "
					       "exist)", d->journal)
			     : err_set(EBADMSG, "the drill journal %s is damaged: %s (line %d)",
				       d->journal, je.text, je.line);
		goto fail;
	}
	if (json_unpack(j, "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:o, s:o}", "id",
			&id, "runbook", &file, "runbook_blake2b", &dig, "mode", &mode, "at_us", &at,
			"at_epoch", &ate, "incident_us", &inc, "started_us", &st, "ended_us", &en,
			"status", &status, "message", &msg, "resumed_us", &res, "steps", &steps) < 0 ||
	    mode_parse(mode, &d->mode) < 0 || !json_is_array(steps) || !json_is_array(res)) {
		rc = err_set(EBADMSG, "the drill journal %s is not one Bascule wrote", d->journal);
		goto fail;
	}
	sodium_bin2hex(want, sizeof(want), rb->digest, sizeof(rb->digest));
	if (strcmp(want, dig) != 0) {
		rc = err_set(ESTALE, "the runbook %s changed since drill %s started (from %s); resume "
				     "or abort with the runbook as it was",
			     rb->file, id, file);
		goto fail;
	}
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->status, sizeof(d->status), "%s", status);
	snprintf(d->message, sizeof(d->message), "%s", msg);
	d->at = (uint64_t)at;
	d->at_epoch = (uint64_t)ate;
	d->incident = (uint64_t)inc;
	d->started = (uint64_t)st;
	d->ended = (uint64_t)en;
	for (size_t i = 0; i < json_array_size(res) && d->n_resumed < 32; i++)
		d->resumed[d->n_resumed++] = (uint64_t)json_integer_value(json_array_get(res, i));
	d->cap = json_array_size(steps) + 64;
	if (!(d->steps = calloc(d->cap, sizeof(struct step)))) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < json_array_size(steps); i++) {
		if (step_from_json(json_array_get(steps, i), &d->steps[i]) < 0) {
			rc = err_set(EBADMSG, "the drill journal %s has a damaged step %zu", d->journal,
				     i + 1);
			goto fail;
		}
		d->n++;
	}
	json_decref(j);
	*ret = d;
	return 0;
fail:
	json_decref(j);
	drill_free(d);
	return rc;
}

void drill_free(struct drill *d)
{
	if (!d)
		return;
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	pthread_mutex_destroy(&d->lock);
	free(d->steps);
	free(d);
}

int drill_finish(struct drill *d)
{
	char to[4400], cur[sizeof(d->journal)];
	int rc;

	if ((rc = fs_mkdir_p(d->rb->report.dir, 0755)) < 0)
		return err_wrap(rc, "cannot create the report directory %s", d->rb->report.dir);
	/* The journal is kept with the reports; the drill is no longer current. */
	snprintf(to, sizeof(to), "%s/%s.journal.json", d->rb->report.dir, d->id);
	memcpy(cur, d->journal, sizeof(cur));
	snprintf(d->journal, sizeof(d->journal), "%s", to);
	if ((rc = journal_write(d)) < 0)
		return rc;
	if (unlink(cur) < 0 && errno != ENOENT)
		return err_set(errno, "cannot remove %s: %s", cur, strerror(errno));
	return fs_fsync_parent(cur);
}

/* ---- running steps ---- */

struct ctx {
	struct drill *d;
	struct step *s;
	struct run_result res;
	char env_buf[8][600];
	const char *env[9];
};

static void step_msg(struct step *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void step_msg(struct step *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->message, sizeof(s->message), fmt, ap);
	va_end(ap);
}

static const struct rb_host *host_of(struct drill *d, const char *name)
{
	return runbook_host(d->rb, name);
}

/* The disks of GROUP as the secondary's commands see them. */
static void disks_dir(struct drill *d, const char *group, const struct rb_service *svc, char *buf,
		      size_t len)
{
	const struct runbook *rb = d->rb;
	if (!group || !*group) {
		buf[0] = 0;
	} else if (d->mode == MODE_TEST) {
		snprintf(buf, len, "%s/%s/%s", rb->secondary.clone_dir, d->id, group);
	} else if (d->mode == MODE_FAILBACK) {
		snprintf(buf, len, "%s/%s", rb->failback.replica_root ?: "", group);
	} else if (svc && svc->disk_dir) {
		snprintf(buf, len, "%s", svc->disk_dir);
	} else {
		for (size_t i = 0; i < rb->services.n; i++)
			if (RB_SVC(rb, i)->group && !strcmp(RB_SVC(rb, i)->group, group) &&
			    RB_SVC(rb, i)->disk_dir) {
				snprintf(buf, len, "%s", RB_SVC(rb, i)->disk_dir);
				return;
			}
		snprintf(buf, len, "%s/%s", rb->secondary.replica_root, group);
	}
}

static void build_env(struct ctx *c, const struct rb_service *svc)
{
	char disks[4200];
	int n = 0;

	disks_dir(c->d, c->s->group, svc, disks, sizeof(disks));
	snprintf(c->env_buf[n++], 600, "BASCULE_DRILL=%s", c->d->id);
	snprintf(c->env_buf[n++], 600, "BASCULE_MODE=%s", mode_name(c->d->mode));
	snprintf(c->env_buf[n++], 600, "BASCULE_SERVICE=%s", c->s->service);
	snprintf(c->env_buf[n++], 600, "BASCULE_GROUP=%s", c->s->group);
	snprintf(c->env_buf[n++], 600, "BASCULE_DISKS=%.500s", disks);
	for (int i = 0; i < n; i++)
		c->env[i] = c->env_buf[i];
	c->env[n] = NULL;
}

/* Run CMD on HOST; 0 if it exited 0, else -EIO with the step's message set. */
static int run(struct ctx *c, const char *host, const char *cmd, uint64_t timeout, const char *what)
{
	const struct rb_host *h = host_of(c->d, host);
	char d[32];
	int rc;

	if (!h)
		return err_set(EINVAL, "unknown host %s", host);
	rc = host_run(h, cmd, c->env[0] ? c->env : NULL, timeout, &c->res);
	if (rc < 0) {
		step_msg(c->s, "%s", err_msg(rc));
		return rc;
	}
	if (c->res.timed_out) {
		step_msg(c->s, "%s on %s did not finish within %s", what, host,
			 units_fmt_duration(timeout, d, sizeof(d)));
		return -ETIMEDOUT;
	}
	if (c->res.exit_status != 0) {
		step_msg(c->s, "%s on %s failed (exit %d): %.300s", what, host, c->res.exit_status,
			 run_said(&c->res));
		return -EIO;
	}
	return 0;
}

static void q(const char *s, char *buf, size_t len)
{
	if (shell_quote(s, buf, len) < 0)
		snprintf(buf, len, "''");
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
static int do_pre_repl(struct ctx *c)
{
	const struct runbook *rb = c->d->rb;
	char cmd[8192], sock[4200], vaults[300] = "";
	const char *groups[256];
	size_t ng = groups_of(rb, groups, 256), n_repl = 0;
	json_t *st, *garr, *tarr, *g, *t;
	json_error_t je;
	double worst = 0;
	size_t k;
	int rc;

	q(rb->primary.control_socket, sock, sizeof(sock));
	snprintf(cmd, sizeof(cmd), "%s --socket %s status --json", rb->primary.bascule, sock);
	if ((rc = run(c, rb->primary.host, cmd, c->s->timeout, "bascule status")) < 0)
		return rc;
	c->res.output[c->res.output_len < RUN_OUTPUT_MAX ? c->res.output_len : RUN_OUTPUT_MAX - 1] = 0;
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

static int do_pre_sec(struct ctx *c)
{
	const struct runbook *rb = c->d->rb;
	const char *dir = c->d->mode == MODE_TEST ? rb->secondary.clone_dir : rb->secondary.replica_root;
	char cmd[16000], root[4200], qd[4200];
	unsigned long long kb = 0;
	int rc;

	q(rb->secondary.replica_root, root, sizeof(root));
	q(dir, qd, sizeof(qd));
	snprintf(cmd, sizeof(cmd), "%s replica list --root %s >/dev/null && mkdir -p %s && "
				   "df -P -k %s | tail -n 1",
		 rb->secondary.bascule, root, qd, qd);
	if ((rc = run(c, rb->secondary.host, cmd, c->s->timeout, "the replica check")) < 0)
		return rc;
	sscanf(run_last_line(&c->res), "%*s %*s %*s %llu", &kb);
	if (rb->prechecks.min_free && kb * 1024 < rb->prechecks.min_free) {
		step_msg(c->s, "only %llu MiB free under %s on %s, min_free wants %llu MiB", kb / 1024,
			 dir, rb->secondary.host, (unsigned long long)(rb->prechecks.min_free >> 20));
		return -ENOSPC;
	}
	step_msg(c->s, "replica readable, %llu MiB free under %s", kb / 1024, dir);
	return 0;
}

static int do_stop(struct ctx *c, bool secondary)
{
	const struct rb_service *svc = svc_named(c->d->rb, c->s->service);
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
	if ((rc = run(c, c->s->host, cmd, svc->stop_timeout, "stop")) == 0) {
		step_msg(c->s, "stopped");
		return 0;
	}
	if (secondary || !svc->force_stop)
		return rc;
	/* Not stopped in time (or failed): force it, and say so. */
	{
		char why[512];
		snprintf(why, sizeof(why), "%s", c->s->message);
		if ((rc = run(c, c->s->host, svc->force_stop, MIN(1), "force_stop")) < 0)
			return rc;
		step_msg(c->s, "forced after %s: %.400s",
			 units_fmt_duration(svc->stop_timeout, d1, sizeof(d1)), why);
	}
	return 0;
}

static int do_sync(struct ctx *c, bool reverse)
{
	const struct runbook *rb = c->d->rb;
	char cmd[9000], sock[4200], grp[100], d1[32];
	const char *line;
	unsigned long long e = 0;
	int rc;

	q(reverse ? rb->failback.control_socket : rb->primary.control_socket, sock, sizeof(sock));
	q(c->s->group, grp, sizeof(grp));
	units_fmt_duration(c->s->timeout > MIN(1) ? c->s->timeout - MIN(1) : c->s->timeout, d1, sizeof(d1));
	snprintf(cmd, sizeof(cmd), "%s --socket %s sync %s --wait --timeout %s",
		 reverse ? rb->secondary.bascule : rb->primary.bascule, sock, grp, d1);
	if ((rc = run(c, c->s->host, cmd, c->s->timeout, "bascule sync --wait")) < 0)
		return rc;
	line = run_last_line(&c->res);
	if (sscanf(line, "%*[^:]: epoch %llu acknowledged", &e) != 1) {
		step_msg(c->s, "unexpected answer from bascule sync: %.200s", *line ? line : "(no output)");
		return -EBADMSG;
	}
	c->s->epoch = e;
	step_msg(c->s, "epoch %llu written, verified by its digest and acknowledged", e);
	return 0;
}

static int do_pause(struct ctx *c, bool reverse, bool resume)
{
	const struct runbook *rb = c->d->rb;
	char cmd[9000], sock[4200], grp[100];

	q(reverse ? rb->failback.control_socket : rb->primary.control_socket, sock, sizeof(sock));
	q(c->s->group, grp, sizeof(grp));
	snprintf(cmd, sizeof(cmd), "%s --socket %s %s %s",
		 reverse ? rb->secondary.bascule : rb->primary.bascule, sock,
		 resume ? "resume" : "pause", grp);
	int rc = run(c, c->s->host, cmd, c->s->timeout, resume ? "bascule resume" : "bascule pause");
	if (rc == 0)
		step_msg(c->s, "%s", resume ? "replication resumed" : "no further epochs will be cut");
	return rc;
}

/* promote/clone/demote on a replica root; parse the JSON answer. */
static int do_replica(struct ctx *c, const char *verb, const char *root, const char *key,
		      const char *bascule, const char *extra)
{
	char cmd[16000], qr[4200], qk[4200], grp[100];
	json_t *j;
	json_error_t je;
	json_int_t e = 0, t = 0;
	int cons = 0, rc;

	q(root, qr, sizeof(qr));
	q(key, qk, sizeof(qk));
	q(c->s->group, grp, sizeof(grp));
	snprintf(cmd, sizeof(cmd), "%s replica %s --root %s --key %s --group %s%s%s", bascule, verb,
		 qr, qk, grp, strcmp(verb, "demote") ? " --json" : "", extra);
	if ((rc = run(c, c->s->host, cmd, c->s->timeout, verb)) < 0)
		return rc;
	if (!strcmp(verb, "demote")) {
		const char *l = run_last_line(&c->res);
		step_msg(c->s, "%s", *l ? l : "demoted");
		return 0;
	}
	if (!(j = json_loads(run_last_line(&c->res), 0, &je)) ||
	    json_unpack(j, "{s:I, s:I, s:b}", "epoch", &e, "cut_time_us", &t, "consistent", &cons) < 0) {
		json_decref(j);
		step_msg(c->s, "unexpected answer from bascule replica %s: %.200s", verb,
			 run_said(&c->res));
		return -EBADMSG;
	}
	json_decref(j);
	c->s->epoch = (uint64_t)e;
	c->s->cut_time = (uint64_t)t;
	c->s->consistent = cons;
	{
		char when[40];
		step_msg(c->s, "%s at epoch %llu (%s, cut %s)", !strcmp(verb, "clone") ? "cloned" : "promoted",
			 (unsigned long long)e, cons ? "consistent" : "fuzzy",
			 units_fmt_time((uint64_t)t, when, sizeof(when)));
	}
	return 0;
}

/* The epoch the final sync of GROUP reached, 0 if none. */
static uint64_t synced_epoch(struct drill *d, const char *group, enum step_kind kind)
{
	uint64_t e = 0;
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == kind && !strcmp(d->steps[i].group, group) &&
		    d->steps[i].status == SS_DONE)
			e = d->steps[i].epoch;
	return e;
}

static int do_promote(struct ctx *c)
{
	struct drill *d = c->d;
	const struct runbook *rb = d->rb;
	char extra[8400] = "", dd[4200], qd[4200];
	const struct rb_service *svc = NULL;

	for (size_t i = 0; i < rb->services.n; i++)
		if (RB_SVC(rb, i)->group && !strcmp(RB_SVC(rb, i)->group, c->s->group) &&
		    RB_SVC(rb, i)->disk_dir)
			svc = RB_SVC(rb, i);
	if (svc) {
		disks_dir(d, c->s->group, svc, dd, sizeof(dd));
		q(dd, qd, sizeof(qd));
		snprintf(extra, sizeof(extra), " --link-dir %s", qd);
	}
	if (d->mode == MODE_PLANNED) {
		/* RPO 0: exactly the epoch the final sync had acknowledged. */
		uint64_t e = synced_epoch(d, c->s->group, ST_SYNC);
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " --epoch %llu",
			 (unsigned long long)e);
	} else {
		if (rb->consistent)
			strcat(extra, " --consistent");
		if (d->at_epoch)
			snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " --epoch %llu",
				 (unsigned long long)d->at_epoch);
		if (d->at)
			snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " --at @%llu.%06llu",
				 (unsigned long long)(d->at / 1000000), (unsigned long long)(d->at % 1000000));
	}
	return do_replica(c, "promote", rb->secondary.replica_root, rb->secondary.site_key,
			  rb->secondary.bascule, extra);
}

static int do_start(struct ctx *c, bool test, bool home)
{
	const struct rb_service *svc = svc_named(c->d->rb, c->s->service);
	const char *cmd = home ? svc->restart : test && svc->test_start ? svc->test_start : svc->start;
	int rc;

	if (!cmd) {
		step_msg(c->s, "no restart command in the runbook: start %s on %s by hand", svc->name,
			 c->s->host);
		return home && c->s->abort ? -ENOEXEC : 0;
	}
	if ((rc = run(c, c->s->host, cmd, svc->start_timeout, "start")) == 0)
		step_msg(c->s, "started%s", test ? " (isolated test copy)" : "");
	return rc;
}

static int do_checks(struct ctx *c, bool home)
{
	struct drill *d = c->d;
	const struct rb_service *svc = svc_named(d->rb, c->s->service);
	int attempts = 0;

	for (size_t k = 0; k < svc->checks.n; k++) {
		const struct rb_check *ck = RB_CHECK(svc, k);
		const struct rb_host *h = host_of(d, ck->host ?: home ? PRI(d) : SEC(d));
		char why[600] = "";
		int rc = -EAGAIN;
		for (uint64_t a = 0; a <= ck->retries; a++) {
			attempts++;
			c->s->attempts = attempts;
			if ((rc = check_once(ck, h, c->env, why, sizeof(why))) == 0)
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

static int do_switch(struct ctx *c, bool back)
{
	const struct runbook *rb = c->d->rb;
	for (size_t i = 0; i < rb->switches.n; i++) {
		const struct rb_switch *sw = RB_SW(rb, i);
		char label[160];
		snprintf(label, sizeof(label), back ? "switch %s back" : "switch %s", sw->name);
		if (strcmp(label, c->s->label) != 0)
			continue;
		int rc = run(c, c->s->host, back ? sw->back : sw->command, sw->timeout, "switch");
		if (rc == 0)
			step_msg(c->s, "%s", back ? "traffic back on the primary" : "traffic on the secondary");
		return rc;
	}
	step_msg(c->s, "switch not found in the runbook");
	return -ENOENT;
}

static int exec_step(struct ctx *c)
{
	struct drill *d = c->d;
	const struct runbook *rb = d->rb;
	char path[9100], cmd[9000];

	build_env(c, c->s->service[0] ? svc_named(rb, c->s->service) : NULL);
	switch (c->s->kind) {
	case ST_PRE_REPL: return do_pre_repl(c);
	case ST_PRE_SEC: return do_pre_sec(c);
	case ST_PRE_PRIMARY: {
		int rc = run(c, c->s->host, "true", c->s->timeout, "a command");
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
	case ST_CLONE:
		disks_dir(d, c->s->group, NULL, path, sizeof(path));
		q(path, cmd, sizeof(cmd));
		snprintf(path, sizeof(path), " --to-dir %s", cmd);
		return do_replica(c, "clone", rb->secondary.replica_root, rb->secondary.site_key,
				  rb->secondary.bascule, path);
	case ST_FB_PROMOTE: {
		char e[64];
		snprintf(e, sizeof(e), " --epoch %llu",
			 (unsigned long long)synced_epoch(d, c->s->group, ST_FB_SYNC));
		return do_replica(c, "promote", rb->failback.replica_root, rb->failback.site_key,
				  rb->primary.bascule, e);
	}
	case ST_DEMOTE:
		return do_replica(c, "demote", rb->secondary.replica_root, rb->secondary.site_key,
				  rb->secondary.bascule, "");
	case ST_START: return do_start(c, d->mode == MODE_TEST, false);
	case ST_RESTART: return do_start(c, false, true);
	case ST_CHECK: return do_checks(c, false);
	case ST_PCHECK: return do_checks(c, true);
	case ST_SWITCH: return do_switch(c, false);
	case ST_SWITCH_BACK: return do_switch(c, true);
	case ST_UNCLONE: {
		char dir[4300], qd[4400];
		snprintf(dir, sizeof(dir), "%s/%s", rb->secondary.clone_dir, d->id);
		q(dir, qd, sizeof(qd));
		snprintf(cmd, sizeof(cmd), "rm -rf -- %s", qd);
		int rc = run(c, c->s->host, cmd, c->s->timeout, "removing the clones");
		if (rc == 0)
			step_msg(c->s, "removed %s", dir);
		return rc;
	}
	case ST_FB_START: case ST_FB_STOP: {
		const char *fc = c->s->kind == ST_FB_START ? rb->failback.start : rb->failback.stop;
		if (!fc) {
			step_msg(c->s, "the runbook has no failback.%s command",
				 c->s->kind == ST_FB_START ? "start" : "stop");
			return -ENOEXEC;
		}
		int rc = run(c, c->s->host, fc, c->s->timeout, "the reverse replication command");
		if (rc == 0)
			step_msg(c->s, "%s", c->s->kind == ST_FB_START ? "reverse replication running"
								      : "reverse replication stopped");
		return rc;
	}
	case ST_KIND_MAX:
		break;
	}
	return -EINVAL;
}

static void say(struct drill *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct drill *d, const char *fmt, ...)
{
	va_list ap;
	char t[40];
	time_t now = time(NULL);
	struct tm tm;

	if (d->quiet)
		return;
	localtime_r(&now, &tm);
	strftime(t, sizeof(t), "%H:%M:%S", &tm);
	va_start(ap, fmt);
	flockfile(stdout);
	printf("%s ", t);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	funlockfile(stdout);
	va_end(ap);
}

static void *step_thread(void *arg)
{
	struct ctx *c = arg;
	struct drill *d = c->d;
	struct step *s = c->s;
	char dur[32];
	int rc;

	rc = exec_step(c);
	pthread_mutex_lock(&d->lock);
	s->end = now_usec();
	s->status = rc == 0 ? SS_DONE : SS_FAILED;
	if (rc < 0 && !s->message[0])
		step_msg(s, "%s", err_msg(rc));
	journal_write(d);
	pthread_mutex_unlock(&d->lock);
	say(d, "%s %-40s %8s  %s%s%s", rc == 0 ? "  ok " : "FAIL ", s->label,
	    units_fmt_duration(s->end - s->start, dur, sizeof(dur)), s->message,
	    s->warning[0] ? "; WARNING: " : "", s->warning);
	return NULL;
}

/* Run steps [from, to) together; 0 if all succeeded. */
static int run_batch(struct drill *d, size_t from, size_t to)
{
	size_t n = to - from;
	struct ctx *cs = calloc(n, sizeof(*cs));
	pthread_t *th = calloc(n, sizeof(*th));
	bool *started = calloc(n, sizeof(bool));
	int rc = 0;

	if (!cs || !th || !started) {
		free(cs);
		free(th);
		free(started);
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < n; i++) {
		struct step *s = &d->steps[from + i];
		s->status = SS_RUNNING;
		s->start = now_usec();
		s->end = 0;
		s->message[0] = 0;
		s->warning[0] = 0;
	}
	rc = journal_write(d); /* before anything is touched */
	pthread_mutex_unlock(&d->lock);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		cs[i].d = d;
		cs[i].s = &d->steps[from + i];
		say(d, "start %s", cs[i].s->label);
		if (n == 1) {
			step_thread(&cs[i]);
		} else if (pthread_create(&th[i], NULL, step_thread, &cs[i]) == 0) {
			started[i] = true;
		} else {
			step_thread(&cs[i]);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (started[i])
			pthread_join(th[i], NULL);
	for (size_t i = 0; i < n; i++)
		if (d->steps[from + i].status != SS_DONE && rc == 0)
			rc = err_set(EIO, "step %d (%s) failed: %s", d->steps[from + i].id,
				     d->steps[from + i].label, d->steps[from + i].message);
out:
	free(cs);
	free(th);
	free(started);
	return rc;
}

/* Run the drill's steps (ABORTING false: stop at the first failure) or the
 * abort's steps (true: every one is tried). */
static int run_steps(struct drill *d, bool aborting)
{
	bool keep_going = aborting;
	int first_err = 0;

	for (size_t i = 0; i < d->n;) {
		size_t j = i + 1;
		int rc;
		if (d->steps[i].status == SS_DONE || d->steps[i].status == SS_SKIPPED ||
		    d->steps[i].abort != aborting) {
			i++;
			continue;
		}
		while (d->steps[i].par && j < d->n && d->steps[j].par == d->steps[i].par &&
		       d->steps[j].status != SS_DONE)
			j++;
		rc = run_batch(d, i, j);
		if (rc < 0) {
			if (!keep_going)
				return rc;
			if (!first_err)
				first_err = rc;
		}
		i = j;
	}
	return first_err;
}

int drill_resumable(const struct drill *d)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].abort)
			return err_set(EINVAL, "drill %s is being aborted and cannot be resumed; finish "
					       "the abort with 'bascule drill %s --abort'", d->id, d->rb->file);
	return 0;
}

int drill_run(struct drill *d)
{
	int rc;

	if (!strcmp(d->status, "aborted"))
		return err_set(EINVAL, "drill %s was aborted; start a new drill", d->id);
	if (d->n_resumed || d->steps[0].status != SS_PENDING) {
		if (d->n_resumed < 32)
			d->resumed[d->n_resumed++] = now_usec();
	}
	snprintf(d->status, sizeof(d->status), "running");
	d->message[0] = 0;
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].status == SS_RUNNING || d->steps[i].status == SS_FAILED)
			d->steps[i].status = SS_PENDING; /* runs again: steps are idempotent */
	rc = run_steps(d, false);
	d->ended = now_usec();
	if (rc < 0) {
		snprintf(d->status, sizeof(d->status), "failed");
		snprintf(d->message, sizeof(d->message), "%s", err_msg(rc));
	} else {
		snprintf(d->status, sizeof(d->status), "done");
	}
	journal_write(d);
	return rc;
}

/* Run the undo steps not yet done.  If one fails the drill stays current
 * ("abort-failed"): the operator fixes the cause and aborts again. */
static int abort_run(struct drill *d)
{
	int rc = run_steps(d, true);

	d->ended = now_usec();
	snprintf(d->status, sizeof(d->status), rc < 0 ? "abort-failed" : "aborted");
	snprintf(d->message, sizeof(d->message), "%s",
		 rc < 0 ? err_msg(rc) : "aborted: production brought back");
	journal_write(d);
	return rc;
}

/* An abort that failed or was interrupted: its plan stands (planning again
 * would undo the same steps twice); what did not finish runs again. */
static int abort_again(struct drill *d)
{
	size_t left = 0;

	for (size_t k = 0; k < d->n; k++) {
		struct step *s = &d->steps[k];
		if (!s->abort || s->status == SS_DONE)
			continue;
		s->status = SS_PENDING;
		left++;
	}
	if (d->n_resumed < 32)
		d->resumed[d->n_resumed++] = now_usec();
	say(d, "aborting drill %s again: %zu undo step%s left", d->id, left, left == 1 ? "" : "s");
	return abort_run(d);
}

int drill_abort(struct drill *d)
{
	size_t n0 = d->n;
	const struct runbook *rb = d->rb;

	if (!strcmp(d->status, "aborted"))
		return err_set(EALREADY, "drill %s is already aborted", d->id);
	for (size_t k = 0; k < n0; k++)
		if (d->steps[k].abort)
			return abort_again(d);
	/* Undo in reverse order what was done (or may have been: running, failed). */
	for (size_t k = n0; k-- > 0;) {
		struct step s = d->steps[k];
		struct step *a = NULL;
		if (s.abort || s.status == SS_PENDING || s.status == SS_SKIPPED)
			continue;
		switch (s.kind) {
		case ST_SWITCH:
			for (size_t i = 0; i < rb->switches.n; i++)
				if (!strcmp(s.label + 7, RB_SW(rb, i)->name) && RB_SW(rb, i)->back)
					a = add_step(d, ST_SWITCH_BACK, NULL, NULL, s.host, 0,
						     RB_SW(rb, i)->timeout, "switch %s back", RB_SW(rb, i)->name);
			break;
		case ST_START:
			a = add_step(d, d->mode == MODE_TEST ? ST_TEST_STOP : ST_SEC_STOP, s.service, s.group,
				     SEC(d), 0, svc_named(rb, s.service)->stop_timeout, "stop %s on %s",
				     s.service, SEC(d));
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
		case ST_STOP:
			a = add_step(d, ST_RESTART, s.service, s.group, PRI(d), 0,
				     svc_named(rb, s.service)->start_timeout, "restart %s on %s", s.service,
				     PRI(d));
			break;
		default:
			break;
		}
		if (a)
			a->abort = true;
	}
	if (d->oom)
		return -ENOMEM; /* a partial undo plan must not run; nothing was touched */
	for (size_t k = 0; k < n0; k++) {
		if (d->steps[k].status == SS_PENDING) {
			d->steps[k].status = SS_SKIPPED;
			step_msg(&d->steps[k], "not run: the drill was aborted");
		} else if (d->steps[k].status == SS_RUNNING) {
			/* Interrupted (the orchestrator died): it did not finish. */
			d->steps[k].status = SS_FAILED;
			if (!d->steps[k].end)
				d->steps[k].end = d->steps[k].start;
			step_msg(&d->steps[k], "interrupted: the drill stopped during this step");
		}
	}
	say(d, "aborting drill %s: %zu step%s bring production back", d->id, d->n - n0,
	    d->n - n0 == 1 ? "" : "s");
	return abort_run(d);
}
