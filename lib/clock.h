/* clock.h - the one clock of Bascule: wall time for records (cut times,
 * report timestamps), monotonic time for durations and deadlines.
 * Microseconds throughout, as units_fmt_duration() and the configuration's
 * durations count them. */
#pragma once
#include <stdint.h>

/* Unix time in microseconds (CLOCK_REALTIME): what is written down and shown. */
uint64_t clock_now_usec(void);
/* Microseconds since an arbitrary start (CLOCK_MONOTONIC): never jumps, for
 * measuring durations and for deadlines; meaningless across processes. */
uint64_t clock_mono_usec(void);
/* The monotonic deadline TIMEOUT usec from now; 0 means none (UINT64_MAX). */
uint64_t clock_deadline(uint64_t timeout);
/* Milliseconds until the monotonic DEADLINE for poll(): rounded up so a wait
 * never wakes before it, 0 once it has passed, -1 (wait for ever) for
 * UINT64_MAX, at most INT_MAX. */
int clock_ms_until(uint64_t deadline);
