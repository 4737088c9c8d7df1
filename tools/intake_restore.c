/* intake_restore.c - bascule intake restore: rebuild a night's exact dump
 * with the client's decryption key (docs/hybrid.md, "Recovery").  The
 * night's chain is replayed from its full night: each night's objects are
 * checked against their signed digests, opened (secretstream, bound to
 * their client, night and position), decompressed and, for a delta,
 * patched onto the previous night's dump; every night rebuilt is checked
 * against the digest of the original sealed in its manifest.  Two dumps
 * at most are on disk at a time, next to --to; memory stays bounded. */
#include "cmd.h"
#include "clock.h"
#include "err.h"
#include "fsutil.h"
#include "intake_tool.h"
#include "rsync.h"
#include "vstore.h"
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

struct rebuild {
	int out_fd;
	crypto_generichash_state h;
	uint64_t size;
	struct rsync_job *patch; /* NULL for a full night */
	ZSTD_DCtx *z;
	uint8_t *zout;
	size_t zout_len;
	bool frame_done;
};

static int to_file(void *ctx, const uint8_t *p, size_t n)
{
	struct rebuild *b = ctx;
	int r = fs_write_full(b->out_fd, p, n);

	if (r < 0)
		return err_set(-r, "cannot write the restored dump: %s", strerror(-r));
	crypto_generichash_update(&b->h, p, n);
	b->size += n;
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
		if (out.pos && (r = b->patch ? rsync_job_feed(b->patch, b->zout, out.pos, false, to_file, b)
					     : to_file(b, b->zout, out.pos)) < 0)
			return r;
		if (left == 0)
			b->frame_done = true;
	}
	return 0;
}

/* Rebuild night N into OUT_FD from BASIS_FD (-1 for a full night). */
static int rebuild_night(struct vstore *v, const struct intake_night *n, const struct intake_secret *s,
			 int basis_fd, int out_fd, uint8_t *obj, uint8_t *plain)
{
	struct rebuild b = { .out_fd = out_fd };
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
	if (basis_fd >= 0 && (r = rsync_job_patch(basis_fd, &b.patch)) < 0)
		goto out;
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
		ssize_t got;

		intake_object_name(&n->m, i, name, sizeof(name));
		got = vstore_read(v, name, 0, obj, (size_t)o->size + 1);
		if (got >= 0)
			crypto_generichash(d, 32, obj, (size_t)got, NULL, 0);
		if (got != (ssize_t)o->size || sodium_memcmp(d, o->digest, 32) != 0) {
			r = err_set(EBADMSG, "night %s: object %s is %s", n->night, name,
				    got < 0 ? "MISSING" : got < (ssize_t)o->size ? "TRUNCATED" : "DAMAGED (its digest "
				    "differs from the signed one)");
			goto out;
		}
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
	if (b.patch && (r = rsync_job_feed(b.patch, NULL, 0, true, to_file, &b)) < 0) {
		r = err_set(EBADMSG, "night %s: %s", n->night, err_msg(r));
		goto out;
	}
	crypto_generichash_final(&b.h, d, 32);
	if (b.size != s->dump_size || sodium_memcmp(d, s->dump_digest, 32) != 0)
		r = err_set(EBADMSG, "night %s: the rebuilt dump (%llu bytes) is not the one taken that night "
				     "(%llu bytes; digests differ)", n->night, (unsigned long long)b.size,
			    (unsigned long long)s->dump_size);
out:
	rsync_job_free(b.patch);
	ZSTD_freeDCtx(b.z);
	if (b.zout)
		sodium_memzero(b.zout, b.zout_len); /* the decompressed dump */
	free(b.zout);
	sodium_memzero(&ss, sizeof(ss));
	return r;
}

int intake_rebuild(const struct intake_rebuild_req *q, struct intake_rebuilt *ret)
{
	const char *client = q->client, *night = q->night, *keyfile = q->keyfile, *to = q->to;
	struct intake_client c = { 0 };
	const struct intake_night *chain[400], *target = NULL;
	size_t nchain = 0;
	uint8_t sk[CLIENT_BOX_SK], pk[CLIENT_BOX_PK], *obj = NULL, *plain = NULL;
	char pass[256] = "", tmp[2][4200], url[4200];
	int fds[2] = { -1, -1 }, cur = -1, r;
	struct vstore *v = NULL;
	uint64_t t0 = clock_mono_usec(), size = 0;

	if (access(to, F_OK) == 0)
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
	if ((r = cmd_read_passphrase(q->pfile, false, "Passphrase of the decryption key: ", pass, sizeof(pass))) < 0 ||
	    (r = clientkey_load_secret(keyfile, pass, sk)) < 0)
		goto out;
	crypto_scalarmult_base(pk, sk);
	if (sodium_memcmp(pk, c.pub.box_pk, sizeof(pk)) != 0) {
		r = err_set(EKEYREJECTED, "%s is not the decryption key of client %s (key %s)", keyfile, client,
			    c.key_id);
		goto out;
	}
	snprintf(url, sizeof(url), "local:%s", c.dir);
	if ((r = vstore_open(url, NULL, &v)) < 0)
		goto out;
	if (!(obj = malloc(INTAKE_OBJECT_MAX + 1)) || !(plain = malloc(INTAKE_CHUNK))) {
		r = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < 2; i++)
		snprintf(tmp[i], sizeof(tmp[i]), "%s.restoring-%d", to, i);
	for (size_t k = nchain; k-- > 0;) {
		const struct intake_night *n = chain[k];
		struct intake_secret s;
		int next = cur == 0 ? 1 : 0;
		if ((r = intake_secret_open(&n->m, pk, sk, &s)) < 0)
			goto out;
		if (fds[next] >= 0)
			close(fds[next]);
		/* a stale file (an earlier run's) or a planted symlink is removed,
		 * never followed or written through */
		if (unlink(tmp[next]) < 0 && errno != ENOENT) {
			r = err_set(errno, "cannot remove %s: %s", tmp[next], strerror(errno));
			goto out;
		}
		if ((fds[next] = open(tmp[next], O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
			r = err_set(errno, "cannot create %s: %s", tmp[next], strerror(errno));
			goto out;
		}
		r = rebuild_night(v, n, &s, cur >= 0 ? fds[cur] : -1, fds[next], obj, plain);
		size = s.dump_size;
		sodium_memzero(&s, sizeof(s));
		if (r < 0)
			goto out;
		cur = next;
	}
	if ((!q->scratch && fsync(fds[cur]) < 0) || link(tmp[cur], to) < 0) {
		r = err_set(errno, "cannot write %s: %s", to, strerror(errno));
		goto out;
	}
	if (!q->scratch)
		fs_fsync_parent(to);
	*ret = (struct intake_rebuilt){ .nights = nchain, .created = target->m.created, .size = size,
					.seconds = (double)(clock_mono_usec() - t0) / 1e6 };
	memcpy(ret->night, target->night, sizeof(ret->night));
	memcpy(ret->full, chain[nchain - 1]->night, sizeof(ret->full));
out:
	for (int i = 0; i < 2; i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
			unlink(tmp[i]);
		}
	}
	vstore_close(v);
	free(obj);
	if (plain)
		sodium_memzero(plain, INTAKE_CHUNK);
	free(plain);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(pass, sizeof(pass));
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
		default: return EXIT_USAGE;
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
