/* drill_int.h - what the drill's own files share (plan.c, journal.c,
 * steps.c, drill.c); other callers use drill.h. */
#pragma once
#include "drill.h"

#define SEC(d) ((d)->rb->secondary.host)
#define PRI(d) ((d)->rb->primary.host)
#define MIN(x) ((uint64_t)(x) * 60000000ULL)
#define DRILL_MAX_GROUPS 256

/* plan.c */
/* The groups of RB's services, each once, in service order (at most MAX). */
size_t drill_groups(const struct runbook *rb, const char **out, size_t max);
const struct rb_service *drill_service(const struct runbook *rb, const char *name);
int drill_status_parse(const char *s, enum step_status *ret);
int drill_kind_parse(const char *s, enum step_kind *ret);
/* Add to D (its first N0 steps planned and run) the steps that undo what
 * was done, marked abort; 0, or -ENOMEM with nothing added (D->oom). */
int drill_plan_abort(struct drill *d, size_t n0);

/* journal.c */
/* Write D's journal atomically; with steps running, under D->lock. */
int drill_journal_write(struct drill *d);

/* steps.c */
/* Run step S of D: S is the caller's own copy (its results are written
 * there, nothing else of D is), steps of D are read under D->lock.  0 when
 * the step succeeded; else a negative errno and S->message says why. */
int step_exec(struct drill *d, struct step *s);
void step_msg(struct step *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
