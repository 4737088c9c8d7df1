/* vault_pg.c - the PostgreSQL part of the vault writer (vault_pg.h).
 *
 * An epoch's PGSOURCE says where its WAL goes on from: where the vault's
 * copy ends (the same system, timeline and base), or, with a base, either
 * there too (a newer base: the chain goes on unbroken) or from the base's
 * segment start (a new chain: the first base, another timeline, a copy
 * behind the daemon's spool).  WAL and base files are cut into pieces of
 * VPG_OBJ_RAW bytes, each sealed and uploaded as soon as it is full.  At the
 * commit the epoch keeps the newest base that arrived before it and any
 * newer (the one it brought), and the WAL from the oldest kept base's
 * segment start: enough for every recovery target since the previous
 * epoch, nothing older (older epochs' manifests keep what they need until
 * prune drops them). */
#include "vault_pg.h"
#include "err.h"
#include "log.h"
#include "pgwal.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vpgsrc_free(struct vpgsrc *p)
{
	if (!p)
		return;
	vpg_clear(&p->cur);
	vpg_clear(&p->next);
	wbuf_free(&p->buf);
	free(p);
}

struct vsrc *writer_slot(struct writer *w, uint32_t idx, const char *name)
{
	struct vsrc *x = &w->cur->src[idx];

	if (!strcmp(x->name, name))
		return x;
	for (uint32_t j = 0; j < PROTO_MAX_SOURCES; j++)
		if (j != idx && w->cur->src[j].name[0] && !strcmp(w->cur->src[j].name, name) &&
		    !w->cur->src[j].touched) {
			struct vsrc t = *x;
			*x = w->cur->src[j];
			w->cur->src[j] = t;
			break;
		}
	return x;
}

/* ---- receiving ---- */

static struct vpgsrc *active(struct writer *w, uint32_t src)
{
	struct vsrc *x;

	if (!w->cur || src >= w->n_sources)
		return NULL;
	x = &w->cur->src[src];
	return x->pg && x->pg->active ? x->pg : NULL;
}

int vpg_recv_source(void *ctx, const struct msg_pgsource *m)
{
	struct writer *w = ctx;
	struct vsrc *x;
	struct vpgsrc *p;
	const struct vman_pg *c;
	bool chain, fresh;
	int r;

	if (m->idx >= w->n_sources)
		return err_set(EPROTO, "bad PGSOURCE %u", m->idx);
	x = writer_slot(w, m->idx, m->name);
	if (x->touched)
		return err_set(EPROTO, "source %u of the epoch described twice", m->idx);
	if (!x->pg || strcmp(x->name, m->name)) {
		/* A new source in this slot: whatever it held goes (a disk's
		 * blocks are no longer counted as kept for dedup). */
		writer_map_refs(w, &x->map, -1);
		vmap_free(&x->map);
		free(x->deltas);
		x->deltas = NULL;
		x->n_deltas = 0;
		x->have = false;
		vpgsrc_free(x->pg);
		if (!(x->pg = calloc(1, sizeof(*x->pg))))
			return -ENOMEM;
		wbuf_init(&x->pg->buf, VPG_OBJ_RAW);
		snprintf(x->name, sizeof(x->name), "%s", m->name);
	}
	p = x->pg;
	if (m->flags & PGSRC_TIMELINE)
		return err_set(EPROTO, "%s/%s: a timeline switch without a base backup is not stored in a vault",
			       w->cur->name, m->name);
	c = &p->cur;
	chain = p->have && c->system_id == m->system_id && c->tli == m->timeline && m->start_lsn == c->end_lsn;
	fresh = (m->flags & PGSRC_BASE) && m->start_lsn == vpg_seg_start(m->base_id);
	if (!(m->flags & PGSRC_BASE) ? !chain || m->base_id != c->base_id : !chain && !fresh)
		return err_set(EPROTO, "%s/%s: the daemon sent WAL from %" PRIX64 " of base %" PRIX64 ", the vault's "
			       "copy ends at %" PRIX64 " of base %" PRIX64, w->cur->name, m->name, m->start_lsn,
			       m->base_id, p->have ? c->end_lsn : 0, p->have ? c->base_id : 0);
	if ((m->flags & PGSRC_BASE) && chain && c->n_bases && m->base_id <= c->bases[c->n_bases - 1].id)
		return err_set(EPROTO, "%s/%s: base %" PRIX64 " is not newer than the vault's", w->cur->name, m->name,
			       m->base_id);
	vpg_clear(&p->next);
	if (chain && (r = vpg_copy(&p->next, c)) < 0)
		return r;
	snprintf(p->next.name, sizeof(p->next.name), "%s", m->name);
	p->next.system_id = m->system_id;
	p->next.tli = m->timeline;
	p->next.base_id = m->base_id;
	p->next.end_lsn = m->end_lsn;
	memcpy(p->next.chain, m->wal_digest, 32);
	p->base = -1;
	if (m->flags & PGSRC_BASE) {
		struct vpg_base *nb = realloc(p->next.bases, (p->next.n_bases + 1) * sizeof(*nb));
		if (!nb)
			return -ENOMEM;
		p->next.bases = nb;
		p->base = (int)p->next.n_bases++;
		memset(&nb[p->base], 0, sizeof(nb[p->base]));
		nb[p->base].id = m->base_id;
		nb[p->base].tli = m->timeline;
		nb[p->base].epoch = w->epoch;
		nb[p->base].arrived = w->cut_time;
		memcpy(nb[p->base].digest, m->base_digest, 32);
		if (!(nb[p->base].files = calloc(VPG_MAX_FILES, sizeof(struct vpg_file))))
			return -ENOMEM;
	}
	p->m = *m;
	p->wal_at = m->start_lsn;
	p->buf_pos = m->start_lsn;
	p->base_got = 0;
	p->files_done = false;
	wbuf_reset(&p->buf);
	p->active = true;
	x->touched = true;
	return 0;
}

/* Seal and upload what BUF holds, as KIND at POS (of FILE). */
static int seal(struct writer *w, struct vpgsrc *p, int kind, const char *file, uint64_t pos, struct vpg_ref *ret,
		uint8_t digest[32])
{
	struct wbuf o;
	int r;

	wbuf_init(&o, VAULT_OBJ_MAX);
	if (digest)
		vpg_wal_digest(&w->k, p->m.timeline, pos, p->buf.p, (uint32_t)p->buf.len, digest);
	if ((r = vpg_obj_seal(&w->k, kind, p->m.timeline, file, pos, p->buf.p, (uint32_t)p->buf.len, w->zctx, &o)) == 0 &&
	    (r = writer_upload(w, o.p, o.len, ret->obj)) == 0)
		ret->size = o.len;
	wbuf_free(&o);
	return r;
}

static int end_files(struct writer *w, struct vpgsrc *p);

static int wal_flush(struct writer *w, struct vpgsrc *p)
{
	struct vpg_wal *nw, *W;
	int r;

	if (!p->buf.len)
		return 0;
	if (!(nw = realloc(p->next.wal, (p->next.n_wal + 1) * sizeof(*nw))))
		return -ENOMEM;
	p->next.wal = nw;
	W = &nw[p->next.n_wal];
	memset(W, 0, sizeof(*W));
	W->start = p->buf_pos;
	W->len = (uint32_t)p->buf.len;
	if ((r = seal(w, p, VPG_WAL, "", W->start, &W->ref, W->digest)) < 0)
		return r;
	p->next.n_wal++;
	p->buf_pos += p->buf.len;
	wbuf_reset(&p->buf);
	return 0;
}

/* LEN bytes of DATA into P's buffer, FLUSH sealing it each time it holds
 * VPG_OBJ_RAW; AT (if not NULL) advanced by what was buffered. */
static int fill(struct writer *w, struct vpgsrc *p, const uint8_t *data, uint32_t len,
		int (*flush)(struct writer *, struct vpgsrc *), uint64_t *at)
{
	int r;

	while (len) {
		uint32_t n = VPG_OBJ_RAW - (uint32_t)p->buf.len;
		if (n > len)
			n = len;
		if ((r = wbuf_put_bytes(&p->buf, data, n)) < 0)
			return r;
		data += n;
		len -= n;
		if (at)
			*at += n;
		if (p->buf.len == VPG_OBJ_RAW && (r = flush(w, p)) < 0)
			return r;
	}
	return 0;
}

int vpg_recv_wal(void *ctx, uint32_t src, uint64_t lsn, uint32_t len, const uint8_t *data)
{
	struct writer *w = ctx;
	struct vpgsrc *p = active(w, src);
	int r;

	if (!p)
		return err_set(EPROTO, "WAL for source %u, which is not a PostgreSQL source of the epoch", src);
	if (p->base >= 0 && !p->files_done && (r = end_files(w, p)) < 0)
		return r;
	if (lsn != p->wal_at || len > p->m.end_lsn - lsn)
		return err_set(EPROTO, "%s: WAL at %" PRIX64 " (%u bytes), expected at %" PRIX64 " up to %" PRIX64,
			       p->m.name, lsn, len, p->wal_at, p->m.end_lsn);
	return fill(w, p, data, len, wal_flush, &p->wal_at);
}

static int file_flush(struct writer *w, struct vpgsrc *p)
{
	struct vpg_base *B = &p->next.bases[p->base];
	struct vpg_file *F;
	struct vpg_piece *np;
	int r;

	if (!p->buf.len || !B->n_files)
		return 0;
	F = &B->files[B->n_files - 1];
	if (!(np = realloc(F->p, (F->n + 1) * sizeof(*np))))
		return -ENOMEM;
	F->p = np;
	np[F->n].off = p->buf_pos;
	np[F->n].len = (uint32_t)p->buf.len;
	if ((r = seal(w, p, VPG_BASE, F->name, p->buf_pos, &np[F->n].ref, NULL)) < 0)
		return r;
	F->n++;
	p->buf_pos += p->buf.len;
	wbuf_reset(&p->buf);
	return 0;
}

/* The base's files are all there (its last piece uploaded): WAL follows. */
static int end_files(struct writer *w, struct vpgsrc *p)
{
	const struct vpg_base *B = &p->next.bases[p->base];
	bool tar = false;
	int r;

	if ((r = file_flush(w, p)) < 0)
		return r;
	for (uint32_t f = 0; f < B->n_files; f++)
		tar |= !strcmp(B->files[f].name, "base.tar");
	if (p->base_got != p->m.base_bytes || !tar)
		return err_set(EPROTO, "%s/%s: base backup %" PRIX64 " incomplete (%" PRIu64 " of %" PRIu64 " bytes%s)",
			       w->cur->name, p->m.name, p->m.base_id, p->base_got, p->m.base_bytes,
			       tar ? "" : ", no base.tar");
	p->buf_pos = p->wal_at = p->m.start_lsn;
	p->files_done = true;
	return 0;
}

int vpg_recv_basefile(void *ctx, uint32_t src, const char *file, uint64_t off, uint32_t len,
		      const uint8_t *data)
{
	struct writer *w = ctx;
	struct vpgsrc *p = active(w, src);
	struct vpg_base *B;
	struct vpg_file *F;
	uint32_t tli;
	bool hist;
	int r;

	if (!p || p->base < 0 || p->files_done)
		return err_set(EPROTO, "BASEFILE for source %u, which brings no base backup in this epoch (or after "
			       "its WAL)", src);
	B = &p->next.bases[p->base];
	F = B->n_files ? &B->files[B->n_files - 1] : NULL;
	/* TTTTTTTT.history of the base's timeline (or an ancestor): kept as
	 * a file of the base, outside its bytes and digest (the restore
	 * stages it beside the base, restore_pg.c). */
	hist = pgwal_history_file(file, &tli);
	if (hist && (tli < 2 || tli > p->m.timeline || len > PGWAL_HISTORY_MAX || off > PGWAL_HISTORY_MAX - len))
		return err_set(EPROTO, "%s: %s with a base backup of timeline %u, or over %u bytes", p->m.name, file,
			       p->m.timeline, PGWAL_HISTORY_MAX);
	if (!F || strcmp(F->name, file)) {
		/* the next file, from offset 0 */
		if ((r = file_flush(w, p)) < 0)
			return r;
		if (B->n_files == VPG_MAX_FILES || off)
			return err_set(EPROTO, "%s: base file %s at %" PRIu64 ": out of order", p->m.name, file, off);
		for (uint32_t f = 0; f < B->n_files; f++)
			if (!strcmp(B->files[f].name, file))
				return err_set(EPROTO, "%s: base file %s sent twice", p->m.name, file);
		F = &B->files[B->n_files++];
		memset(F, 0, sizeof(*F));
		snprintf(F->name, sizeof(F->name), "%s", file);
		p->buf_pos = 0;
	}
	if (off != F->size || (!hist && len > p->m.base_bytes - p->base_got))
		return err_set(EPROTO, "%s: base file %s at %" PRIu64 ", expected at %" PRIu64, p->m.name, file, off,
			       F->size);
	F->size += len;
	if (!hist) {
		p->base_got += len;
		B->bytes += len;
	}
	return fill(w, p, data, len, file_flush, NULL);
}

int vpg_recv_finish(struct writer *w, struct vsrc *x)
{
	struct vpgsrc *p = x->pg;
	struct vman_pg *n = &p->next;
	uint32_t keep = 0, drop = 0;
	uint64_t from;
	int r;

	if (p->base >= 0 && !p->files_done && (r = end_files(w, p)) < 0)
		return r;
	if ((r = wal_flush(w, p)) < 0)
		return r;
	if (p->buf_pos != p->m.end_lsn)
		return err_set(EPROTO, "%s/%s: the epoch's WAL ends at %" PRIX64 ", PGSOURCE said %" PRIX64,
			       w->cur->name, p->m.name, p->buf_pos, p->m.end_lsn);
	/* The newest base that arrived before this epoch, and any newer. */
	for (uint32_t k = 0; k < n->n_bases; k++)
		if (n->bases[k].epoch < w->epoch)
			keep = k;
	for (uint32_t k = 0; k < keep; k++) {
		for (uint32_t f = 0; f < n->bases[k].n_files; f++)
			free(n->bases[k].files[f].p);
		free(n->bases[k].files);
	}
	memmove(n->bases, n->bases + keep, (n->n_bases - keep) * sizeof(*n->bases));
	n->n_bases -= keep;
	if (!n->n_bases)
		return err_set(EPROTO, "%s/%s: WAL without a base backup", w->cur->name, p->m.name);
	from = vpg_seg_start(n->bases[0].id);
	while (drop < n->n_wal && n->wal[drop].start + n->wal[drop].len <= from)
		drop++;
	memmove(n->wal, n->wal + drop, (n->n_wal - drop) * sizeof(*n->wal));
	n->n_wal -= drop;
	if (n->n_wal ? n->wal[0].start > from : n->end_lsn > from)
		return err_set(EPROTO, "%s/%s: the vault's WAL begins after base %" PRIX64, w->cur->name, p->m.name,
			       n->bases[0].id);
	return 0;
}

void vpg_recv_done(struct vsrc *x, bool ok)
{
	struct vpgsrc *p = x->pg;

	if (!p || !p->active)
		return;
	if (ok) {
		struct vman_pg t = p->cur;
		p->cur = p->next;
		p->next = t;
		p->have = true;
		log_debug("vault: %s kept to %s, %u base(s), %u WAL object(s)", p->cur.name,
			 pgwal_lsn_format(p->cur.end_lsn, (char[PGWAL_LSN_LEN]){ 0 }), p->cur.n_bases, p->cur.n_wal);
	}
	vpg_clear(&p->next);
	wbuf_reset(&p->buf);
	p->active = false;
}

/* ---- the manifest and STATE ---- */

static const struct vman_pg *entry(const struct vsrc *x)
{
	if (!x->pg)
		return NULL;
	if (x->pg->active)
		return &x->pg->next;
	return x->pg->have ? &x->pg->cur : NULL;
}

static int count_fn(void *ctx, const struct vpg_ref *r)
{
	(void)r;
	(*(size_t *)ctx)++;
	return 0;
}

void vpg_manifest_count(const struct vgroup *g, uint32_t *ret_n, size_t *ret_objs)
{
	*ret_n = 0;
	*ret_objs = 0;
	for (uint32_t s = 0; s < g->n_src; s++) {
		const struct vman_pg *e = entry(&g->src[s]);
		if (e) {
			(*ret_n)++;
			vpg_each_object(e, count_fn, ret_objs);
		}
	}
}

static int add_fn(void *ctx, const struct vpg_ref *r)
{
	struct vmanifest *m = ctx;

	memcpy(m->obj[m->n_objects], r->obj, VAULT_NAME);
	m->obj_size[m->n_objects++] = r->size;
	return 0;
}

void vpg_manifest_fill(const struct vgroup *g, struct vman_pg *pg, struct vmanifest *m)
{
	uint32_t n = 0;

	for (uint32_t s = 0; s < g->n_src; s++) {
		const struct vman_pg *e = entry(&g->src[s]);
		if (!e)
			continue;
		pg[n++] = *e;
		vpg_each_object(e, add_fn, m);
	}
}

void vpg_state(const struct vsrc *x, uint64_t epoch, struct state_source *ret)
{
	const struct vman_pg *c = &x->pg->cur;

	ret->epoch = epoch;
	ret->size = 0;
	ret->status = SRC_OK;
	if (!x->pg->have)
		return; /* nothing to go on from: a base */
	memcpy(ret->digest, c->chain, DIGEST_BYTES);
	ret->system_id = c->system_id;
	ret->base_id = c->base_id;
	ret->timeline = c->tli;
	ret->end_lsn = c->end_lsn;
}

int vpg_load(struct writer *w, struct vgroup *g, const struct vman_pg *p)
{
	struct vsrc *x = NULL;
	int r;

	(void)w;
	for (uint32_t s = 0; s < PROTO_MAX_SOURCES && !x; s++)
		if (!g->src[s].name[0])
			x = &g->src[s];
	if (!x)
		return err_set(EBADMSG, "group %s has too many sources", g->name);
	if (!(x->pg = calloc(1, sizeof(*x->pg))))
		return -ENOMEM;
	wbuf_init(&x->pg->buf, VPG_OBJ_RAW);
	if ((r = vpg_copy(&x->pg->cur, p)) < 0)
		return r;
	snprintf(x->name, sizeof(x->name), "%s", p->name);
	x->pg->have = true;
	x->have = true;
	if (g->n_src < (uint32_t)(x - g->src) + 1)
		g->n_src = (uint32_t)(x - g->src) + 1;
	return 0;
}
