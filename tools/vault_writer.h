/* vault_writer.h - the state of the vault writer (`bascule vault recv`):
 * what the vault holds (packs, index objects, the dedup table, each
 * group's maps), the epoch in progress, and the journal of uploads not yet
 * committed.  vault_writer.c keeps the tables and the journal and loads the
 * state from the vault; vault_recv.c turns epochs into objects. */
#pragma once
#include "buf.h"
#include "key.h"
#include "proto.h"
#include "vault.h"
#include "vaultkey.h"
#include "vrecord.h"
#include "vstore.h"
#include <stdbool.h>
#include <stdint.h>
#include <zstd.h>

#define MAX_DELTAS 64          /* a new base after this many deltas ... */
#define DELTA_SHARE 4          /* ... or when deltas exceed 1/4 of the base */
#define PACK_NEW 1             /* pfresh: uploaded for the epoch in progress */
#define PACK_RECOVERED 2       /* pfresh: uploaded by an interrupted run (journal) */

/* Dedup table entry: a block the vault holds. */
struct dent {
	uint8_t id[VAULT_ID];
	uint32_t pack, off, len;
	uint8_t slot, used;
};

struct vpgsrc;

struct vsrc {
	char name[NAME_MAX_LEN + 1];
	struct vpgsrc *pg;            /* a PostgreSQL source (vault_pg.h), NULL: a disk */
	struct vmap map;
	uint8_t digest[32];
	uint8_t base[VAULT_NAME];
	uint64_t base_size, delta_size;
	uint32_t n_deltas;
	uint8_t (*deltas)[VAULT_NAME];
	bool have;                    /* committed at least once */
	/* epoch in progress */
	struct vmap next;
	uint64_t *changed;
	size_t n_changed, cap_changed;
	uint8_t *mark;                /* one bit per block: in changed[] */
	bool reset;                   /* full send: start from an empty map */
	bool touched;
};

struct vgroup {
	char name[NAME_MAX_LEN + 1];
	uint64_t epoch, cut_time;
	uint32_t n_src;
	struct vsrc src[PROTO_MAX_SOURCES];
};

struct vstore_pool;

struct writer {
	const char *url;
	struct vstore *vs;
	struct vstore_pool *pool;    /* parallel pack uploads (vault_upload.c), NULL: in line on vs */
	struct vkeys k;
	struct vpacks packs;         /* data packs, numbered */
	uint64_t *psize;             /* their sizes */
	uint32_t *pref;              /* blocks of committed maps in each pack */
	uint8_t *pfresh;             /* uploaded since the last commit (or found in the journal) */
	struct vpacks objs;          /* index objects and their sizes */
	uint64_t *osize;
	struct dent *dt;
	size_t dt_cap, dt_n;
	struct vgroup *groups;
	size_t n_groups;
	/* epoch in progress */
	struct vgroup *cur;
	uint64_t epoch, cut_time;
	uint8_t flags;
	uint32_t n_sources;
	struct wbuf pack;
	uint8_t pack_nonce[16];
	uint8_t *frame;              /* VAULT_FRAME_BLOCKS blocks */
	uint32_t f_n, f_src;
	uint64_t f_block;
	uint8_t f_ids[VAULT_FRAME_BLOCKS][VAULT_ID];
	ZSTD_CCtx *zctx;
	struct dent *pe;             /* blocks of the pack being filled (for the journal) */
	size_t pe_n, pe_cap;
	struct site_key *site_key;   /* until the wire has its session secret */
	/* cache */
	char cache[4096];
	int jfd;
	struct vrecord rec;          /* what this writer committed (vrecord.h) */
	/* figures */
	uint64_t blocks_new, blocks_dedup, bytes_up, up0;
};


/* The journal and the record live in the cache directory, the working
 * directory of the writer (names are relative: see vault_recv). */
#define JOURNAL_FILE "pending"

/* Upload LEN bytes as the object named by their hash (*NAME): created
 * exclusively; the same bytes already there are fine. */
int writer_upload(struct writer *w, const uint8_t *data, size_t len, uint8_t name[VAULT_NAME]);

/* vault_upload.c: packs go up in line on w->vs, or with PARALLEL > 1 over
 * an sftp:// vault through that many more sessions.  writer_pack_upload
 * names the pack (numbered w->packs.n, blocks w->pe), takes PACK's bytes
 * (PACK is left empty, ready to be refilled) and returns once the pack is
 * durable (in line) or queued (pool); a pack is journaled when durable.
 * writer_uploads_wait returns once every queued pack is durable (0) or one
 * failed: call it before writing anything that names packs. */
int writer_uploads_open(struct writer *w, const struct vstore_opts *o, unsigned parallel);
int writer_pack_upload(struct writer *w, struct wbuf *pack, const uint8_t nonce[16]);
int writer_uploads_wait(struct writer *w);
void writer_uploads_close(struct writer *w);

/* Tables (0 or -ENOMEM). */
int writer_pack_add(struct writer *w, const struct vpack *p, uint64_t size, uint32_t *ret);
int writer_obj_add(struct writer *w, const uint8_t name[VAULT_NAME], uint64_t size);
/* Size of an index object the writer knows of (0 if unknown). */
uint64_t writer_obj_size(const struct writer *w, const uint8_t name[VAULT_NAME]);
int writer_dt_put(struct writer *w, const uint8_t id[VAULT_ID], const struct vloc *l);
/* A block with this id the vault holds and will keep: in a pack the
 * committed maps still use, or uploaded since the last commit. */
bool writer_dt_get(struct writer *w, const uint8_t id[VAULT_ID], struct vloc *ret);
void writer_map_refs(struct writer *w, const struct vmap *m, int delta);
/* The group NAME (created if CREATE), NULL if absent or out of memory. */
struct vgroup *writer_group(struct writer *w, const char *name, bool create);
/* The journal of uploads since the last commit (JOURNAL_FILE). */
int writer_journal_open(struct writer *w);
int writer_journal_add(struct writer *w, uint32_t pack, const struct dent *e, uint32_t n);
/* The same in two steps: build the record (in the writer's thread), then
 * append it to FD and fdatasync (any thread; serialise the writes). */
void writer_journal_record(const struct writer *w, uint32_t pack, const struct dent *e, uint32_t n, struct wbuf *b);
int writer_journal_write(int fd, const struct wbuf *b);
/* Packs an interrupted run uploaded: their blocks are found again. */
void writer_journal_load(struct writer *w);
void writer_journal_reset(struct writer *w);
/* What the vault holds: the newest valid manifest of each group. */
int writer_load_state(struct writer *w);
