/* Unit tests: restoring a range from a vault (tools/restore_range.c) with an
 * index that names a frame longer than the read buffer: refused before the
 * buffer is filled (it used to be read whole into READ_MAX + 1 MiB), and a
 * frame that fits but is not one that was stored named as altered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include "err.h"
#include "vault.h"
#include "vault_tool.h"
#include "vstore.h"
#include "scratch.h"

/* One block of one pack whose index entry says LEN bytes at 0; the pack
 * object holds PACK_LEN bytes.  Returns restore_range's result. */
static int restore_one(uint32_t len, size_t pack_len)
{
	struct vstore_opts so = { 0 };
	struct vpacks packs = { 0 };
	struct vpack p;
	struct vloc loc = { .pack = 0, .off = 0, .len = len, .slot = 0 };
	struct vmap map = { .size = VAULT_BLOCK, .n = 1, .e = &loc };
	struct vkeys k;
	struct vopts o = { 0 };
	struct restore rs = { .o = &o, .k = &k, .packs = &packs, .map = &map, .n_ranges = 1, .pfd = -1 };
	struct vstore *vs = NULL;
	uint8_t *rbuf = malloc(READ_MAX + (1u << 20)), *frame = malloc(VAULT_FRAME_WORK);
	uint8_t *obj = calloc(1, pack_len);
	char url[128], path[300], out[128];
	ZSTD_DCtx *d = ZSTD_createDCtx();
	uint32_t idx;
	int r;

	assert_non_null(rbuf);
	assert_non_null(frame);
	assert_non_null(obj);
	memset(&k, 7, sizeof(k));
	randombytes_buf(p.name, sizeof(p.name));
	randombytes_buf(p.nonce, sizeof(p.nonce));
	assert_int_equal(vpacks_add(&packs, &p, &idx), 0);
	snprintf(url, sizeof(url), "%s/vault", dir);
	mkdir(url, 0700);
	snprintf(url, sizeof(url), "local:%s/vault", dir);
	assert_int_equal(vstore_open(url, &so, &vs), 0);
	vault_path(p.name, false, path, sizeof(path));
	assert_int_equal(vstore_put(vs, path, obj, pack_len), 0);
	snprintf(out, sizeof(out), "%s/out-%u", dir, len);
	assert_true((rs.fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600)) >= 0);
	pthread_mutex_init(&rs.lock, NULL);
	r = restore_range(&rs, vs, d, 0, rbuf, frame);
	pthread_mutex_destroy(&rs.lock);
	close(rs.fd);
	vstore_close(vs);
	ZSTD_freeDCtx(d);
	free(packs.p);
	free(packs.slot);
	free(rbuf);
	free(frame);
	free(obj);
	return r;
}

static void test_frame_longer_than_buffer(void **state)
{
	(void)state;
	/* 10 MiB named, 10 MiB there: the buffer holds 9. */
	assert_int_equal(restore_one(10u << 20, 10u << 20), -EBADMSG);
	assert_non_null(strstr(err_msg(-EBADMSG), "more than a read holds"));
}

static void test_frame_fails_authentication(void **state)
{
	(void)state;
	assert_int_equal(restore_one(4096, 4096), -EBADMSG);
	assert_non_null(strstr(err_msg(-EBADMSG), "is altered or damaged"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_longer_than_buffer),
		cmocka_unit_test(test_frame_fails_authentication),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
