/* pgbase.c - the base backups of a PostgreSQL source in state_dir.
 *
 * DIR/base/tmp receives the base backup being taken (the archives of
 * BASE_BACKUP as pg_basebackup -Ft writes them, then backup_manifest), on
 * the spool's base writer thread; once BASE_BACKUP has ended, every file is
 * fsynced, read back for its digest (docs/protocol.md, section 7: name,
 * size and bytes of each file, in order), a meta file written, and the
 * directory renamed to DIR/base/ID (ID the start LSN, 16 hex digits): a
 * directory with that name is complete.  The newest complete base is kept,
 * older ones removed once a newer one is complete. */
#include "pgsource.h"
#include "err.h"
#include "fsutil.h"
#include "clock.h"
#include "sfile.h"
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PB_MAGIC "BSCBASE1"
#define PB_QUEUE (16u << 20)

/* Remove directory NAME of DIRFD and the files in it. */
static void remove_dir(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(fd, e->d_name, 0);
	closedir(d);
	unlinkat(dirfd, name, AT_REMOVEDIR);
}

static void id_name(char *buf, size_t len, uint64_t id)
{
	snprintf(buf, len, "%016" PRIX64, id);
}

static int meta_encode(struct wbuf *b, const struct pgbase *m)
{
	int r;

	sfile_begin(b, PB_MAGIC);
	r = wbuf_put_u64(b, m->id);
	if (!r) r = wbuf_put_u32(b, m->tli);
	if (!r) r = wbuf_put_u64(b, m->end_lsn);
	if (!r) r = wbuf_put_u64(b, m->system_id);
	if (!r) r = wbuf_put_u64(b, m->time);
	if (!r) r = wbuf_put_u64(b, m->bytes);
	if (!r) r = wbuf_put_bytes(b, m->digest, DIGEST_BYTES);
	if (!r) r = wbuf_put_u32(b, m->n_files);
	for (uint32_t i = 0; !r && i < m->n_files; i++) {
		r = wbuf_put_str(b, m->files[i].name);
		if (!r) r = wbuf_put_u64(b, m->files[i].size);
	}
	if (!r) r = sfile_seal(b, NULL);
	return r;
}

static int meta_read(int dirfd, const char *dir, struct pgbase *ret)
{
	struct sfile f = { 0 };
	struct pgbase m;
	struct rbuf b;
	int fd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW), r;

	if (fd < 0)
		return -errno;
	memset(&m, 0, sizeof(m));
	r = sfile_read(fd, "meta", &f);
	close(fd);
	if (r < 0)
		return r;
	r = -EBADMSG;
	if (sfile_open(&f, PB_MAGIC, NULL, &b) < 0 || rbuf_get_u64(&b, &m.id) < 0 || rbuf_get_u32(&b, &m.tli) < 0 ||
	    rbuf_get_u64(&b, &m.end_lsn) < 0 || rbuf_get_u64(&b, &m.system_id) < 0 || rbuf_get_u64(&b, &m.time) < 0 ||
	    rbuf_get_u64(&b, &m.bytes) < 0 || rbuf_get_bytes(&b, m.digest, DIGEST_BYTES) < 0 ||
	    rbuf_get_u32(&b, &m.n_files) < 0 || m.n_files == 0 || m.n_files > PGBASE_MAX_FILES)
		goto out;
	for (uint32_t i = 0; i < m.n_files; i++)
		if (rbuf_get_str(&b, m.files[i].name, sizeof(m.files[i].name)) < 0 || !name_ok(m.files[i].name) ||
		    rbuf_get_u64(&b, &m.files[i].size) < 0)
			goto out;
	if (rbuf_expect_end(&b) < 0)
		goto out;
	*ret = m;
	r = 0;
out:
	sfile_free(&f);
	return r;
}

/* ---- the thread ---- */

static int close_cur(struct pgbases *b)
{
	int r = 0;

	if (b->fd < 0)
		return 0;
	if (fsync(b->fd) < 0)
		r = err_set(errno, "cannot fsync the base backup in %s: %s", b->dir, strerror(errno));
	close(b->fd);
	b->fd = -1;
	return r;
}

static int open_file(struct pgbases *b, const char *name)
{
	struct pgbase_file *f;
	int r;

	if ((r = close_cur(b)) < 0)
		return r;
	if (!name_ok(name))
		return err_set(EPROTO, "base backup file name '%s' refused (letters, digits and _.- only)", name);
	if (b->cur.n_files == PGBASE_MAX_FILES)
		return err_set(E2BIG, "the base backup has more than %d files (tablespaces): not supported",
			       PGBASE_MAX_FILES - 2);
	for (uint32_t i = 0; i < b->cur.n_files; i++)
		if (!strcmp(b->cur.files[i].name, name))
			return err_set(EPROTO, "the base backup sent %s twice", name);
	if (strlen(name) > NAME_MAX_LEN)
		return err_set(EPROTO, "base backup file name '%.64s...' is too long", name);
	f = &b->cur.files[b->cur.n_files++];
	memcpy(f->name, name, strlen(name) + 1);
	f->size = 0;
	b->fd = openat(b->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (b->fd < 0)
		return err_set(errno, "cannot create %s/tmp/%s: %s", b->dir, name, strerror(errno));
	return 0;
}

/* The digest of the files as written, read back. */
static int digest_files(struct pgbases *b)
{
	uint8_t *buf = malloc(1 << 20);
	struct pgdigest d;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	pgdigest_files_begin(&d);
	b->cur.bytes = 0;
	for (uint32_t i = 0; i < b->cur.n_files; i++) {
		const struct pgbase_file *f = &b->cur.files[i];
		int fd = openat(b->dirfd, f->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		uint64_t off = 0;
		if (fd < 0) {
			r = err_set(errno, "cannot read back %s/tmp/%s: %s", b->dir, f->name, strerror(errno));
			break;
		}
		pgdigest_file(&d, f->name, f->size);
		while (off < f->size && r == 0) {
			size_t n = f->size - off < (1 << 20) ? (size_t)(f->size - off) : (1 << 20);
			if (fs_pread_full(fd, buf, n, off) != (ssize_t)n)
				r = err_set(EIO, "cannot read back %s/tmp/%s", b->dir, f->name);
			pgdigest_update(&d, buf, n);
			off += n;
		}
		close(fd);
		b->cur.bytes += f->size;
	}
	pgdigest_final(&d, b->cur.digest);
	free(buf);
	return r;
}

static int finish(struct pgbases *b, uint64_t end, uint32_t tli)
{
	char name[32];
	struct wbuf w;
	int pfd, r;

	if ((r = close_cur(b)) < 0)
		return r;
	b->cur.end_lsn = end;
	b->cur.time = clock_now_usec();
	if ((r = digest_files(b)) < 0)
		return r;
	r = meta_encode(&w, &b->cur);
	if (!r)
		r = fs_write_atomic_at(b->dirfd, "meta", w.p, w.len, 0600, (uid_t)-1, (gid_t)-1);
	wbuf_free(&w);
	if (r < 0)
		return err_set(-r, "cannot write %s/tmp/meta: %s", b->dir, strerror(-r));
	if ((pfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open %s: %s", b->dir, strerror(errno));
	id_name(name, sizeof(name), b->cur.id);
	remove_dir(pfd, name); /* the same backup taken again */
	r = renameat(pfd, "tmp", pfd, name) < 0 || fsync(pfd) < 0 ? -errno : 0;
	close(pfd);
	close(b->dirfd);
	b->dirfd = -1;
	if (r < 0)
		return err_set(-r, "cannot complete the base backup %s/%s: %s", b->dir, name, strerror(-r));
	pthread_mutex_lock(&b->lock);
	b->result = b->cur;
	b->done = true;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static int pb_apply(void *ctx, const struct pgw_op *op)
{
	struct pgbases *b = ctx;
	int pfd;

	switch (op->type) {
	case PB_START:
		close_cur(b);
		if (b->dirfd >= 0)
			close(b->dirfd);
		b->dirfd = -1;
		memset(&b->cur, 0, sizeof(b->cur));
		b->cur.id = op->lsn;
		b->cur.tli = op->tli;
		b->cur.system_id = op->arg;
		if ((pfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			return err_set(errno, "cannot open %s: %s", b->dir, strerror(errno));
		remove_dir(pfd, "tmp");
		if (mkdirat(pfd, "tmp", 0700) < 0 ||
		    (b->dirfd = openat(pfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
			int e = errno;
			close(pfd);
			return err_set(e, "cannot create %s/tmp: %s", b->dir, strerror(e));
		}
		close(pfd);
		return 0;
	case PB_ARCHIVE:
	case PB_MANIFEST:
		if (b->dirfd < 0)
			return err_set(EPROTO, "base backup data before its start");
		return open_file(b, op->type == PB_MANIFEST ? "backup_manifest" : op->name);
	case PB_DATA:
		if (b->fd < 0)
			return err_set(EPROTO, "base backup data outside a file");
		if (fs_write_full(b->fd, op->data, op->len) < 0)
			return err_set(errno, "cannot write the base backup in %s/tmp: %s%s", b->dir, strerror(errno),
				       errno == ENOSPC ? " (free space in state_dir)" : "");
		b->cur.files[b->cur.n_files - 1].size += op->len;
		return 0;
	case PB_END:
		if (b->dirfd < 0)
			return err_set(EPROTO, "base backup end before its start");
		return finish(b, op->lsn, op->tli);
	case PB_ABORT:
		close_cur(b);
		if (b->dirfd >= 0)
			close(b->dirfd);
		b->dirfd = -1;
		if ((pfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			remove_dir(pfd, "tmp");
			close(pfd);
		}
		return 0;
	}
	return err_set(EINVAL, "unknown base backup operation %u", op->type);
}

static int pb_idle(void *ctx)
{
	return 0; /* durable at PB_END, not before: an unfinished base is not used */
}

/* ---- the loop ---- */

int pgbases_open(struct pgbases *b, const char *dir, uint64_t system_id)
{
	DIR *d;
	struct dirent *e;
	int dfd, r;

	memset(b, 0, sizeof(*b));
	b->fd = b->dirfd = -1;
	pthread_mutex_init(&b->lock, NULL);
	snprintf(b->dir, sizeof(b->dir), "%s", dir);
	if ((r = fs_mkdir_p(dir, 0700)) < 0)
		return err_wrap(r, "cannot create %s", dir);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open %s: %s", dir, strerror(errno));
	remove_dir(dfd, "tmp"); /* a base backup that did not complete */
	if ((d = fdopendir(dup(dfd)))) {
		while ((e = readdir(d))) {
			struct pgbase m;
			if (strlen(e->d_name) != 16 || strspn(e->d_name, "0123456789ABCDEF") != 16)
				continue;
			if (meta_read(dfd, e->d_name, &m) < 0 || m.system_id != system_id || !system_id)
				continue;
			if (!b->have || m.time > b->newest.time) {
				b->newest = m;
				b->have = true;
			}
		}
		closedir(d);
	}
	/* Only the newest is kept. */
	if ((d = fdopendir(dup(dfd)))) {
		char keep[32] = "";
		if (b->have)
			id_name(keep, sizeof(keep), b->newest.id);
		while ((e = readdir(d)))
			if (e->d_name[0] != '.' && strcmp(e->d_name, keep))
				remove_dir(dfd, e->d_name);
		closedir(d);
	}
	close(dfd);
	err_clear();
	return pgwriter_start(&b->w, PB_QUEUE, pb_apply, pb_idle, b);
}

void pgbases_close(struct pgbases *b)
{
	pgwriter_stop(&b->w);
	close_cur(b);
	if (b->dirfd >= 0)
		close(b->dirfd);
	b->dirfd = -1;
	pthread_mutex_destroy(&b->lock);
}

bool pgbases_collect(struct pgbases *b)
{
	struct pgbase old = b->newest;
	bool had = b->have, done;
	char name[32];
	int dfd;

	pthread_mutex_lock(&b->lock);
	done = b->done;
	if (done) {
		b->newest = b->result;
		b->have = true;
		b->done = false;
	}
	pthread_mutex_unlock(&b->lock);
	if (!done)
		return false;
	if (had && old.id != b->newest.id && (dfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		id_name(name, sizeof(name), old.id);
		remove_dir(dfd, name);
		close(dfd);
	}
	return true;
}

void pgbases_forget(struct pgbases *b)
{
	char name[32];
	int dfd;

	if (!b->have)
		return;
	if ((dfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		id_name(name, sizeof(name), b->newest.id);
		remove_dir(dfd, name);
		close(dfd);
	}
	b->have = false;
}

int pgbases_open_files(struct pgbases *b, int *fds)
{
	char name[32], path[4400];
	int r = 0;

	id_name(name, sizeof(name), b->newest.id);
	for (uint32_t i = 0; i < b->newest.n_files; i++) {
		snprintf(path, sizeof(path), "%s/%s/%s", b->dir, name, b->newest.files[i].name);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fds[i] < 0 && !r)
			r = err_set(errno, "cannot open %s: %s", path, strerror(errno));
	}
	if (r < 0)
		for (uint32_t i = 0; i < b->newest.n_files; i++)
			if (fds[i] >= 0) {
				close(fds[i]);
				fds[i] = -1;
			}
	return r;
}
