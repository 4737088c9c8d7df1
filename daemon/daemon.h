/* daemon.h - the objects of basculed and how they refer to each other.
 *
 *   daemon ─┬─ group ── source ── blockmap (mmap'd leaves + change epochs)
 *           │     └── spool of the last cut (changed blocks, point-in-time)
 *           ├─ target ── child (recv, relay or vault writer) behind pipes,
 *           │            wire, jobs (epochs to send)
 *           ├─ control socket, its clients
 *           └─ HTTP /metrics (optional, httpd.c)
 *
 * One sd-event loop owns everything and never waits: a cut (freeze, clone,
 * scan, digest) runs on worker threads and reports back through an eventfd;
 * children are reaped by the loop (child.c).
 *
 * Calls between the files go one way (docs/architecture.md):
 *   main ─▶ reload ─▶ target ─▶ ship ─▶ resync
 *     │       │         │        │
 *     ├─▶ control ─▶ metrics    ├─▶ epoch ─▶ blockmap, spool
 *     │       └────────┴────────┴─▶ history, child
 *     └─▶ httpd ─▶ metrics
 * epoch.c reaches the targets only through the two hooks of struct daemon. */
#pragma once
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include "clock.h"
#include "config.h"
#include "hash.h"
#include "key.h"
#include "proto.h"
#include "qemusrc.h"
#include "scanhint.h"
#include "wire.h"

struct blockmap;
struct spool;
struct daemon;
struct httpd;
struct child;
struct ctl_client;
struct reload;
struct pgsrc;
struct pgjob;

struct source {
	struct group *g;
	const struct cfg_source *cfg;
	uint32_t idx;
	struct blockmap *map;
	uint8_t secret[LEAF_SECRET_BYTES];
	uint64_t size;                 /* at the last cut */
	uint8_t digest[DIGEST_BYTES];  /* at the last cut */
	int wd;                        /* inotify watch, -1 if none */
	struct pgsrc *pg;              /* a postgres source (pgsource.h), else NULL: a disk */
	struct qemusrc *qemu;          /* a disk read through QEMU (qemusrc.h), else NULL */
	struct qemusrc_stats qstats;   /* its verifying reads, as of the last cut's end */
	struct scanhint hint;          /* a plain file: unchanged since its last full scan?
					* (the cut thread's: one cut of a group at a time) */
	uint64_t scans_full, scans_hinted; /* cuts that read it all / only what targets lacked */
};

struct group {
	struct daemon *d;
	uint32_t idx;                  /* position in daemon->groups; UINT32_MAX once retired */
	bool retired;                  /* removed or rebuilt by a reload; freed when no job needs it */
	uint32_t jobs;                 /* jobs that refer to this group */
	const struct cfg_group *cfg;
	char name[NAME_MAX_LEN + 1];
	struct source *sources;
	uint32_t n_sources;
	uint32_t n_qemu;               /* sources read through QEMU: cut every interval (no inotify) */
	uint32_t n_guests;             /* distinct QEMU guests (QMP sockets) among them: over 1, fuzzy */
	uint64_t last_cut;             /* committed epoch number; the next cut is last_cut + 1, so
					* numbers have no gaps but after a crash (docs/design.md
					* "Epoch numbers") */
	uint64_t reserved;             /* numbers up to this one are recorded in the group state
					* as possibly used: a WAL-only cut within it commits
					* without writing the state (docs/design.md) */
	uint64_t promised;             /* highest number handed to `sync`: cuts are forced to
					* commit until it is produced */
	uint64_t cut_time;             /* unix usec of the last cut */
	uint64_t verified_time;        /* unix usec: the latest scan that found the sources still
					* equal to epoch last_cut (its cut_time at first) */
	uint64_t prev_cut, prev_verified_time; /* the same for the epoch before last_cut */
	bool digest_v1;                /* the state's digests are of version 1 (before the
					* upgrade): the next disk cut commits, in version 2 */
	bool map_ahead;                /* a failed cut left newer leaves in the maps than last_cut:
					* a scan finding no change then proves nothing, and the
					* next number must be a disk cut's */
	uint64_t fail_mono;            /* mono usec: when the last disk cut failed */
	uint64_t scans;                /* scans since start, committed or not */
	uint64_t change_time;          /* unix usec of the last change seen */
	bool consistent;
	bool dirty;                    /* a change event since the last cut */
	bool cutting;
	bool want_cut;                 /* sync requested, or a target needs catch-up */
	bool paused;                   /* control verb pause: no cuts until resume */
	bool cut_waiting;              /* a disk cut is due but max_concurrent_cuts run: it
					* starts when a slot frees, oldest waiter first */
	uint64_t wait_since;           /* mono usec: since when it waits */
	bool slot_held;                /* picked while its WAL-only cut ran: the disk cut
					* starts when that one ends (epoch.c, slot_take) */
	uint64_t epochs_cut;
	uint64_t last_scan_usec;
	uint64_t last_scan_mono;
	/* cold_after: epochs up to cold_ready were cut cold_after ago at
	 * least; cold_mark_epoch was the newest at cold_mark_mono */
	uint64_t cold_ready, cold_mark_epoch, cold_mark_mono;
	struct spool *spool;           /* of the last cut, while jobs are queued (NULL: WAL only) */
	uint64_t spool_floor[PROTO_MAX_SOURCES]; /* the spool holds blocks newer than this */
	sd_event_source *timer;
	/* postgres sources (docs/postgres.md) */
	uint32_t n_pg, n_disks;        /* sources of each kind */
	sd_event_source *pg_timer;     /* wal_interval: cut the WAL made durable */
	uint64_t wal_interval;         /* the shortest of its sources' */
	bool want_wal;                 /* durable WAL waits for the running cut to end */
	bool wal_epoch;                /* the last committed epoch scanned no disk */
	uint64_t disk_epoch;           /* the last committed epoch that scanned the disks (0: none
					* in this run): their state in a WAL-only epoch */
	/* Filled by the cut thread, read by the loop after the eventfd fires. */
	struct cut *cut;
};

/* BACKOFF: no child, a retry timer runs.  HANDSHAKE: the child runs (for
 * ssh:// the relay connects first), waiting for its STATE.  READY: epochs
 * flow.  CLOSING: the pipes are closed, the child is being stopped; the
 * disconnect is told, and the backoff starts, once it has exited. */
enum target_state { T_BACKOFF, T_HANDSHAKE, T_READY, T_CLOSING };

/* What a job has sent so far. */
enum job_stage { JOB_BEGIN, JOB_EXTENTS, JOB_PGDATA, JOB_END, JOB_SENT };

/* librsync signatures of a target's replica of one source, by 1 MiB range
 * (resync of a diverged or unknown replica).  Kept in an unlinked file. */
struct sigstore {
	int fd;
	uint64_t *off;     /* file offset of range i's signature */
	uint32_t *len;     /* its length (0: none) */
	uint32_t *rlen;    /* length of range i on the replica */
	size_t n;
	uint64_t used;
	bool complete;
};

void sigstore_free(struct sigstore *ss); /* accepts NULL */

/* An epoch queued for one target. */
struct job {
	struct group *g;
	uint64_t epoch, cut_time;
	uint8_t flags;
	struct spool *spool;
	uint64_t base[PROTO_MAX_SOURCES];
	uint64_t size[PROTO_MAX_SOURCES];
	uint8_t digest[PROTO_MAX_SOURCES][DIGEST_BYTES];
	struct sigstore *sig[PROTO_MAX_SOURCES]; /* resync by deltas, owned */
	struct pgjob *pg[PROTO_MAX_SOURCES];     /* what it carries of a postgres source, owned */
	uint32_t n_wire;               /* sources on the wire (a vault is sent no postgres source) */
	uint32_t wire_idx[PROTO_MAX_SOURCES];    /* a source's idx on the wire */
	/* send cursor */
	enum job_stage stage;
	size_t rec;                    /* next spool record */
	uint32_t pg_cur;               /* JOB_PGDATA: the source being sent */
	bool wal_only;                 /* the epoch scanned no disk */
	uint64_t n_extents, raw_bytes;
	struct job *next;
};

/* A target's copy of a postgres source: where it ends (its STATE, then
 * moved on by each epoch queued), and what it acknowledged. */
struct tpg {
	bool known;                    /* its STATE named the source */
	uint64_t system_id, base_id, end_lsn;
	uint32_t tli;
	uint8_t chain[DIGEST_BYTES];   /* its wal_digest after the last epoch whose digest is made */
	uint64_t acked_lsn;            /* the end of the WAL it holds durably */
	uint64_t acked_system;
	uint32_t acked_tli;
	bool needs_base;               /* it cannot go on from the spool: a base backup is sent */
	bool behind_logged;
	bool hist_wait_logged;         /* its base waits for the stream's history file */
	uint64_t bases_sent;
};

struct tgroup {
	char name[NAME_MAX_LEN + 1];
	uint64_t acked, acked_cut_time;
	uint64_t sent[PROTO_MAX_SOURCES]; /* per source of the group: last epoch queued */
	bool known;                    /* the target reported its state */
	bool want_sig[PROTO_MAX_SOURCES];
	struct sigstore *sig[PROTO_MAX_SOURCES];
	uint32_t sig_pending;
	uint64_t last_ship;            /* vault: mono usec of the last epoch queued (interval) */
	struct tpg pg[PROTO_MAX_SOURCES];
};

struct target {
	struct daemon *d;
	uint32_t idx;
	const struct cfg_target *cfg;
	enum target_state state;
	bool ssh;                      /* ssh:// replica: the child is `bascule relay` */
	/* the child and its pipes */
	struct child *child;
	int to_fd, from_fd, err_fd;
	sd_event_source *in_src, *out_src, *err_src;
	char errline[512];             /* the child's stderr, the line being read */
	size_t errlen;
	char remote_reason[512];       /* its last error line in this connection */
	char closing_why[1024];        /* CLOSING: why, told once the child has exited */
	bool closing_quiet;            /* CLOSING: nothing to tell (stop, reload) */
	bool reaping;                  /* in the child's exit callback: the status comes with it */
	struct wire w;
	bool wire_up;
	/* one timer per purpose */
	sd_event_source *retry;        /* BACKOFF: the next connection */
	sd_event_source *setup_timer;  /* HANDSHAKE must end in time */
	sd_event_source *bw_timer;     /* bandwidth cap: tokens are back */
	sd_event_source *window_timer; /* outside its window: the window opens */
	struct tgroup *groups;         /* parallel to daemon->groups */
	struct job *jobs, *jobs_tail;  /* queued and in flight, oldest first */
	uint32_t in_flight;
	uint32_t failures;
	uint64_t bytes_sent, raw_sent, delta_sent;
	uint64_t errors;
	double rate;                   /* bytes/s on the wire, last seconds */
	uint64_t rate_bytes;
	char last_error[1024];
	uint64_t last_error_time;
	uint64_t tokens_time;          /* bandwidth pacing */
	double tokens;
	void *zctx;                    /* ZSTD_CCtx */
	uint8_t *chunk;                /* spool read buffer */
	struct wbuf ext;
};

/* The target's lag on group K (the current RPO): microseconds since the
 * group's sources were last known to hold the state the target has, or
 * UINT64_MAX if the target holds no epoch of it yet. */
uint64_t target_lag_usec(const struct target *t, uint32_t k, uint64_t now);

/* Recent events for `history` (a ring). */
struct event_rec {
	uint64_t time;        /* unix usec */
	char kind[16];        /* cut, ack, error */
	char group[NAME_MAX_LEN + 1], target[NAME_MAX_LEN + 1];
	uint64_t epoch;
	char text[256];
};
#define HISTORY_LEN 200

/* How long the loop's dispatches take (main.c; `bascule status --json`,
 * "loop"): a dispatch is the work of one event.  Its own time is its wall
 * time, unless the loop's thread never slept during it: then only its CPU
 * time counts (being preempted by other work of the machine is not a stall
 * of the loop). */
struct loop_stats {
	uint64_t dispatches;
	uint64_t max_usec;             /* longest own time of a dispatch */
	uint64_t max_wall_usec;        /* longest wall time, preemption included */
	uint64_t over_100ms;           /* dispatches whose own time exceeded 100 ms */
};

struct daemon {
	/* A postgres source tells its group that new WAL is durable (epoch.c's
	 * group_wal_ready, set before any source exists): the sources are below
	 * the groups and never call up into epoch.c (the one-way rule). */
	void (*wal_ready)(struct group *g, bool now);
	struct config *cfg;
	struct site_key *key;
	sd_event *ev;
	struct group **groups;         /* stable objects: reload adds, rebuilds, retires */
	uint32_t n_groups;
	struct target **targets;
	uint32_t n_targets;
	struct group **retired;        /* groups still referenced by jobs */
	uint32_t n_retired;
	struct config **old_cfgs;      /* configurations replaced by reloads (objects point into them) */
	uint32_t n_old_cfgs;
	int lock_fd;
	int inotify_fd;
	int cut_efd;                   /* cut threads write 1 when done */
	sd_event_source *inotify_src, *cut_src, *ctl_src;
	int ctl_fd;
	char recv_path[PATH_MAX + 64];          /* the bascule binary for local targets */
	unsigned scan_threads;
	/* Cuts across groups (epoch.c, "Scheduling"): at most
	 * cfg->max_concurrent_cuts read disks at once. */
	unsigned cuts_peak;            /* most disk cuts that ran at once since the start */
	uint64_t cuts_waited;          /* disk cuts that had to wait for a slot */
	uint64_t cut_wait_usec;        /* the longest such wait */
	uint64_t cuts_timed_out;       /* disk cuts abandoned after cut_timeout */
	/* io_rate token bucket, shared by scan threads */
	pthread_mutex_t io_lock;
	double io_tokens;
	uint64_t io_time;
	struct event_rec history[HISTORY_LEN];
	uint64_t n_history;
	struct httpd *httpd;           /* metrics_listen, NULL if none */
	sd_event_source *tick;         /* 1 s: throughput, STATUS= */
	gid_t control_gid, monitor_gid;
	bool reloading;                /* no new cut while groups are swapped */
	struct reload *reload;         /* a reload waiting for the running cuts (reload.c) */
	bool stopping;                 /* SIGTERM: the loop ends once the children are gone */
	unsigned stop_cuts;            /* stopping: cuts told to stop that the loop still waits for */
	struct child *children;        /* every child not yet reaped (child.c) */
	unsigned n_children;
	struct ctl_client *clients;    /* control clients, oldest first (control.c) */
	struct ctl_client *clients_tail;
	unsigned n_clients;
	int ctl_spare_fd;              /* given up to accept (and shed) when out of fds */
	sd_event_source *ctl_pause;    /* the listener waits for fds to come back */
	uid_t relay_uid;               /* relay_user, looked up at start and reload */
	gid_t relay_gid;
	struct loop_stats loop;
	struct pgsrc *pgsrcs;          /* postgres sources (pgsource.c), live or held by a retired group */
	/* Set by main.c: what epoch.c needs of the targets, without calling
	 * into target.c (calls go one way). */
	void (*on_epoch)(struct daemon *d, struct group *g);   /* G committed an epoch */
	void (*spool_floor)(struct daemon *d, struct group *g, uint64_t *floor);
};

/* history.c: record an event for `history` (and nothing else: logging is
 * separate). */
void daemon_event(struct daemon *d, const char *kind, const char *group, const char *target,
		  uint64_t epoch, const char *text);
/* A log line about target T ("target NAME: ..."), with its TARGET= field. */
void target_log(const struct target *t, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* gstate.c: the group's state file (0 or a negative errno with a sentence).
 * gstate_path: STATE_DIR/groups/G/NAME.  gstate_write: the epoch, its
 * time, consistency, the sources' sizes and digests and the reservation
 * (at least EPOCH), replaced atomically and durable.  gstate_load: into G
 * (numbering after an outstanding reservation); none is a first run.
 * gstate_release: the loop's state with the reservation given back (a
 * clean stop; not for a retired group). */
int gstate_path(struct group *g, char *buf, size_t len, const char *name);
int gstate_write(struct group *g, uint64_t epoch, uint64_t cut_time, bool consistent,
		 const uint64_t *size, uint8_t (*digest)[DIGEST_BYTES], uint64_t reserved, bool digest_v1);
int gstate_load(struct group *g);
void gstate_release(struct group *g);

/* epoch.c */
int group_init(struct daemon *d, struct group *g, const struct cfg_group *cfg);
void group_free(struct group *g);
/* Ask for a cut as soon as possible; returns the number the epoch will get. */
uint64_t group_request_cut(struct group *g);
/* The cut eventfd fired: finish every cut that is done. */
void epoch_cuts_done(struct daemon *d);
/* True while a cut of some group runs. */
bool epoch_cutting(const struct daemon *d);
/* Disk cuts running now, and groups waiting for a slot to start one. */
unsigned epoch_cuts_running(const struct daemon *d);
unsigned epoch_cuts_waiting(const struct daemon *d);
/* Every second: abandon the disk cuts running longer than cut_timeout. */
void epoch_watchdog(struct daemon *d);
/* G's running cut was abandoned after cut_timeout (its reads have not returned). */
bool epoch_cut_timed_out(const struct group *g);
/* The daemon stops: no cut starts any more; every running cut is told to
 * stop (its workers end at their next chunk, it fails instead of
 * committing, as a failed cut: the next start cuts again).  Sets
 * d->stop_cuts to the cuts the loop waits for (not those past cut_timeout,
 * whose reads may never return); the loop is left (sd_event_exit) once
 * they and the children are gone. */
void epoch_stop(struct daemon *d);
/* G's cut thread has not ended (the stop left it): G's memory, the
 * daemon's configuration and cut eventfd are still in its hands. */
bool epoch_cut_left(const struct group *g);
/* Start the waiting cuts that fit under max_concurrent_cuts, oldest first
 * (after a reload, a resume, a cut's end). */
void epoch_schedule(struct daemon *d);
/* Arm G's timers (interval, and wal_interval for postgres sources).  The
 * interval timer's phase is G's place among the daemon's groups (idx of
 * n_groups of interval), so groups of one interval tick apart; its first
 * cut, if any is wanted, is asked for at once. */
int group_arm_timers(struct daemon *d, struct group *g);
int group_on_timer(sd_event_source *s, uint64_t usec, void *userdata);
/* Durable WAL of a postgres source of G: an epoch now if NOW (remote, or
 * much WAL), else at the next wal_interval. */
void group_wal_ready(struct group *g, bool now);
int group_on_pg_timer(sd_event_source *s, uint64_t usec, void *userdata);
/* The group named NAME (and its index in d->groups), or NULL. */
struct group *group_find(struct daemon *d, const char *name, uint32_t *ret_idx);

/* target.c */
int target_init(struct daemon *d, struct target *t, const struct cfg_target *cfg);
/* Free the target; its child, if any, is released (stopped and reaped
 * later, by the loop). */
void target_free(struct target *t);
void target_start(struct target *t);
/* End the session (BYE if ready) and stop the child, silently: for a stop
 * of the daemon. */
void target_close(struct target *t);
/* A new epoch of G was committed: queue it at every connected target. */
void targets_on_epoch(struct daemon *d, struct group *g);

/* ship.c: what each target is sent */
/* Queue the last epoch of G for T if it is connected, due and the spool
 * holds what it lacks; true if a job was queued (then pump). */
bool ship_enqueue(struct target *t, struct group *g);
/* The next frames of job J into T's wire; 0 or a negative errno. */
int ship_produce(struct target *t, struct job *j);
/* An ACK or NACK: the job retired, or the refusal as an error. */
int ship_ack(struct target *t, struct rbuf *b, bool nack);
/* Drop every job and signature of T (disconnect). */
void ship_drop_jobs(struct target *t);
/* The floor for the spool of the next cut of G, per source: the lowest epoch
 * a connected target has been sent (UINT64_MAX if none is connected). */
void targets_floor(struct daemon *d, struct group *g, uint64_t *floor);
/* Once a second: vault targets whose interval has passed ask for a cut. */
void targets_tick(struct daemon *d);
/* `bascule sync`: vault targets take the next epoch of G whatever their interval. */
void targets_sync(struct daemon *d, struct group *g);
/* Block data queued for T (an upper bound, bytes). */
uint64_t target_pending(const struct target *t);
/* pgship.c: what a target is sent of a postgres source */
/* What job J will carry of postgres source S for T: the WAL from where T's
 * copy ends, or the newest base backup and the WAL after it.  False when
 * the epoch cannot be sent to T yet (no usable base: one is asked for; the
 * spool started afresh since the cut). */
bool pgship_prepare(struct target *t, struct group *g, struct job *j, uint32_t s);
/* Every source of J prepared: T's copy is taken to be where J leaves it. */
void pgship_commit(struct target *t, struct group *g, struct job *j, uint32_t s);
/* Hash a step of the WAL J carries of S (before PGSOURCE can go): 1 done,
 * 0 more to do at a later pump, or a negative errno. */
int pgship_digest(struct target *t, struct job *j, uint32_t s);
int pgship_put_pgsource(struct job *j, uint32_t s, struct wbuf *b);
/* The next BASEFILE or WAL message of S: 1 once all are sent, 0 more, -errno. */
int pgship_data(struct target *t, struct job *j, uint32_t s);
/* T's ext buffer holds HDR bytes of a message header ending in its enc
 * byte: append DATA zstd-compressed, or raw (enc changed) if that is not
 * smaller. */
int pgship_pack(struct target *t, size_t hdr, const uint8_t *data, uint32_t len);
/* Job J was acknowledged: T's copies of its postgres sources moved on. */
void pgship_acked(struct target *t, struct job *j, uint32_t gi);
void pgship_free(struct pgjob *pj); /* accepts NULL */
/* STATE: what T said of postgres source S of G. */
void pgship_state(struct target *t, struct group *g, uint32_t s, const struct state_source *x);

/* resync.c: librsync signatures of a replica (handle SIG and SIG_END). */
int resync_request(struct target *t);
int resync_handle_sig(struct target *t, enum wire_type type, struct rbuf *body);

/* reload.c: 0 once applied, 1 if it waits for running cuts (applied when
 * they end; DONE(CTX, result) is then called, as it is now for 0), or a
 * negative errno with the reason (the running configuration stays).  DONE
 * may be NULL. */
int daemon_reload(struct daemon *d, void (*done)(void *ctx, int r), void *ctx);
/* The cuts have ended: apply a waiting reload. */
void daemon_reload_resume(struct daemon *d);
/* A waiter goes away (a control client dropped): it is not called. */
void daemon_reload_forget(struct daemon *d, void *ctx);
/* At exit: drop a waiting reload. */
void daemon_reload_free(struct daemon *d);
void daemon_free_retired(struct daemon *d);
/* The relay_user of CFG, or the sentence to fix it (-ENOENT, -EINVAL: exit 3);
 * 0 without looking when basculed does not run as root. */
int daemon_relay_user(const struct config *cfg, uid_t *ret_uid, gid_t *ret_gid);

/* control.c */
int control_open(struct daemon *d);
void control_close(struct daemon *d);

/* metrics.c: the Prometheus text exposition of the daemon's state (the
 * `metrics` verb and GET /metrics), malloc'd; NULL if out of memory. */
char *metrics_text(struct daemon *d);
/* What a target is doing, for people and monitoring ("connected", ...). */
const char *target_state_name(const struct target *t);
/* target_lag_usec in seconds, -1 when it holds no epoch yet. */
double target_lag_seconds(const struct target *t, uint32_t k, uint64_t now);

/* httpd.c: GET /metrics on LISTEN ("ADDR:PORT"), served from the loop.
 * Returns 0 and *RET, or a negative errno with the reason (port taken). */
int httpd_open(struct daemon *d, const char *listen, struct httpd **ret);
/* Stop serving, close every connection; accepts NULL; returns NULL. */
struct httpd *httpd_free(struct httpd *h);
