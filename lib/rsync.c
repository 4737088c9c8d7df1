/* rsync.c - librsync jobs driven over memory buffers. */
#include "rsync.h"
#include "err.h"
#include <librsync.h>
#include <string.h>

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
