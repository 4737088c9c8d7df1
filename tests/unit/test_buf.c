/* Unit tests: the bounds-checked reader and the bounded writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
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
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reader_bounds),
		cmocka_unit_test(test_reader_strings),
		cmocka_unit_test(test_writer_max),
		cmocka_unit_test(test_units),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
