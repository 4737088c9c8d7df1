/* relay - test helper: a man in the middle on the daemon-to-receiver
 * stream.  Runs CMD with a pipe as its stdin and copies our stdin into it.
 *   --trigger FILE --at N   once FILE exists, the byte N bytes further in the
 *                           stream is flipped (one bit), once per session;
 *   --record PREFIX         the session's bytes are kept in PREFIX.d2r (daemon
 *                           to receiver) and PREFIX.r2d (the replies), each
 *                           truncated when a session starts (tests/helpers/replay.c
 *                           replays them).
 * CMD's stdout is ours (the replies pass untouched).
 *   relay [--trigger FILE --at N] [--record PREFIX] -- CMD [ARGS...] */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int write_all(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t k = write(fd, buf, n);
		if (k <= 0)
			return -1;
		buf += k;
		n -= (size_t)k;
	}
	return 0;
}

static int open_record(const char *prefix, const char *ext)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s.%s", prefix, ext);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		perror(path);
	return fd;
}

/* Copy FROM to TO (and to REC if >= 0) until EOF, in a child process. */
static pid_t tee_child(int from, int to, int rec)
{
	pid_t pid = fork();
	char buf[65536];

	if (pid != 0)
		return pid;
	for (;;) {
		ssize_t n = read(from, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (rec >= 0 && write_all(rec, buf, (size_t)n) < 0)
			break;
		if (write_all(to, buf, (size_t)n) < 0)
			break;
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	const char *trigger = NULL, *record = NULL;
	unsigned long long at = 0, pos = 0, flip = ~0ULL;
	int i, p[2], q[2] = { -1, -1 }, status, rec_d2r = -1, rec_r2d = -1;
	char buf[65536];
	pid_t pid, tee = -1;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--trigger") && i + 1 < argc)
			trigger = argv[++i];
		else if (!strcmp(argv[i], "--at") && i + 1 < argc)
			at = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--record") && i + 1 < argc)
			record = argv[++i];
		else if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
	}
	if ((!trigger && !record) || i >= argc) {
		fprintf(stderr, "usage: relay [--trigger FILE --at N] [--record PREFIX] -- CMD [ARGS...]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (record && ((rec_d2r = open_record(record, "d2r")) < 0 ||
		       (rec_r2d = open_record(record, "r2d")) < 0 || pipe(q) < 0))
		return 1;
	if (pipe(p) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		dup2(p[0], 0);
		close(p[0]);
		close(p[1]);
		if (record) {
			dup2(q[1], 1);
			close(q[0]);
			close(q[1]);
		}
		execvp(argv[i], argv + i);
		_exit(127);
	}
	close(p[0]);
	if (record) {
		close(q[1]);
		tee = tee_child(q[0], 1, rec_r2d);
		close(q[0]);
	}
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (trigger && flip == ~0ULL && access(trigger, F_OK) == 0)
			flip = pos + at;
		if (flip != ~0ULL && pos <= flip && flip < pos + (unsigned long long)n) {
			buf[flip - pos] ^= 0x10;
			fprintf(stderr, "relay: flipped a bit at byte %llu of the stream\n", flip);
		}
		pos += (unsigned long long)n;
		if (rec_d2r >= 0 && write_all(rec_d2r, buf, (size_t)n) < 0)
			break;
		if (write_all(p[1], buf, (size_t)n) < 0)
			break;
	}
	close(p[1]);
	waitpid(pid, &status, 0);
	if (tee > 0)
		waitpid(tee, NULL, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
