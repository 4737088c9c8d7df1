/* restore_range.c - one range of a restore: the frames its blocks live in,
 * planned as runs of adjacent frames (one read each), each run opened,
 * each block checked against its keyed id and written; zero blocks as holes. */
#include "err.h"
#include "fsutil.h"
#include "vault_tool.h"
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>


static int cmp_fref(const void *a, const void *b)
{
	const struct fref *x = a, *y = b;
	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->block < y->block ? -1 : x->block > y->block;
}

/* Blocks checked and not yet written: LEN bytes at BUF, for OFF. */
struct pending {
	const uint8_t *buf;
	uint64_t off;
	size_t len;
};

static int pending_flush(struct restore *rs, struct pending *w)
{
	int r = w->len ? fs_pwrite_full(rs->fd, w->buf, w->len, w->off) : 0;

	if (r == 0)
		atomic_fetch_add(&rs->bytes_written, w->len);
	w->len = 0;
	return r;
}

void rplan_free(struct rplan *p)
{
	free(p->f);
	free(p->runs);
	memset(p, 0, sizeof(*p));
}

int restore_plan(struct restore *rs, uint64_t rg, struct rplan *ret)
{
	const struct vmap *m = rs->map;
	uint64_t b0 = rg * RANGE_BLOCKS, b1 = b0 + RANGE_BLOCKS > m->n ? m->n : b0 + RANGE_BLOCKS;
	struct rplan p = { .rg = rg, .f = malloc((b1 - b0 + 1) * sizeof(*p.f)),
			   .runs = malloc((b1 - b0 + 1) * sizeof(*p.runs)) };
	int r = 0;

	if (!p.f || !p.runs) {
		r = -ENOMEM;
		goto out;
	}
	/* Zero blocks: holes in a file, zeros on a device. */
	for (uint64_t b = b0; b < b1 && r == 0; b++) {
		const struct vloc *l = &m->e[b];
		if (l->pack == VLOC_ZERO) {
			uint64_t e = b;
			while (e < b1 && m->e[e].pack == VLOC_ZERO)
				e++;
			uint64_t off = b * VAULT_BLOCK, len = (e - b) * VAULT_BLOCK;
			if (off + len > m->size)
				len = m->size - off;
			if (rs->device || fallocate(rs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
						    (off_t)len) < 0) {
				static const uint8_t z[1 << 16];
				for (uint64_t o = 0; o < len && r == 0; o += sizeof(z))
					r = fs_pwrite_full(rs->fd, z, len - o < sizeof(z) ? len - o : sizeof(z), off + o);
			}
			b = e - 1;
			continue;
		}
		p.f[p.nf++] = (struct fref){ l->pack, l->off, l->len, b };
	}
	qsort(p.f, p.nf, sizeof(*p.f), cmp_fref);
	/* Runs of adjacent frames of one pack: one request each. */
	for (size_t i = 0; i < p.nf && r == 0;) {
		size_t j = i + 1;
		uint64_t start = p.f[i].off, end = start + p.f[i].len;
		/* The index is authenticated, but a length it gives is still
		 * checked before the read buffer is filled with that many bytes. */
		if (p.f[i].len > READ_MAX) {
			char path[300];
			vault_path(rs->packs->p[p.f[i].pack].name, false, path, sizeof(path));
			r = err_set(EBADMSG, "the index names a frame of %u bytes at %u of vault object %s, more "
					     "than a read holds (%u bytes; a frame is far smaller): the index is "
					     "damaged, this epoch cannot be restored from it",
				    p.f[i].len, p.f[i].off, path, READ_MAX);
			break;
		}
		while (j < p.nf && p.f[j].pack == p.f[i].pack && p.f[j].off >= start && p.f[j].off <= end &&
		       (uint64_t)p.f[j].off + p.f[j].len - start <= READ_MAX) {
			if ((uint64_t)p.f[j].off + p.f[j].len > end)
				end = (uint64_t)p.f[j].off + p.f[j].len;
			j++;
		}
		p.runs[p.nr++] = (struct rrun){ p.f[i].pack, start, end, i, j };
		i = j;
	}
out:
	if (r < 0)
		rplan_free(&p);
	else
		*ret = p;
	return r;
}

void restore_run_path(const struct restore *rs, const struct rplan *p, size_t k, char *path, size_t len)
{
	vault_path(rs->packs->p[p->runs[k].pack].name, false, path, len);
}

/* A frame of vault object PATH that does not hold what the index says. */
static int altered(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int altered(const char *path, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return err_set(EBADMSG, "vault object %s is altered or damaged (%s): this epoch cannot be restored from it",
		       path, what);
}

int restore_run(struct restore *rs, const struct rplan *p, size_t k, const uint8_t *rbuf, ssize_t got, void *d,
		uint8_t *work)
{
	const struct vmap *m = rs->map;
	const struct rrun *u = &p->runs[k];
	const struct fref *f = p->f;
	struct pending w = { 0 };
	char path[300];
	const uint8_t *blocks = NULL;
	uint32_t nb = 0;
	int r = 0;

	restore_run_path(rs, p, k, path, sizeof(path));
	if (got < 0)
		return (int)got;
	atomic_fetch_add(&rs->bytes_read, (uint64_t)got);
	if ((uint64_t)got < u->end - u->start)
		return err_set(EBADMSG, "vault object %s is truncated (%zd of %" PRIu64 " bytes at %" PRIu64 ")",
			       path, got, u->end - u->start, u->start);
	/* Each frame of the run is opened once; its blocks follow it in F,
	 * and those that are adjacent in the image too go out in one write
	 * (a frame's worth at most: the next frame reuses WORK). */
	for (size_t x = u->i; x < u->j && r == 0; x++) {
		const struct vloc *l = &m->e[f[x].block];
		uint64_t off = f[x].block * VAULT_BLOCK;
		uint32_t len = m->size - off < VAULT_BLOCK ? (uint32_t)(m->size - off) : VAULT_BLOCK;
		uint8_t id[VAULT_ID];
		const uint8_t *blk;
		if (x == u->i || f[x].off != f[x - 1].off) {
			if ((r = pending_flush(rs, &w)) < 0)
				break;
			if (vault_frame_decrypt(rs->k, rs->packs->p[f[x].pack].nonce, f[x].off,
						rbuf + (f[x].off - u->start), f[x].len, d, work, &blocks, &nb) < 0) {
				r = altered(path, "a frame at %u of it is not a frame that was stored", f[x].off);
				break;
			}
		}
		/* The frame's tag was not checked (vault_frame_decrypt): the
		 * block's keyed id is, for every block taken (docs/vault.md,
		 * "Restore"). */
		if (l->slot >= nb) {
			r = altered(path, "its frame at %u holds %u blocks, the index names block %u of it",
				    f[x].off, nb, l->slot);
			break;
		}
		blk = blocks + (size_t)l->slot * VAULT_BLOCK;
		vault_block_id(rs->k, blk, id);
		if (memcmp(id, l->id, VAULT_ID)) {
			r = altered(path, "block %" PRIu64 " read from it is not the block that was stored",
				    f[x].block);
			break;
		}
		if (w.len && w.off + w.len == off && w.buf + w.len == blk) {
			w.len += len;
		} else {
			if ((r = pending_flush(rs, &w)) < 0)
				break;
			w = (struct pending){ blk, off, len };
		}
	}
	if (r == 0)
		r = pending_flush(rs, &w);
	return r;
}

int restore_range(struct restore *rs, struct vstore *vs, void *d, uint64_t rg, uint8_t *rbuf, uint8_t *work)
{
	struct rplan p = { 0 };
	int r = restore_plan(rs, rg, &p);

	for (size_t k = 0; r == 0 && k < p.nr; k++) {
		char path[300];
		restore_run_path(rs, &p, k, path, sizeof(path));
		r = restore_run(rs, &p, k, rbuf, vstore_read(vs, path, p.runs[k].start, rbuf,
							     (size_t)(p.runs[k].end - p.runs[k].start)),
				d, work);
	}
	rplan_free(&p);
	return r;
}
