/* randwrite - test helper: overwrite COUNT random 4 KiB blocks of FILE with
 * random bytes (a VM writing at random), then fsync.
 *   randwrite FILE COUNT [SEED] [mix]   prints nothing; exit 0
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
	char buf[4096];
	int fd, mix = argc > 4 && !strcmp(argv[4], "mix");

	if (argc < 3) {
		fprintf(stderr, "usage: randwrite FILE COUNT [SEED]\n");
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
	blocks = (unsigned long long)st.st_size / 4096;
	for (unsigned long long i = 0; i < count && blocks; i++) {
		unsigned long long b = (((unsigned long long)random() << 31) ^ (unsigned long long)random()) % blocks;
		size_t from = 0;
		if (mix) {
			unsigned long long o = (((unsigned long long)random() << 31) ^ (unsigned long long)random()) % blocks;
			if (pread(fd, buf, sizeof(buf), (off_t)(o * 4096)) != (ssize_t)sizeof(buf)) {
				perror("pread");
				return 1;
			}
			from = sizeof(buf) - 64;
		}
		for (size_t k = from; k < sizeof(buf); k += sizeof(long)) {
			long v = random();
			*(long *)(buf + k - from) = v ^ (v << 31);
		}
		if (pwrite(fd, buf, sizeof(buf), (off_t)(b * 4096)) != (ssize_t)sizeof(buf)) {
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
