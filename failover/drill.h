/* drill.h - a failover drill: its steps, its journal, its execution.
 * Planned in plan.c, journaled in journal.c, each step run by steps.c,
 * the whole run (waves in parallel, abort) in drill.c.
 *
 * A drill is planned once (the list of steps for the runbook and mode),
 * then executed step by step.  Every change of a step's state is written to
 * the journal (STATE_DIR/current.json, atomically, fsynced) before and after
 * the step runs, so a drill killed at any point can be resumed (the step
 * that was running runs again: runbook commands must be idempotent, and
 * Bascule's own steps are) or aborted (production is brought back from
 * whatever was done). */
#pragma once
#include "runbook.h"
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum drill_mode { MODE_PLAN, MODE_PLANNED, MODE_UNPLANNED, MODE_TEST, MODE_FAILBACK, MODE_HYBRID };

enum step_kind {
	ST_PRE_REPL,     /* primary: replication healthy, lag under the bound */
	ST_PRE_SEC,      /* secondary: reachable, replica readable, space */
	ST_PRE_PRIMARY,  /* failback: the old primary is reachable */
	ST_STOP,         /* primary: stop a service (force after timeout) */
	ST_SYNC,         /* primary: final sync --wait of a group */
	ST_PAUSE,        /* primary: pause a group */
	ST_PROMOTE,      /* secondary: promote a group */
	ST_CLONE,        /* secondary: clone a group (test) */
	ST_START,        /* secondary: start a service */
	ST_CHECK,        /* a service's health checks */
	ST_SWITCH,       /* traffic to the secondary */
	ST_TEST_STOP,    /* test: stop the clone's service */
	ST_UNCLONE,      /* test: remove the clones */
	ST_FB_START,     /* failback: start the reverse replication */
	ST_FB_SYNC,      /* failback: sync --wait of the reverse daemon */
	ST_FB_PAUSE,     /* failback: pause the reverse daemon's group */
	ST_SEC_STOP,     /* secondary: stop a service (failback, abort) */
	ST_FB_PROMOTE,   /* failback: promote on the primary */
	ST_FB_STOP,      /* failback: stop the reverse replication */
	ST_RESTART,      /* primary: start a service again (failback, abort) */
	ST_PCHECK,       /* failback: health checks after the restart at home */
	ST_SWITCH_BACK,  /* traffic back to the primary */
	ST_DEMOTE,       /* secondary: make the replica a replica again */
	ST_RESUME,       /* primary: resume a group's replication */
	ST_DB_STOP,      /* primary: shut a database down cleanly, read its final LSN */
	ST_DB_ACKED,     /* primary: every replica target acked that LSN */
	ST_DB_START,     /* secondary: start the promoted database (if promote left it down) */
	ST_DB_SEC_STOP,  /* secondary: stop the promoted database (abort) */
	ST_DB_RESTART,   /* primary: start the database again (abort) */
	ST_DB_TEST_START,/* test: start the database's clone on its test port */
	ST_DB_TEST_STOP, /* test: stop the clone (before the clones are removed) */
	ST_DB_REWIND,    /* failback: the old primary rewound (pg_rewind) as a standby of the secondary */
	ST_DB_FB_STANDBY,/* failback: the old primary started as that standby */
	ST_DB_FB_SHUTDOWN,/* failback: the promoted database shut down cleanly, its final LSN read */
	ST_DB_FB_CAUGHT, /* failback: the old primary holds that final LSN */
	ST_DB_FB_PROMOTE,/* failback: the old primary promoted */
	ST_HY_CHECK,     /* hybrid: intake check of the client (freshness, signatures, objects) */
	ST_HY_PICK,      /* hybrid: the night to restore (intake ls --json) */
	ST_HY_RESTORE,   /* hybrid: intake restore --load of that night */
	ST_KIND_MAX
};

enum step_status { SS_PENDING, SS_RUNNING, SS_DONE, SS_FAILED, SS_SKIPPED };

struct step {
	int id;
	enum step_kind kind;
	char label[160];
	char service[NAME_MAX_LEN + 1], group[NAME_MAX_LEN + 1], host[NAME_MAX_LEN + 1];
	char database[NAME_MAX_LEN + 1]; /* database steps: its name in the runbook */
	int sw;                  /* switch and switch-back steps: index in the runbook's switches
				  * (the runbook cannot change under a drill), else -1 */
	int par;                 /* steps with the same nonzero par run together */
	bool abort;              /* part of an abort */
	uint64_t timeout;        /* usec */
	enum step_status status;
	uint64_t start, end;     /* unix usec */
	int attempts;
	char message[512];
	char warning[256];       /* done, but something to look at (e.g. a vault in error) */
	uint64_t epoch, cut_time;/* sync, promote, clone; database-acked: the lowest acked epoch */
	bool consistent;
	/* What the step learnt, a JSON object (strings and integers only: it
	 * goes into the signed report): database-stop {checkpoint_lsn,
	 * final_lsn, timeline}, database-acked {final_lsn, targets: {NAME:
	 * {acked_lsn, epoch}}}, promote and clone {postgres: {SOURCE: {data_dir,
	 * mode, end_lsn, redo_lsn, timeline, last_transaction_us}}}; hybrid
	 * steps {night, kind, full, chain, created_unix, database, tables, rows,
	 * damaged_night} (docs/hybrid.md); "" if none. */
	char data[1536];
};

struct drill {
	char id[40];
	const struct runbook *rb;
	enum drill_mode mode;
	uint64_t at, at_epoch;   /* unplanned: --at TIME / --epoch N */
	uint64_t incident;       /* unplanned: declared incident time (usec), 0 = drill start */
	uint64_t started, ended;
	char status[16];         /* running, done, failed, aborted, abort-failed */
	char message[600];
	struct step *steps;
	size_t n, cap;
	uint64_t resumed[32];    /* when the drill was resumed */
	int n_resumed;
	char journal[4400];
	int lock_fd;
	bool quiet;
	bool oom;                /* a step could not be added: the plan is incomplete */
	/* While steps run in parallel, each on its own copy of its step, LOCK
	 * guards STEPS and the journal: a step's result is copied in, and the
	 * journal written, under it. */
	pthread_mutex_t lock;
};

const char *mode_name(enum drill_mode m);
int mode_parse(const char *s, enum drill_mode *ret);
const char *step_kind_name(enum step_kind k);
const char *step_status_name(enum step_status s);

/* New drill of RB in MODE: the steps, not yet run or journaled. */
int drill_plan(const struct runbook *rb, enum drill_mode mode, struct drill **ret);
/* Take the runbook's drill lock and write the journal; -EBUSY if another
 * drill runs, -EEXIST if an unfinished one waits for --resume or --abort. */
int drill_begin(struct drill *d);
/* Load the unfinished drill of RB (lock taken). */
int drill_load(const struct runbook *rb, struct drill **ret);
/* 0 if a loaded drill may be resumed (no abort has begun). */
int drill_resumable(const struct drill *d);
/* Run the pending steps.  0 when every step is done, else the failing
 * step's error (the drill is left resumable). */
int drill_run(struct drill *d);
/* Add the steps that bring production back, and run them; an abort that
 * failed or was interrupted runs again only its unfinished steps. */
int drill_abort(struct drill *d);
/* Print the steps with order, host and timeout (plan mode). */
void drill_print_plan(const struct drill *d, FILE *f);
/* Close out: move the journal next to the reports. */
int drill_finish(struct drill *d);
void drill_free(struct drill *d);
json_t *drill_to_json(const struct drill *d);
/* STEP's data as a new JSON object, NULL if it has none. */
json_t *drill_step_data(const struct step *s);
