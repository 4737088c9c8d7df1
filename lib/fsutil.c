/* fsutil.c - durable writes, full reads, locks. */
#include "fsutil.h"
#include "err.h"
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_path(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= len)
		return err_set(ENAMETOOLONG, "path too long: %s/%s", dir, name);
	return 0;
}

int fs_abspath(const char *path, char *buf, size_t len)
{
	char cwd[PATH_MAX], out[PATH_MAX];
	size_t n;
	int w;

	if (path[0] == '/')
		w = snprintf(out, sizeof(out), "%s", path);
	else if (!getcwd(cwd, sizeof(cwd)))
		return err_set(errno, "cannot resolve %s: the working directory is unknown (%s)", path,
			       strerror(errno));
	else
		w = snprintf(out, sizeof(out), "%s/%s", strcmp(cwd, "/") ? cwd : "",
			     strcmp(path, ".") ? path : "");
	if (w < 0 || (size_t)w >= sizeof(out))
		return err_set(ENAMETOOLONG, "path too long: %s", path);
	n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		out[--n] = 0;
	if (n >= len)
		return err_set(ENAMETOOLONG, "path too long: %s", path);
	memcpy(buf, out, n + 1);
	return 0;
}

int fs_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return err_set(errno, "cannot open directory %s: %s", dir, strerror(errno));
	if (fsync(fd) < 0)
		r = err_set(errno, "cannot fsync directory %s: %s", dir, strerror(errno));
	close(fd);
	return r;
}

int fs_fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (!slash)
		return fs_fsync_dir(".");
	if (slash == dir)
		slash[1] = 0;
	else
		*slash = 0;
	return fs_fsync_dir(dir);
}

int fs_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fs_splice_full(int in_fd, uint64_t off, int out_fd, size_t len)
{
	loff_t o = (loff_t)off;
	bool moved = false;

	while (len) {
		ssize_t n = splice(in_fd, &o, out_fd, NULL, len, SPLICE_F_MORE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) /* 0: the file ends before OFF + LEN */
			return n == 0 ? -EIO : errno == EINVAL && moved ? -EIO : -errno;
		moved = true;
		len -= (size_t)n;
	}
	return 0;
}

int fs_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

ssize_t fs_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, p + got, len - got, (off_t)(off + got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* The first step of write_atomic: NAME.tmp in DIRFD written, not fsync'd;
 * its fd (O_WRONLY) in *RET_FD.  SHOWN, if not NULL, is DIRFD's path for
 * the messages. */
static int write_atomic_begin(int dirfd, const char *shown, const char *name, const void *data, size_t len,
			      mode_t mode, uid_t uid, gid_t gid, int *ret_fd)
{
	const char *sep = shown && strcmp(shown, "/") ? "/" : "";
	char tmp[PATH_MAX];
	struct stat st;
	int fd, r;

	if (!shown)
		shown = "";
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return err_set(ENAMETOOLONG, "path too long: %s%s%s", shown, sep, name);
	/* A regular file there is what an interrupted write left; anything else
	 * (a symbolic link to some other file, a directory) was put there by
	 * someone else, and is neither followed nor removed. */
	if (fstatat(dirfd, tmp, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISREG(st.st_mode))
			return err_set(EEXIST, "%s%s%s exists and is not a file left by an interrupted "
					       "write (%s): refused, nothing was written to %s through "
					       "it; remove it after checking who put it there",
				       shown, sep, tmp,
				       S_ISLNK(st.st_mode) ? "a symbolic link" : "not a regular file", name);
		if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT)
			return err_set(errno, "cannot remove the leftover %s%s%s: %s", shown, sep, tmp,
				       strerror(errno));
	}
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return err_set(errno, "cannot create %s%s%s: %s", shown, sep, tmp, strerror(errno));
	r = (uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0 ? -errno : 0;
	if (r == 0)
		r = fs_write_full(fd, data, len);
	if (r < 0) {
		close(fd);
		unlinkat(dirfd, tmp, 0);
		return err_set(r, "cannot write %s%s%s: %s", shown, sep, tmp, strerror(-r));
	}
	*ret_fd = fd;
	return 0;
}

/* The second step: NAME.tmp (durable) renamed over NAME, DIRFD fsync'd. */
static int write_atomic_end(int dirfd, const char *shown, const char *name)
{
	const char *sep = shown && strcmp(shown, "/") ? "/" : "";
	char tmp[PATH_MAX];
	int r;

	if (!shown)
		shown = "";
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return err_set(ENAMETOOLONG, "path too long: %s%s%s", shown, sep, name);
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		r = -errno;
		unlinkat(dirfd, tmp, 0);
		return err_set(r, "cannot rename %s%s%s to %s: %s", shown, sep, tmp, name, strerror(-r));
	}
	if (fsync(dirfd) < 0)
		return err_set(errno, "cannot fsync directory %s: %s", *shown ? shown : ".", strerror(errno));
	return 0;
}

/* fs_write_atomic_at; SHOWN, if not NULL, is DIRFD's path for the messages. */
static int write_atomic(int dirfd, const char *shown, const char *name, const void *data, size_t len,
			mode_t mode, uid_t uid, gid_t gid)
{
	const char *sep = shown && strcmp(shown, "/") ? "/" : "";
	char tmp[PATH_MAX];
	int fd, r;

	if ((r = write_atomic_begin(dirfd, shown, name, data, len, mode, uid, gid, &fd)) < 0)
		return r;
	r = fsync(fd) < 0 ? -errno : 0;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0) {
		snprintf(tmp, sizeof(tmp), "%s.tmp", name);
		unlinkat(dirfd, tmp, 0);
		return err_set(r, "cannot write %s%s%s: %s", shown ? shown : "", shown ? sep : "", tmp,
			       strerror(-r));
	}
	return write_atomic_end(dirfd, shown, name);
}

int fs_write_atomic_begin_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			     uid_t uid, gid_t gid, int *ret_fd)
{
	return write_atomic_begin(dirfd, NULL, name, data, len, mode, uid, gid, ret_fd);
}

int fs_write_atomic_end_at(int dirfd, const char *name)
{
	return write_atomic_end(dirfd, NULL, name);
}

/* fs_sync_all's threads: started once, on first use, and kept (a round
 * of fsyncs is on the path of every acknowledgement).  A round's jobs
 * are taken in order by whoever is free, the caller too: a job no worker
 * has reached yet is run by the caller, so a round completes even when no
 * worker gets a CPU soon, or none could be started. */
struct sync_one {
	int fd;
	bool data_only;
	int rc;
};

static struct {
	pthread_mutex_t round;  /* one round at a time */
	pthread_mutex_t mu;     /* what follows */
	pthread_cond_t work, done;
	struct sync_one *jobs;
	size_t n_jobs, next, pending, n_threads;
} sync_pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
		PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0 };

static void sync_run(struct sync_one *o)
{
	o->rc = (o->data_only ? fdatasync(o->fd) : fsync(o->fd)) < 0 ? -errno : 0;
}

/* Under sync_pool.mu: run the next job of the round, if any is left. */
static bool sync_take(void)
{
	struct sync_one *o;

	if (sync_pool.next >= sync_pool.n_jobs)
		return false;
	o = &sync_pool.jobs[sync_pool.next++];
	pthread_mutex_unlock(&sync_pool.mu);
	sync_run(o);
	pthread_mutex_lock(&sync_pool.mu);
	if (--sync_pool.pending == 0)
		pthread_cond_signal(&sync_pool.done);
	return true;
}

static void *sync_worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&sync_pool.mu);
	for (;;)
		if (!sync_take())
			pthread_cond_wait(&sync_pool.work, &sync_pool.mu);
	return NULL;
}

int fs_sync_all(const int *fds, const bool *data_only, size_t n)
{
	struct sync_one one[FS_SYNC_MAX];
	int rc = 0;

	if (n > FS_SYNC_MAX)
		return -E2BIG;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		one[i] = (struct sync_one){ .fd = fds[i], .data_only = data_only[i], .rc = 0 };
	if (n == 1) {
		sync_run(&one[0]);
		return one[0].rc;
	}
	pthread_mutex_lock(&sync_pool.round);
	pthread_mutex_lock(&sync_pool.mu);
	/* Workers for all but the caller's share, started the first time. */
	while (sync_pool.n_threads < n - 1) {
		pthread_attr_t a;
		pthread_t t;
		int r;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&a, 64 * 1024);
		r = pthread_create(&t, &a, sync_worker, NULL);
		pthread_attr_destroy(&a);
		if (r != 0)
			break; /* the caller runs what no worker takes */
		sync_pool.n_threads++;
	}
	sync_pool.jobs = one;
	sync_pool.n_jobs = n;
	sync_pool.next = 0;
	sync_pool.pending = n;
	/* As many workers woken as there are jobs beside the caller's. */
	for (size_t i = 0; i + 1 < n; i++)
		pthread_cond_signal(&sync_pool.work);
	while (sync_take())
		;
	while (sync_pool.pending)
		pthread_cond_wait(&sync_pool.done, &sync_pool.mu);
	sync_pool.jobs = NULL;
	sync_pool.n_jobs = sync_pool.next = 0;
	pthread_mutex_unlock(&sync_pool.mu);
	pthread_mutex_unlock(&sync_pool.round);
	for (size_t i = 0; i < n; i++)
		if (one[i].rc < 0 && rc == 0)
			rc = one[i].rc;
	return rc;
}

int fs_write_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
		       uid_t uid, gid_t gid)
{
	return write_atomic(dirfd, NULL, name, data, len, mode, uid, gid);
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	size_t n = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 1;
	int dfd, r;

	if (n >= sizeof(dir))
		return err_set(ENAMETOOLONG, "path too long: %s", path);
	memcpy(dir, slash ? path : ".", n);
	dir[n] = 0;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return err_set(errno, "cannot open directory %s: %s", dir, strerror(errno));
	r = write_atomic(dfd, slash ? dir : NULL, base, data, len, mode, (uid_t)-1, (gid_t)-1);
	close(dfd);
	return r;
}

int fs_read_all(const char *path, size_t max, char **ret, size_t *ret_len)
{
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		r = err_set(EFBIG, "%s is larger than %zu bytes", path, max);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	n = fs_pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n < 0) {
		r = err_set((int)n, "cannot read %s: %s", path, strerror((int)-n));
		goto out;
	}
	buf[n] = 0;
	*ret = buf;
	*ret_len = (size_t)n;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

int fs_mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return err_set(errno, "cannot create directory %s: %s", tmp, strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return err_set(errno, "cannot create directory %s: %s", tmp, strerror(errno));
	return 0;
}

int fs_lock(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return err_set(errno, "cannot open lock file %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return err_set(EBUSY, "%s is locked by another running process", path);
		return err_set(e, "cannot lock %s: %s", path, strerror(e));
	}
	return fd;
}

int fs_fd_size(int fd, uint64_t *ret)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		if (ioctl(fd, BLKGETSIZE64, &sz) < 0)
			return -errno;
		*ret = sz;
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*ret = (uint64_t)st.st_size;
	return 0;
}

int fs_dir_empty(int dirfd)
{
	struct dirent *e;
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0), r = 1;
	DIR *d;

	if (fd < 0)
		return -errno;
	if (!(d = fdopendir(fd))) {
		r = -errno;
		close(fd);
		return r;
	}
	rewinddir(d);
	while (r == 1 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			r = 0;
	closedir(d);
	return r;
}

int fs_remove_tree_at(int pdfd, const char *name, int depth)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	int fd, rc = 0;

	if (fstatat(pdfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(pdfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth > 64)
		return -ELOOP;
	if ((fd = openat(pdfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -errno;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d)) && rc == 0)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			rc = fs_remove_tree_at(dirfd(d), e->d_name, depth + 1);
	closedir(d);
	if (rc == 0 && unlinkat(pdfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -errno;
	return rc;
}
