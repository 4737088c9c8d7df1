/* log.h - one line per event, to the journal when under systemd, else stderr.
 * Never pass a secret to these functions. */
#pragma once
#include <syslog.h>

void log_init(const char *ident, int verbose);
/* FIELDS is NULL or a NULL-terminated list of "KEY=value" journal fields
 * (GROUP=, SOURCE=, TARGET=, EPOCH=) for the journal; on stderr only the message
 * is printed, so it must name its group, target or epoch itself. */
void log_fields(int prio, const char *const *fields, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The priority of LINE, a line a child wrote to stderr, when log_fields of a
 * program with its own ident "bascule-NAME" (log_init: bascule-recv,
 * bascule-vault, bascule-restore) wrote it: "IDENT: error: ..." LOG_ERR,
 * "IDENT: warning: ..." LOG_WARNING, "IDENT: ..." LOG_INFO.  -1 for any
 * other line, which the relaying process logs as it sees fit: ssh's own, a
 * sanitizer report, and "bascule NAME: ..." (a command's fatal error as
 * bascule.c prints it, or a logger whose ident has a space: it cannot be
 * told from an error). */
int log_line_prio(const char *line);
#define log_error(...) log_fields(LOG_ERR, NULL, __VA_ARGS__)
#define log_warn(...) log_fields(LOG_WARNING, NULL, __VA_ARGS__)
#define log_info(...) log_fields(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_fields(LOG_DEBUG, NULL, __VA_ARGS__)
