/* ctl.c - client side of the control socket. */
#include "ctl.h"
#include "err.h"
#include "fsutil.h"
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ctl_call(const char *path, json_t *req, int timeout_ms, json_t **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *text = NULL, *buf = NULL;
	size_t len = 0, cap = 65536;
	json_error_t jerr;
	int fd = -1, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return err_set(ENAMETOOLONG, "control socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EACCES)
			r = err_set(EACCES, "may not connect to the daemon's control socket %s: %s (root and "
					    "the members of its monitor_group or control_group may)",
				    path, strerror(errno));
		else
			r = err_set(ERR_NODAEMON, "cannot reach the daemon at %s: %s (is basculed running, and "
						  "is this the control_socket of its configuration?)",
				    path, strerror(errno));
		goto out;
	}
	text = json_dumps(req, JSON_COMPACT);
	if (!text) {
		r = -ENOMEM;
		goto out;
	}
	len = strlen(text);
	text[len] = '\n';
	/* MSG_NOSIGNAL: a daemon that sheds the connection (too many clients at
	 * once) is an error to report, not a SIGPIPE that ends the program. */
	for (size_t off = 0; off < len + 1;) {
		ssize_t n = send(fd, text + off, len + 1 - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(errno == EPIPE || errno == ECONNRESET ? EPROTO : errno,
				    "the daemon closed the control connection before the request was sent "
				    "(%s): it is busy with more clients than it serves at once; try again",
				    strerror(errno));
			goto out;
		}
		off += (size_t)n;
	}
	buf = malloc(cap);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	len = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		if (poll(&p, 1, timeout_ms) <= 0) {
			r = err_set(ETIMEDOUT, "the daemon did not answer within %d ms", timeout_ms);
			goto out;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = err_set(EPROTO, "the daemon closed the control connection without an answer");
			goto out;
		}
		len += (size_t)n;
		if (memchr(buf, '\n', len))
			break;
		if (len >= cap - 1) {
			char *nb = cap < (16u << 20) ? realloc(buf, cap * 2) : NULL;
			if (!nb) {
				r = err_set(EPROTO, "answer from the daemon too large");
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
	}
	buf[len] = 0;
	*ret = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
	r = *ret ? 0 : err_set(EPROTO, "malformed answer from the daemon: %s", jerr.text);
out:
	free(text);
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}
