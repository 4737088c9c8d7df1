/* vault_writer.c - what the vault writer knows of the vault: packs and
 * index objects with their sizes, the dedup table of block ids, each
 * group's committed maps (loaded from the newest valid manifests), and the
 * journal of packs uploaded since the last commit, so that an interrupted
 * epoch's uploads are found again instead of being sent twice. */
#include "vault_writer.h"
#include "vault_pg.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PENDING_MAX_AGE 43200  /* seconds: older uploads are not reused (prune grace is longer) */

/* ---- small tables ---- */

static int writer_grow_arrays(struct writer *w)
{
	/* Never realloc to 0 bytes: that frees (a vault of all-zero disks has no packs). */
	uint32_t cap = w->packs.cap ? w->packs.cap : 1;
	uint64_t *ps = realloc(w->psize, cap * sizeof(*ps));
	uint32_t *pr;
	uint8_t *pf;

	if (!ps)
		return -ENOMEM;
	w->psize = ps;
	if (!(pr = realloc(w->pref, cap * sizeof(*pr))))
		return -ENOMEM;
	w->pref = pr;
	if (!(pf = realloc(w->pfresh, cap)))
		return -ENOMEM;
	w->pfresh = pf;
	return 0;
}

/* Add a pack (or find it); new packs start unreferenced, not fresh. */
int writer_pack_add(struct writer *w, const struct vpack *p, uint64_t size, uint32_t *ret)
{
	uint32_t n0 = w->packs.n;
	int r;

	if ((r = vpacks_add(&w->packs, p, ret)) < 0 || (r = writer_grow_arrays(w)) < 0)
		return r;
	for (uint32_t i = n0; i < w->packs.n; i++) {
		w->psize[i] = 0;
		w->pref[i] = 0;
		w->pfresh[i] = 0;
	}
	if (size)
		w->psize[*ret] = size;
	return 0;
}

int writer_obj_add(struct writer *w, const uint8_t name[VAULT_NAME], uint64_t size)
{
	struct vpack p = { 0 };
	uint32_t idx, n0 = w->objs.n;
	int r;

	memcpy(p.name, name, VAULT_NAME);
	if ((r = vpacks_add(&w->objs, &p, &idx)) < 0)
		return r;
	if (w->objs.n != n0) {
		uint64_t *o = realloc(w->osize, w->objs.cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		w->osize = o;
	}
	w->osize[idx] = size;
	return 0;
}

/* Size of an index object the writer knows of (0 if unknown). */
uint64_t writer_obj_size(const struct writer *w, const uint8_t name[VAULT_NAME])
{
	uint32_t idx = vpacks_find(&w->objs, name);
	return idx == UINT32_MAX ? 0 : w->osize[idx];
}

static size_t dt_slot(const struct writer *w, const uint8_t id[VAULT_ID])
{
	uint64_t h;
	memcpy(&h, id, sizeof(h));
	return (size_t)h & (w->dt_cap - 1);
}

int writer_dt_put(struct writer *w, const uint8_t id[VAULT_ID], const struct vloc *l)
{
	size_t i;

	if ((w->dt_n + 1) * 2 > w->dt_cap) {
		size_t cap = w->dt_cap ? w->dt_cap * 2 : 1u << 16;
		struct dent *old = w->dt, *nt = calloc(cap, sizeof(*nt));
		size_t oc = w->dt_cap;
		if (!nt)
			return -ENOMEM;
		w->dt = nt;
		w->dt_cap = cap;
		w->dt_n = 0;
		for (size_t j = 0; j < oc; j++)
			if (old[j].used) {
				struct vloc x = { .pack = old[j].pack, .off = old[j].off, .len = old[j].len,
						  .slot = old[j].slot };
				writer_dt_put(w, old[j].id, &x);
			}
		free(old);
	}
	for (i = dt_slot(w, id); w->dt[i].used; i = (i + 1) & (w->dt_cap - 1))
		if (!memcmp(w->dt[i].id, id, VAULT_ID))
			break;
	if (!w->dt[i].used)
		w->dt_n++;
	memcpy(w->dt[i].id, id, VAULT_ID);
	w->dt[i].pack = l->pack;
	w->dt[i].off = l->off;
	w->dt[i].len = l->len;
	w->dt[i].slot = l->slot;
	w->dt[i].used = 1;
	return 0;
}

/* A block with this id the vault holds and will keep: in a pack the
 * committed maps still use, or uploaded since the last commit. */
bool writer_dt_get(struct writer *w, const uint8_t id[VAULT_ID], struct vloc *ret)
{
	if (!w->dt_cap)
		return false;
	for (size_t i = dt_slot(w, id); w->dt[i].used; i = (i + 1) & (w->dt_cap - 1))
		if (!memcmp(w->dt[i].id, id, VAULT_ID)) {
			uint32_t p = w->dt[i].pack;
			if (p >= w->packs.n || (!w->pref[p] && !w->pfresh[p]))
				return false;
			ret->pack = p;
			ret->off = w->dt[i].off;
			ret->len = w->dt[i].len;
			ret->slot = w->dt[i].slot;
			memcpy(ret->id, id, VAULT_ID);
			return true;
		}
	return false;
}

void writer_map_refs(struct writer *w, const struct vmap *m, int delta)
{
	for (uint64_t i = 0; i < m->n; i++)
		if (m->e[i].pack != VLOC_ZERO && m->e[i].pack < w->packs.n)
			w->pref[m->e[i].pack] += (uint32_t)delta;
}

static int writer_map_index(struct writer *w, const struct vmap *m)
{
	int r;

	for (uint64_t i = 0; i < m->n; i++)
		if (m->e[i].pack != VLOC_ZERO && (r = writer_dt_put(w, m->e[i].id, &m->e[i])) < 0)
			return r;
	return 0;
}

struct vgroup *writer_group(struct writer *w, const char *name, bool create)
{
	struct vgroup *g;

	for (size_t i = 0; i < w->n_groups; i++)
		if (!strcmp(w->groups[i].name, name))
			return &w->groups[i];
	if (!create)
		return NULL;
	g = realloc(w->groups, (w->n_groups + 1) * sizeof(*g));
	if (!g)
		return NULL;
	/* vgroups hold no pointers into themselves: moving them is fine */
	w->groups = g;
	g = &w->groups[w->n_groups++];
	memset(g, 0, sizeof(*g));
	snprintf(g->name, sizeof(g->name), "%s", name);
	return g;
}

/* ---- the pending journal ---- */

int writer_journal_open(struct writer *w)
{
	w->jfd = open(JOURNAL_FILE, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (w->jfd < 0)
		return err_set(errno, "cannot open %s/%s: %s", w->cache, JOURNAL_FILE, strerror(errno));
	return 0;
}

/* Record: be32 len, be64 time, name, nonce, be64 size, be32 n, n * (id, off, len, slot). */
void writer_journal_record(const struct writer *w, uint32_t pack, const struct dent *e, uint32_t n, struct wbuf *b)
{
	wbuf_init(b, 64u << 20);
	wbuf_put_u32(b, 0);
	wbuf_put_u64(b, (uint64_t)time(NULL));
	wbuf_put_bytes(b, w->packs.p[pack].name, VAULT_NAME);
	wbuf_put_bytes(b, w->packs.p[pack].nonce, 16);
	wbuf_put_u64(b, w->psize[pack]);
	wbuf_put_u32(b, n);
	for (uint32_t i = 0; i < n; i++) {
		wbuf_put_bytes(b, e[i].id, VAULT_ID);
		wbuf_put_u32(b, e[i].off);
		wbuf_put_u32(b, e[i].len);
		wbuf_put_u8(b, e[i].slot);
	}
	put_be32(b->p, (uint32_t)b->len - 4);
}

/* Append a record made by writer_journal_record and make it durable.
 * Touches nothing of the writer but FD: callable from an upload thread. */
int writer_journal_write(int fd, const struct wbuf *b)
{
	int r = fs_write_full(fd, b->p, b->len);

	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	return r < 0 ? err_set(-r, "cannot write the vault cache journal: %s", strerror(-r)) : 0;
}

int writer_journal_add(struct writer *w, uint32_t pack, const struct dent *e, uint32_t n)
{
	struct wbuf b;
	int r;

	writer_journal_record(w, pack, e, n, &b);
	r = writer_journal_write(w->jfd, &b);
	wbuf_free(&b);
	return r;
}

/* Packs uploaded by an earlier run and not yet committed: reuse their
 * blocks (if the object is still there, intact in size, and young). */
void writer_journal_load(struct writer *w)
{
	uint8_t *data = NULL;
	size_t len = 0, reused = 0;
	struct rbuf b;

	if (fs_read_all(JOURNAL_FILE, 1u << 30, (char **)&data, &len) < 0)
		return;
	b = rbuf_init(data, len);
	while (rbuf_left(&b) >= 4) {
		uint32_t rl, n;
		uint64_t t, size, have;
		struct vpack p;
		struct rbuf rec;
		const uint8_t *body;
		uint32_t idx;
		char opath[300];

		if (rbuf_get_u32(&b, &rl) < 0 || rbuf_get_view(&b, rl, &body) < 0)
			break; /* a torn last record: ignore it */
		rec = rbuf_init(body, rl);
		if (rbuf_get_u64(&rec, &t) < 0 || rbuf_get_bytes(&rec, p.name, VAULT_NAME) < 0 ||
		    rbuf_get_bytes(&rec, p.nonce, 16) < 0 || rbuf_get_u64(&rec, &size) < 0 ||
		    rbuf_get_u32(&rec, &n) < 0 || n > rbuf_left(&rec) / (VAULT_ID + 9))
			break;
		if ((uint64_t)time(NULL) - t > PENDING_MAX_AGE)
			continue;
		vault_path(p.name, false, opath, sizeof(opath));
		if (vstore_stat(w->vs, opath, &have, NULL) < 0 || have != size)
			continue;
		if (writer_pack_add(w, &p, size, &idx) < 0)
			break;
		w->pfresh[idx] = PACK_RECOVERED;
		for (uint32_t i = 0; i < n; i++) {
			struct vloc l = { .pack = idx };
			uint8_t id[VAULT_ID];
			rbuf_get_bytes(&rec, id, VAULT_ID);
			rbuf_get_u32(&rec, &l.off);
			rbuf_get_u32(&rec, &l.len);
			rbuf_get_u8(&rec, &l.slot);
			if (writer_dt_put(w, id, &l) < 0)
				break;
		}
		reused++;
	}
	free(data);
	if (reused)
		log_info("vault %s: %zu packs uploaded before an interruption will be reused", w->url, reused);
}

void writer_journal_reset(struct writer *w)
{
	if (ftruncate(w->jfd, 0) == 0)
		fdatasync(w->jfd);
}

/* ---- loading what the vault holds ---- */

static void on_bad_manifest(void *ctx, const char *path, int err)
{
	struct writer *w = ctx;
	log_warn("vault %s: ignoring %s: %s", w->url, path, err_msg(err));
}

int writer_load_state(struct writer *w)
{
	struct vmanifest *ms = NULL;
	size_t n = 0;
	int r;

	if ((r = vault_manifests(w->vs, w->k.pk, &w->k, on_bad_manifest, w, &ms, &n)) < 0)
		return r;
	/* sorted by series then epoch: the last of each series is the newest */
	for (size_t i = 0; i < n; i++) {
		struct vmanifest *m = &ms[i];
		struct vgroup *g;
		if (i + 1 < n && !memcmp(ms[i + 1].series, m->series, 16))
			continue;
		if (!(g = writer_group(w, m->group, true))) {
			r = -ENOMEM;
			goto out;
		}
		g->epoch = m->epoch;
		g->cut_time = m->cut_time;
		g->n_src = m->n_sources;
		for (uint32_t o = 0; o < m->n_objects; o++) {
			/* sizes of everything the manifest lists (packs found below) */
			if ((r = writer_obj_add(w, m->obj[o], m->obj_size[o])) < 0)
				goto out;
		}
		for (uint32_t s = 0; s < m->n_sources; s++) {
			struct vsrc *x = &g->src[s];
			struct vman_source *ms_ = &m->src[s];
			uint32_t before = w->packs.n;
			snprintf(x->name, sizeof(x->name), "%s", ms_->name);
			memcpy(x->digest, ms_->digest, 32);
			memcpy(x->base, ms_->base, VAULT_NAME);
			x->n_deltas = ms_->n_deltas;
			x->deltas = malloc((x->n_deltas ? x->n_deltas : 1) * VAULT_NAME);
			if (!x->deltas) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(x->deltas, ms_->deltas, (size_t)x->n_deltas * VAULT_NAME);
			x->base_size = writer_obj_size(w, x->base);
			x->delta_size = 0;
			for (uint32_t d = 0; d < x->n_deltas; d++)
				x->delta_size += writer_obj_size(w, x->deltas[d]);
			if ((r = vault_load_map(w->vs, &w->k, ms_, &w->packs, &x->map)) < 0) {
				r = err_wrap(r, "vault %s: cannot load the state of %s/%s at epoch %" PRIu64
						" (run `bascule vault check`)", w->url, m->group, ms_->name, m->epoch);
				goto out;
			}
			if ((r = writer_grow_arrays(w)) < 0)
				goto out;
			for (uint32_t p = before; p < w->packs.n; p++) {
				w->pref[p] = 0;
				w->pfresh[p] = 0;
				w->psize[p] = writer_obj_size(w, w->packs.p[p].name);
			}
			writer_map_refs(w, &x->map, 1);
			if ((r = writer_map_index(w, &x->map)) < 0)
				goto out;
			x->have = true;
		}
		for (uint32_t s = 0; s < m->n_pg; s++)
			if ((r = vpg_load(w, g, &m->pg[s])) < 0)
				goto out;
		log_info("vault %s: group %s at epoch %" PRIu64, w->url, g->name, g->epoch);
	}
	/* Epochs this writer committed that the vault no longer holds. */
	for (size_t i = 0; i < w->rec.n; i++) {
		const struct vrecord_entry *x = &w->rec.e[i];
		struct vgroup *g = writer_group(w, x->group, false);
		if (!g || g->epoch < x->epoch)
			log_warn("vault %s: epoch %" PRIu64 " of %s was committed, but the vault's newest valid "
				 "manifest of it is %s%" PRIu64 ": the provider deleted or damaged newer "
				 "manifests (see `bascule vault ls -c CONFIG`); shipping goes on from there",
				 w->url, x->epoch, x->group, g ? "epoch " : "", g ? g->epoch : 0);
	}
	r = 0;
out:
	vault_manifests_free(ms, n);
	return r;
}

