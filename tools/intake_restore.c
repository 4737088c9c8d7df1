/* intake_restore.c - bascule intake restore: rebuild a night's exact dump
 * with the client's decryption key (docs/hybrid.md, "Recovery").  The
 * night's chain is replayed from its full night: each night's objects are
 * checked against their signed digests, opened (secretstream, bound to
 * their client, night and position) and decompressed; the full night is
 * written to a scratch file, the deltas composed onto it (lib/rchain.c:
 * their literal bytes in a second scratch file, the rest as ranges of the
 * full night), and the night asked for written once from the two, checked
 * against the digest of the original sealed in its manifest (a delta
 * making a night of another size than its manifest's fails at once).
 * Three files at most are on disk at a time, next to --to; memory is a
 * few extents per changed range.  For --load (tools/intake_load.c) the
 * night asked for is not written to a file but handed on as it is made,
 * once every object of the chain has been checked. */
#include "cmd.h"
#include "clock.h"
#include "err.h"
#include "fsutil.h"
#include "intake_tool.h"
#include "rchain.h"
#include "vstore.h"
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

struct fill;

struct rebuild {
	int out_fd;              /* the dump's file, or -1: to OUT */
	int (*out)(void *ctx, const uint8_t *p, size_t n);
	void *out_ctx;
	struct fill *fill;       /* the full night filling while it is read (NULL: not) */
	crypto_generichash_state h;
	bool hash;               /* H is wanted: the night asked for (a chain's full night is not) */
	uint64_t size;
	struct rchain *chain;    /* NULL for a full night: the delta is composed onto it */
	ZSTD_DCtx *z;
	uint8_t *zout;
	size_t zout_len;
	bool frame_done;
};

/* The full night of a chain is decompressed into its file by a thread
 * while the night asked for is written from it (rchain_wait_full): how far
 * the file is filled, and how the thread ended. */
struct fill {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t filled;
	bool done;
	bool stop;               /* the writer failed: the thread ends at once */
	int r;
	char msg[1024];          /* the thread's sentence for R (err_set's are thread-local) */
	/* the thread's work */
	struct vstore *v;
	const struct intake_night *n;
	struct intake_secret s;
	struct rebuild *b;
	uint8_t *obj, *plain;
};

/* F's progress told; true when the thread is to stop. */
static bool fill_set(struct fill *f, uint64_t filled, bool done, int r)
{
	bool stop;

	pthread_mutex_lock(&f->mu);
	f->filled = filled;
	f->done |= done;
	if (r < 0 && !f->r)
		f->r = r;
	stop = f->stop;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return stop;
}

static int fill_wait(void *ctx, uint64_t end)
{
	struct fill *f = ctx;
	int r;

	pthread_mutex_lock(&f->mu);
	while (f->filled < end && !f->done)
		pthread_cond_wait(&f->cv, &f->mu);
	r = f->filled >= end ? 0 : f->r ? err_set(-f->r, "%s", f->msg)
				 : err_set(EBADMSG, "night %s: the full night ends early", f->n->night);
	pthread_mutex_unlock(&f->mu);
	return r;
}

static int to_file(void *ctx, const uint8_t *p, size_t n)
{
	struct rebuild *b = ctx;
	int r = b->out_fd < 0 ? b->out(b->out_ctx, p, n) : fs_write_full(b->out_fd, p, n);

	if (r < 0)
		return b->out_fd < 0 ? r : err_set(-r, "cannot write the restored dump: %s", strerror(-r));
	if (b->hash)
		crypto_generichash_update(&b->h, p, n);
	b->size += n;
	if (b->fill && fill_set(b->fill, b->size, false, 0))
		return err_set(ECANCELED, "stopped");
	return 0;
}

/* Decompressed payload: the dump itself, or a delta to patch. */
static int unzstd(struct rebuild *b, const uint8_t *p, size_t n)
{
	ZSTD_inBuffer in = { p, n, 0 };
	int r;

	while (in.pos < in.size) {
		ZSTD_outBuffer out = { b->zout, b->zout_len, 0 };
		size_t left;
		if (b->frame_done)
			return err_set(EBADMSG, "data after the end of the compressed payload");
		left = ZSTD_decompressStream(b->z, &out, &in);
		if (ZSTD_isError(left))
			return err_set(EBADMSG, "corrupt payload: zstd: %s", ZSTD_getErrorName(left));
		if (out.pos && (r = b->chain ? rchain_feed(b->chain, b->zout, out.pos) : to_file(b, b->zout, out.pos)) < 0)
			return r;
		if (left == 0)
			b->frame_done = true;
	}
	return 0;
}

/* Object I of night N into OBJ (INTAKE_OBJECT_MAX + 1 bytes), checked
 * against its signed size and digest: 0, or -EBADMSG naming it. */
static int object_read(struct vstore *v, const struct intake_night *n, uint32_t i, uint8_t *obj)
{
	const struct intake_object *o = &n->m.objects[i];
	char name[128];
	uint8_t d[32];
	ssize_t got;

	intake_object_name(&n->m, i, name, sizeof(name));
	got = vstore_read(v, name, 0, obj, (size_t)o->size + 1);
	if (got >= 0)
		crypto_generichash(d, 32, obj, (size_t)got, NULL, 0);
	if (got != (ssize_t)o->size || sodium_memcmp(d, o->digest, 32) != 0)
		return err_set(EBADMSG, "night %s: object %s is %s", n->night, name,
			       got < 0 ? "MISSING" : got < (ssize_t)o->size ? "TRUNCATED" : "DAMAGED (its digest "
			       "differs from the signed one)");
	return 0;
}

/* Rebuild night N: a full night to B's file or OUT (its digest checked
 * when VERIFY), a delta composed onto CHAIN (its size checked). */
static int rebuild_night(struct vstore *v, const struct intake_night *n, const struct intake_secret *s,
			 struct rchain *chain, const struct rebuild *b0, bool verify, uint8_t *obj, uint8_t *plain)
{
	struct rebuild b = { .out_fd = b0->out_fd, .out = b0->out, .out_ctx = b0->out_ctx, .fill = b0->fill,
			     .chain = chain, .hash = verify };
	crypto_secretstream_xchacha20poly1305_state ss;
	uint64_t fed = 0;
	uint8_t d[32];
	int r = 0;

	crypto_generichash_init(&b.h, NULL, 0, 32);
	b.zout_len = ZSTD_DStreamOutSize();
	if (!(b.z = ZSTD_createDCtx()) || !(b.zout = malloc(b.zout_len))) {
		r = -ENOMEM;
		goto out;
	}
	if (crypto_secretstream_xchacha20poly1305_init_pull(&ss, n->m.ss_header, s->stream_key) != 0) {
		r = err_set(EBADMSG, "night %s: bad stream header", n->night);
		goto out;
	}
	for (uint32_t i = 0; i < n->m.n; i++) {
		const struct intake_object *o = &n->m.objects[i];
		char name[128];
		uint8_t ad[256], tag;
		unsigned long long plen;
		size_t adlen = intake_object_ad(&n->m, i, ad, sizeof(ad));

		if ((r = object_read(v, n, i, obj)) < 0)
			goto out;
		intake_object_name(&n->m, i, name, sizeof(name));
		if (crypto_secretstream_xchacha20poly1305_pull(&ss, plain, &plen, &tag, obj, (size_t)o->size, ad,
							       adlen) != 0 ||
		    (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) != (i + 1 == n->m.n)) {
			r = err_set(EBADMSG, "night %s: object %s does not decrypt (altered, or not this night's)",
				    n->night, name);
			goto out;
		}
		{
			uint64_t take = s->payload_len - fed < plen ? s->payload_len - fed : plen;
			if ((r = unzstd(&b, plain, (size_t)take)) < 0)
				goto out;
			fed += take;
		}
	}
	if (fed != s->payload_len || !b.frame_done) {
		r = err_set(EBADMSG, "night %s: the payload ends early", n->night);
		goto out;
	}
	if (chain) {
		if ((r = rchain_end(chain, &b.size)) < 0) {
			r = err_set(EBADMSG, "night %s: %s", n->night, err_msg(r));
			goto out;
		}
		if (b.size != s->dump_size)
			r = err_set(EBADMSG, "night %s: its delta makes a dump of %llu bytes, not the %llu bytes "
					     "taken that night", n->night, (unsigned long long)b.size,
				    (unsigned long long)s->dump_size);
		goto out;
	}
	if (!verify)
		goto out;
	crypto_generichash_final(&b.h, d, 32);
	if (b.size != s->dump_size || sodium_memcmp(d, s->dump_digest, 32) != 0)
		r = err_set(EBADMSG, "night %s: the rebuilt dump (%llu bytes) is not the one taken that night "
				     "(%llu bytes; digests differ)", n->night, (unsigned long long)b.size,
			    (unsigned long long)s->dump_size);
out:
	ZSTD_freeDCtx(b.z);
	if (b.zout)
		sodium_memzero(b.zout, b.zout_len); /* the decompressed dump */
	free(b.zout);
	sodium_memzero(&ss, sizeof(ss));
	return r;
}

static void *fill_run(void *ctx)
{
	struct fill *f = ctx;
	int r = rebuild_night(f->v, f->n, &f->s, NULL, f->b, false, f->obj, f->plain);

	if (r < 0)
		snprintf(f->msg, sizeof(f->msg), "%s", err_msg(r));
	fill_set(f, f->filled, true, r);
	return NULL;
}

/* The night CHAIN stands at (N, whose secret is S) to B0's file or OUT,
 * checked against the digest of the original. */
static int write_night(struct rchain *chain, const struct intake_night *n, const struct intake_secret *s,
		       const struct rebuild *b0)
{
	struct rebuild b = { .out_fd = b0->out_fd, .out = b0->out, .out_ctx = b0->out_ctx, .hash = true };
	uint8_t d[32];
	int r;

	crypto_generichash_init(&b.h, NULL, 0, 32);
	if ((r = rchain_write(chain, to_file, &b)) < 0)
		return r;
	crypto_generichash_final(&b.h, d, 32);
	if (b.size != s->dump_size || sodium_memcmp(d, s->dump_digest, 32) != 0)
		return err_set(EBADMSG, "night %s: the rebuilt dump (%llu bytes) is not the one taken that night "
					"(%llu bytes; digests differ)", n->night, (unsigned long long)b.size,
			       (unsigned long long)s->dump_size);
	return 0;
}

/* The decryption key is opened (Argon2id at MODERATE limits: about 0.4 s
 * of one core, whatever the dump's size) by a thread, while the chain is
 * read and checked with the public key and --load creates the database. */
struct intake_keyjob {
	pthread_t th;
	char keyfile[4096];
	char pass[256];
	uint8_t sk[CLIENT_BOX_SK];
	int r;
	char msg[1024];          /* the thread's sentence for R (err_set's are thread-local) */
};

static void *key_run(void *ctx)
{
	struct intake_keyjob *j = ctx;

	if ((j->r = clientkey_load_secret(j->keyfile, j->pass, j->sk)) < 0)
		snprintf(j->msg, sizeof(j->msg), "%s", err_msg(j->r));
	sodium_memzero(j->pass, sizeof(j->pass));
	return NULL;
}

int intake_key_begin(const char *keyfile, const char *pfile, struct intake_keyjob **ret)
{
	struct intake_keyjob *j = sodium_malloc(sizeof(*j));
	int r;

	if (!j)
		return err_set(ENOMEM, "out of memory");
	memset(j, 0, sizeof(*j));
	snprintf(j->keyfile, sizeof(j->keyfile), "%s", keyfile);
	/* an opened key (intake open-key) has no passphrase to ask */
	if (!clientkey_is_opened(keyfile) && (r = cmd_read_passphrase(pfile, false, "Passphrase of the decryption key: ", j->pass, sizeof(j->pass))) < 0) {
		sodium_free(j);
		return r;
	}
	if ((r = pthread_create(&j->th, NULL, key_run, j)) != 0) {
		sodium_free(j);
		return err_set(r, "cannot start a thread: %s", strerror(r));
	}
	*ret = j;
	return 0;
}

int intake_key_end(struct intake_keyjob *j, uint8_t sk[CLIENT_BOX_SK])
{
	int r;

	pthread_join(j->th, NULL);
	r = j->r;
	if (r == 0)
		memcpy(sk, j->sk, CLIENT_BOX_SK);
	else
		r = err_set(-r, "%s", j->msg);
	sodium_free(j); /* wipes */
	return r;
}

int intake_rebuild(const struct intake_rebuild_req *q, struct intake_rebuilt *ret)
{
	const char *client = q->client, *night = q->night, *keyfile = q->keyfile, *to = q->to;
	struct intake_client c = { 0 };
	const struct intake_night *chain[400], *target = NULL;
	size_t nchain = 0;
	uint8_t sk[CLIENT_BOX_SK], pk[CLIENT_BOX_PK], *obj = NULL, *plain = NULL, *fobj = NULL, *fplain = NULL;
	char tmp[3][4200], url[4200];
	struct intake_keyjob *kj = q->key;
	int fds[3] = { -1, -1, -1 }, r;
	struct rchain *comp = NULL;
	struct vstore *v = NULL, *fv = NULL; /* fv: the full night's thread's */
	struct rebuild full, last; /* where the full night and the night asked for go */
	struct fill f = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	pthread_t fill_th;
	bool filling = false;
	uint64_t t0 = clock_mono_usec(), size = 0;

	if (!q->out && access(to, F_OK) == 0)
		return err_set(EEXIST, "%s exists already (restore never overwrites: choose another --to)", to);
	if ((r = intake_scan(q->dir, client, false, &c)) < 0)
		goto out;
	if (night) {
		for (size_t i = 0; i < c.n; i++)
			if (!strcmp(c.nights[i].night, night))
				target = &c.nights[i];
		if (!target) {
			r = err_set(ENOENT, "client %s has no night %s at the intake (bascule intake ls)", client, night);
			goto out;
		}
	} else if (!(target = intake_newest(&c))) {
		r = err_set(ENOENT, "client %s has no complete night to restore", client);
		goto out;
	}
	if (target->state != NIGHT_OK) {
		r = err_set(EBADMSG, "night %s of %s is %s: %s (an earlier night may still restore: see "
				     "bascule intake check)", target->night, client, intake_state_name(target->state),
			    target->problem);
		goto out;
	}
	for (const struct intake_night *n = target; n;) {
		if (nchain == sizeof(chain) / sizeof(chain[0])) {
			r = err_set(E2BIG, "the chain of night %s is longer than %zu nights", target->night, nchain);
			goto out;
		}
		chain[nchain++] = n;
		if (n->m.kind == INTAKE_FULL)
			break;
		{
			const struct intake_night *b = NULL;
			for (size_t i = 0; i < c.n; i++)
				if (!strcmp(c.nights[i].night, n->m.base_night))
					b = &c.nights[i];
			n = b;
		}
	}
	/* the key opens in a thread while the chain is checked (and, with
	 * PREPARE, the database is created) */
	if (!kj && (r = intake_key_begin(keyfile, q->pfile, &kj)) < 0)
		goto out;
	snprintf(url, sizeof(url), "%s/incoming", client);
	if ((r = intake_store_open(q->dir, url, &v)) < 0)
		goto out;
	if (!(obj = malloc(INTAKE_OBJECT_MAX + 1)) || !(plain = malloc(INTAKE_CHUNK))) {
		r = -ENOMEM;
		goto out;
	}
	if (q->out) {
		/* before anything is loaded: every object of the chain is the one signed */
		for (size_t k = 0; k < nchain; k++)
			for (uint32_t i = 0; i < chain[k]->m.n; i++)
				if ((r = object_read(v, chain[k], i, obj)) < 0)
					goto out;
		if (q->prepare && (r = q->prepare(q->ctx)) < 0)
			goto out;
	}
	r = intake_key_end(kj, sk);
	kj = NULL;
	if (r < 0)
		goto out;
	crypto_scalarmult_base(pk, sk);
	if (sodium_memcmp(pk, c.pub.box_pk, sizeof(pk)) != 0) {
		r = err_set(EKEYREJECTED, "%s is not the decryption key of client %s (key %s)", keyfile, client,
			    c.key_id);
		goto out;
	}
	if (q->out && (r = q->start(q->ctx, target->night)) < 0)
		goto out;
	/* 0: the full night, 1: the deltas' literal bytes, 2: the night asked
	 * for (to OUT instead with --load; a full night alone goes there at once) */
	for (int i = 0; i < (nchain == 1 ? 1 : 3) - (q->out ? 1 : 0); i++) {
		snprintf(tmp[i], sizeof(tmp[i]), "%s.restoring-%d", to, i);
		/* a stale file (an earlier run's) or a planted symlink is removed,
		 * never followed or written through */
		if (unlink(tmp[i]) < 0 && errno != ENOENT) {
			r = err_set(errno, "cannot remove %s: %s", tmp[i], strerror(errno));
			goto out;
		}
		if ((fds[i] = open(tmp[i], O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
			r = err_set(errno, "cannot create %s: %s", tmp[i], strerror(errno));
			goto out;
		}
	}
	full = (struct rebuild){ .out_fd = fds[0] };
	last = (struct rebuild){ .out_fd = q->out ? -1 : fds[nchain == 1 ? 0 : 2], .out = q->out, .out_ctx = q->ctx };
	if ((r = intake_secret_open(&chain[nchain - 1]->m, pk, sk, &f.s)) < 0)
		goto out;
	size = f.s.dump_size;
	if (nchain == 1) {
		/* a full night alone: checked against its own digest */
		if ((r = rebuild_night(v, chain[0], &f.s, NULL, &last, true, obj, plain)) < 0)
			goto out;
	} else {
		/* the full night decompressed by a thread (its own store and
		 * buffers) while the deltas are composed (they need only its
		 * size) and then while the night asked for is written from it:
		 * the chain is checked once, against its last night's digest */
		struct intake_secret s;
		if ((r = rchain_new(fds[0], f.s.dump_size, fds[1], &comp)) < 0 ||
		    (r = intake_store_open(q->dir, url, &fv)) < 0)
			goto out;
		if (!(fobj = malloc(INTAKE_OBJECT_MAX + 1)) || !(fplain = malloc(INTAKE_CHUNK))) {
			r = -ENOMEM;
			goto out;
		}
		f.v = fv;
		f.n = chain[nchain - 1];
		f.b = &full;
		f.obj = fobj;
		f.plain = fplain;
		full.fill = &f;
		if ((r = pthread_create(&fill_th, NULL, fill_run, &f)) != 0) {
			r = err_set(r, "cannot start a thread: %s", strerror(r));
			goto out;
		}
		filling = true;
		for (size_t k = nchain - 1; k-- > 0;) {
			if ((r = intake_secret_open(&chain[k]->m, pk, sk, &s)) < 0)
				goto out;
			r = rebuild_night(v, chain[k], &s, comp, &full, false, obj, plain);
			size = s.dump_size;
			if (k || r < 0)
				sodium_memzero(&s, sizeof(s));
			if (r < 0)
				goto out;
		}
		rchain_wait_full(comp, fill_wait, &f);
		r = write_night(comp, chain[0], &s, &last);
		sodium_memzero(&s, sizeof(s));
		if (r < 0)
			goto out;
		pthread_join(fill_th, NULL);
		filling = false;
		if (f.r < 0) {
			r = err_set(-f.r, "%s", f.msg);
			goto out;
		}
	}
	if (!q->out) {
		int l = nchain == 1 ? 0 : 2;
		if (fsync(fds[l]) < 0 || link(tmp[l], to) < 0) {
			r = err_set(errno, "cannot write %s: %s", to, strerror(errno));
			goto out;
		}
		fs_fsync_parent(to);
	}
	*ret = (struct intake_rebuilt){ .nights = nchain, .created = target->m.created, .size = size,
					.seconds = (double)(clock_mono_usec() - t0) / 1e6 };
	memcpy(ret->night, target->night, sizeof(ret->night));
	memcpy(ret->full, chain[nchain - 1]->night, sizeof(ret->full));
out:
	if (filling) { /* the writer failed: the thread is stopped */
		pthread_mutex_lock(&f.mu);
		f.stop = true;
		pthread_mutex_unlock(&f.mu);
		pthread_join(fill_th, NULL);
	}
	sodium_memzero(&f.s, sizeof(f.s));
	rchain_free(comp);
	for (int i = 0; i < 3; i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
			unlink(tmp[i]);
		}
	}
	vstore_close(v);
	vstore_close(fv);
	free(obj);
	free(fobj);
	if (plain)
		sodium_memzero(plain, INTAKE_CHUNK);
	if (fplain)
		sodium_memzero(fplain, INTAKE_CHUNK);
	free(plain);
	free(fplain);
	if (kj) {
		char e[1024];
		snprintf(e, sizeof(e), "%s", err_msg(r));
		(void)intake_key_end(kj, sk); /* joined and wiped; the first error stands */
		if (r < 0)
			err_set(-r, "%s", e);
	}
	sodium_memzero(sk, sizeof(sk));
	intake_client_free(&c);
	return r;
}

int intake_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client", required_argument, NULL, 'C' },
		{ "night", required_argument, NULL, 'n' },
		{ "key", required_argument, NULL, 'k' },
		{ "passphrase-file", required_argument, NULL, 'p' },
		{ "to", required_argument, NULL, 't' },
		{ "load", required_argument, NULL, 'l' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "replace", no_argument, NULL, 'r' },
		{ "tmp", required_argument, NULL, 'T' },
		{ "pg-bin", required_argument, NULL, 'B' },
		{ "owners", no_argument, NULL, 'O' },
		INTAKE_STORE_OPTS,
		{ 0 }
	};
	struct intake_rebuild_req q = { 0 };
	struct intake_load_opts lo = { 0 };
	struct intake_rebuilt got;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	bool jobs_given = false;
	char *end;
	int ch, r;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'C': q.client = optarg; break;
		case 'n': q.night = optarg; break;
		case 'k': q.keyfile = optarg; break;
		case 'p': q.pfile = optarg; break;
		case 't': q.to = optarg; break;
		case 'l': lo.url = optarg; break;
		case 'j':
			errno = 0;
			lo.jobs = (unsigned)strtoul(optarg, &end, 10);
			if (errno || *end || !optarg[0] || lo.jobs < 1 || lo.jobs > 64) {
				fprintf(stderr, "bascule intake restore: --jobs %s: want a number of jobs, 1 to 64\n",
					optarg);
				return EXIT_USAGE;
			}
			jobs_given = true;
			break;
		case 'r': lo.replace = true; break;
		case 'T': lo.tmpdir = optarg; break;
		case 'B': lo.pg_bin = optarg; break;
		case 'O': lo.owners = true; break;
		default:
			if (intake_store_opt(ch, optarg))
				break;
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !q.client || !q.keyfile || !q.to == !lo.url ||
	    (!lo.url && (jobs_given || lo.replace || lo.tmpdir || lo.pg_bin || lo.owners))) {
		fprintf(stderr, "Usage: bascule intake restore DIR --client NAME [--night DATE] --key FILE.key "
				"[--passphrase-file P] --to FILE\n"
				"       bascule intake restore DIR --client NAME [--night DATE] --key FILE.key "
				"[--passphrase-file P]\n"
				"                              --load URL [--jobs N] [--replace] [--tmp DIR] "
				"[--pg-bin DIR] [--owners]\n");
		return EXIT_USAGE;
	}
	q.dir = argv[optind];
	if (lo.url) {
		if (!jobs_given)
			lo.jobs = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (unsigned)ncpu;
		return intake_load(&q, &lo);
	}
	if ((r = intake_rebuild(&q, &got)) < 0)
		return cmd_fail("intake restore", r);
	printf("restored night %s of %s (%zu night%s from the full night %s) into %s, verified against the "
	       "signed digest of the original, in %.1f s\n", got.night, q.client, got.nights,
	       got.nights > 1 ? "s" : "", got.full, q.to, got.seconds);
	return EXIT_OK;
}

/* bascule intake open-key: FILE.key opened once (its passphrase, its
 * Argon2id) into a 0600 file that restore reads without them. */
int intake_open_key(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "passphrase-file", required_argument, NULL, 'p' },
		{ "out", required_argument, NULL, 'o' },
		{ 0 }
	};
	const char *keyfile = NULL, *pfile = NULL, *out = NULL;
	uint8_t sk[CLIENT_BOX_SK];
	char pass[256];
	int ch, r;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': keyfile = optarg; break;
		case 'p': pfile = optarg; break;
		case 'o': out = optarg; break;
		default: return EXIT_USAGE;
		}
	}
	if (optind != argc || !keyfile || !out) {
		fprintf(stderr, "Usage: bascule intake open-key --key FILE.key [--passphrase-file P] --out FILE\n");
		return EXIT_USAGE;
	}
	if (clientkey_is_opened(keyfile)) {
		fprintf(stderr, "bascule intake open-key: %s is already an opened key: give it to intake restore "
				"--key as it is\n", keyfile);
		return EXIT_USAGE;
	}
	if ((r = cmd_read_passphrase(pfile, false, "Passphrase of the decryption key: ", pass, sizeof(pass))) < 0)
		return cmd_fail("intake open-key", r);
	r = clientkey_load_secret(keyfile, pass, sk);
	sodium_memzero(pass, sizeof(pass));
	if (r == 0)
		r = clientkey_write_opened(out, sk);
	sodium_memzero(sk, sizeof(sk));
	if (r < 0)
		return cmd_fail("intake open-key", r);
	printf("opened %s into %s (mode 0600): the decryption secret in clear, for intake restore --key; keep it "
	       "on a tmpfs and remove it once the recovery is over\n", keyfile, out);
	return EXIT_OK;
}
