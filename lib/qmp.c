/* qmp.c - QMP and guest-agent client (qmp.h): line-framed JSON over a unix
 * socket, every read bounded by a deadline, replies capped in size. */
#include "qmp.h"
#include "clock.h"
#include "err.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_LINE_MAX (4u << 20) /* query-block of many nodes stays far below */

struct qmp {
	int fd;
	int timeout_ms;
	char *buf;        /* bytes read, not yet consumed */
	size_t len, cap;
	unsigned long id; /* each command's "id", matched in its reply */
	char err_class[64];
};

static int qmp_connect(const char *path, int timeout_ms, struct qmp **ret_q)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct qmp *q;

	if (strlen(path) >= sizeof(sa.sun_path))
		return err_set(ENAMETOOLONG, "QMP socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->timeout_ms = timeout_ms;
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		qmp_close(q);
		return err_set(e, "cannot connect to %s: %s", path, strerror(e));
	}
	*ret_q = q;
	return 0;
}

/* The next line (without its newline) as a JSON object, within DEADLINE
 * (monotonic usec). */
static int qmp_read_obj(struct qmp *q, uint64_t deadline, json_t **ret)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		if (nl) {
			size_t n = (size_t)(nl - q->buf);
			json_error_t je;
			json_t *o = json_loadb(q->buf, n, JSON_REJECT_DUPLICATES, &je);
			memmove(q->buf, nl + 1, q->len - n - 1);
			q->len -= n + 1;
			if (n == 0 || (n == 1 && q->buf[0] == '\r')) {
				json_decref(o);
				continue;
			}
			if (!o || !json_is_object(o)) {
				json_decref(o);
				return err_set(EPROTO, "QMP: a reply that is not a JSON object: %s", je.text);
			}
			*ret = o;
			return 0;
		}
		if (q->len >= QMP_LINE_MAX)
			return err_set(EPROTO, "QMP: a reply longer than %u bytes", QMP_LINE_MAX);
		if (q->cap - q->len < 65536) {
			size_t cap = q->cap ? q->cap * 2 : 65536;
			char *b = realloc(q->buf, cap);
			if (!b)
				return -ENOMEM;
			q->buf = b;
			q->cap = cap;
		}
		uint64_t now = clock_mono_usec();
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		if (now >= deadline)
			return err_set(ETIMEDOUT, "QMP: no reply within %d ms", q->timeout_ms);
		int pr = poll(&p, 1, (int)((deadline - now + 999) / 1000));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (pr == 0)
			return err_set(ETIMEDOUT, "QMP: no reply within %d ms", q->timeout_ms);
		ssize_t got = read(q->fd, q->buf + q->len, q->cap - q->len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return err_set(ECONNRESET, "QMP: the peer closed the connection");
		q->len += (size_t)got;
	}
}

static int qmp_write_cmd(struct qmp *q, const char *cmd, json_t *args, bool with_id)
{
	json_t *o = json_object();
	char *s = NULL;
	int r = 0;

	if (!o || json_object_set_new(o, "execute", json_string(cmd)) < 0 ||
	    (args && json_object_set(o, "arguments", args) < 0) ||
	    (with_id && json_object_set_new(o, "id", json_integer((json_int_t)++q->id)) < 0) ||
	    !(s = json_dumps(o, JSON_COMPACT))) {
		r = -ENOMEM;
		goto out;
	}
	size_t n = strlen(s), done = 0;
	s[n] = '\n'; /* json_dumps leaves room for the NUL: replace it */
	while (done < n + 1) {
		ssize_t w = send(q->fd, s + done, n + 1 - done, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			r = err_set(errno, "QMP: cannot send %s: %s", cmd, strerror(errno));
			goto out;
		}
		done += (size_t)w;
	}
out:
	free(s);
	json_decref(o);
	return r;
}

int qmp_exec(struct qmp *q, const char *cmd, json_t *args, json_t **ret)
{
	uint64_t deadline = clock_mono_usec() + (uint64_t)q->timeout_ms * 1000u;
	json_t *o = NULL;
	int r;

	q->err_class[0] = 0;
	r = qmp_write_cmd(q, cmd, args, true);
	json_decref(args);
	if (r < 0)
		return r;
	for (;;) {
		json_t *id;
		if ((r = qmp_read_obj(q, deadline, &o)) < 0)
			return err_wrap(r, "%s", cmd);
		if (json_object_get(o, "event") || json_object_get(o, "QMP")) {
			json_decref(o);
			continue;
		}
		id = json_object_get(o, "id");
		if (!json_is_integer(id) || json_integer_value(id) != (json_int_t)q->id) {
			json_decref(o); /* the reply of an earlier command given up on */
			continue;
		}
		break;
	}
	json_t *v = json_object_get(o, "return"), *e = json_object_get(o, "error");
	if (e) {
		const char *cl = json_string_value(json_object_get(e, "class"));
		const char *desc = json_string_value(json_object_get(e, "desc"));
		snprintf(q->err_class, sizeof(q->err_class), "%s", cl ? cl : "?");
		r = err_set(EREMOTEIO, "%s: %s (%s)", cmd, desc ? desc : "error", q->err_class);
	} else if (!v) {
		r = err_set(EPROTO, "%s: a reply with neither return nor error", cmd);
	} else if (ret) {
		*ret = json_incref(v);
	}
	json_decref(o);
	return r;
}

int qmp_send(struct qmp *q, const char *cmd, json_t *args)
{
	int r = qmp_write_cmd(q, cmd, args, false);
	json_decref(args);
	return r;
}

const char *qmp_error_class(const struct qmp *q)
{
	return q->err_class;
}

int qmp_open(const char *path, int timeout_ms, struct qmp **ret_q)
{
	struct qmp *q = NULL;
	json_t *o = NULL;
	int r;

	if ((r = qmp_connect(path, timeout_ms, &q)) < 0)
		return r;
	r = qmp_read_obj(q, clock_mono_usec() + (uint64_t)timeout_ms * 1000u, &o);
	if (r == 0 && !json_is_object(json_object_get(o, "QMP")))
		r = err_set(EPROTO, "%s: no QMP greeting (is it a QMP socket?)", path);
	json_decref(o);
	if (r == 0)
		r = qmp_exec(q, "qmp_capabilities", NULL, NULL);
	if (r < 0) {
		qmp_close(q);
		return err_wrap(r, "QMP %s", path);
	}
	*ret_q = q;
	return 0;
}

int qmp_open_agent(const char *path, int timeout_ms, struct qmp **ret_q)
{
	struct qmp *q = NULL;
	json_t *v = NULL;
	json_int_t token = (json_int_t)(clock_mono_usec() & 0x3fffffff);
	int r;

	if ((r = qmp_connect(path, timeout_ms, &q)) < 0)
		return r;
	/* The agent echoes the id of guest-sync: older replies are skipped by
	 * qmp_exec's id match, and the returned token is checked too. */
	r = qmp_exec(q, "guest-sync", json_pack("{sI}", "id", token), &v);
	if (r == 0 && (!json_is_integer(v) || json_integer_value(v) != token))
		r = err_set(EPROTO, "guest-sync: the agent returned another token");
	json_decref(v);
	if (r < 0) {
		qmp_close(q);
		return err_wrap(r, "guest agent %s", path);
	}
	*ret_q = q;
	return 0;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	free(q->buf);
	free(q);
}
