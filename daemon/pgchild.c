/* pgchild.c - the `bascule pgstream` children of a PostgreSQL source, as
 * the daemon's other children (child.c): three pipes, reaped by the loop.
 * The child speaks PostgreSQL's replication protocol as an unprivileged
 * user in its sandbox (relay_user); its frames are decoded here as hostile
 * (lib/pgpipe.c: exact lengths, every bound).  Its stderr lines are logged
 * with the source's name. */
#include "daemon.h"
#include "child.h"
#include "err.h"
#include "log.h"
#include "pgsource.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PC_IN_MAX (2u << 20)   /* frames from the child not yet decoded */
#define PC_OUT_MAX (1u << 20)  /* commands to it */

static void pc_close_io(struct pgchild *c)
{
	c->out_src = sd_event_source_disable_unref(c->out_src);
	c->in_src = sd_event_source_disable_unref(c->in_src);
	if (c->io.rfd >= 0)
		close(c->io.rfd);
	if (c->io.wfd >= 0)
		close(c->io.wfd);
	c->io.rfd = c->io.wfd = -1;
}

static void pc_line(struct pgchild *c)
{
	static const char *const roles[] = { "pgstream", "pgstream (base backup)", "pgstream (sync)" };

	c->line[c->linelen] = 0;
	if (c->linelen) {
		int prio = log_line_prio(c->line); /* its level if it tells one, else a warning */
		pgsrc_log(c->p, prio < 0 ? LOG_WARNING : prio, "%s: %s", roles[c->role], c->line);
	}
	c->linelen = 0;
}

static void pc_drain_err(struct pgchild *c)
{
	char buf[4096];
	ssize_t n;

	while (c->err_fd >= 0 && (n = read(c->err_fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' || c->linelen == sizeof(c->line) - 1)
				pc_line(c);
			if (buf[i] != '\n')
				c->line[c->linelen++] = buf[i];
		}
}

static int on_err(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct pgchild *c = userdata;

	pc_drain_err(c);
	if (revents & (EPOLLHUP | EPOLLERR))
		c->err_src = sd_event_source_disable_unref(c->err_src);
	return 0;
}

/* Read and decode what the child wrote, while its owner has room. */
static void pc_read(struct pgchild *c)
{
	struct pgp_msg m;
	int r = 0;

	while (c->io.rfd >= 0 && !c->ending) {
		while (!c->ending && (!c->room || c->room(c)) && (r = pgpipe_io_next(&c->io, PGP_OWNER, &m)) > 0) {
			if (m.type == PGP_HELLO)
				c->hello = true, c->h = m.u.hello;
			if (m.type == PGP_ERROR) {
				c->error_code = m.u.error.code;
				snprintf(c->error_text, sizeof(c->error_text), "%s", m.u.error.text);
			}
			c->frame(c, &m);
		}
		if (c->ending)
			return;
		if (r < 0) {
			char why[600];
			snprintf(why, sizeof(why), "a bad frame from pgstream: %s", err_msg(r));
			pgchild_end(c, why);
			return;
		}
		if (c->room && !c->room(c)) {
			/* Nothing more is read until the writer has room. */
			sd_event_source_set_enabled(c->out_src, SD_EVENT_OFF);
			return;
		}
		r = pgpipe_io_read(&c->io);
		if (r == -EAGAIN || (r == 0 && c->io.eof)) {
			if (c->io.eof)
				c->out_src = sd_event_source_disable_unref(c->out_src);
			return;
		}
		if (r < 0) {
			pgchild_end(c, r == -ENOBUFS ? "pgstream sent a frame larger than the pipe allows"
						     : "cannot read from pgstream");
			return;
		}
	}
}

static int on_out(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	pc_read(userdata);
	return 0;
}

void pgchild_resume(struct pgchild *c)
{
	if (c->out_src && !c->ending) {
		sd_event_source_set_enabled(c->out_src, SD_EVENT_ON);
		pc_read(c);
	}
}

void pgchild_send(struct pgchild *c)
{
	if (c->io.wfd < 0)
		return;
	if (pgpipe_io_flush(&c->io) < 0) {
		pgchild_end(c, "pgstream stopped reading its commands");
		return;
	}
	if (c->in_src)
		sd_event_source_set_enabled(c->in_src, pgpipe_io_pending(&c->io) ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int on_in(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	pgchild_send(userdata);
	return 0;
}

static void on_exit_cb(void *userdata, const siginfo_t *si)
{
	struct pgchild *c = userdata;

	c->child = NULL;
	/* What it wrote last (an ERROR) is still in the pipe. */
	if (!c->ending)
		pc_read(c);
	pc_drain_err(c);
	pc_line(c);
	pc_close_io(c);
	c->err_src = sd_event_source_disable_unref(c->err_src);
	if (c->err_fd >= 0)
		close(c->err_fd);
	c->err_fd = -1;
	if (c->exited)
		c->exited(c, si);
	pgpipe_io_free(&c->io);
	free(c);
}

int pgchild_spawn(struct pgsrc *p, enum pgc_role role, struct pgchild **ret)
{
	struct daemon *d = p->d;
	const struct cfg_source *cfg = p->cfg;
	char app[80], *argv[20];
	struct pgchild *c;
	int n = 0, in, out, err, r;

	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->p = p;
	c->role = role;
	c->err_fd = -1;
	c->io.rfd = c->io.wfd = -1;
	/* The base backup and the probes connect under names of their own:
	 * synchronous_standby_names names the stream only. */
	snprintf(app, sizeof(app), "%s%s", cfg->application_name,
		 role == PGC_BASE ? "_base" : role == PGC_PROBE ? "_sync" : "");
	argv[n++] = d->recv_path;
	argv[n++] = "pgstream";
	argv[n++] = "--conninfo";
	argv[n++] = cfg->conninfo;
	if (role == PGC_STREAM) {
		argv[n++] = "--slot";
		argv[n++] = cfg->slot;
	}
	argv[n++] = "--application-name";
	argv[n++] = app;
	if (geteuid() == 0) {
		/* Root gives the connection to relay_user (docs/postgres.md). */
		argv[n++] = "--user";
		argv[n++] = d->cfg->relay_user;
	}
	argv[n++] = "--status-interval";
	argv[n++] = "10s";
	argv[n] = NULL;
	if ((r = child_spawn(d, argv, on_exit_cb, c, &c->child, &in, &out, &err)) < 0) {
		free(c);
		return r;
	}
	pgpipe_io_init(&c->io, out, in, PC_IN_MAX, PC_OUT_MAX);
	c->err_fd = err;
	if ((r = sd_event_add_io(d->ev, &c->out_src, out, EPOLLIN, on_out, c)) < 0 ||
	    (r = sd_event_add_io(d->ev, &c->in_src, in, EPOLLOUT, on_in, c)) < 0 ||
	    (r = sd_event_add_io(d->ev, &c->err_src, err, EPOLLIN, on_err, c)) < 0) {
		r = err_set(-r, "cannot watch the pipes of pgstream: %s", strerror(-r));
		pgchild_release(c);
		return r;
	}
	sd_event_source_set_enabled(c->in_src, SD_EVENT_OFF);
	*ret = c;
	return 0;
}

void pgchild_end(struct pgchild *c, const char *why)
{
	if (!c)
		return;
	if (why && !c->why[0])
		snprintf(c->why, sizeof(c->why), "%s", why);
	if (c->ending)
		return;
	c->ending = true;
	/* Its last commands (a FLUSHED) go first, if the pipe takes them. */
	if (c->io.wfd >= 0 && pgpipe_io_pending(&c->io))
		pgpipe_io_flush(&c->io);
	pc_close_io(c);
	if (c->child)
		child_stop(c->child);
}

void pgchild_release(struct pgchild *c)
{
	if (!c)
		return;
	c->exited = NULL;
	c->done = NULL;
	pgchild_end(c, NULL);
	if (!c->child) {
		/* Exited already, or never watched: nothing will call back. */
		c->err_src = sd_event_source_disable_unref(c->err_src);
		if (c->err_fd >= 0)
			close(c->err_fd);
		pgpipe_io_free(&c->io);
		free(c);
	}
}

void pgchild_describe(const struct pgchild *c, const siginfo_t *si, char *buf, size_t len)
{
	if (c->why[0])
		snprintf(buf, len, "%s", c->why);
	else if (c->error_code)
		snprintf(buf, len, "%s (%s)", c->error_text, pgpipe_error_name(c->error_code));
	else if (si && si->si_code == CLD_EXITED)
		snprintf(buf, len, "pgstream exited with status %d", si->si_status);
	else if (si)
		snprintf(buf, len, "pgstream was killed by signal %d", si->si_status);
	else
		snprintf(buf, len, "pgstream ended");
}
