/* sshconn.c - the ssh:// transport of a target, non-blocking in the loop.
 *
 * Stages: TCP connect, SSH handshake, strict host-key check against the
 * target's known_hosts (unknown or changed keys are refused), public-key
 * authentication from the identity file, an exec channel running the
 * receiver.  Then the wire reads and writes the channel.  SSH keepalives
 * every 10 s, plus TCP keepalive and a 30 s user timeout, notice a dead link. */
#include "sshconn.h"
#include "err.h"
#include "log.h"
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int on_keepalive(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct target *t = userdata;
	int next = 10;

	if (t->ssh && t->ssh_stage == 5)
		libssh2_keepalive_send(t->ssh, &next);
	sd_event_source_set_time_relative(s, (uint64_t)(next > 0 ? next : 10) * 1000000ULL);
	sd_event_source_set_enabled(s, SD_EVENT_ON);
	return 0;
}

int sshconn_start(struct target *t, sd_event_io_handler_t handler)
{
	int r;

	t->sock = ssh_tcp_connect(t->url.host, t->url.port, true);
	if (t->sock < 0)
		return t->sock;
	t->ssh_stage = 0;
	r = sd_event_add_io(t->d->ev, &t->sock_src, t->sock, EPOLLIN | EPOLLOUT, handler, t);
	if (r < 0)
		return r;
	return 0;
}

void sshconn_close(struct target *t)
{
	t->sock_src = sd_event_source_disable_unref(t->sock_src);
	t->ka_timer = sd_event_source_disable_unref(t->ka_timer);
	/* Non-blocking, libssh2 may answer EAGAIN and free nothing.  With the
	 * socket shut down nothing can wait on the peer: free in blocking mode. */
	if (t->sock >= 0)
		shutdown(t->sock, SHUT_RDWR);
	if (t->ssh)
		libssh2_session_set_blocking(t->ssh, 1);
	if (t->chan)
		libssh2_channel_free(t->chan);
	t->chan = NULL;
	if (t->ssh)
		libssh2_session_free(t->ssh);
	t->ssh = NULL;
	if (t->sock >= 0)
		close(t->sock);
	t->sock = -1;
	t->ssh_stage = 0;
	t->errlen = 0;
}

static ssize_t io_read(void *ctx, void *buf, size_t len)
{
	struct target *t = ctx;
	ssize_t n = libssh2_channel_read(t->chan, buf, len);

	if (n == LIBSSH2_ERROR_EAGAIN)
		return -EAGAIN;
	if (n < 0)
		return err_set(ECONNRESET, "SSH channel read failed: %s", ssh_error(t->ssh));
	if (n == 0 && !libssh2_channel_eof(t->chan))
		return -EAGAIN;
	return n;
}

static ssize_t io_write(void *ctx, const void *buf, size_t len)
{
	struct target *t = ctx;
	ssize_t n = libssh2_channel_write(t->chan, buf, len);

	if (n == LIBSSH2_ERROR_EAGAIN)
		return -EAGAIN;
	if (n < 0)
		return err_set(ECONNRESET, "SSH channel write failed: %s", ssh_error(t->ssh));
	return n;
}

void sshconn_wire_io(struct target *t, struct wire_io *io)
{
	io->read = io_read;
	io->write = io_write;
	io->ctx = t;
}

/* Under a forced command= on the secondary this request is only read, as
 * SSH_ORIGINAL_COMMAND, by tools/recv_ssh.c (which warns about the options
 * the secondary overrides): keep the two in step. */
static void build_remote_command(struct target *t, char *cmd, size_t len)
{
	snprintf(cmd, len, "%s --root '%s' --keep-epochs %" PRIu64 " --keep-time %" PRIu64 "ms",
		 t->cfg->remote_command, t->url.path, t->cfg->keep_epochs, t->cfg->keep_time / 1000);
}

int sshconn_step(struct target *t)
{
	int r;

	if (t->ssh_stage == 0) {
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(t->sock, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		if (err == EINPROGRESS || err == EALREADY)
			return 0;
		if (err)
			return err_set(err, "cannot connect to %s port %d: %s", t->url.host, t->url.port,
				       strerror(err));
		{
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (getpeername(t->sock, (struct sockaddr *)&ss, &sl) < 0)
				return 0; /* still connecting */
		}
		t->ssh = libssh2_session_init();
		if (!t->ssh)
			return -ENOMEM;
		libssh2_session_set_blocking(t->ssh, 0);
		libssh2_keepalive_config(t->ssh, 1, 10);
		t->ssh_stage = 1;
	}
	if (t->ssh_stage == 1) {
		r = libssh2_session_handshake(t->ssh, t->sock);
		if (r == LIBSSH2_ERROR_EAGAIN)
			return 0;
		if (r)
			return err_set(ECONNREFUSED, "SSH handshake with %s failed: %s", t->url.host,
				       ssh_error(t->ssh));
		if ((r = ssh_check_hostkey(t->ssh, t->cfg->known_hosts, t->url.host, t->url.port)) < 0)
			return r;
		t->ssh_stage = 2;
	}
	if (t->ssh_stage == 2) {
		r = libssh2_userauth_publickey_fromfile(t->ssh, t->url.user, NULL, t->cfg->identity, NULL);
		if (r == LIBSSH2_ERROR_EAGAIN)
			return 0;
		if (r)
			return err_set(EACCES, "SSH authentication of %s@%s with %s refused: %s (is the "
					       "public key in the receiving user's authorized_keys?)",
				       t->url.user, t->url.host, t->cfg->identity, ssh_error(t->ssh));
		t->ssh_stage = 3;
	}
	if (t->ssh_stage == 3) {
		t->chan = libssh2_channel_open_session(t->ssh);
		if (!t->chan) {
			if (libssh2_session_last_errno(t->ssh) == LIBSSH2_ERROR_EAGAIN)
				return 0;
			return err_set(ECONNREFUSED, "cannot open an SSH channel on %s: %s", t->url.host,
				       ssh_error(t->ssh));
		}
		t->ssh_stage = 4;
	}
	if (t->ssh_stage == 4) {
		char cmd[8192];
		build_remote_command(t, cmd, sizeof(cmd));
		r = libssh2_channel_exec(t->chan, cmd);
		if (r == LIBSSH2_ERROR_EAGAIN)
			return 0;
		if (r)
			return err_set(ECONNREFUSED, "cannot run the receiver on %s: %s", t->url.host,
				       ssh_error(t->ssh));
		t->ssh_stage = 5;
		sd_event_add_time_relative(t->d->ev, &t->ka_timer, CLOCK_MONOTONIC, 10000000, 1000000,
					   on_keepalive, t);
	}
	return 1;
}

void sshconn_drain_stderr(struct target *t)
{
	char buf[1024];
	ssize_t n;

	if (!t->chan)
		return;
	while ((n = libssh2_channel_read_stderr(t->chan, buf, sizeof(buf))) > 0)
		target_remote_output(t, buf, (size_t)n);
}

void sshconn_update_events(struct target *t, bool want_write)
{
	uint32_t ev = EPOLLIN;
	int dir;

	if (!t->sock_src)
		return;
	dir = t->ssh ? libssh2_session_block_directions(t->ssh) : LIBSSH2_SESSION_BLOCK_OUTBOUND;
	if (want_write || (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND) || t->ssh_stage == 0)
		ev |= EPOLLOUT;
	sd_event_source_set_io_events(t->sock_src, ev);
}
