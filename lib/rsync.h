/* rsync.h - librsync signatures, deltas and patches over memory buffers,
 * for resynchronising a replica of unknown or diverged content range by
 * range: the side with the old copy sends a signature, the other a delta.
 * Blocks of 4 KiB, BLAKE2 strong sums of 8 bytes (12 bytes per block). */
#pragma once
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
