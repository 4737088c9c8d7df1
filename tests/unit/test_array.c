/* Unit tests: lib/array.h, the one growing-array helper: room made by
 * doubling from FIRST, nothing moved while there is room, and a failure
 * (an overflowing size) leaves the array and its capacity as they were. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include "array.h"

static void test_grow(void **state)
{
	uint64_t *a = NULL, *b;
	size_t cap = 0, n;
	(void)state;

	for (n = 0; n < 100; n++) {
		assert_non_null(b = array_grow(a, &cap, n, sizeof(*a), 4));
		a = b;
		a[n] = n;
	}
	assert_int_equal(cap, 128); /* 4, 8, ... 128 */
	for (n = 0; n < 100; n++)
		assert_int_equal(a[n], n);
	assert_ptr_equal(array_grow(a, &cap, 100, sizeof(*a), 4), a); /* room: not moved */
	assert_int_equal(cap, 128);
	/* A size that would overflow: NULL, A and CAP as they were. */
	assert_null(array_grow(a, &cap, 128, SIZE_MAX / 128, 4));
	assert_int_equal(cap, 128);
	assert_int_equal(a[99], 99);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
