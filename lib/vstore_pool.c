/* vstore_pool.c - parallel puts to a vault store: one worker thread per
 * store (per SSH connection over SFTP), a bounded table of jobs, results
 * reported back in the caller's thread (vstore_pool.h). */
#include "vstore_pool.h"
#include "err.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { JOB_FREE, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct job {
	int state;
	uint64_t seq;
	char name[300];
	void *data, *tag;
	size_t len;
	int r;
	char msg[512]; /* the worker's error sentence (err_msg is per thread) */
};

struct worker {
	struct vstore_pool *p;
	struct vstore *vs;
	pthread_t th;
	bool started;
};

struct vstore_pool {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	struct job *jobs;
	unsigned n, cap; /* workers; jobs (two per worker: one running, one queued) */
	struct worker w[VSTORE_POOL_MAX];
	bool stop;
	uint64_t seq, written;
	int err;
	vstore_pool_done_cb cb;
	vstore_pool_durable_cb durable;
	void *ctx;
};

static struct job *next_queued(struct vstore_pool *p)
{
	struct job *best = NULL;

	for (unsigned i = 0; i < p->cap; i++)
		if (p->jobs[i].state == JOB_QUEUED && (!best || p->jobs[i].seq < best->seq))
			best = &p->jobs[i];
	return best;
}

static bool any_done(const struct vstore_pool *p)
{
	for (unsigned i = 0; i < p->cap; i++)
		if (p->jobs[i].state == JOB_DONE)
			return true;
	return false;
}

static void *worker_main(void *arg)
{
	struct worker *me = arg;
	struct vstore_pool *p = me->p;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct job *j;
		int r;
		while (!(j = next_queued(p)) && !p->stop)
			pthread_cond_wait(&p->work, &p->mu);
		if (!j)
			break;
		j->state = JOB_RUNNING;
		pthread_mutex_unlock(&p->mu);
		err_clear();
		r = vstore_put(me->vs, j->name, j->data, j->len);
		if (r == 0 && p->durable)
			r = p->durable(p->ctx, j->tag);
		pthread_mutex_lock(&p->mu);
		j->r = r;
		if (r < 0)
			snprintf(j->msg, sizeof(j->msg), "%s", err_msg(r));
		else
			p->written += j->len;
		j->state = JOB_DONE;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int vstore_pool_open(const char *url, const struct vstore_opts *o, unsigned n, vstore_pool_done_cb done,
		     void *ctx, struct vstore_pool **ret)
{
	struct vstore_pool *p;
	int r;

	if (n < 1 || n > VSTORE_POOL_MAX)
		return err_set(EINVAL, "vault %s: parallel must be 1 to %d, not %u", url, VSTORE_POOL_MAX, n);
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->n = n;
	p->cap = 2 * n;
	p->cb = done;
	p->ctx = ctx;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	if (!(p->jobs = calloc(p->cap, sizeof(*p->jobs)))) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < n; i++) {
		p->w[i].p = p;
		if ((r = vstore_open(url, o, &p->w[i].vs)) < 0)
			goto fail;
	}
	for (unsigned i = 0; i < n; i++) {
		if ((r = pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i])) != 0) {
			r = err_set(r, "vault %s: cannot start an upload thread: %s", url, strerror(r));
			goto fail;
		}
		p->w[i].started = true;
	}
	*ret = p;
	return 0;
fail:
	vstore_pool_close(p);
	return r;
}

void vstore_pool_on_durable(struct vstore_pool *p, vstore_pool_durable_cb durable)
{
	p->durable = durable;
}

/* Hand finished jobs to the callback, outside the lock.  The first error
 * (after the callback had its say) sticks until the next drain. */
int vstore_pool_reap(struct vstore_pool *p)
{
	for (;;) {
		struct job j;
		bool found = false;
		int r;

		pthread_mutex_lock(&p->mu);
		for (unsigned i = 0; i < p->cap && !found; i++)
			if (p->jobs[i].state == JOB_DONE) {
				j = p->jobs[i];
				p->jobs[i].state = JOB_FREE;
				found = true;
			}
		pthread_mutex_unlock(&p->mu);
		if (!found)
			break;
		r = j.r;
		if (r < 0)
			err_set(-r, "%s", j.msg);
		if (p->cb)
			p->cb(p->ctx, j.tag, &r, j.data, j.len);
		else
			free(j.data);
		if (r < 0 && !p->err)
			p->err = r;
		else if (r < 0)
			err_clear();
	}
	return p->err;
}

int vstore_pool_put(struct vstore_pool *p, const char *name, void *data, size_t len, void *tag)
{
	struct job *slot = NULL;
	int r;

	if ((r = vstore_pool_reap(p)) < 0) {
		free(data);
		return r;
	}
	pthread_mutex_lock(&p->mu);
	for (;;) {
		for (unsigned i = 0; i < p->cap && !slot; i++)
			if (p->jobs[i].state == JOB_FREE)
				slot = &p->jobs[i];
		if (slot)
			break;
		if (!any_done(p))
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
		if ((r = vstore_pool_reap(p)) < 0) {
			free(data);
			return r;
		}
		pthread_mutex_lock(&p->mu);
	}
	memset(slot, 0, sizeof(*slot));
	snprintf(slot->name, sizeof(slot->name), "%s", name);
	slot->data = data;
	slot->len = len;
	slot->tag = tag;
	slot->seq = ++p->seq;
	slot->state = JOB_QUEUED;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int vstore_pool_drain(struct vstore_pool *p)
{
	int r;

	for (;;) {
		bool busy = false;
		vstore_pool_reap(p);
		pthread_mutex_lock(&p->mu);
		for (unsigned i = 0; i < p->cap; i++)
			busy |= p->jobs[i].state != JOB_FREE;
		if (busy && !any_done(p))
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
		if (!busy)
			break;
	}
	r = p->err;
	p->err = 0;
	return r;
}

void vstore_pool_close(struct vstore_pool *p)
{
	if (!p)
		return;
	if (p->jobs)
		vstore_pool_drain(p);
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->n; i++) {
		if (p->w[i].started)
			pthread_join(p->w[i].th, NULL);
		vstore_close(p->w[i].vs);
	}
	free(p->jobs);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

unsigned vstore_pool_size(const struct vstore_pool *p)
{
	return p->n;
}

uint64_t vstore_pool_bytes_written(const struct vstore_pool *p)
{
	return p->written;
}
