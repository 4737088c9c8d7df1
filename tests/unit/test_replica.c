/* Unit tests: the replica store (tools/replica/) with real files: extents
 * whose end would wrap around 2^64, journals forged without the site key
 * (the earlier unkeyed format, or a changed byte) refused before anything
 * is written, the upgrade of a replica written by the earlier version, a
 * group kept within PROTO_MAX_SOURCES, links planted in the directory
 * refused without touching what they point to, a state written with
 * another site's key named as such, and the ack slots of light epochs. */
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
#include "err.h"
#include "fsutil.h"
#include "hash.h"
#include "key.h"
#include "merkle.h"
#include "replica.h"
#include "replica/store.h"
#include "scratch.h"

#define SZ (64u * 4096u)

static char root[128], keyfile[128];
static struct site_key *key;
static uint8_t img_a[SZ], img_b[SZ];

static int setup(void **state)
{
	if (scratch_setup(state) < 0)
		return -1;
	snprintf(root, sizeof(root), "%s/replica", dir);
	snprintf(keyfile, sizeof(keyfile), "%s/site.key", dir);
	if (key_generate(keyfile) < 0 || key_load(keyfile, &key) < 0)
		return -1;
	for (size_t i = 0; i < SZ; i++) {
		img_a[i] = (uint8_t)(i * 7);
		img_b[i] = (uint8_t)(i * 13 + 1);
	}
	return 0;
}

static int teardown(void **state)
{
	key_free(key);
	return scratch_teardown(state);
}

static void path_of(char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", root, rel);
}

/* The digest of version DV of DATA as source SOURCE of group vm1. */
static void digest_v(uint8_t dv, const char *source, const uint8_t *data, uint64_t size,
		     uint8_t ret[DIGEST_BYTES])
{
	uint8_t secret[LEAF_SECRET_BYTES], leaf[LEAF_BYTES];
	struct merkle_sum *c = malloc(sizeof(*c));

	assert_non_null(c);
	hash_leaf_secret(key, "vm1", source, secret);
	merkle_sum_init(c, dv, size);
	for (uint64_t off = 0; off < size; off += PROTO_BLOCK) {
		hash_leaf(secret, data + off, size - off < PROTO_BLOCK ? size - off : PROTO_BLOCK, leaf);
		merkle_sum_leaves(c, leaf, 1);
	}
	merkle_sum_final(c, ret);
	free(c);
}

/* The primary's digest (this version's) of DATA as source SOURCE of vm1. */
static void digest_of(const char *source, const uint8_t *data, uint64_t size, uint8_t ret[DIGEST_BYTES])
{
	digest_v(DIGEST_V2, source, data, size, ret);
}

/* Receive epoch EPOCH of vm1: source "root" holding DATA (whole). */
static int send_epoch(struct replica *r, uint64_t epoch, uint64_t base, const uint8_t *data)
{
	struct msg_epoch_begin b = { .group = "vm1", .epoch = epoch, .cut_time = epoch * 1000000,
				     .n_sources = 1 };
	struct msg_source s = { .idx = 0, .name = "root", .base = base, .size = SZ,
				.block_size = PROTO_BLOCK };
	struct msg_epoch_end e = { .group = "vm1", .epoch = epoch, .n_extents = 1, .raw_bytes = SZ };
	struct rapply *a = NULL;
	int rc;

	digest_of("root", data, SZ, s.digest);
	if ((rc = replica_epoch_begin(r, &b, &a)) == 0 && (rc = replica_epoch_source(a, &s)) == 0 &&
	    (rc = replica_epoch_extent(a, 0, 0, SZ, data)) == 0)
		rc = replica_epoch_commit(a, &e);
	replica_epoch_abort(a);
	return rc;
}

static void open_locked(struct replica **r)
{
	assert_int_equal(replica_open(root, REPLICA_CREATE | REPLICA_RECEIVER, key, r), 0);
}

/* A fresh replica of vm1 at epoch 2 (image B), with the undo back to 1 (A). */
static void make_replica(void)
{
	struct replica *r;
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
	open_locked(&r);
	assert_int_equal(send_epoch(r, 1, 0, img_a), 0);
	assert_int_equal(send_epoch(r, 2, 1, img_b), 0);
	replica_close(r);
}

static void assert_image(const uint8_t *want)
{
	static uint8_t got[SZ];
	char path[256];
	int fd;

	path_of(path, sizeof(path), "vm1/root");
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	assert_int_equal(fs_pread_full(fd, got, SZ, 0), SZ);
	close(fd);
	assert_memory_equal(got, want, SZ);
}

static uint64_t epoch_now(void)
{
	struct replica *r;
	struct rstate s;

	assert_int_equal(replica_open(root, REPLICA_READONLY, key, &r), 0);
	assert_int_equal(replica_load_state(r, "vm1", &s), 0);
	replica_close(r);
	assert_int_equal(s.pending_undo, 0);
	return s.epoch;
}

static uint8_t *slurp(const char *rel, size_t *len)
{
	char path[256], *text = NULL;

	path_of(path, sizeof(path), rel);
	assert_int_equal(fs_read_all(path, 64 << 20, &text, len), 0);
	return (uint8_t *)text;
}

static void spit(const char *rel, const uint8_t *data, size_t len)
{
	char path[256];

	path_of(path, sizeof(path), rel);
	unlink(path);
	assert_int_equal(fs_write_atomic(path, data, len, 0600), 0);
}

/* Drop N bytes at OFF of P (LEN bytes). */
static void strip(uint8_t *p, size_t *len, size_t off, size_t n)
{
	memmove(p + off, p + off + n, *len - off - n);
	*len -= n;
}

/* Rewrite a journal in the earlier format: magic BSCJRNL1, no digest
 * version and PostgreSQL bytes after the digest of its source "root" (at
 * offset 107, group vm1),
 * an unkeyed BLAKE2b over everything before the last 32 bytes.  With EVIL,
 * its first record's data is changed too (what the owner would write as
 * root). */
static void to_earlier_format(const char *rel, bool evil)
{
	size_t len;
	uint8_t *j = slurp(rel, &len);

	assert_memory_equal(j, "BSCJRNL4", 8);
	assert_int_equal(j[107], DIGEST_V2);
	assert_int_equal(j[108], 0);
	strip(j, &len, 107, 2);
	memcpy(j, "BSCJRNL1", 8);
	if (evil)
		memcpy(j + len - 32 - 9 - 4096, "EVIL", 4); /* inside the last record's data */
	crypto_generichash(j + len - 32, 32, j, len - 32, NULL, 0);
	spit(rel, j, len);
	free(j);
}

static void no_line(const char *line)
{
	(void)line;
}

/* The state rewritten as BSCSTAT3, the format before digest versions (the
 * version byte after the digest of "root", at offset 115, dropped; keyed
 * like the state), its digest replaced by DIGEST. */
static void to_stat3(const uint8_t *digest)
{
	uint8_t mk[32], *s;
	size_t len;

	s = slurp(".bascule/groups/vm1/state", &len);
	assert_memory_equal(s, "BSCSTAT4", 8);
	assert_int_equal(s[115], DIGEST_V2);
	strip(s, &len, 115, 1);
	memcpy(s, "BSCSTAT3", 8);
	memcpy(s + 115 - DIGEST_BYTES, digest, DIGEST_BYTES);
	key_derive(key, "replica files v2", mk, sizeof(mk));
	crypto_generichash(s + len - 32, 32, s, len - 32, mk, sizeof(mk));
	spit(".bascule/groups/vm1/state", s, len);
	free(s);
}

/* A state of the previous format holds digests of version 1: read and
 * checked as such (verify OK); a v2 digest in it is a mismatch, and the
 * next epoch records version 2. */
static void test_digest_versions(void **state)
{
	uint8_t v1[DIGEST_BYTES], v2[DIGEST_BYTES];
	struct replica *r;
	struct rstate st;
	(void)state;
	make_replica();
	digest_v(DIGEST_V1, "root", img_b, SZ, v1);
	digest_v(DIGEST_V2, "root", img_b, SZ, v2);
	assert_memory_not_equal(v1, v2, DIGEST_BYTES);
	open_locked(&r);
	assert_int_equal(replica_load_state(r, "vm1", &st), 0);
	assert_int_equal(st.sources[0].dv, DIGEST_V2);
	assert_memory_equal(st.sources[0].digest, v2, DIGEST_BYTES);
	assert_int_equal(replica_verify(r, "vm1", no_line), 0);
	replica_close(r);

	to_stat3(v1);
	open_locked(&r);
	assert_int_equal(replica_load_state(r, "vm1", &st), 0);
	assert_int_equal(st.sources[0].dv, DIGEST_V1);
	assert_int_equal(replica_verify(r, "vm1", no_line), 0);
	/* the next epoch is checked and recorded in version 2 */
	assert_int_equal(send_epoch(r, 3, 2, img_a), 0);
	assert_int_equal(replica_load_state(r, "vm1", &st), 0);
	assert_int_equal(st.sources[0].dv, DIGEST_V2);
	replica_close(r);
	assert_int_equal(epoch_now(), 3);

	make_replica();
	to_stat3(v2); /* a v2 digest where v1 is due: not what the data gives */
	open_locked(&r);
	assert_int_equal(replica_verify(r, "vm1", no_line), -EBADMSG);
	replica_close(r);
}

/* Receive an epoch of vm1 that writes nothing and claims DIGEST. */
static int send_empty(struct replica *r, uint64_t epoch, uint64_t base, const uint8_t *digest)
{
	struct msg_epoch_begin b = { .group = "vm1", .epoch = epoch, .cut_time = epoch * 1000000,
				     .n_sources = 1 };
	struct msg_source s = { .idx = 0, .name = "root", .base = base, .size = SZ,
				.block_size = PROTO_BLOCK };
	struct msg_epoch_end e = { .group = "vm1", .epoch = epoch };
	struct rapply *a = NULL;
	int rc;

	memcpy(s.digest, digest, DIGEST_BYTES);
	if ((rc = replica_epoch_begin(r, &b, &a)) == 0 && (rc = replica_epoch_source(a, &s)) == 0)
		rc = replica_epoch_commit(a, &e);
	replica_epoch_abort(a);
	return rc;
}

/* The receiver keeps a digest tree between epochs (tools/replica/dtree.c):
 * a wrong digest is refused through it (after the whole-map recompute that
 * a kept tree's mismatch always gets), the right one then accepted, and a
 * leaf changed in the map behind it is in the next digest (here because
 * every apply rehashes the last block, whose MiB is the whole image). */
static void test_kept_tree(void **state)
{
	static uint8_t mix[SZ];
	uint8_t d[DIGEST_BYTES], secret[LEAF_SECRET_BYTES], leaf[LEAF_BYTES];
	struct replica *r;
	char path[256];
	int fd;
	(void)state;
	make_replica();
	open_locked(&r);
	assert_int_equal(send_epoch(r, 3, 2, img_b), 0); /* the tree is built */
	digest_of("root", img_a, SZ, d);
	assert_int_not_equal(send_empty(r, 4, 3, d), 0); /* not what the replica holds */
	digest_of("root", img_b, SZ, d);
	assert_int_equal(send_empty(r, 4, 3, d), 0);
	/* block 5's leaf changed in the map behind the receiver's back */
	memcpy(mix, img_b, SZ);
	memcpy(mix + 5 * PROTO_BLOCK, img_a + 5 * PROTO_BLOCK, PROTO_BLOCK);
	hash_leaf_secret(key, "vm1", "root", secret);
	hash_leaf(secret, img_a + 5 * PROTO_BLOCK, PROTO_BLOCK, leaf);
	path_of(path, sizeof(path), ".bascule/groups/vm1/root.map");
	assert_true((fd = open(path, O_WRONLY)) >= 0);
	/* lib/blockmap.c (BSCBMAP3): header 4 KiB, chunk words 4 KiB, nodes
	 * 4 x 4 KiB, records of 32 bytes */
	assert_int_equal(fs_pwrite_full(fd, leaf, LEAF_BYTES, 4096 + 5 * 4096 + 5 * 32), 0);
	close(fd);
	digest_of("root", mix, SZ, d);
	assert_int_equal(send_empty(r, 5, 4, d), 0);
	replica_close(r);
	assert_int_equal(epoch_now(), 5);
}

/* A map of the earlier dense format (BSCRMAP1: 64-byte header, a leaf per
 * block) is converted when it is first opened: the epoch checks against
 * the converted leaves, the map is BSCBMAP3 after, no .new is left.  A map
 * that is neither is refused, left as it is, never reset. */
static void test_map_convert(void **state)
{
	uint8_t secret[LEAF_SECRET_BYTES], leaf[LEAF_BYTES], hdr[64] = "BSCRMAP1", magic[8];
	char path[256], tmp[300];
	struct replica *r;
	int fd;
	(void)state;
	make_replica();
	hash_leaf_secret(key, "vm1", "root", secret);
	path_of(path, sizeof(path), ".bascule/groups/vm1/root.map");
	assert_int_equal(unlink(path), 0);
	assert_true((fd = open(path, O_WRONLY | O_CREAT, 0600)) >= 0);
	put_be64(hdr + 8, SZ);
	assert_int_equal(fs_pwrite_full(fd, hdr, sizeof(hdr), 0), 0);
	for (uint64_t b = 0; b < SZ / PROTO_BLOCK; b++) {
		hash_leaf(secret, img_b + b * PROTO_BLOCK, PROTO_BLOCK, leaf);
		assert_int_equal(fs_pwrite_full(fd, leaf, LEAF_BYTES, 64 + b * LEAF_BYTES), 0);
	}
	close(fd);
	open_locked(&r);
	assert_int_equal(send_epoch(r, 3, 2, img_a), 0);
	replica_close(r);
	assert_int_equal(epoch_now(), 3);
	assert_image(img_a);
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	assert_int_equal(fs_pread_full(fd, magic, 8, 0), 8);
	close(fd);
	assert_memory_equal(magic, "BSCBMAP3", 8);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	assert_int_equal(access(tmp, F_OK), -1);

	/* Not a map: refused (exit 5 for the receiver), left alone. */
	assert_true((fd = open(path, O_WRONLY | O_TRUNC)) >= 0);
	assert_int_equal(fs_pwrite_full(fd, "not a map", 9, 0), 0);
	close(fd);
	open_locked(&r);
	assert_int_equal(send_epoch(r, 4, 3, img_b), -EBADMSG);
	replica_close(r);
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	assert_int_equal(fs_pread_full(fd, magic, 8, 0), 8);
	close(fd);
	assert_memory_equal(magic, "not a ma", 8);
	assert_int_equal(epoch_now(), 3);
}

/* A sparse source: 256 MiB + 100 bytes, 1 MiB of data, the rest sent as
 * zero extents.  Its map holds records for the first and the last (partial)
 * MiB only, a word for each other one: tens of KiB on disk, where a leaf
 * per block was 1 MiB; the digest checks, and a growth by 64 MiB costs
 * words, not records. */
static void test_map_sparse(void **state)
{
	static const uint8_t zeros[PROTO_BLOCK];
	const uint64_t size = (256ull << 20) + 100, grown = size + (64ull << 20);
	uint8_t secret[LEAF_SECRET_BYTES], leaf[LEAF_BYTES];
	struct merkle_sum *c = malloc(sizeof(*c));
	struct msg_epoch_begin b = { .group = "big", .epoch = 1, .n_sources = 1 };
	struct msg_source src = { .idx = 0, .name = "disk", .base = 0, .block_size = PROTO_BLOCK };
	struct msg_epoch_end e = { .group = "big", .epoch = 1 };
	struct rapply *a = NULL;
	struct replica *r;
	struct stat st;
	char path[256];
	(void)state;
	assert_non_null(c);
	hash_leaf_secret(key, "big", "disk", secret);
	for (int k = 0; k < 2; k++) {
		uint64_t sz = k ? grown : size;
		src.size = sz;
		b.epoch = e.epoch = (uint64_t)k + 1;
		src.base = (uint64_t)k;
		e.n_extents = e.raw_bytes = 0;
		merkle_sum_init(c, DIGEST_V2, sz);
		for (uint64_t off = 0; off < sz; off += PROTO_BLOCK) {
			uint64_t bl = sz - off < PROTO_BLOCK ? sz - off : PROTO_BLOCK;
			hash_leaf(secret, off < SZ ? img_a + off : zeros, (size_t)bl, leaf);
			merkle_sum_leaves(c, leaf, 1);
		}
		merkle_sum_final(c, src.digest);
		open_locked(&r);
		assert_int_equal(replica_epoch_begin(r, &b, &a), 0);
		assert_int_equal(replica_epoch_source(a, &src), 0);
		for (uint64_t off = 0; off < sz; off += PROTO_MAX_EXTENT) {
			uint32_t len = sz - off < PROTO_MAX_EXTENT ? (uint32_t)(sz - off) : PROTO_MAX_EXTENT;
			if (k && off < size - 100)
				continue; /* epoch 2: only the growth */
			assert_int_equal(replica_epoch_extent(a, 0, off, off < SZ ? SZ : len, off < SZ ? img_a : NULL), 0);
			if (off < SZ && len > SZ)
				assert_int_equal(replica_epoch_extent(a, 0, SZ, len - SZ, NULL), 0);
			e.n_extents += off < SZ && len > SZ ? 2 : 1;
			e.raw_bytes += len;
		}
		assert_int_equal(replica_epoch_commit(a, &e), 0);
		replica_epoch_abort(a);
		a = NULL;
		replica_close(r);
		path_of(path, sizeof(path), ".bascule/groups/big/disk.map");
		assert_int_equal(stat(path, &st), 0);
		assert_true((uint64_t)st.st_blocks * 512 <= 64 * 1024);
	}
	free(c);
}

static void test_extent_wrap(void **state)
{
	struct msg_epoch_begin b = { .group = "vm1", .epoch = 3, .n_sources = 1 };
	struct msg_source s = { .idx = 0, .name = "root", .base = 2, .size = SZ,
				.block_size = PROTO_BLOCK };
	struct rapply *a = NULL;
	struct replica *r;
	(void)state;
	make_replica();
	open_locked(&r);
	assert_int_equal(replica_epoch_begin(r, &b, &a), 0);
	assert_int_equal(replica_epoch_source(a, &s), 0);
	/* off + len wraps to 0, which is <= the size: refused all the same. */
	assert_int_equal(replica_epoch_extent(a, 0, UINT64_MAX - 4095, 4096, img_a), -EPROTO);
	assert_non_null(strstr(err_msg(-EPROTO), "out of bounds"));
	assert_int_equal(replica_epoch_extent(a, 0, SZ, 4096, img_a), -EPROTO);
	assert_int_equal(replica_epoch_extent(a, 0, SZ - 4096, 8192, img_a), -EPROTO);
	replica_epoch_abort(a);
	replica_close(r);
	assert_int_equal(epoch_now(), 2);
	assert_image(img_b);
}

/* Rolling vm1 back to 1 is refused saying WHY; the group stays at 2, B. */
static void rollback_refused(const char *why)
{
	struct replica *r;

	open_locked(&r);
	assert_int_equal(replica_rollback(r, "vm1", 1), -EBADMSG);
	assert_non_null(strstr(err_msg(-EBADMSG), why));
	replica_close(r);
	assert_int_equal(epoch_now(), 2);
	assert_image(img_b);
}

static void test_forged_journal(void **state)
{
	struct replica *r;
	size_t len;
	uint8_t *good;
	(void)state;
	make_replica();
	/* The owner rewrites the undo in the earlier format with a checksum it
	 * can compute: refused, nothing of it applied. */
	good = slurp(".bascule/groups/vm1/undo/2.undo", &len);
	to_earlier_format(".bascule/groups/vm1/undo/2.undo", true);
	rollback_refused("earlier, unauthenticated format");
	/* One byte changed in a journal of this format: refused. */
	good[len - 100] ^= 1;
	spit(".bascule/groups/vm1/undo/2.undo", good, len);
	rollback_refused("fails its authentication");
	/* The genuine undo works. */
	good[len - 100] ^= 1;
	spit(".bascule/groups/vm1/undo/2.undo", good, len);
	open_locked(&r);
	assert_int_equal(replica_rollback(r, "vm1", 1), 0);
	replica_close(r);
	assert_int_equal(epoch_now(), 1);
	assert_image(img_a);
	free(good);
}

/* A replica of the earlier version: state BSCSTAT1 (no key id, unkeyed),
 * undo BSCJRNL1.  The first locked open upgrades it and the rollback data
 * of that version stays usable; a journal of that format planted after is
 * refused. */
static void test_upgrade(void **state)
{
	struct replica *r;
	size_t len;
	uint8_t *s, *old;
	char path[256];
	(void)state;
	make_replica();
	s = slurp(".bascule/groups/vm1/state", &len);
	{
		/* BSCSTAT1: no key id, no digest version and LSN fields after
		 * the source's digest (at offset 115 with no alarm), an unkeyed
		 * checksum. */
		size_t ol = len - 8 - 29;
		uint8_t *t = malloc(len);
		memcpy(t, s, len);
		assert_memory_equal(t, "BSCSTAT4", 8);
		strip(t, &(size_t){ len }, 115, 29);
		old = malloc(ol);
		memcpy(old, "BSCSTAT1", 8);
		memcpy(old + 8, t + 16, ol - 8 - 32); /* drop the key id */
		crypto_generichash(old + ol - 32, 32, old, ol - 32, NULL, 0);
		spit(".bascule/groups/vm1/state", old, ol);
		free(t);
	}
	to_earlier_format(".bascule/groups/vm1/undo/2.undo", false);
	path_of(path, sizeof(path), ".bascule/groups/vm1/legacy");
	unlink(path);
	assert_int_equal(epoch_now(), 2); /* read as it is before the upgrade */
	open_locked(&r);                  /* upgrades */
	replica_close(r);
	assert_int_equal(access(path, F_OK), 0);
	free(s);
	s = slurp(".bascule/groups/vm1/state", &len);
	assert_memory_equal(s, "BSCSTAT4", 8);
	/* The old state planted again after the upgrade is refused. */
	spit(".bascule/groups/vm1/state", old, len - 8 - 29);
	assert_int_equal(replica_open(root, REPLICA_READONLY, key, &r), 0);
	{
		struct rstate st;
		assert_int_equal(replica_load_state(r, "vm1", &st), -EBADMSG);
	}
	replica_close(r);
	spit(".bascule/groups/vm1/state", s, len);
	open_locked(&r);
	assert_int_equal(replica_rollback(r, "vm1", 1), 0);
	replica_close(r);
	assert_int_equal(epoch_now(), 1);
	assert_image(img_a);
	free(s);
	free(old);
}

/* More sources than a state holds: refused when announced, not past the
 * end of the array at commit. */
static void test_sources_bound(void **state)
{
	struct msg_epoch_begin b = { .group = "vm1", .epoch = 1, .n_sources = PROTO_MAX_SOURCES };
	struct msg_epoch_end e = { .group = "vm1", .epoch = 1 };
	struct rapply *a = NULL;
	struct replica *r;
	char cmd[256];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
	open_locked(&r);
	assert_int_equal(replica_epoch_begin(r, &b, &a), 0);
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++) {
		struct msg_source s = { .idx = i, .size = 0, .block_size = PROTO_BLOCK };
		snprintf(s.name, sizeof(s.name), "d%u", i);
		digest_of(s.name, img_a, 0, s.digest);
		assert_int_equal(replica_epoch_source(a, &s), 0);
	}
	assert_int_equal(replica_epoch_commit(a, &e), 0);
	replica_epoch_abort(a);
	b.epoch = e.epoch = 2;
	b.n_sources = 1;
	assert_int_equal(replica_epoch_begin(r, &b, &a), 0);
	{
		struct msg_source s = { .idx = 0, .name = "extra", .size = 0, .block_size = PROTO_BLOCK };
		assert_int_equal(replica_epoch_source(a, &s), -EPROTO);
	}
	replica_epoch_abort(a);
	replica_close(r);
}

/* Links planted where Bascule keeps its files: refused, and what they point
 * to keeps its content (tests/e2e/untrusted.sh does it as a non-root owner). */
static void test_planted_links(void **state)
{
	char victim[256], path[400], keep[256], clone[256], buf[16] = "";
	struct promote_info pi;
	struct replica *r;
	int fd;
	(void)state;
	make_replica();
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	assert_true((fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
	assert_int_equal(write(fd, "precious", 8), 8);
	close(fd);
	/* G/S -> victim, then rollback: refused before the state records it;
	 * clone does not copy what the link points to either. */
	path_of(path, sizeof(path), "vm1/root");
	snprintf(keep, sizeof(keep), "%s/root.keep", dir);
	snprintf(clone, sizeof(clone), "%s/clone", dir);
	assert_int_equal(rename(path, keep), 0);
	assert_int_equal(symlink(victim, path), 0);
	open_locked(&r);
	assert_int_equal(replica_rollback(r, "vm1", 1), -EBADMSG);
	assert_non_null(strstr(err_msg(-EBADMSG), "is a symbolic link"));
	assert_int_equal(replica_clone(r, "vm1", clone, NULL, &pi), -EBADMSG);
	replica_close(r);
	assert_int_equal(epoch_now(), 2);
	snprintf(path, sizeof(path), "%s/root", clone);
	assert_int_equal(access(path, F_OK), -1);
	path_of(path, sizeof(path), "vm1/root");
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rename(keep, path), 0);
	/* state.tmp -> victim, then demote: refused. */
	path_of(path, sizeof(path), ".bascule/groups/vm1/state.tmp");
	assert_int_equal(symlink(victim, path), 0);
	open_locked(&r);
	assert_true(replica_demote(r, "vm1") < 0);
	assert_non_null(strstr(err_msg(-EBADMSG), "symbolic link"));
	replica_close(r);
	unlink(path);
	assert_true((fd = open(victim, O_RDONLY)) >= 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), 8);
	close(fd);
	assert_string_equal(buf, "precious");
	assert_image(img_b);
}

/* Another site's key: the state says which key wrote it (exit 4, not 5). */
static void test_other_key(void **state)
{
	char other[256];
	struct site_key *k2;
	struct replica *r;
	struct rstate st;
	(void)state;
	make_replica();
	snprintf(other, sizeof(other), "%s/other.key", dir);
	unlink(other);
	assert_int_equal(key_generate(other), 0);
	assert_int_equal(key_load(other, &k2), 0);
	assert_int_equal(replica_open(root, REPLICA_READONLY, k2, &r), 0);
	assert_int_equal(replica_load_state(r, "vm1", &st), -EKEYREJECTED);
	assert_non_null(strstr(err_msg(-EKEYREJECTED), "was written with the site key"));
	replica_close(r);
	assert_int_equal(replica_open(root, REPLICA_CREATE | REPLICA_RECEIVER, k2, &r), -EKEYREJECTED);
	key_free(k2);
	assert_int_equal(epoch_now(), 2);
}

/* Another process (a live verify) marks the first source of S diverged in
 * the state file. */
static void mark_diverged(const struct rstate *s)
{
	struct replica *r2;
	struct rstate marked = *s;

	assert_int_equal(replica_open(root, REPLICA_READONLY, key, &r2), 0);
	marked.sources[0].status = SRC_DIVERGED;
	assert_int_equal(state_write(r2, &marked), 0);
	replica_close(r2);
}

/* Ack slots (tools/replica/ackslot.c): a state committed in a slot leaves
 * the state file as it was and is what the group is at; a torn newest slot
 * gives the one before; a state file written afresh, byte for byte the
 * slots' base (a rollback to it), is not overridden by them; one written
 * by another process is the base of the next slot, and its DIVERGED mark
 * outlives the writer's next state, slot or file. */
static void test_ack_slots(void **state)
{
	uint8_t *before, *after, *ack;
	size_t blen, alen, klen;
	struct replica *r;
	struct rstate st, s2, got;
	char path[256];
	(void)state;
	make_replica();
	open_locked(&r);
	assert_int_equal(replica_load_state(r, "vm1", &st), 0);
	before = slurp(".bascule/groups/vm1/state", &blen);
	s2 = st;
	for (int i = 1; i <= 2; i++) {
		s2.epoch = st.epoch + (uint64_t)i;
		assert_int_equal(ackslot_ready(r, "vm1"), 1);
		assert_int_equal(ackslot_commit(r, &s2), 1);
		assert_int_equal(replica_load_state(r, "vm1", &got), 0);
		assert_int_equal(got.epoch, st.epoch + (uint64_t)i);
	}
	after = slurp(".bascule/groups/vm1/state", &alen);
	assert_int_equal(alen, blen);
	assert_memory_equal(after, before, blen);
	free(after);
	replica_close(r);
	/* The newest (sequence 2, the first slot) torn: the one before holds. */
	ack = slurp(".bascule/groups/vm1/state.ack", &klen);
	assert_int_equal(klen, 16384);
	ack[100] ^= 1;
	spit(".bascule/groups/vm1/state.ack", ack, klen);
	free(ack);
	open_locked(&r);
	assert_int_equal(replica_load_state(r, "vm1", &got), 0);
	assert_int_equal(got.epoch, st.epoch + 1);
	/* Back to the base's very state: the slots do not come back. */
	assert_int_equal(state_write(r, &st), 0);
	after = slurp(".bascule/groups/vm1/state", &alen);
	assert_int_equal(alen, blen);
	assert_memory_equal(after, before, blen);
	free(after);
	free(before);
	assert_int_equal(replica_load_state(r, "vm1", &got), 0);
	assert_int_equal(got.epoch, st.epoch);
	path_of(path, sizeof(path), ".bascule/groups/vm1/state.ack");
	assert_int_equal(access(path, F_OK), -1);
	/* A new state file makes slots written since go on from it. */
	s2.epoch = st.epoch + 1;
	assert_int_equal(ackslot_ready(r, "vm1"), 1);
	assert_int_equal(ackslot_commit(r, &s2), 1);
	assert_int_equal(replica_load_state(r, "vm1", &got), 0);
	assert_int_equal(got.epoch, st.epoch + 1);
	/* Another process writes the state file (a verify's mark): the next
	 * slot goes on from that file, not from the one this writer saw
	 * (a slot of the old base would be ignored: its epoch lost). */
	{
		struct replica *r2;
		struct rstate marked = got;
		assert_int_equal(replica_open(root, REPLICA_READONLY, key, &r2), 0);
		marked.epoch = st.epoch + 2;
		assert_int_equal(state_write(r2, &marked), 0);
		replica_close(r2);
	}
	s2.epoch = st.epoch + 3;
	assert_int_equal(ackslot_ready(r, "vm1"), 1);
	assert_int_equal(ackslot_commit(r, &s2), 1);
	assert_int_equal(replica_load_state(r, "vm1", &got), 0);
	assert_int_equal(got.epoch, st.epoch + 3);
	/* A verify's DIVERGED mark written while this writer holds a newer
	 * state it read before: its next slot, and its next state file, keep
	 * the mark (they replaced it, and the resynchronisation was lost). */
	assert_int_equal(s2.sources[0].status, SRC_OK);
	mark_diverged(&got);
	s2.epoch = st.epoch + 4;
	assert_int_equal(ackslot_ready(r, "vm1"), 1);
	assert_int_equal(ackslot_commit(r, &s2), 1);
	assert_int_equal(replica_load_state(r, "vm1", &got), 0);
	assert_int_equal(got.epoch, st.epoch + 4);
	assert_int_equal(got.sources[0].status, SRC_DIVERGED);
	/* Read by this writer: its own next state is what it says. */
	s2.epoch = st.epoch + 5;
	assert_int_equal(state_write(r, &s2), 0);
	assert_int_equal(replica_load_state(r, "vm1", &got), 0);
	assert_int_equal(got.sources[0].status, SRC_OK);
	/* The rename path: the same. */
	mark_diverged(&got);
	s2.epoch = st.epoch + 6;
	assert_int_equal(state_write(r, &s2), 0);
	assert_int_equal(replica_load_state(r, "vm1", &got), 0);
	assert_int_equal(got.epoch, st.epoch + 6);
	assert_int_equal(got.sources[0].status, SRC_DIVERGED);
	replica_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_extent_wrap),
		cmocka_unit_test(test_forged_journal),
		cmocka_unit_test(test_upgrade),
		cmocka_unit_test(test_digest_versions),
		cmocka_unit_test(test_kept_tree),
		cmocka_unit_test(test_map_convert),
		cmocka_unit_test(test_map_sparse),
		cmocka_unit_test(test_sources_bound),
		cmocka_unit_test(test_planted_links),
		cmocka_unit_test(test_other_key),
		cmocka_unit_test(test_ack_slots),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}
