/* drill_int.h - what the drill's own files share (plan.c, journal.c,
 * steps.c, drill.c); other callers use drill.h. */
#pragma once
#include "drill.h"
#include "subproc.h"

#define SEC(d) ((d)->rb->secondary.host)
#define PRI(d) ((d)->rb->primary.host)
/* Where the services start: the secondary, or a hybrid runbook's host. */
#define SVC_HOST(d) (runbook_is_hybrid((d)->rb) ? (d)->rb->hybrid.host : SEC(d))
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


/* steps.c: a step while it runs (shared with dbsteps.c) */
struct step_ctx {
	struct drill *d;
	struct step *s;            /* the caller's copy of the step */
	struct subproc_result res; /* of the last command */
	char *env_buf[9];
	const char *env[10];
};
/* Run ARGV on HOST; 0 if it exited 0, else a negative errno with the step's
 * message set (-ETIMEDOUT, -EIO for a failure); the output in C->res. */
int step_run(struct step_ctx *c, const char *host, const char *const *argv, uint64_t timeout,
	     const char *what);
/* A runbook command (a string) on HOST. */
int step_run_sh(struct step_ctx *c, const char *host, const char *cmd, uint64_t timeout, const char *what);
/* `BASCULE ARGS...` on HOST, BASCULE a command string (the runbook's
 * bascule for it, or a prefix such as "sudo -n -u postgres"): run as
 * sh -c 'BASCULE "$@"' with the arguments as they are. */
int step_run_bascule(struct step_ctx *c, const char *host, const char *bascule, const char *const *args,
		     uint64_t timeout, const char *what);
/* The JSON object of the last line of the last command's output, or NULL
 * with the step's message naming WHAT. */
json_t *step_answer(struct step_ctx *c, const char *what);
/* Add "NAME=VALUE" to the environment of the step's next commands. */
int step_env_add(struct step_ctx *c, const char *name, const char *value);
/* The epoch the last done step of KIND for GROUP reached, 0 if none (read
 * under D->lock). */
uint64_t drill_step_epoch(struct drill *d, const char *group, enum step_kind kind);
/* The data of the last done step of KIND for GROUP (and DATABASE, when not
 * NULL), a new reference, or NULL (read under D->lock). */
json_t *drill_step_find_data(struct drill *d, enum step_kind kind, const char *group, const char *database);

/* Arguments of one bascule command a step runs, at most. */
#define ARGS_MAX 24
/* The disks of GROUP as the secondary's commands see them (malloc'd; SVC
 * the step's service, or NULL). */
char *step_disks_dir(const struct drill *d, const char *group, const struct rb_service *svc);

/* repsteps.c: the replication steps; 0 or a negative errno, the step's
 * message set either way. */
int repl_precheck(struct step_ctx *c);
int repl_precheck_secondary(struct step_ctx *c);
/* The final sync (REVERSE: of the failback's replication). */
int repl_sync(struct step_ctx *c, bool reverse);
int repl_pause(struct step_ctx *c, bool reverse, bool resume);
/* `BASCULE replica VERB --root ROOT --key KEY --group G [--json] EXTRA...`. */
int repl_replica(struct step_ctx *c, const char *verb, const char *root, const char *key,
		 const char *bascule, const char *const *extra);
int repl_promote(struct step_ctx *c);
int repl_clone(struct step_ctx *c);
int repl_unclone(struct step_ctx *c);

/* svcsteps.c: the service steps, the same way. */
/* SECONDARY: the service's copy at the secondary (or the test copy). */
int svc_stop(struct step_ctx *c, bool secondary);
/* TEST: the isolated test copy; HOME: the restart at the primary (failback). */
int svc_start(struct step_ctx *c, bool test, bool home);
int svc_checks(struct step_ctx *c, bool home);
int svc_switch(struct step_ctx *c, bool back);
int svc_reverse(struct step_ctx *c);

/* dbsteps.c: the database steps (docs/failover.md, "Databases") */
/* The runbook's database of the step, or NULL with the message set. */
const struct rb_database *db_of_step(struct step_ctx *c);
/* PROG under the database's pg_bin (malloc'd). */
char *db_prog(const struct rb_database *db, const char *prog);
/* ARGV on the step's host, through PREFIX (a command string such as
 * read_as: sh -c 'PREFIX "$@"') if not NULL. */
int db_run_as(struct step_ctx *c, const char *prefix, const char *const *argv, uint64_t timeout, const char *what);
/* The value of KEY in pg_controldata's TEXT, into BUF; false if none. */
bool db_control_field(const char *text, const char *key, char *buf, size_t len);
struct db_final {
	uint64_t checkpoint, final; /* the shutdown checkpoint, where it ends */
	uint32_t tli;
};
/* The cluster in DIR on the step's host (read through PREFIX) is shut
 * down cleanly: its shutdown checkpoint and where it ends (the final LSN),
 * from pg_controldata and pg_waldump; else the message says why. */
int db_shutdown_lsn(struct step_ctx *c, const struct rb_database *db, const char *prefix, const char *dir,
		    struct db_final *ret);
int db_stop(struct step_ctx *c);
int db_acked(struct step_ctx *c);
int db_start(struct step_ctx *c, bool stop);
int db_restart(struct step_ctx *c);
/* Precheck: each database's source is a postgres source in STATUS (the
 * primary's `bascule status --json`). */
int db_precheck(struct step_ctx *c, json_t *status);
/* Promote or clone answered ANSWER: its PostgreSQL sources into the step's
 * data, a phrase about them appended to MSG. */
void db_promoted(struct step_ctx *c, json_t *answer, char *msg, size_t len);
/* The extra arguments of promote for GROUP's databases (--pg-user, ...),
 * appended to ARGS at *N (at most MAX). */
void db_promote_args(const struct drill *d, const char *group, const char **args, size_t *n, size_t max);

/* dbfailback.c: a database back at home (docs/failover.md, "Databases") */
/* The promoted database's data directory at the secondary. */
void db_secondary_dir(const struct drill *d, const struct rb_database *db, char *buf, size_t len);
int db_rewind(struct step_ctx *c);
int db_fb_standby(struct step_ctx *c);
int db_fb_shutdown(struct step_ctx *c);
int db_fb_caught(struct step_ctx *c);
int db_fb_promote(struct step_ctx *c);

/* hybrid.c: the steps of a hybrid drill (docs/hybrid.md, "The hybrid drill") */
int hybrid_check(struct step_ctx *c);
int hybrid_pick(struct step_ctx *c);
int hybrid_restore(struct step_ctx *c);

/* steps.c */
/* Run step S of D: S is the caller's own copy (its results are written
 * there, nothing else of D is), steps of D are read under D->lock.  0 when
 * the step succeeded; else a negative errno and S->message says why. */
int step_exec(struct drill *d, struct step *s);
void step_msg(struct step *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
