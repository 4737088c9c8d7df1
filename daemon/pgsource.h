/* pgsource.h - a PostgreSQL source in basculed (docs/postgres.md).
 *
 *   pgsrc ─┬─ pgstream children (lib/pgpipe): the stream (slot, WAL), a
 *          │  base backup on a connection of its own, short probes of the
 *          │  primary's WAL position for `bascule sync`
 *          ├─ walspool: WAL segments in state_dir, written durably by a
 *          │  thread (pgwriter), trimmed to wal_spool_max
 *          └─ pgbase: base backups in state_dir, written by a thread
 *
 * The loop never writes or fsyncs the spool itself: frames decoded from the
 * child go to a writer thread's bounded queue (the child's pipe is not
 * read while it is full), and the thread tells the loop through an eventfd
 * what is durable.  Only then is WAL reported flushed to PostgreSQL
 * (synchronous: local), or once every replica target has acknowledged it
 * (synchronous: remote). */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include "config.h"
#include "hash.h"
#include "name.h"
#include "pgpipe.h"
#include "pgproto.h"

struct daemon;
struct group;
struct source;
struct child;

/* ---- pgwriter.c: a thread applying queued operations, in order ---- */

struct pgw_op {
	struct pgw_op *next;
	uint8_t type;              /* the owner's operation codes */
	uint32_t tli;
	uint64_t lsn, arg;
	char name[256];
	uint32_t len;
	uint8_t data[];            /* LEN bytes */
};

struct pgwriter {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pgw_op *head, *tail;
	size_t queued, max;        /* bytes of data queued; the bound */
	bool stop, running;
	int efd;                   /* the thread writes 1 after each batch */
	/* Called on the thread: APPLY for each operation (0, or a negative
	 * errno whose sentence is kept), IDLE when the queue is empty (the
	 * batch is done: make it durable). */
	int (*apply)(void *ctx, const struct pgw_op *op);
	int (*idle)(void *ctx);
	void *ctx;
	int err;                   /* the first failure (then every operation is dropped) */
	char errmsg[512];
	uint64_t done;             /* operations applied (or dropped) */
};

/* Start the thread; 0 or a negative errno.  MAX bounds the queued data. */
int pgwriter_start(struct pgwriter *w, size_t max, int (*apply)(void *, const struct pgw_op *),
		   int (*idle)(void *), void *ctx);
/* Queue an operation (DATA copied); -ENOBUFS when the queue holds MAX bytes
 * already (nothing queued: try again after the thread's next batch). */
int pgwriter_put(struct pgwriter *w, uint8_t type, uint32_t tli, uint64_t lsn, uint64_t arg, const char *name,
		 const void *data, uint32_t len);
/* Room for LEN more bytes now. */
bool pgwriter_room(struct pgwriter *w, size_t len);
/* The first error (0: none) with its sentence copied into MSG; operations
 * queued so far are done when *RET_DONE reaches their count. */
int pgwriter_status(struct pgwriter *w, char *msg, size_t len, uint64_t *ret_done);
/* Operations queued since the start (their count). */
uint64_t pgwriter_queued_ops(struct pgwriter *w);
/* Clear a recorded error (the owner has started afresh). */
void pgwriter_clear(struct pgwriter *w);
/* Let the thread finish what is queued, then join it.  Accepts a writer
 * never started. */
void pgwriter_stop(struct pgwriter *w);

/* ---- walspool.c: the WAL of a source in state_dir ---- */

/* Files: DIR/info (system id, segment size, timeline of the WAL held) and
 * one file per segment, named as in pg_wal, the newest NAME.partial until
 * it is complete.  WAL is contiguous from start to durable. */
struct walspool {
	char dir[4200];
	int dirfd;
	/* the loop's view, set when it queues WS_INIT (what will be) */
	uint64_t system_id;
	uint32_t segsize, tli;     /* 0: no WAL held yet */
	uint64_t gen;              /* changes at each WS_INIT */
	/* the loop's: the newest WAL queued for the thread (synchronous:
	 * remote), [tail_start, tail_end) at tail[lsn % WS_TAIL], read before
	 * the thread has written it */
	uint8_t *tail;
	uint64_t tail_start, tail_end;
	/* published by the thread */
	_Atomic uint64_t start;    /* first LSN held (a segment start) */
	_Atomic uint64_t durable;  /* end of the durable WAL */
	_Atomic uint64_t readable; /* end of the WAL written to its files (>= durable;
				    * in the page cache, durable only up to durable) */
	_Atomic uint64_t bytes;    /* of segment files */
	/* the thread's */
	uint32_t wseg, wtli;       /* segment size and timeline it writes */
	int fd;
	uint32_t fd_tli;
	uint64_t fd_segno, written, synced, unsynced;
	struct pgwriter w;
};

enum { WS_INIT = 1, WS_BEGIN, WS_DATA, WS_TRIM };
#define WS_TAIL (4u << 20)         /* WAL kept in memory for the send, at most */

/* Open DIR (created), read what it holds: the newest segment's start (or
 * the end of the newest complete one) is where streaming resumes; start
 * the writer thread.  0 or a negative errno with a sentence. */
int walspool_open(struct walspool *ws, const char *dir);
void walspool_close(struct walspool *ws);
/* Queue a fresh start for this system: WAL of another system or timeline is
 * removed (KEEP false) or kept. */
int walspool_init(struct walspool *ws, uint64_t system_id, uint32_t segsize, uint32_t tli, bool keep);
/* The LSN where streaming must resume (0: nothing held, the slot decides). */
uint64_t walspool_resume(const struct walspool *ws);
/* Read LEN bytes of WAL at LSN (within [start, walspool_ready(ws))) into
 * BUF: from the tail kept in memory, else from the files. */
int walspool_read(struct walspool *ws, uint64_t lsn, void *buf, uint32_t len);
/* Keep LEN bytes of WAL at LSN, just queued, in the tail (WAL not
 * following the tail starts it afresh); 0 or -ENOMEM. */
int walspool_tail_put(struct walspool *ws, uint64_t lsn, const void *data, uint32_t len);
/* The tail can take LEN more bytes without wrapping past the files' end
 * (walspool_readable): what was cut from it stays readable. */
bool walspool_tail_room(struct walspool *ws, uint32_t len);
/* The end of the WAL walspool_read can give: written to the files, or
 * held in the tail from there on. */
uint64_t walspool_ready(struct walspool *ws);
/* Queue the removal of every segment wholly before LSN. */
int walspool_trim(struct walspool *ws, uint64_t lsn);
static inline uint64_t walspool_start(struct walspool *ws) { return atomic_load(&ws->start); }
static inline uint64_t walspool_durable(struct walspool *ws) { return atomic_load(&ws->durable); }
static inline uint64_t walspool_readable(struct walspool *ws) { return atomic_load(&ws->readable); }
static inline uint64_t walspool_bytes(struct walspool *ws) { return atomic_load(&ws->bytes); }

/* ---- pgbase.c: base backups in state_dir ---- */

#define PGBASE_MAX_FILES 66        /* base.tar, 64 tablespaces, backup_manifest */

struct pgbase_file {
	char name[NAME_MAX_LEN + 1];
	uint64_t size;
};

/* A complete base backup: DIR/base/ID (hex), its files and a meta file
 * written last. */
struct pgbase {
	uint64_t id;               /* its start LSN: base_id on the wire */
	uint32_t tli;
	uint64_t end_lsn;          /* consistent once WAL is replayed to here */
	uint64_t system_id;
	uint64_t time;             /* unix usec when it was complete */
	uint64_t bytes;            /* raw bytes of its files */
	uint8_t digest[DIGEST_BYTES]; /* base_digest (docs/protocol.md, section 7) */
	uint32_t n_files;
	struct pgbase_file files[PGBASE_MAX_FILES];
};

struct pgbases {
	char dir[4200];            /* DIR/base */
	bool have;                 /* NEWEST holds a complete base */
	struct pgbase newest;
	/* the one being written (the thread's) */
	struct pgwriter w;
	struct pgbase cur;
	int fd, dirfd;             /* the file being written; DIR/base/tmp */
	/* published by the thread when a base is complete */
	pthread_mutex_t lock;
	bool done;
	struct pgbase result;
};

enum { PB_START = 1, PB_ARCHIVE, PB_MANIFEST, PB_DATA, PB_END, PB_ABORT };

/* Open DIR/base (created): incomplete bases go, the newest complete one is
 * loaded, older ones removed; start the writer.  0 or a negative errno. */
int pgbases_open(struct pgbases *b, const char *dir, uint64_t system_id);
void pgbases_close(struct pgbases *b);
/* A base completed by the thread: true and NEWEST replaced (older bases
 * removed; open descriptors of jobs keep their files readable). */
bool pgbases_collect(struct pgbases *b);
/* Remove every base (a new system or timeline). */
void pgbases_forget(struct pgbases *b);
/* Open the files of NEWEST into FDS (n_files of them): 0 or -errno. */
int pgbases_open_files(struct pgbases *b, int *fds);

/* ---- pgsource.c: the source ---- */

/* ---- pgchild.c: a `bascule pgstream` child and its pipe ---- */

enum pgc_role { PGC_STREAM, PGC_BASE, PGC_PROBE };

struct pgchild {
	struct pgsrc *p;
	enum pgc_role role;
	struct child *child;
	struct pgpipe_io io;       /* rfd: the child's stdout, wfd: its stdin */
	int err_fd;
	sd_event_source *out_src, *in_src, *err_src;
	char line[512];
	size_t linelen;
	bool hello, ending;
	struct pgp_hello h;
	uint32_t error_code;       /* of its ERROR frame (0: none) */
	char error_text[PGP_MAX_TEXT + 1];
	char why[512];             /* the owner's reason to end it, if any */
	/* The owner's: FRAME for each decoded frame, ROOM before reading more
	 * (false: the pipe is not read until pgchild_resume), EXITED once it
	 * has exited (then the object is freed). */
	void (*frame)(struct pgchild *c, const struct pgp_msg *m);
	bool (*room)(struct pgchild *c);
	void (*exited)(struct pgchild *c, const siginfo_t *si);
	/* PGC_PROBE: who waits for the position */
	void (*done)(void *ctx, int r, uint64_t lsn);
	void *ctx;
	struct pgchild *next;
	struct pgp_bb_order order; /* PGC_BASE */
};

/* Start `bascule pgstream` for P (the stream with the slot, or a base
 * backup or probe connection without), its pipes watched by the loop.
 * 0 and *RET, or a negative errno with a sentence. */
int pgchild_spawn(struct pgsrc *p, enum pgc_role role, struct pgchild **ret);
/* Write what is queued in c->io.out (the rest when the pipe takes it). */
void pgchild_send(struct pgchild *c);
/* Stop reading until called again (a writer's queue had no room). */
void pgchild_resume(struct pgchild *c);
/* End it: its stdin closed (it reports its flush position and exits), then
 * SIGTERM and SIGKILL from timers.  WHY (if not NULL) is kept for
 * EXITED.  Frames are not delivered any more. */
void pgchild_end(struct pgchild *c, const char *why);
/* The owner goes away: ended, and EXITED is never called. */
void pgchild_release(struct pgchild *c);
/* "the primary said: ..." or the exit status, for a log line. */
void pgchild_describe(const struct pgchild *c, const siginfo_t *si, char *buf, size_t len);

enum pgs_state {
	PGS_BACKOFF,     /* no stream child: waiting to retry */
	PGS_CONNECTING,  /* the child connects, no HELLO yet */
	PGS_PREPARING,   /* HELLO: the spool is being set up for this server */
	PGS_STARTING,    /* START sent */
	PGS_STREAMING,   /* WAL flows */
};

struct pgchild;
struct pgwait;

struct pgsrc {
	struct daemon *d;
	struct source *s;          /* in the live group (moved at a reload) */
	const struct cfg_source *cfg;
	char group[NAME_MAX_LEN + 1], name[NAME_MAX_LEN + 1];
	unsigned refs;             /* groups that hold it (live or retired) */
	char dir[4200];
	uint8_t wal_key[DIGEST_BYTES];
	struct walspool wal;
	struct pgbases bases;
	sd_event_source *wal_src, *base_src; /* the writers' eventfds */
	/* the stream */
	enum pgs_state state;
	struct pgchild *stream, *base, *probes;
	unsigned n_probes;
	uint64_t system_id;
	uint32_t tli, segsize, server_version;
	uint64_t expect;           /* the LSN the next WAL frame must start at */
	uint64_t received;         /* end of the WAL received */
	uint64_t reported;         /* FLUSHED sent to the child */
	uint64_t server_end;       /* the primary's WAL end (HELLO, keepalives) */
	uint64_t server_end_time;  /* unix usec it was learned */
	uint64_t slot_lsn;         /* the slot's restart LSN at HELLO */
	char *hist;                /* the history file of timeline hist_tli (the */
	uint32_t hist_len, hist_tli; /* stream's HISTORY), sent with each base */
	bool reset_pending;        /* the spool is started afresh (wal_lost) */
	uint64_t ops_wait;         /* PREPARING: writer operations to be done */
	uint64_t cut_end;          /* durable end taken by the last cut started */
	uint64_t cut_gen;
	uint64_t epoch_end, epoch_gen; /* the WAL end in the last committed epoch */
	uint32_t epoch_tli;
	uint64_t epoch_system;
	bool epoch_valid;
	/* errors and retries */
	char last_error[1024];
	uint64_t last_error_time, errors;
	uint32_t failures;
	sd_event_source *retry;
	uint64_t started_mono;     /* of the current stream child */
	/* base backups */
	bool base_wanted;
	bool base_writing;         /* its child is done, the writer completes it */
	char base_why[128];
	char base_error[1024];
	uint32_t base_failures;
	uint64_t base_next_mono;   /* not before (backoff) */
	uint64_t base_started, base_bytes;
	uint64_t bases_taken;
	/* when WAL arrived: (end, unix usec) samples, for lag in seconds */
	struct { uint64_t lsn, time; } ring[256];
	unsigned ring_head, ring_n;
	/* `bascule sync` waiting for the WAL it must cover */
	struct pgwait *waits;
	struct pgsrc *next;        /* d->pgsrcs */
};

/* The source for (GROUP, CFG): the running one of that name, given the new
 * configuration (its stream restarts if the connection changed), or a new
 * one (spool opened, stream started).  A reference for the caller.  0 or a
 * negative errno with a sentence. */
int pgsource_get(struct daemon *d, const char *group, const struct cfg_source *cfg, struct pgsrc **ret);
/* Drop a reference; the last one stops the children and the writers. */
void pgsource_put(struct pgsrc *p);
/* Once a second: retries, base backups due, the spool's bounds. */
void pgsources_tick(struct daemon *d);
/* A replica target acknowledged WAL (remote: the flush may move). */
void pgsource_acked(struct pgsrc *p);
/* Ask for a base backup (WHY for the log) unless one runs or is fresh. */
void pgsource_want_base(struct pgsrc *p, const char *why);
/* The stream is up and nothing is waiting to be made durable. */
bool pgsource_current(struct pgsrc *p);
/* Where a cut takes the WAL to: what is durable in the spool
 * (synchronous: local), or what is written to it (remote: sent while the
 * spool's fdatasync runs; PostgreSQL is told only what is both durable
 * here and acked by every target, docs/postgres-performance.md). */
uint64_t pgsource_cut_end(struct pgsrc *p);
/* The lowest LSN a target still needs (UINT64_MAX: none), for trimming. */
uint64_t pgsource_needed(struct pgsrc *p);
/* `bascule sync`: learn the primary's WAL flush position now (a short
 * pgstream child: IDENTIFY_SYSTEM), then wait until the spool holds it
 * durably: DONE(CTX, 0, lsn) or DONE(CTX, -errno, 0) with a sentence. */
int pgsource_sync(struct pgsrc *p, void (*done)(void *ctx, int r, uint64_t lsn), void *ctx);
/* CTX goes away: its callbacks are not called. */
void pgsources_forget(struct daemon *d, void *ctx);
/* Seconds since the first WAL byte after LSN arrived (0 if none). */
double pgsource_lag_seconds(const struct pgsrc *p, uint64_t lsn, uint64_t now);
const char *pgsource_state_name(const struct pgsrc *p);
/* history.c: a log line about P ("source GROUP/NAME: ..."), with SOURCE=. */
void pgsrc_log(const struct pgsrc *p, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* At SIGTERM: end every child (their last FLUSHED sent). */
void pgsources_stop(struct daemon *d);
