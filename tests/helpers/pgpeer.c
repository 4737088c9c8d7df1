/* pgpeer - test helper: the owner's side of the pgstream pipe, with the
 * flush position under the test's control.  Reads the child's frames on
 * stdin and writes commands on stdout (wire it to `bascule pgstream`
 * through a FIFO):
 *   mkfifo F; bascule pgstream ... < F | pgpeer --status FILE [--flush-limit LSN] > F
 * It sends START (from the slot) after HELLO, checks that WAL arrives
 * without gap, and reports as flushed min(received, limit); SIGUSR1 lifts
 * the limit.  FILE is rewritten after each batch: "received X/Y",
 * "flushed X/Y", "frames N", and "error CODE NAME" once the child sent one.
 *   pgpeer --status FILE [--flush-limit LSN] */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include "err.h"
#include "fsutil.h"
#include "pgpipe.h"
#include "pgwal.h"

int main(int argc, char **argv)
{
	const char *status = NULL;
	uint64_t limit = UINT64_MAX, received = 0, flushed = 0, frames = 0;
	uint32_t error = 0;
	struct pgpipe_io io;
	int rc = 0;
	sigset_t mask;
	int sfd;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--status") && i + 1 < argc)
			status = argv[++i];
		else if (!strcmp(argv[i], "--flush-limit") && i + 1 < argc) {
			if (pgwal_lsn_parse(argv[++i], &limit) < 0) {
				fprintf(stderr, "pgpeer: bad LSN %s\n", argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "usage: pgpeer --status FILE [--flush-limit LSN]\n");
			return 2;
		}
	}
	if (!status)
		return 2;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	pgpipe_io_init(&io, STDIN_FILENO, STDOUT_FILENO, 4u << 20, 1u << 20);
	while (!io.eof) {
		struct pollfd p[3] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = -1 }, { .fd = sfd, .events = POLLIN } };
		struct pgp_msg m;
		char a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN], text[256];
		int r;

		if (pgpipe_io_pending(&io)) {
			p[1].fd = STDOUT_FILENO;
			p[1].events = POLLOUT;
		}
		if (poll(p, 3, -1) < 0 && errno != EINTR) {
			rc = 1;
			break;
		}
		if (p[2].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				if (si.ssi_signo == SIGTERM)
					io.eof = true;
			if (io.eof)
				break;
			limit = UINT64_MAX;
		}
		if (p[0].revents) {
			while ((r = pgpipe_io_read(&io)) > 0)
				while ((r = pgpipe_io_next(&io, PGP_OWNER, &m)) > 0) {
					frames++;
					if (m.type == PGP_HELLO)
						pgpipe_put_pos(&io.out, PGP_START, 0, 0);
					else if (m.type == PGP_STREAMING)
						received = m.u.pos.lsn;
					else if (m.type == PGP_ERROR)
						error = m.u.error.code;
					else if (m.type == PGP_WAL) {
						if (m.u.wal.lsn != received) {
							fprintf(stderr, "pgpeer: WAL at %s, expected %s\n",
								pgwal_lsn_format(m.u.wal.lsn, a), pgwal_lsn_format(received, b));
							rc = 5;
							goto out;
						}
						received += m.u.wal.len;
					}
				}
			if (r < 0 && r != -EAGAIN) {
				fprintf(stderr, "pgpeer: %s\n", err_msg(r));
				rc = 5;
				goto out;
			}
		}
		{
			uint64_t f = received < limit ? received : limit;
			if (f > flushed) {
				flushed = f;
				pgpipe_put_flushed(&io.out, flushed);
			}
		}
		if (pgpipe_io_flush(&io) < 0)
			break;
		snprintf(text, sizeof(text), "received %s\nflushed %s\nframes %llu\n%s%s%s", pgwal_lsn_format(received, a),
			 pgwal_lsn_format(flushed, b), (unsigned long long)frames, error ? "error " : "",
			 error ? pgpipe_error_name(error) : "", error ? "\n" : "");
		fs_write_atomic(status, text, strlen(text), 0644);
	}
out:
	pgpipe_io_free(&io);
	close(sfd);
	return rc;
}
