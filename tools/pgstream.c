/* pgstream.c - the child of a PostgreSQL source: one libpq physical
 * replication connection driven by one poll loop, frames to its owner on
 * stdout and commands from it on stdin (lib/pgpipe.h).  It runs
 * unprivileged inside its sandbox (lib/sandbox.h, entered by
 * cmd_pgstream.c before connecting), holds no key and opens no disk.
 *
 * The protocol is used as pg_receivewal and pg_basebackup use it
 * (receivelog.c, pg_basebackup.c): IDENTIFY_SYSTEM, SHOW wal_segment_size,
 * READ_REPLICATION_SLOT / CREATE_REPLICATION_SLOT ... PHYSICAL (RESERVE_WAL),
 * TIMELINE_HISTORY, START_REPLICATION SLOT ... PHYSICAL X/Y TIMELINE t with
 * standby status updates, the end of a timeline and the next one, and
 * BASE_BACKUP with PostgreSQL 15's archive stream. */
#include "pgstream.h"
#include "clock.h"
#include "err.h"
#include "pgconn.h"
#include "pgmsg.h"
#include "pgpipe.h"
#include "pgwal.h"
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define IN_MAX (1u << 20)
#define OUT_MAX (64u << 20)  /* frames queued for the owner */
#define OUT_HIGH (8u << 20)  /* above this, the server is not read (TCP pushes back) */
#define DRAIN_MS 5000        /* time given to the owner to read a last ERROR */
#define N_MARKS 64

enum stage { ST_CONNECT, ST_QUERY, ST_IDLE, ST_STREAM, ST_COPYOUT, ST_DONE };
enum step { Q_IDENTIFY, Q_SEGSIZE, Q_READ_SLOT, Q_CREATE_SLOT, Q_HISTORY, Q_START, Q_STREAM_END, Q_BASE_BACKUP };
static const char *const step_names[] = { "IDENTIFY_SYSTEM", "SHOW wal_segment_size", "READ_REPLICATION_SLOT",
					  "CREATE_REPLICATION_SLOT", "TIMELINE_HISTORY", "START_REPLICATION",
					  "the end of streaming", "BASE_BACKUP" };

struct child {
	const struct pgstream_opts *o;
	PGconn *conn;
	enum stage stage;
	enum step step;
	int nres;                 /* results of the current command seen */
	PostgresPollingStatusType cpoll;
	bool sock_out;            /* libpq has bytes to send: wait for POLLOUT */
	int64_t deadline;         /* connecting: give up then; ST_DONE: stop draining then */
	struct pgp_hello hello;
	bool need_slot, created;
	/* streaming */
	uint32_t tli;
	uint64_t start, next;     /* where streaming of tli began; the next LSN expected */
	uint64_t max_sent;        /* the end of the WAL ever queued for the owner */
	uint64_t written;         /* the end of the WAL the owner's pipe has taken */
	uint64_t flushed;         /* what the owner said is durable (0: nothing yet) */
	uint32_t next_tli;
	uint64_t next_start;
	bool got_next, ended;
	bool from_begin;          /* START (0, tli) of a slot on an older timeline: from where tli begins */
	int64_t last_status;
	bool status_now;
	/* base backup */
	struct pgp_bb_order order;
	uint64_t bb_lsn;
	uint32_t bb_tli;
	/* the owner */
	struct pgpipe_io io;
	struct { uint64_t bytes, lsn; } marks[N_MARKS]; /* out_written at which lsn is handed over */
	size_t n_marks;
	int exit_code;
};

static int64_t pgstream_now_ms(void)
{
	return (int64_t)(clock_mono_usec() / 1000);
}

/* End with an error: one line on stderr, the same as PGP_ERROR for the
 * owner, then drain the pipe and exit with the code's exit status. */
static void fail(struct child *c, uint32_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct child *c, uint32_t code, const char *fmt, ...)
{
	char what[1024], line[PGP_MAX_TEXT + 1], fix[512];
	va_list ap;

	if (c->stage == ST_DONE)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	pgconn_fix(code, c->o->slot, fix, sizeof(fix));
	if (fix[0]) {
		size_t n = strlen(what);
		while (n && (what[n - 1] == '\n' || what[n - 1] == ' ' || what[n - 1] == '.'))
			what[--n] = 0;
		snprintf(what + n, sizeof(what) - n, ": %s", fix);
	}
	pgpipe_flatten(line, sizeof(line), what);
	fprintf(stderr, "bascule pgstream: %s\n", line);
	pgpipe_put_error(&c->io.out, code, line);
	c->exit_code = pgpipe_error_exit(code);
	c->stage = ST_DONE;
	c->deadline = pgstream_now_ms() + DRAIN_MS;
}

static void flush_conn(struct child *c)
{
	int r = PQflush(c->conn);

	if (r < 0)
		fail(c, PGE_LOST, "lost the connection to PostgreSQL: %s", PQerrorMessage(c->conn));
	c->sock_out = r == 1;
}

static void query(struct child *c, enum step step, const char *sql)
{
	c->stage = ST_QUERY;
	c->step = step;
	c->nres = 0;
	if (!PQsendQuery(c->conn, sql)) {
		fail(c, pgconn_classify_message(PQerrorMessage(c->conn)), "cannot send %s: %s", step_names[step],
		     PQerrorMessage(c->conn));
		return;
	}
	flush_conn(c);
}

static void queue_failed(struct child *c, int r)
{
	if (r < 0)
		fail(c, PGE_PROTOCOL, "cannot queue a frame for the owner: %s", strerror(-r));
}

static void send_hello(struct child *c)
{
	c->hello.version = PGP_VERSION;
	c->hello.server_version = (uint32_t)PQserverVersion(c->conn);
	queue_failed(c, pgpipe_put_hello(&c->io.out, &c->hello));
	if (c->stage != ST_DONE)
		c->stage = ST_IDLE;
}

static void send_status(struct child *c)
{
	uint8_t m[PGMSG_STATUS_BYTES];
	int r;

	/* write: handed to the owner; flush: what the owner made durable;
	 * apply: none (InvalidXLogRecPtr), as pg_receivewal. */
	pgmsg_put_status(m, c->written, c->flushed, 0, pgmsg_now(), false);
	r = PQputCopyData(c->conn, (const char *)m, sizeof(m));
	if (r < 0) {
		fail(c, PGE_LOST, "cannot send a standby status update: %s", PQerrorMessage(c->conn));
		return;
	}
	if (r == 0)
		return; /* libpq's buffer is full: again after the next flush */
	c->status_now = false;
	c->last_status = pgstream_now_ms();
	flush_conn(c);
}

/* Start streaming tli from c->start: its history first (timeline 1 has none). */
static void begin_timeline(struct child *c)
{
	char sql[160], lsn[PGWAL_LSN_LEN];

	if (c->tli > 1) {
		snprintf(sql, sizeof(sql), "TIMELINE_HISTORY %u", c->tli);
		query(c, Q_HISTORY, sql);
		return;
	}
	snprintf(sql, sizeof(sql), "START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %u", c->o->slot,
		 pgwal_lsn_format(c->start, lsn), c->tli);
	query(c, Q_START, sql);
}

static int parse_u64(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || strspn(s, "0123456789") != strlen(s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* "16MB" (SHOW wal_segment_size) in bytes. */
static int parse_segsize(const char *s, uint32_t *ret)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	uint64_t b;

	if (end == s)
		return -EINVAL;
	if (!strcmp(end, "MB"))
		b = (uint64_t)v << 20;
	else if (!strcmp(end, "GB"))
		b = (uint64_t)v << 30;
	else if (!strcmp(end, "kB"))
		b = (uint64_t)v << 10;
	else if (!strcmp(end, "B") || !*end)
		b = v;
	else
		return -EINVAL;
	if (!pgwal_segsize_ok(b))
		return -EINVAL;
	*ret = (uint32_t)b;
	return 0;
}

static bool shape(const PGresult *res, int rows, int fields)
{
	return PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == rows && PQnfields(res) >= fields;
}

static void bad_shape(struct child *c, const PGresult *res)
{
	fail(c, PGE_PROTOCOL, "unexpected answer to %s: %d rows of %d fields", step_names[c->step],
	     PQntuples(res), PQnfields(res));
}

static void on_result(struct child *c, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	uint64_t u;

	c->nres++;
	if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (c->step == Q_CREATE_SLOT && state && !strcmp(state, "42710"))
			return; /* created meanwhile by another client: read it again */
		if (c->step == Q_STREAM_END && c->ended) {
			fail(c, PGE_ENDED, "PostgreSQL ended streaming on timeline %u at %s (shut down)", c->tli,
			     pgwal_lsn_format(c->next, (char[PGWAL_LSN_LEN]){ 0 }));
			return;
		}
		fail(c, pgconn_classify_result(res), "%s failed: %s", step_names[c->step], PQresultErrorMessage(res));
		return;
	}
	switch (c->step) {
	case Q_IDENTIFY:
		if (!shape(res, 1, 3))
			return bad_shape(c, res);
		if (parse_u64(PQgetvalue(res, 0, 0), &c->hello.system_id) < 0 ||
		    parse_u64(PQgetvalue(res, 0, 1), &u) < 0 || u == 0 || u > UINT32_MAX ||
		    pgwal_lsn_parse(PQgetvalue(res, 0, 2), &c->hello.xlogpos) < 0)
			return bad_shape(c, res);
		c->hello.timeline = (uint32_t)u;
		break;
	case Q_SEGSIZE:
		if (!shape(res, 1, 1) || parse_segsize(PQgetvalue(res, 0, 0), &c->hello.segsize) < 0)
			return bad_shape(c, res);
		break;
	case Q_READ_SLOT:
		/* slot_type, restart_lsn, restart_tli: all NULL when there is no such slot. */
		if (!shape(res, 1, 3))
			return bad_shape(c, res);
		c->need_slot = PQgetisnull(res, 0, 0);
		if (c->need_slot)
			break;
		if (strcmp(PQgetvalue(res, 0, 0), "physical")) {
			fail(c, PGE_SERVER, "replication slot %s is a %s slot: pgstream needs a physical one (name "
			     "another slot)", c->o->slot, PQgetvalue(res, 0, 0));
			return;
		}
		if (PQgetisnull(res, 0, 1)) {
			fail(c, PGE_WAL_LOST, "replication slot %s holds no WAL", c->o->slot);
			return;
		}
		if (pgwal_lsn_parse(PQgetvalue(res, 0, 1), &c->hello.slot_lsn) < 0 ||
		    parse_u64(PQgetvalue(res, 0, 2), &u) < 0 || u == 0 || u > UINT32_MAX)
			return bad_shape(c, res);
		c->hello.slot_tli = (uint32_t)u;
		c->hello.slot = c->created ? PGP_SLOT_CREATED : PGP_SLOT_FOUND;
		break;
	case Q_CREATE_SLOT:
		break;
	case Q_HISTORY: {
		char want[PGWAL_HISTORY_NAME_LEN];
		int len;
		if (!shape(res, 1, 2))
			return bad_shape(c, res);
		pgwal_history_name(want, c->tli);
		len = PQgetlength(res, 0, 1);
		if (strcmp(PQgetvalue(res, 0, 0), want) || len < 0 || (unsigned)len > PGP_MAX_DATA) {
			fail(c, PGE_PROTOCOL, "unexpected history file %s for timeline %u", PQgetvalue(res, 0, 0), c->tli);
			return;
		}
		if (c->from_begin) {
			/* Its last line is where tli branched off its parent. */
			struct pgwal_switch *sw = calloc(PGWAL_HISTORY_MAX / 4, sizeof(*sw));
			size_t n = 0;
			if (!sw || pgwal_history_parse(PQgetvalue(res, 0, 1), (size_t)len, c->tli, sw,
						       PGWAL_HISTORY_MAX / 4, &n) < 0 || !n) {
				free(sw);
				fail(c, PGE_PROTOCOL, "the history file of timeline %u does not parse", c->tli);
				return;
			}
			if (pgwal_seg_start(sw[n - 1].end, c->hello.segsize) > c->start)
				c->start = pgwal_seg_start(sw[n - 1].end, c->hello.segsize);
			free(sw);
			c->from_begin = false;
		}
		queue_failed(c, pgpipe_put_history(&c->io.out, c->tli, PQgetvalue(res, 0, 1), (uint32_t)len));
		break;
	}
	case Q_START:
		if (st != PGRES_COPY_BOTH)
			return bad_shape(c, res);
		c->stage = ST_STREAM;
		c->next = c->start;
		if (c->start > c->max_sent)
			c->max_sent = c->start;
		c->last_status = pgstream_now_ms();
		queue_failed(c, pgpipe_put_pos(&c->io.out, PGP_STREAMING, c->tli, c->start));
		break;
	case Q_STREAM_END:
		if (st == PGRES_COPY_IN) {
			/* The server ended its side of the copy: end ours (receivelog.c). */
			if (PQputCopyEnd(c->conn, NULL) <= 0)
				fail(c, PGE_LOST, "cannot end the copy stream: %s", PQerrorMessage(c->conn));
			else
				flush_conn(c);
		} else if (st == PGRES_TUPLES_OK) {
			/* next_tli | next_tli_startpos */
			if (!shape(res, 1, 2) || parse_u64(PQgetvalue(res, 0, 0), &u) < 0 || u <= c->tli ||
			    u > UINT32_MAX || pgwal_lsn_parse(PQgetvalue(res, 0, 1), &c->next_start) < 0 ||
			    c->next_start > c->next)
				return bad_shape(c, res);
			c->next_tli = (uint32_t)u;
			c->got_next = true;
		} else if (st == PGRES_COMMAND_OK)
			c->ended = true;
		break;
	case Q_BASE_BACKUP:
		if (c->nres == 1) {
			/* recptr | tli */
			if (!shape(res, 1, 2) || pgwal_lsn_parse(PQgetvalue(res, 0, 0), &c->bb_lsn) < 0 ||
			    parse_u64(PQgetvalue(res, 0, 1), &u) < 0 || u == 0 || u > UINT32_MAX)
				return bad_shape(c, res);
			c->bb_tli = (uint32_t)u;
		} else if (c->nres == 2) {
			/* spcoid | spclocation | size: one row per tablespace */
			if (st != PGRES_TUPLES_OK || PQntuples(res) < 1 || PQntuples(res) > 4096)
				return bad_shape(c, res);
			if (pgpipe_bb_order(&c->order, PGP_BB_START) < 0)
				return bad_shape(c, res);
			queue_failed(c, pgpipe_put_bb_start(&c->io.out, c->bb_lsn, c->bb_tli, (uint32_t)PQntuples(res)));
		} else if (c->nres == 3) {
			if (st != PGRES_COPY_OUT)
				return bad_shape(c, res);
			c->stage = ST_COPYOUT;
		} else if (c->nres == 4) {
			if (!shape(res, 1, 2) || pgwal_lsn_parse(PQgetvalue(res, 0, 0), &c->bb_lsn) < 0 ||
			    parse_u64(PQgetvalue(res, 0, 1), &u) < 0 || u == 0 || u > UINT32_MAX ||
			    pgpipe_bb_order(&c->order, PGP_BB_END) < 0) {
				fail(c, PGE_PROTOCOL, "unexpected end of the base backup: %s", err_msg(-EPROTO));
				return;
			}
			queue_failed(c, pgpipe_put_bb_end(&c->io.out, c->bb_lsn, (uint32_t)u));
		} else if (st != PGRES_COMMAND_OK)
			return bad_shape(c, res);
		break;
	}
}

static void on_query_done(struct child *c)
{
	char sql[160];

	switch (c->step) {
	case Q_IDENTIFY:
		query(c, Q_SEGSIZE, "SHOW wal_segment_size");
		break;
	case Q_SEGSIZE:
		if (!c->o->slot) {
			send_hello(c);
			break;
		}
		snprintf(sql, sizeof(sql), "READ_REPLICATION_SLOT %s", c->o->slot);
		query(c, Q_READ_SLOT, sql);
		break;
	case Q_READ_SLOT:
		if (c->need_slot && !c->created) {
			snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT %s PHYSICAL (RESERVE_WAL)", c->o->slot);
			query(c, Q_CREATE_SLOT, sql);
		} else if (c->need_slot)
			fail(c, PGE_SERVER, "replication slot %s was created but cannot be read", c->o->slot);
		else
			send_hello(c);
		break;
	case Q_CREATE_SLOT:
		c->created = true;
		snprintf(sql, sizeof(sql), "READ_REPLICATION_SLOT %s", c->o->slot);
		query(c, Q_READ_SLOT, sql);
		break;
	case Q_HISTORY:
		snprintf(sql, sizeof(sql), "START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %u", c->o->slot,
			 pgwal_lsn_format(c->start, (char[PGWAL_LSN_LEN]){ 0 }), c->tli);
		query(c, Q_START, sql);
		break;
	case Q_START:
		fail(c, PGE_PROTOCOL, "START_REPLICATION ended without a copy stream");
		break;
	case Q_STREAM_END:
		if (!c->got_next) {
			fail(c, PGE_ENDED, "PostgreSQL ended streaming on timeline %u at %s (shut down)", c->tli,
			     pgwal_lsn_format(c->next, (char[PGWAL_LSN_LEN]){ 0 }));
			break;
		}
		/* The next timeline, from the start of the segment where it
		 * branched off (receivelog.c: "always start streaming at the
		 * beginning of a segment"). */
		queue_failed(c, pgpipe_put_timeline(&c->io.out, c->tli, c->next, c->next_tli, c->next_start));
		c->tli = c->next_tli;
		c->start = pgwal_seg_start(c->next_start, c->hello.segsize);
		c->got_next = c->ended = false;
		if (c->stage != ST_DONE)
			begin_timeline(c);
		break;
	case Q_BASE_BACKUP:
		c->stage = ST_IDLE;
		break;
	}
}

static void drain_results(struct child *c)
{
	while (c->stage == ST_QUERY) {
		PGresult *res;

		if (PQisBusy(c->conn))
			return;
		if (!(res = PQgetResult(c->conn))) {
			on_query_done(c);
			continue;
		}
		on_result(c, res);
		PQclear(res);
	}
}

/* WAL of XLogData for the owner, in frames of at most PGP_MAX_DATA bytes. */
static void on_xlogdata(struct child *c, const struct pgmsg_stream *m)
{
	char a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN];

	if (m->start != c->next) {
		fail(c, PGE_PROTOCOL, "PostgreSQL sent WAL at %s, expected %s", pgwal_lsn_format(m->start, a),
		     pgwal_lsn_format(c->next, b));
		return;
	}
	for (size_t off = 0; off < m->len && c->stage != ST_DONE; ) {
		uint32_t n = (uint32_t)(m->len - off > PGP_MAX_DATA ? PGP_MAX_DATA : m->len - off);
		queue_failed(c, pgpipe_put_wal(&c->io.out, c->tli, c->next, m->data + off, n));
		off += n;
		c->next += n;
	}
	if (c->next > c->max_sent)
		c->max_sent = c->next;
	/* Mark where in the pipe this WAL ends (the last mark absorbs the
	 * newest when they are all taken: the write position lags a little). */
	if (c->n_marks == N_MARKS)
		c->n_marks--;
	c->marks[c->n_marks].bytes = c->io.out_written + pgpipe_io_pending(&c->io);
	c->marks[c->n_marks++].lsn = c->next;
}

static void drain_copy(struct child *c)
{
	while ((c->stage == ST_STREAM || c->stage == ST_COPYOUT) && pgpipe_io_pending(&c->io) < OUT_HIGH) {
		char *buf = NULL;
		int n = PQgetCopyData(c->conn, &buf, 1);

		if (n == 0)
			return;
		if (n == -2) {
			fail(c, pgconn_classify_message(PQerrorMessage(c->conn)), "lost the stream from PostgreSQL: %s",
			     PQerrorMessage(c->conn));
			return;
		}
		if (n == -1) {
			/* End of the copy (or an error): the results follow. */
			if (c->stage == ST_STREAM) {
				c->step = Q_STREAM_END;
				c->nres = 0;
				c->got_next = c->ended = false;
			}
			c->stage = ST_QUERY;
			drain_results(c);
			return;
		}
		if (c->stage == ST_STREAM) {
			struct pgmsg_stream m;
			if (pgmsg_get_stream(buf, (size_t)n, &m) < 0)
				fail(c, PGE_PROTOCOL, "malformed replication message from PostgreSQL (type %d, %d bytes)",
				     buf[0], n);
			else if (m.kind == 'w')
				on_xlogdata(c, &m);
			else {
				queue_failed(c, pgpipe_put_keepalive(&c->io.out, m.wal_end, m.send_time));
				c->status_now |= m.reply;
			}
		} else {
			struct pgmsg_backup m;
			static const uint8_t types[] = { ['n'] = PGP_BB_ARCHIVE, ['d'] = PGP_BB_DATA,
							 ['p'] = PGP_BB_PROGRESS, ['m'] = PGP_BB_MANIFEST };
			if (pgmsg_get_backup(buf, (size_t)n, &m) < 0 || pgpipe_bb_order(&c->order, types[(uint8_t)m.kind]) < 0)
				fail(c, PGE_PROTOCOL, "malformed or misplaced base backup message from PostgreSQL "
				     "(type %d, %d bytes)", buf[0], n);
			else if (m.kind == 'n')
				queue_failed(c, pgpipe_put_archive(&c->io.out, m.archive, m.spclocation));
			else if (m.kind == 'p')
				queue_failed(c, pgpipe_put_progress(&c->io.out, m.done));
			else if (m.kind == 'm')
				queue_failed(c, pgpipe_put_manifest(&c->io.out));
			else
				for (size_t off = 0; off < m.len && c->stage != ST_DONE; ) {
					uint32_t k = (uint32_t)(m.len - off > PGP_MAX_DATA ? PGP_MAX_DATA : m.len - off);
					queue_failed(c, pgpipe_put_data(&c->io.out, m.data + off, k));
					off += k;
				}
		}
		PQfreemem(buf);
	}
}

static void process_conn(struct child *c)
{
	if (c->stage == ST_QUERY)
		drain_results(c);
	if (c->stage == ST_STREAM || c->stage == ST_COPYOUT)
		drain_copy(c);
}

static void on_command(struct child *c, const struct pgp_msg *m)
{
	char lsn[PGWAL_LSN_LEN];

	switch (m->type) {
	case PGP_START:
		if (c->stage != ST_IDLE || !c->o->slot) {
			fail(c, PGE_COMMAND, "START %s", !c->o->slot ? "without --slot: streaming needs a slot" :
			     "while busy: one command at a time");
			return;
		}
		if (m->u.pos.lsn) {
			c->start = m->u.pos.lsn;
			c->tli = m->u.pos.tli;
		} else {
			c->start = pgwal_seg_start(c->hello.slot_lsn, c->hello.segsize);
			c->tli = c->hello.slot_tli;
			/* (0, T): an owner starting afresh on the server's timeline T
			 * (after a promotion) wants none of the older timelines' WAL
			 * the slot still holds; T's history says where T begins. */
			if (m->u.pos.tli && m->u.pos.tli != c->tli) {
				if (m->u.pos.tli < c->tli) {
					fail(c, PGE_COMMAND, "START on timeline %u: the slot is on timeline %u already",
					     m->u.pos.tli, c->tli);
					return;
				}
				c->tli = m->u.pos.tli;
				c->from_begin = true;
			}
		}
		/* The owner holds the WAL before where it asked to start: it may
		 * report that much flushed at once. */
		if (c->start > c->max_sent)
			c->max_sent = c->start;
		begin_timeline(c);
		break;
	case PGP_FLUSHED:
		if (m->u.flushed > c->max_sent) {
			fail(c, PGE_PROTOCOL, "the owner reported WAL flushed up to %s, past what it was sent",
			     pgwal_lsn_format(m->u.flushed, lsn));
			return;
		}
		if (m->u.flushed > c->flushed) {
			c->flushed = m->u.flushed;
			c->status_now = true;
		}
		break;
	case PGP_BASE_BACKUP: {
		char sql[400];
		if (c->stage != ST_IDLE) {
			fail(c, PGE_COMMAND, "BASE_BACKUP while busy: one command at a time");
			return;
		}
		/* The label is checked by the decoder: [A-Za-z0-9 _.:-], no quoting needed. */
		snprintf(sql, sizeof(sql),
			 "BASE_BACKUP (LABEL '%s'%s, CHECKPOINT '%s', WAL false, MANIFEST 'yes', TABLESPACE_MAP, "
			 "TARGET 'client')", m->u.base_backup.label,
			 m->u.base_backup.flags & PGP_BBF_PROGRESS ? ", PROGRESS" : "",
			 m->u.base_backup.flags & PGP_BBF_FAST ? "fast" : "spread");
		c->order = (struct pgp_bb_order){ 0 };
		query(c, Q_BASE_BACKUP, sql);
		break;
	}
	default:
		fail(c, PGE_COMMAND, "unexpected frame %u from the owner", m->type);
	}
}

static void read_commands(struct child *c)
{
	struct pgp_msg m;
	int r;

	while ((r = pgpipe_io_read(&c->io)) > 0)
		;
	if (r < 0 && r != -EAGAIN) {
		fail(c, PGE_COMMAND, "cannot read from the owner: %s", strerror(-r));
		return;
	}
	while (c->stage != ST_DONE && (r = pgpipe_io_next(&c->io, PGP_CHILD, &m)) > 0)
		on_command(c, &m);
	if (r < 0)
		fail(c, PGE_COMMAND, "%s", err_msg(r));
}

/* The owner closed our stdin, or we were told to stop: leave cleanly,
 * telling the server where we stand first. */
static void stop(struct child *c)
{
	if (c->stage == ST_DONE)
		return;
	if (c->stage == ST_STREAM) {
		send_status(c);
		if (PQputCopyEnd(c->conn, NULL) > 0)
			flush_conn(c);
	}
	c->stage = ST_DONE;
	c->exit_code = 0;
	c->deadline = pgstream_now_ms() + DRAIN_MS;
}

/* Server notices (e.g. BASE_BACKUP's "WAL archiving is not enabled", which
 * does not apply: the WAL is streamed) only with -v. */
static void on_notice(void *arg, const char *msg)
{
	const struct child *c = arg;
	char line[PGP_MAX_TEXT + 1];

	if (c->o->verbose)
		fprintf(stderr, "bascule pgstream: %s\n", pgpipe_flatten(line, sizeof(line), msg));
}

static void connect_step(struct child *c)
{
	c->cpoll = PQconnectPoll(c->conn);
	if (c->cpoll == PGRES_POLLING_FAILED) {
		fail(c, pgconn_classify_message(PQerrorMessage(c->conn)), "cannot connect to PostgreSQL: %s",
		     PQerrorMessage(c->conn));
		return;
	}
	if (c->cpoll != PGRES_POLLING_OK)
		return;
	if (PQserverVersion(c->conn) < 150000) {
		fail(c, PGE_VERSION, "PostgreSQL %s is too old for pgstream", PQparameterStatus(c->conn, "server_version"));
		return;
	}
	if (PQsetnonblocking(c->conn, 1) < 0) {
		fail(c, PGE_LOST, "cannot make the connection non-blocking: %s", PQerrorMessage(c->conn));
		return;
	}
	query(c, Q_IDENTIFY, "IDENTIFY_SYSTEM");
}

int pgstream_signalfd(void)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

int pgstream_child_run(const struct pgstream_opts *o)
{
	struct child c = { .o = o, .stage = ST_CONNECT, .cpoll = PGRES_POLLING_WRITING };
	int sfd = pgstream_signalfd(), r;

	pgpipe_io_init(&c.io, STDIN_FILENO, STDOUT_FILENO, IN_MAX, OUT_MAX);
	c.deadline = pgstream_now_ms() + o->connect_timeout_ms;
	if (!(c.conn = pgconn_start(o->conninfo, o->appname)))
		fail(&c, PGE_LOST, "out of memory");
	else if (PQstatus(c.conn) == CONNECTION_BAD)
		fail(&c, pgconn_classify_message(PQerrorMessage(c.conn)), "cannot connect to PostgreSQL: %s",
		     PQerrorMessage(c.conn));
	else
		PQsetNoticeProcessor(c.conn, on_notice, &c);
	for (;;) {
		struct pollfd p[4] = { { .fd = -1 }, { .fd = -1 }, { .fd = -1 }, { .fd = sfd, .events = POLLIN } };
		int64_t now = pgstream_now_ms(), timeout = -1;
		int sock = c.conn ? PQsocket(c.conn) : -1;

		if (c.stage == ST_DONE && (pgpipe_io_pending(&c.io) == 0 || now >= c.deadline || c.io.eof))
			break;
		if (!c.io.eof && c.stage != ST_DONE) {
			p[0].fd = STDIN_FILENO;
			p[0].events = POLLIN;
		}
		if (pgpipe_io_pending(&c.io)) {
			p[1].fd = STDOUT_FILENO;
			p[1].events = POLLOUT;
		}
		if (sock >= 0 && c.stage != ST_DONE) {
			p[2].fd = sock;
			if (c.stage == ST_CONNECT)
				p[2].events = c.cpoll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			else {
				if (pgpipe_io_pending(&c.io) < OUT_HIGH)
					p[2].events |= POLLIN;
				if (c.sock_out)
					p[2].events |= POLLOUT;
			}
		}
		if (c.stage == ST_CONNECT || c.stage == ST_DONE)
			timeout = c.deadline > now ? c.deadline - now : 0;
		else if (c.stage == ST_STREAM) {
			/* An update is due now, on the timer, or (libpq's output
			 * buffer full) once the socket takes more: never a spin. */
			int64_t due = c.last_status + o->status_interval_ms;
			timeout = c.sock_out ? -1 : c.status_now ? 0 : due > now ? due - now : 0;
		}
		if (poll(p, 4, (int)timeout) < 0 && errno != EINTR) {
			fail(&c, PGE_LOST, "poll: %s", strerror(errno));
			continue;
		}
		if (p[3].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				;
			stop(&c);
		}
		if (p[1].revents && (r = pgpipe_io_flush(&c.io)) < 0) {
			/* The owner is gone: nobody to tell. */
			c.stage = ST_DONE;
			c.io.eof = true;
			continue;
		}
		while (c.n_marks && c.marks[0].bytes <= c.io.out_written) {
			c.written = c.marks[0].lsn;
			memmove(c.marks, c.marks + 1, --c.n_marks * sizeof(c.marks[0]));
		}
		if (p[0].revents) {
			read_commands(&c);
			if (c.io.eof)
				stop(&c);
		}
		if (c.stage == ST_CONNECT) {
			if (p[2].revents || sock < 0)
				connect_step(&c);
			else if (pgstream_now_ms() >= c.deadline)
				fail(&c, PGE_UNREACHABLE, "cannot connect to PostgreSQL: no answer within %d ms",
				     o->connect_timeout_ms);
			continue;
		}
		if (c.stage != ST_DONE && p[2].revents & POLLOUT)
			flush_conn(&c);
		if (c.stage != ST_DONE && p[2].revents & (POLLIN | POLLHUP | POLLERR) && !PQconsumeInput(c.conn))
			fail(&c, pgconn_classify_message(PQerrorMessage(c.conn)), "lost the connection to PostgreSQL: %s",
			     PQerrorMessage(c.conn));
		if (c.stage != ST_DONE && c.stage != ST_CONNECT)
			process_conn(&c);
		if (c.stage == ST_STREAM && !c.sock_out &&
		    (c.status_now || pgstream_now_ms() - c.last_status >= o->status_interval_ms))
			send_status(&c);
	}
	if (c.conn)
		PQfinish(c.conn);
	pgpipe_io_free(&c.io);
	if (sfd >= 0)
		close(sfd);
	return c.exit_code;
}
