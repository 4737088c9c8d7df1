/* units.h - sizes, durations and rates as humans write them. */
#pragma once
#include <stdint.h>

/* "4096", "64KiB", "1.5GiB", "10MB" (SI: 1000) -> bytes.  0 or -EINVAL/-ERANGE. */
int units_parse_size(const char *s, uint64_t *ret);
/* "500ms", "5s", "2m", "1h30m", "7d"; a bare number means seconds -> usec. */
int units_parse_duration(const char *s, uint64_t *ret_usec);
/* "100MB/s", "1GiB/s", "50M"; "0" or "unlimited" is 0 (no cap) -> bytes/s. */
int units_parse_rate(const char *s, uint64_t *ret);
/* Render a size for people: "512 B", "12.5 KiB", "10.0 MiB", "1.2 GiB"
 * (the unit changes at 10 of the next one). Return BUF. */
char *units_fmt_size(uint64_t v, char *buf, int len);
/* Render for people: "2m30s". Return BUF. */
char *units_fmt_duration(uint64_t usec, char *buf, int len);
/* A point in time: "@UNIXSECONDS[.frac]", "YYYY-MM-DDTHH:MM:SS[.FFFFFF][Z]" or
 * "YYYY-MM-DD HH:MM:SS[.FFFFFF]" (local time unless Z).  Unix microseconds. */
int units_parse_time(const char *s, uint64_t *ret_usec);
/* "2026-11-24T18:03:23Z" (UTC, seconds) into BUF. */
char *units_fmt_time(uint64_t usec, char *buf, int len);

/* Numbers for machines (JSON answers, metrics).  A double printed with 17
 * digits shows its binary noise (0.016199999999999999); rounded to what it
 * measures, then printed with UNITS_REAL_DIGITS significant digits ("%.*g",
 * or JSON_REAL_PRECISION(UNITS_REAL_DIGITS) for jansson), it reads 0.0162.
 * 15 is DBL_DIG: every decimal of up to 15 digits survives the round trip
 * through a double, and the rounded values below have at most that many. */
#define UNITS_REAL_DIGITS 15
enum units_measure {
	UNITS_SECONDS,   /* a duration in seconds: to the microsecond (below 10^9 s) */
	UNITS_UNIXTIME,  /* a unix time in seconds: to the millisecond */
	UNITS_ESTIMATE,  /* a rate, an average: 3 significant digits */
};
/* V rounded as its kind says; infinities, NaN and 0 come back unchanged. */
double units_round(double v, enum units_measure kind);
