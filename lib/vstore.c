/* vstore.c - vault object store over a local directory or SFTP (libssh2).
 *
 * SFTP writes hand libssh2 2 MiB per call: libssh2 then keeps that much in
 * write requests in flight (pipelining, a new request sent as each is
 * acknowledged) instead of waiting a round trip per 30 KB packet, which is
 * what makes small-buffer SFTP clients slow.  The directories a put has
 * created or found are remembered, so a put costs the round trips of open,
 * fsync and close, not one more per level of its path. */
#include "vstore.h"
#include "vstore_s3.h"
#include "err.h"
#include "fsutil.h"
#include "ssh.h"
#include <dirent.h>
#include <fcntl.h>
#include <libssh2_sftp.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SFTP_IO (2u << 20) /* bytes per libssh2 read/write call */
#define DIRS_MAX 4096      /* directories remembered as existing (a vault has ~260) */

struct vstore {
	bool sftp;
	struct vstore_s3 *s3;   /* s3:// (vstore_s3.c) */
	char root[PATH_MAX];
	char url[PATH_MAX];
	/* local: the directory, opened once: objects are reached relative to
	 * it (a process may then lose the right to walk down to it). */
	int dirfd;
	/* sftp */
	int fd;
	LIBSSH2_SESSION *ssh;
	LIBSSH2_SFTP *sf;
	LIBSSH2_SFTP_HANDLE *rh; /* last object opened for reading */
	char rname[512];
	bool no_fsync;
	mode_t object_mode;
	/* directories (relative to the root) known to exist: a put under one
	 * of them creates nothing and asks the server nothing about them */
	char **dirs;
	size_t ndirs;
	uint64_t written, read;
};

int vstore_url_ok(const char *url)
{
	return strncmp(url, "local:", 6) == 0 || strncmp(url, "sftp://", 7) == 0 || strncmp(url, "s3://", 5) == 0;
}

static int full(struct vstore *v, char *buf, size_t len, const char *name)
{
	if (snprintf(buf, len, "%s/%s", v->root, name) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

/* An SFTP status as an errno, with a sentence naming the object. */
static int sftp_err(struct vstore *v, const char *what, const char *name)
{
	unsigned long e;
	int code;

	if (libssh2_session_last_errno(v->ssh) != LIBSSH2_ERROR_SFTP_PROTOCOL)
		return err_set(ECONNRESET, "vault %s: %s %s: %s", v->url, what, name, ssh_error(v->ssh));
	e = libssh2_sftp_last_error(v->sf);
	switch (e) {
	case LIBSSH2_FX_NO_SUCH_FILE:
	case LIBSSH2_FX_NO_SUCH_PATH: code = ENOENT; break;
	case LIBSSH2_FX_PERMISSION_DENIED:
	case LIBSSH2_FX_WRITE_PROTECT: code = EACCES; break;
	case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
	case LIBSSH2_FX_QUOTA_EXCEEDED: code = ENOSPC; break;
	case LIBSSH2_FX_FILE_ALREADY_EXISTS: code = EEXIST; break;
	case LIBSSH2_FX_OP_UNSUPPORTED: code = EOPNOTSUPP; break;
	default: code = EIO; break;
	}
	return err_set(code, "vault %s: %s %s: %s (SFTP status %lu)", v->url, what, name, strerror(code), e);
}

static bool dirs_known(const struct vstore *v, const char *dir)
{
	for (size_t i = 0; i < v->ndirs; i++)
		if (!strcmp(v->dirs[i], dir))
			return true;
	return false;
}

/* Remember DIR as existing; beyond DIRS_MAX (or out of memory) it is just
 * not remembered, and the next put under it asks the server again. */
static void dirs_add(struct vstore *v, const char *dir)
{
	char *d;

	if (v->ndirs == DIRS_MAX || dirs_known(v, dir))
		return;
	if (!v->dirs && !(v->dirs = calloc(DIRS_MAX, sizeof(*v->dirs))))
		return;
	if ((d = strdup(dir)))
		v->dirs[v->ndirs++] = d;
}

/* Forget every directory: one of them may have been removed behind us. */
static void dirs_forget(struct vstore *v)
{
	for (size_t i = 0; i < v->ndirs; i++)
		free(v->dirs[i]);
	v->ndirs = 0;
}

int vstore_open(const char *url, const struct vstore_opts *o, struct vstore **ret)
{
	struct vstore *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	v->fd = v->dirfd = -1;
	snprintf(v->url, sizeof(v->url), "%s", url);
	v->object_mode = o ? o->object_mode : 0;
	if (strncmp(url, "local:", 6) == 0) {
		snprintf(v->root, sizeof(v->root), "%s", url + 6);
		v->dirfd = open(v->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (v->dirfd < 0) {
			r = errno == ENOENT || errno == ENOTDIR
				    ? err_set(ENOENT, "vault directory %s does not exist: create it (an empty "
						      "directory becomes a vault)", v->root)
				    : err_set(errno, "cannot open the vault directory %s: %s", v->root, strerror(errno));
			free(v);
			return r;
		}
		*ret = v;
		return 0;
	}
	if (strncmp(url, "sftp://", 7) == 0) {
		struct ssh_url u;
		if ((r = ssh_url_parse_scheme(url, "sftp", &u)) < 0)
			goto fail;
		if (!o || (!o->creds && (!o->identity || !o->known_hosts))) {
			r = err_set(EINVAL, "vault %s needs an SSH identity and a known_hosts file", url);
			goto fail;
		}
		v->sftp = true;
		snprintf(v->root, sizeof(v->root), "%s", u.path);
		if ((r = o->creds ? ssh_open_creds(&u, o->creds, "the vault", &v->ssh, &v->fd)
				  : ssh_open(&u, o->identity, o->known_hosts, "the vault", &v->ssh, &v->fd)) < 0)
			goto fail;
		if (!(v->sf = libssh2_sftp_init(v->ssh))) {
			r = err_set(EPROTO, "vault %s: the server offers no SFTP subsystem: %s", url,
				    ssh_error(v->ssh));
			goto fail;
		}
		{
			LIBSSH2_SFTP_ATTRIBUTES a;
			if (libssh2_sftp_stat(v->sf, v->root, &a) != 0) {
				r = sftp_err(v, "cannot reach the vault directory", v->root);
				goto fail;
			}
		}
		*ret = v;
		return 0;
	}
	if (strncmp(url, "s3://", 5) == 0) {
		if ((r = vstore_s3_open(url, o, &v->s3)) < 0)
			goto fail;
		*ret = v;
		return 0;
	}
	r = err_set(EINVAL, "vault url '%s' must be local:DIR, sftp://user@host[:port]/DIR or "
			    "s3://BUCKET/PREFIX", url);
fail:
	vstore_close(v);
	return r;
}

void vstore_close(struct vstore *v)
{
	if (!v)
		return;
	vstore_s3_close(v->s3);
	if (v->rh)
		libssh2_sftp_close(v->rh);
	if (v->sf)
		libssh2_sftp_shutdown(v->sf);
	if (v->ssh) {
		libssh2_session_disconnect(v->ssh, "bye");
		libssh2_session_free(v->ssh);
	}
	if (v->fd >= 0)
		close(v->fd);
	if (v->dirfd >= 0)
		close(v->dirfd);
	dirs_forget(v);
	free(v->dirs);
	free(v);
}

int vstore_dirfd(const struct vstore *v)
{
	return v->sftp || v->s3 ? -1 : v->dirfd;
}

/* fsync the directory holding NAME (relative to the local root). */
static int fsync_parent_at(struct vstore *v, const char *name)
{
	char rel[512], *slash;
	int fd, r = 0;

	snprintf(rel, sizeof(rel), "%s", name);
	slash = strrchr(rel, '/');
	if (slash)
		*slash = 0;
	fd = openat(v->dirfd, slash ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		r = err_set(errno, "vault: cannot sync directory %s/%s: %s", v->root, slash ? rel : "",
			    strerror(errno));
	if (fd >= 0)
		close(fd);
	return r;
}

/* mkdir -p of NAME's parent under the root (directories may already
 * exist); nothing at all if that parent is known to exist (then 1). */
static int make_parents(struct vstore *v, const char *name)
{
	char rel[512], p[PATH_MAX], *last;

	snprintf(rel, sizeof(rel), "%s", name);
	if (!(last = strrchr(rel, '/')))
		return 0;
	*last = 0;
	if (dirs_known(v, rel))
		return 1;
	*last = '/';
	for (char *s = strchr(rel, '/'); s; s = strchr(s + 1, '/')) {
		*s = 0;
		if (full(v, p, sizeof(p), rel) < 0)
			return -ENAMETOOLONG;
		if (v->sftp) {
			LIBSSH2_SFTP_ATTRIBUTES a;
			if (libssh2_sftp_stat(v->sf, p, &a) != 0 &&
			    libssh2_sftp_mkdir(v->sf, p, 0770) != 0 && libssh2_sftp_stat(v->sf, p, &a) != 0)
				return sftp_err(v, "cannot create directory", rel);
		} else if (mkdirat(v->dirfd, rel, 0700) == 0) {
			int r = fsync_parent_at(v, rel); /* the new directory survives a crash */
			if (r < 0)
				return r;
		} else if (errno != EEXIST)
			return err_set(errno, "vault: cannot create %s: %s", p, strerror(errno));
		dirs_add(v, rel);
		*s = '/';
	}
	return 0;
}

/* Create P (NAME under the root) exclusively in a local vault, write,
 * fsync.  *CREATED tells whether the failure (if any) came after the
 * object was created. */
static int put_local(struct vstore *v, const char *p, const char *name, const void *data, size_t len,
		     bool *created)
{
	int fd = openat(v->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, v->object_mode ? v->object_mode : 0600);
	int r;

	if (fd < 0)
		return errno == EEXIST ? -EEXIST : err_set(errno, "vault: cannot create %s: %s", p, strerror(errno));
	*created = true;
	if ((r = fs_write_full(fd, data, len)) < 0 || fsync(fd) < 0) {
		r = err_set(r < 0 ? -r : errno, "vault: cannot write %s: %s", p, strerror(r < 0 ? -r : errno));
		close(fd);
		return r;
	}
	close(fd);
	v->written += len;
	return fsync_parent_at(v, name);
}

/* The same over SFTP: exclusive open, pipelined writes, fsync@openssh.com
 * (when the server has it), close. */
static int put_sftp(struct vstore *v, const char *p, const char *name, const void *data, size_t len,
		    bool *created)
{
	LIBSSH2_SFTP_HANDLE *h = libssh2_sftp_open(v->sf, p, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL,
						   v->object_mode ? (long)v->object_mode : 0640);
	const uint8_t *d = data;
	size_t off = 0;
	int r;

	if (!h) {
		LIBSSH2_SFTP_ATTRIBUTES a;
		r = sftp_err(v, "cannot create", name);
		/* SFTP v3 servers answer a plain FAILURE for an existing file. */
		if (r != -ECONNRESET && libssh2_sftp_stat(v->sf, p, &a) == 0)
			return -EEXIST;
		return r;
	}
	*created = true;
	while (off < len) {
		size_t n = len - off > SFTP_IO ? SFTP_IO : len - off;
		ssize_t w = libssh2_sftp_write(h, (const char *)d + off, n);
		if (w <= 0) {
			r = sftp_err(v, "cannot write", name);
			libssh2_sftp_close(h);
			return r;
		}
		off += (size_t)w;
		v->written += (uint64_t)w;
	}
	if (!v->no_fsync && libssh2_sftp_fsync(h) != 0) {
		r = sftp_err(v, "cannot fsync", name);
		if (r != -EOPNOTSUPP) {
			libssh2_sftp_close(h);
			return r;
		}
		err_clear();
		v->no_fsync = true; /* the server has no fsync@openssh.com: its close is all we get */
	}
	if (libssh2_sftp_close(h) != 0)
		return sftp_err(v, "cannot close", name);
	return 0;
}

int vstore_put(struct vstore *v, const char *name, const void *data, size_t len)
{
	char p[PATH_MAX];
	int r;

	if (v->s3) {
		if ((r = vstore_s3_put(v->s3, name, data, len)) == 0)
			v->written += len;
		return r;
	}
	if ((r = full(v, p, sizeof(p), name)) < 0)
		return r;
	for (;;) {
		bool created = false;
		int known = make_parents(v, name);
		if (known < 0)
			return known;
		r = v->sftp ? put_sftp(v, p, name, data, len, &created) : put_local(v, p, name, data, len, &created);
		if (r == 0 || r == -EEXIST || r == -ECONNRESET || created || !known)
			return r;
		/* NAME could not be created in a directory remembered as existing:
		 * it may have been removed behind us (by the provider; an SFTP v3
		 * server may say only FAILURE).  Forget them all and try once
		 * more, asking the server about each level. */
		err_clear();
		dirs_forget(v);
	}
}

ssize_t vstore_read(struct vstore *v, const char *name, uint64_t off, void *buf, size_t len)
{
	char p[PATH_MAX];
	size_t got = 0;
	int r;

	if (v->s3) {
		ssize_t n = vstore_s3_read(v->s3, name, off, buf, len);
		if (n > 0)
			v->read += (uint64_t)n;
		return n;
	}
	if ((r = full(v, p, sizeof(p), name)) < 0)
		return r;
	if (!v->sftp) {
		int fd = openat(v->dirfd, name, O_RDONLY | O_CLOEXEC);
		ssize_t n;
		if (fd < 0)
			return err_set(errno, "vault: cannot open %s: %s", name, strerror(errno));
		n = fs_pread_full(fd, buf, len, off);
		close(fd);
		if (n < 0)
			return err_set((int)-n, "vault: cannot read %s: %s", name, strerror((int)-n));
		v->read += (uint64_t)n;
		return n;
	}
	if (!v->rh || strcmp(v->rname, name) != 0) {
		if (v->rh)
			libssh2_sftp_close(v->rh);
		v->rh = libssh2_sftp_open(v->sf, p, LIBSSH2_FXF_READ, 0);
		v->rname[0] = 0;
		if (!v->rh)
			return sftp_err(v, "cannot open", name);
		snprintf(v->rname, sizeof(v->rname), "%s", name);
	}
	libssh2_sftp_seek64(v->rh, off);
	while (got < len) {
		size_t n = len - got > SFTP_IO ? SFTP_IO : len - got;
		ssize_t m = libssh2_sftp_read(v->rh, (char *)buf + got, n);
		if (m < 0) {
			r = sftp_err(v, "cannot read", name);
			libssh2_sftp_close(v->rh);
			v->rh = NULL;
			return r;
		}
		if (m == 0)
			break;
		got += (size_t)m;
	}
	v->read += got;
	return (ssize_t)got;
}

int vstore_stat(struct vstore *v, const char *name, uint64_t *size, uint64_t *mtime)
{
	char p[PATH_MAX];
	int r;

	if (v->s3)
		return vstore_s3_stat(v->s3, name, size, mtime);
	if ((r = full(v, p, sizeof(p), name)) < 0)
		return r;
	if (!v->sftp) {
		struct stat st;
		if (fstatat(v->dirfd, name, &st, 0) < 0)
			return -errno;
		if (size)
			*size = (uint64_t)st.st_size;
		if (mtime)
			*mtime = (uint64_t)st.st_mtime;
		return 0;
	}
	{
		LIBSSH2_SFTP_ATTRIBUTES a;
		if (libssh2_sftp_stat(v->sf, p, &a) != 0)
			return sftp_err(v, "cannot stat", name);
		if (size)
			*size = a.filesize;
		if (mtime)
			*mtime = a.mtime;
	}
	return 0;
}

int vstore_get(struct vstore *v, const char *name, size_t max, uint8_t **ret, size_t *ret_len)
{
	uint64_t size;
	uint8_t *buf;
	ssize_t n;
	int r;

	if ((r = vstore_stat(v, name, &size, NULL)) < 0)
		return r == -ENOENT ? err_set(ENOENT, "vault object %s is missing", name) : r;
	if (size > max)
		return err_set(EFBIG, "vault object %s is %llu bytes, more than the %zu expected", name,
			       (unsigned long long)size, max);
	if (!(buf = malloc(size ? size : 1)))
		return -ENOMEM;
	n = vstore_read(v, name, 0, buf, size);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	*ret = buf;
	*ret_len = (size_t)n;
	return 0;
}

int vstore_list(struct vstore *v, const char *dir, vstore_list_cb cb, void *ctx)
{
	char p[PATH_MAX];
	int r = 0;

	if (v->s3)
		return vstore_s3_list(v->s3, dir, cb, ctx);
	if ((r = full(v, p, sizeof(p), dir)) < 0)
		return r;
	if (!v->sftp) {
		int dfd = openat(v->dirfd, *dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		struct dirent *e;
		if (!d) {
			r = errno;
			if (dfd >= 0)
				close(dfd);
			return r == ENOENT ? 0 : err_set(r, "vault: cannot list %s: %s", p, strerror(r));
		}
		while (!r && (e = readdir(d))) {
			struct stat st;
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			r = cb(ctx, e->d_name, S_ISDIR(st.st_mode), (uint64_t)st.st_size, (uint64_t)st.st_mtime);
		}
		closedir(d);
		return r;
	}
	{
		LIBSSH2_SFTP_HANDLE *h = libssh2_sftp_opendir(v->sf, p);
		char name[512];
		LIBSSH2_SFTP_ATTRIBUTES a;
		if (!h) {
			r = sftp_err(v, "cannot list", dir);
			if (r == -ENOENT)
				err_clear(); /* an empty listing, as for a local directory */
			return r == -ENOENT ? 0 : r;
		}
		while (!r) {
			int n = libssh2_sftp_readdir(h, name, sizeof(name), &a);
			if (n < 0) {
				r = sftp_err(v, "cannot list", dir);
				break;
			}
			if (n == 0)
				break;
			if (!strcmp(name, ".") || !strcmp(name, ".."))
				continue;
			r = cb(ctx, name, LIBSSH2_SFTP_S_ISDIR(a.permissions), a.filesize, a.mtime);
		}
		libssh2_sftp_closedir(h);
		return r;
	}
}

/* vstore_list_tree over a store that lists one directory at a time. */
struct tree {
	struct vstore *v;
	const char *top;
	char rel[PATH_MAX];     /* the directory being listed, below TOP */
	vstore_list_cb cb;
	void *ctx;
};

static int tree_entry(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct tree *t = ctx;
	size_t n = strlen(t->rel);
	char sub[PATH_MAX], dir[PATH_MAX];
	int r;

	if (snprintf(sub, sizeof(sub), "%s%s%s", t->rel, n ? "/" : "", name) >= (int)sizeof(sub) ||
	    snprintf(dir, sizeof(dir), "%s%s%s", t->top, *t->top ? "/" : "", sub) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	if (!is_dir)
		return t->cb(t->ctx, sub, 0, size, mtime);
	memcpy(t->rel, sub, strlen(sub) + 1);
	r = vstore_list(t->v, dir, tree_entry, t);
	t->rel[n] = 0;
	return r;
}

int vstore_list_tree(struct vstore *v, const char *dir, vstore_list_cb cb, void *ctx)
{
	struct tree t = { .v = v, .top = dir, .cb = cb, .ctx = ctx };

	if (v->s3)
		return vstore_s3_list_tree(v->s3, dir, cb, ctx);
	return vstore_list(v, dir, tree_entry, &t);
}

int vstore_remove(struct vstore *v, const char *name)
{
	char p[PATH_MAX];
	int r;

	if (v->s3)
		return vstore_s3_remove(v->s3, name);
	if ((r = full(v, p, sizeof(p), name)) < 0)
		return r;
	if (!v->sftp)
		return unlinkat(v->dirfd, name, 0) < 0 ? err_set(errno, "vault: cannot remove %s: %s", name, strerror(errno)) : 0;
	if (v->rh && !strcmp(v->rname, name)) {
		libssh2_sftp_close(v->rh);
		v->rh = NULL;
	}
	if (libssh2_sftp_unlink(v->sf, p) != 0)
		return sftp_err(v, "cannot remove", name);
	return 0;
}

int vstore_audit(struct vstore *v, const char *name, char *why, size_t len)
{
	if (len)
		*why = 0;
	return v->s3 ? vstore_s3_audit(v->s3, name, why, len) : 0;
}

int vstore_prefetch(struct vstore *v, const char *dir, const char *const *names, size_t n)
{
	return v->s3 ? vstore_s3_prefetch(v->s3, dir, names, n) : 0;
}

void vstore_share(struct vstore *v, const struct vstore *from)
{
	if (v->s3)
		vstore_s3_share(v->s3, from ? from->s3 : NULL);
}

struct vstore_s3 *vstore_s3_of(struct vstore *v)
{
	return v->s3;
}

uint64_t vstore_bytes_written(const struct vstore *v)
{
	return v->written;
}

uint64_t vstore_bytes_read(const struct vstore *v)
{
	return v->read;
}
