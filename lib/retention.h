/* retention.h - which vault epochs a retention policy keeps.
 *
 *   all: 24h       every epoch younger than this
 *   hourly: 7d     the newest epoch of each hour, for epochs younger than this
 *   daily: 30d     the newest of each day (UTC)
 *   monthly: 12m   the newest of each calendar month (UTC); "m" is months here
 *
 * The newest epoch of a group is always kept.  A span of 0 keeps nothing
 * by that rule; a policy with every span 0 is "keep everything" (no prune). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct retention {
	uint64_t all, hourly, daily, monthly; /* seconds, 0 = rule off */
};

/* "24h", "7d", "2w", "12m" (months), "1y", or a bare number of seconds. */
int retention_parse_span(const char *s, uint64_t *ret_seconds);
bool retention_set(const struct retention *r);
/* KEEP[i] = whether the epoch cut at TIMES[i] (unix seconds, sorted oldest
 * first, one group) is kept at NOW. */
void retention_apply(const struct retention *r, const uint64_t *times, size_t n, uint64_t now, bool *keep);
/* "all 24h, hourly 7d, daily 30d, monthly 12m" */
void retention_describe(const struct retention *r, char *buf, size_t len);
