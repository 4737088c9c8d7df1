/* blockdiff - test helper: how many 4 KiB blocks differ between A and B
 * (a shorter file reads as zeros).   blockdiff A B  ->  prints a number */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t fill(int fd, char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < len)
		memset(buf + got, 0, len - got);
	return got;
}

int main(int argc, char **argv)
{
	const size_t len = 1 << 20;
	char *a = malloc(len), *b = malloc(len);
	unsigned long long n = 0;
	int fa, fb;

	if (argc != 3 || !a || !b || (fa = open(argv[1], O_RDONLY)) < 0 || (fb = open(argv[2], O_RDONLY)) < 0) {
		fprintf(stderr, "usage: blockdiff A B\n");
		return 2;
	}
	for (;;) {
		size_t ra = fill(fa, a, len), rb = fill(fb, b, len);
		if (!ra && !rb)
			break;
		if (memcmp(a, b, len) == 0)
			continue;
		for (size_t o = 0; o < len; o += 4096)
			n += memcmp(a + o, b + o, 4096) != 0;
	}
	printf("%llu\n", n);
	free(a);
	free(b);
	close(fa);
	close(fb);
	return 0;
}
