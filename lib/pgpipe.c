/* pgpipe.c - frames between a PostgreSQL source's owner and its pgstream
 * child: encoders, and decoders with exact lengths. */
#include "pgpipe.h"
#include "err.h"
#include "pgmsg.h"
#include "pgwal.h"
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define TRY(x) do { int _r = (x); if (_r < 0) return _r; } while (0)
#define BAD(...) err_set(EBADMSG, __VA_ARGS__)

static const struct {
	const char *name;
	int exit_code;
} errors[PGE_MAX + 1] = {
	[PGE_CONNINFO] = { "conninfo", EXIT_CONFIG },
	[PGE_UNREACHABLE] = { "unreachable", EXIT_FAIL },
	[PGE_AUTH] = { "auth", EXIT_KEY },
	[PGE_HBA] = { "hba", EXIT_KEY },
	[PGE_PRIVILEGE] = { "privilege", EXIT_KEY },
	[PGE_WAL_LEVEL] = { "wal_level", EXIT_CONFIG },
	[PGE_SENDERS] = { "senders", EXIT_BUSY },
	[PGE_SLOT_ACTIVE] = { "slot_active", EXIT_BUSY },
	[PGE_WAL_LOST] = { "wal_lost", EXIT_FAIL },
	[PGE_VERSION] = { "version", EXIT_FAIL },
	[PGE_PROTOCOL] = { "protocol", EXIT_INTEGRITY },
	[PGE_SERVER] = { "server", EXIT_FAIL },
	[PGE_ENDED] = { "ended", EXIT_FAIL },
	[PGE_LOST] = { "lost", EXIT_FAIL },
	[PGE_SANDBOX] = { "sandbox", EXIT_CONFIG },
	[PGE_COMMAND] = { "command", EXIT_USAGE },
};

const char *pgpipe_error_name(uint32_t code)
{
	return code >= 1 && code <= PGE_MAX ? errors[code].name : NULL;
}

int pgpipe_error_exit(uint32_t code)
{
	return code >= 1 && code <= PGE_MAX ? errors[code].exit_code : EXIT_FAIL;
}

bool pgpipe_label_ok(const char *label)
{
	size_t n = strlen(label);

	return n >= 1 && n <= PGP_MAX_LABEL &&
	       strspn(label, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _.:-") == n;
}

/* A body being assembled: the fixed fields and strings (the data of WAL,
 * archive and history frames is appended to the frame without a copy here). */
struct body {
	uint8_t p[PGP_MAX_TEXT + 1400];
	size_t n;
};
static void b_u8(struct body *b, uint8_t v) { b->p[b->n++] = v; }
static void b_u16(struct body *b, uint16_t v) { b->p[b->n++] = v >> 8; b->p[b->n++] = v & 0xff; }
static void b_u32(struct body *b, uint32_t v) { put_be32(b->p + b->n, v); b->n += 4; }
static void b_u64(struct body *b, uint64_t v) { put_be64(b->p + b->n, v); b->n += 8; }
/* S must be at most MAX bytes (MAX + 2 <= room left): checked by callers. */
static void b_str(struct body *b, const char *s, size_t n)
{
	b_u16(b, (uint16_t)n);
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static int put_frame(struct wbuf *out, uint8_t type, const struct body *b, const void *data, uint32_t len)
{
	uint8_t hdr[PGP_HDR_BYTES] = { 0 };
	size_t body = b->n + len;
	int r;

	if (body > PGP_MAX_BODY)
		return -EINVAL;
	put_be32(hdr, (uint32_t)body);
	hdr[4] = type;
	if ((r = wbuf_reserve(out, PGP_HDR_BYTES + body)) < 0)
		return r;
	wbuf_put_bytes(out, hdr, sizeof(hdr));
	wbuf_put_bytes(out, b->p, b->n);
	wbuf_put_bytes(out, data, len);
	return 0;
}

int pgpipe_put_hello(struct wbuf *out, const struct pgp_hello *h)
{
	struct body b = { .n = 0 };

	b_u16(&b, h->version);
	b_u32(&b, h->server_version);
	b_u64(&b, h->system_id);
	b_u32(&b, h->timeline);
	b_u64(&b, h->xlogpos);
	b_u32(&b, h->segsize);
	b_u8(&b, h->slot);
	b_u64(&b, h->slot_lsn);
	b_u32(&b, h->slot_tli);
	return put_frame(out, PGP_HELLO, &b, NULL, 0);
}

int pgpipe_put_pos(struct wbuf *out, uint8_t type, uint32_t tli, uint64_t lsn)
{
	struct body b = { .n = 0 };

	if (type != PGP_STREAMING && type != PGP_START)
		return -EINVAL;
	b_u32(&b, tli);
	b_u64(&b, lsn);
	return put_frame(out, type, &b, NULL, 0);
}

int pgpipe_put_wal(struct wbuf *out, uint32_t tli, uint64_t lsn, const void *data, uint32_t len)
{
	struct body b = { .n = 0 };

	if (!len || len > PGP_MAX_DATA)
		return -EINVAL;
	b_u32(&b, tli);
	b_u64(&b, lsn);
	return put_frame(out, PGP_WAL, &b, data, len);
}

int pgpipe_put_keepalive(struct wbuf *out, uint64_t wal_end, int64_t server_time)
{
	struct body b = { .n = 0 };

	b_u64(&b, wal_end);
	b_u64(&b, (uint64_t)server_time);
	return put_frame(out, PGP_KEEPALIVE, &b, NULL, 0);
}

int pgpipe_put_timeline(struct wbuf *out, uint32_t tli, uint64_t end, uint32_t next_tli, uint64_t next_start)
{
	struct body b = { .n = 0 };

	b_u32(&b, tli);
	b_u64(&b, end);
	b_u32(&b, next_tli);
	b_u64(&b, next_start);
	return put_frame(out, PGP_TIMELINE, &b, NULL, 0);
}

int pgpipe_put_history(struct wbuf *out, uint32_t tli, const void *data, uint32_t len)
{
	struct body b = { .n = 0 };

	if (len > PGP_MAX_DATA)
		return -EINVAL;
	b_u32(&b, tli);
	return put_frame(out, PGP_HISTORY, &b, data, len);
}

int pgpipe_put_bb_start(struct wbuf *out, uint64_t lsn, uint32_t tli, uint32_t n_tablespaces)
{
	struct body b = { .n = 0 };

	b_u64(&b, lsn);
	b_u32(&b, tli);
	b_u32(&b, n_tablespaces);
	return put_frame(out, PGP_BB_START, &b, NULL, 0);
}

int pgpipe_put_archive(struct wbuf *out, const char *name, const char *spclocation)
{
	struct body b = { .n = 0 };
	size_t n = strlen(name), m = strlen(spclocation);

	if (n > PGMSG_ARCHIVE_MAX || m > PGMSG_PATH_MAX)
		return -EINVAL;
	b_str(&b, name, n);
	b_str(&b, spclocation, m);
	return put_frame(out, PGP_BB_ARCHIVE, &b, NULL, 0);
}

int pgpipe_put_data(struct wbuf *out, const void *data, uint32_t len)
{
	struct body b = { .n = 0 };

	if (!len || len > PGP_MAX_DATA)
		return -EINVAL;
	return put_frame(out, PGP_BB_DATA, &b, data, len);
}

int pgpipe_put_progress(struct wbuf *out, uint64_t done)
{
	struct body b = { .n = 0 };

	b_u64(&b, done);
	return put_frame(out, PGP_BB_PROGRESS, &b, NULL, 0);
}

int pgpipe_put_manifest(struct wbuf *out)
{
	struct body b = { .n = 0 };

	return put_frame(out, PGP_BB_MANIFEST, &b, NULL, 0);
}

int pgpipe_put_bb_end(struct wbuf *out, uint64_t lsn, uint32_t tli)
{
	struct body b = { .n = 0 };

	b_u64(&b, lsn);
	b_u32(&b, tli);
	return put_frame(out, PGP_BB_END, &b, NULL, 0);
}

char *pgpipe_flatten(char *dst, size_t len, const char *src)
{
	size_t n = 0;

	for (const char *s = src; *s && n + 1 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\n') {
			if (!s[1] || n + 3 > len)
				break;
			dst[n++] = ';';
			dst[n++] = ' ';
		} else
			dst[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	dst[n] = 0;
	return dst;
}

int pgpipe_put_error(struct wbuf *out, uint32_t code, const char *text)
{
	struct body b = { .n = 0 };
	char t[PGP_MAX_TEXT + 1];

	pgpipe_flatten(t, sizeof(t), text);
	b_u32(&b, code);
	b_str(&b, t, strlen(t));
	return put_frame(out, PGP_ERROR, &b, NULL, 0);
}

int pgpipe_put_flushed(struct wbuf *out, uint64_t lsn)
{
	struct body b = { .n = 0 };

	b_u64(&b, lsn);
	return put_frame(out, PGP_FLUSHED, &b, NULL, 0);
}

int pgpipe_put_base_backup(struct wbuf *out, uint8_t flags, const char *label)
{
	struct body b = { .n = 0 };

	if (!pgpipe_label_ok(label) || (flags & ~(PGP_BBF_FAST | PGP_BBF_PROGRESS)))
		return -EINVAL;
	b_u8(&b, flags);
	b_str(&b, label, strlen(label));
	return put_frame(out, PGP_BASE_BACKUP, &b, NULL, 0);
}

/* A u16-prefixed string of printable characters only. */
static int get_text(struct rbuf *b, char *dst, size_t dstlen)
{
	if (rbuf_get_str(b, dst, dstlen) < 0)
		return -EBADMSG;
	for (const char *s = dst; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return -EBADMSG;
	return 0;
}

int pgpipe_decode(uint8_t type, const uint8_t *body, uint32_t len, struct pgp_msg *ret)
{
	struct rbuf b = rbuf_init(body, len);
	struct pgp_msg m;
	const uint8_t *v;
	uint64_t t;

	memset(&m, 0, sizeof(m));
	m.type = type;
	switch (type) {
	case PGP_HELLO: {
		struct pgp_hello *h = &m.u.hello;
		if (rbuf_get_u16(&b, &h->version) < 0 || rbuf_get_u32(&b, &h->server_version) < 0 ||
		    rbuf_get_u64(&b, &h->system_id) < 0 || rbuf_get_u32(&b, &h->timeline) < 0 ||
		    rbuf_get_u64(&b, &h->xlogpos) < 0 || rbuf_get_u32(&b, &h->segsize) < 0 ||
		    rbuf_get_u8(&b, &h->slot) < 0 || rbuf_get_u64(&b, &h->slot_lsn) < 0 ||
		    rbuf_get_u32(&b, &h->slot_tli) < 0 || rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream HELLO (%u bytes)", len);
		if (h->version != PGP_VERSION)
			return BAD("pgstream speaks pipe version %u, this program %u: install one version of bascule",
				   h->version, PGP_VERSION);
		if (h->timeline == 0 || !pgwal_segsize_ok(h->segsize) || h->slot > PGP_SLOT_CREATED ||
		    (h->slot_lsn == 0) != (h->slot_tli == 0) || (h->slot == PGP_SLOT_NONE && h->slot_lsn))
			return BAD("pgstream HELLO out of bounds");
		break;
	}
	case PGP_STREAMING:
	case PGP_START:
		if (rbuf_get_u32(&b, &m.u.pos.tli) < 0 || rbuf_get_u64(&b, &m.u.pos.lsn) < 0 ||
		    rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream %s", type == PGP_START ? "START" : "STREAMING");
		/* START (0, T): the slot's position on timeline T (pgpipe.h). */
		if (type == PGP_STREAMING ? m.u.pos.tli == 0 : m.u.pos.lsn && !m.u.pos.tli)
			return BAD("pgstream %s out of bounds", type == PGP_START ? "START" : "STREAMING");
		break;
	case PGP_WAL:
		if (rbuf_get_u32(&b, &m.u.wal.tli) < 0 || rbuf_get_u64(&b, &m.u.wal.lsn) < 0)
			return BAD("malformed pgstream WAL");
		m.u.wal.len = (uint32_t)rbuf_left(&b);
		if (m.u.wal.tli == 0 || m.u.wal.len == 0 || m.u.wal.len > PGP_MAX_DATA ||
		    m.u.wal.lsn > UINT64_MAX - m.u.wal.len || rbuf_get_view(&b, m.u.wal.len, &m.u.wal.data) < 0)
			return BAD("pgstream WAL out of bounds");
		break;
	case PGP_KEEPALIVE:
		if (rbuf_get_u64(&b, &m.u.keepalive.wal_end) < 0 || rbuf_get_u64(&b, &t) < 0 ||
		    rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream KEEPALIVE");
		m.u.keepalive.server_time = (int64_t)t;
		break;
	case PGP_TIMELINE:
		if (rbuf_get_u32(&b, &m.u.timeline.tli) < 0 || rbuf_get_u64(&b, &m.u.timeline.end) < 0 ||
		    rbuf_get_u32(&b, &m.u.timeline.next_tli) < 0 ||
		    rbuf_get_u64(&b, &m.u.timeline.next_start) < 0 || rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream TIMELINE");
		if (m.u.timeline.tli == 0 || m.u.timeline.next_tli <= m.u.timeline.tli ||
		    m.u.timeline.next_start > m.u.timeline.end)
			return BAD("pgstream TIMELINE out of bounds");
		break;
	case PGP_HISTORY:
		if (rbuf_get_u32(&b, &m.u.history.tli) < 0)
			return BAD("malformed pgstream HISTORY");
		m.u.history.len = (uint32_t)rbuf_left(&b);
		if (m.u.history.tli < 2 || m.u.history.len > PGP_MAX_DATA ||
		    rbuf_get_view(&b, m.u.history.len, &m.u.history.data) < 0 ||
		    memchr(m.u.history.data, 0, m.u.history.len))
			return BAD("pgstream HISTORY out of bounds");
		break;
	case PGP_BB_START:
		if (rbuf_get_u64(&b, &m.u.bb_start.lsn) < 0 || rbuf_get_u32(&b, &m.u.bb_start.tli) < 0 ||
		    rbuf_get_u32(&b, &m.u.bb_start.n_tablespaces) < 0 || rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream BB_START");
		if (m.u.bb_start.tli == 0 || m.u.bb_start.n_tablespaces == 0 || m.u.bb_start.n_tablespaces > 4096)
			return BAD("pgstream BB_START out of bounds");
		break;
	case PGP_BB_ARCHIVE: {
		char *n = m.u.archive.name, *l = m.u.archive.spclocation;
		if (get_text(&b, n, PGMSG_ARCHIVE_MAX + 1) < 0 || get_text(&b, l, PGMSG_PATH_MAX + 1) < 0 ||
		    rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream BB_ARCHIVE");
		if (!n[0] || n[0] == '.' || strpbrk(n, "/\\") || (l[0] && l[0] != '/'))
			return BAD("pgstream BB_ARCHIVE out of bounds");
		break;
	}
	case PGP_BB_DATA:
		m.u.data.len = len;
		if (len == 0 || len > PGP_MAX_DATA || rbuf_get_view(&b, len, &v) < 0)
			return BAD("pgstream BB_DATA out of bounds");
		m.u.data.data = v;
		break;
	case PGP_BB_PROGRESS:
		if (rbuf_get_u64(&b, &m.u.done) < 0 || rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream BB_PROGRESS");
		break;
	case PGP_BB_MANIFEST:
		if (rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream BB_MANIFEST");
		break;
	case PGP_BB_END:
		if (rbuf_get_u64(&b, &m.u.bb_end.lsn) < 0 || rbuf_get_u32(&b, &m.u.bb_end.tli) < 0 ||
		    rbuf_expect_end(&b) < 0 || m.u.bb_end.tli == 0)
			return BAD("malformed pgstream BB_END");
		break;
	case PGP_ERROR:
		if (rbuf_get_u32(&b, &m.u.error.code) < 0 ||
		    get_text(&b, m.u.error.text, sizeof(m.u.error.text)) < 0 || rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream ERROR");
		if (!pgpipe_error_name(m.u.error.code))
			return BAD("pgstream ERROR with unknown code %u", m.u.error.code);
		break;
	case PGP_FLUSHED:
		if (rbuf_get_u64(&b, &m.u.flushed) < 0 || rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream FLUSHED");
		break;
	case PGP_BASE_BACKUP:
		if (rbuf_get_u8(&b, &m.u.base_backup.flags) < 0 ||
		    rbuf_get_str(&b, m.u.base_backup.label, sizeof(m.u.base_backup.label)) < 0 ||
		    rbuf_expect_end(&b) < 0)
			return BAD("malformed pgstream BASE_BACKUP");
		if ((m.u.base_backup.flags & ~(PGP_BBF_FAST | PGP_BBF_PROGRESS)) ||
		    !pgpipe_label_ok(m.u.base_backup.label))
			return BAD("pgstream BASE_BACKUP out of bounds");
		break;
	default:
		return BAD("unknown pgstream frame type %u", type);
	}
	*ret = m;
	return 0;
}

int pgpipe_next(const struct wbuf *in, size_t *off, enum pgp_side side, struct pgp_msg *ret)
{
	size_t left = *off <= in->len ? in->len - *off : 0;
	const uint8_t *h = in->p + *off;
	uint32_t len;
	uint8_t type;
	int r;

	if (left < PGP_HDR_BYTES)
		return 0;
	len = get_be32(h);
	type = h[4];
	if (h[5] || h[6] || h[7])
		return BAD("pgstream frame with flags or reserved bits set");
	if ((side == PGP_OWNER) != (type < PGP_START))
		return BAD("pgstream frame type %u is not sent %s", type,
			   side == PGP_OWNER ? "by the child" : "by its owner");
	if (len > PGP_MAX_BODY)
		return BAD("pgstream frame of %u bytes (the maximum is %u)", len, PGP_MAX_BODY);
	if (left - PGP_HDR_BYTES < len)
		return 0;
	if ((r = pgpipe_decode(type, h + PGP_HDR_BYTES, len, ret)) < 0)
		return r;
	*off += PGP_HDR_BYTES + len;
	return 1;
}

int pgpipe_bb_order(struct pgp_bb_order *o, uint8_t type)
{
	uint8_t s = o->stage;
	bool ok;

	switch (type) {
	case PGP_BB_START: ok = s == 0; s = 1; break;
	case PGP_BB_ARCHIVE: ok = s == 1 || s == 2; s = 2; break;
	case PGP_BB_DATA: ok = s == 2 || s == 3; break;
	case PGP_BB_PROGRESS: ok = s >= 1 && s <= 3; break;
	case PGP_BB_MANIFEST: ok = s == 2; s = 3; break;
	case PGP_BB_END: ok = s == 2 || s == 3; s = 4; break;
	default: ok = false; break;
	}
	if (!ok)
		return err_set(EPROTO, "pgstream base backup frame %u out of order (stage %u)", type, o->stage);
	if (type == PGP_BB_ARCHIVE)
		o->archives++;
	o->stage = s;
	return 0;
}

void pgpipe_io_init(struct pgpipe_io *io, int rfd, int wfd, size_t max_in, size_t max_out)
{
	*io = (struct pgpipe_io){ .rfd = rfd, .wfd = wfd };
	wbuf_init(&io->in, max_in);
	wbuf_init(&io->out, max_out);
	if (rfd >= 0)
		fcntl(rfd, F_SETFL, fcntl(rfd, F_GETFL) | O_NONBLOCK);
	if (wfd >= 0)
		fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
}

void pgpipe_io_free(struct pgpipe_io *io)
{
	if (!io)
		return;
	wbuf_free(&io->in);
	wbuf_free(&io->out);
}

int pgpipe_io_read(struct pgpipe_io *io)
{
	ssize_t n;
	int r;

	/* Drop what was parsed before reading more. */
	if (io->in_off) {
		wbuf_consume(&io->in, io->in_off);
		io->in_off = 0;
	}
	if ((r = wbuf_reserve(&io->in, 64u << 10)) < 0 && (r = wbuf_reserve(&io->in, 1)) < 0)
		return r;
	n = read(io->rfd, io->in.p + io->in.len, io->in.cap - io->in.len);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
	if (n == 0)
		io->eof = true;
	io->in.len += (size_t)n;
	return (int)n;
}

int pgpipe_io_next(struct pgpipe_io *io, enum pgp_side side, struct pgp_msg *ret)
{
	return pgpipe_next(&io->in, &io->in_off, side, ret);
}

int pgpipe_io_flush(struct pgpipe_io *io)
{
	while (io->out_off < io->out.len) {
		ssize_t n = write(io->wfd, io->out.p + io->out_off, io->out.len - io->out_off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -errno;
		}
		io->out_off += (size_t)n;
		io->out_written += (uint64_t)n;
	}
	/* Compact once half of the buffer is written (no memmove per write). */
	if (io->out_off == io->out.len) {
		io->out.len = io->out_off = 0;
	} else if (io->out_off > io->out.len / 2) {
		wbuf_consume(&io->out, io->out_off);
		io->out_off = 0;
	}
	return 0;
}
