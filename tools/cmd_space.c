/* cmd_space.c - bascule space [--json] PATH: the space available where PATH
 * is (statvfs), for a person or, as JSON, for the drill's precheck of the
 * secondary (instead of reading df's columns). */
#include "cmd.h"
#include "err.h"
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

static void space_usage(FILE *f)
{
	fprintf(f, "Usage: bascule space [--json] PATH\n\n"
		   "The space available to ordinary users on the filesystem holding PATH (statvfs,\n"
		   "as df's \"Available\"). A PATH that does not exist yet is measured where it would\n"
		   "be created: at its nearest existing parent.\n"
		   "  --json   one JSON object: path, measured (the directory measured),\n"
		   "           available_bytes, free_bytes (root included), total_bytes\n\n"
		   "Exit 0: measured; 1: PATH cannot be measured (not a directory on the way, no\n"
		   "permission); 2: usage.\n");
}

/* Statvfs of PATH or, while it does not exist, of its nearest existing
 * parent, whose name is left in BUF. */
static int measure(const char *path, char *buf, size_t len, struct statvfs *ret)
{
	if (snprintf(buf, len, "%s", path) >= (int)len)
		return err_set(ENAMETOOLONG, "%s: path too long", path);
	for (;;) {
		char *slash;
		if (statvfs(buf, ret) == 0)
			return 0;
		if (errno != ENOENT)
			return err_set(errno, "cannot measure %s: %s", buf, strerror(errno));
		while ((slash = strrchr(buf, '/')) && slash[1] == 0 && slash != buf)
			*slash = 0; /* trailing slashes */
		if (!(slash = strrchr(buf, '/')))
			snprintf(buf, len, ".");
		else if (slash == buf)
			buf[1] = 0;
		else
			*slash = 0;
	}
}

int cmd_space(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	char at[4096];
	struct statvfs st;
	bool json = false;
	unsigned long long avail, freeb, total;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': space_usage(stdout); return EXIT_OK;
		default: space_usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !argv[optind][0]) {
		space_usage(stderr);
		return EXIT_USAGE;
	}
	if ((r = measure(argv[optind], at, sizeof(at), &st)) < 0) {
		fprintf(stderr, "bascule space: %s\n", err_msg(r));
		return EXIT_FAIL;
	}
	avail = (unsigned long long)st.f_bavail * st.f_frsize;
	freeb = (unsigned long long)st.f_bfree * st.f_frsize;
	total = (unsigned long long)st.f_blocks * st.f_frsize;
	if (json) {
		json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I}", "path", argv[optind], "measured", at,
				      "available_bytes", (json_int_t)avail, "free_bytes", (json_int_t)freeb,
				      "total_bytes", (json_int_t)total);
		r = j ? json_dumpf(j, stdout, JSON_COMPACT) : -1;
		json_decref(j);
		if (r < 0) {
			fprintf(stderr, "bascule space: out of memory\n");
			return EXIT_FAIL;
		}
		printf("\n");
	} else {
		bool parent = strcmp(at, argv[optind]) != 0;
		printf("%s: %llu MiB available of %llu MiB%s%s%s\n", argv[optind], avail >> 20,
		       total >> 20, parent ? " (measured at " : "", parent ? at : "", parent ? ")" : "");
	}
	return EXIT_OK;
}
