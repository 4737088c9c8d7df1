/* randwrite - test helper: overwrite COUNT random 4 KiB blocks of FILE with
 * random bytes (a VM writing at random), then fsync.
 *   randwrite FILE COUNT [SEED] [mix|plain] [BYTES]   prints nothing; exit 0
 * BYTES (a multiple of 4096, default 4096): the size of each write, aligned
 * to it.
 * With "mix", each block gets the contents of another random block of the
 * same file with its first 64 bytes randomised: new data (no block repeats)
 * that compresses like the image's own, as a guest rewriting files does. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	unsigned long long count, blocks;
	unsigned seed;
	struct stat st;
	static char buf[1 << 20];
	size_t io = argc > 5 ? strtoul(argv[5], NULL, 10) : 4096;
	int fd, mix = argc > 4 && !strcmp(argv[4], "mix");

	if (argc < 3) {
		fprintf(stderr, "usage: randwrite FILE COUNT [SEED] [mix|plain] [BYTES]\n");
		return 2;
	}
	if (!io || io % 4096 || io > sizeof(buf)) {
		fprintf(stderr, "randwrite: BYTES must be a multiple of 4096 up to %zu\n", sizeof(buf));
		return 2;
	}
	count = strtoull(argv[2], NULL, 10);
	seed = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : (unsigned)getpid();
	srandom(seed);
	fd = open(argv[1], mix ? O_RDWR : O_WRONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[1]);
		return 1;
	}
	blocks = (unsigned long long)st.st_size / io;
	for (unsigned long long i = 0; i < count && blocks; i++) {
		unsigned long long b = (((unsigned long long)random() << 31) ^ (unsigned long long)random()) % blocks;
		size_t from = 0;
		if (mix) {
			unsigned long long o = (((unsigned long long)random() << 31) ^ (unsigned long long)random()) % blocks;
			if (pread(fd, buf, io, (off_t)(o * io)) != (ssize_t)io) {
				perror("pread");
				return 1;
			}
			from = io - 64;
		}
		for (size_t k = from; k < io; k += sizeof(long)) {
			long v = random();
			*(long *)(buf + k - from) = v ^ (v << 31);
		}
		if (pwrite(fd, buf, io, (off_t)(b * io)) != (ssize_t)io) {
			perror("pwrite");
			return 1;
		}
	}
	if (fsync(fd) < 0) {
		perror("fsync");
		return 1;
	}
	close(fd);
	return 0;
}
