/* Unit tests: the PostgreSQL messages of protocol version 2 (PGSOURCE, WAL,
 * BASEFILE) round-trip, refuse every wrong length and bound, and the
 * chained WAL digest changes with every byte and field it covers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "err.h"
#include "pgproto.h"
#include "proto.h"

static struct msg_pgsource sample(void)
{
	struct msg_pgsource m = { .idx = 1, .system_id = 7312345678901234567ULL, .base_id = 0x3000028,
				  .timeline = 2, .start_lsn = 0x3000028, .end_lsn = 0x3001000,
				  .flags = PGSRC_BASE, .base_bytes = 31415926 };
	snprintf(m.name, sizeof(m.name), "db");
	memset(m.wal_digest, 0xab, sizeof(m.wal_digest));
	memset(m.base_digest, 0xcd, sizeof(m.base_digest));
	return m;
}

static int decode_pgsource(const struct wbuf *b, struct msg_pgsource *m)
{
	struct rbuf r = rbuf_init(b->p, b->len);
	return pgproto_get_pgsource(&r, m);
}

static void test_pgsource(void **state)
{
	struct msg_pgsource m = sample(), got, keep;
	struct wbuf b;

	wbuf_init(&b, 4096);
	assert_int_equal(pgproto_put_pgsource(&b, &m), 0);
	assert_int_equal(decode_pgsource(&b, &got), 0);
	assert_memory_equal(&got, &m, sizeof(m));
	/* Every truncation and one byte too many are refused, output untouched. */
	for (size_t n = 0; n < b.len; n++) {
		struct rbuf r = rbuf_init(b.p, n);
		memset(&keep, 0x5a, sizeof(keep));
		got = keep;
		assert_int_equal(pgproto_get_pgsource(&r, &got), -EBADMSG);
		assert_memory_equal(&got, &keep, sizeof(keep));
	}
	wbuf_put_u8(&b, 0);
	assert_int_equal(decode_pgsource(&b, &got), -EBADMSG);
	wbuf_free(&b);
	/* Bounds a peer controls. */
	{
		struct msg_pgsource bad[8];
		for (int i = 0; i < 8; i++)
			bad[i] = sample();
		bad[0].base_id = 0;
		bad[1].timeline = 0;
		bad[2].start_lsn = bad[2].end_lsn + 1;
		bad[3].end_lsn = UINT64_MAX - 1;
		bad[4].flags = 4;
		bad[5].flags = 0; /* no base carried, but its size and digest given */
		bad[6].idx = PROTO_MAX_SOURCES;
		snprintf(bad[7].name, sizeof(bad[7].name), "../x");
		for (int i = 0; i < 8; i++) {
			wbuf_init(&b, 4096);
			assert_int_equal(pgproto_put_pgsource(&b, &bad[i]), 0);
			assert_int_equal(decode_pgsource(&b, &got), -EBADMSG);
			wbuf_free(&b);
		}
	}
}

static void test_wal_and_basefile(void **state)
{
	uint8_t data[300];
	struct msg_wal w = { .src = 1, .lsn = 0x3000028, .raw_len = sizeof(data), .enc = EXT_RAW }, gw;
	struct msg_basefile f = { .src = 1, .offset = 1 << 20, .raw_len = sizeof(data), .enc = EXT_RAW }, gf;
	struct wbuf b;
	struct rbuf r;

	memset(data, 7, sizeof(data));
	snprintf(f.file, sizeof(f.file), "base.tar");
	wbuf_init(&b, 4096);
	assert_int_equal(pgproto_put_wal_hdr(&b, &w), 0);
	wbuf_put_bytes(&b, data, sizeof(data));
	r = rbuf_init(b.p, b.len);
	assert_int_equal(pgproto_get_wal(&r, &gw), 0);
	assert_int_equal(gw.lsn, w.lsn);
	assert_int_equal(gw.data_len, sizeof(data));
	assert_memory_equal(gw.data, data, sizeof(data));
	/* raw data must be exactly raw_len */
	r = rbuf_init(b.p, b.len - 1);
	assert_int_equal(pgproto_get_wal(&r, &gw), -EBADMSG);
	wbuf_put_u8(&b, 0);
	r = rbuf_init(b.p, b.len);
	assert_int_equal(pgproto_get_wal(&r, &gw), -EBADMSG);
	wbuf_free(&b);
	/* zero length, too long, an LSN that would wrap, an unknown encoding */
	{
		struct msg_wal bad[4] = { w, w, w, w };
		bad[0].raw_len = 0;
		bad[1].raw_len = PGPROTO_MAX_WAL + 1;
		bad[2].lsn = UINT64_MAX - 10;
		bad[3].enc = EXT_DELTA;
		for (int i = 0; i < 4; i++) {
			wbuf_init(&b, 4096);
			pgproto_put_wal_hdr(&b, &bad[i]);
			wbuf_put_bytes(&b, data, sizeof(data));
			r = rbuf_init(b.p, b.len);
			assert_int_equal(pgproto_get_wal(&r, &gw), -EBADMSG);
			wbuf_free(&b);
		}
	}
	wbuf_init(&b, 4096);
	assert_int_equal(pgproto_put_basefile_hdr(&b, &f), 0);
	wbuf_put_bytes(&b, data, sizeof(data));
	r = rbuf_init(b.p, b.len);
	assert_int_equal(pgproto_get_basefile(&r, &gf), 0);
	assert_string_equal(gf.file, "base.tar");
	assert_int_equal(gf.offset, f.offset);
	wbuf_free(&b);
	/* an empty file, then names and offsets a peer must not choose */
	f.raw_len = 0;
	wbuf_init(&b, 4096);
	pgproto_put_basefile_hdr(&b, &f);
	r = rbuf_init(b.p, b.len);
	assert_int_equal(pgproto_get_basefile(&r, &gf), 0);
	assert_int_equal(gf.data_len, 0);
	wbuf_free(&b);
	{
		const char *names[] = { "../etc", ".hidden", "a/b", "" };
		for (int i = 0; i < 4; i++) {
			struct msg_basefile x = f;
			snprintf(x.file, sizeof(x.file), "%s", names[i]);
			wbuf_init(&b, 4096);
			pgproto_put_basefile_hdr(&b, &x);
			r = rbuf_init(b.p, b.len);
			assert_int_equal(pgproto_get_basefile(&r, &gf), -EBADMSG);
			wbuf_free(&b);
		}
		f.raw_len = sizeof(data);
		f.offset = PGPROTO_MAX_FILE - 10;
		wbuf_init(&b, 4096);
		pgproto_put_basefile_hdr(&b, &f);
		wbuf_put_bytes(&b, data, sizeof(data));
		r = rbuf_init(b.p, b.len);
		assert_int_equal(pgproto_get_basefile(&r, &gf), -EBADMSG);
		wbuf_free(&b);
	}
}

static void chain(const uint8_t key[DIGEST_BYTES], const uint8_t prev[DIGEST_BYTES], uint32_t tli,
		  uint64_t a, uint64_t z, const uint8_t *p, size_t n, uint8_t out[DIGEST_BYTES])
{
	struct pgdigest d;

	pgdigest_begin(&d, key, prev, tli, a, z);
	pgdigest_update(&d, p, n / 2);
	pgdigest_update(&d, p + n / 2, n - n / 2);
	pgdigest_final(&d, out);
}

static void test_digest(void **state)
{
	struct site_key k1, k2;
	uint8_t key[DIGEST_BYTES], key2[DIGEST_BYTES], keyg[DIGEST_BYTES], base[DIGEST_BYTES], b0[DIGEST_BYTES];
	uint8_t d[DIGEST_BYTES], e[DIGEST_BYTES], wal[1000];

	memset(k1.k, 1, sizeof(k1.k));
	memset(k2.k, 2, sizeof(k2.k));
	for (size_t i = 0; i < sizeof(wal); i++)
		wal[i] = (uint8_t)(i * 31);
	pgdigest_wal_key(&k1, "app", "db", key);
	pgdigest_wal_key(&k2, "app", "db", key2);
	pgdigest_wal_key(&k1, "ap", "pdb", keyg); /* names are delimited */
	assert_memory_not_equal(key, key2, DIGEST_BYTES);
	assert_memory_not_equal(key, keyg, DIGEST_BYTES);
	memset(base, 9, sizeof(base));
	pgdigest_base(key, 0x3000028, base, b0);
	chain(key, b0, 1, 100, 1100, wal, sizeof(wal), d);
	chain(key, b0, 1, 100, 1100, wal, sizeof(wal), e);
	assert_memory_equal(d, e, DIGEST_BYTES);        /* deterministic, whatever the update sizes */
	wal[500] ^= 1;
	chain(key, b0, 1, 100, 1100, wal, sizeof(wal), e);
	assert_memory_not_equal(d, e, DIGEST_BYTES);    /* a flipped WAL bit */
	wal[500] ^= 1;
	chain(key, b0, 2, 100, 1100, wal, sizeof(wal), e);
	assert_memory_not_equal(d, e, DIGEST_BYTES);    /* another timeline */
	chain(key, b0, 1, 101, 1101, wal, sizeof(wal), e);
	assert_memory_not_equal(d, e, DIGEST_BYTES);    /* the same bytes elsewhere */
	chain(key2, b0, 1, 100, 1100, wal, sizeof(wal), e);
	assert_memory_not_equal(d, e, DIGEST_BYTES);    /* another site key */
	pgdigest_base(key, 0x3000029, base, e);
	assert_memory_not_equal(b0, e, DIGEST_BYTES);   /* another base */
	{
		struct pgdigest f;
		uint8_t x[DIGEST_BYTES], y[DIGEST_BYTES];
		pgdigest_files_begin(&f);
		pgdigest_file(&f, "base.tar", 3);
		pgdigest_update(&f, "abc", 3);
		pgdigest_file(&f, "backup_manifest", 0);
		pgdigest_final(&f, x);
		pgdigest_files_begin(&f);
		pgdigest_file(&f, "base.ta", 4);
		pgdigest_update(&f, "rabc", 4);
		pgdigest_file(&f, "backup_manifest", 0);
		pgdigest_final(&f, y);
		assert_memory_not_equal(x, y, DIGEST_BYTES); /* file boundaries count */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pgsource),
		cmocka_unit_test(test_wal_and_basefile),
		cmocka_unit_test(test_digest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
