/* pgstandby.c - the hot standby of a PostgreSQL source (pg.h) and the
 * restore_command it replays through.
 *
 * `bascule replica standby` makes G/S from the base the copy follows, with
 * standby.signal and a restore_command calling `bascule replica wal-get`,
 * and starts it as the PostgreSQL user: it replays each WAL file as recv
 * commits it.  wal-get serves the committed copy only: a segment up to the
 * copy's end (zeros after it, which the standby reads as "no more yet":
 * it asks again every wal_retrieve_retry_interval and gets the rest), the
 * history files of its timelines; anything else is "not there" (exit 1).
 * Promote stops the standby and finishes recovery to the promoted point
 * (pgpromote.c). */
#include "pg.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STANDBY_PG "bascule-pg-standby-v1"

static int standby_path(char *buf, size_t len, const char *group, const char *source)
{
	int rc = pg_path(buf, len, group, source, 0, NULL);
	return rc < 0 || strlen(buf) + 10 > len ? -ENAMETOOLONG : (strcat(buf, "/standby"), 0);
}

int pg_standby_find(struct replica *r, const char *group, const char *source, char *ret_dir, size_t len)
{
	char path[RPATH], text[1200], dir[1024];
	int rc;

	if (standby_path(path, sizeof(path), group, source) < 0)
		return -ENAMETOOLONG;
	if ((rc = tree_read_text(r, path, text, sizeof(text))) <= 0)
		return rc;
	if (sscanf(text, STANDBY_PG " dir=%1023[^\n]", dir) != 1 || strlen(dir) >= len)
		return err_set(EBADMSG, "%s/%s is damaged", r->root, path);
	memcpy(ret_dir, dir, strlen(dir) + 1);
	return 1;
}

void pg_standby_forget(struct replica *r, const char *group, const char *source)
{
	char path[RPATH];

	if (standby_path(path, sizeof(path), group, source) == 0)
		unlinkat(r->root_fd, path, 0);
}

int pg_restore_command(const struct replica *r, const char *group, const char *source, uint32_t tli, uint64_t lsn,
		       char **ret)
{
	char exe[RPATH], upto[48] = "", l[PGWAL_LSN_LEN];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *argv[16];
	size_t k = 0;
	char *q;

	if (n <= 0)
		return err_set(errno, "cannot find the bascule program: /proc/self/exe: %s", strerror(errno));
	exe[n] = 0;
	if (strpbrk(exe, "\"$`\\%") || strpbrk(r->root, "\"$`\\%") || strpbrk(r->key_path, "\"$`\\%"))
		return err_set(EINVAL, "%s, %s or %s holds one of \" $ ` \\ %%, which a restore_command cannot "
				       "carry: move it", exe, r->root, r->key_path);
	argv[k++] = exe;
	argv[k++] = "replica";
	argv[k++] = "wal-get";
	argv[k++] = "--root";
	argv[k++] = r->root;
	argv[k++] = "--key";
	argv[k++] = r->key_path;
	argv[k++] = "--group";
	argv[k++] = group;
	argv[k++] = "--source";
	argv[k++] = source;
	if (tli) {
		snprintf(upto, sizeof(upto), "%u/%s", tli, pgwal_lsn_format(lsn, l));
		argv[k++] = "--upto";
		argv[k++] = upto;
	}
	argv[k] = NULL;
	if (!(q = subproc_quote_argv(argv)))
		return -ENOMEM;
	/* PostgreSQL replaces %f and %p. */
	if (asprintf(ret, "%s %%f %%p", q) < 0) {
		free(q);
		return -ENOMEM;
	}
	free(q);
	return 0;
}

/* ---- wal-get ---- */

/* The range of PATH that segment SEGNO of timeline TLI is served from, or NULL. */
static const struct pgrange *path_serves(const struct pgpath *path, uint32_t tli, uint64_t segno)
{
	for (uint32_t i = 0; i < path->n; i++) {
		const struct pgrange *g = &path->r[i];
		if (g->tli == tli && g->to && segno >= g->from / PG_SEG && segno <= (g->to - 1) / PG_SEG)
			return g;
	}
	return NULL;
}

int pg_wal_get(struct replica *r, const char *group, const char *source, const char *name, const char *dest,
	       uint32_t upto_tli, uint64_t upto_lsn)
{
	struct state_source *x;
	struct rstate s;
	struct pgbase b;
	struct pgpath path;
	uint8_t *data = NULL;
	char *text = NULL;
	size_t len = 0;
	uint32_t tli;
	uint64_t segno;
	int fd, rc;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc;
	if (!(x = state_find(&s, source)) || !pg_source(x))
		return err_set(ENOENT, "no PostgreSQL source %s in group %s of %s", source, group, r->root);
	if (upto_tli) {
		x->timeline = upto_tli;
		x->end_lsn = upto_lsn;
	}
	if ((rc = pg_copy_open(r, group, x, &b, &path)) < 0)
		return rc;
	if (strlen(name) == PGWAL_HISTORY_NAME_LEN - 1 && sscanf(name, "%8X.history", &tli) == 1) {
		char want[PGWAL_HISTORY_NAME_LEN];
		pgwal_history_name(want, tli);
		if (strcmp(want, name) || tli < 2 || tli > x->timeline)
			return -ENOENT;
		if ((rc = pghistory_load(r, group, source, x->system_id, tli, &text, &len)) < 0)
			return rc;
	} else if (pgwal_seg_parse(name, PG_SEG, &tli, &segno) == 0) {
		const struct pgrange *g = path_serves(&path, tli, segno);
		uint64_t to = g ? g->to : (segno + 1) * PG_SEG; /* before the base: whole */
		if (!g && pg_served_before(r, group, x, &b, tli, segno) != 1)
			return -ENOENT;
		if (!(data = malloc(PG_SEG)))
			return -ENOMEM;
		rc = pg_segment(r, group, source, x->system_id, tli, segno, to, data);
		len = PG_SEG;
		if (rc < 0) {
			free(data);
			return rc;
		}
	} else
		return -ENOENT; /* a .partial or .backup file: the copy has none to give */
	fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || fs_write_full(fd, text ? (void *)text : data, len) < 0 || fsync(fd) < 0)
		rc = err_set(errno, "cannot write %s: %s", dest, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(text);
	free(data);
	return rc;
}

/* ---- the standby ---- */

/* restore_command (GUC syntax: single quotes doubled) into postgresql.auto.conf. */
static int standby_config(struct pgrun *run, const char *cmd)
{
	size_t n = strlen(cmd), k = 0;
	char *line = malloc(2 * n + 256);
	int fd, rc = 0;

	if (!line)
		return -ENOMEM;
	k = (size_t)sprintf(line, "\n# the hot standby (bascule replica standby)\nwal_retrieve_retry_interval = '200ms'\n"
				  "hot_standby = on\nrestore_command = '");
	for (size_t i = 0; i < n; i++) {
		if (cmd[i] == '\'')
			line[k++] = '\'';
		line[k++] = cmd[i];
	}
	k += (size_t)sprintf(line + k, "'\n");
	fd = openat(run->dfd, "postgresql.auto.conf", O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || fs_write_full(fd, line, k) < 0)
		rc = err_set(errno, "cannot write %s/postgresql.auto.conf: %s", run->data_dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(line);
	return rc;
}

int pgrun_start(const struct pgrun *run, uint64_t timeout)
{
	struct subproc_result res;
	char secs[32], log[RPATH + 32];
	int rc;

	snprintf(secs, sizeof(secs), "%llu", (unsigned long long)(timeout / 1000000));
	snprintf(log, sizeof(log), "%s/bascule.log", run->data_dir);
	rc = pgrun_ctl(run, (const char *const[]){ "-D", run->data_dir, "-l", log, "-w", "-t", secs, "start", NULL },
		       timeout + 30000000, &res);
	if (rc == 0 && res.exit_status != 0)
		rc = err_set(EIO, "PostgreSQL did not start in %s: %s (its log: %s)", run->data_dir,
			     subproc_said(&res), log);
	subproc_result_free(&res);
	return rc;
}

int pgrun_stop(const struct pgrun *run)
{
	struct subproc_result res;
	int rc = pgrun_ctl(run, (const char *const[]){ "-D", run->data_dir, "-m", "fast", "-w", "-t", "600", "stop", NULL },
			   630000000, &res);

	if (rc == 0 && res.exit_status != 0)
		rc = err_set(EIO, "pg_ctl stop of %s failed: %s", run->data_dir, subproc_said(&res));
	subproc_result_free(&res);
	return rc;
}

int pgrun_control(const struct pgrun *run, const char *field, char *ret, size_t len)
{
	char prog[RPATH + 32], val[128];
	struct subproc_result res;
	const char *p;
	size_t n;
	int rc;

	snprintf(prog, sizeof(prog), "%s/pg_controldata", run->bin);
	rc = subproc_run((const char *const[]){ prog, "-D", run->data_dir, NULL },
			 &(struct subproc_opts){ .timeout = 60000000, .output_max = 65536,
						 .env = (const char *const[]){ "LC_ALL=C", NULL } }, &res);
	if (rc < 0)
		return rc;
	n = strlen(field);
	for (p = res.exit_status == 0 ? res.output : NULL; p && (p = strstr(p, field)); p += n)
		if ((p == res.output || p[-1] == '\n') && p[n] == ':')
			break;
	if (!p || sscanf(p + n + 1, " %127s", val) != 1 || strlen(val) >= len)
		rc = err_set(EIO, "pg_controldata -D %s: no \"%s\" in what it said: %s", run->data_dir, field,
			     subproc_said(&res));
	else
		memcpy(ret, val, strlen(val) + 1);
	subproc_result_free(&res);
	return rc;
}

int pgrun_running(const struct pgrun *run)
{
	struct subproc_result res;
	int rc = pgrun_ctl(run, (const char *const[]){ "-D", run->data_dir, "status", NULL }, 60000000, &res);

	/* pg_ctl status: 0 running, 3 not running, 4 no data directory. */
	if (rc == 0)
		rc = res.exit_status == 0;
	subproc_result_free(&res);
	return rc;
}

/* 1 if the standby at RUN can go on from the copy: wal-get serves the WAL
 * file its latest restartpoint begins in (where it replays from, even
 * after a restart); 0 if not: the copy follows a newer base backup after
 * a gap (a target behind the spool) or on another timeline, and the
 * standby would wait for WAL that never comes.  *RET_FILE that WAL file. */
static int standby_follows(struct replica *r, const char *group, const struct state_source *x,
			   const struct pgrun *run, char *ret_file, size_t len)
{
	struct pgbase b;
	struct pgpath path;
	uint32_t tli;
	uint64_t segno;
	int rc;

	if ((rc = pgrun_control(run, "Latest checkpoint's REDO WAL file", ret_file, len)) < 0)
		return rc;
	if (pgwal_seg_parse(ret_file, PG_SEG, &tli, &segno) < 0)
		return err_set(EIO, "pg_controldata -D %s names the WAL file \"%s\"", run->data_dir, ret_file);
	if ((rc = pg_copy_open(r, group, x, &b, &path)) < 0)
		return rc;
	return path_serves(&path, tli, segno) || pg_served_before(r, group, x, &b, tli, segno) == 1;
}

/* The standby at RUN cannot go on (standby_follows): stopped, removed (it
 * is made again from the copy), forgotten. */
static int standby_drop(struct replica *r, const char *group, const struct state_source *x, struct pgrun *run,
			const char *from)
{
	char l[PGWAL_LSN_LEN];
	int rc;

	log_info("%s/%s: the hot standby in %s replays from WAL file %s, which the copy no longer serves: rebuilt on "
		 "base backup %s of timeline %u", group, x->name, run->data_dir, from, pgwal_lsn_format(x->base_id, l),
		 x->timeline);
	if ((rc = pgrun_running(run)) < 0 || (rc && (rc = pgrun_stop(run)) < 0))
		return rc;
	if (run->dfd >= 0) {
		close(run->dfd);
		run->dfd = -1;
	}
	if ((rc = fs_remove_tree_at(run->pfd, x->name, 0)) < 0)
		return err_set(rc, "cannot remove the old standby %s: %s", run->data_dir, strerror(-rc));
	pg_standby_forget(r, group, x->name);
	return 0;
}

int pg_standby(struct replica *r, const char *group, const struct state_source *x, const struct promote_opts *o,
	       char *ret_dir, size_t len, bool *ret_started)
{
	uint64_t timeout = o->pg_timeout ? o->pg_timeout : 3600ULL * 1000000;
	char path[RPATH], marker[RPATH], *cmd = NULL, *line = NULL;
	struct pgbase b;
	struct pgpath wal;
	struct pgrun run;
	int gfd = -1, rc;

	*ret_started = false;
	pgrun_init(&run);
	if ((rc = pg_run_setup(r, group, x->name, o, NULL, &run, &gfd)) < 0)
		goto out;
	if ((rc = pg_standby_find(r, group, x->name, path, sizeof(path))) < 0)
		goto out;
	if (rc == 1 && !strcmp(path, run.data_dir)) {
		char from[64];
		if ((!run.bin[0] && (rc = pgrun_version(&run)) < 0) ||
		    (rc = standby_follows(r, group, x, &run, from, sizeof(from))) < 0 ||
		    (rc == 0 && (rc = standby_drop(r, group, x, &run, from)) < 0))
			goto out;
	}
	if (rc == 0) {
		struct pgstore_feed sf;
		struct pgfeed f;
		pgstore_feed(&sf, r, group, x->name, &b, &f);
		if ((rc = pg_copy_open(r, group, x, &b, &wal)) < 0 || (rc = pg_restore_command(r, group, x->name, 0, 0, &cmd)) < 0 ||
		    (rc = pgrun_make(&f, &b, true, &run)) < 0 || (rc = standby_config(&run, cmd)) < 0 ||
		    (rc = pgrun_give(&run)) < 0)
			goto out;
		if ((rc = standby_path(marker, sizeof(marker), group, x->name)) < 0 ||
		    asprintf(&line, STANDBY_PG " dir=%s\n", run.data_dir) < 0 ||
		    (rc = tree_write_atomic(r, marker, line, strlen(line))) < 0) {
			rc = rc < 0 ? rc : -ENOMEM;
			goto out;
		}
	} else if (strcmp(path, run.data_dir)) {
		rc = err_set(EEXIST, "the standby of %s/%s is %s, not %s", group, x->name, path, run.data_dir);
		goto out;
	}
	if ((rc = pgrun_running(&run)) < 0)
		goto out;
	if (rc == 0) {
		if ((rc = pgrun_start(&run, timeout)) < 0)
			goto out;
		*ret_started = true;
	}
	snprintf(ret_dir, len, "%s", run.data_dir);
	rc = 0;
out:
	free(cmd);
	free(line);
	pgrun_close(&run);
	if (gfd >= 0)
		close(gfd);
	return rc;
}

int replica_pg_standby(struct replica *r, const char *group, const struct promote_opts *o, void (*out)(const char *line))
{
	struct rstate s;
	char dir[1024], line[1200];
	bool started;
	int rc, n = 0;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc == -ENOENT ? err_set(ENOENT, "group %s has no complete epoch in %s", group, r->root) : rc;
	for (uint32_t i = 0; i < s.n_sources; i++) {
		if (!pg_source(&s.sources[i]))
			continue;
		if ((rc = pg_standby(r, group, &s.sources[i], o, dir, sizeof(dir), &started)) < 0)
			return rc;
		snprintf(line, sizeof(line), "%s/%s: hot standby %s in %s", group, s.sources[i].name,
			 started ? "started" : "running", dir);
		out(line);
		n++;
	}
	return n ? 0 : err_set(ENOENT, "group %s has no PostgreSQL source", group);
}

int replica_pg_wal_get(struct replica *r, const char *group, const char *source, const char *name, const char *dest,
		       uint32_t upto_tli, uint64_t upto_lsn)
{
	return pg_wal_get(r, group, source, name, dest, upto_tli, upto_lsn);
}
