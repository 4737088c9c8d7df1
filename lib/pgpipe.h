/* pgpipe.h - the framed protocol between a PostgreSQL source's owner
 * (basculed, or the standalone writer of `bascule pgstream --to-dir`) and
 * its `bascule pgstream` child, over the child's stdin and stdout
 * (docs/postgres.md, "The pipe").
 *
 * Frame: u32 body_len | u8 type | u8 flags (0) | u16 reserved (0) | body;
 * integers big-endian, strings u16-length-prefixed without NUL.  The pipe
 * never leaves the host, so frames are clear; but the child parses network
 * input as an unprivileged user, so its owner decodes every frame as
 * hostile: exact lengths, every bound checked, outputs written only on
 * success (as lib/proto.c). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "buf.h"

#define PGP_VERSION 1
#define PGP_HDR_BYTES 8
#define PGP_MAX_DATA (256u << 10)  /* WAL or archive bytes in one frame */
#define PGP_MAX_TEXT 1024          /* an error sentence */
#define PGP_MAX_LABEL 100          /* a base backup label */
#define PGP_MAX_BODY (PGP_MAX_DATA + 64)

enum pgp_type {
	/* child -> owner */
	PGP_HELLO = 1,       /* connected: the server, its WAL, the slot */
	PGP_STREAMING = 2,   /* START_REPLICATION accepted: timeline, start LSN */
	PGP_WAL = 3,         /* timeline, LSN of the first byte, WAL bytes */
	PGP_KEEPALIVE = 4,   /* the server's end of WAL and clock */
	PGP_TIMELINE = 5,    /* a timeline ended: where, and the next one */
	PGP_HISTORY = 6,     /* a timeline's history file */
	PGP_BB_START = 7,    /* base backup: start LSN, timeline, tablespaces */
	PGP_BB_ARCHIVE = 8,  /* a new archive (tar file) begins */
	PGP_BB_DATA = 9,     /* bytes of the current archive, or of the manifest */
	PGP_BB_PROGRESS = 10,/* bytes sent so far by the server */
	PGP_BB_MANIFEST = 11,/* the backup manifest follows */
	PGP_BB_END = 12,     /* base backup complete: end LSN, timeline */
	PGP_ERROR = 13,      /* code (enum pgp_error), sentence; the child then exits */
	/* owner -> child */
	PGP_START = 64,      /* stream from LSN on timeline (0, 0: from the slot; 0, T: from the slot on
			      * timeline T, from where T begins when the slot is on an older one) */
	PGP_FLUSHED = 65,    /* WAL up to LSN is durable: report it to the server */
	PGP_BASE_BACKUP = 66,/* take a base backup */
};

/* Which side decodes: the owner reads the child's frames and vice versa. */
enum pgp_side { PGP_OWNER, PGP_CHILD };

/* Errors the child reports (PGP_ERROR), each with the exit code of the
 * command (lib/err.h) and a fix in docs/postgres.md. */
enum pgp_error {
	PGE_CONNINFO = 1,    /* the conninfo cannot be parsed */
	PGE_UNREACHABLE = 2, /* no server accepts connections there */
	PGE_AUTH = 3,        /* authentication failed (password, unknown role) */
	PGE_HBA = 4,         /* no pg_hba.conf line for a replication connection */
	PGE_PRIVILEGE = 5,   /* the role lacks the REPLICATION attribute */
	PGE_WAL_LEVEL = 6,   /* replication off: wal_level below replica, max_wal_senders 0 */
	PGE_SENDERS = 7,     /* every max_wal_senders slot (or connection) is taken */
	PGE_SLOT_ACTIVE = 8, /* the replication slot is in use by another process */
	PGE_WAL_LOST = 9,    /* the WAL the slot (or the start point) needs was removed */
	PGE_VERSION = 10,    /* the server is older than PostgreSQL 15 */
	PGE_PROTOCOL = 11,   /* the server or the owner broke the protocol */
	PGE_SERVER = 12,     /* another error reported by the server */
	PGE_ENDED = 13,      /* the server ended the stream (shut down) */
	PGE_LOST = 14,       /* the connection was lost */
	PGE_SANDBOX = 15,    /* no such --user, a file libpq needs unreadable by it, no sandbox */
	PGE_COMMAND = 16,    /* a command the child cannot carry out (no slot, busy) */
	PGE_MAX = 16,
};
/* "conninfo", "auth", ...; NULL for an unknown code. */
const char *pgpipe_error_name(uint32_t code);
/* The exit code a command gives for CODE (EXIT_FAIL for an unknown one). */
int pgpipe_error_exit(uint32_t code);

enum { PGP_SLOT_NONE = 0, PGP_SLOT_FOUND = 1, PGP_SLOT_CREATED = 2 };
enum { PGP_BBF_FAST = 1, PGP_BBF_PROGRESS = 2 }; /* PGP_BASE_BACKUP flags */

struct pgp_hello {
	uint16_t version;        /* PGP_VERSION */
	uint32_t server_version; /* 150018 for 15.18 */
	uint64_t system_id;      /* IDENTIFY_SYSTEM systemid */
	uint32_t timeline;       /* the server's current timeline */
	uint64_t xlogpos;        /* the server's current flush position */
	uint32_t segsize;        /* wal_segment_size */
	uint8_t slot;            /* PGP_SLOT_* */
	uint64_t slot_lsn;       /* the slot's restart_lsn (0: none) */
	uint32_t slot_tli;       /* its timeline (0 when slot_lsn is 0) */
};

struct pgp_msg {
	uint8_t type;
	union {
		struct pgp_hello hello;
		struct { uint32_t tli; uint64_t lsn; } pos;      /* STREAMING, START */
		struct { uint32_t tli; uint64_t lsn; const uint8_t *data; uint32_t len; } wal;
		struct { uint64_t wal_end; int64_t server_time; } keepalive;
		struct { uint32_t tli; uint64_t end; uint32_t next_tli; uint64_t next_start; } timeline;
		struct { uint32_t tli; const uint8_t *data; uint32_t len; } history;
		struct { uint64_t lsn; uint32_t tli; uint32_t n_tablespaces; } bb_start;
		struct { char name[256]; char spclocation[1024]; } archive;
		struct { const uint8_t *data; uint32_t len; } data;  /* BB_DATA */
		uint64_t done;                                      /* BB_PROGRESS */
		struct { uint64_t lsn; uint32_t tli; } bb_end;
		struct { uint32_t code; char text[PGP_MAX_TEXT + 1]; } error;
		uint64_t flushed;                                   /* FLUSHED */
		struct { uint8_t flags; char label[PGP_MAX_LABEL + 1]; } base_backup;
	} u;
};

/* The next whole frame of IN from *OFF, for SIDE: 1 with *RET decoded (data
 * pointers into IN) and *OFF past it; 0 when the frame is not complete yet;
 * -EBADMSG (with a sentence) for a bad header (unknown type or one the
 * other side does not send, flags or reserved bits set, a length over
 * PGP_MAX_BODY) or a body that does not decode exactly.  *RET and *OFF are
 * untouched unless 1 is returned. */
int pgpipe_next(const struct wbuf *in, size_t *off, enum pgp_side side, struct pgp_msg *ret);
/* Decode BODY of a frame of TYPE (exact lengths, every bound); as above. */
int pgpipe_decode(uint8_t type, const uint8_t *body, uint32_t len, struct pgp_msg *ret);

/* Encoders append one frame to OUT: 0, or -ENOBUFS past OUT's maximum (OUT
 * keeps its length), -EINVAL for values the decoder would refuse. */
int pgpipe_put_hello(struct wbuf *out, const struct pgp_hello *h);
int pgpipe_put_pos(struct wbuf *out, uint8_t type, uint32_t tli, uint64_t lsn); /* STREAMING, START */
int pgpipe_put_wal(struct wbuf *out, uint32_t tli, uint64_t lsn, const void *data, uint32_t len);
int pgpipe_put_keepalive(struct wbuf *out, uint64_t wal_end, int64_t server_time);
int pgpipe_put_timeline(struct wbuf *out, uint32_t tli, uint64_t end, uint32_t next_tli, uint64_t next_start);
int pgpipe_put_history(struct wbuf *out, uint32_t tli, const void *data, uint32_t len);
int pgpipe_put_bb_start(struct wbuf *out, uint64_t lsn, uint32_t tli, uint32_t n_tablespaces);
int pgpipe_put_archive(struct wbuf *out, const char *name, const char *spclocation);
int pgpipe_put_data(struct wbuf *out, const void *data, uint32_t len);
int pgpipe_put_progress(struct wbuf *out, uint64_t done);
int pgpipe_put_manifest(struct wbuf *out);
int pgpipe_put_bb_end(struct wbuf *out, uint64_t lsn, uint32_t tli);
/* TEXT flattened (pgpipe_flatten) and cut to PGP_MAX_TEXT bytes. */
int pgpipe_put_error(struct wbuf *out, uint32_t code, const char *text);
int pgpipe_put_flushed(struct wbuf *out, uint64_t lsn);
int pgpipe_put_base_backup(struct wbuf *out, uint8_t flags, const char *label);

/* SRC as one line in DST (LEN bytes): newlines (a server's DETAIL and HINT
 * lines) become "; ", other control characters spaces; returns DST. */
char *pgpipe_flatten(char *dst, size_t len, const char *src);

/* A label PGP_BASE_BACKUP accepts: 1 to PGP_MAX_LABEL of [A-Za-z0-9 _.:-]
 * (so it needs no quoting in the BASE_BACKUP command). */
bool pgpipe_label_ok(const char *label);

/* The order of a base backup's frames, checked by whoever stores them:
 * BB_START, then (BB_ARCHIVE, BB_DATA...)+, PROGRESS anywhere after START,
 * then optionally BB_MANIFEST and its BB_DATA, then BB_END. */
struct pgp_bb_order {
	uint8_t stage;    /* 0 before START, 1 started, 2 in an archive, 3 in the manifest, 4 ended */
	uint32_t archives;
};
/* 0 if a frame of TYPE may come now (and the order moves on), else
 * -EPROTO with a sentence. */
int pgpipe_bb_order(struct pgp_bb_order *o, uint8_t type);

/* One end of the pipe: non-blocking fds, the bytes read and not yet
 * parsed, the frames queued and not yet written (both bounded). */
struct pgpipe_io {
	int rfd, wfd;
	struct wbuf in, out;
	size_t in_off, out_off;
	uint64_t out_written;             /* bytes ever written: progress marks */
	bool eof;                         /* the other side closed its end */
};
/* IN and OUT are bounded by MAX_IN and MAX_OUT bytes; sets both fds O_NONBLOCK. */
void pgpipe_io_init(struct pgpipe_io *io, int rfd, int wfd, size_t max_in, size_t max_out);
void pgpipe_io_free(struct pgpipe_io *io);
/* Read what the fd has: bytes read (0 with io->eof set at end of file),
 * -EAGAIN when nothing is there, -ENOBUFS when IN is full, or -errno. */
int pgpipe_io_read(struct pgpipe_io *io);
/* The next whole frame read, for SIDE: as pgpipe_next.  Data pointers stay
 * valid until the next pgpipe_io_read. */
int pgpipe_io_next(struct pgpipe_io *io, enum pgp_side side, struct pgp_msg *ret);
/* Bytes queued and not yet written. */
static inline size_t pgpipe_io_pending(const struct pgpipe_io *io) { return io->out.len - io->out_off; }
/* Write what the fd takes: 0 (all written or -EAGAIN swallowed), or -errno
 * (-EPIPE when the other side is gone). */
int pgpipe_io_flush(struct pgpipe_io *io);
