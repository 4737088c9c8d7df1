/* vpg.c - PostgreSQL sources in the vault: the manifest's description of
 * their bases and WAL, and the sealed objects holding their bytes (vpg.h). */
#include "vpg.h"
#include "err.h"
#include "pgwal.h"
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static const uint8_t PG_AD[] = "bscv-pg-v1";
static const char WAL_DIGEST[] = "bascule vault wal v1";

/* ---- the manifest's part ---- */

/* Each put checked: the first that fails (past the buffer's maximum, out of
 * memory, a name too long) ends the encoding with its error. */
#define PUT(x)                          \
	do {                            \
		if ((r = (x)) < 0)      \
			goto out;       \
	} while (0)

static int put_ref(struct wbuf *b, const struct vpg_ref *r)
{
	int e;

	if ((e = wbuf_put_bytes(b, r->obj, VAULT_NAME)) < 0)
		return e;
	return wbuf_put_u64(b, r->size);
}

int vpg_encode(struct wbuf *b, const struct vman_pg *p, uint32_t n)
{
	int r;

	PUT(wbuf_put_u32(b, n));
	for (uint32_t i = 0; i < n; i++) {
		const struct vman_pg *x = &p[i];
		PUT(wbuf_put_str(b, x->name));
		PUT(wbuf_put_u64(b, x->system_id));
		PUT(wbuf_put_u32(b, x->tli));
		PUT(wbuf_put_u64(b, x->base_id));
		PUT(wbuf_put_u64(b, x->end_lsn));
		PUT(wbuf_put_bytes(b, x->chain, 32));
		PUT(wbuf_put_u32(b, x->n_bases));
		for (uint32_t k = 0; k < x->n_bases; k++) {
			const struct vpg_base *B = &x->bases[k];
			PUT(wbuf_put_u64(b, B->id));
			PUT(wbuf_put_u32(b, B->tli));
			PUT(wbuf_put_u64(b, B->epoch));
			PUT(wbuf_put_u64(b, B->arrived));
			PUT(wbuf_put_u64(b, B->bytes));
			PUT(wbuf_put_bytes(b, B->digest, 32));
			PUT(wbuf_put_u32(b, B->n_files));
			for (uint32_t f = 0; f < B->n_files; f++) {
				const struct vpg_file *F = &B->files[f];
				PUT(wbuf_put_str(b, F->name));
				PUT(wbuf_put_u64(b, F->size));
				PUT(wbuf_put_u32(b, F->n));
				for (uint32_t q = 0; q < F->n; q++) {
					PUT(wbuf_put_u32(b, F->p[q].len));
					PUT(put_ref(b, &F->p[q].ref));
				}
			}
		}
		PUT(wbuf_put_u32(b, x->n_wal));
		for (uint32_t w = 0; w < x->n_wal; w++) {
			PUT(wbuf_put_u32(b, x->wal[w].len));
			PUT(wbuf_put_bytes(b, x->wal[w].digest, 32));
			PUT(put_ref(b, &x->wal[w].ref));
		}
	}
	r = b->len >= b->max ? -EFBIG : 0; /* the caller's own puts after ours must still fit */
out:
	return r == -ENOBUFS ? -EFBIG : r;
}
#undef PUT

void vpg_clear(struct vman_pg *p)
{
	if (!p)
		return;
	for (uint32_t k = 0; p->bases && k < p->n_bases; k++) {
		for (uint32_t f = 0; p->bases[k].files && f < p->bases[k].n_files; f++)
			free(p->bases[k].files[f].p);
		free(p->bases[k].files);
	}
	free(p->bases);
	free(p->wal);
	memset(p, 0, sizeof(*p));
}

void vpg_free(struct vman_pg *p, uint32_t n)
{
	for (uint32_t i = 0; p && i < n; i++)
		vpg_clear(&p[i]);
	free(p);
}

static bool file_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 64 || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static int get_ref(struct rbuf *b, struct vpg_ref *r)
{
	if (rbuf_get_bytes(b, r->obj, VAULT_NAME) < 0 || rbuf_get_u64(b, &r->size) < 0 || !r->size ||
	    r->size > VAULT_OBJ_MAX)
		return -EBADMSG;
	return 0;
}

/* Smallest encodings, to bound counts by what is left. */
#define REF_BYTES (VAULT_NAME + 8)
#define PIECE_BYTES (4 + REF_BYTES)
#define WAL_BYTES (4 + 32 + REF_BYTES)
#define FILE_BYTES (2 + 1 + 8 + 4)
#define BASE_BYTES (8 + 4 + 8 + 8 + 8 + 32 + 4)

static int get_base(struct rbuf *b, struct vpg_base *B)
{
	uint64_t total = 0;

	if (rbuf_get_u64(b, &B->id) < 0 || rbuf_get_u32(b, &B->tli) < 0 || rbuf_get_u64(b, &B->epoch) < 0 ||
	    rbuf_get_u64(b, &B->arrived) < 0 || rbuf_get_u64(b, &B->bytes) < 0 || rbuf_get_bytes(b, B->digest, 32) < 0 ||
	    rbuf_get_u32(b, &B->n_files) < 0 || !B->id || !B->tli || !B->n_files || B->n_files > VPG_MAX_FILES ||
	    B->n_files > rbuf_left(b) / FILE_BYTES)
		return -EBADMSG;
	if (!(B->files = calloc(B->n_files, sizeof(*B->files))))
		return -ENOMEM;
	for (uint32_t f = 0; f < B->n_files; f++) {
		struct vpg_file *F = &B->files[f];
		uint64_t off = 0;
		if (rbuf_get_str(b, F->name, sizeof(F->name)) < 0 || !file_name_ok(F->name) ||
		    rbuf_get_u64(b, &F->size) < 0 || rbuf_get_u32(b, &F->n) < 0 || F->n > rbuf_left(b) / PIECE_BYTES ||
		    (F->size && !F->n) || F->size > (uint64_t)F->n * VPG_OBJ_RAW)
			return -EBADMSG;
		for (uint32_t g = 0; g < f; g++)
			if (!strcmp(B->files[g].name, F->name))
				return -EBADMSG;
		if (!(F->p = calloc(F->n ? F->n : 1, sizeof(*F->p))))
			return -ENOMEM;
		for (uint32_t q = 0; q < F->n; q++) {
			struct vpg_piece *P = &F->p[q];
			if (rbuf_get_u32(b, &P->len) < 0 || !P->len || P->len > VPG_OBJ_RAW || get_ref(b, &P->ref) < 0 ||
			    P->len > F->size - off)
				return -EBADMSG;
			P->off = off;
			off += P->len;
		}
		if (off != F->size)
			return -EBADMSG;
		/* A timeline's history file travels with the base, outside its
		 * bytes and digest (tools/vault_pg.c). */
		if (!pgwal_history_file(F->name, &(uint32_t){ 0 }))
			total += F->size;
	}
	return total == B->bytes ? 0 : -EBADMSG;
}

static int get_one(struct rbuf *b, struct vman_pg *x)
{
	uint64_t at;
	int r;

	if (rbuf_get_str(b, x->name, sizeof(x->name)) < 0 || !name_ok(x->name) || rbuf_get_u64(b, &x->system_id) < 0 ||
	    rbuf_get_u32(b, &x->tli) < 0 || rbuf_get_u64(b, &x->base_id) < 0 || rbuf_get_u64(b, &x->end_lsn) < 0 ||
	    rbuf_get_bytes(b, x->chain, 32) < 0 || rbuf_get_u32(b, &x->n_bases) < 0 || !x->tli || !x->n_bases ||
	    x->n_bases > VPG_MAX_BASES || x->n_bases > rbuf_left(b) / BASE_BYTES)
		return -EBADMSG;
	if (!(x->bases = calloc(x->n_bases, sizeof(*x->bases))))
		return -ENOMEM;
	for (uint32_t k = 0; k < x->n_bases; k++) {
		if ((r = get_base(b, &x->bases[k])) < 0)
			return r;
		/* oldest first, of the WAL's timeline, within it */
		if ((k && x->bases[k].id <= x->bases[k - 1].id) || x->bases[k].tli != x->tli ||
		    x->bases[k].id > x->end_lsn)
			return -EBADMSG;
	}
	if (rbuf_get_u32(b, &x->n_wal) < 0 || x->n_wal > rbuf_left(b) / WAL_BYTES)
		return -EBADMSG;
	if (!(x->wal = calloc(x->n_wal ? x->n_wal : 1, sizeof(*x->wal))))
		return -ENOMEM;
	/* The pieces end at END_LSN and go back, contiguous, past the oldest base's segment start. */
	at = x->end_lsn;
	for (uint32_t w = 0; w < x->n_wal; w++) {
		struct vpg_wal *W = &x->wal[w];
		if (rbuf_get_u32(b, &W->len) < 0 || !W->len || W->len > VPG_OBJ_RAW ||
		    rbuf_get_bytes(b, W->digest, 32) < 0 || get_ref(b, &W->ref) < 0)
			return -EBADMSG;
	}
	for (uint32_t w = x->n_wal; w-- > 0;) {
		if (x->wal[w].len > at)
			return -EBADMSG;
		at -= x->wal[w].len;
		x->wal[w].start = at;
	}
	if (at > vpg_seg_start(x->bases[0].id))
		return -EBADMSG;
	return 0;
}

int vpg_decode(struct rbuf *b, struct vman_pg **ret, uint32_t *ret_n)
{
	struct vman_pg *p = NULL;
	uint32_t n;
	int r = -EBADMSG;

	if (rbuf_get_u32(b, &n) < 0 || n > VPG_MAX_SOURCES)
		return -EBADMSG;
	if (!(p = calloc(n ? n : 1, sizeof(*p))))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		if ((r = get_one(b, &p[i])) < 0)
			goto bad;
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(p[j].name, p[i].name)) {
				r = -EBADMSG;
				goto bad;
			}
	}
	*ret = p;
	*ret_n = n;
	return 0;
bad:
	vpg_free(p, n);
	return r;
}

int vpg_copy(struct vman_pg *dst, const struct vman_pg *src)
{
	struct vman_pg d = *src;

	d.bases = NULL;
	d.wal = NULL;
	d.n_bases = d.n_wal = 0;
	if (src->n_bases && !(d.bases = calloc(src->n_bases, sizeof(*d.bases))))
		goto nomem;
	for (uint32_t k = 0; k < src->n_bases; k++, d.n_bases++) {
		const struct vpg_base *S = &src->bases[k];
		struct vpg_base *B = &d.bases[k];
		*B = *S;
		B->files = NULL;
		B->n_files = 0;
		if (!(B->files = calloc(S->n_files ? S->n_files : 1, sizeof(*B->files))))
			goto nomem;
		for (uint32_t f = 0; f < S->n_files; f++, B->n_files++) {
			B->files[f] = S->files[f];
			B->files[f].p = NULL;
			if (!(B->files[f].p = malloc((S->files[f].n ? S->files[f].n : 1) * sizeof(struct vpg_piece))))
				goto nomem;
			memcpy(B->files[f].p, S->files[f].p, S->files[f].n * sizeof(struct vpg_piece));
		}
	}
	if (!(d.wal = malloc((src->n_wal ? src->n_wal : 1) * sizeof(*d.wal))))
		goto nomem;
	memcpy(d.wal, src->wal, src->n_wal * sizeof(*d.wal));
	d.n_wal = src->n_wal;
	vpg_clear(dst);
	*dst = d;
	return 0;
nomem:
	vpg_clear(&d);
	return -ENOMEM;
}

int vpg_each_object(const struct vman_pg *p, int (*fn)(void *ctx, const struct vpg_ref *r), void *ctx)
{
	int r;

	for (uint32_t k = 0; k < p->n_bases; k++)
		for (uint32_t f = 0; f < p->bases[k].n_files; f++)
			for (uint32_t q = 0; q < p->bases[k].files[f].n; q++)
				if ((r = fn(ctx, &p->bases[k].files[f].p[q].ref)) < 0)
					return r;
	for (uint32_t w = 0; w < p->n_wal; w++)
		if ((r = fn(ctx, &p->wal[w].ref)) < 0)
			return r;
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return memcmp(a, b, VAULT_NAME);
}

struct listed {
	uint8_t (*names)[VAULT_NAME];
	uint32_t n;
};

static int listed_fn(void *ctx, const struct vpg_ref *r)
{
	const struct listed *l = ctx;
	return bsearch(r->obj, l->names, l->n, VAULT_NAME, cmp_name) ? 0 : -EBADMSG;
}

int vpg_check_listed(const struct vman_pg *p, uint32_t n, const uint8_t (*obj)[VAULT_NAME], uint32_t n_obj)
{
	struct listed l = { malloc(((size_t)n_obj + 1) * VAULT_NAME), n_obj };
	int r = 0;

	if (!l.names)
		return -ENOMEM;
	memcpy(l.names, obj, (size_t)n_obj * VAULT_NAME);
	qsort(l.names, n_obj, VAULT_NAME, cmp_name);
	for (uint32_t i = 0; i < n && r == 0; i++)
		r = vpg_each_object(&p[i], listed_fn, &l);
	free(l.names);
	return r;
}

const struct vpg_base *vpg_base_for(const struct vman_pg *p, uint64_t at)
{
	const struct vpg_base *b = NULL;

	for (uint32_t k = 0; k < p->n_bases; k++)
		if (!at || p->bases[k].arrived <= at)
			b = &p->bases[k];
	return b;
}

int vpg_wal_find(const struct vman_pg *p, uint64_t lsn)
{
	for (uint32_t w = 0; w < p->n_wal; w++)
		if (lsn >= p->wal[w].start && lsn - p->wal[w].start < p->wal[w].len)
			return (int)w;
	return -ENOENT;
}

/* ---- objects ---- */

/* Plaintext: u8 kind, u32 timeline, string file, u64 position, u32 length,
 * then the bytes, zstd-compressed. */
int vpg_obj_seal(const struct vkeys *k, int kind, uint32_t tli, const char *file, uint64_t pos, const uint8_t *data,
		 uint32_t len, void *zctx, struct wbuf *out)
{
	struct wbuf pt;
	size_t bound = ZSTD_compressBound(len), z;
	int r;

	if (!len || len > VPG_OBJ_RAW)
		return -EINVAL;
	wbuf_init(&pt, bound + 256);
	wbuf_put_u8(&pt, (uint8_t)kind);
	wbuf_put_u32(&pt, tli);
	wbuf_put_str(&pt, file);
	wbuf_put_u64(&pt, pos);
	wbuf_put_u32(&pt, len);
	if ((r = wbuf_reserve(&pt, bound)) < 0)
		goto out;
	z = ZSTD_compressCCtx(zctx, pt.p + pt.len, bound, data, len, 1);
	if (ZSTD_isError(z)) {
		r = err_set(EIO, "zstd: %s", ZSTD_getErrorName(z));
		goto out;
	}
	pt.len += z;
	r = vault_seal(k->data, PG_AD, sizeof(PG_AD), pt.p, pt.len, 0, out);
out:
	sodium_memzero(pt.p, pt.cap);
	wbuf_free(&pt);
	return r;
}

int vpg_obj_open(const struct vkeys *k, const uint8_t *obj, size_t objlen, int kind, uint32_t tli, const char *file,
		 uint64_t pos, uint32_t len, void *dctx, uint8_t *out)
{
	uint8_t *pt = NULL, gk;
	size_t plen;
	struct rbuf b;
	uint32_t gt, gl;
	uint64_t gp;
	char gf[NAME_MAX_LEN + 1];
	const uint8_t *z;
	size_t n;
	int r;

	if ((r = vault_unseal(k->data, PG_AD, sizeof(PG_AD), obj, objlen, &pt, &plen)) < 0)
		return -EBADMSG;
	b = rbuf_init(pt, plen);
	r = -EBADMSG;
	if (rbuf_get_u8(&b, &gk) < 0 || rbuf_get_u32(&b, &gt) < 0 || rbuf_get_str(&b, gf, sizeof(gf)) < 0 ||
	    rbuf_get_u64(&b, &gp) < 0 || rbuf_get_u32(&b, &gl) < 0)
		goto out;
	if (gk != kind || gt != tli || strcmp(gf, file) || gp != pos || gl != len)
		goto out; /* another object than the manifest says */
	n = rbuf_left(&b);
	if (rbuf_get_view(&b, n, &z) < 0)
		goto out;
	n = ZSTD_decompressDCtx(dctx, out, len, z, n);
	if (ZSTD_isError(n) || n != len)
		goto out;
	r = 0;
out:
	sodium_memzero(pt, plen);
	free(pt);
	return r;
}

void vpg_wal_digest(const struct vkeys *k, uint32_t tli, uint64_t start, const uint8_t *data, uint32_t len,
		    uint8_t ret[32])
{
	crypto_generichash_state st;
	uint8_t h[16];

	put_be32(h, tli);
	put_be64(h + 4, start);
	put_be32(h + 12, len);
	crypto_generichash_init(&st, k->names, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)WAL_DIGEST, sizeof(WAL_DIGEST));
	crypto_generichash_update(&st, h, sizeof(h));
	crypto_generichash_update(&st, data, len);
	crypto_generichash_final(&st, ret, 32);
}
