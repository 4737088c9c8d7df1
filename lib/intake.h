/* intake.h - the hybrid-PRA intake format (docs/hybrid.md, "Format"): what
 * one night of a client is at the operator.  Under the client's intake
 * directory (DIR/CLIENT/incoming):
 *   NIGHT/RUN-NNNNN   the night's objects: its payload (zstd of the dump, or
 *                     of a librsync delta against the previous night's
 *                     dump), padded, cut into INTAKE_CHUNK pieces, each one
 *                     secretstream message (XChaCha20-Poly1305)
 *   NIGHT.manifest    created last, exclusively, once: the night counts
 *                     only when it exists and verifies
 * A manifest is
 *   "BSCNITE1" u32 total_len  u8 kind  str client  str night  str base_night
 *   base_digest[32]  u64 created  str run  ss_header[24]
 *   u32 n  n × (u64 size, digest[32])  u16 sealed_len  sealed[sealed_len]
 *   signature[64]
 * (strings u16-length-prefixed, integers big-endian), signed with the
 * client's Ed25519 key over everything before the signature.  digest and
 * base_digest are BLAKE2b-256 of stored bytes (ciphertext, manifests), so
 * the operator checks everything with the client's public key alone.  The
 * sealed part is crypto_box_seal to the client's X25519 key of
 * INTAKE_SECRET_BYTES: stream key[32], dump digest[32] (BLAKE2b-256 of
 * the original dump), u64 dump size, u64 payload length. */
#pragma once
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "name.h"

#define INTAKE_MAGIC "BSCNITE1"
#define INTAKE_CHUNK (4u << 20)          /* payload bytes per object */
#define INTAKE_PAD (64u << 10)           /* the payload is padded to a multiple of this */
#define INTAKE_OBJECT_MAX (INTAKE_CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES)
#define INTAKE_OBJECTS_MAX 65536u        /* 256 GiB of payload per night */
#define INTAKE_MANIFEST_MAX (4u << 20)
#define INTAKE_SECRET_BYTES (32 + 32 + 8 + 8)
#define INTAKE_SEALED_BYTES (INTAKE_SECRET_BYTES + crypto_box_SEALBYTES)
#define INTAKE_RUN_LEN 16                /* hex digits of a run id */

enum intake_kind { INTAKE_FULL = 1, INTAKE_DELTA = 2 };

struct intake_object {
	uint64_t size;
	uint8_t digest[32];
};

struct intake_manifest {
	uint8_t kind;
	char client[NAME_MAX_LEN + 1];
	char night[11];       /* YYYY-MM-DD */
	char base_night[11];  /* "" for a full night */
	uint8_t base_digest[32];
	uint64_t created;     /* unix seconds */
	char run[INTAKE_RUN_LEN + 1];
	uint8_t ss_header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	uint32_t n;
	struct intake_object *objects; /* malloc'd, n entries */
	uint64_t stored;      /* sum of the objects' sizes */
	uint8_t sealed[INTAKE_SEALED_BYTES];
	uint8_t digest[32];   /* BLAKE2b-256 of the manifest file (what a delta's base_digest names) */
	uint32_t file_len;
};

/* The secret part, once opened with the client's decryption key. */
struct intake_secret {
	uint8_t stream_key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
	uint8_t dump_digest[32];
	uint64_t dump_size;
	uint64_t payload_len;
};

/* True if S is a night name: YYYY-MM-DD with a plausible month and day. */
bool intake_night_ok(const char *s);
/* "NIGHT.manifest" and "NIGHT/RUN-NNNNN" (relative to the intake directory). */
void intake_manifest_name(const char *night, char *buf, size_t len);
void intake_object_name(const struct intake_manifest *m, uint32_t i, char *buf, size_t len);
/* The associated data that binds object I to its client, night and run. */
size_t intake_object_ad(const struct intake_manifest *m, uint32_t i, uint8_t *buf, size_t len);

/* Encode M (objects, sealed part and all) signed with SK into OUT
 * (appended); M->digest and M->file_len are set.  SECRET is sealed to
 * BOX_PK into M->sealed first. */
int intake_manifest_encode(struct intake_manifest *m, const struct intake_secret *secret,
			   const uint8_t box_pk[crypto_box_PUBLICKEYBYTES],
			   const uint8_t sk[crypto_sign_SECRETKEYBYTES], struct wbuf *out);
/* Verify and decode LEN bytes of a stored manifest with the client's
 * Ed25519 public key PK.  Exact lengths and every bound are checked before
 * use; *RET is written only on success (free with intake_manifest_free).
 * -ENODATA "incomplete": shorter than its own length field (an upload cut
 * while the manifest was being written: it never counted).
 * -EBADMSG with a sentence: bad signature, malformed, out of bounds. */
int intake_manifest_decode(const uint8_t pk[crypto_sign_PUBLICKEYBYTES], const uint8_t *data, size_t len,
			   struct intake_manifest *ret);
void intake_manifest_free(struct intake_manifest *m);
/* -EBADMSG unless M says it is CLIENT's night NIGHT (a manifest copied under
 * another name or into another client's directory). */
int intake_manifest_expect(const struct intake_manifest *m, const char *client, const char *night);
/* Open M's sealed part with the client's X25519 key pair.  -EKEYREJECTED
 * when it does not open (another client's key); *RET untouched then. */
int intake_secret_open(const struct intake_manifest *m, const uint8_t box_pk[crypto_box_PUBLICKEYBYTES],
		       const uint8_t box_sk[crypto_box_SECRETKEYBYTES], struct intake_secret *ret);
