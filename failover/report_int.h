/* report_int.h - what the report's own files share (report.c,
 * report_html.c, report_text.c, report_sign.c); other callers use report.h. */
#pragma once
#include "report.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The context string the signature covers before the canonical report. */
#define SIG_CONTEXT "bascule-drill-report-v1\n"
/* Where a page embeds its signed document. */
#define HTML_MARK "<script type=\"application/json\" id=\"bascule-report\">"

/* The string at K of O, "" if none. */
const char *report_jstr(json_t *o, const char *k);
/* The integer at K of O, 0 if none or negative. */
uint64_t report_jint(json_t *o, const char *k);
/* US as people read a duration ("0.16 s", "12.3 s", "4m 05s", "2h 10m"), in BUF. */
const char *report_dur(uint64_t us, char *buf, size_t len);
/* False only when the achieved figures say the RPO was not reached. */
bool report_rpo_reached(json_t *ach);
/* "secondary 0/3000148 (epoch 12), ..." of a database's TARGETS, in BUF ("-" if none). */
const char *report_acked_list(json_t *targets, char *buf, size_t len);
