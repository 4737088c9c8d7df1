/* vault_upload.c - the vault writer's pack uploads: in line on the
 * writer's own store (parallel: 1), or queued to a vstore_pool of several
 * SFTP sessions uploading different packs at once.
 *
 * Ordering, the same on both paths: a pack's blocks enter the journal only
 * once the pack is durable at the vault (created exclusively, written,
 * fsynced, closed), and v_commit calls writer_uploads_wait before it writes
 * any index or the manifest, so a manifest never names a pack still in
 * flight.  A pack whose upload failed stops serving dedup at once. */
#include "vault_writer.h"
#include "err.h"
#include "vstore_pool.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct pack_job {
	uint32_t idx, n;
	int jfd;
	bool journaled;  /* by the upload thread, once the pack was durable */
	struct wbuf rec; /* its journal record, built in the writer's thread */
	struct dent e[]; /* its blocks, for the journal */
};

/* The journal is appended to by the upload threads and the writer's. */
static pthread_mutex_t journal_mu = PTHREAD_MUTEX_INITIALIZER;

static int journal_add_locked(struct writer *w, uint32_t idx, const struct dent *e, uint32_t n)
{
	int r;

	pthread_mutex_lock(&journal_mu);
	r = writer_journal_add(w, idx, e, n);
	pthread_mutex_unlock(&journal_mu);
	return r;
}

/* In the upload thread, right after the pack's fsync and close: journal it
 * now, so that a kill -9 before the writer reaps it still reuses it. */
static int on_pool_durable(void *ctx, void *tag)
{
	struct pack_job *j = tag;
	int r;

	(void)ctx;
	pthread_mutex_lock(&journal_mu);
	r = writer_journal_write(j->jfd, &j->rec);
	pthread_mutex_unlock(&journal_mu);
	j->journaled = r == 0;
	return r;
}

/* The result of a put of pack IDX: the same bytes already there are fine;
 * a success is journaled; a failure takes the pack out of dedup. */
static int pack_done(struct writer *w, uint32_t idx, int r, size_t len, const struct dent *e, uint32_t n,
		     bool journaled)
{
	if (r == -EEXIST) {
		char path[300];
		uint64_t have;
		vault_path(w->packs.p[idx].name, false, path, sizeof(path));
		if (vstore_stat(w->vs, path, &have, NULL) == 0 && have == len) {
			err_clear();
			r = 0;
		} else
			r = err_set(EEXIST, "vault %s: %s exists with another size", w->url, path);
	}
	if (r == 0) {
		w->bytes_up += len;
		if (!journaled)
			r = journal_add_locked(w, idx, e, n);
	}
	if (r < 0)
		w->pfresh[idx] = 0;
	return r;
}

static void on_pool_done(void *ctx, void *tag, int *r, void *data, size_t len)
{
	struct pack_job *j = tag;

	*r = pack_done(ctx, j->idx, *r, len, j->e, j->n, j->journaled);
	wbuf_free(&j->rec);
	free(j);
	free(data);
}

int writer_uploads_open(struct writer *w, const struct vstore_opts *o, unsigned parallel)
{
	if (parallel <= 1 || strncmp(w->url, "local:", 6) == 0)
		return 0; /* a local vault is bound by its disk: no threads */
	int r = vstore_pool_open(w->url, o, parallel, on_pool_done, w, &w->pool);

	if (r == 0)
		vstore_pool_on_durable(w->pool, on_pool_durable);
	return r;
}

int writer_pack_upload(struct writer *w, struct wbuf *pack, const uint8_t nonce[16])
{
	struct vpack p;
	struct pack_job *j;
	uint32_t idx, want = w->packs.n;
	char path[300];
	void *data;
	size_t len = pack->len;
	int r;

	vault_object_name(pack->p, len, p.name);
	memcpy(p.nonce, nonce, 16);
	if ((r = writer_pack_add(w, &p, len, &idx)) < 0)
		return r;
	if (idx != want)
		return err_set(EIO, "internal error: pack numbering");
	w->pfresh[idx] = PACK_NEW;
	if (!w->pool) {
		vault_path(p.name, false, path, sizeof(path));
		return pack_done(w, idx, vstore_put(w->vs, path, pack->p, len), len, w->pe, (uint32_t)w->pe_n,
				 false);
	}
	if (!(j = malloc(sizeof(*j) + w->pe_n * sizeof(struct dent)))) {
		w->pfresh[idx] = 0;
		return -ENOMEM;
	}
	j->idx = idx;
	j->n = (uint32_t)w->pe_n;
	j->jfd = w->jfd;
	j->journaled = false;
	memcpy(j->e, w->pe, w->pe_n * sizeof(struct dent));
	writer_journal_record(w, idx, j->e, j->n, &j->rec);
	vault_path(p.name, false, path, sizeof(path));
	/* The pool owns the bytes from here on; the writer fills a new buffer. */
	data = pack->p;
	wbuf_init(pack, pack->max);
	if ((r = vstore_pool_put(w->pool, path, data, len, j)) < 0) {
		w->pfresh[idx] = 0;
		wbuf_free(&j->rec);
		free(j);
	}
	return r;
}

int writer_uploads_wait(struct writer *w)
{
	return w->pool ? vstore_pool_drain(w->pool) : 0;
}

void writer_uploads_close(struct writer *w)
{
	vstore_pool_close(w->pool);
	w->pool = NULL;
}
