/* Unit tests: small state files (lib/sfile.c) and the atomic writes under
 * them (lib/fsutil.c): round trip keyed and unkeyed, a changed byte or
 * another key refused, the daemon's group state of the earlier release read
 * as it is, and a symbolic link planted at the temporary name neither
 * followed nor removed; fs_dir_empty; fs_sync_all's kept threads: rounds
 * one after the other and from two threads at once, a failed fsync named,
 * too many fds refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "err.h"
#include "fsutil.h"
#include "sfile.h"
#include "scratch.h"

static void put(const char *name, const char *magic, const uint8_t *key, uint64_t v)
{
	char path[128];
	struct wbuf b;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	sfile_begin(&b, magic);
	wbuf_put_u64(&b, v);
	assert_int_equal(sfile_write(&b, key, path, 0600), 0);
	wbuf_free(&b);
}

static int get(const char *name, const char *magic, const uint8_t *key, uint64_t *v)
{
	struct sfile f = { 0 };
	char path[128];
	struct rbuf b;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((rc = sfile_read(AT_FDCWD, path, &f)) < 0)
		return rc;
	if ((rc = sfile_open(&f, magic, key, &b)) == 0 && (rc = rbuf_get_u64(&b, v)) == 0)
		rc = rbuf_expect_end(&b);
	sfile_free(&f);
	return rc;
}

static void test_round_trip(void **state)
{
	uint8_t k1[SFILE_KEY_BYTES], k2[SFILE_KEY_BYTES];
	uint64_t v = 0;
	(void)state;
	memset(k1, 1, sizeof(k1));
	memset(k2, 2, sizeof(k2));
	assert_int_equal(get("none", "BSCTEST1", NULL, &v), -ENOENT);
	put("plain", "BSCTEST1", NULL, 42);
	assert_int_equal(get("plain", "BSCTEST1", NULL, &v), 0);
	assert_int_equal(v, 42);
	put("keyed", "BSCTEST1", k1, 43);
	assert_int_equal(get("keyed", "BSCTEST1", k1, &v), 0);
	assert_int_equal(v, 43);
	/* Another key, no key, another magic: refused. */
	assert_int_equal(get("keyed", "BSCTEST1", k2, &v), -EBADMSG);
	assert_int_equal(get("keyed", "BSCTEST1", NULL, &v), -EBADMSG);
	assert_int_equal(get("plain", "BSCTEST2", NULL, &v), -EBADMSG);
}

static void test_damaged(void **state)
{
	char path[128];
	uint64_t v = 0;
	int fd;
	(void)state;
	put("d", "BSCTEST1", NULL, 7);
	snprintf(path, sizeof(path), "%s/d", dir);
	assert_true((fd = open(path, O_WRONLY)) >= 0);
	assert_int_equal(pwrite(fd, "\xff", 1, 12), 1);
	close(fd);
	assert_int_equal(get("d", "BSCTEST1", NULL, &v), -EBADMSG);
	/* Truncated below magic and checksum. */
	assert_int_equal(truncate(path, 20), 0);
	assert_int_equal(get("d", "BSCTEST1", NULL, &v), -EBADMSG);
}

/* The daemon's group state as basculed 0.1 wrote it (magic, body, unkeyed
 * BLAKE2b of both) reads unchanged: no resync after an upgrade. */
static void test_earlier_format(void **state)
{
	uint8_t file[8 + 8 + 32];
	char path[128];
	uint64_t v = 0;
	int fd;
	(void)state;
	memcpy(file, "BSCGRST1", 8);
	put_be64(file + 8, 99);
	crypto_generichash(file + 16, 32, file, 16, NULL, 0);
	snprintf(path, sizeof(path), "%s/old", dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) >= 0);
	assert_int_equal(write(fd, file, sizeof(file)), sizeof(file));
	close(fd);
	assert_int_equal(get("old", "BSCGRST1", NULL, &v), 0);
	assert_int_equal(v, 99);
}

/* Someone who can write the directory plants NAME.tmp -> a file of
 * someone else's: the write refuses and the file keeps its content. */
static void test_planted_tmp_link(void **state)
{
	char victim[128], link[128], path[128], buf[16] = "";
	struct stat st;
	uint64_t v = 0;
	int fd;
	(void)state;
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(link, sizeof(link), "%s/st.tmp", dir);
	snprintf(path, sizeof(path), "%s/st", dir);
	assert_true((fd = open(victim, O_WRONLY | O_CREAT, 0644)) >= 0);
	assert_int_equal(write(fd, "precious", 8), 8);
	close(fd);
	assert_int_equal(symlink(victim, link), 0);
	assert_int_equal(fs_write_atomic(path, "x", 1, 0600), -EEXIST);
	assert_non_null(strstr(err_msg(-EEXIST), "symbolic link"));
	assert_true((fd = open(victim, O_RDONLY)) >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), 8);
	close(fd);
	assert_string_equal(buf, "precious");
	assert_int_equal(lstat(link, &st), 0); /* left for the operator to look at */
	assert_true(S_ISLNK(st.st_mode));
	/* The state file itself as a link is not read through either. */
	assert_int_equal(unlink(link), 0);
	put("st", "BSCTEST1", NULL, 5);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink(victim, path), 0);
	assert_int_equal(get("st", "BSCTEST1", NULL, &v), -EBADMSG);
	/* A regular leftover of an interrupted write is replaced. */
	assert_int_equal(unlink(path), 0);
	assert_true((fd = open(link, O_WRONLY | O_CREAT, 0600)) >= 0);
	close(fd);
	put("st", "BSCTEST1", NULL, 6);
	assert_int_equal(get("st", "BSCTEST1", NULL, &v), 0);
	assert_int_equal(v, 6);
	assert_int_equal(access(link, F_OK), -1);
}

/* fs_dir_empty: . and .. only is empty, one file is not, and the caller's
 * descriptor stays usable (asked again, the answer follows the directory). */
static void test_dir_empty(void **state)
{
	char d[128], f[160];
	int fd, x;
	(void)state;

	snprintf(d, sizeof(d), "%s/empty", dir);
	snprintf(f, sizeof(f), "%s/one", d);
	assert_int_equal(mkdir(d, 0700), 0);
	assert_true((fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0);
	assert_int_equal(fs_dir_empty(fd), 1);
	assert_true((x = open(f, O_WRONLY | O_CREAT, 0600)) >= 0);
	close(x);
	assert_int_equal(fs_dir_empty(fd), 0);
	assert_int_equal(fs_dir_empty(fd), 0);
	assert_int_equal(unlink(f), 0);
	assert_int_equal(fs_dir_empty(fd), 1);
	close(fd);
	assert_int_equal(fs_dir_empty(-1), -EBADF);
	assert_int_equal(rmdir(d), 0);
}

#define SYNC_FILES 8

static void sync_files(int *fds)
{
	char path[128];

	for (int i = 0; i < SYNC_FILES; i++) {
		snprintf(path, sizeof(path), "%s/sync%d", dir, i);
		fds[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		assert_true(fds[i] >= 0);
		assert_int_equal(write(fds[i], "x", 1), 1);
	}
}

static void *sync_rounds(void *arg)
{
	const int *fds = arg;
	bool data_only[SYNC_FILES] = { true, false, true, false, true, false, true, false };
	intptr_t bad = 0;

	for (int r = 0; r < 200; r++)
		if (fs_sync_all(fds, data_only, (size_t)(1 + r % SYNC_FILES)) != 0)
			bad++;
	return (void *)bad;
}

static void test_sync_all(void **state)
{
	int fds[SYNC_FILES], with_bad[SYNC_FILES + 1], many[FS_SYNC_MAX + 1];
	bool data_only[FS_SYNC_MAX + 1] = { false };
	pthread_t t;
	void *bad;
	(void)state;
	sync_files(fds);
	assert_int_equal(fs_sync_all(fds, data_only, 0), 0);
	/* Rounds one after the other (the threads kept), then from two
	 * threads at once: every round completes, each with its own result. */
	assert_null(sync_rounds(fds));
	assert_int_equal(pthread_create(&t, NULL, sync_rounds, fds), 0);
	assert_null(sync_rounds(fds));
	assert_int_equal(pthread_join(t, &bad), 0);
	assert_null(bad);
	/* A closed fd among them: its error, wherever it is in the round. */
	for (int pos = 0; pos <= SYNC_FILES; pos++) {
		for (int i = 0, j = 0; i <= SYNC_FILES; i++)
			with_bad[i] = i == pos ? 1000 : fds[j++];
		assert_int_equal(fs_sync_all(with_bad, data_only, SYNC_FILES + 1), -EBADF);
	}
	assert_int_equal(fs_sync_all(fds, data_only, SYNC_FILES), 0);
	for (int i = 0; i <= FS_SYNC_MAX; i++)
		many[i] = fds[0];
	assert_int_equal(fs_sync_all(many, data_only, FS_SYNC_MAX), 0);
	assert_int_equal(fs_sync_all(many, data_only, FS_SYNC_MAX + 1), -E2BIG);
	for (int i = 0; i < SYNC_FILES; i++)
		close(fds[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_damaged),
		cmocka_unit_test(test_earlier_format),
		cmocka_unit_test(test_planted_tmp_link),
		cmocka_unit_test(test_dir_empty),
		cmocka_unit_test(test_sync_all),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
