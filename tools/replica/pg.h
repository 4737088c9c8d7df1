/* pg.h - what the files of the replica store that keep PostgreSQL sources
 * share (docs/replica.md, "PostgreSQL sources"):
 *
 *   pgstore.c    receiving an epoch's WAL and base backup, up to the commit
 *                point; putting a base in place; retention; leftovers
 *   pgread.c     reading the committed copy: base backups, the chain log,
 *                history files, the WAL path from a base, segments; verify
 *   pgrun.c      making a data directory, running PostgreSQL as its user
 *   pgpromote.c  promote (cold: restore and recover; hot: the standby)
 *   pgstandby.c  the hot standby service and wal-get
 *   pgclone.c    clone: a stopped copy of the database at the clone's epoch
 *
 * A source S of group G keeps, beneath the replica directory:
 *
 *   G/.S.pg/SYS/wal/TTTTTTTTXXXXXXXXYYYYYYYY[.partial]   16 MiB segments
 *   G/.S.pg/SYS/wal/TTTTTTTT.history                      timeline histories
 *   G/.S.pg/SYS/base/ID/{base.tar,OID.tar,backup_manifest} a base backup
 *   G/.S.pg/SYS/base/ID/bascule-base     what the store knows of it (keyed)
 *   G/.S.pg/SYS/base/ID/chain            the epochs since it (keyed records)
 *   G/.S.pg/SYS/base/ID.tmp/             a base being received
 *   G/S                                  the data directory (hot standby's, or
 *                                        made by promote); absent otherwise
 *
 * SYS is the cluster's system identifier, ID the base's start LSN, both as
 * 16 hex digits.  Where the copy ends (system, base, timeline, end LSN, WAL
 * digest) is the group state's, written at the commit: WAL bytes beyond it
 * are ignored and overwritten, a base not yet committed sits in ID.tmp. */
#pragma once
#include "store.h"
#include "pgproto.h"
#include "pgwal.h"
#include "subproc.h"
#include <string.h>

#define PG_SEG (16u << 20)         /* the segment size the store keeps */
#define PGBASE_MAX_FILES 64        /* files of one base backup */
#define PG_MAX_PATH 32             /* timelines between a base and a copy's end */
#define PG_MANIFEST_MAX (512u << 20)

static inline bool pg_source(const struct state_source *x) { return x->base_id != 0; }
static inline uint64_t pg_seg_start(uint64_t lsn) { return lsn - lsn % PG_SEG; }

/* G/.S.pg[/SYS[/FMT...]] into BUF (SYS 0: the source's directory). */
int pg_path(char *buf, size_t len, const char *group, const char *source, uint64_t sys, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* ---- pgread.c ---- */
struct pgbase {
	uint64_t system_id, id;    /* id: the backup's start LSN (base_id) */
	uint32_t tli;              /* timeline at its start */
	uint64_t end_lsn;          /* consistent from here (backup_manifest's End-LSN) */
	uint32_t end_tli;
	uint64_t epoch, cut_time;  /* the epoch that brought it */
	uint64_t bytes;
	uint8_t digest[DIGEST_BYTES];
	uint32_t n_files;
	struct {
		char name[NAME_MAX_LEN + 1];
		uint64_t size;
	} files[PGBASE_MAX_FILES];
};
/* The description of base ID (TMP: the one being received), checked with
 * the replica key; -ENOENT if there is none. */
int pgbase_load(struct replica *r, const char *group, const char *source, uint64_t sys, uint64_t id, bool tmp,
		struct pgbase *ret);
int pgbase_write(struct replica *r, const char *group, const char *source, const struct pgbase *b, bool tmp);

/* BASE: the epoch that starts the chain at its base.  PREFIX: just before
 * it (epoch one below), the WAL from the base's segment to where the copy
 * was when the base came to a copy going on, digested from the base's
 * digest by the receiver (that WAL came under the chain of the base
 * before, which retention removes); verify re-digests it. */
enum { PGCHAIN_BASE = 1, PGCHAIN_PREFIX = 2 };
struct pgchain_rec {
	uint64_t epoch, cut_time, start, end;
	uint32_t tli;
	uint8_t flags;
	uint8_t digest[DIGEST_BYTES]; /* wal_digest after the epoch */
};
/* The chain log of the base directory DIR: its records up to MAX_EPOCH,
 * malloc'd (*RET, *RET_N; a later record with the base flag restarts the
 * chain: a base sent again).  Records after MAX_EPOCH are epochs never
 * committed (or rolled back): ignored.  -EBADMSG if one fails its MAC. */
int pgchain_read(struct replica *r, const char *dir, uint64_t max_epoch, struct pgchain_rec **ret, size_t *ret_n);
/* Append REC, dropping first the records of its epoch and later; durable
 * on return, or (SS) once SS ran. */
int pgchain_append(struct replica *r, const char *dir, const struct pgchain_rec *rec, struct syncset *ss);

/* The history file of timeline TLI, parsed (ancestors, oldest first). */
int pghistory_read(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
		   struct pgwal_switch *ret, size_t max, size_t *ret_n);
/* Its text, malloc'd. */
int pghistory_load(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
		   char **ret, size_t *ret_len);

struct pgrange {
	uint32_t tli;
	uint64_t from, to;         /* WAL of timeline TLI that the copy holds */
};
struct pgpath {
	uint32_t n;
	struct pgrange r[PG_MAX_PATH]; /* oldest first; the last one ends at the copy's end */
};
/* The WAL from base B to where X ends, timeline by timeline (through the
 * history of X's timeline).  -EBADMSG with a sentence if B is not an
 * ancestor of that point. */
int pg_wal_path(struct replica *r, const char *group, const struct state_source *x, const struct pgbase *b,
		struct pgpath *ret);
/* The first LSN from which the copy holds its last timeline's WAL whole,
 * from the start of a segment. */
static inline uint64_t pg_held_from(const struct pgpath *p) { return pg_seg_start(p->r[p->n - 1].from); }

/* The segment file of SEGNO on timeline TLI (NAME, else NAME.partial), open
 * with FLAGS (O_RDONLY or O_RDWR); -ENOENT if neither exists. */
int pgseg_open(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
	       uint64_t segno, int flags);
/* The chained digest of the WAL [A, Z) of timeline TLI on PREV (KEY the
 * source's WAL key) into RET. */
int pg_wal_digest(struct replica *r, const char *group, const char *source, uint64_t sys, const uint8_t *key,
		  const uint8_t *prev, uint32_t tli, uint64_t a, uint64_t z, uint8_t *ret);
/* Bytes [A, Z) of timeline TLI, in order, to FN. */
int pg_read_wal(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
		uint64_t a, uint64_t z, int (*fn)(void *ctx, const uint8_t *p, size_t n), void *ctx);
/* Segment SEGNO of timeline TLI as recovery reads it, into BUF (PG_SEG
 * bytes): the bytes below LIMIT, zeros from there.  -ENOENT if the store
 * has no such file. */
int pg_segment(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
	       uint64_t segno, uint64_t limit, uint8_t *buf);
/* The base of X and its WAL path, both checked. */
/* 1 if segment SEGNO of timeline TLI, before base B of the copy of X, is
 * still held whole through the bases before B: B came to a copy that went
 * on (its chain starts where the one of the base before it ends, on the
 * same timeline), and that base is still held (retention keeps it while
 * an epoch needs it).  A hot standby behind when B came replays it. */
int pg_served_before(struct replica *r, const char *group, const struct state_source *x, const struct pgbase *b,
		     uint32_t tli, uint64_t segno);
int pg_copy_open(struct replica *r, const char *group, const struct state_source *x, struct pgbase *ret_base,
		 struct pgpath *ret_path);
/* verify of a PostgreSQL source X: the base's files against its digest, the
 * WAL chain from the base to X's digest.  A line to OUT; 0, or -EBADMSG. */
int pg_verify(struct replica *r, const char *group, const struct state_source *x, char *line, size_t len);

/* ---- pgstore.c ---- */
struct pgrecv;
/* One PostgreSQL source of epoch EPOCH (cut at CUT_TIME) of GROUP: M
 * checked against HAVE (the copy's state, NULL if none). */
int pgrecv_begin(struct replica *r, const char *group, uint64_t epoch, uint64_t cut_time,
		 const struct msg_pgsource *m, const struct state_source *have, struct pgrecv **ret);
int pgrecv_wal(struct pgrecv *p, uint64_t lsn, uint32_t len, const uint8_t *data);
int pgrecv_basefile(struct pgrecv *p, const char *file, uint64_t off, uint32_t len, const uint8_t *data);
/* Before the epoch's commit point: everything written is durable and read
 * back: the base's files against the primary's digest, the WAL chain
 * against the announced digest (-EBADMSG), the epoch recorded in the
 * chain log.  *RET is the source's entry of the redo header.  With SS, the
 * fsyncs are added to SS instead: durable once it ran. */
int pgrecv_prepare(struct pgrecv *p, struct jsource *ret, struct syncset *ss);
/* Whether P goes on from where its copy ends, on its base and timeline
 * (a WAL-only epoch of it is light: apply.c). */
bool pgrecv_light(const struct pgrecv *p);
/* The redo header's entry before prepare (the same fields, unchecked). */
void pgrecv_jsource(const struct pgrecv *p, struct jsource *ret);
void pgrecv_free(struct pgrecv *p);
/* A committed redo brings base J->base_id: put it in place (idempotent). */
int pgstore_place_base(struct replica *r, const char *group, const struct jsource *j);
/* The group state records NEXT (after PREV): segments it completed get
 * their final names; bases and WAL no retained epoch needs go (when
 * PRUNE). */
void pgstore_committed(struct replica *r, const struct rstate *prev, const struct rstate *next, bool prune);
/* Recovery: bases never committed go, complete segments are named. */
void pgstore_recover(struct replica *r, const struct rstate *s);

/* ---- pgrun.c ---- */
#define PG_SITE_CONF "/etc/bascule/postgresql.conf" /* this site's settings, unless --pg-conf */
struct pgrun {
	char data_dir[RPATH];      /* absolute */
	int pfd, dfd;              /* its parent; itself, while bascule builds it */
	uid_t uid;                 /* PostgreSQL runs as */
	gid_t gid;
	char user[64];
	char bin[RPATH];           /* its programs (default /usr/lib/postgresql/VERSION/bin) */
	const char *conf;          /* this site's settings, appended to postgresql.auto.conf */
	char run_dir[64];          /* private: the server's socket and log while bascule runs it */
	char log[128];
};
static inline void pgrun_init(struct pgrun *run)
{
	memset(run, 0, sizeof(*run));
	run->pfd = run->dfd = -1;
}
void pgrun_close(struct pgrun *run);
/* The user, programs, settings and data directory of source SOURCE: G/SOURCE
 * beneath the replica directory (made traversable for the PostgreSQL user;
 * *RET_GFD the group's directory, for the caller to close), or
 * LINK_DIR/SOURCE. */
int pg_run_setup(struct replica *r, const char *group, const char *source, const struct promote_opts *o,
		 const char *link_dir, struct pgrun *run, int *ret_gfd);
/* RUN->bin from the data directory's PG_VERSION (unless set). */
int pgrun_version(struct pgrun *run);
/* The user PostgreSQL runs as: USER, else (R not NULL) the replica directory's owner
 * unless it is root, else postgres. */
int pgrun_user(struct replica *r, const char *user, struct pgrun *run);
/* The store's files of base B of SOURCE (system SYS) as a feed
 * (replica.h): STATE holds what the callbacks need, for as long as F is
 * used. */
struct pgstore_feed {
	struct replica *r;
	const char *group, *source;
	uint64_t sys;
	const struct pgbase *b;
	char what[2 * NAME_MAX_LEN + 2];
};
void pgstore_feed(struct pgstore_feed *state, struct replica *r, const char *group, const char *source,
		  const struct pgbase *b, struct pgfeed *ret);
/* Make RUN->data_dir (which must not exist) from base B, its files read
 * from F: base.tar and the tablespaces extracted, configuration files a
 * Debian-style base lacks, this site's settings, recovery.signal
 * (STANDBY: standby.signal). */
int pgrun_make(const struct pgfeed *f, const struct pgbase *b, bool standby, struct pgrun *run);
/* Put the WAL of PATH (zeros after its end) and the history files in
 * pg_wal, from F. */
int pgrun_place_wal(const struct pgfeed *f, const struct pgpath *path, struct pgrun *run);
/* Give the tree beneath DFD (then the data directory) to the PostgreSQL user. */
int pgrun_give_fd(int dfd, const struct pgrun *run, int depth);
int pgrun_give(struct pgrun *run);
/* A private directory for the server's socket and log (RUN->run_dir, log). */
int pgrun_dir(struct pgrun *run);
void pgrun_dir_remove(struct pgrun *run);
/* pg_ctl ARGS as the PostgreSQL user, within TIMEOUT (usec). */
int pgrun_ctl(const struct pgrun *run, const char *const *args, uint64_t timeout, struct subproc_result *res);
/* What recovery said in the server's log (lc_messages=C, log_timezone=UTC). */
struct pgrecovered {
	uint64_t redo_lsn;         /* "redo done at": the last record replayed */
	uint64_t last_xact;        /* "last completed transaction was at log time", usec */
	uint32_t tli;              /* "selected new timeline ID" */
	bool target_missed;        /* "recovery ended before configured recovery target was reached" */
	bool ready;                /* "database system is ready to accept connections" after that */
	char fatal[256];           /* the last FATAL or PANIC line */
};
int pgrun_log(const char *path, struct pgrecovered *ret);
/* Wait until the server on RUN (started by pg_ctl, whose -w returns when
 * archive recovery begins) accepts connections as a primary, or has
 * exited, within TIMEOUT (usec): 0, or -EIO (*RET says why). */
int pgrun_wait_ready(const struct pgrun *run, uint64_t timeout, struct pgrecovered *ret);

/* ---- pgstandby.c ---- */
/* The hot standby of X at G/X: made from its base (standby.signal, a
 * restore_command calling `bascule replica wal-get`) if there is none,
 * started (*RET_STARTED) if it is not running.  Its directory in RET_DIR. */
int pg_standby(struct replica *r, const char *group, const struct state_source *x, const struct promote_opts *o,
	       char *ret_dir, size_t len, bool *ret_started);
/* 1 and the standby's data directory if SOURCE has one, 0 if not. */
int pg_standby_find(struct replica *r, const char *group, const char *source, char *ret_dir, size_t len);
void pg_standby_forget(struct replica *r, const char *group, const char *source);
/* The restore_command serving SOURCE's committed copy (to TLI/LSN if TLI is
 * not 0), malloc'd in *RET. */
int pg_restore_command(const struct replica *r, const char *group, const char *source, uint32_t tli, uint64_t lsn,
		       char **ret);
/* restore_command's work: WAL file NAME (a segment: zeros past the copy's
 * end; a history file) of the committed copy, or of the copy ending at
 * UPTO_TLI/UPTO_LSN, written to DEST.  -ENOENT: the copy has no such file
 * (yet). */
int pg_wal_get(struct replica *r, const char *group, const char *source, const char *name, const char *dest,
	       uint32_t upto_tli, uint64_t upto_lsn);
/* pg_ctl start as the PostgreSQL user, its log DATA_DIR/bascule.log. */
int pgrun_start(const struct pgrun *run, uint64_t timeout);
/* 1 if a server runs on RUN's data directory, 0 if not. */
int pgrun_running(const struct pgrun *run);
/* pg_ctl stop -m fast of RUN's server (waiting up to 10 minutes). */
int pgrun_stop(const struct pgrun *run);
/* The value of FIELD (e.g. "Latest checkpoint's REDO WAL file") that
 * pg_controldata prints for RUN's data directory, into RET (LEN bytes,
 * untouched on failure); -EIO naming what it said if there is none. */
int pgrun_control(const struct pgrun *run, const char *field, char *ret, size_t len);

/* ---- pgpromote.c ---- */
/* What promote does for a PostgreSQL source, decided before a rollback:
 * with --at, recovery gets the WAL up to the end of the first epoch cut
 * after the time (in the chain log) and stops at the time itself. */
struct pgplan {
	char name[NAME_MAX_LEN + 1];
	uint64_t at;               /* recovery_target_time (usec), 0: none */
	uint32_t tli;              /* the WAL given ends here (0: where the promoted state ends) */
	uint64_t end_lsn;
};
int pg_promote_plan(struct replica *r, const struct rstate *s, uint64_t epoch, uint64_t at, struct pgplan *ret,
		    size_t max, size_t *ret_n);
/* The cold path of promote, from any feed: make RUN's data directory from
 * base B and the WAL of PATH, recover it (to PLAN's time) as a primary on
 * a private socket, stop it; Y names the source and where the WAL ends. */
int pg_recover_cold(const struct pgfeed *f, const struct pgbase *b, const struct pgpath *path,
		    const struct state_source *y, const struct pgplan *plan, uint64_t timeout, struct pgrun *run,
		    struct promote_pg *ret);
/* Bring source X (the state at the promoted epoch) up as a primary. */
int pg_promote(struct replica *r, const char *group, const struct state_source *x, const struct pgplan *plan,
	       const struct promote_opts *o, struct promote_pg *ret);
/* Read back what an earlier promote of X did (a resumed drill): 1, 0 if none. */
int pg_promoted(struct replica *r, const char *group, const char *source, struct promote_pg *ret);
/* Recover the data directory of RUN (made by pgrun_make, its WAL placed,
 * given to its user, RUN->run_dir made) to the end of the WAL in pg_wal on
 * timeline TLI: it promotes to a new timeline; then stop it cleanly.  No
 * restore_command, nothing archived, nothing listening outside. */
int pg_recover_stopped(const struct pgrun *run, uint32_t tli, uint64_t timeout, struct pgrecovered *ret);

/* ---- pgclone.c ---- */
/* The clone of PostgreSQL source X (the committed copy, read under the
 * apply lock) into the directory TO_FD (absolute path TO_DIR) as
 * TO_DIR/X->name: the base extracted and the WAL to X's end placed, given
 * to the PostgreSQL user; nothing started, neither the store nor a hot
 * standby touched.  A clone left there by an interrupted clone is made
 * afresh; one a server runs on is refused.  RUN (pgrun_init'ed by the
 * caller, closed by it) and RET's source, data_dir and end_lsn are set. */
int pg_clone_make(struct replica *r, const char *group, const struct state_source *x, int to_fd, const char *to_dir,
		  const struct promote_opts *o, struct pgrun *run, struct promote_pg *ret);
/* Recovery of a clone pg_clone_make made (outside the apply lock: no store
 * file is read): it ends on a new timeline of its own and is left stopped.
 * The rest of RET (redo_lsn, timeline, last_xact, usec). */
int pg_clone_recover(struct pgrun *run, const struct promote_opts *o, uint32_t tli, struct promote_pg *ret);
