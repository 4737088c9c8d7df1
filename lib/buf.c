/* buf.c - bounds-checked reader and bounded writer. */
#include "buf.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, v >> 32);
	put_be32(p + 4, (uint32_t)v);
}
uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

int rbuf_get_bytes(struct rbuf *b, void *dst, size_t n)
{
	if (rbuf_left(b) < n)
		return -EBADMSG;
	if (n)
		memcpy(dst, b->p + b->off, n);
	b->off += n;
	return 0;
}

int rbuf_get_view(struct rbuf *b, size_t n, const uint8_t **ret)
{
	if (rbuf_left(b) < n)
		return -EBADMSG;
	*ret = b->p + b->off;
	b->off += n;
	return 0;
}

int rbuf_get_u8(struct rbuf *b, uint8_t *ret)
{
	return rbuf_get_bytes(b, ret, 1);
}

int rbuf_get_u16(struct rbuf *b, uint16_t *ret)
{
	uint8_t x[2];
	if (rbuf_get_bytes(b, x, 2) < 0)
		return -EBADMSG;
	*ret = (uint16_t)(x[0] << 8 | x[1]);
	return 0;
}

int rbuf_get_u32(struct rbuf *b, uint32_t *ret)
{
	uint8_t x[4];
	if (rbuf_get_bytes(b, x, 4) < 0)
		return -EBADMSG;
	*ret = get_be32(x);
	return 0;
}

int rbuf_get_u64(struct rbuf *b, uint64_t *ret)
{
	uint8_t x[8];
	if (rbuf_get_bytes(b, x, 8) < 0)
		return -EBADMSG;
	*ret = get_be64(x);
	return 0;
}

int rbuf_get_str(struct rbuf *b, char *dst, size_t dstlen)
{
	struct rbuf save = *b;
	const uint8_t *v;
	uint16_t n;

	if (rbuf_get_u16(b, &n) < 0 || n >= dstlen || rbuf_get_view(b, n, &v) < 0 ||
	    memchr(v, 0, n)) {
		*b = save;
		return -EBADMSG;
	}
	memcpy(dst, v, n);
	dst[n] = 0;
	return 0;
}

int rbuf_expect_end(const struct rbuf *b)
{
	return rbuf_left(b) == 0 ? 0 : -EBADMSG;
}

void wbuf_init(struct wbuf *b, size_t max)
{
	*b = (struct wbuf){ .max = max ? max : BUF_MAX_DEFAULT };
}

void wbuf_free(struct wbuf *b)
{
	if (!b)
		return;
	free(b->p);
	*b = (struct wbuf){ .max = b->max };
}

void wbuf_reset(struct wbuf *b)
{
	b->len = 0;
}

int wbuf_reserve(struct wbuf *b, size_t n)
{
	size_t want, cap;
	uint8_t *np;

	if (n > b->max || b->len > b->max - n)
		return -ENOBUFS;
	want = b->len + n;
	if (want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap *= 2;
	if (cap > b->max)
		cap = b->max;
	np = realloc(b->p, cap);
	if (!np)
		return -ENOMEM;
	b->p = np;
	b->cap = cap;
	return 0;
}

int wbuf_put_bytes(struct wbuf *b, const void *src, size_t n)
{
	int r = wbuf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->p + b->len, src, n);
	b->len += n;
	return 0;
}

int wbuf_put_u8(struct wbuf *b, uint8_t v) { return wbuf_put_bytes(b, &v, 1); }
int wbuf_put_u16(struct wbuf *b, uint16_t v)
{
	uint8_t x[2] = { v >> 8, v & 0xff };
	return wbuf_put_bytes(b, x, 2);
}
int wbuf_put_u32(struct wbuf *b, uint32_t v)
{
	uint8_t x[4];
	put_be32(x, v);
	return wbuf_put_bytes(b, x, 4);
}
int wbuf_put_u64(struct wbuf *b, uint64_t v)
{
	uint8_t x[8];
	put_be64(x, v);
	return wbuf_put_bytes(b, x, 8);
}
int wbuf_put_str(struct wbuf *b, const char *s)
{
	size_t n = strlen(s);
	int r;
	if (n > 0xffff)
		return -ENAMETOOLONG;
	if ((r = wbuf_put_u16(b, (uint16_t)n)) < 0)
		return r;
	return wbuf_put_bytes(b, s, n);
}

void wbuf_consume(struct wbuf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}
