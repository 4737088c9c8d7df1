/* Unit tests: the sealed stream (handshake, AEAD with headers as associated
 * data) refuses flipped bits, reordering, replay, dropped frames, frames
 * from another session, oversized lengths and a different site key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "err.h"
#include "key.h"
#include "wire.h"

struct pair {
	struct site_key *ka, *kb;
	int a2m[2], m2b[2], b2a[2]; /* daemon -> middle -> recv, recv -> daemon */
	struct wire a, b;
};

static struct site_key *make_key(uint8_t fill)
{
	struct site_key *k = sodium_malloc(sizeof(*k));
	memset(k->k, fill, sizeof(k->k));
	return k;
}

static void pair_open(struct pair *p, uint8_t ka, uint8_t kb)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(sodium_init() >= 0, 1);
	p->ka = make_key(ka);
	p->kb = make_key(kb);
	assert_int_equal(pipe2(p->a2m, O_NONBLOCK), 0);
	assert_int_equal(pipe2(p->m2b, O_NONBLOCK), 0);
	assert_int_equal(pipe2(p->b2a, O_NONBLOCK), 0);
	wire_init(&p->a, p->b2a[0], p->a2m[1], WIRE_ROLE_DAEMON, p->ka);
	wire_init(&p->b, p->m2b[0], p->b2a[1], WIRE_ROLE_RECV, p->kb);
}

static void pair_close(struct pair *p)
{
	wire_free(&p->a);
	wire_free(&p->b);
	for (int i = 0; i < 2; i++) {
		close(p->a2m[i]);
		close(p->m2b[i]);
		close(p->b2a[i]);
	}
	sodium_free(p->ka);
	sodium_free(p->kb);
}

/* Bytes the daemon side wrote, taken out of the middle pipe. */
static size_t take(struct pair *p, uint8_t *buf, size_t cap)
{
	ssize_t n;

	assert_int_equal(wire_flush(&p->a), 0);
	n = read(p->a2m[0], buf, cap);
	return n > 0 ? (size_t)n : 0;
}

static void give(struct pair *p, const uint8_t *buf, size_t len)
{
	assert_int_equal(write(p->m2b[1], buf, len), (ssize_t)len);
}

/* Run the handshake through the middle untouched. */
static void handshake(struct pair *p)
{
	uint8_t buf[4096];
	enum wire_type t;
	struct rbuf body;
	size_t n;

	assert_int_equal(wire_send_hello(&p->a), 0);
	for (int round = 0; round < 4 && !(wire_ready(&p->a) && wire_ready(&p->b)); round++) {
		n = take(p, buf, sizeof(buf));
		give(p, buf, n);
		wire_fill(&p->b);
		assert_int_equal(wire_next(&p->b, &t, &body), 0);
		assert_int_equal(wire_flush(&p->b), 0);
		wire_fill(&p->a);
		assert_int_equal(wire_next(&p->a, &t, &body), 0);
	}
	assert_true(wire_ready(&p->a));
	/* the daemon's stream header is still in the middle pipe */
	n = take(p, buf, sizeof(buf));
	give(p, buf, n);
	wire_fill(&p->b);
	assert_int_equal(wire_next(&p->b, &t, &body), 0);
	assert_true(wire_ready(&p->b));
}

/* Frame boundaries in BUF: returns the number of frames, offsets in OFF. */
static int split(const uint8_t *buf, size_t len, size_t *off)
{
	int n = 0;
	for (size_t o = 0; o + WIRE_HDR_BYTES <= len; n++) {
		off[n] = o;
		o += WIRE_HDR_BYTES + get_be32(buf + o);
	}
	off[n] = len;
	return n;
}

static int deliver(struct pair *p, const uint8_t *buf, size_t len, enum wire_type *t, struct rbuf *body)
{
	give(p, buf, len);
	wire_fill(&p->b);
	return wire_next(&p->b, t, body);
}

static void test_roundtrip(void **state)
{
	struct pair p;
	uint8_t buf[4096];
	enum wire_type t;
	struct rbuf body;
	size_t n;

	pair_open(&p, 1, 1);
	handshake(&p);
	assert_int_equal(wire_send(&p.a, MSG_EPOCH_BEGIN, "hello", 5), 0);
	n = take(&p, buf, sizeof(buf));
	assert_null(memmem(buf, n, "hello", 5)); /* not in the clear */
	assert_int_equal(deliver(&p, buf, n, &t, &body), 1);
	assert_int_equal(t, MSG_EPOCH_BEGIN);
	assert_int_equal(rbuf_left(&body), 5);
	assert_memory_equal(body.p, "hello", 5);
	/* the other direction */
	assert_int_equal(wire_send(&p.b, MSG_ACK, "ok", 2), 0);
	assert_int_equal(wire_flush(&p.b), 0);
	wire_fill(&p.a);
	assert_int_equal(wire_next(&p.a, &t, &body), 1);
	assert_int_equal(t, MSG_ACK);
	pair_close(&p);
}

static void tamper_case(int which)
{
	struct pair p;
	uint8_t buf[8192], out[8192];
	size_t off[8], n, o = 0;
	enum wire_type t;
	struct rbuf body;
	int frames;

	pair_open(&p, 2, 2);
	handshake(&p);
	assert_int_equal(wire_send(&p.a, MSG_EXTENT, "first frame", 11), 0);
	assert_int_equal(wire_send(&p.a, MSG_EXTENT, "second frame", 12), 0);
	n = take(&p, buf, sizeof(buf));
	frames = split(buf, n, off);
	assert_int_equal(frames, 2);
	switch (which) {
	case 0: /* flip a bit of the sealed body */
		memcpy(out, buf, n);
		out[off[0] + WIRE_HDR_BYTES + 3] ^= 1;
		o = n;
		break;
	case 1: /* change the type in the header (associated data) */
		memcpy(out, buf, n);
		out[off[0] + 4] = MSG_SOURCE;
		o = n;
		break;
	case 2: /* reorder */
		memcpy(out, buf + off[1], off[2] - off[1]);
		memcpy(out + (off[2] - off[1]), buf, off[1]);
		o = n;
		break;
	case 3: /* drop the first */
		memcpy(out, buf + off[1], off[2] - off[1]);
		o = off[2] - off[1];
		break;
	case 4: /* replay the first after itself */
		memcpy(out, buf, off[1]);
		memcpy(out + off[1], buf, off[1]);
		o = 2 * off[1];
		give(&p, out, off[1]);
		wire_fill(&p.b);
		assert_int_equal(wire_next(&p.b, &t, &body), 1);
		memmove(out, out + off[1], off[1]);
		o = off[1];
		break;
	case 5: /* a length beyond the protocol maximum */
		memcpy(out, buf, n);
		put_be32(out, WIRE_MAX_BODY + 1000);
		o = n;
		break;
	}
	assert_int_equal(deliver(&p, out, o, &t, &body), -EBADMSG);
	pair_close(&p);
}

static void test_flipped_bit(void **state) { tamper_case(0); }
static void test_header_bound(void **state) { tamper_case(1); }
static void test_reorder(void **state) { tamper_case(2); }
static void test_dropped(void **state) { tamper_case(3); }
static void test_replay(void **state) { tamper_case(4); }
static void test_oversized(void **state) { tamper_case(5); }

static void test_other_session(void **state)
{
	struct pair p, q;
	uint8_t buf[4096];
	enum wire_type t;
	struct rbuf body;
	size_t n;

	/* A frame recorded from one session is refused by another session with
	 * the same key (fresh nonces, fresh keys). */
	pair_open(&p, 3, 3);
	handshake(&p);
	assert_int_equal(wire_send(&p.a, MSG_EXTENT, "recorded", 8), 0);
	n = take(&p, buf, sizeof(buf));
	pair_open(&q, 3, 3);
	handshake(&q);
	assert_int_equal(deliver(&q, buf, n, &t, &body), -EBADMSG);
	pair_close(&p);
	pair_close(&q);
}

static void test_bye_final(void **state)
{
	struct pair p;
	uint8_t buf[4096];
	enum wire_type t;
	struct rbuf body;
	size_t n;

	pair_open(&p, 4, 4);
	handshake(&p);
	assert_int_equal(wire_send(&p.a, MSG_BYE, NULL, 0), 0);
	assert_int_equal(wire_send(&p.a, MSG_EXTENT, "late", 4), 0);
	n = take(&p, buf, sizeof(buf));
	assert_int_equal(deliver(&p, buf, n, &t, &body), 1);
	assert_int_equal(t, MSG_BYE);
	/* anything after the final frame is refused */
	assert_int_equal(wire_next(&p.b, &t, &body), -EBADMSG);
	pair_close(&p);
}

static void test_wrong_key(void **state)
{
	struct pair p;
	uint8_t buf[4096];
	enum wire_type t;
	struct rbuf body;
	size_t n;
	int r;

	pair_open(&p, 5, 6);
	assert_int_equal(wire_send_hello(&p.a), 0);
	n = take(&p, buf, sizeof(buf));
	r = deliver(&p, buf, n, &t, &body);
	assert_int_equal(r, -EKEYREJECTED);
	assert_non_null(strstr(err_msg(r), "site key mismatch"));
	pair_close(&p);
}

/* An ERROR frame is u32 code, string text, nothing after.  One shorter
 * than its code field (its code was read uninitialised, so a peer's two
 * bytes could pass for "wrong key"), or with bytes after the text, is
 * malformed (-EBADMSG), before the handshake and after it; a long text is
 * an answer, cut to fit. */
static void test_error_frames(void **state)
{
	static const uint8_t shorts[][9] = {
		{ 0x00, 0x00 },                                    /* 2 bytes: no code */
		{ 0x00, 0x00, 0x00, 0x7f, 0x00 },                  /* a code, half a length */
		{ 0x00, 0x00, 0x00, 0x7f, 0x00, 0x05, 'a', 'b' },  /* text shorter than said */
		{ 0x00, 0x00, 0x00, 0x7f, 0x00, 0x01, 'a', 'x' },  /* a byte after the text */
		{ 0x00, 0x00, 0x00, 0x7f, 0x00, 0x02, 'a', 0x00 }, /* a NUL in the text */
	};
	static const size_t lens[] = { 2, 5, 8, 8, 8 };
	uint8_t buf[4096], err[2 + 4 + 2 + 600];
	struct pair p;
	enum wire_type t;
	struct rbuf body;
	size_t n;

	for (int sealed = 0; sealed < 2; sealed++) {
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			pair_open(&p, 7, 7);
			if (sealed)
				handshake(&p);
			assert_int_equal(wire_send(&p.a, MSG_ERROR, shorts[i], lens[i]), 0);
			n = take(&p, buf, sizeof(buf));
			assert_int_equal(deliver(&p, buf, n, &t, &body), -EBADMSG);
			assert_non_null(strstr(err_msg(-EBADMSG), "malformed ERROR frame"));
			pair_close(&p);
		}
		/* Well formed, with a text longer than the receiver keeps. */
		pair_open(&p, 7, 7);
		if (sealed)
			handshake(&p);
		memcpy(err, "\0\0\0\x05\x02\x58", 6); /* code 5, 600 bytes */
		memset(err + 6, 'e', 600);
		assert_int_equal(wire_send(&p.a, MSG_ERROR, err, 606), 0);
		n = take(&p, buf, sizeof(buf));
		assert_int_equal(deliver(&p, buf, n, &t, &body), -ECONNABORTED);
		assert_int_equal(strlen(p.b.peer_error), sizeof(p.b.peer_error) - 1);
		assert_int_equal(p.b.peer_error[0], 'e');
		pair_close(&p);
	}
	/* The wrong-key answer still reads as one. */
	pair_open(&p, 7, 7);
	memcpy(err, "\0\0\0\0\0\x03key", 9);
	err[3] = EKEYREJECTED;
	assert_int_equal(wire_send(&p.a, MSG_ERROR, err, 9), 0);
	n = take(&p, buf, sizeof(buf));
	assert_int_equal(deliver(&p, buf, n, &t, &body), -EKEYREJECTED);
	assert_string_equal(p.b.peer_error, "key");
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_flipped_bit),
		cmocka_unit_test(test_header_bound),
		cmocka_unit_test(test_reorder),
		cmocka_unit_test(test_dropped),
		cmocka_unit_test(test_replay),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_other_session),
		cmocka_unit_test(test_bye_final),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_error_frames),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
