/* walspool.c - the WAL of a PostgreSQL source in state_dir: segment files
 * named as in pg_wal (the newest NAME.partial until complete), contiguous
 * from the oldest held to the newest, and an info file naming the system,
 * segment size and timeline they belong to.  Written by the spool's writer
 * thread (pgwriter.c), which publishes how far the WAL is durable; read by
 * the loop to ship it.  On a restart streaming resumes at the start of the
 * newest partial segment (the server keeps the segment holding the slot's
 * position), as pg_receivewal does: its bytes are rewritten, the same. */
#include "pgsource.h"
#include "err.h"
#include "fsutil.h"
#include "pgwal.h"
#include "sfile.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WS_MAGIC "BSCWALS1"
#define WS_QUEUE (32u << 20)       /* WAL queued for the thread, at most */
#define WS_SYNC_EVERY (16u << 20)  /* fdatasync at least this often within a batch */

static void seg_file(char *buf, uint32_t segsize, uint32_t tli, uint64_t segno, bool partial)
{
	pgwal_seg_name(buf, tli, segno, segsize);
	if (partial)
		strcat(buf, ".partial");
}

static int write_info(struct walspool *ws, uint64_t system_id, uint32_t segsize, uint32_t tli)
{
	struct wbuf b;
	int r;

	sfile_begin(&b, WS_MAGIC);
	r = wbuf_put_u64(&b, system_id);
	if (!r) r = wbuf_put_u32(&b, segsize);
	if (!r) r = wbuf_put_u32(&b, tli);
	if (!r) r = sfile_seal(&b, NULL);
	if (!r) r = fs_write_atomic_at(ws->dirfd, "info", b.p, b.len, 0600, (uid_t)-1, (gid_t)-1);
	wbuf_free(&b);
	if (r < 0)
		return err_set(-r, "cannot write %s/info: %s", ws->dir, strerror(-r));
	return 0;
}

/* Every segment file of the directory: calls FN(ws, name, tli, segno,
 * partial, ctx) for each. */
static int each_segment(struct walspool *ws, void (*fn)(struct walspool *, const char *, uint32_t, uint64_t, bool,
							 void *), void *ctx)
{
	DIR *d;
	struct dirent *e;

	if (!ws->wseg)
		return 0; /* nothing was ever written */
	if (!(d = fdopendir(dup(ws->dirfd))))
		return err_set(errno, "cannot read %s: %s", ws->dir, strerror(errno));
	while ((e = readdir(d))) {
		char name[PGWAL_SEG_NAME_LEN];
		size_t n = strlen(e->d_name);
		bool partial = n == 32 && !strcmp(e->d_name + 24, ".partial");
		uint32_t tli;
		uint64_t segno;

		if (n != 24 && !partial)
			continue;
		snprintf(name, sizeof(name), "%.24s", e->d_name);
		if (pgwal_seg_parse(name, ws->wseg, &tli, &segno) == 0)
			fn(ws, e->d_name, tli, segno, partial, ctx);
	}
	closedir(d);
	return 0;
}

static void unlink_one(struct walspool *ws, const char *name, uint32_t tli, uint64_t segno, bool partial, void *ctx)
{
	uint64_t *below = ctx;

	if (!below || (segno + 1) * (uint64_t)ws->wseg <= *below)
		unlinkat(ws->dirfd, name, 0);
}

struct scan {
	uint64_t lo, hi;           /* oldest and newest segment numbers */
	bool any, hi_partial;
	uint8_t *seen;             /* bitmap over a window of segment numbers */
};

static void scan_one(struct walspool *ws, const char *name, uint32_t tli, uint64_t segno, bool partial, void *ctx)
{
	struct scan *s = ctx;
	struct stat st;

	if (tli != ws->wtli || fstatat(ws->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != ws->wseg) {
		unlinkat(ws->dirfd, name, 0); /* another timeline's, or not whole: not ours to keep */
		return;
	}
	if (!s->any || segno > s->hi || (segno == s->hi && !partial)) {
		s->hi = segno;
		s->hi_partial = partial;
	}
	if (!s->any || segno < s->lo)
		s->lo = segno;
	s->any = true;
}

static void count_one(struct walspool *ws, const char *name, uint32_t tli, uint64_t segno, bool partial, void *ctx)
{
	struct scan *s = ctx;

	if (segno >= s->lo && segno <= s->hi && segno - s->lo < (1u << 20))
		s->seen[(segno - s->lo) / 8] |= (uint8_t)(1u << ((segno - s->lo) % 8));
}

/* What the directory holds: the contiguous run of segments ending with the
 * newest (an older run after a gap is removed). */
static int scan_dir(struct walspool *ws)
{
	struct scan s = { 0 };
	uint64_t first;
	int r;

	if ((r = each_segment(ws, scan_one, &s)) < 0 || !s.any)
		return r;
	if (s.hi - s.lo >= (1u << 20))
		s.lo = s.hi - ((1u << 20) - 1);
	if (!(s.seen = calloc(1, (1u << 20) / 8)))
		return -ENOMEM;
	each_segment(ws, count_one, &s);
	first = s.hi;
	while (first > s.lo && (s.seen[(first - 1 - s.lo) / 8] & (1u << ((first - 1 - s.lo) % 8))))
		first--;
	free(s.seen);
	{
		uint64_t below = first * (uint64_t)ws->wseg;
		each_segment(ws, unlink_one, &below);
	}
	atomic_store(&ws->start, first * (uint64_t)ws->wseg);
	atomic_store(&ws->durable, (s.hi + !s.hi_partial) * (uint64_t)ws->wseg);
	atomic_store(&ws->readable, atomic_load(&ws->durable));
	atomic_store(&ws->bytes, (s.hi - first + 1) * (uint64_t)ws->wseg);
	return 0;
}

/* ---- the thread ---- */

/* WAL up to LSN is in its file: the loop may read (and, in synchronous:
 * remote, send) it before it is durable.  Never lowered but by a fresh
 * start: a resumed stream rewrites the same bytes. */
static void ws_readable(struct walspool *ws, uint64_t lsn)
{
	if (lsn > atomic_load(&ws->readable))
		atomic_store(&ws->readable, lsn);
}

static int ws_sync(struct walspool *ws)
{
	if (ws->fd >= 0 && ws->written > ws->synced && fdatasync(ws->fd) < 0)
		return err_set(errno, "cannot fsync the WAL spool in %s: %s", ws->dir, strerror(errno));
	ws->synced = ws->written;
	ws->unsynced = 0;
	if (ws->written > atomic_load(&ws->durable))
		atomic_store(&ws->durable, ws->written);
	return 0;
}

static int close_segment(struct walspool *ws)
{
	char partial[PGWAL_SEG_NAME_LEN + 8], name[PGWAL_SEG_NAME_LEN + 8];
	bool complete = ws->written >= (ws->fd_segno + 1) * (uint64_t)ws->wseg;
	int r = 0;

	if (ws->fd < 0)
		return 0;
	if (fdatasync(ws->fd) < 0)
		r = -errno;
	close(ws->fd);
	ws->fd = -1;
	seg_file(partial, ws->wseg, ws->fd_tli, ws->fd_segno, true);
	seg_file(name, ws->wseg, ws->fd_tli, ws->fd_segno, false);
	if (r == 0 && complete && renameat(ws->dirfd, partial, ws->dirfd, name) < 0 && errno != ENOENT)
		r = -errno;
	if (r == 0 && fsync(ws->dirfd) < 0)
		r = -errno;
	if (r < 0)
		return err_set(-r, "cannot complete WAL segment %s in %s: %s", name, ws->dir, strerror(-r));
	return 0;
}

static int open_segment(struct walspool *ws, uint32_t tli, uint64_t segno)
{
	char name[PGWAL_SEG_NAME_LEN + 8];
	struct stat st;
	int fd;

	/* A complete segment written again (a resumed stream): same bytes. */
	seg_file(name, ws->wseg, tli, segno, false);
	fd = openat(ws->dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		seg_file(name, ws->wseg, tli, segno, true);
		fd = openat(ws->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return err_set(e, "cannot open WAL segment %s in %s: %s", name, ws->dir, strerror(e));
	}
	if (st.st_size == 0) {
		/* A whole segment, as in pg_wal: zeros written and made durable
		 * now, as PostgreSQL does, so that the fdatasync of each batch
		 * writes data only (a hole, or unwritten extents, would make
		 * every one commit the filesystem's journal). */
		static const uint8_t zeros[1u << 20];
		int e = 0;
		for (uint32_t off = 0; off < ws->wseg && !e; off += sizeof(zeros))
			if (fs_pwrite_full(fd, zeros, ws->wseg - off < sizeof(zeros) ? ws->wseg - off : sizeof(zeros),
					   off) < 0)
				e = errno;
		if (!e && fdatasync(fd) < 0)
			e = errno;
		if (e) {
			close(fd);
			unlinkat(ws->dirfd, name, 0);
			return err_set(e, "cannot size WAL segment %s in %s: %s%s", name, ws->dir, strerror(e),
				       e == ENOSPC ? " (free space in state_dir, or lower wal_spool_max)" : "");
		}
		atomic_fetch_add(&ws->bytes, ws->wseg);
	}
	ws->fd = fd;
	ws->fd_tli = tli;
	ws->fd_segno = segno;
	return 0;
}

static int ws_data(struct walspool *ws, const struct pgw_op *op)
{
	const uint8_t *data = op->data;
	uint64_t lsn = op->lsn;
	uint32_t len = op->len;
	int r;

	if (lsn != ws->written)
		return err_set(EPROTO, "WAL at %llX queued after %llX: a gap in the spool", (unsigned long long)lsn,
			       (unsigned long long)ws->written);
	while (len) {
		uint64_t segno = pgwal_segno(lsn, ws->wseg), off = lsn % ws->wseg;
		uint32_t n = (uint32_t)(len < ws->wseg - off ? len : ws->wseg - off);

		if (ws->fd >= 0 && (ws->fd_segno != segno || ws->fd_tli != op->tli) && (r = close_segment(ws)) < 0)
			return r;
		if (ws->fd < 0 && (r = open_segment(ws, op->tli, segno)) < 0)
			return r;
		if (fs_pwrite_full(ws->fd, data, n, off) < 0)
			return err_set(errno, "cannot write the WAL spool in %s: %s%s", ws->dir, strerror(errno),
				       errno == ENOSPC ? " (free space in state_dir, or lower wal_spool_max)" : "");
		data += n;
		len -= n;
		lsn += n;
		ws->written = lsn;
		ws->unsynced += n;
		ws_readable(ws, lsn);
		if (off + n == ws->wseg) {
			if ((r = close_segment(ws)) < 0)
				return r;
			ws->synced = ws->written;
			ws->unsynced = 0;
			atomic_store(&ws->durable, ws->written);
		}
	}
	return ws->unsynced >= WS_SYNC_EVERY ? ws_sync(ws) : 0;
}

static int ws_apply(void *ctx, const struct pgw_op *op)
{
	struct walspool *ws = ctx;
	int r;

	switch (op->type) {
	case WS_INIT:
		if ((r = close_segment(ws)) < 0)
			return r;
		if (!(op->arg >> 32)) {
			each_segment(ws, unlink_one, NULL);
			atomic_store(&ws->start, 0);
			atomic_store(&ws->durable, 0);
			atomic_store(&ws->readable, 0);
			atomic_store(&ws->bytes, 0);
			ws->written = ws->synced = 0;
		}
		ws->wseg = (uint32_t)op->arg;
		ws->wtli = op->tli;
		return write_info(ws, op->lsn, ws->wseg, op->tli);
	case WS_BEGIN:
		if ((r = close_segment(ws)) < 0)
			return r;
		ws->written = ws->synced = op->lsn;
		if (!atomic_load(&ws->bytes)) {
			atomic_store(&ws->start, op->lsn);
			atomic_store(&ws->durable, op->lsn);
			atomic_store(&ws->readable, op->lsn);
		}
		return 0;
	case WS_DATA:
		return ws_data(ws, op);
	case WS_TRIM: {
		uint64_t below = op->lsn, seg_durable = pgwal_seg_start(atomic_load(&ws->durable), ws->wseg);
		uint64_t start = atomic_load(&ws->start), removed = 0;
		if (below > seg_durable)
			below = seg_durable;
		below = pgwal_seg_start(below, ws->wseg);
		for (uint64_t lsn = start; lsn < below; lsn += ws->wseg) {
			char name[PGWAL_SEG_NAME_LEN + 8];
			seg_file(name, ws->wseg, ws->wtli, lsn / ws->wseg, false);
			if (unlinkat(ws->dirfd, name, 0) < 0) {
				seg_file(name, ws->wseg, ws->wtli, lsn / ws->wseg, true);
				unlinkat(ws->dirfd, name, 0);
			}
			removed += ws->wseg;
		}
		if (below > start) {
			atomic_store(&ws->start, below);
			atomic_fetch_sub(&ws->bytes, removed > atomic_load(&ws->bytes) ? atomic_load(&ws->bytes) : removed);
		}
		return 0;
	}
	}
	return err_set(EINVAL, "unknown WAL spool operation %u", op->type);
}

static int ws_idle(void *ctx)
{
	return ws_sync(ctx);
}

/* ---- the loop ---- */

int walspool_open(struct walspool *ws, const char *dir)
{
	struct sfile f = { 0 };
	struct rbuf b;
	int r;

	memset(ws, 0, sizeof(*ws));
	ws->fd = ws->dirfd = -1;
	snprintf(ws->dir, sizeof(ws->dir), "%s", dir);
	if ((r = fs_mkdir_p(dir, 0700)) < 0)
		return err_wrap(r, "cannot create the WAL spool %s", dir);
	if ((ws->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open the WAL spool %s: %s", dir, strerror(errno));
	r = sfile_read(ws->dirfd, "info", &f);
	if (r == 0 && sfile_open(&f, WS_MAGIC, NULL, &b) == 0 && rbuf_get_u64(&b, &ws->system_id) == 0 &&
	    rbuf_get_u32(&b, &ws->segsize) == 0 && rbuf_get_u32(&b, &ws->tli) == 0 && rbuf_expect_end(&b) == 0 &&
	    pgwal_segsize_ok(ws->segsize) && ws->tli) {
		ws->wseg = ws->segsize;
		ws->wtli = ws->tli;
		r = scan_dir(ws);
	}
	else {
		/* No spool yet, or one that cannot be read: started afresh. */
		ws->system_id = ws->tli = ws->segsize = 0;
		r = 0;
	}
	sfile_free(&f);
	err_clear();
	if (r < 0)
		return r;
	return pgwriter_start(&ws->w, WS_QUEUE, ws_apply, ws_idle, ws);
}

void walspool_close(struct walspool *ws)
{
	free(ws->tail);
	ws->tail = NULL;
	pgwriter_stop(&ws->w);
	if (ws->fd >= 0) {
		if (fdatasync(ws->fd) == 0 && ws->written > atomic_load(&ws->durable))
			atomic_store(&ws->durable, ws->written);
		close(ws->fd);
	}
	ws->fd = -1;
	if (ws->dirfd >= 0)
		close(ws->dirfd);
	ws->dirfd = -1;
}

int walspool_init(struct walspool *ws, uint64_t system_id, uint32_t segsize, uint32_t tli, bool keep)
{
	/* The loop's view changes now; the thread's when it reaches the
	 * operation (after the WAL queued before it). */
	ws->system_id = system_id;
	ws->segsize = segsize;
	ws->tli = tli;
	ws->gen++;
	ws->tail_start = ws->tail_end = 0;
	return pgwriter_put(&ws->w, WS_INIT, tli, system_id, (uint64_t)keep << 32 | segsize, NULL, NULL, 0);
}

uint64_t walspool_resume(const struct walspool *ws)
{
	return ws->tli && atomic_load(&ws->bytes) ? atomic_load(&ws->durable) : 0;
}

/* Copy LEN bytes between the tail's ring at LSN and BUF (TO_RING: into it). */
static void tail_copy(struct walspool *ws, uint64_t lsn, uint8_t *buf, uint32_t len, bool to_ring)
{
	while (len) {
		uint32_t at = (uint32_t)(lsn % WS_TAIL), n = len < WS_TAIL - at ? len : WS_TAIL - at;
		if (to_ring)
			memcpy(ws->tail + at, buf, n);
		else
			memcpy(buf, ws->tail + at, n);
		buf += n;
		lsn += n;
		len -= n;
	}
}

int walspool_tail_put(struct walspool *ws, uint64_t lsn, const void *data, uint32_t len)
{
	if (!ws->tail && !(ws->tail = malloc(WS_TAIL)))
		return -ENOMEM;
	if (lsn != ws->tail_end || ws->tail_start == ws->tail_end)
		ws->tail_start = ws->tail_end = lsn;
	if (len > WS_TAIL) {
		data = (const uint8_t *)data + (len - WS_TAIL);
		lsn += len - WS_TAIL;
		len = WS_TAIL;
	}
	tail_copy(ws, lsn, (uint8_t *)data, len, true);
	ws->tail_end = lsn + len;
	if (ws->tail_end - ws->tail_start > WS_TAIL)
		ws->tail_start = ws->tail_end - WS_TAIL;
	return 0;
}

bool walspool_tail_room(struct walspool *ws, uint32_t len)
{
	uint64_t readable = walspool_readable(ws);

	return ws->tail_end <= readable || ws->tail_end - readable + len <= WS_TAIL;
}

uint64_t walspool_ready(struct walspool *ws)
{
	uint64_t readable = walspool_readable(ws);

	return ws->tail_start <= readable && ws->tail_end > readable ? ws->tail_end : readable;
}

int walspool_read(struct walspool *ws, uint64_t lsn, void *buf, uint32_t len)
{
	uint8_t *p = buf;

	if (lsn < walspool_start(ws) || lsn + len > walspool_ready(ws))
		return err_set(ENOENT, "the WAL spool no longer holds %llX (wal_spool_max)", (unsigned long long)lsn);
	while (len) {
		char name[PGWAL_SEG_NAME_LEN + 8];
		uint64_t segno = pgwal_segno(lsn, ws->segsize), off = lsn % ws->segsize;
		uint32_t n = (uint32_t)(len < ws->segsize - off ? len : ws->segsize - off);
		ssize_t got;
		int fd;

		if (lsn >= ws->tail_start && lsn < ws->tail_end) {
			n = (uint32_t)(len < ws->tail_end - lsn ? len : ws->tail_end - lsn);
			tail_copy(ws, lsn, p, n, false);
			p += n;
			lsn += n;
			len -= n;
			continue;
		}
		if (lsn < ws->tail_start && lsn + n > ws->tail_start)
			n = (uint32_t)(ws->tail_start - lsn); /* the rest from the tail */

		seg_file(name, ws->segsize, ws->tli, segno, false);
		fd = openat(ws->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			seg_file(name, ws->segsize, ws->tli, segno, true);
			fd = openat(ws->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		}
		if (fd < 0) {
			/* Completed (renamed) by the thread between the two. */
			seg_file(name, ws->segsize, ws->tli, segno, false);
			fd = openat(ws->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		}
		if (fd < 0)
			return err_set(errno == ENOENT ? ENOENT : errno, "cannot read WAL segment %s of the spool "
				       "%s: %s", name, ws->dir, strerror(errno));
		got = fs_pread_full(fd, p, n, off);
		close(fd);
		if (got != (ssize_t)n)
			return err_set(EIO, "cannot read WAL segment %s of the spool %s: %s", name, ws->dir,
				       got < 0 ? strerror(errno) : "short file");
		p += n;
		lsn += n;
		len -= n;
	}
	return 0;
}

int walspool_trim(struct walspool *ws, uint64_t lsn)
{
	if (!ws->segsize || pgwal_seg_start(lsn, ws->segsize) <= walspool_start(ws))
		return 0;
	return pgwriter_put(&ws->w, WS_TRIM, ws->tli, lsn, 0, NULL, NULL, 0);
}
