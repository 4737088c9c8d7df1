/* pgsource.c - a PostgreSQL source (docs/postgres.md): its stream, its
 * spool, its base backups, what it reports flushed, and when a base backup
 * is taken.
 *
 *  stream:  pgstream child --WAL--> walspool writer --durable--> the loop:
 *           FLUSHED (local: once durable; remote: once every replica
 *           target acknowledged it), an epoch cut (epoch.c)
 *  base:    a second pgstream child: BASE_BACKUP --> pgbase writer; at
 *           start (no base yet), every base_interval, when the WAL since
 *           the newest base passes half of wal_spool_max
 *  bounds:  segments no target needs, older than the newest base, go; past
 *           wal_spool_max older segments go anyway (the targets that needed
 *           them get the newest base): the slot, which follows what is
 *           durable here, never holds the primary's pg_wal for them
 *  sync:    a probe child's IDENTIFY_SYSTEM gives the primary's flush
 *           position; the caller is answered once the spool holds it */
#include "daemon.h"
#include "err.h"
#include "log.h"
#include "pgsource.h"
#include "pgwal.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_PROBES_MAX 8
#define PG_WAL_CUT_BYTES (16u << 20)  /* local: cut at once past this much new WAL */
#define PG_BACKOFF_MAX_USEC 30000000ULL
#define PG_BASE_BACKOFF_USEC 30000000ULL

struct pgwait {
	uint64_t lsn;
	void (*done)(void *ctx, int r, uint64_t lsn);
	void *ctx;
	struct pgwait *next;
};

static void stream_start(struct pgsrc *p);
static void base_check(struct pgsrc *p);

static const char *lsn_str(uint64_t lsn, char *buf)
{
	return pgwal_lsn_format(lsn, buf);
}

static void set_error(struct pgsrc *p, const char *msg)
{
	snprintf(p->last_error, sizeof(p->last_error), "%s", msg);
	p->last_error_time = clock_now_usec();
	p->errors++;
	daemon_event(p->d, "error", p->group, "", 0, msg);
}

/* ---- what is reported flushed ---- */

/* Remote: the lowest end of the WAL every replica target holds durably
 * (0 for one whose copy is not of this system and timeline). */
static uint64_t acked_by_all(struct pgsrc *p)
{
	struct daemon *d = p->d;
	uint64_t low = UINT64_MAX;

	if (!p->s || p->s->g->retired)
		return 0;
	for (uint32_t i = 0; i < d->n_targets; i++) {
		const struct target *t = d->targets[i];
		const struct tpg *tp;
		if (t->cfg->kind != TARGET_REPLICA)
			continue;
		tp = &t->groups[p->s->g->idx].pg[p->s->idx];
		if (!tp->known || tp->acked_system != p->system_id || tp->acked_tli != p->tli)
			low = 0;
		else if (tp->acked_lsn < low)
			low = tp->acked_lsn;
	}
	return low;
}

static void report_flush(struct pgsrc *p)
{
	uint64_t at = walspool_durable(&p->wal);
	char a[PGWAL_LSN_LEN];

	if (p->state != PGS_STREAMING || !p->stream)
		return;
	if (p->cfg->remote) {
		uint64_t acked = acked_by_all(p);
		if (acked < at)
			at = acked;
	}
	if (at > p->received)
		at = p->received; /* never past what this child sent */
	if (at <= p->reported)
		return;
	if (pgpipe_put_flushed(&p->stream->io.out, at) < 0) {
		pgchild_end(p->stream, "cannot queue FLUSHED for pgstream");
		return;
	}
	p->reported = at;
	pgchild_send(p->stream);
	log_debug("source %s/%s: reported WAL flushed up to %s", p->group, p->name, lsn_str(at, a));
}

void pgsource_acked(struct pgsrc *p)
{
	if (p->cfg->remote)
		report_flush(p);
}

/* ---- the stream child ---- */

static void retry_arm(struct pgsrc *p);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct pgsrc *p = userdata;

	p->retry = sd_event_source_disable_unref(p->retry);
	if (p->state == PGS_BACKOFF && !p->d->stopping && p->refs)
		stream_start(p);
	return 0;
}

static void retry_arm(struct pgsrc *p)
{
	uint64_t delay = 500000ULL << (p->failures > 6 ? 6 : p->failures);

	if (delay > PG_BACKOFF_MAX_USEC)
		delay = PG_BACKOFF_MAX_USEC;
	p->failures++;
	p->state = PGS_BACKOFF;
	p->retry = sd_event_source_disable_unref(p->retry);
	if (!p->d->stopping &&
	    sd_event_add_time_relative(p->d->ev, &p->retry, CLOCK_MONOTONIC, delay, 10000, on_retry, p) < 0)
		pgsrc_log(p, LOG_ERR, "cannot arm the retry timer: the stream stays down");
}

/* The spool is set up for this server: stream from where it ends. */
static void send_start(struct pgsrc *p)
{
	uint64_t at = walspool_resume(&p->wal);
	char a[PGWAL_LSN_LEN];

	p->state = PGS_STARTING;
	/* A new spool is of the server's timeline: (0, tli) leaves out the
	 * older timelines' WAL a slot made before a promotion still holds. */
	if (pgpipe_put_pos(&p->stream->io.out, PGP_START, p->tli, at) < 0) {
		pgchild_end(p->stream, "cannot queue START for pgstream");
		return;
	}
	pgchild_send(p->stream);
	pgsrc_log(p, LOG_DEBUG, "streaming from %s", at ? lsn_str(at, a) : "the slot's position");
}

static void on_hello(struct pgsrc *p, const struct pgp_hello *h)
{
	struct walspool *ws = &p->wal;
	char why[256] = "";

	p->system_id = h->system_id;
	p->segsize = h->segsize;
	p->server_version = h->server_version;
	p->slot_lsn = h->slot_lsn;
	if (h->xlogpos > p->server_end) {
		p->server_end = h->xlogpos;
		p->server_end_time = clock_now_usec();
	}
	if (ws->tli && ws->system_id != h->system_id)
		snprintf(why, sizeof(why), "the server is another cluster (system id %" PRIu64 ", the spool's is %"
			 PRIu64 ")", h->system_id, ws->system_id);
	else if (ws->tli && ws->tli != h->timeline)
		snprintf(why, sizeof(why), "the server is on timeline %u, the spool on %u (a promotion)",
			 h->timeline, ws->tli);
	else if (ws->tli && ws->segsize != h->segsize)
		snprintf(why, sizeof(why), "the server's WAL segments are of %u bytes, the spool's of %u", h->segsize,
			 ws->segsize);
	else if (p->reset_pending)
		snprintf(why, sizeof(why), "the WAL the spool ends at is no longer on the server");
	p->tli = h->timeline;
	if (why[0] || !ws->tli) {
		if (why[0])
			pgsrc_log(p, LOG_WARNING, "%s: the WAL spool starts afresh, with a new base backup", why);
		pgbases_forget(&p->bases);
		p->epoch_valid = false;
		p->reset_pending = false;
		if (walspool_init(ws, h->system_id, h->segsize, h->timeline, false) < 0) {
			pgchild_end(p->stream, "cannot queue the spool's start");
			return;
		}
		p->received = p->reported = 0;
		p->state = PGS_PREPARING;
		p->ops_wait = pgwriter_queued_ops(&ws->w);
		return;
	}
	p->received = walspool_durable(ws);
	send_start(p);
}

static void on_stream_frame(struct pgchild *c, const struct pgp_msg *m)
{
	struct pgsrc *p = c->p;
	char a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN], why[256];

	switch (m->type) {
	case PGP_HELLO:
		if (p->state != PGS_CONNECTING) {
			pgchild_end(c, "pgstream said HELLO twice");
			return;
		}
		on_hello(p, &m->u.hello);
		break;
	case PGP_STREAMING: {
		uint64_t resume = walspool_resume(&p->wal);
		/* Resuming, the stream goes on exactly where the spool ends (mid
		 * segment after the server restarted under a live daemon); a new
		 * spool starts at a segment's start, as the slot gives it. */
		if (p->state != PGS_STARTING || m->u.pos.tli != p->tli ||
		    (resume ? m->u.pos.lsn != resume : m->u.pos.lsn % p->segsize != 0)) {
			snprintf(why, sizeof(why), "pgstream streams timeline %u from %s, not from where the spool ends",
				 m->u.pos.tli, lsn_str(m->u.pos.lsn, a));
			pgchild_end(c, why);
			return;
		}
		if (pgwriter_put(&p->wal.w, WS_BEGIN, p->tli, m->u.pos.lsn, 0, NULL, NULL, 0) < 0) {
			pgchild_end(c, "cannot queue the start of the stream");
			return;
		}
		p->expect = m->u.pos.lsn;
		if (m->u.pos.lsn > p->received)
			p->received = m->u.pos.lsn;
		p->state = PGS_STREAMING;
		p->last_error[0] = 0;
		pgsrc_log(p, LOG_INFO, "streaming timeline %u from %s (system %" PRIu64 ", PostgreSQL %u.%u)", p->tli,
			  lsn_str(m->u.pos.lsn, a), p->system_id, p->server_version / 10000,
			  p->server_version % 10000);
		base_check(p);
		break;
	}
	case PGP_WAL: {
		uint64_t now = clock_now_usec();
		if (p->state != PGS_STREAMING || m->u.wal.tli != p->tli || m->u.wal.lsn != p->expect) {
			snprintf(why, sizeof(why), "pgstream sent WAL of timeline %u at %s, expected %s", m->u.wal.tli,
				 lsn_str(m->u.wal.lsn, a), lsn_str(p->expect, b));
			pgchild_end(c, why);
			return;
		}
		if (pgwriter_put(&p->wal.w, WS_DATA, p->tli, m->u.wal.lsn, 0, NULL, m->u.wal.data, m->u.wal.len) < 0 ||
		    (p->cfg->remote && walspool_tail_put(&p->wal, m->u.wal.lsn, m->u.wal.data, m->u.wal.len) < 0)) {
			pgchild_end(c, "cannot queue WAL for the spool");
			return;
		}
		p->expect += m->u.wal.len;
		if (p->expect > p->received)
			p->received = p->expect;
		/* The primary has at least this: a floor for its position
		 * between keepalives (the slot's retention, in status). */
		if (p->expect > p->server_end) {
			p->server_end = p->expect;
			p->server_end_time = now;
		}
		/* When WAL arrived, coalesced to 10 ms: the lag in seconds. */
		if (p->ring_n && now - p->ring[(p->ring_head + 255) % 256].time < 10000)
			p->ring[(p->ring_head + 255) % 256].lsn = p->expect;
		else {
			p->ring[p->ring_head] = (typeof(p->ring[0])){ p->expect, now };
			p->ring_head = (p->ring_head + 1) % 256;
			if (p->ring_n < 256)
				p->ring_n++;
		}
		/* Remote: cut at once from the tail in memory, the spool's
		 * write and fdatasync run meanwhile (pgsource_cut_end). */
		if (p->cfg->remote && p->s && !p->s->g->retired && pgsource_cut_end(p) > p->cut_end)
			p->d->wal_ready(p->s->g, true);
		break;
	}
	case PGP_KEEPALIVE:
		if (m->u.keepalive.wal_end >= p->server_end) {
			p->server_end = m->u.keepalive.wal_end;
			p->server_end_time = clock_now_usec();
		}
		break;
	case PGP_TIMELINE:
		snprintf(why, sizeof(why), "the server ended timeline %u at %s and goes on with timeline %u (a "
			 "promotion)", m->u.timeline.tli, lsn_str(m->u.timeline.end, a), m->u.timeline.next_tli);
		pgchild_end(c, why);
		break;
	case PGP_HISTORY: {
		/* Kept for the targets: a base of this timeline carries it
		 * (pgship.c); the stream sends it each time it starts. */
		const struct pgp_msg *h = m;
		char *n;
		if (h->u.history.len > PGWAL_HISTORY_MAX || !(n = malloc(h->u.history.len + 1))) {
			pgchild_end(c, "pgstream sent a history file too large to keep");
			return;
		}
		memcpy(n, h->u.history.data, h->u.history.len);
		free(p->hist);
		p->hist = n;
		p->hist_len = h->u.history.len;
		p->hist_tli = h->u.history.tli;
		break;
	}
	case PGP_ERROR:
		break;
	default:
		pgchild_end(c, "pgstream sent base backup frames on the stream");
		break;
	}
}

/* The stream is read while the spool's writer has room; in remote mode also
 * while the tail in memory holds everything past what the writer has put in
 * the files (walspool_ready): WAL is cut from the tail before the files have
 * it, and a tail that wrapped past them would move the cut's end back and
 * leave epochs already cut unreadable (found by review).  The writer's
 * wake-up when its queue drains (on_wal_written) resumes the stream. */
static bool stream_room(struct pgchild *c)
{
	struct walspool *ws = &c->p->wal;

	return pgwriter_room(&ws->w, PGP_MAX_DATA) && (!c->p->cfg->remote || walspool_tail_room(ws, PGP_MAX_DATA));
}

static void on_stream_exit(struct pgchild *c, const siginfo_t *si)
{
	struct pgsrc *p = c->p;
	char msg[1000];

	p->stream = NULL;
	pgchild_describe(c, si, msg, sizeof(msg));
	if (c->error_code == PGE_WAL_LOST)
		p->reset_pending = true;
	if (!p->d->stopping && p->refs) {
		set_error(p, msg);
		pgsrc_log(p, LOG_ERR, "the stream from PostgreSQL stopped: %s", msg);
		/* A stream that ran for a while starts its backoff afresh. */
		if (clock_mono_usec() - p->started_mono > 60000000ULL)
			p->failures = 0;
		retry_arm(p);
	} else
		p->state = PGS_BACKOFF;
	if (p->base)
		pgchild_end(p->base, "the stream stopped");
}

static void stream_start(struct pgsrc *p)
{
	int r;

	if (p->stream || p->d->stopping)
		return;
	if ((r = pgwriter_status(&p->wal.w, NULL, 0, NULL)) < 0)
		pgwriter_clear(&p->wal.w); /* the spool failed before: try again */
	if ((r = pgchild_spawn(p, PGC_STREAM, &p->stream)) < 0) {
		set_error(p, err_msg(r));
		pgsrc_log(p, LOG_ERR, "%s", err_msg(r));
		retry_arm(p);
		return;
	}
	p->stream->frame = on_stream_frame;
	p->stream->room = stream_room;
	p->stream->exited = on_stream_exit;
	p->state = PGS_CONNECTING;
	p->started_mono = clock_mono_usec();
}

/* ---- the spool's writers tell the loop ---- */

static void waits_check(struct pgsrc *p)
{
	uint64_t durable = walspool_durable(&p->wal);

	for (struct pgwait **w = &p->waits; *w;) {
		struct pgwait *x = *w;
		if (x->lsn <= durable && p->state == PGS_STREAMING) {
			*w = x->next;
			x->done(x->ctx, 0, x->lsn);
			free(x);
		} else
			w = &x->next;
	}
}

static int on_wal_written(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct pgsrc *p = userdata;
	uint64_t v, done;
	char msg[600];

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pgsrc_log(p, LOG_ERR, "spool eventfd: %s", strerror(errno));
	if (pgwriter_status(&p->wal.w, msg, sizeof(msg), &done) < 0) {
		if (p->stream && !p->stream->ending) {
			set_error(p, msg);
			pgchild_end(p->stream, msg);
		}
		return 0;
	}
	if (p->state == PGS_PREPARING && done >= p->ops_wait) {
		p->received = walspool_durable(&p->wal);
		send_start(p);
	}
	report_flush(p);
	waits_check(p);
	if (p->s && !p->s->g->retired && pgsource_cut_end(p) > p->cut_end)
		p->d->wal_ready(p->s->g, p->cfg->remote || pgsource_cut_end(p) - p->cut_end >= PG_WAL_CUT_BYTES);
	if (p->stream)
		pgchild_resume(p->stream);
	return 0;
}

/* ---- base backups ---- */

static void base_failed(struct pgsrc *p, const char *msg)
{
	snprintf(p->base_error, sizeof(p->base_error), "%s", msg);
	p->base_failures++;
	p->base_next_mono = clock_mono_usec() + PG_BASE_BACKOFF_USEC * (p->base_failures > 10 ? 10 : p->base_failures);
	pgsrc_log(p, LOG_ERR, "base backup failed: %s; trying again in %u s", msg,
		  (unsigned)(PG_BASE_BACKOFF_USEC * (p->base_failures > 10 ? 10 : p->base_failures) / 1000000));
	daemon_event(p->d, "error", p->group, "", 0, msg);
	p->base_writing = false;
	pgwriter_clear(&p->bases.w);
	pgwriter_put(&p->bases.w, PB_ABORT, 0, 0, 0, NULL, NULL, 0);
}

static void on_base_frame(struct pgchild *c, const struct pgp_msg *m)
{
	struct pgsrc *p = c->p;
	struct pgwriter *w = &p->bases.w;
	int r = 0;

	if (m->type == PGP_HELLO) {
		if (m->u.hello.system_id != p->system_id) {
			pgchild_end(c, "the base backup connection reached another cluster than the stream's");
			return;
		}
		if (pgpipe_put_base_backup(&c->io.out, !strcmp(p->cfg->checkpoint, "fast") ? PGP_BBF_FAST : 0,
					   "bascule") < 0)
			pgchild_end(c, "cannot queue BASE_BACKUP");
		pgchild_send(c);
		return;
	}
	if (m->type == PGP_ERROR)
		return;
	if (m->type < PGP_BB_START || m->type > PGP_BB_END || pgpipe_bb_order(&c->order, m->type) < 0) {
		pgchild_end(c, "pgstream sent the base backup out of order");
		return;
	}
	switch (m->type) {
	case PGP_BB_START:
		if (m->u.bb_start.tli != p->tli) {
			pgchild_end(c, "the base backup is of another timeline than the stream");
			return;
		}
		p->base_bytes = 0;
		r = pgwriter_put(w, PB_START, m->u.bb_start.tli, m->u.bb_start.lsn, p->system_id, NULL, NULL, 0);
		break;
	case PGP_BB_ARCHIVE:
		r = pgwriter_put(w, PB_ARCHIVE, 0, 0, 0, m->u.archive.name, NULL, 0);
		break;
	case PGP_BB_MANIFEST:
		r = pgwriter_put(w, PB_MANIFEST, 0, 0, 0, NULL, NULL, 0);
		break;
	case PGP_BB_DATA:
		p->base_bytes += m->u.data.len;
		r = pgwriter_put(w, PB_DATA, 0, 0, 0, NULL, m->u.data.data, m->u.data.len);
		break;
	case PGP_BB_PROGRESS:
		break;
	case PGP_BB_END:
		r = pgwriter_put(w, PB_END, m->u.bb_end.tli, m->u.bb_end.lsn, 0, NULL, NULL, 0);
		/* Done with the connection: the writer completes the base, and
		 * no other starts meanwhile (the child may exit first). */
		pgchild_end(c, NULL);
		if (r < 0) {
			/* The child's exit is that of a complete base: the
			 * failure is said here, with its backoff. */
			char msg[200];
			snprintf(msg, sizeof(msg), "cannot queue the end of the base backup for the spool: %s",
				 strerror(-r));
			base_failed(p, msg);
			return;
		}
		p->base_writing = true;
		break;
	}
	if (r < 0)
		pgchild_end(c, "cannot queue the base backup for the spool");
}

static bool base_room(struct pgchild *c)
{
	return pgwriter_room(&c->p->bases.w, PGP_MAX_DATA);
}

static void on_base_exit(struct pgchild *c, const siginfo_t *si)
{
	struct pgsrc *p = c->p;
	char msg[1000];

	p->base = NULL;
	if (c->order.stage == 4)
		return; /* complete: the writer says when it is durable */
	pgchild_describe(c, si, msg, sizeof(msg));
	if (p->refs && !p->d->stopping)
		base_failed(p, msg);
}

static int on_base_written(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct pgsrc *p = userdata;
	char msg[600], a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN];
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pgsrc_log(p, LOG_ERR, "base eventfd: %s", strerror(errno));
	if (pgwriter_status(&p->bases.w, msg, sizeof(msg), NULL) < 0) {
		if (p->base)
			pgchild_end(p->base, NULL);
		base_failed(p, msg);
		return 0;
	}
	if (p->base)
		pgchild_resume(p->base);
	if (pgbases_collect(&p->bases)) {
		const struct pgbase *B = &p->bases.newest;
		p->base_wanted = p->base_writing = false;
		p->base_failures = 0;
		p->base_error[0] = 0;
		p->bases_taken++;
		pgsrc_log(p, LOG_INFO, "base backup %s to %s of timeline %u complete: %u files, %.1f MiB in %.1f s",
			  lsn_str(B->id, a), lsn_str(B->end_lsn, b), B->tli, B->n_files, (double)B->bytes / 1048576.0,
			  (double)(clock_mono_usec() - p->base_started) / 1e6);
		daemon_event(p->d, "base", p->group, "", 0, p->name);
		/* Targets waiting for a base get it with the next epoch. */
		if (p->s && !p->s->g->retired)
			p->d->wal_ready(p->s->g, true);
	}
	return 0;
}

static void want_base(struct pgsrc *p, const char *why)
{
	if (p->base_wanted || p->base)
		return;
	p->base_wanted = true;
	snprintf(p->base_why, sizeof(p->base_why), "%s", why);
}

void pgsource_want_base(struct pgsrc *p, const char *why)
{
	want_base(p, why);
	base_check(p);
}

/* Start a base backup if one is wanted and may run now. */
static void base_check(struct pgsrc *p)
{
	uint64_t now = clock_now_usec(), durable = walspool_durable(&p->wal);
	const struct pgbase *B = &p->bases.newest;
	int r;

	if (p->base || p->base_writing || p->state != PGS_STREAMING || p->d->stopping)
		return;
	if (!p->bases.have || B->system_id != p->system_id || B->tli != p->tli)
		want_base(p, "no base backup yet");
	else if (now - B->time >= p->cfg->base_interval)
		want_base(p, "base_interval");
	else if (durable > B->id && durable - pgwal_seg_start(B->id, p->segsize) > p->cfg->wal_spool_max / 2)
		want_base(p, "the WAL since the newest base backup passed half of wal_spool_max");
	if (!p->base_wanted || p->base || clock_mono_usec() < p->base_next_mono)
		return;
	if ((r = pgchild_spawn(p, PGC_BASE, &p->base)) < 0) {
		base_failed(p, err_msg(r));
		return;
	}
	p->base->frame = on_base_frame;
	p->base->room = base_room;
	p->base->exited = on_base_exit;
	p->base_started = clock_mono_usec();
	pgsrc_log(p, LOG_INFO, "taking a base backup (%s)", p->base_why);
}

/* ---- the spool's bounds ---- */

uint64_t pgsource_needed(struct pgsrc *p)
{
	struct daemon *d = p->d;
	uint64_t low = UINT64_MAX, start = walspool_start(&p->wal);

	if (!p->s || p->s->g->retired)
		return UINT64_MAX;
	for (uint32_t i = 0; i < d->n_targets; i++) {
		const struct tpg *tp = &d->targets[i]->groups[p->s->g->idx].pg[p->s->idx];
		/* Replicas and vaults alike: each keeps its own cursor in the spool. */
		if (!tp->known || tp->acked_system != p->system_id ||
		    tp->acked_tli != p->tli || tp->acked_lsn < start)
			continue;
		if (tp->acked_lsn < low)
			low = tp->acked_lsn;
	}
	return low;
}

static void trim(struct pgsrc *p)
{
	struct walspool *ws = &p->wal;
	uint64_t start = walspool_start(ws), bytes = walspool_bytes(ws), cap = p->cfg->wal_spool_max;
	uint64_t floor, keep, to;
	char a[PGWAL_LSN_LEN];

	if (!ws->segsize || !p->bases.have || p->bases.newest.system_id != ws->system_id ||
	    p->bases.newest.tli != ws->tli)
		return; /* until there is a base, every byte since the stream began is needed */
	floor = pgwal_seg_start(p->bases.newest.id, ws->segsize);
	keep = pgsource_needed(p);
	to = keep < floor ? keep : floor;
	if (bytes > cap) {
		/* Past the cap: the oldest segments go, whoever needs them. */
		uint64_t over = start + (bytes - cap + ws->segsize - 1) / ws->segsize * ws->segsize;
		if (over > floor)
			over = floor;
		if (over > to)
			to = over;
	}
	if (pgwal_seg_start(to, ws->segsize) <= start)
		return;
	if (keep < to) {
		struct daemon *d = p->d;
		for (uint32_t i = 0; i < d->n_targets; i++) {
			struct target *t = d->targets[i];
			struct tpg *tp = &t->groups[p->s->g->idx].pg[p->s->idx];
			if (!tp->known || tp->acked_lsn >= to || tp->behind_logged)
				continue;
			tp->behind_logged = true;
			target_log(t, LOG_WARNING, "fell behind the WAL spool of %s/%s (wal_spool_max %" PRIu64 " MiB "
				   "reached): the WAL it needs from %s is dropped; it will get the newest base backup",
				   p->group, p->name, cap >> 20, lsn_str(tp->acked_lsn, a));
			daemon_event(d, "error", p->group, t->cfg->name, 0, "behind the WAL spool: a new base backup");
		}
	}
	walspool_trim(ws, to);
}

void pgsources_tick(struct daemon *d)
{
	for (struct pgsrc *p = d->pgsrcs; p; p = p->next) {
		if (!p->refs)
			continue;
		base_check(p);
		trim(p);
	}
}

/* ---- `bascule sync` ---- */

static void on_probe_frame(struct pgchild *c, const struct pgp_msg *m)
{
	struct pgsrc *p = c->p;
	struct pgwait *w;

	if (m->type != PGP_HELLO)
		return;
	/* IDENTIFY_SYSTEM's xlogpos: the primary's flush position now. */
	if (c->done && m->u.hello.system_id != p->system_id && p->system_id) {
		err_set(EPROTO, "source %s/%s: the sync probe reached another cluster than the stream's",
			p->group, p->name);
		c->done(c->ctx, -EPROTO, 0);
	} else if (c->done) {
		if (!(w = calloc(1, sizeof(*w)))) {
			c->done(c->ctx, -ENOMEM, 0);
		} else {
			*w = (struct pgwait){ m->u.hello.xlogpos, c->done, c->ctx, p->waits };
			p->waits = w;
		}
	}
	c->done = NULL;
	pgchild_end(c, NULL);
	waits_check(p);
}

static void on_probe_exit(struct pgchild *c, const siginfo_t *si)
{
	struct pgsrc *p = c->p;
	char msg[1000];

	for (struct pgchild **x = &p->probes; *x; x = &(*x)->next)
		if (*x == c) {
			*x = c->next;
			break;
		}
	p->n_probes--;
	if (c->done) {
		pgchild_describe(c, si, msg, sizeof(msg));
		err_set(EIO, "source %s/%s: cannot learn the primary's WAL position: %s", p->group, p->name, msg);
		c->done(c->ctx, -EIO, 0);
	}
}

int pgsource_sync(struct pgsrc *p, void (*done)(void *ctx, int r, uint64_t lsn), void *ctx)
{
	struct pgchild *c;
	int r;

	if (p->n_probes >= PG_PROBES_MAX)
		return err_set(EBUSY, "source %s/%s: %d syncs already wait for the primary's position: try again",
			       p->group, p->name, PG_PROBES_MAX);
	if ((r = pgchild_spawn(p, PGC_PROBE, &c)) < 0)
		return r;
	c->frame = on_probe_frame;
	c->exited = on_probe_exit;
	c->done = done;
	c->ctx = ctx;
	c->next = p->probes;
	p->probes = c;
	p->n_probes++;
	return 0;
}

void pgsources_forget(struct daemon *d, void *ctx)
{
	for (struct pgsrc *p = d->pgsrcs; p; p = p->next) {
		for (struct pgchild *c = p->probes; c; c = c->next)
			if (c->ctx == ctx)
				c->done = NULL;
		for (struct pgwait **w = &p->waits; *w;) {
			struct pgwait *x = *w;
			if (x->ctx == ctx) {
				*w = x->next;
				free(x);
			} else
				w = &x->next;
		}
	}
}

/* ---- figures ---- */

double pgsource_lag_seconds(const struct pgsrc *p, uint64_t lsn, uint64_t now)
{
	uint64_t first = 0;

	if (lsn >= p->received || !p->ring_n)
		return 0;
	/* The oldest sample past LSN: WAL after it had arrived then. */
	for (unsigned i = 0; i < p->ring_n; i++) {
		unsigned k = (p->ring_head + 256 - p->ring_n + i) % 256;
		if (p->ring[k].lsn > lsn) {
			first = p->ring[k].time;
			break;
		}
	}
	if (!first)
		return 0;
	return now > first ? (double)(now - first) / 1e6 : 0;
}

bool pgsource_current(struct pgsrc *p)
{
	return p->state == PGS_STREAMING && walspool_durable(&p->wal) >= p->received;
}

uint64_t pgsource_cut_end(struct pgsrc *p)
{
	return p->cfg->remote ? walspool_ready(&p->wal) : walspool_durable(&p->wal);
}

const char *pgsource_state_name(const struct pgsrc *p)
{
	switch (p->state) {
	case PGS_STREAMING: return "streaming";
	case PGS_CONNECTING: return "connecting";
	case PGS_PREPARING:
	case PGS_STARTING: return "starting";
	default: return p->last_error[0] ? "error" : "offline";
	}
}

/* ---- life ---- */

static void pgsrc_free(struct pgsrc *p)
{
	struct daemon *d = p->d;

	for (struct pgsrc **x = &d->pgsrcs; *x; x = &(*x)->next)
		if (*x == p) {
			*x = p->next;
			break;
		}
	pgchild_release(p->stream);
	pgchild_release(p->base);
	while (p->probes) {
		struct pgchild *c = p->probes;
		p->probes = c->next;
		pgchild_release(c);
	}
	while (p->waits) {
		struct pgwait *w = p->waits;
		p->waits = w->next;
		free(w);
	}
	p->retry = sd_event_source_disable_unref(p->retry);
	p->wal_src = sd_event_source_disable_unref(p->wal_src);
	p->base_src = sd_event_source_disable_unref(p->base_src);
	walspool_close(&p->wal);
	pgbases_close(&p->bases);
	sodium_memzero(p->wal_key, sizeof(p->wal_key));
	free(p->hist);
	free(p);
}

/* Connection settings changed by a reload: a new stream. */
static bool same_connection(const struct cfg_source *a, const struct cfg_source *b)
{
	return !strcmp(a->conninfo, b->conninfo) && !strcmp(a->slot, b->slot) &&
	       !strcmp(a->application_name, b->application_name);
}

int pgsource_get(struct daemon *d, const char *group, const struct cfg_source *cfg, struct pgsrc **ret)
{
	struct pgsrc *p;
	char path[4400];
	int r;

	for (p = d->pgsrcs; p; p = p->next)
		if (!strcmp(p->group, group) && !strcmp(p->name, cfg->name))
			break;
	if (p) {
		bool restart = !same_connection(p->cfg, cfg);
		p->cfg = cfg;
		p->refs++;
		if (restart && p->stream) {
			pgsrc_log(p, LOG_INFO, "reload: new connection settings, the stream starts again");
			pgchild_end(p->stream, "reload: new connection settings");
			p->failures = 0;
		}
		*ret = p;
		return 0;
	}
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->d = d;
	p->cfg = cfg;
	p->refs = 1;
	p->wal.dirfd = -1;
	snprintf(p->group, sizeof(p->group), "%s", group);
	snprintf(p->name, sizeof(p->name), "%s", cfg->name);
	snprintf(p->dir, sizeof(p->dir), "%s/groups/%s/pg-%s", d->cfg->state_dir, group, cfg->name);
	pgdigest_wal_key(d->key, group, cfg->name, p->wal_key);
	snprintf(path, sizeof(path), "%s/wal", p->dir);
	if ((r = walspool_open(&p->wal, path)) < 0) {
		free(p);
		return r;
	}
	snprintf(path, sizeof(path), "%s/base", p->dir);
	if ((r = pgbases_open(&p->bases, path, p->wal.system_id)) < 0) {
		walspool_close(&p->wal);
		free(p);
		return r;
	}
	p->system_id = p->wal.system_id;
	p->tli = p->wal.tli;
	p->segsize = p->wal.segsize;
	p->received = walspool_durable(&p->wal);
	p->next = d->pgsrcs;
	d->pgsrcs = p;
	if ((r = sd_event_add_io(d->ev, &p->wal_src, p->wal.w.efd, EPOLLIN, on_wal_written, p)) < 0 ||
	    (r = sd_event_add_io(d->ev, &p->base_src, p->bases.w.efd, EPOLLIN, on_base_written, p)) < 0) {
		r = err_set(-r, "cannot watch the spool of %s/%s: %s", group, cfg->name, strerror(-r));
		pgsrc_free(p);
		return r;
	}
	stream_start(p);
	*ret = p;
	return 0;
}

void pgsource_put(struct pgsrc *p)
{
	if (!p || --p->refs)
		return;
	pgsrc_free(p);
}

void pgsources_stop(struct daemon *d)
{
	for (struct pgsrc *p = d->pgsrcs; p; p = p->next) {
		p->retry = sd_event_source_disable_unref(p->retry);
		pgchild_end(p->stream, NULL);
		pgchild_end(p->base, NULL);
		for (struct pgchild *c = p->probes; c; c = c->next)
			pgchild_end(c, NULL);
	}
}
