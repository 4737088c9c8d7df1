/* lock.c - the replica's locks: the main lock one recv or replica command
 * holds (and its take-over from a stale receiver), and the apply lock that
 * lets a live reader see one complete epoch.
 *
 * The lock file is in the owner's directory, so what it says is not
 * believed: the holder is the process the kernel names in /proc/locks for
 * that file, and it is signalled only if it records itself as a receiver,
 * runs as the replica's owner or root, and through a pidfd (a pid reused
 * in between is never signalled). */
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
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define LOCK_FILE ".bascule/lock"
#define APPLY_LOCK_FILE ".bascule/apply.lock"

/* HOW is LOCK_EX (the receiver and repair: replica files or state change)
 * or LOCK_SH (a live reader).  Exclusive holds nest; a receiver that has to
 * wait for a reader says so once (the daemon logs the receiver's stderr). */
int apply_lock(struct replica *r, int how)
{
	if (how == LOCK_EX && r->apply_depth++ > 0)
		return 0;
	if (r->apply_fd < 0) {
		r->apply_fd = tree_open(r, APPLY_LOCK_FILE, O_RDWR | O_CREAT, 0644);
		if (r->apply_fd == -EACCES || r->apply_fd == -EPERM || r->apply_fd == -EROFS)
			r->apply_fd = tree_open(r, APPLY_LOCK_FILE, O_RDONLY, 0);
		if (r->apply_fd < 0) {
			int rc = r->apply_fd;
			r->apply_fd = -1;
			if (how == LOCK_EX)
				r->apply_depth--;
			return rc == -ENOENT ? err_set(ENOENT, "cannot open %s/%s", r->root, APPLY_LOCK_FILE)
					     : rc;
		}
	}
	if (flock(r->apply_fd, how | LOCK_NB) == 0)
		return 0;
	if (how == LOCK_EX)
		log_info("waiting for a reader of the replica (bascule replica verify or clone) to finish");
	while (flock(r->apply_fd, how) < 0)
		if (errno != EINTR) {
			if (how == LOCK_EX)
				r->apply_depth--;
			return err_set(errno, "cannot lock %s/%s: %s", r->root, APPLY_LOCK_FILE,
				       strerror(errno));
		}
	return 0;
}

void apply_unlock(struct replica *r, int how)
{
	if (r->apply_fd < 0 || (how == LOCK_EX && --r->apply_depth > 0))
		return;
	flock(r->apply_fd, LOCK_UN);
}

/* The process holding the exclusive flock on FD's file, as the kernel
 * says (/proc/locks: "N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE ..."), or 0. */
static pid_t flock_holder(int fd)
{
	char line[256], kind[16], mode[16], rw[16];
	unsigned int maj, min;
	unsigned long ino;
	struct stat st;
	pid_t found = 0;
	FILE *f;
	int pid;

	if (fstat(fd, &st) < 0 || !(f = fopen("/proc/locks", "re")))
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		/* Waiters read "N: -> FLOCK ...": their kind is "->". */
		if (sscanf(line, "%*d: %15s %15s %15s %d %x:%x:%lu", kind, mode, rw, &pid, &maj, &min,
			   &ino) == 7 &&
		    !strcmp(kind, "FLOCK") && !strcmp(rw, "WRITE") && maj == major(st.st_dev) &&
		    min == minor(st.st_dev) && ino == st.st_ino && pid > 0)
			found = (pid_t)pid;
	fclose(f);
	return found;
}

/* The real and effective uid of PID (from /proc/PID/status), or -1. */
static int proc_uids(pid_t pid, uid_t *real, uid_t *eff)
{
	char path[64], line[256];
	unsigned int a, b;
	int rc = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "re")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %u %u", &a, &b) == 2) {
			*real = a;
			*eff = b;
			rc = 0;
			break;
		}
	fclose(f);
	return rc;
}

/* A pidfd of the receiver holding the main lock (FD open on the lock file),
 * or -1: none, or a holder that is not a receiver of this replica. */
static int receiver_pidfd(struct replica *r, int fd, pid_t *ret_pid)
{
	char buf[64], role[16] = "";
	uid_t real, eff;
	pid_t pid = flock_holder(fd);
	ssize_t n;
	int pidfd, wrote = 0;

	if (pid <= 1 || pid == getpid())
		return -1;
	/* "PID ROLE", as the holder wrote it: a receiver is taken over, any other
	 * replica command waited for.  A pid other than the kernel's holder is
	 * not believed. */
	n = fs_pread_full(fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	if (sscanf(buf, "%d %15s", &wrote, role) != 2 || wrote != pid || strcmp(role, "recv") != 0)
		return -1;
	if ((pidfd = pidfd_open(pid, 0)) < 0)
		return -1;
	/* Checked after the pidfd is open: it names this process, or a dead one. */
	if (proc_uids(pid, &real, &eff) < 0) {
		close(pidfd);
		return -1;
	}
	if (real != eff || (real != r->owner_uid && real != 0)) {
		log_warn("the holder of %s/%s (pid %d, uid %d) is not a receiver run by the replica's "
			 "owner (uid %u) or root: left alone",
			 r->root, LOCK_FILE, (int)pid, (int)real, (unsigned)r->owner_uid);
		close(pidfd);
		return -1;
	}
	*ret_pid = pid;
	return pidfd;
}

/* Take the lock from a receiver: one left over by a connection that died
 * (its peer gone, it has not noticed yet), or one the daemon keeps (or has
 * just made) connected.  Safe at any point: the journal makes a kill
 * recoverable.  Only a receiver holding this same lock is stopped (TERM,
 * then KILL after 5 s); another replica command, or a holder that has not
 * recorded itself yet, is waited for.  Gives up after 10 s. */
static int take_over(struct replica *r, int fd)
{
	pid_t signalled = 0;
	int pidfd = -1, waited = 0;

	for (int i = 0; i < 200; i++) {
		pid_t pid = 0;
		int p;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			if (pidfd >= 0)
				close(pidfd);
			return 0;
		}
		if ((p = receiver_pidfd(r, fd, &pid)) >= 0) {
			if (pid != signalled) {
				log_warn("taking over from receiver %d, left over from an earlier "
					 "connection or just started by the daemon", (int)pid);
				pidfd_send_signal(p, SIGTERM, NULL, 0);
				if (pidfd >= 0)
					close(pidfd);
				pidfd = p;
				p = -1;
				signalled = pid;
				waited = 0;
			} else if (++waited == 100)
				pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
			if (p >= 0)
				close(p);
		}
		usleep(50000);
	}
	if (pidfd >= 0)
		close(pidfd);
	return -EBUSY;
}

int lock_take(struct replica *r, const char *role, bool takeover)
{
	char rec[64];
	int fd, rc = 0, len;

	if ((fd = tree_open(r, LOCK_FILE, O_RDWR | O_CREAT, 0600)) < 0)
		return fd == -ENOENT ? err_set(ENOENT, "cannot open %s/%s", r->root, LOCK_FILE) : fd;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (rc == -EBUSY && takeover)
			rc = take_over(r, fd);
	}
	if (rc < 0) {
		close(fd);
		return err_set(-rc, "replica %s is in use by another bascule process (recv or replica); "
				    "stop it first", r->root);
	}
	/* Recorded for a later take-over (and only believed with the kernel's word). */
	len = snprintf(rec, sizeof(rec), "%d %s\n", (int)getpid(), role);
	if (ftruncate(fd, 0) == 0)
		fs_pwrite_full(fd, rec, (size_t)len, 0);
	r->lock_fd = fd;
	return 0;
}

void lock_end_receiver(struct replica *r, const char *why)
{
	pid_t pid = 0;
	int fd = tree_open(r, LOCK_FILE, O_RDONLY, 0), pidfd;

	if (fd < 0)
		return;
	if ((pidfd = receiver_pidfd(r, fd, &pid)) >= 0) {
		log_warn("ending the session of receiver %d %s", (int)pid, why);
		pidfd_send_signal(pidfd, SIGTERM, NULL, 0);
		close(pidfd);
	}
	close(fd);
}
