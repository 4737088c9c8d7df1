/* control.c - the daemon's status and control socket (docs/control.md).
 *
 * One JSON object per line in, one per line out.  Every request is bounded in
 * size (64 KiB) and time (5 s): a client that sends more, or nothing, is
 * dropped without stalling the loop.  Read verbs (status, metrics, history)
 * are open to whoever can connect (mode 0660, group monitor_group); control
 * verbs (sync, pause, resume, reload) to root and control_group only,
 * checked with the peer's credentials (SO_PEERCRED).
 *
 * At most CTL_MAX_CLIENTS are served at once: a new client beyond that
 * (or one that finds the descriptor table full) takes the place of the
 * oldest that has not yet sent its request, so a flood of held connections
 * costs its senders their connections, not the daemon its loop.  When no
 * descriptor can be had at all, a spare one is given up to accept and shed
 * the connection; failing that the listener pauses for 100 ms (a level-
 * triggered listener that cannot accept would otherwise fire forever). */
#include "daemon.h"
#include "creds.h"
#include "ctl.h"
#include "spool.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "pgsource.h"
#include "pgwal.h"
#include "units.h"
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_MAX_CLIENTS 64
#define CTL_ACCEPT_BATCH 16         /* accepts per event: clients get read in between */
#define CTL_TIMEOUT_USEC 5000000
#define CTL_PAUSE_USEC 100000
#define CTL_SYNC_USEC 120000000     /* sync: the primary's WAL position reached in the spool */

struct ctl_client {
	struct daemon *d;
	int fd;
	sd_event_source *io, *timer;
	bool may_control;
	bool waiting;                  /* its reload applies when the running cut ends, or its
					* sync waits for the WAL of postgres sources */
	unsigned sync_pending;         /* postgres sources whose WAL the sync still waits for */
	bool sync_all;                 /* sync: every group, else SYNC_GROUP */
	char sync_group[NAME_MAX_LEN + 1];
	uid_t uid;
	struct ctl_client *prev, *next; /* d->clients, oldest first */
	uint64_t since;                 /* mono usec: accepted */
	char buf[CTL_MAX_REQUEST];
	size_t len;
};

static void client_free(struct ctl_client *c)
{
	struct daemon *d = c->d;

	if (c->waiting) {
		daemon_reload_forget(d, c);
		pgsources_forget(d, c);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		d->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		d->clients_tail = c->prev;
	d->n_clients--;
	sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->timer);
	close(c->fd);
	free(c);
}

/* Drop the oldest client that has not sent a whole request, preferring
 * one with nothing in its socket either (a request not read yet is asked:
 * a flood of connections accepted before the loop read `bascule status`'s
 * line dropped it, CI); false if every client is busy (waiting for a
 * reload).  WHY goes to the log, at most every 10 s. */
#define CTL_EVICT_YOUNG_USEC 200000
static bool client_evict(struct daemon *d, const char *why)
{
	static uint64_t last_warn;
	uint64_t now = clock_mono_usec();
	struct ctl_client *victim = NULL;

	/* first one held for a while (not one of this burst of accepts, whose
	 * request may not be written yet), then any silent one */
	for (struct ctl_client *c = d->clients; c && !victim; c = c->next) {
		int pending = 0;
		if (!c->waiting && now - c->since >= CTL_EVICT_YOUNG_USEC &&
		    (ioctl(c->fd, FIONREAD, &pending) < 0 || pending == 0))
			victim = c;
	}
	for (struct ctl_client *c = d->clients; c && !victim; c = c->next) {
		int pending = 0;
		if (!c->waiting && (ioctl(c->fd, FIONREAD, &pending) < 0 || pending == 0))
			victim = c;
	}
	for (struct ctl_client *c = d->clients; c && !victim; c = c->next)
		if (!c->waiting)
			victim = c;
	if (!victim)
		return false;
	if (now - last_warn > 10000000) {
		log_warn("control: %s: dropping the oldest client that has not asked anything yet (uid %u) for a "
			 "new one", why, (unsigned)victim->uid);
		last_warn = now;
	}
	client_free(victim);
	return true;
}

static json_t *lsn_json(uint64_t lsn)
{
	char buf[PGWAL_LSN_LEN];

	return json_string(pgwal_lsn_format(lsn, buf));
}

/* A postgres source: its stream, spool and base backups. */
static json_t *pgsource_json(struct pgsrc *p, uint64_t now)
{
	const struct pgbase *B = &p->bases.newest;
	json_t *base = json_null();

	if (p->bases.have)
		base = json_pack("{s:o, s:o, s:i, s:f, s:f, s:I}", "id", lsn_json(B->id), "end_lsn", lsn_json(B->end_lsn),
				 "timeline", (int)B->tli, "time", units_round((double)B->time / 1e6, UNITS_UNIXTIME),
				 "age_seconds", units_round((double)(now - B->time) / 1e6, UNITS_SECONDS), "bytes",
				 (json_int_t)B->bytes);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:o, s:o, s:o, s:o, s:I, s:o, s:I, s:I, s:o, s:o, s:b, "
			 "s:I, s:s, s:I, s:s, s:f}",
			 "state", pgsource_state_name(p), "slot", p->cfg->slot, "application_name",
			 p->cfg->application_name, "synchronous", p->cfg->synchronous, "last_error", p->last_error,
			 "system_id", (json_int_t)p->system_id, "timeline", (int)p->tli,
			 "received_lsn", lsn_json(p->received), "durable_lsn", lsn_json(walspool_durable(&p->wal)),
			 "flushed_lsn", lsn_json(p->reported), "primary_lsn", lsn_json(p->server_end),
			 "slot_retained_bytes", (json_int_t)(p->server_end > p->reported && p->reported
								? p->server_end - p->reported : 0),
			 "spool_start_lsn", lsn_json(walspool_start(&p->wal)),
			 "spool_bytes", (json_int_t)walspool_bytes(&p->wal),
			 "wal_spool_max", (json_int_t)p->cfg->wal_spool_max,
			 "epoch_lsn", p->epoch_valid ? lsn_json(p->epoch_end) : json_null(),
			 "base", base, "base_running", p->base != NULL,
			 "base_bytes_done", (json_int_t)(p->base ? p->base_bytes : 0), "base_error", p->base_error,
			 "bases_taken", (json_int_t)p->bases_taken, "base_wanted", p->base_wanted ? p->base_why : "",
			 "last_error_time", units_round((double)p->last_error_time / 1e6, UNITS_UNIXTIME));
}

/* Where target T's copy of postgres source S of group K stands. */
static json_t *tpg_json(struct target *t, uint32_t k, uint32_t s, uint64_t now)
{
	struct group *g = t->d->groups[k];
	struct pgsrc *p = g->sources[s].pg;
	const struct tpg *tp = &t->groups[k].pg[s];
	bool valid = tp->known && tp->acked_system == p->system_id && tp->acked_tli == p->tli && tp->acked_lsn;
	bool behind = valid && tp->acked_lsn < walspool_start(&p->wal);

	return json_pack("{s:o, s:o, s:I, s:f, s:b, s:b, s:I}", "acked_lsn", valid ? lsn_json(tp->acked_lsn) : json_null(),
			 "sent_lsn", tp->known && tp->base_id ? lsn_json(tp->end_lsn) : json_null(),
			 "lag_bytes", (json_int_t)(!valid ? -1 : p->received > tp->acked_lsn ? (int64_t)(p->received - tp->acked_lsn) : 0),
			 "lag_seconds", units_round(valid ? pgsource_lag_seconds(p, tp->acked_lsn, now) : -1, UNITS_SECONDS),
			 "needs_base", tp->needs_base || behind, "behind_spool", behind,
			 "bases_received", (json_int_t)tp->bases_sent);
}

static json_t *status_json(struct daemon *d)
{
	json_t *groups = json_array(), *targets = json_array(), *loop, *cuts;
	uint64_t now = clock_now_usec(), mono = clock_mono_usec();

	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = d->groups[i];
		json_t *srcs = json_array();
		for (uint32_t s = 0; s < g->n_sources; s++)
			if (g->sources[s].pg)
				json_array_append_new(srcs, json_pack("{s:s, s:s, s:I, s:o}", "name",
								      g->sources[s].cfg->name, "type", "postgres",
								      "size", (json_int_t)0, "postgres",
								      pgsource_json(g->sources[s].pg, clock_now_usec())));
			else {
				json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "name", g->sources[s].cfg->name,
						      "type", "disk", "disk", g->sources[s].cfg->disk, "size",
						      (json_int_t)g->sources[s].size, "scans_full",
						      (json_int_t)g->sources[s].scans_full, "scans_unchanged",
						      (json_int_t)g->sources[s].scans_hinted);
				const struct qemusrc_stats *q = &g->sources[s].qstats;
				if (g->sources[s].qemu) /* its verifying full reads (docs/qemu.md) */
					json_object_set_new(
						o, "qemu",
						json_pack("{s:I, s:I, s:I, s:f}", "verify_reads", (json_int_t)q->verify_reads,
							  "missed_writes", (json_int_t)q->missed_writes, "missed_cuts",
							  (json_int_t)q->missed_cuts, "verified_time",
							  units_round((double)q->verified / 1e6, UNITS_UNIXTIME)));
				json_array_append_new(srcs, o);
			}
		json_array_append_new(groups,
				      json_pack("{s:s, s:I, s:f, s:f, s:I, s:b, s:b, s:b, s:b, s:f, s:b, s:f, s:o}", "name",
						g->name, "last_cut", (json_int_t)g->last_cut, "cut_time",
						units_round((double)g->cut_time / 1e6, UNITS_UNIXTIME), "verified_time",
						units_round((double)g->verified_time / 1e6, UNITS_UNIXTIME), "scans",
						(json_int_t)g->scans, "consistent", g->consistent, "cutting", g->cutting,
						"cut_timed_out", epoch_cut_timed_out(g), "paused", g->paused, "scan_seconds",
						units_round((double)g->last_scan_usec / 1e6, UNITS_SECONDS),
						"waiting", g->cut_waiting, "waiting_seconds",
						units_round(g->cut_waiting ? (double)(mono - g->wait_since) / 1e6 : 0,
							    UNITS_SECONDS),
						"sources", srcs));
	}
	/* Disk cuts across groups (max_concurrent_cuts; docs/control.md). */
	cuts = json_pack("{s:i, s:i, s:i, s:i, s:I, s:f, s:I}", "running", (int)epoch_cuts_running(d), "waiting",
			 (int)epoch_cuts_waiting(d), "max_concurrent", (int)d->cfg->max_concurrent_cuts,
			 "peak_running", (int)d->cuts_peak, "waited", (json_int_t)d->cuts_waited,
			 "max_wait_seconds", units_round((double)d->cut_wait_usec / 1e6, UNITS_SECONDS),
			 "timed_out", (json_int_t)d->cuts_timed_out);
	for (uint32_t i = 0; i < d->n_targets; i++) {
		struct target *t = d->targets[i];
		json_t *tg = json_object();
		for (uint32_t k = 0; k < d->n_groups; k++) {
			json_t *one = json_pack("{s:I, s:f}", "acked", (json_int_t)t->groups[k].acked, "lag_seconds",
						units_round(target_lag_seconds(t, k, now), UNITS_SECONDS));
			if (d->groups[k]->n_pg) {
				json_t *pg = json_object();
				for (uint32_t s = 0; s < d->groups[k]->n_sources; s++)
					if (d->groups[k]->sources[s].pg)
						json_object_set_new(pg, d->groups[k]->sources[s].cfg->name,
								    tpg_json(t, k, s, now));
				json_object_set_new(one, "postgres", pg);
			}
			json_object_set_new(tg, d->groups[k]->name, one);
		}
		json_array_append_new(
			targets,
			json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:f, s:I, s:i, s:o}", "name",
				  t->cfg->name, "type", t->cfg->kind == TARGET_VAULT ? "vault" : "replica", "state", target_state_name(t), "last_error", t->last_error,
				  "last_error_time", units_round((double)t->last_error_time / 1e6, UNITS_UNIXTIME),
				  "bytes_sent",
				  (json_int_t)t->bytes_sent, "raw_bytes_sent", (json_int_t)t->raw_sent,
				  "delta_bytes_sent", (json_int_t)t->delta_sent, "errors", (json_int_t)t->errors,
				  "throughput_bytes_per_second", units_round(t->rate, UNITS_ESTIMATE), "pending_bytes",
				  (json_int_t)target_pending(t), "in_flight", (int)t->in_flight, "groups", tg));
	}
	/* The loop's own figures (struct loop_stats): a dispatch that stalls
	 * it holds up every target and every client. */
	loop = json_pack("{s:I, s:f, s:f, s:I, s:i}", "dispatches", (json_int_t)d->loop.dispatches,
			 "max_stall_seconds", units_round((double)d->loop.max_usec / 1e6, UNITS_SECONDS),
			 "max_wall_seconds", units_round((double)d->loop.max_wall_usec / 1e6, UNITS_SECONDS),
			 "stalls_over_100ms", (json_int_t)d->loop.over_100ms, "control_clients",
			 (int)d->n_clients);
	return json_pack("{s:b, s:o, s:o, s:o, s:o}", "ok", 1, "groups", groups, "targets", targets, "cuts", cuts,
			 "loop", loop);
}

static json_t *history_json(struct daemon *d)
{
	json_t *a = json_array();
	uint64_t first = d->n_history > HISTORY_LEN ? d->n_history - HISTORY_LEN : 0;

	for (uint64_t i = first; i < d->n_history; i++) {
		struct event_rec *e = &d->history[i % HISTORY_LEN];
		json_array_append_new(a, json_pack("{s:f, s:s, s:s, s:s, s:I, s:s}", "time",
						   units_round((double)e->time / 1e6, UNITS_UNIXTIME), "kind", e->kind, "group", e->group,
						   "target", e->target, "epoch", (json_int_t)e->epoch, "text",
						   e->text));
	}
	return json_pack("{s:b, s:o}", "ok", 1, "events", a);
}

/* A refusal with the exit code `bascule` should give for it (docs/control.md). */
static json_t *refuse_code(int code, const char *why)
{
	return json_pack("{s:b, s:s, s:i}", "ok", 0, "error", why, "exit", code);
}

static json_t *refuse(const char *why)
{
	return refuse_code(EXIT_FAIL, why);
}

static void on_reloaded(void *ctx, int r);
static void client_answer(struct ctl_client *c, json_t *resp);

/* The sync's epochs, once the WAL of its postgres sources is in the spool. */
static json_t *sync_cut(struct daemon *d, const char *gname)
{
	json_t *epochs = json_object();

	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = d->groups[i];
		if (gname && strcmp(gname, g->name))
			continue;
		targets_sync(d, g);
		json_object_set_new(epochs, g->name, json_integer((json_int_t)group_request_cut(g)));
	}
	return json_pack("{s:b, s:o}", "ok", 1, "epochs", epochs);
}

/* A postgres source of a sync: the primary's WAL position of the call is
 * durable in the spool (or could not be learned). */
static void on_sync_pos(void *ctx, int r, uint64_t lsn)
{
	struct ctl_client *c = ctx;
	struct daemon *d = c->d;

	if (r < 0) {
		char why[1100];
		snprintf(why, sizeof(why), "%s", err_msg(r));
		c->waiting = false;
		pgsources_forget(d, c);
		client_answer(c, refuse(why));
		return;
	}
	if (--c->sync_pending)
		return;
	c->waiting = false;
	client_answer(c, sync_cut(d, c->sync_all ? NULL : c->sync_group));
}

static int on_sync_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct ctl_client *c = userdata;

	c->waiting = false;
	pgsources_forget(c->d, c);
	client_answer(c, refuse_code(EXIT_TIMEOUT, "the primary's WAL position of the sync did not reach the spool in "
						"120 s: is its stream up (bascule status)?"));
	return 0;
}

/* SYNC of groups with postgres sources: first learn each primary's WAL
 * position, then cut (docs/postgres.md, "bascule sync").  NULL: answered
 * later. */
static json_t *sync_start(struct ctl_client *c, const char *gname)
{
	struct daemon *d = c->d;
	int r;

	c->sync_all = !gname;
	snprintf(c->sync_group, sizeof(c->sync_group), "%s", gname ? gname : "");
	c->sync_pending = 0;
	c->waiting = true;
	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = d->groups[i];
		if (gname && strcmp(gname, g->name))
			continue;
		for (uint32_t s = 0; s < g->n_sources; s++) {
			if (!g->sources[s].pg)
				continue;
			if ((r = pgsource_sync(g->sources[s].pg, on_sync_pos, c)) < 0) {
				c->waiting = false;
				pgsources_forget(d, c);
				return refuse_code(err_exit_code(r), err_msg(r));
			}
			c->sync_pending++;
		}
	}
	if (!c->sync_pending) {
		c->waiting = false;
		return sync_cut(d, gname);
	}
	c->timer = sd_event_source_disable_unref(c->timer);
	if (sd_event_add_time_relative(d->ev, &c->timer, CLOCK_MONOTONIC, CTL_SYNC_USEC, 100000, on_sync_timeout,
				       c) < 0)
		log_warn("control: cannot arm the sync's timer");
	return NULL;
}

static json_t *handle(struct ctl_client *c, json_t *req)
{
	struct daemon *d = c->d;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	const char *gname = json_string_value(json_object_get(req, "group"));
	bool found = false;

	if (!cmd)
		return refuse_code(EXIT_USAGE, "request without a 'cmd'");
	if (!strcmp(cmd, "status"))
		return status_json(d);
	if (!strcmp(cmd, "history"))
		return history_json(d);
	if (!strcmp(cmd, "metrics")) {
		char *t = metrics_text(d);
		json_t *r = t ? json_pack("{s:b, s:s}", "ok", 1, "text", t) : refuse("out of memory");
		free(t);
		return r;
	}
	if (strcmp(cmd, "sync") && strcmp(cmd, "pause") && strcmp(cmd, "resume") && strcmp(cmd, "reload"))
		return refuse_code(EXIT_USAGE, "unknown command (status, metrics, history, sync, pause, resume, reload)");
	if (!c->may_control) {
		log_warn("control: refused '%s' to uid %u (not root, not in control_group)", cmd,
			 (unsigned)c->uid);
		return refuse_code(EXIT_KEY, "permission denied: control verbs need root or the control_group "
					   "of the configuration");
	}
	if (!strcmp(cmd, "reload")) {
		int r = daemon_reload(d, on_reloaded, c);
		if (r < 0)
			return refuse_code(err_exit_code(r), err_msg(r));
		if (r == 1) {
			/* Answered when the running cut ends and the reload applies. */
			c->waiting = true;
			c->timer = sd_event_source_disable_unref(c->timer);
			return NULL;
		}
		log_info("configuration reloaded at the request of uid %u", (unsigned)c->uid);
		return json_pack("{s:b}", "ok", 1);
	}
	{
		json_t *epochs = json_object();
		bool pg = false;
		for (uint32_t i = 0; i < d->n_groups; i++) {
			struct group *g = d->groups[i];
			if (gname && strcmp(gname, g->name))
				continue;
			found = true;
			pg |= g->n_pg > 0;
			if (!strcmp(cmd, "pause")) {
				g->paused = true;
				g->cut_waiting = false; /* resume asks for a cut again */
				log_info("group %s paused by uid %u", g->name, (unsigned)c->uid);
			} else if (!strcmp(cmd, "resume")) {
				g->paused = false;
				log_info("group %s resumed by uid %u", g->name, (unsigned)c->uid);
				group_request_cut(g);
			} else if (g->paused) {
				json_decref(epochs);
				return refuse("the group is paused: resume it first");
			}
		}
		if (!found) {
			char why[1024];
			size_t o = (size_t)snprintf(why, sizeof(why), "no such group '%s'; the daemon's groups:",
						    gname ? gname : "");
			for (uint32_t i = 0; i < d->n_groups && o < sizeof(why); i++)
				o += (size_t)snprintf(why + o, sizeof(why) - o, " %s", d->groups[i]->name);
			json_decref(epochs);
			return refuse_code(EXIT_USAGE, why);
		}
		json_decref(epochs);
		if (strcmp(cmd, "sync"))
			return json_pack("{s:b, s:o}", "ok", 1, "epochs", json_object());
		return pg ? sync_start(c, gname) : sync_cut(d, gname);
	}
}

/* Send RESP (consumed) and end the client. */
static void client_answer(struct ctl_client *c, json_t *resp)
{
	char *text = json_dumps(resp, JSON_COMPACT | JSON_REAL_PRECISION(UNITS_REAL_DIGITS));

	json_decref(resp);
	if (text) {
		size_t len = strlen(text);
		text[len] = '\n';
		/* Non-blocking: a client that does not read its answer loses it. */
		if (write(c->fd, text, len + 1) < 0)
			log_debug("control: cannot answer a client: %s", strerror(errno));
		free(text);
	}
	client_free(c);
}

static void on_reloaded(void *ctx, int r)
{
	struct ctl_client *c = ctx;

	c->waiting = false;
	if (r < 0) {
		client_answer(c, refuse_code(err_exit_code(r), err_msg(r)));
		return;
	}
	log_info("configuration reloaded at the request of uid %u", (unsigned)c->uid);
	client_answer(c, json_pack("{s:b}", "ok", 1));
}

static int on_client(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct ctl_client *c = userdata;
	json_error_t jerr;
	json_t *req, *resp;
	char *nl;
	ssize_t n;

	if (c->waiting) {
		/* Its answer comes with the reload; EOF means it gave up. */
		char junk[256];
		n = read(fd, junk, sizeof(junk));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			client_free(c);
		return 0;
	}
	n = read(fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		client_free(c);
		return 0;
	}
	c->len += (size_t)n;
	c->buf[c->len] = 0;
	nl = memchr(c->buf, '\n', c->len);
	if (!nl) {
		if (c->len >= sizeof(c->buf) - 1) {
			log_warn("control: request larger than %d bytes, dropping the client", CTL_MAX_REQUEST);
			client_free(c);
		}
		return 0;
	}
	*nl = 0;
	req = json_loads(c->buf, 0, &jerr);
	resp = req ? handle(c, req) : refuse("malformed JSON");
	json_decref(req);
	if (resp)
		client_answer(c, resp);
	return 0;
}

static int on_client_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	client_free(userdata);
	return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int on_accept_resume(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct daemon *d = userdata;

	d->ctl_pause = sd_event_source_disable_unref(d->ctl_pause);
	sd_event_source_set_enabled(d->ctl_src, SD_EVENT_ON);
	return 0;
}

/* No descriptor for a new client: shed one through the spare descriptor,
 * then let the listener rest CTL_PAUSE_USEC (the connections wait in the
 * backlog; a listener that accepts only to close would burn a core). */
static void accept_shed(struct daemon *d, int fd, const char *why)
{
	static uint64_t last_warn;
	uint64_t now = clock_mono_usec();
	int cfd = -1;

	if (d->ctl_spare_fd >= 0) {
		close(d->ctl_spare_fd);
		cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd >= 0)
			close(cfd);
		d->ctl_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (now - last_warn > 10000000) {
		log_warn("control: %s and no client to drop: turning new clients away, the listener "
			 "pauses for 100 ms at a time", why);
		last_warn = now;
	}
	sd_event_source_set_enabled(d->ctl_src, SD_EVENT_OFF);
	if (!d->ctl_pause && sd_event_add_time_relative(d->ev, &d->ctl_pause, CLOCK_MONOTONIC, CTL_PAUSE_USEC,
							10000, on_accept_resume, d) < 0)
		sd_event_source_set_enabled(d->ctl_src, SD_EVENT_ON); /* no timer: busy, but alive */
}

static void client_add(struct daemon *d, int cfd)
{
	struct ctl_client *c = calloc(1, sizeof(*c));
	struct ucred cred;
	socklen_t cl = sizeof(cred);

	if (!c || getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		free(c);
		close(cfd);
		return;
	}
	c->d = d;
	c->fd = cfd;
	c->uid = cred.uid;
	c->since = clock_mono_usec();
	c->may_control = cred.uid == 0 ||
			 (d->cfg->control_group && creds_in_group(cred.uid, cred.gid, d->control_gid));
	c->prev = d->clients_tail;
	if (c->prev)
		c->prev->next = c;
	else
		d->clients = c;
	d->clients_tail = c;
	d->n_clients++;
	if (sd_event_add_io(d->ev, &c->io, cfd, EPOLLIN, on_client, c) < 0 ||
	    sd_event_add_time_relative(d->ev, &c->timer, CLOCK_MONOTONIC, CTL_TIMEOUT_USEC, 100000,
				       on_client_timeout, c) < 0)
		client_free(c);
}

/* A client's descriptor this close to the limit means the table is nearly
 * full: the rest of the daemon (cuts, children) keeps this many. */
#define CTL_FD_RESERVE 64

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct daemon *d = userdata;
	struct rlimit rl;

	for (int i = 0; i < CTL_ACCEPT_BATCH; i++) {
		int cfd;

		if (d->n_clients >= CTL_MAX_CLIENTS && !client_evict(d, "64 clients at once, the most served")) {
			/* Every slot waits for a reload: turn the newcomer away. */
			if ((cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
				close(cfd);
			return 0;
		}
		cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				if (client_evict(d, "out of file descriptors"))
					continue;
				accept_shed(d, fd, "out of file descriptors");
				return 0;
			}
			continue; /* ECONNABORTED and the like: that client is gone */
		}
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
		    (rlim_t)cfd + CTL_FD_RESERVE >= rl.rlim_cur && !client_evict(d, "few file descriptors left")) {
			close(cfd); /* the descriptors left are for replication */
			accept_shed(d, fd, "few file descriptors left");
			return 0;
		}
		client_add(d, cfd);
	}
	return 0;
}

int control_open(struct daemon *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = d->cfg->control_socket;
	char dir[4096], *slash;
	int fd, r;

	if (d->cfg->control_group && (r = creds_group_gid(d->cfg->control_group, &d->control_gid)) < 0)
		return r;
	if (d->cfg->monitor_group && (r = creds_group_gid(d->cfg->monitor_group, &d->monitor_gid)) < 0)
		return r;
	if (strlen(path) >= sizeof(sa.sun_path))
		return err_set(ENAMETOOLONG, "control_socket path is too long (max %zu): %s",
			       sizeof(sa.sun_path) - 1, path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if ((r = fs_mkdir_p(dir, 0755)) < 0)
			return r;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
	    listen(fd, 64) < 0) {
		r = err_set(errno, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	/* The socket's group may connect: monitoring (read), or control. */
	if ((d->cfg->monitor_group || d->cfg->control_group) &&
	    chown(path, (uid_t)-1, d->cfg->monitor_group ? d->monitor_gid : d->control_gid) < 0)
		log_warn("cannot give %s to its group: %s", path, strerror(errno));
	d->ctl_fd = fd;
	/* Kept for the day every other descriptor is taken (accept_shed). */
	d->ctl_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if ((r = sd_event_add_io(d->ev, &d->ctl_src, fd, EPOLLIN, on_accept, d)) < 0)
		return err_set(-r, "cannot watch %s: %s", path, strerror(-r));
	return 0;
}

void control_close(struct daemon *d)
{
	while (d->clients)
		client_free(d->clients);
	d->ctl_src = sd_event_source_disable_unref(d->ctl_src);
	d->ctl_pause = sd_event_source_disable_unref(d->ctl_pause);
	if (d->ctl_spare_fd >= 0)
		close(d->ctl_spare_fd);
	d->ctl_spare_fd = -1;
	if (d->ctl_fd >= 0) {
		close(d->ctl_fd);
		unlink(d->cfg->control_socket);
	}
	d->ctl_fd = -1;
}
