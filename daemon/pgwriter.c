/* pgwriter.c - a thread that applies the queued writes of a PostgreSQL
 * source's spool (WAL segments, base backup files), so that the loop never
 * writes or fsyncs them itself.  Operations run in the order queued; after
 * each batch (the queue found empty) IDLE makes them durable and the loop
 * is told through an eventfd.  The queue is bounded: the loop stops reading
 * the pgstream child while it is full, and the child stops reading the
 * server (TCP pushes back). */
#include "pgsource.h"
#include "err.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void *writer_main(void *arg)
{
	struct pgwriter *w = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct pgw_op *op;
		int r = 0;

		while (!w->head && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->head)
			break; /* stopped and drained */
		op = w->head;
		pthread_mutex_unlock(&w->lock);
		err_clear();
		if (!w->err)
			r = w->apply(w->ctx, op);
		pthread_mutex_lock(&w->lock);
		if (r < 0 && !w->err) {
			w->err = r;
			snprintf(w->errmsg, sizeof(w->errmsg), "%s", err_msg(r));
		}
		w->head = op->next;
		if (!w->head)
			w->tail = NULL;
		w->queued -= op->len;
		w->done++;
		free(op);
		if (!w->head) {
			pthread_mutex_unlock(&w->lock);
			r = w->err ? 0 : w->idle(w->ctx);
			pthread_mutex_lock(&w->lock);
			if (r < 0 && !w->err) {
				w->err = r;
				snprintf(w->errmsg, sizeof(w->errmsg), "%s", err_msg(r));
			}
			if (write(w->efd, &one, sizeof(one)) < 0) {
				/* the counter is full: the loop has a wake-up pending anyway */
			}
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int pgwriter_start(struct pgwriter *w, size_t max, int (*apply)(void *, const struct pgw_op *),
		   int (*idle)(void *), void *ctx)
{
	int r;

	memset(w, 0, sizeof(*w));
	w->max = max;
	w->apply = apply;
	w->idle = idle;
	w->ctx = ctx;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0)
		return err_set(errno, "cannot create an eventfd: %s", strerror(errno));
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if ((r = pthread_create(&w->thread, NULL, writer_main, w)) != 0) {
		close(w->efd);
		w->efd = -1;
		return err_set(r, "cannot start a spool writer thread: %s", strerror(r));
	}
	w->running = true;
	return 0;
}

bool pgwriter_room(struct pgwriter *w, size_t len)
{
	bool ok;

	pthread_mutex_lock(&w->lock);
	ok = w->queued == 0 || w->queued + len <= w->max;
	pthread_mutex_unlock(&w->lock);
	return ok;
}

int pgwriter_put(struct pgwriter *w, uint8_t type, uint32_t tli, uint64_t lsn, uint64_t arg, const char *name,
		 const void *data, uint32_t len)
{
	struct pgw_op *op;

	if (!w->running)
		return -ESHUTDOWN;
	if (!pgwriter_room(w, len))
		return -ENOBUFS;
	if (!(op = malloc(sizeof(*op) + len)))
		return -ENOMEM;
	op->next = NULL;
	op->type = type;
	op->tli = tli;
	op->lsn = lsn;
	op->arg = arg;
	snprintf(op->name, sizeof(op->name), "%s", name ? name : "");
	op->len = len;
	if (len)
		memcpy(op->data, data, len);
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = op;
	else
		w->head = op;
	w->tail = op;
	w->queued += len;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

int pgwriter_status(struct pgwriter *w, char *msg, size_t len, uint64_t *ret_done)
{
	int r;

	pthread_mutex_lock(&w->lock);
	r = w->err;
	if (msg)
		snprintf(msg, len, "%s", w->errmsg);
	if (ret_done)
		*ret_done = w->done;
	pthread_mutex_unlock(&w->lock);
	return r;
}

uint64_t pgwriter_queued_ops(struct pgwriter *w)
{
	uint64_t n = w->done;
	struct pgw_op *op;

	pthread_mutex_lock(&w->lock);
	n = w->done;
	for (op = w->head; op; op = op->next)
		n++;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void pgwriter_clear(struct pgwriter *w)
{
	pthread_mutex_lock(&w->lock);
	w->err = 0;
	w->errmsg[0] = 0;
	pthread_mutex_unlock(&w->lock);
}

void pgwriter_stop(struct pgwriter *w)
{
	if (!w->running)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	w->running = false;
	close(w->efd);
	w->efd = -1;
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}
