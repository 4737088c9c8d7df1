/* cmd_relay.c - `bascule relay`: the ssh:// transport of a replica target,
 * a child of basculed as `bascule recv` is for local: ones.
 *
 * It reads the SSH identity and known_hosts into memory, gives up root and
 * the filesystem (tools/sandbox.c) before any network input, then resolves
 * the secondary, checks its host key strictly, authenticates, runs the
 * receiver in an exec channel and moves bytes: stdin to the channel,
 * the channel to stdout, the channel's stderr to stderr, line by line.
 * The bytes are the daemon's already sealed wire stream: the relay holds
 * no Bascule key and sees only ciphertext.  Its own messages are
 * "bascule relay: error: ..."; it exits with the receiver's exit status,
 * or 1 when the connection fails, 3 when relay_user does not exist. */
#include "cmd.h"
#include "err.h"
#include "log.h"
#include "sandbox.h"
#include "ssh.h"
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UP_CAP (1u << 20)      /* daemon -> channel */
#define DOWN_CAP (256u << 10)  /* channel -> daemon */
#define ERRLINE_MAX 1024
#define KEEPALIVE_SECS 10
#define CLOSE_WAIT_MSEC 2000   /* after the receiver's EOF: its exit status */

struct relay {
	const char *host;
	LIBSSH2_SESSION *s;
	LIBSSH2_CHANNEL *chan;
	int sock;
	uint8_t *up, *down;
	size_t up_off, up_len, down_len;
	bool in_eof, eof_sent, remote_eof;
	char errline[ERRLINE_MAX];
	size_t errlen;
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule relay --url ssh://USER@HOST[:PORT]/DIR --identity FILE --known-hosts FILE\n"
		   "                     --command CMD [--user NAME]\n\n"
		   "The ssh:// transport of a replica target, run by basculed (not for interactive\n"
		   "use): reads the identity and known_hosts, becomes NAME (relay_user, default\n"
		   "bascule) when run as root, enters a Landlock sandbox, then connects to HOST,\n"
		   "checks its host key against known_hosts (an unknown or changed key is refused),\n"
		   "runs CMD there and moves the already sealed stream between stdin/stdout and\n"
		   "the channel; the receiver's stderr comes out on stderr.\n\n"
		   "Exit codes: the receiver's exit status; 1 the connection failed; 2 usage;\n"
		   "3 relay_user does not exist or is root.  See bascule(1).\n");
}

/* The receiver's stderr, forwarded raw but by whole lines, so that the
 * relay's own messages never land in the middle of one. */
static void err_flush(struct relay *r)
{
	if (!r->errlen)
		return;
	r->errline[r->errlen++] = '\n';
	if (write(STDERR_FILENO, r->errline, r->errlen) < 0) {
		/* the daemon is gone; stdout tells it too */
	}
	r->errlen = 0;
}

static void err_forward(struct relay *r, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			err_flush(r);
			continue;
		}
		r->errline[r->errlen++] = buf[i];
		if (r->errlen == sizeof(r->errline) - 1)
			err_flush(r);
	}
}

static int relay_fail(struct relay *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int relay_fail(struct relay *r, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err_flush(r);
	log_error("%s", msg);
	return code;
}

/* Wait for the socket in the direction libssh2 is blocked on, at most MSEC. */
static void wait_session(struct relay *r, int msec)
{
	int dir = libssh2_session_block_directions(r->s);
	struct pollfd p = { .fd = r->sock, .events = POLLIN };

	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		p.events |= POLLOUT;
	poll(&p, 1, msec);
}

/* Move what can be moved now, without blocking.  1 if a byte moved, 0 if
 * nothing could, or a negative exit code after reporting the failure. */
static int relay_step(struct relay *r)
{
	bool moved = false;
	ssize_t n;

	if (!r->in_eof && r->up_len < UP_CAP) {
		n = read(STDIN_FILENO, r->up + r->up_len, UP_CAP - r->up_len);
		if (n > 0) {
			r->up_len += (size_t)n;
			moved = true;
		} else if (n == 0)
			r->in_eof = moved = true;
		else if (errno != EAGAIN && errno != EINTR)
			return -relay_fail(r, EXIT_FAIL, "reading from basculed: %s", strerror(errno));
	}
	while (r->up_off < r->up_len) {
		n = libssh2_channel_write(r->chan, (char *)r->up + r->up_off, r->up_len - r->up_off);
		if (n == LIBSSH2_ERROR_EAGAIN)
			break;
		if (n < 0)
			return -relay_fail(r, EXIT_FAIL, "the SSH connection to %s failed while sending: %s",
					   r->host, ssh_error(r->s));
		r->up_off += (size_t)n;
		moved = true;
	}
	if (r->up_off == r->up_len)
		r->up_off = r->up_len = 0;
	else if (r->up_off > UP_CAP / 2) {
		memmove(r->up, r->up + r->up_off, r->up_len - r->up_off);
		r->up_len -= r->up_off;
		r->up_off = 0;
	}
	if (r->in_eof && !r->up_len && !r->eof_sent) {
		int e = libssh2_channel_send_eof(r->chan);
		if (e == 0)
			r->eof_sent = moved = true;
		else if (e != LIBSSH2_ERROR_EAGAIN)
			r->eof_sent = true; /* the channel is going away anyway */
	}
	while (r->down_len < DOWN_CAP) {
		n = libssh2_channel_read(r->chan, (char *)r->down + r->down_len, DOWN_CAP - r->down_len);
		if (n == LIBSSH2_ERROR_EAGAIN)
			break;
		if (n < 0)
			return -relay_fail(r, EXIT_FAIL, "the SSH connection to %s failed while receiving: %s",
					   r->host, ssh_error(r->s));
		if (n == 0)
			break;
		r->down_len += (size_t)n;
		moved = true;
	}
	for (;;) {
		char buf[4096];
		n = libssh2_channel_read_stderr(r->chan, buf, sizeof(buf));
		if (n <= 0)
			break;
		err_forward(r, buf, (size_t)n);
		moved = true;
	}
	if (r->down_len) {
		n = write(STDOUT_FILENO, r->down, r->down_len);
		if (n > 0) {
			memmove(r->down, r->down + n, r->down_len - (size_t)n);
			r->down_len -= (size_t)n;
			moved = true;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -relay_fail(r, EXIT_FAIL, "writing to basculed: %s", strerror(errno));
	}
	if (!r->remote_eof && libssh2_channel_eof(r->chan))
		r->remote_eof = moved = true;
	return moved;
}

static int relay_pump(struct relay *r)
{
	for (;;) {
		struct pollfd p[3];
		int np = 0, rc, dir, secs = KEEPALIVE_SECS;

		if ((rc = relay_step(r)) < 0)
			return -rc;
		if (r->remote_eof && !r->down_len)
			return 0;
		/* libssh2 keeps the time: it sends when due, says when next. */
		libssh2_keepalive_send(r->s, &secs);
		if (rc > 0)
			continue; /* something moved: try again before sleeping */
		dir = libssh2_session_block_directions(r->s);
		p[np++] = (struct pollfd){ .fd = r->sock,
					   .events = (short)(POLLIN | (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND ? POLLOUT : 0)) };
		if (!r->in_eof && r->up_len < UP_CAP)
			p[np++] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
		if (r->down_len)
			p[np++] = (struct pollfd){ .fd = STDOUT_FILENO, .events = POLLOUT };
		if (poll(p, (nfds_t)np, (secs > 0 ? secs : 1) * 1000) < 0 && errno != EINTR)
			return relay_fail(r, EXIT_FAIL, "poll: %s", strerror(errno));
		for (int i = 0; i < np; i++)
			if (p[i].fd == STDOUT_FILENO && (p[i].revents & (POLLERR | POLLHUP)))
				return relay_fail(r, EXIT_FAIL, "basculed closed the connection");
	}
}

/* The receiver ended its output: its exit status, if it comes in time. */
static int relay_exit_status(struct relay *r)
{
	char *sig = NULL, buf[4096];
	ssize_t n;
	int rc, tries = CLOSE_WAIT_MSEC / 100;

	close(STDOUT_FILENO);
	while ((rc = libssh2_channel_close(r->chan)) == LIBSSH2_ERROR_EAGAIN && tries-- > 0)
		wait_session(r, 100);
	while (rc == 0 && (rc = libssh2_channel_wait_closed(r->chan)) == LIBSSH2_ERROR_EAGAIN && tries-- > 0)
		wait_session(r, 100);
	while ((n = libssh2_channel_read_stderr(r->chan, buf, sizeof(buf))) > 0)
		err_forward(r, buf, (size_t)n);
	err_flush(r);
	libssh2_channel_get_exit_signal(r->chan, &sig, NULL, NULL, NULL, NULL, NULL);
	if (sig) {
		rc = relay_fail(r, EXIT_FAIL, "the receiver on %s was killed by signal %s", r->host, sig);
		libssh2_free(r->s, sig);
		return rc;
	}
	return libssh2_channel_get_exit_status(r->chan);
}
int cmd_relay(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "identity", required_argument, NULL, 'i' },
		{ "known-hosts", required_argument, NULL, 'K' },
		{ "command", required_argument, NULL, 'c' },
		{ "user", required_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *url = NULL, *identity = NULL, *known_hosts = NULL, *command = NULL, *user = "bascule";
	struct ssh_creds creds = { 0 };
	struct relay r = { .sock = -1 };
	struct ssh_url u;
	char note[512];
	int c, rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': url = optarg; break;
		case 'i': identity = optarg; break;
		case 'K': known_hosts = optarg; break;
		case 'c': command = optarg; break;
		case 'U': user = optarg; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (!url || !identity || !known_hosts || !command || optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	log_init("bascule relay", arg_global.verbose);
	signal(SIGPIPE, SIG_IGN);
	if ((rc = ssh_url_parse(url, &u)) < 0) {
		log_error("%s", err_msg(rc));
		return EXIT_USAGE;
	}
	r.host = u.host;
	/* Everything from files first, while it may still be read. */
	if ((rc = ssh_creds_load(identity, known_hosts, &creds)) < 0) {
		log_error("%s", err_msg(rc));
		return EXIT_FAIL;
	}
	if (libssh2_init(0) != 0) {
		ssh_creds_free(&creds);
		log_error("libssh2 cannot be initialised");
		return EXIT_FAIL;
	}
	{
		/* Readable: /etc and /usr (the resolver, OpenSSL's configuration);
		 * TCP: the secondary's port, and 53 for DNS answers too long for UDP. */
		struct sandbox sb = { .prog = "bascule relay", .user = user, .resolver = true,
				      .tcp_ports = { (uint16_t)u.port, 53 }, .n_ports = 2 };
		if ((rc = sandbox_enter(&sb, note, sizeof(note))) < 0) {
			log_error("%s", err_msg(rc));
			ssh_creds_free(&creds);
			return rc == -ENOENT || rc == -EINVAL ? EXIT_CONFIG : EXIT_FAIL;
		}
		if (note[0])
			log_warn("%s", note);
		sandbox_probe("bascule relay");
	}
	rc = ssh_open_creds(&u, &creds, "the secondary", &r.s, &r.sock);
	ssh_creds_free(&creds);
	if (rc < 0) {
		log_error("%s", err_msg(rc));
		return EXIT_FAIL;
	}
	libssh2_keepalive_config(r.s, 1, KEEPALIVE_SECS);
	if (!(r.chan = libssh2_channel_open_session(r.s))) {
		rc = relay_fail(&r, EXIT_FAIL, "cannot open an SSH channel on %s: %s", u.host, ssh_error(r.s));
		goto out;
	}
	if (libssh2_channel_exec(r.chan, command) != 0) {
		rc = relay_fail(&r, EXIT_FAIL, "cannot run the receiver on %s: %s", u.host, ssh_error(r.s));
		goto out;
	}
	log_debug("SSH channel to %s open, receiver started", u.host);
	r.up = malloc(UP_CAP);
	r.down = malloc(DOWN_CAP);
	if (!r.up || !r.down) {
		rc = relay_fail(&r, EXIT_FAIL, "out of memory");
		goto out;
	}
	libssh2_session_set_blocking(r.s, 0);
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	fcntl(STDOUT_FILENO, F_SETFL, fcntl(STDOUT_FILENO, F_GETFL) | O_NONBLOCK);
	if ((rc = relay_pump(&r)) == 0)
		rc = relay_exit_status(&r);
out:
	err_flush(&r);
	/* The socket goes first: nothing may wait on the peer while freeing. */
	if (r.sock >= 0)
		shutdown(r.sock, SHUT_RDWR);
	if (r.s)
		libssh2_session_set_blocking(r.s, 1);
	if (r.chan)
		libssh2_channel_free(r.chan);
	if (r.s)
		libssh2_session_free(r.s);
	if (r.sock >= 0)
		close(r.sock);
	free(r.up);
	free(r.down);
	libssh2_exit();
	return rc;
}
