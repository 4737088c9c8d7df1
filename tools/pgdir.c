/* pgdir.c - the standalone owner of `bascule pgstream`: it runs the child
 * (this program again, unprivileged and sandboxed) over a pair of pipes,
 * exactly as basculed will, and writes what the child sends:
 *   --to-dir DIR       WAL segments as pg_receivewal writes them: 16 MiB
 *                      files (the server's wal_segment_size), the current
 *                      one NAME.partial padded with zeros, renamed once
 *                      complete, timeline history files; WAL is reported
 *                      flushed to the server only once fsynced;
 *   --base-backup DIR  the archives of BASE_BACKUP (base.tar, OID.tar) and
 *                      backup_manifest, as pg_basebackup -Ft -X none.
 * Frames from the child are decoded as hostile (lib/pgpipe.c). */
#include "pgstream.h"
#include "err.h"
#include "fsutil.h"
#include "pgpipe.h"
#include "pgwal.h"
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define IN_MAX (4u << 20)
#define OUT_MAX (1u << 20)

struct owner {
	const struct pgstream_opts *o;
	pid_t pid;
	struct pgpipe_io io;
	const char *dir;
	int dirfd;
	bool have_hello, closing;
	struct pgp_hello hello;
	uint32_t child_error;     /* the code of the child's PGP_ERROR, if any */
	int exit_code;            /* our own failure (-1: none) */
	/* WAL */
	bool streaming;
	uint32_t tli;
	uint64_t expect;          /* the LSN the next WAL frame must start at */
	int fd;                   /* the segment being written (-1: none) */
	uint32_t fd_tli;
	uint64_t fd_segno;
	uint64_t written, synced; /* ends of the WAL written into files, and fsynced */
	/* base backup */
	struct pgp_bb_order order;
	int afd, mfd;             /* the archive being written; backup_manifest.tmp */
	uint64_t bb_start, bytes;
	uint32_t bb_tli;
	bool bb_done;
};

static void die(struct owner *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void die(struct owner *w, int code, const char *fmt, ...)
{
	va_list ap;

	if (w->exit_code >= 0)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "bascule pgstream: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	w->exit_code = code;
	w->closing = true;
}

static void io_error(struct owner *w, const char *what, const char *name, int err)
{
	die(w, err == ENOSPC || err == EDQUOT ? EXIT_NOSPACE : EXIT_FAIL, "%s %s/%s: %s%s", what, w->dir, name,
	    strerror(err), err == ENOSPC ? " (free space there, or write elsewhere)" : "");
}

/* --- WAL ------------------------------------------------------------------ */

/* Where to resume, as pg_receivewal's FindStreamingStart: after the newest
 * complete segment, or at the start of the newest partial one; 0 when the
 * directory holds no WAL (then the slot decides). */
static int find_start(struct owner *w, uint64_t *ret_lsn, uint32_t *ret_tli)
{
	uint32_t segsize = w->hello.segsize, best_tli = 0;
	uint64_t best_seg = 0;
	bool found = false, best_partial = false;
	DIR *d = fdopendir(dup(w->dirfd));
	struct dirent *e;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		char name[PGWAL_SEG_NAME_LEN];
		uint32_t tli;
		uint64_t segno;
		struct stat st;
		size_t n = strlen(e->d_name);
		bool partial = n == 32 && !strcmp(e->d_name + 24, ".partial");

		if (n != 24 && !partial)
			continue;
		snprintf(name, sizeof(name), "%.24s", e->d_name);
		if (pgwal_seg_parse(name, segsize, &tli, &segno) < 0 ||
		    fstatat(w->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		/* A short NAME.partial is a run killed while padding it: zeros
		 * only (WAL is written once the whole segment is), padded on. */
		if ((uint64_t)st.st_size != segsize && !(partial && (uint64_t)st.st_size < segsize)) {
			closedir(d);
			return err_set(EBADMSG, "%s/%s has %lld bytes, not a whole segment of %u: remove it if it is "
				       "not WAL", w->dir, e->d_name, (long long)st.st_size, segsize);
		}
		if (!found || segno > best_seg || (segno == best_seg && tli > best_tli) ||
		    (segno == best_seg && tli == best_tli && best_partial && !partial)) {
			found = true;
			best_seg = segno;
			best_tli = tli;
			best_partial = partial;
		}
	}
	closedir(d);
	*ret_lsn = found ? (best_seg + !best_partial) * segsize : 0;
	*ret_tli = found ? best_tli : 0;
	return 0;
}

static int close_segment(struct owner *w)
{
	char name[PGWAL_SEG_NAME_LEN], partial[PGWAL_SEG_NAME_LEN + 8];
	bool complete = w->written >= (w->fd_segno + 1) * w->hello.segsize && w->tli == w->fd_tli;
	int r = 0;

	if (w->fd < 0)
		return 0;
	pgwal_seg_name(name, w->fd_tli, w->fd_segno, w->hello.segsize);
	snprintf(partial, sizeof(partial), "%s.partial", name);
	if (fsync(w->fd) < 0)
		r = -errno;
	close(w->fd);
	w->fd = -1;
	if (r == 0 && complete && renameat(w->dirfd, partial, w->dirfd, name) < 0)
		r = -errno;
	if (r == 0 && fsync(w->dirfd) < 0)
		r = -errno;
	if (r < 0)
		io_error(w, "cannot complete", partial, -r);
	return r;
}

static int open_segment(struct owner *w, uint32_t tli, uint64_t segno)
{
	char name[PGWAL_SEG_NAME_LEN + 8];
	static const uint8_t zero[8192];
	struct stat st;
	int fd;

	pgwal_seg_name(name, tli, segno, w->hello.segsize);
	strcat(name, ".partial");
	fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || fstat(fd, &st) < 0) {
		io_error(w, "cannot open", name, errno);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size < w->hello.segsize) {
		/* Padded with zeros to the whole segment, as pg_receivewal; on
		 * from where a run killed while padding stopped (find_start). */
		for (uint64_t off = (uint64_t)st.st_size / sizeof(zero) * sizeof(zero); off < w->hello.segsize;
		     off += sizeof(zero))
			if (fs_pwrite_full(fd, zero, sizeof(zero), off) < 0) {
				io_error(w, "cannot pad", name, errno);
				close(fd);
				unlinkat(w->dirfd, name, 0);
				return -1;
			}
	} else if ((uint64_t)st.st_size != w->hello.segsize) {
		die(w, EXIT_INTEGRITY, "%s/%s has %lld bytes, more than a segment of %u", w->dir, name,
		    (long long)st.st_size, w->hello.segsize);
		close(fd);
		return -1;
	}
	w->fd = fd;
	w->fd_tli = tli;
	w->fd_segno = segno;
	return 0;
}

static void on_wal(struct owner *w, uint32_t tli, uint64_t lsn, const uint8_t *data, uint32_t len)
{
	char a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN];
	uint32_t segsize = w->hello.segsize;

	if (!w->streaming || tli != w->tli || lsn != w->expect) {
		die(w, EXIT_INTEGRITY, "the child sent WAL of timeline %u at %s, expected timeline %u at %s", tli,
		    pgwal_lsn_format(lsn, a), w->tli, pgwal_lsn_format(w->expect, b));
		return;
	}
	while (len && w->exit_code < 0) {
		uint64_t segno = pgwal_segno(lsn, segsize), off = lsn % segsize;
		uint32_t n = (uint32_t)(len < segsize - off ? len : segsize - off);

		if (w->fd >= 0 && (w->fd_segno != segno || w->fd_tli != tli) && close_segment(w) < 0)
			return;
		if (w->fd < 0) {
			if (off != 0 && w->written != lsn) {
				die(w, EXIT_INTEGRITY, "WAL at offset %llu of a segment with no file open",
				    (unsigned long long)off);
				return;
			}
			if (open_segment(w, tli, segno) < 0)
				return;
		}
		if (fs_pwrite_full(w->fd, data, n, off) < 0) {
			io_error(w, "cannot write", "WAL segment", errno);
			return;
		}
		data += n;
		len -= n;
		lsn += n;
		w->written = lsn;
		if (off + n == segsize && close_segment(w) < 0)
			return;
	}
	w->expect = lsn;
}

static void on_history(struct owner *w, uint32_t tli, const uint8_t *data, uint32_t len)
{
	char name[PGWAL_HISTORY_NAME_LEN], path[4096];
	int r;

	pgwal_history_name(name, tli);
	if (faccessat(w->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return;
	if ((r = fs_path(path, sizeof(path), w->dir, name)) < 0 || (r = fs_write_atomic(path, data, len, 0600)) < 0)
		io_error(w, "cannot write", name, -r);
}

/* After each batch of frames: fsync what was written and report it. */
static void sync_wal(struct owner *w)
{
	if (w->written <= w->synced || w->exit_code >= 0)
		return;
	if (w->fd >= 0 && fdatasync(w->fd) < 0) {
		io_error(w, "cannot fsync", "WAL segment", errno);
		return;
	}
	w->synced = w->written;
	pgpipe_put_flushed(&w->io.out, w->synced);
	if (w->o->endpos && w->synced >= w->o->endpos)
		w->closing = true;
}

/* --- base backup ---------------------------------------------------------- */

static int close_file(struct owner *w, int *fd, const char *name)
{
	int r = 0;

	if (*fd < 0)
		return 0;
	if (fsync(*fd) < 0)
		r = -errno;
	close(*fd);
	*fd = -1;
	if (r < 0)
		io_error(w, "cannot fsync", name, -r);
	return r;
}

static void on_backup(struct owner *w, const struct pgp_msg *m)
{
	char a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN];

	if (pgpipe_bb_order(&w->order, m->type) < 0) {
		die(w, EXIT_INTEGRITY, "%s", err_msg(-EPROTO));
		return;
	}
	switch (m->type) {
	case PGP_BB_START:
		w->bb_start = m->u.bb_start.lsn;
		w->bb_tli = m->u.bb_start.tli;
		break;
	case PGP_BB_ARCHIVE:
		if (close_file(w, &w->afd, "archive") < 0)
			return;
		w->afd = openat(w->dirfd, m->u.archive.name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (w->afd < 0)
			io_error(w, "cannot create", m->u.archive.name, errno);
		break;
	case PGP_BB_MANIFEST:
		if (close_file(w, &w->afd, "archive") < 0)
			return;
		w->mfd = openat(w->dirfd, "backup_manifest.tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
				0600);
		if (w->mfd < 0)
			io_error(w, "cannot create", "backup_manifest.tmp", errno);
		break;
	case PGP_BB_DATA:
		if (fs_write_full(w->mfd >= 0 ? w->mfd : w->afd, m->u.data.data, m->u.data.len) < 0)
			io_error(w, "cannot write", w->mfd >= 0 ? "backup_manifest.tmp" : "archive", errno);
		w->bytes += m->u.data.len;
		break;
	case PGP_BB_PROGRESS:
		if (w->o->verbose)
			fprintf(stderr, "bascule pgstream: %llu kB sent\n", (unsigned long long)(m->u.done >> 10));
		break;
	case PGP_BB_END:
		/* Everything durable first; backup_manifest last marks the backup whole. */
		if (close_file(w, &w->afd, "archive") < 0 || close_file(w, &w->mfd, "backup_manifest.tmp") < 0)
			return;
		if (w->order.stage == 4 && faccessat(w->dirfd, "backup_manifest.tmp", F_OK, 0) == 0 &&
		    (fsync(w->dirfd) < 0 || renameat(w->dirfd, "backup_manifest.tmp", w->dirfd, "backup_manifest") < 0 ||
		     fsync(w->dirfd) < 0)) {
			io_error(w, "cannot complete", "backup_manifest", errno);
			return;
		}
		printf("base backup of timeline %u from %s to %s: %u archives, %llu bytes in %s\n", w->bb_tli,
		       pgwal_lsn_format(w->bb_start, a), pgwal_lsn_format(m->u.bb_end.lsn, b), w->order.archives,
		       (unsigned long long)w->bytes, w->dir);
		fflush(stdout);
		w->bb_done = true;
		w->closing = true;
		break;
	}
}

/* --- the child ------------------------------------------------------------ */

static void on_frame(struct owner *w, const struct pgp_msg *m)
{
	if (!w->have_hello && m->type != PGP_HELLO && m->type != PGP_ERROR) {
		die(w, EXIT_INTEGRITY, "the child spoke before HELLO (frame %u)", m->type);
		return;
	}
	switch (m->type) {
	case PGP_HELLO: {
		uint64_t lsn = 0;
		uint32_t tli = 0;
		int r;
		if (w->have_hello) {
			die(w, EXIT_INTEGRITY, "the child said HELLO twice");
			return;
		}
		w->have_hello = true;
		w->hello = m->u.hello;
		if (w->o->backup_dir) {
			pgpipe_put_base_backup(&w->io.out, (w->o->fast_checkpoint ? PGP_BBF_FAST : 0) |
					       (w->o->progress ? PGP_BBF_PROGRESS : 0), w->o->label);
			break;
		}
		if ((r = find_start(w, &lsn, &tli)) < 0) {
			die(w, err_exit_code(r), "%s", err_msg(r));
			return;
		}
		pgpipe_put_pos(&w->io.out, PGP_START, tli, lsn);
		break;
	}
	case PGP_STREAMING:
		if (w->o->backup_dir) {
			die(w, EXIT_INTEGRITY, "the child streams WAL during a base backup");
			return;
		}
		if (w->fd >= 0 && close_segment(w) < 0)
			return;
		if (m->u.pos.lsn % w->hello.segsize) {
			die(w, EXIT_INTEGRITY, "the child streams from the middle of a segment");
			return;
		}
		w->streaming = true;
		w->tli = m->u.pos.tli;
		/* Nothing new to report until WAL arrives (a new timeline sends
		 * its first segment again, from its start). */
		w->expect = w->written = w->synced = m->u.pos.lsn;
		if (w->o->verbose)
			fprintf(stderr, "bascule pgstream: streaming timeline %u from %s\n", w->tli,
				pgwal_lsn_format(w->expect, (char[PGWAL_LSN_LEN]){ 0 }));
		break;
	case PGP_WAL:
		on_wal(w, m->u.wal.tli, m->u.wal.lsn, m->u.wal.data, m->u.wal.len);
		break;
	case PGP_KEEPALIVE:
		break;
	case PGP_TIMELINE:
		if (!w->streaming || m->u.timeline.tli != w->tli) {
			die(w, EXIT_INTEGRITY, "the child ended timeline %u while streaming %u", m->u.timeline.tli, w->tli);
			return;
		}
		sync_wal(w);
		close_segment(w); /* stays .partial when the switch fell inside it */
		w->streaming = false;
		break;
	case PGP_HISTORY:
		on_history(w, m->u.history.tli, m->u.history.data, m->u.history.len);
		break;
	case PGP_ERROR:
		/* The child printed it on stderr already. */
		w->child_error = m->u.error.code;
		w->closing = true;
		break;
	default:
		if (w->o->backup_dir)
			on_backup(w, m);
		else
			die(w, EXIT_INTEGRITY, "the child sent base backup frames while streaming");
		break;
	}
}

static int spawn(struct owner *w, char *const *argv)
{
	int in[2], out[2];

	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return -errno;
	}
	w->pid = fork();
	if (w->pid < 0)
		return -errno;
	if (w->pid == 0) {
		if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0)
			_exit(EXIT_FAIL);
		execv("/proc/self/exe", argv);
		fprintf(stderr, "bascule pgstream: cannot run the child: %s\n", strerror(errno));
		_exit(EXIT_FAIL);
	}
	close(in[0]);
	close(out[1]);
	pgpipe_io_init(&w->io, out[0], in[1], IN_MAX, OUT_MAX);
	return 0;
}

static int prepare_dir(struct owner *w)
{
	const char *dir = w->dir;
	int r;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return err_set(errno, "cannot create %s: %s", dir, strerror(errno));
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0)
		return err_set(errno, "cannot open %s: %s", dir, strerror(errno));
	if (!w->o->backup_dir)
		return 0;
	/* A base backup goes into an empty directory, as pg_basebackup's. */
	if ((r = fs_dir_empty(w->dirfd)) < 0)
		return err_set(-r, "cannot read %s: %s", dir, strerror(-r));
	if (r == 0)
		return err_set(EEXIST, "%s is not empty: a base backup needs an empty directory", dir);
	return 0;
}

int pgstream_dir_run(const struct pgstream_opts *o, char *const *child_argv)
{
	struct owner w = { .o = o, .fd = -1, .afd = -1, .mfd = -1, .dirfd = -1, .exit_code = -1 };
	int sfd, status = 0, r;

	w.dir = o->backup_dir ? o->backup_dir : o->to_dir;
	if ((r = prepare_dir(&w)) < 0) {
		fprintf(stderr, "bascule pgstream: %s\n", err_msg(r));
		return r == -EEXIST ? EXIT_USAGE : err_exit_code(r);
	}
	sfd = pgstream_signalfd();
	if ((r = spawn(&w, child_argv)) < 0) {
		fprintf(stderr, "bascule pgstream: cannot start the child: %s\n", strerror(-r));
		return EXIT_FAIL;
	}
	while (!w.io.eof) {
		struct pollfd p[3] = { { .fd = w.io.rfd, .events = POLLIN }, { .fd = -1 }, { .fd = sfd, .events = POLLIN } };
		struct pgp_msg m;

		if (w.io.wfd >= 0 && pgpipe_io_pending(&w.io)) {
			p[1].fd = w.io.wfd;
			p[1].events = POLLOUT;
		}
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			break;
		if (p[2].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				;
			w.closing = true;
		}
		if (p[0].revents) {
			while ((r = pgpipe_io_read(&w.io)) > 0)
				while (w.exit_code < 0 && (r = pgpipe_io_next(&w.io, PGP_OWNER, &m)) > 0)
					on_frame(&w, &m);
			if (r < 0 && r != -EAGAIN)
				die(&w, EXIT_INTEGRITY, "bad frame from the child: %s", err_msg(r));
			sync_wal(&w);
		}
		if (w.io.wfd >= 0 && pgpipe_io_flush(&w.io) < 0 && !w.closing)
			w.closing = true;
		/* Closing: our last FLUSHED written, end the child's input; it
		 * reports where it stands to the server and exits. */
		if (w.closing && w.io.wfd >= 0 && (!pgpipe_io_pending(&w.io) || w.exit_code >= 0)) {
			if (w.exit_code >= 0)
				kill(w.pid, SIGTERM);
			close(w.io.wfd);
			w.io.wfd = -1;
		}
		/* Decided (an error of ours): the child's frames are no longer
		 * read, so its pipe would never reach EOF (and poll would spin on
		 * what stays unread): stop here; closing our end below ends it. */
		if (w.exit_code >= 0 && w.io.wfd < 0)
			break;
	}
	if (w.fd >= 0)
		close_segment(&w);
	close_file(&w, &w.afd, "archive");
	close_file(&w, &w.mfd, "backup_manifest.tmp");
	/* Our ends first: a child still writing gets EPIPE instead of blocking. */
	if (w.io.wfd >= 0)
		close(w.io.wfd);
	close(w.io.rfd);
	while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR)
		;
	pgpipe_io_free(&w.io);
	if (w.dirfd >= 0)
		close(w.dirfd);
	if (sfd >= 0)
		close(sfd);
	if (w.exit_code >= 0)
		return w.exit_code;
	if (w.child_error)
		return pgpipe_error_exit(w.child_error);
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "bascule pgstream: the child was killed by signal %d\n", WTERMSIG(status));
		return EXIT_FAIL;
	}
	if (WEXITSTATUS(status))
		return WEXITSTATUS(status);
	if (o->backup_dir && !w.bb_done) {
		fprintf(stderr, "bascule pgstream: the base backup did not complete (no backup_manifest in %s)\n", w.dir);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}
