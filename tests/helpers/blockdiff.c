/* blockdiff - test helper: how many 4 KiB blocks differ between A and B
 * (a shorter file reads as zeros).   blockdiff A B  ->  prints a number */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	static char a[4096], b[4096];
	FILE *fa, *fb;
	unsigned long long n = 0;

	if (argc != 3 || !(fa = fopen(argv[1], "rb")) || !(fb = fopen(argv[2], "rb"))) {
		fprintf(stderr, "usage: blockdiff A B\n");
		return 2;
	}
	for (;;) {
		size_t ra = fread(a, 1, sizeof(a), fa), rb = fread(b, 1, sizeof(b), fb);
		if (!ra && !rb)
			break;
		memset(a + ra, 0, sizeof(a) - ra);
		memset(b + rb, 0, sizeof(b) - rb);
		n += memcmp(a, b, sizeof(a)) != 0;
	}
	printf("%llu\n", n);
	return 0;
}
