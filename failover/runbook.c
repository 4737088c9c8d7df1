/* runbook.c - runbook tables, cross-checks and boot waves. */
#include "runbook.h"
#include "err.h"
#include "fsutil.h"
#include "intake.h"
#include "pgconn.h"
#include "ssh.h"
#include <errno.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct cfg_key host_keys[] = {
	{ K("name", CT_NAME, struct rb_host, name), .required = true, .note = "host name used below" },
	{ K("url", CT_STR, struct rb_host, url), .required = true,
	  .note = "local (this machine) or ssh://user@host[:port] (libssh2, strict host keys)" },
	{ K("identity", CT_SECRET, struct rb_host, identity), .note = "SSH private key (mode 0600)" },
	{ K("known_hosts", CT_PATH, struct rb_host, known_hosts),
	  .note = "known_hosts holding the host's key (bascule trust-host)" },
	{ 0 }
};
static const struct cfg_table host_table = { "host", sizeof(struct rb_host), host_keys };

static const struct cfg_key check_keys[] = {
	{ K("name", CT_NAME, struct rb_check, name), .required = true, .note = "check name" },
	{ K("tcp", CT_STR, struct rb_check, tcp), .note = "HOST:PORT that must accept a connection" },
	{ K("http", CT_STR, struct rb_check, http), .note = "http(s) URL fetched with libcurl" },
	{ K("command", CT_STR, struct rb_check, command), .note = "shell command that must exit 0" },
	{ K("sql", CT_STR, struct rb_check, sql),
	  .note = "libpq conninfo of a PostgreSQL database, queried from the drill's machine (no password: "
		  "use a passfile)" },
	{ K("test_sql", CT_STR, struct rb_check, test_sql),
	  .note = "sql: the conninfo a test drill queries instead (the database's clone on its test_port); "
		  "default: sql" },
	{ K("failback_sql", CT_STR, struct rb_check, failback_sql),
	  .note = "sql: the conninfo a failback drill queries instead (the database back at home); default: sql" },
	{ K("query", CT_STR, struct rb_check, query), .note = "sql: the query to run (required with sql)" },
	{ K("expect", CT_STR, struct rb_check, expect),
	  .note = "sql: the first value of the first row wanted, as psql -At prints it (t, 42; NULL for a "
		  "null); without it the query only has to succeed" },
	{ K("host", CT_NAME, struct rb_check, host), .note = "where command runs (default: secondary)" },
	{ K("expect_status", CT_UINT, struct rb_check, expect_status), .def = "200", .min = 100,
	  .max = 599, .note = "http: the status wanted" },
	{ K("expect_body", CT_STR, struct rb_check, expect_body),
	  .note = "http: text the body must contain" },
	{ K("ca_file", CT_PATH, struct rb_check, ca_file), .note = "https: CA bundle to trust" },
	{ K("timeout", CT_DURATION, struct rb_check, timeout), .def = "5s", .min = 100000,
	  .max = 3600000000ULL, .note = "limit of one attempt" },
	{ K("retries", CT_UINT, struct rb_check, retries), .def = "30", .max = 100000,
	  .note = "attempts after the first before the check fails" },
	{ K("interval", CT_DURATION, struct rb_check, interval), .def = "2s", .min = 10000,
	  .max = 3600000000ULL, .note = "pause between attempts" },
	{ 0 }
};
static const struct cfg_table check_table = { "check", sizeof(struct rb_check), check_keys };

static const struct cfg_key service_keys[] = {
	{ K("name", CT_NAME, struct rb_service, name), .required = true, .note = "service (VM) name" },
	{ K("group", CT_NAME, struct rb_service, group),
	  .note = "Bascule group holding its disks (synced, promoted, cloned)" },
	{ K("after", CT_STRLIST, struct rb_service, after),
	  .note = "services that must be started and healthy first, e.g. [db]" },
	{ K("stop", CT_STR, struct rb_service, stop), .note = "primary: stop it cleanly (waits until stopped)" },
	{ K("force_stop", CT_STR, struct rb_service, force_stop),
	  .note = "primary: run when stop exceeds stop_timeout" },
	{ K("stop_timeout", CT_DURATION, struct rb_service, stop_timeout), .def = "2m",
	  .min = 1000000, .max = 86400000000ULL, .note = "limit of stop before force_stop" },
	{ K("start", CT_STR, struct rb_service, start), .required = true,
	  .note = "secondary: start it on the promoted disks ($BASCULE_DISKS)" },
	{ K("start_timeout", CT_DURATION, struct rb_service, start_timeout), .def = "5m",
	  .min = 1000000, .max = 86400000000ULL, .note = "limit of start" },
	{ K("restart", CT_STR, struct rb_service, restart),
	  .note = "primary: start it again (abort, failback)" },
	{ K("secondary_stop", CT_STR, struct rb_service, secondary_stop),
	  .note = "secondary: stop it (abort, failback)" },
	{ K("test_start", CT_STR, struct rb_service, test_start),
	  .note = "test mode: start it on clones in an isolated network (default: start)" },
	{ K("test_stop", CT_STR, struct rb_service, test_stop),
	  .note = "test mode: stop it (default: secondary_stop)" },
	{ K("disk_dir", CT_PATH, struct rb_service, disk_dir),
	  .note = "secondary: where its promoted disks appear as DIR/SOURCE" },
	{ K("checks", CT_LIST, struct rb_service, checks), .sub = &check_table,
	  .note = "health checks run once it is started" },
	{ 0 }
};
static const struct cfg_table service_table = { "service", sizeof(struct rb_service), service_keys };

static const struct cfg_key database_keys[] = {
	{ K("name", CT_NAME, struct rb_database, name), .required = true, .note = "database name (steps, report)" },
	{ K("source", CT_STR, struct rb_database, source), .required = true,
	  .note = "GROUP/SOURCE: the type: postgres source of basculed protecting it" },
	{ K("host", CT_NAME, struct rb_database, host),
	  .note = "where the primary PostgreSQL runs (default: primary.host)" },
	{ K("data_dir", CT_STR, struct rb_database, data_dir), .required = true,
	  .note = "primary: its data directory (pg_controldata reads the final LSN there)" },
	{ K("pg_bin", CT_STR, struct rb_database, pg_bin), .def = "/usr/lib/postgresql/15/bin",
	  .note = "PostgreSQL's programs (pg_controldata, pg_waldump; pg_ctl on the secondary)" },
	{ K("read_as", CT_STR, struct rb_database, read_as),
	  .note = "primary: command prefix reading data_dir with pg_controldata and pg_waldump, e.g. 'sudo -n "
		  "-u postgres' (default: none: the drill's user there reads it)" },
	{ K("stop", CT_STR, struct rb_database, stop), .required = true,
	  .note = "primary: shut it down cleanly, returning once it is down (e.g. pg_ctlcluster 15 main "
		  "stop -m fast)" },
	{ K("stop_timeout", CT_DURATION, struct rb_database, stop_timeout), .def = "5m", .min = 1000000,
	  .max = 86400000000ULL, .note = "limit of stop" },
	{ K("restart", CT_STR, struct rb_database, restart), .note = "primary: start it again (abort)" },
	{ K("start", CT_STR, struct rb_database, start),
	  .note = "secondary: start the promoted database in $BASCULE_PGDATA when promote left it stopped "
		  "(cold standby); default: pg_ctl start as user" },
	{ K("start_timeout", CT_DURATION, struct rb_database, start_timeout), .def = "5m", .min = 1000000,
	  .max = 86400000000ULL, .note = "limit of start" },
	{ K("secondary_stop", CT_STR, struct rb_database, secondary_stop),
	  .note = "secondary: stop the promoted database (abort); default: pg_ctl stop -m fast as user" },
	{ K("user", CT_NAME, struct rb_database, user),
	  .note = "secondary: the user PostgreSQL runs as (promote --pg-user; default: promote's, the replica "
		  "directory's owner; the default start runs pg_ctl as the data directory's owner)" },
	{ K("pg_conf", CT_STR, struct rb_database, pg_conf),
	  .note = "secondary: settings file for the promoted database (promote --pg-conf; default "
		  "/etc/bascule/postgresql.conf there)" },
	{ K("test_port", CT_UINT, struct rb_database, test_port), .def = "0", .max = 65535,
	  .note = "test mode: the port the database's clone listens on (apart from the standby and the "
		  "primary; pg_ctl -o '-c port=N -c archive_mode=off')" },
	{ K("test_start", CT_STR, struct rb_database, test_start),
	  .note = "test mode: start the clone in $BASCULE_PGDATA yourself (default: pg_ctl start on "
		  "test_port as the clone's owner)" },
	{ K("test_stop", CT_STR, struct rb_database, test_stop),
	  .note = "test mode: stop the clone (default: pg_ctl stop -m fast)" },
	{ K("failback_conninfo", CT_STR, struct rb_database, failback_conninfo),
	  .note = "failback: libpq conninfo of the promoted database as the old primary's host reaches it "
		  "(pg_rewind's source, then the standby's primary_conninfo; no password: a passfile)" },
	{ K("failback_promote", CT_STR, struct rb_database, failback_promote),
	  .note = "failback: promote the old primary once it holds the final LSN (default: pg_ctl promote -w "
		  "through read_as)" },
	{ 0 }
};
static const struct cfg_table database_table = { "database", sizeof(struct rb_database), database_keys };

static const struct cfg_key switch_keys[] = {
	{ K("name", CT_NAME, struct rb_switch, name), .required = true, .note = "switch name" },
	{ K("host", CT_NAME, struct rb_switch, host), .note = "where it runs (default: secondary)" },
	{ K("command", CT_STR, struct rb_switch, command), .required = true,
	  .note = "move traffic to the secondary (DNS, VIP)" },
	{ K("back", CT_STR, struct rb_switch, back), .note = "move traffic back (abort, failback)" },
	{ K("timeout", CT_DURATION, struct rb_switch, timeout), .def = "1m", .min = 1000000,
	  .max = 86400000000ULL, .note = "limit of the command" },
	{ 0 }
};
static const struct cfg_table switch_table = { "switch", sizeof(struct rb_switch), switch_keys };

static const struct cfg_key primary_keys[] = {
	{ K("host", CT_NAME, struct rb_site, host), .required = true, .note = "the primary's host" },
	{ K("bascule", CT_STR, struct rb_site, bascule), .def = "bascule",
	  .note = "the bascule command there, e.g. 'sudo -n bascule' (run as sh -c 'CMD \"$@\"' with "
		  "the drill's arguments)" },
	{ K("control_socket", CT_PATH, struct rb_site, control_socket),
	  .def = "/run/bascule/status.sock", .note = "basculed's status socket there" },
	{ K("sync_timeout", CT_DURATION, struct rb_site, sync_timeout), .def = "10m",
	  .min = 1000000, .max = 86400000000ULL, .note = "limit of the final sync" },
	{ 0 }
};
static const struct cfg_table primary_table = { "primary", 0, primary_keys };

static const struct cfg_key secondary_keys[] = {
	{ K("host", CT_NAME, struct rb_site, host), .required = true, .note = "the secondary's host" },
	{ K("bascule", CT_STR, struct rb_site, bascule), .def = "bascule",
	  .note = "the bascule command there, e.g. 'sudo -n bascule' (run as sh -c 'CMD \"$@\"' with "
		  "the drill's arguments)" },
	{ K("replica_root", CT_PATH, struct rb_site, replica_root), .required = true,
	  .note = "the replica directory (bascule recv --root)" },
	{ K("site_key", CT_PATH, struct rb_site, site_key), .def = "/etc/bascule/site.key",
	  .note = "the site key there" },
	{ K("clone_dir", CT_PATH, struct rb_site, clone_dir),
	  .note = "test mode: where clones go (default: REPLICA_ROOT/.drill-clones)" },
	{ 0 }
};
static const struct cfg_table secondary_table = { "secondary", 0, secondary_keys };

static const struct cfg_key objective_keys[] = {
	{ K("rto", CT_DURATION, struct rb_objectives, rto), .required = true, .min = 1000000,
	  .max = 31 * 86400000000ULL, .note = "recovery time objective" },
	{ K("rpo", CT_DURATION, struct rb_objectives, rpo), .def = "0s",
	  .note = "recovery point objective (data loss window)" },
	{ 0 }
};
static const struct cfg_table objective_table = { "objectives", 0, objective_keys };

static const struct cfg_key precheck_keys[] = {
	{ K("max_lag", CT_DURATION, struct rb_prechecks, max_lag), .def = "5m",
	  .note = "every group's lag on each replica target must be under this (0: not checked)" },
	{ K("min_free", CT_SIZE, struct rb_prechecks, min_free), .def = "0",
	  .note = "free space wanted under the replica root (test mode: for clones)" },
	{ K("require_connected", CT_BOOL, struct rb_prechecks, require_connected), .def = "true",
	  .note = "every replica target must be connected (vault targets never block a drill)" },
	{ 0 }
};
static const struct cfg_table precheck_table = { "prechecks", 0, precheck_keys };

static const struct cfg_key failback_keys[] = {
	{ K("start", CT_STR, struct rb_failback, start),
	  .note = "secondary: start the reverse replication (basculed towards the primary)" },
	{ K("stop", CT_STR, struct rb_failback, stop), .note = "secondary: stop it" },
	{ K("control_socket", CT_PATH, struct rb_failback, control_socket),
	  .note = "secondary: the reverse daemon's status socket" },
	{ K("replica_root", CT_PATH, struct rb_failback, replica_root),
	  .note = "primary: where the reverse replication lands" },
	{ K("site_key", CT_PATH, struct rb_failback, site_key), .def = "/etc/bascule/site.key",
	  .note = "primary: the site key there" },
	{ 0 }
};
static const struct cfg_table failback_table = { "failback", 0, failback_keys };

static const struct cfg_key report_keys[] = {
	{ K("dir", CT_PATH, struct rb_report, dir), .def = "/var/lib/bascule/drills",
	  .note = "where reports (JSON, HTML) are written" },
	{ K("signing_key", CT_SECRET, struct rb_report, signing_key),
	  .note = "Ed25519 key signing the report (bascule keygen signing FILE)" },
	{ 0 }
};
static const struct cfg_table report_table = { "report", 0, report_keys };

static const struct cfg_key hybrid_keys[] = {
	{ K("intake", CT_PATH, struct rb_hybrid, intake), .required = true,
	  .note = "the intake directory on the drill's machine (bascule intake add DIR), or the "
		  "operator's intake file of an S3 intake (etc/intake-s3.yaml)" },
	{ K("client", CT_NAME, struct rb_hybrid, client), .required = true,
	  .note = "the client whose nightly dump is restored" },
	{ K("key", CT_SECRET, struct rb_hybrid, key), .required = true,
	  .note = "the client's decryption key (FILE.key of bascule keygen client, mode 0600)" },
	{ K("passphrase_file", CT_SECRET, struct rb_hybrid, passphrase_file), .required = true,
	  .note = "the key's passphrase, first line (mode 0600): the drill runs unattended" },
	{ K("night", CT_STR, struct rb_hybrid, night), .def = "latest",
	  .note = "the night restored: latest (the newest complete one) or YYYY-MM-DD" },
	{ K("load", CT_STR, struct rb_hybrid, load), .required = true,
	  .note = "the database loaded: postgresql://[USER@]HOST[:PORT]/DBNAME or a conninfo (no password: "
		  "use a passfile)" },
	{ K("pg_bin", CT_PATH, struct rb_hybrid, pg_bin), .note = "the directory of pg_restore (default: PATH)" },
	{ K("jobs", CT_UINT, struct rb_hybrid, jobs), .def = "0", .max = 64,
	  .note = "pg_restore --jobs (0: intake restore's default, the CPUs, at most 8)" },
	{ K("replace", CT_BOOL, struct rb_hybrid, replace), .def = "false",
	  .note = "drop and recreate the database if it exists and is not empty (a drill run again)" },
	{ K("host", CT_NAME, struct rb_hybrid, host), .required = true,
	  .note = "where the services start and their command checks run (a host of hosts)" },
	{ K("max_age", CT_DURATION, struct rb_hybrid, max_age), .def = "26h", .min = 1000000,
	  .note = "the newest complete night must be younger (intake check --max-age)" },
	{ K("check_timeout", CT_DURATION, struct rb_hybrid, check_timeout), .def = "10m", .min = 1000000,
	  .max = 86400000000ULL, .note = "limit of the intake check (it reads every object)" },
	{ K("restore_timeout", CT_DURATION, struct rb_hybrid, restore_timeout), .def = "4h", .min = 1000000,
	  .max = 7 * 86400000000ULL, .note = "limit of the restore and load (intake restore --load)" },
	{ 0 }
};
static const struct cfg_table hybrid_table = { "hybrid", 0, hybrid_keys };

static const struct cfg_key top_keys[] = {
	{ K("name", CT_STR, struct runbook, name), .required = true, .note = "what this runbook recovers" },
	{ K("objectives", CT_MAP, struct runbook, objectives), .required = true,
	  .sub = &objective_table, .note = "RTO and RPO to meet" },
	{ K("hosts", CT_LIST, struct runbook, hosts), .required = true, .sub = &host_table,
	  .note = "machines the drill acts on" },
	{ K("primary", CT_MAP, struct runbook, primary), .sub = &primary_table, .if_present = true,
	  .note = "the production site (required, except in a hybrid runbook)" },
	{ K("secondary", CT_MAP, struct runbook, secondary), .sub = &secondary_table, .if_present = true,
	  .note = "the recovery site (required, except in a hybrid runbook)" },
	{ K("hybrid", CT_MAP, struct runbook, hybrid), .sub = &hybrid_table, .if_present = true,
	  .note = "hybrid mode: a client's nightly dump restored from the intake, then the services" },
	{ K("prechecks", CT_MAP, struct runbook, prechecks), .sub = &precheck_table,
	  .note = "conditions checked before anything is touched" },
	{ K("services", CT_LIST, struct runbook, services), .required = true, .sub = &service_table,
	  .note = "the services (VMs), stopped and started in order" },
	{ K("databases", CT_LIST, struct runbook, databases), .sub = &database_table,
	  .note = "PostgreSQL databases: shut down cleanly, acknowledged to their final LSN, promoted" },
	{ K("switch", CT_LIST, struct runbook, switches), .sub = &switch_table,
	  .note = "traffic switch commands, run once every check is green" },
	{ K("failback", CT_MAP, struct runbook, failback), .sub = &failback_table,
	  .note = "failback mode: the reverse replication" },
	{ K("report", CT_MAP, struct runbook, report), .sub = &report_table, .note = "reports" },
	{ K("state_dir", CT_PATH, struct runbook, state_dir), .def = "/var/lib/bascule/drills",
	  .note = "drill journal (resume, abort)" },
	{ K("consistent", CT_BOOL, struct runbook, consistent), .def = "true",
	  .note = "unplanned: promote only point-in-time (consistent) epochs" },
	{ 0 }
};
static const struct cfg_table top_table = { "runbook", sizeof(struct runbook), top_keys };

#define POSERR(rb, pos, ...) rb_err((rb)->file, (pos).line, (pos).col, __VA_ARGS__)

static int rb_err(const char *file, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int rb_err(const char *file, int line, int col, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(EINVAL, "%s:%d:%d: %s", file, line, col, msg);
}

const struct rb_database *runbook_database(const struct runbook *rb, const char *name)
{
	long i = yamltab_find(&rb->databases, sizeof(struct rb_database), name);
	return i < 0 ? NULL : RB_DB(rb, i);
}

const struct rb_host *runbook_host(const struct runbook *rb, const char *name)
{
	long i = yamltab_find(&rb->hosts, sizeof(struct rb_host), name);
	return i < 0 ? NULL : RB_HOST(rb, i);
}

static int need_host(const struct runbook *rb, struct cfg_pos pos, const char *name, const char *what)
{
	if (name && !runbook_host(rb, name))
		return POSERR(rb, pos, "%s names host '%s', which is not in hosts", what, name);
	return 0;
}

/* Waves: a service starts in the wave after the last of its dependencies.
 * Without a cycle the waves settle within N rounds (a chain of N services
 * has N waves); a wave beyond N means a cycle. */
static int compute_waves(struct runbook *rb)
{
	size_t n = rb->services.n;
	bool changed = true;

	for (size_t i = 0; i < n; i++)
		RB_SVC(rb, i)->wave = 1;
	for (size_t round = 0; changed && round <= n; round++) {
		changed = false;
		for (size_t i = 0; i < n; i++) {
			struct rb_service *s = RB_SVC(rb, i);
			for (size_t k = 0; k < s->after.n; k++) {
				long d = yamltab_find(&rb->services, sizeof(*s), ((char **)s->after.items)[k]);
				if (d >= 0 && RB_SVC(rb, d)->wave >= s->wave) {
					s->wave = RB_SVC(rb, d)->wave + 1;
					changed = true;
				}
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		if ((size_t)RB_SVC(rb, i)->wave > n)
			return POSERR(rb, RB_SVC(rb, i)->pos, "service '%s' is part of a dependency "
				      "cycle in 'after'; break the cycle", RB_SVC(rb, i)->name);
	rb->n_waves = 0;
	for (size_t i = 0; i < n; i++)
		if (RB_SVC(rb, i)->wave > rb->n_waves)
			rb->n_waves = RB_SVC(rb, i)->wave;
	return 0;
}

/* A sql check: a conninfo libpq parses, holding no password (the runbook
 * is read by people, its messages go to reports), and a query. */
static int check_sql_keys(const struct runbook *rb, const struct rb_service *s, const struct rb_check *c)
{
	char what[512];
	bool password = false;
	int r;

	if (!c->sql) {
		if (c->test_sql || c->failback_sql)
			return POSERR(rb, c->pos, "check '%s' of service '%s': %s goes with sql (the "
				      "conninfo of the other modes)", c->name, s->name,
				      c->test_sql ? "test_sql" : "failback_sql");
		if (c->query || c->expect)
			return POSERR(rb, c->pos, "check '%s' of service '%s': query and expect go with sql "
				      "(a conninfo)", c->name, s->name);
		return 0;
	}
	if (!c->query)
		return POSERR(rb, c->pos, "check '%s' of service '%s': a sql check needs query (and "
			      "usually expect)", c->name, s->name);
	if (c->host)
		return POSERR(rb, c->pos, "check '%s' of service '%s': host applies to command checks; a "
			      "sql check connects from the machine running the drill (name the database's "
			      "host in the conninfo)", c->name, s->name);
	if ((r = pgconn_describe(c->sql, what, sizeof(what), &password)) < 0)
		return POSERR(rb, c->pos, "check '%s' of service '%s': %s", c->name, s->name, err_msg(r));
	if (!password && c->test_sql && (r = pgconn_describe(c->test_sql, what, sizeof(what), &password)) < 0)
		return POSERR(rb, c->pos, "check '%s' of service '%s': test_sql: %s", c->name, s->name, err_msg(r));
	if (!password && c->failback_sql && (r = pgconn_describe(c->failback_sql, what, sizeof(what), &password)) < 0)
		return POSERR(rb, c->pos, "check '%s' of service '%s': failback_sql: %s", c->name, s->name, err_msg(r));
	if (password)
		return POSERR(rb, c->pos, "check '%s' of service '%s': the conninfo holds a password, which "
			      "the runbook and the messages quoting it would show: put it in a passfile "
			      "(passfile=FILE, mode 0600, or ~/.pgpass) and remove it here", c->name, s->name);
	return 0;
}

/* A database: its source GROUP/SOURCE names a group of the services (the
 * group is synced, paused and promoted with them), once per runbook. */
static int check_database(struct runbook *rb, struct rb_database *db)
{
	const char *slash = strchr(db->source, '/');
	bool used = false;
	int r;

	if (!slash || slash == db->source || !slash[1] || strchr(slash + 1, '/') ||
	    (size_t)(slash - db->source) > NAME_MAX_LEN || strlen(slash + 1) > NAME_MAX_LEN)
		return POSERR(rb, db->pos, "database '%s': source must be GROUP/SOURCE (the group and the "
			      "postgres source of basculed's configuration), got '%s'", db->name, db->source);
	snprintf(db->group, sizeof(db->group), "%.*s", (int)(slash - db->source), db->source);
	snprintf(db->src, sizeof(db->src), "%s", slash + 1);
	if ((r = need_host(rb, db->pos, db->host, "database")) < 0)
		return r;
	for (size_t i = 0; i < rb->services.n; i++)
		used |= RB_SVC(rb, i)->group && !strcmp(RB_SVC(rb, i)->group, db->group);
	if (!used)
		return POSERR(rb, db->pos, "database '%s': group '%s' is not the group of any service: give "
			      "the service using it 'group: %s'", db->name, db->group, db->group);
	for (size_t i = 0; i < rb->databases.n; i++) {
		const struct rb_database *o = RB_DB(rb, i);
		if (o != db && o->group[0] && !strcmp(o->source, db->source))
			return POSERR(rb, db->pos, "database '%s': source %s is already database '%s'",
				      db->name, db->source, o->name);
	}
	if (db->data_dir[0] != '/')
		return POSERR(rb, db->pos, "database '%s': data_dir must be an absolute path on the "
			      "primary, got '%s'", db->name, db->data_dir);
	return 0;
}

bool runbook_is_hybrid(const struct runbook *rb)
{
	return rb->hybrid.intake != NULL;
}

/* A hybrid runbook restores a client's dump (nothing is replicated, so
 * no primary nor secondary is needed, no group, no database promoted);
 * any other names both sites. */
static int check_sites(const struct runbook *rb)
{
	const struct rb_hybrid *h = &rb->hybrid;
	const struct cfg_pos top = { 1, 1 };
	char what[512];
	bool password = false;
	int r;

	if (!runbook_is_hybrid(rb)) {
		if (!rb->primary.host || !rb->secondary.host)
			return POSERR(rb, top, "runbook is missing the required key '%s' (the %s site; only a "
				      "hybrid runbook, with a hybrid section, has none)",
				      rb->primary.host ? "secondary" : "primary",
				      rb->primary.host ? "recovery" : "production");
		return 0;
	}
	if ((r = need_host(rb, top, h->host, "hybrid.host")) < 0)
		return r;
	if (strcmp(h->night, "latest") && !intake_night_ok(h->night))
		return POSERR(rb, top, "hybrid.night must be latest or a night YYYY-MM-DD, got '%s'", h->night);
	if ((r = pgconn_describe(h->load, what, sizeof(what), &password)) < 0)
		return POSERR(rb, top, "hybrid.load: %s", err_msg(r));
	if (password)
		return POSERR(rb, top, "hybrid.load holds a password, which the runbook and the report would "
			      "show: put it in a passfile (passfile=FILE, mode 0600, or ~/.pgpass) and remove it here");
	if (rb->databases.n)
		return POSERR(rb, RB_DB(rb, 0)->pos, "database '%s': a hybrid runbook promotes no replicated "
			      "database (its database is hybrid.load): remove the databases section",
			      RB_DB(rb, 0)->name);
	for (size_t i = 0; i < rb->services.n; i++)
		if (RB_SVC(rb, i)->group)
			return POSERR(rb, RB_SVC(rb, i)->pos, "service '%s': group has no meaning in a hybrid "
				      "runbook (nothing is replicated or promoted): remove it", RB_SVC(rb, i)->name);
	return 0;
}

static int cross_check(struct runbook *rb)
{
	int r;

	if ((r = yamltab_unique(rb->file, &rb->hosts, sizeof(struct rb_host), "host")) < 0 ||
	    (r = yamltab_unique(rb->file, &rb->services, sizeof(struct rb_service), "service")) < 0 ||
	    (r = yamltab_unique(rb->file, &rb->switches, sizeof(struct rb_switch), "switch")) < 0)
		return r;
	for (size_t i = 0; i < rb->hosts.n; i++) {
		struct rb_host *h = RB_HOST(rb, i);
		struct ssh_url u;
		char url[4200];
		if (!strcmp(h->url, "local"))
			continue;
		/* ssh_url_parse wants a path; a host URL has none. */
		if (strncmp(h->url, "ssh://", 6) == 0)
			snprintf(url, sizeof(url), "%s%s", h->url, strchr(h->url + 6, '/') ? "" : "/drill");
		if (strncmp(h->url, "ssh://", 6) != 0 || ssh_url_parse(url, &u) < 0)
			return POSERR(rb, h->pos, "host '%s': url must be 'local' or ssh://user@host[:port], "
				      "got '%s'", h->name, h->url);
		if (!h->identity || !h->known_hosts)
			return POSERR(rb, h->pos, "host '%s': an ssh:// host needs identity (the SSH "
				      "private key) and known_hosts", h->name);
	}
	if ((r = check_sites(rb)) < 0 ||
	    (r = need_host(rb, (struct cfg_pos){ 1, 1 }, rb->primary.host, "primary")) < 0 ||
	    (r = need_host(rb, (struct cfg_pos){ 1, 1 }, rb->secondary.host, "secondary")) < 0)
		return r;
	for (size_t i = 0; i < rb->services.n; i++) {
		struct rb_service *s = RB_SVC(rb, i);
		if ((r = yamltab_unique(rb->file, &s->checks, sizeof(struct rb_check), "check")) < 0)
			return r;
		for (size_t k = 0; k < s->after.n; k++) {
			const char *d = ((char **)s->after.items)[k];
			if (yamltab_find(&rb->services, sizeof(*s), d) < 0)
				return POSERR(rb, s->pos, "service '%s' starts after '%s', which is not a "
					      "service of this runbook", s->name, d);
			if (!strcmp(d, s->name))
				return POSERR(rb, s->pos, "service '%s' cannot start after itself", s->name);
		}
		if (s->force_stop && !s->stop)
			return POSERR(rb, s->pos, "service '%s' has force_stop but no stop", s->name);
		for (size_t k = 0; k < s->checks.n; k++) {
			struct rb_check *c = RB_CHECK(s, k);
			int kinds = !!c->tcp + !!c->http + !!c->command + !!c->sql;
			if (kinds != 1)
				return POSERR(rb, c->pos, "check '%s' of service '%s' must have exactly one "
					      "of tcp, http, command or sql (it has %d)", c->name, s->name, kinds);
			if ((r = check_sql_keys(rb, s, c)) < 0)
				return r;
			if (c->http && strncmp(c->http, "http://", 7) && strncmp(c->http, "https://", 8))
				return POSERR(rb, c->pos, "check '%s': http must be an http:// or https:// "
					      "URL, got '%s'", c->name, c->http);
			if (c->tcp) {
				const char *colon = strrchr(c->tcp, ':');
				char *end;
				long port = colon ? strtol(colon + 1, &end, 10) : 0;
				if (!colon || colon == c->tcp || *end || port < 1 || port > 65535)
					return POSERR(rb, c->pos, "check '%s': tcp must be HOST:PORT, got '%s'",
						      c->name, c->tcp);
			}
			if ((r = need_host(rb, c->pos, c->host, "check")) < 0)
				return r;
		}
	}
	for (size_t i = 0; i < rb->switches.n; i++)
		if ((r = need_host(rb, RB_SW(rb, i)->pos, RB_SW(rb, i)->host, "switch")) < 0)
			return r;
	if ((r = yamltab_unique(rb->file, &rb->databases, sizeof(struct rb_database), "database")) < 0)
		return r;
	for (size_t i = 0; i < rb->databases.n; i++)
		if ((r = check_database(rb, RB_DB(rb, i))) < 0)
			return r;
	if (!rb->secondary.clone_dir && rb->secondary.replica_root) {
		size_t n = strlen(rb->secondary.replica_root) + 32;
		if (!(rb->secondary.clone_dir = malloc(n)))
			return -ENOMEM;
		snprintf(rb->secondary.clone_dir, n, "%s/.drill-clones", rb->secondary.replica_root);
	}
	return compute_waves(rb);
}

int runbook_parse(const char *name, const char *text, size_t len, bool check_files,
		  struct runbook **ret)
{
	struct runbook *rb = calloc(1, sizeof(*rb));
	int r;

	if (!rb)
		return -ENOMEM;
	if (!(rb->file = strdup(name))) {
		free(rb);
		return -ENOMEM;
	}
	crypto_generichash(rb->digest, sizeof(rb->digest), (const uint8_t *)text, len, NULL, 0);
	r = yamltab_parse(name, text, len, check_files, &top_table, rb);
	if (r == 0)
		r = cross_check(rb);
	if (r < 0) {
		runbook_free(rb);
		return r;
	}
	*ret = rb;
	return 0;
}

int runbook_load(const char *path, struct runbook **ret)
{
	char *text = NULL;
	struct stat st;
	size_t len;
	int r;

	/* Its commands run on the sites' hosts, often as root. */
	if (stat(path, &st) == 0 && (st.st_mode & 022))
		return err_set(EPERM, "runbook %s is writable by group or others (mode %04o): anyone "
				      "who can write it can run commands on your hosts; run 'chmod go-w %s'",
			       path, (unsigned)(st.st_mode & 07777), path);

	if ((r = yamltab_read(path, "runbook", &text, &len)) < 0)
		return r;
	r = runbook_parse(path, text, len, true, ret);
	free(text);
	return r;
}

void runbook_free(struct runbook *rb)
{
	if (!rb)
		return;
	yamltab_free(&top_table, rb);
	free(rb->file);
	free(rb);
}

int runbook_check_test(const struct runbook *rb)
{
	for (size_t i = 0; i < rb->databases.n; i++) {
		const struct rb_database *db = RB_DB(rb, i);
		if (!db->test_port && !db->test_start)
			return POSERR(rb, db->pos, "database '%s': a test drill starts a clone of it beside the "
				      "standby and the primary, on a port of its own: give it test_port (e.g. "
				      "test_port: 5440, and the sql checks a test_sql conninfo with that port) or a "
				      "test_start command", db->name);
		if (db->test_port && db->test_port < 1024 && !db->test_start)
			return POSERR(rb, db->pos, "database '%s': test_port %llu is a privileged port, which "
				      "PostgreSQL does not bind as its user: choose one from 1024", db->name,
				      (unsigned long long)db->test_port);
	}
	return 0;
}

int runbook_check_failback(const struct runbook *rb)
{
	for (size_t i = 0; i < rb->databases.n; i++) {
		const struct rb_database *db = RB_DB(rb, i);
		char what[512];
		bool password = false;
		int r;
		if (!db->failback_conninfo)
			return POSERR(rb, db->pos, "database '%s': a failback makes the old primary a standby of the "
				      "promoted database (pg_rewind, then streaming): give it failback_conninfo, how "
				      "the host %s reaches that database (e.g. \"host=SECONDARY port=5432 "
				      "user=postgres dbname=postgres passfile=FILE\")", db->name,
				      db->host ? db->host : rb->primary.host);
		if ((r = pgconn_describe(db->failback_conninfo, what, sizeof(what), &password)) < 0)
			return POSERR(rb, db->pos, "database '%s': failback_conninfo: %s", db->name, err_msg(r));
		if (password)
			return POSERR(rb, db->pos, "database '%s': failback_conninfo holds a password, which the "
				      "runbook and the standby's settings would show: put it in a passfile (passfile=FILE, "
				      "mode 0600, readable by read_as's user on the primary)", db->name);
		if (strchr(db->failback_conninfo, '\'') || strchr(db->failback_conninfo, '\n'))
			return POSERR(rb, db->pos, "database '%s': failback_conninfo holds a quote or a new line, "
				      "which the standby's primary_conninfo cannot carry: use the key=value form "
				      "without them", db->name);
	}
	return 0;
}

void runbook_print_reference(void)
{
	yamltab_print(&top_table, "");
}
