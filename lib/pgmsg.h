/* pgmsg.h - the CopyData messages of PostgreSQL's streaming replication
 * protocol (the "Streaming Replication Protocol" chapter of the PostgreSQL
 * documentation), decoded with exact lengths through the bounded reader.
 * Integers are big-endian; times are microseconds since 2000-01-01 UTC. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most WAL one XLogData may carry here (the server sends at most
 * 16 pages of 8 KiB, MAX_SEND_SIZE). */
#define PGMSG_MAX_XLOGDATA (1u << 20)
#define PGMSG_STATUS_BYTES 34
#define PGMSG_ARCHIVE_MAX 255   /* an archive name: "base.tar", "16385.tar" */
#define PGMSG_PATH_MAX 1023     /* a tablespace location (MAXPGPATH - 1) */

/* START_REPLICATION's CopyBoth stream, server to client. */
struct pgmsg_stream {
	char kind;           /* 'w' XLogData, 'k' primary keepalive */
	uint64_t start;      /* 'w': dataStart, the LSN of data[0] */
	uint64_t wal_end;    /* the server's current end of WAL */
	int64_t send_time;
	bool reply;          /* 'k': replyRequested */
	const uint8_t *data; /* 'w': points into the message */
	size_t len;
};

/* Decode one CopyData message of the WAL stream:
 *   XLogData        Byte1('w') Int64 dataStart Int64 walEnd Int64 sendTime Byte(n)
 *   Primary keepalive Byte1('k') Int64 walEnd Int64 sendTime Byte1 replyRequested
 * (a keepalive is exactly 18 bytes).  -EBADMSG on anything else, on a
 * length that does not match, or WAL that would end past 2^64; *RET
 * untouched on failure. */
int pgmsg_get_stream(const void *msg, size_t len, struct pgmsg_stream *ret);

/* Standby status update, client to server (exactly 34 bytes):
 *   Byte1('r') Int64 write Int64 flush Int64 apply Int64 clock Byte1 replyRequested */
void pgmsg_put_status(uint8_t out[PGMSG_STATUS_BYTES], uint64_t write, uint64_t flush, uint64_t apply,
		      int64_t now, bool reply);

/* BASE_BACKUP's CopyOut stream (PostgreSQL 15 and newer), server to client. */
struct pgmsg_backup {
	char kind;           /* 'n' new archive, 'd' data, 'p' progress, 'm' manifest follows */
	char archive[PGMSG_ARCHIVE_MAX + 1]; /* 'n' */
	char spclocation[PGMSG_PATH_MAX + 1];/* 'n': "" for the data directory */
	uint64_t done;       /* 'p': bytes sent so far */
	const uint8_t *data; /* 'd': points into the message */
	size_t len;
};

/* Decode one CopyData message of the backup stream:
 *   'n' String archive_name String tablespace_location
 *   'd' Byte(n) data      'p' Int64 bytes_done      'm' (nothing)
 * An archive name must be non-empty, not start with '.', hold no '/' or '\'
 * or control character; a location is empty or absolute.  -EBADMSG
 * otherwise; *RET untouched on failure. */
int pgmsg_get_backup(const void *msg, size_t len, struct pgmsg_backup *ret);

/* Now in the protocol's clock: microseconds since 2000-01-01 UTC. */
int64_t pgmsg_now(void);
