/* pgproto.c - PGSOURCE, WAL and BASEFILE bodies, and the chained WAL digest
 * (docs/protocol.md, section 7). */
#include "pgproto.h"
#include "err.h"
#include "proto.h"
#include <string.h>

#define TRY(x) do { int _r = (x); if (_r < 0) return _r; } while (0)
#define BAD(...) err_set(EBADMSG, __VA_ARGS__)

static const uint8_t zero_digest[DIGEST_BYTES];

int pgproto_put_pgsource(struct wbuf *b, const struct msg_pgsource *m)
{
	TRY(wbuf_put_u32(b, m->idx));
	TRY(wbuf_put_str(b, m->name));
	TRY(wbuf_put_u64(b, m->system_id));
	TRY(wbuf_put_u64(b, m->base_id));
	TRY(wbuf_put_u32(b, m->timeline));
	TRY(wbuf_put_u64(b, m->start_lsn));
	TRY(wbuf_put_u64(b, m->end_lsn));
	TRY(wbuf_put_bytes(b, m->wal_digest, DIGEST_BYTES));
	TRY(wbuf_put_u8(b, m->flags));
	TRY(wbuf_put_u64(b, m->base_bytes));
	return wbuf_put_bytes(b, m->base_digest, DIGEST_BYTES);
}

int pgproto_get_pgsource(struct rbuf *b, struct msg_pgsource *ret)
{
	struct msg_pgsource m = { 0 }; /* whole, padding and name tail too: callers compare and store it */

	if (rbuf_get_u32(b, &m.idx) < 0 || rbuf_get_str(b, m.name, sizeof(m.name)) < 0)
		return BAD("malformed PGSOURCE");
	if (!name_ok(m.name))
		return BAD("invalid source name in PGSOURCE");
	if (rbuf_get_u64(b, &m.system_id) < 0 || rbuf_get_u64(b, &m.base_id) < 0 ||
	    rbuf_get_u32(b, &m.timeline) < 0 || rbuf_get_u64(b, &m.start_lsn) < 0 ||
	    rbuf_get_u64(b, &m.end_lsn) < 0 || rbuf_get_bytes(b, m.wal_digest, DIGEST_BYTES) < 0 ||
	    rbuf_get_u8(b, &m.flags) < 0 || rbuf_get_u64(b, &m.base_bytes) < 0 ||
	    rbuf_get_bytes(b, m.base_digest, DIGEST_BYTES) < 0 || rbuf_expect_end(b) < 0)
		return BAD("malformed PGSOURCE");
	if (m.idx >= PROTO_MAX_SOURCES || m.base_id == 0 || m.timeline == 0 || m.start_lsn > m.end_lsn ||
	    m.end_lsn > PGPROTO_MAX_LSN || (m.flags & ~(PGSRC_BASE | PGSRC_TIMELINE)))
		return BAD("PGSOURCE out of bounds");
	if (!(m.flags & PGSRC_BASE) && (m.base_bytes || memcmp(m.base_digest, zero_digest, DIGEST_BYTES)))
		return BAD("PGSOURCE describes a base backup it does not carry");
	if ((m.flags & PGSRC_BASE) && m.base_bytes > PGPROTO_MAX_FILE)
		return BAD("PGSOURCE announces a base backup of %llu bytes", (unsigned long long)m.base_bytes);
	*ret = m;
	return 0;
}

int pgproto_put_wal_hdr(struct wbuf *b, const struct msg_wal *m)
{
	TRY(wbuf_put_u32(b, m->src));
	TRY(wbuf_put_u64(b, m->lsn));
	TRY(wbuf_put_u32(b, m->raw_len));
	return wbuf_put_u8(b, m->enc);
}

/* The data after a header: raw (exactly RAW_LEN bytes) or one zstd frame. */
static int get_data(struct rbuf *b, uint8_t enc, uint32_t raw_len, const uint8_t **data, uint32_t *len,
		    const char *what)
{
	size_t left = rbuf_left(b);

	if (enc != EXT_RAW && enc != EXT_ZSTD)
		return BAD("%s with encoding %u", what, enc);
	if ((enc == EXT_RAW && left != raw_len) || (enc == EXT_ZSTD && (left == 0 || left > PGPROTO_MAX_WAL + 4096)))
		return BAD("%s carries %zu bytes for %u", what, left, raw_len);
	*len = (uint32_t)left;
	*data = NULL;
	return left ? rbuf_get_view(b, left, data) : 0;
}

int pgproto_get_wal(struct rbuf *b, struct msg_wal *ret)
{
	struct msg_wal m = { 0 };

	if (rbuf_get_u32(b, &m.src) < 0 || rbuf_get_u64(b, &m.lsn) < 0 || rbuf_get_u32(b, &m.raw_len) < 0 ||
	    rbuf_get_u8(b, &m.enc) < 0)
		return BAD("malformed WAL");
	if (m.src >= PROTO_MAX_SOURCES || m.raw_len == 0 || m.raw_len > PGPROTO_MAX_WAL ||
	    m.lsn > PGPROTO_MAX_LSN)
		return BAD("WAL out of bounds");
	TRY(get_data(b, m.enc, m.raw_len, &m.data, &m.data_len, "WAL"));
	*ret = m;
	return 0;
}

int pgproto_put_basefile_hdr(struct wbuf *b, const struct msg_basefile *m)
{
	TRY(wbuf_put_u32(b, m->src));
	TRY(wbuf_put_str(b, m->file));
	TRY(wbuf_put_u64(b, m->offset));
	TRY(wbuf_put_u32(b, m->raw_len));
	return wbuf_put_u8(b, m->enc);
}

int pgproto_get_basefile(struct rbuf *b, struct msg_basefile *ret)
{
	struct msg_basefile m = { 0 };

	if (rbuf_get_u32(b, &m.src) < 0 || rbuf_get_str(b, m.file, sizeof(m.file)) < 0)
		return BAD("malformed BASEFILE");
	if (!name_ok(m.file))
		return BAD("invalid file name in BASEFILE");
	if (rbuf_get_u64(b, &m.offset) < 0 || rbuf_get_u32(b, &m.raw_len) < 0 || rbuf_get_u8(b, &m.enc) < 0)
		return BAD("malformed BASEFILE");
	if (m.src >= PROTO_MAX_SOURCES || m.raw_len > PGPROTO_MAX_WAL || m.offset > PGPROTO_MAX_FILE ||
	    m.raw_len > PGPROTO_MAX_FILE - m.offset || (m.raw_len == 0 && m.enc != EXT_RAW))
		return BAD("BASEFILE out of bounds");
	TRY(get_data(b, m.enc, m.raw_len, &m.data, &m.data_len, "BASEFILE"));
	*ret = m;
	return 0;
}

/* ---- digests ---- */

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void pgdigest_wal_key(const struct site_key *k, const char *group, const char *source,
		      uint8_t ret[DIGEST_BYTES])
{
	crypto_generichash_state st;
	static const char what[] = "bascule wal key v1";

	crypto_generichash_init(&st, k->k, sizeof(k->k), DIGEST_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)what, sizeof(what) - 1);
	crypto_generichash_update(&st, (const uint8_t *)group, strlen(group) + 1);
	crypto_generichash_update(&st, (const uint8_t *)source, strlen(source) + 1);
	crypto_generichash_final(&st, ret, DIGEST_BYTES);
}

void pgdigest_base(const uint8_t key[DIGEST_BYTES], uint64_t base_id, const uint8_t base_digest[DIGEST_BYTES],
		   uint8_t ret[DIGEST_BYTES])
{
	crypto_generichash_state st;
	static const char what[] = "bascule wal base v1";
	uint8_t id[8];

	put_be(id, base_id, 8);
	crypto_generichash_init(&st, key, DIGEST_BYTES, DIGEST_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)what, sizeof(what) - 1);
	crypto_generichash_update(&st, id, sizeof(id));
	crypto_generichash_update(&st, base_digest, DIGEST_BYTES);
	crypto_generichash_final(&st, ret, DIGEST_BYTES);
}

void pgdigest_begin(struct pgdigest *d, const uint8_t key[DIGEST_BYTES], const uint8_t prev[DIGEST_BYTES],
		    uint32_t timeline, uint64_t start_lsn, uint64_t end_lsn)
{
	static const char what[] = "bascule wal v1";
	uint8_t h[20];

	put_be(h, timeline, 4);
	put_be(h + 4, start_lsn, 8);
	put_be(h + 12, end_lsn, 8);
	crypto_generichash_init(&d->st, key, DIGEST_BYTES, DIGEST_BYTES);
	crypto_generichash_update(&d->st, (const uint8_t *)what, sizeof(what) - 1);
	crypto_generichash_update(&d->st, prev, DIGEST_BYTES);
	crypto_generichash_update(&d->st, h, sizeof(h));
}

void pgdigest_update(struct pgdigest *d, const void *p, size_t n)
{
	crypto_generichash_update(&d->st, p, n);
}

void pgdigest_final(struct pgdigest *d, uint8_t ret[DIGEST_BYTES])
{
	crypto_generichash_final(&d->st, ret, DIGEST_BYTES);
	sodium_memzero(&d->st, sizeof(d->st));
}

void pgdigest_files_begin(struct pgdigest *d)
{
	crypto_generichash_init(&d->st, NULL, 0, DIGEST_BYTES);
}

void pgdigest_file(struct pgdigest *d, const char *name, uint64_t size)
{
	uint8_t h[2 + NAME_MAX_LEN + 8];
	size_t n = strlen(name);

	put_be(h, n, 2);
	memcpy(h + 2, name, n);
	put_be(h + 2 + n, size, 8);
	crypto_generichash_update(&d->st, h, 2 + n + 8);
}
