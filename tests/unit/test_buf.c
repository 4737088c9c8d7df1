/* Unit tests: the bounds-checked reader, the bounded writer, units. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "units.h"

static void test_reader_bounds(void **state)
{
	uint8_t data[] = { 0, 0, 0, 7, 1, 2 };
	struct rbuf b = rbuf_init(data, sizeof(data));
	uint32_t v = 99;
	uint64_t w = 42;

	assert_int_equal(rbuf_get_u32(&b, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(rbuf_get_u64(&b, &w), -EBADMSG); /* only 2 bytes left */
	assert_int_equal(w, 42);                          /* untouched on failure */
	assert_int_equal(rbuf_left(&b), 2);
	assert_int_equal(rbuf_expect_end(&b), -EBADMSG);
}

static void test_reader_strings(void **state)
{
	uint8_t ok[] = { 0, 3, 'a', 'b', 'c' }, nul[] = { 0, 2, 'a', 0 }, lie[] = { 0, 9, 'a' };
	char s[4];
	struct rbuf b = rbuf_init(ok, sizeof(ok));

	assert_int_equal(rbuf_get_str(&b, s, sizeof(s)), 0);
	assert_string_equal(s, "abc");
	assert_int_equal(rbuf_expect_end(&b), 0);
	b = rbuf_init(ok, sizeof(ok));
	assert_int_equal(rbuf_get_str(&b, s, 3), -EBADMSG); /* does not fit */
	assert_int_equal(b.off, 0);                          /* nothing consumed */
	b = rbuf_init(nul, sizeof(nul));
	assert_int_equal(rbuf_get_str(&b, s, sizeof(s)), -EBADMSG); /* embedded NUL */
	b = rbuf_init(lie, sizeof(lie));
	assert_int_equal(rbuf_get_str(&b, s, sizeof(s)), -EBADMSG); /* length lies */
}

static void test_writer_max(void **state)
{
	struct wbuf b;
	uint8_t big[100] = { 0 };

	wbuf_init(&b, 64);
	assert_int_equal(wbuf_put_u64(&b, 0x0102030405060708ULL), 0);
	assert_int_equal(b.p[0], 1);
	assert_int_equal(b.p[7], 8);
	assert_int_equal(wbuf_put_bytes(&b, big, sizeof(big)), -ENOBUFS);
	assert_int_equal(b.len, 8);
	wbuf_consume(&b, 4);
	assert_int_equal(b.len, 4);
	assert_int_equal(b.p[0], 5);
	wbuf_free(&b);
}

static void test_units(void **state)
{
	uint64_t v;
	char b[32];

	assert_string_equal(units_fmt_size(10239, b, sizeof(b)), "10239 B");
	assert_string_equal(units_fmt_size(10240, b, sizeof(b)), "10.0 KiB");
	assert_string_equal(units_fmt_size(15ULL << 20, b, sizeof(b)), "15.0 MiB");
	assert_string_equal(units_fmt_size(12ULL << 30, b, sizeof(b)), "12.0 GiB");

	assert_int_equal(units_parse_size("4KiB", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(units_parse_size("10MB", &v), 0);
	assert_int_equal(v, 10000000);
	assert_int_equal(units_parse_size("1.5GiB", &v), 0);
	assert_int_equal(v, 1610612736ULL);
	assert_int_equal(units_parse_size("12", &v), 0);
	assert_int_equal(v, 12);
	assert_int_equal(units_parse_size("4 KiB", &v), 0);
	assert_int_equal(units_parse_size("4XB", &v), -EINVAL);
	assert_int_equal(units_parse_size("-4K", &v), -EINVAL);
	assert_int_equal(units_parse_size("", &v), -EINVAL);
	assert_int_equal(units_parse_duration("500ms", &v), 0);
	assert_int_equal(v, 500000);
	assert_int_equal(units_parse_duration("1h30m", &v), 0);
	assert_int_equal(v, 5400000000ULL);
	assert_int_equal(units_parse_duration("5", &v), 0);
	assert_int_equal(v, 5000000);
	assert_int_equal(units_parse_duration("5 parsecs", &v), -EINVAL);
	assert_int_equal(units_parse_rate("100MB/s", &v), 0);
	assert_int_equal(v, 100000000);
	assert_int_equal(units_parse_rate("unlimited", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(units_parse_rate("fast", &v), -EINVAL);
	/* A point in time, to the microsecond (promote --at between two commits). */
	assert_int_equal(units_parse_time("2026-12-01T22:56:46Z", &v), 0);
	assert_int_equal(v, 1796165806000000ULL);
	assert_int_equal(units_parse_time("2026-12-01T22:56:46.5Z", &v), 0);
	assert_int_equal(v, 1796165806500000ULL);
	assert_int_equal(units_parse_time("2026-12-01T22:56:46.000123Z", &v), 0);
	assert_int_equal(v, 1796165806000123ULL);
	assert_int_equal(units_parse_time("2026-12-01T22:56:46.Z", &v), -EINVAL);
	assert_int_equal(units_parse_time("2026-12-01T22:56:46.5x", &v), -EINVAL);
}

/* What JSON and metrics print: the measurement, not the binary noise. */
static void check_round(double v, enum units_measure kind, const char *want)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%.*g", UNITS_REAL_DIGITS, units_round(v, kind));
	if (strcmp(buf, want)) {
		fprintf(stderr, "units_round(%.17g, %d) printed %s, want %s\n", v, (int)kind, buf, want);
		fail();
	}
}

static void test_units_round(void **state)
{
	char buf[64];
	json_t *j;
	char *text;

	/* The case of the issue: 16200 us printed as 0.016199999999999999. */
	snprintf(buf, sizeof(buf), "%.17g", (double)16200 / 1e6);
	assert_string_equal(buf, "0.016199999999999999");
	check_round((double)16200 / 1e6, UNITS_SECONDS, "0.0162");
	check_round(0.1 + 0.2, UNITS_SECONDS, "0.3");
	check_round(1.0000004, UNITS_SECONDS, "1");
	check_round(86399.9999996, UNITS_SECONDS, "86400");
	check_round((double)999999999123456ULL / 1e6, UNITS_SECONDS, "999999999.123456");
	check_round(-1, UNITS_SECONDS, "-1");
	check_round(0, UNITS_SECONDS, "0");
	check_round((double)1764612220123456ULL / 1e6, UNITS_UNIXTIME, "1764612220.123");
	check_round((double)1764612220999600ULL / 1e6, UNITS_UNIXTIME, "1764612221");
	check_round(123456.789, UNITS_ESTIMATE, "123000");
	check_round(98765432.1, UNITS_ESTIMATE, "98800000");
	check_round(0.7 * 3 + 0.3 * 0.1, UNITS_ESTIMATE, "2.13");
	check_round(0.000123456, UNITS_ESTIMATE, "0.000123");
	check_round(999.7, UNITS_ESTIMATE, "1000");
	check_round(-45.678, UNITS_ESTIMATE, "-45.7");
	check_round(1e300 * 1e300, UNITS_ESTIMATE, "inf");
	/* jansson with the same precision prints the same text. */
	j = json_pack("{s:f, s:f}", "lag", units_round((double)16200 / 1e6, UNITS_SECONDS), "rate",
		      units_round(123456.789, UNITS_ESTIMATE));
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(UNITS_REAL_DIGITS));
	assert_string_equal(text, "{\"lag\":0.0162,\"rate\":123000.0}");
	free(text);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reader_bounds),
		cmocka_unit_test(test_reader_strings),
		cmocka_unit_test(test_writer_max),
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_units_round),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
