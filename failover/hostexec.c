/* hostexec.c - commands on runbook hosts, local or over SSH. */
#include "hostexec.h"
#include "clock.h"
#include "err.h"
#include "ssh.h"
#include "subproc.h"
#include <errno.h>
#include <libssh2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int hostexec_init(void)
{
	return libssh2_init(0) == 0 ? 0 : err_set(EIO, "libssh2 could not be initialised");
}

void hostexec_done(void)
{
	libssh2_exit();
}

/* "env 'A=b' ... 'ARG0' 'ARG1' ...": ARGV for the remote user's shell. */
static char *remote_command(const char *const *argv, const char *const *env)
{
	size_t n = 1, k = 0;
	const char **all;
	char *out;

	for (const char *const *e = env; e && *e; e++)
		n++;
	for (const char *const *a = argv; *a; a++)
		n++;
	if (!(all = malloc((n + 1) * sizeof(*all))))
		return NULL;
	all[k++] = "env";
	for (const char *const *e = env; e && *e; e++)
		all[k++] = *e;
	for (const char *const *a = argv; *a; a++)
		all[k++] = *a;
	all[k] = NULL;
	out = subproc_quote_argv(all);
	free(all);
	return out;
}

/* The number of the signal SSH names ("KILL", RFC 4254 6.10), 0 if unknown. */
static int signal_number(const char *name)
{
	for (int i = 1; i < NSIG; i++) {
		const char *n = sigabbrev_np(i);
		if (n && !strcmp(n, name))
			return i;
	}
	return 0;
}

static int run_ssh(const struct rb_host *h, const char *full, uint64_t timeout,
		   struct subproc_result *res)
{
	struct ssh_url u;
	char url[4200];
	LIBSSH2_SESSION *s = NULL;
	LIBSSH2_CHANNEL *ch = NULL;
	uint64_t deadline = clock_deadline(timeout);
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
			if (subproc_output_add(res, HOST_OUTPUT_MAX, buf, (size_t)n) < 0) {
				rc = err_set(ENOMEM, "host %s: out of memory reading the command's output",
					     h->name);
				goto out;
			}
			continue;
		}
		if (n == LIBSSH2_ERROR_EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			int ms = clock_ms_until(deadline);
			if (ms == 0) {
				res->timed_out = true;
				break;
			}
			int dir = libssh2_session_block_directions(s);
			p.events = (dir & LIBSSH2_SESSION_BLOCK_INBOUND ? POLLIN : 0) |
				   (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND ? POLLOUT : 0);
			poll(&p, 1, ms);
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
				res->term_signal = signal_number(sig);
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

int host_run(const struct rb_host *h, const char *const *argv, const char *const *env,
	     uint64_t timeout, struct subproc_result *res)
{
	struct subproc_result r = { .exit_status = -1 };
	char *full;
	int rc;

	if (!strcmp(h->url, "local"))
		return subproc_run(argv, &(struct subproc_opts){ .env = env, .timeout = timeout,
								  .output_max = HOST_OUTPUT_MAX }, res);
	if (!(full = remote_command(argv, env)))
		return err_set(ENOMEM, "host %s: out of memory", h->name);
	/* An empty output is "" as it is locally. */
	if ((rc = subproc_output_add(&r, HOST_OUTPUT_MAX, "", 0)) == 0 &&
	    (rc = run_ssh(h, full, timeout, &r)) == 0) {
		*res = r;
		r.output = NULL;
	}
	subproc_result_free(&r);
	free(full);
	return rc;
}
