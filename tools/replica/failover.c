/* failover.c - promote (make a group live here), demote, clone. */
#include "pg.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <unistd.h>

#define PROMOTED_MAGIC "bascule-promoted-v1"

int replica_promoted(struct replica *r, const char *group, struct promote_info *ret)
{
	char path[RPATH], text[4096];
	unsigned long long e, c, p;
	int rc;

	if ((rc = gpath(r, path, sizeof(path), group, "promoted")) < 0 ||
	    (rc = tree_read_text(r, path, text, sizeof(text))) <= 0)
		return rc;
	rc = sscanf(text, PROMOTED_MAGIC " epoch=%llu cut_time=%llu promoted_time=%llu", &e, &c, &p);
	if (rc != 3)
		return err_set(EBADMSG, "%s/%s is damaged; it should read '" PROMOTED_MAGIC
					" epoch=N cut_time=T promoted_time=T'", r->root, path);
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

/* A directory the operator names (--link-dir, --to-dir), created if need
 * be.  Inside the replica directory it is reached like everything there,
 * through no link; outside, as given, but not through a link as its last
 * component.  The fd, or a negative errno. */
int dest_open(struct replica *r, const char *path, mode_t mode)
{
	char abs[RPATH];
	size_t n = strlen(r->root);
	int fd, rc;

	if ((rc = fs_abspath(path, abs, sizeof(abs))) < 0)
		return rc;
	if (!strncmp(abs, r->root, n) && (abs[n] == '/' || !abs[n])) {
		if (!abs[n] || !abs[n + 1])
			return err_set(EINVAL, "%s is the replica directory itself: name a directory "
					       "for the disks inside or outside it", path);
		if ((rc = tree_mkdir(r, abs + n + 1)) < 0)
			return rc;
		return tree_open(r, abs + n + 1, O_RDONLY | O_DIRECTORY, 0);
	}
	if ((rc = fs_mkdir_p(abs, mode)) < 0)
		return rc;
	if ((fd = open(abs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open %s: %s", abs,
			       errno == ELOOP ? "it is a symbolic link (give the directory itself)"
					      : strerror(errno));
	return fd;
}

/* DIR/NAME a symbolic link to the replica file TARGET (made under a
 * temporary name, renamed into place). */
static int link_disk(const char *target, int dfd, const char *dir, const char *name)
{
	char tmp[NAME_MAX + 32];
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode))
		return err_set(EEXIST, "%s/%s exists and is not a link made by bascule; move it away "
				       "so the promoted disk can take its place", dir, name);
	snprintf(tmp, sizeof(tmp), ".%s.tmp%d", name, (int)getpid());
	unlinkat(dfd, tmp, 0);
	if (symlinkat(target, dfd, tmp) < 0 || renameat(dfd, tmp, dfd, name) < 0) {
		int e = errno;
		unlinkat(dfd, tmp, 0);
		return err_set(e, "cannot link %s/%s to %s: %s", dir, name, target, strerror(e));
	}
	return fsync(dfd) < 0 ? err_set(errno, "cannot fsync %s: %s", dir, strerror(errno)) : 0;
}

int replica_promote(struct replica *r, const char *group, const struct promote_opts *o,
		    struct promote_info *ret)
{
	struct promote_info pi;
	struct rstate s;
	struct pgplan plans[PROMOTE_MAX_PG];
	size_t n_plans = 0;
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
		/* PostgreSQL sources: what --at needs of the epochs after E, before
		 * the rollback forgets them. */
		if ((rc = pg_promote_plan(r, &s, e, o->at, plans, PROMOTE_MAX_PG, &n_plans)) < 0)
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
		pi.promoted_time = clock_now_usec();
		snprintf(line, sizeof(line), PROMOTED_MAGIC " epoch=%llu cut_time=%llu promoted_time=%llu\n",
			 (unsigned long long)pi.epoch, (unsigned long long)pi.cut_time,
			 (unsigned long long)pi.promoted_time);
		if ((rc = gpath(r, path, sizeof(path), group, "promoted")) < 0 ||
		    (rc = tree_write_atomic(r, path, line, strlen(line))) < 0)
			return rc;
	}
	pi.flags = s.flags;
	pi.n_sources = s.n_sources;
	pi.n_pg = 0;
	for (uint32_t i = 0; i < s.n_sources && i < PROTO_MAX_SOURCES; i++) {
		snprintf(pi.sources[i], sizeof(pi.sources[i]), "%s", s.sources[i].name);
		if (s.sources[i].status != SRC_OK)
			return err_set(EBADMSG, "source %s/%s is marked diverged: its replica does not "
						"match its digest; run bascule replica verify", group,
				       s.sources[i].name);
	}
	/* PostgreSQL sources: a primary's data directory (pgpromote.c). */
	for (uint32_t i = 0; i < s.n_sources; i++) {
		struct pgplan none = { 0 }, *plan = &none;
		if (!pg_source(&s.sources[i]))
			continue;
		if (pi.n_pg == PROMOTE_MAX_PG)
			return err_set(E2BIG, "group %s has more than %d PostgreSQL sources", group, PROMOTE_MAX_PG);
		for (size_t k = 0; k < n_plans; k++)
			if (!strcmp(plans[k].name, s.sources[i].name))
				plan = &plans[k];
		if (!n_plans)
			none.at = o->at;
		if ((rc = pg_promote(r, group, &s.sources[i], plan, o, &pi.pg[pi.n_pg])) < 0)
			return rc;
		pi.n_pg++;
	}
	if (o->link_dir) {
		int dfd = dest_open(r, o->link_dir, 0755);
		if (dfd < 0)
			return dfd;
		for (uint32_t i = 0; i < s.n_sources && rc >= 0; i++) {
			char file[RPATH];
			if (pg_source(&s.sources[i]))
				continue; /* its data directory is made there */
			if (snprintf(file, sizeof(file), "%s/%s/%s", r->root, group, s.sources[i].name) >=
			    (int)sizeof(file))
				rc = -ENAMETOOLONG;
			else
				rc = link_disk(file, dfd, o->link_dir, s.sources[i].name);
		}
		close(dfd);
		if (rc < 0)
			return rc;
	}
	*ret = pi;
	return 0;
}

/* The data directory promote made for SOURCE goes aside as
 * .SOURCE.demoted-EPOCH beside it (refused while a server runs on it), and
 * the record of the promotion goes. */
static int demote_pg(struct replica *r, const char *group, const char *source, uint64_t epoch)
{
	struct promote_pg pp;
	char rec[RPATH], pid[RPATH + 32], to[RPATH], buf[32];
	size_t n = strlen(r->root);
	const char *slash;
	ssize_t k;
	int fd, rc;

	if ((rc = pg_promoted(r, group, source, &pp)) <= 0)
		return rc;
	snprintf(pid, sizeof(pid), "%s/postmaster.pid", pp.data_dir);
	if ((fd = open(pid, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
		k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[k > 0 ? k : 0] = 0;
		if (atoi(buf) > 0 && (kill(atoi(buf), 0) == 0 || errno == EPERM))
			return err_set(EBUSY, "PostgreSQL (pid %d) runs on %s, the promoted %s/%s: stop it (pg_ctl stop "
					      "-D %s) before the demote", atoi(buf), pp.data_dir, group, source, pp.data_dir);
	}
	slash = strrchr(pp.data_dir, '/');
	snprintf(to, sizeof(to), "%.*s/.%s.demoted-%llu", (int)(slash - pp.data_dir), pp.data_dir, slash + 1,
		 (unsigned long long)epoch);
	if (!strncmp(pp.data_dir, r->root, n) && pp.data_dir[n] == '/')
		rc = renameat(r->root_fd, pp.data_dir + n + 1, r->root_fd, to + n + 1);
	else
		rc = rename(pp.data_dir, to);
	if (rc < 0 && errno != ENOENT)
		return err_set(errno, "cannot move %s aside to %s: %s", pp.data_dir, to, strerror(errno));
	if (rc == 0)
		log_info("the promoted data directory %s is kept as %s", pp.data_dir, to);
	pg_standby_forget(r, group, source);
	if ((rc = pg_path(rec, sizeof(rec), group, source, 0, NULL)) < 0 || strlen(rec) + 10 > sizeof(rec))
		return rc < 0 ? rc : -ENAMETOOLONG;
	strcat(rec, "/promoted");
	if ((rc = tree_unlink(r, rec)) < 0 && rc != -ENOENT)
		return rc;
	return 0;
}

int replica_demote(struct replica *r, const char *group)
{
	char path[RPATH];
	struct rstate s;
	int rc;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc;
	/* A promoted PostgreSQL source: its data directory ran live (a new
	 * history); it is kept aside, and the next promote makes one afresh. */
	for (uint32_t i = 0; i < s.n_sources; i++)
		if (pg_source(&s.sources[i]) && (rc = demote_pg(r, group, s.sources[i].name, s.epoch)) < 0)
			return rc;
	/* The disks ran live: their blocks no longer match the map.  Diverged
	 * sources are brought back by a librsync resync, not a full copy. */
	for (uint32_t i = 0; i < s.n_sources; i++)
		s.sources[i].status = SRC_DIVERGED;
	if ((rc = state_write(r, &s)) < 0 || (rc = gpath(r, path, sizeof(path), group, "promoted")) < 0)
		return rc;
	if ((rc = tree_unlink(r, path)) < 0 && rc != -ENOENT)
		return rc;
	return tree_fsync_parent(r, path);
}

/* Is an apply in progress (committed redo, pending undo) for GROUP? */
static bool group_busy(struct replica *r, const char *group, const struct rstate *s)
{
	char dir[RPATH];
	DIR *d;
	struct dirent *e;
	bool busy = s->pending_undo != 0;

	if (gpath(r, dir, sizeof(dir), group, "journal") < 0 || !(d = tree_opendir(r, dir)))
		return busy;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".redo") && !strstr(e->d_name, ".tmp"))
			busy = true;
	closedir(d);
	return busy;
}

/* Copy the replica file FROM into a new NAME in directory TO (reflink, else
 * a sparse copy). */
static int copy_file(struct replica *r, const char *from, int to, const char *name)
{
	int in = -1, out = -1, rc = 0;
	uint64_t size;
	off_t off = 0;

	if ((in = tree_open(r, from, O_RDONLY, 0)) < 0)
		return in == -ENOENT ? err_set(ENOENT, "replica %s/%s is missing", r->root, from) : in;
	/* Never written through: whatever had the name goes, the file is new. */
	if ((unlinkat(to, name, 0) < 0 && errno != ENOENT) ||
	    (out = openat(to, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		rc = err_set(errno, "cannot create %s in the clone directory: %s", name, strerror(errno));
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
				rc = err_set(n < 0 ? errno : EIO, "cannot copy %s/%s: %s", r->root, from,
					     n < 0 ? strerror(errno) : "short copy");
				goto out;
			}
		}
	}
	if (fsync(out) < 0)
		rc = err_set(errno, "cannot fsync the clone of %s: %s", name, strerror(errno));
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (rc < 0 && out >= 0)
		unlinkat(to, name, 0);
	return rc;
}

/* The disks copied and the PostgreSQL clones made (not yet recovered:
 * RUNS, one per RET->pg) at one complete epoch. */
static int clone_locked(struct replica *r, const char *group, int to, const char *to_dir,
			const struct promote_opts *o, struct pgrun *runs, struct promote_info *ret)
{
	struct rstate s1, s2;
	int rc;

	for (int attempt = 0; attempt < 50; attempt++) {
		if ((rc = replica_load_state(r, group, &s1)) < 0)
			return rc == -ENOENT ? err_set(ENOENT, "group %s has no complete epoch in %s",
						       group, r->root) : rc;
		if (group_busy(r, group, &s1)) {
			usleep(100000);
			continue;
		}
		for (uint32_t i = 0; i < s1.n_sources; i++) {
			char from[RPATH];
			if (pg_source(&s1.sources[i]))
				continue; /* made below, from the store */
			if ((rc = replica_file(r, from, sizeof(from), group, s1.sources[i].name)) < 0 ||
			    (rc = copy_file(r, from, to, s1.sources[i].name)) < 0)
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
		for (uint32_t i = 0; i < s1.n_sources; i++) {
			snprintf(ret->sources[i], sizeof(ret->sources[i]), "%s", s1.sources[i].name);
			if (!pg_source(&s1.sources[i]))
				continue;
			if (s1.sources[i].status != SRC_OK)
				return err_set(EBADMSG, "source %s/%s is marked diverged: its replica does not match "
							"its digest; run bascule replica verify", group, s1.sources[i].name);
			if (ret->n_pg == PROMOTE_MAX_PG)
				return err_set(E2BIG, "group %s has more than %d PostgreSQL sources", group,
					       PROMOTE_MAX_PG);
			if ((rc = pg_clone_make(r, group, &s1.sources[i], to, to_dir, o, &runs[ret->n_pg],
						&ret->pg[ret->n_pg])) < 0)
				return rc;
			ret->pg[ret->n_pg].timeline = s1.sources[i].timeline; /* until recovered */
			ret->n_pg++;
		}
		return fsync(to) < 0 ? err_set(errno, "cannot fsync the clone directory: %s",
					       strerror(errno)) : 0;
	}
	return err_set(EAGAIN, "group %s kept changing while it was cloned (50 attempts); "
			       "pause replication for a moment and try again", group);
}

int replica_clone(struct replica *r, const char *group, const char *to_dir, const struct promote_opts *o,
		  struct promote_info *ret)
{
	struct pgrun runs[PROMOTE_MAX_PG];
	struct promote_opts none = { 0 };
	struct promote_info pi;
	char abs[RPATH];
	int to, rc;

	if (!o)
		o = &none;
	for (size_t i = 0; i < PROMOTE_MAX_PG; i++)
		pgrun_init(&runs[i]);
	memset(&pi, 0, sizeof(pi));
	if ((rc = fs_abspath(to_dir, abs, sizeof(abs))) < 0)
		return rc;
	if ((to = dest_open(r, to_dir, 0700)) < 0)
		return to;
	/* While bascule recv keeps applying: the apply lock, shared, holds its
	 * next apply back; a clone taken with no apply in progress and the same
	 * epoch before and after is whole.  PostgreSQL clones recover after it
	 * is released: their WAL is in their own pg_wal by then. */
	if ((rc = apply_lock(r, LOCK_SH)) == 0) {
		rc = clone_locked(r, group, to, abs, o, runs, &pi);
		apply_unlock(r, LOCK_SH);
	}
	for (uint32_t i = 0; i < pi.n_pg && rc == 0; i++)
		rc = pg_clone_recover(&runs[i], o, pi.pg[i].timeline, &pi.pg[i]);
	for (size_t i = 0; i < PROMOTE_MAX_PG; i++)
		pgrun_close(&runs[i]);
	close(to);
	if (rc == 0)
		*ret = pi;
	return rc;
}
