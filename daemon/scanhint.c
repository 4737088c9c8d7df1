/* scanhint.c - when a plain image file need not be reread (scanhint.h). */
#include "scanhint.h"
#include <string.h>

static uint64_t ts_usec(const struct timespec *t)
{
	return t->tv_sec < 0 ? 0 : (uint64_t)t->tv_sec * 1000000u + (uint64_t)t->tv_nsec / 1000u;
}

bool scanhint_same(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

bool scanhint_usable(const struct scanhint *h, const struct stat *now, uint64_t now_mono, uint64_t full_every)
{
	return h->valid && full_every && S_ISREG(now->st_mode) && now_mono - h->full_mono < full_every &&
	       scanhint_same(&h->st, now);
}

void scanhint_update(struct scanhint *h, bool hinted, const struct stat *before, const struct stat *after,
		     bool after_ok, uint64_t start_real, uint64_t start_mono)
{
	bool settled = ts_usec(&before->st_mtim) + SCANHINT_SETTLE_USEC < start_real &&
		       ts_usec(&before->st_ctim) + SCANHINT_SETTLE_USEC < start_real;

	if (!after_ok || !S_ISREG(before->st_mode) || !scanhint_same(before, after)) {
		h->valid = h->seen = false; /* written during the cut: the next one reads it all */
		return;
	}
	if (hinted)
		return; /* still the file the last full scan read */
	if (!h->seen || !scanhint_same(&h->st, before) || !settled) {
		/* The first full scan of the file as it is now: it vouches for
		 * nothing yet, the next full scan that finds the same may. */
		h->valid = false;
		h->seen = true;
		h->st = *before;
		return;
	}
	h->valid = true;
	h->full_mono = start_mono;
}
