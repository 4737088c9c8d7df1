/* pgrun.c - making a PostgreSQL data directory from the store (pg.h) and
 * running PostgreSQL's programs on it as the user it belongs to.
 *
 * A data directory is built by root in a directory only root can enter
 * (0700, root's) and reached through its descriptor: base.tar and the
 * tablespace archives are read from descriptors the store opened (no link
 * followed) and extracted by GNU tar (--no-same-owner; tar refuses members
 * with "..", strips leading "/" and delays links that leave the archive),
 * the WAL is written O_EXCL|O_NOFOLLOW; only then is the whole tree given to
 * the PostgreSQL user, which runs pg_ctl and the server (setpriv). */
#include "pg.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "subproc.h"
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

void pgrun_close(struct pgrun *run)
{
	if (run->pfd >= 0)
		close(run->pfd);
	if (run->dfd >= 0)
		close(run->dfd);
	run->pfd = run->dfd = -1;
}

int pgrun_user(struct replica *r, const char *user, struct pgrun *run)
{
	struct passwd *pw = NULL;

	if (user)
		pw = getpwnam(user);
	else if (r->owner_uid != 0)
		pw = getpwuid(r->owner_uid);
	else
		pw = getpwnam(user = "postgres");
	if (!pw && !r)
		return err_set(ENOENT, "no user %s to run PostgreSQL as: give --pg-user USER (PostgreSQL does "
				       "not run as root)", user);
	if (!pw)
		return err_set(ENOENT, "no user %s to run PostgreSQL as: give --pg-user (PostgreSQL does not "
				       "run as root, and the replica directory %s belongs to root)",
			       user ? user : "(the replica's owner)", r->root);
	if (pw->pw_uid == 0)
		return err_set(EINVAL, "PostgreSQL does not run as root: give --pg-user USER%s%s%s", r ? " (the replica "
			       "directory " : "", r ? r->root : "", r ? " belongs to root)" : "");
	run->uid = pw->pw_uid;
	run->gid = pw->pw_gid;
	snprintf(run->user, sizeof(run->user), "%s", pw->pw_name);
	return 0;
}

/* PostgreSQL, as another user than the replica's owner, must pass
 * through the replica directory and the group's to reach its data. */
static int traversable(struct replica *r, int gfd, const struct pgrun *run)
{
	struct stat st;

	if (run->uid == r->owner_uid)
		return 0;
	if ((fstat(r->root_fd, &st) == 0 && !(st.st_mode & S_IXOTH) && fchmod(r->root_fd, (st.st_mode & 07777) | S_IXOTH) < 0) ||
	    (fstat(gfd, &st) == 0 && !(st.st_mode & S_IXOTH) && fchmod(gfd, (st.st_mode & 07777) | S_IXOTH) < 0))
		return err_set(errno, "cannot let %s through %s: %s", run->user, r->root, strerror(errno));
	return 0;
}

int pg_run_setup(struct replica *r, const char *group, const char *source, const struct promote_opts *o,
		 const char *link_dir, struct pgrun *run, int *ret_gfd)
{
	int rc = 0, n;

	run->conf = o->pg_conf ? o->pg_conf : access(PG_SITE_CONF, F_OK) == 0 ? PG_SITE_CONF : NULL;
	if (o->pg_bin)
		snprintf(run->bin, sizeof(run->bin), "%s", o->pg_bin);
	if ((rc = pgrun_user(r, o->pg_user, run)) < 0)
		return rc;
	if (link_dir) {
		char abs[RPATH];
		if ((rc = fs_abspath(link_dir, abs, sizeof(abs))) < 0 || (run->pfd = dest_open(r, link_dir, 0755)) < 0)
			return rc < 0 ? rc : run->pfd;
		n = snprintf(run->data_dir, sizeof(run->data_dir), "%s/%s", abs, source);
	} else {
		if ((*ret_gfd = tree_open(r, group, O_RDONLY | O_DIRECTORY, 0)) < 0)
			return *ret_gfd;
		if ((run->pfd = dup(*ret_gfd)) < 0 || (rc = traversable(r, *ret_gfd, run)) < 0)
			return rc < 0 ? rc : -errno;
		n = snprintf(run->data_dir, sizeof(run->data_dir), "%s/%s/%s", r->root, group, source);
	}
	/* Whatever reports it (struct promote_pg) holds it too. */
	return n >= (int)sizeof(((struct promote_pg *)0)->data_dir) ? -ENAMETOOLONG : 0;
}

/* ---- building ---- */

static int write_new(int dfd, const char *name, const void *data, size_t len, const char *dir)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600), rc = 0;

	if (fd < 0)
		return err_set(errno, "cannot create %s/%s: %s", dir, name, strerror(errno));
	if (len && fs_write_full(fd, data, len) < 0)
		rc = err_set(errno, "cannot write %s/%s: %s", dir, name, strerror(errno));
	close(fd);
	return rc;
}

static int exists_at(int dfd, const char *name)
{
	struct stat st;

	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Extract the archive on descriptor IN into the directory DFD, as root. */
static int untar(int in, int dfd, const char *what)
{
	static const char *const argv[] = { "tar", "-x", "--no-same-owner", "-f", "-", NULL };
	struct subproc_result res;
	int rc = subproc_run(argv, &(struct subproc_opts){ .timeout = 3600ULL * 1000000, .output_max = 8192,
							    .stdin_fd = in, .cwd_fd = dfd }, &res);

	if (rc < 0)
		return rc;
	if (res.exit_status != 0)
		rc = err_set(EIO, "tar could not extract %s: %s", what, subproc_said(&res));
	subproc_result_free(&res);
	return rc;
}

/* ---- the store as a feed ---- */

/* The file NAME of base B, open (the store's checks: tree.c). */
static int sf_base_file(void *ctx, const char *name)
{
	struct pgstore_feed *s = ctx;
	char path[RPATH];
	int rc;

	if ((rc = pg_path(path, sizeof(path), s->group, s->source, s->b->system_id, "base/%016llx/%s",
			  (unsigned long long)s->b->id, name)) < 0)
		return rc;
	return tree_open(s->r, path, O_RDONLY, 0);
}

static int sf_segment(void *ctx, uint32_t tli, uint64_t segno, uint64_t limit, uint8_t *buf)
{
	struct pgstore_feed *s = ctx;
	return pg_segment(s->r, s->group, s->source, s->sys, tli, segno, limit, buf);
}

static int sf_history(void *ctx, uint32_t tli, char **ret, size_t *ret_len)
{
	struct pgstore_feed *s = ctx;
	return pghistory_load(s->r, s->group, s->source, s->sys, tli, ret, ret_len);
}

void pgstore_feed(struct pgstore_feed *state, struct replica *r, const char *group, const char *source,
		  const struct pgbase *b, struct pgfeed *ret)
{
	*state = (struct pgstore_feed){ .r = r, .group = group, .source = source, .sys = b->system_id, .b = b };
	snprintf(state->what, sizeof(state->what), "%s/%s", group, source);
	*ret = (struct pgfeed){ .ctx = state, .base_file = sf_base_file, .segment = sf_segment,
				.history = sf_history, .what = state->what };
}

void pgrun_tblspc_name(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, ".%s.tblspc", name);
}

/* Tablespaces: each OID.tar into PARENT/.NAME.tblspc/OID, and
 * tablespace_map pointing there. */
static int tablespaces(const struct pgfeed *f, const struct pgbase *b, struct pgrun *run)
{
	char map[8192] = "", tdir[RPATH], *slash = strrchr(run->data_dir, '/');
	size_t ml = 0;
	int tfd = -1, rc = 0;

	pgrun_tblspc_name(tdir, sizeof(tdir), slash + 1);
	for (uint32_t i = 0; i < b->n_files && rc == 0; i++) {
		const char *n = b->files[i].name;
		char oid[16];
		int in, ofd;
		if (!strcmp(n, "base.tar") || !strstr(n, ".tar"))
			continue;
		snprintf(oid, sizeof(oid), "%.*s", (int)(strlen(n) - 4), n);
		if (tfd < 0) {
			if (mkdirat(run->pfd, tdir, 0700) < 0 && errno != EEXIST)
				return err_set(errno, "cannot create %.*s/%s: %s", (int)(slash - run->data_dir),
					       run->data_dir, tdir, strerror(errno));
			if ((tfd = openat(run->pfd, tdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
				return err_set(errno, "cannot open %s: %s", tdir, strerror(errno));
		}
		if (mkdirat(tfd, oid, 0700) < 0 ||
		    (ofd = openat(tfd, oid, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			rc = err_set(errno, "cannot make the directory of tablespace %s (move %.*s/%s away): %s", oid,
				     (int)(slash - run->data_dir), run->data_dir, tdir, strerror(errno));
			break;
		}
		if ((in = f->base_file(f->ctx, n)) < 0)
			rc = in;
		else {
			rc = untar(in, ofd, n);
			close(in);
		}
		if (rc == 0 && fchownat(tfd, oid, run->uid, run->gid, AT_SYMLINK_NOFOLLOW) < 0)
			rc = -errno;
		if (rc == 0)
			rc = pgrun_give_fd(ofd, run, 0);
		close(ofd);
		ml += (size_t)snprintf(map + ml, sizeof(map) - ml, "%s %.*s/%s/%s\n", oid,
				       (int)(slash - run->data_dir), run->data_dir, tdir, oid);
	}
	if (tfd >= 0) {
		if (rc == 0 && fchown(tfd, run->uid, run->gid) < 0)
			rc = -errno;
		close(tfd);
	}
	if (rc == 0 && ml) {
		unlinkat(run->dfd, "tablespace_map", 0);
		rc = write_new(run->dfd, "tablespace_map", map, ml, run->data_dir);
	}
	return rc;
}

/* Configuration files a base of a Debian-style cluster lacks (its
 * configuration lives in /etc/postgresql), and this site's settings. */
static int config(struct pgrun *run, bool standby)
{
	static const char conf[] = "# made by bascule: the primary's base backup had no postgresql.conf (its "
				   "configuration lives\n# outside the data directory, e.g. in /etc/postgresql on "
				   "Debian): put yours here.\n";
	static const char hba[] = "# made by bascule: the primary's base backup had no pg_hba.conf\n"
				  "local all all peer\n";
	int rc = 0, fd;

	if (!exists_at(run->dfd, "postgresql.conf"))
		rc = write_new(run->dfd, "postgresql.conf", conf, sizeof(conf) - 1, run->data_dir);
	if (rc == 0 && !exists_at(run->dfd, "pg_hba.conf"))
		rc = write_new(run->dfd, "pg_hba.conf", hba, sizeof(hba) - 1, run->data_dir);
	if (rc == 0 && !exists_at(run->dfd, "pg_ident.conf"))
		rc = write_new(run->dfd, "pg_ident.conf", "", 0, run->data_dir);
	if (rc == 0 && run->conf) {
		/* Last in postgresql.auto.conf: they win over the primary's. */
		char *text = NULL, head[512];
		size_t len = 0;
		if ((rc = fs_read_all(run->conf, 1u << 20, &text, &len)) < 0)
			return err_wrap(rc, "cannot read the settings file %s", run->conf);
		fd = openat(run->dfd, "postgresql.auto.conf", O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
		snprintf(head, sizeof(head), "\n# this site's settings, from %s (bascule)\n", run->conf);
		if (fd < 0 || fs_write_full(fd, head, strlen(head)) < 0 || fs_write_full(fd, text, len) < 0 ||
		    (len && text[len - 1] != '\n' && fs_write_full(fd, "\n", 1) < 0))
			rc = err_set(errno, "cannot write %s/postgresql.auto.conf: %s", run->data_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(text);
	}
	if (rc == 0)
		rc = write_new(run->dfd, standby ? "standby.signal" : "recovery.signal", "", 0, run->data_dir);
	return rc;
}

int pgrun_make(const struct pgfeed *f, const struct pgbase *b, bool standby, struct pgrun *run)
{
	char *slash = strrchr(run->data_dir, '/'), parent[RPATH];
	int in, rc;

	if (!slash || slash == run->data_dir)
		return err_set(EINVAL, "%s cannot be a data directory", run->data_dir);
	snprintf(parent, sizeof(parent), "%.*s", (int)(slash - run->data_dir), run->data_dir);
	if (run->pfd < 0 && (run->pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open %s: %s", parent, strerror(errno));
	/* Root's own while it is built: nobody else can enter it (run by the
	 * receiving user, as recv's hot standby is: that user's own, 0700). */
	if (mkdirat(run->pfd, slash + 1, 0700) < 0)
		return err_set(errno, errno == EEXIST ? "%s exists: move it away (a data directory is made "
							"afresh)" : "cannot create %s: %s", run->data_dir,
			       strerror(errno));
	if ((run->dfd = openat(run->pfd, slash + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open %s: %s", run->data_dir, strerror(errno));
	if ((geteuid() == 0 && fchown(run->dfd, 0, 0) < 0) || fchmod(run->dfd, 0700) < 0)
		return err_set(errno, "cannot make %s root's while it is built: %s", run->data_dir, strerror(errno));
	if ((in = f->base_file(f->ctx, "base.tar")) < 0)
		return in;
	rc = untar(in, run->dfd, "base.tar");
	close(in);
	if (rc == 0)
		rc = tablespaces(f, b, run);
	if (rc == 0)
		rc = config(run, standby);
	return rc < 0 ? rc : pgrun_version(run);
}

int pgrun_version(struct pgrun *run)
{
	char ver[16] = "";
	ssize_t n;
	int fd;

	if (run->dfd < 0 && (run->dfd = openat(run->pfd, strrchr(run->data_dir, '/') + 1,
					       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open %s: %s", run->data_dir, strerror(errno));
	/* The programs of its version (Debian's layout), unless --pg-bin. */
	if ((fd = openat(run->dfd, "PG_VERSION", O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
		n = read(fd, ver, sizeof(ver) - 1);
		close(fd);
		ver[n > 0 ? n : 0] = 0;
		ver[strcspn(ver, "\n")] = 0;
	}
	if (!ver[0] || strspn(ver, "0123456789.") != strlen(ver))
		return err_set(EBADMSG, "%s has no PG_VERSION: not a PostgreSQL data directory", run->data_dir);
	if (!run->bin[0])
		snprintf(run->bin, sizeof(run->bin), "/usr/lib/postgresql/%s/bin", ver);
	return 0;
}

int pgrun_place_wal(const struct pgfeed *f, const struct pgpath *path, struct pgrun *run)
{
	uint8_t *buf = malloc(PG_SEG);
	uint64_t n_seg = 0;
	int wfd, rc = 0;

	if (!buf)
		return -ENOMEM;
	if ((wfd = openat(run->dfd, "pg_wal", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		free(buf);
		return err_set(errno, "%s/pg_wal: %s (the base backup should hold an empty pg_wal directory)",
			       run->data_dir, strerror(errno));
	}
	for (uint32_t i = 0; i < path->n && rc == 0; i++) {
		const struct pgrange *g = &path->r[i];
		char name[PGWAL_SEG_NAME_LEN];
		if (g->tli > 1) {
			char *text, hn[PGWAL_HISTORY_NAME_LEN];
			size_t len;
			pgwal_history_name(hn, g->tli);
			if ((rc = f->history(f->ctx, g->tli, &text, &len)) < 0)
				break;
			rc = write_new(wfd, hn, text, len, "pg_wal");
			free(text);
		}
		/* Each segment as recovery reads it: nothing past the range's end. */
		for (uint64_t s = g->from / PG_SEG; rc == 0 && g->to && s <= (g->to - 1) / PG_SEG; s++) {
			if ((rc = f->segment(f->ctx, g->tli, s, g->to, buf)) < 0) {
				pgwal_seg_name(name, g->tli, s, PG_SEG);
				rc = rc == -ENOENT ? err_set(EBADMSG, "WAL segment %s of %s is missing", name, f->what) : rc;
				break;
			}
			pgwal_seg_name(name, g->tli, s, PG_SEG);
			rc = write_new(wfd, name, buf, PG_SEG, "pg_wal");
			n_seg++;
		}
	}
	close(wfd);
	free(buf);
	if (rc == 0 && syncfs(run->dfd) < 0)
		rc = err_set(errno, "cannot sync %s: %s", run->data_dir, strerror(errno));
	if (rc == 0)
		log_debug("%s: %llu WAL segments placed in %s/pg_wal", f->what, (unsigned long long)n_seg,
			 run->data_dir);
	return rc;
}

int pgrun_give_fd(int dfd, const struct pgrun *run, int depth)
{
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (depth > 32 || !(d = fdopendir(dup(dfd))))
		return depth > 32 ? -ELOOP : -errno;
	while ((e = readdir(d)) && rc == 0) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fchownat(dfd, e->d_name, run->uid, run->gid, AT_SYMLINK_NOFOLLOW) < 0)
			rc = -errno;
		else if (e->d_type == DT_DIR) {
			int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			rc = sub < 0 ? -errno : pgrun_give_fd(sub, run, depth + 1);
			if (sub >= 0)
				close(sub);
		}
	}
	closedir(d);
	return rc;
}

int pgrun_give(struct pgrun *run)
{
	int rc = pgrun_give_fd(run->dfd, run, 0);

	if (rc == 0 && fchown(run->dfd, run->uid, run->gid) < 0)
		rc = -errno;
	return rc < 0 ? err_set(rc, "cannot give %s to %s: %s", run->data_dir, run->user, strerror(-rc)) : 0;
}

/* ---- running ---- */

int pgrun_dir(struct pgrun *run)
{
	snprintf(run->run_dir, sizeof(run->run_dir), "/tmp/bascule-pg.XXXXXX");
	if (!mkdtemp(run->run_dir))
		return err_set(errno, "cannot make a directory in /tmp: %s", strerror(errno));
	if (chown(run->run_dir, run->uid, run->gid) < 0)
		return err_set(errno, "cannot give %s to %s: %s", run->run_dir, run->user, strerror(errno));
	snprintf(run->log, sizeof(run->log), "%s/postgresql.log", run->run_dir);
	return 0;
}

void pgrun_dir_remove(struct pgrun *run)
{
	char p[RPATH];
	DIR *d;
	struct dirent *e;

	if (!run->run_dir[0] || !(d = opendir(run->run_dir)))
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	snprintf(p, sizeof(p), "%s", run->run_dir);
	rmdir(p);
}

int pgrun_ctl(const struct pgrun *run, const char *const *args, uint64_t timeout, struct subproc_result *res)
{
	char ctl[RPATH + 16], uid[32], gid[32];
	const char *argv[40];
	size_t n = 0;

	snprintf(ctl, sizeof(ctl), "%s/pg_ctl", run->bin);
	if (geteuid() != run->uid) {
		snprintf(uid, sizeof(uid), "--reuid=%u", (unsigned)run->uid);
		snprintf(gid, sizeof(gid), "--regid=%u", (unsigned)run->gid);
		argv[n++] = "setpriv";
		argv[n++] = uid;
		argv[n++] = gid;
		argv[n++] = "--clear-groups";
		argv[n++] = "--";
	}
	argv[n++] = ctl;
	for (size_t i = 0; args[i] && n < 39; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return subproc_run(argv, &(struct subproc_opts){ .timeout = timeout, .output_max = 16384 }, res);
}

/* "2026-12-01 22:56:46.123456+00" (log_timezone UTC) in unix usec. */
static uint64_t log_time(const char *s)
{
	struct tm tm = { 0 };
	const char *p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
	uint64_t usec = 0, scale = 100000;

	if (!p)
		return 0;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			usec += (uint64_t)(*p - '0') * scale;
	return (uint64_t)timegm(&tm) * 1000000 + usec;
}

int pgrun_log(const char *path, struct pgrecovered *ret)
{
	char *text = NULL, *line, *save = NULL;
	size_t len;
	int rc;

	memset(ret, 0, sizeof(*ret));
	if ((rc = fs_read_all(path, 64u << 20, &text, &len)) < 0)
		return rc;
	/* lc_messages=C and log_timezone=UTC were given to the server. */
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *p;
		if ((p = strstr(line, "redo done at "))) {
			char lsn[PGWAL_LSN_LEN];
			if (sscanf(p, "redo done at %17s", lsn) == 1)
				pgwal_lsn_parse(lsn, &ret->redo_lsn);
		} else if ((p = strstr(line, "last completed transaction was at log time ")))
			ret->last_xact = log_time(p + strlen("last completed transaction was at log time "));
		else if ((p = strstr(line, "selected new timeline ID: ")))
			ret->tli = (uint32_t)strtoul(p + strlen("selected new timeline ID: "), NULL, 10);
		else if (strstr(line, "database system is ready to accept connections"))
			ret->ready = true;
		else if (strstr(line, "recovery ended before configured recovery target was reached"))
			ret->target_missed = true;
		else if ((p = strstr(line, "FATAL:")) || (p = strstr(line, "PANIC:")))
			snprintf(ret->fatal, sizeof(ret->fatal), "%s", p);
	}
	free(text);
	return 0;
}

/* The postmaster's pid from the first line of postmaster.pid, or 0. */
static pid_t postmaster_pid(const struct pgrun *run)
{
	char buf[32];
	int fd = openat(run->dfd, "postmaster.pid", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return (pid_t)strtol(buf, NULL, 10);
}

int pgrun_wait_ready(const struct pgrun *run, uint64_t timeout, struct pgrecovered *ret)
{
	uint64_t deadline = clock_deadline(timeout);
	pid_t pid = postmaster_pid(run);

	for (;;) {
		/* The log says when recovery is over; the process, if it gave up. */
		pgrun_log(run->log, ret);
		if (ret->ready)
			return 0;
		if (pid <= 0 || kill(pid, 0) < 0) {
			pgrun_log(run->log, ret);
			return ret->ready ? 0 : -EIO;
		}
		if (clock_mono_usec() > deadline)
			return err_set(ETIMEDOUT, "PostgreSQL did not finish recovery in %s within %llu s (its log: %s)",
				       run->data_dir, (unsigned long long)(timeout / 1000000), run->log);
		usleep(100000);
	}
}
