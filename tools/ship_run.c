/* ship_run.c - one night of bascule ship (docs/hybrid.md): the dump command
 * streams through, in one pass, a BLAKE2b digest, the librsync signature
 * kept for tomorrow, the delta against yesterday's signature (or nothing,
 * for a full night), zstd, and 4 MiB secretstream pieces uploaded as
 * write-once objects; the signed manifest is created last.  Memory stays
 * bounded by the piece size and the previous signature, whatever the
 * dump's size. */
#include "ship.h"
#include "clientkey.h"
#include "clock.h"
#include "err.h"
#include "fsutil.h"
#include "intake.h"
#include "log.h"
#include "rsync.h"
#include "subproc.h"
#include "config.h"
#include "vstore.h"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define SIG_FILE "signature"
#define SIG_NEW "signature.new"
#define LAST_FILE "last"
#define SIG_MAX (1ull << 30)
#define READ_BUF (1u << 20)

/* What the state directory says of the last night shipped. */
struct last_night {
	char night[11];
	uint8_t digest[32];
	unsigned since_full;
	unsigned long long dump_size;
};

struct pipeline {
	struct vstore *v;
	struct intake_manifest m;
	uint32_t cap;
	crypto_secretstream_xchacha20poly1305_state ss;
	uint8_t *chunk, *cbuf;
	size_t chunk_len;
	uint64_t payload_len, stored;
	ZSTD_CCtx *z;
	uint8_t *zout;
	size_t zout_len;
	int sig_fd;
	crypto_generichash_state dump_hash;
	uint64_t dump_bytes;
};

static int read_last(int dirfd, struct last_night *ret)
{
	struct last_night l = { 0 };
	char text[512], hex[65];
	int fd = openat(dirfd, LAST_FILE, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -ENOENT;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -ENOENT;
	text[n] = 0;
	if (sscanf(text, "night %10s manifest %64s since_full %u dump_size %llu", l.night, hex, &l.since_full,
		   &l.dump_size) < 3 ||
	    !intake_night_ok(l.night) ||
	    sodium_hex2bin(l.digest, 32, hex, 64, NULL, NULL, NULL) != 0)
		return -EBADMSG;
	*ret = l;
	return 0;
}

static int write_last(const char *dir, const struct last_night *l)
{
	char hex[65], text[256], path[4200];
	int n;

	sodium_bin2hex(hex, sizeof(hex), l->digest, 32);
	n = snprintf(text, sizeof(text), "night %s manifest %s since_full %u dump_size %llu\n", l->night, hex,
		     l->since_full, l->dump_size);
	snprintf(path, sizeof(path), "%s/" LAST_FILE, dir);
	return fs_write_atomic(path, text, (size_t)n, 0600);
}

/* Encrypt and store the pending piece (the last one when FINAL). */
static int flush_piece(struct pipeline *p, bool final)
{
	uint8_t ad[256];
	char name[128];
	size_t adlen;
	unsigned long long clen;
	int r;

	if (p->m.n >= INTAKE_OBJECTS_MAX)
		return err_set(EFBIG, "the night's payload is over %u pieces of 4 MiB", INTAKE_OBJECTS_MAX);
	if (p->m.n == p->cap) {
		uint32_t nc = p->cap ? p->cap * 2 : 64;
		struct intake_object *o = realloc(p->m.objects, nc * sizeof(*o));
		if (!o)
			return -ENOMEM;
		p->m.objects = o;
		p->cap = nc;
	}
	adlen = intake_object_ad(&p->m, p->m.n, ad, sizeof(ad));
	crypto_secretstream_xchacha20poly1305_push(&p->ss, p->cbuf, &clen, p->chunk, p->chunk_len, ad, adlen,
						   final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
	intake_object_name(&p->m, p->m.n, name, sizeof(name));
	if ((r = vstore_put(p->v, name, p->cbuf, (size_t)clen)) < 0)
		return r == -EEXIST ? err_set(EEXIST, "intake object %s exists already", name) : r;
	p->m.objects[p->m.n].size = clen;
	crypto_generichash(p->m.objects[p->m.n].digest, 32, p->cbuf, (size_t)clen, NULL, 0);
	p->m.n++;
	p->stored += clen;
	p->chunk_len = 0;
	return 0;
}

static int piece_add(struct pipeline *p, const uint8_t *d, size_t n)
{
	int r;

	while (n) {
		size_t k;
		if (p->chunk_len == INTAKE_CHUNK && (r = flush_piece(p, false)) < 0)
			return r;
		k = INTAKE_CHUNK - p->chunk_len < n ? INTAKE_CHUNK - p->chunk_len : n;
		memcpy(p->chunk + p->chunk_len, d, k);
		p->chunk_len += k;
		d += k;
		n -= k;
	}
	return 0;
}

/* Compress what the delta (or the dump, for a full night) produced. */
static int zfeed(struct pipeline *p, const uint8_t *d, size_t n, bool end)
{
	ZSTD_inBuffer in = { d, n, 0 };
	size_t left;
	int r;

	do {
		ZSTD_outBuffer out = { p->zout, p->zout_len, 0 };
		left = ZSTD_compressStream2(p->z, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
		if (ZSTD_isError(left))
			return err_set(EIO, "zstd: %s", ZSTD_getErrorName(left));
		p->payload_len += out.pos;
		if (out.pos && (r = piece_add(p, p->zout, out.pos)) < 0)
			return r;
	} while (in.pos < in.size || (end && left));
	return 0;
}

static int on_delta(void *ctx, const uint8_t *d, size_t n)
{
	return zfeed(ctx, d, n, false);
}

static int on_sig(void *ctx, const uint8_t *d, size_t n)
{
	struct pipeline *p = ctx;
	int r = fs_write_full(p->sig_fd, d, n);
	return r < 0 ? err_set(-r, "cannot write the new signature: %s", strerror(-r)) : 0;
}

/* The dump's stderr (its last 4 KiB) for the message. */
static void dump_stderr(int fd, char *buf, size_t len)
{
	off_t end = lseek(fd, 0, SEEK_END), from = end > (off_t)len - 1 ? end - (off_t)len + 1 : 0;
	ssize_t n = end > 0 ? pread(fd, buf, len - 1, from) : 0;

	buf[n > 0 ? n : 0] = 0;
	for (ssize_t i = n - 1; i >= 0 && (buf[i] == '\n' || buf[i] == ' '); i--)
		buf[i] = 0;
	for (char *c = buf; *c; c++)
		if (*c == '\n')
			*c = ' ';
}

/* delta_block, or for 0: 128 bytes, doubled until the previous dump (of
 * PREV bytes, 0 if unknown) is at most 8 Mi blocks. */
static size_t block_size(const struct ship_config *c, uint64_t prev)
{
	size_t b = 128;

	if (c->delta_block)
		return (size_t)c->delta_block;
	while (b < 65536 && prev / b > (8u << 20))
		b *= 2;
	return b;
}

static void today(char buf[11])
{
	time_t t = time(NULL);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, 11, "%Y-%m-%d", &tm);
}

/* The base a delta may use tonight: the last night noted, if its manifest
 * is still at the intake as noted; else none (a full night). */
static bool base_usable(struct vstore *v, const struct last_night *l, const char *night, bool verbose)
{
	char name[64];
	uint8_t *data = NULL, d[32];
	size_t len;
	bool ok;

	if (strcmp(l->night, night) >= 0)
		return false;
	intake_manifest_name(l->night, name, sizeof(name));
	if (vstore_get(v, name, INTAKE_MANIFEST_MAX, &data, &len) < 0) {
		err_clear();
		if (verbose)
			log_info("the base night %s is not at the intake: shipping a full dump", l->night);
		return false;
	}
	crypto_generichash(d, 32, data, len, NULL, 0);
	free(data);
	ok = sodium_memcmp(d, l->digest, 32) == 0;
	if (!ok && verbose)
		log_info("the base night %s at the intake is not the one shipped: shipping a full dump", l->night);
	return ok;
}

/* Whether tonight's manifest NAME is at the intake and counts: 1 when it
 * decodes under the client's signing key and names this client and night
 * (already shipped), 0 when it is absent.  A manifest that exists but does
 * not count (cut while written, damaged) uses the night's name up: the
 * write-once account cannot replace it, so that is an error (-EEXIST). */
static int night_shipped(struct vstore *v, const struct client_pub *pub, const char *client, const char *night,
			 const char *name)
{
	struct intake_manifest m;
	uint64_t sz, mt;
	uint8_t *data = NULL;
	char why[1024];
	size_t len;
	int r;

	if (vstore_stat(v, name, &sz, &mt) < 0) {
		err_clear();
		return 0;
	}
	if ((r = vstore_get(v, name, INTAKE_MANIFEST_MAX, &data, &len)) < 0)
		return r;
	r = intake_manifest_decode(pub->sign_pk, data, len, &m);
	free(data);
	if (r == 0) {
		r = intake_manifest_expect(&m, client, night);
		intake_manifest_free(&m);
	}
	if (r == 0)
		return 1;
	snprintf(why, sizeof(why), "%s", r == -ENODATA ? "incomplete: cut while it was written" : err_msg(r));
	return err_set(EEXIST, "night %s's manifest %s is at the intake but does not count (%s): the "
			       "write-once intake cannot replace it, so this night's name is used up; ship the "
			       "dump under another night with --night YYYY-MM-DD, or have the operator remove %s",
		       night, name, why, name);
}

int ship_run(const struct ship_config *c, const struct ship_opts *o, struct ship_result *ret)
{
	struct ship_result res = { 0 };
	struct pipeline p = { .sig_fd = -1 };
	struct client_pub pub;
	struct last_night last = { 0 };
	struct rsync_job *sigjob = NULL, *deltajob = NULL;
	struct intake_secret secret = { 0 };
	struct vstore_opts vo = { .identity = c->identity, .known_hosts = c->known_hosts, .object_mode = 0440,
				  .s3_endpoint = c->s3_endpoint, .s3_region = c->s3_region,
				  .s3_credentials = c->s3_credentials, .s3_ca = c->s3_ca,
				  .s3_url_style = c->s3_url_style,
				  .lock_mode = config_lock_mode(c->object_lock), .lock_seconds = c->lock_for / 1000000 };
	struct wbuf man;
	uint8_t sk[crypto_sign_SECRETKEYBYTES], *buf = NULL, *oldsig = NULL;
	char name[64], path[4200], errtext[4096];
	size_t oldsig_len = 0;
	uint64_t t0 = clock_mono_usec();
	int lock = -1, dirfd = -1, errfd = -1, outfd = -1, r;
	pid_t pid = -1;
	bool have_last;

	wbuf_init(&man, INTAKE_MANIFEST_MAX);
	if (o->night && !intake_night_ok(o->night))
		return err_set(EINVAL, "--night %s is not a date YYYY-MM-DD", o->night);
	if (o->night)
		snprintf(res.night, sizeof(res.night), "%s", o->night);
	else
		today(res.night);
	if ((r = clientkey_load_pub(c->public_key, &pub)) < 0 || (r = clientkey_load_sign(c->signing_key, sk)) < 0 ||
	    (r = clientkey_check_pair(&pub, sk, c->public_key, c->signing_key)) < 0)
		goto out;
	if ((r = fs_mkdir_p(c->state_dir, 0700)) < 0) {
		r = err_set(-r, "cannot create the state directory %s: %s", c->state_dir, strerror(-r));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/lock", c->state_dir);
	if ((lock = fs_lock(path)) < 0) {
		r = lock == -EBUSY ? err_set(EBUSY, "another bascule ship is running (it holds %s)", path) : lock;
		goto out;
	}
	if ((dirfd = open(c->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r = err_set(errno, "cannot open %s: %s", c->state_dir, strerror(errno));
		goto out;
	}
	if ((r = vstore_open(c->intake, &vo, &p.v)) < 0)
		goto out;
	intake_manifest_name(res.night, name, sizeof(name));
	if ((r = night_shipped(p.v, &pub, c->client, res.night, name)) < 0)
		goto out;
	if (r == 1) {
		res.already = true;
		goto done;
	}
	/* full or delta */
	have_last = read_last(dirfd, &last) == 0;
	snprintf(path, sizeof(path), "%s/" SIG_FILE, c->state_dir);
	if (have_last && !o->force_full && last.since_full + 1 < c->full_every &&
	    base_usable(p.v, &last, res.night, o->verbose)) {
		char *s = NULL;
		if (fs_read_all(path, SIG_MAX, &s, &oldsig_len) == 0)
			oldsig = (uint8_t *)s;
		else
			err_clear();
	}
	res.full = !oldsig;
	if (oldsig && (r = rsync_job_delta(oldsig, oldsig_len, &deltajob)) < 0) {
		/* a damaged signature costs a full night, not the night */
		err_clear();
		res.full = true;
	}
	free(oldsig);
	oldsig = NULL;
	/* the night's manifest, objects filled in as they are stored */
	p.m.kind = res.full ? INTAKE_FULL : INTAKE_DELTA;
	snprintf(p.m.client, sizeof(p.m.client), "%s", c->client);
	snprintf(p.m.night, sizeof(p.m.night), "%s", res.night);
	if (!res.full) {
		snprintf(p.m.base_night, sizeof(p.m.base_night), "%s", last.night);
		memcpy(p.m.base_digest, last.digest, 32);
		snprintf(res.base, sizeof(res.base), "%s", last.night);
	}
	{
		uint8_t run[INTAKE_RUN_LEN / 2];
		randombytes_buf(run, sizeof(run));
		sodium_bin2hex(p.m.run, sizeof(p.m.run), run, sizeof(run));
	}
	crypto_secretstream_xchacha20poly1305_keygen(secret.stream_key);
	crypto_secretstream_xchacha20poly1305_init_push(&p.ss, p.m.ss_header, secret.stream_key);
	crypto_generichash_init(&p.dump_hash, NULL, 0, 32);
	p.zout_len = ZSTD_CStreamOutSize();
	if (!(p.chunk = malloc(INTAKE_CHUNK)) || !(p.cbuf = malloc(INTAKE_OBJECT_MAX)) ||
	    !(p.zout = malloc(p.zout_len)) || !(buf = malloc(READ_BUF)) || !(p.z = ZSTD_createCCtx())) {
		r = -ENOMEM;
		goto out;
	}
	ZSTD_CCtx_setParameter(p.z, ZSTD_c_compressionLevel, (int)c->compression_level);
	if ((r = rsync_job_signature(block_size(c, have_last ? last.dump_size : 0), &sigjob)) < 0)
		goto out;
	if ((p.sig_fd = openat(dirfd, SIG_NEW, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		r = err_set(errno, "cannot write %s/%s: %s", c->state_dir, SIG_NEW, strerror(errno));
		goto out;
	}
	if ((errfd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0) {
		r = err_set(errno, "cannot make a temporary file in %s: %s", c->state_dir, strerror(errno));
		goto out;
	}
	{
		struct subproc_opts so = { 0 };
		if ((r = subproc_spawn_reader(SUBPROC_SH(c->dump), &so, errfd, &pid, &outfd)) < 0)
			goto out;
	}
	for (;;) {
		ssize_t n = read(outfd, buf, READ_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(errno, "reading the dump: %s", strerror(errno));
			goto out;
		}
		if ((r = rsync_job_feed(sigjob, buf, (size_t)n, n == 0, on_sig, &p)) < 0 ||
		    (r = deltajob ? rsync_job_feed(deltajob, buf, (size_t)n, n == 0, on_delta, &p)
				  : zfeed(&p, buf, (size_t)n, false)) < 0)
			goto out;
		if (n == 0)
			break;
		crypto_generichash_update(&p.dump_hash, buf, (size_t)n);
		p.dump_bytes += (uint64_t)n;
	}
	close(outfd);
	outfd = -1;
	{
		struct subproc_result sr;
		r = subproc_wait(pid, &sr);
		pid = -1;
		if (r < 0)
			goto out;
		if (sr.exit_status != 0) {
			dump_stderr(errfd, errtext, sizeof(errtext));
			if (sr.term_signal)
				r = err_set(EIO, "the dump command was killed by signal %d; nothing was counted as "
						 "night %s: %s", sr.term_signal, res.night, *errtext ? errtext : "(no message)");
			else
				r = err_set(EIO, "the dump command failed (exit %d); nothing was counted as night %s: "
						 "%s", sr.exit_status, res.night, *errtext ? errtext : "(no message)");
			goto out;
		}
	}
	if ((r = zfeed(&p, NULL, 0, true)) < 0)
		goto out;
	secret.payload_len = p.payload_len;
	{
		/* pad to a multiple of INTAKE_PAD: sizes tell little */
		static const uint8_t zero[4096];
		uint64_t padded = (p.payload_len + INTAKE_PAD - 1) / INTAKE_PAD * INTAKE_PAD;
		if (!padded)
			padded = INTAKE_PAD;
		for (uint64_t left = padded - p.payload_len; left;) {
			size_t k = left > sizeof(zero) ? sizeof(zero) : (size_t)left;
			if ((r = piece_add(&p, zero, k)) < 0)
				goto out;
			left -= k;
		}
		if ((r = flush_piece(&p, true)) < 0)
			goto out;
	}
	if (fsync(p.sig_fd) < 0) {
		r = err_set(errno, "cannot write the new signature: %s", strerror(errno));
		goto out;
	}
	crypto_generichash_final(&p.dump_hash, secret.dump_digest, 32);
	secret.dump_size = p.dump_bytes;
	p.m.created = clock_now_usec() / 1000000;
	if ((r = intake_manifest_encode(&p.m, &secret, pub.box_pk, sk, &man)) < 0)
		goto out;
	/* the commit point: the night counts from here */
	if ((r = vstore_put(p.v, name, man.p, man.len)) < 0) {
		if (r == -EEXIST)
			r = err_set(EEXIST, "night %s was shipped meanwhile by another run (its manifest exists)",
				    res.night);
		goto out;
	}
	/* the note of the last night goes before the signature changes: a run
	 * stopped between the two must not leave night N's signature under a
	 * note naming N-1 (the next delta would be labelled with the wrong
	 * base); without a note the next night is full */
	if ((unlinkat(dirfd, LAST_FILE, 0) < 0 && errno != ENOENT) || fsync(dirfd) < 0) {
		r = err_set(errno, "night %s is shipped, but the note %s/%s could not be removed: %s (remove it: "
				   "the next night must be full)", res.night, c->state_dir, LAST_FILE, strerror(errno));
		goto out;
	}
	if (renameat(dirfd, SIG_NEW, dirfd, SIG_FILE) < 0) {
		r = err_set(errno, "night %s is shipped, but the new signature could not be kept: %s (the next "
				   "night will be full)", res.night, strerror(errno));
		goto out;
	}
	{
		struct last_night now = { .since_full = res.full ? 0 : last.since_full + 1,
					  .dump_size = p.dump_bytes };
		snprintf(now.night, sizeof(now.night), "%s", res.night);
		memcpy(now.digest, p.m.digest, 32);
		if ((r = write_last(c->state_dir, &now)) < 0) {
			/* no note: the next night is full, never a delta on a wrong base */
			unlinkat(dirfd, LAST_FILE, 0);
			r = err_wrap(r, "night %s is shipped, but its note could not be written (the next night "
					"will be full)", res.night);
			goto out;
		}
	}
	res.dump_bytes = p.dump_bytes;
	res.payload_bytes = p.payload_len;
	res.stored_bytes = p.stored + man.len;
	res.objects = p.m.n;
done:
	res.seconds = (double)(clock_mono_usec() - t0) / 1e6;
	*ret = res;
	r = 0;
out:
	if (outfd >= 0)
		close(outfd);
	if (pid > 0) {
		struct subproc_result sr;
		kill(-pid, SIGTERM);
		subproc_wait(pid, &sr);
	}
	if (errfd >= 0)
		close(errfd);
	if (p.sig_fd >= 0)
		close(p.sig_fd);
	if (r < 0 && dirfd >= 0)
		unlinkat(dirfd, SIG_NEW, 0);
	if (dirfd >= 0)
		close(dirfd);
	rsync_job_free(sigjob);
	rsync_job_free(deltajob);
	ZSTD_freeCCtx(p.z);
	if (p.chunk)
		sodium_memzero(p.chunk, INTAKE_CHUNK);
	if (buf)
		sodium_memzero(buf, READ_BUF);
	if (p.zout)
		sodium_memzero(p.zout, p.zout_len); /* the compressed dump, not yet encrypted */
	free(p.chunk);
	free(p.cbuf);
	free(p.zout);
	free(buf);
	free(p.m.objects);
	vstore_close(p.v);
	wbuf_free(&man);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(&secret, sizeof(secret));
	sodium_memzero(&p.ss, sizeof(p.ss));
	if (lock >= 0)
		close(lock);
	return r;
}
