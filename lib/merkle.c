/* merkle.c - the Merkle tree digest of a source: streaming and cached. */
#include "merkle.h"
#include "buf.h"
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096u
static const uint8_t zero_node[MERKLE_NODE];

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static uint64_t page_up(uint64_t n)
{
	return div_up(n, PAGE) * PAGE;
}

int merkle_levels(uint64_t nleaves)
{
	int l = 0;

	while (nleaves > 1 || (l == 0 && nleaves == 1)) {
		nleaves = div_up(nleaves, MERKLE_FAN);
		l++;
	}
	return l;
}

uint64_t merkle_count(uint64_t nleaves, int level)
{
	for (int l = 0; l < level; l++)
		nleaves = div_up(nleaves, MERKLE_FAN);
	return nleaves;
}

void merkle_node(int level, const uint8_t *children, size_t n, size_t child_bytes,
		 uint8_t ret[MERKLE_NODE])
{
	crypto_generichash_state st;
	uint8_t l = (uint8_t)level;

	crypto_generichash_init(&st, NULL, 0, MERKLE_NODE);
	crypto_generichash_update(&st, (const uint8_t *)"bascule node", 12);
	crypto_generichash_update(&st, &l, 1);
	crypto_generichash_update(&st, children, n * child_bytes);
	crypto_generichash_final(&st, ret, MERKLE_NODE);
}

void merkle_digest(uint64_t size, const uint8_t *top, uint8_t ret[DIGEST_BYTES])
{
	crypto_generichash_state st;
	uint8_t hdr[12];

	put_be64(hdr, size);
	put_be32(hdr + 8, 4096);
	crypto_generichash_init(&st, NULL, 0, DIGEST_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)"bascule digest v2", 17);
	crypto_generichash_update(&st, hdr, sizeof(hdr));
	if (top)
		crypto_generichash_update(&st, top, MERKLE_NODE);
	crypto_generichash_final(&st, ret, DIGEST_BYTES);
}

/* ---- streaming ---- */

void merkle_stream_init(struct merkle_stream *s, uint64_t size)
{
	memset(s->fill, 0, sizeof(s->fill));
	s->size = size;
	s->fed = 0;
	s->nleaves = div_up(size, 4096);
	s->levels = merkle_levels(s->nleaves);
}

/* Append one child to level L's buffer; a full buffer becomes a node of L+1. */
static void stream_push(struct merkle_stream *s, int l, const uint8_t *child)
{
	size_t cb = l == 0 ? LEAF_BYTES : MERKLE_NODE;

	memcpy(s->buf[l] + s->fill[l] * cb, child, cb);
	if (++s->fill[l] == MERKLE_FAN && l < s->levels) {
		uint8_t n[MERKLE_NODE];
		merkle_node(l + 1, s->buf[l], MERKLE_FAN, cb, n);
		s->fill[l] = 0;
		stream_push(s, l + 1, n);
	}
}

void merkle_stream_leaves(struct merkle_stream *s, const uint8_t *leaves, size_t count)
{
	for (size_t i = 0; i < count && s->fed < s->nleaves; i++, s->fed++)
		stream_push(s, 0, leaves + i * LEAF_BYTES);
}

void merkle_stream_final(struct merkle_stream *s, uint8_t ret[DIGEST_BYTES])
{
	static const uint8_t zero_leaf[LEAF_BYTES];

	while (s->fed < s->nleaves) {
		stream_push(s, 0, zero_leaf);
		s->fed++;
	}
	for (int l = 0; l < s->levels; l++) {
		if (!s->fill[l] || (l > 0 && merkle_count(s->nleaves, l) == 1))
			continue;
		uint8_t n[MERKLE_NODE];
		merkle_node(l + 1, s->buf[l], s->fill[l], l == 0 ? LEAF_BYTES : MERKLE_NODE, n);
		s->fill[l] = 0;
		stream_push(s, l + 1, n);
	}
	merkle_digest(s->size, s->levels ? s->buf[s->levels] : NULL, ret);
}

/* ---- cached tree ---- */

static uint64_t stale_bytes(uint64_t n1)
{
	return page_up(div_up(n1, 64) * 8);
}

uint64_t merkle_tree_bytes(uint64_t nleaves)
{
	int levels = merkle_levels(nleaves);
	uint64_t b = stale_bytes(merkle_count(nleaves, 1));

	for (int l = 1; l <= levels; l++)
		b += page_up(merkle_count(nleaves, l) * MERKLE_NODE);
	return b;
}

void merkle_tree_attach(struct merkle_tree *t, uint64_t nleaves, uint8_t *mem, bool fresh)
{
	uint64_t off;

	memset(t->count, 0, sizeof(t->count));
	memset(t->node, 0, sizeof(t->node));
	t->nleaves = nleaves;
	t->levels = merkle_levels(nleaves);
	t->stale = (uint64_t *)mem;
	off = stale_bytes(merkle_count(nleaves, 1));
	for (int l = 1; l <= t->levels; l++) {
		t->count[l] = merkle_count(nleaves, l);
		t->node[l] = mem + off;
		off += page_up(t->count[l] * MERKLE_NODE);
	}
	if (fresh)
		for (uint64_t i = 0; i < t->count[1]; i++)
			merkle_tree_touch(t, i);
}

void merkle_tree_touch(struct merkle_tree *t, uint64_t i)
{
	uint64_t bit = 1ULL << (i % 64);

	/* Read first: a page of a sparse mapping is not dirtied for nothing. */
	if (!(__atomic_load_n(&t->stale[i / 64], __ATOMIC_RELAXED) & bit))
		__atomic_fetch_or(&t->stale[i / 64], bit, __ATOMIC_RELAXED);
}

void merkle_tree_set(struct merkle_tree *t, uint64_t i, const uint8_t node[MERKLE_NODE])
{
	uint8_t *p = t->node[1] + i * MERKLE_NODE;

	if (memcmp(p, node, MERKLE_NODE) != 0)
		memcpy(p, node, MERKLE_NODE);
	merkle_tree_touch(t, i);
}

bool merkle_tree_isset(const struct merkle_tree *t, uint64_t i)
{
	return memcmp(t->node[1] + i * MERKLE_NODE, zero_node, MERKLE_NODE) != 0;
}

const uint8_t *merkle_tree_get(const struct merkle_tree *t, uint64_t i)
{
	const uint8_t *p = t->node[1] + i * MERKLE_NODE;

	return t->has_subst && memcmp(p, zero_node, MERKLE_NODE) == 0 ? t->subst : p;
}

/* Recompute node P of level L+1 from its children on level L. */
static void tree_parent(struct merkle_tree *t, int l, uint64_t p, uint8_t *scratch)
{
	uint64_t first = p * MERKLE_FAN, n = t->count[l] - first;
	const uint8_t *children = t->node[l] + first * MERKLE_NODE;

	if (n > MERKLE_FAN)
		n = MERKLE_FAN;
	if (l == 1 && t->has_subst) {
		for (uint64_t k = 0; k < n; k++)
			memcpy(scratch + k * MERKLE_NODE, merkle_tree_get(t, first + k), MERKLE_NODE);
		children = scratch;
	}
	merkle_node(l + 1, children, (size_t)n, MERKLE_NODE, t->node[l + 1] + p * MERKLE_NODE);
}

int merkle_tree_digest(struct merkle_tree *t, uint64_t size,
		       int (*refresh)(void *ctx, struct merkle_tree *t, uint64_t i), void *ctx,
		       uint8_t ret[DIGEST_BYTES])
{
	uint64_t *cur = t->stale, *next = NULL, words;
	uint8_t *scratch = NULL;
	int r = 0;

	if (!t->levels) {
		merkle_digest(size, NULL, ret);
		return 0;
	}
	words = div_up(t->count[1], 64);
	if (refresh)
		for (uint64_t w = 0; w < words; w++)
			for (uint64_t bits = cur[w]; bits; bits &= bits - 1) {
				uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(bits);
				if ((r = refresh(ctx, t, i)) < 0)
					return r;
			}
	if (!(scratch = malloc(MERKLE_FAN * MERKLE_NODE)))
		return -ENOMEM;
	for (int l = 1; l < t->levels; l++) {
		uint64_t nwords = div_up(t->count[l + 1], 64);
		uint64_t *up = calloc(nwords ? nwords : 1, 8);
		if (!up) {
			r = -ENOMEM;
			goto out;
		}
		/* A parent's 256 children are 4 aligned words of the bitmap. */
		for (uint64_t w = 0; w < words; w += MERKLE_FAN / 64) {
			uint64_t any = 0, p = w / (MERKLE_FAN / 64);
			for (uint64_t k = w; k < w + MERKLE_FAN / 64 && k < words; k++)
				if (cur[k]) {
					any = 1;
					cur[k] = 0;
				}
			if (!any)
				continue;
			tree_parent(t, l, p, scratch);
			up[p / 64] |= 1ULL << (p % 64);
		}
		free(next);
		next = up;
		cur = up;
		words = nwords;
	}
	if (t->levels == 1)
		for (uint64_t w = 0; w < words; w++)
			if (cur[w])
				cur[w] = 0;
	merkle_digest(size, t->levels == 1 ? merkle_tree_get(t, 0) : t->node[t->levels], ret);
out:
	free(next);
	free(scratch);
	return r;
}

/* ---- either version ---- */

void merkle_sum_init(struct merkle_sum *s, uint8_t version, uint64_t size)
{
	s->version = version == DIGEST_V1 ? DIGEST_V1 : DIGEST_V2;
	if (s->version == DIGEST_V1)
		hash_digest_init(&s->flat, size, 4096);
	else
		merkle_stream_init(&s->tree, size);
}

void merkle_sum_leaves(struct merkle_sum *s, const uint8_t *leaves, size_t count)
{
	if (s->version == DIGEST_V1)
		hash_digest_leaves(&s->flat, leaves, count);
	else
		merkle_stream_leaves(&s->tree, leaves, count);
}

void merkle_sum_final(struct merkle_sum *s, uint8_t ret[DIGEST_BYTES])
{
	if (s->version == DIGEST_V1)
		hash_digest_final(&s->flat, ret);
	else
		merkle_stream_final(&s->tree, ret);
}
