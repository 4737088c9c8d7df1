/* control.c - the daemon's control socket (minimal: sync and status).
 *
 * One JSON object per line in, one per line out (docs/control.md).  Every
 * request is bounded in size (64 KiB) and time (5 s): a client that sends
 * nothing or too much is dropped without stalling the loop. */
#include "daemon.h"
#include "ctl.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <jansson.h>
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

static json_t *status_json(struct daemon *d)
{
	json_t *groups = json_array(), *targets = json_array();
	uint64_t now = now_usec();

	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = &d->groups[i];
		json_t *srcs = json_array();
		for (uint32_t s = 0; s < g->n_sources; s++)
			json_array_append_new(srcs, json_pack("{s:s, s:s, s:I}", "name", g->sources[s].cfg->name,
							      "disk", g->sources[s].cfg->disk, "size",
							      (json_int_t)g->sources[s].size));
		json_array_append_new(groups,
				      json_pack("{s:s, s:I, s:f, s:b, s:b, s:o}", "name", g->name, "last_cut",
						(json_int_t)g->last_cut, "cut_time",
						(double)g->cut_time / 1e6, "consistent", g->consistent,
						"cutting", g->cutting, "sources", srcs));
	}
	for (uint32_t i = 0; i < d->n_targets; i++) {
		struct target *t = &d->targets[i];
		json_t *tg = json_object();
		for (uint32_t k = 0; k < d->n_groups; k++) {
			struct group *g = &d->groups[k];
			/* Lag (current RPO): age of the state the target holds, i.e. how
			 * much recent data it would lose now.  -1: no epoch yet. */
			double lag = t->groups[k].acked_cut_time
					     ? (double)(now - t->groups[k].acked_cut_time) / 1e6 : -1;
			json_object_set_new(tg, g->name,
					    json_pack("{s:I, s:f}", "acked", (json_int_t)t->groups[k].acked,
						      "lag_seconds", lag));
		}
		json_array_append_new(targets,
				      json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:o}", "name", t->cfg->name,
						"state", t->state == T_READY ? "connected"
						: t->state == T_HANDSHAKE ? "connecting" : "offline",
						"last_error", t->last_error, "bytes_sent",
						(json_int_t)t->bytes_sent, "raw_bytes_sent",
						(json_int_t)t->raw_sent, "delta_bytes_sent", (json_int_t)t->delta_sent, "in_flight", (int)t->in_flight,
						"groups", tg));
	}
	return json_pack("{s:b, s:o, s:o}", "ok", 1, "groups", groups, "targets", targets);
}

static json_t *handle(struct daemon *d, json_t *req)
{
	const char *cmd = json_string_value(json_object_get(req, "cmd"));

	if (!cmd)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "request without a 'cmd'");
	if (!strcmp(cmd, "status"))
		return status_json(d);
	if (!strcmp(cmd, "sync")) {
		const char *gname = json_string_value(json_object_get(req, "group"));
		json_t *epochs = json_object();
		bool found = false;
		for (uint32_t i = 0; i < d->n_groups; i++) {
			if (gname && strcmp(gname, d->groups[i].name))
				continue;
			found = true;
			json_object_set_new(epochs, d->groups[i].name,
					    json_integer((json_int_t)group_request_cut(&d->groups[i])));
		}
		if (!found) {
			json_decref(epochs);
			return json_pack("{s:b, s:s}", "ok", 0, "error", "no such group");
		}
		return json_pack("{s:b, s:o}", "ok", 1, "epochs", epochs);
	}
	return json_pack("{s:b, s:s}", "ok", 0, "error", "unknown command");
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
			log_warn("control: request larger than %d bytes, dropping the client",
				 CTL_MAX_REQUEST);
			client_free(c);
		}
		return 0;
	}
	*nl = 0;
	req = json_loads(c->buf, 0, &jerr);
	resp = req ? handle(c->d, req) : json_pack("{s:b, s:s}", "ok", 0, "error", "malformed JSON");
	json_decref(req);
	text = json_dumps(resp, JSON_COMPACT);
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
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (cfd < 0)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(cfd);
		return 0;
	}
	c->d = d;
	c->fd = cfd;
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
