/* cmd_ship.c - bascule ship -c ship.yaml: the hybrid-PRA client's cron job
 * (docs/hybrid.md).  Quiet on success (one line with --verbose), the exit
 * codes of bascule(1) for cron and timers. */
#include "cmd.h"
#include "err.h"
#include "intake.h"
#include "ship.h"
#include "units.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define SHIP_CONFIG "/etc/bascule/ship.yaml"

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule ship [-c ship.yaml] [--verbose] [--night YYYY-MM-DD] [--full]\n"
		   "       bascule ship --print-keys\n\n"
		   "Ship tonight's dump to the operator's intake (hybrid PRA, docs/hybrid.md): run\n"
		   "the configured dump command, compute a librsync delta against the previous\n"
		   "night's dump (a full dump every full_every nights or when there is no usable\n"
		   "base), compress (zstd), encrypt to the client's public key, sign, and upload\n"
		   "write-once; the night's signed manifest is created last, so a run killed at\n"
		   "any point leaves nothing that counts, and the next run completes the night.\n"
		   "A night already shipped is not shipped again (exit 0); a manifest of that night\n"
		   "that does not count (cut while written) uses its name up (exit 1).\n\n"
		   "  -c, --config FILE  the job's configuration (default " SHIP_CONFIG ")\n"
		   "      --verbose      one line on success: night, kind, dump and upload sizes\n"
		   "      --night DATE   ship under this night's name instead of today's (a re-run\n"
		   "                     of a missed night; tests)\n"
		   "      --full         a full dump tonight, whatever full_every says\n"
		   "      --print-keys   every ship.yaml key with its default and meaning\n\n"
		   "Exit codes: 0 shipped (or already shipped), 1 failure (the dump command's own\n"
		   "failure: its exit status and message; a night's name used up), 2 usage (a\n"
		   "--night that is not a date), 3 configuration, 4 key, 7 no space at the\n"
		   "intake, 9 another ship is running.\n");
}

int cmd_ship(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "night", required_argument, NULL, 'n' },
		{ "full", no_argument, NULL, 'F' },
		{ "print-keys", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct ship_opts o = { .verbose = arg_global.verbose > 0 };
	const char *file = arg_global.config ? arg_global.config : SHIP_CONFIG;
	struct ship_config *c = NULL;
	struct ship_result res;
	int ch, r;

	while ((ch = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': file = optarg; break;
		case 'v': o.verbose = true; break;
		case 'n': o.night = optarg; break;
		case 'F': o.force_full = true; break;
		case 'P': ship_config_print_keys(); return EXIT_OK;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (o.night && !intake_night_ok(o.night)) {
		fprintf(stderr, "bascule ship: --night %s is not a date YYYY-MM-DD (see --help)\n", o.night);
		return EXIT_USAGE;
	}
	if ((r = ship_config_read(file, &c)) < 0)
		return cmd_fail("ship", r);
	r = ship_run(c, &o, &res);
	ship_config_free(c);
	if (r < 0)
		return cmd_fail("ship", r);
	if (o.verbose && res.already)
		printf("night %s was already shipped: nothing to do\n", res.night);
	else if (o.verbose) {
		char dump[32], up[32];
		units_fmt_size(res.dump_bytes, dump, sizeof(dump));
		units_fmt_size(res.stored_bytes, up, sizeof(up));
		printf("shipped night %s (%s%s): dump %s, uploaded %s (%.2f%% of the dump) in %u objects, %.1f s\n",
		       res.night, res.full ? "full" : "delta against ", res.full ? "" : res.base, dump, up,
		       res.dump_bytes ? 100.0 * (double)res.stored_bytes / (double)res.dump_bytes : 0.0,
		       res.objects, res.seconds);
	}
	return EXIT_OK;
}
