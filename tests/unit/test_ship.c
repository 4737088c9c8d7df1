/* Unit tests: what ship.c sends.  A resync delta reads each 1 MiB range's
 * signature into one buffer it grows as needed; when growing fails, the
 * buffer it had is freed all the same (it was lost with
 * `sig = realloc(sig, …)`).  The second range's signature is made too large
 * to allocate: realloc and free are wrapped here to refuse it and to see
 * what is freed; under AddressSanitizer, whose allocator the wrappers would
 * fight, ASan refuses it (max_allocation_size_mb) and LeakSanitizer sees
 * the leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daemon.h"
#include "spool.h"

#define BIG 0xe0000000u /* the second signature: 3.5 GiB, never allocated */

#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1:max_allocation_size_mb=1024";
}
#define CHECK_FREED 0
#else
#define CHECK_FREED 1
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static bool armed, tracked_freed;
static void *tracked;

__attribute__((constructor)) static void wrap_init(void)
{
	real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
}

/* While armed: the first signature buffer (100 bytes) is tracked, its
 * growth to BIG fails. */
void *realloc(void *p, size_t n)
{
	void *r;

	if (armed && n == BIG) {
		errno = ENOMEM;
		return NULL;
	}
	if (!real_realloc)
		wrap_init(); /* a library's constructor (gnutls through libpq) runs before ours */
	r = real_realloc(p, n);
	if (armed && !p && n == 100 && !tracked)
		tracked = r;
	return r;
}

void free(void *p)
{
	if (p && p == tracked) {
		tracked_freed = true;
		tracked = NULL;
	}
	if (!real_free)
		wrap_init();
	real_free(p);
}
#endif

static void test_delta_signature_buffer(void **state)
{
	char dir[] = "/tmp/bascule-ship.XXXXXX", path[128];
	struct cfg_source scfg = { .name = "root" };
	struct cfg_target tcfg = { .name = "t", .url = "local:/nowhere", .max_in_flight = 4 };
	struct daemon d = { 0 };
	struct group g = { .d = &d, .n_sources = 1 };
	struct source src = { .g = &g, .cfg = &scfg };
	struct target t;
	struct job j = { .g = &g, .stage = JOB_EXTENTS, .size = { SPOOL_CHUNK * (uint64_t)PROTO_BLOCK } };
	struct spool_block *blocks = calloc(SPOOL_CHUNK, sizeof(*blocks));
	uint8_t *data = calloc(SPOOL_CHUNK, PROTO_BLOCK), sig[300], header[64];
	struct sigstore *ss = calloc(1, sizeof(*ss));
	struct site_key *key;
	uint64_t off[2] = { 0, 100 };
	uint32_t len[2] = { 100, BIG }, rlen[2] = { PROTO_SIG_RANGE, PROTO_SIG_RANGE };
	int r;

	assert_true(sodium_init() >= 0);
	key = sodium_malloc(sizeof(*key));
	assert_non_null(mkdtemp(dir));
	g.sources = &src;
	snprintf(g.name, sizeof(g.name), "vm1");
	assert_int_equal(target_init(&d, &t, &tcfg), 0);
	/* The daemon's side of a wire keyed as after a handshake (test_wire
	 * tests the handshake itself). */
	memset(key->k, 7, sizeof(key->k));
	wire_init(&t.w, -1, -1, WIRE_ROLE_DAEMON, key);
	crypto_secretstream_xchacha20poly1305_init_push(&t.w.tx, header, t.w.ktx);
	t.w.tx_ready = t.w.rx_ready = true;
	t.wire_up = true;
	t.state = T_READY;
	/* One whole chunk of data, to be resynchronised against two ranges'
	 * signatures (garbage: no delta, so plain extents). */
	for (uint32_t i = 0; i < SPOOL_CHUNK; i++) {
		blocks[i] = (struct spool_block){ .idx = (uint16_t)i, .epoch = 1 };
		memset(data + (size_t)i * PROTO_BLOCK, (int)(i & 0xff), PROTO_BLOCK);
	}
	snprintf(path, sizeof(path), "%s/spool", dir);
	assert_int_equal(spool_create(path, &j.spool), 0);
	assert_int_equal(spool_append(j.spool, 0, 0, blocks, SPOOL_CHUNK, data, SPOOL_CHUNK), 0);
	spool_finish(j.spool);
	snprintf(path, sizeof(path), "%s/sig", dir);
	ss->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	memset(sig, 0x5a, sizeof(sig));
	assert_int_equal(write(ss->fd, sig, sizeof(sig)), (ssize_t)sizeof(sig));
	ss->n = 2;
	ss->off = off;
	ss->len = len;
	ss->rlen = rlen;
	ss->complete = true;
	j.sig[0] = ss;

#if CHECK_FREED
	armed = true;
#endif
	r = ship_produce(&t, &j);
#if CHECK_FREED
	armed = false;
	assert_true(tracked_freed); /* the 100-byte buffer did not leak */
#endif
	assert_int_equal(r, -ENOMEM);

	close(ss->fd);
	free(ss);
	spool_unref(j.spool);
	target_free(&t);
	sodium_free(key);
	free(blocks);
	free(data);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delta_signature_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
