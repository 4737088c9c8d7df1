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
 *   batch.c     group commit: light epochs staged, made durable together
 *   rollback.c  rollback points and rollback
 *   verify.c    verify, beside a live receiver or alone
 *   cache.c     what a receiver remembers between epochs
 *   dtree.c     the digest trees it keeps, so a check costs what an epoch wrote
 *   failover.c  promote, demote, clone */
#pragma once
#include "replica.h"
#include "buf.h"
#include "clock.h"
#include "fsutil.h"
#include "name.h"
#include "hash.h"
#include "proto.h"
#include <dirent.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define J_MAGIC "BSCJRNL4"    /* keyed BLAKE2b (the replica key); each source's digest version */
#define J_MAGIC_V3 "BSCJRNL3" /* the same with every digest of version 1: still read */
#define J_MAGIC_V2 "BSCJRNL2" /* the same without PostgreSQL sources: still read */
#define J_MAGIC_V1 "BSCJRNL1" /* the earlier format: unkeyed, read only if recorded at the upgrade */
#define JSUM 32
#define MAP_MAGIC "BSCRMAP1" /* the earlier dense map (a leaf per block), converted on open */
#define MAP_HDR 64
#define J_REDO 1
#define J_UNDO 2
#define REC_EXTENT 1
#define REC_END 2
#define JBUF (4u << 20)
#define RPATH 8192
#define SEEDED 2 /* jsource.exists in a redo: the source comes from its seed file */
#define REPLICA_MAC_PURPOSE "replica files v2" /* key_derive: state and journals */

struct sfile;

/* ---- tree.c: every access beneath the root; paths are relative to it ---- */
/* .bascule/groups/GROUP[/FMT...] into BUF; -ENAMETOOLONG if it does not fit. */
int gpath(const struct replica *r, char *buf, size_t len, const char *group, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* GROUP/SOURCE: the replica file. */
int replica_file(const struct replica *r, char *buf, size_t len, const char *group, const char *source);
/* The seed file of a source new to the replica (GROUP/.SOURCE.seed) and its map. */
int seed_paths(struct replica *r, const char *group, const char *source, char *file, char *map, size_t len);
/* Open REL walking from the root with O_NOFOLLOW at every component, then
 * check by fstat: a regular file with one link owned by the root's owner or
 * root (a directory with O_DIRECTORY); a file root opens for writing is given
 * to the owner.  Returns the fd, -ENOENT without a sentence, -EBADMSG (exit
 * 5) with one for anything planted, another negative errno.  No O_TRUNC. */
int tree_open(const struct replica *r, const char *rel, int flags, mode_t mode);
/* REL afresh, O_RDWR: whatever had the name is unlinked, never written through. */
int tree_create(const struct replica *r, const char *rel, mode_t mode);
/* A directory stream of REL ("." for the root); NULL with errno set. */
DIR *tree_opendir(const struct replica *r, const char *rel);
/* mkdir -p of REL beneath the root (0700; root gives what it makes to the owner). */
int tree_mkdir(const struct replica *r, const char *rel);
/* Remove REL (a link is removed, not followed); -ENOENT without a sentence. */
int tree_unlink(const struct replica *r, const char *rel);
int tree_rename(const struct replica *r, const char *from, const char *to);
/* Remove the empty directory REL (a link is not followed); -ENOENT without a sentence. */
int tree_rmdir(const struct replica *r, const char *rel);
/* 1 if something is at REL (not followed), 0 if not, or a negative errno. */
int tree_exists(const struct replica *r, const char *rel);
int tree_fsync_parent(const struct replica *r, const char *rel);
int tree_fsync_dir(const struct replica *r, const char *rel);
/* The small text file REL (a record: promoted, standby) whole into BUF,
 * NUL-terminated (at most LEN - 1 bytes; a read error leaves it empty).
 * Returns 1, 0 if REL does not exist, or tree_open's negative errno. */
int tree_read_text(const struct replica *r, const char *rel, char *buf, size_t len);
/* fs_write_atomic_at for REL, given to the owner when root writes it. */
int tree_write_atomic(const struct replica *r, const char *rel, const void *data, size_t len);
/* sfile_read and sfile_write (lib/sfile.h) of REL. */
int tree_sfile_read(const struct replica *r, const char *rel, struct sfile *ret);
int tree_sfile_write(const struct replica *r, const char *rel, struct wbuf *b, const uint8_t *key);
/* fsyncs gathered to run at once (fs_sync_all) before a commit point: what
 * an epoch wrote, files and directories, becomes durable in about the time
 * of one fsync instead of one after the other. */
struct syncset {
	int fd[FS_SYNC_MAX];
	bool data_only[FS_SYNC_MAX];
	dev_t dev[FS_SYNC_MAX];
	ino_t ino[FS_SYNC_MAX];
	size_t n;
};
/* Add (a duplicate of) FD, fdatasync'd if DATA_ONLY; a file already in the
 * set is not added twice (fsync'd in full if either asked so); a full set
 * fsyncs it at once. */
int syncset_fd(struct syncset *s, int fd, bool data_only);
/* Add the directory REL, or the directory holding REL. */
int syncset_dir(const struct replica *r, struct syncset *s, const char *rel);
int syncset_parent(const struct replica *r, struct syncset *s, const char *rel);
/* fsync everything added, at once; the set is empty after (0 or an error
 * with a sentence).  drop: empty it without syncing. */
int syncset_run(const struct replica *r, struct syncset *s);
void syncset_drop(struct syncset *s);
/* tree_write_atomic in two steps: REL.tmp written and added to S; once S
 * ran, end renames it over REL and fsyncs its directory. */
int tree_write_atomic_begin(const struct replica *r, const char *rel, const void *data, size_t len,
			    struct syncset *s);
int tree_write_atomic_end(const struct replica *r, const char *rel);
/* Remove what is in DIR whose name ends in SUFFIX (leftovers). */
void remove_suffixed(const struct replica *r, const char *dir, const char *suffix);

/* ---- lock.c ---- */
/* HOW is LOCK_EX (files or state change; nests) or LOCK_SH (a live reader). */
int apply_lock(struct replica *r, int how);
void apply_unlock(struct replica *r, int how);
/* Take the main lock (ROLE: "recv" or "replica", recorded for a later
 * take-over); with TAKEOVER, stop a receiver that holds it.  -EBUSY with a
 * sentence if it stays held. */
int lock_take(struct replica *r, const char *role, bool takeover);
/* End the session of the receiver holding the main lock, if one does
 * (SIGTERM through a pidfd, to a process of the replica's owner or root). */
void lock_end_receiver(struct replica *r, const char *why);

/* ---- state.c ---- */
int state_write(struct replica *r, const struct rstate *s);
/* state_write in two steps around syncset_run (SS): the new state's file
 * written and added to SS; then put in place, the commit point. */
int state_write_begin(struct replica *r, const struct rstate *s, struct syncset *ss);
int state_write_end(struct replica *r, const struct rstate *s);
struct state_source *state_find(struct rstate *s, const char *name);
/* S, about to be written by this process, keeps the marks (DIVERGED) of a
 * state another process wrote since this one last read or wrote it. */
int state_keep_marks(struct replica *r, struct rstate *s);
/* The state's fields as the state file holds them (ackslot.c's slots too). */
int state_encode(const struct rstate *s, struct wbuf *b);
int state_decode_current(struct rbuf *b, const char *group, struct rstate *ret);

/* ---- ackslot.c: the commit point of light epochs, overwritten in place ---- */
/* *ST (decoded from the state file FILE of LEN bytes) replaced by the
 * newest ack slot of GROUP that goes on from that file: 1 if one did, 0 if
 * none, or a negative errno. */
int ackslot_overlay(struct replica *r, const char *group, const uint8_t *file, size_t len, struct rstate *st);
/* 1 when the next state of GROUP can be committed in a slot (apply lock
 * held; the state file is the one this process last saw, state.ack open),
 * 0 when it takes the rename, or a negative errno. */
int ackslot_ready(struct replica *r, const char *group);
/* After ackslot_ready said 1, under the same lock: S written into the slot
 * not holding the newest state and fdatasync'd, the commit point.  1 when
 * done, 0 when S does not fit a slot (nothing written), or an errno. */
int ackslot_commit(struct replica *r, const struct rstate *s);
/* Around a new state file of GROUP (its bytes FILE): before, the slots go
 * first (durably) if FILE is their base; after, they are removed. */
int ackslot_before_state(struct replica *r, const char *group, const uint8_t *file, size_t len);
void ackslot_after_state(struct replica *r, const char *group);
void ackslot_free(struct replica *r);
/* RECORD: the state file of GROUP as this process reads or wrote it now.
 * Else 1 when the file is another since (another process wrote it: a
 * verify's mark), 0 when not or nothing was recorded; or a negative errno. */
int ackslot_seen(struct replica *r, const char *group, bool record);
/* Upgrade GROUP from the earlier format (lock held, key given): record its
 * journals of that format, rewrite its state.  A no-op once done. */
int state_upgrade(struct replica *r, const char *group);
/* 1 if GROUP was upgraded (or made by this version), 0 if not. */
int legacy_upgraded(struct replica *r, const char *group);
/* Whether the upgrade recorded the journal NAME ("N.undo") with checksum SUM. */
bool legacy_accepts(const struct replica *r, const char *group, const char *name,
		    const uint8_t sum[JSUM]);

/* ---- journal.c ---- */
enum { JPG_SOURCE = 1, JPG_NEW_BASE = 2 }; /* jsource.pg */
struct jsource {
	char name[NAME_MAX_LEN + 1];
	uint64_t epoch, size;
	uint8_t status, exists;
	uint8_t digest[DIGEST_BYTES];  /* a PostgreSQL source: its chained WAL digest */
	uint8_t dv;                    /* a disk's digest version (DIGEST_V1, DIGEST_V2) */
	/* A PostgreSQL source (JPG_SOURCE; no replica file, no records): where
	 * its copy stands (docs/replica.md, "PostgreSQL sources"); a redo with
	 * JPG_NEW_BASE puts the base backup BASE_ID in place when applied. */
	uint8_t pg;
	uint64_t system_id, base_id, end_lsn;
	uint32_t timeline;
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
	struct replica *r;
	int fd;
	char path[RPATH];
	struct wbuf buf;
	crypto_generichash_state cs;
	uint64_t n_records;
};

struct jreader {
	struct replica *r;
	int fd;
	char path[RPATH];
	uint8_t *buf;
	size_t len, off;
	uint64_t pos, end; /* file offset of buf[len]; offset where the checksum starts */
};

int jw_flush(struct jwriter *w);
/* Create the journal REL (a keyed MAC is kept as it is written). */
int jw_open(struct jwriter *w, struct replica *r, const char *rel, const struct jheader *h);
int jw_record(struct jwriter *w, uint32_t src, uint64_t off, uint32_t len, const void *data);
/* Trailer, flush, fsync: the file is complete and durable on success
 * (SS not NULL: its fsync is added to SS instead). */
int jw_finish(struct jwriter *w, struct syncset *ss);
void jw_close(struct jwriter *w, bool remove);
int jr_need(struct jreader *j, size_t n);
/* Open the journal of GROUP for EPOCH, KIND "redo", "redo.tmp" or "undo",
 * and read its header, which must name that group, epoch and kind.  VERIFY
 * checks the whole file first (its MAC; see journal.c for the earlier
 * format); without, the header is read only (listing, or a journal this
 * process has just written).  Initialises J even on failure (jr_close). */
int jr_open_mode(struct jreader *j, struct replica *r, const char *group, const char *kind,
		 uint64_t epoch, struct jheader *h, bool verify);
/* Next record: 1 with fields set (DATA NULL for zeros), 0 at the end. */
int jr_next(struct jreader *j, uint32_t *src, uint64_t *off, uint32_t *len, const uint8_t **data);
void jr_close(struct jreader *j);

/* ---- cache.c ---- */
/* The rollback points of GROUP whose state is at epoch AT, newest first (as
 * replica_rollback_points), listed from the undo journals only when the
 * cache does not describe AT.  The arrays are the cache's, valid until the
 * next call. */
int rbcache_points(struct replica *r, const char *group, uint64_t at, const uint64_t **ret_epochs,
		   const uint64_t **ret_times, size_t *ret_n);
/* EPOCH committed with an undo journal leading back to PREV (cut at
 * PREV_CUT_TIME): PREV is the newest rollback point now. */
void rbcache_committed(struct replica *r, const char *group, uint64_t prev, uint64_t prev_cut_time,
		       uint64_t epoch);
/* The undo journals leading to rollback points N and older were removed. */
void rbcache_truncate(struct replica *r, const char *group, size_t n);
/* An entry was created in directory REL: its next dircache_fsync fsyncs it. */
void dircache_changed(struct replica *r, const char *rel);
/* fsync the directory REL unless this process did since its last
 * dircache_changed (every directory is fsync'd once per process); with SS,
 * the fsync is added to SS (dircache_reset if SS then fails). */
int dircache_fsync(struct replica *r, const char *rel, struct syncset *ss);
/* Forget which directories were fsync'd (a sync set that failed). */
void dircache_reset(struct replica *r);
void replica_cache_free(struct replica *r);

/* ---- batch.c: group commit of light epochs ---- */
#define REPLICA_BATCH_MAX 16   /* epochs staged at most (then flushed) */
/* The state GROUP is at once its staged epochs are durable: 1 and *RET
 * set when epochs of GROUP are staged, 0 when none is (a batch of another
 * group is flushed first), or a negative errno. */
int batch_state(struct replica *r, const char *group, struct rstate *ret);
/* Stage an epoch that takes the group from PREV to NEXT, its fsyncs in SS
 * (taken: SS is empty on return).  1 when staged, 0 when the batch was full
 * and flushed (durable now), or a negative errno (the epoch is not staged;
 * those before it stay so). */
int batch_add(struct replica *r, const struct rstate *prev, const struct rstate *next, struct syncset *ss);
void batch_free(struct replica *r);
/* Epoch CURRENT committed after PREV: the undo journals of rollback points
 * past what is kept go (apply.c). */
void undo_prune(struct replica *r, const struct rstate *prev, uint64_t current);

/* ---- map.c ---- */
struct dtree;
struct blockmap;
struct target_file {
	int fd;
	struct blockmap *map; /* its map (lib/blockmap.h), the receiver's kept one if TREE */
	uint64_t size;
	uint8_t secret[LEAF_SECRET_BYTES];
	uint8_t zero_leaf[LEAF_BYTES];
	struct dtree *tree;   /* the entry of dtree.c that owns MAP, or NULL: TF owns it */
};

extern const uint8_t zero_block[PROTO_BLOCK];
uint64_t nblocks(uint64_t size);
/* Open the replica file GROUP/SOURCE (CREATE: made if missing) and its map
 * (made if missing, converted from the earlier dense format if need be). */
int tf_open(struct replica *r, const char *group, const char *source, bool create, struct target_file *tf);
/* The seed file of a source new to the replica and its map, afresh (empty). */
int tf_create_seed(struct replica *r, const char *group, const char *source, struct target_file *tf);
void tf_close(struct target_file *tf);
int tf_rehash(struct target_file *tf, uint64_t first, uint64_t count, uint64_t size);
int tf_write(struct target_file *tf, uint64_t off, uint32_t len, const uint8_t *data, uint64_t final_size);
int tf_resize(struct target_file *tf, uint64_t size);
int tf_sync(struct target_file *tf);
/* The digest of version DV (hash.h) of the replica from every leaf of its map. */
int tf_digest(struct target_file *tf, uint64_t size, uint8_t dv, uint8_t ret[DIGEST_BYTES]);

/* ---- dtree.c ---- */
/* The map REL of GROUP/SOURCE kept open by this process, if one is and it
 * is still the file at REL: TF gets it (true) until tf_close. */
bool dtree_attach(struct replica *r, const char *group, const char *source, const char *rel,
		  struct target_file *tf);
/* Keep TF's map (just opened) once TF is closed, if there is room. */
void dtree_keep(struct replica *r, const char *group, const char *source, struct target_file *tf);
/* TF is done with the kept map it was given. */
void dtree_release(struct target_file *tf);
/* tf_digest of TF through its map's kept tree (lib/blockmap.h: built from
 * the map at the first digest; a version 1 digest is always computed
 * whole).  *RET_CACHED says an existing tree answered: the caller computes
 * the whole digest again before calling a mismatch one. */
int dtree_digest(struct target_file *tf, uint64_t size, uint8_t dv, uint8_t ret[DIGEST_BYTES], bool *ret_cached);
void dtree_free(struct replica *r);

/* ---- failover.c ---- */
/* A directory the operator names (--link-dir, --to-dir), created if need
 * be, opened: inside the replica directory through no link, outside as
 * given but not through a link as its last component.  The fd. */
int dest_open(struct replica *r, const char *path, mode_t mode);

/* ---- recover.c ---- */
/* Applying a journal (redo or undo) to its group, in two steps: open opens
 * and checks the journal (VERIFY: its MAC) and every replica file it
 * writes, changing nothing, so that a refusal leaves the replica as it was;
 * run writes (idempotent: recovery may run it again after a crash). */
struct japply {
	struct jreader j;
	struct jheader h;
	struct target_file tfs[PROTO_MAX_SOURCES];
};
int japply_open(struct japply *a, struct replica *r, const char *group, const char *kind,
		uint64_t epoch, bool verify);
int japply_run(struct japply *a, struct replica *r);
void japply_close(struct japply *a);
/* Both steps; *RET is the journal's header. */
int journal_apply(struct replica *r, const char *group, const char *kind, uint64_t epoch,
		  bool verify, struct jheader *ret);
/* Check the digests of the sources named in H against their maps: 0, or
 * -EBADMSG with a sentence naming the first mismatching source. */
int check_digests(struct replica *r, const struct jheader *h);
/* S at the epoch of the redo H (its sources applied); -EPROTO if that would
 * make more than PROTO_MAX_SOURCES sources.  S untouched on failure. */
int state_after_redo(struct rstate *s, const struct jheader *h);
/* The state that an undo journal restores. */
void state_from_undo(struct rstate *s, const struct jheader *h);
/* Apply undo K and step S back; crash-safe through pending_undo. */
int undo_one(struct replica *r, struct rstate *s, uint64_t k);
/* Epoch K applied but failed its digests: undo it, dropping the redo REDO. */
int undo_after_mismatch(struct replica *r, struct rstate *s, uint64_t k, const char *redo);
/* Finish what a crash interrupted in GROUP (after its upgrade, if due). */
int recover_group(struct replica *r, const char *group);
