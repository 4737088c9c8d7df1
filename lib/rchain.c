/* rchain.c - a chain of librsync deltas composed into extents (rchain.h).
 * The delta format (librsync's prototab.h): magic 0x72730236, then
 * commands, integers big-endian: 0x00 END; 0x01-0x40 LITERAL of 1-64 bytes;
 * 0x41-0x44 LITERAL with a length of 1, 2, 4 or 8 bytes; 0x45-0x54 COPY
 * with a position of 1, 2, 4 or 8 bytes (major) and a length of 1, 2, 4
 * or 8 bytes (minor). */
#include "rchain.h"
#include "array.h"
#include "err.h"
#include "fsutil.h"
#include <stdlib.h>
#include <string.h>

#define RCHAIN_MAGIC 0x72730236u
#define LIT_BIT (1ull << 63) /* src in the literal file, not the full dump */
#define BUF_LEN (1u << 20)

struct ext {
	uint64_t pos; /* in the night */
	uint64_t src; /* in the full dump, or LIT_BIT | in the literal file */
	uint64_t len;
};

struct night {
	struct ext *v;
	size_t n, cap;
	uint64_t size;
};

struct rchain {
	int full_fd, lit_fd;
	struct night cur, next;
	uint64_t lit_size;      /* bytes in the literal file, buffered ones included */
	uint8_t *lit;           /* literal bytes not yet written */
	size_t lit_len;
	/* the command being parsed */
	uint8_t hdr[17];
	size_t have, want;      /* header bytes read, needed */
	uint64_t lit_left;      /* literal bytes of the current command still to come */
	bool magic_ok, ended;
	rchain_wait_fn wait;    /* the full dump still filling (rchain_wait_full) */
	void *wait_ctx;
};

static int add(struct night *n, uint64_t src, uint64_t len)
{
	struct ext *l = n->n ? &n->v[n->n - 1] : NULL;

	if (!len)
		return 0;
	if (l && (l->src & LIT_BIT) == (src & LIT_BIT) && l->src + l->len == src) {
		l->len += len;
	} else {
		struct ext *v = array_grow(n->v, &n->cap, n->n, sizeof(*v), 1024);
		if (!v)
			return -ENOMEM;
		n->v = v;
		n->v[n->n++] = (struct ext){ .pos = n->size, .src = src, .len = len };
	}
	n->size += len;
	return 0;
}

int rchain_new(int full_fd, uint64_t full_size, int lit_fd, struct rchain **ret)
{
	struct rchain *c = calloc(1, sizeof(*c));

	if (!c || !(c->lit = malloc(BUF_LEN))) {
		free(c);
		return -ENOMEM;
	}
	c->full_fd = full_fd;
	c->lit_fd = lit_fd;
	if (add(&c->cur, 0, full_size) < 0) {
		rchain_free(c);
		return -ENOMEM;
	}
	c->want = 4;
	*ret = c;
	return 0;
}

static int lit_flush(struct rchain *c)
{
	int r = c->lit_len ? fs_write_full(c->lit_fd, c->lit, c->lit_len) : 0;

	if (r < 0)
		return err_set(-r, "cannot write the chain's literal bytes: %s", strerror(-r));
	c->lit_len = 0;
	return 0;
}

/* COPY [POS, POS+LEN) of the current night onto the next one. */
static int copy(struct rchain *c, uint64_t pos, uint64_t len)
{
	const struct night *n = &c->cur;
	size_t lo = 0, hi = n->n;
	int r;

	if (pos > n->size || len > n->size - pos)
		return err_set(EBADMSG, "corrupt delta: COPY of %llu bytes at %llu past the end of its basis "
					"(%llu bytes)", (unsigned long long)len, (unsigned long long)pos,
			       (unsigned long long)n->size);
	while (hi - lo > 1) { /* the extent holding POS */
		size_t mid = lo + (hi - lo) / 2;
		if (n->v[mid].pos <= pos)
			lo = mid;
		else
			hi = mid;
	}
	for (size_t i = lo; len; i++) {
		const struct ext *e = &n->v[i];
		uint64_t skip = pos - e->pos, take = e->len - skip < len ? e->len - skip : len;
		if ((r = add(&c->next, e->src + skip, take)) < 0)
			return r;
		pos += take;
		len -= take;
	}
	return 0;
}

static uint64_t be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static const uint8_t widths[4] = { 1, 2, 4, 8 };

/* The header bytes a command byte OP needs in all (OP included). */
static size_t cmd_len(uint8_t op)
{
	if (op >= 0x41 && op <= 0x44)
		return 1 + widths[op - 0x41];
	if (op >= 0x45 && op <= 0x54)
		return 1 + widths[(op - 0x45) / 4] + widths[(op - 0x45) % 4];
	return 1;
}

static int command(struct rchain *c)
{
	uint8_t op = c->hdr[0];

	if (op == 0) {
		c->ended = true;
	} else if (op <= 0x40) {
		c->lit_left = op;
	} else if (op <= 0x44) {
		c->lit_left = be(c->hdr + 1, widths[op - 0x41]);
	} else if (op <= 0x54) {
		size_t pw = widths[(op - 0x45) / 4], lw = widths[(op - 0x45) % 4];
		return copy(c, be(c->hdr + 1, pw), be(c->hdr + 1 + pw, lw));
	} else {
		return err_set(EBADMSG, "corrupt delta: unknown command 0x%02x", op);
	}
	if (c->lit_left && (c->lit_left > (1ull << 40) ||
			    add(&c->next, LIT_BIT | c->lit_size, c->lit_left) < 0))
		return c->lit_left > (1ull << 40) ? err_set(EBADMSG, "corrupt delta: a literal of %llu bytes",
							     (unsigned long long)c->lit_left)
						  : -ENOMEM;
	return 0;
}

int rchain_feed(struct rchain *c, const uint8_t *p, size_t n)
{
	int r;

	while (n) {
		if (c->ended)
			return err_set(EBADMSG, "corrupt delta: data after its END command");
		if (c->lit_left) {
			size_t take = c->lit_left < n ? (size_t)c->lit_left : n;
			if (take > BUF_LEN - c->lit_len)
				take = BUF_LEN - c->lit_len;
			memcpy(c->lit + c->lit_len, p, take);
			c->lit_len += take;
			c->lit_size += take;
			c->lit_left -= take;
			p += take;
			n -= take;
			if (c->lit_len == BUF_LEN && (r = lit_flush(c)) < 0)
				return r;
			continue;
		}
		c->hdr[c->have++] = *p++;
		n--;
		if (!c->magic_ok) {
			if (c->have < 4)
				continue;
			if (be(c->hdr, 4) != RCHAIN_MAGIC)
				return err_set(EBADMSG, "corrupt delta: not a librsync delta (magic %08llx)",
					       (unsigned long long)be(c->hdr, 4));
			c->magic_ok = true;
			c->have = 0;
			continue;
		}
		if (c->have == 1)
			c->want = cmd_len(c->hdr[0]);
		if (c->have < c->want)
			continue;
		c->have = 0;
		if ((r = command(c)) < 0)
			return r;
	}
	return 0;
}

int rchain_end(struct rchain *c, uint64_t *ret_size)
{
	struct night t;
	int r;

	if (!c->ended || c->lit_left || c->have)
		return err_set(EBADMSG, "corrupt delta: it ends before its END command");
	if ((r = lit_flush(c)) < 0)
		return r;
	t = c->cur;
	c->cur = c->next;
	c->next = (struct night){ .v = t.v, .cap = t.cap };
	c->magic_ok = c->ended = false;
	c->want = 4;
	*ret_size = c->cur.size;
	return 0;
}

int rchain_write(struct rchain *c, rchain_out_fn out, void *ctx)
{
	uint8_t *buf = malloc(BUF_LEN);
	size_t fill = 0;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < c->cur.n && r == 0; i++) {
		const struct ext *e = &c->cur.v[i];
		int fd = e->src & LIT_BIT ? c->lit_fd : c->full_fd;
		uint64_t src = e->src & ~LIT_BIT, left = e->len;
		while (left && r == 0) {
			size_t take = BUF_LEN - fill < left ? BUF_LEN - fill : (size_t)left;
			ssize_t got;
			if (fd == c->full_fd && c->wait && (r = c->wait(c->wait_ctx, src + take)) < 0)
				break;
			got = fs_pread_full(fd, buf + fill, take, src);
			if (got != (ssize_t)take) {
				r = err_set(got < 0 ? (int)-got : EIO, "cannot read the %s at %llu: %s",
					    fd == c->lit_fd ? "chain's literal bytes" : "full dump",
					    (unsigned long long)src, got < 0 ? strerror((int)-got) : "short read");
				break;
			}
			fill += take;
			src += take;
			left -= take;
			if (fill == BUF_LEN) {
				r = out(ctx, buf, fill);
				fill = 0;
			}
		}
	}
	if (r == 0 && fill)
		r = out(ctx, buf, fill);
	free(buf);
	return r;
}

void rchain_wait_full(struct rchain *c, rchain_wait_fn wait, void *ctx)
{
	c->wait = wait;
	c->wait_ctx = ctx;
}

size_t rchain_extents(const struct rchain *c)
{
	return c->cur.n;
}

void rchain_free(struct rchain *c)
{
	if (!c)
		return;
	free(c->cur.v);
	free(c->next.v);
	if (c->lit)
		explicit_bzero(c->lit, BUF_LEN); /* bytes of the dump */
	free(c->lit);
	free(c);
}
