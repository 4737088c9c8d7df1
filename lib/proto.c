/* proto.c - encode and decode message bodies with exact checks. */
#include "proto.h"
#include "err.h"
#include <string.h>

#define TRY(x) do { int _r = (x); if (_r < 0) return _r; } while (0)
#define BAD(...) err_set(EBADMSG, __VA_ARGS__)

static int get_name(struct rbuf *b, char *dst, const char *what)
{
	if (rbuf_get_str(b, dst, NAME_MAX_LEN + 1) < 0)
		return BAD("malformed %s name in message", what);
	if (!name_ok(dst))
		return BAD("invalid %s name in message", what);
	return 0;
}

int proto_put_epoch_begin(struct wbuf *b, const struct msg_epoch_begin *m)
{
	TRY(wbuf_put_str(b, m->group));
	TRY(wbuf_put_u64(b, m->epoch));
	TRY(wbuf_put_u64(b, m->cut_time));
	TRY(wbuf_put_u8(b, m->flags));
	return wbuf_put_u32(b, m->n_sources);
}

int proto_get_epoch_begin(struct rbuf *b, struct msg_epoch_begin *ret)
{
	struct msg_epoch_begin m;

	TRY(get_name(b, m.group, "group"));
	if (rbuf_get_u64(b, &m.epoch) < 0 || rbuf_get_u64(b, &m.cut_time) < 0 ||
	    rbuf_get_u8(b, &m.flags) < 0 || rbuf_get_u32(b, &m.n_sources) < 0 ||
	    rbuf_expect_end(b) < 0)
		return BAD("malformed EPOCH_BEGIN");
	if (m.epoch == 0 || m.n_sources == 0 || m.n_sources > PROTO_MAX_SOURCES || (m.flags & ~1u))
		return BAD("EPOCH_BEGIN out of bounds");
	*ret = m;
	return 0;
}

int proto_put_source(struct wbuf *b, const struct msg_source *m)
{
	TRY(wbuf_put_u32(b, m->idx));
	TRY(wbuf_put_str(b, m->name));
	TRY(wbuf_put_u64(b, m->base));
	TRY(wbuf_put_u64(b, m->size));
	TRY(wbuf_put_u32(b, m->block_size));
	return wbuf_put_bytes(b, m->digest, DIGEST_BYTES);
}

int proto_get_source(struct rbuf *b, struct msg_source *ret)
{
	struct msg_source m;

	if (rbuf_get_u32(b, &m.idx) < 0)
		return BAD("malformed SOURCE");
	TRY(get_name(b, m.name, "source"));
	if (rbuf_get_u64(b, &m.base) < 0 || rbuf_get_u64(b, &m.size) < 0 ||
	    rbuf_get_u32(b, &m.block_size) < 0 || rbuf_get_bytes(b, m.digest, DIGEST_BYTES) < 0 ||
	    rbuf_expect_end(b) < 0)
		return BAD("malformed SOURCE");
	if (m.size > PROTO_MAX_SIZE || m.block_size != PROTO_BLOCK)
		return BAD("SOURCE out of bounds (size %llu, block size %u)",
			   (unsigned long long)m.size, m.block_size);
	*ret = m;
	return 0;
}

int proto_put_extent_hdr(struct wbuf *b, const struct msg_extent *m)
{
	TRY(wbuf_put_u32(b, m->src));
	TRY(wbuf_put_u64(b, m->offset));
	TRY(wbuf_put_u32(b, m->raw_len));
	return wbuf_put_u8(b, m->enc);
}

int proto_get_extent(struct rbuf *b, struct msg_extent *ret)
{
	struct msg_extent m;

	if (rbuf_get_u32(b, &m.src) < 0 || rbuf_get_u64(b, &m.offset) < 0 ||
	    rbuf_get_u32(b, &m.raw_len) < 0 || rbuf_get_u8(b, &m.enc) < 0)
		return BAD("malformed EXTENT");
	m.data_len = (uint32_t)rbuf_left(b);
	if (rbuf_get_view(b, m.data_len, &m.data) < 0)
		return BAD("malformed EXTENT");
	if (m.raw_len == 0 || m.raw_len > PROTO_MAX_EXTENT || m.enc > EXT_DELTA ||
	    (m.enc == EXT_DELTA && (m.data_len == 0 || m.offset % PROTO_SIG_RANGE)) ||
	    (m.enc == EXT_ZERO && m.data_len != 0) || (m.enc == EXT_RAW && m.data_len != m.raw_len) ||
	    (m.enc == EXT_ZSTD && m.data_len == 0) || m.offset % PROTO_BLOCK ||
	    m.offset > PROTO_MAX_SIZE || m.raw_len > PROTO_MAX_SIZE - m.offset)
		return BAD("EXTENT out of bounds");
	*ret = m;
	return 0;
}

int proto_put_epoch_end(struct wbuf *b, const struct msg_epoch_end *m)
{
	TRY(wbuf_put_str(b, m->group));
	TRY(wbuf_put_u64(b, m->epoch));
	TRY(wbuf_put_u64(b, m->n_extents));
	return wbuf_put_u64(b, m->raw_bytes);
}

int proto_get_epoch_end(struct rbuf *b, struct msg_epoch_end *ret)
{
	struct msg_epoch_end m;

	TRY(get_name(b, m.group, "group"));
	if (rbuf_get_u64(b, &m.epoch) < 0 || rbuf_get_u64(b, &m.n_extents) < 0 ||
	    rbuf_get_u64(b, &m.raw_bytes) < 0 || rbuf_expect_end(b) < 0)
		return BAD("malformed EPOCH_END");
	*ret = m;
	return 0;
}

int proto_put_ack(struct wbuf *b, const struct msg_ack *m, bool nack)
{
	TRY(wbuf_put_str(b, m->group));
	TRY(wbuf_put_u64(b, m->epoch));
	if (!nack)
		return 0;
	TRY(wbuf_put_u32(b, m->code));
	return wbuf_put_str(b, m->text);
}

int proto_get_ack(struct rbuf *b, struct msg_ack *ret, bool nack)
{
	struct msg_ack m = { 0 };

	TRY(get_name(b, m.group, "group"));
	if (rbuf_get_u64(b, &m.epoch) < 0)
		return BAD("malformed ACK");
	if (nack && (rbuf_get_u32(b, &m.code) < 0 || rbuf_get_str(b, m.text, sizeof(m.text)) < 0))
		return BAD("malformed NACK");
	if (rbuf_expect_end(b) < 0)
		return BAD("malformed ACK");
	*ret = m;
	return 0;
}

int proto_put_state_group(struct wbuf *b, const struct state_group *g)
{
	TRY(wbuf_put_str(b, g->group));
	TRY(wbuf_put_u64(b, g->epoch));
	TRY(wbuf_put_u64(b, g->cut_time));
	TRY(wbuf_put_u32(b, g->n_sources));
	for (uint32_t i = 0; i < g->n_sources; i++) {
		const struct state_source *s = &g->sources[i];
		TRY(wbuf_put_str(b, s->name));
		TRY(wbuf_put_u64(b, s->epoch));
		TRY(wbuf_put_u64(b, s->size));
		TRY(wbuf_put_u8(b, s->status));
		TRY(wbuf_put_bytes(b, s->digest, DIGEST_BYTES));
		TRY(wbuf_put_u64(b, s->system_id));
		TRY(wbuf_put_u64(b, s->base_id));
		TRY(wbuf_put_u32(b, s->timeline));
		TRY(wbuf_put_u64(b, s->end_lsn));
	}
	return 0;
}

int proto_get_state_group(struct rbuf *b, struct state_group *ret)
{
	TRY(get_name(b, ret->group, "group"));
	if (rbuf_get_u64(b, &ret->epoch) < 0 || rbuf_get_u64(b, &ret->cut_time) < 0 ||
	    rbuf_get_u32(b, &ret->n_sources) < 0 || ret->n_sources > PROTO_MAX_SOURCES)
		return BAD("malformed STATE");
	for (uint32_t i = 0; i < ret->n_sources; i++) {
		struct state_source *s = &ret->sources[i];
		TRY(get_name(b, s->name, "source"));
		if (rbuf_get_u64(b, &s->epoch) < 0 || rbuf_get_u64(b, &s->size) < 0 ||
		    rbuf_get_u8(b, &s->status) < 0 || rbuf_get_bytes(b, s->digest, DIGEST_BYTES) < 0 ||
		    rbuf_get_u64(b, &s->system_id) < 0 || rbuf_get_u64(b, &s->base_id) < 0 ||
		    rbuf_get_u32(b, &s->timeline) < 0 || rbuf_get_u64(b, &s->end_lsn) < 0 ||
		    s->status > SRC_UNKNOWN || s->size > PROTO_MAX_SIZE)
			return BAD("malformed STATE source");
	}
	return 0;
}

int proto_put_sig(struct wbuf *b, enum wire_type type, const struct msg_sig *m)
{
	TRY(wbuf_put_str(b, m->group));
	TRY(wbuf_put_str(b, m->source));
	if (type == MSG_SIG_REQUEST)
		return wbuf_put_u32(b, m->len);
	TRY(wbuf_put_u64(b, m->offset));
	if (type == MSG_SIG_END)
		return 0;
	TRY(wbuf_put_u32(b, m->len));
	return wbuf_put_bytes(b, m->data, m->data_len);
}

int proto_get_sig(struct rbuf *b, enum wire_type type, struct msg_sig *ret)
{
	struct msg_sig m = { 0 };

	TRY(get_name(b, m.group, "group"));
	TRY(get_name(b, m.source, "source"));
	if (type == MSG_SIG_REQUEST) {
		if (rbuf_get_u32(b, &m.len) < 0 || rbuf_expect_end(b) < 0 || m.len != PROTO_SIG_RANGE)
			return BAD("malformed SIG_REQUEST");
	} else if (type == MSG_SIG_END) {
		if (rbuf_get_u64(b, &m.offset) < 0 || rbuf_expect_end(b) < 0 || m.offset > PROTO_MAX_SIZE)
			return BAD("malformed SIG_END");
	} else {
		if (rbuf_get_u64(b, &m.offset) < 0 || rbuf_get_u32(b, &m.len) < 0 ||
		    m.offset % PROTO_SIG_RANGE || m.len == 0 || m.len > PROTO_SIG_RANGE ||
		    m.offset > PROTO_MAX_SIZE)
			return BAD("malformed SIG");
		m.data_len = (uint32_t)rbuf_left(b);
		if (m.data_len == 0 || rbuf_get_view(b, m.data_len, &m.data) < 0)
			return BAD("malformed SIG");
	}
	*ret = m;
	return 0;
}
