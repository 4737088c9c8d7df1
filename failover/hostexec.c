/* hostexec.c - commands on runbook hosts, local or over SSH. */
#include "hostexec.h"
#include "err.h"
#include "ssh.h"
#include <errno.h>
#include <fcntl.h>
#include <libssh2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int hostexec_init(void)
{
	return libssh2_init(0) == 0 ? 0 : err_set(EIO, "libssh2 could not be initialised");
}

void hostexec_done(void)
{
	libssh2_exit();
}

int shell_quote(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	if (len < 3)
		return -ENAMETOOLONG;
	buf[o++] = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			if (o + 5 >= len)
				return -ENAMETOOLONG;
			memcpy(buf + o, "'\\''", 4);
			o += 4;
		} else {
			if (o + 2 >= len)
				return -ENAMETOOLONG;
			buf[o++] = *s;
		}
	}
	buf[o++] = '\'';
	buf[o] = 0;
	return 0;
}

/* Keep the last RUN_OUTPUT_MAX bytes. */
static void out_add(struct run_result *res, const char *p, size_t n)
{
	if (n >= RUN_OUTPUT_MAX) {
		memcpy(res->output, p + n - RUN_OUTPUT_MAX, RUN_OUTPUT_MAX);
		res->output_len = RUN_OUTPUT_MAX;
		return;
	}
	if (res->output_len + n > RUN_OUTPUT_MAX) {
		size_t drop = res->output_len + n - RUN_OUTPUT_MAX;
		memmove(res->output, res->output + drop, res->output_len - drop);
		res->output_len -= drop;
	}
	memcpy(res->output + res->output_len, p, n);
	res->output_len += n;
}

/* "env 'A=b' ... sh -c 'CMD'": one string for a local sh or a remote shell. */
static char *build_command(const char *cmd, const char *const *env)
{
	size_t cap = 64 + 4 * strlen(cmd) + 8;
	char *out, *q;

	for (const char *const *e = env; e && *e; e++)
		cap += 4 * strlen(*e) + 8;
	if (!(out = malloc(cap)) || !(q = malloc(cap))) {
		free(out);
		return NULL;
	}
	strcpy(out, "env");
	for (const char *const *e = env; e && *e; e++) {
		shell_quote(*e, q, cap);
		strcat(out, " ");
		strcat(out, q);
	}
	shell_quote(cmd, q, cap);
	strcat(out, " sh -c ");
	strcat(out, q);
	free(q);
	return out;
}

static int run_local(const char *full, uint64_t timeout, struct run_result *res)
{
	int pfd[2], status = 0;
	uint64_t deadline = mono_usec() + timeout;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return err_set(errno, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return err_set(errno, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		setpgid(0, 0);
		dup2(devnull, 0);
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execl("/bin/sh", "sh", "-c", full, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		uint64_t now = mono_usec();
		char buf[4096];
		ssize_t n;
		int wait_ms = now >= deadline ? 0 : (int)((deadline - now) / 1000) + 1;
		if (now >= deadline) {
			res->timed_out = true;
			break;
		}
		if (poll(&p, 1, wait_ms) < 0 && errno != EINTR)
			break;
		if (!p.revents)
			continue;
		n = read(pfd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		out_add(res, buf, (size_t)n);
	}
	close(pfd[0]);
	if (res->timed_out)
		kill(-pid, SIGKILL);
	/* The output closed: the command is done (or its group killed). */
	for (;;) {
		pid_t w = waitpid(pid, &status, res->timed_out ? 0 : WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return err_set(errno, "waitpid: %s", strerror(errno));
		if (w == 0) {
			if (mono_usec() >= deadline) {
				res->timed_out = true;
				kill(-pid, SIGKILL);
			} else {
				usleep(10000);
			}
		}
	}
	res->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	return 0;
}

static int run_ssh(const struct rb_host *h, const char *full, uint64_t timeout,
		   struct run_result *res)
{
	struct ssh_url u;
	char url[4200];
	LIBSSH2_SESSION *s = NULL;
	LIBSSH2_CHANNEL *ch = NULL;
	uint64_t deadline = mono_usec() + timeout;
	int fd, rc = 0;

	if (strncmp(h->url, "ssh://", 6) != 0)
		return err_set(EINVAL, "host %s: url must be 'local' or ssh://user@host[:port]", h->name);
	snprintf(url, sizeof(url), "%s%s", h->url, strchr(h->url + 6, '/') ? "" : "/drill");
	if ((rc = ssh_url_parse(url, &u)) < 0)
		return rc;
	{
		char what[300];
		snprintf(what, sizeof(what), "host %s", h->name);
		if ((rc = ssh_open(&u, h->identity, h->known_hosts, what, &s, &fd)) < 0)
			return rc;
	}
	if (!(ch = libssh2_channel_open_session(s))) {
		rc = err_set(EPROTO, "host %s: cannot open a channel: %s", h->name, ssh_error(s));
		goto out;
	}
	libssh2_channel_handle_extended_data2(ch, LIBSSH2_CHANNEL_EXTENDED_DATA_MERGE);
	if (libssh2_channel_exec(ch, full) != 0) {
		rc = err_set(EPROTO, "host %s: cannot run the command: %s", h->name, ssh_error(s));
		goto out;
	}
	libssh2_session_set_blocking(s, 0);
	for (;;) {
		char buf[4096];
		ssize_t n = libssh2_channel_read(ch, buf, sizeof(buf));
		if (n > 0) {
			out_add(res, buf, (size_t)n);
			continue;
		}
		if (n == LIBSSH2_ERROR_EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			uint64_t now = mono_usec();
			if (now >= deadline) {
				res->timed_out = true;
				break;
			}
			int dir = libssh2_session_block_directions(s);
			p.events = (dir & LIBSSH2_SESSION_BLOCK_INBOUND ? POLLIN : 0) |
				   (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND ? POLLOUT : 0);
			poll(&p, 1, (int)((deadline - now) / 1000) + 1);
			continue;
		}
		if (n < 0) {
			rc = err_set(EPIPE, "host %s: connection lost while the command ran: %s", h->name,
				     ssh_error(s));
			goto out;
		}
		if (libssh2_channel_eof(ch))
			break;
	}
	libssh2_session_set_blocking(s, 1);
	libssh2_session_set_timeout(s, 5000);
	if (!res->timed_out) {
		libssh2_channel_close(ch);
		libssh2_channel_wait_closed(ch);
		res->exit_status = libssh2_channel_get_exit_status(ch);
		{
			char *sig = NULL;
			libssh2_channel_get_exit_signal(ch, &sig, NULL, NULL, NULL, NULL, NULL);
			if (sig) {
				res->exit_status = -1;
				libssh2_free(s, sig);
			}
		}
	}
out:
	if (ch)
		libssh2_channel_free(ch);
	libssh2_session_set_blocking(s, 1);
	libssh2_session_set_timeout(s, 5000);
	libssh2_session_disconnect(s, "bascule drill done");
	shutdown(fd, SHUT_RDWR);
	libssh2_session_free(s);
	close(fd);
	return rc;
}

const char *run_last_line(struct run_result *r)
{
	size_t n = r->output_len < RUN_OUTPUT_MAX ? r->output_len : RUN_OUTPUT_MAX - 1;
	char *p;

	while (n && (r->output[n - 1] == '\n' || r->output[n - 1] == ' ' || r->output[n - 1] == '\r'))
		n--;
	r->output[n] = 0;
	p = strrchr(r->output, '\n');
	return p ? p + 1 : r->output;
}

const char *run_said(struct run_result *r)
{
	const char *l = run_last_line(r);
	return *l ? l : "(no output)";
}

int host_run(const struct rb_host *h, const char *cmd, const char *const *env, uint64_t timeout,
	     struct run_result *res)
{
	char *full;
	int rc;

	memset(res, 0, offsetof(struct run_result, output));
	res->output_len = 0;
	res->exit_status = -1;
	if (!(full = build_command(cmd, env)))
		return -ENOMEM;
	rc = !strcmp(h->url, "local") ? run_local(full, timeout, res) : run_ssh(h, full, timeout, res);
	free(full);
	return rc;
}
