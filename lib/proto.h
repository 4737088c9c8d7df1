/* proto.h - bodies of Bascule's application messages (docs/protocol.md).
 * Encoders append to a wbuf; decoders read an rbuf and check exact lengths
 * and every bound a peer controls. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "buf.h"
#include "hash.h"
#include "name.h"
#include "wire.h"

#define PROTO_MAX_SOURCES 64        /* sources in one group */
#define PROTO_MAX_GROUPS 4096       /* groups in one STATE */
#define PROTO_MAX_EXTENT (1u << 20) /* raw bytes in one EXTENT */
#define PROTO_MAX_SIZE (1ULL << 50) /* largest source: 1 PiB */
#define PROTO_BLOCK 4096u

enum extent_enc { EXT_ZERO = 0, EXT_RAW = 1, EXT_ZSTD = 2, EXT_DELTA = 3 };
#define PROTO_SIG_RANGE (1u << 20) /* resync ranges: 1 MiB, aligned */
enum { EPOCH_CONSISTENT = 1 };
/* SRC_UNKNOWN: a replica file without state (restored from elsewhere, or an
 * old primary after failback): resynchronised with librsync deltas. */
enum { SRC_OK = 0, SRC_DIVERGED = 1, SRC_UNKNOWN = 2 };

struct msg_epoch_begin {
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch;
	uint64_t cut_time;  /* unix time in microseconds when the epoch was cut */
	uint8_t flags;      /* EPOCH_CONSISTENT */
	uint32_t n_sources;
};

struct msg_source {
	uint32_t idx;
	char name[NAME_MAX_LEN + 1];
	uint64_t base;      /* epoch the replica of this source must be at (0: none) */
	uint64_t size;      /* size of the source at this epoch */
	uint32_t block_size;
	uint8_t digest[DIGEST_BYTES];
};

struct msg_extent {
	uint32_t src;
	uint64_t offset;
	uint32_t raw_len;
	uint8_t enc;
	const uint8_t *data; /* points into the frame body */
	uint32_t data_len;
};

struct msg_epoch_end {
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch;
	uint64_t n_extents;
	uint64_t raw_bytes;
};

struct msg_ack {
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch;
	uint32_t code;      /* NACK only: errno-style reason */
	char text[256];     /* NACK only */
};

/* One source as the replica reports it in STATE. */
struct state_source {
	char name[NAME_MAX_LEN + 1];
	uint64_t epoch;
	uint64_t size;
	uint8_t status;
	uint8_t digest[DIGEST_BYTES];
	uint8_t dv;     /* the replica's record only, not on the wire: DIGEST_V1 or _V2 */
	/* version 2, for PostgreSQL sources (zeros for disks): where its copy ends */
	uint64_t system_id, base_id, end_lsn;
	uint32_t timeline;
};

struct state_group {
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch;
	uint64_t cut_time;
	uint32_t n_sources;
	struct state_source sources[PROTO_MAX_SOURCES];
};

int proto_put_epoch_begin(struct wbuf *b, const struct msg_epoch_begin *m);
int proto_get_epoch_begin(struct rbuf *b, struct msg_epoch_begin *ret);
int proto_put_source(struct wbuf *b, const struct msg_source *m);
int proto_get_source(struct rbuf *b, struct msg_source *ret);
/* Writes the extent header; the caller appends DATA_LEN bytes of data. */
int proto_put_extent_hdr(struct wbuf *b, const struct msg_extent *m);
int proto_get_extent(struct rbuf *b, struct msg_extent *ret);
int proto_put_epoch_end(struct wbuf *b, const struct msg_epoch_end *m);
int proto_get_epoch_end(struct rbuf *b, struct msg_epoch_end *ret);
int proto_put_ack(struct wbuf *b, const struct msg_ack *m, bool nack);
int proto_get_ack(struct rbuf *b, struct msg_ack *ret, bool nack);
/* STATE is a u32 count followed by groups. */
/* SIG_REQUEST / SIG / SIG_END */
struct msg_sig {
	char group[NAME_MAX_LEN + 1];
	char source[NAME_MAX_LEN + 1];
	uint64_t offset;      /* SIG: range offset; SIG_END: replica size */
	uint32_t len;         /* SIG: range length; SIG_REQUEST: range size */
	const uint8_t *data;  /* SIG: librsync signature */
	uint32_t data_len;
};
int proto_put_sig(struct wbuf *b, enum wire_type type, const struct msg_sig *m);
int proto_get_sig(struct rbuf *b, enum wire_type type, struct msg_sig *ret);
int proto_put_state_group(struct wbuf *b, const struct state_group *g);
int proto_get_state_group(struct rbuf *b, struct state_group *ret);
