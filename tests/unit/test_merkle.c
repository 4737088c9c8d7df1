/* Unit tests: the Merkle tree digest (lib/merkle.c).  The cached tree,
 * updated node by node, always equals the streaming recompute; one flipped
 * leaf, one byte of size or a node left stale changes the digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "merkle.h"

static void stream_of(const uint8_t *leaves, uint64_t size, uint8_t ret[DIGEST_BYTES])
{
	struct merkle_stream *s = malloc(sizeof(*s));
	uint64_t n = (size + 4095) / 4096;

	merkle_stream_init(s, size);
	/* Fed in uneven pieces: the cut points must not matter. */
	for (uint64_t i = 0; i < n;) {
		uint64_t k = n - i > 777 ? 777 : n - i;
		merkle_stream_leaves(s, leaves + i * LEAF_BYTES, (size_t)k);
		i += k;
	}
	merkle_stream_final(s, ret);
	free(s);
}

static void set_chunk(struct merkle_tree *t, const uint8_t *leaves, uint64_t nleaves, uint64_t c)
{
	uint64_t first = c * MERKLE_FAN, n = nleaves - first > MERKLE_FAN ? MERKLE_FAN : nleaves - first;
	uint8_t node[MERKLE_NODE];

	merkle_node(1, leaves + first * LEAF_BYTES, (size_t)n, LEAF_BYTES, node);
	merkle_tree_set(t, c, node);
}

static void check_size(uint64_t size)
{
	uint64_t n = (size + 4095) / 4096, c1 = merkle_count(n, 1);
	uint8_t *leaves = calloc(n ? n : 1, LEAF_BYTES), a[DIGEST_BYTES], b[DIGEST_BYTES], prev[DIGEST_BYTES];
	size_t len = merkle_tree_bytes(n);
	uint8_t *mem = mmap(NULL, len ? len : 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct merkle_tree t = { 0 };

	assert_non_null(leaves);
	assert_true(mem != MAP_FAILED);
	srandom((unsigned)size);
	for (uint64_t i = 0; i < n * LEAF_BYTES; i++)
		leaves[i] = (uint8_t)random();
	merkle_tree_attach(&t, n, mem, true);
	for (uint64_t c = 0; c < c1; c++)
		set_chunk(&t, leaves, n, c);
	assert_int_equal(merkle_tree_digest(&t, size, NULL, NULL, a), 0);
	stream_of(leaves, size, b);
	assert_memory_equal(a, b, DIGEST_BYTES);
	memcpy(prev, a, DIGEST_BYTES);
	/* Rounds of scattered changes: incremental == full recompute, and
	 * every change moves the digest. */
	for (int round = 0; n && round < 5; round++) {
		for (int k = 0; k < 1 + round * 3; k++) {
			uint64_t i = (uint64_t)random() % n;
			leaves[i * LEAF_BYTES + (uint64_t)random() % LEAF_BYTES] ^= (uint8_t)(1u << (random() % 8));
			set_chunk(&t, leaves, n, i / MERKLE_FAN);
		}
		assert_int_equal(merkle_tree_digest(&t, size, NULL, NULL, a), 0);
		stream_of(leaves, size, b);
		assert_memory_equal(a, b, DIGEST_BYTES);
		assert_memory_not_equal(a, prev, DIGEST_BYTES);
		memcpy(prev, a, DIGEST_BYTES);
	}
	/* Nothing changed: the same digest, nothing recomputed wrongly. */
	assert_int_equal(merkle_tree_digest(&t, size, NULL, NULL, a), 0);
	assert_memory_equal(a, prev, DIGEST_BYTES);
	/* A changed leaf whose node is not set again is not seen: the test
	 * above would fail on a tree that recomputed everything anyway... */
	if (n > MERKLE_FAN) {
		leaves[0] ^= 1;
		assert_int_equal(merkle_tree_digest(&t, size, NULL, NULL, a), 0);
		assert_memory_equal(a, prev, DIGEST_BYTES);
		stream_of(leaves, size, b);
		assert_memory_not_equal(a, b, DIGEST_BYTES);
		/* ...and re-attaching the same memory (a restart) keeps the tree. */
		set_chunk(&t, leaves, n, 0);
		merkle_tree_attach(&t, n, mem, false);
		assert_int_equal(merkle_tree_digest(&t, size, NULL, NULL, a), 0);
		assert_memory_equal(a, b, DIGEST_BYTES);
	}
	munmap(mem, len ? len : 4096);
	free(leaves);
}

static void test_sizes(void **state)
{
	(void)state;
	check_size(0);
	check_size(1);
	check_size(4096);
	check_size(4096 * 256);
	check_size(4096 * 256 + 1);
	check_size(4096ULL * 256 * 256);          /* exactly two levels */
	check_size(4096ULL * 256 * 256 * 3 + 100); /* three levels, partial last nodes */
}

static void test_size_and_leaf_matter(void **state)
{
	uint8_t leaves[2 * LEAF_BYTES] = { 0 }, a[DIGEST_BYTES], b[DIGEST_BYTES];

	(void)state;
	stream_of(leaves, 8192, a);
	stream_of(leaves, 8191, b);
	assert_memory_not_equal(a, b, DIGEST_BYTES);
	leaves[LEAF_BYTES + 15] ^= 0x80;
	stream_of(leaves, 8192, b);
	assert_memory_not_equal(a, b, DIGEST_BYTES);
}

/* Level-1 nodes never set read as the substitute (a MiB of zero blocks):
 * equal to setting them, and they cost no memory. */
static void test_subst(void **state)
{
	uint64_t n = 256ULL * 1024 * 64; /* 64 GiB */
	uint64_t c1 = merkle_count(n, 1);
	size_t len = merkle_tree_bytes(n);
	uint8_t *zl = calloc(MERKLE_FAN, LEAF_BYTES), z1[MERKLE_NODE], a[DIGEST_BYTES], b[DIGEST_BYTES];
	uint8_t *m1 = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *m2 = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct merkle_tree t1 = { 0 }, t2 = { 0 };
	uint8_t other[MERKLE_NODE];

	(void)state;
	for (int i = 0; i < MERKLE_FAN; i++)
		zl[i * LEAF_BYTES] = 7; /* the "zero block" leaf of this test */
	merkle_node(1, zl, MERKLE_FAN, LEAF_BYTES, z1);
	memset(other, 9, sizeof(other));
	merkle_tree_attach(&t1, n, m1, true);
	merkle_tree_attach(&t2, n, m2, true);
	memcpy(t1.subst, z1, MERKLE_NODE);
	t1.has_subst = true;
	for (uint64_t c = 0; c < c1; c++)
		merkle_tree_set(&t2, c, c == 1000 ? other : z1);
	merkle_tree_set(&t1, 1000, other);
	assert_false(merkle_tree_isset(&t1, 999));
	assert_true(merkle_tree_isset(&t1, 1000));
	assert_int_equal(merkle_tree_digest(&t1, n * 4096, NULL, NULL, a), 0);
	assert_int_equal(merkle_tree_digest(&t2, n * 4096, NULL, NULL, b), 0);
	assert_memory_equal(a, b, DIGEST_BYTES);
	munmap(m1, len);
	munmap(m2, len);
	free(zl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_size_and_leaf_matter),
		cmocka_unit_test(test_subst),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
