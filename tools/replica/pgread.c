/* pgread.c - reading the committed copy of a PostgreSQL source (pg.h):
 * what the store knows of a base backup, the chain log of the epochs since
 * it, timeline histories, the WAL path from a base to where the copy ends,
 * segments as recovery reads them, and verify. */
#include "pg.h"
#include "err.h"
#include "fsutil.h"
#include "sfile.h"
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#define BASE_MAGIC "BSCPGBS1"
#define CHAIN_BYTES 104 /* a record: 72 bytes, then its MAC */
#define CHAIN_WHAT "bascule chain v1"

int pg_path(char *buf, size_t len, const char *group, const char *source, uint64_t sys, const char *fmt, ...)
{
	char tail[256] = "";
	va_list ap;
	int n;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(tail, sizeof(tail), fmt, ap);
		va_end(ap);
	}
	if (!sys)
		n = snprintf(buf, len, "%s/.%s.pg", group, source);
	else
		n = snprintf(buf, len, "%s/.%s.pg/%016llx%s%s", group, source, (unsigned long long)sys,
			     tail[0] ? "/" : "", tail);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

/* ---- base descriptions ---- */

static int base_info_path(char *p, size_t len, const char *group, const char *source, uint64_t sys, uint64_t id,
			  bool tmp)
{
	return pg_path(p, len, group, source, sys, "base/%016llx%s/bascule-base", (unsigned long long)id,
		       tmp ? ".tmp" : "");
}

int pgbase_write(struct replica *r, const char *group, const char *source, const struct pgbase *b, bool tmp)
{
	char path[RPATH];
	struct wbuf w;
	int rc;

	if ((rc = base_info_path(path, sizeof(path), group, source, b->system_id, b->id, tmp)) < 0)
		return rc;
	sfile_begin(&w, BASE_MAGIC);
	rc = wbuf_put_str(&w, group);
	if (!rc) rc = wbuf_put_str(&w, source);
	if (!rc) rc = wbuf_put_u64(&w, b->system_id);
	if (!rc) rc = wbuf_put_u64(&w, b->id);
	if (!rc) rc = wbuf_put_u32(&w, b->tli);
	if (!rc) rc = wbuf_put_u64(&w, b->end_lsn);
	if (!rc) rc = wbuf_put_u32(&w, b->end_tli);
	if (!rc) rc = wbuf_put_u64(&w, b->epoch);
	if (!rc) rc = wbuf_put_u64(&w, b->cut_time);
	if (!rc) rc = wbuf_put_u64(&w, b->bytes);
	if (!rc) rc = wbuf_put_bytes(&w, b->digest, DIGEST_BYTES);
	if (!rc) rc = wbuf_put_u32(&w, b->n_files);
	for (uint32_t i = 0; !rc && i < b->n_files; i++) {
		rc = wbuf_put_str(&w, b->files[i].name);
		if (!rc) rc = wbuf_put_u64(&w, b->files[i].size);
	}
	if (!rc)
		rc = tree_sfile_write(r, path, &w, r->mac_key);
	wbuf_free(&w);
	return rc;
}

int pgbase_load(struct replica *r, const char *group, const char *source, uint64_t sys, uint64_t id, bool tmp,
		struct pgbase *ret)
{
	char path[RPATH], g[NAME_MAX_LEN + 1], s[NAME_MAX_LEN + 1];
	struct sfile f = { 0 };
	struct pgbase b;
	struct rbuf body;
	int rc;

	if (!r->key)
		return err_set(ENOKEY, "group %s needs its site key for this (give --key FILE)", group);
	if ((rc = base_info_path(path, sizeof(path), group, source, sys, id, tmp)) < 0 ||
	    (rc = tree_sfile_read(r, path, &f)) < 0)
		return rc;
	memset(&b, 0, sizeof(b));
	if (sfile_open(&f, BASE_MAGIC, r->mac_key, &body) < 0 || rbuf_get_str(&body, g, sizeof(g)) < 0 ||
	    rbuf_get_str(&body, s, sizeof(s)) < 0 || strcmp(g, group) || strcmp(s, source) ||
	    rbuf_get_u64(&body, &b.system_id) < 0 || rbuf_get_u64(&body, &b.id) < 0 ||
	    rbuf_get_u32(&body, &b.tli) < 0 || rbuf_get_u64(&body, &b.end_lsn) < 0 ||
	    rbuf_get_u32(&body, &b.end_tli) < 0 || rbuf_get_u64(&body, &b.epoch) < 0 ||
	    rbuf_get_u64(&body, &b.cut_time) < 0 || rbuf_get_u64(&body, &b.bytes) < 0 ||
	    rbuf_get_bytes(&body, b.digest, DIGEST_BYTES) < 0 || rbuf_get_u32(&body, &b.n_files) < 0 ||
	    b.n_files > PGBASE_MAX_FILES || b.system_id != sys || b.id != id)
		rc = -EBADMSG;
	for (uint32_t i = 0; rc == 0 && i < b.n_files; i++)
		if (rbuf_get_str(&body, b.files[i].name, sizeof(b.files[i].name)) < 0 ||
		    !name_ok(b.files[i].name) || rbuf_get_u64(&body, &b.files[i].size) < 0)
			rc = -EBADMSG;
	if (rc == 0 && rbuf_expect_end(&body) < 0)
		rc = -EBADMSG;
	sfile_free(&f);
	if (rc < 0)
		return err_set(EBADMSG, "%s/%s fails its authentication with the site key or is damaged: "
					"refused; the primary sends a new base backup once this source is "
					"marked diverged (bascule replica verify)", r->root, path);
	*ret = b;
	return 0;
}

/* ---- the chain log ---- */

/* Keyed with the replica key and bound to the base directory (the same
 * before and after its rename from ID.tmp). */
static void chain_mac(struct replica *r, const char *dir, const uint8_t rec[72], uint8_t mac[32])
{
	crypto_generichash_state st;
	size_t n = strlen(dir);

	if (n > 4 && !strcmp(dir + n - 4, ".tmp"))
		n -= 4;
	crypto_generichash_init(&st, r->mac_key, sizeof(r->mac_key), 32);
	crypto_generichash_update(&st, (const uint8_t *)CHAIN_WHAT, sizeof(CHAIN_WHAT));
	crypto_generichash_update(&st, (const uint8_t *)dir, n);
	crypto_generichash_update(&st, (const uint8_t *)"", 1);
	crypto_generichash_update(&st, rec, 72);
	crypto_generichash_final(&st, mac, 32);
}

static void chain_encode(const struct pgchain_rec *c, uint8_t p[72])
{
	struct wbuf w;

	wbuf_init(&w, 72);
	wbuf_put_u64(&w, c->epoch);
	wbuf_put_u64(&w, c->cut_time);
	wbuf_put_u64(&w, c->start);
	wbuf_put_u64(&w, c->end);
	wbuf_put_u32(&w, c->tli);
	wbuf_put_u8(&w, c->flags);
	wbuf_put_bytes(&w, (uint8_t[3]){ 0 }, 3);
	wbuf_put_bytes(&w, c->digest, DIGEST_BYTES);
	memcpy(p, w.p, 72);
	wbuf_free(&w);
}

static int chain_decode(struct replica *r, const char *dir, const uint8_t *p, struct pgchain_rec *c)
{
	uint8_t mac[32], pad[3];
	struct rbuf b = rbuf_init(p, 72);

	chain_mac(r, dir, p, mac);
	if (sodium_memcmp(mac, p + 72, 32) != 0)
		return -EBADMSG;
	rbuf_get_u64(&b, &c->epoch);
	rbuf_get_u64(&b, &c->cut_time);
	rbuf_get_u64(&b, &c->start);
	rbuf_get_u64(&b, &c->end);
	rbuf_get_u32(&b, &c->tli);
	rbuf_get_u8(&b, &c->flags);
	rbuf_get_bytes(&b, pad, 3);
	rbuf_get_bytes(&b, c->digest, DIGEST_BYTES);
	return c->start <= c->end && c->tli ? 0 : -EBADMSG;
}

int pgchain_read(struct replica *r, const char *dir, uint64_t max_epoch, struct pgchain_rec **ret, size_t *ret_n)
{
	char path[RPATH];
	struct pgchain_rec *v = NULL;
	uint8_t *buf = NULL;
	uint64_t size;
	size_t n = 0;
	int fd, rc;

	if (!r->key)
		return err_set(ENOKEY, "the chain log %s/%s needs the site key (give --key FILE)", r->root, dir);
	if (snprintf(path, sizeof(path), "%s/chain", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if ((fd = tree_open(r, path, O_RDONLY, 0)) < 0)
		return fd;
	if ((rc = fs_fd_size(fd, &size)) < 0)
		goto out;
	size -= size % CHAIN_BYTES; /* a record cut by a crash was never committed */
	if (size > (256ULL << 20)) {
		rc = err_set(EFBIG, "%s/%s is larger than 256 MiB", r->root, path);
		goto out;
	}
	if (!(buf = malloc(size ? size : 1)) || !(v = malloc(sizeof(*v) * (size / CHAIN_BYTES + 1)))) {
		rc = -ENOMEM;
		goto out;
	}
	if (fs_pread_full(fd, buf, size, 0) != (ssize_t)size) {
		rc = err_set(EIO, "cannot read %s/%s", r->root, path);
		goto out;
	}
	for (uint64_t off = 0; off < size; off += CHAIN_BYTES) {
		struct pgchain_rec c;
		if (chain_decode(r, dir, buf + off, &c) < 0) {
			rc = err_set(EBADMSG, "%s/%s: record %llu fails its authentication with the site key",
				     r->root, path, (unsigned long long)(off / CHAIN_BYTES));
			goto out;
		}
		if (c.epoch > max_epoch)
			break;
		/* Appends drop later records first: epochs increase. */
		if (n && c.epoch <= v[n - 1].epoch) {
			rc = err_set(EBADMSG, "%s/%s: epochs out of order", r->root, path);
			goto out;
		}
		v[n++] = c;
	}
	*ret = v;
	*ret_n = n;
	v = NULL;
out:
	close(fd);
	free(buf);
	free(v);
	return rc;
}

int pgchain_append(struct replica *r, const char *dir, const struct pgchain_rec *rec, struct syncset *ss)
{
	uint8_t p[CHAIN_BYTES];
	char path[RPATH];
	uint64_t size;
	int fd, rc;

	if (snprintf(path, sizeof(path), "%s/chain", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if ((fd = tree_open(r, path, O_RDWR | O_CREAT, 0600)) < 0)
		return fd;
	if ((rc = fs_fd_size(fd, &size)) < 0)
		goto out;
	size -= size % CHAIN_BYTES;
	/* From the end: records of this epoch or later were never committed. */
	while (size) {
		struct pgchain_rec c;
		if (fs_pread_full(fd, p, CHAIN_BYTES, size - CHAIN_BYTES) != CHAIN_BYTES ||
		    chain_decode(r, dir, p, &c) < 0 || c.epoch < rec->epoch)
			break;
		size -= CHAIN_BYTES;
	}
	chain_encode(rec, p);
	chain_mac(r, dir, p, p + 72);
	if (ftruncate(fd, (off_t)size) < 0 || fs_pwrite_full(fd, p, CHAIN_BYTES, size) < 0)
		rc = -errno;
	else
		rc = ss ? syncset_fd(ss, fd, true) : fdatasync(fd) < 0 ? -errno : 0;
	if (rc < 0)
		rc = err_set(rc, "cannot write %s/%s: %s", r->root, path, strerror(-rc));
out:
	close(fd);
	return rc;
}

/* ---- timeline histories ---- */

int pghistory_load(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
		   char **ret, size_t *ret_len)
{
	char name[PGWAL_HISTORY_NAME_LEN], path[RPATH], *text = NULL;
	uint64_t size;
	int fd, rc;

	pgwal_history_name(name, tli);
	if ((rc = pg_path(path, sizeof(path), group, source, sys, "wal/%s", name)) < 0)
		return rc;
	if ((fd = tree_open(r, path, O_RDONLY, 0)) < 0)
		return fd;
	if ((rc = fs_fd_size(fd, &size)) == 0 && size > PGWAL_HISTORY_MAX)
		rc = err_set(EFBIG, "%s/%s is larger than %u bytes", r->root, path, PGWAL_HISTORY_MAX);
	if (rc == 0 && !(text = malloc(size + 1)))
		rc = -ENOMEM;
	if (rc == 0 && fs_pread_full(fd, text, size, 0) != (ssize_t)size) {
		free(text);
		rc = err_set(EIO, "cannot read %s/%s", r->root, path);
	}
	close(fd);
	if (rc < 0)
		return rc;
	text[size] = 0;
	*ret = text;
	*ret_len = size;
	return 0;
}

int pghistory_read(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
		   struct pgwal_switch *ret, size_t max, size_t *ret_n)
{
	char *text;
	size_t len;
	int rc;

	if (tli == 1) {
		*ret_n = 0;
		return 0;
	}
	if ((rc = pghistory_load(r, group, source, sys, tli, &text, &len)) < 0)
		return rc == -ENOENT ? err_set(EBADMSG, "the history file of timeline %u of %s/%s is "
							"missing in %s", tli, group, source, r->root) : rc;
	rc = pgwal_history_parse(text, len, tli, ret, max, ret_n);
	free(text);
	return rc < 0 ? err_set(EBADMSG, "the history file of timeline %u of %s/%s does not parse", tli, group,
				source) : 0;
}

/* ---- the WAL of a copy ---- */

int pg_wal_path(struct replica *r, const char *group, const struct state_source *x, const struct pgbase *b,
		struct pgpath *ret)
{
	struct pgwal_switch sw[PG_MAX_PATH];
	struct pgpath p = { 0 };
	size_t n = 0, k;
	int rc;

	if (x->timeline == b->tli) {
		p.n = 1;
		p.r[0] = (struct pgrange){ b->tli, b->id, x->end_lsn };
		*ret = p;
		return 0;
	}
	if ((rc = pghistory_read(r, group, x->name, x->system_id, x->timeline, sw, PG_MAX_PATH - 1, &n)) < 0)
		return rc;
	for (k = 0; k < n && sw[k].tli != b->tli; k++)
		;
	if (k == n || b->id > sw[k].end || x->end_lsn < sw[n - 1].end)
		return err_set(EBADMSG, "%s/%s: the base backup of timeline %u is not an ancestor of timeline %u "
					"where the copy ends", group, x->name, b->tli, x->timeline);
	p.r[p.n++] = (struct pgrange){ b->tli, b->id, sw[k].end };
	for (size_t i = k + 1; i < n; i++)
		p.r[p.n++] = (struct pgrange){ sw[i].tli, sw[i - 1].end, sw[i].end };
	p.r[p.n++] = (struct pgrange){ x->timeline, sw[n - 1].end, x->end_lsn };
	*ret = p;
	return 0;
}

int pg_copy_open(struct replica *r, const char *group, const struct state_source *x, struct pgbase *ret_base,
		 struct pgpath *ret_path)
{
	int rc = pgbase_load(r, group, x->name, x->system_id, x->base_id, false, ret_base);

	if (rc == -ENOENT)
		return err_set(EBADMSG, "the base backup %016llx of %s/%s is missing in %s", (unsigned long long)x->base_id,
			       group, x->name, r->root);
	return rc < 0 ? rc : pg_wal_path(r, group, x, ret_base, ret_path);
}

/* The chain of base ID of source X as committed (to X's epoch) from its
 * base record on: its first LSN and its last, all of timeline TLI.  1, or
 * 0 when it has none such (or cannot be read). */
static int chain_span(struct replica *r, const char *group, const struct state_source *x, uint64_t id, uint32_t tli,
		      uint64_t *ret_start, uint64_t *ret_end)
{
	struct pgchain_rec *c = NULL;
	char dir[RPATH];
	size_t n = 0, first = 0;
	int ok = 0;

	if (pg_path(dir, sizeof(dir), group, x->name, x->system_id, "base/%016llx", (unsigned long long)id) < 0 ||
	    pgchain_read(r, dir, x->epoch, &c, &n) < 0) {
		err_clear();
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (c[i].flags & PGCHAIN_BASE)
			first = i;
	if (n && (c[first].flags & PGCHAIN_BASE)) {
		ok = 1;
		for (size_t i = first; i < n && ok; i++)
			ok = c[i].tli == tli && (i == first || c[i].start == c[i - 1].end);
		*ret_start = c[first].start;
		*ret_end = c[n - 1].end;
	}
	free(c);
	return ok;
}

/* The newest base of X's system held below ID, or 0. */
static uint64_t base_below(struct replica *r, const char *group, const struct state_source *x, uint64_t id)
{
	char dir[RPATH];
	struct dirent *e;
	uint64_t best = 0;
	DIR *d;

	if (pg_path(dir, sizeof(dir), group, x->name, x->system_id, "base") < 0 || !(d = tree_opendir(r, dir)))
		return 0;
	while ((e = readdir(d))) {
		char *end;
		uint64_t v = strtoull(e->d_name, &end, 16);
		if (strlen(e->d_name) == 16 && !*end && v < id && v > best)
			best = v;
	}
	closedir(d);
	return best;
}

int pg_served_before(struct replica *r, const char *group, const struct state_source *x, const struct pgbase *b,
		     uint32_t tli, uint64_t segno)
{
	uint64_t id = b->id, start, end, older, ostart;

	/* Its WAL, from the segment of the base before it on, is held: the
	 * retention removes WAL only before the oldest base it keeps. */

	if (tli != b->tli || segno >= b->id / PG_SEG)
		return 0;
	/* A base that came to a copy going on: its chain starts where the
	 * copy was (its WAL before came with the base before it).  The WAL
	 * from the segment of the base before it on is held: retention
	 * removes WAL only below the oldest base it keeps. */
	for (int hop = 0; hop < PG_MAX_PATH; hop++) {
		if (!chain_span(r, group, x, id, tli, &start, &end) ||
		    !(older = base_below(r, group, x, id)) || !chain_span(r, group, x, older, tli, &ostart, &end) ||
		    end != start)
			return 0;
		if (segno >= older / PG_SEG)
			return 1;
		id = older;
	}
	return 0;
}

int pgseg_open(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
	       uint64_t segno, int flags)
{
	char name[PGWAL_SEG_NAME_LEN], path[RPATH];
	int fd, rc;

	pgwal_seg_name(name, tli, segno, PG_SEG);
	if ((rc = pg_path(path, sizeof(path), group, source, sys, "wal/%s", name)) < 0)
		return rc;
	if ((fd = tree_open(r, path, flags, 0)) != -ENOENT)
		return fd;
	if ((rc = pg_path(path, sizeof(path), group, source, sys, "wal/%s.partial", name)) < 0)
		return rc;
	return tree_open(r, path, flags, 0);
}

int pg_read_wal(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
		uint64_t a, uint64_t z, int (*fn)(void *ctx, const uint8_t *p, size_t n), void *ctx)
{
	uint8_t *buf = malloc(1u << 20);
	int fd = -1, rc = buf ? 0 : -ENOMEM;
	uint64_t segno = UINT64_MAX;

	while (rc == 0 && a < z) {
		uint64_t off = a % PG_SEG;
		size_t n = z - a < (1u << 20) ? (size_t)(z - a) : (1u << 20);
		if (n > PG_SEG - off)
			n = (size_t)(PG_SEG - off);
		if (a / PG_SEG != segno) {
			if (fd >= 0)
				close(fd);
			segno = a / PG_SEG;
			if ((fd = pgseg_open(r, group, source, sys, tli, segno, O_RDONLY)) < 0) {
				char name[PGWAL_SEG_NAME_LEN];
				pgwal_seg_name(name, tli, segno, PG_SEG);
				rc = fd == -ENOENT ? err_set(EBADMSG, "the WAL segment %s of %s/%s is missing", name,
							     group, source) : fd;
				break;
			}
		}
		if (fs_pread_full(fd, buf, n, off) != (ssize_t)n)
			rc = err_set(EBADMSG, "a WAL segment of %s/%s is shorter than its WAL", group, source);
		else
			rc = fn(ctx, buf, n);
		a += n;
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

static int digest_fn(void *ctx, const uint8_t *p, size_t n)
{
	pgdigest_update(ctx, p, n);
	return 0;
}

int pg_wal_digest(struct replica *r, const char *group, const char *source, uint64_t sys, const uint8_t *key,
		  const uint8_t *prev, uint32_t tli, uint64_t a, uint64_t z, uint8_t *ret)
{
	struct pgdigest pd;
	int rc;

	pgdigest_begin(&pd, key, prev, tli, a, z);
	rc = pg_read_wal(r, group, source, sys, tli, a, z, digest_fn, &pd);
	pgdigest_final(&pd, ret);
	return rc;
}

int pg_segment(struct replica *r, const char *group, const char *source, uint64_t sys, uint32_t tli,
	       uint64_t segno, uint64_t limit, uint8_t *buf)
{
	uint64_t start = segno * PG_SEG, keep = limit <= start ? 0 : limit - start;
	ssize_t got;
	int fd;

	if (keep > PG_SEG)
		keep = PG_SEG;
	if ((fd = pgseg_open(r, group, source, sys, tli, segno, O_RDONLY)) < 0)
		return fd;
	got = fs_pread_full(fd, buf, (size_t)keep, 0);
	close(fd);
	if (got < 0)
		return (int)got;
	memset(buf + got, 0, PG_SEG - (size_t)got);
	return 0;
}

/* ---- verify ---- */

/* Recompute the digest of base B's files (as they were sent). */
static int base_digest(struct replica *r, const char *group, const char *source, const struct pgbase *b,
		       uint8_t ret[DIGEST_BYTES])
{
	uint8_t *buf = malloc(1u << 20);
	struct pgdigest d;
	int rc = buf ? 0 : -ENOMEM;

	pgdigest_files_begin(&d);
	for (uint32_t i = 0; rc == 0 && i < b->n_files; i++) {
		char path[RPATH];
		uint64_t size, off = 0;
		int fd;
		if ((rc = pg_path(path, sizeof(path), group, source, b->system_id, "base/%016llx/%s",
				  (unsigned long long)b->id, b->files[i].name)) < 0)
			break;
		if ((fd = tree_open(r, path, O_RDONLY, 0)) < 0) {
			rc = fd == -ENOENT ? err_set(EBADMSG, "%s/%s is missing", r->root, path) : fd;
			break;
		}
		if ((rc = fs_fd_size(fd, &size)) == 0 && size != b->files[i].size)
			rc = err_set(EBADMSG, "%s/%s has %llu bytes, not %llu", r->root, path,
				     (unsigned long long)size, (unsigned long long)b->files[i].size);
		if (rc == 0)
			pgdigest_file(&d, b->files[i].name, size);
		while (rc == 0 && off < size) {
			size_t n = size - off < (1u << 20) ? (size_t)(size - off) : (1u << 20);
			if (fs_pread_full(fd, buf, n, off) != (ssize_t)n)
				rc = err_set(EIO, "cannot read %s/%s", r->root, path);
			else
				pgdigest_update(&d, buf, n);
			off += n;
		}
		close(fd);
	}
	pgdigest_final(&d, ret);
	free(buf);
	return rc;
}

int pg_verify(struct replica *r, const char *group, const struct state_source *x, char *line, size_t len)
{
	uint8_t key[DIGEST_BYTES], d[DIGEST_BYTES], prev[DIGEST_BYTES];
	struct pgchain_rec *c = NULL;
	struct pgbase b;
	struct pgpath path;
	char dir[RPATH], a[17], e[17], l0[PGWAL_LSN_LEN], l1[PGWAL_LSN_LEN], l2[PGWAL_LSN_LEN];
	size_t n = 0, first = 0;
	uint64_t bytes = 0;
	int rc;

	if ((rc = pg_copy_open(r, group, x, &b, &path)) < 0 || (rc = base_digest(r, group, x->name, &b, d)) < 0)
		goto fail;
	if (sodium_memcmp(d, b.digest, DIGEST_BYTES) != 0) {
		rc = err_set(EBADMSG, "the files of base backup %016llx differ from the primary's digest",
			     (unsigned long long)b.id);
		goto fail;
	}
	pgdigest_wal_key(r->key, group, x->name, key);
	if ((rc = pg_path(dir, sizeof(dir), group, x->name, x->system_id, "base/%016llx",
			  (unsigned long long)x->base_id)) < 0 ||
	    (rc = pgchain_read(r, dir, x->epoch, &c, &n)) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (c[i].flags & PGCHAIN_BASE)
			first = i;
	if (!n || !(c[first].flags & PGCHAIN_BASE)) {
		rc = err_set(EBADMSG, "the chain log of base %016llx has no epoch", (unsigned long long)b.id);
		goto fail;
	}
	pgdigest_base(key, b.id, b.digest, prev);
	/* The WAL before the chain's start, from the base's segment (a base
	 * that came to a copy going on): its own record, from the base. */
	if (first && (c[first - 1].flags & PGCHAIN_PREFIX) && c[first - 1].end == c[first].start) {
		const struct pgchain_rec *q = &c[first - 1];
		if ((rc = pg_wal_digest(r, group, x->name, x->system_id, key, prev, q->tli, q->start, q->end, d)) < 0)
			goto fail;
		if (sodium_memcmp(d, q->digest, DIGEST_BYTES) != 0) {
			hash_hex(d, 8, a);
			hash_hex(q->digest, 8, e);
			rc = err_set(EBADMSG, "MISMATCH in the WAL before base %s (%s to %s, timeline %u): digest %s…, "
					      "expected %s…", pgwal_lsn_format(b.id, l0), pgwal_lsn_format(q->start, l1),
				     pgwal_lsn_format(q->end, l2), q->tli, a, e);
			goto fail;
		}
		bytes += q->end - q->start;
	}
	for (size_t i = first; i < n; i++) {
		if (i > first && c[i].start != c[i - 1].end) {
			rc = err_set(EBADMSG, "the chain log skips WAL before epoch %llu", (unsigned long long)c[i].epoch);
			goto fail;
		}
		if ((rc = pg_wal_digest(r, group, x->name, x->system_id, key, prev, c[i].tli, c[i].start, c[i].end,
					prev)) < 0)
			goto fail;
		bytes += c[i].end - c[i].start;
		if (sodium_memcmp(prev, c[i].digest, DIGEST_BYTES) != 0) {
			hash_hex(prev, 8, a);
			hash_hex(c[i].digest, 8, e);
			rc = err_set(EBADMSG, "MISMATCH in the WAL of epoch %llu (%s to %s, timeline %u): digest %s…, "
					      "expected %s…", (unsigned long long)c[i].epoch,
				     pgwal_lsn_format(c[i].start, l1), pgwal_lsn_format(c[i].end, l2), c[i].tli, a, e);
			goto fail;
		}
	}
	if (sodium_memcmp(prev, x->digest, DIGEST_BYTES) != 0 || c[n - 1].end != x->end_lsn ||
	    c[n - 1].tli != x->timeline) {
		hash_hex(prev, 8, a);
		hash_hex(x->digest, 8, e);
		rc = err_set(EBADMSG, "MISMATCH: the chain ends at %s with digest %s…, the state at %s with %s…",
			     pgwal_lsn_format(c[n - 1].end, l1), a, pgwal_lsn_format(x->end_lsn, l2), e);
		goto fail;
	}
	hash_hex(prev, 8, a);
	snprintf(line, len, "%s/%s: OK at epoch %llu (PostgreSQL: base %s, %zu epochs of WAL to %s on timeline %u, "
			    "%llu bytes, digest %s…)", group, x->name, (unsigned long long)x->epoch,
		 pgwal_lsn_format(b.id, l1), n - first, pgwal_lsn_format(x->end_lsn, l2), x->timeline,
		 (unsigned long long)bytes, a);
	free(c);
	return 0;
fail:
	snprintf(line, len, "%s/%s: %s%s", group, x->name, strncmp(err_msg(rc), "MISMATCH", 8) ? "FAILED: " : "",
		 err_msg(rc));
	free(c);
	return rc == -EBADMSG || rc == -ENOENT ? -EBADMSG : rc;
}
