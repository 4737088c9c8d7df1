/* vault_pg.h - the PostgreSQL part of the vault writer's sink
 * (vault_recv.c): PGSOURCE, WAL and BASEFILE of an epoch become sealed
 * objects (lib/vpg.h), and the source's entry of the epoch's manifest. */
#pragma once
#include "vault_writer.h"
#include "pgproto.h"
#include "vpg.h"

struct vpgsrc {
	struct vman_pg cur;          /* as the newest manifest says */
	bool have;
	/* the epoch in progress */
	bool active;
	struct msg_pgsource m;
	struct vman_pg next;
	uint64_t wal_at;             /* the LSN the next WAL message must start at */
	struct wbuf buf;             /* bytes not sealed yet: WAL from BUF_POS, or a base file's */
	uint64_t buf_pos;
	int base;                    /* index in next.bases of the base received, -1: none */
	uint64_t base_got;
	bool files_done;             /* its last file is sealed: WAL follows */
};

void vpgsrc_free(struct vpgsrc *p);
/* The sink's calls (recvloop.h; CTX the writer): PGSOURCE of the epoch in
 * progress (the group's slot found by name), its WAL, its base's files. */
int vpg_recv_source(void *ctx, const struct msg_pgsource *m);
int vpg_recv_wal(void *ctx, uint32_t src, uint64_t lsn, uint32_t len, const uint8_t *data);
int vpg_recv_basefile(void *ctx, uint32_t src, const char *file, uint64_t off, uint32_t len, const uint8_t *data);
/* Before the manifest: the rest uploaded, everything announced received,
 * the bases and WAL the epoch keeps chosen (vpg.h). */
int vpg_recv_finish(struct writer *w, struct vsrc *x);
/* After the manifest (OK) or instead of it: the epoch's state becomes
 * current, or is dropped. */
void vpg_recv_done(struct vsrc *x, bool ok);
/* The manifest's entries: N and the objects they need (*N_OBJ). */
void vpg_manifest_count(const struct vgroup *g, uint32_t *ret_n, size_t *ret_objs);
/* Fill PG (N entries, borrowed: do not free their arrays) and add their
 * objects to M. */
void vpg_manifest_fill(const struct vgroup *g, struct vman_pg *pg, struct vmanifest *m);
/* STATE of a PostgreSQL slot. */
void vpg_state(const struct vsrc *x, uint64_t epoch, struct state_source *ret);
/* A source of the newest manifest, loaded into a free slot of G. */
int vpg_load(struct writer *w, struct vgroup *g, const struct vman_pg *p);
/* The slot of source IDX for NAME: the one holding NAME moved there (a
 * group whose sources were reordered, or a manifest's order). */
struct vsrc *writer_slot(struct writer *w, uint32_t idx, const char *name);
