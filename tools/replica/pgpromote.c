/* pgpromote.c - promote of a PostgreSQL source (pg.h): its data directory
 * left a primary's at exactly the promoted point.
 *
 * Cold: the base the copy follows is extracted, the WAL from it to the
 * promoted epoch's end LSN is placed in pg_wal (nothing after: recovery
 * replays every record that ends before it and then promotes, so no
 * recovery_target_lsn is needed, and none could be reached: no record
 * starts at the end of the WAL), recovery.signal; the server runs as the
 * PostgreSQL user on a private socket until it has promoted (a new
 * timeline, its history file in pg_wal), and is stopped cleanly.  With
 * --at, the WAL goes on to the end of the first epoch cut after the time
 * and recovery_target_time stops at the time itself; when no transaction
 * committed after it, PostgreSQL refuses the target (the WAL ends before
 * it is reached) and recovery runs again without it.
 * Hot: pgstandby.c's running standby is promoted in place. */
#include "pg.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROMOTED_PG "bascule-pg-promoted-v1"

int pg_promote_plan(struct replica *r, const struct rstate *s, uint64_t epoch, uint64_t at, struct pgplan *ret,
		    size_t max, size_t *ret_n)
{
	size_t n = 0;

	for (uint32_t i = 0; i < s->n_sources && n < max; i++) {
		const struct state_source *x = &s->sources[i];
		struct pgplan p = { .at = at };
		struct pgchain_rec *c = NULL;
		size_t nc = 0, first = 0;
		char dir[RPATH];
		int rc;
		if (!pg_source(x))
			continue;
		snprintf(p.name, sizeof(p.name), "%s", x->name);
		if (at && (rc = pg_path(dir, sizeof(dir), s->group, x->name, x->system_id, "base/%016llx",
					(unsigned long long)x->base_id)) == 0 &&
		    (rc = pgchain_read(r, dir, x->epoch, &c, &nc)) == 0) {
			for (size_t k = 0; k < nc; k++)
				if (c[k].flags & PGCHAIN_BASE)
					first = k;
			/* The first epoch after the one promoted, on the same base. */
			for (size_t k = first; nc && c[first].epoch <= epoch && k < nc; k++)
				if (c[k].epoch > epoch) {
					p.tli = c[k].tli;
					p.end_lsn = c[k].end;
					break;
				}
		}
		free(c);
		ret[n++] = p;
	}
	*ret_n = n;
	return 0;
}

/* ---- the record of a promotion ---- */

static int promoted_path(char *buf, size_t len, const char *group, const char *source)
{
	int rc = pg_path(buf, len, group, source, 0, NULL);
	return rc < 0 || strlen(buf) + 10 > len ? -ENAMETOOLONG : (strcat(buf, "/promoted"), 0);
}

int pg_promoted(struct replica *r, const char *group, const char *source, struct promote_pg *ret)
{
	char path[RPATH], text[2048], dir[1024];
	unsigned long long e, d, x, a, u;
	unsigned t, hot;
	int rc;

	if (promoted_path(path, sizeof(path), group, source) < 0)
		return -ENAMETOOLONG;
	if ((rc = tree_read_text(r, path, text, sizeof(text))) <= 0)
		return rc;
	if (sscanf(text, PROMOTED_PG " end=%llu redo=%llu tli=%u xact=%llu at=%llu usec=%llu hot=%u dir=%1023[^\n]",
		   &e, &d, &t, &x, &a, &u, &hot, dir) != 8)
		return err_set(EBADMSG, "%s/%s is damaged", r->root, path);
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->source, sizeof(ret->source), "%s", source);
	snprintf(ret->data_dir, sizeof(ret->data_dir), "%s", dir);
	ret->end_lsn = e;
	ret->redo_lsn = d;
	ret->timeline = t;
	ret->last_xact = x;
	ret->at = a;
	ret->usec = u;
	ret->hot = hot;
	return 1;
}

static int record_promoted(struct replica *r, const char *group, const struct promote_pg *p)
{
	char path[RPATH], line[2048];

	if (promoted_path(path, sizeof(path), group, p->source) < 0)
		return -ENAMETOOLONG;
	snprintf(line, sizeof(line), PROMOTED_PG " end=%llu redo=%llu tli=%u xact=%llu at=%llu usec=%llu hot=%u dir=%s\n",
		 (unsigned long long)p->end_lsn, (unsigned long long)p->redo_lsn, p->timeline,
		 (unsigned long long)p->last_xact, (unsigned long long)p->at, (unsigned long long)p->usec,
		 (unsigned)p->hot, p->data_dir);
	return tree_write_atomic(r, path, line, strlen(line));
}

/* ---- cold ---- */

static void fmt_pg_time(uint64_t usec, char *buf, size_t len)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	char s[32];

	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06llu+00", s, (unsigned long long)(usec % 1000000));
}

/* Start the server on RUN for recovery (to time AT if not 0) and wait
 * until it has promoted; *RET what its log says. */
static int recover(const struct pgrun *run, uint32_t tli, uint64_t at, const char *restore, uint64_t timeout,
		   struct pgrecovered *ret)
{
	char opts[8192], target[96] = "", secs[32], when[48];
	struct subproc_result res;
	int rc;

	if (at) {
		fmt_pg_time(at, when, sizeof(when));
		snprintf(target, sizeof(target), " -c \"recovery_target_time=%s\"", when);
	}
	/* Nothing outside can connect; nothing is archived; the log is ours. */
	snprintf(opts, sizeof(opts),
		 "-c listen_addresses= -c unix_socket_directories=%s -c archive_mode=off -c hot_standby=off "
		 "-c \"restore_command=%s\" -c lc_messages=C -c log_timezone=UTC -c logging_collector=off "
		 "-c log_destination=stderr -c recovery_target_timeline=%u -c recovery_target_action=promote%s",
		 run->run_dir, restore ? restore : "/bin/false", tli, target);
	snprintf(secs, sizeof(secs), "%llu", (unsigned long long)(timeout / 1000000));
	unlink(run->log);
	rc = pgrun_ctl(run, (const char *const[]){ "-D", run->data_dir, "-l", run->log, "-w", "-t", secs, "-o", opts,
						   "start", NULL }, timeout + 30000000, &res);
	if (rc < 0)
		return rc;
	/* pg_ctl -w returns when archive recovery begins (PostgreSQL reports
	 * "standby" then): recovery's end is waited for here. */
	memset(ret, 0, sizeof(*ret));
	if (res.exit_status == 0)
		rc = pgrun_wait_ready(run, timeout, ret);
	else
		pgrun_log(run->log, ret);
	if (rc == -ETIMEDOUT)
		pgrun_stop(run);
	else if (res.exit_status != 0 || rc < 0)
		rc = err_set(EIO, "PostgreSQL did not finish recovery in %s: %s (its log: %s)", run->data_dir,
			     ret->fatal[0] ? ret->fatal : subproc_said(&res), run->log);
	subproc_result_free(&res);
	return rc;
}

/* Recovery to PLAN's time, or to the end of the WAL given when no
 * transaction committed after it. */
static int recover_to(const char *what, const struct state_source *y, const struct pgplan *plan, const char *restore,
		      uint64_t timeout, const struct pgrun *run, struct pgrecovered *rec)
{
	int rc = recover(run, y->timeline, plan->at, restore, timeout, rec);

	if (rc < 0 && plan->at && rec->target_missed) {
		/* No transaction committed after the time: everything there is is before it. */
		log_info("%s: no transaction committed after the time asked for in the WAL kept; recovering "
			 "to its end", what);
		rc = recover(run, y->timeline, 0, restore, timeout, rec);
	}
	return rc;
}

/* What a recovery of Y to PLAN reached (REC) into RET; RUN's private
 * directory removed. */
static void recovered(const struct state_source *y, const struct pgplan *plan, const struct pgrecovered *rec,
		      struct pgrun *run, struct promote_pg *ret)
{
	ret->end_lsn = y->end_lsn;
	ret->redo_lsn = rec->redo_lsn;
	ret->timeline = rec->tli;
	ret->last_xact = rec->last_xact;
	ret->at = plan->at;
	pgrun_dir_remove(run);
}

int pg_recover_cold(const struct pgfeed *f, const struct pgbase *b, const struct pgpath *path,
		    const struct state_source *y, const struct pgplan *plan, uint64_t timeout, struct pgrun *run,
		    struct promote_pg *ret)
{
	struct pgrecovered rec;
	int rc;

	if ((rc = pgrun_make(f, b, false, run)) < 0 || (rc = pgrun_place_wal(f, path, run)) < 0 ||
	    (rc = pgrun_give(run)) < 0 || (rc = pgrun_dir(run)) < 0)
		return rc;
	if ((rc = recover_to(f->what, y, plan, NULL, timeout, run, &rec)) < 0 || (rc = pgrun_stop(run)) < 0)
		return rc;
	recovered(y, plan, &rec, run, ret);
	return 0;
}

static int promote_cold(struct replica *r, const char *group, const struct state_source *y, const struct pgplan *plan,
			const struct promote_opts *o, struct pgrun *run, struct promote_pg *ret)
{
	uint64_t timeout = o->pg_timeout ? o->pg_timeout : 3600ULL * 1000000;
	struct pgstore_feed sf;
	struct pgfeed f;
	struct pgbase b;
	struct pgpath path;
	char a[PGWAL_LSN_LEN], e[PGWAL_LSN_LEN];
	int rc;

	if ((rc = pg_copy_open(r, group, y, &b, &path)) < 0)
		return rc;
	if (b.end_lsn > y->end_lsn)
		return err_set(ENOENT, "%s/%s cannot be promoted at %s: its base backup %s is consistent only "
				       "from %s (promote a later epoch)", group, y->name, pgwal_lsn_format(y->end_lsn, a),
			       pgwal_lsn_format(b.id, e), pgwal_lsn_format(b.end_lsn, (char[PGWAL_LSN_LEN]){ 0 }));
	pgstore_feed(&sf, r, group, y->name, &b, &f);
	return pg_recover_cold(&f, &b, &path, y, plan, timeout, run, ret);
}

int replica_pg_restore(const struct pgfeed *f, const struct pg_restore_req *req, const struct promote_opts *o,
		       const char *data_dir, struct promote_pg *ret)
{
	uint64_t timeout = o->pg_timeout ? o->pg_timeout : 3600ULL * 1000000, t0 = clock_mono_usec();
	struct state_source y = { .system_id = req->system_id, .base_id = req->base_id, .timeline = req->tli,
				  .end_lsn = req->end_lsn };
	struct pgplan plan = { .at = req->at };
	struct pgpath path = { .n = 1, .r = { { .tli = req->tli, .from = req->from, .to = req->end_lsn } } };
	struct pgbase *b = calloc(1, sizeof(*b));
	struct promote_pg p = { 0 };
	struct pgrun run;
	int rc;

	if (!b)
		return -ENOMEM;
	pgrun_init(&run);
	snprintf(y.name, sizeof(y.name), "%s", req->source);
	snprintf(p.source, sizeof(p.source), "%s", req->source);
	b->system_id = req->system_id;
	b->id = req->base_id;
	b->tli = req->tli;
	if (req->n_files > PGBASE_MAX_FILES) {
		rc = err_set(E2BIG, "%s: a base of %u files (at most %u)", f->what, req->n_files, PGBASE_MAX_FILES);
		goto out;
	}
	for (uint32_t i = 0; i < req->n_files; i++)
		snprintf(b->files[b->n_files++].name, sizeof(b->files[0].name), "%s", req->files[i]);
	run.conf = o->pg_conf ? o->pg_conf : access(PG_SITE_CONF, F_OK) == 0 ? PG_SITE_CONF : NULL;
	if (o->pg_bin)
		snprintf(run.bin, sizeof(run.bin), "%s", o->pg_bin);
	if ((rc = pgrun_user(NULL, o->pg_user ? o->pg_user : "postgres", &run)) < 0)
		goto out;
	if ((rc = fs_abspath(data_dir, run.data_dir, sizeof(run.data_dir))) < 0)
		goto out;
	if (strlen(run.data_dir) >= sizeof(p.data_dir)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	memcpy(p.data_dir, run.data_dir, strlen(run.data_dir) + 1); /* fits: checked above */
	if ((rc = pg_recover_cold(f, b, &path, &y, &plan, timeout, &run, &p)) < 0)
		goto out;
	p.usec = clock_mono_usec() - t0;
	*ret = p;
out:
	pgrun_close(&run);
	free(b);
	return rc;
}

/* "Minimum recovery ending location" of a stopped cluster (pg_controldata). */
static int min_recovery(const struct pgrun *run, uint64_t *ret)
{
	char lsn[PGWAL_LSN_LEN];
	int rc = pgrun_control(run, "Minimum recovery ending location", lsn, sizeof(lsn));

	if (rc == 0) {
		*ret = 0;
		pgwal_lsn_parse(lsn, ret);
	}
	return rc;
}

/* Remove the standby's WAL files: promotion takes its WAL from the copy
 * (restore_command), never a later segment the standby fetched. */
static int drop_wal(const struct pgrun *run)
{
	int wfd = openat(run->dfd, "pg_wal", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc = 0;
	DIR *d;
	struct dirent *e;

	if (wfd < 0 || !(d = fdopendir(wfd))) {
		rc = err_set(errno, "cannot open %s/pg_wal: %s", run->data_dir, strerror(errno));
		if (wfd >= 0)
			close(wfd);
		return rc;
	}
	while ((e = readdir(d)))
		if (e->d_type == DT_REG && unlinkat(wfd, e->d_name, 0) < 0 && rc == 0)
			rc = err_set(errno, "cannot remove %s/pg_wal/%s: %s", run->data_dir, e->d_name, strerror(errno));
	closedir(d);
	return rc;
}

/* The standby at RUN, stopped, recovers to the promoted point through the
 * copy's restore_command and promotes; it is then started as a primary.
 * 1: done; 0: it has replayed past the point (the caller goes cold). */
static int promote_hot(struct replica *r, const char *group, const struct state_source *x, const struct state_source *y,
		       const struct pgplan *plan, const struct promote_opts *o, struct pgrun *run, struct promote_pg *ret)
{
	uint64_t timeout = o->pg_timeout ? o->pg_timeout : 3600ULL * 1000000, min = 0;
	char *restore = NULL, a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN], what[2 * NAME_MAX_LEN + 2];
	struct pgrecovered rec;
	int rc;

	snprintf(what, sizeof(what), "%s/%s", group, x->name);
	if ((rc = pgrun_version(run)) < 0 || (rc = pgrun_running(run)) < 0 || (rc && (rc = pgrun_stop(run)) < 0) ||
	    (rc = min_recovery(run, &min)) < 0)
		return rc;
	/* Everything it replayed must be at or before the promoted epoch's end
	 * (its commits are before --at too: the epoch was cut by then). */
	if (min > x->end_lsn) {
		log_info("%s/%s: the standby has replayed to %s, past the promoted point %s: restoring the base "
			 "instead", group, x->name, pgwal_lsn_format(min, a), pgwal_lsn_format(x->end_lsn, b));
		return 0;
	}
	if (unlinkat(run->dfd, "standby.signal", 0) < 0 && errno != ENOENT)
		return err_set(errno, "cannot remove %s/standby.signal: %s", run->data_dir, strerror(errno));
	if ((rc = drop_wal(run)) < 0 || (rc = pg_restore_command(r, group, y->name, y->timeline, y->end_lsn, &restore)) < 0)
		return rc;
	{
		int fd = openat(run->dfd, "recovery.signal", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 || fchown(fd, run->uid, run->gid) < 0)
			rc = err_set(errno, "cannot create %s/recovery.signal: %s", run->data_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	if (rc == 0 && (rc = pgrun_dir(run)) == 0 && (rc = recover_to(what, y, plan, restore, timeout, run, &rec)) == 0 &&
	    (rc = pgrun_stop(run)) == 0)
		rc = pgrun_start(run, timeout);
	free(restore);
	if (rc < 0)
		return rc;
	pg_standby_forget(r, group, x->name);
	ret->hot = true;
	recovered(y, plan, &rec, run, ret);
	return 1;
}

/* A standby replayed too far is kept aside, as G/.SOURCE.standby-LSN. */
static int set_aside(const struct pgrun *run, const char *source, uint64_t lsn)
{
	char to[NAME_MAX_LEN + 64], l[PGWAL_LSN_LEN];

	pgwal_lsn_format(lsn, l);
	l[strcspn(l, "/")] = '-';
	snprintf(to, sizeof(to), ".%s.standby-%s", source, l);
	if (renameat(run->pfd, source, run->pfd, to) < 0)
		return err_set(errno, "cannot move %s aside: %s", run->data_dir, strerror(errno));
	log_info("the standby's data directory is kept as %s beside it", to);
	return 0;
}

int pg_promote(struct replica *r, const char *group, const struct state_source *x, const struct pgplan *plan,
	       const struct promote_opts *o, struct promote_pg *ret)
{
	struct state_source y = *x;
	struct promote_pg p;
	struct pgrun run;
	char standby[1024];
	uint64_t t0 = clock_mono_usec();
	int gfd = -1, rc;

	if ((rc = pg_promoted(r, group, x->name, ret)) != 0)
		return rc < 0 ? rc : 0; /* done already (a resumed drill) */
	memset(&p, 0, sizeof(p));
	snprintf(p.source, sizeof(p.source), "%s", x->name);
	if (plan->tli) {
		y.timeline = plan->tli;
		y.end_lsn = plan->end_lsn;
	}
	pgrun_init(&run);
	if ((rc = pg_run_setup(r, group, x->name, o, o->link_dir, &run, &gfd)) < 0)
		goto out;
	memcpy(p.data_dir, run.data_dir, strlen(run.data_dir) + 1); /* fits: checked above */
	if ((rc = pg_standby_find(r, group, x->name, standby, sizeof(standby))) < 0)
		goto out;
	if (rc == 1) {
		/* The hot standby is promoted where it is, whatever --link-dir says. */
		pgrun_close(&run);
		pgrun_init(&run);
		if (gfd >= 0)
			close(gfd);
		gfd = -1;
		if ((rc = pg_run_setup(r, group, x->name, o, NULL, &run, &gfd)) < 0)
			goto out;
		memcpy(p.data_dir, run.data_dir, strlen(run.data_dir) + 1);
		if ((rc = promote_hot(r, group, x, &y, plan, o, &run, &p)) < 0)
			goto out;
		if (rc == 0) {
			pg_standby_forget(r, group, x->name);
			if ((rc = set_aside(&run, x->name, x->end_lsn)) < 0)
				goto out;
			pgrun_close(&run);
			pgrun_init(&run);
			if (gfd >= 0)
				close(gfd);
			gfd = -1;
			if ((rc = pg_run_setup(r, group, x->name, o, o->link_dir, &run, &gfd)) < 0)
				goto out;
			memcpy(p.data_dir, run.data_dir, strlen(run.data_dir) + 1);
		}
	}
	if (!p.hot && (rc = promote_cold(r, group, &y, plan, o, &run, &p)) < 0)
		goto out;
	p.usec = clock_mono_usec() - t0;
	if ((rc = record_promoted(r, group, &p)) < 0)
		goto out;
	*ret = p;
out:
	pgrun_close(&run);
	if (gfd >= 0)
		close(gfd);
	return rc;
}

int pg_recover_stopped(const struct pgrun *run, uint32_t tli, uint64_t timeout, struct pgrecovered *ret)
{
	int rc = recover(run, tli, 0, NULL, timeout, ret);

	return rc < 0 ? rc : pgrun_stop(run);
}
