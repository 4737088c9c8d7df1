/* Unit tests: PostgreSQL sources in the vault (lib/vpg.c): the manifest's
 * entries round-trip, every truncation and every out-of-bounds field is
 * refused, a manifest carries them sealed, and a sealed piece opens only as
 * the piece it was sealed as. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "vault.h"
#include "vpg.h"

static struct vkeys K, K2;

static int setup(void **state)
{
	struct vault_key a, b;
	(void)state;
	randombytes_buf(a.master, sizeof(a.master));
	randombytes_buf(b.master, sizeof(b.master));
	vault_keys(&a, &K);
	vault_keys(&b, &K2);
	return 0;
}

/* A source: one base of two files (3 pieces), WAL of 3 pieces ending at
 * END, beginning at the base's segment start. */
static void sample(struct vman_pg *p)
{
	const uint64_t seg = 16u << 20, base = 3 * seg + 40, end = 4 * seg + 100;
	struct vpg_base *B;

	memset(p, 0, sizeof(*p));
	strcpy(p->name, "db");
	p->system_id = 0x1234;
	p->tli = 1;
	p->base_id = base;
	p->end_lsn = end;
	memset(p->chain, 9, 32);
	p->n_bases = 1;
	p->bases = calloc(1, sizeof(*B));
	B = &p->bases[0];
	B->id = base;
	B->tli = 1;
	B->epoch = 7;
	B->arrived = 1700000000000000ULL;
	B->n_files = 2;
	B->files = calloc(2, sizeof(*B->files));
	strcpy(B->files[0].name, "base.tar");
	B->files[0].size = VPG_OBJ_RAW + 5;
	B->files[0].n = 2;
	B->files[0].p = calloc(2, sizeof(struct vpg_piece));
	B->files[0].p[0] = (struct vpg_piece){ .off = 0, .len = VPG_OBJ_RAW, .ref = { .size = 100 } };
	B->files[0].p[1] = (struct vpg_piece){ .off = VPG_OBJ_RAW, .len = 5, .ref = { .size = 60 } };
	strcpy(B->files[1].name, "backup_manifest");
	B->files[1].size = 7;
	B->files[1].n = 1;
	B->files[1].p = calloc(1, sizeof(struct vpg_piece));
	B->files[1].p[0] = (struct vpg_piece){ .off = 0, .len = 7, .ref = { .size = 60 } };
	B->bytes = VPG_OBJ_RAW + 12;
	p->n_wal = 3;
	p->wal = calloc(3, sizeof(*p->wal));
	p->wal[0] = (struct vpg_wal){ .start = 3 * seg, .len = VPG_OBJ_RAW, .ref = { .size = 1000 } };
	p->wal[1] = (struct vpg_wal){ .start = 3 * seg + VPG_OBJ_RAW, .len = VPG_OBJ_RAW, .ref = { .size = 1000 } };
	p->wal[2] = (struct vpg_wal){ .start = 4 * seg, .len = (uint32_t)(end - 4 * seg), .ref = { .size = 1000 } };
	for (uint32_t i = 0; i < 3; i++)
		randombytes_buf(p->wal[i].ref.obj, VAULT_NAME);
}

static void test_roundtrip(void **state)
{
	struct vman_pg p, *q = NULL;
	uint32_t n = 0;
	struct wbuf w;
	struct rbuf b;
	(void)state;

	sample(&p);
	wbuf_init(&w, 1 << 20);
	assert_int_equal(vpg_encode(&w, &p, 1), 0);
	b = rbuf_init(w.p, w.len);
	assert_int_equal(vpg_decode(&b, &q, &n), 0);
	assert_int_equal(rbuf_left(&b), 0);
	assert_int_equal(n, 1);
	assert_string_equal(q->name, "db");
	assert_int_equal(q->end_lsn, p.end_lsn);
	assert_int_equal(q->n_wal, 3);
	for (uint32_t i = 0; i < 3; i++) {
		/* starts are derived from the end: contiguous by construction */
		assert_int_equal(q->wal[i].start, p.wal[i].start);
		assert_memory_equal(q->wal[i].ref.obj, p.wal[i].ref.obj, VAULT_NAME);
	}
	assert_int_equal(q->bases[0].files[0].p[1].off, VPG_OBJ_RAW);
	assert_int_equal(q->bases[0].arrived, p.bases[0].arrived);
	/* choosing: a base that arrived by the time, or none */
	assert_ptr_equal(vpg_base_for(q, p.bases[0].arrived), &q->bases[0]);
	assert_null(vpg_base_for(q, p.bases[0].arrived - 1));
	assert_int_equal(vpg_wal_find(q, vpg_seg_start(q->bases[0].id)), 0);
	assert_int_equal(vpg_wal_find(q, q->end_lsn - 1), 2);
	assert_int_equal(vpg_wal_find(q, q->end_lsn), -ENOENT);
	/* a deep copy is independent */
	{
		struct vman_pg c = { 0 };
		assert_int_equal(vpg_copy(&c, q), 0);
		vpg_free(q, n);
		assert_int_equal(c.bases[0].files[1].size, 7);
		vpg_clear(&c);
	}
	/* every truncation is refused, output untouched */
	for (size_t len = 0; len < w.len; len++) {
		struct vman_pg *x = (struct vman_pg *)0x1;
		b = rbuf_init(w.p, len);
		assert_int_equal(vpg_decode(&b, &x, &n), -EBADMSG);
		assert_ptr_equal(x, (struct vman_pg *)0x1);
	}
	wbuf_free(&w);
	vpg_clear(&p);
}

/* An output buffer too small for the encoding fails it, whatever field it
 * runs out at: a 32-byte put refused while the buffer is still below its
 * maximum must not let the smaller puts after it go on (a short, wrong
 * entry reported as written). */
static void test_encode_short(void **state)
{
	struct vman_pg p;
	struct wbuf w;
	size_t full;
	(void)state;

	sample(&p);
	wbuf_init(&w, 1 << 20);
	assert_int_equal(vpg_encode(&w, &p, 1), 0);
	full = w.len;
	wbuf_free(&w);
	for (size_t max = 1; max <= full; max++) {
		wbuf_init(&w, max);
		assert_int_equal(vpg_encode(&w, &p, 1), -EFBIG);
		wbuf_free(&w);
	}
	vpg_clear(&p);
}

/* Encode P after MUTATE changed it: the decoder must refuse it. */
static void refused(void (*mutate)(struct vman_pg *))
{
	struct vman_pg p, *q = NULL;
	uint32_t n;
	struct wbuf w;
	struct rbuf b;

	sample(&p);
	mutate(&p);
	wbuf_init(&w, 1 << 20);
	vpg_encode(&w, &p, 1);
	b = rbuf_init(w.p, w.len);
	assert_int_equal(vpg_decode(&b, &q, &n), -EBADMSG);
	wbuf_free(&w);
	p.n_bases = 1; /* what sample() allocated */
	vpg_clear(&p);
}

static void m_name(struct vman_pg *p) { strcpy(p->bases[0].files[0].name, "../etc"); }
static void m_dup(struct vman_pg *p) { strcpy(p->bases[0].files[1].name, "base.tar"); }
static void m_bytes(struct vman_pg *p) { p->bases[0].bytes++; }
static void m_piece(struct vman_pg *p) { p->bases[0].files[0].p[1].len = 6; }
static void m_walgap(struct vman_pg *p) { p->wal[0].len -= 1; } /* then the WAL begins after the base's segment */
static void m_bigwal(struct vman_pg *p) { p->wal[2].len = VPG_OBJ_RAW + 1; }
static void m_tli(struct vman_pg *p) { p->bases[0].tli = 2; }
static void m_nobase(struct vman_pg *p) { p->n_bases = 0; }
static void m_size0(struct vman_pg *p) { p->wal[1].ref.size = 0; }
static void m_tli0(struct vman_pg *p) { p->tli = 0; }

/* A base of timeline 2 carries 00000002.history, outside its bytes (the
 * vault writer counts it so): it decodes, and counted in would not. */
static void with_history(struct vman_pg *p)
{
	struct vpg_base *B = &p->bases[0];
	struct vpg_file *F;

	p->tli = B->tli = 2;
	B->files = realloc(B->files, 3 * sizeof(*B->files));
	F = &B->files[B->n_files++];
	memset(F, 0, sizeof(*F));
	strcpy(F->name, "00000002.history");
	F->size = 42;
	F->n = 1;
	F->p = calloc(1, sizeof(struct vpg_piece));
	F->p[0] = (struct vpg_piece){ .off = 0, .len = 42, .ref = { .size = 60 } };
}
static void m_histbytes(struct vman_pg *p) { with_history(p); p->bases[0].bytes += 42; }

static void test_history(void **state)
{
	struct vman_pg p, *q = NULL;
	uint32_t n = 0;
	struct wbuf w;
	struct rbuf b;
	(void)state;

	sample(&p);
	with_history(&p);
	wbuf_init(&w, 1 << 20);
	assert_int_equal(vpg_encode(&w, &p, 1), 0);
	b = rbuf_init(w.p, w.len);
	assert_int_equal(vpg_decode(&b, &q, &n), 0);
	assert_int_equal(q->bases[0].n_files, 3);
	assert_string_equal(q->bases[0].files[2].name, "00000002.history");
	assert_int_equal(q->bases[0].bytes, VPG_OBJ_RAW + 12);
	vpg_free(q, n);
	wbuf_free(&w);
	vpg_clear(&p);
	refused(m_histbytes);
}

static void test_bounds(void **state)
{
	(void)state;
	refused(m_name);
	refused(m_dup);
	refused(m_bytes);
	refused(m_piece);
	refused(m_walgap);
	refused(m_bigwal);
	refused(m_tli);
	refused(m_nobase);
	refused(m_size0);
	refused(m_tli0);
}

static int add_ref(void *ctx, const struct vpg_ref *r)
{
	struct vmanifest *m = ctx;
	memcpy(m->obj[m->n_objects], r->obj, VAULT_NAME);
	m->obj_size[m->n_objects++] = r->size;
	return 0;
}

static void test_manifest(void **state)
{
	struct vmanifest m, d;
	struct vman_pg p;
	struct wbuf w;
	uint8_t obj[8][VAULT_NAME];
	uint64_t sz[8] = { 0 };
	(void)state;

	sample(&p);
	memset(&m, 0, sizeof(m));
	m.epoch = 3;
	m.cut_time = 5;
	strcpy(m.group, "app");
	m.obj = obj;
	m.obj_size = sz;
	memset(obj, 1, sizeof(obj));
	/* the public list names every piece: 3 of the base, 3 of WAL, one more */
	m.n_objects = 1;
	assert_int_equal(vpg_each_object(&p, add_ref, &m), 0);
	assert_int_equal(m.n_objects, 7);
	m.n_pg = 1;
	m.pg = &p;
	wbuf_init(&w, 1 << 24);
	assert_int_equal(vault_manifest_encode(&K, &m, &w), 0);
	/* sealed: the source's name and LSNs are not in clear */
	assert_null(memmem(w.p, w.len, "db", 3));
	assert_int_equal(vault_manifest_decode(K.pk, &K, w.p, w.len, &d), 0);
	assert_int_equal(d.n_pg, 1);
	assert_int_equal(d.n_sources, 0);
	assert_int_equal(d.pg[0].end_lsn, p.end_lsn);
	assert_int_equal(d.pg[0].bases[0].files[0].n, 2);
	vault_manifest_free(&d);
	/* another vault's key does not open it */
	assert_int_not_equal(vault_manifest_decode(K.pk, &K2, w.p, w.len, &d), 0);
	/* a piece left out of the public list (prune would delete it): refused */
	m.n_objects = 6;
	wbuf_reset(&w);
	assert_int_equal(vault_manifest_encode(&K, &m, &w), 0);
	assert_int_equal(vault_manifest_decode(K.pk, &K, w.p, w.len, &d), -EBADMSG);
	wbuf_free(&w);
	vpg_clear(&p);
}

static void test_object(void **state)
{
	static uint8_t data[100000], out[100000];
	ZSTD_CCtx *z = ZSTD_createCCtx();
	ZSTD_DCtx *dz = ZSTD_createDCtx();
	uint8_t d1[32], d2[32];
	struct wbuf w;
	(void)state;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i % 251);
	wbuf_init(&w, 1 << 24);
	assert_int_equal(vpg_obj_seal(&K, VPG_WAL, 1, "", 0x3000000, data, sizeof(data), z, &w), 0);
	assert_true(w.len < sizeof(data)); /* compressed inside */
	assert_int_equal(vault_padme(w.len), w.len);
	assert_int_equal(vpg_obj_open(&K, w.p, w.len, VPG_WAL, 1, "", 0x3000000, sizeof(data), dz, out), 0);
	assert_memory_equal(out, data, sizeof(data));
	/* only as what it was sealed as */
	assert_int_equal(vpg_obj_open(&K, w.p, w.len, VPG_BASE, 1, "", 0x3000000, sizeof(data), dz, out), -EBADMSG);
	assert_int_equal(vpg_obj_open(&K, w.p, w.len, VPG_WAL, 2, "", 0x3000000, sizeof(data), dz, out), -EBADMSG);
	assert_int_equal(vpg_obj_open(&K, w.p, w.len, VPG_WAL, 1, "", 0x3000001, sizeof(data), dz, out), -EBADMSG);
	assert_int_equal(vpg_obj_open(&K, w.p, w.len, VPG_WAL, 1, "", 0x3000000, sizeof(data) - 1, dz, out), -EBADMSG);
	assert_int_equal(vpg_obj_open(&K2, w.p, w.len, VPG_WAL, 1, "", 0x3000000, sizeof(data), dz, out), -EBADMSG);
	/* a flipped byte anywhere */
	for (size_t i = 0; i < w.len; i += 97) {
		w.p[i] ^= 1;
		assert_int_equal(vpg_obj_open(&K, w.p, w.len, VPG_WAL, 1, "", 0x3000000, sizeof(data), dz, out), -EBADMSG);
		w.p[i] ^= 1;
	}
	/* the WAL digest depends on position and bytes */
	vpg_wal_digest(&K, 1, 0x3000000, data, sizeof(data), d1);
	vpg_wal_digest(&K, 1, 0x3000001, data, sizeof(data), d2);
	assert_memory_not_equal(d1, d2, 32);
	data[5] ^= 1;
	vpg_wal_digest(&K, 1, 0x3000000, data, sizeof(data), d2);
	assert_memory_not_equal(d1, d2, 32);
	wbuf_reset(&w);
	assert_int_equal(vpg_obj_seal(&K, VPG_BASE, 1, "base.tar", 0, data, 0, z, &w), -EINVAL);
	wbuf_free(&w);
	ZSTD_freeCCtx(z);
	ZSTD_freeDCtx(dz);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_encode_short),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_history),
		cmocka_unit_test(test_manifest),
		cmocka_unit_test(test_object),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
