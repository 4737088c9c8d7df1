/* store.h - what the files of the replica store share (tools/replica/);
 * tools/replica.h is the contract the rest of the tree sees.
 *
 *   tree.c      paths in the replica directory, files given back to its owner
 *   lock.c      the main lock (and taking it over), the apply lock
 *   state.c     the group state file
 *   journal.c   redo and undo journals: writer and reader
 *   map.c       a replica file with its map of leaf hashes; digests
 *   recover.c   applying a journal, undo, recovery after a crash
 *   open.c      opening the directory, its groups, reads of replica files
 *   apply.c     receiving an epoch up to its commit and apply
 *   rollback.c  rollback points and rollback
 *   verify.c    verify, beside a live receiver or alone
 *   failover.c  promote, demote, clone */
#pragma once
#include "replica.h"
#include "buf.h"
#include "config.h"
#include "hash.h"
#include "proto.h"
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define J_MAGIC "BSCJRNL1"
#define S_MAGIC "BSCSTAT1"
#define MAP_MAGIC "BSCRMAP1"
#define MAP_HDR 64
#define J_REDO 1
#define J_UNDO 2
#define REC_EXTENT 1
#define REC_END 2
#define JBUF (4u << 20)
#define RPATH 8192
#define SEEDED 2 /* jsource.exists in a redo: the source comes from its seed file */

/* ---- tree.c ---- */
uint64_t store_now_usec(void);
/* ROOT/.bascule/groups/GROUP[/FMT...] into BUF; -ENAMETOOLONG if it does not fit. */
int gpath(const struct replica *r, char *buf, size_t len, const char *group, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* ROOT/GROUP/SOURCE: the replica file. */
int replica_file(const struct replica *r, char *buf, size_t len, const char *group, const char *source);
/* The seed file of a source new to the replica and its map. */
int seed_paths(struct replica *r, const char *group, const char *source, char *file, char *map, size_t len);
/* Files written by root keep the replica's owner. */
int keep_owner(const struct replica *r, const char *path);
/* Remove the files of DIR whose names end in SUFFIX (leftovers). */
void remove_suffixed(const char *dir, const char *suffix);

/* ---- lock.c ---- */
/* HOW is LOCK_EX (files or state change; nests) or LOCK_SH (a live reader). */
int apply_lock(struct replica *r, int how);
void apply_unlock(struct replica *r, int how);
/* The pid recorded in the lock file by its holder, 0 if none. */
pid_t lock_holder(const char *lock_path, bool *is_recv);
/* Take the lock from a receiver; the fd, or a negative errno. */
int take_over(const char *lock_path);

/* ---- state.c ---- */
int state_write(struct replica *r, const struct rstate *s);
struct state_source *state_find(struct rstate *s, const char *name);

/* ---- journal.c ---- */
struct jsource {
	char name[NAME_MAX_LEN + 1];
	uint64_t epoch, size;
	uint8_t status, exists;
	uint8_t digest[DIGEST_BYTES];
};

struct jheader {
	uint8_t kind;
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch;       /* redo: the new epoch; undo: the epoch it reverts */
	uint64_t prev_epoch;  /* the epoch before it */
	uint64_t cut_time;    /* redo: new; undo: of prev_epoch */
	uint64_t applied_time;/* undo: when prev_epoch was applied */
	uint8_t flags;
	uint32_t n_sources;
	struct jsource sources[PROTO_MAX_SOURCES];
};

struct jwriter {
	int fd;
	char path[RPATH];
	struct wbuf buf;
	crypto_generichash_state cs;
	uint64_t n_records;
};

struct jreader {
	int fd;
	const char *path;
	uint8_t *buf;
	size_t len, off;
	uint64_t pos, end; /* file offset of buf[len]; offset where the checksum starts */
};

int jw_flush(struct jwriter *w);
int jw_open(struct jwriter *w, const char *path, const struct jheader *h);
int jw_record(struct jwriter *w, uint32_t src, uint64_t off, uint32_t len, const void *data);
/* Trailer, flush, fsync: the file is complete and durable on success. */
int jw_finish(struct jwriter *w);
void jw_close(struct jwriter *w, bool remove);
int jr_need(struct jreader *j, size_t n);
/* Open a journal and read its header; VERIFY checks the whole file first. */
int jr_open_mode(struct jreader *j, const char *path, struct jheader *h, bool verify);
/* Next record: 1 with fields set (DATA NULL for zeros), 0 at the end. */
int jr_next(struct jreader *j, uint32_t *src, uint64_t *off, uint32_t *len, const uint8_t **data);
void jr_close(struct jreader *j);

/* ---- map.c ---- */
struct target_file {
	int fd, map_fd;
	uint64_t size;
	uint8_t secret[LEAF_SECRET_BYTES];
};

extern const uint8_t zero_block[PROTO_BLOCK];
uint64_t nblocks(uint64_t size);
int tf_open(struct replica *r, const char *group, const char *source, bool create, struct target_file *tf);
void tf_close(struct target_file *tf);
int tf_rehash(struct target_file *tf, uint64_t first, uint64_t count, uint64_t size);
int tf_write(struct target_file *tf, uint64_t off, uint32_t len, const uint8_t *data, uint64_t final_size);
int tf_resize(struct target_file *tf, uint64_t size);
int tf_sync(struct target_file *tf);
int tf_digest(struct target_file *tf, uint64_t size, uint8_t ret[DIGEST_BYTES]);

/* ---- recover.c ---- */
int journal_apply_mode(struct replica *r, const char *path, struct jheader *h, bool verify);
int journal_apply(struct replica *r, const char *path, struct jheader *h);
int check_digests(struct replica *r, const struct jheader *h);
void state_from_undo(struct rstate *s, const struct jheader *h);
int undo_one(struct replica *r, struct rstate *s, uint64_t k);
int undo_after_mismatch(struct replica *r, struct rstate *s, uint64_t k, const char *redo);
int recover_group(struct replica *r, const char *group);
