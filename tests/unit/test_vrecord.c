/* Unit tests: the vault writer's local record of commits (lib/vrecord.c):
 * round trip, epochs only grow, a damaged or foreign file is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "err.h"
#include "fsutil.h"
#include "vrecord.h"

static char dir[64], file[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/bascule-vrec-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(file, sizeof(file), "%s/%s", dir, VRECORD_FILE);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void test_round_trip(void **state)
{
	struct vrecord r = { 0 }, l = { 0 };
	uint8_t s1[16], s2[16], m1[32], m2[32], m3[32];
	const struct vrecord_entry *e;
	struct stat st;
	(void)state;
	memset(s1, 1, 16);
	memset(s2, 2, 16);
	memset(m1, 0x11, 32);
	memset(m2, 0x22, 32);
	memset(m3, 0x33, 32);
	assert_int_equal(vrecord_load(file, &l), -ENOENT);
	/* "None yet" is an answer: no sentence is left for a later ENOENT of
	 * something else (the writer then said "cannot open .../record"). */
	assert_string_equal(err_msg(-ENOENT), strerror(ENOENT));
	assert_int_equal(vrecord_set(&r, "vm1", s1, 7, 1000, m1), 0);
	assert_int_equal(vrecord_set(&r, "vm2", s2, 3, 2000, m2), 0);
	assert_int_equal(vrecord_set(&r, "vm1", s1, 9, 3000, m3), 0);
	/* an older epoch never replaces a newer one */
	assert_int_equal(vrecord_set(&r, "vm1", s1, 8, 2500, m2), 0);
	assert_int_equal(vrecord_save(file, &r), 0);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(vrecord_load(file, &l), 0);
	assert_int_equal(l.n, 2);
	assert_non_null(e = vrecord_find(&l, "vm1"));
	assert_int_equal(e->epoch, 9);
	assert_int_equal(e->cut_time, 3000);
	assert_memory_equal(e->manifest, m3, 32);
	assert_memory_equal(e->series, s1, 16);
	assert_non_null(e = vrecord_find(&l, "vm2"));
	assert_int_equal(e->epoch, 3);
	assert_null(vrecord_find(&l, "vm3"));
	vrecord_free(&l);
	vrecord_free(&r);
}

static void test_damaged(void **state)
{
	struct vrecord r = { 0 }, l = { 0 };
	uint8_t s[16] = { 0 }, m[32] = { 0 };
	char *data = NULL;
	size_t len = 0;
	(void)state;
	assert_int_equal(vrecord_set(&r, "vm1", s, 5, 1, m), 0);
	assert_int_equal(vrecord_save(file, &r), 0);
	assert_int_equal(fs_read_all(file, 4096, &data, &len), 0);
	/* every truncation, an extra byte, another magic: refused, output untouched */
	for (size_t n = 0; n < len; n++) {
		assert_int_equal(fs_write_atomic(file, data, n, 0600), 0);
		assert_int_equal(vrecord_load(file, &l), -EBADMSG);
		assert_int_equal(l.n, 0);
	}
	{
		char *more = malloc(len + 1);
		memcpy(more, data, len);
		more[len] = 0;
		assert_int_equal(fs_write_atomic(file, more, len + 1, 0600), 0);
		assert_int_equal(vrecord_load(file, &l), -EBADMSG);
		free(more);
	}
	data[0] ^= 1;
	assert_int_equal(fs_write_atomic(file, data, len, 0600), 0);
	assert_int_equal(vrecord_load(file, &l), -EBADMSG);
	assert_non_null(strstr(err_msg(-EBADMSG), "not a record of vault commits"));
	/* a count beyond the limit */
	data[0] ^= 1;
	data[8] = 0x7f;
	assert_int_equal(fs_write_atomic(file, data, len, 0600), 0);
	assert_int_equal(vrecord_load(file, &l), -EBADMSG);
	free(data);
	vrecord_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_damaged),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
