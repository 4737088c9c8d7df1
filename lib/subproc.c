/* subproc.c - run a program within a deadline, output bounded (see subproc.h). */
#include "subproc.h"
#include "clock.h"
#include "err.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void subproc_result_free(struct subproc_result *r)
{
	if (!r)
		return;
	free(r->output);
	r->output = NULL;
	r->output_len = 0;
}

int subproc_output_add(struct subproc_result *r, size_t max, const void *p, size_t n)
{
	const char *s = p;

	if (!max)
		return 0;
	if (!r->output) {
		if (!(r->output = malloc(max + 1)))
			return -ENOMEM;
		r->output_len = 0;
		r->output[0] = 0;
	}
	if (n >= max) {
		r->output_cut |= n > max || r->output_len > 0;
		memcpy(r->output, s + n - max, max);
		r->output_len = max;
	} else {
		if (r->output_len + n > max) {
			size_t drop = r->output_len + n - max;
			memmove(r->output, r->output + drop, r->output_len - drop);
			r->output_len -= drop;
			r->output_cut = true;
		}
		memcpy(r->output + r->output_len, s, n);
		r->output_len += n;
	}
	r->output[r->output_len] = 0;
	return 0;
}

const char *subproc_last_line(struct subproc_result *r)
{
	size_t n = r->output_len;
	char *p;

	if (!r->output)
		return "";
	while (n && (r->output[n - 1] == '\n' || r->output[n - 1] == ' ' || r->output[n - 1] == '\r' ||
		     r->output[n - 1] == '\t'))
		n--;
	r->output[n] = 0;
	r->output_len = n;
	p = strrchr(r->output, '\n');
	return p ? p + 1 : r->output;
}

const char *subproc_said(struct subproc_result *r)
{
	const char *l = subproc_last_line(r);
	return *l ? l : "(no output)";
}

char *subproc_quote_argv(const char *const *argv)
{
	size_t cap = 1;
	char *out, *o;

	for (const char *const *a = argv; *a; a++) {
		cap += 3; /* quotes and a space */
		for (const char *c = *a; *c; c++)
			cap += *c == '\'' ? 4 : 1;
	}
	if (!(out = malloc(cap)))
		return NULL;
	o = out;
	for (const char *const *a = argv; *a; a++) {
		if (a != argv)
			*o++ = ' ';
		*o++ = '\'';
		for (const char *c = *a; *c; c++) {
			if (*c == '\'') {
				memcpy(o, "'\\''", 4);
				o += 4;
			} else {
				*o++ = *c;
			}
		}
		*o++ = '\'';
	}
	*o = 0;
	return out;
}

/* The caller's environment with ENV added; entries of ENV replace those of
 * the same name.  The array is malloc'd; the strings are not copied. */
static char **env_merge(const char *const *env)
{
	size_t n = 0, k = 0;
	char **out;

	for (char **e = environ; e && *e; e++)
		n++;
	for (const char *const *e = env; e && *e; e++)
		n++;
	if (!(out = malloc((n + 1) * sizeof(*out))))
		return NULL;
	for (const char *const *e = env; e && *e; e++)
		out[k++] = (char *)*e;
	for (char **e = environ; e && *e; e++) {
		size_t len = strcspn(*e, "=");
		bool replaced = false;
		for (const char *const *x = env; x && *x && !replaced; x++)
			replaced = !strncmp(*x, *e, len) && (*x)[len] == '=';
		if (!replaced)
			out[k++] = *e;
	}
	out[k] = NULL;
	return out;
}

/* Read what the pipe holds now into R, up to BUDGET bytes (a writer that
 * never pauses must not keep the caller from its deadline); 0 at EOF (the
 * fd is then closed and set to -1), 1 if it stays open. */
static int drain(int *fd, struct subproc_result *r, size_t max, size_t budget)
{
	char buf[4096];

	while (budget) {
		ssize_t n = read(*fd, buf, sizeof(buf) < budget ? sizeof(buf) : budget);
		if (n > 0) {
			if (subproc_output_add(r, max, buf, (size_t)n) < 0)
				return -ENOMEM;
			budget -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 1;
		close(*fd); /* EOF, or an error reading: nothing more will come */
		*fd = -1;
		return 0;
	}
	return 1;
}

static int start(const char *const *argv, char **envp, int out_fd, int err_fd, const struct subproc_opts *o,
		 pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	int r;

	sigemptyset(&none);
	sigfillset(&all);
	if ((r = posix_spawn_file_actions_init(&fa)) != 0)
		return -r;
	if ((r = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return -r;
	}
	r = o->stdin_fd > 0 ? posix_spawn_file_actions_adddup2(&fa, o->stdin_fd, 0)
			    : posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (!r && o->cwd_fd > 0)
		r = posix_spawn_file_actions_addfchdir_np(&fa, o->cwd_fd);
	if (!r && out_fd >= 0)
		r = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (!r && err_fd >= 0)
		r = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	if (!r)
		r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
						      POSIX_SPAWN_SETSIGDEF);
	if (!r && !(r = posix_spawnattr_setpgroup(&at, 0)) && !(r = posix_spawnattr_setsigmask(&at, &none)))
		r = posix_spawnattr_setsigdefault(&at, &all);
	if (!r)
		r = posix_spawnp(ret_pid, argv[0], &fa, &at, (char *const *)argv, envp);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return -r;
}

int subproc_run(const char *const *argv, const struct subproc_opts *o, struct subproc_result *ret)
{
	struct subproc_result res = { .exit_status = -1 };
	uint64_t deadline = clock_deadline(o->timeout);
	int pfd[2] = { -1, -1 }, pidfd = -1, status = 0, r;
	char **envp = NULL;
	pid_t pid = -1;

	if (!argv || !argv[0])
		return err_set(EINVAL, "no command to run");
	if (o->output_max > SUBPROC_OUTPUT_LIMIT)
		return err_set(EINVAL, "%s: output bound %zu above %u bytes", argv[0], o->output_max,
			       SUBPROC_OUTPUT_LIMIT);
	if (!(envp = env_merge(o->env)) ||
	    (o->output_max && subproc_output_add(&res, o->output_max, "", 0) < 0)) {
		r = err_set(ENOMEM, "cannot run %s: out of memory", argv[0]);
		goto out;
	}
	if (o->output_max && pipe2(pfd, O_CLOEXEC) < 0) {
		r = err_set(errno, "cannot run %s: pipe: %s", argv[0], strerror(errno));
		goto out;
	}
	if ((r = start(argv, envp, pfd[1], pfd[1], o, &pid)) < 0) {
		r = err_set(r, "cannot run %s: %s", argv[0], strerror(-r));
		pid = -1;
		goto out;
	}
	if (pfd[1] >= 0) {
		close(pfd[1]);
		pfd[1] = -1;
		fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	}
	if ((pidfd = pidfd_open(pid, 0)) < 0) {
		r = err_set(errno, "cannot watch %s (pid %d): pidfd_open: %s", argv[0], (int)pid,
			    strerror(errno));
		kill(-pid, SIGKILL);
		goto reap;
	}
	for (;;) {
		struct pollfd p[2] = { { .fd = pidfd, .events = POLLIN }, { .fd = pfd[0], .events = POLLIN } };
		int ms = clock_ms_until(deadline), n;
		if (ms == 0) {
			res.timed_out = true;
			kill(-pid, SIGKILL); /* the group: what the command started goes too */
			break;
		}
		n = poll(p, pfd[0] >= 0 ? 2 : 1, ms);
		if (n < 0 && errno != EINTR) {
			r = err_set(errno, "waiting for %s: poll: %s", argv[0], strerror(errno));
			kill(-pid, SIGKILL);
			break;
		}
		if (n <= 0)
			continue;
		if (pfd[0] >= 0 && p[1].revents && (r = drain(&pfd[0], &res, o->output_max, 1u << 16)) < 0) {
			r = err_set(ENOMEM, "reading the output of %s: out of memory", argv[0]);
			kill(-pid, SIGKILL);
			break;
		}
		r = 0;
		if (p[0].revents) {
			/* Exited.  What it wrote is in the pipe; a process it left
			 * behind holding the pipe is not waited for. */
			if (pfd[0] >= 0 && drain(&pfd[0], &res, o->output_max, o->output_max + (1u << 16)) < 0)
				r = err_set(ENOMEM, "reading the output of %s: out of memory", argv[0]);
			break;
		}
	}
reap:
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			if (!r)
				r = err_set(errno, "waiting for %s (pid %d): %s", argv[0], (int)pid,
					    strerror(errno));
			break;
		}
	}
	if (r == 0) {
		if (WIFEXITED(status) && !res.timed_out) {
			res.exit_status = WEXITSTATUS(status);
		} else if (WIFSIGNALED(status)) {
			res.term_signal = WTERMSIG(status);
		}
		*ret = res;
		res.output = NULL;
	}
out:
	if (pidfd >= 0)
		close(pidfd);
	for (int i = 0; i < 2; i++)
		if (pfd[i] >= 0)
			close(pfd[i]);
	subproc_result_free(&res);
	free(envp);
	return r;
}

int subproc_spawn_reader(const char *const *argv, const struct subproc_opts *o, int err_fd, pid_t *ret_pid,
			 int *ret_fd)
{
	int pfd[2], r;
	char **envp;
	pid_t pid;

	if (!argv || !argv[0])
		return err_set(EINVAL, "no command to run");
	if (!(envp = env_merge(o->env)))
		return err_set(ENOMEM, "cannot run %s: out of memory", argv[0]);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		r = err_set(errno, "cannot run %s: pipe: %s", argv[0], strerror(errno));
		free(envp);
		return r;
	}
	r = start(argv, envp, pfd[1], err_fd, o, &pid);
	free(envp);
	close(pfd[1]);
	if (r < 0) {
		close(pfd[0]);
		return err_set(-r, "cannot run %s: %s", argv[0], strerror(-r));
	}
	*ret_pid = pid;
	*ret_fd = pfd[0];
	return 0;
}

int subproc_wait(pid_t pid, struct subproc_result *ret)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_set(errno, "waiting for pid %d: %s", (int)pid, strerror(errno));
	memset(ret, 0, sizeof(*ret));
	ret->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	ret->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	return 0;
}

void subproc_words_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

int subproc_split_words(const char *s, char ***ret_argv, size_t *ret_n)
{
	size_t n = 0, cap = 8, len = strlen(s);
	char **v = calloc(cap + 1, sizeof(*v)), *w = NULL;
	size_t wl = 0;
	bool in_word = false;
	int r = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i <= len && r == 0; i++) {
		char c = s[i];
		if (c == 0 || c == ' ' || c == '\t' || c == '\n') {
			if (!in_word)
				continue;
			if (n == cap) {
				char **nv = realloc(v, (cap * 2 + 1) * sizeof(*v));
				if (!nv) {
					r = -ENOMEM;
					break;
				}
				v = nv;
				cap *= 2;
			}
			w[wl] = 0;
			v[n++] = w;
			v[n] = NULL;
			w = NULL;
			in_word = false;
			continue;
		}
		if (!in_word) {
			/* a word is never longer than what is left of S */
			if (!(w = malloc(len - i + 1))) {
				r = -ENOMEM;
				break;
			}
			wl = 0;
			in_word = true;
		}
		if (c == '\'') {
			const char *e = strchr(s + i + 1, '\'');
			if (!e) {
				r = err_set(EINVAL, "unterminated quote in a command line");
				break;
			}
			memcpy(w + wl, s + i + 1, (size_t)(e - s - i - 1));
			wl += (size_t)(e - s - i - 1);
			i = (size_t)(e - s);
		} else if (c == '\\') {
			if (!s[i + 1]) {
				r = err_set(EINVAL, "a command line ends with a backslash");
				break;
			}
			w[wl++] = s[++i];
		} else if (strchr("\"$`*?[]{}~;&|<>()#", c)) {
			r = err_set(EINVAL, "a command line with shell syntax ('%c') is not a plain one", c);
		} else
			w[wl++] = c;
	}
	if (r < 0) {
		free(w);
		subproc_words_free(v);
		return r;
	}
	*ret_argv = v;
	if (ret_n)
		*ret_n = n;
	return 0;
}
