/* Unit tests: the block map (persistence, resize, key change, digest) and
 * per-target out-of-sync sets (blocks changed after the epoch a target has),
 * the spool, and the protocol messages' bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "blockmap.h"
#include "err.h"
#include "proto.h"
#include "spool.h"

static char dir[64];
static const uint8_t *buf_zero_page(void)
{
	static const uint8_t z[4096];
	return z;
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/bascule-bm.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static const uint8_t kid1[KEY_ID_BYTES] = { 1 }, kid2[KEY_ID_BYTES] = { 2 };
/* BSCBMAP3 with one page of words: the header, the words, a node per word,
 * then the records. */
#define V3_RECS (4096 + 4096 + 4096 * 4)
/* the leaf of a zero block (any value the map is told) */
static const uint8_t zleaf[LEAF_BYTES] = { 0x5a, 1, 2, 3 };

static void test_persist_and_resize(void **state)
{
	char path[128];
	struct blockmap *m;

	snprintf(path, sizeof(path), "%s/a.map", dir);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(m->nblocks, 0);
	assert_int_equal(blockmap_resize(m, 10 * 4096 + 100), 0);
	assert_int_equal(m->nblocks, 11);
	for (int i = 0; i < 11; i++)
		assert_int_equal(m->recs[i].leaf[0] | m->recs[i].epoch, 0); /* unknown */
	m->recs[3].leaf[0] = 0xaa;
	m->recs[3].epoch = 7;
	m->recs[10].leaf[0] = 0xbb;
	assert_int_equal(blockmap_sync(m), 0);
	blockmap_close(m);

	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(m->nblocks, 11);
	assert_int_equal(m->size, 10 * 4096 + 100);
	assert_int_equal(m->recs[3].leaf[0], 0xaa);
	assert_int_equal(m->recs[3].epoch, 7);
	/* growing: the partial last block's content changes, so it is unknown */
	assert_int_equal(blockmap_resize(m, 20 * 4096), 0);
	assert_int_equal(m->nblocks, 20);
	assert_int_equal(m->recs[10].leaf[0], 0);
	assert_int_equal(m->recs[3].leaf[0], 0xaa);
	blockmap_close(m);

	/* a map made under another key is reset */
	assert_int_equal(blockmap_open(path, kid2, zleaf, &m), 0);
	assert_int_equal(m->nblocks, 0);
	assert_int_equal(blockmap_resize(m, 20 * 4096), 0);
	assert_int_equal(m->recs[3].leaf[0] | m->recs[3].epoch, 0);
	blockmap_close(m);
}

static void test_out_of_sync_sets(void **state)
{
	char path[128];
	struct blockmap *m;

	snprintf(path, sizeof(path), "%s/b.map", dir);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_resize(m, 100 * 4096), 0);
	/* epoch 1 writes every block, epoch 2 blocks 0-9, epoch 3 blocks 5-14 */
	for (int i = 0; i < 100; i++)
		m->recs[i].epoch = 1;
	for (int i = 0; i < 10; i++)
		m->recs[i].epoch = 2;
	for (int i = 5; i < 15; i++)
		m->recs[i].epoch = 3;
	/* a target at epoch 0 lacks everything, at 1 the union of 2 and 3 (15
	 * blocks, not 20: coalesced), at 2 only epoch 3's, at 3 nothing */
	assert_int_equal(blockmap_count_newer(m, 0), 100);
	assert_int_equal(blockmap_count_newer(m, 1), 15);
	assert_int_equal(blockmap_count_newer(m, 2), 10);
	assert_int_equal(blockmap_count_newer(m, 3), 0);
	blockmap_close(m);
}

/* A chunk's newest change epoch: ZERO its word's, UNKNOWN 0, RECS the
 * greatest record's, whether the change came before the first question
 * (the pass over the records finds it) or after (blockmap_changed keeps it);
 * kept across a zero chunk taking records, rebuilt after a resize and a
 * reopen.  A wrong answer below the truth would let a scan skip a MiB a
 * target lacks. */
static void test_newest(void **state)
{
	char path[128];
	struct blockmap *m;
	struct bm_rec *r;

	snprintf(path, sizeof(path), "%s/n.map", dir);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_resize(m, (4 * BM_CHUNK + 3) * 4096ULL), 0);
	r = blockmap_chunk_recs(m, 0);
	r[7].epoch = 4; /* before the first question: found by the pass */
	blockmap_changed(m, 7, 4);
	assert_true(blockmap_chunk_zero(m, 1, 5));
	assert_int_equal(blockmap_chunk_newest(m, 0), 4);
	assert_int_equal(blockmap_chunk_newest(m, 1), 5);
	assert_int_equal(blockmap_chunk_newest(m, 2), 0); /* never seen */
	assert_int_equal(blockmap_chunk_newest(m, 4), 0); /* the partial last chunk: records, all unknown */
	r[200].epoch = 9; /* after: kept */
	blockmap_changed(m, 200, 9);
	r[3].epoch = 6; /* an older epoch does not lower it */
	blockmap_changed(m, 3, 6);
	assert_int_equal(blockmap_chunk_newest(m, 0), 9);
	blockmap_chunk_recs(m, 1); /* zero since 5, now records of epoch 5 */
	assert_int_equal(blockmap_chunk_state(m, 1, NULL), BM_RECS);
	assert_int_equal(blockmap_chunk_newest(m, 1), 5);
	m->recs[4 * BM_CHUNK + 1].epoch = 11;
	blockmap_changed(m, 4 * BM_CHUNK + 1, 11);
	assert_int_equal(blockmap_chunk_newest(m, 4), 11);
	assert_int_equal(blockmap_resize(m, (5 * BM_CHUNK) * 4096ULL), 0);
	assert_int_equal(blockmap_chunk_newest(m, 0), 9);
	assert_int_equal(blockmap_chunk_newest(m, 4), 11);
	assert_int_equal(blockmap_sync(m), 0);
	blockmap_close(m);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_chunk_newest(m, 0), 9);
	assert_int_equal(blockmap_chunk_newest(m, 1), 5);
	assert_int_equal(blockmap_chunk_newest(m, 3), 0);
	blockmap_close(m);
}

static void test_digest(void **state)
{
	char path[128];
	struct blockmap *m;
	uint8_t d1[DIGEST_BYTES], d2[DIGEST_BYTES], d3[DIGEST_BYTES];
	const uint64_t n = 3 * MERKLE_FAN + 7, size = n * 4096 - 100; /* 4 MiB, a short last block */
	uint8_t *leaves = malloc(n * LEAF_BYTES);
	struct merkle_sum *c = malloc(sizeof(*c));

	assert_non_null(leaves);
	assert_non_null(c);
	snprintf(path, sizeof(path), "%s/c.map", dir);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_resize(m, size), 0);
	for (uint64_t k = 0; k < m->nchunks; k++)
		blockmap_chunk_recs(m, k);
	for (uint64_t i = 0; i < n; i++) {
		memset(m->recs[i].leaf, (int)(i * 7 + 1), LEAF_BYTES);
		memset(leaves + i * LEAF_BYTES, (int)(i * 7 + 1), LEAF_BYTES);
	}
	assert_int_equal(blockmap_digest(m, d1), 0);
	merkle_sum_init(c, DIGEST_V2, size);
	merkle_sum_leaves(c, leaves, n);
	merkle_sum_final(c, d2);
	assert_memory_equal(d1, d2, DIGEST_BYTES); /* same as the replica computes */
	/* A leaf changed and touched: the cached tree follows. */
	m->recs[MERKLE_FAN + 1].leaf[5] ^= 1;
	leaves[(MERKLE_FAN + 1) * LEAF_BYTES + 5] ^= 1;
	blockmap_touch(m, MERKLE_FAN + 1);
	assert_int_equal(blockmap_digest(m, d3), 0);
	assert_memory_not_equal(d1, d3, DIGEST_BYTES);
	merkle_sum_init(c, DIGEST_V2, size);
	merkle_sum_leaves(c, leaves, n);
	merkle_sum_final(c, d2);
	assert_memory_equal(d3, d2, DIGEST_BYTES);
	/* A leaf changed but not touched: the tree cannot see it (every
	 * writer of a leaf must touch it). */
	m->recs[2].leaf[0] ^= 1;
	assert_int_equal(blockmap_digest(m, d2), 0);
	assert_memory_equal(d3, d2, DIGEST_BYTES);
	/* A resize rebuilds the tree from the leaves as they are now. */
	assert_int_equal(blockmap_resize(m, size + 8192), 0);
	assert_int_equal(blockmap_digest(m, d2), 0);
	assert_memory_not_equal(d3, d2, DIGEST_BYTES);
	merkle_sum_init(c, DIGEST_V2, size + 8192);
	for (uint64_t i = 0; i < m->nblocks; i++)
		merkle_sum_leaves(c, m->recs[i].leaf, 1);
	merkle_sum_final(c, d3);
	assert_memory_equal(d3, d2, DIGEST_BYTES);
	blockmap_close(m);
	free(leaves);
	free(c);
}

/* The streaming digest of M's leaves as the map describes them. */
static void stream_digest(struct blockmap *m, uint8_t ret[DIGEST_BYTES])
{
	struct merkle_sum *c = malloc(sizeof(*c));
	static const uint8_t unknown[LEAF_BYTES];

	assert_non_null(c);
	merkle_sum_init(c, DIGEST_V2, m->size);
	for (uint64_t b = 0; b < m->nblocks; b++) {
		enum bm_state st = blockmap_chunk_state(m, b / BM_CHUNK, NULL);
		assert_int_not_equal(st, BM_COLD); /* no leaves to stream */
		merkle_sum_leaves(c, st == BM_ZERO ? zleaf : st == BM_RECS ? m->recs[b].leaf : unknown, 1);
	}
	merkle_sum_final(c, ret);
	free(c);
}

static uint64_t disk_kib(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks / 2;
}

/* 256 MiB of which 3 MiB hold data: records only for those 3 chunks (the
 * rest costs a chunk word each), kept across a reopen; the digest equals
 * the streaming one over every leaf; out-of-sync counts follow the words. */
static void test_sparse(void **state)
{
	char path[128];
	struct blockmap *m;
	uint8_t a[DIGEST_BYTES], b[DIGEST_BYTES];
	const uint64_t size = 256ULL << 20;

	snprintf(path, sizeof(path), "%s/sparse.map", dir);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_resize(m, size), 0);
	assert_int_equal(m->nchunks, 256);
	for (uint64_t c = 0; c < 256; c++) {
		if (c == 7 || c == 100 || c == 255) {
			struct bm_rec *r = blockmap_chunk_recs(m, c);
			for (int k = 0; k < BM_CHUNK; k++) {
				memset(r[k].leaf, (int)(c + k), LEAF_BYTES);
				r[k].epoch = 2;
			}
		} else
			assert_true(blockmap_chunk_zero(m, c, 1));
	}
	assert_false(blockmap_chunk_zero(m, 3, 5)); /* already zero: epoch kept */
	assert_false(blockmap_chunk_zero(m, 7, 5)); /* records: never collapsed */
	assert_int_equal(blockmap_count_newer(m, 0), 256 * BM_CHUNK);
	assert_int_equal(blockmap_count_newer(m, 1), 3 * BM_CHUNK);
	assert_int_equal(blockmap_digest(m, a), 0);
	stream_digest(m, b);
	assert_memory_equal(a, b, DIGEST_BYTES);
	/* a zero chunk that gets data: records of zero leaves first */
	{
		struct bm_rec *r = blockmap_chunk_recs(m, 9);
		uint64_t e = 0;
		assert_memory_equal(r[17].leaf, zleaf, LEAF_BYTES);
		assert_int_equal(r[17].epoch, 1);
		assert_int_equal(blockmap_chunk_state(m, 9, &e), BM_RECS);
		assert_int_equal(blockmap_digest(m, b), 0);
		assert_memory_equal(a, b, DIGEST_BYTES); /* same leaves */
		r[17].leaf[0] ^= 1;
		r[17].epoch = 3;
		blockmap_touch(m, 9 * BM_CHUNK + 17);
		assert_int_equal(blockmap_digest(m, a), 0);
		stream_digest(m, b);
		assert_memory_equal(a, b, DIGEST_BYTES);
	}
	assert_int_equal(blockmap_sync(m), 0);
	blockmap_close(m);
	/* 4 chunks of records (32 KiB of 8 MiB) and 4 KiB of words */
	assert_true(disk_kib(path) <= 4 + 4 + 4 * 8 + 8);

	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_count_newer(m, 2), 1);
	assert_int_equal(blockmap_count_newer(m, 1), 3 * BM_CHUNK + 1);
	assert_int_equal(blockmap_digest(m, b), 0);
	assert_memory_equal(a, b, DIGEST_BYTES);
	/* growth past the words' room (512 chunks a page): a new file, the
	 * records and words carried over, the new chunks unknown */
	assert_int_equal(blockmap_resize(m, 4 * size), 0);
	assert_int_equal(m->nchunks, 1024);
	assert_true(m->dir_bytes >= 1024 * 8);
	assert_int_equal(blockmap_chunk_state(m, 3, NULL), BM_ZERO);
	assert_int_equal(blockmap_chunk_state(m, 100, NULL), BM_RECS);
	assert_int_equal(blockmap_chunk_state(m, 600, NULL), BM_UNKNOWN);
	assert_int_equal(m->recs[100 * BM_CHUNK + 5].leaf[0], 105);
	assert_int_equal(blockmap_count_newer(m, 2), 1);
	blockmap_close(m);
	assert_true(disk_kib(path) <= 4 + 8 + 4 * 8 + 8);
	assert_int_equal(access(strcat(path, ".new"), F_OK), -1);
}

/* What a conversion interrupted before its rename leaves: TMP, half written. */
static void half_conversion(const char *tmp)
{
	FILE *f = fopen(tmp, "w");

	assert_non_null(f);
	fputs("half", f);
	assert_int_equal(fclose(f), 0);
}

/* Write a map of the previous format (BSCBMAP1: a record per block). */
static void write_v1(const char *path, uint64_t size, const struct bm_rec *recs, uint64_t n)
{
	uint8_t hdr[4096] = { 0 };
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	memcpy(hdr, "BSCBMAP1", 8);
	for (int i = 0; i < 8; i++)
		hdr[8 + i] = (uint8_t)(size >> (56 - 8 * i));
	memcpy(hdr + 16, kid1, KEY_ID_BYTES);
	assert_int_equal(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
	assert_int_equal(fwrite(recs, sizeof(*recs), n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* A BSCBMAP1 map is converted on open: zero chunks lose their records,
 * unknown ones stay unknown, the rest keep theirs; same digest, same
 * out-of-sync counts.  A PATH.new left by a crash during a conversion is
 * replaced; a crash after the rename leaves a converted map. */
static void test_convert(void **state)
{
	char path[128], tmp[160];
	const uint64_t n = 4 * BM_CHUNK + 10, size = n * 4096 - 1000;
	struct bm_rec *recs = calloc(n, sizeof(*recs));
	struct blockmap *m;
	uint8_t want[DIGEST_BYTES], got[DIGEST_BYTES];
	struct merkle_sum *c = malloc(sizeof(*c));

	assert_non_null(recs);
	assert_non_null(c);
	for (uint64_t b = 0; b < n; b++) {
		uint64_t ch = b / BM_CHUNK;
		if (ch == 0 || ch == 3) { /* zero blocks (chunk 3: one of another epoch) */
			memcpy(recs[b].leaf, zleaf, LEAF_BYTES);
			recs[b].epoch = ch == 3 && b % BM_CHUNK == 9 ? 5 : 2;
		} else if (ch == 1 || ch == 4) { /* data */
			memset(recs[b].leaf, (int)b, LEAF_BYTES);
			recs[b].epoch = 4;
		} /* chunk 2: unknown (never scanned) */
	}
	merkle_sum_init(c, DIGEST_V2, size);
	merkle_sum_leaves(c, recs[0].leaf, 1);
	for (uint64_t b = 1; b < n; b++)
		merkle_sum_leaves(c, recs[b].leaf, 1);
	merkle_sum_final(c, want);
	snprintf(path, sizeof(path), "%s/old.map", dir);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	write_v1(path, size, recs, n);
	half_conversion(tmp);

	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(m->size, size);
	assert_int_equal(m->nblocks, n);
	assert_int_equal(blockmap_chunk_state(m, 0, NULL), BM_ZERO);
	assert_int_equal(blockmap_chunk_state(m, 1, NULL), BM_RECS);
	assert_int_equal(blockmap_chunk_state(m, 2, NULL), BM_UNKNOWN);
	assert_int_equal(blockmap_chunk_state(m, 3, NULL), BM_RECS); /* epochs differ */
	assert_int_equal(blockmap_chunk_state(m, 4, NULL), BM_RECS); /* partial */
	assert_int_equal(m->recs[BM_CHUNK + 3].leaf[0], (uint8_t)(BM_CHUNK + 3));
	assert_int_equal(blockmap_count_newer(m, 0), 4 * BM_CHUNK + 10 - BM_CHUNK);
	assert_int_equal(blockmap_count_newer(m, 2), BM_CHUNK + 10 + 1);
	assert_int_equal(blockmap_count_newer(m, 4), 1);
	assert_int_equal(blockmap_digest(m, got), 0);
	assert_memory_equal(got, want, DIGEST_BYTES);
	blockmap_close(m);
	/* opened again: already converted, the same */
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_digest(m, got), 0);
	assert_memory_equal(got, want, DIGEST_BYTES);
	blockmap_close(m);
	/* a crash between a resize's ftruncate and its header: the file's
	 * length says how many blocks there are */
	assert_int_equal(truncate(path, V3_RECS + 2 * BM_CHUNK * 32), 0);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(m->nblocks, 2 * BM_CHUNK);
	assert_int_equal(blockmap_chunk_state(m, 1, NULL), BM_RECS);
	assert_int_equal(blockmap_resize(m, size), 0);
	assert_int_equal(m->size, size);
	blockmap_close(m);
	/* a damaged map is refused with what to do */
	assert_int_equal(truncate(path, V3_RECS + 100), 0);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), -EBADMSG);
	assert_non_null(strstr(err_msg(-EBADMSG), "move it away"));
	assert_non_null(strstr(err_msg(-EBADMSG), "every target is sent the whole disk"));
	/* a replica's map is rebuilt from its file, nothing is resent */
	assert_int_equal(blockmap_open_fs(NULL, path, kid1, zleaf, BLOCKMAP_KEEP, &m), -EBADMSG);
	assert_non_null(strstr(err_msg(-EBADMSG), "rebuilt from the file it describes"));
	assert_null(strstr(err_msg(-EBADMSG), "whole disk"));
	free(recs);
	free(c);
}

/* The digest over LEAVES (N of them) for a source of SIZE bytes: what the
 * replica computes, and what a map whose chunks went cold must still give. */
static void leaves_digest(const uint8_t *leaves, uint64_t n, uint64_t size, uint8_t ret[DIGEST_BYTES])
{
	struct merkle_sum *c = malloc(sizeof(*c));

	assert_non_null(c);
	merkle_sum_init(c, DIGEST_V2, size);
	merkle_sum_leaves(c, leaves, n);
	merkle_sum_final(c, ret);
	free(c);
}

/* Cold chunks: blockmap_cool takes the whole chunks with records whose
 * every leaf is known and whose newest change is old enough (not the
 * partial last one, not one with an unknown leaf, not one changed since),
 * keeps their node and epoch, and its sync punches their records out of the
 * file; the digest (kept tree or rebuilt), the out-of-sync counts and the
 * newest epochs stay what they were; a reopen, a crash before the punch and
 * a growth that rewrites the file keep them; a chunk made hot again has
 * its new records, the digest follows. */
static void test_cold(void **state)
{
	char path[128];
	const uint64_t n = 8 * BM_CHUNK + 10, size = n * 4096 - 100;
	uint8_t *leaves = calloc(n, LEAF_BYTES), want[DIGEST_BYTES], got[DIGEST_BYTES], node[MERKLE_NODE];
	uint64_t cooled = 0, e = 0, before, after;
	struct blockmap *m;
	struct bm_rec hot[BM_CHUNK];

	assert_non_null(leaves);
	snprintf(path, sizeof(path), "%s/cold.map", dir);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_resize(m, size), 0);
	for (uint64_t c = 0; c < m->nchunks; c++) {
		struct bm_rec *r = blockmap_chunk_recs(m, c);
		for (uint64_t k = 0; k < BM_CHUNK && c * BM_CHUNK + k < n; k++) {
			uint8_t *l = leaves + (c * BM_CHUNK + k) * LEAF_BYTES;
			memset(l, (int)(c * 31 + k + 1), LEAF_BYTES);
			l[1] = 0xa5; /* never all zero */
			if (c == 5 && k == 40)
				memset(l, 0, LEAF_BYTES); /* unknown: chunk 5 stays hot */
			memcpy(r[k].leaf, l, LEAF_BYTES);
			r[k].epoch = c == 2 && k == 7 ? 9 : 3; /* chunk 2 changed lately */
		}
	}
	assert_int_equal(blockmap_digest(m, want), 0);
	leaves_digest(leaves, n, size, got);
	assert_memory_equal(want, got, DIGEST_BYTES);
	assert_int_equal(blockmap_sync(m), 0);
	before = blockmap_disk_bytes(m);

	assert_int_equal(blockmap_cool(m, 5, 100, 4, 100, &cooled), 0);
	assert_int_equal(cooled, 6); /* 0, 1, 3, 4, 6, 7; not 2 (epoch 9), 5 (unknown), 8 (partial) */
	for (uint64_t c = 0; c < m->nchunks; c++) {
		bool cold = c != 2 && c != 5 && c != 8;
		assert_int_equal(blockmap_chunk_state(m, c, &e), cold ? BM_COLD : BM_RECS);
		if (cold)
			assert_int_equal(e, 3);
	}
	assert_int_equal(blockmap_chunk_newest(m, 2), 9);
	assert_int_equal(blockmap_chunk_newest(m, 3), 3);
	assert_int_equal(blockmap_cool(m, 5, 100, 4, 100, &cooled), 0);
	assert_int_equal(cooled, 0); /* nothing more */
	assert_int_equal(blockmap_digest(m, got), 0); /* the kept tree */
	assert_memory_equal(want, got, DIGEST_BYTES);
	blockmap_forget_tree(m);
	assert_int_equal(blockmap_digest(m, got), 0); /* rebuilt: cold nodes as kept */
	assert_memory_equal(want, got, DIGEST_BYTES);
	/* a target at 3 lacks chunk 2's block; one at 2 everything (a cold
	 * chunk counts whole: its blocks' own epochs are not kept) */
	assert_int_equal(blockmap_count_newer(m, 3), 1);
	assert_int_equal(blockmap_count_newer(m, 2), n);

	/* A crash after the words, before the punch (no sync): the map
	 * reopens with the chunks cold and the same digest. */
	blockmap_close(m);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_chunk_state(m, 3, &e), BM_COLD);
	assert_int_equal(e, 3);
	assert_int_equal(blockmap_digest(m, got), 0);
	assert_memory_equal(want, got, DIGEST_BYTES);
	/* A crash after the nodes, before the words: the chunk is hot, its
	 * records whole, the stray node unused. */
	memset(m->nodes + 2 * MERKLE_NODE, 0xee, MERKLE_NODE);
	blockmap_forget_tree(m);
	assert_int_equal(blockmap_digest(m, got), 0);
	assert_memory_equal(want, got, DIGEST_BYTES);

	/* The punch, once the words are durable: chunks cooled in this run
	 * (the ones of the closed run were never punched: they stay, unused,
	 * until a rewrite) */
	m->words[1] = 1ULL << 63; /* chunk 1 hot again by hand: its records are whole */
	blockmap_forget_tree(m);
	assert_int_equal(blockmap_cool(m, 5, 100, 4, 100, &cooled), 0);
	assert_int_equal(cooled, 1);
	assert_int_equal(blockmap_sync(m), 0);
	assert_int_equal(blockmap_chunk_state(m, 1, NULL), BM_COLD);
	assert_int_equal(m->recs[BM_CHUNK + 3].leaf[0] | m->recs[BM_CHUNK + 3].epoch, 0); /* punched */
	assert_int_equal(m->recs[3 * BM_CHUNK + 3].leaf[0], 3 * 31 + 3 + 1);   /* not punched: stays unused */
	assert_int_equal(blockmap_digest(m, got), 0);
	assert_memory_equal(want, got, DIGEST_BYTES);

	/* Hot again: chunk 3's leaves as the scan hashed them (one changed, in
	 * epoch 12): its records, newest and node follow. */
	for (int k = 0; k < BM_CHUNK; k++) {
		memcpy(hot[k].leaf, leaves + (3 * BM_CHUNK + k) * LEAF_BYTES, LEAF_BYTES);
		hot[k].epoch = 3;
		hot[k].reserved = 0;
	}
	hot[17].leaf[0] ^= 0x80;
	hot[17].epoch = 12;
	leaves[(3 * BM_CHUNK + 17) * LEAF_BYTES] ^= 0x80;
	blockmap_chunk_heat(m, 3, hot);
	assert_int_equal(blockmap_chunk_state(m, 3, NULL), BM_RECS);
	assert_int_equal(blockmap_chunk_newest(m, 3), 12);
	assert_int_equal(m->recs[3 * BM_CHUNK + 17].epoch, 12);
	assert_int_equal(blockmap_count_newer(m, 3), 2);
	assert_int_equal(blockmap_digest(m, got), 0);
	leaves_digest(leaves, n, size, want);
	assert_memory_equal(want, got, DIGEST_BYTES);
	/* made hot once in this run: it waits twice as long to go cold again */
	assert_int_equal(blockmap_cool(m, 20, 19, 4, 100, &cooled), 0);
	assert_int_equal(cooled, 1); /* chunk 2 (9 + 4 <= 19), not 3 (12 + 8 > 19) */
	assert_int_equal(blockmap_chunk_state(m, 3, NULL), BM_RECS);
	assert_int_equal(blockmap_cool(m, 20, 20, 4, 100, &cooled), 0);
	assert_int_equal(cooled, 1);
	assert_int_equal(blockmap_chunk_state(m, 3, NULL), BM_COLD);
	assert_int_equal(blockmap_sync(m), 0);
	blockmap_close(m);

	/* Reopened: the same.  Then cooled again and synced: the records of
	 * the 7 cold chunks (56 KiB) are gone from the disk. */
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_digest(m, got), 0);
	assert_memory_equal(want, got, DIGEST_BYTES);
	assert_int_equal(blockmap_cool(m, 20, 100, 4, 100, &cooled), 0);
	assert_int_equal(cooled, 0); /* 2 and 3 went cold before the reopen */
	assert_int_equal(blockmap_sync(m), 0);
	after = blockmap_disk_bytes(m);
	/* chunks 0, 4, 6, 7 were cooled by a run that was not synced: their
	 * records stay allocated; 1, 2, 3 were punched */
	assert_true(after + 3 * 8192 <= before + 4096); /* less a page of nodes */
	blockmap_chunk_node(m, 0, node);

	/* Growth past the words' room (a rewrite): cold chunks, nodes kept. */
	assert_int_equal(blockmap_resize(m, 600ULL * BM_CHUNK * 4096), 0);
	assert_int_equal(blockmap_chunk_state(m, 0, &e), BM_COLD);
	assert_int_equal(e, 3);
	assert_int_equal(blockmap_chunk_state(m, 5, NULL), BM_RECS);
	blockmap_chunk_node(m, 0, got);
	assert_memory_equal(node, got, MERKLE_NODE);
	/* the rewrite wrote no records for cold chunks: the 4 left allocated
	 * by the unsynced run are gone too */
	assert_true(blockmap_disk_bytes(m) <= after - 4 * 8192 + 3 * 4096);
	/* Shrunk so that cold chunk 4 is the partial last: records, unknown. */
	assert_int_equal(blockmap_resize(m, 4 * BM_CHUNK * 4096ULL + 5000), 0);
	assert_int_equal(blockmap_chunk_state(m, 4, &e), BM_RECS);
	assert_int_equal(m->recs[4 * BM_CHUNK].leaf[0], 0);
	assert_int_equal(blockmap_chunk_newest(m, 4), 3);
	blockmap_close(m);
	free(leaves);
}

/* Write a map of the previous format (BSCBMAP2: words, then records). */
static void write_v2(const char *path, uint64_t size, const uint64_t *words, uint64_t nwords,
		     const struct bm_rec *recs, uint64_t n)
{
	uint8_t hdr[4096] = { 0 };
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	memcpy(hdr, "BSCBMAP2", 8);
	for (int i = 0; i < 8; i++) {
		hdr[8 + i] = (uint8_t)(size >> (56 - 8 * i));
		hdr[32 + i] = (uint8_t)(4096ULL >> (56 - 8 * i));
	}
	memcpy(hdr + 16, kid1, KEY_ID_BYTES);
	assert_int_equal(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, words, nwords * 8);
	assert_int_equal(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
	assert_int_equal(fwrite(recs, sizeof(*recs), n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* A BSCBMAP2 map is converted on open (PATH.new, renamed over): its words
 * and records kept, the digest and the out-of-sync counts the same; a
 * damaged one is refused with what to do. */
static void test_convert_v2(void **state)
{
	char path[128], tmp[160];
	const uint64_t n = 3 * BM_CHUNK + 5, size = n * 4096;
	const uint64_t words[4] = { 1ULL << 63, (1ULL << 62) | 4, 0, 1ULL << 63 };
	struct bm_rec *recs = calloc(n, sizeof(*recs));
	uint8_t *leaves = calloc(n, LEAF_BYTES), want[DIGEST_BYTES], got[DIGEST_BYTES], hdr[8];
	struct blockmap *m;
	uint64_t e = 0;
	FILE *f;

	assert_non_null(recs);
	assert_non_null(leaves);
	for (uint64_t b = 0; b < n; b++) {
		uint64_t c = b / BM_CHUNK;
		if (c == 0 || c == 3) {
			memset(recs[b].leaf, (int)(b + 1), LEAF_BYTES);
			recs[b].epoch = c == 0 ? 2 : 6;
		} else if (c == 1) {
			recs[b].leaf[0] = 0x77; /* a stale record behind a zero word: the word wins */
		}
		memcpy(leaves + b * LEAF_BYTES, c == 1 ? zleaf : recs[b].leaf, LEAF_BYTES);
	}
	leaves_digest(leaves, n, size, want);
	snprintf(path, sizeof(path), "%s/v2.map", dir);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	write_v2(path, size, words, 4, recs, n);
	half_conversion(tmp);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(m->nblocks, n);
	assert_int_equal(blockmap_chunk_state(m, 0, NULL), BM_RECS);
	assert_int_equal(blockmap_chunk_state(m, 1, &e), BM_ZERO);
	assert_int_equal(e, 4);
	assert_int_equal(blockmap_chunk_state(m, 2, NULL), BM_UNKNOWN);
	assert_int_equal(blockmap_chunk_state(m, 3, NULL), BM_RECS);
	assert_int_equal(m->recs[9].leaf[0], 10);
	assert_int_equal(blockmap_count_newer(m, 2), BM_CHUNK + 5);
	assert_int_equal(blockmap_count_newer(m, 4), 5);
	blockmap_close(m);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fread(hdr, 1, 8, f), 8);
	fclose(f);
	assert_memory_equal(hdr, "BSCBMAP3", 8);
	/* digest: chunk 2 is unknown (all-zero leaves), as the map says */
	memset(leaves + 2 * BM_CHUNK * LEAF_BYTES, 0, BM_CHUNK * LEAF_BYTES);
	leaves_digest(leaves, n, size, want);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), 0);
	assert_int_equal(blockmap_digest(m, got), 0);
	assert_memory_equal(want, got, DIGEST_BYTES);
	blockmap_close(m);
	/* damaged (records cut short): refused, the file left as it was */
	write_v2(path, size, words, 4, recs, n);
	assert_int_equal(truncate(path, 8192 + 100), 0);
	assert_int_equal(blockmap_open(path, kid1, zleaf, &m), -EBADMSG);
	assert_non_null(strstr(err_msg(-EBADMSG), "move it away"));
	assert_int_equal(access(tmp, F_OK), -1);
	free(recs);
	free(leaves);
}

static void test_spool(void **state)
{
	char path[128];
	struct spool *s;
	struct spool_block b[3] = { { .idx = 0, .epoch = 5 }, { .idx = 1, .zero = 1, .epoch = 6 },
				    { .idx = 7, .epoch = 6 } };
	uint8_t data[2 * 4096], *buf = malloc(SPOOL_CHUNK * (16 + 4096));
	const struct spool_block *rb;
	const uint8_t *rd;

	memset(data, 'a', 4096);
	memset(data + 4096, 'b', 4096);
	snprintf(path, sizeof(path), "%s/spool", dir);
	assert_int_equal(spool_create(path, &s), 0);
	assert_int_equal(spool_append(s, 1, 9, b, 3, data, 2), 0);
	assert_int_equal(spool_append(s, 0, 4, b, 1, data, 1), 0);
	assert_int_equal(spool_append(s, 1, 2, b + 1, 1, NULL, 0), 0);
	spool_finish(s);
	assert_int_equal(s->n, 3);
	assert_int_equal(s->e[0].src, 0); /* sorted by source, then chunk */
	assert_int_equal(s->e[1].chunk, 2);
	assert_int_equal(s->e[2].chunk, 9);
	assert_int_equal(spool_read(s, 2, buf, &rb, &rd), 0);
	assert_int_equal(rb[2].idx, 7);
	assert_int_equal(rb[1].zero, 1);
	assert_int_equal(rd[0], 'a');
	assert_int_equal(rd[4096], 'b');
	spool_unref(s);
	assert_int_equal(access(path, F_OK), -1); /* removed with the last reference */
	free(buf);
}

static void test_proto_bounds(void **state)
{
	struct wbuf w;
	struct rbuf r;
	struct msg_extent e = { .src = 0, .offset = 4096, .raw_len = 4096, .enc = EXT_RAW }, got;
	struct msg_source s = { .idx = 0, .name = "root", .size = 1 << 20, .block_size = 4096 }, gs;

	wbuf_init(&w, 1 << 20);
	assert_int_equal(proto_put_extent_hdr(&w, &e), 0);
	wbuf_put_bytes(&w, buf_zero_page(), 4096);
	r = rbuf_init(w.p, w.len);
	assert_int_equal(proto_get_extent(&r, &got), 0);
	assert_int_equal(got.data_len, 4096);
	/* data shorter than announced */
	r = rbuf_init(w.p, w.len - 1);
	assert_int_equal(proto_get_extent(&r, &got), -EBADMSG);
	/* unaligned offset */
	wbuf_reset(&w);
	e.offset = 100;
	proto_put_extent_hdr(&w, &e);
	wbuf_put_bytes(&w, buf_zero_page(), 4096);
	r = rbuf_init(w.p, w.len);
	assert_int_equal(proto_get_extent(&r, &got), -EBADMSG);
	/* an offset past the largest source, or one whose end wraps around
	 * 2^64 (off + len would compare small against the source size) */
	for (int i = 0; i < 2; i++) {
		wbuf_reset(&w);
		e.offset = i ? UINT64_MAX - 4095 : PROTO_MAX_SIZE;
		proto_put_extent_hdr(&w, &e);
		wbuf_put_bytes(&w, buf_zero_page(), 4096);
		r = rbuf_init(w.p, w.len);
		assert_int_equal(proto_get_extent(&r, &got), -EBADMSG);
	}
	/* the last block of the largest source is fine */
	wbuf_reset(&w);
	e.offset = PROTO_MAX_SIZE - 4096;
	proto_put_extent_hdr(&w, &e);
	wbuf_put_bytes(&w, buf_zero_page(), 4096);
	r = rbuf_init(w.p, w.len);
	assert_int_equal(proto_get_extent(&r, &got), 0);
	e.offset = 4096;
	/* a source name that would escape the replica directory */
	wbuf_reset(&w);
	snprintf(s.name, sizeof(s.name), "../x");
	proto_put_source(&w, &s);
	r = rbuf_init(w.p, w.len);
	assert_int_equal(proto_get_source(&r, &gs), -EBADMSG);
	/* a wrong block size */
	wbuf_reset(&w);
	snprintf(s.name, sizeof(s.name), "root");
	s.block_size = 512;
	proto_put_source(&w, &s);
	r = rbuf_init(w.p, w.len);
	assert_int_equal(proto_get_source(&r, &gs), -EBADMSG);
	/* trailing bytes */
	wbuf_reset(&w);
	s.block_size = 4096;
	proto_put_source(&w, &s);
	wbuf_put_u8(&w, 0);
	r = rbuf_init(w.p, w.len);
	assert_int_equal(proto_get_source(&r, &gs), -EBADMSG);
	wbuf_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_persist_and_resize),
		cmocka_unit_test(test_newest),
		cmocka_unit_test(test_out_of_sync_sets),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_sparse),
		cmocka_unit_test(test_convert),
		cmocka_unit_test(test_cold),
		cmocka_unit_test(test_convert_v2),
		cmocka_unit_test(test_spool),
		cmocka_unit_test(test_proto_bounds),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
