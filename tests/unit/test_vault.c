/* Unit tests: the vault format (frames, indexes, manifests, padding) against
 * a real local object store, and the retention policy's exact choices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#include "err.h"
#include "retention.h"
#include "vault.h"
#include "vstore.h"
#include "vstore_s3.h"

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

static void test_padme(void **state)
{
	(void)state;
	for (size_t n = 1; n < (64u << 20); n = n * 3 / 2 + 1) {
		size_t p = vault_padme(n);
		assert_true(p >= n);
		assert_true(p - n <= n / 8 + 1); /* at most ~12% */
	}
	/* sizes close together pad to the same size */
	assert_int_equal(vault_padme(1000000), vault_padme(1000001));
}

static void test_frame(void **state)
{
	uint8_t blocks[3 * VAULT_BLOCK], out[VAULT_FRAME_BLOCKS * VAULT_BLOCK], nonce[16];
	ZSTD_CCtx *z = ZSTD_createCCtx();
	ZSTD_DCtx *d = ZSTD_createDCtx();
	struct wbuf w;
	uint32_t n, len;
	(void)state;

	wbuf_init(&w, 1 << 20);
	randombytes_buf(nonce, sizeof(nonce));
	memset(blocks, 'a', sizeof(blocks));
	randombytes_buf(blocks + VAULT_BLOCK, VAULT_BLOCK); /* one incompressible block */
	wbuf_put_bytes(&w, "xx", 2);                        /* the frame does not start at 0 */
	assert_int_equal(vault_frame_seal(&K, nonce, blocks, 3, z, &w), 0);
	len = (uint32_t)w.len - 2;
	assert_true(len < sizeof(blocks)); /* compressed */
	assert_int_equal(vault_frame_open(&K, nonce, 2, w.p + 2, len, d, out, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(out, blocks, sizeof(blocks));
	/* another offset, another key, one flipped bit: all refused */
	assert_int_equal(vault_frame_open(&K, nonce, 3, w.p + 2, len, d, out, &n), -EBADMSG);
	assert_int_equal(vault_frame_open(&K2, nonce, 2, w.p + 2, len, d, out, &n), -EBADMSG);
	w.p[10] ^= 1;
	assert_int_equal(vault_frame_open(&K, nonce, 2, w.p + 2, len, d, out, &n), -EBADMSG);
	/* the plaintext is nowhere in the ciphertext */
	w.p[10] ^= 1;
	assert_null(memmem(w.p, w.len, blocks + VAULT_BLOCK, 64));
	wbuf_free(&w);
	ZSTD_freeCCtx(z);
	ZSTD_freeDCtx(d);
}

/* vault_frame_decrypt gives the blocks vault_frame_open does, of a
 * compressed and of a stored frame, without the tag: what another offset
 * or key gives is not the blocks (restore's block ids catch it). */
static void test_frame_decrypt(void **state)
{
	static uint8_t blocks[VAULT_FRAME_BLOCKS * VAULT_BLOCK], out[VAULT_FRAME_BLOCKS * VAULT_BLOCK],
		work[VAULT_FRAME_WORK];
	ZSTD_CCtx *z = ZSTD_createCCtx();
	ZSTD_DCtx *d = ZSTD_createDCtx();
	const uint8_t *got = NULL;
	uint8_t nonce[16];
	struct wbuf w;
	uint32_t n, m, stored_off = 0, stored_len = 0;
	(void)state;

	wbuf_init(&w, 1 << 20);
	randombytes_buf(nonce, sizeof(nonce));
	memset(blocks, 'a', 2 * VAULT_BLOCK);
	randombytes_buf(blocks + 2 * VAULT_BLOCK, sizeof(blocks) - 2 * VAULT_BLOCK);
	for (uint32_t nb = 1; nb <= VAULT_FRAME_BLOCKS; nb += VAULT_FRAME_BLOCKS - 1) {
		/* 1 block: compressed; 16, mostly random: stored */
		uint32_t off = (uint32_t)w.len, len;
		assert_int_equal(vault_frame_seal(&K, nonce, blocks, nb, z, &w), 0);
		len = (uint32_t)w.len - off;
		stored_off = off, stored_len = len;
		assert_int_equal(vault_frame_open(&K, nonce, off, w.p + off, len, d, out, &n), 0);
		assert_int_equal(vault_frame_decrypt(&K, nonce, off, w.p + off, len, d, work, &got, &m), 0);
		assert_int_equal(m, nb);
		assert_int_equal(n, nb);
		assert_true(got >= work && got + (size_t)nb * VAULT_BLOCK <= work + sizeof(work));
		assert_memory_equal(got, blocks, (size_t)nb * VAULT_BLOCK);
		if (vault_frame_decrypt(&K, nonce, off + 1, w.p + off, len, d, work, &got, &m) == 0)
			assert_memory_not_equal(got, blocks, VAULT_BLOCK);
		if (vault_frame_decrypt(&K2, nonce, off, w.p + off, len, d, work, &got, &m) == 0)
			assert_memory_not_equal(got, blocks, VAULT_BLOCK);
	}
	/* A provider who knows a frame's plaintext (the stored frame, the last
	 * sealed) knows its keystream, and can make the untagged decrypt see
	 * any bytes: a zstd frame of one block decodes (the id check of the
	 * restore refuses its block), the same with a skippable frame after it
	 * does not reach the decoder (one frame of the writer's kind, nothing else). */
	{
		uint32_t off = stored_off, plen = stored_len - 16, zl;
		static uint8_t ks[VAULT_FRAME_WORK], forged[VAULT_FRAME_WORK];
		assert_int_equal(vault_frame_decrypt(&K, nonce, off, w.p + off, stored_len, d, work, &got, &m), 0);
		for (uint32_t i = 0; i < plen; i++)
			ks[i] = w.p[off + i] ^ work[i];
		forged[0] = 1;
		forged[1] = 1;
		zl = (uint32_t)ZSTD_compress(forged + 2, plen - 2, blocks, VAULT_BLOCK, 3);
		assert_false(ZSTD_isError(zl));
		/* after it: an empty skippable frame, which zstd itself accepts */
		for (uint32_t extra = 0; extra <= 8; extra += 8) {
			uint32_t fl = 2 + zl + extra;
			memcpy(forged + 2 + zl, "\x50\x2a\x4d\x18\0\0\0\0", extra);
			for (uint32_t i = 0; i < fl; i++)
				forged[i] ^= ks[i];
			memset(forged + fl, 0, 16); /* no tag checked */
			assert_int_equal(vault_frame_decrypt(&K, nonce, off, forged, fl + 16, d, work, &got, &m),
					 extra ? -EBADMSG : 0);
			for (uint32_t i = 0; i < fl; i++)
				forged[i] ^= ks[i];
		}
	}
	/* too short or too long to be a frame */
	assert_int_equal(vault_frame_decrypt(&K, nonce, 0, w.p, 17, d, work, &got, &m), -EBADMSG);
	assert_int_equal(vault_frame_decrypt(&K, nonce, 0, w.p, (uint32_t)sizeof(work), d, work, &got, &m),
			 -EBADMSG);
	wbuf_free(&w);
	ZSTD_freeCCtx(z);
	ZSTD_freeDCtx(d);
}

static void test_index(void **state)
{
	struct vpacks packs = { 0 }, p2 = { 0 };
	struct vmap m = { 0 }, r = { 0 };
	struct vpack pk;
	uint32_t idx;
	uint64_t changed[2] = { 5, 900 };
	uint8_t h1[32], h2[32];
	struct wbuf full, delta;
	(void)state;

	for (int i = 0; i < 3; i++) {
		randombytes_buf(&pk, sizeof(pk));
		assert_int_equal(vpacks_add(&packs, &pk, &idx), 0);
		assert_int_equal(idx, (uint32_t)i);
	}
	assert_int_equal(vpacks_add(&packs, &packs.p[1], &idx), 0); /* found, not added */
	assert_int_equal(idx, 1);
	assert_int_equal(vmap_resize(&m, 1000 * VAULT_BLOCK + 100), 0);
	assert_int_equal(m.n, 1001);
	for (uint64_t b = 0; b < m.n; b += 3) {
		m.e[b].pack = (uint32_t)(b % 3);
		m.e[b].off = (uint32_t)b * 100;
		m.e[b].len = 77;
		m.e[b].slot = (uint8_t)(b % 16);
		randombytes_buf(m.e[b].id, VAULT_ID);
	}
	wbuf_init(&full, 64u << 20);
	assert_int_equal(vault_index_encode(&K, true, 7, &m, NULL, 0, &packs, &full), 0);
	assert_int_equal(full.len, vault_padme(full.len));
	/* a delta: block 5 now in pack 2, block 900 zero */
	m.e[5].pack = 2;
	m.e[5].off = 42;
	m.e[900].pack = VLOC_ZERO;
	wbuf_init(&delta, 64u << 20);
	assert_int_equal(vault_index_encode(&K, false, 8, &m, changed, 2, &packs, &delta), 0);
	assert_true(delta.len < full.len / 4);
	/* rebuilt from another pack table: same map, same image hash */
	assert_int_equal(vault_index_apply(&K, full.p, full.len, &p2, &r), 0);
	assert_int_equal(vault_index_apply(&K, delta.p, delta.len, &p2, &r), 0);
	assert_int_equal(r.n, m.n);
	assert_int_equal(r.size, m.size);
	vault_image_hash(&K, &m, h1);
	vault_image_hash(&K, &r, h2);
	assert_memory_equal(h1, h2, 32);
	assert_memory_equal(p2.p[r.e[5].pack].name, packs.p[2].name, VAULT_NAME);
	assert_int_equal(r.e[5].off, 42);
	assert_int_equal(r.e[900].pack, VLOC_ZERO);
	/* wrong key, altered byte */
	assert_true(vault_index_apply(&K2, full.p, full.len, &p2, &r) < 0);
	full.p[100] ^= 4;
	assert_true(vault_index_apply(&K, full.p, full.len, &p2, &r) < 0);
	wbuf_free(&full);
	wbuf_free(&delta);
	vmap_free(&m);
	vmap_free(&r);
	vpacks_free(&packs);
	vpacks_free(&p2);
}

static void test_manifest(void **state)
{
	struct vmanifest m = { 0 }, d = { 0 };
	struct vman_source src = { 0 };
	uint8_t objs[2][VAULT_NAME], deltas[1][VAULT_NAME];
	uint64_t sizes[2] = { 4096, 123 };
	struct wbuf w;
	(void)state;

	randombytes_buf(objs, sizeof(objs));
	randombytes_buf(deltas, sizeof(deltas));
	vault_series(&K, "web-server-group", m.series);
	m.epoch = 42;
	m.cut_time = 1700000000123456ULL;
	m.n_objects = 2;
	m.obj = objs;
	m.obj_size = sizes;
	snprintf(m.group, sizeof(m.group), "web-server-group");
	m.flags = 1;
	m.n_sources = 1;
	snprintf(src.name, sizeof(src.name), "root-disk-name");
	src.size = 1 << 30;
	src.n_deltas = 1;
	src.deltas = deltas;
	m.src = &src;
	wbuf_init(&w, 1 << 20);
	assert_int_equal(vault_manifest_encode(&K, &m, &w), 0);
	/* names are sealed */
	assert_null(memmem(w.p, w.len, "web-server-group", 16));
	assert_null(memmem(w.p, w.len, "root-disk-name", 14));
	/* public key only: signature checked, public part read, private part closed */
	assert_int_equal(vault_manifest_decode(K.pk, NULL, w.p, w.len, &d), 0);
	assert_false(d.opened);
	assert_int_equal(d.epoch, 42);
	assert_int_equal(d.n_objects, 2);
	assert_memory_equal(d.obj[1], objs[1], VAULT_NAME);
	vault_manifest_free(&d);
	assert_int_equal(vault_manifest_decode(K.pk, &K, w.p, w.len, &d), 0);
	assert_true(d.opened);
	assert_string_equal(d.group, "web-server-group");
	assert_string_equal(d.src[0].name, "root-disk-name");
	assert_int_equal(d.src[0].n_deltas, 1);
	assert_memory_equal(d.src[0].deltas[0], deltas[0], VAULT_NAME);
	vault_manifest_free(&d);
	/* another vault's key: signature refused */
	assert_int_equal(vault_manifest_decode(K2.pk, NULL, w.p, w.len, &d), -EBADMSG);
	/* any changed byte, public or sealed: signature refused */
	for (size_t i = 0; i < w.len; i += 37) {
		w.p[i] ^= 0x80;
		assert_int_equal(vault_manifest_decode(K.pk, NULL, w.p, w.len, &d), -EBADMSG);
		w.p[i] ^= 0x80;
	}
	/* truncated */
	assert_int_equal(vault_manifest_decode(K.pk, NULL, w.p, w.len - 1, &d), -EBADMSG);
	/* peek: what a manifest that fails its check claims, signature or not */
	{
		uint8_t series[16];
		uint64_t epoch = 0, cut = 0;
		w.p[w.len - 1] ^= 1; /* signature broken */
		assert_int_equal(vault_manifest_peek(w.p, w.len, series, &epoch, &cut), 0);
		assert_memory_equal(series, m.series, 16);
		assert_int_equal(epoch, 42);
		assert_int_equal(cut, 1700000000123456ULL);
		assert_int_equal(vault_manifest_peek(w.p, 20, series, &epoch, &cut), -EBADMSG);
		w.p[0] ^= 1; /* not a manifest */
		assert_int_equal(vault_manifest_peek(w.p, w.len, series, &epoch, &cut), -EBADMSG);
	}
	wbuf_free(&w);
}

static void test_store(void **state)
{
	char dir[] = "/tmp/bascule-vs-XXXXXX", url[64], cmd[96];
	struct vstore *v;
	uint8_t *data;
	size_t len;
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(url, sizeof(url), "local:%s", dir);
	assert_int_equal(vstore_open(url, NULL, &v), 0);
	assert_int_equal(vstore_put(v, "d/ab/obj", "hello", 5), 0);
	assert_int_equal(vstore_put(v, "d/ab/obj", "other", 5), -EEXIST); /* never rewritten */
	assert_int_equal(vstore_get(v, "d/ab/obj", 100, &data, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "hello", 5);
	free(data);
	assert_int_equal(vstore_get(v, "d/ab/obj", 4, &data, &len), -EFBIG);
	assert_int_equal(vstore_get(v, "d/ab/none", 100, &data, &len), -ENOENT);
	/* d/ab is remembered as existing; removed behind the store, the next
	 * put under it creates it again instead of failing */
	snprintf(cmd, sizeof(cmd), "rm -rf %s/d", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(vstore_put(v, "d/ab/obj2", "again", 5), 0);
	assert_int_equal(vstore_get(v, "d/ab/obj2", 100, &data, &len), 0);
	assert_memory_equal(data, "again", 5);
	free(data);
	assert_int_equal(vstore_put(v, "d/ab/obj2", "other", 5), -EEXIST);
	vstore_close(v);
	assert_true(vstore_open("ftp://x/y", NULL, &v) < 0);
	assert_true(vstore_open("sftp://nouser/y", NULL, &v) < 0);
	assert_int_equal(vstore_open("s3://bucket/p", NULL, &v), -EINVAL); /* no endpoint, no credentials */
	assert_non_null(strstr(err_msg(-EINVAL), "needs an S3 endpoint"));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_s3_url(void **state)
{
	char b[64], p[512];
	(void)state;

	assert_int_equal(vstore_s3_parse_url("s3://bascule-vault/site-a/", b, sizeof(b), p, sizeof(p)), 0);
	assert_string_equal(b, "bascule-vault");
	assert_string_equal(p, "site-a");
	assert_int_equal(vstore_s3_parse_url("s3://abc", b, sizeof(b), p, sizeof(p)), 0);
	assert_string_equal(p, "");
	assert_int_equal(vstore_s3_parse_url("s3://ab/x", b, sizeof(b), p, sizeof(p)), -EINVAL);
	assert_int_equal(vstore_s3_parse_url("s3://Upper/x", b, sizeof(b), p, sizeof(p)), -EINVAL);
	assert_int_equal(vstore_s3_parse_url("sftp://abc/x", b, sizeof(b), p, sizeof(p)), -EINVAL);
	assert_int_equal(vstore_s3_port("https://s3.example"), 443);
	assert_int_equal(vstore_s3_port("http://127.0.0.1:8080"), 8080);
	assert_int_equal(vstore_s3_port("https://[::1]:9000/"), 9000);
	assert_int_equal(vstore_url_ok("s3://abc/x"), 1);
}

static void test_retention(void **state)
{
	/* epochs every 10 minutes for 40 days; now = the last */
	size_t n = 40 * 24 * 6;
	uint64_t *t = malloc(n * sizeof(*t)), now, base = 1704067200; /* 2024-01-01 00:00 UTC */
	bool *keep = malloc(n * sizeof(*keep));
	struct retention r = { 0 };
	size_t kept = 0;
	(void)state;

	for (size_t i = 0; i < n; i++)
		t[i] = base + i * 600;
	now = t[n - 1];
	assert_int_equal(retention_parse_span("24h", &r.all), 0);
	assert_int_equal(retention_parse_span("7d", &r.hourly), 0);
	assert_int_equal(retention_parse_span("30d", &r.daily), 0);
	assert_int_equal(retention_parse_span("12m", &r.monthly), 0);
	assert_true(r.monthly > 360 * 86400ULL);
	assert_true(retention_parse_span("12x", &r.all) < 0);
	assert_true(retention_parse_span("-1h", &r.all) < 0);
	retention_apply(&r, t, n, now, keep);
	for (size_t i = 0; i < n; i++) {
		uint64_t age = now - t[i];
		/* expected: newest always; all within 24 h; the last of each hour
		 * within 7 d; the last of each day within 30 d; the last of the
		 * month (Jan 31 23:50 and the newest) within 12 months */
		bool last_of_hour = i + 1 == n || (t[i + 1] / 3600 != t[i] / 3600);
		bool last_of_day = i + 1 == n || (t[i + 1] / 86400 != t[i] / 86400);
		bool last_of_month = i + 1 == n || t[i] == base + 31 * 86400 - 600;
		bool want = i + 1 == n || age <= 86400 || (last_of_hour && age <= 7 * 86400) ||
			    (last_of_day && age <= 30 * 86400) || last_of_month;
		assert_int_equal(keep[i], want);
		kept += keep[i];
	}
	assert_true(kept > 144 && kept < 144 + 7 * 24 + 30 + 3);
	/* no rule: keep everything */
	memset(&r, 0, sizeof(r));
	retention_apply(&r, t, n, now, keep);
	for (size_t i = 0; i < n; i++)
		assert_true(keep[i]);
	free(t);
	free(keep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_padme),    cmocka_unit_test(test_frame),     cmocka_unit_test(test_frame_decrypt),
		cmocka_unit_test(test_index),
		cmocka_unit_test(test_manifest), cmocka_unit_test(test_store),     cmocka_unit_test(test_s3_url),
		cmocka_unit_test(test_retention),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, NULL);
}
