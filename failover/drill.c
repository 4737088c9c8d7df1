/* drill.c - running a drill: steps one after the other, the steps of a
 * wave in parallel threads, each on its own copy of its step, the journal
 * written under the drill's lock after each; resume and abort (see drill.h). */
#include "clock.h"
#include "drill_int.h"
#include "err.h"
#include "units.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void drill_free(struct drill *d)
{
	if (!d)
		return;
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	pthread_mutex_destroy(&d->lock);
	free(d->steps);
	free(d);
}

static void say(struct drill *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct drill *d, const char *fmt, ...)
{
	va_list ap;
	char t[40];
	time_t now = time(NULL);
	struct tm tm;

	if (d->quiet)
		return;
	localtime_r(&now, &tm);
	strftime(t, sizeof(t), "%H:%M:%S", &tm);
	va_start(ap, fmt);
	flockfile(stdout);
	printf("%s ", t);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	funlockfile(stdout);
	va_end(ap);
}

/* One step of a batch: its own copy, written by its thread alone, and the
 * step in the drill it comes from, written under the lock. */
struct job {
	struct drill *d;
	struct step *step;
	struct step work;
};

static void *step_thread(void *arg)
{
	struct job *j = arg;
	struct drill *d = j->d;
	struct step *s = &j->work;
	char dur[32];
	int rc;

	rc = step_exec(d, s);
	s->end = clock_now_usec();
	s->status = rc == 0 ? SS_DONE : SS_FAILED;
	pthread_mutex_lock(&d->lock);
	*j->step = *s;
	drill_journal_write(d);
	pthread_mutex_unlock(&d->lock);
	say(d, "%s %-40s %8s  %s%s%s", rc == 0 ? "  ok " : "FAIL ", s->label,
	    units_fmt_duration(s->end - s->start, dur, sizeof(dur)), s->message,
	    s->warning[0] ? "; WARNING: " : "", s->warning);
	return NULL;
}

/* Run steps [from, to) together; 0 if all succeeded. */
static int run_batch(struct drill *d, size_t from, size_t to)
{
	size_t n = to - from;
	struct job *js = calloc(n, sizeof(*js));
	pthread_t *th = calloc(n, sizeof(*th));
	bool *started = calloc(n, sizeof(bool));
	int rc = 0;

	if (!js || !th || !started) {
		free(js);
		free(th);
		free(started);
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < n; i++) {
		struct step *s = &d->steps[from + i];
		s->status = SS_RUNNING;
		s->start = clock_now_usec();
		s->end = 0;
		s->message[0] = 0;
		s->warning[0] = 0;
		js[i] = (struct job){ .d = d, .step = s, .work = *s };
	}
	rc = drill_journal_write(d); /* before anything is touched */
	pthread_mutex_unlock(&d->lock);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		say(d, "start %s", js[i].work.label);
		if (n == 1) {
			step_thread(&js[i]);
		} else if (pthread_create(&th[i], NULL, step_thread, &js[i]) == 0) {
			started[i] = true;
		} else {
			step_thread(&js[i]);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (started[i])
			pthread_join(th[i], NULL);
	for (size_t i = 0; i < n; i++)
		if (d->steps[from + i].status != SS_DONE && rc == 0)
			rc = err_set(EIO, "step %d (%s) failed: %s", d->steps[from + i].id,
				     d->steps[from + i].label, d->steps[from + i].message);
out:
	free(js);
	free(th);
	free(started);
	return rc;
}

/* Run the drill's steps (ABORTING false: stop at the first failure) or the
 * abort's steps (true: every one is tried). */
static int run_steps(struct drill *d, bool aborting)
{
	bool keep_going = aborting;
	int first_err = 0;

	for (size_t i = 0; i < d->n;) {
		size_t j = i + 1;
		int rc;
		if (d->steps[i].status == SS_DONE || d->steps[i].status == SS_SKIPPED ||
		    d->steps[i].abort != aborting) {
			i++;
			continue;
		}
		while (d->steps[i].par && j < d->n && d->steps[j].par == d->steps[i].par &&
		       d->steps[j].status != SS_DONE)
			j++;
		rc = run_batch(d, i, j);
		if (rc < 0) {
			if (!keep_going)
				return rc;
			if (!first_err)
				first_err = rc;
		}
		i = j;
	}
	return first_err;
}

int drill_resumable(const struct drill *d)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].abort)
			return err_set(EINVAL, "drill %s is being aborted and cannot be resumed; finish "
					       "the abort with 'bascule drill %s --abort'", d->id, d->rb->file);
	return 0;
}

int drill_run(struct drill *d)
{
	int rc;

	if (!strcmp(d->status, "aborted"))
		return err_set(EINVAL, "drill %s was aborted; start a new drill", d->id);
	if (d->n_resumed || d->steps[0].status != SS_PENDING) {
		if (d->n_resumed < 32)
			d->resumed[d->n_resumed++] = clock_now_usec();
	}
	snprintf(d->status, sizeof(d->status), "running");
	d->message[0] = 0;
	for (size_t i = 0; i < d->n; i++)
		if (d->steps[i].status == SS_RUNNING || d->steps[i].status == SS_FAILED)
			d->steps[i].status = SS_PENDING; /* runs again: steps are idempotent */
	rc = run_steps(d, false);
	d->ended = clock_now_usec();
	if (rc < 0) {
		snprintf(d->status, sizeof(d->status), "failed");
		snprintf(d->message, sizeof(d->message), "%s", err_msg(rc));
	} else {
		snprintf(d->status, sizeof(d->status), "done");
	}
	drill_journal_write(d);
	return rc;
}

/* Run the undo steps not yet done.  If one fails the drill stays current
 * ("abort-failed"): the operator fixes the cause and aborts again. */
static int abort_run(struct drill *d)
{
	int rc = run_steps(d, true);

	d->ended = clock_now_usec();
	snprintf(d->status, sizeof(d->status), rc < 0 ? "abort-failed" : "aborted");
	snprintf(d->message, sizeof(d->message), "%s",
		 rc < 0 ? err_msg(rc) : "aborted: production brought back");
	drill_journal_write(d);
	return rc;
}

/* An abort that failed or was interrupted: its plan stands (planning again
 * would undo the same steps twice); what did not finish runs again. */
static int abort_again(struct drill *d)
{
	size_t left = 0;

	for (size_t k = 0; k < d->n; k++) {
		struct step *s = &d->steps[k];
		if (!s->abort || s->status == SS_DONE)
			continue;
		s->status = SS_PENDING;
		left++;
	}
	if (d->n_resumed < 32)
		d->resumed[d->n_resumed++] = clock_now_usec();
	say(d, "aborting drill %s again: %zu undo step%s left", d->id, left, left == 1 ? "" : "s");
	return abort_run(d);
}

int drill_abort(struct drill *d)
{
	size_t n0 = d->n;
	int rc;

	if (!strcmp(d->status, "aborted"))
		return err_set(EALREADY, "drill %s is already aborted", d->id);
	for (size_t k = 0; k < n0; k++)
		if (d->steps[k].abort)
			return abort_again(d);
	if ((rc = drill_plan_abort(d, n0)) < 0)
		return rc; /* a partial undo plan must not run; nothing was touched */
	for (size_t k = 0; k < n0; k++) {
		if (d->steps[k].status == SS_PENDING) {
			d->steps[k].status = SS_SKIPPED;
			step_msg(&d->steps[k], "not run: the drill was aborted");
		} else if (d->steps[k].status == SS_RUNNING) {
			/* Interrupted (the orchestrator died): it did not finish. */
			d->steps[k].status = SS_FAILED;
			if (!d->steps[k].end)
				d->steps[k].end = d->steps[k].start;
			step_msg(&d->steps[k], "interrupted: the drill stopped during this step");
		}
	}
	say(d, "aborting drill %s: %zu step%s bring production back", d->id, d->n - n0,
	    d->n - n0 == 1 ? "" : "s");
	return abort_run(d);
}
