/* journal.c - redo and undo journals (one format): a header naming the
 * group's sources, extent records, an end record and a checksum. */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <sodium.h>
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

int jw_open(struct jwriter *w, const char *path, const struct jheader *h)
{
	int rc;

	memset(w, 0, sizeof(*w));
	snprintf(w->path, sizeof(w->path), "%s", path);
	wbuf_init(&w->buf, JBUF + 64);
	crypto_generichash_init(&w->cs, NULL, 0, 32);
	w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0)
		return err_set(errno, "cannot create %s: %s", path, strerror(errno));
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

/* Trailer, flush, fsync.  The file is complete and durable on success. */
int jw_finish(struct jwriter *w)
{
	uint8_t sum[32];
	int rc;

	rc = wbuf_put_u8(&w->buf, REC_END);
	if (!rc) rc = wbuf_put_u64(&w->buf, w->n_records);
	if (!rc) rc = jw_flush(w);
	if (!rc) {
		crypto_generichash_final(&w->cs, sum, sizeof(sum));
		rc = fs_write_full(w->fd, sum, sizeof(sum));
	}
	if (!rc && fsync(w->fd) < 0)
		rc = -errno;
	if (rc < 0)
		rc = err_set(rc, "cannot write journal %s: %s", w->path, strerror(-rc));
	return rc;
}

void jw_close(struct jwriter *w, bool remove)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (remove)
		unlink(w->path);
	wbuf_free(&w->buf);
}

/* Make at least N bytes available at buf+off (N <= JBUF). */
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

/* Open a journal; with VERIFY, check its checksum over the whole file
 * (journals read back after a crash or for a rollback; one this process
 * has just written and fsync'd is trusted). */
int jr_open_mode(struct jreader *j, const char *path, struct jheader *h, bool verify)
{
	crypto_generichash_state cs;
	uint8_t sum[32], want[32], magic[8];
	struct stat st;
	struct rbuf b;
	int rc = 0;

	memset(j, 0, sizeof(*j));
	j->path = path;
	j->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (j->fd < 0)
		return err_set(errno, "cannot open journal %s: %s", path, strerror(errno));
	j->buf = malloc(JBUF + 64);
	if (!j->buf)
		return -ENOMEM;
	if (fstat(j->fd, &st) < 0 || st.st_size < 40)
		return err_set(EBADMSG, "journal %s is truncated", path);
	j->end = (uint64_t)st.st_size - 32;
	crypto_generichash_init(&cs, NULL, 0, 32);
	for (uint64_t off = 0; verify && off < j->end;) {
		size_t n = j->end - off > JBUF ? JBUF : (size_t)(j->end - off);
		ssize_t got = fs_pread_full(j->fd, j->buf, n, off);
		if (got != (ssize_t)n)
			return err_set(EIO, "cannot read journal %s", path);
		crypto_generichash_update(&cs, j->buf, n);
		off += n;
	}
	crypto_generichash_final(&cs, sum, sizeof(sum));
	if (verify && (fs_pread_full(j->fd, want, 32, j->end) != 32 || sodium_memcmp(sum, want, 32) != 0))
		return err_set(EBADMSG, "journal %s fails its checksum (storage corruption?)", path);

	memset(h, 0, sizeof(*h));
	if ((rc = jr_need(j, 8 + 1 + 2)) < 0)
		return err_set(EBADMSG, "journal %s: bad header", path);
	/* The header is small: parse from what is buffered (at least 64 KiB or all). */
	jr_need(j, j->end < 65536 ? (size_t)j->end : 65536);
	b = rbuf_init(j->buf + j->off, j->len - j->off);
	if (rbuf_get_bytes(&b, magic, 8) < 0 || memcmp(magic, J_MAGIC, 8) != 0 ||
	    rbuf_get_u8(&b, &h->kind) < 0 || rbuf_get_str(&b, h->group, sizeof(h->group)) < 0 ||
	    rbuf_get_u64(&b, &h->epoch) < 0 || rbuf_get_u64(&b, &h->prev_epoch) < 0 ||
	    rbuf_get_u64(&b, &h->cut_time) < 0 || rbuf_get_u64(&b, &h->applied_time) < 0 ||
	    rbuf_get_u8(&b, &h->flags) < 0 || rbuf_get_u32(&b, &h->n_sources) < 0 ||
	    h->n_sources > PROTO_MAX_SOURCES)
		return err_set(EBADMSG, "journal %s: bad header", path);
	for (uint32_t i = 0; i < h->n_sources; i++) {
		struct jsource *s = &h->sources[i];
		if (rbuf_get_str(&b, s->name, sizeof(s->name)) < 0 || !config_name_ok(s->name) ||
		    rbuf_get_u64(&b, &s->epoch) < 0 || rbuf_get_u64(&b, &s->size) < 0 ||
		    rbuf_get_u8(&b, &s->status) < 0 || rbuf_get_u8(&b, &s->exists) < 0 ||
		    rbuf_get_bytes(&b, s->digest, DIGEST_BYTES) < 0)
			return err_set(EBADMSG, "journal %s: bad header", path);
	}
	j->off += b.off;
	return 0;
}

/* Next record: 1 with fields set (DATA NULL for zeros), 0 at the end. */
int jr_next(struct jreader *j, uint32_t *src, uint64_t *off, uint32_t *len,
		   const uint8_t **data)
{
	struct rbuf b;
	uint8_t type, kind;

	if (jr_need(j, 1) < 0)
		return -EBADMSG;
	type = j->buf[j->off];
	if (type == REC_END)
		return 0;
	if (type != REC_EXTENT || jr_need(j, 18) < 0)
		return err_set(EBADMSG, "journal %s: bad record", j->path);
	b = rbuf_init(j->buf + j->off + 1, 17);
	rbuf_get_u32(&b, src);
	rbuf_get_u64(&b, off);
	rbuf_get_u32(&b, len);
	rbuf_get_u8(&b, &kind);
	if (*len > PROTO_MAX_EXTENT || kind > 1)
		return err_set(EBADMSG, "journal %s: bad record", j->path);
	j->off += 18;
	if (kind == 0) {
		*data = NULL;
		return 1;
	}
	if (jr_need(j, *len) < 0)
		return err_set(EBADMSG, "journal %s: truncated record", j->path);
	*data = j->buf + j->off;
	j->off += *len;
	return 1;
}

void jr_close(struct jreader *j)
{
	if (j->fd > 0)
		close(j->fd);
	free(j->buf);
	j->buf = NULL;
}
