/* daemon.h - the objects of basculed and how they refer to each other.
 *
 *   daemon ─┬─ group ── source ── blockmap (mmap'd leaves + change epochs)
 *           │     └── spool of the last cut (changed blocks, point-in-time)
 *           ├─ target ── wire to `bascule recv`, jobs (epochs to send)
 *           ├─ control socket
 *           └─ HTTP /metrics (optional, httpd.c)
 *
 * One sd-event loop owns everything; a cut (freeze, clone, scan, digest)
 * runs on worker threads and reports back through an eventfd. */
#pragma once
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include "config.h"
#include "hash.h"
#include "key.h"
#include "proto.h"
#include "wire.h"
#include "ssh.h"

struct blockmap;
struct spool;
struct daemon;
struct httpd;

struct source {
	struct group *g;
	const struct cfg_source *cfg;
	uint32_t idx;
	struct blockmap *map;
	uint8_t secret[LEAF_SECRET_BYTES];
	uint64_t size;                 /* at the last cut */
	uint8_t digest[DIGEST_BYTES];  /* at the last cut */
	int wd;                        /* inotify watch, -1 if none */
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
	uint64_t last_cut;             /* committed epoch number; the next cut is last_cut + 1, so
					* numbers have no gaps (docs/design.md "Epoch numbers") */
	uint64_t promised;             /* highest number handed to `sync`: cuts are forced to
					* commit until it is produced */
	uint64_t cut_time;             /* unix usec of the last cut */
	uint64_t verified_time;        /* unix usec: the latest scan that found the sources still
					* equal to epoch last_cut (its cut_time at first) */
	uint64_t prev_cut, prev_verified_time; /* the same for the epoch before last_cut */
	bool map_ahead;                /* a failed cut left newer leaves in the maps than last_cut:
					* a scan finding no change then proves nothing */
	uint64_t scans;                /* scans since start, committed or not */
	uint64_t change_time;          /* unix usec of the last change seen */
	bool consistent;
	bool dirty;                    /* a change event since the last cut */
	bool cutting;
	bool want_cut;                 /* sync requested, or a target needs catch-up */
	bool paused;                   /* control verb pause: no cuts until resume */
	uint64_t epochs_cut;
	uint64_t last_scan_usec;
	uint64_t last_scan_mono;
	struct spool *spool;           /* of the last cut, while jobs are queued */
	uint64_t spool_floor[PROTO_MAX_SOURCES]; /* the spool holds blocks newer than this */
	sd_event_source *timer;
	/* Filled by the cut thread, read by the loop after the eventfd fires. */
	struct cut *cut;
};

enum target_state { T_BACKOFF, T_CONNECTING, T_HANDSHAKE, T_READY };
enum target_transport { TR_LOCAL, TR_SSH };

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
	/* send cursor */
	int stage;                     /* 0 begin, 1 extents, 2 end, 3 sent */
	size_t rec;                    /* next spool record */
	uint64_t n_extents, raw_bytes;
	struct job *next;
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
};

struct target {
	struct daemon *d;
	uint32_t idx;
	const struct cfg_target *cfg;
	enum target_state state;
	enum target_transport transport;
	/* ssh:// */
	struct ssh_url url;
	int sock;
	int ssh_stage;                 /* 0 tcp, 1 handshake, 2 auth, 3 channel, 4 exec, 5 up */
	LIBSSH2_SESSION *ssh;
	LIBSSH2_CHANNEL *chan;
	sd_event_source *sock_src, *ka_timer;
	char errline[512];             /* the receiver's stderr, the line being read */
	size_t errlen;
	char remote_reason[512];       /* its last error line in this connection */
	/* local: */
	pid_t pid;
	int to_fd, from_fd;
	int err_fd;                    /* the receiver's stderr */
	sd_event_source *err_src;
	struct wire w;
	bool wire_up;
	sd_event_source *in_src, *out_src, *child_src, *retry;
	sd_event_source *setup_timer;  /* connecting and handshaking must end in time */
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

struct daemon {
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
};

/* Bytes the receiver wrote to its stderr (SSH channel or local pipe): each
 * line is logged, its last error line kept to explain a disconnect. */
void target_remote_output(struct target *t, const char *buf, size_t n);

/* Record an event for `history` (and nothing else: logging is separate). */
void daemon_event(struct daemon *d, const char *kind, const char *group, const char *target,
		  uint64_t epoch, const char *text);

uint64_t now_usec(void);
uint64_t mono_usec(void);

/* epoch.c */
int group_init(struct daemon *d, struct group *g, const struct cfg_group *cfg);
void group_free(struct group *g);
/* Ask for a cut as soon as possible; returns the number the epoch will get. */
uint64_t group_request_cut(struct group *g);
int epoch_on_cut_done(sd_event_source *s, int fd, uint32_t revents, void *userdata);
int group_on_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* target.c */
int target_init(struct daemon *d, struct target *t, const struct cfg_target *cfg);
void target_free(struct target *t);
void target_start(struct target *t);
/* A new epoch of G was committed: queue it for this target if connected. */
void target_enqueue(struct target *t, struct group *g);
/* The floor for the spool of the next cut of G, per source: the lowest epoch
 * a connected target has been sent (UINT64_MAX if none is connected). */
void targets_floor(struct daemon *d, struct group *g, uint64_t *floor);
/* Once a second: vault targets whose interval has passed ask for a cut. */
void targets_tick(struct daemon *d);
/* `bascule sync`: vault targets take the next epoch of G whatever their interval. */
void targets_sync(struct daemon *d, struct group *g);

/* Wait for every running cut and process it (for reload). */
void epoch_finish_cuts(struct daemon *d);

/* reload.c: 0, or a negative errno with the reason (the running
 * configuration then stays). */
int daemon_reload(struct daemon *d);
void daemon_free_retired(struct daemon *d);

/* control.c */
int control_open(struct daemon *d);
void control_close(struct daemon *d);
/* The Prometheus text exposition of the daemon's state (the `metrics` verb
 * and GET /metrics), malloc'd; NULL if out of memory. */
char *control_metrics_text(struct daemon *d);

/* httpd.c: GET /metrics on LISTEN ("ADDR:PORT"), served from the loop.
 * Returns 0 and *RET, or a negative errno with the reason (port taken). */
int httpd_open(struct daemon *d, const char *listen, struct httpd **ret);
/* Stop serving, close every connection; accepts NULL; returns NULL. */
struct httpd *httpd_free(struct httpd *h);
