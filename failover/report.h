/* report.h - the drill report: JSON (machine), HTML with an SVG timeline
 * (people), a text summary (terminal), signed with Ed25519.
 *
 * The signed document is {"report": R, "signature": S}; S signs
 * "bascule-drill-report-v1\n" followed by R serialised compactly with sorted
 * keys (jansson; all numbers are integers, so the serialisation is exact).
 * The HTML page embeds the signed document and is a pure function of it, so
 * `bascule report verify` checks a page by re-rendering it: any edit to the
 * visible figures is caught, not only edits to the embedded data. */
#pragma once
#include "drill.h"
#include <jansson.h>

/* The report of D (new reference). */
json_t *report_build(const struct drill *d);
/* Sign REPORT with the key in SIGNING_KEY (NULL: unsigned) into a document. */
int report_sign(json_t *report, const char *signing_key, json_t **ret_doc);
/* The HTML page of DOC (malloc'd). */
char *report_html(json_t *doc);
/* The short text summary. */
void report_summary(json_t *report, FILE *f);
/* Write DIR/ID.json and DIR/ID.html; their paths into JSON_PATH/HTML_PATH. */
int report_write(json_t *doc, const char *dir, char *json_path, char *html_path, size_t len);
/* 0 if the objectives were met, 1 if not, 2 if the drill did not complete,
 * 3 an abort incomplete, 5 a hybrid drill stopped by a damaged night. */
int report_exit_code(json_t *report);
/* Check FILE (.json or .html).  PUBKEY_FILE pins the signer (NULL: the key in
 * the report, with a warning).  0 valid, -EBADMSG tampered or unsigned, other
 * negative errno: cannot check.  WHO (WLEN bytes) receives the signer's key id. */
int report_verify(const char *file, const char *pubkey_file, char *who, size_t len);
