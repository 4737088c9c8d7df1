/* retention.c - retention policies for vault epochs (see retention.h). */
#include "retention.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MONTH (30 * 86400ULL + 37800) /* 30.44 days: spans only; buckets use the calendar */

int retention_parse_span(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	uint64_t unit;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (!*end)
		unit = 1;
	else if (!strcmp(end, "h"))
		unit = 3600;
	else if (!strcmp(end, "d"))
		unit = 86400;
	else if (!strcmp(end, "w"))
		unit = 7 * 86400;
	else if (!strcmp(end, "m") || !strcmp(end, "mo"))
		unit = MONTH;
	else if (!strcmp(end, "y"))
		unit = 365 * 86400ULL + 21600;
	else
		return -EINVAL;
	if (v > UINT64_MAX / unit / 2)
		return -ERANGE;
	*ret = v * unit;
	return 0;
}

bool retention_set(const struct retention *r)
{
	return r->all || r->hourly || r->daily || r->monthly;
}

static uint64_t bucket(uint64_t t, int kind)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (kind == 0)
		return t / 3600;
	if (kind == 1)
		return t / 86400;
	gmtime_r(&tt, &tm);
	return (uint64_t)(tm.tm_year + 1900) * 12 + (uint64_t)tm.tm_mon;
}

void retention_apply(const struct retention *r, const uint64_t *times, size_t n, uint64_t now, bool *keep)
{
	const uint64_t span[3] = { r->hourly, r->daily, r->monthly };

	for (size_t i = 0; i < n; i++)
		keep[i] = !retention_set(r) || i + 1 == n || (r->all && times[i] + r->all >= now);
	/* Newest of each bucket: walk newest first, keep the first seen per bucket. */
	for (int k = 0; k < 3; k++) {
		uint64_t last = UINT64_MAX;
		if (!span[k])
			continue;
		for (size_t i = n; i-- > 0;) {
			uint64_t b;
			if (times[i] + span[k] < now)
				break;
			b = bucket(times[i], k);
			if (b != last)
				keep[i] = true;
			last = b;
		}
	}
}

void retention_describe(const struct retention *r, char *buf, size_t len)
{
	const char *names[4] = { "all", "hourly", "daily", "monthly" };
	const uint64_t v[4] = { r->all, r->hourly, r->daily, r->monthly };
	size_t o = 0;

	buf[0] = 0;
	for (int i = 0; i < 4 && o < len; i++) {
		if (!v[i])
			continue;
		if (v[i] % 86400 == 0)
			o += (size_t)snprintf(buf + o, len - o, "%s%s %llud", o ? ", " : "", names[i],
					      (unsigned long long)(v[i] / 86400));
		else if (v[i] % 3600 == 0)
			o += (size_t)snprintf(buf + o, len - o, "%s%s %lluh", o ? ", " : "", names[i],
					      (unsigned long long)(v[i] / 3600));
		else
			o += (size_t)snprintf(buf + o, len - o, "%s%s %llus", o ? ", " : "", names[i],
					      (unsigned long long)v[i]);
	}
	if (!o)
		snprintf(buf, len, "keep everything");
}
