/* intake_load.c - bascule intake restore --load URL: rebuild a night (as
 * --to does, verified against the signed digest of the original) into a
 * private scratch directory, create the database URL names (or refuse a
 * non-empty one unless --replace), run `pg_restore --exit-on-error --jobs N`
 * into it and check that every TABLE DATA entry of the dump's table of
 * contents is a table of the loaded database (docs/hybrid.md, "Recovery").
 *
 * The password of URL is never on a command line nor in a message: the
 * connections are opened from the parsed options, and pg_restore gets the
 * options without the password in -d and the password in PGPASSWORD. */
#include "clock.h"
#include "cmd.h"
#include "err.h"
#include "intake_tool.h"
#include "subproc.h"
#include <libpq-fe.h>
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

/* pg_restore ARGV: 0, or EXIT_FAIL after printing its status and what it said. */
static int run_pg(const char *const *argv, const char *const *env, struct subproc_result *res)
{
	struct subproc_opts o = { .env = env, .output_max = SUBPROC_OUTPUT_LIMIT };
	int r = subproc_run(argv, &o, res);

	if (r < 0) {
		fprintf(stderr, "bascule intake restore: --load: %s\n", err_msg(r));
		return EXIT_FAIL;
	}
	if (res->exit_status != 0) {
		if (res->exit_status < 0)
			fprintf(stderr, "bascule intake restore: --load: %s was killed by signal %d:\n%s\n",
				argv[0], res->term_signal, subproc_said(res));
		else
			fprintf(stderr, "bascule intake restore: --load: %s exited %d:\n%s\n", argv[0],
				res->exit_status, subproc_said(res));
		subproc_result_free(res);
		return EXIT_FAIL;
	}
	return 0;
}

/* Every TABLE DATA entry of the dump's TOC (pg_restore -l) is a table of
 * PG: *TABLES and *ROWS, or EXIT_FAIL after naming what is missing. */
static int check_tables(PGconn *pg, const char *pg_restore, const char *dump, long *tables, long long *rows)
{
	const char *argv[] = { pg_restore, "-l", dump, NULL };
	struct subproc_result res = { 0 };
	int r = run_pg(argv, NULL, &res);

	*tables = 0;
	*rows = 0;
	if (r)
		return r;
	for (char *line = res.output, *next; line && *line; line = next) {
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
	subproc_result_free(&res);
	return r;
}

int intake_load(const struct intake_rebuild_req *q0, const struct intake_load_opts *lo)
{
	struct intake_rebuild_req q = *q0;
	struct conn c;
	PGconn *adm = NULL, *pg = NULL;
	const char *maint;
	char dir[4096], dump[4200], jobs[16], *ci = NULL, *penv = NULL, pg_restore[4200];
	struct intake_rebuilt got;
	bool exists = false, created = false;
	uint64_t t0 = clock_mono_usec();
	long tables = 0;
	long long rows = 0;
	int rc, r;

	dir[0] = dump[0] = 0;
	if ((rc = conn_parse(lo->url, &c)) != 0)
		goto out;
	snprintf(pg_restore, sizeof(pg_restore), "%s%s%s", lo->pg_bin ? lo->pg_bin : "", lo->pg_bin ? "/" : "",
		 "pg_restore");
	/* before the rebuild (minutes for a long chain): can the database be loaded? */
	maint = strcmp(c.dbname, "postgres") ? "postgres" : "template1";
	rc = EXIT_FAIL;
	if (!(adm = conn_open(&c, maint)))
		goto out;
	{
		const char *p[1] = { c.dbname };
		long n = sql_long(adm, "SELECT count(*) FROM pg_database WHERE datname = $1", 1, p);
		if (n < 0)
			goto out;
		exists = n > 0;
	}
	if (exists) {
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
	/* the rebuilt dump, in a private directory, removed at the end */
	snprintf(dir, sizeof(dir), "%s/bascule-load-XXXXXX", lo->tmpdir ? lo->tmpdir : getenv("TMPDIR") ?: "/var/tmp");
	if (!mkdtemp(dir)) {
		fprintf(stderr, "bascule intake restore: --load: cannot create %s: %s (--tmp DIR chooses where the "
				"rebuilt dump is kept while it loads)\n", dir, strerror(errno));
		dir[0] = 0;
		goto out;
	}
	snprintf(dump, sizeof(dump), "%s/night.dump", dir);
	q.to = dump;
	q.scratch = true;
	if ((r = intake_rebuild(&q, &got)) < 0) {
		rc = cmd_fail("intake restore", r);
		dump[0] = 0; /* not created */
		goto out;
	}
	/* the database: new, or dropped and created again with --replace */
	if (exists && lo->replace && sql_ident(adm, "DROP DATABASE ", c.dbname, "") < 0)
		goto out;
	if (!exists || lo->replace) {
		if (sql_ident(adm, "CREATE DATABASE ", c.dbname, " TEMPLATE template0") < 0)
			goto out;
		created = true;
	} /* else an empty database of the operator's: loaded into, never dropped */
	snprintf(jobs, sizeof(jobs), "%u", lo->jobs);
	if (!(ci = conninfo_nopass(&c)) || (c.password && asprintf(&penv, "PGPASSWORD=%s", c.password) < 0)) {
		penv = NULL;
		fprintf(stderr, "bascule intake restore: --load: out of memory\n");
		goto out;
	}
	{
		/* the client's roles are not the operator's: unless --owners, the
		 * connecting role owns everything and no GRANT names a missing role */
		const char *argv[] = { pg_restore, "--exit-on-error", "--no-password", "--jobs", jobs, "-d", ci,
				       lo->owners ? dump : "--no-owner", lo->owners ? NULL : "--no-privileges", dump, NULL };
		const char *env[] = { penv, NULL };
		struct subproc_result res = { 0 };
		if ((rc = run_pg(argv, penv ? env : NULL, &res)) != 0) {
			fprintf(stderr, "bascule intake restore: --load: night %s was not loaded into %s%s\n",
				got.night, c.dbname, created ? " (the database is dropped)" : "");
			rc = EXIT_FAIL;
			goto out;
		}
		subproc_result_free(&res);
	}
	rc = EXIT_FAIL;
	if (!(pg = conn_open(&c, NULL)) || check_tables(pg, pg_restore, dump, &tables, &rows) != 0) {
		fprintf(stderr, "bascule intake restore: --load: the loaded database %s fails its checks (left as "
				"it is, to look at)\n", c.dbname);
		created = false;
		goto out;
	}
	created = false; /* loaded and checked: kept */
	rc = EXIT_OK;
	printf("loaded %s into %s: %ld tables, %lld rows, %.1f s\n", got.night, c.dbname, tables, rows,
	       (double)(clock_mono_usec() - t0) / 1e6);
out:
	PQfinish(pg);
	if (created && adm)
		(void)sql_ident(adm, "DROP DATABASE IF EXISTS ", c.dbname, "");
	PQfinish(adm);
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
	return rc;
}
