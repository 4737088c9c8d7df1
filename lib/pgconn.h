/* pgconn.h - a libpq connection to a PostgreSQL primary in physical
 * replication mode (replication=true, as pg_receivewal and pg_basebackup
 * open it), non-blocking, and what its errors mean: each failure is filed
 * under one enum pgp_error with a sentence naming the fix. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#define PGCONN_MAX_PATHS 16
#define PGCONN_DEFAULT_SOCKET_DIR "/var/run/postgresql" /* Debian's libpq default */

/* What a conninfo makes libpq touch, for the sandbox: the Unix socket
 * directories (host=/...), the files it names (passfile, sslrootcert,
 * sslcert, sslkey, sslcrl, sslcrldir, service file), and whether it
 * connects over TCP and to which ports. */
struct pgconn_needs {
	char *dirs[PGCONN_MAX_PATHS];
	size_t n_dirs;
	char *files[PGCONN_MAX_PATHS];
	size_t n_files;
	uint16_t ports[PGCONN_MAX_PATHS];
	size_t n_ports;
	bool tcp;
};

/* Parse CONNINFO (key=value pairs or a postgresql:// URI) without
 * connecting, with the environment's defaults (PGHOST, PGPORT, PGPASSFILE)
 * and HOME, the home directory of the user that will connect (for
 * ~/.pgpass and ~/.postgresql).  -EINVAL with libpq's sentence when it does
 * not parse; *RET filled (free with pgconn_needs_free) on success. */
int pgconn_inspect(const char *conninfo, const char *home, struct pgconn_needs *ret);
void pgconn_needs_free(struct pgconn_needs *n);

/* Start a non-blocking physical replication connection (PQconnectStartParams
 * with replication=true; APPNAME, when not NULL, as application_name, so
 * that synchronous_standby_names can name this client).  NULL only when
 * libpq cannot allocate; drive it with PQconnectPoll. */
PGconn *pgconn_start(const char *conninfo, const char *appname);

/* The enum pgp_error a failed connection's message means (libpq and server
 * messages in English: lc_messages = C or en on the server). */
uint32_t pgconn_classify_message(const char *msg);
/* The same for a failed command's result: its SQLSTATE first, then its message. */
uint32_t pgconn_classify_result(const PGresult *res);
/* What to do about CODE, one sentence; SLOT names the slot in the advice
 * (NULL: "the slot"). */
const char *pgconn_fix(uint32_t code, const char *slot, char *buf, size_t len);

/* What CONNINFO connects to, for messages, never its password: its
 * host (or socket directory), port, dbname and user as given, e.g.
 * "host=/run/postgresql port=5433 dbname=shop user=drill" (an option not
 * given is left out; "(libpq defaults)" when none is).  -EINVAL with
 * libpq's sentence (err_set) when it does not parse, BUF untouched.
 * *RET_PASSWORD (may be NULL) tells whether it holds a password. */
int pgconn_describe(const char *conninfo, char *buf, size_t len, bool *ret_password);
