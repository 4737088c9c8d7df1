/* recvloop.h - the receiving end of the protocol, shared by `bascule recv`
 * (replicas) and `bascule vault recv` (the vault writer).  The loop does the
 * handshake, sends STATE, decodes and decompresses every message and
 * acknowledges each epoch once the sink has committed it (several at once
 * when the sink stages epochs while more are coming: group commit); the
 * sink decides what an epoch becomes.  Any error ends the session: the daemon reconnects
 * and resumes from the STATE sent first. */
#pragma once
#include <stdint.h>
#include "buf.h"
#include "key.h"
#include "pgproto.h"
#include "proto.h"
#include "wire.h"

struct recv_sink {
	void *ctx;
	/* STATE body: u32 count then groups (proto_put_state_group). */
	int (*state)(void *ctx, struct wbuf *b);
	int (*begin)(void *ctx, const struct msg_epoch_begin *m);
	int (*source)(void *ctx, const struct msg_source *m);
	/* LEN bytes at OFF of source SRC; DATA NULL means zeros. */
	int (*extent)(void *ctx, uint32_t src, uint64_t off, uint32_t len, const uint8_t *data);
	/* Resync deltas: the replica's own bytes at OFF (NULL: no resync). */
	int (*basis)(void *ctx, uint32_t src, uint64_t off, uint8_t *buf, uint32_t len);
	/* PostgreSQL sources (docs/protocol.md, section 7; NULL: refused):
	 * PGSOURCE in the place of the source's SOURCE; LEN bytes of WAL at
	 * LSN, decompressed; a piece of a file of its base backup (LEN may be
	 * 0, DATA then NULL). */
	int (*pgsource)(void *ctx, const struct msg_pgsource *m);
	int (*wal)(void *ctx, uint32_t src, uint64_t lsn, uint32_t len, const uint8_t *data);
	int (*basefile)(void *ctx, uint32_t src, const char *file, uint64_t off, uint32_t len,
			const uint8_t *data);
	/* Make the epoch durable (and the epochs staged before it); always
	 * ends it (success or not). */
	int (*commit)(void *ctx, const struct msg_epoch_end *m);
	/* Group commit (both NULL: every epoch is committed alone).  stage:
	 * like commit, but the epoch may be left staged, durable only once
	 * flush (or a later commit) returns 0: 1 when it is, 0 when it is
	 * durable now.  The loop stages while the next epoch is already
	 * coming and acks the staged epochs only once they are durable.
	 * flush: make the staged epochs durable (0 when none is). */
	int (*stage)(void *ctx, const struct msg_epoch_end *m);
	int (*flush)(void *ctx);
	/* Drop the epoch in progress (connection lost, error). */
	void (*abort)(void *ctx);
	/* After the ack of a committed epoch of GROUP went out (may be NULL):
	 * work that must not delay the ack (a hot standby to start). */
	void (*committed)(void *ctx, const char *group);
	/* Answer SIG_REQUEST (NULL: refused). */
	int (*signatures)(void *ctx, struct wire *w, const struct msg_sig *req);
	/* Turn an error into advice for the operator (may be NULL). */
	int (*advise)(void *ctx, int rc);
	/* The wire has derived its session secret: the site key given to
	 * recv_serve is not used again and may be wiped (may be NULL). */
	void (*keyed)(void *ctx);
};

/* Serve one session on stdin/stdout. */
int recv_serve(struct site_key *key, const struct recv_sink *s);
