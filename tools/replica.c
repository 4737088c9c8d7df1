/* replica.c - journaled apply, recovery, rollback and verify of replicas. */
#include "replica.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <dirent.h>
#include <signal.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define J_MAGIC "BSCJRNL1"
#define S_MAGIC "BSCSTAT1"
#define MAP_MAGIC "BSCRMAP1"
#define MAP_HDR 64
#define J_REDO 1
#define J_UNDO 2
#define REC_EXTENT 1
#define REC_END 2
#define JBUF (4u << 20)
#define RPATH 8192

static uint64_t now_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- paths ---- */

static int gpath(const struct replica *r, char *buf, size_t len, const char *group,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int gpath(const struct replica *r, char *buf, size_t len, const char *group,
		 const char *fmt, ...)
{
	char tail[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(tail, sizeof(tail), fmt, ap);
	va_end(ap);
	n = snprintf(buf, len, "%s/groups/%s%s%s", r->meta, group, tail[0] ? "/" : "", tail);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

static int replica_file(const struct replica *r, char *buf, size_t len, const char *group,
			const char *source)
{
	int n = snprintf(buf, len, "%s/%s/%s", r->root, group, source);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

#define SEEDED 2 /* jsource.exists in a redo: the source comes from its seed file */

static int seed_paths(struct replica *r, const char *group, const char *source, char *file,
		      char *map, size_t len)
{
	int n = snprintf(file, len, "%s/%s/.%s.seed", r->root, group, source);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return gpath(r, map, len, group, "%s.map.seed", source);
}

/* ---- group state ---- */

/* Files written by root (bascule replica run by an operator or a drill) keep
 * the replica's owner, so the receiving user can go on writing them. */
static int keep_owner(const struct replica *r, const char *path)
{
	struct stat st;

	if (geteuid() != 0 || stat(r->meta, &st) < 0 || st.st_uid == 0)
		return 0;
	if (lchown(path, st.st_uid, st.st_gid) < 0)
		return err_set(errno, "cannot give %s back to the replica's owner (uid %u): %s", path,
			       (unsigned)st.st_uid, strerror(errno));
	return 0;
}

/* The apply lock. */
/* HOW is LOCK_EX (the receiver and repair: replica files or state change)
 * or LOCK_SH (a live reader).  Exclusive holds nest; a receiver that has to
 * wait for a reader says so once (the daemon logs the receiver's stderr). */
static int apply_lock(struct replica *r, int how)
{
	char path[RPATH];

	if (how == LOCK_EX && r->apply_depth++ > 0)
		return 0;
	if (r->apply_fd < 0) {
		snprintf(path, sizeof(path), "%s/apply.lock", r->meta);
		r->apply_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (r->apply_fd < 0)
			r->apply_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (r->apply_fd < 0) {
			if (how == LOCK_EX)
				r->apply_depth--;
			return err_set(errno, "cannot open %s: %s", path, strerror(errno));
		}
		keep_owner(r, path);
	}
	if (flock(r->apply_fd, how | LOCK_NB) == 0)
		return 0;
	if (how == LOCK_EX)
		log_info("waiting for a reader of the replica (bascule replica verify or clone) to finish");
	while (flock(r->apply_fd, how) < 0)
		if (errno != EINTR) {
			if (how == LOCK_EX)
				r->apply_depth--;
			return err_set(errno, "cannot lock %s/apply.lock: %s", r->meta, strerror(errno));
		}
	return 0;
}

static void apply_unlock(struct replica *r, int how)
{
	if (r->apply_fd < 0 || (how == LOCK_EX && --r->apply_depth > 0))
		return;
	flock(r->apply_fd, LOCK_UN);
}

static int state_write(struct replica *r, const struct rstate *s)
{
	char path[RPATH];
	uint8_t sum[32];
	struct wbuf b;
	int rc;

	wbuf_init(&b, 1 << 20);
	rc = wbuf_put_bytes(&b, S_MAGIC, 8);
	if (!rc) rc = wbuf_put_str(&b, s->group);
	if (!rc) rc = wbuf_put_u64(&b, s->epoch);
	if (!rc) rc = wbuf_put_u64(&b, s->cut_time);
	if (!rc) rc = wbuf_put_u64(&b, s->applied_time);
	if (!rc) rc = wbuf_put_u8(&b, s->flags);
	if (!rc) rc = wbuf_put_u64(&b, s->pending_undo);
	if (!rc) rc = wbuf_put_str(&b, s->alarm);
	if (!rc) {
		rc = wbuf_put_u32(&b, s->n_sources);
		for (uint32_t i = 0; !rc && i < s->n_sources; i++) {
			const struct state_source *x = &s->sources[i];
			rc = wbuf_put_str(&b, x->name);
			if (!rc) rc = wbuf_put_u64(&b, x->epoch);
			if (!rc) rc = wbuf_put_u64(&b, x->size);
			if (!rc) rc = wbuf_put_u8(&b, x->status);
			if (!rc) rc = wbuf_put_bytes(&b, x->digest, DIGEST_BYTES);
		}
	}
	if (!rc) {
		crypto_generichash(sum, sizeof(sum), b.p, b.len, NULL, 0);
		rc = wbuf_put_bytes(&b, sum, sizeof(sum));
	}
	if (!rc && !(rc = gpath(r, path, sizeof(path), s->group, "state")))
		rc = fs_write_atomic(path, b.p, b.len, 0600);
	if (!rc)
		rc = keep_owner(r, path);
	wbuf_free(&b);
	return rc;
}

int replica_load_state(struct replica *r, const char *group, struct rstate *ret)
{
	char path[RPATH], *text = NULL;
	uint8_t sum[32], magic[8];
	struct rstate s;
	struct rbuf b;
	size_t len;
	int rc;

	if ((rc = gpath(r, path, sizeof(path), group, "state")) < 0)
		return rc;
	if (access(path, F_OK) < 0)
		return -ENOENT;
	if ((rc = fs_read_all(path, 1 << 20, &text, &len)) < 0)
		return rc;
	memset(&s, 0, sizeof(s));
	rc = err_set(EBADMSG, "replica state %s is corrupt; run 'bascule replica verify' and "
			      "restore the group from the primary", path);
	if (len < 8 + 32)
		goto out;
	crypto_generichash(sum, sizeof(sum), (uint8_t *)text, len - 32, NULL, 0);
	if (sodium_memcmp(sum, text + len - 32, 32) != 0)
		goto out;
	b = rbuf_init(text, len - 32);
	if (rbuf_get_bytes(&b, magic, 8) < 0 || memcmp(magic, S_MAGIC, 8) != 0 ||
	    rbuf_get_str(&b, s.group, sizeof(s.group)) < 0 || rbuf_get_u64(&b, &s.epoch) < 0 ||
	    rbuf_get_u64(&b, &s.cut_time) < 0 || rbuf_get_u64(&b, &s.applied_time) < 0 ||
	    rbuf_get_u8(&b, &s.flags) < 0 || rbuf_get_u64(&b, &s.pending_undo) < 0 ||
	    rbuf_get_str(&b, s.alarm, sizeof(s.alarm)) < 0 || rbuf_get_u32(&b, &s.n_sources) < 0 ||
	    s.n_sources > PROTO_MAX_SOURCES)
		goto out;
	for (uint32_t i = 0; i < s.n_sources; i++) {
		struct state_source *x = &s.sources[i];
		if (rbuf_get_str(&b, x->name, sizeof(x->name)) < 0 || !name_ok(x->name) ||
		    rbuf_get_u64(&b, &x->epoch) < 0 || rbuf_get_u64(&b, &x->size) < 0 ||
		    rbuf_get_u8(&b, &x->status) < 0 || rbuf_get_bytes(&b, x->digest, DIGEST_BYTES) < 0)
			goto out;
	}
	if (rbuf_expect_end(&b) < 0 || strcmp(s.group, group) != 0)
		goto out;
	*ret = s;
	rc = 0;
out:
	free(text);
	return rc;
}

static struct state_source *state_find(struct rstate *s, const char *name)
{
	for (uint32_t i = 0; i < s->n_sources; i++)
		if (strcmp(s->sources[i].name, name) == 0)
			return &s->sources[i];
	return NULL;
}

/* ---- journal files (redo and undo share one format) ---- */

struct jsource {
	char name[NAME_MAX_LEN + 1];
	uint64_t epoch, size;
	uint8_t status, exists;
	uint8_t digest[DIGEST_BYTES];
};

struct jheader {
	uint8_t kind;
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch;       /* redo: the new epoch; undo: the epoch it reverts */
	uint64_t prev_epoch;  /* the epoch before it */
	uint64_t cut_time;    /* redo: new; undo: of prev_epoch */
	uint64_t applied_time;/* undo: when prev_epoch was applied */
	uint8_t flags;
	uint32_t n_sources;
	struct jsource sources[PROTO_MAX_SOURCES];
};

struct jwriter {
	int fd;
	char path[RPATH];
	struct wbuf buf;
	crypto_generichash_state cs;
	uint64_t n_records;
};

static int jw_flush(struct jwriter *w)
{
	int rc;

	if (!w->buf.len)
		return 0;
	crypto_generichash_update(&w->cs, w->buf.p, w->buf.len);
	rc = fs_write_full(w->fd, w->buf.p, w->buf.len);
	wbuf_reset(&w->buf);
	return rc;
}

static int jw_open(struct jwriter *w, const char *path, const struct jheader *h)
{
	int rc;

	memset(w, 0, sizeof(*w));
	snprintf(w->path, sizeof(w->path), "%s", path);
	wbuf_init(&w->buf, JBUF + 64);
	crypto_generichash_init(&w->cs, NULL, 0, 32);
	w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0)
		return err_set(errno, "cannot create %s: %s", path, strerror(errno));
	rc = wbuf_put_bytes(&w->buf, J_MAGIC, 8);
	if (!rc) rc = wbuf_put_u8(&w->buf, h->kind);
	if (!rc) rc = wbuf_put_str(&w->buf, h->group);
	if (!rc) rc = wbuf_put_u64(&w->buf, h->epoch);
	if (!rc) rc = wbuf_put_u64(&w->buf, h->prev_epoch);
	if (!rc) rc = wbuf_put_u64(&w->buf, h->cut_time);
	if (!rc) rc = wbuf_put_u64(&w->buf, h->applied_time);
	if (!rc) rc = wbuf_put_u8(&w->buf, h->flags);
	if (!rc) rc = wbuf_put_u32(&w->buf, h->n_sources);
	for (uint32_t i = 0; !rc && i < h->n_sources; i++) {
		const struct jsource *s = &h->sources[i];
		rc = wbuf_put_str(&w->buf, s->name);
		if (!rc) rc = wbuf_put_u64(&w->buf, s->epoch);
		if (!rc) rc = wbuf_put_u64(&w->buf, s->size);
		if (!rc) rc = wbuf_put_u8(&w->buf, s->status);
		if (!rc) rc = wbuf_put_u8(&w->buf, s->exists);
		if (!rc) rc = wbuf_put_bytes(&w->buf, s->digest, DIGEST_BYTES);
	}
	return rc;
}

static int jw_record(struct jwriter *w, uint32_t src, uint64_t off, uint32_t len, const void *data)
{
	int rc;

	if (w->buf.len + len + 32 > JBUF && (rc = jw_flush(w)) < 0)
		return rc;
	rc = wbuf_put_u8(&w->buf, REC_EXTENT);
	if (!rc) rc = wbuf_put_u32(&w->buf, src);
	if (!rc) rc = wbuf_put_u64(&w->buf, off);
	if (!rc) rc = wbuf_put_u32(&w->buf, len);
	if (!rc) rc = wbuf_put_u8(&w->buf, data ? 1 : 0);
	if (!rc && data)
		rc = wbuf_put_bytes(&w->buf, data, len);
	w->n_records++;
	return rc;
}

/* Trailer, flush, fsync.  The file is complete and durable on success. */
static int jw_finish(struct jwriter *w)
{
	uint8_t sum[32];
	int rc;

	rc = wbuf_put_u8(&w->buf, REC_END);
	if (!rc) rc = wbuf_put_u64(&w->buf, w->n_records);
	if (!rc) rc = jw_flush(w);
	if (!rc) {
		crypto_generichash_final(&w->cs, sum, sizeof(sum));
		rc = fs_write_full(w->fd, sum, sizeof(sum));
	}
	if (!rc && fsync(w->fd) < 0)
		rc = -errno;
	if (rc < 0)
		rc = err_set(rc, "cannot write journal %s: %s", w->path, strerror(-rc));
	return rc;
}

static void jw_close(struct jwriter *w, bool remove)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (remove)
		unlink(w->path);
	wbuf_free(&w->buf);
}

struct jreader {
	int fd;
	const char *path;
	uint8_t *buf;
	size_t len, off;
	uint64_t pos, end; /* file offset of buf[len]; offset where the checksum starts */
};

/* Make at least N bytes available at buf+off (N <= JBUF). */
static int jr_need(struct jreader *j, size_t n)
{
	if (j->len - j->off >= n)
		return 0;
	memmove(j->buf, j->buf + j->off, j->len - j->off);
	j->len -= j->off;
	j->off = 0;
	while (j->len < n) {
		/* Read what is needed, at least 256 KiB (headers stay cheap to read). */
		size_t want = n - j->len > (256u << 10) ? n - j->len : (256u << 10);
		if (want > JBUF + 64 - j->len)
			want = JBUF + 64 - j->len;
		ssize_t got;
		if (j->pos + want > j->end)
			want = (size_t)(j->end - j->pos);
		if (want == 0)
			return -EBADMSG;
		got = fs_pread_full(j->fd, j->buf + j->len, want, j->pos);
		if (got <= 0)
			return got < 0 ? (int)got : -EBADMSG;
		j->len += (size_t)got;
		j->pos += (uint64_t)got;
	}
	return 0;
}

/* Open a journal; with VERIFY, check its checksum over the whole file
 * (journals read back after a crash or for a rollback; one this process
 * has just written and fsync'd is trusted). */
static int jr_open_mode(struct jreader *j, const char *path, struct jheader *h, bool verify)
{
	crypto_generichash_state cs;
	uint8_t sum[32], want[32], magic[8];
	struct stat st;
	struct rbuf b;
	int rc = 0;

	memset(j, 0, sizeof(*j));
	j->path = path;
	j->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (j->fd < 0)
		return err_set(errno, "cannot open journal %s: %s", path, strerror(errno));
	j->buf = malloc(JBUF + 64);
	if (!j->buf)
		return -ENOMEM;
	if (fstat(j->fd, &st) < 0 || st.st_size < 40)
		return err_set(EBADMSG, "journal %s is truncated", path);
	j->end = (uint64_t)st.st_size - 32;
	crypto_generichash_init(&cs, NULL, 0, 32);
	for (uint64_t off = 0; verify && off < j->end;) {
		size_t n = j->end - off > JBUF ? JBUF : (size_t)(j->end - off);
		ssize_t got = fs_pread_full(j->fd, j->buf, n, off);
		if (got != (ssize_t)n)
			return err_set(EIO, "cannot read journal %s", path);
		crypto_generichash_update(&cs, j->buf, n);
		off += n;
	}
	crypto_generichash_final(&cs, sum, sizeof(sum));
	if (verify && (fs_pread_full(j->fd, want, 32, j->end) != 32 || sodium_memcmp(sum, want, 32) != 0))
		return err_set(EBADMSG, "journal %s fails its checksum (storage corruption?)", path);

	memset(h, 0, sizeof(*h));
	if ((rc = jr_need(j, 8 + 1 + 2)) < 0)
		return err_set(EBADMSG, "journal %s: bad header", path);
	/* The header is small: parse from what is buffered (at least 64 KiB or all). */
	jr_need(j, j->end < 65536 ? (size_t)j->end : 65536);
	b = rbuf_init(j->buf + j->off, j->len - j->off);
	if (rbuf_get_bytes(&b, magic, 8) < 0 || memcmp(magic, J_MAGIC, 8) != 0 ||
	    rbuf_get_u8(&b, &h->kind) < 0 || rbuf_get_str(&b, h->group, sizeof(h->group)) < 0 ||
	    rbuf_get_u64(&b, &h->epoch) < 0 || rbuf_get_u64(&b, &h->prev_epoch) < 0 ||
	    rbuf_get_u64(&b, &h->cut_time) < 0 || rbuf_get_u64(&b, &h->applied_time) < 0 ||
	    rbuf_get_u8(&b, &h->flags) < 0 || rbuf_get_u32(&b, &h->n_sources) < 0 ||
	    h->n_sources > PROTO_MAX_SOURCES)
		return err_set(EBADMSG, "journal %s: bad header", path);
	for (uint32_t i = 0; i < h->n_sources; i++) {
		struct jsource *s = &h->sources[i];
		if (rbuf_get_str(&b, s->name, sizeof(s->name)) < 0 || !name_ok(s->name) ||
		    rbuf_get_u64(&b, &s->epoch) < 0 || rbuf_get_u64(&b, &s->size) < 0 ||
		    rbuf_get_u8(&b, &s->status) < 0 || rbuf_get_u8(&b, &s->exists) < 0 ||
		    rbuf_get_bytes(&b, s->digest, DIGEST_BYTES) < 0)
			return err_set(EBADMSG, "journal %s: bad header", path);
	}
	j->off += b.off;
	return 0;
}

/* Next record: 1 with fields set (DATA NULL for zeros), 0 at the end. */
static int jr_next(struct jreader *j, uint32_t *src, uint64_t *off, uint32_t *len,
		   const uint8_t **data)
{
	struct rbuf b;
	uint8_t type, kind;

	if (jr_need(j, 1) < 0)
		return -EBADMSG;
	type = j->buf[j->off];
	if (type == REC_END)
		return 0;
	if (type != REC_EXTENT || jr_need(j, 18) < 0)
		return err_set(EBADMSG, "journal %s: bad record", j->path);
	b = rbuf_init(j->buf + j->off + 1, 17);
	rbuf_get_u32(&b, src);
	rbuf_get_u64(&b, off);
	rbuf_get_u32(&b, len);
	rbuf_get_u8(&b, &kind);
	if (*len > PROTO_MAX_EXTENT || kind > 1)
		return err_set(EBADMSG, "journal %s: bad record", j->path);
	j->off += 18;
	if (kind == 0) {
		*data = NULL;
		return 1;
	}
	if (jr_need(j, *len) < 0)
		return err_set(EBADMSG, "journal %s: truncated record", j->path);
	*data = j->buf + j->off;
	j->off += *len;
	return 1;
}

static void jr_close(struct jreader *j)
{
	if (j->fd > 0)
		close(j->fd);
	free(j->buf);
	j->buf = NULL;
}

/* ---- maps: the leaf hashes of each replica file ---- */

struct target_file {
	int fd, map_fd;
	uint64_t size;
	uint8_t secret[LEAF_SECRET_BYTES];
};

static uint64_t nblocks(uint64_t size)
{
	return (size + PROTO_BLOCK - 1) / PROTO_BLOCK;
}

static int tf_open(struct replica *r, const char *group, const char *source, bool create,
		   struct target_file *tf)
{
	char path[RPATH];
	int rc;

	memset(tf, 0, sizeof(*tf));
	tf->fd = tf->map_fd = -1;
	if (!r->key)
		return err_set(ENOKEY, "group %s needs its site key for this (give --key FILE)", group);
	hash_leaf_secret(r->key, group, source, tf->secret);
	if ((rc = replica_file(r, path, sizeof(path), group, source)) < 0)
		return rc;
	if (create) {
		char dir[RPATH];
		snprintf(dir, sizeof(dir), "%s/%s", r->root, group);
		if ((rc = fs_mkdir_p(dir, 0700)) < 0)
			return rc;
	}
	tf->fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
	if (tf->fd < 0)
		return err_set(errno, "cannot open replica %s: %s", path, strerror(errno));
	if ((rc = fs_fd_size(tf->fd, &tf->size)) < 0)
		return rc;
	if ((rc = gpath(r, path, sizeof(path), group, "%s.map", source)) < 0)
		return rc;
	tf->map_fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT, 0600);
	if (tf->map_fd < 0)
		return err_set(errno, "cannot open %s: %s", path, strerror(errno));
	return 0;
}

static void tf_close(struct target_file *tf)
{
	if (tf->fd >= 0)
		close(tf->fd);
	if (tf->map_fd >= 0)
		close(tf->map_fd);
	tf->fd = tf->map_fd = -1;
	sodium_memzero(tf->secret, sizeof(tf->secret));
}

static const uint8_t zero_block[PROTO_BLOCK];

/* Recompute leaves of blocks [first, first+count) from the replica file. */
static int tf_rehash(struct target_file *tf, uint64_t first, uint64_t count, uint64_t size)
{
	uint8_t *buf = malloc(256 * PROTO_BLOCK), leaves[256 * LEAF_BYTES];
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	while (count) {
		uint64_t n = count > 256 ? 256 : count, off = first * PROTO_BLOCK;
		size_t want = (size_t)(n * PROTO_BLOCK);
		ssize_t got;
		if (off + want > size)
			want = (size_t)(size - off);
		got = fs_pread_full(tf->fd, buf, want, off);
		if (got < 0) {
			rc = (int)got;
			break;
		}
		if ((size_t)got < want)
			memset(buf + got, 0, want - (size_t)got);
		for (uint64_t i = 0; i < n; i++) {
			size_t bl = want - i * PROTO_BLOCK > PROTO_BLOCK ? PROTO_BLOCK : want - i * PROTO_BLOCK;
			hash_leaf(tf->secret, buf + i * PROTO_BLOCK, bl, leaves + i * LEAF_BYTES);
		}
		rc = fs_pwrite_full(tf->map_fd, leaves, (size_t)n * LEAF_BYTES,
				    MAP_HDR + first * LEAF_BYTES);
		if (rc < 0)
			break;
		first += n;
		count -= n;
	}
	free(buf);
	return rc;
}

/* Write one record into the replica and its leaves into the map.  FINAL_SIZE
 * is the size the file has once the journal is applied. */
static int tf_write(struct target_file *tf, uint64_t off, uint32_t len, const uint8_t *data,
		    uint64_t final_size)
{
	uint8_t leaves[(PROTO_MAX_EXTENT / PROTO_BLOCK) * LEAF_BYTES];
	uint32_t nb = (len + PROTO_BLOCK - 1) / PROTO_BLOCK;
	int rc;

	if (data)
		rc = fs_pwrite_full(tf->fd, data, len, off);
	else {
		rc = fallocate(tf->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, len) < 0
			     ? -errno : 0;
		if (rc == -EOPNOTSUPP) {
			rc = 0;
			for (uint32_t o = 0; !rc && o < len; o += PROTO_BLOCK)
				rc = fs_pwrite_full(tf->fd, zero_block,
						    len - o < PROTO_BLOCK ? len - o : PROTO_BLOCK, off + o);
		}
	}
	if (rc < 0)
		return err_set(rc, "cannot write replica: %s", strerror(-rc));
	for (uint32_t i = 0; i < nb; i++) {
		uint64_t bo = off + (uint64_t)i * PROTO_BLOCK;
		size_t bl = PROTO_BLOCK;
		if (bo + bl > final_size)
			bl = (size_t)(final_size - bo);
		hash_leaf(tf->secret, data ? data + (size_t)i * PROTO_BLOCK : zero_block, bl,
			  leaves + i * LEAF_BYTES);
	}
	rc = fs_pwrite_full(tf->map_fd, leaves, (size_t)nb * LEAF_BYTES,
			    MAP_HDR + (off / PROTO_BLOCK) * LEAF_BYTES);
	return rc < 0 ? err_set(rc, "cannot write replica map: %s", strerror(-rc)) : 0;
}

/* Set the file and map to SIZE (growth reads as zeros) and fix the leaves
 * of the blocks whose content the size change altered. */
static int tf_resize(struct target_file *tf, uint64_t size)
{
	uint64_t old_blocks, new_blocks;
	uint8_t hdr[MAP_HDR] = { 0 };
	struct stat st;
	int rc;

	if (fstat(tf->map_fd, &st) < 0)
		return -errno;
	old_blocks = st.st_size > MAP_HDR ? ((uint64_t)st.st_size - MAP_HDR) / LEAF_BYTES : 0;
	new_blocks = nblocks(size);
	if (ftruncate(tf->fd, (off_t)size) < 0)
		return err_set(errno, "cannot resize replica: %s", strerror(errno));
	if (ftruncate(tf->map_fd, (off_t)(MAP_HDR + new_blocks * LEAF_BYTES)) < 0)
		return err_set(errno, "cannot resize replica map: %s", strerror(errno));
	memcpy(hdr, MAP_MAGIC, 8);
	put_be64(hdr + 8, size);
	if ((rc = fs_pwrite_full(tf->map_fd, hdr, sizeof(hdr), 0)) < 0)
		return rc;
	/* New blocks read as zeros; the old and new last blocks may be partial. */
	if (new_blocks > old_blocks) {
		uint64_t first = old_blocks ? old_blocks - 1 : 0;
		if ((rc = tf_rehash(tf, first, new_blocks - first, size)) < 0)
			return rc;
	} else if (new_blocks) {
		if ((rc = tf_rehash(tf, new_blocks - 1, 1, size)) < 0)
			return rc;
	}
	tf->size = size;
	return 0;
}

static int tf_sync(struct target_file *tf)
{
	if (fdatasync(tf->fd) < 0 || fdatasync(tf->map_fd) < 0)
		return err_set(errno, "cannot flush replica to disk: %s", strerror(errno));
	return 0;
}

/* BLAKE2b digest of a replica from its map. */
static int tf_digest(struct target_file *tf, uint64_t size, uint8_t ret[DIGEST_BYTES])
{
	uint64_t n = nblocks(size), off = 0;
	uint8_t *buf = malloc(1 << 20);
	struct digest_ctx c;

	if (!buf)
		return -ENOMEM;
	hash_digest_init(&c, size, PROTO_BLOCK);
	while (off < n) {
		size_t k = n - off > (1 << 20) / LEAF_BYTES ? (1 << 20) / LEAF_BYTES : (size_t)(n - off);
		if (fs_pread_full(tf->map_fd, buf, k * LEAF_BYTES, MAP_HDR + off * LEAF_BYTES) !=
		    (ssize_t)(k * LEAF_BYTES)) {
			free(buf);
			return err_set(EIO, "replica map is short");
		}
		hash_digest_leaves(&c, buf, k);
		off += k;
	}
	hash_digest_final(&c, ret);
	free(buf);
	return 0;
}

/* Apply a journal (redo or undo) to the replicas of its group: idempotent,
 * so recovery may run it again after a crash. */
static int journal_apply_mode(struct replica *r, const char *path, struct jheader *h, bool verify)
{
	struct target_file tfs[PROTO_MAX_SOURCES];
	struct jreader j;
	uint32_t src, len;
	uint64_t off;
	const uint8_t *data;
	int rc, k;

	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		tfs[i].fd = tfs[i].map_fd = -1;
	rc = jr_open_mode(&j, path, h, verify);
	if (rc < 0)
		goto out;
	for (uint32_t i = 0; i < h->n_sources; i++) {
		if (h->kind == J_REDO && h->sources[i].exists == SEEDED) {
			/* Put the seed in place (done already if we crashed after). */
			char f[RPATH], mp[RPATH], rf[RPATH], rm[RPATH];
			if ((rc = seed_paths(r, h->group, h->sources[i].name, f, mp, sizeof(f))) < 0 ||
			    (rc = replica_file(r, rf, sizeof(rf), h->group, h->sources[i].name)) < 0 ||
			    (rc = gpath(r, rm, sizeof(rm), h->group, "%s.map", h->sources[i].name)) < 0)
				goto out;
			if (access(mp, F_OK) == 0 && rename(mp, rm) < 0) {
				rc = err_set(errno, "cannot put %s in place: %s", mp, strerror(errno));
				goto out;
			}
			if (access(f, F_OK) == 0 && rename(f, rf) < 0) {
				rc = err_set(errno, "cannot put %s in place: %s", f, strerror(errno));
				goto out;
			}
			fs_fsync_parent(rf);
			fs_fsync_parent(rm);
		}
		if (!h->sources[i].exists)
			continue;
		if ((rc = tf_open(r, h->group, h->sources[i].name, true, &tfs[i])) < 0)
			goto out;
	}
	while ((k = jr_next(&j, &src, &off, &len, &data)) == 1) {
		if (src >= h->n_sources || !h->sources[src].exists ||
		    off + len > h->sources[src].size) {
			rc = err_set(EBADMSG, "journal %s: record out of bounds", path);
			goto out;
		}
		if ((rc = tf_write(&tfs[src], off, len, data, h->sources[src].size)) < 0)
			goto out;
	}
	if (k < 0) {
		rc = k;
		goto out;
	}
	for (uint32_t i = 0; i < h->n_sources; i++) {
		char p[RPATH];
		if (!h->sources[i].exists) {
			/* Undo of a source that the epoch created: remove it. */
			if (replica_file(r, p, sizeof(p), h->group, h->sources[i].name) == 0)
				unlink(p);
			if (gpath(r, p, sizeof(p), h->group, "%s.map", h->sources[i].name) == 0)
				unlink(p);
			continue;
		}
		if ((rc = tf_resize(&tfs[i], h->sources[i].size)) < 0 || (rc = tf_sync(&tfs[i])) < 0)
			goto out;
	}
	rc = 0;
out:
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		tf_close(&tfs[i]);
	jr_close(&j);
	return rc;
}

static int journal_apply(struct replica *r, const char *path, struct jheader *h)
{
	return journal_apply_mode(r, path, h, true);
}

/* Check the digests of the sources named in H against their maps.  Returns 0
 * or -EBADMSG with a sentence naming the first mismatching source. */
static int check_digests(struct replica *r, const struct jheader *h)
{
	for (uint32_t i = 0; i < h->n_sources; i++) {
		struct target_file tf;
		uint8_t d[DIGEST_BYTES];
		char a[17], b[17];
		int rc;

		if (!h->sources[i].exists)
			continue;
		if ((rc = tf_open(r, h->group, h->sources[i].name, false, &tf)) < 0)
			return rc;
		rc = tf_digest(&tf, h->sources[i].size, d);
		tf_close(&tf);
		if (rc < 0)
			return rc;
		if (sodium_memcmp(d, h->sources[i].digest, DIGEST_BYTES) != 0) {
			hash_hex(d, 8, a);
			hash_hex(h->sources[i].digest, 8, b);
			return err_set(EBADMSG,
				       "digest mismatch on %s/%s at epoch %llu: replica %s…, primary %s…",
				       h->group, h->sources[i].name, (unsigned long long)h->epoch, a, b);
		}
	}
	return 0;
}

/* The state that an undo journal restores. */
static void state_from_undo(struct rstate *s, const struct jheader *h)
{
	struct rstate n;

	memset(&n, 0, sizeof(n));
	memcpy(n.group, h->group, sizeof(n.group));
	n.epoch = h->prev_epoch;
	n.cut_time = h->cut_time;
	n.applied_time = h->applied_time;
	n.flags = h->flags;
	memcpy(n.alarm, s->alarm, sizeof(n.alarm));
	for (uint32_t i = 0; i < h->n_sources; i++) {
		struct state_source *x;
		if (!h->sources[i].exists)
			continue;
		x = &n.sources[n.n_sources++];
		memcpy(x->name, h->sources[i].name, sizeof(x->name));
		x->epoch = h->sources[i].epoch;
		x->size = h->sources[i].size;
		x->status = h->sources[i].status;
		memcpy(x->digest, h->sources[i].digest, DIGEST_BYTES);
	}
	/* Sources the epoch did not touch keep their state. */
	for (uint32_t i = 0; i < s->n_sources; i++) {
		bool in = false;
		for (uint32_t k = 0; k < h->n_sources; k++)
			in |= strcmp(h->sources[k].name, s->sources[i].name) == 0;
		if (!in && n.n_sources < PROTO_MAX_SOURCES)
			n.sources[n.n_sources++] = s->sources[i];
	}
	*s = n;
}

/* Apply undo K of GROUP and step the state back; crash-safe through
 * pending_undo. */
static int undo_one(struct replica *r, struct rstate *s, uint64_t k)
{
	char path[RPATH];
	struct jheader h;
	int rc;

	if ((rc = gpath(r, path, sizeof(path), s->group, "undo/%llu.undo", (unsigned long long)k)) < 0)
		return rc;
	if (s->pending_undo != k) {
		s->pending_undo = k;
		if ((rc = state_write(r, s)) < 0)
			return rc;
	}
	if ((rc = journal_apply(r, path, &h)) < 0)
		return err_wrap(rc, "cannot undo epoch %llu of %s", (unsigned long long)k, s->group);
	state_from_undo(s, &h);
	s->pending_undo = 0;
	if ((rc = state_write(r, s)) < 0)
		return rc;
	unlink(path);
	return fs_fsync_parent(path);
}

/* An applied epoch K failed its digest check: record the undo as pending
 * BEFORE dropping the redo (else a crash in between would leave K's data
 * under a state that claims the epoch before), then undo it. */
static int undo_after_mismatch(struct replica *r, struct rstate *s, uint64_t k, const char *redo)
{
	int rc;

	s->pending_undo = k;
	if ((rc = state_write(r, s)) < 0)
		return rc;
	unlink(redo);
	fs_fsync_parent(redo);
	return undo_one(r, s, k);
}

/* Remove the files of DIR whose names end in SUFFIX (leftovers). */
static void remove_suffixed(const char *dir, const char *suffix)
{
	size_t sl = strlen(suffix);
	char path[RPATH + 300];
	struct dirent *e;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n > sl && strcmp(e->d_name + n - sl, suffix) == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	}
	if (d)
		closedir(d);
}

/* Finish what a crash interrupted in GROUP: a pending undo, or a committed redo. */
static int recover_group_locked(struct replica *r, const char *group)
{
	char dir[RPATH], path[RPATH + 300];
	struct rstate s;
	DIR *d;
	struct dirent *e;
	int rc;

	rc = replica_load_state(r, group, &s);
	if (rc == -ENOENT) {
		memset(&s, 0, sizeof(s));
		snprintf(s.group, sizeof(s.group), "%s", group);
	} else if (rc < 0)
		return rc;
	if (s.pending_undo) {
		log_warn("recovering %s: finishing the undo of epoch %llu", group,
			 (unsigned long long)s.pending_undo);
		if ((rc = undo_one(r, &s, s.pending_undo)) < 0)
			return rc;
	}
	/* Uncommitted leftovers go; committed redos are replayed in order. */
	for (int pass = 0; pass < 2; pass++) {
		if ((rc = gpath(r, dir, sizeof(dir), group, pass ? "undo" : "journal")) < 0)
			return rc;
		remove_suffixed(dir, ".tmp");
	}
	for (;;) {
		uint64_t best = 0;
		struct jheader h;

		if ((rc = gpath(r, dir, sizeof(dir), group, "journal")) < 0)
			return rc;
		if (!(d = opendir(dir)))
			break;
		while ((e = readdir(d))) {
			char *end;
			unsigned long long v = strtoull(e->d_name, &end, 10);
			if (strcmp(end, ".redo") == 0 && (!best || v < best))
				best = v;
		}
		closedir(d);
		if (!best)
			break;
		snprintf(path, sizeof(path), "%s/%llu.redo", dir, (unsigned long long)best);
		if (best <= s.epoch) {
			/* Applied and recorded already; the removal was interrupted. */
			unlink(path);
			continue;
		}
		log_warn("recovering %s: replaying committed epoch %llu", group, (unsigned long long)best);
		if ((rc = journal_apply(r, path, &h)) < 0)
			return err_wrap(rc, "recovery of group %s failed", group);
		if ((rc = check_digests(r, &h)) < 0) {
			snprintf(s.alarm, sizeof(s.alarm), "%s", err_msg(rc));
			log_error("%s", s.alarm);
			if ((rc = undo_after_mismatch(r, &s, best, path)) < 0)
				return rc;
			continue;
		}
		s.epoch = h.epoch;
		s.cut_time = h.cut_time;
		s.applied_time = now_usec();
		s.flags = h.flags;
		for (uint32_t i = 0; i < h.n_sources; i++) {
			struct state_source *x = state_find(&s, h.sources[i].name);
			if (!x)
				x = &s.sources[s.n_sources++];
			memcpy(x->name, h.sources[i].name, sizeof(x->name));
			x->epoch = h.epoch;
			x->size = h.sources[i].size;
			x->status = SRC_OK;
			memcpy(x->digest, h.sources[i].digest, DIGEST_BYTES);
		}
		if ((rc = state_write(r, &s)) < 0)
			return rc;
		unlink(path);
		fs_fsync_dir(dir);
	}
	/* Seeds that no committed redo claimed: an epoch that never committed. */
	snprintf(dir, sizeof(dir), "%s/%s", r->root, group);
	remove_suffixed(dir, ".seed");
	if (gpath(r, dir, sizeof(dir), group, "%s", "") == 0)
		remove_suffixed(dir, ".seed");
	return 0;
}

/* Recovery changes replica files: no live reader meanwhile. */
static int recover_group(struct replica *r, const char *group)
{
	int rc = apply_lock(r, LOCK_EX);

	if (rc < 0)
		return rc;
	rc = recover_group_locked(r, group);
	apply_unlock(r, LOCK_EX);
	return rc;
}

/* ---- open, list ---- */

int replica_groups(struct replica *r, char ***ret, size_t *ret_n)
{
	char dir[RPATH];
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/groups", r->meta);
	d = opendir(dir);
	if (!d) {
		*ret = NULL;
		*ret_n = 0;
		return errno == ENOENT ? 0 : -errno;
	}
	while ((e = readdir(d))) {
		char **nn;
		if (!name_ok(e->d_name))
			continue;
		nn = realloc(names, (n + 1) * sizeof(*names));
		if (!nn)
			break;
		names = nn;
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	/* Stable order for people and tests. */
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
			char *t = names[k];
			names[k] = names[k - 1];
			names[k - 1] = t;
		}
	*ret = names;
	*ret_n = n;
	return 0;
}

void replica_groups_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The pid recorded in the lock file by its holder, 0 if none (yet). */
static pid_t lock_holder(const char *lock_path, bool *is_recv)
{
	char buf[32], path[64], cmd[4096];
	ssize_t n;
	pid_t pid;
	int fd;

	*is_recv = false;
	if ((fd = open(lock_path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = fs_pread_full(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	pid = (pid_t)atoi(buf);
	if (pid <= 1 || pid == getpid())
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0; /* gone: the lock is being released or taken by a newer holder */
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	cmd[n] = 0;
	for (ssize_t i = 0; i < n; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	*is_recv = strstr(cmd, " recv ") != NULL;
	return pid;
}

/* Take the lock from a receiver: one left over by a connection that died
 * (its peer gone, it has not noticed yet), or one the daemon keeps (or has
 * just made) connected.  Safe at any point: the journal makes a kill
 * recoverable.  Only a `bascule recv` holder of this same lock is stopped
 * (TERM, then KILL after 5 s); another replica command, or a holder that has
 * not recorded its pid yet, is waited for.  Gives up after 10 s. */
static int take_over(const char *lock_path)
{
	pid_t signalled = 0;
	int waited = 0, rc;

	for (int i = 0; i < 200; i++) {
		bool is_recv;
		pid_t pid;
		if ((rc = fs_lock(lock_path)) != -EBUSY)
			return rc;
		pid = lock_holder(lock_path, &is_recv);
		if (pid && is_recv) {
			if (pid != signalled) {
				log_warn("taking over from receiver %d, left over from an earlier "
					 "connection or just started by the daemon", (int)pid);
				kill(pid, SIGTERM);
				signalled = pid;
				waited = 0;
			} else if (++waited == 100) {
				kill(pid, SIGKILL);
			}
		}
		usleep(50000);
	}
	return rc;
}

int replica_open(const char *root, bool create, const struct site_key *key,
		 struct replica **ret)
{
	return replica_open_mode(root, create, false, false, key, ret);
}

int replica_open_mode(const char *root, bool create, bool readonly, bool takeover,
		      const struct site_key *key, struct replica **ret)
{
	struct replica *r;
	char path[RPATH], absroot[sizeof(r->root)];
	char **groups = NULL;
	size_t n = 0;
	int rc;

	if ((rc = fs_abspath(root, absroot, sizeof(absroot))) < 0)
		return rc;
	root = absroot;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->lock_fd = r->apply_fd = -1;
	r->key = key;
	r->keep_epochs = 24;
	snprintf(r->root, sizeof(r->root), "%s", root);
	snprintf(r->meta, sizeof(r->meta), "%s/.bascule", root);
	if (!create && access(r->meta, F_OK) < 0) {
		rc = err_set(ENOENT, "%s is not a Bascule replica directory (no .bascule inside)", root);
		goto fail;
	}
	if (readonly) {
		/* Readers see whole state files (atomic renames); no lock, no repair.
		 * Those that read replica files take the apply lock shared. */
		r->live = true;
		*ret = r;
		return 0;
	}
	snprintf(path, sizeof(path), "%s/groups", r->meta);
	if ((rc = fs_mkdir_p(path, 0700)) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/lock", r->meta);
	rc = fs_lock(path);
	if (rc == -EBUSY && takeover)
		rc = take_over(path);
	if (rc < 0) {
		rc = err_set(rc, "replica %s is in use by another bascule process (recv or replica); "
				 "stop it first", root);
		goto fail;
	}
	r->lock_fd = rc;
	{
		/* Record the holder for a later takeover. */
		char pid[32];
		int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		if (ftruncate(r->lock_fd, 0) == 0)
			fs_pwrite_full(r->lock_fd, pid, (size_t)len, 0);
	}
	if ((rc = replica_groups(r, &groups, &n)) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if ((rc = recover_group(r, groups[i])) < 0)
			goto fail;
	replica_groups_free(groups, n);
	*ret = r;
	return 0;
fail:
	replica_groups_free(groups, n);
	replica_close(r);
	return rc;
}

void replica_close(struct replica *r)
{
	if (!r)
		return;
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	if (r->apply_fd >= 0)
		close(r->apply_fd);
	free(r);
}

/* ---- receiving an epoch ---- */

struct rapply {
	struct replica *r;
	struct msg_epoch_begin begin;
	struct msg_source src[PROTO_MAX_SOURCES];
	uint32_t n_src;
	struct rstate state;
	struct jwriter redo;
	uint64_t n_extents, raw_bytes;
	uint32_t last_src;
	uint64_t next_off; /* extents strictly increase within a source */
	bool header_written;
	/* Sources new to this replica are written straight into a seed file
	 * (and its map), renamed into place by the committed redo. */
	struct target_file seed[PROTO_MAX_SOURCES];
	bool seeded[PROTO_MAX_SOURCES];
};


static void seed_discard(struct rapply *a)
{
	for (uint32_t i = 0; i < a->n_src; i++) {
		char f[RPATH], m[RPATH];
		if (!a->seeded[i])
			continue;
		tf_close(&a->seed[i]);
		if (seed_paths(a->r, a->begin.group, a->src[i].name, f, m, sizeof(f)) == 0) {
			unlink(f);
			unlink(m);
		}
		a->seeded[i] = false;
	}
}

int replica_epoch_begin(struct replica *r, const struct msg_epoch_begin *m, struct rapply **ret)
{
	struct rapply *a;
	char dir[RPATH];
	int rc;

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->r = r;
	a->begin = *m;
	a->redo.fd = -1;
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		a->seed[i].fd = a->seed[i].map_fd = -1;
	rc = replica_load_state(r, m->group, &a->state);
	if (rc == -ENOENT) {
		memset(&a->state, 0, sizeof(a->state));
		snprintf(a->state.group, sizeof(a->state.group), "%s", m->group);
		rc = 0;
	}
	if (rc < 0 || (rc = replica_refuse_promoted(r, m->group)) < 0)
		goto fail;
	if (m->epoch <= a->state.epoch) {
		rc = err_set(EPROTO, "epoch %llu of %s is not newer than the replica's epoch %llu",
			     (unsigned long long)m->epoch, m->group, (unsigned long long)a->state.epoch);
		goto fail;
	}
	if ((rc = gpath(r, dir, sizeof(dir), m->group, "journal")) < 0 ||
	    (rc = fs_mkdir_p(dir, 0700)) < 0 ||
	    (rc = gpath(r, dir, sizeof(dir), m->group, "undo")) < 0 ||
	    (rc = fs_mkdir_p(dir, 0700)) < 0)
		goto fail;
	*ret = a;
	return 0;
fail:
	free(a);
	return rc;
}

int replica_epoch_source(struct rapply *a, const struct msg_source *m)
{
	struct state_source *have;
	uint64_t cur = 0;

	if (a->header_written || m->idx != a->n_src || a->n_src >= a->begin.n_sources)
		return err_set(EPROTO, "SOURCE message out of order");
	for (uint32_t i = 0; i < a->n_src; i++)
		if (strcmp(a->src[i].name, m->name) == 0)
			return err_set(EPROTO, "source %s announced twice", m->name);
	have = state_find(&a->state, m->name);
	if (have)
		cur = have->epoch;
	/* Base 0 is a full resync: every block of the source is sent. */
	if (m->base != cur && m->base != 0)
		return err_set(EPROTO, "epoch %llu of %s/%s starts from epoch %llu but the replica is at %llu",
			       (unsigned long long)a->begin.epoch, a->begin.group, m->name,
			       (unsigned long long)m->base, (unsigned long long)cur);
	if (!have) {
		/* New to this replica, and no file of unknown content to patch:
		 * seed it directly, no redo copy of its data. */
		char f[RPATH], mp[RPATH], rf[RPATH], dir[RPATH];
		struct target_file *tf = &a->seed[a->n_src];
		int rc;
		if ((rc = seed_paths(a->r, a->begin.group, m->name, f, mp, sizeof(f))) < 0 ||
		    (rc = replica_file(a->r, rf, sizeof(rf), a->begin.group, m->name)) < 0)
			return rc;
		if (access(rf, F_OK) != 0) {
			snprintf(dir, sizeof(dir), "%s/%s", a->r->root, a->begin.group);
			if ((rc = fs_mkdir_p(dir, 0700)) < 0)
				return rc;
			memset(tf, 0, sizeof(*tf));
			hash_leaf_secret(a->r->key, a->begin.group, m->name, tf->secret);
			tf->fd = open(f, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			tf->map_fd = tf->fd >= 0 ? open(mp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
			if (tf->fd < 0 || tf->map_fd < 0) {
				rc = err_set(errno, "cannot create %s: %s", tf->fd < 0 ? f : mp, strerror(errno));
				tf_close(tf);
				return rc;
			}
			a->seeded[a->n_src] = true;
		}
	}
	a->src[a->n_src++] = *m;
	return 0;
}

static int write_redo_header(struct rapply *a)
{
	struct jheader h;
	char path[RPATH];
	int rc;

	if (a->n_src != a->begin.n_sources)
		return err_set(EPROTO, "extent before all sources were announced");
	memset(&h, 0, sizeof(h));
	h.kind = J_REDO;
	memcpy(h.group, a->begin.group, sizeof(h.group));
	h.epoch = a->begin.epoch;
	h.prev_epoch = a->state.epoch;
	h.cut_time = a->begin.cut_time;
	h.flags = a->begin.flags;
	h.n_sources = a->n_src;
	for (uint32_t i = 0; i < a->n_src; i++) {
		memcpy(h.sources[i].name, a->src[i].name, sizeof(h.sources[i].name));
		h.sources[i].epoch = a->begin.epoch;
		h.sources[i].size = a->src[i].size;
		h.sources[i].exists = a->seeded[i] ? SEEDED : 1;
		memcpy(h.sources[i].digest, a->src[i].digest, DIGEST_BYTES);
	}
	if ((rc = gpath(a->r, path, sizeof(path), a->begin.group, "journal/%llu.redo.tmp",
			(unsigned long long)a->begin.epoch)) < 0)
		return rc;
	if ((rc = jw_open(&a->redo, path, &h)) < 0)
		return rc;
	a->header_written = true;
	return 0;
}

int replica_epoch_extent(struct rapply *a, uint32_t src, uint64_t off, uint32_t len,
			 const uint8_t *data)
{
	uint64_t size;
	int rc;

	if (!a->header_written && (rc = write_redo_header(a)) < 0)
		return rc;
	if (src >= a->n_src)
		return err_set(EPROTO, "extent for unknown source %u", src);
	size = a->src[src].size;
	if (src < a->last_src || (src == a->last_src && off < a->next_off) || len == 0 ||
	    off % PROTO_BLOCK || off + len > size || (len % PROTO_BLOCK && off + len != size))
		return err_set(EPROTO, "extent [%llu, +%u) of %s out of order or out of bounds",
			       (unsigned long long)off, len, a->src[src].name);
	a->last_src = src;
	a->next_off = off + len;
	a->n_extents++;
	a->raw_bytes += len;
	if (a->seeded[src])
		return tf_write(&a->seed[src], off, len, data, size);
	rc = jw_record(&a->redo, src, off, len, data);
	return rc < 0 ? err_set(rc, "cannot write journal: %s", strerror(-rc)) : 0;
}

/* Save what the redo at REDO_PATH will overwrite into undo/N.undo. */
static int write_undo(struct rapply *a, const char *redo_path)
{
	struct target_file tfs[PROTO_MAX_SOURCES];
	char path[RPATH], final[RPATH];
	struct jheader rh, uh;
	struct jreader j;
	struct jwriter w = { .fd = -1 };
	uint8_t *buf = malloc(PROTO_MAX_EXTENT);
	uint32_t src, len;
	uint64_t off;
	const uint8_t *data;
	int rc, k;

	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		tfs[i].fd = tfs[i].map_fd = -1;
	if (!buf)
		return -ENOMEM;
	if ((rc = jr_open_mode(&j, redo_path, &rh, false)) < 0)
		goto out;
	memset(&uh, 0, sizeof(uh));
	uh.kind = J_UNDO;
	memcpy(uh.group, rh.group, sizeof(uh.group));
	uh.epoch = rh.epoch;
	uh.prev_epoch = a->state.epoch;
	uh.cut_time = a->state.cut_time;
	uh.applied_time = a->state.applied_time;
	uh.flags = a->state.flags;
	uh.n_sources = rh.n_sources;
	for (uint32_t i = 0; i < rh.n_sources; i++) {
		struct state_source *x = state_find(&a->state, rh.sources[i].name);
		memcpy(uh.sources[i].name, rh.sources[i].name, sizeof(uh.sources[i].name));
		if (x) {
			uh.sources[i].exists = 1;
			uh.sources[i].epoch = x->epoch;
			uh.sources[i].size = x->size;
			uh.sources[i].status = x->status;
			memcpy(uh.sources[i].digest, x->digest, DIGEST_BYTES);
			if ((rc = tf_open(a->r, rh.group, x->name, false, &tfs[i])) < 0)
				goto out;
		} else {
			/* A replica file without state (unknown content): keep it too. */
			char fp[RPATH];
			if (replica_file(a->r, fp, sizeof(fp), rh.group, rh.sources[i].name) == 0 &&
			    access(fp, F_OK) == 0) {
				if ((rc = tf_open(a->r, rh.group, rh.sources[i].name, false, &tfs[i])) < 0)
					goto out;
				uh.sources[i].exists = 1;
				uh.sources[i].size = tfs[i].size;
				uh.sources[i].status = SRC_UNKNOWN;
			}
		}
	}
	if ((rc = gpath(a->r, path, sizeof(path), rh.group, "undo/%llu.undo.tmp",
			(unsigned long long)rh.epoch)) < 0 ||
	    (rc = gpath(a->r, final, sizeof(final), rh.group, "undo/%llu.undo",
			(unsigned long long)rh.epoch)) < 0)
		goto out;
	if ((rc = jw_open(&w, path, &uh)) < 0)
		goto out;
	while ((k = jr_next(&j, &src, &off, &len, &data)) == 1) {
		uint64_t old_size;
		size_t n;
		ssize_t got;
		bool zero = true;

		if (src >= uh.n_sources || !uh.sources[src].exists)
			continue;
		old_size = uh.sources[src].size;
		if (off >= old_size)
			continue;
		n = off + len > old_size ? (size_t)(old_size - off) : len;
		got = fs_pread_full(tfs[src].fd, buf, n, off);
		if (got < 0) {
			rc = err_set((int)got, "cannot read replica for undo: %s", strerror((int)-got));
			goto out;
		}
		if ((size_t)got < n)
			memset(buf + got, 0, n - (size_t)got);
		for (size_t i = 0; i < n && zero; i += PROTO_BLOCK)
			zero = memcmp(buf + i, zero_block, n - i < PROTO_BLOCK ? n - i : PROTO_BLOCK) == 0;
		if ((rc = jw_record(&w, src, off, (uint32_t)n, zero ? NULL : buf)) < 0)
			goto out;
	}
	if (k < 0) {
		rc = k;
		goto out;
	}
	if ((rc = jw_finish(&w)) < 0)
		goto out;
	if (rename(path, final) < 0) {
		rc = err_set(errno, "cannot rename %s: %s", path, strerror(errno));
		goto out;
	}
	rc = fs_fsync_parent(final);
out:
	if (w.fd >= 0)
		jw_close(&w, rc < 0);
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		tf_close(&tfs[i]);
	jr_close(&j);
	free(buf);
	return rc;
}

/* Reserve space for every range of the redo so that applying it cannot run
 * out of space half-way: a failure here leaves the replica untouched. */
static int reserve_space(struct rapply *a, const char *redo_path)
{
	struct jreader j;
	struct jheader h;
	uint32_t src, len;
	uint64_t off;
	const uint8_t *data;
	int fds[PROTO_MAX_SOURCES], rc, k;

	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		fds[i] = -1;
	if ((rc = jr_open_mode(&j, redo_path, &h, false)) < 0)
		goto out;
	for (uint32_t i = 0; i < h.n_sources; i++) {
		char path[RPATH], dir[RPATH];
		if (h.sources[i].exists == SEEDED)
			continue; /* written in its seed file already: nothing to reserve, nothing to create */
		snprintf(dir, sizeof(dir), "%s/%s", a->r->root, h.group);
		if ((rc = fs_mkdir_p(dir, 0700)) < 0 ||
		    (rc = replica_file(a->r, path, sizeof(path), h.group, h.sources[i].name)) < 0)
			goto out;
		fds[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fds[i] < 0) {
			rc = err_set(errno, "cannot open replica %s: %s", path, strerror(errno));
			goto out;
		}
	}
	while ((k = jr_next(&j, &src, &off, &len, &data)) == 1) {
		if (!data || src >= h.n_sources)
			continue;
		if (fallocate(fds[src], FALLOC_FL_KEEP_SIZE, (off_t)off, len) < 0 && errno != EOPNOTSUPP) {
			rc = err_set(errno, "cannot reserve space in the replica of %s/%s: %s",
				     h.group, h.sources[src].name, strerror(errno));
			goto out;
		}
	}
	rc = k < 0 ? k : 0;
out:
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	jr_close(&j);
	return rc;
}

static void prune_undo(struct replica *r, const char *group, uint64_t current)
{
	uint64_t epochs[4096], times[4096];
	size_t n = 0;
	uint64_t now = now_usec();

	if (replica_rollback_points(r, group, epochs, times, 4096, &n) < 0)
		return;
	/* epochs[i] is a rollback point; undo (epochs[i-1] or current) leads there. */
	for (size_t i = 0; i < n; i++) {
		uint64_t undo_epoch = i == 0 ? current : epochs[i - 1];
		char path[RPATH];
		if (i < r->keep_epochs)
			continue;
		if (r->keep_time && times[i] && now - times[i] < r->keep_time)
			continue;
		if (gpath(r, path, sizeof(path), group, "undo/%llu.undo",
			  (unsigned long long)undo_epoch) == 0)
			unlink(path);
	}
}

static int replica_epoch_commit_locked(struct rapply *a, const struct msg_epoch_end *m)
{
	char tmp[RPATH], redo[RPATH];
	struct jheader h;
	int rc;

	if (strcmp(m->group, a->begin.group) != 0 || m->epoch != a->begin.epoch ||
	    m->n_extents != a->n_extents || m->raw_bytes != a->raw_bytes)
		return err_set(EPROTO, "EPOCH_END does not match what was received (%llu extents, "
				       "%llu bytes announced; %llu, %llu received)",
			       (unsigned long long)m->n_extents, (unsigned long long)m->raw_bytes,
			       (unsigned long long)a->n_extents, (unsigned long long)a->raw_bytes);
	if (!a->header_written && (rc = write_redo_header(a)) < 0)
		return rc;
	for (uint32_t i = 0; i < a->n_src; i++)
		if (a->seeded[i] && (rc = tf_sync(&a->seed[i])) < 0)
			return rc;
	snprintf(tmp, sizeof(tmp), "%s", a->redo.path);
	if ((rc = jw_finish(&a->redo)) < 0)
		return rc;
	if ((rc = reserve_space(a, tmp)) < 0 || (rc = write_undo(a, tmp)) < 0)
		return rc;
	/* Commit point: from here on recovery rolls this epoch forward. */
	if ((rc = gpath(a->r, redo, sizeof(redo), a->begin.group, "journal/%llu.redo",
			(unsigned long long)a->begin.epoch)) < 0)
		return rc;
	if (rename(tmp, redo) < 0)
		return err_set(errno, "cannot commit %s: %s", redo, strerror(errno));
	jw_close(&a->redo, false);
	for (uint32_t i = 0; i < a->n_src; i++)
		if (a->seeded[i]) {
			tf_close(&a->seed[i]);
			a->seeded[i] = false; /* the committed redo owns the seed now */
		}
	if ((rc = fs_fsync_parent(redo)) < 0)
		return rc;
	if ((rc = journal_apply_mode(a->r, redo, &h, false)) < 0)
		return rc;
	if ((rc = check_digests(a->r, &h)) < 0) {
		int rc2;
		snprintf(a->state.alarm, sizeof(a->state.alarm), "%s", err_msg(rc));
		rc2 = undo_after_mismatch(a->r, &a->state, h.epoch, redo);
		err_set(EBADMSG, "%s", a->state.alarm);
		return rc2 < 0 ? rc2 : -EBADMSG;
	}
	a->state.epoch = h.epoch;
	a->state.cut_time = h.cut_time;
	a->state.applied_time = now_usec();
	a->state.flags = h.flags;
	a->state.alarm[0] = 0;
	for (uint32_t i = 0; i < h.n_sources; i++) {
		struct state_source *x = state_find(&a->state, h.sources[i].name);
		if (!x)
			x = &a->state.sources[a->state.n_sources++];
		memcpy(x->name, h.sources[i].name, sizeof(x->name));
		x->epoch = h.epoch;
		x->size = h.sources[i].size;
		x->status = SRC_OK;
		memcpy(x->digest, h.sources[i].digest, DIGEST_BYTES);
	}
	if ((rc = state_write(a->r, &a->state)) < 0)
		return rc;
	unlink(redo);
	fs_fsync_parent(redo);
	prune_undo(a->r, a->begin.group, a->state.epoch);
	return 0;
}

/* The apply changes replica files: a live reader waits, or is waited for. */
int replica_epoch_commit(struct rapply *a, const struct msg_epoch_end *m)
{
	int rc = apply_lock(a->r, LOCK_EX);

	if (rc < 0)
		return rc;
	rc = replica_epoch_commit_locked(a, m);
	apply_unlock(a->r, LOCK_EX);
	return rc;
}

void replica_epoch_abort(struct rapply *a)
{
	if (!a)
		return;
	seed_discard(a);
	if (a->header_written)
		jw_close(&a->redo, true);
	else
		wbuf_free(&a->redo.buf);
	free(a);
}

/* ---- rollback and verify ---- */

int replica_rollback_points(struct replica *r, const char *group, uint64_t *epochs,
			    uint64_t *times, size_t max, size_t *ret_n)
{
	return replica_rollback_points_flags(r, group, epochs, times, NULL, max, ret_n);
}

int replica_rollback_points_flags(struct replica *r, const char *group, uint64_t *epochs,
				  uint64_t *times, uint8_t *flags, size_t max, size_t *ret_n)
{
	struct rstate s;
	uint64_t cur;
	size_t n = 0;
	int rc;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc;
	cur = s.epoch;
	while (cur && n < max) {
		char path[RPATH];
		struct jreader j;
		struct jheader h;
		if ((rc = gpath(r, path, sizeof(path), group, "undo/%llu.undo",
				(unsigned long long)cur)) < 0 || access(path, F_OK) < 0)
			break;
		rc = jr_open_mode(&j, path, &h, false); /* header only */
		jr_close(&j);
		if (rc < 0)
			break;
		epochs[n] = h.prev_epoch;
		times[n] = h.cut_time;
		if (flags)
			flags[n] = h.flags;
		n++;
		cur = h.prev_epoch;
	}
	*ret_n = n;
	return 0;
}

static int replica_rollback_locked(struct replica *r, const char *group, uint64_t to)
{
	uint64_t epochs[4096], times[4096];
	struct rstate s;
	size_t n = 0, i;
	int rc;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc == -ENOENT ? err_set(ENOENT, "no group %s in this replica", group) : rc;
	if (to == s.epoch)
		return 0;
	if ((rc = replica_rollback_points(r, group, epochs, times, 4096, &n)) < 0)
		return rc;
	for (i = 0; i < n && epochs[i] != to; i++)
		;
	if (i == n) {
		char list[512] = "";
		for (size_t k = 0; k < n && k < 40; k++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%llu", k ? " " : "",
				 (unsigned long long)epochs[k]);
		return err_set(ENOENT, "group %s (at epoch %llu) cannot roll back to epoch %llu; "
				       "rollback points: %s",
			       group, (unsigned long long)s.epoch, (unsigned long long)to,
			       n ? list : "none");
	}
	while (s.epoch != to) {
		if ((rc = undo_one(r, &s, s.epoch)) < 0)
			return rc;
	}
	return 0;
}

/* Undo changes replica files: no live reader meanwhile. */
int replica_rollback(struct replica *r, const char *group, uint64_t to)
{
	int rc = apply_lock(r, LOCK_EX);

	if (rc < 0)
		return rc;
	rc = replica_rollback_locked(r, group, to);
	apply_unlock(r, LOCK_EX);
	return rc;
}

static int verify_locked(struct replica *r, const char *group, void (*out)(const char *line));

/* A live verify found sources diverged: mark them in the state as it is now,
 * under the exclusive lock, and end the receiver's session (its next commit
 * would write back the state it loaded before the mark); the daemon
 * reconnects, reads the mark in STATE and resynchronises those sources. */
static int mark_diverged_live(struct replica *r, const struct rstate *found)
{
	struct rstate now;
	char lock[RPATH];
	bool is_recv;
	pid_t pid;
	int rc;

	if ((rc = apply_lock(r, LOCK_EX)) < 0)
		return rc;
	if ((rc = replica_load_state(r, found->group, &now)) < 0)
		goto out;
	if (now.epoch != found->epoch) {
		rc = err_set(EAGAIN, "group %s moved from epoch %llu to %llu during the verify; run it "
				     "again", found->group, (unsigned long long)found->epoch,
			     (unsigned long long)now.epoch);
		goto out;
	}
	for (uint32_t i = 0; i < found->n_sources; i++) {
		struct state_source *x = state_find(&now, found->sources[i].name);
		if (x && found->sources[i].status == SRC_DIVERGED)
			x->status = SRC_DIVERGED;
	}
	if ((rc = state_write(r, &now)) < 0)
		goto out;
	snprintf(lock, sizeof(lock), "%s/lock", r->meta);
	if ((pid = lock_holder(lock, &is_recv)) > 0 && is_recv) {
		log_warn("ending the session of receiver %d so that the primary resynchronises now",
			 (int)pid);
		kill(pid, SIGTERM);
	}
out:
	apply_unlock(r, LOCK_EX);
	return rc;
}

int replica_verify(struct replica *r, const char *group, void (*out)(const char *line))
{
	int rc;

	if (!r->live)
		return verify_locked(r, group, out);
	/* Beside a running receiver: one complete epoch, its next apply waits. */
	if ((rc = apply_lock(r, LOCK_SH)) < 0)
		return rc;
	rc = verify_locked(r, group, out);
	apply_unlock(r, LOCK_SH);
	return rc;
}

static int verify_locked(struct replica *r, const char *group, void (*out)(const char *line))
{
	struct rstate s;
	int rc, bad = 0;
	bool marked = false;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc;
	for (uint32_t i = 0; i < s.n_sources; i++) {
		struct state_source *x = &s.sources[i];
		struct target_file tf;
		uint8_t *buf = NULL, *leaves = NULL, *mleaves = NULL;
		uint64_t mism = 0, nb = nblocks(x->size), b;
		struct digest_ctx c;
		uint8_t d[DIGEST_BYTES];
		char line[512];

		if ((rc = tf_open(r, group, x->name, false, &tf)) < 0) {
			snprintf(line, sizeof(line), "%s/%s: cannot open: %s", group, x->name, err_msg(rc));
			out(line);
			bad = 1;
			continue;
		}
		buf = malloc(256 * PROTO_BLOCK);
		leaves = malloc(256 * LEAF_BYTES);
		mleaves = malloc(256 * LEAF_BYTES);
		hash_digest_init(&c, x->size, PROTO_BLOCK);
		rc = (buf && leaves && mleaves) ? 0 : -ENOMEM;
		if (tf.size != x->size)
			rc = err_set(EBADMSG, "size %llu, expected %llu", (unsigned long long)tf.size,
				     (unsigned long long)x->size);
		for (b = 0; rc == 0 && b < nb; b += 256) {
			uint64_t n = nb - b > 256 ? 256 : nb - b, off = b * PROTO_BLOCK;
			size_t want = (size_t)(n * PROTO_BLOCK);
			ssize_t got;
			if (off + want > x->size)
				want = (size_t)(x->size - off);
			got = fs_pread_full(tf.fd, buf, want, off);
			if (got != (ssize_t)want) {
				rc = err_set(EIO, "short read");
				break;
			}
			for (uint64_t k = 0; k < n; k++) {
				size_t bl = want - k * PROTO_BLOCK > PROTO_BLOCK ? PROTO_BLOCK : want - k * PROTO_BLOCK;
				hash_leaf(tf.secret, buf + k * PROTO_BLOCK, bl, leaves + k * LEAF_BYTES);
			}
			hash_digest_leaves(&c, leaves, (size_t)n);
			if (fs_pread_full(tf.map_fd, mleaves, (size_t)n * LEAF_BYTES,
					  MAP_HDR + b * LEAF_BYTES) == (ssize_t)(n * LEAF_BYTES)) {
				for (uint64_t k = 0; k < n; k++)
					mism += memcmp(leaves + k * LEAF_BYTES, mleaves + k * LEAF_BYTES,
						       LEAF_BYTES) != 0;
			} else
				mism += n;
		}
		hash_digest_final(&c, d);
		if (rc < 0) {
			snprintf(line, sizeof(line), "%s/%s: FAILED: %s", group, x->name, err_msg(rc));
			bad = 1;
		} else if (sodium_memcmp(d, x->digest, DIGEST_BYTES) != 0) {
			char a[17], e[17];
			hash_hex(d, 8, a);
			hash_hex(x->digest, 8, e);
			snprintf(line, sizeof(line),
				 "%s/%s: MISMATCH at epoch %llu: digest %s…, expected %s… (%llu of %llu "
				 "blocks differ from the map)",
				 group, x->name, (unsigned long long)x->epoch, a, e,
				 (unsigned long long)mism, (unsigned long long)nb);
			bad = 1;
			/* The primary will resynchronise it (librsync deltas, not a full copy). */
			x->status = SRC_DIVERGED;
			marked = true;
		} else {
			char hx[17];
			hash_hex(d, 8, hx);
			snprintf(line, sizeof(line), "%s/%s: OK at epoch %llu (%llu bytes, digest %s…)",
				 group, x->name, (unsigned long long)x->epoch,
				 (unsigned long long)x->size, hx);
		}
		out(line);
		free(buf);
		free(leaves);
		free(mleaves);
		tf_close(&tf);
	}
	if (marked && (rc = r->live ? mark_diverged_live(r, &s) : state_write(r, &s)) < 0)
		return rc;
	return bad ? err_set(EBADMSG, "replica of group %s does not match its digests; marked "
				      "diverged: the primary resynchronises it %s", group,
			     r->live ? "now (the receiver's session was ended)" : "at its next connection")
		   : 0;
}

int replica_read_range(struct replica *r, const char *group, const char *source, uint64_t off,
		       uint8_t *buf, uint32_t len, uint64_t *ret_size)
{
	char path[RPATH];
	uint64_t size;
	ssize_t n = 0;
	int fd, rc;

	if ((rc = replica_file(r, path, sizeof(path), group, source)) < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		memset(buf, 0, len);
		if (ret_size)
			*ret_size = 0;
		return errno == ENOENT ? 0 : -errno;
	}
	if ((rc = fs_fd_size(fd, &size)) == 0 && off < size)
		n = fs_pread_full(fd, buf, len, off);
	close(fd);
	if (rc < 0 || n < 0)
		return rc < 0 ? rc : (int)n;
	memset(buf + n, 0, len - (size_t)n);
	if (ret_size)
		*ret_size = size;
	return 0;
}

const char *replica_epoch_source_name(const struct rapply *a, uint32_t idx)
{
	return idx < a->n_src ? a->src[idx].name : NULL;
}

/* Replica files present under ROOT/GROUP without any state for them. */
int replica_unknown_sources(struct replica *r, const char *group, struct state_group *g)
{
	char dir[RPATH];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s", r->root, group);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((e = readdir(d)) && g->n_sources < PROTO_MAX_SOURCES) {
		char p[RPATH + 300];
		struct stat st;
		bool known = false;
		if (!name_ok(e->d_name))
			continue;
		for (uint32_t i = 0; i < g->n_sources; i++)
			known |= strcmp(g->sources[i].name, e->d_name) == 0;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (known || stat(p, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
			continue;
		memset(&g->sources[g->n_sources], 0, sizeof(g->sources[0]));
		memcpy(g->sources[g->n_sources].name, e->d_name, strlen(e->d_name) + 1); /* <= 64: name_ok */
		g->sources[g->n_sources].size = (uint64_t)st.st_size;
		g->sources[g->n_sources].status = SRC_UNKNOWN;
		g->n_sources++;
	}
	closedir(d);
	return 0;
}

const char *replica_epoch_group(const struct rapply *a)
{
	return a->begin.group;
}

uint64_t replica_epoch_number(const struct rapply *a)
{
	return a->begin.epoch;
}

/* ---- failover: promote, demote, clone ---- */

#define PROMOTED_MAGIC "bascule-promoted-v1"

int replica_promoted(struct replica *r, const char *group, struct promote_info *ret)
{
	char path[RPATH], *text = NULL;
	size_t len;
	unsigned long long e, c, p;
	int rc;

	if ((rc = gpath(r, path, sizeof(path), group, "promoted")) < 0)
		return rc;
	if ((rc = fs_read_all(path, 4096, &text, &len)) < 0)
		return rc == -ENOENT ? 0 : rc;
	rc = sscanf(text, PROMOTED_MAGIC " epoch=%llu cut_time=%llu promoted_time=%llu", &e, &c, &p);
	free(text);
	if (rc != 3)
		return err_set(EBADMSG, "%s is damaged; it should read '" PROMOTED_MAGIC
					" epoch=N cut_time=T promoted_time=T'", path);
	if (ret) {
		memset(ret, 0, sizeof(*ret));
		ret->epoch = e;
		ret->cut_time = c;
		ret->promoted_time = p;
	}
	return 1;
}

int replica_refuse_promoted(struct replica *r, const char *group)
{
	struct promote_info pi;
	int rc = replica_promoted(r, group, &pi);

	if (rc <= 0)
		return rc;
	/* Read in the daemon's log too (a NACK carries 255 bytes: keep it short):
	 * say which site, and a command that runs as printed. */
	return err_set(EROFS, "group %s is promoted on the receiving site (live since a failover, epoch "
			      "%llu), not a replica; to replicate into it, run there: bascule replica "
			      "demote --root %s --group %s --key %s",
		       group, (unsigned long long)pi.epoch, r->root, group,
		       r->key_path ? r->key_path : "/etc/bascule/site.key");
}

/* The newest epoch (current or a rollback point) allowed by the options. */
static int pick_epoch(struct replica *r, const struct rstate *s, const struct promote_opts *o,
		      uint64_t *ret)
{
	uint64_t pts[4096], times[4096];
	uint8_t flags[4096];
	size_t n = 0;
	int rc;

	if ((rc = replica_rollback_points_flags(r, s->group, pts, times, flags, 4096, &n)) < 0)
		return rc;
	for (size_t i = 0; i <= n; i++) {
		uint64_t e = i ? pts[i - 1] : s->epoch, t = i ? times[i - 1] : s->cut_time;
		uint8_t f = i ? flags[i - 1] : s->flags;
		if (e == 0)
			break;
		if (o->epoch && e != o->epoch)
			continue;
		if (o->at && t > o->at)
			continue;
		if (o->consistent && !(f & EPOCH_CONSISTENT))
			continue;
		*ret = e;
		return 0;
	}
	if (o->epoch)
		return err_set(ENOENT, "group %s cannot be promoted at epoch %llu: it is neither the "
				       "current epoch (%llu) nor a rollback point%s (see bascule replica list)",
			       s->group, (unsigned long long)o->epoch, (unsigned long long)s->epoch,
			       o->consistent ? " with a consistent capture" : "");
	return err_set(ENOENT, "group %s has no %scomplete epoch%s to promote (current epoch %llu, "
			       "%zu rollback points; see bascule replica list)",
		       s->group, o->consistent ? "consistent " : "", o->at ? " cut before the given time" : "",
		       (unsigned long long)s->epoch, n);
}

static int link_disk(const char *target, const char *dir, const char *name)
{
	char path[RPATH], tmp[RPATH + 16];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if (lstat(path, &st) == 0 && !S_ISLNK(st.st_mode))
		return err_set(EEXIST, "%s exists and is not a link made by bascule; move it away "
				       "so the promoted disk can take its place", path);
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	unlink(tmp);
	if (symlink(target, tmp) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return err_set(e, "cannot link %s to %s: %s", path, target, strerror(e));
	}
	return fs_fsync_parent(path);
}

int replica_promote(struct replica *r, const char *group, const struct promote_opts *o,
		    struct promote_info *ret)
{
	struct promote_info pi;
	struct rstate s;
	uint64_t e = 0;
	char path[RPATH], line[256];
	int rc;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc == -ENOENT ? err_set(ENOENT, "group %s has no complete epoch in %s: nothing "
						       "to promote", group, r->root) : rc;
	if ((rc = replica_promoted(r, group, &pi)) < 0)
		return rc;
	if (rc == 1) {
		/* Promoting again (a resumed drill) keeps what was promoted. */
		if (o->epoch && o->epoch != pi.epoch)
			return err_set(EEXIST, "group %s is already promoted at epoch %llu, not %llu",
				       group, (unsigned long long)pi.epoch, (unsigned long long)o->epoch);
		e = pi.epoch;
	} else {
		if ((rc = pick_epoch(r, &s, o, &e)) < 0)
			return rc;
		if (e != s.epoch) {
			log_info("promoting %s: rolling back from epoch %llu to %llu", group,
				 (unsigned long long)s.epoch, (unsigned long long)e);
			if ((rc = replica_rollback(r, group, e)) < 0)
				return rc;
			if ((rc = replica_load_state(r, group, &s)) < 0)
				return rc;
		}
		pi.epoch = s.epoch;
		pi.cut_time = s.cut_time;
		pi.promoted_time = now_usec();
		snprintf(line, sizeof(line), PROMOTED_MAGIC " epoch=%llu cut_time=%llu promoted_time=%llu\n",
			 (unsigned long long)pi.epoch, (unsigned long long)pi.cut_time,
			 (unsigned long long)pi.promoted_time);
		if ((rc = gpath(r, path, sizeof(path), group, "promoted")) < 0 ||
		    (rc = fs_write_atomic(path, line, strlen(line), 0600)) < 0 ||
		    (rc = keep_owner(r, path)) < 0)
			return rc;
	}
	pi.flags = s.flags;
	pi.n_sources = s.n_sources;
	for (uint32_t i = 0; i < s.n_sources && i < PROTO_MAX_SOURCES; i++) {
		snprintf(pi.sources[i], sizeof(pi.sources[i]), "%s", s.sources[i].name);
		if (s.sources[i].status != SRC_OK)
			return err_set(EBADMSG, "source %s/%s is marked diverged: its replica does not "
						"match its digest; run bascule replica verify", group,
				       s.sources[i].name);
		if (o->link_dir) {
			char file[RPATH];
			if ((rc = replica_file(r, file, sizeof(file), group, s.sources[i].name)) < 0 ||
			    (rc = fs_mkdir_p(o->link_dir, 0755)) < 0 ||
			    (rc = link_disk(file, o->link_dir, s.sources[i].name)) < 0)
				return rc;
		}
	}
	*ret = pi;
	return 0;
}

int replica_demote(struct replica *r, const char *group)
{
	char path[RPATH];
	struct rstate s;
	int rc;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc;
	/* The disks ran live: their blocks no longer match the map.  Diverged
	 * sources are brought back by a librsync resync, not a full copy. */
	for (uint32_t i = 0; i < s.n_sources; i++)
		s.sources[i].status = SRC_DIVERGED;
	if ((rc = state_write(r, &s)) < 0 || (rc = gpath(r, path, sizeof(path), group, "promoted")) < 0)
		return rc;
	if (unlink(path) < 0 && errno != ENOENT)
		return err_set(errno, "cannot remove %s: %s", path, strerror(errno));
	return fs_fsync_parent(path);
}

/* Is an apply in progress (committed redo, pending undo) for GROUP? */
static bool group_busy(struct replica *r, const char *group, const struct rstate *s)
{
	char dir[RPATH];
	DIR *d;
	struct dirent *e;
	bool busy = s->pending_undo != 0;

	if (gpath(r, dir, sizeof(dir), group, "journal") < 0 || !(d = opendir(dir)))
		return busy;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".redo") && !strstr(e->d_name, ".tmp"))
			busy = true;
	closedir(d);
	return busy;
}

static int copy_file(const char *from, const char *to)
{
	int in = -1, out = -1, rc = 0;
	uint64_t size;
	off_t off = 0;

	if ((in = open(from, O_RDONLY | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open %s: %s", from, strerror(errno));
	if ((out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		rc = err_set(errno, "cannot create %s: %s", to, strerror(errno));
		goto out;
	}
	if (ioctl(out, FICLONE, in) == 0)
		goto out;
	if ((rc = fs_fd_size(in, &size)) < 0 || ftruncate(out, (off_t)size) < 0) {
		rc = rc < 0 ? rc : -errno;
		goto out;
	}
	/* No reflinks here: copy the data, keeping holes. */
	while ((uint64_t)off < size) {
		off_t data = lseek(in, off, SEEK_DATA), hole;
		if (data < 0)
			break;
		hole = lseek(in, data, SEEK_HOLE);
		off = data;
		while (off < hole) {
			ssize_t n = copy_file_range(in, &off, out, &(off_t){ off }, (size_t)(hole - off), 0);
			if (n <= 0) {
				rc = err_set(n < 0 ? errno : EIO, "cannot copy %s: %s", from,
					     n < 0 ? strerror(errno) : "short copy");
				goto out;
			}
		}
	}
	if (fsync(out) < 0)
		rc = err_set(errno, "cannot fsync %s: %s", to, strerror(errno));
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (rc < 0)
		unlink(to);
	return rc;
}

static int clone_locked(struct replica *r, const char *group, const char *to_dir, struct promote_info *ret);

int replica_clone(struct replica *r, const char *group, const char *to_dir, struct promote_info *ret)
{
	int rc;

	if ((rc = fs_mkdir_p(to_dir, 0700)) < 0)
		return rc;
	/* While bascule recv keeps applying: the apply lock, shared, holds its
	 * next apply back; a clone taken with no apply in progress and the same
	 * epoch before and after is whole. */
	if ((rc = apply_lock(r, LOCK_SH)) < 0)
		return rc;
	rc = clone_locked(r, group, to_dir, ret);
	apply_unlock(r, LOCK_SH);
	return rc;
}

static int clone_locked(struct replica *r, const char *group, const char *to_dir, struct promote_info *ret)
{
	struct rstate s1, s2;
	int rc;

	for (int attempt = 0; attempt < 50; attempt++) {
		bool ok = true;
		if ((rc = replica_load_state(r, group, &s1)) < 0)
			return rc == -ENOENT ? err_set(ENOENT, "group %s has no complete epoch in %s",
						       group, r->root) : rc;
		if (group_busy(r, group, &s1)) {
			usleep(100000);
			continue;
		}
		for (uint32_t i = 0; i < s1.n_sources && ok; i++) {
			char from[RPATH], to[RPATH];
			if ((rc = replica_file(r, from, sizeof(from), group, s1.sources[i].name)) < 0)
				return rc;
			if (snprintf(to, sizeof(to), "%s/%s", to_dir, s1.sources[i].name) >= (int)sizeof(to))
				return -ENAMETOOLONG;
			unlink(to);
			if ((rc = copy_file(from, to)) < 0)
				return rc;
		}
		if ((rc = replica_load_state(r, group, &s2)) < 0)
			return rc;
		if (s2.epoch != s1.epoch || group_busy(r, group, &s2)) {
			usleep(100000);
			continue;
		}
		memset(ret, 0, sizeof(*ret));
		ret->epoch = s1.epoch;
		ret->cut_time = s1.cut_time;
		ret->flags = s1.flags;
		ret->n_sources = s1.n_sources;
		for (uint32_t i = 0; i < s1.n_sources; i++)
			snprintf(ret->sources[i], sizeof(ret->sources[i]), "%s", s1.sources[i].name);
		return fs_fsync_dir(to_dir);
	}
	return err_set(EAGAIN, "group %s kept changing while it was cloned (50 attempts); "
			       "pause replication for a moment and try again", group);
}
