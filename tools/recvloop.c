/* recvloop.c - the receiving end of the protocol (see recvloop.h). */
#include "recvloop.h"
#include "err.h"
#include "log.h"
#include "rsync.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define RECV_STAGE_MAX 16 /* epochs staged at most before they are made durable and acked */

/* Epochs committed or staged, not acknowledged yet. */
struct acks {
	char group[RECV_STAGE_MAX + 1][NAME_MAX_LEN + 1];
	uint64_t epoch[RECV_STAGE_MAX + 1];
	size_t n;
	uint64_t acked, rounds; /* epochs acked in the session, and in how many writes */
};

static int queue_ack(struct wire *w, const char *group, uint64_t epoch, int err, const char *text)
{
	struct msg_ack m = { 0 };
	struct wbuf b;
	int rc;

	snprintf(m.group, sizeof(m.group), "%s", group);
	m.epoch = epoch;
	if (err) {
		m.code = (uint32_t)-err;
		snprintf(m.text, sizeof(m.text), "%s", text);
	}
	wbuf_init(&b, 4096);
	rc = proto_put_ack(&b, &m, err != 0);
	if (rc == 0)
		rc = wire_send(w, err ? MSG_NACK : MSG_ACK, b.p, b.len);
	wbuf_free(&b);
	return rc;
}

/* The epochs in A made durable (the staged ones flushed), then acked in one
 * write, in order; the sink told of each group's.  0 or a negative errno
 * (a flush that failed: none of them is acked). */
static int settle(struct wire *w, const struct recv_sink *s, struct acks *a)
{
	int rc = 0;

	if (!a->n)
		return 0;
	if (s->flush && (rc = s->flush(s->ctx)) < 0) {
		a->n = 0;
		return rc;
	}
	for (size_t i = 0; i < a->n && !rc; i++)
		rc = queue_ack(w, a->group[i], a->epoch[i], 0, NULL);
	if (rc == 0)
		rc = wire_flush_blocking(w);
	if (rc == 0) {
		a->acked += a->n;
		a->rounds++;
	}
	for (size_t i = 0; i < a->n && !rc && s->committed; i++)
		if (i + 1 == a->n || strcmp(a->group[i], a->group[i + 1]) != 0)
			s->committed(s->ctx, a->group[i]);
	a->n = 0;
	return rc;
}

/* NACK epoch EPOCH of GROUP for ERR; the epochs before it settled first. */
static void refuse(struct wire *w, const struct recv_sink *s, struct acks *a, const char *group,
		   uint64_t epoch, int err)
{
	char text[sizeof(((struct msg_ack *)0)->text)];

	int rc;

	snprintf(text, sizeof(text), "%s", err_msg(err));
	if ((rc = settle(w, s, a)) < 0)
		log_error("%s", err_msg(rc));
	if (queue_ack(w, group, epoch, err, text) == 0)
		wire_flush_blocking(w);
	err_set(-err, "%s", text);
}

static int advise(const struct recv_sink *s, int rc)
{
	return s->advise && rc < 0 ? s->advise(s->ctx, rc) : rc;
}

/* DATA_LEN bytes of one zstd frame whose content is exactly RAW_LEN bytes,
 * into OUT (room for PROTO_MAX_EXTENT). */
static int unzstd(ZSTD_DCtx *dctx, const uint8_t *data, uint32_t data_len, uint32_t raw_len, uint8_t *out,
		  const char *what)
{
	unsigned long long fs = ZSTD_getFrameContentSize(data, data_len);
	size_t n;

	if (fs != raw_len)
		return err_set(EBADMSG, "compressed %s announces %llu bytes, expected %u", what, fs, raw_len);
	n = ZSTD_decompressDCtx(dctx, out, PROTO_MAX_EXTENT, data, data_len);
	if (ZSTD_isError(n) || n != raw_len)
		return err_set(EBADMSG, "corrupt compressed %s", what);
	return 0;
}

static int send_state(struct wire *w, const struct recv_sink *s)
{
	struct wbuf b;
	int rc;

	wbuf_init(&b, WIRE_MAX_BODY);
	if ((rc = s->state(s->ctx, &b)) == 0)
		rc = wire_send(w, MSG_STATE, b.p, b.len);
	wbuf_free(&b);
	return rc;
}

int recv_serve(struct site_key *key, const struct recv_sink *s)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	uint8_t *raw = malloc(PROTO_MAX_EXTENT), *basis = malloc(PROTO_MAX_EXTENT);
	char group[NAME_MAX_LEN + 1] = "";
	uint64_t epoch = 0;
	bool in_epoch = false;
	struct acks acks = { .n = 0 };
	struct wire w;
	int rc = 0;

	if (!dctx || !raw || !basis) {
		ZSTD_freeDCtx(dctx);
		free(raw);
		free(basis);
		return -ENOMEM;
	}
	wire_init(&w, STDIN_FILENO, STDOUT_FILENO, WIRE_ROLE_RECV, key);
	key = NULL; /* wire_init keeps a session secret of its own */
	if (s->keyed)
		s->keyed(s->ctx);

	/* Handshake: the daemon speaks first. */
	while (!wire_ready(&w)) {
		enum wire_type t;
		struct rbuf body;
		rc = wire_next(&w, &t, &body);
		if (rc < 0) {
			wire_send_error(&w, rc, err_msg(rc));
			wire_flush_blocking(&w);
			goto out;
		}
		if ((rc = wire_flush_blocking(&w)) < 0)
			goto out;
		if (wire_ready(&w))
			break;
		rc = wire_fill(&w);
		if (rc == 0) {
			rc = err_set(ECONNRESET, "the daemon closed the connection during the handshake");
			goto out;
		}
		if (rc < 0)
			goto out;
	}
	if ((rc = send_state(&w, s)) < 0 || (rc = wire_flush_blocking(&w)) < 0)
		goto out;

	for (;;) {
		enum wire_type t;
		struct rbuf body;

		/* Never wait for input with epochs unacked: group commit takes
		 * only the epochs that arrived while the last was applied. */
		if (acks.n && !wire_frame_at_hand(&w) && (rc = settle(&w, s, &acks)) < 0)
			goto out;
		rc = wire_recv_blocking(&w, &t, &body);
		if (rc == -ECONNRESET && !in_epoch && !wire_cut_bytes(&w)) {
			/* docs/protocol.md: only BYE ends a session, but an end on a
			 * frame boundary between epochs loses nothing (the daemon
			 * stopped or the link dropped): not an error, said once. */
			log_warn("the daemon closed the connection between epochs without BYE: "
				 "nothing was lost, the daemon resumes from STATE when it reconnects");
			rc = 0;
			goto out;
		}
		if (rc < 0)
			goto out;
		switch (t) {
		case MSG_EPOCH_BEGIN: {
			struct msg_epoch_begin m;
			if (in_epoch) {
				rc = err_set(EPROTO, "EPOCH_BEGIN inside an epoch");
				goto out;
			}
			if ((rc = proto_get_epoch_begin(&body, &m)) < 0)
				goto out;
			if ((rc = advise(s, s->begin(s->ctx, &m))) < 0) {
				refuse(&w, s, &acks, m.group, m.epoch, rc);
				goto out;
			}
			snprintf(group, sizeof(group), "%s", m.group);
			epoch = m.epoch;
			in_epoch = true;
			break;
		}
		case MSG_SOURCE: {
			struct msg_source m;
			if (!in_epoch) {
				rc = err_set(EPROTO, "SOURCE outside an epoch");
				goto out;
			}
			if ((rc = proto_get_source(&body, &m)) < 0 || (rc = s->source(s->ctx, &m)) < 0)
				goto out;
			break;
		}
		case MSG_EXTENT: {
			struct msg_extent m;
			const uint8_t *data = NULL;
			if (!in_epoch) {
				rc = err_set(EPROTO, "EXTENT outside an epoch");
				goto out;
			}
			if ((rc = proto_get_extent(&body, &m)) < 0)
				goto out;
			if (m.enc == EXT_RAW)
				data = m.data;
			else if (m.enc == EXT_ZSTD) {
				if ((rc = unzstd(dctx, m.data, m.data_len, m.raw_len, raw, "extent")) < 0)
					goto out;
				data = raw;
			} else if (m.enc == EXT_DELTA) {
				/* Resync: patch the replica's own range into the new one. */
				if (!s->basis) {
					rc = err_set(EPROTO, "a resync delta was sent to a receiver that keeps no replica");
					goto out;
				}
				if ((rc = s->basis(s->ctx, m.src, m.offset, basis, m.raw_len)) < 0 ||
				    (rc = rsync_patch(basis, m.raw_len, m.data, m.data_len, raw, m.raw_len)) < 0)
					goto out;
				data = raw;
			}
			if ((rc = advise(s, s->extent(s->ctx, m.src, m.offset, m.raw_len, data))) < 0) {
				refuse(&w, s, &acks, group, epoch, rc);
				goto out;
			}
			break;
		}
		case MSG_PGSOURCE: {
			struct msg_pgsource m;
			if (!in_epoch) {
				rc = err_set(EPROTO, "PGSOURCE outside an epoch");
				goto out;
			}
			if (!s->pgsource) {
				rc = err_set(EPROTO, "a PostgreSQL source was sent to a receiver that keeps none");
				goto out;
			}
			if ((rc = pgproto_get_pgsource(&body, &m)) < 0)
				goto out;
			/* Refused (not where the copy ends, say): the daemon is told why. */
			if ((rc = advise(s, s->pgsource(s->ctx, &m))) < 0) {
				refuse(&w, s, &acks, group, epoch, rc);
				goto out;
			}
			break;
		}
		case MSG_WAL: {
			struct msg_wal m;
			const uint8_t *data;
			if (!in_epoch || !s->wal) {
				rc = err_set(EPROTO, "WAL outside an epoch of a PostgreSQL source");
				goto out;
			}
			if ((rc = pgproto_get_wal(&body, &m)) < 0)
				goto out;
			data = m.data;
			if (m.enc == EXT_ZSTD && (rc = unzstd(dctx, m.data, m.data_len, m.raw_len, raw, "WAL")) < 0)
				goto out;
			if (m.enc == EXT_ZSTD)
				data = raw;
			if ((rc = advise(s, s->wal(s->ctx, m.src, m.lsn, m.raw_len, data))) < 0) {
				refuse(&w, s, &acks, group, epoch, rc);
				goto out;
			}
			break;
		}
		case MSG_BASEFILE: {
			struct msg_basefile m;
			const uint8_t *data;
			if (!in_epoch || !s->basefile) {
				rc = err_set(EPROTO, "BASEFILE outside an epoch of a PostgreSQL source");
				goto out;
			}
			if ((rc = pgproto_get_basefile(&body, &m)) < 0)
				goto out;
			data = m.raw_len ? m.data : NULL;
			if (m.enc == EXT_ZSTD &&
			    (rc = unzstd(dctx, m.data, m.data_len, m.raw_len, raw, "base backup piece")) < 0)
				goto out;
			if (m.enc == EXT_ZSTD)
				data = raw;
			if ((rc = advise(s, s->basefile(s->ctx, m.src, m.file, m.offset, m.raw_len, data))) < 0) {
				refuse(&w, s, &acks, group, epoch, rc);
				goto out;
			}
			break;
		}
		case MSG_EPOCH_END: {
			struct msg_epoch_end m;
			bool stage;
			if (!in_epoch) {
				rc = err_set(EPROTO, "EPOCH_END outside an epoch");
				goto out;
			}
			if ((rc = proto_get_epoch_end(&body, &m)) < 0)
				goto out;
			/* Group commit: staged while the next epoch is already coming. */
			stage = s->stage && s->flush && acks.n < RECV_STAGE_MAX && wire_input_pending(&w);
			rc = advise(s, stage ? s->stage(s->ctx, &m) : s->commit(s->ctx, &m));
			in_epoch = false;
			if (rc < 0) {
				log_error("epoch %llu of %s refused: %s", (unsigned long long)epoch, group,
					  err_msg(rc));
				refuse(&w, s, &acks, group, epoch, rc);
				goto out;
			}
			snprintf(acks.group[acks.n], sizeof(acks.group[0]), "%s", group);
			acks.epoch[acks.n++] = epoch;
			if (rc == 0 && (rc = settle(&w, s, &acks)) < 0)
				goto out;
			rc = 0;
			break;
		}
		case MSG_SIG_REQUEST: {
			struct msg_sig m;
			if ((rc = settle(&w, s, &acks)) < 0)
				goto out;
			if (in_epoch) {
				rc = err_set(EPROTO, "SIG_REQUEST inside an epoch");
				goto out;
			}
			if (!s->signatures) {
				rc = err_set(EPROTO, "signatures were asked of a receiver that keeps no replica");
				goto out;
			}
			if ((rc = proto_get_sig(&body, MSG_SIG_REQUEST, &m)) < 0 ||
			    (rc = s->signatures(s->ctx, &w, &m)) < 0)
				goto out;
			break;
		}
		case MSG_BYE:
			rc = settle(&w, s, &acks);
			goto out;
		default:
			rc = err_set(EPROTO, "unexpected message type %d from the daemon", t);
			goto out;
		}
	}
out:
	if (rc < 0)
		log_error("%s%s", err_msg(rc), in_epoch ? " (nothing of the epoch in progress was applied)" : "");
	if (in_epoch)
		s->abort(s->ctx);
	/* Epochs complete but not acked (the stream ended): durable all the
	 * same, the daemon finds them in STATE. */
	if (acks.n) {
		int rc2 = settle(&w, s, &acks);
		if (rc2 < 0)
			log_error("%s", err_msg(rc2));
	}
	if (acks.acked > acks.rounds)
		log_info("group commit: %llu epochs made durable and acknowledged in %llu rounds",
			 (unsigned long long)acks.acked, (unsigned long long)acks.rounds);
	wire_free(&w);
	ZSTD_freeDCtx(dctx);
	free(raw);
	free(basis);
	return rc;
}
