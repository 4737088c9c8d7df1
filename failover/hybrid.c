/* hybrid.c - the steps of a hybrid drill (docs/hybrid.md, "The hybrid
 * drill"): the intake check of the client, the night to restore, and its
 * restore and load.  They run on the drill's machine, where the intake is,
 * as `bascule intake ...` of this very program (/proc/self/exe), each within
 * its step's timeout; the services then start as in any drill.
 *
 * A night found damaged (or altered, or its chain broken) is recorded in
 * the step's data as damaged_night: the report names it and the drill exits
 * 5, as intake restore does. */
#include "drill_int.h"
#include "err.h"
#include "units.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HY_ARGS_MAX 24
/* ls --json of a client with years of nights stays far below this. */
#define HY_OUTPUT_MAX (4u << 20)

/* `bascule intake ARGS...` here within TIMEOUT: 0 when it ran (whatever its
 * exit status, in C->res), else a negative errno with the step's message. */
static int hy_intake(struct step_ctx *c, const char *const *args, uint64_t timeout, const char *what)
{
	const char *argv[HY_ARGS_MAX + 3] = { "/proc/self/exe", "intake" };
	struct subproc_opts o = { .env = c->env, .timeout = timeout, .output_max = HY_OUTPUT_MAX };
	size_t n = 2;
	char d[32];
	int rc;

	for (const char *const *a = args; *a; a++) {
		if (n == HY_ARGS_MAX + 2) {
			step_msg(c->s, "internal error: too many arguments for %s", what);
			return -E2BIG;
		}
		argv[n++] = *a;
	}
	argv[n] = NULL;
	subproc_result_free(&c->res);
	if ((rc = subproc_run(argv, &o, &c->res)) < 0) {
		step_msg(c->s, "%s: %s", what, err_msg(rc));
		return rc;
	}
	if (c->res.timed_out) {
		step_msg(c->s, "%s did not finish within %s", what, units_fmt_duration(timeout, d, sizeof(d)));
		return -ETIMEDOUT;
	}
	if (c->res.exit_status < 0) {
		step_msg(c->s, "%s was killed by SIG%s: %.300s", what, sigabbrev_np(c->res.term_signal) ?: "(unknown)",
			 subproc_said(&c->res));
		return -EIO;
	}
	return 0;
}

/* O (compact, sorted keys) as the step's data. */
static void hy_set_data(struct step_ctx *c, json_t *o)
{
	char *t = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	if (t && strlen(t) < sizeof(c->s->data))
		memcpy(c->s->data, t, strlen(t) + 1);
	free(t);
}

/* NIGHT recorded as damaged in the step's data: -EBADMSG. */
static int hy_damaged(struct step_ctx *c, const char *night)
{
	json_t *o = json_pack("{s:s}", "damaged_night", night);

	hy_set_data(c, o);
	json_decref(o);
	return -EBADMSG;
}

/* Freshness (max_age) and integrity, with the client's public key only:
 * `intake check --json`.  OK: done; WARNING (an incomplete manifest, an
 * upload cut): done with a warning; CRITICAL: a damaged night stops the
 * drill naming it, so does a dump older than max_age. */
int hybrid_check(struct step_ctx *c)
{
	const struct rb_hybrid *h = &c->d->rb->hybrid;
	char age[32];
	const char *status, *text, *bad;
	json_t *j, *cl;
	int rc;

	c->s->data[0] = 0;
	snprintf(age, sizeof(age), "%" PRIu64 "s", h->max_age / 1000000);
	{
		const char *const args[] = { "check", h->intake, "--client", h->client, "--max-age", age, "--json", NULL };
		if ((rc = hy_intake(c, args, c->s->timeout, "bascule intake check")) < 0)
			return rc;
	}
	if (c->res.exit_status == 3 || !(j = step_answer(c, "bascule intake check"))) {
		step_msg(c->s, "bascule intake check could not check client %s: %.400s", h->client,
			 subproc_said(&c->res));
		return -EIO;
	}
	cl = json_array_get(json_object_get(j, "clients"), 0);
	status = json_string_value(json_object_get(cl, "status")) ?: "UNKNOWN";
	text = json_string_value(json_object_get(cl, "text")) ?: "";
	bad = json_string_value(json_object_get(cl, "bad_night")) ?: "";
	rc = 0;
	if (!strcmp(status, "OK")) {
		step_msg(c->s, "%.500s", text);
	} else if (!strcmp(status, "WARNING")) {
		step_msg(c->s, "intake check WARNING");
		snprintf(c->s->warning, sizeof(c->s->warning), "%.250s", text);
	} else if (*bad) {
		step_msg(c->s, "night %s of client %s is %s: %.400s", bad, h->client,
			 json_string_value(json_object_get(cl, "bad_state")) ?: "bad", text);
		rc = hy_damaged(c, bad);
	} else {
		step_msg(c->s, "intake check %s: %.480s", status, text);
		rc = -ESTALE;
	}
	json_decref(j);
	return rc;
}

/* The night to restore, from `intake ls --json` (no secret): hybrid.night,
 * or the newest night that counts.  A named night, or a newer one than the
 * newest that counts, that fails its check is a damaged night. */
int hybrid_pick(struct step_ctx *c)
{
	const struct rb_hybrid *h = &c->d->rb->hybrid;
	const char *const args[] = { "ls", h->intake, "--client", h->client, "--json", NULL };
	bool latest = !strcmp(h->night, "latest");
	json_t *all = NULL, *nights, *n, *pick = NULL, *bad = NULL;
	json_error_t je;
	char when[40], age[32];
	size_t i;
	int rc;

	c->s->data[0] = 0;
	if ((rc = hy_intake(c, args, c->s->timeout, "bascule intake ls")) < 0)
		return rc;
	if (c->res.exit_status != 0) {
		step_msg(c->s, "bascule intake ls failed (exit %d): %.400s", c->res.exit_status, subproc_said(&c->res));
		return -EIO;
	}
	all = json_loads(c->res.output ?: "", 0, &je);
	nights = json_object_get(json_array_get(all, 0), "nights");
	if (!json_is_array(nights)) {
		step_msg(c->s, "unexpected answer from bascule intake ls: %.200s", subproc_said(&c->res));
		json_decref(all);
		return -EBADMSG;
	}
	json_array_foreach(nights, i, n) {
		const char *name = json_string_value(json_object_get(n, "night")) ?: "";
		const char *st = json_string_value(json_object_get(n, "status")) ?: "";
		bool ok = !strcmp(st, "ok");
		if (latest ? ok : !strcmp(name, h->night)) {
			pick = n;
			bad = NULL;
		} else if (latest && strcmp(st, "incomplete")) {
			bad = n; /* newer than the newest good night, not an upload cut */
		}
	}
	if (pick && strcmp(json_string_value(json_object_get(pick, "status")) ?: "", "ok"))
		bad = pick;
	if (bad) {
		const char *bn = json_string_value(json_object_get(bad, "night")) ?: "?";
		step_msg(c->s, "night %s of client %s is %s: %.300s%s", bn, h->client,
			 json_string_value(json_object_get(bad, "status")) ?: "bad",
			 json_string_value(json_object_get(bad, "problem")) ?: "",
			 latest ? " (hybrid.night: DATE restores an earlier night)" : "");
		rc = hy_damaged(c, bn);
	} else if (!pick) {
		step_msg(c->s, latest ? "client %s has no complete night at %s" : "client %s has no night %s at %s",
			 h->client, latest ? h->intake : h->night, h->intake);
		rc = -ENOENT;
	} else {
		json_int_t created = json_integer_value(json_object_get(pick, "created_unix"));
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "night",
				      json_string_value(json_object_get(pick, "night")) ?: "", "kind",
				      json_string_value(json_object_get(pick, "kind")) ?: "", "full",
				      json_string_value(json_object_get(pick, "full")) ?: "", "chain",
				      json_integer_value(json_object_get(pick, "chain")), "created_unix", created,
				      "stored_bytes", json_integer_value(json_object_get(pick, "stored_bytes")));
		uint64_t now = (uint64_t)c->s->start;
		hy_set_data(c, o);
		json_decref(o);
		units_fmt_time((uint64_t)created * 1000000ull, when, sizeof(when));
		units_fmt_duration(now > (uint64_t)created * 1000000ull ? now - (uint64_t)created * 1000000ull : 0, age,
				   sizeof(age));
		step_msg(c->s, "night %s (%s, chain of %lld from %s), uploaded %s, %s old",
			 json_string_value(json_object_get(pick, "night")) ?: "?",
			 json_string_value(json_object_get(pick, "kind")) ?: "?",
			 (long long)json_integer_value(json_object_get(pick, "chain")),
			 json_string_value(json_object_get(pick, "full")) ?: "?", when, age);
		rc = 0;
	}
	json_decref(all);
	return rc;
}

/* `intake restore --load`: rebuild the night with the client's key,
 * verified against the signed digest of the original, create the database
 * and pg_restore it.  Its last line says "loaded NIGHT into DB: T tables,
 * R rows, S s" (intake_load). */
int hybrid_restore(struct step_ctx *c)
{
	struct drill *d = c->d;
	const struct rb_hybrid *h = &d->rb->hybrid;
	json_t *pick = drill_step_find_data(d, ST_HY_PICK, "", NULL), *o;
	const char *args[HY_ARGS_MAX + 1] = { "restore", h->intake, "--client", h->client, "--night", NULL,
					      "--key", h->key, "--passphrase-file", h->passphrase_file, "--load",
					      h->load };
	size_t n = 12;
	char jobs[24], night[11], db[256] = "", *line, *into, *colon;
	long tables = -1;
	long long rows = -1;
	int rc;

	c->s->data[0] = 0;
	snprintf(night, sizeof(night), "%s", json_string_value(json_object_get(pick, "night")) ?: "");
	json_decref(pick);
	if (!night[0]) {
		step_msg(c->s, "no night was chosen (the intake-night step did not finish)");
		return -ENOENT;
	}
	args[5] = night;
	if (h->jobs) {
		snprintf(jobs, sizeof(jobs), "%" PRIu64, h->jobs);
		args[n++] = "--jobs";
		args[n++] = jobs;
	}
	if (h->replace)
		args[n++] = "--replace";
	if (h->pg_bin) {
		args[n++] = "--pg-bin";
		args[n++] = h->pg_bin;
	}
	args[n] = NULL;
	if ((rc = hy_intake(c, args, c->s->timeout, "bascule intake restore --load")) < 0)
		return rc;
	if (c->res.exit_status == EXIT_INTEGRITY) {
		step_msg(c->s, "night %s of client %s does not restore: %.400s", night, h->client, subproc_said(&c->res));
		return hy_damaged(c, night);
	}
	if (c->res.exit_status != 0) {
		step_msg(c->s, "bascule intake restore --load failed (exit %d): %.400s", c->res.exit_status,
			 subproc_said(&c->res));
		return -EIO;
	}
	/* "loaded NIGHT into DB: T tables, R rows, S s" */
	line = (char *)subproc_last_line(&c->res);
	if (strncmp(line, "loaded ", 7) || !(into = strstr(line, " into ")) || !(colon = strrchr(into, ':')) ||
	    sscanf(colon, ": %ld tables, %lld rows", &tables, &rows) != 2) {
		step_msg(c->s, "unexpected answer from bascule intake restore --load: %.200s", line);
		return -EBADMSG;
	}
	snprintf(db, sizeof(db), "%.*s", (int)(colon - into - 6), into + 6);
	o = json_pack("{s:s, s:s, s:I, s:I}", "night", night, "database", db, "tables", (json_int_t)tables, "rows",
		      (json_int_t)rows);
	hy_set_data(c, o);
	json_decref(o);
	step_msg(c->s, "night %s loaded into %s: %ld tables, %lld rows, verified against the signed digest", night,
		 db, tables, rows);
	return 0;
}
