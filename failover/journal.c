/* journal.c - the drill's journal (STATE_DIR/current.json): written
 * atomically before and after every step, read back to resume or abort, kept
 * with the reports at the end (see drill.h). */
#include "drill_int.h"
#include "err.h"
#include "fsutil.h"
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *step_base_json(const struct step *s);

/* A step's data as the object it holds (NULL: none). */
json_t *drill_step_data(const struct step *s)
{
	json_t *o = s->data[0] ? json_loads(s->data, 0, NULL) : NULL;

	if (o && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

static json_t *step_json(const struct step *s)
{
	json_t *o = step_base_json(s), *data = drill_step_data(s);

	if (o && s->database[0])
		json_object_set_new(o, "database", json_string(s->database));
	if (o && data)
		json_object_set_new(o, "data", data);
	else
		json_decref(data);
	return o;
}

static json_t *step_base_json(const struct step *s)
{
	return json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:I, s:s, s:I, s:I, s:i, "
			 "s:s, s:s, s:I, s:I, s:b}",
			 "id", s->id, "kind", step_kind_name(s->kind), "label", s->label, "service",
			 s->service, "group", s->group, "host", s->host, "switch", s->sw, "par", s->par,
			 "abort", s->abort, "timeout_us", (json_int_t)s->timeout, "status",
			 step_status_name(s->status),
			 "start_us", (json_int_t)s->start, "end_us", (json_int_t)s->end, "attempts",
			 s->attempts, "message", s->message, "warning", s->warning, "epoch",
			 (json_int_t)s->epoch, "cut_time_us", (json_int_t)s->cut_time, "consistent",
			 s->consistent);
}

json_t *drill_to_json(const struct drill *d)
{
	char dig[65];
	json_t *steps = json_array(), *res = json_array();

	sodium_bin2hex(dig, sizeof(dig), d->rb->digest, sizeof(d->rb->digest));
	for (size_t i = 0; i < d->n; i++)
		json_array_append_new(steps, step_json(&d->steps[i]));
	for (int i = 0; i < d->n_resumed; i++)
		json_array_append_new(res, json_integer((json_int_t)d->resumed[i]));
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:o, s:o}",
			 "format", "bascule-drill-journal-1", "id", d->id, "runbook", d->rb->file,
			 "runbook_blake2b", dig, "mode", mode_name(d->mode), "at_us", (json_int_t)d->at,
			 "at_epoch", (json_int_t)d->at_epoch, "incident_us", (json_int_t)d->incident,
			 "started_us", (json_int_t)d->started, "ended_us", (json_int_t)d->ended, "status",
			 d->status, "message", d->message, "resumed_us", res, "steps", steps);
}

int drill_journal_write(struct drill *d)
{
	json_t *j = drill_to_json(d);
	char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	int rc;

	json_decref(j);
	if (!text)
		return -ENOMEM;
	rc = fs_write_atomic(d->journal, text, strlen(text), 0600);
	free(text);
	return rc < 0 ? err_wrap(rc, "cannot write the drill journal %s", d->journal) : 0;
}

static int lock_state(struct drill *d)
{
	char path[4200];
	int rc;

	if ((rc = fs_mkdir_p(d->rb->state_dir, 0700)) < 0)
		return err_wrap(rc, "cannot create the drill state directory %s", d->rb->state_dir);
	snprintf(path, sizeof(path), "%s/lock", d->rb->state_dir);
	if ((rc = fs_lock(path)) < 0)
		return rc == -EBUSY ? err_set(EBUSY, "another drill of this runbook is running "
						     "(lock %s held)", path) : rc;
	d->lock_fd = rc;
	snprintf(d->journal, sizeof(d->journal), "%s/current.json", d->rb->state_dir);
	return 0;
}

int drill_begin(struct drill *d)
{
	int rc;

	if ((rc = lock_state(d)) < 0)
		return rc;
	if (access(d->journal, F_OK) == 0)
		return err_set(EEXIST, "an unfinished drill is recorded in %s: run the same command "
				       "with --resume to finish it or --abort to bring production back",
			       d->journal);
	return drill_journal_write(d);
}

static int step_from_json(json_t *o, struct step *s)
{
	const char *kind = NULL, *status = NULL, *label = "", *svc = "", *grp = "", *host = "",
		   *msg = "", *warn = "";
	json_int_t timeout = 0, start = 0, end = 0, epoch = 0, cut = 0;
	int id = 0, sw = -1, par = 0, attempts = 0, ab = 0, cons = 0;
	enum step_kind k;
	enum step_status st;

	/* "warning" and "switch" are optional: journals written before they
	 * existed resume. */
	if (json_unpack(o, "{s:i, s:s, s:s, s:s, s:s, s:s, s?:i, s:i, s:b, s:I, s:s, s:I, s:I, s:i, "
			   "s:s, s?:s, s:I, s:I, s:b}",
			"id", &id, "kind", &kind, "label", &label, "service", &svc, "group", &grp,
			"host", &host, "switch", &sw, "par", &par, "abort", &ab, "timeout_us", &timeout, "status",
			&status, "start_us", &start, "end_us", &end, "attempts", &attempts, "message",
			&msg, "warning", &warn, "epoch", &epoch, "cut_time_us", &cut, "consistent",
			&cons) < 0)
		return -EBADMSG;
	if (drill_kind_parse(kind, &k) < 0 || drill_status_parse(status, &st) < 0)
		return -EBADMSG;
	memset(s, 0, sizeof(*s));
	s->kind = k;
	s->status = st;
	s->id = id;
	s->sw = sw;
	s->par = par;
	s->abort = ab;
	s->timeout = (uint64_t)timeout;
	s->start = (uint64_t)start;
	s->end = (uint64_t)end;
	s->attempts = attempts;
	s->epoch = (uint64_t)epoch;
	s->cut_time = (uint64_t)cut;
	s->consistent = cons;
	snprintf(s->label, sizeof(s->label), "%s", label);
	snprintf(s->service, sizeof(s->service), "%s", svc);
	snprintf(s->group, sizeof(s->group), "%s", grp);
	snprintf(s->host, sizeof(s->host), "%s", host);
	snprintf(s->message, sizeof(s->message), "%s", msg);
	snprintf(s->warning, sizeof(s->warning), "%s", warn);
	/* Optional: journals written before databases existed resume. */
	snprintf(s->database, sizeof(s->database), "%s", json_string_value(json_object_get(o, "database")) ?: "");
	if (json_is_object(json_object_get(o, "data"))) {
		char *t = json_dumps(json_object_get(o, "data"), JSON_COMPACT | JSON_SORT_KEYS);
		if (!t || strlen(t) >= sizeof(s->data)) {
			free(t);
			return -EBADMSG;
		}
		memcpy(s->data, t, strlen(t) + 1);
		free(t);
	}
	return 0;
}

int drill_load(const struct runbook *rb, struct drill **ret)
{
	struct drill *d = calloc(1, sizeof(*d));
	json_t *j = NULL, *steps, *res;
	json_error_t je;
	const char *id, *mode, *status, *msg, *dig, *file;
	json_int_t at, ate, inc, st, en;
	char want[65];
	int rc;

	if (!d)
		return -ENOMEM;
	d->rb = rb;
	d->lock_fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	if ((rc = lock_state(d)) < 0)
		goto fail;
	if (!(j = json_load_file(d->journal, JSON_REJECT_DUPLICATES, &je))) {
		rc = access(d->journal, F_OK) < 0
			     ? err_set(ENOENT, "no unfinished drill to resume or abort (%s does not "
					       "exist)", d->journal)
			     : err_set(EBADMSG, "the drill journal %s is damaged: %s (line %d)",
				       d->journal, je.text, je.line);
		goto fail;
	}
	if (json_unpack(j, "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:o, s:o}", "id",
			&id, "runbook", &file, "runbook_blake2b", &dig, "mode", &mode, "at_us", &at,
			"at_epoch", &ate, "incident_us", &inc, "started_us", &st, "ended_us", &en,
			"status", &status, "message", &msg, "resumed_us", &res, "steps", &steps) < 0 ||
	    mode_parse(mode, &d->mode) < 0 || !json_is_array(steps) || !json_is_array(res)) {
		rc = err_set(EBADMSG, "the drill journal %s is not one Bascule wrote", d->journal);
		goto fail;
	}
	sodium_bin2hex(want, sizeof(want), rb->digest, sizeof(rb->digest));
	if (strcmp(want, dig) != 0) {
		rc = err_set(ESTALE, "the runbook %s changed since drill %s started (from %s); resume "
				     "or abort with the runbook as it was",
			     rb->file, id, file);
		goto fail;
	}
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->status, sizeof(d->status), "%s", status);
	snprintf(d->message, sizeof(d->message), "%s", msg);
	d->at = (uint64_t)at;
	d->at_epoch = (uint64_t)ate;
	d->incident = (uint64_t)inc;
	d->started = (uint64_t)st;
	d->ended = (uint64_t)en;
	for (size_t i = 0; i < json_array_size(res) && d->n_resumed < 32; i++)
		d->resumed[d->n_resumed++] = (uint64_t)json_integer_value(json_array_get(res, i));
	d->cap = json_array_size(steps) + 64;
	if (!(d->steps = calloc(d->cap, sizeof(struct step)))) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < json_array_size(steps); i++) {
		struct step *s = &d->steps[i];
		if (step_from_json(json_array_get(steps, i), s) < 0 ||
		    (s->sw >= 0 && (size_t)s->sw >= rb->switches.n)) {
			rc = err_set(EBADMSG, "the drill journal %s has a damaged step %zu", d->journal,
				     i + 1);
			goto fail;
		}
		d->n++;
	}
	json_decref(j);
	*ret = d;
	return 0;
fail:
	json_decref(j);
	drill_free(d);
	return rc;
}

int drill_finish(struct drill *d)
{
	char to[4400], cur[sizeof(d->journal)];
	int rc;

	if ((rc = fs_mkdir_p(d->rb->report.dir, 0755)) < 0)
		return err_wrap(rc, "cannot create the report directory %s", d->rb->report.dir);
	/* The journal is kept with the reports; the drill is no longer current. */
	snprintf(to, sizeof(to), "%s/%s.journal.json", d->rb->report.dir, d->id);
	memcpy(cur, d->journal, sizeof(cur));
	snprintf(d->journal, sizeof(d->journal), "%s", to);
	if ((rc = drill_journal_write(d)) < 0)
		return rc;
	if (unlink(cur) < 0 && errno != ENOENT)
		return err_set(errno, "cannot remove %s: %s", cur, strerror(errno));
	return fs_fsync_parent(cur);
}
