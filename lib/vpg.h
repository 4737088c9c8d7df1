/* vpg.h - PostgreSQL sources in the vault (docs/vault.md, "PostgreSQL
 * sources"): what a manifest says of one (its bases and its WAL), and the
 * sealed objects holding their bytes.
 *
 * A base backup's files and the WAL are cut into pieces of at most
 * VPG_OBJ_RAW bytes; each piece is one data object d/XX/NAME like a pack:
 * named by the BLAKE2b-256 of its own bytes, sealed under the data key
 * (zstd inside), padded with Padme.  Its plaintext repeats what it holds
 * (kind, timeline, file, position, length), checked when it is opened, so
 * an object cannot be passed off as another.  The provider sees only
 * sizes; LSNs, file names and timelines are in the sealed plaintext and in
 * the manifest's sealed part.
 *
 * In the manifest's sealed part, after the disk sources, each PostgreSQL
 * source lists the bases kept for the epoch (oldest first: the newest one
 * that arrived before the epoch, so every time since the previous epoch has
 * a base before it, and the one the epoch brought, if any) and the WAL
 * from the oldest base's segment start to the epoch's end, one unbroken
 * chain of pieces, each with a keyed digest of its bytes. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "name.h"
#include "vault.h"

#define VPG_OBJ_RAW (8u << 20)      /* raw bytes in one object, at most */
#define VPG_MAX_BASES 16            /* bases one manifest lists */
#define VPG_MAX_FILES 66            /* files of one base (base.tar, tablespaces, manifest, history) */
#define VPG_MAX_SOURCES 64

enum { VPG_WAL = 'W', VPG_BASE = 'B' }; /* object kinds */

struct vpg_ref {
	uint8_t obj[VAULT_NAME];     /* the object's name */
	uint64_t size;               /* its stored (sealed, padded) size */
};

struct vpg_piece {
	uint64_t off;                /* in the file */
	uint32_t len;                /* raw bytes, 1 .. VPG_OBJ_RAW */
	struct vpg_ref ref;
};

struct vpg_file {
	char name[NAME_MAX_LEN + 1]; /* [A-Za-z0-9_.-], as BASEFILE names it */
	uint64_t size;
	uint32_t n;                  /* pieces, contiguous from 0 to size */
	struct vpg_piece *p;
};

struct vpg_base {
	uint64_t id;                 /* its start LSN (the daemon's base_id) */
	uint32_t tli;
	uint64_t epoch, arrived;     /* the epoch that brought it, its cut time (unix usec): a
				      * recovery target at or after ARRIVED is past its end */
	uint64_t bytes;              /* raw bytes of its files */
	uint8_t digest[32];          /* base_digest (docs/protocol.md, section 7) */
	uint32_t n_files;
	struct vpg_file *files;
};

struct vpg_wal {
	uint64_t start;              /* LSN of its first byte */
	uint32_t len;                /* 1 .. VPG_OBJ_RAW */
	uint8_t digest[32];          /* vpg_wal_digest of its bytes */
	struct vpg_ref ref;
};

struct vman_pg {
	char name[NAME_MAX_LEN + 1];
	uint64_t system_id;
	uint32_t tli;                /* of the WAL (bases and WAL of one timeline) */
	uint64_t base_id;            /* the base the daemon's chain follows */
	uint64_t end_lsn;            /* the WAL ends here */
	uint8_t chain[32];           /* the daemon's wal_digest at END_LSN (for STATE) */
	uint32_t n_bases;
	struct vpg_base *bases;      /* oldest first */
	uint32_t n_wal;
	struct vpg_wal *wal;         /* contiguous, oldest first, the last one ending at END_LSN */
};

/* Append N sources to B: be32 count, then each (docs/vault.md). */
int vpg_encode(struct wbuf *b, const struct vman_pg *p, uint32_t n);
/* Read what vpg_encode wrote, every count and bound checked (names,
 * contiguous pieces and WAL, sorted bases): *RET (malloc'd, N of them) only
 * on success; -EBADMSG otherwise. */
int vpg_decode(struct rbuf *b, struct vman_pg **ret, uint32_t *ret_n);
void vpg_free(struct vman_pg *p, uint32_t n);
/* Release what P holds (P itself is the caller's), leaving it empty. */
void vpg_clear(struct vman_pg *p);
/* A deep copy of SRC into *DST (emptied first): 0 or -ENOMEM. */
int vpg_copy(struct vman_pg *dst, const struct vman_pg *src);
/* 0 if every object of the N sources P is among the N_OBJ names OBJ (the
 * manifest's public list, which check and prune go by), else -EBADMSG. */
int vpg_check_listed(const struct vman_pg *p, uint32_t n, const uint8_t (*obj)[VAULT_NAME], uint32_t n_obj);
/* Every object P needs, through FN (stops at a negative return). */
int vpg_each_object(const struct vman_pg *p, int (*fn)(void *ctx, const struct vpg_ref *r), void *ctx);

/* Seal LEN bytes (1 .. VPG_OBJ_RAW) as an object of KIND: WAL of timeline
 * TLI at LSN POS (FILE ""), or bytes at offset POS of base file FILE.
 * Appended to OUT, padded.  ZCTX is a ZSTD_CCtx. */
int vpg_obj_seal(const struct vkeys *k, int kind, uint32_t tli, const char *file, uint64_t pos, const uint8_t *data,
		 uint32_t len, void *zctx, struct wbuf *out);
/* Open an object: exactly the one described (kind, timeline, file,
 * position, length) or -EBADMSG; LEN bytes into OUT.  DCTX a ZSTD_DCtx. */
int vpg_obj_open(const struct vkeys *k, const uint8_t *obj, size_t objlen, int kind, uint32_t tli, const char *file,
		 uint64_t pos, uint32_t len, void *dctx, uint8_t *out);
/* The keyed digest of a WAL piece (names key). */
void vpg_wal_digest(const struct vkeys *k, uint32_t tli, uint64_t start, const uint8_t *data, uint32_t len,
		    uint8_t ret[32]);

/* The base a recovery to AT (unix usec; 0: the end of the WAL) starts
 * from: the newest that arrived at or before AT (any, without AT), or
 * NULL. */
const struct vpg_base *vpg_base_for(const struct vman_pg *p, uint64_t at);
/* The index of the WAL piece holding LSN, or -ENOENT. */
int vpg_wal_find(const struct vman_pg *p, uint64_t lsn);
/* The segment start of LSN (16 MiB segments, the only size the vault keeps). */
static inline uint64_t vpg_seg_start(uint64_t lsn) { return lsn - lsn % (16u << 20); }
