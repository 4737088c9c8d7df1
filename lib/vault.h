/* vault.h - the provider-blind, write-once vault format (docs/vault.md).
 *
 * Everything the provider stores is one of two kinds of write-once object,
 * each named by the BLAKE2b-256 of its own bytes (so a name says nothing
 * about the plaintext, and a check needs no key):
 *
 *   d/XX/NAME  data: a pack of sealed frames (up to 16 consecutive 4 KiB
 *              blocks, zstd, XChaCha20-Poly1305 under the data key, nonce =
 *              pack nonce || frame offset), or an index (the block map of a
 *              source: a full base, or the delta of one epoch)
 *   m/NAME     manifest of one epoch of one group: a public part (series
 *              tag, epoch, cut time, every object it needs with its size),
 *              a sealed private part (group and source names, sizes,
 *              digests, base and delta index names), an Ed25519 signature
 *              over both.  Written last: the commit point of the epoch.
 *
 * All objects are padded with Padmé (at most ~12% larger) so their exact
 * sizes do not leak compressed lengths. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "name.h"
#include "vaultkey.h"

struct vstore;
struct vman_pg;

#define VAULT_BLOCK 4096u
#define VAULT_ID 16                 /* keyed block id (dedup and verification) */
#define VAULT_NAME 32               /* object name: BLAKE2b-256 of its bytes */
#define VAULT_FRAME_BLOCKS 16       /* blocks per sealed frame, at most */
#define VAULT_PACK_TARGET (8u << 20) /* a pack is closed beyond this size */
#define VAULT_OBJ_MAX (1u << 30)    /* no object is larger */
#define VLOC_ZERO UINT32_MAX        /* pack number of an all-zero block */

struct vkeys {
	uint8_t data[32], names[32], manifest[32];
	uint8_t sk[64], pk[32];
};

/* Where one block of a source lives: pack number (in a struct vpacks),
 * frame offset and length in the pack, slot in the frame, and its id. */
struct vloc {
	uint32_t pack, off, len;
	uint8_t slot, pad[3];
	uint8_t id[VAULT_ID];
};

struct vpack {
	uint8_t name[VAULT_NAME];
	uint8_t nonce[16];
};

/* Packs known to a writer or reader, numbered; found by name. */
struct vpacks {
	struct vpack *p;
	uint32_t n, cap;
	uint32_t *slot; /* hash table of indexes + 1 */
	uint32_t nslot;
};

/* The block map of one source at one epoch. */
struct vmap {
	uint64_t size;   /* bytes */
	uint64_t n;      /* blocks */
	struct vloc *e;
};

struct vman_source {
	char name[NAME_MAX_LEN + 1];
	uint64_t size;
	uint8_t digest[32];          /* the daemon's digest of the source (site key) */
	uint8_t image[32];           /* keyed hash of the block ids: what restore must rebuild */
	uint8_t base[VAULT_NAME];    /* full index */
	uint32_t n_deltas;
	uint8_t (*deltas)[VAULT_NAME]; /* later deltas, oldest first */
};

struct vmanifest {
	/* public, signed */
	uint8_t series[16];          /* keyed tag of the group: manifests of one group share it */
	uint64_t epoch, cut_time;    /* cut_time: unix usec */
	uint32_t n_objects;
	uint8_t (*obj)[VAULT_NAME];  /* every data object this epoch needs */
	uint64_t *obj_size;
	/* private: filled only when decrypted */
	bool opened;
	char group[NAME_MAX_LEN + 1];
	uint8_t flags;
	uint32_t n_sources;
	struct vman_source *src;     /* disk sources */
	uint32_t n_pg;
	struct vman_pg *pg;          /* PostgreSQL sources (vpg.h) */
	/* where it was read from */
	uint8_t name[VAULT_NAME];
	uint64_t file_size, mtime;
};

void vault_keys(const struct vault_key *k, struct vkeys *ret);
void vault_hex(const uint8_t name[VAULT_NAME], char hex[2 * VAULT_NAME + 1]);
int vault_unhex(const char *hex, uint8_t name[VAULT_NAME]);
/* "d/ab/abcd…" for data, "m/abcd…" for manifests. */
void vault_path(const uint8_t name[VAULT_NAME], bool manifest, char *buf, size_t len);
/* vstore_prefetch of the data objects whose names are at NAMES, STRIDE
 * bytes apart (N of them): before a restore or a check reads them. */
int vault_prefetch(struct vstore *v, const uint8_t *names, size_t stride, size_t n);
void vault_object_name(const void *data, size_t len, uint8_t name[VAULT_NAME]);
/* Padmé: the size LEN is padded to. */
size_t vault_padme(size_t len);
void vault_block_id(const struct vkeys *k, const uint8_t block[VAULT_BLOCK], uint8_t id[VAULT_ID]);
void vault_series(const struct vkeys *k, const char *group, uint8_t ret[16]);

/* vseal.c: a sealed blob: nonce || AEAD(be32 len || PT || zero padding)
 * under KEY with AD, appended to OUT; EXTRA is what the caller adds around
 * it (counted for the Padme padding).  vault_unseal opens one: *RET is
 * malloc'd (the caller wipes and frees it); -EBADMSG if it does not open. */
int vault_seal(const uint8_t key[32], const uint8_t *ad, size_t adlen, const uint8_t *pt, size_t len, size_t extra,
	       struct wbuf *out);
int vault_unseal(const uint8_t key[32], const uint8_t *ad, size_t adlen, const uint8_t *c, size_t clen,
		 uint8_t **ret, size_t *ret_len);

/* Append one sealed frame of N blocks to OUT (its offset is OUT->len). */
int vault_frame_seal(const struct vkeys *k, const uint8_t nonce[16], const uint8_t *blocks, uint32_t n,
		     void *zctx, struct wbuf *out);
/* Open the frame at OFF of a pack; OUT holds VAULT_FRAME_BLOCKS blocks. */
int vault_frame_open(const struct vkeys *k, const uint8_t nonce[16], uint32_t off, const uint8_t *c,
		     uint32_t clen, void *dctx, uint8_t *out, uint32_t *n_blocks);
/* Decrypt the frame at OFF of a pack WITHOUT checking its tag, in WORK
 * (VAULT_FRAME_WORK bytes): *BLOCKS points at its *N_BLOCKS blocks, inside
 * WORK.  Only for a caller that checks every block it takes from the frame
 * against its keyed id from an authenticated index (restore): the ids are
 * then the check, the tag a second one of the same bytes (docs/vault.md,
 * "Restore").  -EBADMSG: not a frame (altered or damaged). */
#define VAULT_FRAME_WORK (2 * VAULT_FRAME_BLOCKS * VAULT_BLOCK + 4096)
int vault_frame_decrypt(const struct vkeys *k, const uint8_t nonce[16], uint32_t off, const uint8_t *c,
			uint32_t clen, void *dctx, uint8_t *work, const uint8_t **blocks, uint32_t *n_blocks);

int vpacks_add(struct vpacks *t, const struct vpack *p, uint32_t *ret);
/* Index of the entry named NAME, or UINT32_MAX. */
uint32_t vpacks_find(const struct vpacks *t, const uint8_t name[VAULT_NAME]);
void vpacks_free(struct vpacks *t);

/* Largest source a map may describe (1 PiB; the fuzzer lowers it). */
extern uint64_t vault_max_source;
int vmap_resize(struct vmap *m, uint64_t size);
void vmap_free(struct vmap *m);
/* Keyed hash of the map's size and ids (zero blocks count as zero ids). */
void vault_image_hash(const struct vkeys *k, const struct vmap *m, uint8_t ret[32]);

/* Index objects.  A full index lists every non-zero block of M; a delta
 * lists blocks CHANGED (sorted block numbers) with their new places. */
int vault_index_encode(const struct vkeys *k, bool full, uint64_t epoch, const struct vmap *m,
		       const uint64_t *changed, size_t n_changed, const struct vpacks *packs,
		       struct wbuf *out);
/* Apply an index object to M (a full index replaces it).  New packs are
 * added to PACKS. */
int vault_index_apply(const struct vkeys *k, const uint8_t *obj, size_t len, struct vpacks *packs,
		      struct vmap *m);

int vault_manifest_encode(const struct vkeys *k, const struct vmanifest *m, struct wbuf *out);
/* Check the signature with PK; with K, also decrypt the private part. */
int vault_manifest_decode(const uint8_t pk[32], const struct vkeys *k, const uint8_t *data, size_t len,
			  struct vmanifest *ret);
void vault_manifest_free(struct vmanifest *m);
/* What a manifest that failed its check claims to be: its public series,
 * epoch and cut time, read WITHOUT checking the signature (for messages
 * only: whoever altered it chose them).  -EBADMSG if it cannot be parsed. */
int vault_manifest_peek(const uint8_t *data, size_t len, uint8_t ret_series[16], uint64_t *ret_epoch,
			uint64_t *ret_cut_time);

/* Every manifest of the store, signatures checked with PK (and private parts
 * opened with K if given; their versions prefetched, vstore_prefetch).  Manifests that fail are reported through BAD
 * (may be NULL) and left out. */
typedef void (*vault_bad_cb)(void *ctx, const char *path, int err);
int vault_manifests(struct vstore *v, const uint8_t pk[32], const struct vkeys *k, vault_bad_cb bad,
		    void *ctx, struct vmanifest **ret, size_t *n);
void vault_manifests_free(struct vmanifest *m, size_t n);
/* Rebuild the map of source S of an opened manifest from its indexes. */
int vault_load_map(struct vstore *v, const struct vkeys *k, const struct vman_source *s,
		   struct vpacks *packs, struct vmap *ret);
