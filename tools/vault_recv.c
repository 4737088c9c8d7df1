/* vault_recv.c - `bascule vault recv`: the vault writer.  basculed runs it
 * on the primary (the vault key never leaves that machine) for each target
 * of type vault, and speaks the ordinary protocol to it through pipes; this
 * program turns each epoch into write-once objects at the provider.
 *
 * Per epoch: changed blocks are given keyed ids; a block the vault already
 * holds (in a pack the current maps still use, or one uploaded since the
 * last commit) is referenced, not uploaded.  New blocks are packed into
 * frames of consecutive blocks, frames into ~8 MiB packs; each pack is
 * uploaded (exclusive create + fsync) as soon as it is full.  At the end of
 * the epoch each changed source gets an index object (a delta, or a new full
 * base when the deltas have grown), then the signed manifest is written:
 * the commit point.  Only then is the epoch acknowledged.
 *
 * A journal in the cache directory lists packs uploaded since the last
 * commit, so after a crash or a cut link their blocks are found again
 * instead of being re-uploaded (vault_writer.c keeps it and the tables).
 *
 * Started as root, it reads the site key, the vault key and the SSH
 * credentials, opens its cache (and a local: vault) directory, then
 * becomes relay_user in a Landlock sandbox of those directories before the
 * vault's first answer is read; the site key is wiped once the wire holds
 * its session secret (docs/architecture.md, "Privilege separation"). */
#include "cmd.h"
#include "vault_writer.h"
#include "vault_pg.h"
#include "creds.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "log.h"
#include "proto.h"
#include "recvloop.h"
#include "s3.h"
#include "sandbox.h"
#include "ssh.h"
#include "vault.h"
#include "vaultkey.h"
#include "vrecord.h"
#include "vstore.h"
#include "vstore_pool.h"
#include "vstore_s3.h"
#include "vault_cmd.h"
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

/* ---- sink ---- */

static int v_state(void *ctx, struct wbuf *b)
{
	struct writer *w = ctx;
	struct state_group *sg = calloc(1, sizeof(*sg));
	int r = 0;

	if (!sg)
		return -ENOMEM;
	wbuf_put_u32(b, (uint32_t)w->n_groups);
	for (size_t i = 0; i < w->n_groups && r == 0; i++) {
		struct vgroup *g = &w->groups[i];
		memset(sg, 0, sizeof(*sg));
		snprintf(sg->group, sizeof(sg->group), "%s", g->name);
		sg->epoch = g->epoch;
		sg->cut_time = g->cut_time;
		sg->n_sources = g->n_src;
		for (uint32_t s = 0; s < g->n_src; s++) {
			snprintf(sg->sources[s].name, sizeof(sg->sources[s].name), "%s", g->src[s].name);
			if (g->src[s].pg) {
				vpg_state(&g->src[s], g->epoch, &sg->sources[s]);
				continue;
			}
			sg->sources[s].epoch = g->epoch;
			sg->sources[s].size = g->src[s].map.size;
			sg->sources[s].status = SRC_OK;
			memcpy(sg->sources[s].digest, g->src[s].digest, DIGEST_BYTES);
		}
		r = proto_put_state_group(b, sg);
	}
	free(sg);
	return r;
}

static void epoch_drop(struct writer *w)
{
	if (w->cur)
		for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++) {
			struct vsrc *x = &w->cur->src[s];
			vpg_recv_done(x, false);
			vmap_free(&x->next);
			free(x->changed);
			free(x->mark);
			x->changed = NULL;
			x->mark = NULL;
			x->n_changed = x->cap_changed = 0;
			x->touched = x->reset = false;
		}
	w->cur = NULL;
	w->f_n = 0;
	w->pe_n = 0;
	wbuf_reset(&w->pack);
}

static int v_begin(void *ctx, const struct msg_epoch_begin *m)
{
	struct writer *w = ctx;

	epoch_drop(w);
	if (m->n_sources > PROTO_MAX_SOURCES || !m->n_sources)
		return err_set(EPROTO, "epoch %" PRIu64 " of %s has %u sources", m->epoch, m->group, m->n_sources);
	if (!(w->cur = writer_group(w, m->group, true)))
		return -ENOMEM;
	if (m->epoch <= w->cur->epoch)
		return err_set(EPROTO, "epoch %" PRIu64 " of %s is not newer than the vault's %" PRIu64, m->epoch,
			       m->group, w->cur->epoch);
	w->epoch = m->epoch;
	w->up0 = w->bytes_up;
	w->cut_time = m->cut_time;
	w->flags = m->flags;
	w->n_sources = m->n_sources;
	return 0;
}

static int v_source(void *ctx, const struct msg_source *m)
{
	struct writer *w = ctx;
	struct vsrc *x;
	int r;

	if (m->idx >= w->n_sources || m->block_size != VAULT_BLOCK)
		return err_set(EPROTO, "bad SOURCE %u", m->idx);
	x = writer_slot(w, m->idx, m->name);
	if (x->touched)
		return err_set(EPROTO, "source %u of the epoch described twice", m->idx);
	if (x->pg || (x->have && strcmp(x->name, m->name) != 0)) {
		/* The group's sources changed: start this one afresh. */
		vpgsrc_free(x->pg);
		x->pg = NULL;
		x->have = false;
	}
	snprintf(x->name, sizeof(x->name), "%s", m->name);
	if (m->base && (!x->have || m->base != w->cur->epoch))
		return err_set(EPROTO, "the daemon sent %s/%s from epoch %" PRIu64 ", the vault holds %" PRIu64,
			       w->cur->name, m->name, m->base, x->have ? w->cur->epoch : 0);
	x->reset = !m->base || !x->have;
	vmap_free(&x->next);
	if (!x->reset && x->map.n) {
		if (!(x->next.e = malloc(x->map.n * sizeof(struct vloc))))
			return -ENOMEM;
		memcpy(x->next.e, x->map.e, x->map.n * sizeof(struct vloc));
		x->next.n = x->map.n;
		x->next.size = x->map.size;
	}
	if ((r = vmap_resize(&x->next, m->size)) < 0)
		return r;
	free(x->mark);
	if (!(x->mark = calloc(x->next.n / 8 + 1, 1)))
		return -ENOMEM;
	x->n_changed = 0;
	x->touched = true;
	memcpy(x->digest, m->digest, 32);
	return 0;
}

static int mark_changed(struct vsrc *x, uint64_t b)
{
	if (x->mark[b / 8] & (1u << (b % 8)))
		return 0;
	x->mark[b / 8] |= (uint8_t)(1u << (b % 8));
	if (x->n_changed == x->cap_changed) {
		size_t cap = x->cap_changed ? x->cap_changed * 2 : 1024;
		uint64_t *c = realloc(x->changed, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		x->changed = c;
		x->cap_changed = cap;
	}
	x->changed[x->n_changed++] = b;
	return 0;
}

int writer_upload(struct writer *w, const uint8_t *data, size_t len, uint8_t name[VAULT_NAME])
{
	char path[300];
	int r;

	vault_object_name(data, len, name);
	vault_path(name, false, path, sizeof(path));
	r = vstore_put(w->vs, path, data, len);
	if (r == -EEXIST) {
		uint64_t have;
		if (vstore_stat(w->vs, path, &have, NULL) == 0 && have == len)
			return 0; /* same bytes, same name: already there */
		return err_set(EEXIST, "vault %s: %s exists with another size", w->url, path);
	}
	if (r == 0)
		w->bytes_up += len;
	return r;
}

static int pack_flush(struct writer *w)
{
	size_t pad, len = w->pack.len;
	int r;

	if (!w->pack.len)
		return 0;
	/* Padding: random bytes after the last frame (no frame points there). */
	pad = vault_padme(len) - len;
	if ((r = wbuf_reserve(&w->pack, pad)) < 0)
		return r;
	randombytes_buf(w->pack.p + w->pack.len, pad);
	w->pack.len += pad;
	/* Journaled once durable, so that an interrupted epoch reuses it. */
	r = writer_pack_upload(w, &w->pack, w->pack_nonce);
	w->pe_n = 0;
	wbuf_reset(&w->pack);
	randombytes_buf(w->pack_nonce, sizeof(w->pack_nonce));
	return r;
}

static int frame_flush(struct writer *w)
{
	struct vsrc *x;
	uint32_t off = (uint32_t)w->pack.len, len;
	int r;

	if (!w->f_n)
		return 0;
	if ((r = vault_frame_seal(&w->k, w->pack_nonce, w->frame, w->f_n, w->zctx, &w->pack)) < 0)
		return r;
	len = (uint32_t)(w->pack.len - off);
	x = &w->cur->src[w->f_src];
	for (uint32_t i = 0; i < w->f_n; i++) {
		struct vloc *l = &x->next.e[w->f_block + i];
		l->pack = w->packs.n; /* the number this pack gets when uploaded */
		l->off = off;
		l->len = len;
		l->slot = (uint8_t)i;
		memcpy(l->id, w->f_ids[i], VAULT_ID);
		if ((r = writer_dt_put(w, l->id, l)) < 0)
			return r;
		if (w->pe_n == w->pe_cap) {
			size_t cap = w->pe_cap ? w->pe_cap * 2 : 4096;
			struct dent *pe = realloc(w->pe, cap * sizeof(*pe));
			if (!pe)
				return -ENOMEM;
			w->pe = pe;
			w->pe_cap = cap;
		}
		memcpy(w->pe[w->pe_n].id, l->id, VAULT_ID);
		w->pe[w->pe_n].off = l->off;
		w->pe[w->pe_n].len = l->len;
		w->pe[w->pe_n].slot = l->slot;
		w->pe_n++;
	}
	w->blocks_new += w->f_n;
	w->f_n = 0;
	if (w->pack.len >= VAULT_PACK_TARGET)
		return pack_flush(w);
	return 0;
}

static int v_extent(void *ctx, uint32_t src, uint64_t off, uint32_t len, const uint8_t *data)
{
	struct writer *w = ctx;
	static const uint8_t zero[VAULT_BLOCK];
	struct vsrc *x;
	int r;

	if (src >= w->n_sources || off % VAULT_BLOCK)
		return err_set(EPROTO, "extent at %" PRIu64 " of source %u is not block-aligned", off, src);
	x = &w->cur->src[src];
	if (!x->touched || off + len > x->next.size)
		return err_set(EPROTO, "extent beyond the end of %s", x->name);
	for (uint32_t o = 0; o < len; o += VAULT_BLOCK) {
		uint64_t b = (off + o) / VAULT_BLOCK;
		uint32_t n = len - o < VAULT_BLOCK ? len - o : VAULT_BLOCK;
		uint8_t blk[VAULT_BLOCK];
		const uint8_t *p = blk;
		struct vloc l;

		if ((r = mark_changed(x, b)) < 0)
			return r;
		if (data && n == VAULT_BLOCK)
			p = data + o;
		else if (data) {
			memcpy(blk, data + o, n);
			memset(blk + n, 0, VAULT_BLOCK - n);
		}
		if (!data || !memcmp(p, zero, VAULT_BLOCK)) {
			memset(&x->next.e[b], 0, sizeof(x->next.e[b]));
			x->next.e[b].pack = VLOC_ZERO;
			continue;
		}
		vault_block_id(&w->k, p, l.id);
		if (writer_dt_get(w, l.id, &l)) {
			x->next.e[b] = l;
			w->blocks_dedup++;
			continue;
		}
		if (w->f_n && (w->f_src != src || w->f_block + w->f_n != b || w->f_n == VAULT_FRAME_BLOCKS))
			if ((r = frame_flush(w)) < 0)
				return r;
		if (!w->f_n) {
			w->f_src = src;
			w->f_block = b;
		}
		memcpy(w->frame + (size_t)w->f_n * VAULT_BLOCK, p, VAULT_BLOCK);
		memcpy(w->f_ids[w->f_n], l.id, VAULT_ID);
		w->f_n++;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Write the index of one source for this epoch (a delta, or a new base). */
static int write_index(struct writer *w, struct vsrc *x)
{
	struct wbuf b;
	uint8_t name[VAULT_NAME];
	bool full;
	int r;

	qsort(x->changed, x->n_changed, sizeof(uint64_t), cmp_u64);
	/* the map shrank: blocks beyond the end are not deltas */
	while (x->n_changed && x->changed[x->n_changed - 1] >= x->next.n)
		x->n_changed--;
	full = x->reset || !x->have || x->n_deltas >= MAX_DELTAS ||
	       (x->delta_size + (uint64_t)x->n_changed * 24) * DELTA_SHARE > x->base_size;
	wbuf_init(&b, VAULT_OBJ_MAX);
	r = vault_index_encode(&w->k, full, w->epoch, &x->next, x->changed, x->n_changed, &w->packs, &b);
	if (r == 0)
		r = writer_upload(w, b.p, b.len, name);
	if (r == 0)
		r = writer_obj_add(w, name, b.len);
	if (r == 0) {
		if (full) {
			memcpy(x->base, name, VAULT_NAME);
			x->base_size = b.len;
			x->n_deltas = 0;
			x->delta_size = 0;
		} else {
			uint8_t (*d)[VAULT_NAME] = realloc(x->deltas, (x->n_deltas + 1) * VAULT_NAME);
			if (!d)
				r = -ENOMEM;
			else {
				x->deltas = d;
				memcpy(x->deltas[x->n_deltas++], name, VAULT_NAME);
				x->delta_size += b.len;
			}
		}
	}
	wbuf_free(&b);
	return r;
}

static int add_obj(struct vmanifest *m, const uint8_t name[VAULT_NAME], uint64_t size)
{
	memcpy(m->obj[m->n_objects], name, VAULT_NAME);
	m->obj_size[m->n_objects++] = size;
	return 0;
}

static int write_manifest(struct writer *w, struct vgroup *g)
{
	struct vmanifest m;
	uint8_t *used = calloc(w->packs.n + 1, 1);
	size_t cap = w->packs.n + 1, pg_objs;
	uint32_t n_disk = 0;
	struct wbuf b;
	uint8_t name[VAULT_NAME];
	char path[300];
	int r = -ENOMEM;

	memset(&m, 0, sizeof(m));
	wbuf_init(&b, 256u << 20);
	for (uint32_t s = 0; s < g->n_src; s++)
		cap += 1 + g->src[s].n_deltas;
	vpg_manifest_count(g, &m.n_pg, &pg_objs);
	cap += pg_objs;
	m.obj = malloc(cap * VAULT_NAME);
	m.obj_size = malloc(cap * sizeof(uint64_t));
	m.src = calloc(g->n_src + 1, sizeof(*m.src));
	m.pg = calloc(m.n_pg + 1, sizeof(*m.pg));
	if (!used || !m.obj || !m.obj_size || !m.src || !m.pg)
		goto out;
	vault_series(&w->k, g->name, m.series);
	m.epoch = w->epoch;
	m.cut_time = w->cut_time;
	snprintf(m.group, sizeof(m.group), "%s", g->name);
	m.flags = w->flags;
	for (uint32_t s = 0; s < g->n_src; s++) {
		struct vsrc *x = &g->src[s];
		struct vman_source *ms = &m.src[n_disk];
		if (x->pg)
			continue; /* below */
		n_disk++;
		for (uint64_t i = 0; i < x->map.n; i++)
			if (x->map.e[i].pack != VLOC_ZERO)
				used[x->map.e[i].pack] = 1;
		snprintf(ms->name, sizeof(ms->name), "%s", x->name);
		ms->size = x->map.size;
		memcpy(ms->digest, x->digest, 32);
		vault_image_hash(&w->k, &x->map, ms->image);
		memcpy(ms->base, x->base, VAULT_NAME);
		ms->n_deltas = x->n_deltas;
		ms->deltas = x->deltas; /* borrowed */
		add_obj(&m, x->base, x->base_size);
		for (uint32_t d = 0; d < x->n_deltas; d++)
			add_obj(&m, x->deltas[d], writer_obj_size(w, x->deltas[d]));
	}
	m.n_sources = n_disk;
	vpg_manifest_fill(g, m.pg, &m); /* borrowed entries */
	for (uint32_t p = 0; p < w->packs.n; p++)
		if (used[p])
			add_obj(&m, w->packs.p[p].name, w->psize[p]);
	if ((r = vault_manifest_encode(&w->k, &m, &b)) < 0)
		goto out;
	vault_object_name(b.p, b.len, name);
	vault_path(name, true, path, sizeof(path));
	if ((r = vstore_put(w->vs, path, b.p, b.len)) < 0)
		goto out;
	w->bytes_up += b.len;
	/* The epoch is committed at the vault.  The local record lets restore
	 * notice if the provider later deletes or replaces this manifest; not
	 * writing it only weakens that check, so it does not fail the epoch. */
	{
		int e;
		if ((e = vrecord_set(&w->rec, g->name, m.series, m.epoch, m.cut_time, name)) < 0 ||
		    (e = vrecord_save(VRECORD_FILE, &w->rec)) < 0)
			log_warn("vault %s: epoch %" PRIu64 " of %s is committed, but not in the local record: %s",
				 w->url, m.epoch, g->name, err_msg(e));
	}
out:
	for (uint32_t s = 0; m.src && s < g->n_src; s++)
		m.src[s].deltas = NULL;
	free(m.pg); /* its entries are the writer's */
	m.pg = NULL;
	m.n_pg = 0;
	vault_manifest_free(&m);
	free(used);
	wbuf_free(&b);
	return r;
}

static int v_commit(void *ctx, const struct msg_epoch_end *e)
{
	struct writer *w = ctx;
	struct vgroup *g = w->cur;
	int r;

	(void)e;
	for (uint32_t s = 0; s < w->n_sources; s++)
		if (!g->src[s].touched) {
			r = err_set(EPROTO, "epoch %" PRIu64 " of %s lacks source %u", w->epoch, g->name, s);
			goto out;
		}
	/* Every pack of the epoch durable before anything names it. */
	if ((r = frame_flush(w)) < 0 || (r = pack_flush(w)) < 0 || (r = writer_uploads_wait(w)) < 0)
		goto out;
	for (uint32_t s = 0; s < w->n_sources; s++)
		if (g->src[s].pg && (r = vpg_recv_finish(w, &g->src[s])) < 0)
			goto out;
	/* From here on the committed state changes only once the manifest is
	 * written: work on copies of what write_index changes. */
	{
		struct vsrc save[PROTO_MAX_SOURCES];
		for (uint32_t s = 0; s < w->n_sources; s++) {
			save[s] = g->src[s];
			if (g->src[s].n_deltas) {
				save[s].deltas = malloc((size_t)g->src[s].n_deltas * VAULT_NAME);
				if (!save[s].deltas) {
					r = -ENOMEM;
					goto out;
				}
				memcpy(save[s].deltas, g->src[s].deltas, (size_t)g->src[s].n_deltas * VAULT_NAME);
			} else
				save[s].deltas = NULL;
		}
		for (uint32_t s = 0; s < w->n_sources && r == 0; s++) {
			struct vsrc *x = &g->src[s];
			if (!x->pg && (x->reset || x->n_changed || x->next.size != x->map.size || !x->have))
				r = write_index(w, x);
		}
		if (r == 0) {
			/* the new maps become current for the manifest */
			for (uint32_t s = 0; s < w->n_sources; s++) {
				struct vmap t = g->src[s].map;
				g->src[s].map = g->src[s].next;
				g->src[s].next = t;
			}
			g->n_src = w->n_sources;
			r = write_manifest(w, g);
			if (r < 0)
				for (uint32_t s = 0; s < w->n_sources; s++) {
					struct vmap t = g->src[s].map;
					g->src[s].map = g->src[s].next;
					g->src[s].next = t;
				}
		}
		for (uint32_t s = 0; s < w->n_sources; s++) {
			struct vsrc *x = &g->src[s];
			if (r < 0) { /* restore the index chain */
				free(x->deltas);
				x->deltas = save[s].deltas;
				x->n_deltas = save[s].n_deltas;
				memcpy(x->base, save[s].base, VAULT_NAME);
				x->base_size = save[s].base_size;
				x->delta_size = save[s].delta_size;
			} else
				free(save[s].deltas);
		}
		if (r < 0)
			goto out;
	}
	/* Committed: move references from the old maps (in .next now) to the new. */
	for (uint32_t s = 0; s < w->n_sources; s++) {
		struct vsrc *x = &g->src[s];
		writer_map_refs(w, &x->next, -1);
		writer_map_refs(w, &x->map, 1);
		vpg_recv_done(x, true);
		x->have = true;
	}
	/* Packs of this epoch are now referenced.  Packs recovered from an
	 * interrupted run may belong to another group's epoch still to come:
	 * the journal stays until none of them is left unreferenced. */
	{
		bool keep = false;
		for (uint32_t p = 0; p < w->packs.n; p++) {
			if (w->pfresh[p] == PACK_RECOVERED && !w->pref[p])
				keep = true;
			else
				w->pfresh[p] = 0;
		}
		if (!keep)
			writer_journal_reset(w);
	}
	g->epoch = w->epoch;
	g->cut_time = w->cut_time;
	log_info("vault %s: epoch %" PRIu64 " of %s committed: %" PRIu64 " bytes uploaded (%" PRIu64
		 " new blocks, %" PRIu64 " already in the vault)",
		 w->url, w->epoch, g->name, w->bytes_up - w->up0, w->blocks_new, w->blocks_dedup);
out:
	w->blocks_new = w->blocks_dedup = 0;
	epoch_drop(w);
	return r;
}

static void v_abort(void *ctx)
{
	writer_uploads_wait(ctx); /* what did arrive is journaled */
	err_clear();
	epoch_drop(ctx);
}

static int v_advise(void *ctx, int rc)
{
	struct writer *w = ctx;

	if (rc == -ENOSPC)
		return err_wrap(rc, "the vault %s is full (provider quota or disk): nothing of this epoch "
				    "became visible; free space with `bascule vault prune` or raise the quota", w->url);
	if (rc == -EACCES)
		return err_wrap(rc, "the vault account may not write there: check the provider's directory "
				    "permissions (the account needs create and write, nothing more)");
	return rc;
}

static void writer_free(struct writer *w)
{
	writer_uploads_close(w); /* first: it journals what finished */
	epoch_drop(w);
	for (size_t i = 0; i < w->n_groups; i++)
		for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++) {
			vmap_free(&w->groups[i].src[s].map);
			free(w->groups[i].src[s].deltas);
			vpgsrc_free(w->groups[i].src[s].pg);
		}
	free(w->groups);
	vpacks_free(&w->packs);
	vpacks_free(&w->objs);
	free(w->psize);
	free(w->pref);
	free(w->pfresh);
	free(w->osize);
	free(w->dt);
	free(w->frame);
	free(w->pe);
	wbuf_free(&w->pack);
	ZSTD_freeCCtx(w->zctx);
	if (w->jfd >= 0)
		close(w->jfd);
	vstore_close(w->vs);
	vrecord_free(&w->rec);
	sodium_memzero(&w->k, sizeof(w->k));
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule vault recv --url URL --vault-key FILE --cache DIR [--key FILE]\n"
		   "                          [--identity FILE --known-hosts FILE] [--user NAME]\n"
		   "                          [--parallel N] [--s3-endpoint URL --s3-credentials FILE\n"
		   "                          [--s3-region R] [--s3-ca FILE] [--s3-url-style path|virtual]\n"
		   "                          [--lock MODE --lock-seconds N]]\n\n"
		   "The vault writer: receives epochs from basculed on stdin/stdout and stores\n"
		   "them as encrypted write-once objects at URL.  Run by basculed for each target\n"
		   "of type vault; not for interactive use.  Run as root, it reads the keys, then\n"
		   "becomes NAME (relay_user, default bascule) in a Landlock sandbox that reaches\n"
		   "only DIR and a local: vault directory.  --parallel N (1-16, default 1) uploads\n"
		   "packs to an sftp:// or s3:// vault over N more sessions at once; an epoch's\n"
		   "indexes and manifest are written only after all its packs are durable.  On\n"
		   "s3:// every object is put with Object Lock MODE (COMPLIANCE, GOVERNANCE) until\n"
		   "now + N seconds.\n");
}

/* The cache directory, opened as the caller (root): the writer then works
 * inside it as relay_user, who cannot walk down to it (state_dir is root's,
 * 0700).  Files an earlier writer left there as root become the user's
 * (no link is followed). */
static int cache_open(struct writer *w, const char *user, int *ret_fd)
{
	static const char *const files[] = { JOURNAL_FILE, VRECORD_FILE, NULL };
	struct stat st;
	uid_t uid;
	gid_t gid;
	int fd, r;

	if ((r = fs_mkdir_p(w->cache, 0700)) < 0)
		return err_wrap(r, "cannot create the vault cache %s", w->cache);
	fd = open(w->cache, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_set(errno, "cannot open the vault cache %s: %s", w->cache, strerror(errno));
	if (geteuid() == 0 && creds_user(user, &uid, &gid) == 0) {
		if (fstat(fd, &st) == 0 && st.st_uid != uid && fchown(fd, uid, gid) < 0)
			log_warn("cannot give %s to %s: %s", w->cache, user, strerror(errno));
		for (size_t i = 0; files[i]; i++)
			if (fstatat(fd, files[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
			    st.st_uid != uid && fchownat(fd, files[i], uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
				log_warn("cannot give %s/%s to %s: %s", w->cache, files[i], user, strerror(errno));
	}
	*ret_fd = fd;
	return 0;
}

/* Give up root and every file but the cache and a local vault directory
 * (tools/sandbox.c), then work in the cache. */
static int writer_sandbox(struct writer *w, const char *user, int cache_fd, const struct vstore_opts *s3)
{
	struct sandbox sb = { .prog = "bascule-vault", .user = user, .rw_fd = { cache_fd }, .n_rw = 1 };
	char note[512];
	int r;

	if (w->vs) {
		sb.rw_fd[sb.n_rw++] = vstore_dirfd(w->vs);
	} else if (s3) {
		/* s3: the resolver's files (and /etc/ssl), the store's port; an
		 * s3_ca file was read before (relay_user may not open it). */
		sb.resolver = true;
		sb.tcp_ports[sb.n_ports++] = (uint16_t)vstore_s3_port(s3->s3_endpoint);
		sb.tcp_ports[sb.n_ports++] = 53;
	} else {
		/* sftp: the resolver's files and the provider's port, nothing else. */
		struct ssh_url u;
		if ((r = ssh_url_parse_scheme(w->url, "sftp", &u)) < 0)
			return r;
		sb.resolver = true;
		sb.tcp_ports[sb.n_ports++] = (uint16_t)u.port;
		sb.tcp_ports[sb.n_ports++] = 53;
	}
	if ((r = sandbox_enter(&sb, note, sizeof(note))) < 0)
		return r;
	if (note[0])
		log_warn("%s", note);
	if (fchdir(cache_fd) < 0)
		return err_set(errno, "cannot enter the vault cache %s: %s", w->cache, strerror(errno));
	sandbox_probe("bascule-vault");
	if (w->vs && faccessat(vstore_dirfd(w->vs), ".", W_OK | X_OK, 0) < 0)
		return err_set(EACCES, "the vault directory %s is not writable by user %s, which the vault "
				       "writer runs as (relay_user): give it to that user (chown -R %s %s)",
			       w->url + strlen("local:"), user, user, w->url + strlen("local:"));
	return 0;
}

static void forget_site_key(void *ctx)
{
	struct writer *w = ctx;

	/* The wire holds its own per-session secret from here on. */
	key_free(w->site_key);
	w->site_key = NULL;
}

int vault_recv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "vault-key", required_argument, NULL, 'V' },
		{ "cache", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'k' },
		{ "identity", required_argument, NULL, 'i' },
		{ "known-hosts", required_argument, NULL, 'K' },
		{ "user", required_argument, NULL, 'U' },
		{ "parallel", required_argument, NULL, 'P' },
		{ "s3-endpoint", required_argument, NULL, 'E' },
		{ "s3-region", required_argument, NULL, 'R' },
		{ "s3-credentials", required_argument, NULL, 'S' },
		{ "s3-ca", required_argument, NULL, 'A' },
		{ "s3-url-style", required_argument, NULL, 'Y' },
		{ "lock", required_argument, NULL, 'L' },
		{ "lock-seconds", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *keyfile = "/etc/bascule/site.key", *vkfile = NULL, *cache = NULL, *user = "bascule";
	struct vstore_opts so = { 0 };
	struct ssh_creds creds = { 0 };
	struct s3_creds *s3creds = NULL;
	char *s3ca = NULL;
	struct writer w;
	struct vault_key *vk = NULL;
	struct recv_sink sink = { .ctx = &w, .state = v_state, .begin = v_begin, .source = v_source,
				  .extent = v_extent, .pgsource = vpg_recv_source,
				  .wal = vpg_recv_wal, .basefile = vpg_recv_basefile, .commit = v_commit, .abort = v_abort, .advise = v_advise,
				  .keyed = forget_site_key };
	bool sftp, s3;
	uint64_t parallel = 1;
	int c, rc, cache_fd = -1;

	memset(&w, 0, sizeof(w));
	w.jfd = -1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': w.url = optarg; break;
		case 'V': vkfile = optarg; break;
		case 'C': cache = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'i': so.identity = optarg; break;
		case 'K': so.known_hosts = optarg; break;
		case 'U': user = optarg; break;
		case 'P': parallel = strtoull(optarg, NULL, 10); break; /* 1..VSTORE_POOL_MAX */
		case 'E': so.s3_endpoint = optarg; break;
		case 'R': so.s3_region = optarg; break;
		case 'S': so.s3_credentials = optarg; break;
		case 'A': so.s3_ca = optarg; break;
		case 'Y': so.s3_url_style = optarg; break;
		case 'L': so.lock_mode = optarg; break;
		case 'T': so.lock_seconds = strtoull(optarg, NULL, 10); break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (!w.url || !vkfile || !cache || optind != argc || parallel < 1 || parallel > VSTORE_POOL_MAX) {
		usage(stderr);
		return EXIT_USAGE;
	}
	log_init("bascule-vault", arg_global.verbose);
	signal(SIGPIPE, SIG_IGN);
	sftp = strncmp(w.url, "sftp://", 7) == 0;
	s3 = strncmp(w.url, "s3://", 5) == 0;
	snprintf(w.cache, sizeof(w.cache), "%s", cache);
	wbuf_init(&w.pack, VAULT_PACK_TARGET + (2u << 20));
	w.zctx = ZSTD_createCCtx();
	w.frame = malloc(VAULT_FRAME_BLOCKS * VAULT_BLOCK);
	randombytes_buf(w.pack_nonce, sizeof(w.pack_nonce));
	if (!w.zctx || !w.frame) {
		rc = -ENOMEM;
		goto out;
	}
	/* Everything secret, and every way in, while root may still read it. */
	if ((rc = key_load(keyfile, &w.site_key)) < 0 || (rc = vaultkey_load(vkfile, &vk)) < 0)
		goto out;
	vault_keys(vk, &w.k);
	vaultkey_free(vk);
	if (sftp && (rc = ssh_creds_load(so.identity, so.known_hosts, &creds)) < 0)
		goto out;
	so.creds = sftp ? &creds : NULL;
	if (s3 && so.s3_credentials) {
		if ((rc = s3_creds_load(so.s3_credentials, NULL, &s3creds)) < 0)
			goto out;
		so.s3_creds = s3creds;
		if (so.s3_ca) {
			if ((rc = fs_read_all(so.s3_ca, 1u << 20, &s3ca, &so.s3_ca_pem_len)) < 0) {
				rc = err_set(rc, "s3_ca %s: %s", so.s3_ca, strerror(-rc));
				goto out;
			}
			so.s3_ca_pem = s3ca;
		}
	}
	if ((rc = cache_open(&w, user, &cache_fd)) < 0 ||
	    (!sftp && !s3 && (rc = vstore_open(w.url, &so, &w.vs)) < 0))
		goto out;
	if ((rc = writer_sandbox(&w, user, cache_fd, s3 ? &so : NULL)) < 0) {
		if (rc == -ENOENT || rc == -EINVAL)
			rc = err_recode(rc, EINVAL); /* relay_user: a configuration error */
		goto out;
	}
	close(cache_fd);
	cache_fd = -1;
	if ((rc = writer_journal_open(&w)) < 0)
		goto out;
	{
		int e;
		if ((e = vrecord_load(VRECORD_FILE, &w.rec)) < 0 && e != -ENOENT)
			log_warn("%s", err_msg(e));
	}
	/* The provider's answers are the first network input: sandboxed. */
	if ((sftp || s3) && ((rc = vstore_open(w.url, &so, &w.vs)) < 0 ||
			     (rc = writer_uploads_open(&w, &so, (unsigned)parallel)) < 0))
		goto out;
	ssh_creds_free(&creds);
	s3_creds_free(s3creds);
	s3creds = NULL;
	if ((rc = writer_load_state(&w)) < 0)
		goto out;
	writer_journal_load(&w);
	rc = recv_serve(w.site_key, &sink);
out:
	if (rc < 0)
		log_error("%s", err_msg(rc));
	if (cache_fd >= 0)
		close(cache_fd);
	ssh_creds_free(&creds);
	s3_creds_free(s3creds);
	free(s3ca);
	writer_free(&w);
	key_free(w.site_key);
	return err_exit_code(rc);
}
