/* pgmsg.c - replication protocol CopyData messages, exact lengths. */
#include "pgmsg.h"
#include "buf.h"
#include "clock.h"
#include <errno.h>
#include <string.h>

/* Seconds from 1970-01-01 to 2000-01-01 (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE days). */
#define PG_EPOCH_OFFSET 946684800LL

int pgmsg_get_stream(const void *msg, size_t len, struct pgmsg_stream *ret)
{
	struct rbuf b = rbuf_init(msg, len);
	struct pgmsg_stream m = { 0 };
	uint8_t kind, reply;
	uint64_t t;

	if (rbuf_get_u8(&b, &kind) < 0)
		return -EBADMSG;
	m.kind = (char)kind;
	if (kind == 'w') {
		if (rbuf_get_u64(&b, &m.start) < 0 || rbuf_get_u64(&b, &m.wal_end) < 0 ||
		    rbuf_get_u64(&b, &t) < 0)
			return -EBADMSG;
		m.len = rbuf_left(&b);
		if (m.len > PGMSG_MAX_XLOGDATA || m.start > UINT64_MAX - m.len ||
		    rbuf_get_view(&b, m.len, &m.data) < 0)
			return -EBADMSG;
	} else if (kind == 'k') {
		if (rbuf_get_u64(&b, &m.wal_end) < 0 || rbuf_get_u64(&b, &t) < 0 ||
		    rbuf_get_u8(&b, &reply) < 0 || rbuf_expect_end(&b) < 0 || reply > 1)
			return -EBADMSG;
		m.reply = reply;
	} else
		return -EBADMSG;
	m.send_time = (int64_t)t;
	*ret = m;
	return 0;
}

void pgmsg_put_status(uint8_t out[PGMSG_STATUS_BYTES], uint64_t write, uint64_t flush, uint64_t apply,
		      int64_t now, bool reply)
{
	out[0] = 'r';
	put_be64(out + 1, write);
	put_be64(out + 9, flush);
	put_be64(out + 17, apply);
	put_be64(out + 25, (uint64_t)now);
	out[33] = reply;
}

/* A NUL-terminated string of at most MAX bytes, copied into DST. */
static int get_cstr(struct rbuf *b, char *dst, size_t max)
{
	const uint8_t *p = b->p + b->off, *nul = memchr(p, 0, rbuf_left(b));
	size_t n;

	if (!nul || (n = (size_t)(nul - p)) > max)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return -EBADMSG;
	memcpy(dst, p, n);
	dst[n] = 0;
	b->off += n + 1;
	return 0;
}

int pgmsg_get_backup(const void *msg, size_t len, struct pgmsg_backup *ret)
{
	struct pgmsg_backup m = { 0 };
	struct rbuf b = rbuf_init(msg, len);
	uint8_t kind;

	if (rbuf_get_u8(&b, &kind) < 0)
		return -EBADMSG;
	m.kind = (char)kind;
	switch (kind) {
	case 'n':
		if (get_cstr(&b, m.archive, PGMSG_ARCHIVE_MAX) < 0 ||
		    get_cstr(&b, m.spclocation, PGMSG_PATH_MAX) < 0 || rbuf_expect_end(&b) < 0 ||
		    !m.archive[0] || m.archive[0] == '.' || strpbrk(m.archive, "/\\") ||
		    (m.spclocation[0] && m.spclocation[0] != '/'))
			return -EBADMSG;
		break;
	case 'd':
		m.len = rbuf_left(&b);
		if (rbuf_get_view(&b, m.len, &m.data) < 0)
			return -EBADMSG;
		break;
	case 'p':
		if (rbuf_get_u64(&b, &m.done) < 0 || rbuf_expect_end(&b) < 0)
			return -EBADMSG;
		break;
	case 'm':
		if (rbuf_expect_end(&b) < 0)
			return -EBADMSG;
		break;
	default:
		return -EBADMSG;
	}
	*ret = m;
	return 0;
}

int64_t pgmsg_now(void)
{
	return (int64_t)clock_now_usec() - PG_EPOCH_OFFSET * 1000000;
}
