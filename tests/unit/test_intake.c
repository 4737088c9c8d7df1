/* Unit tests: the hybrid-PRA intake format (lib/intake.c) and client keys
 * (lib/clientkey.c): manifest round trip, every byte flipped refused,
 * truncation told apart from tampering, another client's key, a manifest
 * under another name, bounds; key files round trip, swapped and unsafe
 * files named; the streaming librsync jobs rebuild the dump; a chain of
 * deltas composed (lib/rchain.c) gives what patching night after night
 * gives, and corrupt deltas are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "clientkey.h"
#include "fsutil.h"
#include "err.h"
#include "intake.h"
#include "rchain.h"
#include "rsync.h"
#include "scratch.h"

static uint8_t box_pk[32], box_sk[32], sign_pk[32], sign_sk[64];

static void make_manifest(struct intake_manifest *m, struct intake_object *objs, uint32_t n, struct wbuf *out)
{
	struct intake_secret s;

	memset(m, 0, sizeof(*m));
	m->kind = INTAKE_DELTA;
	strcpy(m->client, "mairie");
	strcpy(m->night, "2026-12-02");
	strcpy(m->base_night, "2026-12-01");
	memset(m->base_digest, 0xab, 32);
	m->created = 1790000000;
	strcpy(m->run, "0123456789abcdef");
	memset(m->ss_header, 3, sizeof(m->ss_header));
	for (uint32_t i = 0; i < n; i++) {
		objs[i].size = i + 1 < n ? INTAKE_OBJECT_MAX : INTAKE_PAD + 17;
		memset(objs[i].digest, (int)i + 1, 32);
	}
	m->n = n;
	m->objects = objs;
	memset(&s, 0, sizeof(s));
	memset(s.stream_key, 0x42, 32);
	memset(s.dump_digest, 0x17, 32);
	s.dump_size = 123456789;
	s.payload_len = 65000;
	wbuf_init(out, INTAKE_MANIFEST_MAX);
	assert_int_equal(intake_manifest_encode(m, &s, box_pk, sign_sk, out), 0);
}

static void test_roundtrip(void **state)
{
	struct intake_object objs[3];
	struct intake_manifest m, d;
	struct intake_secret s;
	struct wbuf w;
	(void)state;

	make_manifest(&m, objs, 3, &w);
	assert_int_equal(intake_manifest_decode(sign_pk, w.p, w.len, &d), 0);
	assert_int_equal(d.kind, INTAKE_DELTA);
	assert_string_equal(d.client, "mairie");
	assert_string_equal(d.night, "2026-12-02");
	assert_string_equal(d.base_night, "2026-12-01");
	assert_int_equal(d.n, 3);
	assert_int_equal(d.stored, 2 * (uint64_t)INTAKE_OBJECT_MAX + INTAKE_PAD + 17);
	assert_memory_equal(d.digest, m.digest, 32);
	assert_memory_equal(d.objects[1].digest, objs[1].digest, 32);
	assert_int_equal(intake_manifest_expect(&d, "mairie", "2026-12-02"), 0);
	assert_int_equal(intake_manifest_expect(&d, "other", "2026-12-02"), -EBADMSG);
	assert_int_equal(intake_manifest_expect(&d, "mairie", "2026-12-03"), -EBADMSG);
	/* the secret part opens with the client's key only */
	assert_int_equal(intake_secret_open(&d, box_pk, box_sk, &s), 0);
	assert_int_equal(s.dump_size, 123456789);
	assert_int_equal(s.payload_len, 65000);
	{
		uint8_t opk[32], osk[32];
		crypto_box_keypair(opk, osk);
		assert_int_equal(intake_secret_open(&d, opk, osk, &s), -EKEYREJECTED);
	}
	intake_manifest_free(&d);
	wbuf_free(&w);
}

/* Every single flipped bit anywhere is refused; truncation is "incomplete". */
static void test_tamper(void **state)
{
	struct intake_object objs[2];
	struct intake_manifest m, d;
	struct wbuf w;
	(void)state;

	make_manifest(&m, objs, 2, &w);
	for (size_t i = 0; i < w.len; i++) {
		w.p[i] ^= 0x10;
		assert_true(intake_manifest_decode(sign_pk, w.p, w.len, &d) < 0);
		w.p[i] ^= 0x10;
	}
	for (size_t n = 0; n < w.len; n += 7) {
		int r = intake_manifest_decode(sign_pk, w.p, n, &d);
		assert_true(r == -ENODATA);
	}
	/* one byte too many */
	assert_int_equal(wbuf_put_u8(&w, 0), 0);
	assert_int_equal(intake_manifest_decode(sign_pk, w.p, w.len, &d), -EBADMSG);
	w.len--;
	/* another client's signing key */
	{
		uint8_t opk[32], osk[64];
		crypto_sign_keypair(opk, osk);
		assert_int_equal(intake_manifest_decode(opk, w.p, w.len, &d), -EBADMSG);
		assert_non_null(strstr(err_msg(-EBADMSG), "BAD SIGNATURE"));
	}
	assert_int_equal(intake_manifest_decode(sign_pk, w.p, w.len, &d), 0);
	intake_manifest_free(&d);
	wbuf_free(&w);
}

/* Signed but out of bounds: the decoder still refuses (a client's key is
 * not trusted to write sane manifests). */
static void test_bounds(void **state)
{
	struct intake_object objs[2];
	struct intake_manifest m, d;
	struct wbuf w;
	(void)state;

	make_manifest(&m, objs, 2, &w);
	wbuf_free(&w);
	objs[0].size = 100; /* not the last, yet not a full chunk */
	assert_int_equal(intake_manifest_encode(&m, &(struct intake_secret){ 0 }, box_pk, sign_sk,
						(wbuf_init(&w, INTAKE_MANIFEST_MAX), &w)), 0);
	assert_int_equal(intake_manifest_decode(sign_pk, w.p, w.len, &d), -EBADMSG);
	wbuf_free(&w);
	objs[0].size = INTAKE_OBJECT_MAX;
	strcpy(m.base_night, "2026-12-05"); /* a base after the night */
	wbuf_init(&w, INTAKE_MANIFEST_MAX);
	assert_int_equal(intake_manifest_encode(&m, &(struct intake_secret){ 0 }, box_pk, sign_sk, &w), 0);
	assert_int_equal(intake_manifest_decode(sign_pk, w.p, w.len, &d), -EBADMSG);
	wbuf_free(&w);
	m.kind = INTAKE_FULL; /* a full night naming a base */
	strcpy(m.base_night, "2026-12-01");
	wbuf_init(&w, INTAKE_MANIFEST_MAX);
	assert_int_equal(intake_manifest_encode(&m, &(struct intake_secret){ 0 }, box_pk, sign_sk, &w), 0);
	assert_int_equal(intake_manifest_decode(sign_pk, w.p, w.len, &d), -EBADMSG);
	wbuf_free(&w);
	strcpy(m.client, "../x");
	m.base_night[0] = 0;
	wbuf_init(&w, INTAKE_MANIFEST_MAX);
	assert_int_equal(intake_manifest_encode(&m, &(struct intake_secret){ 0 }, box_pk, sign_sk, &w), 0);
	assert_int_equal(intake_manifest_decode(sign_pk, w.p, w.len, &d), -EBADMSG);
	wbuf_free(&w);
	assert_true(intake_night_ok("2026-12-02"));
	assert_false(intake_night_ok("2026-13-02"));
	assert_false(intake_night_ok("2026-12-2"));
	assert_false(intake_night_ok("../../etc"));
}

static void test_keys(void **state)
{
	char base[256], p[300];
	struct client_pub pub;
	uint8_t sk[64], bsk[32];
	(void)state;

	snprintf(base, sizeof(base), "%s/mairie", dir);
	assert_int_equal(clientkey_generate(base, "short"), -EINVAL);
	snprintf(p, sizeof(p), "%s.key", base);
	assert_int_not_equal(access(p, F_OK), 0); /* nothing left behind */
	assert_int_equal(clientkey_generate(base, "a long enough passphrase"), 0);
	assert_int_equal(clientkey_generate(base, "a long enough passphrase"), -EEXIST);
	snprintf(p, sizeof(p), "%s.pub", base);
	assert_int_equal(clientkey_load_pub(p, &pub), 0);
	/* the same key read from memory (an S3 intake's client.pub): equal;
	 * cut, a character not base64, a NUL inside, another header: refused */
	{
		char *text = NULL, bad[512];
		size_t len;
		struct client_pub mp;
		assert_int_equal(fs_read_all(p, 4096, &text, &len), 0);
		assert_int_equal(clientkey_parse_pub("s3: mairie/client.pub", text, len, &mp), 0);
		assert_memory_equal(&mp, &pub, sizeof(mp));
		assert_int_equal(clientkey_parse_pub("x", text, len / 2, &mp), -EKEYREJECTED);
		assert_non_null(strstr(err_msg(-EKEYREJECTED), "x is not a Bascule client public key"));
		assert_true(len < sizeof(bad));
		memcpy(bad, text, len);
		bad[len - 5] = '!'; /* not base64 */
		assert_int_equal(clientkey_parse_pub("x", bad, len, &mp), -EKEYREJECTED);
		memcpy(bad, text, len);
		bad[len / 2] = 0;
		assert_int_equal(clientkey_parse_pub("x", bad, len, &mp), -EKEYREJECTED);
		memcpy(bad, text, len);
		bad[0] = 'B';
		assert_int_equal(clientkey_parse_pub("x", bad, len, &mp), -EKEYREJECTED);
		free(text);
	}
	snprintf(p, sizeof(p), "%s.sign", base);
	assert_int_equal(clientkey_load_sign(p, sk), 0);
	assert_int_equal(clientkey_check_pair(&pub, sk, "pub", "sign"), 0);
	snprintf(p, sizeof(p), "%s.key", base);
	assert_int_equal(clientkey_load_secret(p, "a long enough passphrase", bsk), 0);
	{
		uint8_t pk2[32];
		crypto_scalarmult_base(pk2, bsk);
		assert_memory_equal(pk2, pub.box_pk, 32);
	}
	assert_int_equal(clientkey_load_secret(p, "the wrong passphrase!", bsk), -EKEYREJECTED);
	assert_non_null(strstr(err_msg(-EKEYREJECTED), "wrong passphrase"));
	/* swapped: the signing key given as the public key, and the reverse */
	snprintf(p, sizeof(p), "%s.sign", base);
	assert_int_equal(clientkey_load_pub(p, &pub), -EKEYREJECTED);
	assert_non_null(strstr(err_msg(-EKEYREJECTED), "is the client's signing key"));
	snprintf(p, sizeof(p), "%s.pub", base);
	assert_int_equal(clientkey_load_sign(p, sk), -EKEYREJECTED);
	assert_non_null(strstr(err_msg(-EKEYREJECTED), "is the client's public key"));
	snprintf(p, sizeof(p), "%s.key", base);
	assert_int_equal(clientkey_load_sign(p, sk), -EKEYREJECTED);
	assert_non_null(strstr(err_msg(-EKEYREJECTED), "decryption key"));
	/* unsafe mode */
	snprintf(p, sizeof(p), "%s.sign", base);
	chmod(p, 0644);
	assert_int_equal(clientkey_load_sign(p, sk), -EPERM);
	snprintf(p, sizeof(p), "%s/none.sign", dir);
	assert_int_equal(clientkey_load_sign(p, sk), -ENOKEY);
	/* a pair from two clients */
	{
		uint8_t opk[32], osk[64];
		crypto_sign_keypair(opk, osk);
		assert_int_equal(clientkey_check_pair(&pub, osk, "pub", "sign"), -EKEYREJECTED);
	}
	/* the key opened once (intake open-key): read without a passphrase */
	{
		char o[4200];
		uint8_t osk[32];
		snprintf(p, sizeof(p), "%s.key", base);
		assert_false(clientkey_is_opened(p));
		snprintf(o, sizeof(o), "%s.opened", base);
		assert_int_equal(clientkey_write_opened(o, bsk), 0);
		assert_int_equal(clientkey_write_opened(o, bsk), -EEXIST);
		assert_true(clientkey_is_opened(o));
		assert_int_equal(clientkey_load_secret(o, NULL, osk), 0);
		assert_memory_equal(osk, bsk, 32);
		chmod(o, 0640);
		assert_int_equal(clientkey_load_secret(o, NULL, osk), -EPERM);
		/* given where a public or signing key is wanted: named */
		assert_int_equal(clientkey_load_pub(o, &pub), -EKEYREJECTED);
		assert_non_null(strstr(err_msg(-EKEYREJECTED), "opened decryption key"));
		chmod(o, 0600);
		assert_int_equal(clientkey_load_sign(o, sk), -EKEYREJECTED);
		assert_non_null(strstr(err_msg(-EKEYREJECTED), "opened decryption key"));
		unlink(o);
	}
}

/* fs_splice_full: a file's range into a pipe as it is; -EINVAL where
 * splice cannot move it (then written instead), -EIO past the file's end,
 * -EPIPE when the reader is gone. */
static void test_splice(void **state)
{
	char path[] = "/tmp/test_intake_splice.XXXXXX";
	uint8_t data[200000], got[sizeof(data)];
	int fd = mkstemp(path), other = open("/dev/null", O_WRONLY), p[2];
	size_t have = 0;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	assert_true(fd >= 0 && other >= 0);
	unlink(path);
	randombytes_buf(data, sizeof(data));
	assert_int_equal(fs_write_full(fd, data, sizeof(data)), 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fs_splice_full(fd, 1000, p[1], 50000), 0);
	while (have < 50000) {
		ssize_t n = read(p[0], got + have, sizeof(got) - have);
		assert_true(n > 0);
		have += (size_t)n;
	}
	assert_int_equal(have, 50000);
	assert_memory_equal(got, data + 1000, 50000);
	assert_int_equal(fs_splice_full(fd, 0, other, 10), -EINVAL);
	assert_int_equal(fs_splice_full(fd, sizeof(data) - 10, p[1], 20), -EIO);
	close(p[0]);
	assert_int_equal(fs_splice_full(fd, 0, p[1], 10), -EPIPE);
	close(p[1]);
	close(other);
	close(fd);
}

struct sink {
	struct wbuf w;
};
static int to_sink(void *ctx, const uint8_t *p, size_t n)
{
	return wbuf_put_bytes(&((struct sink *)ctx)->w, p, n);
}

/* A dump fed in odd pieces: signature, delta, patch rebuild it exactly. */
static void test_rsync_stream(void **state)
{
	size_t len = 3u << 20;
	uint8_t *a = malloc(len), *b = malloc(len);
	struct sink sig = { 0 }, delta = { 0 }, out = { 0 };
	struct rsync_job *j;
	char path[256];
	int fd;
	(void)state;

	randombytes_buf(a, len);
	memcpy(b, a, len);
	memmove(b + 1000, b + 1100, len - 1100); /* shifted content */
	randombytes_buf(b + (2u << 20), 5000);
	wbuf_init(&sig.w, 64u << 20);
	wbuf_init(&delta.w, 64u << 20);
	wbuf_init(&out.w, 64u << 20);
	assert_int_equal(rsync_job_signature(512, &j), 0);
	for (size_t off = 0; off < len; off += 70001)
		assert_int_equal(rsync_job_feed(j, a + off, off + 70001 > len ? len - off : 70001, false,
						to_sink, &sig), 0);
	assert_int_equal(rsync_job_feed(j, NULL, 0, true, to_sink, &sig), 0);
	rsync_job_free(j);
	assert_int_equal(rsync_job_delta(sig.w.p, sig.w.len, &j), 0);
	for (size_t off = 0; off < len; off += 99991)
		assert_int_equal(rsync_job_feed(j, b + off, off + 99991 > len ? len - off : 99991,
						off + 99991 >= len, to_sink, &delta), 0);
	rsync_job_free(j);
	assert_true(delta.w.len < 64 * 1024); /* a few changed blocks, not the dump */
	snprintf(path, sizeof(path), "%s/basis", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, a, len), (ssize_t)len);
	assert_int_equal(rsync_job_patch(fd, &j), 0);
	for (size_t off = 0; off < delta.w.len; off += 333)
		assert_int_equal(rsync_job_feed(j, delta.w.p + off, off + 333 > delta.w.len ? delta.w.len - off : 333,
						false, to_sink, &out), 0);
	assert_int_equal(rsync_job_feed(j, NULL, 0, true, to_sink, &out), 0);
	rsync_job_free(j);
	assert_int_equal(out.w.len, len);
	assert_memory_equal(out.w.p, b, len);
	/* a truncated delta fails instead of producing a short dump */
	out.w.len = 0;
	assert_int_equal(rsync_job_patch(fd, &j), 0);
	assert_true(rsync_job_feed(j, delta.w.p, delta.w.len / 2, true, to_sink, &out) < 0);
	rsync_job_free(j);
	close(fd);
	wbuf_free(&sig.w);
	wbuf_free(&delta.w);
	wbuf_free(&out.w);
	free(a);
	free(b);
}

/* the delta from A to B (in memory, 128-byte blocks as ship's) */
static void delta_of(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, struct sink *d)
{
	struct sink sig = { 0 };
	struct rsync_job *j;

	wbuf_init(&sig.w, 64u << 20);
	d->w.len = 0;
	assert_int_equal(rsync_job_signature(128, &j), 0);
	assert_int_equal(rsync_job_feed(j, a, alen, true, to_sink, &sig), 0);
	rsync_job_free(j);
	assert_int_equal(rsync_job_delta(sig.w.p, sig.w.len, &j), 0);
	assert_int_equal(rsync_job_feed(j, b, blen, true, to_sink, d), 0);
	rsync_job_free(j);
	wbuf_free(&sig.w);
}

/* Six nights, each changed (rows rewritten, content moved, inserted,
 * cut): the chain composed and written once is the last night exactly, and
 * every night's size is told as it is composed. */
/* rchain_wait_full's WAIT for test_rchain: fills the full dump's file up
 * to END (no further than asked), as the decompressing thread does. */
struct filler {
	int full;
	const uint8_t *src;
	size_t len, filled, calls, first; /* first: the END of the first call */
	bool fail;
};

static int fill_upto(void *ctx, uint64_t end)
{
	struct filler *f = ctx;

	if (!f->calls++)
		f->first = end;
	if (f->fail)
		return -EIO;
	assert_true(end <= f->len);
	if (end > f->filled) {
		assert_int_equal(pwrite(f->full, f->src + f->filled, end - f->filled, (off_t)f->filled),
				 (ssize_t)(end - f->filled));
		f->filled = end;
	}
	return 0;
}

static void test_rchain(void **state)
{
	size_t cap = 1u << 20, len[7];
	uint8_t *n[7];
	struct sink d = { 0 }, out = { 0 };
	struct rchain *c;
	char path[256];
	int full, lit;
	uint64_t size;
	(void)state;

	wbuf_init(&d.w, 64u << 20);
	wbuf_init(&out.w, 64u << 20);
	n[0] = malloc(cap);
	len[0] = 600000;
	randombytes_buf(n[0], len[0]);
	for (int i = 1; i < 7; i++) {
		size_t l = len[i - 1];
		n[i] = malloc(cap);
		memcpy(n[i], n[i - 1], l);
		for (int k = 0; k < 40; k++) /* rows rewritten in place */
			randombytes_buf(n[i] + randombytes_uniform((uint32_t)l - 200), 1 + randombytes_uniform(150));
		memmove(n[i] + 5000 * i + 300, n[i] + 5000 * i, l - 5000 * i - 300); /* 300 bytes inserted */
		randombytes_buf(n[i] + 5000 * i, 300);
		memmove(n[i] + 100000, n[i] + 100000 + 77 * i, l - 100000 - 77 * i); /* 77*i bytes cut */
		l -= 77 * i;
		memcpy(n[i] + 300000, n[i] + 200000, 20000); /* a range copied elsewhere */
		len[i] = l;
	}
	snprintf(path, sizeof(path), "%s/chain-full", dir);
	assert_true((full = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
	assert_int_equal(write(full, n[0], len[0]), (ssize_t)len[0]);
	snprintf(path, sizeof(path), "%s/chain-lit", dir);
	assert_true((lit = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
	assert_int_equal(rchain_new(full, len[0], lit, &c), 0);
	for (int i = 1; i < 7; i++) {
		delta_of(n[i - 1], len[i - 1], n[i], len[i], &d);
		for (size_t off = 0; off < d.w.len; off += 777) /* in odd pieces, as unzstd gives them */
			assert_int_equal(rchain_feed(c, d.w.p + off, off + 777 > d.w.len ? d.w.len - off : 777), 0);
		assert_int_equal(rchain_end(c, &size), 0);
		assert_int_equal(size, len[i]);
	}
	assert_true(rchain_extents(c) > 6);
	assert_int_equal(rchain_write(c, to_sink, &out), 0);
	assert_int_equal(out.w.len, len[6]);
	assert_memory_equal(out.w.p, n[6], len[6]);
	rchain_free(c);

	/* the full dump still filling (--load): the deltas composed before it
	 * is there, each read of it waited for, a failure of the filling
	 * returned */
	{
		struct filler fl = { .full = full, .src = n[0], .len = len[0] };
		assert_int_equal(ftruncate(full, 0), 0);
		assert_int_equal(ftruncate(lit, 0), 0);
		assert_int_equal(lseek(lit, 0, SEEK_SET), 0);
		assert_int_equal(rchain_new(full, len[0], lit, &c), 0);
		for (int i = 1; i < 7; i++) {
			delta_of(n[i - 1], len[i - 1], n[i], len[i], &d);
			assert_int_equal(rchain_feed(c, d.w.p, d.w.len), 0);
			assert_int_equal(rchain_end(c, &size), 0);
		}
		rchain_wait_full(c, fill_upto, &fl);
		out.w.len = 0;
		assert_int_equal(rchain_write(c, to_sink, &out), 0);
		assert_int_equal(out.w.len, len[6]);
		assert_memory_equal(out.w.p, n[6], len[6]);
		assert_true(fl.calls > 1);      /* waited piece by piece, */
		assert_true(fl.first < len[0]); /* not for the whole dump at once */
		fl.fail = true;
		assert_int_equal(rchain_write(c, to_sink, &out), -EIO);
		rchain_free(c);
	}

	/* hostile deltas: a COPY past the end of its basis, an unknown
	 * command, a delta cut before its END, data after it, a bad magic */
	{
		static const uint8_t past[] = { 0x72, 0x73, 0x02, 0x36, 0x4d, 0, 0x0f, 0xff, 0xff, 0xff, 0 };
		static const uint8_t unknown[] = { 0x72, 0x73, 0x02, 0x36, 0x60 };
		static const uint8_t cut[] = { 0x72, 0x73, 0x02, 0x36, 0x03, 'a', 'b' };
		static const uint8_t after[] = { 0x72, 0x73, 0x02, 0x36, 0x00, 0x00 };
		static const uint8_t magic[] = { 0x72, 0x73, 0x01, 0x36 };
		assert_int_equal(rchain_new(full, len[0], lit, &c), 0);
		assert_int_equal(rchain_feed(c, past, sizeof(past)), -EBADMSG);
		rchain_free(c);
		assert_int_equal(rchain_new(full, len[0], lit, &c), 0);
		assert_int_equal(rchain_feed(c, unknown, sizeof(unknown)), -EBADMSG);
		rchain_free(c);
		assert_int_equal(rchain_new(full, len[0], lit, &c), 0);
		assert_int_equal(rchain_feed(c, cut, sizeof(cut)), 0);
		assert_int_equal(rchain_end(c, &size), -EBADMSG);
		rchain_free(c);
		assert_int_equal(rchain_new(full, len[0], lit, &c), 0);
		assert_int_equal(rchain_feed(c, after, sizeof(after)), -EBADMSG);
		rchain_free(c);
		assert_int_equal(rchain_new(full, len[0], lit, &c), 0);
		assert_int_equal(rchain_feed(c, magic, sizeof(magic)), -EBADMSG);
		rchain_free(c);
	}
	close(full);
	close(lit);
	for (int i = 0; i < 7; i++)
		free(n[i]);
	wbuf_free(&d.w);
	wbuf_free(&out.w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_splice),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_rsync_stream),
		cmocka_unit_test(test_rchain),
	};
	if (sodium_init() < 0)
		return 1;
	crypto_box_keypair(box_pk, box_sk);
	crypto_sign_keypair(sign_pk, sign_sk);
	return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
