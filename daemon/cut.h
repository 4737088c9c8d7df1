/* cut.h - one cut of a group's epoch, shared by the thread that runs it
 * (epoch.c) and its scan workers (scan.c). */
#pragma once
#include "daemon.h"
#include "hash.h"
#include "proto.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct spool;

struct cut {
	struct group *g;
	uint64_t epoch;
	bool wal_only;                 /* no disk is scanned: the WAL of postgres sources only */
	uint64_t pg_end[PROTO_MAX_SOURCES], pg_gen[PROTO_MAX_SOURCES]; /* WAL taken (pgsource_cut_end) */
	bool pg_ok[PROTO_MAX_SOURCES];
	bool pg_new;                   /* WAL beyond the last epoch's */
	uint64_t floor[PROTO_MAX_SOURCES];
	uint64_t cold_upto;            /* a QEMU source's MiB changed at the latest in this
					* epoch may go cold (scan_cool) */
	atomic_bool force;             /* commit even if nothing changed (sync asked) */
	pthread_t thread;
	bool in_loop;                  /* run by the loop, no thread (a WAL-only cut that writes nothing) */
	/* work */
	int fds[PROTO_MAX_SOURCES];
	uint64_t size[PROTO_MAX_SOURCES];
	uint64_t nchunks[PROTO_MAX_SOURCES];
	bool hinted[PROTO_MAX_SOURCES]; /* unchanged since its last full scan (scanhint.h): only
					 * the blocks a target lacks are read */
	uint64_t total_chunks;
	atomic_uint_fast64_t next;
	atomic_uint_fast64_t changed, spooled, read_bytes;
	atomic_int err;
	atomic_bool done;
	atomic_bool abort;             /* over cut_timeout, or stop: fail instead of committing (the
					* workers stop at their next chunk) */
	atomic_bool stop;              /* ... because the daemon stops (epoch_stop) */
	bool timed_out;                /* the loop's: abandoned by the watchdog, holds no slot */
	uint64_t start_mono;           /* when the loop launched it */
	uint64_t reserved;             /* the group's reservation when the cut began */
	/* results */
	bool committed, consistent;
	uint64_t cut_time;
	uint8_t digest[PROTO_MAX_SOURCES][DIGEST_BYTES];
	struct spool *spool;
	char errmsg[512];
	uint64_t took_usec;
	uint64_t scan_usec; /* the workers' phase: reading and hashing */
	uint64_t digest_usec; /* the digests (the cached trees) */
};

/* A scan worker of cut ARG (a struct cut): takes chunks of the sources
 * until none is left or one failed (c->err); changed blocks get c->epoch
 * in the maps, blocks a target lacks go to c->spool. */
void *scan_worker(void *arg);
/* The lowest epoch of G every target acknowledged (0 while one has not told
 * its state since the daemon started): the loop's, at a cut's start. */
uint64_t scan_acked(const struct daemon *d, const struct group *g);
/* The epoch up to which a QEMU source's MiB may go cold at a cut starting
 * now: held by every target and cut the group's cold_after ago (0: none). */
uint64_t scan_cold_upto(const struct daemon *d, struct group *g);
/* After the scan of C: some MiB of source SI's map go cold (blockmap_cool:
 * a QEMU source's MiB changed at the latest in c->cold_upto); 0 or a
 * negative errno with a sentence. */
int scan_cool(struct cut *c, uint32_t si);

/* capture.c.  Run the group's hook WHAT (freeze, thaw) CMD for EPOCH, its
 * freeze_timeout applied: 0 or a negative errno with a sentence. */
int capture_hook(struct group *g, const char *what, const char *cmd, uint64_t epoch);
/* Stats A (before the scan) and B (after) say no write reached the file
 * during a scan that started at SCAN_START (wall usec, as cut_time). */
struct stat;
bool capture_same_stat(const struct stat *a, const struct stat *b, uint64_t scan_start);
/* Begin the cut of QEMU source I and of every later source of the same
 * guest (DONE marks them): 1 if begun, 0 if I's already was, or a negative
 * errno; *FUZZY set if an agent configured did not freeze. */
int capture_guest(struct group *g, struct cut *c, uint32_t i, bool *done, bool *fuzzy);
/* 0, or the error of a cut the watchdog gave up on or the stop told to end. */
int capture_abandoned(struct cut *c);
