/* report.c - drill reports: figures, JSON, HTML/SVG, text, signatures. */
#include "report.h"
#include "err.h"
#include "fsutil.h"
#include "pgwal.h"
#include "sign.h"
#include "units.h"
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIG_CONTEXT "bascule-drill-report-v1\n"
#define HTML_MARK "<script type=\"application/json\" id=\"bascule-report\">"

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
	const char *st = d->mode == MODE_UNPLANNED ? "lost with the primary"
			 : d->mode == MODE_FAILBACK ? "running on the secondary"
						    : "running on the primary";
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
			if (ok) st = d->mode == MODE_TEST ? "test copy started (isolated)" : "started on the secondary";
			else if (failed) st = "starting on the secondary failed (state unknown)";
			break;
		case ST_CHECK:
			if (ok) st = d->mode == MODE_TEST ? "test copy healthy (isolated)" : "healthy on the secondary";
			else if (failed) st = "started on the secondary, checks failing";
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
	json_t *steps = json_array(), *services = json_array(), *groups = json_array(), *res;
	uint64_t t0 = 0, t1 = 0, rpo = 0, stop_end = 0;
	bool rto_ok, rpo_ok, rpo_known = true, complete;
	char dig[65], host[256] = "";
	const char *result;

	gethostname(host, sizeof(host) - 1);
	sodium_bin2hex(dig, sizeof(dig), rb->digest, sizeof(rb->digest));
	/* RTO from the first service stop (or the incident) to all checks green. */
	if (d->mode == MODE_UNPLANNED)
		t0 = d->incident ? d->incident : d->started;
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
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:{s:I, s:I}, "
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
}

/* ---- signatures ---- */

static char *canonical(json_t *report)
{
	char *body = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS), *msg;
	if (!body)
		return NULL;
	msg = malloc(strlen(SIG_CONTEXT) + strlen(body) + 1);
	if (msg) {
		strcpy(msg, SIG_CONTEXT);
		strcat(msg, body);
	}
	free(body);
	return msg;
}

int report_sign(json_t *report, const char *signing_key, json_t **ret_doc)
{
	uint8_t sk[SIGN_SK_BYTES], pk[SIGN_PK_BYTES], sig[SIGN_BYTES];
	char pkb[64], sigb[128], kid[17], *msg;
	json_t *doc;
	int rc;

	if (!signing_key) {
		*ret_doc = json_pack("{s:O, s:n}", "report", report, "signature");
		return *ret_doc ? 0 : -ENOMEM;
	}
	if ((rc = sign_load_secret(signing_key, sk)) < 0)
		return rc;
	if (!(msg = canonical(report))) {
		sodium_memzero(sk, sizeof(sk));
		return -ENOMEM;
	}
	crypto_sign_detached(sig, NULL, (const uint8_t *)msg, strlen(msg), sk);
	crypto_sign_ed25519_sk_to_pk(pk, sk);
	sodium_memzero(sk, sizeof(sk));
	free(msg);
	sign_key_id(pk, kid);
	sodium_bin2base64(pkb, sizeof(pkb), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(sigb, sizeof(sigb), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
	doc = json_pack("{s:O, s:{s:s, s:s, s:s, s:s}}", "report", report, "signature", "algorithm",
			"ed25519", "key_id", kid, "public_key", pkb, "value", sigb);
	if (!doc)
		return -ENOMEM;
	*ret_doc = doc;
	return 0;
}

/* ---- rendering ---- */

static void esc(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*s, f);
		}
	}
}

static const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k)) ?: "";
}

static uint64_t jint(json_t *o, const char *k)
{
	json_int_t v = json_integer_value(json_object_get(o, k));
	return v > 0 ? (uint64_t)v : 0;
}

static const char *dur(uint64_t us, char *buf, size_t len)
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

static const char *color(const char *status, bool abort)
{
	if (!strcmp(status, "done"))
		return abort ? "#7b5ea7" : "#2e8b57";
	if (!strcmp(status, "failed"))
		return "#c0392b";
	if (!strcmp(status, "running"))
		return "#e67e22";
	return "#aaaaaa";
}

/* The text at the left of a timeline row. */
static void row_label(FILE *f, int y, const char *text)
{
	fprintf(f, "<text x=\"4\" y=\"%d\">", y + 14);
	esc(f, text);
	fprintf(f, "</text>\n");
}

#define S_US 1000000ULL
#define M_US (60 * S_US)
#define H_US (60 * M_US)

/* The distance between two axis ticks for a timeline of SPAN usec: the
 * smallest round step giving at most 7 intervals (1, 2 or 5 times a power of
 * ten below a second; steps a clock shows above). */
static uint64_t tick_step(uint64_t span)
{
	static const uint64_t clock[] = { S_US, 2 * S_US, 5 * S_US, 10 * S_US, 15 * S_US,
					  30 * S_US, M_US, 2 * M_US, 5 * M_US, 10 * M_US,
					  15 * M_US, 30 * M_US, H_US, 2 * H_US, 3 * H_US,
					  6 * H_US, 12 * H_US, 24 * H_US };
	uint64_t want = span / 7 + 1;

	if (want <= S_US / 2)
		for (uint64_t p = 1;; p *= 10)
			for (int m = 1; m <= 5; m += m == 1 ? 1 : 3) /* 1, 2, 5 */
				if (p * m >= want)
					return p * m;
	for (size_t i = 0; i < sizeof(clock) / sizeof(clock[0]); i++)
		if (clock[i] >= want)
			return clock[i];
	return (want + 24 * H_US - 1) / (24 * H_US) * (24 * H_US);
}

/* The label of the tick at T usec from the start, with the precision STEP
 * needs: "+0.05 s", "+15 s", "+2m 30s", "+45m", "+1h 30m", "+6h". */
static const char *tick_label(uint64_t t, uint64_t step, char *buf, size_t len)
{
	unsigned h = (unsigned)(t / H_US), m = (unsigned)(t / M_US % 60), sec = (unsigned)(t / S_US % 60);

	if (!t) {
		snprintf(buf, len, "0");
	} else if (step < S_US) {
		int dec = 0;
		for (uint64_t p = S_US; step % p; p /= 10)
			dec++;
		snprintf(buf, len, "+%.*f s", dec, (double)t / 1e6);
	} else if (t < M_US) {
		snprintf(buf, len, "+%u s", sec);
	} else if (step < M_US) {
		snprintf(buf, len, "+%um %02us", (unsigned)(t / M_US), sec);
	} else if (t < H_US) {
		snprintf(buf, len, "+%um", m);
	} else if (step < H_US) {
		snprintf(buf, len, "+%uh %02um", h, m);
	} else {
		snprintf(buf, len, "+%uh", h);
	}
	return buf;
}

static void svg_timeline(FILE *f, json_t *r)
{
	json_t *steps = json_object_get(r, "steps"), *svcs = json_object_get(r, "services"), *s;
	json_t *ach = json_object_get(r, "achieved"), *obj = json_object_get(r, "objectives");
	uint64_t lo = UINT64_MAX, hi = 0, rto0 = jint(r, "rto_start_us");
	uint64_t rto_line = rto0 + jint(obj, "rto_us"), step;
	size_t i, rows = json_array_size(steps) + json_array_size(svcs) + 1;
	/* The right margin holds half of the last tick's label. */
	const int W = 1100, L = 330, RW = W - L - 60, RH = 20, TOP = 30;
	int H = TOP + (int)rows * RH + 40;
	char b[64];

	json_array_foreach(steps, i, s) {
		if (jint(s, "start_us") && jint(s, "start_us") < lo)
			lo = jint(s, "start_us");
		if (jint(s, "end_us") > hi)
			hi = jint(s, "end_us");
	}
	if (rto0 && rto0 < lo)
		lo = rto0;
	if (lo == UINT64_MAX)
		lo = jint(r, "started_us");
	if (hi <= lo)
		hi = lo + 1000000;
	/* Show the objective when it is near; else mark it off the scale. */
	bool line_in = rto_line <= hi + (hi - lo) / 2;
	if (line_in && rto_line > hi)
		hi = rto_line;
	/* The axis ends on a tick. */
	step = tick_step(hi - lo);
	hi = lo + (hi - lo + step - 1) / step * step;
	double span = (double)(hi - lo);
#define X(t) (L + (int)((double)((t) - lo) / span * RW))
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		   "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\" "
		   "aria-label=\"drill timeline\">\n", W, H, W, H);
	fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", W, H);
	for (uint64_t t = lo; t <= hi; t += step) {
		fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#e5e5e5\"/>\n", X(t),
			TOP - 5, X(t), H - 30);
		fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">%s</text>\n",
			X(t), H - 14, tick_label(t - lo, step, b, sizeof(b)));
	}
	int y = TOP;
	fprintf(f, "<text x=\"4\" y=\"%d\" font-weight=\"bold\">steps</text>\n", y - 12);
	json_array_foreach(steps, i, s) {
		uint64_t a = jint(s, "start_us"), e = jint(s, "end_us");
		row_label(f, y, jstr(s, "label"));
		if (a) {
			int x1 = X(a), x2 = e > a ? X(e) : X(a) + 2;
			fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>",
				x1, y + 3, x2 - x1 < 2 ? 2 : x2 - x1, RH - 6,
				color(jstr(s, "status"), json_is_true(json_object_get(s, "abort"))));
			esc(f, jstr(s, "label"));
			fprintf(f, ": %s, %s</title></rect>\n", jstr(s, "status"),
				dur(e > a ? e - a : 0, b, sizeof(b)));
		}
		y += RH;
	}
	y += RH;
	fprintf(f, "<text x=\"4\" y=\"%d\" font-weight=\"bold\">services (down → up)</text>\n", y - 6);
	json_array_foreach(svcs, i, s) {
		uint64_t a = jint(s, "down_us"), e = jint(s, "up_us");
		row_label(f, y, jstr(s, "name"));
		if (a && e > a)
			fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#34699a\" "
				   "opacity=\"0.8\"/>\n", X(a), y + 3, X(e) - X(a) < 2 ? 2 : X(e) - X(a), RH - 6);
		y += RH;
	}
	if (rto0) {
		fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\" "
			   "stroke-dasharray=\"2,2\"/>\n", X(rto0), TOP - 5, X(rto0), H - 30);
		if (jint(ach, "rto_end_us"))
			fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#2e8b57\" "
				   "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\" fill=\"#2e8b57\" "
				   "text-anchor=\"end\">achieved RTO %s</text>\n",
				X(jint(ach, "rto_end_us")), TOP - 5, X(jint(ach, "rto_end_us")), H - 30,
				X(jint(ach, "rto_end_us")) - 4, TOP - 16, dur(jint(ach, "rto_us"), b, sizeof(b)));
	}
	if (line_in)
		fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#c0392b\" "
			   "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\" fill=\"#c0392b\" "
			   "text-anchor=\"end\">RTO objective</text>\n",
			X(rto_line), TOP - 5, X(rto_line), H - 30, X(rto_line) - 4, H - 34);
	else
		/* Not a verdict (the table gives it): neutral, whatever the result. */
		fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#555\">RTO objective "
			   "(%s) is beyond the right edge →</text>\n", L, TOP - 16,
			dur(jint(obj, "rto_us"), b, sizeof(b)));
	fprintf(f, "</svg>\n");
#undef X
}

/* False only when a report says so: older reports lack the key. */
static bool rpo_reached(json_t *ach)
{
	return !json_is_false(json_object_get(ach, "rpo_reached"));
}

/* "achieved RTO | 0.16 s | objective | 1m 00s | met"; a figure the drill did
 * not reach has no verdict (the result says why). */
static void figure_row(FILE *f, const char *what, bool reached, uint64_t us, uint64_t objective,
		       bool met)
{
	char b1[64], b2[64];

	fprintf(f, "<tr><th>achieved %s</th><td>%s</td><th>objective</th><td>%s</td><td>%s</td></tr>\n",
		what, reached ? dur(us, b1, sizeof(b1)) : "not reached",
		dur(objective, b2, sizeof(b2)), !reached ? "-" : met ? "met" : "NOT met");
}

/* "secondary 0/3000148 (epoch 12), vault2 ..." of a database's targets. */
static const char *acked_list(json_t *targets, char *buf, size_t len)
{
	const char *name;
	json_t *t;
	size_t n = 0;

	buf[0] = 0;
	json_object_foreach(targets, name, t)
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s %s (epoch %" PRIu64 ")", n ? ", " : "", name,
					      jstr(t, "acked_lsn"), jint(t, "epoch"));
	return buf[0] ? buf : "-";
}

/* The databases of the report's groups: the evidence of their RPO. */
static void html_databases(FILE *f, json_t *r)
{
	json_t *g, *x;
	size_t i, k;
	bool any = false, test = !strcmp(jstr(r, "mode"), "test");
	char b[600], t[40];

	json_array_foreach(json_object_get(r, "groups"), i, g) {
		json_array_foreach(json_object_get(g, "databases"), k, x) {
			if (!any)
				fprintf(f, "<h2>Databases</h2>\n<table><tr><th>database</th><th>source</th>"
					   "<th>primary's final LSN</th><th>acknowledged by</th><th>%s</th>"
					   "<th>last transaction recovered</th><th>data loss</th></tr>\n",
					test ? "cloned at" : "promoted to");
			any = true;
			fprintf(f, "<tr><td>");
			esc(f, jstr(x, "name"));
			fprintf(f, "</td><td>");
			esc(f, jstr(x, "source"));
			fprintf(f, "</td><td>");
			esc(f, *jstr(x, "final_lsn") ? jstr(x, "final_lsn") : "-");
			fprintf(f, "</td><td>");
			esc(f, acked_list(json_object_get(x, "targets"), b, sizeof(b)));
			fprintf(f, "</td><td>");
			esc(f, *jstr(x, "promoted_lsn") ? jstr(x, "promoted_lsn") : "-");
			fprintf(f, " <span class=\"muted\">timeline %d, %s</span></td><td class=\"nw\">%s</td><td>%s%s</td></tr>\n",
				(int)jint(x, "timeline"), *jstr(x, "standby") ? jstr(x, "standby") : "-",
				jint(x, "last_transaction_us") ? units_fmt_time(jint(x, "last_transaction_us"), t, sizeof(t)) : "-",
				dur(jint(x, "data_loss_us"), b, sizeof(b)),
				json_is_true(json_object_get(x, "rpo_by_lsn")) ? " (0 by LSN)" : "");
		}
	}
	if (any)
		fprintf(f, "</table>\n");
}

char *report_html(json_t *doc)
{
	json_t *r = json_object_get(doc, "report"), *sig = json_object_get(doc, "signature");
	json_t *ach = json_object_get(r, "achieved"), *obj = json_object_get(r, "objectives"), *x;
	char *out = NULL, *embedded, b1[64], t[40];
	size_t len = 0, i;
	FILE *f = open_memstream(&out, &len);
	const char *result = jstr(r, "result");

	if (!f)
		return NULL;
	fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>Drill ");
	esc(f, jstr(r, "drill"));
	fprintf(f, " — ");
	esc(f, jstr(r, "runbook_name"));
	fprintf(f, "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}"
		   "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
		   "text-align:left;font-size:13px}.PASS{color:#2e8b57}"
		   ".FAIL,.ERROR,.ABORT-INCOMPLETE{color:#c0392b}"
		   ".ABORTED{color:#7b5ea7}.WARN{color:#b9770e}.nw{white-space:nowrap}.big{font-size:28px;font-weight:bold}"
		   ".muted{color:#666;font-size:12px}</style></head><body>\n");
	fprintf(f, "<h1>Failover drill: ");
	esc(f, jstr(r, "runbook_name"));
	fprintf(f, "</h1>\n<p class=\"big %s\">%s</p>\n", result, result);
	fprintf(f, "<table><tr><th>mode</th><td>%s</td></tr>\n", jstr(r, "mode"));
	fprintf(f, "<tr><th>drill</th><td>");
	esc(f, jstr(r, "drill"));
	fprintf(f, "</td></tr>\n<tr><th>started</th><td>%s</td></tr>\n",
		units_fmt_time(jint(r, "started_us"), t, sizeof(t)));
	figure_row(f, "RTO", json_is_true(json_object_get(ach, "complete")), jint(ach, "rto_us"),
		   jint(obj, "rto_us"), json_is_true(json_object_get(ach, "rto_met")));
	figure_row(f, "RPO", rpo_reached(ach), jint(ach, "rpo_us"), jint(obj, "rpo_us"),
		   json_is_true(json_object_get(ach, "rpo_met")));
	fprintf(f, "<tr><th>runbook</th><td colspan=\"4\">");
	esc(f, jstr(r, "runbook"));
	fprintf(f, " <span class=\"muted\">BLAKE2b %.16s…</span></td></tr>\n", jstr(r, "runbook_blake2b"));
	fprintf(f, "<tr><th>signed by</th><td colspan=\"4\">%s</td></tr>\n",
		json_is_object(sig) ? jstr(sig, "key_id") : "NOT SIGNED");
	if (*jstr(r, "message")) {
		fprintf(f, "<tr><th>message</th><td colspan=\"4\">");
		esc(f, jstr(r, "message"));
		fprintf(f, "</td></tr>\n");
	}
	json_array_foreach(json_object_get(r, "steps"), i, x) {
		if (!*jstr(x, "warning"))
			continue;
		fprintf(f, "<tr><th class=\"WARN\">warning</th><td colspan=\"4\" class=\"WARN\">"
			   "step %d (", (int)jint(x, "id"));
		esc(f, jstr(x, "label"));
		fprintf(f, "): ");
		esc(f, jstr(x, "warning"));
		fprintf(f, "</td></tr>\n");
	}
	json_array_foreach(json_object_get(r, "resumed_us"), i, x)
		fprintf(f, "<tr><th>resumed</th><td colspan=\"4\">%s (after an interruption)</td></tr>\n",
			units_fmt_time((uint64_t)json_integer_value(x), t, sizeof(t)));
	fprintf(f, "</table>\n<h2>Timeline</h2>\n");
	svg_timeline(f, r);
	fprintf(f, "<h2>Services</h2>\n<table><tr><th>service</th><th>group</th><th>wave</th>"
		   "<th>state</th><th>down</th></tr>\n");
	json_array_foreach(json_object_get(r, "services"), i, x) {
		uint64_t a = jint(x, "down_us"), e = jint(x, "up_us");
		fprintf(f, "<tr><td>");
		esc(f, jstr(x, "name"));
		fprintf(f, "</td><td>");
		esc(f, jstr(x, "group"));
		fprintf(f, "</td><td>%d</td><td>", (int)jint(x, "wave"));
		esc(f, jstr(x, "state"));
		fprintf(f, "</td><td>%s</td></tr>\n", a && e > a ? dur(e - a, b1, sizeof(b1)) : "-");
	}
	fprintf(f, "</table>\n<h2>Replicas</h2>\n<table><tr><th>group</th><th>epoch</th><th>cut</th>"
		   "<th>capture</th><th>final sync epoch</th><th>data loss</th></tr>\n");
	json_array_foreach(json_object_get(r, "groups"), i, x) {
		fprintf(f, "<tr><td>");
		esc(f, jstr(x, "name"));
		if (json_is_null(json_object_get(x, "epoch"))) {
			fprintf(f, "</td><td colspan=\"5\">not promoted</td></tr>\n");
			continue;
		}
		fprintf(f, "</td><td>%" PRIu64 "</td><td>%s</td><td>%s</td><td>%" PRIu64 "</td><td>%s</td></tr>\n",
			jint(x, "epoch"), units_fmt_time(jint(x, "cut_time_us"), t, sizeof(t)),
			json_is_true(json_object_get(x, "consistent")) ? "consistent" : "fuzzy",
			jint(x, "synced_epoch"), dur(jint(x, "data_loss_us"), b1, sizeof(b1)));
	}
	fprintf(f, "</table>\n");
	html_databases(f, r);
	fprintf(f, "<h2>Steps</h2>\n<table><tr><th>#</th><th>step</th><th>host</th>"
		   "<th>status</th><th>start</th><th>duration</th><th>result</th></tr>\n");
	json_array_foreach(json_object_get(r, "steps"), i, x) {
		fprintf(f, "<tr><td>%d</td><td>", (int)jint(x, "id"));
		esc(f, jstr(x, "label"));
		fprintf(f, "%s</td><td>", json_is_true(json_object_get(x, "abort")) ? " (abort)" : "");
		esc(f, jstr(x, "host"));
		fprintf(f, "</td><td style=\"color:%s\">%s</td><td class=\"nw\">%s</td><td>%s</td><td>",
			color(jstr(x, "status"), false), jstr(x, "status"),
			jint(x, "start_us") ? units_fmt_time(jint(x, "start_us"), t, sizeof(t)) : "-",
			dur(jint(x, "duration_us"), b1, sizeof(b1)));
		esc(f, jstr(x, "message"));
		if (*jstr(x, "warning")) {
			fprintf(f, "<br><span class=\"WARN\">warning: ");
			esc(f, jstr(x, "warning"));
			fprintf(f, "</span>");
		}
		fprintf(f, "</td></tr>\n");
	}
	fprintf(f, "</table>\n<p class=\"muted\">Check this page with <code>bascule report verify "
		   "--key SIGNER.pub FILE</code>: the data below is signed and the page is re-rendered "
		   "from it, so any edit is detected.</p>\n");
	embedded = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ESCAPE_SLASH);
	fprintf(f, HTML_MARK "%s</script>\n</body></html>\n", embedded ? embedded : "null");
	free(embedded);
	fclose(f);
	return out;
}

void report_summary(json_t *r, FILE *f)
{
	json_t *ach = json_object_get(r, "achieved"), *obj = json_object_get(r, "objectives"), *x;
	char b1[64], b2[64];
	size_t i;

	fprintf(f, "\nDrill %s (%s): %s\n", jstr(r, "drill"), jstr(r, "mode"), jstr(r, "result"));
	if (json_is_true(json_object_get(ach, "complete")))
		fprintf(f, "  RTO %s (objective %s): %s\n", dur(jint(ach, "rto_us"), b1, sizeof(b1)),
			dur(jint(obj, "rto_us"), b2, sizeof(b2)),
			json_is_true(json_object_get(ach, "rto_met")) ? "met" : "NOT met");
	else
		fprintf(f, "  RTO not reached (objective %s)\n", dur(jint(obj, "rto_us"), b2, sizeof(b2)));
	if (rpo_reached(ach))
		fprintf(f, "  RPO %s (objective %s): %s\n", dur(jint(ach, "rpo_us"), b1, sizeof(b1)),
			dur(jint(obj, "rpo_us"), b2, sizeof(b2)),
			json_is_true(json_object_get(ach, "rpo_met")) ? "met" : "NOT met");
	else
		fprintf(f, "  RPO not reached (objective %s)\n",
			dur(jint(obj, "rpo_us"), b2, sizeof(b2)));
	if (*jstr(r, "message"))
		fprintf(f, "  %s\n", jstr(r, "message"));
	json_array_foreach(json_object_get(r, "steps"), i, x)
		if (*jstr(x, "warning"))
			fprintf(f, "  WARNING: step %d (%s): %s\n", (int)jint(x, "id"), jstr(x, "label"),
				jstr(x, "warning"));
	json_array_foreach(json_object_get(r, "groups"), i, x) {
		json_t *db;
		size_t k;
		json_array_foreach(json_object_get(x, "databases"), k, db) {
			char a[600], t[40];
			if (!strcmp(jstr(r, "mode"), "test")) {
				fprintf(f, "  database %s (%s): test copy cloned at %s (timeline %d), last transaction %s\n",
					jstr(db, "name"), jstr(db, "source"),
					*jstr(db, "promoted_lsn") ? jstr(db, "promoted_lsn") : "-", (int)jint(db, "timeline"),
					jint(db, "last_transaction_us") ? units_fmt_time(jint(db, "last_transaction_us"), t, sizeof(t)) : "none");
				continue;
			}
			fprintf(f, "  database %s (%s): final LSN %s, acknowledged by %s, promoted to %s; ",
				jstr(db, "name"), jstr(db, "source"), *jstr(db, "final_lsn") ? jstr(db, "final_lsn") : "-",
				acked_list(json_object_get(db, "targets"), a, sizeof(a)),
				*jstr(db, "promoted_lsn") ? jstr(db, "promoted_lsn") : "-");
			if (json_is_true(json_object_get(db, "rpo_by_lsn")))
				fprintf(f, "RPO 0 by LSN\n");
			else
				fprintf(f, "last transaction %s, data loss %s\n",
					jint(db, "last_transaction_us") ? units_fmt_time(jint(db, "last_transaction_us"), t, sizeof(t)) : "none",
					dur(jint(db, "data_loss_us"), a, sizeof(a)));
		}
	}
	fprintf(f, "  steps:\n");
	json_array_foreach(json_object_get(r, "steps"), i, x)
		fprintf(f, "    %-8s %9s  %s\n", jstr(x, "status"), dur(jint(x, "duration_us"), b1, sizeof(b1)),
			jstr(x, "label"));
	fprintf(f, "  services:\n");
	json_array_foreach(json_object_get(r, "services"), i, x)
		fprintf(f, "    %-20s %s\n", jstr(x, "name"), jstr(x, "state"));
}

int report_exit_code(json_t *r)
{
	const char *res = jstr(r, "result");
	if (!strcmp(res, "PASS"))
		return 0;
	if (!strcmp(res, "FAIL"))
		return 1;
	return !strcmp(res, "ABORT-INCOMPLETE") ? 3 : 2;
}

int report_write(json_t *doc, const char *dir, char *json_path, char *html_path, size_t len)
{
	json_t *r = json_object_get(doc, "report");
	char *text, *html;
	int rc;

	if ((rc = fs_mkdir_p(dir, 0755)) < 0)
		return err_wrap(rc, "cannot create the report directory %s", dir);
	snprintf(json_path, len, "%s/%s.json", dir, jstr(r, "drill"));
	snprintf(html_path, len, "%s/%s.html", dir, jstr(r, "drill"));
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

/* ---- verification ---- */

int report_verify(const char *file, const char *pubkey_file, char *who, size_t wlen)
{
	char *text = NULL, *msg = NULL;
	size_t len;
	json_t *doc = NULL, *r, *sig;
	json_error_t je;
	uint8_t pk[SIGN_PK_BYTES], want[SIGN_PK_BYTES], sg[SIGN_BYTES];
	char signer[17];
	size_t n1 = 0, n2 = 0;
	bool html;
	int rc;

	if ((rc = fs_read_all(file, 64 << 20, &text, &len)) < 0)
		return err_set(rc == -EFBIG ? EINVAL : -rc, "cannot read %s: %s", file,
			       rc == -EFBIG ? "larger than 64 MiB" : strerror(-rc));
	html = strncmp(text, "<!DOCTYPE html>", 15) == 0;
	if (html) {
		char *a = strstr(text, HTML_MARK), *b;
		if (!a || !(b = strstr(a, "</script>"))) {
			rc = err_set(EINVAL, "%s is not a Bascule drill report page (no embedded report)", file);
			goto out;
		}
		a += strlen(HTML_MARK);
		doc = json_loadb(a, (size_t)(b - a), JSON_REJECT_DUPLICATES, &je);
	} else {
		doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	}
	/* Bascule never writes a key twice.  A reader keeps one of the values
	 * (jansson the last, a person the first): refused as an edit. */
	if (!doc && json_error_code(&je) == json_error_duplicate_key) {
		rc = err_set(EBADMSG, "%s: a key appears twice (%s, line %d): the report was edited "
				      "after it was signed", file, je.text, je.line);
		goto out;
	}
	if (!doc || !json_is_object(r = json_object_get(doc, "report"))) {
		rc = err_set(EINVAL, "%s is not a Bascule drill report (%s)", file,
			     doc ? "no report object" : je.text);
		goto out;
	}
	sig = json_object_get(doc, "signature");
	if (!json_is_object(sig)) {
		rc = err_set(EBADMSG, "%s is not signed (the runbook had no report.signing_key)", file);
		goto out;
	}
	if (strcmp(jstr(sig, "algorithm"), "ed25519") != 0 ||
	    sodium_base642bin(pk, sizeof(pk), jstr(sig, "public_key"), strlen(jstr(sig, "public_key")),
			      NULL, &n1, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || n1 != sizeof(pk) ||
	    sodium_base642bin(sg, sizeof(sg), jstr(sig, "value"), strlen(jstr(sig, "value")), NULL, &n2,
			      NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || n2 != sizeof(sg)) {
		rc = err_set(EBADMSG, "%s: the signature block is malformed", file);
		goto out;
	}
	sign_key_id(pk, signer);
	snprintf(who, wlen, "%s", signer);
	if (pubkey_file) {
		char kid[17];
		if ((rc = sign_load_public(pubkey_file, want)) < 0)
			goto out;
		if (sodium_memcmp(want, pk, sizeof(pk)) != 0) {
			sign_key_id(want, kid);
			rc = err_set(EBADMSG, "%s was signed by key %s, not by %s (%s)", file, signer, kid,
				     pubkey_file);
			goto out;
		}
	}
	if (!(msg = canonical(r))) {
		rc = -ENOMEM;
		goto out;
	}
	if (crypto_sign_verify_detached(sg, (const uint8_t *)msg, strlen(msg), pk) != 0) {
		rc = err_set(EBADMSG, "%s: BAD SIGNATURE: the report was changed after it was signed", file);
		goto out;
	}
	if (html) {
		char *again = report_html(doc);
		bool same = again && strlen(again) == len && memcmp(again, text, len) == 0;
		free(again);
		if (!same) {
			rc = err_set(EBADMSG, "%s: the signed data is intact but the page around it was "
					      "edited (it differs from the page rendered from the signed "
					      "data)", file);
			goto out;
		}
	}
	rc = 0;
out:
	free(msg);
	free(text);
	json_decref(doc);
	return rc;
}
