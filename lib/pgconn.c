/* pgconn.c - libpq replication connections and what their errors mean. */
#include "pgconn.h"
#include "err.h"
#include "pgpipe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add(char **v, size_t *n, const char *s, size_t len)
{
	char *c;

	if (*n >= PGCONN_MAX_PATHS || !len)
		return 0; /* more than libpq ever names: the rest stay forbidden */
	if (!(c = strndup(s, len)))
		return -ENOMEM;
	v[(*n)++] = c;
	return 0;
}

void pgconn_needs_free(struct pgconn_needs *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n_dirs; i++)
		free(n->dirs[i]);
	for (size_t i = 0; i < n->n_files; i++)
		free(n->files[i]);
	*n = (struct pgconn_needs){ 0 };
}

static const char *opt(const PQconninfoOption *o, const char *key)
{
	for (; o && o->keyword; o++)
		if (!strcmp(o->keyword, key))
			return o->val && o->val[0] ? o->val : NULL;
	return NULL;
}

/* PQconninfoParse, its message (without libpq's newline) as the error. */
static int parse(const char *conninfo, PQconninfoOption **ret)
{
	char *errmsg = NULL;
	size_t l;
	int r;

	if ((*ret = PQconninfoParse(conninfo, &errmsg)))
		return 0;
	l = errmsg ? strlen(errmsg) : 0;
	if (l && errmsg[l - 1] == '\n')
		errmsg[l - 1] = 0;
	r = err_set(EINVAL, "the conninfo does not parse: %s", errmsg ? errmsg : "out of memory");
	PQfreemem(errmsg);
	return r;
}

int pgconn_inspect(const char *conninfo, const char *home, struct pgconn_needs *ret)
{
	static const char *const file_keys[] = { "passfile", "sslrootcert", "sslcert", "sslkey", "sslcrl",
						 "sslcrldir" };
	struct pgconn_needs n = { 0 };
	PQconninfoOption *o;
	const char *hosts, *ports, *v;
	char path[4096];
	int r = 0;

	if ((r = parse(conninfo, &o)) < 0)
		return r;
	hosts = opt(o, "host") ?: opt(o, "hostaddr") ?: getenv("PGHOST") ?: PGCONN_DEFAULT_SOCKET_DIR;
	for (const char *h = hosts; r == 0; ) {
		size_t len = strcspn(h, ",");
		if (len == 0 || h[0] == '/')
			r = add(n.dirs, &n.n_dirs, len ? h : PGCONN_DEFAULT_SOCKET_DIR,
				len ? len : strlen(PGCONN_DEFAULT_SOCKET_DIR));
		else
			n.tcp = true;
		if (!h[len])
			break;
		h += len + 1;
	}
	ports = opt(o, "port") ?: getenv("PGPORT") ?: "5432";
	for (const char *p = ports; r == 0 && n.tcp; ) {
		char *end;
		long port = strtol(p, &end, 10);
		if (end == p)
			port = 5432;
		if (port > 0 && port < 65536 && n.n_ports < PGCONN_MAX_PATHS)
			n.ports[n.n_ports++] = (uint16_t)port;
		p += strcspn(p, ",");
		if (!*p++)
			break;
	}
	for (size_t i = 0; r == 0 && i < sizeof(file_keys) / sizeof(file_keys[0]); i++)
		if ((v = opt(o, file_keys[i])))
			r = add(n.files, &n.n_files, v, strlen(v));
	if (r == 0 && !opt(o, "passfile") && (v = getenv("PGPASSFILE")))
		r = add(n.files, &n.n_files, v, strlen(v));
	if (r == 0 && (v = getenv("PGSERVICEFILE")))
		r = add(n.files, &n.n_files, v, strlen(v));
	if (r == 0 && home && home[0] == '/') {
		/* libpq's defaults under the connecting user's home. */
		snprintf(path, sizeof(path), "%s/.pgpass", home);
		if (!opt(o, "passfile") && !getenv("PGPASSFILE"))
			r = add(n.files, &n.n_files, path, strlen(path));
		snprintf(path, sizeof(path), "%s/.pg_service.conf", home);
		if (r == 0)
			r = add(n.files, &n.n_files, path, strlen(path));
		snprintf(path, sizeof(path), "%s/.postgresql", home);
		if (r == 0)
			r = add(n.dirs, &n.n_dirs, path, strlen(path));
	}
	PQconninfoFree(o);
	if (r < 0) {
		pgconn_needs_free(&n);
		return r;
	}
	*ret = n;
	return 0;
}

PGconn *pgconn_start(const char *conninfo, const char *appname)
{
	const char *keys[5], *vals[5];
	int i = 0;

	/* As pg_basebackup's GetConnection: the conninfo expanded from dbname,
	 * then what replication needs, which the conninfo cannot override. */
	keys[i] = "dbname", vals[i++] = conninfo;
	keys[i] = "replication", vals[i++] = "true";
	if (appname)
		keys[i] = "application_name", vals[i++] = appname;
	else
		keys[i] = "fallback_application_name", vals[i++] = "bascule";
	keys[i] = NULL, vals[i] = NULL;
	return PQconnectStartParams(keys, vals, 1);
}

uint32_t pgconn_classify_message(const char *m)
{
	if (!m)
		return PGE_SERVER;
	if (strstr(m, "no pg_hba.conf entry"))
		return PGE_HBA;
	if (strstr(m, "password authentication failed") || strstr(m, "no password supplied") ||
	    strstr(m, "authentication failed for user") || (strstr(m, "role \"") && strstr(m, "does not exist")))
		return PGE_AUTH;
	if (strstr(m, "must be superuser or replication role") || strstr(m, "permission denied to start WAL sender") ||
	    strstr(m, "must have the REPLICATION attribute"))
		return PGE_PRIVILEGE;
	if (strstr(m, "exceeds max_wal_senders (currently 0)"))
		return PGE_WAL_LEVEL;
	if (strstr(m, "exceeds max_wal_senders") || strstr(m, "too many clients already") ||
	    strstr(m, "remaining connection slots are reserved"))
		return PGE_SENDERS;
	if (strstr(m, "is active for PID"))
		return PGE_SLOT_ACTIVE;
	if (strstr(m, "has already been removed") || strstr(m, "can no longer get changes from replication slot"))
		return PGE_WAL_LOST;
	if (strstr(m, "Connection refused") || strstr(m, "No such file or directory") ||
	    strstr(m, "could not translate host name") || strstr(m, "timeout expired") ||
	    strstr(m, "Network is unreachable") || strstr(m, "No route to host") ||
	    strstr(m, "the database system is starting up") || strstr(m, "the database system is shutting down") ||
	    strstr(m, "the database system is in recovery mode") || strstr(m, "Connection timed out") ||
	    strstr(m, "could not connect to server"))
		return PGE_UNREACHABLE;
	if (strstr(m, "invalid connection option") || strstr(m, "missing \"=\"") ||
	    strstr(m, "invalid URI") || strstr(m, "unterminated quoted string") || strstr(m, "invalid sslmode"))
		return PGE_CONNINFO;
	if (strstr(m, "server closed the connection") || strstr(m, "could not receive data") ||
	    strstr(m, "SSL SYSCALL error") || strstr(m, "could not send data"))
		return PGE_LOST;
	return PGE_SERVER;
}

uint32_t pgconn_classify_result(const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorMessage(res) : NULL;

	if (state) {
		if (!strcmp(state, "55006"))
			return PGE_SLOT_ACTIVE;      /* object_in_use */
		if (!strcmp(state, "58P01"))
			return PGE_WAL_LOST;         /* undefined_file: WAL segment removed */
		if (!strcmp(state, "42501"))
			return PGE_PRIVILEGE;        /* insufficient_privilege */
		if (!strcmp(state, "53300"))
			return strstr(msg ?: "", "(currently 0)") ? PGE_WAL_LEVEL : PGE_SENDERS;
		if (!strcmp(state, "28P01") || !strcmp(state, "28000"))
			return strstr(msg ?: "", "pg_hba.conf") ? PGE_HBA : PGE_AUTH;
	}
	return pgconn_classify_message(msg);
}

const char *pgconn_fix(uint32_t code, const char *slot, char *buf, size_t len)
{
	const char *s = slot ? slot : "SLOT";

	switch (code) {
	case PGE_CONNINFO:
		snprintf(buf, len, "write the conninfo in libpq's syntax, e.g. \"host=/var/run/postgresql port=5432 user=bascule\"");
		break;
	case PGE_UNREACHABLE:
		snprintf(buf, len, "check host= and port= in the conninfo, and that PostgreSQL runs and listens there "
			 "(listen_addresses, port, unix_socket_directories)");
		break;
	case PGE_AUTH:
		snprintf(buf, len, "check user= and its password (passfile= or PGPASSWORD); the role must exist: "
			 "CREATE ROLE bascule LOGIN REPLICATION PASSWORD '...'");
		break;
	case PGE_HBA:
		snprintf(buf, len, "add a replication line to the primary's pg_hba.conf, e.g. "
			 "\"host replication bascule 192.0.2.1/32 scram-sha-256\" or \"local replication bascule "
			 "scram-sha-256\", then SELECT pg_reload_conf()");
		break;
	case PGE_PRIVILEGE:
		snprintf(buf, len, "give the role the REPLICATION attribute on the primary: ALTER ROLE bascule REPLICATION");
		break;
	case PGE_WAL_LEVEL:
		snprintf(buf, len, "set wal_level = replica and max_wal_senders = 10 in the primary's postgresql.conf "
			 "and restart PostgreSQL");
		break;
	case PGE_SENDERS:
		snprintf(buf, len, "every WAL sender is taken: raise max_wal_senders on the primary (restart), or "
			 "stop a client listed by SELECT pid, application_name FROM pg_stat_replication");
		break;
	case PGE_SLOT_ACTIVE:
		snprintf(buf, len, "another process streams from slot %s: stop it (SELECT active_pid FROM "
			 "pg_replication_slots WHERE slot_name = '%s'), or give this source a slot of its own", s, s);
		break;
	case PGE_WAL_LOST:
		snprintf(buf, len, "the WAL slot %s kept was removed (wal_status lost: max_slot_wal_keep_size "
			 "exceeded): take a new base backup, and drop the slot (SELECT pg_drop_replication_slot('%s')) "
			 "so that it is created again", s, s);
		break;
	case PGE_VERSION:
		snprintf(buf, len, "use PostgreSQL 15 or newer on the primary");
		break;
	default:
		buf[0] = 0;
		break;
	}
	return buf;
}

int pgconn_describe(const char *conninfo, char *buf, size_t len, bool *ret_password)
{
	static const char *const shown[] = { "service", "host", "hostaddr", "port", "dbname", "user" };
	PQconninfoOption *o;
	char out[512] = "";
	size_t n = 0;
	int r;

	if ((r = parse(conninfo, &o)) < 0)
		return r;
	for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
		const char *v = opt(o, shown[i]);
		if (v && n < sizeof(out))
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s=%s", n ? " " : "", shown[i], v);
	}
	if (ret_password)
		*ret_password = opt(o, "password") != NULL;
	PQconninfoFree(o);
	snprintf(buf, len, "%s", n ? out : "(libpq defaults)");
	return 0;
}
