/* scanhint.h - the scan hint of a plain image file: a file whose identity,
 * size and times are those it had when a full scan last read all of it (and
 * found nobody writing) has not been written since, so its cut reads only
 * the blocks a target lacks (docs/design.md, "The scan hint").  Kept in
 * memory only: the first cut of every run reads every file in full. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

/* A full scan vouches for the file only if an earlier full scan found it
 * with the same stat (two agreeing full scans: nobody wrote from the
 * start of the first to the end of the second) and its last change (mtime
 * and ctime) is this much older than the second scan's start.  A write
 * stamps the times before its data lands (an O_DIRECT write in flight, a
 * buffered copy preempted), so a read could miss data the times announce;
 * such a write would have to stay in flight across a whole full scan and
 * this long (docs/design.md, "The scan hint"). */
#define SCANHINT_SETTLE_USEC 2000000u
struct scanhint {
	bool valid;           /* two full scans agree: st may be trusted */
	bool seen;            /* st is from a full scan (the first of two, or both) */
	struct stat st;       /* the file when the full scan began */
	uint64_t full_mono;   /* monotonic usec: the start of that full scan */
};

/* Same file, same size, same mtime and ctime (what any write, truncate,
 * hole punch or utimensat changes: ctime cannot be set by a writer). */
bool scanhint_same(const struct stat *a, const struct stat *b);
/* May a cut starting at monotonic NOW_MONO skip reading the file that
 * fstat says is NOW?  Only a regular file whose stat is the hint's, within
 * FULL_EVERY usec (0: never) of the full scan that set it. */
bool scanhint_usable(const struct scanhint *h, const struct stat *now, uint64_t now_mono, uint64_t full_every);
/* After a cut's scan completed: HINTED says whether it used the hint;
 * BEFORE and AFTER are the file's stat when the cut began and after its
 * scan (AFTER_OK: that stat succeeded); START_REAL and START_MONO the
 * cut's start (unix and monotonic usec).  A hinted cut keeps the hint
 * only if the file is still unchanged.  A full one during which nobody
 * wrote records the file's stat; it sets the hint if an earlier full scan
 * recorded the same stat and the last write had settled, else clears it. */
void scanhint_update(struct scanhint *h, bool hinted, const struct stat *before, const struct stat *after,
		     bool after_ok, uint64_t start_real, uint64_t start_mono);
