/* control.c - the daemon's status and control socket (docs/control.md).
 *
 * One JSON object per line in, one per line out.  Every request is bounded in
 * size (64 KiB) and time (5 s): a client that sends more, or nothing, is
 * dropped without stalling the loop.  Read verbs (status, metrics, history)
 * are open to whoever can connect (mode 0660, group monitor_group); control
 * verbs (sync, pause, resume, reload) to root and control_group only,
 * checked with the peer's credentials (SO_PEERCRED). */
#include "daemon.h"
#include "creds.h"
#include "ctl.h"
#include "spool.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "units.h"
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct client {
	struct daemon *d;
	int fd;
	sd_event_source *io, *timer;
	bool may_control;
	uid_t uid;
	char buf[CTL_MAX_REQUEST];
	size_t len;
};

static void client_free(struct client *c)
{
	sd_event_source_disable_unref(c->io);
	sd_event_source_disable_unref(c->timer);
	close(c->fd);
	free(c);
}

void daemon_event(struct daemon *d, const char *kind, const char *group, const char *target,
		  uint64_t epoch, const char *text)
{
	struct event_rec *e = &d->history[d->n_history++ % HISTORY_LEN];

	e->time = now_usec();
	snprintf(e->kind, sizeof(e->kind), "%s", kind);
	snprintf(e->group, sizeof(e->group), "%s", group ? group : "");
	snprintf(e->target, sizeof(e->target), "%s", target ? target : "");
	e->epoch = epoch;
	snprintf(e->text, sizeof(e->text), "%s", text ? text : "");
}

/* What a target is doing, for people and monitoring. */
static const char *target_state_name(const struct target *t)
{
	struct daemon *d = t->d;

	switch (t->state) {
	case T_READY:
		for (uint32_t k = 0; k < d->n_groups; k++)
			if (t->groups[k].acked < d->groups[k]->last_cut)
				return "catching-up";
		return "connected";
	case T_CONNECTING:
	case T_HANDSHAKE:
		return "connecting";
	default:
		return t->last_error[0] ? "error" : "offline";
	}
}

static double target_lag(const struct target *t, uint32_t k, uint64_t now)
{
	/* The age of the state the target holds: how much recent data it would
	 * lose now (the current RPO).  -1: no epoch yet. */
	uint64_t lag = target_lag_usec(t, k, now);

	return lag == UINT64_MAX ? -1 : (double)lag / 1e6;
}

static uint64_t target_pending(const struct target *t)
{
	uint64_t n = 0;

	for (const struct job *j = t->jobs; j; j = j->next)
		n += j->spool ? j->spool->blocks * (uint64_t)PROTO_BLOCK : 0;
	return n;
}

static json_t *status_json(struct daemon *d)
{
	json_t *groups = json_array(), *targets = json_array();
	uint64_t now = now_usec();

	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = d->groups[i];
		json_t *srcs = json_array();
		for (uint32_t s = 0; s < g->n_sources; s++)
			json_array_append_new(srcs, json_pack("{s:s, s:s, s:I}", "name", g->sources[s].cfg->name,
							      "disk", g->sources[s].cfg->disk, "size",
							      (json_int_t)g->sources[s].size));
		json_array_append_new(groups,
				      json_pack("{s:s, s:I, s:f, s:f, s:I, s:b, s:b, s:b, s:f, s:o}", "name", g->name,
						"last_cut", (json_int_t)g->last_cut, "cut_time",
						units_round((double)g->cut_time / 1e6, UNITS_UNIXTIME), "verified_time",
						units_round((double)g->verified_time / 1e6, UNITS_UNIXTIME), "scans",
						(json_int_t)g->scans, "consistent", g->consistent, "cutting", g->cutting,
						"paused", g->paused, "scan_seconds",
						units_round((double)g->last_scan_usec / 1e6, UNITS_SECONDS),
						"sources", srcs));
	}
	for (uint32_t i = 0; i < d->n_targets; i++) {
		struct target *t = d->targets[i];
		json_t *tg = json_object();
		for (uint32_t k = 0; k < d->n_groups; k++)
			json_object_set_new(tg, d->groups[k]->name,
					    json_pack("{s:I, s:f}", "acked", (json_int_t)t->groups[k].acked,
						      "lag_seconds", units_round(target_lag(t, k, now), UNITS_SECONDS)));
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
	return json_pack("{s:b, s:o, s:o}", "ok", 1, "groups", groups, "targets", targets);
}

/* Prometheus text exposition format 0.0.4.  Counts print as integers;
 * measurements rounded to what they mean (units_round). */
static void m_head(struct wbuf *b, const char *name, const char *type, const char *help)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	wbuf_put_bytes(b, line, (size_t)n);
}

static void m_int(struct wbuf *b, const char *name, const char *labels, uint64_t v)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s{%s} %" PRIu64 "\n", name, labels, v);
	wbuf_put_bytes(b, line, (size_t)n);
}

static void m_val(struct wbuf *b, const char *name, const char *labels, double v, enum units_measure kind)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s{%s} %.*g\n", name, labels, UNITS_REAL_DIGITS,
			 units_round(v, kind));
	wbuf_put_bytes(b, line, (size_t)n);
}

char *control_metrics_text(struct daemon *d)
{
	struct wbuf b;
	char l[300];
	uint64_t now = now_usec();
	char *out;

	wbuf_init(&b, 16 << 20);
	m_head(&b, "bascule_group_last_epoch", "gauge", "Number of the last epoch cut.");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_int(&b, "bascule_group_last_epoch", l, d->groups[i]->last_cut);
	}
	m_head(&b, "bascule_group_epochs_cut_total", "counter", "Epochs cut since the daemon started.");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_int(&b, "bascule_group_epochs_cut_total", l, d->groups[i]->epochs_cut);
	}
	m_head(&b, "bascule_group_consistent", "gauge", "1 if the last epoch is point-in-time, 0 if fuzzy.");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_int(&b, "bascule_group_consistent", l, d->groups[i]->consistent);
	}
	m_head(&b, "bascule_group_scan_duration_seconds", "gauge", "Duration of the last scan.");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_val(&b, "bascule_group_scan_duration_seconds", l, (double)d->groups[i]->last_scan_usec / 1e6,
		      UNITS_SECONDS);
	}
	m_head(&b, "bascule_target_info", "gauge", "Always 1: the target's type (replica or vault).");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\",type=\"%s\"", d->targets[i]->cfg->name,
			 d->targets[i]->cfg->kind == TARGET_VAULT ? "vault" : "replica");
		m_int(&b, "bascule_target_info", l, 1);
	}
	m_head(&b, "bascule_target_interval_seconds", "gauge",
	       "Configured interval between two epochs shipped to the target (vault; 0: every epoch).");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_val(&b, "bascule_target_interval_seconds", l, (double)d->targets[i]->cfg->interval / 1e6,
		      UNITS_SECONDS);
	}
	m_head(&b, "bascule_target_lag_seconds", "gauge",
	       "Age of the newest epoch the target holds: the current RPO (-1: none yet).");
	for (uint32_t i = 0; i < d->n_targets; i++)
		for (uint32_t k = 0; k < d->n_groups; k++) {
			snprintf(l, sizeof(l), "target=\"%s\",group=\"%s\"", d->targets[i]->cfg->name,
				 d->groups[k]->name);
			m_val(&b, "bascule_target_lag_seconds", l, target_lag(d->targets[i], k, now), UNITS_SECONDS);
		}
	m_head(&b, "bascule_target_acked_epoch", "gauge", "Last epoch the target applied durably.");
	for (uint32_t i = 0; i < d->n_targets; i++)
		for (uint32_t k = 0; k < d->n_groups; k++) {
			snprintf(l, sizeof(l), "target=\"%s\",group=\"%s\"", d->targets[i]->cfg->name,
				 d->groups[k]->name);
			m_int(&b, "bascule_target_acked_epoch", l, d->targets[i]->groups[k].acked);
		}
	m_head(&b, "bascule_target_up", "gauge", "1 if the target is connected.");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_up", l, d->targets[i]->state == T_READY);
	}
	m_head(&b, "bascule_target_sent_bytes_total", "counter", "Bytes sent to the target (on the wire).");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_sent_bytes_total", l, d->targets[i]->bytes_sent);
	}
	m_head(&b, "bascule_target_block_bytes_total", "counter", "Block data sent, before compression.");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_block_bytes_total", l, d->targets[i]->raw_sent);
	}
	m_head(&b, "bascule_target_pending_bytes", "gauge", "Block data queued for the target (upper bound).");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_pending_bytes", l, target_pending(d->targets[i]));
	}
	m_head(&b, "bascule_target_throughput_bytes_per_second", "gauge", "Bytes sent per second, last seconds.");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_val(&b, "bascule_target_throughput_bytes_per_second", l, d->targets[i]->rate, UNITS_ESTIMATE);
	}
	m_head(&b, "bascule_target_errors_total", "counter", "Errors (disconnections, refusals) of the target.");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_errors_total", l, d->targets[i]->errors);
	}
	wbuf_put_u8(&b, 0);
	out = b.p ? strdup((char *)b.p) : NULL;
	wbuf_free(&b);
	return out;
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

static json_t *handle(struct client *c, json_t *req)
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
		char *t = control_metrics_text(d);
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
		int r = daemon_reload(d);
		if (r < 0)
			return refuse_code(err_exit_code(r), err_msg(r));
		log_info("configuration reloaded at the request of uid %u", (unsigned)c->uid);
		return json_pack("{s:b}", "ok", 1);
	}
	{
		json_t *epochs = json_object();
		for (uint32_t i = 0; i < d->n_groups; i++) {
			struct group *g = d->groups[i];
			if (gname && strcmp(gname, g->name))
				continue;
			found = true;
			if (!strcmp(cmd, "pause")) {
				g->paused = true;
				log_info("group %s paused by uid %u", g->name, (unsigned)c->uid);
			} else if (!strcmp(cmd, "resume")) {
				g->paused = false;
				log_info("group %s resumed by uid %u", g->name, (unsigned)c->uid);
				group_request_cut(g);
			} else if (g->paused) {
				json_decref(epochs);
				return refuse("the group is paused: resume it first");
			} else {
				targets_sync(d, g);
				json_object_set_new(epochs, g->name, json_integer((json_int_t)group_request_cut(g)));
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
		return json_pack("{s:b, s:o}", "ok", 1, "epochs", epochs);
	}
}

static int on_client(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct client *c = userdata;
	json_error_t jerr;
	json_t *req, *resp;
	char *nl, *text;
	ssize_t n;

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
	text = json_dumps(resp, JSON_COMPACT | JSON_REAL_PRECISION(UNITS_REAL_DIGITS));
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
	return 0;
}

static int on_client_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	client_free(userdata);
	return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct daemon *d = userdata;
	struct client *c;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (cfd < 0)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c || getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		free(c);
		close(cfd);
		return 0;
	}
	c->d = d;
	c->fd = cfd;
	c->uid = cred.uid;
	c->may_control = cred.uid == 0 ||
			 (d->cfg->control_group && creds_in_group(cred.uid, cred.gid, d->control_gid));
	if (sd_event_add_io(d->ev, &c->io, cfd, EPOLLIN, on_client, c) < 0 ||
	    sd_event_add_time_relative(d->ev, &c->timer, CLOCK_MONOTONIC, 5000000, 100000,
				       on_client_timeout, c) < 0)
		client_free(c);
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
	    listen(fd, 16) < 0) {
		r = err_set(errno, "cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	/* The socket's group may connect: monitoring (read), or control. */
	if ((d->cfg->monitor_group || d->cfg->control_group) &&
	    chown(path, (uid_t)-1, d->cfg->monitor_group ? d->monitor_gid : d->control_gid) < 0)
		log_warn("cannot give %s to its group: %s", path, strerror(errno));
	d->ctl_fd = fd;
	return sd_event_add_io(d->ev, &d->ctl_src, fd, EPOLLIN, on_accept, d);
}

void control_close(struct daemon *d)
{
	d->ctl_src = sd_event_source_disable_unref(d->ctl_src);
	if (d->ctl_fd >= 0) {
		close(d->ctl_fd);
		unlink(d->cfg->control_socket);
	}
	d->ctl_fd = -1;
}
