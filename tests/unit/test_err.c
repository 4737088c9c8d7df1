/* Unit tests: the error convention (lib/err.c): a sentence belongs to the
 * error it was recorded for, and to nothing after it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include "err.h"

static void test_sentence_for_its_code(void **state)
{
	assert_int_equal(err_set(ENOENT, "no journal at %s", "/x"), -ENOENT);
	assert_string_equal(err_msg(-ENOENT), "no journal at /x");
	assert_string_equal(err_msg(ENOENT), "no journal at /x"); /* either sign */
	assert_string_equal(err_msg(-EIO), strerror(EIO));        /* another error: its own words */
	assert_int_equal(err_wrap(-ENOENT, "drill %d", 3), -ENOENT);
	assert_string_equal(err_msg(-ENOENT), "drill 3: no journal at /x");
	assert_int_equal(err_recode(-ENOENT, EINVAL), -EINVAL);
	assert_string_equal(err_msg(-EINVAL), "drill 3: no journal at /x");
	assert_string_equal(err_msg(-ENOENT), strerror(ENOENT));
}

/* An error handled where it happened (ENOENT meaning "none yet") and
 * cleared there is not the sentence of a later failure with the same errno
 * that recorded none. */
static void test_cleared_is_forgotten(void **state)
{
	err_set(ENOENT, "cannot open /var/lib/bascule/record: No such file or directory");
	err_clear();
	assert_string_equal(err_msg(-ENOENT), strerror(ENOENT));
	assert_string_equal(err_msg(0), strerror(0));
	/* err_wrap of a cleared error wraps the errno's own words */
	err_wrap(-ENOENT, "loading");
	assert_string_equal(err_msg(-ENOENT), "loading: No such file or directory");
}

static void *other_thread(void *arg)
{
	return (void *)(intptr_t)(strcmp(err_msg(-EBUSY), strerror(EBUSY)) == 0);
}

static void test_per_thread(void **state)
{
	pthread_t t;
	void *ok;

	err_set(EBUSY, "lock held by pid 42");
	assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
	pthread_join(t, &ok);
	assert_true(ok == (void *)1);
	assert_string_equal(err_msg(-EBUSY), "lock held by pid 42");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sentence_for_its_code),
		cmocka_unit_test(test_cleared_is_forgotten),
		cmocka_unit_test(test_per_thread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
