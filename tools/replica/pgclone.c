/* pgclone.c - the clone of a PostgreSQL source (pg.h) for a test drill: a
 * data directory made from the committed copy at the clone's epoch (its
 * base, the WAL to the epoch's end LSN), recovered on a private socket to
 * a new timeline of its own and left stopped, ready to start on the test's
 * port.  Only the store is read, under the apply lock (bascule recv's next
 * apply waits); recovery runs after the lock is released, on the clone's
 * own pg_wal.  A hot standby of the source goes on replaying: it is
 * neither stopped nor read. */
#include "pg.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Remove NAME beneath DFD, a tree of directories and files (no link
 * followed: a symbolic link is removed, not what it names). */
static int remove_tree(int dfd, const char *name, int depth)
{
	struct stat st;
	struct dirent *e;
	DIR *d;
	int fd, rc = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth > 64)
		return -ELOOP;
	if ((fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((e = readdir(d)) && rc == 0)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			rc = remove_tree(dirfd(d), e->d_name, depth + 1);
	closedir(d);
	if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		rc = -errno;
	return rc;
}

/* A clone left in TO_DIR/NAME by an interrupted clone goes; one a server
 * runs on (its postmaster.pid names a live process) is refused. */
static int clear_old(int to_fd, const char *to_dir, const char *name)
{
	char pidf[NAME_MAX_LEN + 32], buf[32];
	ssize_t n;
	pid_t pid;
	int fd, rc;

	snprintf(pidf, sizeof(pidf), "%s/postmaster.pid", name);
	if ((fd = openat(to_fd, pidf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[n > 0 ? n : 0] = 0;
		pid = (pid_t)strtol(buf, NULL, 10);
		if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM))
			return err_set(EBUSY, "a PostgreSQL server (pid %d) runs on %s/%s: stop it (pg_ctl stop -D "
					      "%s/%s) before cloning into it again", (int)pid, to_dir, name, to_dir, name);
	}
	if ((rc = remove_tree(to_fd, name, 0)) < 0)
		return err_set(-rc, "cannot remove the earlier clone %s/%s: %s", to_dir, name, strerror(-rc));
	return 0;
}

int pg_clone_make(struct replica *r, const char *group, const struct state_source *x, int to_fd, const char *to_dir,
		  const struct promote_opts *o, struct pgrun *run, struct promote_pg *ret)
{
	struct pgbase b;
	struct pgstore_feed sf;
	struct pgfeed f;
	struct pgpath path;
	char a[PGWAL_LSN_LEN], e[PGWAL_LSN_LEN], c[PGWAL_LSN_LEN];
	struct stat st;
	int rc;

	run->conf = o->pg_conf ? o->pg_conf : access(PG_SITE_CONF, F_OK) == 0 ? PG_SITE_CONF : NULL;
	if (o->pg_bin)
		snprintf(run->bin, sizeof(run->bin), "%s", o->pg_bin);
	if ((rc = pgrun_user(r, o->pg_user, run)) < 0)
		return rc;
	if (snprintf(run->data_dir, sizeof(run->data_dir), "%s/%s", to_dir, x->name) >=
	    (int)sizeof(ret->data_dir))
		return err_set(ENAMETOOLONG, "%s/%s: path too long for a data directory", to_dir, x->name);
	if ((rc = pg_copy_open(r, group, x, &b, &path)) < 0)
		return rc;
	if (b.end_lsn > x->end_lsn)
		return err_set(EAGAIN, "%s/%s cannot be cloned yet: its base backup %s is consistent only from %s and "
				       "the copy ends at %s; try again once the next epoch is applied", group, x->name,
			       pgwal_lsn_format(b.id, a), pgwal_lsn_format(b.end_lsn, e), pgwal_lsn_format(x->end_lsn, c));
	/* PostgreSQL, as another user, must pass through the clone directory. */
	if (run->uid != geteuid() && fstat(to_fd, &st) == 0 && !(st.st_mode & S_IXOTH) &&
	    fchmod(to_fd, (st.st_mode & 07777) | S_IXOTH) < 0)
		return err_set(errno, "cannot let %s through %s: %s", run->user, to_dir, strerror(errno));
	if ((rc = clear_old(to_fd, to_dir, x->name)) < 0)
		return rc;
	if ((run->pfd = dup(to_fd)) < 0)
		return err_set(errno, "dup: %s", strerror(errno));
	pgstore_feed(&sf, r, group, x->name, &b, &f);
	if ((rc = pgrun_make(&f, &b, false, run)) < 0 || (rc = pgrun_place_wal(&f, &path, run)) < 0 ||
	    (rc = pgrun_give(run)) < 0)
		return rc;
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->source, sizeof(ret->source), "%s", x->name);
	memcpy(ret->data_dir, run->data_dir, strlen(run->data_dir) + 1); /* fits: checked above */
	ret->end_lsn = x->end_lsn;
	ret->clone = true;
	return 0;
}

int pg_clone_recover(struct pgrun *run, const struct promote_opts *o, uint32_t tli, struct promote_pg *ret)
{
	uint64_t timeout = o->pg_timeout ? o->pg_timeout : 3600ULL * 1000000, t0 = clock_mono_usec();
	struct pgrecovered rec;
	int rc;

	if ((rc = pgrun_dir(run)) < 0)
		goto out;
	if ((rc = pg_recover_stopped(run, tli, timeout, &rec)) < 0)
		goto out;
	ret->redo_lsn = rec.redo_lsn;
	ret->timeline = rec.tli;
	ret->last_xact = rec.last_xact;
	ret->usec = clock_mono_usec() - t0;
	log_info("the clone %s recovered to the end of its WAL, timeline %u", ret->data_dir, rec.tli);
out:
	if (rc == 0)
		pgrun_dir_remove(run);
	return rc;
}
