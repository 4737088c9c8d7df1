/* intake_load.c - bascule intake restore --load URL: create the database
 * URL names (or refuse a non-empty one unless --replace), stream the night
 * into `pg_restore --exit-on-error` (schema and data) as it is rebuilt (as
 * --to rebuilds it, verified against the signed digest of the original),
 * keeping a scratch copy from which `pg_restore --section=post-data --jobs
 * N` builds the indexes and constraints, and check that every TABLE DATA
 * entry of the dump's table of contents is a table of the loaded database
 * (docs/hybrid.md, "Recovery").
 *
 * The password of URL is never on a command line nor in a message: the
 * connections are opened from the parsed options, and pg_restore gets the
 * options without the password in -d and the password in PGPASSWORD. */
#include "clock.h"
#include "cmd.h"
#include "err.h"
#include "fsutil.h"
#include "intake_tool.h"
#include "subproc.h"
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOAD_MAX_OPTS 64

/* URL's options, parsed by libpq: the ones given, the password apart. */
struct conn {
	const char *keys[LOAD_MAX_OPTS + 1], *vals[LOAD_MAX_OPTS + 1];
	size_t n;
	int dbname_at;          /* index of dbname in keys, or -1 */
	const char *dbname;     /* the database to load into */
	const char *password;   /* NULL: none in URL (libpq finds it: PGPASSWORD, ~/.pgpass) */
	PQconninfoOption *o;
};

static int conn_parse(const char *url, struct conn *c)
{
	char *msg = NULL;

	*c = (struct conn){ .dbname_at = -1 };
	if (!(c->o = PQconninfoParse(url, &msg))) {
		size_t l = msg ? strlen(msg) : 0;
		if (l && msg[l - 1] == '\n')
			msg[l - 1] = 0;
		fprintf(stderr, "bascule intake restore: --load: the URL does not parse: %s\n",
			msg ? msg : "out of memory");
		PQfreemem(msg);
		return EXIT_USAGE;
	}
	for (PQconninfoOption *p = c->o; p->keyword; p++) {
		if (!p->val || !p->val[0])
			continue;
		if (!strcmp(p->keyword, "password")) {
			c->password = p->val;
			continue;
		}
		if (c->n == LOAD_MAX_OPTS)
			break;
		if (!strcmp(p->keyword, "dbname")) {
			c->dbname_at = (int)c->n;
			c->dbname = p->val;
		}
		c->keys[c->n] = p->keyword;
		c->vals[c->n++] = p->val;
	}
	if (!c->dbname) {
		fprintf(stderr, "bascule intake restore: --load: the URL names no database "
				"(postgresql://[USER@]HOST[:PORT]/DBNAME)\n");
		return EXIT_USAGE;
	}
	if (!strcmp(c->dbname, "template0") || !strcmp(c->dbname, "template1")) {
		fprintf(stderr, "bascule intake restore: --load: will not load into %s: name a database of "
				"its own\n", c->dbname);
		return EXIT_USAGE;
	}
	return 0;
}

/* Connect to DB (NULL: the URL's) with URL's options: NULL after a message. */
static PGconn *conn_open(struct conn *c, const char *db)
{
	const char *keys[LOAD_MAX_OPTS + 3], *vals[LOAD_MAX_OPTS + 3];
	size_t n = 0;
	PGconn *pg;

	for (size_t i = 0; i < c->n; i++) {
		keys[n] = c->keys[i];
		vals[n++] = (int)i == c->dbname_at && db ? db : c->vals[i];
	}
	if (c->password) {
		keys[n] = "password";
		vals[n++] = c->password;
	}
	keys[n] = vals[n] = NULL;
	pg = PQconnectdbParams(keys, vals, 0);
	if (!pg || PQstatus(pg) != CONNECTION_OK) {
		char m[1024];
		snprintf(m, sizeof(m), "%s", pg ? PQerrorMessage(pg) : "out of memory");
		m[strcspn(m, "\n")] = 0;
		fprintf(stderr, "bascule intake restore: --load: cannot connect to database %s: %s\n",
			db ? db : c->dbname, m);
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

/* SQL on PG: its result if it succeeded, else NULL after a message. */
static PGresult *sql(PGconn *pg, const char *q, int n, const char *const *params)
{
	PGresult *res = PQexecParams(pg, q, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		char m[1024];
		snprintf(m, sizeof(m), "%s", PQerrorMessage(pg));
		m[strcspn(m, "\n")] = 0;
		fprintf(stderr, "bascule intake restore: --load: %s\n", m);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* The one number SQL answers (a count), -1 after a message on error. */
static long sql_long(PGconn *pg, const char *q, int n, const char *const *params)
{
	PGresult *res = sql(pg, q, n, params);
	long v;

	if (!res)
		return -1;
	v = PQntuples(res) ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return v;
}

/* PRE, the quoted identifier of NAME, POST: "CREATE DATABASE x" and the like. */
static int sql_ident(PGconn *pg, const char *pre, const char *name, const char *post)
{
	char *id = PQescapeIdentifier(pg, name, strlen(name)), q[1200];
	PGresult *res;

	if (!id) {
		fprintf(stderr, "bascule intake restore: --load: %s", PQerrorMessage(pg));
		return -1;
	}
	snprintf(q, sizeof(q), "%s%s%s", pre, id, post);
	PQfreemem(id);
	if (!(res = sql(pg, q, 0, NULL)))
		return -1;
	PQclear(res);
	return 0;
}

/* The options as a conninfo string for pg_restore -d: key='value', the
 * password left out.  Malloc'd, NULL without memory. */
static char *conninfo_nopass(const struct conn *c)
{
	size_t len = 1;
	char *s, *p;

	for (size_t i = 0; i < c->n; i++)
		len += strlen(c->keys[i]) + 2 * strlen(c->vals[i]) + 5;
	if (!(s = p = malloc(len)))
		return NULL;
	for (size_t i = 0; i < c->n; i++) {
		p += sprintf(p, "%s%s='", i ? " " : "", c->keys[i]);
		for (const char *v = c->vals[i]; *v; v++) {
			if (*v == '\'' || *v == '\\')
				*p++ = '\\';
			*p++ = *v;
		}
		*p++ = '\'';
	}
	*p = 0;
	return s;
}

/* The user tables (and views, sequences...) of a database: what a dump loads. */
#define COUNT_RELATIONS \
	"SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace " \
	"WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' " \
	"AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"

/* The end of what a failed pg_restore said (its error is not always its
 * last line: "Command was: ..." follows it), whole lines, at most ~4 KiB. */
static const char *pg_said(struct subproc_result *res)
{
	const char *p;

	(void)subproc_last_line(res); /* the trailing newlines and blanks removed */
	if (!res->output || !res->output[0])
		return "(no output)";
	if (res->output_len <= 4096)
		return res->output;
	for (p = res->output + res->output_len - 4096; *p && *p != '\n'; p++)
		;
	return *p ? p + 1 : subproc_said(res);
}

/* pg_restore ARGV (its stdin STDIN_FD, 0: none): 0, or EXIT_FAIL after
 * printing its status and what it said. */
/* What subproc_run's R and RES say of ARGV[0]: 0, or EXIT_FAIL printed
 * (MSG: R's sentence, taken where R was set). */
static int pg_verdict(const char *const *argv, int r, const char *msg, struct subproc_result *res)
{
	if (r < 0) {
		fprintf(stderr, "bascule intake restore: --load: %s\n", msg);
		return EXIT_FAIL;
	}
	if (res->exit_status != 0) {
		if (res->exit_status < 0)
			fprintf(stderr, "bascule intake restore: --load: %s was killed by signal %d:\n%s\n",
				argv[0], res->term_signal, pg_said(res));
		else
			fprintf(stderr, "bascule intake restore: --load: %s exited %d:\n%s\n", argv[0],
				res->exit_status, pg_said(res));
		subproc_result_free(res);
		return EXIT_FAIL;
	}
	return 0;
}

static int run_pg(const char *const *argv, const char *const *env, int stdin_fd, struct subproc_result *res)
{
	struct subproc_opts o = { .env = env, .output_max = SUBPROC_OUTPUT_LIMIT, .stdin_fd = stdin_fd };
	int r = subproc_run(argv, &o, res);

	return pg_verdict(argv, r, r < 0 ? err_msg(r) : "", res);
}

/* A pg_restore run in a thread of its own, waited for with pg_job_wait:
 * the streamed load (its stdin the pipe, closed once it ended: a write
 * still blocked on it gets EPIPE), the table of contents read beside the
 * post-data step. */
struct pg_job {
	const char *const *argv, *const *env;
	int stdin_fd;            /* 0: none */
	pthread_t th;
	int r;                   /* subproc_run's, and its sentence */
	char msg[1024];
	struct subproc_result res;
};

static void *pg_job_run(void *ctx)
{
	struct pg_job *j = ctx;
	struct subproc_opts o = { .env = j->env, .output_max = SUBPROC_OUTPUT_LIMIT, .stdin_fd = j->stdin_fd };

	if ((j->r = subproc_run(j->argv, &o, &j->res)) < 0)
		snprintf(j->msg, sizeof(j->msg), "%s", err_msg(j->r));
	if (j->stdin_fd > 0)
		close(j->stdin_fd);
	j->stdin_fd = 0;
	return NULL;
}

static int pg_job_start(struct pg_job *j)
{
	int e = pthread_create(&j->th, NULL, pg_job_run, j);

	return e ? err_set(e, "cannot start %s: %s", j->argv[0], strerror(e)) : 0;
}

/* Its status: 0 (J's output kept, the caller frees it), or EXIT_FAIL,
 * printed unless QUIET. */
static int pg_job_wait(struct pg_job *j, bool quiet)
{
	pthread_join(j->th, NULL);
	if (quiet) {
		subproc_result_free(&j->res);
		return EXIT_FAIL;
	}
	return pg_verdict(j->argv, j->r, j->msg, &j->res);
}

/* Every TABLE DATA entry of the dump's TOC (TOC: pg_restore -l's output)
 * is a table of PG: *TABLES and *ROWS, or EXIT_FAIL after naming what is
 * missing. */
static int check_tables(PGconn *pg, char *toc, long *tables, long long *rows)
{
	int r = 0;

	*tables = 0;
	*rows = 0;
	for (char *line = toc, *next; line && *line; line = next) {
		char *eol = strchr(line, '\n'), *at, *schema, *name, *sp, q[1200];
		const char *params[2];
		if (eol)
			*eol = 0;
		next = eol ? eol + 1 : NULL;
		/* "3374; 0 16398 TABLE DATA public pgbench_accounts postgres" */
		if (line[0] == ';' || !(at = strstr(line, " TABLE DATA ")))
			continue;
		schema = at + strlen(" TABLE DATA ");
		if (!(name = strchr(schema, ' ')) || !(sp = strrchr(name + 1, ' ')) || sp == name) {
			fprintf(stderr, "bascule intake restore: --load: cannot read the dump's TOC line: %s\n", line);
			r = EXIT_FAIL;
			break;
		}
		*name++ = 0;
		*sp = 0; /* the owner follows */
		params[0] = schema;
		params[1] = name;
		if (sql_long(pg, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
				 "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')", 2, params) != 1) {
			fprintf(stderr, "bascule intake restore: --load: table %s.%s of the dump is not in the loaded "
					"database\n", schema, name);
			r = EXIT_FAIL;
			break;
		}
		{
			char *s = PQescapeIdentifier(pg, schema, strlen(schema)), *t = PQescapeIdentifier(pg, name, strlen(name));
			long n = -1;
			if (s && t) {
				snprintf(q, sizeof(q), "SELECT count(*) FROM %s.%s", s, t);
				n = sql_long(pg, q, 0, NULL);
			}
			PQfreemem(s);
			PQfreemem(t);
			if (n < 0) {
				r = EXIT_FAIL;
				break;
			}
			*rows += n;
		}
		(*tables)++;
	}
	return r;
}

/* The streamed load: the schema and the data go into pg_restore on a pipe
 * as the night is rebuilt (pg_restore runs in a thread of its own, waited
 * for there), and into the scratch copy that the post-data step (indexes,
 * constraints, grants: --jobs N, which wants a file) and the checks read. */
struct stream {
	struct conn *c;
	PGconn *adm;
	const struct intake_load_opts *lo;
	bool exists, created, started, failed; /* failed: START printed why */
	struct pg_job job;                     /* pg_restore of the schema and the data, from the pipe */
	int wfd, copy_fd;
	uint64_t copied;                       /* bytes in the scratch copy */
	bool no_splice;                        /* splice refused: the pipe is written */
	bool reader_gone;                      /* pg_restore no longer reads: its status tells why */
	bool sent;                             /* a byte of the night went to pg_restore */
};

/* pg_restore started on the pipe, in its thread, before anything else is
 * done (Debian's pg_restore is a Perl wrapper: its start is hidden behind
 * the chain's checks and the database's creation): it reads the night's
 * table of contents before it connects.  A load that fails before a byte
 * of the night is sent gives it an empty night and does not hear it. */
static int stream_spawn(struct stream *st)
{
	int p[2], r;

	if (pipe2(p, O_CLOEXEC) < 0)
		return err_set(errno, "cannot make a pipe to pg_restore: %s", strerror(errno));
	st->job.stdin_fd = p[0];
	st->wfd = p[1];
	(void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* the night comes in 1 MiB pieces: fewer wake-ups */
	if ((r = pg_job_start(&st->job)) < 0) {
		close(p[0]);
		close(p[1]);
		st->job.stdin_fd = 0;
		st->wfd = -1;
		return r;
	}
	st->started = true;
	return 0;
}

/* intake_rebuild's PREPARE: a database that does not exist is created
 * while the key opens (a wrong key: pg_restore gets an empty night, is not
 * heard, the database is dropped); an existing one is dropped (--replace)
 * or loaded into only once the key opened. */
static int stream_prepare(void *ctx)
{
	struct stream *st = ctx;

	if (st->exists)
		return 0;
	if (sql_ident(st->adm, "CREATE DATABASE ", st->c->dbname, " TEMPLATE template0") < 0) {
		st->failed = true;
		return -ECANCELED;
	}
	st->created = true;
	return 0;
}

/* intake_rebuild's START: the database made ready. */
static int stream_start(void *ctx, const char *night)
{
	struct stream *st = ctx;

	(void)night;
	if (st->created)
		return 0; /* PREPARE did it */
	if (st->exists && st->lo->replace && sql_ident(st->adm, "DROP DATABASE ", st->c->dbname, "") < 0)
		goto fail;
	if (!st->created && (!st->exists || st->lo->replace)) {
		if (sql_ident(st->adm, "CREATE DATABASE ", st->c->dbname, " TEMPLATE template0") < 0)
			goto fail;
		st->created = true;
	} /* else an empty database of the operator's: loaded into, never dropped */
	return 0;
fail:
	st->failed = true;
	return -ECANCELED;
}

/* intake_rebuild's OUT: the night to the scratch copy and to pg_restore. */
static int stream_out(void *ctx, const uint8_t *p, size_t n)
{
	struct stream *st = ctx;
	int r = fs_write_full(st->copy_fd, p, n);

	if (r < 0)
		return err_set(-r, "cannot write the rebuilt dump's scratch copy: %s (--tmp DIR chooses where it is "
				   "kept while it loads)", strerror(-r));
	st->sent = true;
	/* the pages just written go to the pipe as they are (one copy of the
	 * night fewer); where splice cannot move them, written again */
	if (!st->reader_gone) {
		r = st->no_splice ? -EINVAL : fs_splice_full(st->copy_fd, st->copied, st->wfd, n);
		if (r == -EINVAL) {
			st->no_splice = true;
			r = fs_write_full(st->wfd, p, n);
		}
	}
	st->copied += n;
	if (r < 0) {
		if (r != -EPIPE)
			return err_set(-r, "cannot write to pg_restore: %s", strerror(-r));
		st->reader_gone = true;
	}
	return 0;
}

/* The end of the stream: pg_restore's EOF, and its status (printed unless
 * QUIET: a rebuild that failed before a byte of the night went to it). */
static int stream_end(struct stream *st, bool quiet)
{
	int rc;

	if (!st->started)
		return 0;
	close(st->wfd);
	st->wfd = -1;
	st->started = false;
	rc = pg_job_wait(&st->job, quiet);
	subproc_result_free(&st->job.res);
	return rc;
}

int intake_load(const struct intake_rebuild_req *q0, const struct intake_load_opts *lo)
{
	struct intake_rebuild_req q = *q0;
	struct conn c;
	PGconn *pg = NULL;
	const char *maint;
	char dir[4096], dump[4200], jobs[16], *ci = NULL, *penv = NULL, pg_restore[4200];
	struct intake_rebuilt got;
	struct stream st = { .c = &c, .lo = lo, .wfd = -1, .copy_fd = -1 };
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe;
	const char *list[] = { pg_restore, "-l", dump, NULL };
	struct pg_job toc = { .argv = list };
	uint64_t t0 = clock_mono_usec();
	long tables = 0;
	long long rows = 0;
	int rc, r, pr, tr = EXIT_FAIL;

	dir[0] = dump[0] = 0;
	sigaction(SIGPIPE, &ign, &old_pipe); /* pg_restore gone: EPIPE, and its status says why */
	if ((rc = conn_parse(lo->url, &c)) != 0)
		goto out;
	snprintf(pg_restore, sizeof(pg_restore), "%s%s%s", lo->pg_bin ? lo->pg_bin : "", lo->pg_bin ? "/" : "",
		 "pg_restore");
	if (lo->pg_bin && access(pg_restore, X_OK) < 0) {
		fprintf(stderr, "bascule intake restore: --pg-bin %s: no executable pg_restore there (%s): name the "
				"directory of PostgreSQL's programs, e.g. /usr/lib/postgresql/15/bin\n", lo->pg_bin,
			strerror(errno));
		rc = EXIT_USAGE;
		goto out;
	}
	/* the key opens in a thread from now on: the checks below, the chain's
	 * and the database's creation run beside its Argon2id */
	q.key = NULL;
	if ((r = intake_key_begin(q.keyfile, q.pfile, &q.key)) < 0) {
		rc = cmd_fail("intake restore", r);
		goto out;
	}
	/* before the rebuild (minutes for a long chain): can the database be loaded? */
	maint = strcmp(c.dbname, "postgres") ? "postgres" : "template1";
	rc = EXIT_FAIL;
	if (!(st.adm = conn_open(&c, maint)))
		goto out;
	{
		const char *p[1] = { c.dbname };
		long n = sql_long(st.adm, "SELECT count(*) FROM pg_database WHERE datname = $1", 1, p);
		if (n < 0)
			goto out;
		st.exists = n > 0;
	}
	if (st.exists) {
		long n;
		if (!(pg = conn_open(&c, NULL)) || (n = sql_long(pg, COUNT_RELATIONS, 0, NULL)) < 0)
			goto out;
		PQfinish(pg);
		pg = NULL;
		if (n > 0 && !lo->replace) {
			fprintf(stderr, "bascule intake restore: --load: database %s exists and is not empty (%ld "
					"relations): nothing loaded (--replace drops and recreates it)\n", c.dbname, n);
			goto out;
		}
	}
	snprintf(jobs, sizeof(jobs), "%u", lo->jobs);
	if (!(ci = conninfo_nopass(&c)) || (c.password && asprintf(&penv, "PGPASSWORD=%s", c.password) < 0)) {
		penv = NULL;
		fprintf(stderr, "bascule intake restore: --load: out of memory\n");
		goto out;
	}
	/* the scratch copy of the night, in a private directory, removed at the end */
	snprintf(dir, sizeof(dir), "%s/bascule-load-XXXXXX", lo->tmpdir ? lo->tmpdir : getenv("TMPDIR") ?: "/var/tmp");
	if (!mkdtemp(dir)) {
		fprintf(stderr, "bascule intake restore: --load: cannot create %s: %s (--tmp DIR chooses where the "
				"rebuilt dump is kept while it loads)\n", dir, strerror(errno));
		dir[0] = 0;
		goto out;
	}
	snprintf(dump, sizeof(dump), "%s/night.dump", dir);
	if ((st.copy_fd = open(dump, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		fprintf(stderr, "bascule intake restore: --load: cannot create %s: %s\n", dump, strerror(errno));
		dump[0] = 0;
		goto out;
	}
	{
		/* the client's roles are not the operator's: unless --owners, the
		 * connecting role owns everything and no GRANT names a missing role */
		const char *own[] = { "--no-owner", "--no-privileges" };
		const char *argv[] = { pg_restore, "--exit-on-error", "--no-password", "--section=pre-data",
				       "--section=data", "-d", ci, lo->owners ? NULL : own[0], own[1], NULL };
		const char *post[] = { pg_restore, "--exit-on-error", "--no-password", "--section=post-data", "--jobs",
				       jobs, "-d", ci, lo->owners ? dump : own[0], lo->owners ? NULL : own[1], dump, NULL };
		const char *env[] = { penv, NULL };
		struct subproc_result res = { 0 };

		st.job.argv = argv;
		st.job.env = penv ? env : NULL;
		q.to = dump; /* the scratch files' names: DUMP.restoring-N */
		q.prepare = stream_prepare;
		q.start = stream_start;
		q.out = stream_out;
		q.ctx = &st;
		if ((r = stream_spawn(&st)) < 0) {
			fprintf(stderr, "bascule intake restore: --load: %s\n", err_msg(r));
			goto out;
		}
		r = intake_rebuild(&q, &got);
		q.key = NULL; /* ended by intake_rebuild */
		/* a rebuild that failed cut pg_restore's input short: its error
		 * comes first (5 for a damaged night); a pg_restore that failed
		 * on its own did not stop the rebuild (stream_out goes on) */
		pr = stream_end(&st, r < 0 && !st.sent);
		if (r < 0) {
			rc = st.failed ? EXIT_FAIL : cmd_fail("intake restore", r);
			if (st.sent || (st.created && !st.failed))
				fprintf(stderr, "bascule intake restore: --load: %s\n", st.created ? "the database is dropped"
					: "the database holds what was loaded before the failure: empty it before loading again");
			goto out;
		}
		if (pr != 0) {
			fprintf(stderr, "bascule intake restore: --load: the night was not loaded into %s%s\n", c.dbname,
				st.created ? " (the database is dropped)" : "");
			goto out;
		}
		/* the dump's table of contents, for the checks, is read beside it */
		if ((r = pg_job_start(&toc)) < 0) {
			fprintf(stderr, "bascule intake restore: --load: %s\n", err_msg(r));
			goto out;
		}
		rc = run_pg(post, st.job.env, 0, &res);
		tr = pg_job_wait(&toc, rc != 0);
		if (rc != 0) {
			fprintf(stderr, "bascule intake restore: --load: the indexes and constraints of night %s were not "
					"made in %s%s\n", got.night, c.dbname, st.created ? " (the database is dropped)" : "");
			goto out;
		}
		subproc_result_free(&res);
	}
	rc = EXIT_FAIL;
	if (tr != 0 || !(pg = conn_open(&c, NULL)) || check_tables(pg, toc.res.output, &tables, &rows) != 0) {
		fprintf(stderr, "bascule intake restore: --load: the loaded database %s fails its checks (left as "
				"it is, to look at)\n", c.dbname);
		st.created = false;
		goto out;
	}
	st.created = false; /* loaded and checked: kept */
	rc = EXIT_OK;
	printf("loaded %s into %s: %ld tables, %lld rows, %.1f s\n", got.night, c.dbname, tables, rows,
	       (double)(clock_mono_usec() - t0) / 1e6);
out:
	if (q.key) {
		uint8_t sk[CLIENT_BOX_SK];
		(void)intake_key_end(q.key, sk); /* a failure before the rebuild: the key is not needed */
		sodium_memzero(sk, sizeof(sk));
	}
	PQfinish(pg);
	subproc_result_free(&toc.res);
	stream_end(&st, true);
	if (st.created && st.adm)
		(void)sql_ident(st.adm, "DROP DATABASE IF EXISTS ", c.dbname, "");
	PQfinish(st.adm);
	if (st.copy_fd >= 0)
		close(st.copy_fd);
	if (dump[0])
		unlink(dump);
	if (dir[0])
		rmdir(dir);
	free(ci);
	if (penv) {
		explicit_bzero(penv, strlen(penv));
		free(penv);
	}
	PQconninfoFree(c.o);
	sigaction(SIGPIPE, &old_pipe, NULL);
	return rc;
}
