/* lock.c - the replica's locks: the main lock one recv or replica command
 * holds (and its take-over from a stale receiver), and the apply lock that
 * lets a live reader see one complete epoch. */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* HOW is LOCK_EX (the receiver and repair: replica files or state change)
 * or LOCK_SH (a live reader).  Exclusive holds nest; a receiver that has to
 * wait for a reader says so once (the daemon logs the receiver's stderr). */
int apply_lock(struct replica *r, int how)
{
	char path[RPATH];

	if (how == LOCK_EX && r->apply_depth++ > 0)
		return 0;
	if (r->apply_fd < 0) {
		snprintf(path, sizeof(path), "%s/apply.lock", r->meta);
		r->apply_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (r->apply_fd < 0)
			r->apply_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (r->apply_fd < 0) {
			if (how == LOCK_EX)
				r->apply_depth--;
			return err_set(errno, "cannot open %s: %s", path, strerror(errno));
		}
		keep_owner(r, path);
	}
	if (flock(r->apply_fd, how | LOCK_NB) == 0)
		return 0;
	if (how == LOCK_EX)
		log_info("waiting for a reader of the replica (bascule replica verify or clone) to finish");
	while (flock(r->apply_fd, how) < 0)
		if (errno != EINTR) {
			if (how == LOCK_EX)
				r->apply_depth--;
			return err_set(errno, "cannot lock %s/apply.lock: %s", r->meta, strerror(errno));
		}
	return 0;
}

void apply_unlock(struct replica *r, int how)
{
	if (r->apply_fd < 0 || (how == LOCK_EX && --r->apply_depth > 0))
		return;
	flock(r->apply_fd, LOCK_UN);
}

/* The pid recorded in the lock file by its holder, 0 if none (yet). */
pid_t lock_holder(const char *lock_path, bool *is_recv)
{
	char buf[32], path[64], cmd[4096];
	ssize_t n;
	pid_t pid;
	int fd;

	*is_recv = false;
	if ((fd = open(lock_path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = fs_pread_full(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	pid = (pid_t)atoi(buf);
	if (pid <= 1 || pid == getpid())
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0; /* gone: the lock is being released or taken by a newer holder */
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	cmd[n] = 0;
	for (ssize_t i = 0; i < n; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	*is_recv = strstr(cmd, " recv ") != NULL;
	return pid;
}

/* Take the lock from a receiver: one left over by a connection that died
 * (its peer gone, it has not noticed yet), or one the daemon keeps (or has
 * just made) connected.  Safe at any point: the journal makes a kill
 * recoverable.  Only a `bascule recv` holder of this same lock is stopped
 * (TERM, then KILL after 5 s); another replica command, or a holder that has
 * not recorded its pid yet, is waited for.  Gives up after 10 s. */
int take_over(const char *lock_path)
{
	pid_t signalled = 0;
	int waited = 0, rc;

	for (int i = 0; i < 200; i++) {
		bool is_recv;
		pid_t pid;
		if ((rc = fs_lock(lock_path)) != -EBUSY)
			return rc;
		pid = lock_holder(lock_path, &is_recv);
		if (pid && is_recv) {
			if (pid != signalled) {
				log_warn("taking over from receiver %d, left over from an earlier "
					 "connection or just started by the daemon", (int)pid);
				kill(pid, SIGTERM);
				signalled = pid;
				waited = 0;
			} else if (++waited == 100) {
				kill(pid, SIGKILL);
			}
		}
		usleep(50000);
	}
	return rc;
}
