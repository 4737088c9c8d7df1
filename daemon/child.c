/* child.c - spawning, stopping and reaping the daemon's children from the
 * loop (see child.h).  posix_spawn (vfork semantics) rather than fork: the
 * cost does not grow with the daemon's mappings (block maps, spools). */
#include "child.h"
#include "daemon.h"
#include "err.h"
#include "log.h"
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct child {
	struct daemon *d;
	pid_t pid;
	sd_event_source *src, *timer;
	child_exit_fn on_exit;         /* NULL once released */
	void *userdata;
	int signals;                   /* sent so far: 0, 1 (SIGTERM), 2 (SIGKILL) */
	struct child *prev, *next;
};

static void child_unlink(struct child *c)
{
	struct daemon *d = c->d;

	if (c->prev)
		c->prev->next = c->next;
	else
		d->children = c->next;
	if (c->next)
		c->next->prev = c->prev;
	d->n_children--;
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata)
{
	struct child *c = userdata;
	struct daemon *d = c->d;

	/* sd-event reaps the process when this returns. */
	if (c->on_exit)
		c->on_exit(c->userdata, si);
	child_unlink(c);
	c->timer = sd_event_source_disable_unref(c->timer);
	c->src = sd_event_source_disable_unref(c->src);
	free(c);
	if (d->stopping && !d->n_children && !d->stop_cuts)
		sd_event_exit(d->ev, 0); /* else the last cut's end (epoch_cuts_done) */
	return 0;
}

static int on_child_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct child *c = userdata;

	if (c->signals >= 2)
		return 0;
	c->signals++;
	kill(c->pid, c->signals == 1 ? SIGTERM : SIGKILL);
	log_debug("child %d did not end: %s", (int)c->pid, c->signals == 1 ? "SIGTERM" : "SIGKILL");
	sd_event_source_set_time(s, usec + CHILD_GRACE_USEC);
	sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	return 0;
}

int child_spawn(struct daemon *d, char *const argv[], child_exit_fn on_exit, void *userdata,
		struct child **ret, int *ret_in, int *ret_out, int *ret_err)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, r;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct child *c;
	sigset_t none;
	pid_t pid;

	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		r = err_set(errno, "cannot create pipes for %s: %s", argv[0], strerror(errno));
		goto fail;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	r = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r) {
		r = err_set(r, "cannot run %s: %s", argv[0], strerror(r));
		goto fail;
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	in[0] = out[1] = err[1] = -1;
	c->d = d;
	c->pid = pid;
	c->on_exit = on_exit;
	c->userdata = userdata;
	if ((r = sd_event_add_child(d->ev, &c->src, pid, WEXITED, on_child_exit, c)) < 0) {
		/* Cannot watch it: it must not run unwatched. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		r = err_set(-r, "cannot watch child %d: %s", (int)pid, strerror(-r));
		goto fail;
	}
	c->next = d->children;
	if (c->next)
		c->next->prev = c;
	d->children = c;
	d->n_children++;
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	*ret = c;
	*ret_in = in[1];
	*ret_out = out[0];
	*ret_err = err[0];
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	free(c);
	return r;
}

void child_stop(struct child *c)
{
	if (!c || c->timer)
		return;
	if (sd_event_add_time_relative(c->d->ev, &c->timer, CLOCK_MONOTONIC, CHILD_GRACE_USEC, 10000,
				       on_child_timer, c) < 0) {
		/* No timer to wait with: end it now rather than never. */
		kill(c->pid, SIGKILL);
		c->signals = 2;
	}
}

void child_release(struct child *c)
{
	if (!c)
		return;
	c->on_exit = NULL;
	c->userdata = NULL;
	child_stop(c);
}

pid_t child_pid(const struct child *c)
{
	return c ? c->pid : 0;
}

unsigned child_count(const struct daemon *d)
{
	return d->n_children;
}

void child_reap_all(struct daemon *d)
{
	/* After the loop: what is left had its pipes closed and its signals
	 * (a stop takes 2 s at most); whatever still runs is killed. */
	while (d->children) {
		struct child *c = d->children;
		if (waitpid(c->pid, NULL, WNOHANG) == 0) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, NULL, 0);
		}
		child_unlink(c);
		sd_event_source_disable_unref(c->timer);
		sd_event_source_disable_unref(c->src);
		free(c);
	}
}
