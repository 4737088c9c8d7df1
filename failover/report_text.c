/* report_text.c - the short summary of a report printed on the terminal. */
#include "report_int.h"
#include "units.h"
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void report_summary(json_t *r, FILE *f)
{
	json_t *ach = json_object_get(r, "achieved"), *obj = json_object_get(r, "objectives"), *x;
	char b1[64], b2[64];
	size_t i;

	fprintf(f, "\nDrill %s (%s): %s\n", report_jstr(r, "drill"), report_jstr(r, "mode"), report_jstr(r, "result"));
	if (json_is_true(json_object_get(ach, "complete")))
		fprintf(f, "  RTO %s (objective %s): %s\n", report_dur(report_jint(ach, "rto_us"), b1, sizeof(b1)),
			report_dur(report_jint(obj, "rto_us"), b2, sizeof(b2)),
			json_is_true(json_object_get(ach, "rto_met")) ? "met" : "NOT met");
	else
		fprintf(f, "  RTO not reached (objective %s)\n", report_dur(report_jint(obj, "rto_us"), b2, sizeof(b2)));
	if (report_rpo_reached(ach))
		fprintf(f, "  RPO %s (objective %s): %s\n", report_dur(report_jint(ach, "rpo_us"), b1, sizeof(b1)),
			report_dur(report_jint(obj, "rpo_us"), b2, sizeof(b2)),
			json_is_true(json_object_get(ach, "rpo_met")) ? "met" : "NOT met");
	else
		fprintf(f, "  RPO not reached (objective %s)\n",
			report_dur(report_jint(obj, "rpo_us"), b2, sizeof(b2)));
	if (*report_jstr(r, "message"))
		fprintf(f, "  %s\n", report_jstr(r, "message"));
	json_array_foreach(json_object_get(r, "steps"), i, x)
		if (*report_jstr(x, "warning"))
			fprintf(f, "  WARNING: step %d (%s): %s\n", (int)report_jint(x, "id"), report_jstr(x, "label"),
				report_jstr(x, "warning"));
	json_array_foreach(json_object_get(r, "groups"), i, x) {
		json_t *db;
		size_t k;
		json_array_foreach(json_object_get(x, "databases"), k, db) {
			char a[600], t[40];
			if (!strcmp(report_jstr(r, "mode"), "test")) {
				fprintf(f, "  database %s (%s): test copy cloned at %s (timeline %d), last transaction %s\n",
					report_jstr(db, "name"), report_jstr(db, "source"),
					*report_jstr(db, "promoted_lsn") ? report_jstr(db, "promoted_lsn") : "-", (int)report_jint(db, "timeline"),
					report_jint(db, "last_transaction_us") ? units_fmt_time(report_jint(db, "last_transaction_us"), t, sizeof(t)) : "none");
				continue;
			}
			fprintf(f, "  database %s (%s): final LSN %s, acknowledged by %s, promoted to %s; ",
				report_jstr(db, "name"), report_jstr(db, "source"), *report_jstr(db, "final_lsn") ? report_jstr(db, "final_lsn") : "-",
				report_acked_list(json_object_get(db, "targets"), a, sizeof(a)),
				*report_jstr(db, "promoted_lsn") ? report_jstr(db, "promoted_lsn") : "-");
			if (json_is_true(json_object_get(db, "rpo_by_lsn")))
				fprintf(f, "RPO 0 by LSN\n");
			else
				fprintf(f, "last transaction %s, data loss %s\n",
					report_jint(db, "last_transaction_us") ? units_fmt_time(report_jint(db, "last_transaction_us"), t, sizeof(t)) : "none",
					report_dur(report_jint(db, "data_loss_us"), a, sizeof(a)));
		}
	}
	{
		json_t *h = json_object_get(r, "hybrid");
		if (json_is_object(h) && *report_jstr(h, "damaged_night"))
			fprintf(f, "  client %s: night %s is DAMAGED: nothing of it was loaded\n", report_jstr(h, "client"),
				report_jstr(h, "damaged_night"));
		else if (json_is_object(h) && *report_jstr(h, "database"))
			fprintf(f, "  client %s: night %s loaded into %s (%" PRIu64 " tables, %" PRIu64 " rows)\n",
				report_jstr(h, "client"), report_jstr(h, "night"), report_jstr(h, "database"),
				report_jint(h, "tables"), report_jint(h, "rows"));
	}
	fprintf(f, "  steps:\n");
	json_array_foreach(json_object_get(r, "steps"), i, x)
		fprintf(f, "    %-8s %9s  %s\n", report_jstr(x, "status"), report_dur(report_jint(x, "duration_us"), b1, sizeof(b1)),
			report_jstr(x, "label"));
	fprintf(f, "  services:\n");
	json_array_foreach(json_object_get(r, "services"), i, x)
		fprintf(f, "    %-20s %s\n", report_jstr(x, "name"), report_jstr(x, "state"));
}