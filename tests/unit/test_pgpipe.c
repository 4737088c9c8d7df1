/* Unit tests: the pgstream pipe (every frame round-trips; a body one byte
 * longer or shorter, a lying or oversized length, reserved bits, a frame
 * from the wrong side, out-of-bounds values are refused with the output
 * untouched), the replication protocol's CopyData decoders (exact
 * lengths), WAL positions and names, and what a libpq error means. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "pgconn.h"
#include "pgmsg.h"
#include "pgpipe.h"
#include "pgwal.h"

/* Decode the single frame in B for SIDE; asserts it is whole. */
static int decode_one(const struct wbuf *b, enum pgp_side side, struct pgp_msg *m)
{
	size_t off = 0;
	int r = pgpipe_next(b, &off, side, m);

	if (r == 1)
		assert_int_equal(off, b->len);
	return r;
}

static void test_roundtrip(void **state)
{
	struct pgp_hello h = { .version = PGP_VERSION, .server_version = 150018, .system_id = 7312345678901234567ULL,
			       .timeline = 3, .xlogpos = 0x1A2B3C4D5EULL, .segsize = 16u << 20,
			       .slot = PGP_SLOT_CREATED, .slot_lsn = 0x1000000, .slot_tli = 3 };
	uint8_t wal[1000];
	struct pgp_msg m;
	struct wbuf b;

	for (size_t i = 0; i < sizeof(wal); i++)
		wal[i] = (uint8_t)i;
	wbuf_init(&b, 1u << 20);
	assert_int_equal(pgpipe_put_hello(&b, &h), 0);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), 1);
	assert_int_equal(m.type, PGP_HELLO);
	assert_int_equal(m.u.hello.system_id, h.system_id);
	assert_int_equal(m.u.hello.server_version, 150018);
	assert_int_equal(m.u.hello.timeline, 3);
	assert_int_equal(m.u.hello.xlogpos, h.xlogpos);
	assert_int_equal(m.u.hello.segsize, h.segsize);
	assert_int_equal(m.u.hello.slot, PGP_SLOT_CREATED);
	assert_int_equal(m.u.hello.slot_lsn, h.slot_lsn);
	assert_int_equal(m.u.hello.slot_tli, 3);

	wbuf_reset(&b);
	assert_int_equal(pgpipe_put_wal(&b, 2, 0x3000000, wal, sizeof(wal)), 0);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), 1);
	assert_int_equal(m.u.wal.tli, 2);
	assert_int_equal(m.u.wal.lsn, 0x3000000);
	assert_int_equal(m.u.wal.len, sizeof(wal));
	assert_memory_equal(m.u.wal.data, wal, sizeof(wal));

	wbuf_reset(&b);
	assert_int_equal(pgpipe_put_timeline(&b, 1, 0x5000100, 2, 0x50000A0), 0);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), 1);
	assert_int_equal(m.u.timeline.next_tli, 2);
	assert_int_equal(m.u.timeline.next_start, 0x50000A0);

	wbuf_reset(&b);
	assert_int_equal(pgpipe_put_archive(&b, "base.tar", ""), 0);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), 1);
	assert_string_equal(m.u.archive.name, "base.tar");
	assert_string_equal(m.u.archive.spclocation, "");

	wbuf_reset(&b);
	assert_int_equal(pgpipe_put_error(&b, PGE_SLOT_ACTIVE, "ERROR:  slot \"s\" is active\nHINT:  stop it\n"), 0);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), 1);
	assert_int_equal(m.u.error.code, PGE_SLOT_ACTIVE);
	assert_string_equal(m.u.error.text, "ERROR:  slot \"s\" is active; HINT:  stop it");

	wbuf_reset(&b);
	assert_int_equal(pgpipe_put_pos(&b, PGP_START, 0, 0), 0);
	assert_int_equal(decode_one(&b, PGP_CHILD, &m), 1);
	assert_int_equal(m.type, PGP_START);
	/* (0, T): from the slot, on timeline T */
	wbuf_reset(&b);
	assert_int_equal(pgpipe_put_pos(&b, PGP_START, 2, 0), 0);
	assert_int_equal(decode_one(&b, PGP_CHILD, &m), 1);
	assert_int_equal(m.u.pos.tli, 2);
	assert_int_equal(m.u.pos.lsn, 0);
	wbuf_reset(&b);
	assert_int_equal(pgpipe_put_base_backup(&b, PGP_BBF_FAST, "nightly 2026-12-01"), 0);
	assert_int_equal(decode_one(&b, PGP_CHILD, &m), 1);
	assert_string_equal(m.u.base_backup.label, "nightly 2026-12-01");
	assert_int_equal(m.u.base_backup.flags, PGP_BBF_FAST);
	wbuf_free(&b);
}

/* Every fixed-size body: one byte more or one less is refused. */
static void test_exact_lengths(void **state)
{
	struct pgp_hello h = { .version = PGP_VERSION, .timeline = 1, .segsize = 16u << 20 };
	struct wbuf frames[10];
	enum pgp_side sides[10];
	int n = 0;

	for (int i = 0; i < 10; i++)
		wbuf_init(&frames[i], 4096);
	sides[n] = PGP_OWNER, pgpipe_put_hello(&frames[n++], &h);
	sides[n] = PGP_OWNER, pgpipe_put_pos(&frames[n++], PGP_STREAMING, 1, 0x1000000);
	sides[n] = PGP_OWNER, pgpipe_put_keepalive(&frames[n++], 5, 6);
	sides[n] = PGP_OWNER, pgpipe_put_timeline(&frames[n++], 1, 9, 2, 8);
	sides[n] = PGP_OWNER, pgpipe_put_bb_start(&frames[n++], 9, 1, 1);
	sides[n] = PGP_OWNER, pgpipe_put_progress(&frames[n++], 77);
	sides[n] = PGP_OWNER, pgpipe_put_manifest(&frames[n++]);
	sides[n] = PGP_OWNER, pgpipe_put_bb_end(&frames[n++], 9, 1);
	sides[n] = PGP_CHILD, pgpipe_put_pos(&frames[n++], PGP_START, 1, 0x1000000);
	sides[n] = PGP_CHILD, pgpipe_put_flushed(&frames[n++], 0x1000000);
	for (int i = 0; i < n; i++) {
		struct wbuf *f = &frames[i];
		struct pgp_msg m, before;
		uint32_t len = get_be32(f->p);
		size_t off = 0;

		assert_int_equal(decode_one(f, sides[i], &m), 1);
		/* one byte more, announced */
		wbuf_put_u8(f, 0);
		put_be32(f->p, len + 1);
		memset(&m, 0x5a, sizeof(m));
		before = m;
		assert_int_equal(pgpipe_next(f, &off, sides[i], &m), -EBADMSG);
		assert_int_equal(off, 0);
		assert_memory_equal(&m, &before, sizeof(m)); /* untouched */
		/* one byte less, announced */
		if (len) {
			f->len -= 2;
			put_be32(f->p, len - 1);
			assert_int_equal(pgpipe_next(f, &off, sides[i], &m), -EBADMSG);
		}
		wbuf_free(f);
	}
}

static void test_tampered_headers(void **state)
{
	struct pgp_msg m;
	struct wbuf b;
	size_t off = 0;

	wbuf_init(&b, 1u << 20);
	pgpipe_put_flushed(&b, 0x2000000);
	/* A length beyond what has arrived: not a frame yet (and no overread). */
	put_be32(b.p, 9);
	assert_int_equal(pgpipe_next(&b, &off, PGP_CHILD, &m), 0);
	/* A length over the maximum: refused before waiting for it. */
	put_be32(b.p, PGP_MAX_BODY + 1);
	assert_int_equal(pgpipe_next(&b, &off, PGP_CHILD, &m), -EBADMSG);
	put_be32(b.p, 0xffffffff);
	assert_int_equal(pgpipe_next(&b, &off, PGP_CHILD, &m), -EBADMSG);
	put_be32(b.p, 8);
	b.p[5] = 1; /* flags */
	assert_int_equal(pgpipe_next(&b, &off, PGP_CHILD, &m), -EBADMSG);
	b.p[5] = 0;
	b.p[7] = 1; /* reserved */
	assert_int_equal(pgpipe_next(&b, &off, PGP_CHILD, &m), -EBADMSG);
	b.p[7] = 0;
	/* The child does not send FLUSHED; the owner does not send WAL. */
	assert_int_equal(pgpipe_next(&b, &off, PGP_OWNER, &m), -EBADMSG);
	b.p[4] = 99;
	assert_int_equal(pgpipe_next(&b, &off, PGP_CHILD, &m), -EBADMSG);
	b.p[4] = 40; /* below the owner's types: a child type no one defined */
	assert_int_equal(pgpipe_next(&b, &off, PGP_OWNER, &m), -EBADMSG);
	assert_int_equal(off, 0);
	/* A header cut short. */
	b.len = 5;
	assert_int_equal(pgpipe_next(&b, &off, PGP_CHILD, &m), 0);
	/* A WAL frame whose data would end past 2^64. */
	wbuf_reset(&b);
	assert_int_equal(pgpipe_put_wal(&b, 1, UINT64_MAX - 1, "abc", 3), 0);
	assert_int_equal(pgpipe_next(&b, &off, PGP_OWNER, &m), -EBADMSG);
	wbuf_free(&b);
}

static void test_bounds(void **state)
{
	struct pgp_hello h = { .version = PGP_VERSION, .timeline = 1, .segsize = 16u << 20 };
	struct pgp_msg m;
	struct wbuf b;
	uint8_t body[64];

	wbuf_init(&b, 1u << 20);
	h.version = PGP_VERSION + 1;
	pgpipe_put_hello(&b, &h);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), -EBADMSG);
	h.version = PGP_VERSION;
	h.segsize = 3u << 20; /* not a power of two */
	wbuf_reset(&b);
	pgpipe_put_hello(&b, &h);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), -EBADMSG);
	h.segsize = 16u << 20;
	h.slot_lsn = 0x1000000; /* an LSN without its timeline */
	wbuf_reset(&b);
	pgpipe_put_hello(&b, &h);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), -EBADMSG);
	/* START with an LSN but no timeline */
	wbuf_reset(&b);
	pgpipe_put_pos(&b, PGP_START, 0, 0x1000000);
	assert_int_equal(decode_one(&b, PGP_CHILD, &m), -EBADMSG);
	/* a timeline that does not move on */
	wbuf_reset(&b);
	pgpipe_put_timeline(&b, 2, 9, 2, 8);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), -EBADMSG);
	/* timeline 1 has no history */
	wbuf_reset(&b);
	pgpipe_put_history(&b, 1, "x", 1);
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), -EBADMSG);
	/* archive names that would leave the directory */
	const char *names[] = { "../base.tar", ".hidden", "a/b.tar", "a\\b", "" };
	for (size_t i = 0; i < 5; i++) {
		wbuf_reset(&b);
		assert_int_equal(pgpipe_put_archive(&b, names[i], ""), 0);
		assert_int_equal(decode_one(&b, PGP_OWNER, &m), -EBADMSG);
	}
	wbuf_reset(&b);
	pgpipe_put_archive(&b, "16385.tar", "relative/path");
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), -EBADMSG);
	/* an error code no one defined; a control character in its text */
	wbuf_reset(&b);
	pgpipe_put_error(&b, PGE_MAX + 1, "x");
	assert_int_equal(decode_one(&b, PGP_OWNER, &m), -EBADMSG);
	body[0] = 0, body[1] = 0, body[2] = 0, body[3] = PGE_AUTH, body[4] = 0, body[5] = 3;
	memcpy(body + 6, "a\x1b[", 3);
	assert_int_equal(pgpipe_decode(PGP_ERROR, body, 9, &m), -EBADMSG);
	/* labels that would need quoting are refused both ways */
	assert_int_equal(pgpipe_put_base_backup(&b, 0, "x', WAL true, LABEL 'y"), -EINVAL);
	body[0] = 0, body[1] = 0, body[2] = 2;
	memcpy(body + 3, "a'", 2);
	assert_int_equal(pgpipe_decode(PGP_BASE_BACKUP, body, 5, &m), -EBADMSG);
	/* empty data frames */
	assert_int_equal(pgpipe_put_wal(&b, 1, 0, "", 0), -EINVAL);
	assert_int_equal(pgpipe_decode(PGP_BB_DATA, body, 0, &m), -EBADMSG);
	wbuf_free(&b);
}

static void test_bb_order(void **state)
{
	struct pgp_bb_order o = { 0 };

	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_DATA), -EPROTO);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_START), 0);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_DATA), -EPROTO);   /* data before an archive */
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_MANIFEST), -EPROTO);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_ARCHIVE), 0);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_DATA), 0);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_PROGRESS), 0);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_ARCHIVE), 0);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_MANIFEST), 0);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_ARCHIVE), -EPROTO); /* archives precede the manifest */
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_DATA), 0);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_END), 0);
	assert_int_equal(pgpipe_bb_order(&o, PGP_BB_DATA), -EPROTO);
	assert_int_equal(o.archives, 2);
}

static void test_copydata(void **state)
{
	uint8_t k[19] = { 'k' }, w[30] = { 'w' }, status[PGMSG_STATUS_BYTES];
	struct pgmsg_stream s, before;
	struct pgmsg_backup bk;

	put_be64(k + 1, 0x1234);
	put_be64(k + 9, 42);
	k[17] = 1;
	assert_int_equal(pgmsg_get_stream(k, 18, &s), 0);
	assert_int_equal(s.kind, 'k');
	assert_int_equal(s.wal_end, 0x1234);
	assert_true(s.reply);
	memset(&s, 7, sizeof(s));
	before = s;
	assert_int_equal(pgmsg_get_stream(k, 17, &s), -EBADMSG);
	assert_int_equal(pgmsg_get_stream(k, 19, &s), -EBADMSG);
	assert_memory_equal(&s, &before, sizeof(s));
	k[17] = 2;
	assert_int_equal(pgmsg_get_stream(k, 18, &s), -EBADMSG);
	put_be64(w + 1, 0x5000000);
	memcpy(w + 25, "hello", 5);
	assert_int_equal(pgmsg_get_stream(w, 30, &s), 0);
	assert_int_equal(s.start, 0x5000000);
	assert_int_equal(s.len, 5);
	assert_memory_equal(s.data, "hello", 5);
	assert_int_equal(pgmsg_get_stream(w, 24, &s), -EBADMSG); /* header cut */
	put_be64(w + 1, UINT64_MAX - 2);
	assert_int_equal(pgmsg_get_stream(w, 30, &s), -EBADMSG); /* ends past 2^64 */
	w[0] = 'x';
	assert_int_equal(pgmsg_get_stream(w, 30, &s), -EBADMSG);
	assert_int_equal(pgmsg_get_stream(w, 0, &s), -EBADMSG);

	pgmsg_put_status(status, 1, 2, 0, 9, false);
	assert_int_equal(status[0], 'r');
	assert_int_equal(get_be64(status + 9), 2);
	assert_int_equal(status[33], 0);

	assert_int_equal(pgmsg_get_backup("nbase.tar\0\0", 11, &bk), 0);
	assert_string_equal(bk.archive, "base.tar");
	assert_int_equal(pgmsg_get_backup("nbase.tar\0\0x", 12, &bk), -EBADMSG);  /* trailing byte */
	assert_int_equal(pgmsg_get_backup("nbase.tar\0", 10, &bk), -EBADMSG);     /* location cut */
	assert_int_equal(pgmsg_get_backup("n..\0\0", 5, &bk), -EBADMSG);
	assert_int_equal(pgmsg_get_backup("n1.tar\0rel\0", 11, &bk), -EBADMSG);
	assert_int_equal(pgmsg_get_backup("p\0\0\0\0\0\0\0\5", 9, &bk), 0);
	assert_int_equal(bk.done, 5);
	assert_int_equal(pgmsg_get_backup("p\0\0\0\0\0\0\5", 8, &bk), -EBADMSG);
	assert_int_equal(pgmsg_get_backup("m", 1, &bk), 0);
	assert_int_equal(pgmsg_get_backup("mx", 2, &bk), -EBADMSG);
	assert_int_equal(pgmsg_get_backup("dabc", 4, &bk), 0);
	assert_int_equal(bk.len, 3);
}

static void test_wal_names(void **state)
{
	char buf[PGWAL_LSN_LEN], name[PGWAL_SEG_NAME_LEN];
	uint64_t lsn = 99, segno;
	uint32_t tli;

	assert_int_equal(pgwal_lsn_parse("16/B374D848", &lsn), 0);
	assert_int_equal(lsn, 0x16B374D848ULL);
	assert_string_equal(pgwal_lsn_format(lsn, buf), "16/B374D848");
	const char *bad[] = { "", "1", "1/", "/1", "123456789/0", "g/0", "1/2/3", "0x1/2", " 1/2", "1/2 " };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		lsn = 99;
		assert_int_equal(pgwal_lsn_parse(bad[i], &lsn), -EINVAL);
		assert_int_equal(lsn, 99);
	}
	pgwal_seg_name(name, 1, 1, 16u << 20);
	assert_string_equal(name, "000000010000000000000001");
	pgwal_seg_name(name, 2, 256, 16u << 20); /* 256 segments of 16 MiB: the next 4 GiB */
	assert_string_equal(name, "000000020000000100000000");
	assert_int_equal(pgwal_seg_parse(name, 16u << 20, &tli, &segno), 0);
	assert_int_equal(tli, 2);
	assert_int_equal(segno, 256);
	assert_int_equal(pgwal_seg_parse("000000010000000000000100", 16u << 20, &tli, &segno), -EINVAL);
	assert_int_equal(pgwal_seg_parse("000000000000000000000001", 16u << 20, &tli, &segno), -EINVAL);
	assert_int_equal(pgwal_seg_parse("00000001000000000000000a", 16u << 20, &tli, &segno), -EINVAL);
	assert_int_equal(pgwal_seg_parse("00000001000000000000000A.partial", 16u << 20, &tli, &segno), -EINVAL);
	pgwal_history_name(name, 10);
	assert_string_equal(name, "0000000A.history");
	assert_true(pgwal_slot_name_ok("bascule_db1"));
	assert_false(pgwal_slot_name_ok("Bascule"));
	assert_false(pgwal_slot_name_ok("a-b"));
	assert_false(pgwal_slot_name_ok(""));
	assert_true(pgwal_segsize_ok(1u << 20));
	assert_false(pgwal_segsize_ok(1u << 19));
}

static void test_libpq_errors(void **state)
{
	struct pgconn_needs n;

	assert_int_equal(pgconn_classify_message("FATAL:  password authentication failed for user \"x\""), PGE_AUTH);
	assert_int_equal(pgconn_classify_message("FATAL:  no pg_hba.conf entry for replication connection"), PGE_HBA);
	assert_int_equal(pgconn_classify_message("FATAL:  must be superuser or replication role to start walsender"),
			 PGE_PRIVILEGE);
	assert_int_equal(pgconn_classify_message("FATAL:  number of requested standby connections exceeds "
						 "max_wal_senders (currently 0)"), PGE_WAL_LEVEL);
	assert_int_equal(pgconn_classify_message("FATAL:  number of requested standby connections exceeds "
						 "max_wal_senders (currently 10)"), PGE_SENDERS);
	assert_int_equal(pgconn_classify_message("connection to server on socket \"/x\" failed: No such file or "
						 "directory"), PGE_UNREACHABLE);
	assert_int_equal(pgconn_classify_message("ERROR:  requested WAL segment 000000010000000000000003 has "
						 "already been removed"), PGE_WAL_LOST);
	assert_int_equal(pgconn_classify_message("something else"), PGE_SERVER);

	assert_int_equal(pgconn_inspect("hst=x", "/root", &n), -EINVAL);
	assert_int_equal(pgconn_inspect("host=/run/pg,db.example port=5433,5434 passfile=/etc/b/pgpass "
					"sslrootcert=/etc/b/ca.pem", "/home/b", &n), 0);
	assert_int_equal(n.n_dirs, 2); /* the socket directory and ~/.postgresql */
	assert_string_equal(n.dirs[0], "/run/pg");
	assert_true(n.tcp);
	assert_int_equal(n.n_ports, 2);
	assert_int_equal(n.ports[1], 5434);
	assert_string_equal(n.files[0], "/etc/b/pgpass");
	assert_string_equal(n.files[1], "/etc/b/ca.pem");
	pgconn_needs_free(&n);
	assert_int_equal(pgconn_inspect("postgresql://rep@/postgres?host=/var/run/postgresql", NULL, &n), 0);
	assert_false(n.tcp);
	assert_string_equal(n.dirs[0], "/var/run/postgresql");
	pgconn_needs_free(&n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_exact_lengths),
		cmocka_unit_test(test_tampered_headers),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_bb_order),
		cmocka_unit_test(test_copydata),
		cmocka_unit_test(test_wal_names),
		cmocka_unit_test(test_libpq_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
