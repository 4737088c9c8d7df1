/* relay - test helper: a tampering man in the middle on the daemon-to-
 * receiver stream.  Runs CMD with a pipe as its stdin and copies our stdin
 * into it; once TRIGGER exists, the byte AT bytes further in the stream is
 * flipped (one bit), once per session.  CMD's stdout is ours (the replies pass untouched).
 *   relay --trigger FILE --at N -- CMD [ARGS...] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *trigger = NULL;
	unsigned long long at = 0, pos = 0, flip = ~0ULL;
	int i, p[2], status;
	char buf[65536];
	pid_t pid;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--trigger") && i + 1 < argc)
			trigger = argv[++i];
		else if (!strcmp(argv[i], "--at") && i + 1 < argc)
			at = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
	}
	if (!trigger || i >= argc) {
		fprintf(stderr, "usage: relay --trigger FILE --at N -- CMD [ARGS...]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (pipe(p) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		dup2(p[0], 0);
		close(p[0]);
		close(p[1]);
		execvp(argv[i], argv + i);
		_exit(127);
	}
	close(p[0]);
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf)), w = 0;
		if (n <= 0)
			break;
		if (flip == ~0ULL && access(trigger, F_OK) == 0)
			flip = pos + at;
		if (flip != ~0ULL && pos <= flip && flip < pos + (unsigned long long)n) {
			buf[flip - pos] ^= 0x10;
			fprintf(stderr, "relay: flipped a bit at byte %llu of the stream\n", flip);
		}
		pos += (unsigned long long)n;
		while (w < n) {
			ssize_t k = write(p[1], buf + w, (size_t)(n - w));
			if (k <= 0)
				goto done;
			w += k;
		}
	}
done:
	close(p[1]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
