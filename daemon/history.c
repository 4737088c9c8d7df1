/* history.c - what the daemon tells: the ring of recent events that
 * `bascule history` shows (cuts, acknowledgements, errors; HISTORY_LEN of
 * them), and the log lines about a target. */
#include "daemon.h"
#include "pgsource.h"
#include "log.h"
#include <stdarg.h>
#include <stdio.h>

void target_log(const struct target *t, int prio, const char *fmt, ...)
{
	char tf[NAME_MAX_LEN + 8], msg[1024];
	const char *f[] = { tf, NULL };
	va_list ap;

	snprintf(tf, sizeof(tf), "TARGET=%s", t->cfg->name);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_fields(prio, f, "target %s: %s", t->cfg->name, msg);
}

void daemon_event(struct daemon *d, const char *kind, const char *group, const char *target,
		  uint64_t epoch, const char *text)
{
	struct event_rec *e = &d->history[d->n_history++ % HISTORY_LEN];

	e->time = clock_now_usec();
	snprintf(e->kind, sizeof(e->kind), "%s", kind);
	snprintf(e->group, sizeof(e->group), "%s", group ? group : "");
	snprintf(e->target, sizeof(e->target), "%s", target ? target : "");
	e->epoch = epoch;
	snprintf(e->text, sizeof(e->text), "%s", text ? text : "");
}

void pgsrc_log(const struct pgsrc *p, int prio, const char *fmt, ...)
{
	char sf[2 * NAME_MAX_LEN + 16], msg[1024];
	const char *f[] = { sf, NULL };
	va_list ap;

	snprintf(sf, sizeof(sf), "SOURCE=%s/%s", p->group, p->name);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_fields(prio, f, "source %s/%s: %s", p->group, p->name, msg);
}
