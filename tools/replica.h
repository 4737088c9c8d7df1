/* replica.h - the replica store of one target directory (docs/replica.md).
 *
 *   ROOT/G/S                          the replica of source S of group G
 *   ROOT/.bascule/lock                flock held by recv and replica commands
 *   ROOT/.bascule/apply.lock          flock: exclusive while replica files change
 *                                     (commit, recovery, rollback), shared by a
 *                                     live reader (verify or clone while recv runs)
 *   ROOT/.bascule/groups/G/state      where the group stands (atomic writes)
 *   ROOT/.bascule/groups/G/S.map      leaf hashes of ROOT/G/S
 *   ROOT/.bascule/groups/G/journal/N.redo   committed epoch N not yet applied
 *   ROOT/.bascule/groups/G/undo/N.undo      what epoch N overwrote (rollback)
 *
 * An epoch is received into N.redo.tmp; the old content of every range it
 * touches is saved to N.undo; renaming the redo is the commit point.  The redo
 * is then applied, the result checked against the primary's digest (undone on
 * mismatch), the state written, the redo removed.  A crash at any point is
 * repaired by the recovery every locked open runs: replay a committed redo
 * or finish an undo.  State and journals are authenticated with a key
 * derived from the site key; no link in ROOT is ever followed. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "key.h"
#include "pgproto.h"
#include "proto.h"

struct rstate {
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch;        /* last complete epoch applied */
	uint64_t cut_time;     /* when the primary cut it (unix usec) */
	uint64_t applied_time; /* when it was applied here */
	uint8_t flags;         /* EPOCH_CONSISTENT */
	uint64_t pending_undo; /* an undo being applied (crash repair), else 0 */
	char alarm[256];       /* last digest mismatch, empty if none */
	uint32_t n_sources;
	struct state_source sources[PROTO_MAX_SOURCES];
};

struct replica {
	char root[4096];       /* absolute, for messages; accesses go through root_fd */
	int root_fd;           /* ROOT opened once (O_DIRECTORY|O_NOFOLLOW): every file
				* is reached beneath it, never through a link */
	uid_t owner_uid;       /* ROOT's owner: what root creates inside is given to it */
	gid_t owner_gid;
	int lock_fd;
	int apply_fd;          /* apply.lock, opened on first use */
	int apply_depth;       /* nested exclusive holds */
	bool live;             /* opened read-only beside a running receiver */
	bool unauthenticated;  /* a state was shown without its key (no --key) */
	const struct site_key *key;
	uint8_t mac_key[32];   /* from the site key: authenticates state and journals */
	const char *key_path;  /* the key file given, for commands messages suggest */
	uint64_t keep_epochs;
	uint64_t keep_time;    /* usec */
	struct replica_cache *cache; /* tools/replica/cache.c: remembered between epochs */
	struct dtrees *dtrees; /* tools/replica/dtree.c: the digest trees kept between epochs */
	struct replica_batch *batch; /* tools/replica/batch.c: light epochs staged */
	struct ackslots *ackslots;   /* tools/replica/ackslot.c: the slots last written */
};

enum {
	REPLICA_CREATE = 1,    /* make ROOT if missing (bascule recv) */
	REPLICA_READONLY = 2,  /* no lock and no recovery: list, clone and verify beside recv */
	REPLICA_TAKEOVER = 4,  /* stop a receiver holding the lock (recv, promote, demote) */
	REPLICA_RECEIVER = 8,  /* the holder is bascule recv (what a take-over may stop) */
};
/* Open ROOT (FLAGS above), take its lock (-EBUSY if held), upgrade groups of
 * the earlier format and recover every group.  ROOT itself must not be a
 * symbolic link; nothing inside it is followed (tools/replica/tree.c).  KEY
 * is needed to hash leaves and to authenticate state and journals (without
 * it, READONLY only: states are shown unchecked); it must outlive R. */
int replica_open(const char *root, unsigned int flags, const struct site_key *key,
		 struct replica **ret);
void replica_close(struct replica *r);
/* Names of the groups present; *ret is a malloc'd array of malloc'd names. */
int replica_groups(struct replica *r, char ***ret, size_t *ret_n);
/* Names of the directories of ROOT that may hold a group's replica files
 * (with or without state), the same way. */
int replica_group_dirs(struct replica *r, char ***ret, size_t *ret_n);
void replica_groups_free(char **names, size_t n);
/* -ENOENT if the group has no state yet. */
int replica_load_state(struct replica *r, const char *group, struct rstate *ret);
/* Epochs that rollback can return to, newest first, with cut times. */
int replica_rollback_points(struct replica *r, const char *group, uint64_t *epochs,
			    uint64_t *times, size_t max, size_t *ret_n);
int replica_rollback(struct replica *r, const char *group, uint64_t to);
/* Recompute every leaf and digest from the replica files.  Returns 0 when all
 * agree, -EBADMSG otherwise; one line per source is printed to OUT.  On a
 * replica opened read-only while bascule recv runs, the check holds the apply
 * lock shared (the receiver's next apply waits for it), and a mismatch marks
 * the source diverged and ends the receiver's session, so the primary
 * reconnects and resynchronises it at once. */
int replica_verify(struct replica *r, const char *group, void (*out)(const char *line));

struct rapply;
/* Receive an epoch: begin, one source() per source, extent()s in increasing
 * (source, offset) order, then commit() or abort().  commit() returns 0 when
 * the epoch is applied, verified and durable (ack it), else a negative errno
 * with the replica left at its previous epoch. */
int replica_epoch_begin(struct replica *r, const struct msg_epoch_begin *m, struct rapply **ret);
int replica_epoch_source(struct rapply *a, const struct msg_source *m);
int replica_epoch_extent(struct rapply *a, uint32_t src, uint64_t off, uint32_t len,
			 const uint8_t *data /* NULL: zeros */);
/* A PostgreSQL source in SOURCE's place (docs/protocol.md, section 7), its
 * WAL and the pieces of its base backup. */
int replica_epoch_pgsource(struct rapply *a, const struct msg_pgsource *m);
int replica_epoch_wal(struct rapply *a, uint32_t src, uint64_t lsn, uint32_t len, const uint8_t *data);
int replica_epoch_basefile(struct rapply *a, uint32_t src, const char *file, uint64_t off, uint32_t len,
			   const uint8_t *data);
int replica_epoch_commit(struct rapply *a, const struct msg_epoch_end *m);
/* Group commit: like commit(), but a light epoch (WAL only, docs/replica.md)
 * may be left staged: 1 when it is (it is durable, and may be acked, only
 * once replica_flush returns 0), 0 when it is durable now.  commit() of a
 * later epoch makes the staged ones durable with it. */
int replica_epoch_stage(struct rapply *a, const struct msg_epoch_end *m);
/* Make the staged epochs durable, with one round of fsyncs: 0 (also when
 * none is staged), or a negative errno: then none of them is, and the
 * replica stays at the state before them. */
int replica_flush(struct replica *r);
/* After the ACKs of the epochs replica_flush made durable: remove what they
 * made unnecessary (undo journals past --keep-epochs, and the like; kept
 * off the path to the ACK).  The next commit and replica_close do it too. */
void replica_tidy(struct replica *r);
/* replica_flush and its tidying at once: for a caller that commits a newer
 * epoch of the group next (a heavy epoch, a state marked diverged).  The
 * tidying prunes from the flushed states: run after a newer commit, it
 * would not see that commit's base and could remove it. */
int replica_flush_tidy(struct replica *r);
bool replica_staged(const struct replica *r);
void replica_epoch_abort(struct rapply *a);
const char *replica_epoch_group(const struct rapply *a);
uint64_t replica_epoch_number(const struct rapply *a);
/* Read LEN bytes of the replica ROOT/GROUP/SOURCE at OFF (zeros past its
 * end or if it does not exist); *RET_SIZE is its size. */
int replica_read_range(struct replica *r, const char *group, const char *source, uint64_t off,
		       uint8_t *buf, uint32_t len, uint64_t *ret_size);
const char *replica_epoch_source_name(const struct rapply *a, uint32_t idx);
/* Add to G the replica files of GROUP that have no state (SRC_UNKNOWN). */
int replica_unknown_sources(struct replica *r, const char *group, struct state_group *g);

/* ---- failover ---- */
struct promote_opts {
	uint64_t epoch;        /* promote exactly this epoch (0: the newest allowed) */
	uint64_t at;           /* newest epoch cut at or before this time (unix usec), 0: any;
				* PostgreSQL sources recover to this time exactly */
	bool consistent;       /* only epochs captured point-in-time */
	const char *link_dir;  /* make the disks appear here as DIR/SOURCE (a PostgreSQL source's
				* data directory is made there), or NULL */
	/* PostgreSQL sources (docs/postgres.md, "Promotion") */
	const char *pg_user;   /* the user PostgreSQL runs as (default: the replica's owner) */
	const char *pg_bin;    /* its programs (default /usr/lib/postgresql/VERSION/bin) */
	const char *pg_conf;   /* this site's settings, appended to postgresql.auto.conf */
	uint64_t pg_timeout;   /* recovery may take this long (usec; 0: one hour) */
};

#define PROMOTE_MAX_PG 8
struct promote_pg {
	char source[NAME_MAX_LEN + 1];
	char data_dir[1024];
	bool hot;              /* the running standby was promoted */
	bool clone;            /* a clone (test drill), not the replica's own database */
	uint64_t end_lsn;      /* the WAL recovery was given ended here (the acked point) */
	uint64_t redo_lsn;     /* the last record it replayed */
	uint32_t timeline;     /* the new timeline */
	uint64_t last_xact;    /* time of the last transaction recovered (usec; 0: none) */
	uint64_t at;           /* the recovery target time (usec; 0: none) */
	uint64_t usec;         /* how long it took */
};

/* PostgreSQL hot standbys (docs/postgres.md, "Standby modes"): make and
 * start each PostgreSQL source's of GROUP, a line to OUT for each. */
int replica_pg_standby(struct replica *r, const char *group, const struct promote_opts *o, void (*out)(const char *line));
/* The standby's restore_command (pg.h, pg_wal_get): 0, -ENOENT if the
 * copy has no such file (yet). */
int replica_pg_wal_get(struct replica *r, const char *group, const char *source, const char *name, const char *dest,
		       uint32_t upto_tli, uint64_t upto_lsn);

/* Where the files of a PostgreSQL data directory come from when they are
 * not in a replica store (a restore from the vault): the base's archives,
 * WAL segments, timeline histories (docs/postgres.md, "PITR from the
 * vault"). */
struct pgfeed {
	void *ctx;
	/* File NAME of the base (base.tar, OID.tar) open for reading, or -errno. */
	int (*base_file)(void *ctx, const char *name);
	/* Segment SEGNO of timeline TLI as recovery reads it, into BUF (16 MiB):
	 * the bytes below LIMIT, zeros from there; -ENOENT if there is none. */
	int (*segment)(void *ctx, uint32_t tli, uint64_t segno, uint64_t limit, uint8_t *buf);
	/* The history file of timeline TLI (> 1), malloc'd. */
	int (*history)(void *ctx, uint32_t tli, char **ret, size_t *ret_len);
	const char *what;      /* "GROUP/SOURCE", for messages */
};

/* What a restore from the vault recovers: the base (its files, in order),
 * the WAL from FROM to END_LSN on timeline TLI, to time AT (0: its end). */
struct pg_restore_req {
	const char *source;
	uint32_t n_files;
	const char *const *files;
	uint64_t system_id, base_id, from, end_lsn;
	uint32_t tli;
	uint64_t at;
};
/* Make DATA_DIR (absent) from F as REQ says and recover it as a primary,
 * exactly as a cold promote does (pgpromote.c), then stop it cleanly.  O
 * gives the PostgreSQL user (default postgres), programs, settings and
 * timeout.  On failure the data directory is left as it is (the caller
 * removes it). */
int replica_pg_restore(const struct pgfeed *f, const struct pg_restore_req *req, const struct promote_opts *o,
		       const char *data_dir, struct promote_pg *ret);
/* The name, beside data directory NAME (its last component), of the
 * directory holding its tablespaces (PARENT/.NAME.tblspc). */
void pgrun_tblspc_name(char *buf, size_t len, const char *name);

struct promote_info {
	uint64_t epoch, cut_time, promoted_time;
	uint8_t flags;
	uint32_t n_sources;
	char sources[PROTO_MAX_SOURCES][NAME_MAX_LEN + 1];
	uint32_t n_pg;         /* PostgreSQL sources brought up */
	struct promote_pg pg[PROMOTE_MAX_PG];
};

/* Make GROUP live on this site: roll back to the epoch O allows if needed,
 * mark it promoted (bascule recv then refuses to write into it), and link
 * its disks into O->link_dir.  Promoting again is a no-op returning the
 * same epoch (a resumed drill). */
int replica_promote(struct replica *r, const char *group, const struct promote_opts *o,
		    struct promote_info *ret);
/* 1 and *RET if GROUP is promoted, 0 if not, or a negative errno. */
int replica_promoted(struct replica *r, const char *group, struct promote_info *ret);
/* -EROFS (exit 1: not a key problem) with what to do if GROUP is promoted,
 * else 0: the group is live on this site, replication may not write into it. */
int replica_refuse_promoted(struct replica *r, const char *group);
/* Make a promoted GROUP a replica again: its sources are marked diverged,
 * so the daemon brings them back with a librsync resync. */
int replica_demote(struct replica *r, const char *group);
/* Clone (FICLONE, else a sparse copy) GROUP's disks at a complete epoch into
 * TO_DIR, without stopping bascule recv (R opened read-only).  A PostgreSQL
 * source becomes TO_DIR/SOURCE, a stopped data directory recovered to the
 * clone's epoch on a timeline of its own (O: its user, programs, settings;
 * NULL: the defaults), described in RET->pg; a hot standby goes on. */
int replica_clone(struct replica *r, const char *group, const char *to_dir, const struct promote_opts *o,
		  struct promote_info *ret);
/* replica_rollback_points with the consistency flags of each point. */
int replica_rollback_points_flags(struct replica *r, const char *group, uint64_t *epochs,
				  uint64_t *times, uint8_t *flags, size_t max, size_t *ret_n);
