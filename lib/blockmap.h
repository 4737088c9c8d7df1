/* blockmap.h - the persisted change-tracking map of one source (the
 * daemon's), and the map of leaves of one replica file (tools/replica/map.c).
 *
 * One 32-byte record per 4 KiB block (the block's keyed leaf hash at the
 * last scan and the epoch in which it last changed), but only for the MiB
 * chunks that hold data and changed lately: each MiB of the source has a
 * chunk word that says "never seen", "zero blocks only, since epoch E" (no
 * records: they cost nothing, in memory or on disk), "records", or "cold
 * since epoch E" (no records: only the chunk's level-1 node of the digest
 * tree, 32 bytes in a table after the words; a chunk whose newest change
 * every target holds, kept so by blockmap_cool).  The file is mmap'd and
 * sparse: the records of a chunk are written (and paged) only while it is
 * hot, so a 256 GiB image with 2 GiB written costs ~16 MiB, not 2 GiB, and
 * a fully written TiB gone cold 40 MiB, not 8 GiB.
 * A target that has epoch A lacks exactly the blocks whose change epoch is
 * > A: this is each target's out-of-sync set.  Format: docs/design.md. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "hash.h"
#include "merkle.h"

#define BM_CHUNK 256 /* blocks per chunk word: 1 MiB, one level-1 node of the digest tree */

struct bm_rec {
	uint8_t leaf[LEAF_BYTES]; /* all zero: unknown, treated as changed */
	uint64_t epoch;           /* epoch in which the block last changed */
	uint64_t reserved;
};

/* BM_COLD: the chunk's blocks changed at the latest in its epoch, their
 * leaves are not kept, only their level-1 node (blockmap_chunk_node). */
enum bm_state { BM_UNKNOWN, BM_ZERO, BM_RECS, BM_COLD };

/* How a map's files are reached: by plain paths (blockmap_open), or as the
 * replica reaches its files, beneath its root only (tools/replica/tree.c).
 * NAME is the map's name as given to blockmap_open_fs, or NAME.new for a
 * rewrite.  Each returns an fd or 0, or a negative errno with a sentence;
 * CTX must outlive the map. */
struct blockmap_fs {
	int (*open)(void *ctx, const char *name);   /* O_RDWR | O_CREAT, 0600 */
	int (*create)(void *ctx, const char *name); /* afresh (what had the name is gone), O_RDWR */
	int (*rename)(void *ctx, const char *from, const char *to);
	int (*fsync_parent)(void *ctx, const char *name);
	int (*unlink)(void *ctx, const char *name);
	void *ctx;
};

struct blockmap {
	int fd;
	char path[4096];
	struct blockmap_fs fs;
	uint8_t *base;
	size_t map_len;
	uint64_t *words;          /* one per chunk */
	uint8_t *nodes;           /* MERKLE_NODE per chunk; only BM_COLD chunks' are written */
	struct bm_rec *recs;      /* nblocks slots; only BM_RECS chunks' are written */
	uint64_t nblocks, nchunks;
	uint64_t size;
	uint64_t dir_bytes;       /* room of the chunk words (page multiple) */
	uint8_t zero_leaf[LEAF_BYTES]; /* the leaf of a 4 KiB zero block */
	/* The digest's cached tree (lib/merkle.h), anonymous memory: built
	 * from the leaves at the first digest, then only the level-1 nodes
	 * touched since are recomputed. */
	struct merkle_tree tree;
	uint8_t *tree_mem;
	size_t tree_len;
	uint8_t zero_node[MERKLE_NODE], unknown_node[MERKLE_NODE];
	/* The newest change epoch of each chunk with records (anonymous, 8
	 * bytes per MiB, a page only where such chunks are): found by one pass
	 * over the records at the first question of a run, then kept up by
	 * blockmap_changed, so "does this MiB hold a block a target lacks" is
	 * one word, not 256 records.  NULL until then. */
	uint64_t *newest;
	size_t newest_len;
	pthread_mutex_t newest_lock;
	/* Chunks made cold whose records are punched out of the file at the
	 * next blockmap_sync, once their words are durable; and where the next
	 * blockmap_cool goes on. */
	uint64_t *cooled;
	size_t n_cooled, cooled_cap;
	uint64_t cool_next;
	/* How often each chunk was made hot again in this run (anonymous, a
	 * byte per MiB, NULL until the first): a chunk woken K times waits
	 * 2^K times longer before it goes cold again (blockmap_cool). */
	uint8_t *wakes;
	size_t wakes_len;
};

/* Open or create PATH for a source whose leaves are keyed by KEY_ID and
 * whose zero block hashes to ZERO_LEAF; a map made under another key is
 * reset (every block becomes unknown).  A map of a previous format
 * (BSCBMAP1, a record for every block; BSCBMAP2, no node table) is
 * converted first: into PATH.new, fsync'd, renamed over PATH (a crash
 * leaves one or the other whole). */
int blockmap_open(const char *path, const uint8_t key_id[KEY_ID_BYTES], const uint8_t zero_leaf[LEAF_BYTES],
		  struct blockmap **ret);
/* The same through FS (copied; NULL: plain paths).  BLOCKMAP_KEEP: a file
 * that is not empty but holds no map of this format and key is refused
 * (-EBADMSG with a sentence) instead of reset: for a map whose leaves are
 * the only record of what a file holds (the replica's). */
#define BLOCKMAP_KEEP 1
int blockmap_open_fs(const struct blockmap_fs *fs, const char *name, const uint8_t key_id[KEY_ID_BYTES],
		     const uint8_t zero_leaf[LEAF_BYTES], unsigned int flags, struct blockmap **ret);
/* Where the chunks of a map being written afresh come from: chunk C's state
 * (BM_ZERO, BM_COLD: since *RET_EPOCH; BM_RECS: *RET_RECS, its records,
 * valid until the next call); NODE, for a source that has cold chunks
 * (NULL: none), gives a cold chunk's node. */
struct blockmap_from {
	int (*chunk)(void *ctx, uint64_t c, enum bm_state *ret_state, uint64_t *ret_epoch,
		     const struct bm_rec **ret_recs);
	void *ctx;
	const uint8_t *(*node)(void *ctx, uint64_t c);
};
/* Write NAME.new (through FS, NULL: paths) as a map of SIZE bytes keyed by
 * KEY_ID with the chunks FROM gives, fsync it and rename it over NAME: a
 * crash leaves one or the other whole (the conversion of an earlier format). */
int blockmap_write(const struct blockmap_fs *fs, const char *name, const uint8_t key_id[KEY_ID_BYTES],
		   uint64_t size, const struct blockmap_from *from);
void blockmap_close(struct blockmap *m);
/* Follow the source to SIZE bytes: new blocks are unknown. */
int blockmap_resize(struct blockmap *m, uint64_t size);
/* Make every change durable (msync + fsync); then the records of the
 * chunks made cold since are punched out of the file. */
int blockmap_sync(struct blockmap *m);

/* Chunk C (blocks [C * BM_CHUNK, ...)): its state, and for BM_ZERO the
 * epoch its blocks became zero, for BM_COLD its newest change epoch. */
enum bm_state blockmap_chunk_state(const struct blockmap *m, uint64_t c, uint64_t *ret_epoch);
/* Chunk C was found all zero blocks (a full chunk only, BM_UNKNOWN or
 * BM_ZERO): BM_ZERO since EPOCH.  Returns whether that changed it. */
bool blockmap_chunk_zero(struct blockmap *m, uint64_t c, uint64_t epoch);
/* The records of chunk C, written out first if it had none (BM_ZERO: its
 * zero leaves and epoch; BM_UNKNOWN: unknown; BM_COLD: unknown, since its
 * epoch: a cold chunk is made hot with blockmap_chunk_heat instead).
 * Chunks of different C may be taken from several threads at once. */
struct bm_rec *blockmap_chunk_recs(struct blockmap *m, uint64_t c);
/* The level-1 node of the digest tree over chunk C's leaves (a cold chunk:
 * the one kept). */
void blockmap_chunk_node(const struct blockmap *m, uint64_t c, uint8_t ret[MERKLE_NODE]);
/* Cold chunk C is hot again with RECS (BM_CHUNK records, leaves hashed from
 * the data): written before the word, so a crash leaves it cold; the
 * digest's tree and the chunk's newest epoch are told.  Thread-safe for
 * different C. */
void blockmap_chunk_heat(struct blockmap *m, uint64_t c, const struct bm_rec *recs);
/* Make cold up to LIMIT whole chunks with records whose blocks are all
 * known and changed at the latest in epoch UPTO and HOLD epochs before NOW
 * (HOLD x 2^K for a chunk made hot again K times in this run: one written
 * again and again stays hot), going round the map from where the last call
 * stopped: their nodes are written and made durable,
 * then their words (the caller's blockmap_sync makes those durable, then
 * punches their records).  No scan may run.  *RET_N: how many.  0 or a
 * negative errno with a sentence. */
int blockmap_cool(struct blockmap *m, uint64_t upto, uint64_t now, uint64_t hold, uint64_t limit,
		  uint64_t *ret_n);
/* Bytes of the map file allocated on disk (st_blocks), for status and tests. */
uint64_t blockmap_disk_bytes(const struct blockmap *m);

/* Block B's leaf changed: its MiB of the tree is recomputed at the next
 * digest.  Thread-safe (scan workers call it at once). */
void blockmap_touch(struct blockmap *m, uint64_t b);
/* Block B's record was just given change epoch EPOCH (and its new leaf):
 * blockmap_touch, and the chunk's newest epoch follows.  Thread-safe. */
void blockmap_changed(struct blockmap *m, uint64_t b, uint64_t epoch);
/* The newest change epoch of chunk C's blocks: BM_ZERO its epoch,
 * BM_UNKNOWN 0, BM_RECS the greatest of its records' (kept in memory, see
 * struct blockmap).  Thread-safe; the first call of a run with records to
 * look at costs a pass over every chunk that has some. */
uint64_t blockmap_chunk_newest(struct blockmap *m, uint64_t c);
/* The digest (DIGEST_V2) of the source as the map describes it: the first
 * call costs every chunk, later ones the MiB touched since (x log n).
 * 0 or a negative errno with a sentence. */
int blockmap_digest(struct blockmap *m, uint8_t ret[DIGEST_BYTES]);
/* The digest's tree is not trusted: the next digest recomputes every chunk. */
void blockmap_forget_tree(struct blockmap *m);
/* Whether a digest tree is kept (the next digest costs what changed since). */
bool blockmap_has_tree(const struct blockmap *m);
/* The leaves of blocks [FIRST, FIRST + N) into RET (LEAF_BYTES each): a
 * chunk of zero blocks gives the zero leaf, one unknown, cold or past the
 * end all-zero bytes (a map that has cold chunks, the daemon's, is not
 * asked for leaves). */
void blockmap_leaves(const struct blockmap *m, uint64_t first, uint64_t n, uint8_t *ret);
/* Set the leaves of blocks [FIRST, FIRST + N) (within the map) to LEAVES,
 * changed in EPOCH: a whole chunk of zero leaves that has no records is
 * kept as a chunk word (no records written), others get their records.
 * The digest's tree is told. */
void blockmap_set_leaves(struct blockmap *m, uint64_t first, uint64_t n, const uint8_t *leaves,
			 uint64_t epoch);
/* Number of blocks whose change epoch is greater than EPOCH (a cold chunk
 * counts whole if its epoch is). */
uint64_t blockmap_count_newer(const struct blockmap *m, uint64_t epoch);
