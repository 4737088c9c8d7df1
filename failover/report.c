/* report.c - drill reports: the figures (RTO, RPO, groups, databases) and
 * the JSON document; writing the files.  The page is in report_html.c, the
 * terminal summary in report_text.c, signatures in report_sign.c. */
#include "report_int.h"
#include "err.h"
#include "fsutil.h"
#include "pgwal.h"
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- figures ---- */

static const struct step *find_step(const struct drill *d, enum step_kind k, const char *group,
				    bool last)
{
	const struct step *r = NULL;
	for (size_t i = 0; i < d->n; i++) {
		const struct step *s = &d->steps[i];
		if (s->kind != k || s->abort || (group && strcmp(s->group, group)))
			continue;
		if (!last && s->status != SS_PENDING && s->status != SS_SKIPPED)
			return s;
		if (last && s->status == SS_DONE)
			r = s;
	}
	return r;
}

static bool all_done(const struct drill *d, enum step_kind k)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == k && !d->steps[i].abort && d->steps[i].status != SS_DONE)
			return false;
	return true;
}

static const char *service_state(const struct drill *d, const char *svc)
{
	bool hy = d->mode == MODE_HYBRID;
	const char *st = d->mode == MODE_UNPLANNED ? "lost with the primary"
			 : d->mode == MODE_FAILBACK ? "running on the secondary"
			 : hy ? "not started" : "running on the primary";
	for (size_t i = 0; i < d->n; i++) {
		const struct step *s = &d->steps[i];
		bool ok = s->status == SS_DONE, failed = s->status == SS_FAILED ||
							 s->status == SS_RUNNING;
		if (strcmp(s->service, svc))
			continue;
		switch (s->kind) {
		case ST_STOP:
			if (ok) st = "stopped on the primary";
			else if (failed) st = "stopping on the primary (state unknown)";
			break;
		case ST_START:
			if (ok) st = d->mode == MODE_TEST ? "test copy started (isolated)" : hy ? "started on the restored "
				     "database" : "started on the secondary";
			else if (failed) st = hy ? "starting failed (state unknown)"
					      : "starting on the secondary failed (state unknown)";
			break;
		case ST_CHECK:
			if (ok) st = d->mode == MODE_TEST ? "test copy healthy (isolated)" : hy ? "healthy on the restored "
				     "database" : "healthy on the secondary";
			else if (failed) st = hy ? "started, checks failing" : "started on the secondary, checks failing";
			break;
		case ST_TEST_STOP:
			if (ok) st = "test copy stopped; production untouched";
			break;
		case ST_SEC_STOP:
			if (ok) st = "stopped on the secondary";
			else if (failed) st = "stopping on the secondary (state unknown)";
			break;
		case ST_RESTART:
			if (ok) st = "running on the primary";
			else if (failed) st = "restart on the primary failed";
			break;
		case ST_PCHECK:
			if (ok) st = "healthy on the primary";
			else if (failed) st = "running on the primary, checks failing";
			break;
		default:
			break;
		}
	}
	return st;
}

/* The last done step of KIND for database NAME. */
static const struct step *db_step(const struct drill *d, enum step_kind kind, const char *name)
{
	const struct step *r = NULL;
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == kind && !d->steps[i].abort && d->steps[i].status == SS_DONE &&
		    !strcmp(d->steps[i].database, name))
			r = &d->steps[i];
	return r;
}

static uint64_t lsn_at(json_t *o, const char *key)
{
	uint64_t v = 0;
	const char *s = json_string_value(json_object_get(o, key));
	return s && pgwal_lsn_parse(s, &v) == 0 ? v : 0;
}

/* The databases of group G promoted by step P (the evidence, by LSN and by
 * transaction time), or NULL if the group has none.  *RET_LOSS: the
 * largest data loss they show.  Planned: 0 when every replica target
 * acknowledged the primary's final LSN and the promoted database was
 * recovered to it (RPO 0 by LSN); else the time from the last transaction
 * recovered to the shutdown.  Unplanned: from the last transaction
 * recovered to the incident T0 (every commit after it is lost, PostgreSQL's
 * own record of what it replayed). */
static json_t *group_databases(const struct drill *d, const char *g, const struct step *p, uint64_t t0,
			       uint64_t *ret_loss)
{
	const struct runbook *rb = d->rb;
	json_t *arr = NULL, *pdata = drill_step_data(p);
	uint64_t worst = 0;

	for (size_t i = 0; i < rb->databases.n; i++) {
		const struct rb_database *db = RB_DB(rb, i);
		bool fb = d->mode == MODE_FAILBACK;
		const struct step *stop = db_step(d, fb ? ST_DB_FB_SHUTDOWN : ST_DB_STOP, db->name);
		const struct step *ack = db_step(d, fb ? ST_DB_FB_CAUGHT : ST_DB_ACKED, db->name);
		const struct step *fbp = fb ? db_step(d, ST_DB_FB_PROMOTE, db->name) : NULL;
		json_t *fbdata = fbp ? drill_step_data(fbp) : NULL;
		json_t *sd, *ad, *pg, *o, *targets;
		uint64_t final, promoted, xact, loss = 0;
		bool by_lsn;
		if (strcmp(db->group, g))
			continue;
		if (!arr)
			arr = json_array();
		sd = stop ? drill_step_data(stop) : NULL;
		ad = ack ? drill_step_data(ack) : NULL;
		pg = json_object_get(json_object_get(fb ? fbdata : pdata, "postgres"), db->src);
		final = lsn_at(sd, "final_lsn");
		promoted = lsn_at(pg, "end_lsn");
		xact = (uint64_t)json_integer_value(json_object_get(pg, "last_transaction_us"));
		targets = json_object_get(ad, "targets");
		by_lsn = (d->mode == MODE_PLANNED || fb) && final && ack && json_object_size(targets) && promoted >= final;
		if ((d->mode == MODE_PLANNED || fb) && !by_lsn) {
			uint64_t down = stop ? stop->end : d->ended;
			loss = xact && down > xact ? down - xact : down > p->cut_time ? down - p->cut_time : 0;
		} else if (d->mode == MODE_UNPLANNED) {
			uint64_t last = xact ? xact : p->cut_time;
			loss = t0 > last ? t0 - last : 0;
		}
		if (loss > worst)
			worst = loss;
		o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:I, s:I, s:b, s:I}", "name", db->name,
			      "source", db->source, "final_lsn",
			      json_string_value(json_object_get(sd, "final_lsn")) ?: "", "checkpoint_lsn",
			      json_string_value(json_object_get(sd, "checkpoint_lsn")) ?: "", "targets",
			      targets ? json_incref(targets) : json_object(), "promoted_lsn",
			      json_string_value(json_object_get(pg, "end_lsn")) ?: "", "redo_lsn",
			      json_string_value(json_object_get(pg, "redo_lsn")) ?: "", "standby",
			      json_string_value(json_object_get(pg, "mode")) ?: "", "timeline",
			      json_integer_value(json_object_get(pg, "timeline")), "last_transaction_us",
			      (json_int_t)xact, "rpo_by_lsn", by_lsn, "data_loss_us", (json_int_t)loss);
		json_array_append_new(arr, o);
		json_decref(sd);
		json_decref(ad);
		json_decref(fbdata);
	}
	json_decref(pdata);
	*ret_loss = worst;
	return arr;
}

/* The hybrid drill's restore (docs/hybrid.md, "The hybrid drill"): the
 * client, the night chosen and when its dump was uploaded, what was
 * loaded; damaged_night if a step found the night damaged.  *RET_CREATED:
 * the dump's upload (usec), 0 if no night was chosen. */
static json_t *hybrid_object(const struct drill *d, uint64_t *ret_created)
{
	const struct rb_hybrid *h = &d->rb->hybrid;
	const struct step *pick = find_step(d, ST_HY_PICK, NULL, true);
	const struct step *load = find_step(d, ST_HY_RESTORE, NULL, true);
	json_t *pd = pick ? drill_step_data(pick) : NULL, *ld = load ? drill_step_data(load) : NULL, *o;
	const char *damaged = "";
	json_int_t created = json_integer_value(json_object_get(pd, "created_unix"));
	json_t *dd = NULL;

	for (size_t i = 0; i < d->n && !*damaged; i++) {
		const struct step *s = &d->steps[i];
		if (s->abort || (s->kind != ST_HY_CHECK && s->kind != ST_HY_PICK && s->kind != ST_HY_RESTORE))
			continue;
		json_decref(dd);
		dd = drill_step_data(s);
		damaged = json_string_value(json_object_get(dd, "damaged_night")) ?: "";
	}
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:I, s:I, s:s}", "client", h->client,
		      "intake", h->intake, "night_wanted", h->night, "night",
		      json_string_value(json_object_get(pd, "night")) ?: "", "kind",
		      json_string_value(json_object_get(pd, "kind")) ?: "", "full_night",
		      json_string_value(json_object_get(pd, "full")) ?: "", "chain",
		      json_integer_value(json_object_get(pd, "chain")), "dump_created_us",
		      (json_int_t)(created > 0 ? created * 1000000 : 0), "stored_bytes",
		      json_integer_value(json_object_get(pd, "stored_bytes")), "database",
		      json_string_value(json_object_get(ld, "database")) ?: "", "tables",
		      json_integer_value(json_object_get(ld, "tables")), "rows",
		      json_integer_value(json_object_get(ld, "rows")), "damaged_night", damaged);
	json_decref(dd);
	json_decref(pd);
	json_decref(ld);
	*ret_created = created > 0 ? (uint64_t)created * 1000000 : 0;
	return o;
}

json_t *report_build(const struct drill *d)
{
	const struct runbook *rb = d->rb;
	enum step_kind down = d->mode == MODE_FAILBACK ? ST_SEC_STOP : ST_STOP;
	enum step_kind up = d->mode == MODE_FAILBACK ? ST_PCHECK : ST_CHECK;
	enum step_kind upstart = d->mode == MODE_FAILBACK ? ST_RESTART : ST_START;
	enum step_kind sync = d->mode == MODE_FAILBACK ? ST_FB_SYNC : ST_SYNC;
	enum step_kind promote = d->mode == MODE_FAILBACK ? ST_FB_PROMOTE
				 : d->mode == MODE_TEST ? ST_CLONE : ST_PROMOTE;
	const struct step *first = NULL, *last = NULL;
	json_t *steps = json_array(), *services = json_array(), *groups = json_array(), *res, *doc;
	json_t *hybrid = NULL;
	uint64_t t0 = 0, t1 = 0, rpo = 0, stop_end = 0;
	bool rto_ok, rpo_ok, rpo_known = true, complete;
	char dig[65], host[256] = "";
	const char *result;

	gethostname(host, sizeof(host) - 1);
	sodium_bin2hex(dig, sizeof(dig), rb->digest, sizeof(rb->digest));
	/* RTO from the first service stop (or the incident) to all checks green. */
	if (d->mode == MODE_UNPLANNED || d->mode == MODE_HYBRID)
		t0 = d->incident ? d->incident : d->started; /* the declaration */
	else if ((first = find_step(d, down, NULL, false)))
		t0 = first->start;
	else if (d->mode == MODE_TEST && (first = find_step(d, ST_CLONE, NULL, false)))
		t0 = first->start;
	else
		t0 = d->started;
	complete = all_done(d, up) && all_done(d, upstart) && !strcmp(d->status, "done");
	if (complete) {
		for (size_t i = 0; i < d->n; i++)
			if ((d->steps[i].kind == up || d->steps[i].kind == upstart) && !d->steps[i].abort &&
			    (!last || d->steps[i].end > last->end))
				last = &d->steps[i];
		t1 = last ? last->end : d->ended;
	}
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].kind == down && d->steps[i].status == SS_DONE && d->steps[i].end > stop_end)
			stop_end = d->steps[i].end;
	/* RPO per group. */
	for (size_t i = 0; i < rb->services.n; i++) {
		const char *g = RB_SVC(rb, i)->group;
		bool seen = false;
		const struct step *p, *sy;
		uint64_t loss = 0, db_loss = 0;
		json_t *dbs;
		if (!g)
			continue;
		for (size_t k = 0; k < i; k++)
			seen |= RB_SVC(rb, k)->group && !strcmp(RB_SVC(rb, k)->group, g);
		if (seen)
			continue;
		p = find_step(d, promote, g, true);
		if (!p && d->mode == MODE_FAILBACK) /* databases alone: PostgreSQL's own promote */
			p = find_step(d, ST_DB_FB_PROMOTE, g, true);
		sy = find_step(d, sync, g, true);
		if (!p) {
			rpo_known = false;
			json_array_append_new(groups, json_pack("{s:s, s:n}", "name", g, "epoch"));
			continue;
		}
		dbs = group_databases(d, g, p, t0, &db_loss);
		if (d->mode == MODE_PLANNED || d->mode == MODE_FAILBACK) {
			/* The final sync came after every stop: its epoch holds all writes;
			 * so does the epoch that brought the databases' final LSN. */
			const struct step *da = find_step(d, ST_DB_ACKED, g, true);
			if ((!sy || sy->epoch != p->epoch) && (!da || da->epoch != p->epoch))
				loss = stop_end > p->cut_time ? stop_end - p->cut_time : 0;
		} else if (d->mode == MODE_UNPLANNED) {
			loss = t0 > p->cut_time ? t0 - p->cut_time : 0;
		} else {
			loss = p->start > p->cut_time ? p->start - p->cut_time : 0;
		}
		if (db_loss > loss)
			loss = db_loss;
		if (loss > rpo)
			rpo = loss;
		{
			json_t *o = json_pack("{s:s, s:I, s:I, s:b, s:I, s:I}", "name", g, "epoch",
					      (json_int_t)p->epoch, "cut_time_us", (json_int_t)p->cut_time,
					      "consistent", p->consistent, "synced_epoch",
					      (json_int_t)(sy ? sy->epoch : 0), "data_loss_us", (json_int_t)loss);
			if (dbs)
				json_object_set_new(o, "databases", dbs);
			json_array_append_new(groups, o);
		}
	}
	/* Hybrid: the data lost is what the client wrote after its dump. */
	if (d->mode == MODE_HYBRID) {
		uint64_t created = 0;
		hybrid = hybrid_object(d, &created);
		rpo_known = created != 0;
		rpo = created && t0 > created ? t0 - created : 0;
	}
	rto_ok = complete && t1 - t0 <= rb->objectives.rto;
	rpo_ok = rpo_known && rpo <= rb->objectives.rpo;
	if (!strcmp(d->status, "aborted"))
		result = "ABORTED";
	else if (!strcmp(d->status, "abort-failed"))
		result = "ABORT-INCOMPLETE";
	else if (strcmp(d->status, "done"))
		result = "ERROR";
	else
		result = rto_ok && rpo_ok ? "PASS" : "FAIL";
	for (size_t i = 0; i < d->n; i++) {
		const struct step *s = &d->steps[i];
		json_array_append_new(
			steps, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:i, s:s, "
					 "s:s}",
					 "id", s->id, "kind", step_kind_name(s->kind), "label", s->label,
					 "service", s->service, "group", s->group, "host", s->host,
					 "status", step_status_name(s->status), "abort", s->abort,
					 "start_us", (json_int_t)s->start, "end_us", (json_int_t)s->end,
					 "duration_us", (json_int_t)(s->end > s->start ? s->end - s->start : 0),
					 "attempts", s->attempts, "message", s->message, "warning",
					 s->warning));
	}
	for (size_t i = 0; i < rb->services.n; i++) {
		const struct rb_service *s = RB_SVC(rb, i);
		const struct step *a = NULL, *b = NULL;
		for (size_t k = 0; k < d->n; k++) {
			const struct step *x = &d->steps[k];
			if (strcmp(x->service, s->name) || x->abort || !x->start)
				continue;
			if (!a || x->start < a->start)
				a = x;
			if (x->end && (!b || x->end > b->end))
				b = x;
		}
		json_array_append_new(
			services, json_pack("{s:s, s:s?, s:i, s:s, s:I, s:I}", "name", s->name, "group",
					    s->group, "wave", s->wave, "state", service_state(d, s->name),
					    "down_us", (json_int_t)(d->mode == MODE_UNPLANNED ? t0 : a ? a->start : 0),
					    "up_us", (json_int_t)(b ? b->end : 0)));
	}
	res = json_array();
	for (int i = 0; i < d->n_resumed; i++)
		json_array_append_new(res, json_integer((json_int_t)d->resumed[i]));
	doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:{s:I, s:I}, "
			 "s:{s:I, s:I, s:I, s:b, s:b, s:b, s:b}, s:s, s:s, s:o, s:o, s:o, s:o}",
			 "format", "bascule-drill-report-1", "drill", d->id, "runbook", rb->file,
			 "runbook_name", rb->name, "runbook_blake2b", dig, "mode", mode_name(d->mode),
			 "orchestrator_host", host, "started_us", (json_int_t)d->started, "ended_us",
			 (json_int_t)d->ended, "rto_start_us", (json_int_t)t0, "objectives", "rto_us",
			 (json_int_t)rb->objectives.rto, "rpo_us", (json_int_t)rb->objectives.rpo,
			 "achieved", "rto_us", (json_int_t)(complete ? t1 - t0 : 0), "rto_end_us",
			 (json_int_t)t1, "rpo_us", (json_int_t)rpo, "rpo_reached", rpo_known, "complete",
			 complete, "rto_met", rto_ok, "rpo_met", rpo_ok, "result", result, "message", d->message,
			 "resumed_us", res, "groups", groups, "services", services, "steps", steps);
	if (doc && hybrid)
		json_object_set_new(doc, "hybrid", hybrid);
	else
		json_decref(hybrid);
	return doc;
}

/* ---- helpers of the renderers (report_int.h) ---- */

const char *report_jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k)) ?: "";
}

uint64_t report_jint(json_t *o, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(o, k));
	return v > 0 ? (uint64_t)v : 0;
}

const char *report_dur(uint64_t us, char *buf, size_t len)
{
	if (us < 10000000)
		snprintf(buf, len, "%.2f s", (double)us / 1e6);
	else if (us < 60000000)
		snprintf(buf, len, "%.1f s", (double)us / 1e6); /* not "0m 10s" */
	else if (us < 3600000000ULL)
		snprintf(buf, len, "%um %02us", (unsigned)(us / 60000000), (unsigned)(us / 1000000 % 60));
	else
		snprintf(buf, len, "%uh %02um", (unsigned)(us / 3600000000ULL),
			 (unsigned)(us / 60000000 % 60));
	return buf;
}

/* False only when a report says so: older reports lack the key. */
bool report_rpo_reached(json_t *ach)
{
	return !json_is_false(json_object_get(ach, "rpo_reached"));
}

/* "secondary 0/3000148 (epoch 12), vault2 ..." of a database's targets. */
const char *report_acked_list(json_t *targets, char *buf, size_t len)
{
	const char *name;
	json_t *t;
	size_t n = 0;

	buf[0] = 0;
	json_object_foreach(targets, name, t)
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s %s (epoch %" PRIu64 ")", n ? ", " : "", name,
					      report_jstr(t, "acked_lsn"), report_jint(t, "epoch"));
	return buf[0] ? buf : "-";
}

int report_exit_code(json_t *r)
{
	const char *res = report_jstr(r, "result");
	if (!strcmp(res, "PASS"))
		return 0;
	if (!strcmp(res, "FAIL"))
		return 1;
	/* A hybrid night found damaged: what intake restore says of it. */
	if (!strcmp(res, "ERROR") && *report_jstr(json_object_get(r, "hybrid"), "damaged_night"))
		return 5;
	return !strcmp(res, "ABORT-INCOMPLETE") ? 3 : 2;
}

int report_write(json_t *doc, const char *dir, char *json_path, char *html_path, size_t len)
{
	json_t *r = json_object_get(doc, "report");
	char *text, *html;
	int rc;

	if ((rc = fs_mkdir_p(dir, 0755)) < 0)
		return err_wrap(rc, "cannot create the report directory %s", dir);
	snprintf(json_path, len, "%s/%s.json", dir, report_jstr(r, "drill"));
	snprintf(html_path, len, "%s/%s.html", dir, report_jstr(r, "drill"));
	if (!(text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS)))
		return -ENOMEM;
	rc = fs_write_atomic(json_path, text, strlen(text), 0644);
	free(text);
	if (rc < 0)
		return err_wrap(rc, "cannot write %s", json_path);
	if (!(html = report_html(doc)))
		return -ENOMEM;
	rc = fs_write_atomic(html_path, html, strlen(html), 0644);
	free(html);
	return rc < 0 ? err_wrap(rc, "cannot write %s", html_path) : 0;
}
