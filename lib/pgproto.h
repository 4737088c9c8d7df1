/* pgproto.h - the PostgreSQL messages of the wire protocol, version 2
 * (docs/protocol.md, section 7): PGSOURCE describes a postgres source in an
 * epoch, WAL carries its WAL bytes, BASEFILE the files of a base backup.
 * Encoders append to a wbuf; decoders check exact lengths and every bound
 * a peer controls and write their output only on success.  Also the
 * chained WAL digest both sites compute. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sodium.h>
#include "buf.h"
#include "hash.h"
#include "key.h"
#include "name.h"

#define PGPROTO_MAX_WAL (1u << 20)     /* raw bytes in one WAL message */
#define PGPROTO_MAX_FILE (1ULL << 50)  /* largest base backup file */
#define PGPROTO_MAX_LSN (UINT64_MAX - PGPROTO_MAX_WAL) /* no LSN range may wrap */

enum { PGSRC_BASE = 1, PGSRC_TIMELINE = 2 }; /* PGSOURCE flags */

struct msg_pgsource {
	uint32_t idx;
	char name[NAME_MAX_LEN + 1];
	uint64_t system_id;
	uint64_t base_id;       /* > 0: the start LSN of the base backup this WAL follows */
	uint32_t timeline;      /* >= 1 */
	uint64_t start_lsn, end_lsn; /* start_lsn <= end_lsn */
	uint8_t wal_digest[DIGEST_BYTES];
	uint8_t flags;          /* PGSRC_BASE: BASEFILE messages follow; PGSRC_TIMELINE: a switch */
	uint64_t base_bytes;    /* PGSRC_BASE only, else 0 */
	uint8_t base_digest[DIGEST_BYTES]; /* PGSRC_BASE only, else zeros */
};

struct msg_wal {
	uint32_t src;
	uint64_t lsn;
	uint32_t raw_len;       /* 1 .. PGPROTO_MAX_WAL */
	uint8_t enc;            /* EXT_RAW or EXT_ZSTD */
	const uint8_t *data;    /* points into the frame body */
	uint32_t data_len;
};

struct msg_basefile {
	uint32_t src;
	char file[NAME_MAX_LEN + 1]; /* base.tar, OID.tar, backup_manifest, TTTTTTTT.history */
	uint64_t offset;
	uint32_t raw_len;       /* 0 .. PGPROTO_MAX_WAL */
	uint8_t enc;            /* EXT_RAW or EXT_ZSTD (EXT_RAW when raw_len is 0) */
	const uint8_t *data;
	uint32_t data_len;
};

int pgproto_put_pgsource(struct wbuf *b, const struct msg_pgsource *m);
int pgproto_get_pgsource(struct rbuf *b, struct msg_pgsource *ret);
/* Write the header; the caller appends DATA_LEN bytes of data. */
int pgproto_put_wal_hdr(struct wbuf *b, const struct msg_wal *m);
int pgproto_get_wal(struct rbuf *b, struct msg_wal *ret);
int pgproto_put_basefile_hdr(struct wbuf *b, const struct msg_basefile *m);
int pgproto_get_basefile(struct rbuf *b, struct msg_basefile *ret);

/* The chained digest of docs/protocol.md section 7.  The WAL key is per
 * source; a chain starts at a base (pgdigest_base) and is extended by each
 * epoch's WAL (pgdigest_begin, _update with the bytes in order, _final). */
void pgdigest_wal_key(const struct site_key *k, const char *group, const char *source,
		      uint8_t ret[DIGEST_BYTES]);
void pgdigest_base(const uint8_t key[DIGEST_BYTES], uint64_t base_id, const uint8_t base_digest[DIGEST_BYTES],
		   uint8_t ret[DIGEST_BYTES]);
struct pgdigest {
	crypto_generichash_state st;
};
void pgdigest_begin(struct pgdigest *d, const uint8_t key[DIGEST_BYTES], const uint8_t prev[DIGEST_BYTES],
		    uint32_t timeline, uint64_t start_lsn, uint64_t end_lsn);
void pgdigest_update(struct pgdigest *d, const void *p, size_t n);
void pgdigest_final(struct pgdigest *d, uint8_t ret[DIGEST_BYTES]);
/* The digest of a base backup's files: begin, then per file _file with its
 * name and size followed by _update with its bytes, then pgdigest_final. */
void pgdigest_files_begin(struct pgdigest *d);
void pgdigest_file(struct pgdigest *d, const char *name, uint64_t size);
