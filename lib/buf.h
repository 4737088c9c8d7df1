/* buf.h - the one bounds-checked reader and growable writer for wire and file
 * data (modelled on OpenSSH's sshbuf).  Every get checks the remaining length
 * first; nothing else in Bascule does pointer arithmetic on untrusted bytes.
 * Integers are big-endian on the wire. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* A read-only view of untrusted bytes.  Never owns its memory. */
struct rbuf {
	const uint8_t *p;
	size_t len, off;
};

/* A growable output buffer with a hard maximum. */
struct wbuf {
	uint8_t *p;
	size_t len, cap, max;
};

#define BUF_MAX_DEFAULT (64u << 20)

static inline struct rbuf rbuf_init(const void *p, size_t len)
{
	return (struct rbuf){ .p = p, .len = len, .off = 0 };
}
static inline size_t rbuf_left(const struct rbuf *b) { return b->len - b->off; }

/* All getters return 0, or -EBADMSG when fewer bytes remain than asked; the
 * output is untouched on failure. */
int rbuf_get_u8(struct rbuf *b, uint8_t *ret);
int rbuf_get_u16(struct rbuf *b, uint16_t *ret);
int rbuf_get_u32(struct rbuf *b, uint32_t *ret);
int rbuf_get_u64(struct rbuf *b, uint64_t *ret);
int rbuf_get_bytes(struct rbuf *b, void *dst, size_t n);
/* Point *ret at the next N bytes (no copy) and skip them. */
int rbuf_get_view(struct rbuf *b, size_t n, const uint8_t **ret);
/* A u16-length-prefixed string copied into DST (NUL-terminated); fails with
 * -EBADMSG if it does not fit in DSTLEN-1 bytes or contains a NUL. */
int rbuf_get_str(struct rbuf *b, char *dst, size_t dstlen);
/* -EBADMSG unless every byte was consumed (exact length checks). */
int rbuf_expect_end(const struct rbuf *b);

void wbuf_init(struct wbuf *b, size_t max);
void wbuf_free(struct wbuf *b);
void wbuf_reset(struct wbuf *b);
/* Make room for N more bytes; -ENOBUFS past the maximum, -ENOMEM. */
int wbuf_reserve(struct wbuf *b, size_t n);
int wbuf_put_u8(struct wbuf *b, uint8_t v);
int wbuf_put_u16(struct wbuf *b, uint16_t v);
int wbuf_put_u32(struct wbuf *b, uint32_t v);
int wbuf_put_u64(struct wbuf *b, uint64_t v);
int wbuf_put_bytes(struct wbuf *b, const void *src, size_t n);
int wbuf_put_str(struct wbuf *b, const char *s);
/* Drop the first N bytes (consumed output). */
void wbuf_consume(struct wbuf *b, size_t n);

void put_be32(uint8_t *p, uint32_t v);
uint32_t get_be32(const uint8_t *p);
void put_be64(uint8_t *p, uint64_t v);
uint64_t get_be64(const uint8_t *p);
