/* wire.c - framing, handshake and sealing of Bascule's stream. */
#include "wire.h"
#include "err.h"
#include "fsutil.h"
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void wire_init(struct wire *w, int rfd, int wfd, enum wire_role role, const struct site_key *k)
{
	memset(w, 0, sizeof(*w));
	w->rfd = rfd;
	w->wfd = wfd;
	w->role = role;
	wbuf_init(&w->in, 2 * (WIRE_MAX_BODY + 64));
	wbuf_init(&w->out, 256u << 20);
	wbuf_init(&w->plain, WIRE_MAX_BODY + 64);
	randombytes_buf(w->my_nonce, sizeof(w->my_nonce));
	key_id(k, w->key_id);
	/* Derive a per-connection master from the key now, so the site key need
	 * not be kept: ktx temporarily holds BLAKE2b(site key, "bascule wire"). */
	crypto_generichash(w->ktx, sizeof(w->ktx), (const uint8_t *)"bascule wire v1", 15, k->k,
			   KEY_BYTES);
}

void wire_free(struct wire *w)
{
	if (!w)
		return;
	sodium_memzero(&w->tx, sizeof(w->tx));
	sodium_memzero(&w->rx, sizeof(w->rx));
	sodium_memzero(w->ktx, sizeof(w->ktx));
	sodium_memzero(w->krx, sizeof(w->krx));
	if (w->plain.p)
		sodium_memzero(w->plain.p, w->plain.cap);
	wbuf_free(&w->in);
	wbuf_free(&w->out);
	wbuf_free(&w->plain);
}

bool wire_ready(const struct wire *w)
{
	return w->tx_ready && w->rx_ready;
}

static int put_header(struct wire *w, enum wire_type type, uint32_t len, uint8_t hdr[WIRE_HDR_BYTES])
{
	put_be32(hdr, len);
	hdr[4] = (uint8_t)type;
	hdr[5] = 0;
	hdr[6] = hdr[7] = 0;
	return wbuf_put_bytes(&w->out, hdr, WIRE_HDR_BYTES);
}

static int send_clear(struct wire *w, enum wire_type type, const void *body, size_t len)
{
	uint8_t hdr[WIRE_HDR_BYTES];
	int r;

	if ((r = put_header(w, type, (uint32_t)len, hdr)) < 0)
		return r;
	return wbuf_put_bytes(&w->out, body, len);
}

int wire_send_hello(struct wire *w)
{
	struct wbuf b;
	int r;

	wbuf_init(&b, 256);
	if ((r = wbuf_put_bytes(&b, WIRE_MAGIC, 8)) < 0 || (r = wbuf_put_u16(&b, WIRE_VERSION)) < 0 ||
	    (r = wbuf_put_u8(&b, (uint8_t)w->role)) < 0 ||
	    (r = wbuf_put_bytes(&b, w->key_id, KEY_ID_BYTES)) < 0 ||
	    (r = wbuf_put_bytes(&b, w->my_nonce, WIRE_NONCE_BYTES)) < 0)
		goto out;
	r = send_clear(w, MSG_HELLO, b.p, b.len);
	w->hello_sent = true;
out:
	wbuf_free(&b);
	return r;
}

/* Both hellos are known: derive the two direction keys and queue our stream
 * header.  session = BLAKE2b(master, "session" || daemon nonce || recv nonce);
 * daemon->recv key = BLAKE2b(session, "d2r"), recv->daemon = BLAKE2b(session, "r2d"). */
static int wire_derive(struct wire *w)
{
	uint8_t session[32], hdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	const uint8_t *dn = w->role == WIRE_ROLE_DAEMON ? w->my_nonce : w->peer_nonce;
	const uint8_t *rn = w->role == WIRE_ROLE_DAEMON ? w->peer_nonce : w->my_nonce;
	crypto_generichash_state st;
	uint8_t d2r[32], r2d[32];

	crypto_generichash_init(&st, w->ktx, sizeof(w->ktx), sizeof(session));
	crypto_generichash_update(&st, (const uint8_t *)"session", 7);
	crypto_generichash_update(&st, dn, WIRE_NONCE_BYTES);
	crypto_generichash_update(&st, rn, WIRE_NONCE_BYTES);
	crypto_generichash_final(&st, session, sizeof(session));
	crypto_generichash(d2r, 32, (const uint8_t *)"d2r", 3, session, sizeof(session));
	crypto_generichash(r2d, 32, (const uint8_t *)"r2d", 3, session, sizeof(session));
	memcpy(w->ktx, w->role == WIRE_ROLE_DAEMON ? d2r : r2d, 32);
	memcpy(w->krx, w->role == WIRE_ROLE_DAEMON ? r2d : d2r, 32);
	sodium_memzero(session, sizeof(session));
	sodium_memzero(d2r, sizeof(d2r));
	sodium_memzero(r2d, sizeof(r2d));
	crypto_secretstream_xchacha20poly1305_init_push(&w->tx, hdr, w->ktx);
	w->tx_ready = true;
	return send_clear(w, MSG_STREAM, hdr, sizeof(hdr));
}

int wire_send(struct wire *w, enum wire_type type, const void *body, size_t len)
{
	uint8_t hdr[WIRE_HDR_BYTES];
	size_t clen = len + crypto_secretstream_xchacha20poly1305_ABYTES;
	uint8_t tag = type == MSG_BYE ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
				      : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
	size_t start = w->out.len;
	int r;

	if (!w->tx_ready) {
		if (type == MSG_ERROR)
			return send_clear(w, type, body, len);
		return err_set(EPROTO, "cannot send before the handshake");
	}
	if (len > WIRE_MAX_BODY)
		return err_set(EMSGSIZE, "frame of %zu bytes exceeds the protocol maximum", len);
	if ((r = put_header(w, type, (uint32_t)clen, hdr)) < 0)
		return r;
	if ((r = wbuf_reserve(&w->out, clen)) < 0) {
		w->out.len = start;
		return r;
	}
	crypto_secretstream_xchacha20poly1305_push(&w->tx, w->out.p + w->out.len, NULL, body, len,
						   hdr, WIRE_HDR_BYTES, tag);
	w->out.len += clen;
	return 0;
}

int wire_send_error(struct wire *w, int code, const char *text)
{
	struct wbuf b;
	int r;

	wbuf_init(&b, 1024);
	if ((r = wbuf_put_u32(&b, (uint32_t)(code < 0 ? -code : code))) == 0 &&
	    (r = wbuf_put_str(&b, text)) == 0)
		r = wire_send(w, MSG_ERROR, b.p, b.len);
	wbuf_free(&b);
	return r;
}

bool wire_pending_out(const struct wire *w)
{
	return w->out.len > w->out_off;
}

size_t wire_out_len(const struct wire *w)
{
	return w->out.len - w->out_off;
}

static ssize_t wire_do_read(struct wire *w, void *buf, size_t len)
{
	ssize_t n;

	if (w->io.read)
		return w->io.read(w->io.ctx, buf, len);
	do
		n = read(w->rfd, buf, len);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static ssize_t wire_do_write(struct wire *w, const void *buf, size_t len)
{
	ssize_t n;

	if (w->io.write)
		return w->io.write(w->io.ctx, buf, len);
	do
		n = write(w->wfd, buf, len);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

int wire_flush(struct wire *w)
{
	while (w->out_off < w->out.len) {
		ssize_t n = wire_do_write(w, w->out.p + w->out_off, w->out.len - w->out_off);
		if (n < 0)
			return (int)n;
		w->out_off += (size_t)n;
		w->bytes_out += (uint64_t)n;
	}
	w->out.len = w->out_off = 0;
	return 0;
}

int wire_fill(struct wire *w)
{
	ssize_t n;
	int r;

	/* Compact consumed input first. */
	if (w->in_off) {
		wbuf_consume(&w->in, w->in_off);
		w->in_off = 0;
	}
	if ((r = wbuf_reserve(&w->in, 256 * 1024)) < 0)
		return r;
	n = wire_do_read(w, w->in.p + w->in.len, w->in.cap - w->in.len);
	if (n < 0)
		return (int)n;
	if (n == 0) {
		w->eof = true;
		return 0;
	}
	w->in.len += (size_t)n;
	w->bytes_in += (uint64_t)n;
	return (int)n;
}

static int parse_hello(struct wire *w, struct rbuf *b)
{
	uint8_t magic[8], role, id[KEY_ID_BYTES];
	uint16_t version;
	char mine[2 * KEY_ID_BYTES + 1], theirs[2 * KEY_ID_BYTES + 1];

	if (rbuf_get_bytes(b, magic, 8) < 0 || memcmp(magic, WIRE_MAGIC, 8) != 0)
		return err_set(EPROTO, "peer does not speak the Bascule protocol (bad magic)");
	if (rbuf_get_u16(b, &version) < 0 || rbuf_get_u8(b, &role) < 0 ||
	    rbuf_get_bytes(b, id, sizeof(id)) < 0 ||
	    rbuf_get_bytes(b, w->peer_nonce, WIRE_NONCE_BYTES) < 0 || rbuf_expect_end(b) < 0)
		return err_set(EPROTO, "malformed HELLO from peer");
	if (version != WIRE_VERSION)
		return err_set(EPROTO, "peer speaks protocol version %u, this program version %u; "
				       "install the same Bascule version on both sites",
			       version, WIRE_VERSION);
	if (role == w->role || (role != WIRE_ROLE_DAEMON && role != WIRE_ROLE_RECV))
		return err_set(EPROTO, "peer announced an unexpected role %u", role);
	if (memcmp(id, w->key_id, KEY_ID_BYTES) != 0) {
		sodium_bin2hex(mine, sizeof(mine), w->key_id, KEY_ID_BYTES);
		sodium_bin2hex(theirs, sizeof(theirs), id, KEY_ID_BYTES);
		bool daemon = w->role == WIRE_ROLE_DAEMON;
		return err_set(EKEYREJECTED,
			       "site key mismatch: the primary's (basculed) key id is %s, the "
			       "secondary's (bascule recv) is %s; both sites must use the same site "
			       "key file (`bascule key id FILE` prints a file's id)",
			       daemon ? mine : theirs, daemon ? theirs : mine);
	}
	w->hello_rcvd = true;
	return 0;
}

/* An ERROR body (docs/protocol.md): u32 code, string text, nothing after.
 * The text goes to w->peer_error, cut to fit (a long sentence is still an
 * answer).  A body shorter than that, or with bytes after it, or a NUL in
 * the text, is a malformed frame: -EBADMSG, and *RET_CODE is untouched. */
static int parse_error(struct wire *w, struct rbuf *body, uint32_t *ret_code)
{
	struct rbuf b = *body;
	const uint8_t *text;
	uint32_t code;
	uint16_t n;

	if (rbuf_get_u32(&b, &code) < 0 || rbuf_get_u16(&b, &n) < 0 || rbuf_get_view(&b, n, &text) < 0 ||
	    rbuf_expect_end(&b) < 0 || memchr(text, 0, n)) {
		snprintf(w->peer_error, sizeof(w->peer_error), "(malformed error)");
		return err_set(EBADMSG, "malformed ERROR frame from the peer (%zu bytes): the stream is "
					"not Bascule's or was damaged", body->len);
	}
	snprintf(w->peer_error, sizeof(w->peer_error), "%.*s", (int)n, (const char *)text);
	*ret_code = code;
	return 0;
}

int wire_next(struct wire *w, enum wire_type *ret_type, struct rbuf *ret_body)
{
	for (;;) {
		size_t avail = w->in.len - w->in_off;
		const uint8_t *h;
		uint32_t len;
		uint8_t type;
		struct rbuf body;
		int r;

		if (avail < WIRE_HDR_BYTES)
			return 0; /* nothing read yet: in.p may be NULL */
		h = w->in.p + w->in_off;
		len = get_be32(h);
		type = h[4];
		if (h[5] != 0 || h[6] != 0 || h[7] != 0)
			return err_set(EBADMSG, "malformed frame header from peer (reserved bits set)");
		if (len > WIRE_MAX_BODY + crypto_secretstream_xchacha20poly1305_ABYTES)
			return err_set(EBADMSG, "peer announced a frame of %u bytes, above the maximum of %u",
				       len, WIRE_MAX_BODY);
		if (avail < WIRE_HDR_BYTES + (size_t)len)
			return 0;
		body = rbuf_init(h + WIRE_HDR_BYTES, len);
		w->in_off += WIRE_HDR_BYTES + len;

		if (w->finished)
			return err_set(EBADMSG, "data after the end of the stream");
		if (!w->rx_ready) {
			/* Handshake phase: only clear frames. */
			if (type == MSG_ERROR) {
				uint32_t code;
				if ((r = parse_error(w, &body, &code)) < 0)
					return r;
				return err_set(code == EKEYREJECTED ? EKEYREJECTED : ECONNABORTED,
					       "peer refused: %s", w->peer_error);
			}
			if (type == MSG_HELLO && !w->hello_rcvd) {
				if ((r = parse_hello(w, &body)) < 0)
					return r;
				if (!w->hello_sent && (r = wire_send_hello(w)) < 0)
					return r;
				if ((r = wire_derive(w)) < 0)
					return r;
				continue;
			}
			if (type == MSG_STREAM && w->hello_rcvd &&
			    len == crypto_secretstream_xchacha20poly1305_HEADERBYTES) {
				if (crypto_secretstream_xchacha20poly1305_init_pull(&w->rx, body.p, w->krx) != 0)
					return err_set(EBADMSG, "bad stream header from peer");
				w->rx_ready = true;
				continue;
			}
			return err_set(EPROTO, "unexpected frame type %u during the handshake", type);
		}
		/* Sealed phase. */
		{
			unsigned long long mlen;
			uint8_t tag;

			if (len < crypto_secretstream_xchacha20poly1305_ABYTES)
				return err_set(EBADMSG, "sealed frame too short");
			wbuf_reset(&w->plain);
			if ((r = wbuf_reserve(&w->plain, len)) < 0)
				return r;
			if (crypto_secretstream_xchacha20poly1305_pull(&w->rx, w->plain.p, &mlen, &tag,
								       body.p, len, h, WIRE_HDR_BYTES) != 0)
				return err_set(EBADMSG,
					       "authentication failed on a frame from the peer: "
					       "the stream was altered, reordered or replayed in transit");
			w->plain.len = (size_t)mlen;
			if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
				if (type != MSG_BYE)
					return err_set(EBADMSG, "final tag on a non-BYE frame");
				w->finished = true;
			} else if (type == MSG_BYE) {
				return err_set(EBADMSG, "BYE without the final tag");
			}
			if (type == MSG_ERROR) {
				struct rbuf eb = rbuf_init(w->plain.p, w->plain.len);
				uint32_t code;
				if ((r = parse_error(w, &eb, &code)) < 0)
					return r;
				return err_set(ECONNABORTED, "peer reported: %s", w->peer_error);
			}
			*ret_type = (enum wire_type)type;
			*ret_body = rbuf_init(w->plain.p, w->plain.len);
			return 1;
		}
	}
}

int wire_flush_blocking(struct wire *w)
{
	for (;;) {
		int r = wire_flush(w);
		struct pollfd p = { .fd = w->wfd, .events = POLLOUT };
		if (r != -EAGAIN)
			return r;
		poll(&p, 1, -1);
	}
}

size_t wire_cut_bytes(const struct wire *w)
{
	return w->eof ? w->in.len - w->in_off : 0;
}

/* The end of input, as a sentence: on a frame boundary the peer closed the
 * connection; inside a frame the stream was cut (docs/protocol.md 3). */
static int wire_eof_error(const struct wire *w)
{
	size_t have = w->in.len - w->in_off;

	if (!have)
		return err_set(ECONNRESET, "the peer closed the connection");
	if (have < WIRE_HDR_BYTES)
		return err_set(ECONNRESET, "the stream was cut inside a frame header (%zu of %u bytes "
					   "received): the connection was lost or the peer died mid-frame",
			       have, WIRE_HDR_BYTES);
	return err_set(ECONNRESET, "the stream was cut inside a frame (%zu of %zu bytes received): "
				   "the connection was lost or the peer died mid-frame",
		       have, WIRE_HDR_BYTES + (size_t)get_be32(w->in.p + w->in_off));
}

int wire_recv_blocking(struct wire *w, enum wire_type *ret_type, struct rbuf *ret_body)
{
	for (;;) {
		int r = wire_next(w, ret_type, ret_body);
		if (r != 0)
			return r;
		/* Handshake frames may have queued output (our hello, stream header). */
		if (wire_pending_out(w) && (r = wire_flush_blocking(w)) < 0)
			return r;
		r = wire_fill(w);
		if (r == -EAGAIN) {
			struct pollfd p = { .fd = w->rfd, .events = POLLIN };
			poll(&p, 1, -1);
			continue;
		}
		if (r < 0)
			return r;
		if (r == 0)
			return wire_eof_error(w);
	}
}

bool wire_input_pending(const struct wire *w)
{
	struct pollfd p = { .fd = w->rfd, .events = POLLIN };

	if (w->in.len > w->in_off)
		return true;
	return !w->io.read && !w->eof && poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static bool frame_buffered(const struct wire *w)
{
	size_t avail = w->in.len - w->in_off;

	return avail >= WIRE_HDR_BYTES && avail - WIRE_HDR_BYTES >= get_be32(w->in.p + w->in_off);
}

bool wire_frame_at_hand(struct wire *w)
{
	if (frame_buffered(w))
		return true;
	return wire_input_pending(w) && wire_fill(w) > 0 && frame_buffered(w);
}

ssize_t wire_flush_some(struct wire *w, size_t max)
{
	size_t left = w->out.len - w->out_off;
	ssize_t n;

	if (max > left)
		max = left;
	if (!max)
		return 0;
	n = wire_do_write(w, w->out.p + w->out_off, max);
	if (n < 0)
		return n;
	w->out_off += (size_t)n;
	w->bytes_out += (uint64_t)n;
	if (w->out_off == w->out.len)
		w->out.len = w->out_off = 0;
	else if (w->out_off > (8u << 20)) {
		wbuf_consume(&w->out, w->out_off);
		w->out_off = 0;
	}
	return n;
}
