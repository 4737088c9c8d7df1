/* dbfailback.c - the failback of a database (docs/failover.md, "Databases"):
 * the old primary's data directory becomes a standby of the database
 * promoted at the secondary (pg_rewind, or a full base backup when the old
 * primary has neither wal_log_hints nor data checksums), streams from it,
 * holds its final LSN once it is shut down cleanly, and is promoted.  Its
 * own configuration files are kept (pg_rewind would copy the secondary's). */
#include "clock.h"
#include "drill_int.h"
#include "err.h"
#include "pgwal.h"
#include "units.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POLL_USEC 200000
#define FB_MARK "# bascule failback" /* the standby settings the failback adds */

/* Run on the old primary by read_as's user: $1 the data directory, $2
 * rewind or basebackup, $3 the conninfo of the promoted database, $4
 * pg_bin, $5 the drill.  Its configuration files are kept aside first
 * (once: a run again after a failure keeps the originals) and put back
 * after; then the standby settings, marked, and standby.signal. */
static const char rewind_sh[] =
	"set -e; d=$1 how=$2 ci=$3 bin=$4 keep=\"$1.bascule-conf\"\n"
	"if [ ! -d \"$keep\" ]; then mkdir -m 700 \"$keep.tmp\"\n"
	"  for f in postgresql.conf postgresql.auto.conf pg_hba.conf pg_ident.conf; do\n"
	"    [ ! -f \"$d/$f\" ] || cp -p \"$d/$f\" \"$keep.tmp/$f\"; done\n"
	"  mv \"$keep.tmp\" \"$keep\"; fi\n"
	"if [ \"$how\" = rewind ]; then LC_ALL=C \"$bin/pg_rewind\" -D \"$d\" --source-server=\"$ci\" 2>&1\n"
	"else old=\"$d.bascule-before-$5\"\n"
	"  if [ -d \"$old\" ]; then rm -rf \"$d\"; else mv \"$d\" \"$old\"; fi\n"
	"  LC_ALL=C \"$bin/pg_basebackup\" -D \"$d\" -d \"$ci\" -X stream -c fast 2>&1\n"
	"  echo \"the old data directory is kept as $old\"; fi\n"
	"for f in postgresql.conf postgresql.auto.conf pg_hba.conf pg_ident.conf; do\n"
	"  [ ! -f \"$keep/$f\" ] || cp -p \"$keep/$f\" \"$d/$f\"; done\n"
	"touch \"$d/postgresql.auto.conf\"; sed -i '/" FB_MARK "$/d' \"$d/postgresql.auto.conf\"\n"
	"printf \"primary_conninfo = '%s application_name=bascule_failback' " FB_MARK "\\nrecovery_target_timeline = 'latest' " FB_MARK "\\n\" \"$ci\" "
	">> \"$d/postgresql.auto.conf\"\n"
	"touch \"$d/standby.signal\"; rm -rf \"$keep\"; echo rewound\n";

/* The promoted database's data directory at the secondary, as promote
 * made it: DISK_DIR/SOURCE of the group's service with a disk_dir, else
 * REPLICA_ROOT/GROUP/SOURCE. */
void db_secondary_dir(const struct drill *d, const struct rb_database *db, char *buf, size_t len)
{
	const struct runbook *rb = d->rb;
	const char *dd = NULL;

	for (size_t i = 0; i < rb->services.n; i++)
		if (RB_SVC(rb, i)->group && !strcmp(RB_SVC(rb, i)->group, db->group) && RB_SVC(rb, i)->disk_dir)
			dd = RB_SVC(rb, i)->disk_dir;
	if (dd)
		snprintf(buf, len, "%s/%s", dd, db->src);
	else
		snprintf(buf, len, "%s/%s/%s", rb->secondary.replica_root, db->group, db->src);
}

/* A shell script with its arguments through the database's read_as. */
static int run_script(struct step_ctx *c, const struct rb_database *db, const char *script, const char *const *args,
		      uint64_t timeout, const char *what)
{
	const char *argv[12] = { "/bin/sh", "-c", script, "sh" };
	size_t n = 4;

	for (; *args && n < sizeof(argv) / sizeof(argv[0]) - 1; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	return db_run_as(c, db->read_as, argv, timeout, what);
}

int db_rewind(struct step_ctx *c)
{
	const struct rb_database *db = db_of_step(c);
	char state[64] = "", hints[16] = "", sums[16] = "", *ctl = NULL, *pgctl = NULL, *said = NULL;
	const char *how, *h = c->s->host, *p;
	bool rewindable;
	int rc;

	if (!db)
		return -ENOENT;
	if (!(ctl = db_prog(db, "pg_controldata")) || !(pgctl = db_prog(db, "pg_ctl"))) {
		rc = -ENOMEM;
		goto out;
	}
	/* Done already (a resumed drill): standby settings and signal there. */
	if (run_script(c, db, "grep -q '" FB_MARK "$' \"$1/postgresql.auto.conf\" && [ -f \"$1/standby.signal\" ]",
		       (const char *const[]){ db->data_dir, NULL }, MIN(1), "a look at the data directory") == 0) {
		step_msg(c->s, "%s on %s is a standby of %s already (an earlier run of this step)", db->name, h, SEC(c->d));
		rc = 0;
		goto out;
	}
	/* pg_ctl status: 0 running, 3 not running. */
	rc = db_run_as(c, db->read_as, (const char *const[]){ pgctl, "status", "-D", db->data_dir, NULL }, MIN(1),
		       "pg_ctl status");
	if (rc == 0) {
		step_msg(c->s, "database %s runs on %s: a failback rewinds the old primary stopped (its writes "
			       "since the failover are lost to it either way): stop it (pg_ctl stop -m fast -D %s) "
			       "and resume the drill", db->name, h, db->data_dir);
		rc = -EBUSY;
		goto out;
	}
	if (rc != -EIO || c->res.exit_status != 3)
		goto out;
	if ((rc = db_run_as(c, db->read_as, (const char *const[]){ "env", "LC_ALL=C", ctl, "-D", db->data_dir, NULL },
			    MIN(1), "pg_controldata")) < 0)
		goto out;
	if (!db_control_field(c->res.output, "Database cluster state", state, sizeof(state)) ||
	    !db_control_field(c->res.output, "wal_log_hints setting", hints, sizeof(hints)) ||
	    !db_control_field(c->res.output, "Data page checksum version", sums, sizeof(sums))) {
		step_msg(c->s, "pg_controldata -D %s on %s did not describe a PostgreSQL cluster: %.200s", db->data_dir,
			 h, subproc_said(&c->res));
		rc = -EBADMSG;
		goto out;
	}
	/* pg_rewind reads the pages changed since the divergence from the WAL:
	 * it needs every hint-bit change logged too. */
	rewindable = !strcmp(hints, "on") || strcmp(sums, "0");
	how = rewindable ? "rewind" : "basebackup";
	rc = run_script(c, db, rewind_sh,
			(const char *const[]){ db->data_dir, how, db->failback_conninfo, db->pg_bin, c->d->id, NULL },
			c->s->timeout, rewindable ? "pg_rewind" : "pg_basebackup");
	if (rc < 0)
		goto out;
	said = strdup(subproc_said(&c->res));
	if (rewindable && (p = strstr(c->res.output, "servers diverged at WAL location "))) {
		char lsn[PGWAL_LSN_LEN] = "";
		unsigned tli = 0;
		sscanf(p, "servers diverged at WAL location %17s on timeline %u", lsn, &tli);
		step_msg(c->s, "rewound with pg_rewind (the histories diverged at %s on timeline %u); its own "
			       "configuration kept; a standby of %s", lsn, tli, SEC(c->d));
	} else if (rewindable) {
		step_msg(c->s, "pg_rewind: %s (it stopped exactly where %s took over); its configuration kept; a "
			       "standby of %s", strstr(c->res.output, "no rewind required") ? "no rewind required" :
			 said ? said : "done", SEC(c->d), SEC(c->d));
	} else {
		step_msg(c->s, "copied whole with pg_basebackup from %s: %.200s", SEC(c->d), said ? said : "");
		snprintf(c->s->warning, sizeof(c->s->warning),
			 "pg_rewind cannot rewind %.40s (wal_log_hints off, no data checksums): copied whole "
			 "instead; set wal_log_hints = on there so the next failback copies only what differs",
			 db->name);
	}
	snprintf(c->s->data, sizeof(c->s->data), "{\"method\":\"%s\",\"state_before\":\"%.60s\"}",
		 rewindable ? "pg_rewind" : "base backup", state);
	rc = 0;
out:
	free(ctl);
	free(pgctl);
	free(said);
	return rc;
}

int db_fb_standby(struct step_ctx *c)
{
	const struct rb_database *db = db_of_step(c);
	int rc;

	if (!db)
		return -ENOENT;
	if (!db->restart) {
		step_msg(c->s, "no restart command for database %s in the runbook: the failback starts it with "
			       "restart as a standby of %s", db->name, SEC(c->d));
		return -ENOEXEC;
	}
	if ((rc = step_run_sh(c, c->s->host, db->restart, db->start_timeout, "the database's restart")) < 0)
		return rc;
	/* Streaming before the secondary shuts down: a clean shutdown waits
	 * only for the WAL senders it has. */
	{
		uint64_t deadline = clock_mono_usec() + db->start_timeout;
		char *psql = db_prog(db, "psql");
		if (!psql)
			return -ENOMEM;
		for (;;) {
			rc = db_run_as(c, db->read_as, (const char *const[]){ psql, "-X", "-At", "-d", db->failback_conninfo,
				"-c", "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'bascule_failback' "
				      "AND state = 'streaming'", NULL }, MIN(1), "psql");
			if (rc == 0 && atoi(subproc_last_line(&c->res)) > 0)
				break;
			if (clock_mono_usec() + POLL_USEC > deadline) {
				step_msg(c->s, "%s on %s started but does not stream from %s (pg_stat_replication there: "
					       "%.200s): its log; failback_conninfo; the secondary's pg_hba.conf", db->name,
					 c->s->host, SEC(c->d), subproc_said(&c->res));
				free(psql);
				return -ETIMEDOUT;
			}
			usleep(POLL_USEC);
		}
		free(psql);
	}
	step_msg(c->s, "%s runs on %s as a standby of %s, streaming", db->name, c->s->host, SEC(c->d));
	return 0;
}

int db_fb_shutdown(struct step_ctx *c)
{
	const struct rb_database *db = db_of_step(c);
	char lsn[PGWAL_LSN_LEN], fin[PGWAL_LSN_LEN], dir[1024], *as = NULL;
	struct db_final f;
	int rc;

	if (!db)
		return -ENOENT;
	if ((rc = db_start(c, true)) < 0)
		return rc;
	db_secondary_dir(c->d, db, dir, sizeof(dir));
	if (db->user && asprintf(&as, "runuser -u %s --", db->user) < 0)
		return -ENOMEM;
	rc = db_shutdown_lsn(c, db, as, dir, &f);
	free(as);
	if (rc < 0)
		return rc;
	pgwal_lsn_format(f.checkpoint, lsn);
	pgwal_lsn_format(f.final, fin);
	snprintf(c->s->data, sizeof(c->s->data), "{\"checkpoint_lsn\":\"%s\",\"final_lsn\":\"%s\",\"timeline\":%u}",
		 lsn, fin, f.tli);
	step_msg(c->s, "shut down cleanly on %s; final LSN %s (the shutdown checkpoint at %s, timeline %u)", SEC(c->d),
		 fin, lsn, f.tli);
	return 0;
}

/* The LSN string at KEY of O, parsed; false if absent or not an LSN. */
static bool lsn_at(json_t *o, const char *key, uint64_t *ret)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && pgwal_lsn_parse(s, ret) == 0;
}

/* The old primary, streaming, holds the secondary's shutdown checkpoint
 * (pg_waldump finds it in its pg_wal): every byte of WAL up to the final
 * LSN is there.  A clean shutdown waits for its WAL senders to send it. */
int db_fb_caught(struct step_ctx *c)
{
	const struct rb_database *db = db_of_step(c);
	uint64_t ckpt = 0, final = 0, deadline = clock_mono_usec() + c->s->timeout;
	char *dump = NULL, *wal = NULL, tli[16], ck[PGWAL_LSN_LEN], fin[PGWAL_LSN_LEN], d1[32];
	json_t *sd;
	int rc;

	if (!db)
		return -ENOENT;
	sd = drill_step_find_data(c->d, ST_DB_FB_SHUTDOWN, db->group, db->name);
	if (!lsn_at(sd, "checkpoint_lsn", &ckpt) || !lsn_at(sd, "final_lsn", &final)) {
		json_decref(sd);
		step_msg(c->s, "database %s has no final LSN at %s: its shutdown step did not finish", db->name,
			 SEC(c->d));
		return -ENOENT;
	}
	snprintf(tli, sizeof(tli), "%d", (int)json_integer_value(json_object_get(sd, "timeline")));
	json_decref(sd);
	pgwal_lsn_format(ckpt, ck);
	pgwal_lsn_format(final, fin);
	if (!(dump = db_prog(db, "pg_waldump")) || asprintf(&wal, "%s/pg_wal", db->data_dir) < 0) {
		free(dump);
		return -ENOMEM;
	}
	for (;;) {
		rc = db_run_as(c, db->read_as, (const char *const[]){ "env", "LC_ALL=C", dump, "-p", wal, "-t", tli,
								       "-s", ck, "-n", "1", NULL }, MIN(1), "pg_waldump");
		if (rc == 0 && strstr(c->res.output, "CHECKPOINT_SHUTDOWN"))
			break;
		if (rc < 0 && rc != -EIO)
			goto out;
		if (clock_mono_usec() + POLL_USEC > deadline) {
			step_msg(c->s, "%s on %s did not receive the final LSN %s of %s within %s (pg_waldump at %s on "
				       "timeline %s: %.200s): is it streaming? (its log; failback_conninfo; the "
				       "secondary's pg_hba.conf)", db->name, c->s->host, fin, SEC(c->d),
				 units_fmt_duration(c->s->timeout, d1, sizeof(d1)), ck, tli, subproc_said(&c->res));
			rc = -ETIMEDOUT;
			goto out;
		}
		usleep(POLL_USEC);
	}
	snprintf(c->s->data, sizeof(c->s->data), "{\"final_lsn\":\"%s\",\"targets\":{\"%s\":{\"acked_lsn\":\"%s\","
		 "\"epoch\":0}}}", fin, c->s->host, fin);
	step_msg(c->s, "%s on %s holds %s, the final LSN of %s (its shutdown checkpoint, timeline %s): RPO 0",
		 db->name, c->s->host, fin, SEC(c->d), tli);
	rc = 0;
out:
	free(dump);
	free(wal);
	return rc;
}

/* Promote the old primary; its new timeline's history says where it
 * switched: the end of the WAL it replayed, the final LSN. */
int db_fb_promote(struct step_ctx *c)
{
	const struct rb_database *db = db_of_step(c);
	char secs[24], *pgctl = NULL, lsn[PGWAL_LSN_LEN] = "", fin[PGWAL_LSN_LEN], sw[PGWAL_LSN_LEN];
	const char *line, *method;
	uint64_t final = 0, at = 0;
	unsigned parent = 0, tli = 0;
	json_t *sd, *rw;
	int rc;

	if (!db)
		return -ENOENT;
	sd = drill_step_find_data(c->d, ST_DB_FB_CAUGHT, db->group, db->name);
	rw = drill_step_find_data(c->d, ST_DB_REWIND, db->group, db->name);
	method = json_string_value(json_object_get(rw, "method")) ?: "pg_rewind";
	if (!lsn_at(sd, "final_lsn", &final)) {
		json_decref(sd);
		json_decref(rw);
		step_msg(c->s, "database %s: the old primary was not seen holding the final LSN (its step did not "
			       "finish): not promoted", db->name);
		return -ENOENT;
	}
	json_decref(sd);
	snprintf(secs, sizeof(secs), "%" PRIu64, db->start_timeout / 1000000);
	if (db->failback_promote)
		rc = step_run_sh(c, c->s->host, db->failback_promote, db->start_timeout, "the database's failback_promote");
	else if (!(pgctl = db_prog(db, "pg_ctl")))
		rc = -ENOMEM;
	else
		rc = db_run_as(c, db->read_as, (const char *const[]){ pgctl, "promote", "-D", db->data_dir, "-w", "-t",
								      secs, NULL }, db->start_timeout, "pg_ctl promote");
	free(pgctl);
	if (rc < 0 && !(rc == -EIO && strstr(c->res.output, "not in standby mode")))
		goto out; /* a promoted one (a resumed drill) is not in standby mode */
	/* The newest history file's last line: PARENT<TAB>SWITCH-LSN<TAB>reason. */
	if ((rc = run_script(c, db, "set -e; f=$(ls \"$1\"/pg_wal/*.history | sort | tail -n 1); "
				    "sed -i '/" FB_MARK "$/d' \"$1/postgresql.auto.conf\"; "
				    "echo \"${f##*/}\"; grep -v '^#' \"$f\" | grep . | tail -n 1",
			     (const char *const[]){ db->data_dir, NULL }, MIN(1), "the new timeline's history")) < 0)
		goto out;
	line = subproc_last_line(&c->res);
	if (sscanf(c->res.output, "%8x.history", &tli) != 1 || sscanf(line, "%u %17s", &parent, lsn) != 2 ||
	    pgwal_lsn_parse(lsn, &at) < 0) {
		step_msg(c->s, "the history of the promoted %s on %s does not say where it switched: %.200s", db->name,
			 c->s->host, subproc_said(&c->res));
		rc = -EBADMSG;
		goto out;
	}
	pgwal_lsn_format(final, fin);
	pgwal_lsn_format(at, sw);
	if (at < final) {
		step_msg(c->s, "%s on %s was promoted at %s, before the final LSN %s of %s: the WAL between is "
			       "missing there (its log says why)", db->name, c->s->host, sw, fin, SEC(c->d));
		rc = -EIO;
		goto out;
	}
	c->s->cut_time = clock_now_usec();
	{
		json_t *o = json_pack("{s:{s:{s:s, s:s, s:s, s:s, s:i, s:i}}}", "postgres", db->src, "data_dir",
				      db->data_dir, "mode", method, "end_lsn", sw, "redo_lsn", sw, "timeline", (int)tli,
				      "last_transaction_us", 0);
		char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		if (text && strlen(text) < sizeof(c->s->data))
			memcpy(c->s->data, text, strlen(text) + 1);
		free(text);
		json_decref(o);
	}
	step_msg(c->s, "%s promoted on %s at %s (timeline %u after %u), the final LSN of %s: RPO 0 by LSN", db->name,
		 c->s->host, sw, tli, parent, SEC(c->d));
	rc = 0;
out:
	json_decref(rw);
	return rc;
}
