/* scan.c - the scan workers of a cut: 2 MiB chunks of every source, holes
 * skipped (SEEK_DATA), reads capped by io_rate, each 4 KiB block hashed and
 * compared with the block map (a MiB of zero blocks without records is
 * neither hashed nor recorded); a changed block gets the cut's epoch; a
 * block a connected target lacks goes to the spool.  A file the scan hint
 * vouches for (scanhint.h) and a QEMU source's clean blocks are read only
 * where a target lacks them.  A cold MiB of the map (its leaves not kept)
 * that is written or that a target lacks is read whole and hashed again. */
#include "cut.h"
#include "blockmap.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "fsutil.h"
#include "qemusrc.h"
#include "spool.h"
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(SPOOL_CHUNK % BM_CHUNK == 0, "a scan chunk holds whole map chunks");
/* A QEMU source's MiB goes cold once every target holds its newest change,
 * that change was cut the group's cold_after ago (scan_cold_upto), and
 * COLD_EPOCHS epochs have been cut since (twice as many each time it
 * was made hot again in this run); at most COOL_LIMIT MiB a cut (the first
 * cuts after a full copy of a large disk cool it in steps). */
#define COLD_EPOCHS 4
#define COOL_LIMIT 16384
static const uint8_t zeros[PROTO_BLOCK];

static void io_throttle(struct daemon *d, uint64_t bytes)
{
	uint64_t rate = d->cfg->io_rate;
	double wait = 0;

	if (!rate || !bytes)
		return;
	pthread_mutex_lock(&d->io_lock);
	{
		uint64_t now = clock_mono_usec();
		d->io_tokens += (double)(now - d->io_time) * (double)rate / 1e6;
		if (d->io_tokens > (double)rate / 10)
			d->io_tokens = (double)rate / 10; /* at most 100 ms of burst */
		d->io_time = now;
		d->io_tokens -= (double)bytes;
		if (d->io_tokens < 0)
			wait = -d->io_tokens / (double)rate;
	}
	pthread_mutex_unlock(&d->io_lock);
	if (wait > 0)
		usleep((useconds_t)(wait * 1e6));
}

/* What a worker learnt of a source's holes from its last SEEK_DATA: no
 * data in [from, next), or none from FROM to the end.  Workers take chunks
 * in increasing order, so one probe answers for every chunk of a long hole
 * (one lseek per 2 MiB made a TiB's epoch cost a second of system time). */
struct data_probe {
	bool valid, none;
	uint32_t si;
	uint64_t from, next;
};

/* Mark in DATA[] which blocks of the chunk at OFF (LEN bytes) of source
 * SI (FD) hold data. */
static void find_data(int fd, uint32_t si, uint64_t off, uint64_t len, uint8_t *data, uint32_t nb,
		      struct data_probe *p)
{
	uint64_t pos = off, end = off + len;

	memset(data, 0, nb);
	while (pos < end) {
		off_t d, h;
		if (p->valid && p->si == si && p->from <= pos && (p->none || p->next > pos)) {
			if (p->none || p->next >= end)
				return;
			d = (off_t)p->next;
		} else {
			d = lseek(fd, (off_t)pos, SEEK_DATA);
			if (d < 0 && errno != ENXIO) {
				memset(data, 1, nb); /* no SEEK_DATA here (block device): read all */
				return;
			}
			*p = (struct data_probe){ .valid = true, .none = d < 0, .si = si, .from = pos,
						  .next = d < 0 ? 0 : (uint64_t)d };
			if (d < 0 || (uint64_t)d >= end)
				return; /* a hole up to the end of the chunk, or of the file */
		}
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h > end)
			h = (off_t)end;
		for (uint64_t b = ((uint64_t)d - off) / PROTO_BLOCK;
		     b < nb && off + b * PROTO_BLOCK < (uint64_t)h; b++)
			data[b] = 1;
		pos = (uint64_t)h;
	}
}

/* NEWER[b] = whether block FIRST + b (b < NB; FIRST a multiple of
 * BM_CHUNK) changed after epoch FLOOR, as the map says; blocks of a chunk
 * never seen get UNKNOWN. */
static void map_newer(struct blockmap *m, uint64_t first, uint32_t nb, uint64_t floor, uint8_t unknown,
		      uint8_t *newer)
{
	for (uint32_t b0 = 0; b0 < nb; b0 += BM_CHUNK) {
		uint32_t n = nb - b0 > BM_CHUNK ? BM_CHUNK : nb - b0;
		uint64_t e = 0;
		switch (blockmap_chunk_state(m, (first + b0) / BM_CHUNK, &e)) {
		case BM_ZERO:
		case BM_COLD: /* its blocks' own epochs are not kept: its newest */
			memset(newer + b0, e > floor, n);
			break;
		case BM_RECS:
			if (blockmap_chunk_newest(m, (first + b0) / BM_CHUNK) <= floor) {
				memset(newer + b0, 0, n);
				break;
			}
			for (uint32_t b = 0; b < n; b++)
				newer[b0 + b] = m->recs[first + b0 + b].epoch > floor;
			break;
		default:
			memset(newer + b0, unknown, n);
		}
	}
}

/* A cold MiB among the NB blocks at FIRST (a multiple of BM_CHUNK) of
 * which a block is needed is needed whole: its leaves are hashed again from
 * all of its blocks. */
static void wake_cold(const struct blockmap *m, uint64_t first, uint32_t nb, uint8_t *need)
{
	for (uint32_t b0 = 0; b0 < nb; b0 += BM_CHUNK) {
		uint32_t n = nb - b0 > BM_CHUNK ? BM_CHUNK : nb - b0;
		if (blockmap_chunk_state(m, (first + b0) / BM_CHUNK, NULL) == BM_COLD && memchr(need + b0, 1, n))
			memset(need + b0, 1, n);
	}
}

/* What a worker gathers of one scan chunk for the spool: the blocks, and
 * the data of those that are not zeros. */
struct gather {
	struct spool_block *blocks;
	uint8_t *out;
	uint32_t count, ndata;
};

/* Block IDX of the chunk (BL bytes at P; ZERO: none) goes to the spool as
 * changed in EPOCH. */
static void gather_block(struct gather *gt, uint32_t idx, const uint8_t *p, size_t bl, bool zero, uint64_t epoch)
{
	gt->blocks[gt->count++] = (struct spool_block){ .idx = (uint16_t)idx, .zero = zero, .epoch = epoch };
	if (zero)
		return;
	memcpy(gt->out + (size_t)gt->ndata * PROTO_BLOCK, p, bl);
	if (bl < PROTO_BLOCK)
		memset(gt->out + (size_t)gt->ndata * PROTO_BLOCK + bl, 0, PROTO_BLOCK - bl);
	gt->ndata++;
}

/* Map chunk MC, blocks B0.. of the scan chunk read into BUF (HASDATA: not
 * a hole), is cold: its leaves are hashed again.  The same node: it stays
 * cold, and a target that lacks its epoch is sent all of its blocks (their
 * own epochs are not kept; no fewer than changed).  Another node: it is hot
 * again; the blocks that may have changed (DIRTY, the bitmap's, or all of
 * them if nothing marked the chunk written: a change behind the bitmap's
 * back, counted as missed in a verifying read) get the cut's epoch, the
 * others the chunk's.  Returns how many blocks changed. */
static uint64_t scan_cold(const struct cut *c, uint32_t si, uint64_t mc, uint32_t b0, const uint8_t *buf,
			  const uint8_t *hasdata, const uint8_t *dirty, struct gather *gt)
{
	struct source *s = &c->g->sources[si];
	struct bm_rec recs[BM_CHUNK];
	uint8_t leaves[BM_CHUNK * LEAF_BYTES], node[MERKLE_NODE], kept[MERKLE_NODE];
	uint64_t ce = 0, changed = 0;
	bool marked;

	blockmap_chunk_state(s->map, mc, &ce);
	for (uint32_t k = 0; k < BM_CHUNK; k++) {
		if (hasdata[b0 + k])
			hash_leaf(s->secret, buf + (size_t)(b0 + k) * PROTO_BLOCK, PROTO_BLOCK, leaves + k * LEAF_BYTES);
		else
			memcpy(leaves + k * LEAF_BYTES, s->map->zero_leaf, LEAF_BYTES);
		recs[k] = (struct bm_rec){ .epoch = ce };
	}
	merkle_node(1, leaves, BM_CHUNK, LEAF_BYTES, node);
	blockmap_chunk_node(s->map, mc, kept);
	if (memcmp(node, kept, MERKLE_NODE) != 0) {
		marked = s->qemu ? qemusrc_marked(s->qemu, mc * BM_CHUNK, BM_CHUNK) : memchr(dirty + b0, 1, BM_CHUNK) != NULL;
		if (!marked && s->qemu)
			qemusrc_block_changed(s->qemu, mc * BM_CHUNK);
		for (uint32_t k = 0; k < BM_CHUNK; k++) {
			memcpy(recs[k].leaf, leaves + k * LEAF_BYTES, LEAF_BYTES);
			if (!marked || dirty[b0 + k]) {
				recs[k].epoch = c->epoch;
				changed++;
			}
		}
		blockmap_chunk_heat(s->map, mc, recs);
	}
	for (uint32_t k = 0; k < BM_CHUNK; k++) {
		const uint8_t *p = buf + (size_t)(b0 + k) * PROTO_BLOCK;
		if (recs[k].epoch > c->floor[si])
			gather_block(gt, b0 + k, p, PROTO_BLOCK, !hasdata[b0 + k] || memcmp(p, zeros, PROTO_BLOCK) == 0,
				     recs[k].epoch);
	}
	return changed;
}

/* The NB blocks at FIRST of a source of SIZE bytes are whole MiB chunks
 * of zero blocks since an epoch at or below FLOOR: read as holes, there is
 * nothing to hash, record or spool. */
static bool zero_at_floor(const struct blockmap *m, uint64_t first, uint32_t nb, uint64_t size, uint64_t floor)
{
	if (nb % BM_CHUNK || (first + nb) * PROTO_BLOCK > size)
		return false;
	for (uint32_t b0 = 0; b0 < nb; b0 += BM_CHUNK) {
		uint64_t e = 0;
		if (blockmap_chunk_state(m, (first + b0) / BM_CHUNK, &e) != BM_ZERO || e > floor)
			return false;
	}
	return true;
}

/* Whether any of the NB blocks at FIRST (a multiple of BM_CHUNK) changed
 * after epoch FLOOR, or lies in a chunk never seen (if UNKNOWN): a word per
 * MiB (blockmap_chunk_newest), not its records. */
static bool map_any_newer(struct blockmap *m, uint64_t first, uint32_t nb, uint64_t floor, bool unknown)
{
	for (uint32_t b0 = 0; b0 < nb; b0 += BM_CHUNK) {
		uint64_t mc = (first + b0) / BM_CHUNK;
		if (blockmap_chunk_state(m, mc, NULL) == BM_UNKNOWN ? unknown : blockmap_chunk_newest(m, mc) > floor)
			return true;
	}
	return false;
}

/* Chunk CHUNK of source SI needs nothing read, hashed, recorded or
 * spooled, by what is known without reading it: a QEMU source's chunk with
 * no dirty block and no block a target lacks, a file the hint vouches for
 * with no block a target lacks, or a hole (as probe P knows it) whose map
 * chunks are zero since an epoch no target lacks. */
static bool chunk_idle(const struct cut *c, uint32_t si, uint64_t chunk, const struct data_probe *p)
{
	const struct source *s = &c->g->sources[si];
	struct blockmap *m = s->map;
	uint64_t off = chunk * SPOOL_CHUNK * PROTO_BLOCK, len = c->size[si] - off;
	uint32_t nb;

	if (len > SPOOL_CHUNK * PROTO_BLOCK)
		len = SPOOL_CHUNK * PROTO_BLOCK;
	nb = (uint32_t)((len + PROTO_BLOCK - 1) / PROTO_BLOCK);
	if (s->qemu)
		return qemusrc_next_changed(s->qemu, chunk * SPOOL_CHUNK) >= chunk * SPOOL_CHUNK + nb &&
		       !map_any_newer(m, chunk * SPOOL_CHUNK, nb, c->floor[si], false);
	if (c->hinted[si])
		return !map_any_newer(m, chunk * SPOOL_CHUNK, nb, c->floor[si], true);
	return p->valid && p->si == si && p->from <= off && (p->none || p->next >= off + len) &&
	       zero_at_floor(m, chunk * SPOOL_CHUNK, nb, c->size[si], c->floor[si]);
}

/* Chunk W of the cut (CHUNK of source SI) was idle: claim the idle chunks
 * that follow it in that source, up to 8 GiB at a time, so a TiB of holes
 * (or of a QEMU source's clean blocks) costs a pass over chunk words, not a turn of the workers' loop (and of
 * their shared counter) per 2 MiB. */
static void skip_idle(struct cut *c, uint32_t si, uint64_t chunk, uint64_t w, const struct data_probe *p)
{
	uint64_t k = chunk + 1;
	uint_fast64_t cur = atomic_load(&c->next), to;

	while (k < c->nchunks[si] && k - chunk < 4096 && chunk_idle(c, si, k, p))
		k++;
	to = w + (k - chunk);
	while (cur < to && !atomic_compare_exchange_weak(&c->next, &cur, to))
		;
}

void *scan_worker(void *arg)
{
	struct cut *c = arg;
	struct group *g = c->g;
	uint8_t *buf = malloc(SPOOL_CHUNK * PROTO_BLOCK), *out = malloc(SPOOL_CHUNK * PROTO_BLOCK);
	struct spool_block *blocks = malloc(SPOOL_CHUNK * sizeof(*blocks));
	uint8_t hasdata[SPOOL_CHUNK], need[SPOOL_CHUNK], dirty[SPOOL_CHUNK];
	struct data_probe probe = { 0 };

	if (!buf || !out || !blocks) {
		atomic_store(&c->err, -ENOMEM);
		goto done;
	}
	for (;;) {
		uint64_t w = atomic_fetch_add(&c->next, 1), chunk = w;
		uint32_t si = 0, nb;
		uint64_t off, len, changed = 0;
		struct gather gt = { blocks, out, 0, 0 };
		struct source *s;

		if (w >= c->total_chunks || atomic_load(&c->err) || atomic_load(&c->abort))
			break; /* done, failed, or told to stop (cut_timeout, the daemon stopping) */
		while (chunk >= c->nchunks[si])
			chunk -= c->nchunks[si++];
		s = &g->sources[si];
		off = chunk * SPOOL_CHUNK * PROTO_BLOCK;
		len = c->size[si] - off;
		if (len > SPOOL_CHUNK * PROTO_BLOCK)
			len = SPOOL_CHUNK * PROTO_BLOCK;
		nb = (uint32_t)((len + PROTO_BLOCK - 1) / PROTO_BLOCK);
		if (s->qemu) {
			/* Only what changed (the bitmap) and what a target lacks;
			 * of the latter, a block unchanged since the last cut in a
			 * chunk the map holds as zeros is zeros still, not read (the
			 * first cuts after a full read of a sparse 1 TiB disk would
			 * read all of it through NBD). */
			uint8_t zero[SPOOL_CHUNK], newer[SPOOL_CHUNK];
			uint64_t ze;
			if (chunk_idle(c, si, chunk, &probe)) {
				/* O(dirty extents), not O(disk): the clean MiB are a
				 * pass over their chunk words. */
				skip_idle(c, si, chunk, w, &probe);
				continue;
			}
			qemusrc_changed(s->qemu, chunk * SPOOL_CHUNK, nb, need, zero);
			memcpy(dirty, need, nb);
			map_newer(s->map, chunk * SPOOL_CHUNK, nb, c->floor[si], 0, newer);
			for (uint32_t b = 0; b < nb; b++)
				if (!need[b] && newer[b]) {
					need[b] = 1;
					zero[b] = blockmap_chunk_state(s->map, (chunk * SPOOL_CHUNK + b) / BM_CHUNK, &ze) ==
						  BM_ZERO;
				}
			wake_cold(s->map, chunk * SPOOL_CHUNK, nb, need);
			for (uint32_t b = 0; b < nb; b++)
				hasdata[b] = need[b] && !zero[b];
		} else if (c->hinted[si]) {
			/* Unchanged since its last full scan (scanhint.h): only
			 * what a target lacks, and a chunk never seen. */
			if (chunk_idle(c, si, chunk, &probe)) {
				skip_idle(c, si, chunk, w, &probe);
				continue;
			}
			map_newer(s->map, chunk * SPOOL_CHUNK, nb, c->floor[si], 1, need);
			memset(dirty, 0, nb);
			wake_cold(s->map, chunk * SPOOL_CHUNK, nb, need);
			find_data(c->fds[si], si, off, len, hasdata, nb, &probe);
			for (uint32_t b = 0; b < nb; b++)
				hasdata[b] &= need[b];
		} else {
			memset(need, 1, nb);
			memset(dirty, 1, nb);
			find_data(c->fds[si], si, off, len, hasdata, nb, &probe);
		}
		if (!memchr(hasdata, 1, nb) && zero_at_floor(s->map, chunk * SPOOL_CHUNK, nb, c->size[si], c->floor[si])) {
			/* a hole the map knows as one, that no target lacks */
			skip_idle(c, si, chunk, w, &probe);
			continue;
		}
		/* Read the data runs. */
		for (uint32_t b = 0; b < nb;) {
			uint32_t e = b;
			ssize_t got;
			size_t want;
			if (!hasdata[b]) {
				b++;
				continue;
			}
			while (e < nb && hasdata[e])
				e++;
			want = (size_t)(e - b) * PROTO_BLOCK;
			if ((uint64_t)b * PROTO_BLOCK + want > len)
				want = (size_t)(len - (uint64_t)b * PROTO_BLOCK);
			io_throttle(g->d, want);
			if (s->qemu)
				got = qemusrc_pread(s->qemu, buf + (size_t)b * PROTO_BLOCK, want,
						    off + (uint64_t)b * PROTO_BLOCK) ?: (ssize_t)want;
			else
				got = fs_pread_full(c->fds[si], buf + (size_t)b * PROTO_BLOCK, want,
						    off + (uint64_t)b * PROTO_BLOCK);
			if (got < 0) {
				atomic_store(&c->err, (int)got);
				goto done;
			}
			if ((size_t)got < want) /* the file shrank under us: zeros */
				memset(buf + (size_t)b * PROTO_BLOCK + got, 0, want - (size_t)got);
			atomic_fetch_add(&c->read_bytes, want);
			b = e;
		}
		for (uint32_t b0 = 0; b0 < nb; b0 += BM_CHUNK) {
			uint32_t b1 = nb - b0 > BM_CHUNK ? b0 + BM_CHUNK : nb;
			uint64_t mc = (chunk * SPOOL_CHUNK + b0) / BM_CHUNK, ze = 0;
			enum bm_state st = blockmap_chunk_state(s->map, mc, &ze);
			struct bm_rec *recs;
			bool allzero = st != BM_RECS && b1 - b0 == BM_CHUNK &&
				       off + (uint64_t)b1 * PROTO_BLOCK <= c->size[si];

			if (st == BM_COLD) {
				if (memchr(need + b0, 1, b1 - b0))
					changed += scan_cold(c, si, mc, b0, buf, hasdata, dirty, &gt);
				continue;
			}
			/* A MiB of zero blocks keeps no records (blockmap.h). */
			for (uint32_t b = b0; allzero && b < b1; b++)
				allzero = need[b] ? !hasdata[b] || memcmp(buf + (size_t)b * PROTO_BLOCK, zeros,
									   PROTO_BLOCK) == 0
						  : st == BM_ZERO;
			if (allzero) {
				if (blockmap_chunk_zero(s->map, mc, c->epoch))
					changed += BM_CHUNK;
				blockmap_chunk_state(s->map, mc, &ze);
				for (uint32_t b = b0; ze > c->floor[si] && b < b1; b++)
					gather_block(&gt, b, NULL, 0, true, ze);
				continue;
			}
			recs = blockmap_chunk_recs(s->map, mc);
			for (uint32_t b = b0; b < b1; b++) {
				uint64_t bi = chunk * SPOOL_CHUNK + b;
				size_t bl = len - (uint64_t)b * PROTO_BLOCK > PROTO_BLOCK
						    ? PROTO_BLOCK : (size_t)(len - (uint64_t)b * PROTO_BLOCK);
				const uint8_t *p = hasdata[b] ? buf + (size_t)b * PROTO_BLOCK : zeros;
				struct bm_rec *rec = &recs[b - b0];
				uint8_t leaf[LEAF_BYTES];
				bool zero;

				if (!need[b])
					continue; /* a QEMU source's clean block: as the map says */
				if (hasdata[b] || bl < PROTO_BLOCK)
					hash_leaf(s->secret, p, bl, leaf);
				else /* a hole: the zero block's leaf, without hashing 4 KiB of zeros */
					memcpy(leaf, s->map->zero_leaf, LEAF_BYTES);
				if (memcmp(rec->leaf, leaf, LEAF_BYTES) != 0) {
					rec->epoch = c->epoch; /* first the change epoch, then the leaf */
					memcpy(rec->leaf, leaf, LEAF_BYTES);
					blockmap_changed(s->map, bi, c->epoch);
					changed++;
					if (s->qemu) /* a verifying read: did the bitmap know? */
						qemusrc_block_changed(s->qemu, bi);
				}
				if (rec->epoch <= c->floor[si])
					continue;
				zero = !hasdata[b] || memcmp(p, zeros, bl) == 0;
				gather_block(&gt, b, p, bl, zero, rec->epoch);
			}
		}
		atomic_fetch_add(&c->changed, changed);
		if (gt.count) {
			int r = spool_append(c->spool, si, chunk, blocks, gt.count, out, gt.ndata);
			if (r < 0) {
				atomic_store(&c->err, r);
				goto done;
			}
			atomic_fetch_add(&c->spooled, gt.count);
		}
	}
done:
	free(buf);
	free(out);
	free(blocks);
	return NULL;
}

uint64_t scan_acked(const struct daemon *d, const struct group *g)
{
	uint64_t low = UINT64_MAX;

	for (uint32_t i = 0; i < d->n_targets; i++) {
		const struct tgroup *tg = &d->targets[i]->groups[g->idx];
		if (!tg->known)
			return 0;
		if (tg->acked < low)
			low = tg->acked;
	}
	return low;
}

/* The epoch up to which a QEMU source's MiB may go cold at this cut: one
 * every target holds (scan_acked) and cut cold_after ago at least.  Every
 * cold_after the newest epoch is marked; the mark before is then that old. */
uint64_t scan_cold_upto(const struct daemon *d, struct group *g)
{
	uint64_t now = clock_mono_usec(), acked;

	if (!g->cfg->cold_after)
		return 0;
	if (!g->cold_mark_mono) {
		g->cold_mark_mono = now;
		g->cold_mark_epoch = g->last_cut;
	} else if (now - g->cold_mark_mono >= g->cfg->cold_after) {
		g->cold_ready = g->cold_mark_epoch;
		g->cold_mark_epoch = g->last_cut;
		g->cold_mark_mono = now;
	}
	acked = scan_acked(d, g);
	return acked < g->cold_ready ? acked : g->cold_ready;
}

int scan_cool(struct cut *c, uint32_t si)
{
	const struct source *s = &c->g->sources[si];
	uint64_t upto = c->cold_upto, n = 0, t0 = clock_mono_usec();
	int r;

	/* QEMU sources only: a plain file's scan does not say which block of a
	 * MiB changed, so a cold MiB written again would be sent whole. */
	if (!s->qemu || !upto)
		return 0;
	if ((r = blockmap_cool(s->map, upto, c->epoch - 1, COLD_EPOCHS, COOL_LIMIT, &n)) < 0)
		return err_wrap(r, "source %s", s->cfg->name);
	if (n)
		log_info("group %s source %s: %" PRIu64 " MiB of the map gone cold (every target holds epoch %" PRIu64
			 ") in %" PRIu64 " ms", c->g->name, s->cfg->name, n, upto, (clock_mono_usec() - t0) / 1000);
	return 0;
}
