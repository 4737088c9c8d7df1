/* units.c - parse and print sizes, durations and rates. */
#include "units.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct unit { const char *name; double mult; };

static const struct unit size_units[] = {
	{ "", 1 }, { "B", 1 },
	{ "K", 1024.0 }, { "KiB", 1024.0 }, { "KB", 1e3 }, { "kB", 1e3 },
	{ "M", 1048576.0 }, { "MiB", 1048576.0 }, { "MB", 1e6 },
	{ "G", 1073741824.0 }, { "GiB", 1073741824.0 }, { "GB", 1e9 },
	{ "T", 1099511627776.0 }, { "TiB", 1099511627776.0 }, { "TB", 1e12 },
	{ NULL, 0 }
};

static const struct unit time_units[] = {
	{ "us", 1 }, { "ms", 1e3 }, { "s", 1e6 }, { "sec", 1e6 },
	{ "m", 60e6 }, { "min", 60e6 }, { "h", 3600e6 }, { "d", 86400e6 },
	{ NULL, 0 }
};

/* Parse one "<number><unit>" term starting at *pp; advance *pp. */
static int parse_term(const char **pp, const struct unit *units, double *ret)
{
	const char *p = *pp, *u;
	char unit[8];
	double v;
	char *end;
	size_t n;

	if (!isdigit((unsigned char)*p) && *p != '.')
		return -EINVAL;
	errno = 0;
	v = strtod(p, &end);
	if (errno || end == p || v < 0 || !isfinite(v))
		return -EINVAL;
	while (*end == ' ')
		end++;
	u = end;
	while (isalpha((unsigned char)*end))
		end++;
	n = (size_t)(end - u);
	if (n >= sizeof(unit))
		return -EINVAL;
	memcpy(unit, u, n);
	unit[n] = 0;
	for (int i = 0; units[i].name; i++) {
		if (strcmp(units[i].name, unit) == 0) {
			*ret = v * units[i].mult;
			*pp = end;
			return 0;
		}
	}
	return -EINVAL;
}

/* V (finite, >= 0) as a uint64_t, or -ERANGE: converting a double at or
 * above 2^64 is undefined behaviour, not a large number. */
static int to_u64(double v, uint64_t *ret)
{
	if (!(v >= 0) || v >= 18446744073709551616.0)
		return -ERANGE;
	*ret = (uint64_t)v;
	return 0;
}

int units_parse_size(const char *s, uint64_t *ret)
{
	const char *p = s;
	double v;

	if (!s || !*s || parse_term(&p, size_units, &v) < 0 || *p)
		return -EINVAL;
	return to_u64(v, ret);
}

int units_parse_duration(const char *s, uint64_t *ret_usec)
{
	const char *p = s;
	double total = 0, v;
	char *end;

	if (!s || !*s)
		return -EINVAL;
	/* A bare number is seconds. */
	errno = 0;
	v = strtod(s, &end);
	if (!errno && end != s && *end == 0 && v >= 0 && isfinite(v))
		return to_u64(v * 1e6, ret_usec);
	while (*p) {
		if (parse_term(&p, time_units, &v) < 0)
			return -EINVAL;
		total += v;
		while (*p == ' ')
			p++;
	}
	return to_u64(total, ret_usec);
}

int units_parse_rate(const char *s, uint64_t *ret)
{
	char tmp[64];
	size_t n;

	if (!s || !*s)
		return -EINVAL;
	if (strcasecmp(s, "unlimited") == 0 || strcmp(s, "0") == 0) {
		*ret = 0;
		return 0;
	}
	n = strlen(s);
	if (n >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, n + 1);
	if (n > 2 && strcmp(tmp + n - 2, "/s") == 0)
		tmp[n - 2] = 0;
	return units_parse_size(tmp, ret);
}

char *units_fmt_size(uint64_t v, char *buf, int len)
{
	if (v >= 10ULL << 30)
		snprintf(buf, (size_t)len, "%.1f GiB", (double)v / (1 << 30));
	else if (v >= 10ULL << 20)
		snprintf(buf, (size_t)len, "%.1f MiB", (double)v / (1 << 20));
	else if (v >= 10ULL << 10)
		snprintf(buf, (size_t)len, "%.1f KiB", (double)v / 1024);
	else
		snprintf(buf, (size_t)len, "%llu B", (unsigned long long)v);
	return buf;
}

char *units_fmt_duration(uint64_t usec, char *buf, int len)
{
	uint64_t s = usec / 1000000;

	if (usec < 1000000)
		snprintf(buf, (size_t)len, "%llums", (unsigned long long)(usec / 1000));
	else if (s < 60)
		snprintf(buf, (size_t)len, "%.1fs", (double)usec / 1e6);
	else if (s < 3600)
		snprintf(buf, (size_t)len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, (size_t)len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
	return buf;
}

int units_parse_time(const char *s, uint64_t *ret_usec)
{
	struct tm tm;
	const char *end;
	time_t t;

	if (s[0] == '@') {
		char *e;
		double v;
		errno = 0;
		v = strtod(s + 1, &e);
		if (errno || *e || e == s + 1 || v < 0 || v > 1e11)
			return -EINVAL;
		*ret_usec = (uint64_t)(v * 1e6);
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
	uint64_t frac = 0, scale = 100000;

	if (!end)
		return -EINVAL;
	/* An optional fraction of a second, to the microsecond. */
	if (*end == '.') {
		if (!(end[1] >= '0' && end[1] <= '9'))
			return -EINVAL;
		for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
			frac += (uint64_t)(*end - '0') * scale;
	}
	if (strcmp(end, "Z") == 0) {
		t = timegm(&tm);
	} else if (*end == 0) {
		tm.tm_isdst = -1;
		t = mktime(&tm);
	} else {
		return -EINVAL;
	}
	if (t < 0)
		return -EINVAL;
	*ret_usec = (uint64_t)t * 1000000u + frac;
	return 0;
}

char *units_fmt_time(uint64_t usec, char *buf, int len)
{
	time_t t = (time_t)(usec / 1000000u);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, (size_t)len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

double units_round(double v, enum units_measure kind)
{
	double scale;
	int e;

	if (!isfinite(v) || v == 0)
		return v;
	switch (kind) {
	case UNITS_SECONDS:
		return round(v * 1e6) / 1e6;
	case UNITS_UNIXTIME:
		return round(v * 1e3) / 1e3;
	case UNITS_ESTIMATE:
		break;
	}
	/* Three significant digits.  Divide or multiply by an exact power of
	 * ten (never by 1e-3, which a double holds inexactly). */
	e = (int)floor(log10(fabs(v)));
	if (e >= 2) {
		scale = pow(10, e - 2);
		return round(v / scale) * scale;
	}
	scale = pow(10, 2 - e);
	return round(v * scale) / scale;
}
