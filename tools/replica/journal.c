/* journal.c - redo and undo journals (one format): a header naming the
 * group's sources, extent records, an end record, and a BLAKE2b-256 over
 * all of it keyed with a key derived from the site key, so that a journal
 * nobody holding the key wrote is refused before anything of it is applied.
 * Journals of the earlier, unkeyed format (BSCJRNL1) are read only if the
 * group's upgrade recorded them (state.c, legacy_accepts). */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int jw_flush(struct jwriter *w)
{
	int rc;

	if (!w->buf.len)
		return 0;
	crypto_generichash_update(&w->cs, w->buf.p, w->buf.len);
	rc = fs_write_full(w->fd, w->buf.p, w->buf.len);
	wbuf_reset(&w->buf);
	return rc;
}

int jw_open(struct jwriter *w, struct replica *r, const char *rel, const struct jheader *h)
{
	int rc;

	memset(w, 0, sizeof(*w));
	w->r = r;
	w->fd = -1;
	snprintf(w->path, sizeof(w->path), "%s", rel);
	wbuf_init(&w->buf, JBUF + 64);
	if (!r->key)
		return err_set(ENOKEY, "group %s needs its site key for this (give --key FILE)", h->group);
	crypto_generichash_init(&w->cs, r->mac_key, sizeof(r->mac_key), JSUM);
	if ((w->fd = tree_create(r, rel, 0600)) < 0)
		return w->fd;
	rc = wbuf_put_bytes(&w->buf, J_MAGIC, 8);
	if (!rc) rc = wbuf_put_u8(&w->buf, h->kind);
	if (!rc) rc = wbuf_put_str(&w->buf, h->group);
	if (!rc) rc = wbuf_put_u64(&w->buf, h->epoch);
	if (!rc) rc = wbuf_put_u64(&w->buf, h->prev_epoch);
	if (!rc) rc = wbuf_put_u64(&w->buf, h->cut_time);
	if (!rc) rc = wbuf_put_u64(&w->buf, h->applied_time);
	if (!rc) rc = wbuf_put_u8(&w->buf, h->flags);
	if (!rc) rc = wbuf_put_u32(&w->buf, h->n_sources);
	for (uint32_t i = 0; !rc && i < h->n_sources; i++) {
		const struct jsource *s = &h->sources[i];
		rc = wbuf_put_str(&w->buf, s->name);
		if (!rc) rc = wbuf_put_u64(&w->buf, s->epoch);
		if (!rc) rc = wbuf_put_u64(&w->buf, s->size);
		if (!rc) rc = wbuf_put_u8(&w->buf, s->status);
		if (!rc) rc = wbuf_put_u8(&w->buf, s->exists);
		if (!rc) rc = wbuf_put_bytes(&w->buf, s->digest, DIGEST_BYTES);
		if (!rc) rc = wbuf_put_u8(&w->buf, s->dv);
		if (!rc) rc = wbuf_put_u8(&w->buf, s->pg);
		if (!rc && s->pg) rc = wbuf_put_u64(&w->buf, s->system_id);
		if (!rc && s->pg) rc = wbuf_put_u64(&w->buf, s->base_id);
		if (!rc && s->pg) rc = wbuf_put_u32(&w->buf, s->timeline);
		if (!rc && s->pg) rc = wbuf_put_u64(&w->buf, s->end_lsn);
	}
	return rc;
}

int jw_record(struct jwriter *w, uint32_t src, uint64_t off, uint32_t len, const void *data)
{
	int rc;

	if (w->buf.len + len + 32 > JBUF && (rc = jw_flush(w)) < 0)
		return rc;
	rc = wbuf_put_u8(&w->buf, REC_EXTENT);
	if (!rc) rc = wbuf_put_u32(&w->buf, src);
	if (!rc) rc = wbuf_put_u64(&w->buf, off);
	if (!rc) rc = wbuf_put_u32(&w->buf, len);
	if (!rc) rc = wbuf_put_u8(&w->buf, data ? 1 : 0);
	if (!rc && data)
		rc = wbuf_put_bytes(&w->buf, data, len);
	w->n_records++;
	return rc;
}

int jw_finish(struct jwriter *w, struct syncset *ss)
{
	uint8_t sum[JSUM];
	int rc;

	rc = wbuf_put_u8(&w->buf, REC_END);
	if (!rc) rc = wbuf_put_u64(&w->buf, w->n_records);
	if (!rc) rc = jw_flush(w);
	if (!rc) {
		crypto_generichash_final(&w->cs, sum, sizeof(sum));
		rc = fs_write_full(w->fd, sum, sizeof(sum));
	}
	if (!rc && ss)
		rc = syncset_fd(ss, w->fd, false);
	else if (!rc && fsync(w->fd) < 0)
		rc = -errno;
	if (rc < 0)
		rc = err_set(rc, "cannot write journal %s/%s: %s", w->r->root, w->path, strerror(-rc));
	return rc;
}

void jw_close(struct jwriter *w, bool remove)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (remove && w->r)
		tree_unlink(w->r, w->path);
	wbuf_free(&w->buf);
}

int jr_need(struct jreader *j, size_t n)
{
	if (j->len - j->off >= n)
		return 0;
	memmove(j->buf, j->buf + j->off, j->len - j->off);
	j->len -= j->off;
	j->off = 0;
	while (j->len < n) {
		/* Read what is needed, at least 256 KiB (headers stay cheap to read). */
		size_t want = n - j->len > (256u << 10) ? n - j->len : (256u << 10);
		if (want > JBUF + 64 - j->len)
			want = JBUF + 64 - j->len;
		ssize_t got;
		if (j->pos + want > j->end)
			want = (size_t)(j->end - j->pos);
		if (want == 0)
			return -EBADMSG;
		got = fs_pread_full(j->fd, j->buf + j->len, want, j->pos);
		if (got <= 0)
			return got < 0 ? (int)got : -EBADMSG;
		j->len += (size_t)got;
		j->pos += (uint64_t)got;
	}
	return 0;
}

/* The checksum over [0, END) of J's file: keyed (KEY) or not (NULL). */
static int jr_sum(struct jreader *j, const uint8_t *key, uint8_t ret[JSUM])
{
	crypto_generichash_state cs;

	crypto_generichash_init(&cs, key, key ? JSUM : 0, JSUM);
	for (uint64_t off = 0; off < j->end;) {
		size_t n = j->end - off > JBUF ? JBUF : (size_t)(j->end - off);
		ssize_t got = fs_pread_full(j->fd, j->buf, n, off);
		if (got != (ssize_t)n)
			return err_set(EIO, "cannot read journal %s/%s", j->r->root, j->path);
		crypto_generichash_update(&cs, j->buf, n);
		off += n;
	}
	crypto_generichash_final(&cs, ret, JSUM);
	return 0;
}

/* Check the whole file before anything of it is used: a journal of this
 * format must carry the MAC of the site key's replica key; one of the
 * earlier format (unkeyed) its checksum, and be one the group's upgrade
 * recorded (anything else of that format was written since, by someone
 * without the key). */
static int jr_verify(struct jreader *j, const char *group, const char *name, bool legacy)
{
	uint8_t sum[JSUM], want[JSUM];
	int rc;

	if (!j->r->key)
		return err_set(ENOKEY, "group %s needs its site key to check journal %s (give --key FILE)",
			       group, j->path);
	if (fs_pread_full(j->fd, want, JSUM, j->end) != JSUM)
		return err_set(EBADMSG, "journal %s/%s is truncated", j->r->root, j->path);
	if ((rc = jr_sum(j, legacy ? NULL : j->r->mac_key, sum)) < 0)
		return rc;
	if (sodium_memcmp(sum, want, JSUM) != 0)
		return err_set(EBADMSG, "journal %s/%s fails its %s (forged, or damaged storage): "
					"refused, nothing of it was applied; move it away, then run "
					"bascule replica verify (the primary resynchronises what differs)",
			       j->r->root, j->path, legacy ? "checksum" : "authentication with the site key");
	if (legacy && !legacy_accepts(j->r, group, name, want))
		return err_set(EBADMSG, "journal %s/%s has the earlier, unauthenticated format "
					"(BSCJRNL1), but the group was upgraded without it: it was "
					"written since by someone without the site key (forged?): "
					"refused, nothing of it was applied; move it away",
			       j->r->root, j->path);
	return 0;
}

int jr_open_mode(struct jreader *j, struct replica *r, const char *group, const char *kind,
		 uint64_t epoch, struct jheader *h, bool verify)
{
	uint8_t magic[8];
	char name[64];
	struct stat st;
	struct rbuf b;
	bool legacy, v2 = false, v3 = false;
	int rc = 0;

	memset(j, 0, sizeof(*j));
	j->r = r;
	j->fd = -1;
	snprintf(name, sizeof(name), "%llu.%s", (unsigned long long)epoch, kind);
	if ((rc = gpath(r, j->path, sizeof(j->path), group, "%s/%s",
			!strcmp(kind, "undo") ? "undo" : "journal", name)) < 0)
		return rc;
	if ((j->fd = tree_open(r, j->path, O_RDONLY, 0)) < 0)
		return j->fd == -ENOENT ? err_set(ENOENT, "journal %s/%s is missing", r->root, j->path)
					: j->fd;
	j->buf = malloc(JBUF + 64);
	if (!j->buf)
		return -ENOMEM;
	if (fstat(j->fd, &st) < 0 || st.st_size < 8 + JSUM ||
	    fs_pread_full(j->fd, magic, 8, 0) != 8)
		return err_set(EBADMSG, "journal %s/%s is truncated", r->root, j->path);
	legacy = memcmp(magic, J_MAGIC_V1, 8) == 0;
	v2 = legacy || memcmp(magic, J_MAGIC_V2, 8) == 0; /* no PostgreSQL fields */
	v3 = v2 || memcmp(magic, J_MAGIC_V3, 8) == 0;     /* digests of version 1 */
	if (!v3 && memcmp(magic, J_MAGIC, 8) != 0)
		return err_set(EBADMSG, "journal %s/%s: bad header", r->root, j->path);
	j->end = (uint64_t)st.st_size - JSUM;
	if (verify && (rc = jr_verify(j, group, name, legacy)) < 0)
		return rc;

	memset(h, 0, sizeof(*h));
	if ((rc = jr_need(j, 8 + 1 + 2)) < 0)
		return err_set(EBADMSG, "journal %s/%s: bad header", r->root, j->path);
	/* The header is small: parse from what is buffered (at least 64 KiB or all). */
	jr_need(j, j->end < 65536 ? (size_t)j->end : 65536);
	b = rbuf_init(j->buf + j->off, j->len - j->off);
	if (rbuf_get_bytes(&b, magic, 8) < 0 || rbuf_get_u8(&b, &h->kind) < 0 ||
	    rbuf_get_str(&b, h->group, sizeof(h->group)) < 0 || rbuf_get_u64(&b, &h->epoch) < 0 ||
	    rbuf_get_u64(&b, &h->prev_epoch) < 0 || rbuf_get_u64(&b, &h->cut_time) < 0 ||
	    rbuf_get_u64(&b, &h->applied_time) < 0 || rbuf_get_u8(&b, &h->flags) < 0 ||
	    rbuf_get_u32(&b, &h->n_sources) < 0 || h->n_sources > PROTO_MAX_SOURCES)
		return err_set(EBADMSG, "journal %s/%s: bad header", r->root, j->path);
	/* The journal is the one its name and place say: this group, this epoch. */
	if (strcmp(h->group, group) != 0 || h->epoch != epoch ||
	    h->kind != (!strcmp(kind, "undo") ? J_UNDO : J_REDO))
		return err_set(EBADMSG, "journal %s/%s names group '%s', epoch %llu: not what its place "
					"says; refused",
			       r->root, j->path, h->group, (unsigned long long)h->epoch);
	for (uint32_t i = 0; i < h->n_sources; i++) {
		struct jsource *s = &h->sources[i];
		if (rbuf_get_str(&b, s->name, sizeof(s->name)) < 0 || !name_ok(s->name) ||
		    rbuf_get_u64(&b, &s->epoch) < 0 || rbuf_get_u64(&b, &s->size) < 0 ||
		    rbuf_get_u8(&b, &s->status) < 0 || rbuf_get_u8(&b, &s->exists) < 0 ||
		    s->exists > SEEDED || s->size > PROTO_MAX_SIZE ||
		    rbuf_get_bytes(&b, s->digest, DIGEST_BYTES) < 0 ||
		    (!v3 && (rbuf_get_u8(&b, &s->dv) < 0 || s->dv > DIGEST_V2)) ||
		    (!v2 && rbuf_get_u8(&b, &s->pg) < 0) || (s->pg & ~(JPG_SOURCE | JPG_NEW_BASE)) ||
		    (s->pg && (rbuf_get_u64(&b, &s->system_id) < 0 || rbuf_get_u64(&b, &s->base_id) < 0 ||
			       rbuf_get_u32(&b, &s->timeline) < 0 || rbuf_get_u64(&b, &s->end_lsn) < 0 ||
			       !(s->pg & JPG_SOURCE) || s->exists == SEEDED)))
			return err_set(EBADMSG, "journal %s/%s: bad header", r->root, j->path);
		if (v3)
			s->dv = DIGEST_V1;
		for (uint32_t k = 0; k < i; k++)
			if (strcmp(h->sources[k].name, s->name) == 0)
				return err_set(EBADMSG, "journal %s/%s names source %s twice", r->root,
					       j->path, s->name);
	}
	j->off += b.off;
	return 0;
}

int jr_next(struct jreader *j, uint32_t *src, uint64_t *off, uint32_t *len, const uint8_t **data)
{
	struct rbuf b;
	uint8_t type, kind;

	if (jr_need(j, 1) < 0)
		return -EBADMSG;
	type = j->buf[j->off];
	if (type == REC_END)
		return 0;
	if (type != REC_EXTENT || jr_need(j, 18) < 0)
		return err_set(EBADMSG, "journal %s/%s: bad record", j->r->root, j->path);
	b = rbuf_init(j->buf + j->off + 1, 17);
	rbuf_get_u32(&b, src);
	rbuf_get_u64(&b, off);
	rbuf_get_u32(&b, len);
	rbuf_get_u8(&b, &kind);
	if (*len > PROTO_MAX_EXTENT || kind > 1)
		return err_set(EBADMSG, "journal %s/%s: bad record", j->r->root, j->path);
	j->off += 18;
	if (kind == 0) {
		*data = NULL;
		return 1;
	}
	if (jr_need(j, *len) < 0)
		return err_set(EBADMSG, "journal %s/%s: truncated record", j->r->root, j->path);
	*data = j->buf + j->off;
	j->off += *len;
	return 1;
}

void jr_close(struct jreader *j)
{
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
	free(j->buf);
	j->buf = NULL;
}
