/* dbsteps.c - the drill's database steps (docs/failover.md, "Databases"):
 * a clean shutdown on the primary and its final LSN as PostgreSQL wrote it
 * (pg_controldata, pg_waldump), the wait until every replica target has
 * acknowledged that LSN (basculed's status), the promoted database started
 * on the secondary, and what promote said of each PostgreSQL source. */
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

#define ACK_POLL_USEC 200000
#define XLOG_LONG_PHD 40   /* page header at a segment's start (SizeOfXLogLongPHD) */
#define XLOG_SHORT_PHD 24  /* on every other page (SizeOfXLogShortPHD) */

const struct rb_database *db_of_step(struct step_ctx *c)
{
	const struct rb_database *db = runbook_database(c->d->rb, c->s->database);

	if (!db)
		step_msg(c->s, "step %d names database '%s', which the runbook no longer has", c->s->id,
			 c->s->database);
	return db;
}

char *db_prog(const struct rb_database *db, const char *prog)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s", db->pg_bin, prog) < 0 ? NULL : p;
}

int db_run_as(struct step_ctx *c, const char *prefix, const char *const *argv, uint64_t timeout, const char *what)
{
	if (!prefix)
		return step_run(c, c->s->host, argv, timeout, what);
	return step_run_bascule(c, c->s->host, prefix, argv, timeout, what);
}

/* The value after "KEY:" on its line of TEXT (pg_controldata), trimmed,
 * into BUF; false if there is no such line. */
bool db_control_field(const char *text, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);

	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *v, *e;
		if (strncmp(l, key, kl) || l[kl] != ':')
			continue;
		for (v = l + kl + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (e = v; *e && *e != '\n'; e++)
			;
		while (e > v && (e[-1] == ' ' || e[-1] == '\r'))
			e--;
		snprintf(buf, len, "%.*s", (int)(e - v), v);
		return true;
	}
	return false;
}

/* Where a record of TOT bytes starting at START ends, as PostgreSQL
 * reserves it (XLogBytePosToEndRecPtr): its size MAXALIGNed, a page header
 * before the bytes of each page it continues on. */
static uint64_t wal_record_end(uint64_t start, uint32_t tot, uint32_t blcksz, uint64_t segsz)
{
	uint64_t pos = start, left = ((uint64_t)tot + 7) & ~7ULL;

	while (left) {
		uint64_t room, take;
		if (pos % blcksz == 0)
			pos += pos % segsz == 0 ? XLOG_LONG_PHD : XLOG_SHORT_PHD;
		room = blcksz - pos % blcksz;
		take = left < room ? left : room;
		pos += take;
		left -= take;
	}
	return pos;
}

int db_shutdown_lsn(struct step_ctx *c, const struct rb_database *db, const char *prefix, const char *dir,
		    struct db_final *ret)
{
	char state[64] = "", ckpt_s[32] = "", tli_s[16] = "", blk_s[16] = "", seg_s[24] = "";
	char *ctl = NULL, *dump = NULL, *wal = NULL;
	const char *h = c->s->host, *p;
	uint64_t ckpt = 0, segsz;
	unsigned rec = 0, tot = 0, blk;
	int rc;

	if (!(ctl = db_prog(db, "pg_controldata")) || !(dump = db_prog(db, "pg_waldump")) ||
	    asprintf(&wal, "%s/pg_wal", dir) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = db_run_as(c, prefix, (const char *const[]){ "env", "LC_ALL=C", ctl, "-D", dir, NULL }, MIN(1),
			    "pg_controldata")) < 0)
		goto out;
	if (!db_control_field(c->res.output, "Database cluster state", state, sizeof(state)) ||
	    !db_control_field(c->res.output, "Latest checkpoint location", ckpt_s, sizeof(ckpt_s)) ||
	    !db_control_field(c->res.output, "Latest checkpoint's TimeLineID", tli_s, sizeof(tli_s)) ||
	    !db_control_field(c->res.output, "WAL block size", blk_s, sizeof(blk_s)) ||
	    !db_control_field(c->res.output, "Bytes per WAL segment", seg_s, sizeof(seg_s)) ||
	    pgwal_lsn_parse(ckpt_s, &ckpt) < 0 || (blk = (unsigned)strtoul(blk_s, NULL, 10)) < 1024 ||
	    !pgwal_segsize_ok(segsz = strtoull(seg_s, NULL, 10))) {
		step_msg(c->s, "pg_controldata -D %s on %s did not describe a PostgreSQL cluster: %.200s",
			 dir, h, subproc_said(&c->res));
		rc = -EBADMSG;
		goto out;
	}
	if (strcmp(state, "shut down")) {
		step_msg(c->s, "database %s on %s is not shut down cleanly after its stop command "
			       "(pg_control says '%s'): the stop must return once PostgreSQL is down "
			       "(pg_ctl stop -m fast waits; -m immediate is a crash, and the replica may lack "
			       "its last WAL)", db->name, h, state);
		rc = -EAGAIN;
		goto out;
	}
	if ((rc = db_run_as(c, prefix, (const char *const[]){ "env", "LC_ALL=C", dump, "-p", wal, "-t", tli_s, "-s",
							       ckpt_s, "-n", "1", NULL }, MIN(1), "pg_waldump")) < 0)
		goto out;
	/* rmgr: XLOG len (rec/tot): 114/ 114, tx: 0, lsn: 0/01A0E2A8, prev ..., desc: CHECKPOINT_SHUTDOWN ... */
	p = strstr(c->res.output, "len (rec/tot):");
	if (!p || sscanf(p + 14, "%u/ %u", &rec, &tot) != 2 || tot < 24 || tot > blk ||
	    !strstr(c->res.output, "CHECKPOINT_SHUTDOWN")) {
		step_msg(c->s, "pg_waldump on %s does not show the shutdown checkpoint at %s: %.200s", h, ckpt_s,
			 subproc_said(&c->res));
		rc = -EBADMSG;
		goto out;
	}
	ret->checkpoint = ckpt;
	ret->final = wal_record_end(ckpt, tot, blk, segsz);
	ret->tli = (uint32_t)strtoul(tli_s, NULL, 10);
	rc = 0;
out:
	free(ctl);
	free(dump);
	free(wal);
	return rc;
}

/* Shut the primary's database down with the runbook's command, then read
 * what PostgreSQL wrote last: pg_control must say "shut down" (a clean
 * shutdown: every transaction is in the WAL before its shutdown
 * checkpoint), and the shutdown checkpoint, read with pg_waldump, is the
 * last record: the primary's final LSN is where it ends. */
int db_stop(struct step_ctx *c)
{
	const struct rb_database *db = db_of_step(c);
	char lsn[PGWAL_LSN_LEN], fin[PGWAL_LSN_LEN];
	struct db_final f;
	int rc;

	if (!db)
		return -ENOENT;
	if ((rc = step_run_sh(c, c->s->host, db->stop, db->stop_timeout, "the database's stop")) < 0)
		return rc;
	if ((rc = db_shutdown_lsn(c, db, db->read_as, db->data_dir, &f)) < 0)
		return rc;
	pgwal_lsn_format(f.checkpoint, lsn);
	pgwal_lsn_format(f.final, fin);
	snprintf(c->s->data, sizeof(c->s->data), "{\"checkpoint_lsn\":\"%s\",\"final_lsn\":\"%s\",\"timeline\":%u}",
		 lsn, fin, f.tli);
	step_msg(c->s, "shut down cleanly; final LSN %s (the shutdown checkpoint at %s, timeline %u)", fin, lsn,
		 f.tli);
	return 0;
}

/* The LSN string at KEY of O, parsed; false if absent or not an LSN. */
static bool lsn_of(json_t *o, const char *key, uint64_t *ret)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && pgwal_lsn_parse(s, ret) == 0;
}

/* One look at the primary's status: 1 when every replica target has
 * acknowledged FINAL for the database (the step's data written), 0 not yet
 * (WHY says where they are), negative: give up (message set). */
static int acked_once(struct step_ctx *c, const struct rb_database *db, uint64_t final, char *why, size_t len)
{
	const struct runbook *rb = c->d->rb;
	const char *const args[] = { "--socket", rb->primary.control_socket, "status", "--json", NULL };
	char fin[PGWAL_LSN_LEN], a[PGWAL_LSN_LEN], msg[300] = "";
	json_t *st, *t, *g, *src, *targets = json_object();
	json_error_t je;
	uint64_t min_epoch = 0;
	size_t k, n_repl = 0;
	bool found = false, all = true;
	int rc;

	if ((rc = step_run_bascule(c, PRI(c->d), rb->primary.bascule, args, MIN(1), "bascule status")) < 0) {
		json_decref(targets);
		return rc;
	}
	if (!(st = json_loads(c->res.output, 0, &je))) {
		json_decref(targets);
		step_msg(c->s, "bascule status --json on %s gave no JSON: %s", PRI(c->d), je.text);
		return -EBADMSG;
	}
	json_array_foreach(json_object_get(st, "groups"), k, g) {
		size_t i;
		if (strcmp(json_string_value(json_object_get(g, "name")) ?: "", db->group))
			continue;
		json_array_foreach(json_object_get(g, "sources"), i, src)
			found |= !strcmp(json_string_value(json_object_get(src, "name")) ?: "", db->src) &&
				 !strcmp(json_string_value(json_object_get(src, "type")) ?: "", "postgres");
	}
	if (!found) {
		step_msg(c->s, "the daemon on %s has no postgres source %s (database %s)", PRI(c->d), db->source,
			 db->name);
		rc = -ENOENT;
		goto out;
	}
	pgwal_lsn_format(final, fin);
	json_array_foreach(json_object_get(st, "targets"), k, t) {
		const char *tn = json_string_value(json_object_get(t, "name")) ?: "?";
		json_t *tg = json_object_get(json_object_get(t, "groups"), db->group);
		json_t *tp = json_object_get(json_object_get(tg, "postgres"), db->src);
		json_int_t epoch = json_integer_value(json_object_get(tg, "acked"));
		uint64_t acked = 0;
		bool have = lsn_of(tp, "acked_lsn", &acked);
		if (!strcmp(json_string_value(json_object_get(t, "type")) ?: "", "vault"))
			continue;
		n_repl++;
		if (!have || acked < final) {
			all = false;
			const char *le = json_string_value(json_object_get(t, "last_error")) ?: "";
			snprintf(msg, sizeof(msg), "replica target %s is at %s (%s%s%s%.150s)", tn,
				 have ? pgwal_lsn_format(acked, a) : "no acknowledged LSN",
				 json_string_value(json_object_get(t, "state")) ?: "?",
				 json_is_true(json_object_get(tp, "needs_base")) ? ", needs a base backup" : "",
				 *le ? ": " : "", le);
			continue;
		}
		if (!min_epoch || (uint64_t)epoch < min_epoch)
			min_epoch = (uint64_t)epoch;
		json_object_set_new(targets, tn, json_pack("{s:s, s:I}", "acked_lsn", pgwal_lsn_format(acked, a),
							       "epoch", epoch));
	}
	if (!n_repl) {
		step_msg(c->s, "the daemon on %s has no replica target", PRI(c->d));
		rc = -ENOENT;
		goto out;
	}
	if (!all) {
		snprintf(why, len, "%s", msg);
		rc = 0;
		goto out;
	}
	{
		json_t *data = json_pack("{s:s, s:O}", "final_lsn", fin, "targets", targets);
		char *text = data ? json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		json_decref(data);
		if (!text || strlen(text) >= sizeof(c->s->data)) {
			free(text);
			step_msg(c->s, "too many targets to record");
			rc = -E2BIG;
			goto out;
		}
		memcpy(c->s->data, text, strlen(text) + 1);
		free(text);
	}
	c->s->epoch = min_epoch;
	rc = 1;
out:
	json_decref(targets);
	json_decref(st);
	return rc;
}

/* Until every replica target has acknowledged the primary's final LSN
 * (RPO 0, by LSN), within the step's timeout.  basculed cuts and ships the
 * WAL it received every wal_interval on its own: nothing to ask for, only
 * to watch (`bascule sync` would ask the stopped primary its position). */
int db_acked(struct step_ctx *c)
{
	const struct rb_database *db = db_of_step(c);
	uint64_t final = 0, deadline = clock_mono_usec() + c->s->timeout;
	char why[300] = "", fin[PGWAL_LSN_LEN], d1[32];
	json_t *stop;
	int rc;

	if (!db)
		return -ENOENT;
	stop = drill_step_find_data(c->d, ST_DB_STOP, db->group, db->name);
	if (!lsn_of(stop, "final_lsn", &final)) {
		json_decref(stop);
		step_msg(c->s, "database %s has no final LSN: its shutdown step did not finish", db->name);
		return -ENOENT;
	}
	json_decref(stop);
	pgwal_lsn_format(final, fin);
	for (;;) {
		if ((rc = acked_once(c, db, final, why, sizeof(why))) < 0)
			return rc;
		if (rc == 1)
			break;
		if (clock_mono_usec() + ACK_POLL_USEC > deadline) {
			step_msg(c->s, "the final LSN %s of database %s was not acknowledged within %s: %s", fin,
				 db->name, units_fmt_duration(c->s->timeout, d1, sizeof(d1)), why);
			return -ETIMEDOUT;
		}
		usleep(ACK_POLL_USEC);
	}
	step_msg(c->s, "every replica target acknowledged %s, the final LSN of %s (epoch %" PRIu64 "): RPO 0",
		 fin, db->name, c->s->epoch);
	return 0;
}

/* What the group's promote (a test step: its clone) said of the database's
 * source: its data directory and mode; false (message set) if it said
 * nothing. */
static bool promoted_dir(struct step_ctx *c, const struct rb_database *db, bool test, char *dir, size_t len,
			 bool *hot)
{
	json_t *p, *x;
	const char *dd;

	if (c->d->mode == MODE_FAILBACK) {
		/* Promoted by an earlier drill: where its promote made it. */
		db_secondary_dir(c->d, db, dir, len);
		*hot = false;
		return true;
	}
	p = drill_step_find_data(c->d, test ? ST_CLONE : ST_PROMOTE, db->group, NULL);
	x = json_object_get(json_object_get(p, "postgres"), db->src);
	dd = json_string_value(json_object_get(x, "data_dir"));

	if (!dd) {
		json_decref(p);
		step_msg(c->s, "the %s of group %s reported no PostgreSQL source %s (database %s): is it "
			       "a postgres source of the group? (bascule replica list on %s)", test ? "clone" : "promote",
			 db->group, db->src, db->name, SEC(c->d));
		return false;
	}
	snprintf(dir, len, "%s", dd);
	*hot = !strcmp(json_string_value(json_object_get(x, "mode")) ?: "", "hot");
	json_decref(p);
	return true;
}

/* ARGV (pg_ctl ...) on the secondary as the database's user, or, when the
 * runbook names none, as the owner of its data directory DIR (promote gave
 * it to the user PostgreSQL runs as there). */
static int pg_ctl_as(struct step_ctx *c, const struct rb_database *db, const char *dir, const char *const *argv,
		     uint64_t timeout, const char *what)
{
	const char *a[24] = { "runuser", "-u", db->user, "--" };
	size_t n = 4;

	if (!db->user) {
		a[0] = "/bin/sh";
		a[1] = "-c";
		a[2] = "d=$1; shift; u=$(stat -c %U -- \"$d\") && exec runuser -u \"$u\" -- \"$@\"";
		a[3] = "sh";
		a[4] = dir;
		n = 5;
	}
	for (; *argv && n < sizeof(a) / sizeof(a[0]) - 1; argv++)
		a[n++] = *argv;
	a[n] = NULL;
	return step_run(c, c->s->host, a, timeout, what);
}

/* Start (or, STOP, stop) the promoted database on the secondary, or in
 * test mode its clone: the runbook's command with BASCULE_PGDATA, else
 * pg_ctl as the database's user (pg_ctl_as), a clone on its test_port and
 * never archiving; either is a no-op when the server already is in that
 * state. */
int db_start(struct step_ctx *c, bool stop)
{
	const struct rb_database *db = db_of_step(c);
	bool test = c->s->kind == ST_DB_TEST_START || c->s->kind == ST_DB_TEST_STOP;
	const char *cmd, *h = c->s->host, *what = test ? "the test copy of " : "";
	char dir[1024], secs[24], opts[64], *ctl = NULL, *log = NULL;
	bool hot = false;
	uint64_t timeout;
	int rc;

	if (!db)
		return -ENOENT;
	if (!promoted_dir(c, db, test, dir, sizeof(dir), &hot))
		return -ENOENT;
	cmd = test ? (stop ? db->test_stop : db->test_start) : stop ? db->secondary_stop : db->start;
	timeout = stop ? db->stop_timeout : db->start_timeout;
	if ((rc = step_env_add(c, "BASCULE_PGDATA", dir)) < 0)
		return rc;
	if (cmd) {
		if ((rc = step_run_sh(c, h, cmd, timeout, test ? (stop ? "the database's test_stop" : "the database's test_start")
						       : stop ? "the database's secondary_stop" : "the database's start")) == 0)
			step_msg(c->s, "%s %s%s (%s)", stop ? "stopped" : "started", what, db->name, dir);
		return rc;
	}
	if (!(ctl = db_prog(db, "pg_ctl")) || asprintf(&log, "%s/bascule.log", dir) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(secs, sizeof(secs), "%" PRIu64, timeout / 1000000);
	if (test && stop) {
		/* Removed already (an abort after the clones went): nothing runs there. */
		rc = step_run(c, h, (const char *const[]){ "test", "-d", dir, NULL }, MIN(1), "test -d");
		if (rc == -EIO) {
			step_msg(c->s, "%s%s (%s) is gone: nothing to stop", what, db->name, dir);
			rc = 0;
			goto out;
		}
		if (rc < 0)
			goto out;
	}
	/* pg_ctl status: 0 running, 3 not running. */
	rc = pg_ctl_as(c, db, dir, (const char *const[]){ ctl, "status", "-D", dir, NULL }, MIN(1), "pg_ctl status");
	if (rc < 0 && (rc != -EIO || c->res.exit_status != 3))
		goto out;
	if ((rc == 0) != stop) {
		step_msg(c->s, "%s%s (%s) %s", what, db->name, dir,
			 stop ? "is not running" : hot ? "runs: the hot standby was promoted" : "already runs");
		rc = 0;
		goto out;
	}
	/* A clone never archives (its WAL is not production's) and listens on
	 * its own port, beside the standby and the primary. */
	snprintf(opts, sizeof(opts), "-c port=%" PRIu64 " -c archive_mode=off", db->test_port);
	if (stop)
		rc = pg_ctl_as(c, db, dir, (const char *const[]){ ctl, "stop", "-D", dir, "-m", "fast", "-w", "-t", secs,
							   NULL }, timeout, "pg_ctl stop");
	else if (test)
		rc = pg_ctl_as(c, db, dir, (const char *const[]){ ctl, "start", "-D", dir, "-l", log, "-w", "-t", secs,
							   "-o", opts, NULL }, timeout, "pg_ctl start");
	else
		rc = pg_ctl_as(c, db, dir, (const char *const[]){ ctl, "start", "-D", dir, "-l", log, "-w", "-t", secs,
							   NULL }, timeout, "pg_ctl start");
	if (rc == -EIO && !stop) {
		/* pg_ctl says "examine the log output": show what it says. */
		char why[512];
		snprintf(why, sizeof(why), "%s", c->s->message);
		if (step_run(c, h, (const char *const[]){ "tail", "-n", "2", "--", log, NULL }, MIN(1), "tail") == 0)
			step_msg(c->s, "%.200s; %s: %.250s", why, log, subproc_said(&c->res));
		else
			step_msg(c->s, "%s", why);
	}
	if (rc == 0 && test && !stop)
		step_msg(c->s, "started %s%s on port %" PRIu64 " (%s, log %s)", what, db->name, db->test_port, dir, log);
	else if (rc == 0)
		step_msg(c->s, "%s %s%s (%s, log %s)", stop ? "stopped" : "started", what, db->name, dir, log);
out:
	free(ctl);
	free(log);
	return rc;
}

int db_restart(struct step_ctx *c)
{
	const struct rb_database *db = db_of_step(c);
	int rc;

	if (!db)
		return -ENOENT;
	if (!db->restart) {
		step_msg(c->s, "no restart command for database %s in the runbook: start it on %s by hand",
			 db->name, c->s->host);
		return -ENOEXEC;
	}
	if ((rc = step_run_sh(c, c->s->host, db->restart, db->start_timeout, "the database's restart")) == 0)
		step_msg(c->s, "%s started again", db->name);
	return rc;
}

int db_precheck(struct step_ctx *c, json_t *status)
{
	const struct runbook *rb = c->d->rb;

	for (size_t i = 0; i < rb->databases.n; i++) {
		const struct rb_database *db = RB_DB(rb, i);
		const char *type = NULL;
		json_t *g, *src;
		size_t k, j;
		json_array_foreach(json_object_get(status, "groups"), k, g) {
			if (strcmp(json_string_value(json_object_get(g, "name")) ?: "", db->group))
				continue;
			json_array_foreach(json_object_get(g, "sources"), j, src)
				if (!strcmp(json_string_value(json_object_get(src, "name")) ?: "", db->src))
					type = json_string_value(json_object_get(src, "type")) ?: "disk";
		}
		if (!type || strcmp(type, "postgres")) {
			step_msg(c->s, "database %s: group %s of the daemon on %s has %s source %s: name a "
				       "type: postgres source in 'source'", db->name, db->group, rb->primary.host,
				 type ? "a disk, not a postgres," : "no", db->src);
			return -ENOENT;
		}
	}
	return 0;
}

void db_promoted(struct step_ctx *c, json_t *answer, char *msg, size_t len)
{
	json_t *out = json_object(), *x;
	size_t i, n = 0;

	json_array_foreach(json_object_get(answer, "postgres"), i, x) {
		const char *src = json_string_value(json_object_get(x, "source"));
		json_t *o;
		if (!src)
			continue;
		o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "data_dir",
			      json_string_value(json_object_get(x, "data_dir")) ?: "", "mode",
			      json_string_value(json_object_get(x, "mode")) ?: "", "end_lsn",
			      json_string_value(json_object_get(x, "end_lsn")) ?: "", "redo_lsn",
			      json_string_value(json_object_get(x, "redo_lsn")) ?: "", "timeline",
			      json_integer_value(json_object_get(x, "timeline")), "last_transaction_us",
			      json_integer_value(json_object_get(x, "last_transaction_us")));
		if (!o)
			continue;
		json_object_set_new(out, src, o);
		if (n < len)
			n += (size_t)snprintf(msg + n, len - n, "; PostgreSQL %s recovered to %s, timeline %d (%s)",
					      src, json_string_value(json_object_get(o, "end_lsn")),
					      (int)json_integer_value(json_object_get(o, "timeline")),
					      json_string_value(json_object_get(o, "mode")));
	}
	if (json_object_size(out)) {
		json_t *data = json_pack("{s:O}", "postgres", out);
		char *text = data ? json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		if (text && strlen(text) < sizeof(c->s->data))
			memcpy(c->s->data, text, strlen(text) + 1);
		free(text);
		json_decref(data);
	}
	json_decref(out);
}

void db_promote_args(const struct drill *d, const char *group, const char **args, size_t *n, size_t max)
{
	const struct runbook *rb = d->rb;

	for (size_t i = 0; i < rb->databases.n; i++) {
		const struct rb_database *db = RB_DB(rb, i);
		if (strcmp(db->group, group))
			continue;
		/* The group's first database speaks for its PostgreSQL sources. */
		if (db->user && *n + 2 <= max) {
			args[(*n)++] = "--pg-user";
			args[(*n)++] = db->user;
		}
		if (*n + 2 <= max) {
			args[(*n)++] = "--pg-bin";
			args[(*n)++] = db->pg_bin;
		}
		if (db->pg_conf && *n + 2 <= max) {
			args[(*n)++] = "--pg-conf";
			args[(*n)++] = db->pg_conf;
		}
		return;
	}
}
