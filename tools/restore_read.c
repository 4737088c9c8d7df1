/* restore_read.c - the restore's workers: each takes ranges, plans their
 * runs, and opens one run while its reader thread (with a store of its
 * own) fetches the next, so that its connection does not idle while it
 * decrypts and checks; the main thread makes finished ranges durable in
 * batches (restore_sync). */
#include "err.h"
#include "fsutil.h"
#include "vault_tool.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

void restore_fail(struct restore *rs, int r)
{
	pthread_mutex_lock(&rs->lock);
	if (!atomic_load(&rs->err)) {
		snprintf(rs->errmsg, sizeof(rs->errmsg), "%s", err_msg(r));
		atomic_store(&rs->err, r);
	}
	pthread_mutex_unlock(&rs->lock);
}

/* A worker's reader: one read at a time, into the buffer the worker gave. */
struct reader {
	struct restore *rs;
	struct vstore *vs;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started, stop;
	bool asked, answered;    /* a read given, its result there */
	char path[300];
	uint64_t off;
	size_t len;
	uint8_t *buf;
	ssize_t got;
	char msg[1024];          /* the reader's error sentence (err_msg is per thread) */
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;

	pthread_mutex_lock(&rd->mu);
	for (;;) {
		while (!rd->stop && !(rd->asked && !rd->answered))
			pthread_cond_wait(&rd->cv, &rd->mu);
		if (rd->stop)
			break;
		pthread_mutex_unlock(&rd->mu);
		err_clear();
		ssize_t got = vstore_read(rd->vs, rd->path, rd->off, rd->buf, rd->len);
		pthread_mutex_lock(&rd->mu);
		rd->got = got;
		if (got < 0)
			snprintf(rd->msg, sizeof(rd->msg), "%s", err_msg((int)got));
		rd->answered = true;
		pthread_cond_broadcast(&rd->cv);
	}
	pthread_mutex_unlock(&rd->mu);
	return NULL;
}

static void reader_ask(struct reader *rd, const struct rplan *p, size_t k, uint8_t *buf)
{
	pthread_mutex_lock(&rd->mu);
	restore_run_path(rd->rs, p, k, rd->path, sizeof(rd->path));
	rd->off = p->runs[k].start;
	rd->len = (size_t)(p->runs[k].end - p->runs[k].start);
	rd->buf = buf;
	rd->asked = true;
	rd->answered = false;
	pthread_cond_broadcast(&rd->cv);
	pthread_mutex_unlock(&rd->mu);
}

/* The result of the read asked last (its error sentence set here). */
static ssize_t reader_wait(struct reader *rd)
{
	ssize_t got;

	pthread_mutex_lock(&rd->mu);
	while (rd->asked && !rd->answered)
		pthread_cond_wait(&rd->cv, &rd->mu);
	got = rd->got;
	rd->asked = false;
	pthread_mutex_unlock(&rd->mu);
	if (got < 0)
		err_set((int)-got, "%s", rd->msg);
	return got;
}

static int reader_start(struct reader *rd, struct restore *rs)
{
	int r;

	memset(rd, 0, sizeof(*rd));
	rd->rs = rs;
	pthread_mutex_init(&rd->mu, NULL);
	pthread_cond_init(&rd->cv, NULL);
	if ((r = vopts_store(rs->o, &rd->vs)) < 0)
		return r;
	vstore_share(rd->vs, rs->vs);
	if ((r = pthread_create(&rd->th, NULL, reader_main, rd)) != 0)
		return err_set(r, "restore: cannot start a reader thread: %s", strerror(r));
	rd->started = true;
	return 0;
}

/* Waits for a read still running, then stops the thread. */
static void reader_stop(struct reader *rd)
{
	if (rd->started) {
		reader_wait(rd);
		err_clear();
		pthread_mutex_lock(&rd->mu);
		rd->stop = true;
		pthread_cond_broadcast(&rd->cv);
		pthread_mutex_unlock(&rd->mu);
		pthread_join(rd->th, NULL);
	}
	vstore_close(rd->vs);
	pthread_cond_destroy(&rd->cv);
	pthread_mutex_destroy(&rd->mu);
}

/* The next range to restore, planned into *P: 1, 0 when none is left (or
 * one failed), or a negative errno. */
static int next_range(struct restore *rs, struct rplan *p)
{
	while (!atomic_load(&rs->err)) {
		uint64_t rg = atomic_fetch_add(&rs->next, 1);
		int r;
		if (rg >= rs->n_ranges)
			return 0;
		if (rs->done[rg])
			continue;
		return (r = restore_plan(rs, rg, p)) < 0 ? r : 1;
	}
	return 0;
}

static void range_written(struct restore *rs, uint64_t rg)
{
	pthread_mutex_lock(&rs->lock);
	rs->written[rs->n_written++] = rg;
	pthread_cond_signal(&rs->wake);
	pthread_mutex_unlock(&rs->lock);
}

void *restore_worker(void *arg)
{
	struct restore *rs = arg;
	struct reader rd;
	struct rplan cur = { 0 }, nxt = { 0 };
	ZSTD_DCtx *d = ZSTD_createDCtx();
	uint8_t *buf[2] = { malloc(READ_MAX + (1u << 20)), malloc(READ_MAX + (1u << 20)) };
	uint8_t *work = malloc(VAULT_FRAME_WORK);
	unsigned b = 0;           /* the buffer the read asked last goes to */
	bool have;
	int r;

	if ((r = reader_start(&rd, rs)) < 0)
		goto fail;
	if (!d || !buf[0] || !buf[1] || !work) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = next_range(rs, &cur)) < 0)
		goto fail;
	have = r == 1;
	if (have && cur.nr)
		reader_ask(&rd, &cur, 0, buf[b]);
	while (have) {
		bool more = false;
		for (size_t k = 0; k < cur.nr; k++) {
			ssize_t got = reader_wait(&rd);
			uint8_t *mine = buf[b];
			/* The next read: this range's next run, or the next range's first. */
			if (k + 1 < cur.nr) {
				b ^= 1;
				reader_ask(&rd, &cur, k + 1, buf[b]);
			} else {
				if ((r = next_range(rs, &nxt)) < 0)
					goto fail;
				more = r == 1;
				if (more && nxt.nr) {
					b ^= 1;
					reader_ask(&rd, &nxt, 0, buf[b]);
				}
			}
			if ((r = restore_run(rs, &cur, k, mine, got, d, work)) < 0)
				goto fail;
		}
		if (!cur.nr) {
			if ((r = next_range(rs, &nxt)) < 0)
				goto fail;
			more = r == 1;
			if (more && nxt.nr)
				reader_ask(&rd, &nxt, 0, buf[b]);
		}
		range_written(rs, cur.rg);
		rplan_free(&cur);
		cur = nxt;
		memset(&nxt, 0, sizeof(nxt));
		have = more;
	}
	r = 0;
fail:
	if (r < 0)
		restore_fail(rs, r);
	reader_stop(&rd);
	rplan_free(&cur);
	rplan_free(&nxt);
	ZSTD_freeDCtx(d);
	free(buf[0]);
	free(buf[1]);
	free(work);
	pthread_mutex_lock(&rs->lock);
	rs->running--;
	pthread_cond_signal(&rs->wake);
	pthread_mutex_unlock(&rs->lock);
	return NULL;
}

/* While workers run: make the ranges they wrote durable, a batch per
 * fdatasync, and only then record them as done (a resume trusts the
 * record), so that no worker waits for the disk. */
void restore_sync(struct restore *rs)
{
	uint64_t *batch = malloc((rs->n_ranges + 1) * sizeof(*batch));
	uint8_t *rec = malloc((rs->n_ranges + 1) * 8);
	bool failed = !batch || !rec;
	size_t n;
	int r;

	if (failed)
		restore_fail(rs, -ENOMEM);
	pthread_mutex_lock(&rs->lock);
	for (;;) {
		while (!rs->n_written && rs->running)
			pthread_cond_wait(&rs->wake, &rs->lock);
		if (!rs->n_written)
			break;
		n = rs->n_written;
		if (!failed)
			memcpy(batch, rs->written, n * sizeof(*batch));
		rs->n_written = 0;
		pthread_mutex_unlock(&rs->lock);
		if (!failed && fdatasync(rs->fd) < 0 && !rs->device) {
			restore_fail(rs, -errno);
			failed = true;
		}
		if (!failed && rs->pfd >= 0) {
			for (size_t i = 0; i < n; i++)
				put_be64(rec + 8 * i, batch[i]);
			if ((r = fs_write_full(rs->pfd, rec, 8 * n)) < 0) {
				restore_fail(rs, r);
				failed = true;
			}
		}
		pthread_mutex_lock(&rs->lock);
	}
	pthread_mutex_unlock(&rs->lock);
	free(batch);
	free(rec);
}

