/* rsync.c - librsync jobs driven over memory buffers. */
#include "rsync.h"
#include "err.h"
#include <librsync.h>
#include <stdlib.h>
#include <string.h>
#include "fsutil.h"

#define RS_BLOCK 4096
#define RS_STRONG 8

/* Run JOB over IN, appending everything it produces to OUT. */
static int run_job(rs_job_t *job, const uint8_t *in, size_t len, struct wbuf *out)
{
	rs_buffers_t b = { .next_in = (char *)in, .avail_in = len, .eof_in = 1 };
	rs_result r;
	int rc;

	do {
		size_t want = out->max - out->len > 65536 ? 65536 : out->max - out->len;
		if (want == 0 || (rc = wbuf_reserve(out, want)) < 0)
			return err_set(EBADMSG, "librsync output larger than expected");
		b.next_out = (char *)out->p + out->len;
		b.avail_out = out->cap - out->len;
		r = rs_job_iter(job, &b);
		out->len = (size_t)((uint8_t *)b.next_out - out->p);
	} while (r == RS_BLOCKED);
	return r == RS_DONE ? 0 : err_set(EBADMSG, "librsync: %s", rs_strerror(r));
}

int rsync_signature(const uint8_t *data, size_t len, struct wbuf *out)
{
	rs_job_t *job = rs_sig_begin(RS_BLOCK, RS_STRONG, RS_RK_BLAKE2_SIG_MAGIC);
	int rc;

	if (!job)
		return -ENOMEM;
	rc = run_job(job, data, len, out);
	rs_job_free(job);
	return rc;
}

int rsync_delta(const uint8_t *sig, size_t siglen, const uint8_t *data, size_t len,
		struct wbuf *out)
{
	rs_signature_t *sums = NULL;
	struct wbuf none;
	rs_job_t *job;
	int rc;

	wbuf_init(&none, 1 << 20);
	job = rs_loadsig_begin(&sums);
	if (!job)
		return -ENOMEM;
	rc = run_job(job, sig, siglen, &none);
	rs_job_free(job);
	wbuf_free(&none);
	if (rc < 0 || !sums) {
		if (sums)
			rs_free_sumset(sums);
		return err_set(EBADMSG, "malformed librsync signature");
	}
	if (rs_build_hash_table(sums) != RS_DONE) {
		rs_free_sumset(sums);
		return err_set(EBADMSG, "malformed librsync signature");
	}
	job = rs_delta_begin(sums);
	rc = job ? run_job(job, data, len, out) : -ENOMEM;
	if (job)
		rs_job_free(job);
	rs_free_sumset(sums);
	return rc;
}

struct basis {
	const uint8_t *p;
	size_t len;
};

static rs_result copy_cb(void *opaque, rs_long_t pos, size_t *len, void **buf)
{
	struct basis *b = opaque;

	if (pos < 0 || (size_t)pos >= b->len)
		return RS_INPUT_ENDED;
	if (*len > b->len - (size_t)pos)
		*len = b->len - (size_t)pos;
	memcpy(*buf, b->p + pos, *len);
	return RS_DONE;
}

int rsync_patch(const uint8_t *basis, size_t basis_len, const uint8_t *delta, size_t dlen,
		uint8_t *out, size_t out_len)
{
	struct basis b = { basis, basis_len };
	struct wbuf o;
	rs_job_t *job;
	int rc;

	wbuf_init(&o, out_len + 1);
	job = rs_patch_begin(copy_cb, &b);
	if (!job)
		return -ENOMEM;
	/* The output buffer is bounded: a delta that expands beyond OUT_LEN fails. */
	rc = run_job(job, delta, dlen, &o);
	rs_job_free(job);
	if (rc == 0 && o.len != out_len)
		rc = err_set(EBADMSG, "a delta produced %zu bytes where %zu were announced", o.len, out_len);
	if (rc == 0)
		memcpy(out, o.p, out_len);
	wbuf_free(&o);
	return rc < 0 && rc != -EBADMSG ? err_set(EBADMSG, "corrupt delta") : rc;
}

/* ---- streaming jobs ---- */

struct rsync_job {
	rs_job_t *job;
	rs_signature_t *sums;
	int basis_fd;
	bool done;
	uint8_t out[1u << 16];
};

static rs_result fd_copy_cb(void *opaque, rs_long_t pos, size_t *len, void **buf)
{
	struct rsync_job *j = opaque;
	ssize_t n;

	if (pos < 0)
		return RS_INPUT_ENDED;
	n = fs_pread_full(j->basis_fd, *buf, *len, (uint64_t)pos);
	if (n <= 0)
		return n == 0 ? RS_INPUT_ENDED : RS_IO_ERROR;
	*len = (size_t)n;
	return RS_DONE;
}

static struct rsync_job *job_new(void)
{
	struct rsync_job *j = calloc(1, sizeof(*j));
	if (j)
		j->basis_fd = -1;
	return j;
}

int rsync_job_signature(size_t block, struct rsync_job **ret)
{
	struct rsync_job *j = job_new();

	if (!j)
		return -ENOMEM;
	if (!(j->job = rs_sig_begin(block, RS_STRONG, RS_RK_BLAKE2_SIG_MAGIC))) {
		free(j);
		return -ENOMEM;
	}
	*ret = j;
	return 0;
}

int rsync_job_delta(const uint8_t *sig, size_t siglen, struct rsync_job **ret)
{
	struct rsync_job *j = job_new();
	struct wbuf none;
	rs_job_t *load;
	int rc;

	if (!j)
		return -ENOMEM;
	wbuf_init(&none, 1 << 20);
	if (!(load = rs_loadsig_begin(&j->sums))) {
		free(j);
		return -ENOMEM;
	}
	rc = run_job(load, sig, siglen, &none);
	rs_job_free(load);
	wbuf_free(&none);
	if (rc < 0 || !j->sums || rs_build_hash_table(j->sums) != RS_DONE) {
		rsync_job_free(j);
		return err_set(EBADMSG, "malformed librsync signature");
	}
	if (!(j->job = rs_delta_begin(j->sums))) {
		rsync_job_free(j);
		return -ENOMEM;
	}
	*ret = j;
	return 0;
}

int rsync_job_patch(int basis_fd, struct rsync_job **ret)
{
	struct rsync_job *j = job_new();

	if (!j)
		return -ENOMEM;
	j->basis_fd = basis_fd;
	if (!(j->job = rs_patch_begin(fd_copy_cb, j))) {
		free(j);
		return -ENOMEM;
	}
	*ret = j;
	return 0;
}

int rsync_job_feed(struct rsync_job *j, const void *in, size_t n, bool eof, rsync_out_fn out, void *ctx)
{
	rs_buffers_t b = { .next_in = (char *)in, .avail_in = n, .eof_in = eof };
	int idle = 0;

	if (j->done)
		return n || !eof ? err_set(EBADMSG, "librsync: input after the end") : 0;
	for (;;) {
		size_t before = b.avail_in, made;
		rs_result r;
		int rc;

		b.next_out = (char *)j->out;
		b.avail_out = sizeof(j->out);
		r = rs_job_iter(j->job, &b);
		made = sizeof(j->out) - b.avail_out;
		if (made && (rc = out(ctx, j->out, made)) < 0)
			return rc;
		if (r == RS_DONE) {
			j->done = true;
			return b.avail_in ? err_set(EBADMSG, "librsync: data after the end of a delta") : 0;
		}
		if (r != RS_BLOCKED)
			return err_set(EBADMSG, "librsync: %s", rs_strerror(r));
		if (!eof && b.avail_in == 0 && made < sizeof(j->out))
			return 0;
		if (!made && b.avail_in == before && ++idle > 3)
			return err_set(EBADMSG, "librsync: no progress%s", eof ? " at the end of the input" : "");
	}
}

void rsync_job_free(struct rsync_job *j)
{
	if (!j)
		return;
	if (j->job)
		rs_job_free(j->job);
	if (j->sums)
		rs_free_sumset(j->sums);
	free(j);
}
