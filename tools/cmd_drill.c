/* cmd_drill.c - bascule drill RUNBOOK --mode MODE | --resume | --abort
 *               bascule report verify [--key PUB] REPORT */
#include "checks.h"
#include "cmd.h"
#include "drill.h"
#include "err.h"
#include "hostexec.h"
#include "report.h"
#include "runbook.h"
#include "units.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes of bascule drill (documented in bascule(1)). */
#define DRILL_MET 0
#define DRILL_NOT_MET 1
#define DRILL_ERROR 2
/* 3: an --abort whose undo steps did not all succeed, 5: a hybrid drill
 * stopped by a damaged night (report_exit_code()). */

static void drill_usage(FILE *f)
{
	fprintf(f,
		"Usage: bascule drill RUNBOOK --mode MODE [--at TIME | --epoch N] [--incident TIME]\n"
		"       bascule drill RUNBOOK --resume | --abort\n"
		"       bascule drill --reference\n\n"
		"Run a failover drill described by RUNBOOK (runbook(5)) and write a signed report.\n\n"
		"Modes:\n"
		"  plan        validate the runbook and print the steps; touch nothing\n"
		"  planned     stop the services on the primary, final sync (RPO 0), promote the\n"
		"              replicas, start the services on the secondary, check, switch traffic\n"
		"  unplanned   the primary is lost: promote the last complete consistent epoch\n"
		"              (or --at/--epoch), start, check, switch; RPO = data-loss window\n"
		"  test        production keeps running: boot clones of the replicas in isolation,\n"
		"              check, tear down\n"
		"  failback    reverse replication to the old primary (librsync resync), then a\n"
		"              planned switch home\n"
		"  hybrid      a client's nightly dump (the runbook's hybrid section): intake check,\n"
		"              restore and load the night, start the services, check; RPO = the\n"
		"              dump's age at the declaration\n\n"
		"Options:\n"
		"  --resume          finish an interrupted drill (the step that was running runs again)\n"
		"  --abort           undo an interrupted or failed drill: bring production back\n"
		"  --at TIME         unplanned: newest epoch cut at or before TIME\n"
		"                    (@UNIXSECONDS or YYYY-MM-DDTHH:MM:SS[Z])\n"
		"  --epoch N         unplanned: exactly epoch N\n"
		"  --incident TIME   unplanned, hybrid: when the incident was declared (RTO and RPO\n"
		"                    are measured from it; default: the start of the drill)\n"
		"  --quiet           print only the summary\n"
		"  --reference       print every runbook key with its type, default and meaning\n\n"
		"Exit status: 0 objectives met, 1 objectives not met, 2 error (bad runbook, a step\n"
		"failed: the drill can be resumed or aborted; also a completed --abort), 3 --abort\n"
		"incomplete: an undo step failed, production is not fully back; run --abort again;\n"
		"5 hybrid: a night of the client is damaged (the report names it), nothing of it loaded.\n");
}

static int finish(struct drill *d, bool keep_journal, bool aborting)
{
	json_t *r = report_build(d), *doc = NULL;
	char jp[4400], hp[4400];
	int rc, code;

	if (!r)
		return DRILL_ERROR;
	if ((rc = report_sign(r, d->rb->report.signing_key, &doc)) < 0) {
		fprintf(stderr, "bascule drill: cannot sign the report: %s\n", err_msg(rc));
		json_decref(r);
		return DRILL_ERROR;
	}
	code = report_exit_code(r);
	if ((rc = report_write(doc, d->rb->report.dir, jp, hp, sizeof(jp))) < 0) {
		fprintf(stderr, "bascule drill: %s\n", err_msg(rc));
		code = DRILL_ERROR;
	} else {
		report_summary(r, stdout);
		printf("  report: %s\n          %s%s\n", jp, hp,
		       d->rb->report.signing_key ? "" : "  (NOT signed: set report.signing_key)");
	}
	if (!keep_journal && (rc = drill_finish(d)) < 0) {
		fprintf(stderr, "bascule drill: %s\n", err_msg(rc));
		code = DRILL_ERROR;
	}
	if (keep_journal && aborting)
		fprintf(stderr, "bascule drill: some undo steps failed: %s\nProduction is NOT fully "
				"back.  The drill stays recorded in %s: fix the cause and run "
				"'bascule drill %s --abort' again (only what did not finish runs).\n",
			d->message, d->journal, d->rb->file);
	else if (keep_journal)
		fprintf(stderr, "bascule drill: %s\nThe drill is recorded in %s: fix the cause and run "
				"'bascule drill %s --resume', or '--abort' to bring production back.\n",
			d->message, d->journal, d->rb->file);
	json_decref(doc);
	json_decref(r);
	return code;
}

int cmd_drill(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "resume", no_argument, NULL, 'r' },
		{ "abort", no_argument, NULL, 'a' },
		{ "at", required_argument, NULL, 't' },
		{ "epoch", required_argument, NULL, 'e' },
		{ "incident", required_argument, NULL, 'i' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "reference", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *mode_s = NULL;
	bool resume = false, abort_ = false, quiet = false;
	uint64_t at = 0, epoch = 0, incident = 0;
	enum drill_mode mode = MODE_PLAN;
	struct runbook *rb = NULL;
	struct drill *d = NULL;
	int c, rc, code = DRILL_ERROR;

	while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mode_s = optarg; break;
		case 'r': resume = true; break;
		case 'a': abort_ = true; break;
		case 'q': quiet = true; break;
		case 't': case 'i':
			if (units_parse_time(optarg, c == 't' ? &at : &incident) < 0) {
				fprintf(stderr, "bascule drill: --%s wants @UNIXSECONDS or "
						"YYYY-MM-DDTHH:MM:SS[Z], got '%s'\n", c == 't' ? "at" : "incident",
					optarg);
				return DRILL_ERROR;
			}
			break;
		case 'e': {
			char *end;
			epoch = strtoull(optarg, &end, 10);
			if (*end || !*optarg || !epoch) {
				fprintf(stderr, "bascule drill: --epoch wants an epoch number\n");
				return DRILL_ERROR;
			}
			break;
		}
		case 'R': runbook_print_reference(); return 0;
		case 'h': drill_usage(stdout); return 0;
		default: drill_usage(stderr); return DRILL_ERROR;
		}
	}
	if (optind + 1 != argc || (!mode_s && !resume && !abort_) || (resume && abort_) ||
	    ((resume || abort_) && mode_s)) {
		fprintf(stderr, "bascule drill: give RUNBOOK and either --mode MODE, --resume or --abort "
				"(bascule drill --help)\n");
		return DRILL_ERROR;
	}
	if (mode_s && mode_parse(mode_s, &mode) < 0) {
		fprintf(stderr, "bascule drill: unknown mode '%s': use plan, planned, unplanned, test, "
				"failback or hybrid\n", mode_s);
		return DRILL_ERROR;
	}
	if (((at || epoch) && mode != MODE_UNPLANNED) ||
	    (incident && mode != MODE_UNPLANNED && mode != MODE_HYBRID)) {
		fprintf(stderr, "bascule drill: --at and --epoch go with --mode unplanned, --incident with "
				"--mode unplanned or hybrid\n");
		return DRILL_ERROR;
	}
	if ((rc = runbook_load(argv[optind], &rb)) < 0) {
		fprintf(stderr, "bascule drill: %s\n", err_msg(rc));
		return DRILL_ERROR;
	}
	if (runbook_is_hybrid(rb) != (mode == MODE_HYBRID) && mode_s && mode != MODE_PLAN) {
		fprintf(stderr, runbook_is_hybrid(rb)
				? "bascule drill: %s is a hybrid runbook (a client's nightly dump: its hybrid section): "
				  "run it with --mode hybrid\n"
				: "bascule drill: %s has no hybrid section: --mode hybrid restores a client's nightly dump "
				  "(runbook(5), HYBRID)\n", rb->file);
		goto out;
	}
	/* Databases come back through PostgreSQL's own replication; disks need
	 * the reverse replication (a runbook of databases alone has none). */
	if (mode == MODE_FAILBACK && (rb->failback.start || !rb->databases.n) &&
	    (!rb->failback.start || !rb->failback.control_socket || !rb->failback.replica_root)) {
		fprintf(stderr, "bascule drill: %s: failback needs failback.start, "
				"failback.control_socket and failback.replica_root in the runbook\n",
			rb->file);
		goto out;
	}
	if (mode == MODE_FAILBACK && (rc = runbook_check_failback(rb)) < 0) {
		fprintf(stderr, "bascule drill: %s\n", err_msg(rc));
		goto out;
	}
	if (mode == MODE_TEST && (rc = runbook_check_test(rb)) < 0) {
		fprintf(stderr, "bascule drill: %s\n", err_msg(rc));
		goto out;
	}
	if (mode_s) {
		if ((rc = drill_plan(rb, mode, &d)) < 0)
			goto fail;
		if (mode == MODE_PLAN) {
			drill_print_plan(d, stdout);
			code = 0;
			goto out;
		}
		d->at = at;
		d->at_epoch = epoch;
		d->incident = incident;
		if ((rc = drill_begin(d)) < 0)
			goto fail;
	} else if ((rc = drill_load(rb, &d)) < 0 || (resume && (rc = drill_resumable(d)) < 0)) {
		goto fail;
	}
	d->quiet = quiet;
	if ((rc = hostexec_init()) < 0 || (rc = checks_init()) < 0)
		goto fail;
	if (!quiet)
		printf("Drill %s: %s, mode %s%s\n", d->id, rb->name, mode_name(d->mode),
		       resume ? " (resumed)" : abort_ ? " (abort)" : "");
	if (abort_)
		rc = drill_abort(d);
	else
		rc = drill_run(d);
	code = finish(d, rc < 0, abort_);
	checks_done();
	hostexec_done();
	goto out;
fail:
	fprintf(stderr, "bascule drill: %s\n", err_msg(rc));
out:
	drill_free(d);
	runbook_free(rb);
	return code;
}

int cmd_report(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *key = NULL;
	char who[17] = "";
	int c, rc;

	if (argc < 2 || strcmp(argv[1], "verify") != 0) {
		bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
		fprintf(help ? stdout : stderr,
			"Usage: bascule report verify [--key SIGNER.pub] REPORT\n\n"
			"Check the Ed25519 signature of a drill report (.json or .html).  For a page,\n"
			"also check that it is exactly the page rendered from the signed data.\n"
			"--key pins the signer's public key (from 'bascule keygen signing');\n"
			"without it the key embedded in the report is used and named.\n\n"
			"Exit status: 0 valid, 1 tampered, unsigned or signed by another key,\n"
			"2 cannot be checked.\n");
		return help ? 0 : 2;
	}
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 'h': return cmd_report(2, (char *[]){ "report", "--help", NULL });
		default: return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "Usage: bascule report verify [--key SIGNER.pub] REPORT\n");
		return 2;
	}
	rc = report_verify(argv[optind], key, who, sizeof(who));
	if (rc == 0) {
		printf("%s: signature valid, signed by key %s%s\n", argv[optind], who,
		       key ? "" : " (the key embedded in the report: pin it with --key)");
		return 0;
	}
	fprintf(stderr, "bascule report verify: %s\n", err_msg(rc));
	return rc == -EBADMSG ? 1 : 2;
}
