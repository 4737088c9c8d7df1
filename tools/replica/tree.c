/* tree.c - every access to a replica directory, beneath the root opened once.
 *
 * The directory belongs to the receiving user (docs/secondary-setup.md), and
 * root runs replica commands in it (an operator, a drill).  So no path in it
 * is trusted: each is walked from the root's fd one component at a time with
 * O_NOFOLLOW (a symbolic link anywhere is refused, never followed), files are
 * checked by fstat (a regular file with one link, owned by the directory's
 * owner or root), files are created O_EXCL after removing the name (never
 * truncated in place), and what root creates is given to the owner so that
 * the receiver can go on replacing it.  Paths are relative to the root:
 * "G/S" (a replica file), ".bascule/groups/G/state". */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "sfile.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- paths ---- */

int gpath(const struct replica *r, char *buf, size_t len, const char *group, const char *fmt, ...)
{
	char tail[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(tail, sizeof(tail), fmt, ap);
	va_end(ap);
	n = snprintf(buf, len, ".bascule/groups/%s%s%s", group, tail[0] ? "/" : "", tail);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int replica_file(const struct replica *r, char *buf, size_t len, const char *group,
		 const char *source)
{
	int n = snprintf(buf, len, "%s/%s", group, source);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int seed_paths(struct replica *r, const char *group, const char *source, char *file, char *map,
	       size_t len)
{
	int n = snprintf(file, len, "%s/.%s.seed", group, source);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return gpath(r, map, len, group, "%s.map.seed", source);
}

/* ---- refusals ---- */

/* What was found at REL instead of what Bascule keeps there. */
static int refuse(const struct replica *r, const char *rel, const char *what)
{
	return err_set(EBADMSG, "%s/%s %s: refused, nothing was changed (Bascule never follows a link "
				"or writes a file it did not make inside a replica directory; someone with "
				"write access to it put this there: remove it after checking what it is)",
		       r->root, rel, what);
}

static int tree_err(const struct replica *r, const char *rel, int e, const char *doing)
{
	if (e == ELOOP)
		return refuse(r, rel, "is a symbolic link");
	if (e == ENOTDIR)
		return refuse(r, rel, "is (or lies under) something that is not a directory");
	if (e == ENOENT)
		return -ENOENT;
	return err_set(e, "cannot %s %s/%s: %s", doing, r->root, rel, strerror(e));
}

/* The errno E of an open of NAME in DFD with O_NOFOLLOW, ELOOP for a
 * link (with O_DIRECTORY, a link gives ENOTDIR). */
static int open_errno(int dfd, const char *name, int e)
{
	struct stat st;

	if (e == ENOTDIR && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		return ELOOP;
	return e;
}

/* The owner to give a file root creates (the directory's), or -1: keep. */
static void new_owner(const struct replica *r, uid_t *uid, gid_t *gid)
{
	bool give = geteuid() == 0 && r->owner_uid != 0;

	*uid = give ? r->owner_uid : (uid_t)-1;
	*gid = give ? r->owner_gid : (gid_t)-1;
}

/* ---- walking ---- */

/* Open the directory holding REL's last component (walked from the root,
 * no component a link) and copy that component to BASE.  Returns an fd the
 * caller closes. */
static int walk_parent(const struct replica *r, const char *rel, char *base, size_t blen)
{
	char buf[RPATH], *p = buf, *slash;
	int dfd, nfd;

	if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf))
		return err_set(ENAMETOOLONG, "path too long: %s/%s", r->root, rel);
	dfd = openat(r->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return err_set(errno, "cannot open %s: %s", r->root, strerror(errno));
	for (;;) {
		slash = strchr(p, '/');
		if (slash)
			*slash = 0;
		if (!*p || !strcmp(p, ".") || !strcmp(p, "..")) {
			close(dfd);
			return err_set(EINVAL, "%s/%s is not a path inside the replica", r->root, rel);
		}
		if (!slash)
			break;
		nfd = openat(dfd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0) {
			int e = open_errno(dfd, p, errno);
			close(dfd);
			return tree_err(r, buf, e, "open");
		}
		close(dfd);
		dfd = nfd;
		*slash = '/';
		p = slash + 1;
	}
	if (snprintf(base, blen, "%s", p) >= (int)blen) {
		close(dfd);
		return err_set(ENAMETOOLONG, "path too long: %s/%s", r->root, rel);
	}
	return dfd;
}

/* The checks on a file just opened at REL (see the top of this file). */
static int check_file(const struct replica *r, const char *rel, int fd, int flags)
{
	bool dir = flags & O_DIRECTORY, writing = (flags & O_ACCMODE) != O_RDONLY;
	struct stat st;
	char what[192];
	uid_t uid;
	gid_t gid;

	if (fstat(fd, &st) < 0)
		return err_set(errno, "cannot stat %s/%s: %s", r->root, rel, strerror(errno));
	if (dir)
		return S_ISDIR(st.st_mode) ? 0 : refuse(r, rel, "is not a directory");
	if (!S_ISREG(st.st_mode))
		return refuse(r, rel, "is not a regular file");
	if (st.st_nlink != 1) {
		snprintf(what, sizeof(what), "has %lu hard links (a file Bascule keeps has one; a link "
					     "to a file elsewhere would be written through)",
			 (unsigned long)st.st_nlink);
		return refuse(r, rel, what);
	}
	if (st.st_uid != r->owner_uid && st.st_uid != 0) {
		snprintf(what, sizeof(what), "belongs to uid %u, neither the replica directory's "
					     "owner (uid %u) nor root",
			 (unsigned)st.st_uid, (unsigned)r->owner_uid);
		return refuse(r, rel, what);
	}
	new_owner(r, &uid, &gid);
	if (writing && st.st_uid == 0 && uid != (uid_t)-1 && fchown(fd, uid, gid) < 0)
		return err_set(errno, "cannot give %s/%s to the replica's owner (uid %u): %s", r->root,
			       rel, (unsigned)uid, strerror(errno));
	/* O_NONBLOCK was only there so that a FIFO could not hang the open. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int open_checked(const struct replica *r, const char *rel, int flags, mode_t mode, bool excl)
{
	char base[NAME_MAX + 1];
	int dfd, fd, rc;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd;
	if (excl && unlinkat(dfd, base, 0) < 0 && errno != ENOENT) {
		rc = tree_err(r, rel, errno, "replace");
		close(dfd);
		return rc;
	}
	fd = openat(dfd, base, flags | (excl ? O_CREAT | O_EXCL : 0) | O_NOFOLLOW | O_CLOEXEC |
				       (flags & O_DIRECTORY ? 0 : O_NONBLOCK), mode);
	rc = fd < 0 ? tree_err(r, rel, open_errno(dfd, base, errno),
			       flags & O_CREAT || excl ? "create" : "open") : 0;
	close(dfd);
	if (rc < 0)
		return rc;
	if ((rc = check_file(r, rel, fd, flags)) < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int tree_open(const struct replica *r, const char *rel, int flags, mode_t mode)
{
	if (flags & O_TRUNC)
		return err_set(EINVAL, "tree_open: O_TRUNC would truncate before the checks (use tree_create)");
	return open_checked(r, rel, flags, mode, false);
}

int tree_create(const struct replica *r, const char *rel, mode_t mode)
{
	return open_checked(r, rel, O_RDWR, mode, true);
}

DIR *tree_opendir(const struct replica *r, const char *rel)
{
	int fd;
	DIR *d;

	if (!strcmp(rel, "."))
		fd = openat(r->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	else if ((fd = tree_open(r, rel, O_RDONLY | O_DIRECTORY, 0)) < 0) {
		errno = -fd;
		return NULL;
	}
	if (fd < 0)
		return NULL;
	if (!(d = fdopendir(fd)))
		close(fd);
	return d;
}

int tree_mkdir(const struct replica *r, const char *rel)
{
	char buf[RPATH], *p = buf, *slash;
	int dfd, nfd, rc = 0;

	if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf))
		return err_set(ENAMETOOLONG, "path too long: %s/%s", r->root, rel);
	dfd = openat(r->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return err_set(errno, "cannot open %s: %s", r->root, strerror(errno));
	for (; p && rc == 0; p = slash ? slash + 1 : NULL) {
		bool made;
		uid_t uid;
		gid_t gid;
		slash = strchr(p, '/');
		if (slash)
			*slash = 0;
		if (!*p || !strcmp(p, ".") || !strcmp(p, "..")) {
			rc = err_set(EINVAL, "%s/%s is not a path inside the replica", r->root, rel);
			break;
		}
		made = mkdirat(dfd, p, 0700) == 0;
		if (!made && errno != EEXIST) {
			rc = tree_err(r, buf, errno, "create directory");
			break;
		}
		nfd = openat(dfd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0) {
			rc = tree_err(r, buf, open_errno(dfd, p, errno), "open");
			break;
		}
		close(dfd);
		dfd = nfd;
		new_owner(r, &uid, &gid);
		if (made && uid != (uid_t)-1 && fchown(dfd, uid, gid) < 0)
			rc = err_set(errno, "cannot give %s/%s to the replica's owner: %s", r->root, buf,
				     strerror(errno));
		if (slash)
			*slash = '/';
	}
	close(dfd);
	return rc;
}

int tree_unlink(const struct replica *r, const char *rel)
{
	char base[NAME_MAX + 1];
	int dfd, rc = 0;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd;
	if (unlinkat(dfd, base, 0) < 0)
		rc = errno == ENOENT ? -ENOENT : tree_err(r, rel, errno, "remove");
	close(dfd);
	return rc;
}

int tree_rmdir(const struct replica *r, const char *rel)
{
	char base[NAME_MAX + 1];
	int dfd, rc = 0;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd;
	if (unlinkat(dfd, base, AT_REMOVEDIR) < 0)
		rc = errno == ENOENT ? -ENOENT : tree_err(r, rel, errno, "remove directory");
	close(dfd);
	return rc;
}

int tree_rename(const struct replica *r, const char *from, const char *to)
{
	char fb[NAME_MAX + 1], tb[NAME_MAX + 1];
	int ffd, tfd, rc = 0;

	if ((ffd = walk_parent(r, from, fb, sizeof(fb))) < 0)
		return ffd;
	if ((tfd = walk_parent(r, to, tb, sizeof(tb))) < 0) {
		close(ffd);
		return tfd;
	}
	if (renameat(ffd, fb, tfd, tb) < 0)
		rc = errno == ENOENT ? -ENOENT
				     : err_set(errno, "cannot rename %s/%s to %s: %s", r->root, from, to,
					       strerror(errno));
	close(ffd);
	close(tfd);
	return rc;
}

int tree_exists(const struct replica *r, const char *rel)
{
	char base[NAME_MAX + 1];
	struct stat st;
	int dfd, rc;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd == -ENOENT ? 0 : dfd;
	rc = fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 ? 1
	     : errno == ENOENT ? 0 : tree_err(r, rel, errno, "look at");
	close(dfd);
	return rc;
}

int tree_fsync_parent(const struct replica *r, const char *rel)
{
	char base[NAME_MAX + 1];
	int dfd, rc = 0;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd;
	if (fsync(dfd) < 0)
		rc = err_set(errno, "cannot fsync the directory of %s/%s: %s", r->root, rel,
			     strerror(errno));
	close(dfd);
	return rc;
}

int tree_fsync_dir(const struct replica *r, const char *rel)
{
	int fd = tree_open(r, rel, O_RDONLY | O_DIRECTORY, 0), rc = 0;

	if (fd < 0)
		return fd;
	if (fsync(fd) < 0)
		rc = err_set(errno, "cannot fsync directory %s/%s: %s", r->root, rel, strerror(errno));
	close(fd);
	return rc;
}

/* The sentence of an atomic write of REL that failed with RC, with where;
 * a temporary name taken by a planted link is a refusal (exit 5). */
static int write_failed(const struct replica *r, const char *rel, int rc)
{
	const char *slash = strrchr(rel, '/');

	if (rc >= 0)
		return rc;
	if (rc == -EEXIST)
		rc = err_recode(rc, EBADMSG);
	return err_wrap(rc, "in %s/%.*s", r->root, slash ? (int)(slash - rel) : 1, slash ? rel : ".");
}

int tree_read_text(const struct replica *r, const char *rel, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	if ((fd = tree_open(r, rel, O_RDONLY, 0)) < 0)
		return fd == -ENOENT ? 0 : fd;
	n = fs_pread_full(fd, buf, len - 1, 0);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return 1;
}

int tree_write_atomic(const struct replica *r, const char *rel, const void *data, size_t len)
{
	char base[NAME_MAX + 1];
	uid_t uid;
	gid_t gid;
	int dfd, rc;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd;
	new_owner(r, &uid, &gid);
	rc = fs_write_atomic_at(dfd, base, data, len, 0600, uid, gid);
	close(dfd);
	return write_failed(r, rel, rc);
}

int tree_sfile_read(const struct replica *r, const char *rel, struct sfile *ret)
{
	char base[NAME_MAX + 1];
	int dfd, rc;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd;
	rc = sfile_read(dfd, base, ret);
	close(dfd);
	return rc == -EBADMSG ? err_wrap(rc, "%s/%s", r->root, rel) : rc;
}

int tree_sfile_write(const struct replica *r, const char *rel, struct wbuf *b, const uint8_t *key)
{
	int rc = sfile_seal(b, key);

	return rc < 0 ? rc : tree_write_atomic(r, rel, b->p, b->len);
}

void remove_suffixed(const struct replica *r, const char *dir, const char *suffix)
{
	size_t sl = strlen(suffix);
	struct dirent *e;
	DIR *d = tree_opendir(r, dir);

	/* Unlinking never follows a link: a planted one only loses its name. */
	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n > sl && strcmp(e->d_name + n - sl, suffix) == 0 && e->d_type != DT_DIR)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	if (d)
		closedir(d);
}

/* ---- fsyncs run together ---- */

int syncset_fd(struct syncset *s, int fd, bool data_only)
{
	struct stat st;
	int d;

	if (fstat(fd, &st) < 0)
		return -errno;
	for (size_t i = 0; i < s->n; i++)
		if (s->dev[i] == st.st_dev && s->ino[i] == st.st_ino) {
			s->data_only[i] &= data_only;
			return 0;
		}
	if (s->n == FS_SYNC_MAX)
		return (data_only ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0; /* full: at once */
	if ((d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -errno;
	s->fd[s->n] = d;
	s->dev[s->n] = st.st_dev;
	s->ino[s->n] = st.st_ino;
	s->data_only[s->n++] = data_only;
	return 0;
}

int syncset_dir(const struct replica *r, struct syncset *s, const char *rel)
{
	int fd = tree_open(r, rel, O_RDONLY | O_DIRECTORY, 0), rc;

	if (fd < 0)
		return fd;
	rc = syncset_fd(s, fd, false);
	close(fd);
	return rc;
}

int syncset_parent(const struct replica *r, struct syncset *s, const char *rel)
{
	char base[NAME_MAX + 1];
	int dfd = walk_parent(r, rel, base, sizeof(base)), rc;

	if (dfd < 0)
		return dfd;
	rc = syncset_fd(s, dfd, false);
	close(dfd);
	return rc;
}

int syncset_run(const struct replica *r, struct syncset *s)
{
	int rc = fs_sync_all(s->fd, s->data_only, s->n);

	syncset_drop(s);
	return rc < 0 ? err_set(rc, "cannot fsync what an epoch wrote in %s: %s", r->root, strerror(-rc)) : 0;
}

void syncset_drop(struct syncset *s)
{
	for (size_t i = 0; i < s->n; i++)
		close(s->fd[i]);
	s->n = 0;
}

int tree_write_atomic_begin(const struct replica *r, const char *rel, const void *data, size_t len,
			    struct syncset *s)
{
	char base[NAME_MAX + 1];
	uid_t uid;
	gid_t gid;
	int dfd, fd, rc;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd;
	new_owner(r, &uid, &gid);
	rc = fs_write_atomic_begin_at(dfd, base, data, len, 0600, uid, gid, &fd);
	close(dfd);
	if (rc < 0)
		return write_failed(r, rel, rc);
	rc = syncset_fd(s, fd, false);
	close(fd);
	return rc;
}

int tree_write_atomic_end(const struct replica *r, const char *rel)
{
	char base[NAME_MAX + 1];
	int dfd, rc;

	if ((dfd = walk_parent(r, rel, base, sizeof(base))) < 0)
		return dfd;
	rc = fs_write_atomic_end_at(dfd, base);
	close(dfd);
	return write_failed(r, rel, rc);
}
