/* Unit tests: the scan hint (daemon/scanhint.h): when a plain image file
 * may go unread, and what makes the next cut read it in full again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <sys/stat.h>
#include "scanhint.h"

#define SEC 1000000ULL
#define HOUR (3600 * SEC)

/* A regular file last changed at unix second T. */
static struct stat file_at(time_t t)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0600;
	st.st_dev = 8;
	st.st_ino = 1234;
	st.st_size = 1 << 30;
	st.st_mtim.tv_sec = st.st_ctim.tv_sec = t;
	st.st_mtim.tv_nsec = st.st_ctim.tv_nsec = 5000;
	return st;
}

/* A hint set by two full scans, at unix seconds 995 and 1000 (monotonic
 * 45 and 50 s), of a file last written at second 900. */
static struct scanhint hint_set(void)
{
	struct scanhint h = { 0 };
	struct stat st = file_at(900);

	scanhint_update(&h, false, &st, &st, true, 995 * SEC, 45 * SEC);
	scanhint_update(&h, false, &st, &st, true, 1000 * SEC, 50 * SEC);
	return h;
}

static void test_same(void **state)
{
	struct stat a = file_at(900), b = a;

	assert_true(scanhint_same(&a, &b));
	b.st_ino++;
	assert_false(scanhint_same(&a, &b)); /* a file renamed over it */
	b = a;
	b.st_dev++;
	assert_false(scanhint_same(&a, &b));
	b = a;
	b.st_size += 4096;
	assert_false(scanhint_same(&a, &b));
	b = a;
	b.st_mtim.tv_nsec++;
	assert_false(scanhint_same(&a, &b));
	/* mtime restored by touch -d / utimensat: the kernel moved ctime. */
	b = a;
	b.st_ctim.tv_sec++;
	assert_false(scanhint_same(&a, &b));
	b = a;
	b.st_ctim.tv_nsec++;
	assert_false(scanhint_same(&a, &b));
}

static void test_full_scan_sets(void **state)
{
	struct scanhint h = { 0 };
	struct stat st = file_at(900), other = file_at(950);

	/* One full scan vouches for nothing; a second that agrees does. */
	scanhint_update(&h, false, &st, &st, true, 995 * SEC, 45 * SEC);
	assert_false(h.valid);
	assert_false(scanhint_usable(&h, &st, 46 * SEC, HOUR));
	/* Two full scans that disagree (a write between them): not yet. */
	scanhint_update(&h, false, &other, &other, true, 998 * SEC, 48 * SEC);
	assert_false(h.valid);
	scanhint_update(&h, false, &st, &st, true, 1000 * SEC, 50 * SEC);
	assert_false(h.valid);
	h = hint_set();
	assert_true(h.valid);
	assert_int_equal(h.full_mono, 50 * SEC);
	assert_true(scanhint_usable(&h, &st, 60 * SEC, HOUR));
}

static void test_not_settled(void **state)
{
	struct scanhint h = hint_set();
	struct stat st = file_at(999); /* written a second before the scan */

	scanhint_update(&h, false, &st, &st, true, 1000 * SEC, 50 * SEC);
	assert_false(h.valid);
	/* ctime alone recent (mtime set back by touch -d) is not settled either */
	st = file_at(900);
	st.st_ctim.tv_sec = 999;
	scanhint_update(&h, false, &st, &st, true, 1000 * SEC, 50 * SEC);
	assert_false(h.valid);
	/* the same file, unsettled at the first scan, settled at the second */
	st = file_at(999);
	scanhint_update(&h, false, &st, &st, true, 1000 * SEC, 50 * SEC);
	assert_false(h.valid);
	scanhint_update(&h, false, &st, &st, true, 999 * SEC + SCANHINT_SETTLE_USEC + 100, 52 * SEC);
	assert_true(h.valid);
	/* agreeing, but the second scan starts within the settling time */
	st = file_at(1000);
	scanhint_update(&h, false, &st, &st, true, 1001 * SEC, 53 * SEC);
	scanhint_update(&h, false, &st, &st, true, 1001 * SEC + 1, 53 * SEC + 1);
	assert_false(h.valid);
}

static void test_written_during_scan(void **state)
{
	struct scanhint h = hint_set();
	struct stat before = file_at(900), after = file_at(1001);

	scanhint_update(&h, false, &before, &after, true, 1000 * SEC, 50 * SEC);
	assert_false(h.valid);
	h = hint_set();
	scanhint_update(&h, false, &before, &before, false, 1000 * SEC, 50 * SEC); /* stat failed */
	assert_false(h.valid);
}

static void test_not_regular(void **state)
{
	struct scanhint h = { 0 };
	struct stat st = file_at(900);

	st.st_mode = S_IFBLK | 0600; /* a block device's times say nothing of its writes */
	scanhint_update(&h, false, &st, &st, true, 1000 * SEC, 50 * SEC);
	assert_false(h.valid);
	h = hint_set();
	assert_false(scanhint_usable(&h, &st, 60 * SEC, HOUR));
}

static void test_usable(void **state)
{
	struct scanhint h = hint_set(), none = { 0 };
	struct stat st = file_at(900), changed = file_at(1100);

	assert_false(scanhint_usable(&none, &st, 60 * SEC, HOUR)); /* no full scan yet in this run */
	assert_false(scanhint_usable(&h, &changed, 60 * SEC, HOUR));
	assert_true(scanhint_usable(&h, &st, 50 * SEC + HOUR - 1, HOUR));
	assert_false(scanhint_usable(&h, &st, 50 * SEC + HOUR, HOUR)); /* full_scan_every is due */
	assert_false(scanhint_usable(&h, &st, 60 * SEC, 0));          /* full_scan_every: 0 */
}

static void test_hinted_cut(void **state)
{
	struct scanhint h = hint_set();
	struct stat st = file_at(900), later = file_at(1200);

	/* An unchanged file keeps the hint, and the time of its full scan. */
	scanhint_update(&h, true, &st, &st, true, 1300 * SEC, 350 * SEC);
	assert_true(h.valid);
	assert_int_equal(h.full_mono, 50 * SEC);
	/* A write during a hinted cut: the next cut reads it all, and the
	 * full scan after it does not vouch alone. */
	scanhint_update(&h, true, &st, &later, true, 1300 * SEC, 350 * SEC);
	assert_false(h.valid);
	scanhint_update(&h, false, &later, &later, true, 1400 * SEC, 450 * SEC);
	assert_false(h.valid);
	scanhint_update(&h, false, &later, &later, true, 1401 * SEC, 451 * SEC);
	assert_true(h.valid);
	/* After full_scan_every, one full scan that still agrees renews it. */
	h = hint_set();
	h.valid = false; /* a failed cut: the maps in doubt */
	scanhint_update(&h, false, &st, &st, true, 1300 * SEC, 350 * SEC);
	assert_true(h.valid);
	assert_int_equal(h.full_mono, 350 * SEC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same),
		cmocka_unit_test(test_full_scan_sets),
		cmocka_unit_test(test_not_settled),
		cmocka_unit_test(test_written_during_scan),
		cmocka_unit_test(test_not_regular),
		cmocka_unit_test(test_usable),
		cmocka_unit_test(test_hinted_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
