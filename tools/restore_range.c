/* restore_range.c - one range of a restore: the frames its blocks live in,
 * read in runs of adjacent frames, opened, each block checked against its
 * id and written; zero blocks as holes. */
#include "err.h"
#include "fsutil.h"
#include "vault_tool.h"
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A block to restore and the frame it lives in. */
struct fref {
	uint32_t pack, off, len;
	uint64_t block;
};

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

int restore_range(struct restore *rs, struct vstore *vs, void *d, uint64_t rg, uint8_t *rbuf,
			 uint8_t *frame)
{
	const struct vmap *m = rs->map;
	uint64_t b0 = rg * RANGE_BLOCKS, b1 = b0 + RANGE_BLOCKS > m->n ? m->n : b0 + RANGE_BLOCKS;
	struct fref *f = malloc((b1 - b0 + 1) * sizeof(*f));
	size_t nf = 0;
	struct pending w = { 0 };
	int r = 0;

	if (!f)
		return -ENOMEM;
	/* Zero blocks: holes in a file, zeros on a device. */
	for (uint64_t b = b0; b < b1; b++) {
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
		f[nf++] = (struct fref){ l->pack, l->off, l->len, b };
	}
	qsort(f, nf, sizeof(*f), cmp_fref);
	/* Read runs of adjacent frames of one pack in one request. */
	for (size_t i = 0; i < nf && r == 0;) {
		size_t j = i + 1;
		uint64_t start = f[i].off, end = start + f[i].len;
		char path[300];
		ssize_t got;
		uint32_t nb = 0;
		vault_path(rs->packs->p[f[i].pack].name, false, path, sizeof(path));
		/* The index is authenticated, but a length it gives is still
		 * checked before the read buffer is filled with that many bytes. */
		if (f[i].len > READ_MAX) {
			r = err_set(EBADMSG, "the index names a frame of %u bytes at %u of vault object %s, more "
					     "than a read holds (%u bytes; a frame is far smaller): the index is "
					     "damaged, this epoch cannot be restored from it",
				    f[i].len, f[i].off, path, READ_MAX);
			break;
		}
		while (j < nf && f[j].pack == f[i].pack && f[j].off >= start && f[j].off <= end &&
		       (uint64_t)f[j].off + f[j].len - start <= READ_MAX) {
			if ((uint64_t)f[j].off + f[j].len > end)
				end = (uint64_t)f[j].off + f[j].len;
			j++;
		}
		got = vstore_read(vs, path, start, rbuf, (size_t)(end - start));
		if (got < 0) {
			r = (int)got;
			break;
		}
		atomic_fetch_add(&rs->bytes_read, (uint64_t)got);
		if ((uint64_t)got < end - start) {
			r = err_set(EBADMSG, "vault object %s is truncated (%zd of %" PRIu64 " bytes at %" PRIu64 ")",
				    path, got, end - start, start);
			break;
		}
		/* Each frame of the run is opened once; its blocks follow it in F,
		 * and those that are adjacent in the image too go out in one
		 * write (a frame's worth at most: the next frame reuses FRAME). */
		for (size_t x = i; x < j && r == 0; x++) {
			const struct vloc *l = &m->e[f[x].block];
			uint64_t off = f[x].block * VAULT_BLOCK;
			uint32_t len = m->size - off < VAULT_BLOCK ? (uint32_t)(m->size - off) : VAULT_BLOCK;
			uint8_t id[VAULT_ID];
			const uint8_t *blk;
			if (x == i || f[x].off != f[x - 1].off) {
				if ((r = pending_flush(rs, &w)) < 0)
					break;
				if (vault_frame_open(rs->k, rs->packs->p[f[x].pack].nonce, f[x].off,
						     rbuf + (f[x].off - start), f[x].len, d, frame, &nb) < 0) {
					r = err_set(EBADMSG, "a frame at %u of vault object %s fails authentication "
							     "(altered or damaged): this epoch cannot be restored from it",
						    f[x].off, path);
					break;
				}
			}
			if (l->slot >= nb) {
				r = err_set(EBADMSG, "index and frame disagree in %s", path);
				break;
			}
			blk = frame + (size_t)l->slot * VAULT_BLOCK;
			vault_block_id(rs->k, blk, id);
			if (memcmp(id, l->id, VAULT_ID)) {
				r = err_set(EBADMSG, "block %" PRIu64 " read from %s is not the block that was stored",
					    f[x].block, path);
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
		i = j;
	}
	free(f);
	return r;
}
