/* report_html.c - the report's HTML page: tables and an SVG timeline, a
 * pure function of the signed document (report_verify re-renders it). */
#include "report_int.h"
#include "units.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	uint64_t lo = UINT64_MAX, hi = 0, rto0 = report_jint(r, "rto_start_us");
	uint64_t rto_line = rto0 + report_jint(obj, "rto_us"), step;
	size_t i, rows = json_array_size(steps) + json_array_size(svcs) + 1;
	/* The right margin holds half of the last tick's label. */
	const int W = 1100, L = 330, RW = W - L - 60, RH = 20, TOP = 30;
	int H = TOP + (int)rows * RH + 40;
	char b[64];

	json_array_foreach(steps, i, s) {
		if (report_jint(s, "start_us") && report_jint(s, "start_us") < lo)
			lo = report_jint(s, "start_us");
		if (report_jint(s, "end_us") > hi)
			hi = report_jint(s, "end_us");
	}
	if (rto0 && rto0 < lo)
		lo = rto0;
	if (lo == UINT64_MAX)
		lo = report_jint(r, "started_us");
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
		uint64_t a = report_jint(s, "start_us"), e = report_jint(s, "end_us");
		row_label(f, y, report_jstr(s, "label"));
		if (a) {
			int x1 = X(a), x2 = e > a ? X(e) : X(a) + 2;
			fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>",
				x1, y + 3, x2 - x1 < 2 ? 2 : x2 - x1, RH - 6,
				color(report_jstr(s, "status"), json_is_true(json_object_get(s, "abort"))));
			esc(f, report_jstr(s, "label"));
			fprintf(f, ": %s, %s</title></rect>\n", report_jstr(s, "status"),
				report_dur(e > a ? e - a : 0, b, sizeof(b)));
		}
		y += RH;
	}
	y += RH;
	fprintf(f, "<text x=\"4\" y=\"%d\" font-weight=\"bold\">services (down → up)</text>\n", y - 6);
	json_array_foreach(svcs, i, s) {
		uint64_t a = report_jint(s, "down_us"), e = report_jint(s, "up_us");
		row_label(f, y, report_jstr(s, "name"));
		if (a && e > a)
			fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#34699a\" "
				   "opacity=\"0.8\"/>\n", X(a), y + 3, X(e) - X(a) < 2 ? 2 : X(e) - X(a), RH - 6);
		y += RH;
	}
	if (rto0) {
		fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\" "
			   "stroke-dasharray=\"2,2\"/>\n", X(rto0), TOP - 5, X(rto0), H - 30);
		if (report_jint(ach, "rto_end_us"))
			fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#2e8b57\" "
				   "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\" fill=\"#2e8b57\" "
				   "text-anchor=\"end\">achieved RTO %s</text>\n",
				X(report_jint(ach, "rto_end_us")), TOP - 5, X(report_jint(ach, "rto_end_us")), H - 30,
				X(report_jint(ach, "rto_end_us")) - 4, TOP - 16, report_dur(report_jint(ach, "rto_us"), b, sizeof(b)));
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
			report_dur(report_jint(obj, "rto_us"), b, sizeof(b)));
	fprintf(f, "</svg>\n");
#undef X
}


/* "achieved RTO | 0.16 s | objective | 1m 00s | met"; a figure the drill did
 * not reach has no verdict (the result says why). */
static void figure_row(FILE *f, const char *what, bool reached, uint64_t us, uint64_t objective,
		       bool met)
{
	char b1[64], b2[64];

	fprintf(f, "<tr><th>achieved %s</th><td>%s</td><th>objective</th><td>%s</td><td>%s</td></tr>\n",
		what, reached ? report_dur(us, b1, sizeof(b1)) : "not reached",
		report_dur(objective, b2, sizeof(b2)), !reached ? "-" : met ? "met" : "NOT met");
}

/* The databases of the report's groups: the evidence of their RPO. */
static void html_databases(FILE *f, json_t *r)
{
	json_t *g, *x;
	size_t i, k;
	bool any = false, test = !strcmp(report_jstr(r, "mode"), "test");
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
			esc(f, report_jstr(x, "name"));
			fprintf(f, "</td><td>");
			esc(f, report_jstr(x, "source"));
			fprintf(f, "</td><td>");
			esc(f, *report_jstr(x, "final_lsn") ? report_jstr(x, "final_lsn") : "-");
			fprintf(f, "</td><td>");
			esc(f, report_acked_list(json_object_get(x, "targets"), b, sizeof(b)));
			fprintf(f, "</td><td>");
			esc(f, *report_jstr(x, "promoted_lsn") ? report_jstr(x, "promoted_lsn") : "-");
			fprintf(f, " <span class=\"muted\">timeline %d, %s</span></td><td class=\"nw\">%s</td><td>%s%s</td></tr>\n",
				(int)report_jint(x, "timeline"), *report_jstr(x, "standby") ? report_jstr(x, "standby") : "-",
				report_jint(x, "last_transaction_us") ? units_fmt_time(report_jint(x, "last_transaction_us"), t, sizeof(t)) : "-",
				report_dur(report_jint(x, "data_loss_us"), b, sizeof(b)),
				json_is_true(json_object_get(x, "rpo_by_lsn")) ? " (0 by LSN)" : "");
		}
	}
	if (any)
		fprintf(f, "</table>\n");
}

/* "<tr><th>TH</th><td>VALUE</td></tr>", VALUE escaped. */
static void th_row(FILE *f, const char *th, const char *value)
{
	fprintf(f, "<tr><th>%s</th><td>", th);
	esc(f, value);
	fprintf(f, "</td></tr>\n");
}

/* A hybrid drill's restore: the client's night and what was loaded. */
static void html_hybrid(FILE *f, json_t *r)
{
	json_t *h = json_object_get(r, "hybrid");
	char t[40];

	if (!json_is_object(h))
		return;
	fprintf(f, "<h2>Hybrid restore</h2>\n<table>");
	th_row(f, "client", report_jstr(h, "client"));
	th_row(f, "intake", report_jstr(h, "intake"));
	fprintf(f, "<tr><th>night</th><td>");
	esc(f, *report_jstr(h, "night") ? report_jstr(h, "night") : "none chosen");
	fprintf(f, " <span class=\"muted\">(%s", *report_jstr(h, "kind") ? report_jstr(h, "kind") : "-");
	if (*report_jstr(h, "full_night")) {
		fprintf(f, ", chain of %" PRIu64 " from ", report_jint(h, "chain"));
		esc(f, report_jstr(h, "full_night"));
	}
	fprintf(f, "; wanted: ");
	esc(f, report_jstr(h, "night_wanted"));
	fprintf(f, ")</span></td></tr>\n");
	th_row(f, "dump uploaded",
	       report_jint(h, "dump_created_us") ? units_fmt_time(report_jint(h, "dump_created_us"), t, sizeof(t)) : "-");
	fprintf(f, "<tr><th>loaded into</th><td>");
	esc(f, *report_jstr(h, "database") ? report_jstr(h, "database") : "-");
	fprintf(f, " <span class=\"muted\">%" PRIu64 " tables, %" PRIu64 " rows</span></td></tr>\n",
		report_jint(h, "tables"), report_jint(h, "rows"));
	if (*report_jstr(h, "damaged_night")) {
		fprintf(f, "<tr><th class=\"FAIL\">damaged night</th><td class=\"FAIL\">");
		esc(f, report_jstr(h, "damaged_night"));
		fprintf(f, "</td></tr>\n");
	}
	fprintf(f, "</table>\n");
}

char *report_html(json_t *doc)
{
	json_t *r = json_object_get(doc, "report"), *sig = json_object_get(doc, "signature");
	json_t *ach = json_object_get(r, "achieved"), *obj = json_object_get(r, "objectives"), *x;
	char *out = NULL, *embedded, b1[64], t[40];
	size_t len = 0, i;
	FILE *f = open_memstream(&out, &len);
	const char *result = report_jstr(r, "result");

	if (!f)
		return NULL;
	fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>Drill ");
	esc(f, report_jstr(r, "drill"));
	fprintf(f, " — ");
	esc(f, report_jstr(r, "runbook_name"));
	fprintf(f, "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}"
		   "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
		   "text-align:left;font-size:13px}.PASS{color:#2e8b57}"
		   ".FAIL,.ERROR,.ABORT-INCOMPLETE{color:#c0392b}"
		   ".ABORTED{color:#7b5ea7}.WARN{color:#b9770e}.nw{white-space:nowrap}.big{font-size:28px;font-weight:bold}"
		   ".muted{color:#666;font-size:12px}</style></head><body>\n");
	fprintf(f, "<h1>Failover drill: ");
	esc(f, report_jstr(r, "runbook_name"));
	fprintf(f, "</h1>\n<p class=\"big %s\">%s</p>\n", result, result);
	fprintf(f, "<table><tr><th>mode</th><td>%s</td></tr>\n", report_jstr(r, "mode"));
	fprintf(f, "<tr><th>drill</th><td>");
	esc(f, report_jstr(r, "drill"));
	fprintf(f, "</td></tr>\n<tr><th>started</th><td>%s</td></tr>\n",
		units_fmt_time(report_jint(r, "started_us"), t, sizeof(t)));
	figure_row(f, "RTO", json_is_true(json_object_get(ach, "complete")), report_jint(ach, "rto_us"),
		   report_jint(obj, "rto_us"), json_is_true(json_object_get(ach, "rto_met")));
	figure_row(f, "RPO", report_rpo_reached(ach), report_jint(ach, "rpo_us"), report_jint(obj, "rpo_us"),
		   json_is_true(json_object_get(ach, "rpo_met")));
	fprintf(f, "<tr><th>runbook</th><td colspan=\"4\">");
	esc(f, report_jstr(r, "runbook"));
	fprintf(f, " <span class=\"muted\">BLAKE2b %.16s…</span></td></tr>\n", report_jstr(r, "runbook_blake2b"));
	fprintf(f, "<tr><th>signed by</th><td colspan=\"4\">%s</td></tr>\n",
		json_is_object(sig) ? report_jstr(sig, "key_id") : "NOT SIGNED");
	if (*report_jstr(r, "message")) {
		fprintf(f, "<tr><th>message</th><td colspan=\"4\">");
		esc(f, report_jstr(r, "message"));
		fprintf(f, "</td></tr>\n");
	}
	json_array_foreach(json_object_get(r, "steps"), i, x) {
		if (!*report_jstr(x, "warning"))
			continue;
		fprintf(f, "<tr><th class=\"WARN\">warning</th><td colspan=\"4\" class=\"WARN\">"
			   "step %d (", (int)report_jint(x, "id"));
		esc(f, report_jstr(x, "label"));
		fprintf(f, "): ");
		esc(f, report_jstr(x, "warning"));
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
		uint64_t a = report_jint(x, "down_us"), e = report_jint(x, "up_us");
		fprintf(f, "<tr><td>");
		esc(f, report_jstr(x, "name"));
		fprintf(f, "</td><td>");
		esc(f, report_jstr(x, "group"));
		fprintf(f, "</td><td>%d</td><td>", (int)report_jint(x, "wave"));
		esc(f, report_jstr(x, "state"));
		fprintf(f, "</td><td>%s</td></tr>\n", a && e > a ? report_dur(e - a, b1, sizeof(b1)) : "-");
	}
	fprintf(f, "</table>\n");
	/* A hybrid drill replicates nothing: its restore has a table of its own. */
	if (!json_is_object(json_object_get(r, "hybrid"))) {
		fprintf(f, "<h2>Replicas</h2>\n<table><tr><th>group</th><th>epoch</th><th>cut</th>"
			   "<th>capture</th><th>final sync epoch</th><th>data loss</th></tr>\n");
		json_array_foreach(json_object_get(r, "groups"), i, x) {
			fprintf(f, "<tr><td>");
			esc(f, report_jstr(x, "name"));
			if (json_is_null(json_object_get(x, "epoch"))) {
				fprintf(f, "</td><td colspan=\"5\">not promoted</td></tr>\n");
				continue;
			}
			fprintf(f, "</td><td>%" PRIu64 "</td><td>%s</td><td>%s</td><td>%" PRIu64 "</td><td>%s</td></tr>\n",
				report_jint(x, "epoch"), units_fmt_time(report_jint(x, "cut_time_us"), t, sizeof(t)),
				json_is_true(json_object_get(x, "consistent")) ? "consistent" : "fuzzy",
				report_jint(x, "synced_epoch"), report_dur(report_jint(x, "data_loss_us"), b1, sizeof(b1)));
		}
		fprintf(f, "</table>\n");
	}
	html_databases(f, r);
	html_hybrid(f, r);
	fprintf(f, "<h2>Steps</h2>\n<table><tr><th>#</th><th>step</th><th>host</th>"
		   "<th>status</th><th>start</th><th>duration</th><th>result</th></tr>\n");
	json_array_foreach(json_object_get(r, "steps"), i, x) {
		fprintf(f, "<tr><td>%d</td><td>", (int)report_jint(x, "id"));
		esc(f, report_jstr(x, "label"));
		fprintf(f, "%s</td><td>", json_is_true(json_object_get(x, "abort")) ? " (abort)" : "");
		esc(f, report_jstr(x, "host"));
		fprintf(f, "</td><td style=\"color:%s\">%s</td><td class=\"nw\">%s</td><td>%s</td><td>",
			color(report_jstr(x, "status"), false), report_jstr(x, "status"),
			report_jint(x, "start_us") ? units_fmt_time(report_jint(x, "start_us"), t, sizeof(t)) : "-",
			report_dur(report_jint(x, "duration_us"), b1, sizeof(b1)));
		esc(f, report_jstr(x, "message"));
		if (*report_jstr(x, "warning")) {
			fprintf(f, "<br><span class=\"WARN\">warning: ");
			esc(f, report_jstr(x, "warning"));
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
