/* rsync.h - librsync signatures, deltas and patches over memory buffers,
 * for resynchronising a replica of unknown or diverged content range by
 * range: the side with the old copy sends a signature, the other a delta.
 * Blocks of 4 KiB, BLAKE2 strong sums of 8 bytes (12 bytes per block). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

/* Signature of LEN bytes of DATA, appended to OUT. */
int rsync_signature(const uint8_t *data, size_t len, struct wbuf *out);
/* Delta turning the content described by SIG into DATA, appended to OUT. */
int rsync_delta(const uint8_t *sig, size_t siglen, const uint8_t *data, size_t len,
		struct wbuf *out);
/* Apply DELTA to the basis BASIS (BASIS_LEN bytes); the result must be
 * exactly OUT_LEN bytes (else -EBADMSG). */
int rsync_patch(const uint8_t *basis, size_t basis_len, const uint8_t *delta, size_t dlen,
		uint8_t *out, size_t out_len);

/* Streaming jobs, for content too large to hold (a nightly dump): feed the
 * input in pieces, the output goes to OUT as it is produced (an OUT error
 * stops the job and is returned).  The last feed has EOF set; after it the
 * job is complete or has failed (-EBADMSG for a corrupt signature/delta). */
struct rsync_job;
typedef int (*rsync_out_fn)(void *ctx, const uint8_t *p, size_t n);
/* The signature of the content fed, BLOCK bytes per block, 8-byte BLAKE2
 * strong sums (RabinKarp rolling sums). */
int rsync_job_signature(size_t block, struct rsync_job **ret);
/* The delta from the content SIG describes to the content fed; SIG is read
 * (and may be freed) before this returns. */
int rsync_job_delta(const uint8_t *sig, size_t siglen, struct rsync_job **ret);
/* The content a delta fed rebuilds from the basis open on BASIS_FD (read
 * with pread, which must stay open for the job's life). */
int rsync_job_patch(int basis_fd, struct rsync_job **ret);
int rsync_job_feed(struct rsync_job *j, const void *in, size_t n, bool eof, rsync_out_fn out, void *ctx);
void rsync_job_free(struct rsync_job *j);
