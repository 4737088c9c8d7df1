/* ship.c - what each target is sent: the epochs queued for it (jobs), the
 * frames of each (EPOCH_BEGIN, SOURCE, EXTENT runs, resync deltas,
 * EPOCH_END), and the acknowledgements that retire them.  Also when a
 * target wants a cut (vault intervals) and how far behind it is.  The
 * writing itself (bandwidth cap, window, pipe) is target.c's. */
#include "daemon.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "rsync.h"
#include "spool.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static const uint8_t zeros_block[PROTO_BLOCK];

void ship_drop_jobs(struct target *t)
{
	while (t->jobs) {
		struct job *j = t->jobs;
		t->jobs = j->next;
		/* Not acknowledged: a vault target takes the group's next epoch as
		 * soon as it is back, not one interval after this failed one. */
		if (t->groups && !j->g->retired)
			t->groups[j->g->idx].last_ship = 0;
		j->g->jobs--;
		spool_unref(j->spool);
		for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++) {
			sigstore_free(j->sig[s]);
			pgship_free(j->pg[s]);
		}
		free(j);
	}
	for (uint32_t i = 0; t->groups && i < t->d->n_groups; i++) {
		for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++) {
			sigstore_free(t->groups[i].sig[s]);
			t->groups[i].sig[s] = NULL;
			t->groups[i].want_sig[s] = false;
		}
		t->groups[i].sig_pending = 0;
	}
	t->jobs_tail = NULL;
	t->in_flight = 0;
}

int ship_ack(struct target *t, struct rbuf *b, bool nack)
{
	struct msg_ack m;
	struct job *j, *prev = NULL;
	int r;

	if ((r = proto_get_ack(b, &m, nack)) < 0)
		return r;
	if (nack)
		return err_set(m.code == ENOSPC ? ENOSPC : EPROTO,
			       "the replica refused epoch %" PRIu64 " of %s: %s", m.epoch, m.group, m.text);
	for (j = t->jobs; j; prev = j, j = j->next)
		if (j->stage == JOB_SENT && j->epoch == m.epoch && strcmp(j->g->name, m.group) == 0)
			break;
	if (!j)
		return err_set(EPROTO, "acknowledgement of epoch %" PRIu64 " of %s, which was not sent",
			       m.epoch, m.group);
	{
		/* An epoch of a group since rebuilt by a reload counts for its successor. */
		uint32_t gi = UINT32_MAX;
		if (!j->g->retired)
			gi = j->g->idx;
		else
			group_find(t->d, j->g->name, &gi);
		if (gi != UINT32_MAX && j->epoch > t->groups[gi].acked) {
			t->groups[gi].acked = j->epoch;
			t->groups[gi].acked_cut_time = j->cut_time;
		}
		if (gi != UINT32_MAX)
			pgship_acked(t, j, gi);
	}
	j->g->jobs--;
	if (prev)
		prev->next = j->next;
	else
		t->jobs = j->next;
	if (t->jobs_tail == j)
		t->jobs_tail = prev;
	t->in_flight--;
	t->failures = 0;
	if (!j->wal_only)
		daemon_event(t->d, "ack", j->g->name, t->cfg->name, j->epoch, "");
	if (t->last_error[0])
		target_log(t, LOG_INFO, "epoch %" PRIu64 " of %s acknowledged; target healthy again",
		     j->epoch, j->g->name);
	else
		target_log(t, LOG_DEBUG, "epoch %" PRIu64 " of %s acknowledged", j->epoch, j->g->name);
	t->last_error[0] = 0;
	spool_unref(j->spool);
	for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++) {
		sigstore_free(j->sig[s]);
		pgship_free(j->pg[s]);
	}
	free(j);
	return 0;
}

/* A vault target takes at most one epoch of a group per interval. */
static bool due(const struct target *t, const struct tgroup *tg)
{
	return !t->cfg->interval || !tg->last_ship || clock_mono_usec() - tg->last_ship >= t->cfg->interval;
}

void targets_tick(struct daemon *d)
{
	for (uint32_t i = 0; i < d->n_targets; i++) {
		struct target *t = d->targets[i];
		if (t->state != T_READY || !t->cfg->interval)
			continue;
		for (uint32_t k = 0; k < d->n_groups; k++) {
			struct group *g = d->groups[k];
			struct tgroup *tg = &t->groups[k];
			bool queued = false, behind = false;
			if (!due(t, tg) || g->cutting || g->paused)
				continue;
			for (const struct job *j = t->jobs; j && !queued; j = j->next)
				queued = j->g == g;
			for (uint32_t s = 0; s < g->n_sources; s++)
				behind |= tg->sent[s] < g->last_cut;
			if (!queued && behind)
				group_request_cut(g);
		}
	}
}

void targets_sync(struct daemon *d, struct group *g)
{
	for (uint32_t i = 0; i < d->n_targets; i++)
		if (d->targets[i]->cfg->interval)
			d->targets[i]->groups[g->idx].last_ship = 0;
}

uint64_t target_pending(const struct target *t)
{
	uint64_t n = 0;

	for (const struct job *j = t->jobs; j; j = j->next)
		n += j->spool ? j->spool->blocks * (uint64_t)PROTO_BLOCK : 0;
	return n;
}

uint64_t target_lag_usec(const struct target *t, uint32_t k, uint64_t now)
{
	const struct tgroup *tg = &t->groups[k];
	const struct group *g = t->d->groups[k];
	uint64_t since = tg->acked_cut_time;

	if (!since)
		return UINT64_MAX;
	/* Scans that found nothing new since the epoch the target holds
	 * prove it current up to their start: an idle disk does not age. */
	if (tg->acked == g->last_cut && g->verified_time > since)
		since = g->verified_time;
	else if (tg->acked == g->prev_cut && g->prev_cut && g->prev_verified_time > since)
		since = g->prev_verified_time;
	return now > since ? now - since : 0;
}

void targets_floor(struct daemon *d, struct group *g, uint64_t *floor)
{
	uint32_t gi = g->idx;

	for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++)
		floor[s] = UINT64_MAX;
	for (uint32_t i = 0; i < d->n_targets; i++) {
		struct target *t = d->targets[i];
		/* A target waiting for signatures gets no epoch from this cut:
		 * spooling the whole disk for it each interval would be waste. */
		if (t->state != T_READY || t->groups[gi].sig_pending || !due(t, &t->groups[gi]))
			continue;
		for (uint32_t s = 0; s < g->n_sources; s++)
			if (t->groups[gi].sent[s] < floor[s])
				floor[s] = t->groups[gi].sent[s];
	}
}

bool ship_enqueue(struct target *t, struct group *g)
{
	uint32_t gi = g->idx;
	struct tgroup *tg = &t->groups[gi];
	struct job *j;

	if (t->state != T_READY)
		return false;
	if (tg->sig_pending)
		return false; /* signatures first: their arrival requests the resync cut */
	if (!due(t, tg))
		return false; /* a vault between two shipments: the tick asks for its next cut */
	/* The spool only holds blocks newer than its floor: a target that came
	 * up during the scan lacks older ones and waits for the next cut. */
	for (uint32_t s = 0; s < g->n_sources; s++)
		if (!g->sources[s].pg && tg->sent[s] < g->spool_floor[s]) {
			g->want_cut = true;
			return false;
		}
	j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	j->g = g;
	for (uint32_t s = 0; s < g->n_sources; s++) {
		if (!g->sources[s].pg) {
			j->wire_idx[s] = j->n_wire++;
			continue;
		}
		j->wire_idx[s] = j->n_wire++;
		if (!pgship_prepare(t, g, j, s)) {
			for (uint32_t k = 0; k <= s; k++)
				pgship_free(j->pg[k]);
			free(j);
			return false;
		}
	}
	for (uint32_t s = 0; s < g->n_sources; s++)
		if (j->pg[s])
			pgship_commit(t, g, j, s);
	j->wal_only = g->wal_epoch;
	g->jobs++;
	j->epoch = g->last_cut;
	j->cut_time = g->cut_time;
	j->flags = g->consistent ? EPOCH_CONSISTENT : 0;
	j->spool = g->spool ? spool_ref(g->spool) : NULL;
	for (uint32_t s = 0; s < g->n_sources; s++) {
		j->base[s] = tg->sent[s];
		j->size[s] = g->sources[s].size;
		memcpy(j->digest[s], g->sources[s].digest, DIGEST_BYTES);
		if (tg->sig[s] && tg->sig[s]->complete && j->base[s] == 0) {
			j->sig[s] = tg->sig[s];
			tg->sig[s] = NULL;
		}
		tg->sent[s] = j->epoch;
	}
	tg->last_ship = clock_mono_usec();
	if (t->jobs_tail)
		t->jobs_tail->next = j;
	else
		t->jobs = j;
	t->jobs_tail = j;
	return true;
}

static int send_msg(struct target *t, enum wire_type type, struct wbuf *b)
{
	return wire_send(&t->w, type, b->p, b->len);
}

static int emit_extent(struct target *t, struct job *j, uint32_t src, uint64_t off, uint32_t len,
		       const uint8_t *data)
{
	struct msg_extent m = { .src = j->wire_idx[src], .offset = off, .raw_len = len };
	int r;

	wbuf_reset(&t->ext);
	m.enc = data ? EXT_ZSTD : EXT_ZERO;
	if ((r = proto_put_extent_hdr(&t->ext, &m)) < 0)
		return r;
	if (data && (r = pgship_pack(t, t->ext.len, data, len)) < 0)
		return r;
	j->n_extents++;
	j->raw_bytes += len;
	t->raw_sent += data ? len : 0;
	return send_msg(t, MSG_EXTENT, &t->ext);
}

/* Resync: the record covers a whole chunk (base 0 takes every block).
 * Rebuild it and send, per 1 MiB range the replica has a signature for, a
 * librsync delta; where the delta is no smaller, or there is no signature,
 * the plain extents. */
static int emit_record_delta(struct target *t, struct job *j, size_t i, const struct spool_block *blocks,
			     const uint8_t *data, bool *ret_done)
{
	const struct spool_entry *e = &j->spool->e[i];
	struct sigstore *ss = j->sig[e->src];
	uint64_t size = j->size[e->src], cstart = e->chunk * SPOOL_CHUNK * (uint64_t)PROTO_BLOCK;
	uint8_t *chunk, *sig = NULL;
	size_t sig_cap = 0;
	struct wbuf delta;
	uint32_t di = 0;
	int r = 0;

	*ret_done = false;
	if (e->count != SPOOL_CHUNK && cstart + (uint64_t)e->count * PROTO_BLOCK < size)
		return 0; /* not a whole chunk: plain extents */
	chunk = calloc(1, SPOOL_CHUNK * PROTO_BLOCK);
	if (!chunk)
		return -ENOMEM;
	for (uint32_t k = 0; k < e->count; k++)
		if (!blocks[k].zero)
			memcpy(chunk + (size_t)blocks[k].idx * PROTO_BLOCK, data + (size_t)di++ * PROTO_BLOCK,
			       PROTO_BLOCK);
	wbuf_init(&delta, PROTO_SIG_RANGE + 65536);
	for (uint64_t ro = 0; ro < SPOOL_CHUNK * (uint64_t)PROTO_BLOCK && cstart + ro < size;
	     ro += PROTO_SIG_RANGE) {
		uint64_t off = cstart + ro, idx = off / PROTO_SIG_RANGE;
		uint32_t len = size - off > PROTO_SIG_RANGE ? PROTO_SIG_RANGE : (uint32_t)(size - off);
		struct msg_extent m = { .src = j->wire_idx[e->src], .offset = off, .raw_len = len, .enc = EXT_DELTA };
		bool sent = false;

		wbuf_reset(&delta);
		if (idx < ss->n && ss->len[idx]) {
			if (ss->len[idx] > sig_cap) {
				/* A failed realloc keeps the old buffer: freed below. */
				uint8_t *p = realloc(sig, ss->len[idx]);
				if (!p) {
					r = -ENOMEM;
					break;
				}
				sig = p;
				sig_cap = ss->len[idx];
			}
			if (fs_pread_full(ss->fd, sig, ss->len[idx], ss->off[idx]) == (ssize_t)ss->len[idx] &&
			    rsync_delta(sig, ss->len[idx], chunk + ro, len, &delta) == 0 && delta.len < len / 2) {
				wbuf_reset(&t->ext);
				if ((r = proto_put_extent_hdr(&t->ext, &m)) < 0 ||
				    (r = wbuf_put_bytes(&t->ext, delta.p, delta.len)) < 0 ||
				    (r = send_msg(t, MSG_EXTENT, &t->ext)) < 0)
					break;
				j->n_extents++;
				j->raw_bytes += len;
				t->delta_sent += delta.len;
				sent = true;
			}
		}
		if (!sent) {
			/* Plain: zero and data runs of this range. */
			for (uint32_t b = 0; b < len && r == 0;) {
				uint32_t start = b;
				bool zero = memcmp(chunk + ro + b, zeros_block, PROTO_BLOCK < len - b ? PROTO_BLOCK : len - b) == 0;
				while (b < len && (b - start) < 256 * PROTO_BLOCK) {
					uint32_t bl = len - b < PROTO_BLOCK ? len - b : PROTO_BLOCK;
					if ((memcmp(chunk + ro + b, zeros_block, bl) == 0) != zero)
						break;
					b += bl;
				}
				r = emit_extent(t, j, e->src, off + start, b - start, zero ? NULL : chunk + ro + start);
			}
			if (r < 0)
				break;
		}
	}
	wbuf_free(&delta);
	free(sig);
	free(chunk);
	*ret_done = r == 0;
	return r;
}

/* Emit the extents of spool record I for job J: the blocks the target lacks,
 * runs of up to 256 blocks, zero runs without data. */
static int emit_record(struct target *t, struct job *j, size_t i)
{
	const struct spool_entry *e = &j->spool->e[i];
	const struct spool_block *blocks;
	const uint8_t *data;
	uint64_t size = j->size[e->src], base = j->base[e->src];
	uint32_t k = 0, di = 0;
	int r;

	if ((r = spool_read(j->spool, i, t->chunk, &blocks, &data)) < 0)
		return r;
	if (j->sig[e->src]) {
		bool done;
		if ((r = emit_record_delta(t, j, i, blocks, data, &done)) < 0 || done)
			return r;
	}
	while (k < e->count) {
		uint32_t start = k, dstart = di;
		uint64_t off, end;
		bool zero = blocks[k].zero;

		if (blocks[k].epoch <= base) {
			di += !blocks[k].zero;
			k++;
			continue;
		}
		/* A run: consecutive indexes, same kind, all lacking, at most 256. */
		do {
			di += !blocks[k].zero;
			k++;
		} while (k < e->count && blocks[k].idx == blocks[k - 1].idx + 1 &&
			 blocks[k].zero == zero && blocks[k].epoch > base && k - start < 256);
		off = (e->chunk * SPOOL_CHUNK + blocks[start].idx) * (uint64_t)PROTO_BLOCK;
		end = off + (uint64_t)(k - start) * PROTO_BLOCK;
		if (end > size)
			end = size;
		if ((r = emit_extent(t, j, e->src, off, (uint32_t)(end - off),
				     zero ? NULL : data + (size_t)dstart * PROTO_BLOCK)) < 0)
			return r;
	}
	return 0;
}

int ship_produce(struct target *t, struct job *j)
{
	struct wbuf b;
	int r = 0;

	wbuf_init(&b, 1 << 20);
	if (j->stage == JOB_BEGIN) {
		struct msg_epoch_begin m = { .epoch = j->epoch, .cut_time = j->cut_time,
					     .flags = j->flags, .n_sources = j->n_wire };
		/* The WAL's digest goes in PGSOURCE: hashed first, a step a pump. */
		for (uint32_t s = 0; s < j->g->n_sources; s++)
			if (j->pg[s] && (r = pgship_digest(t, j, s)) <= 0)
				goto out;
		r = 0;
		snprintf(m.group, sizeof(m.group), "%s", j->g->name);
		if ((r = proto_put_epoch_begin(&b, &m)) < 0 || (r = send_msg(t, MSG_EPOCH_BEGIN, &b)) < 0)
			goto out;
		for (uint32_t s = 0; s < j->g->n_sources; s++) {
			struct msg_source ms = { .idx = j->wire_idx[s], .base = j->base[s], .size = j->size[s],
						 .block_size = PROTO_BLOCK };
			if (j->wire_idx[s] == UINT32_MAX)
				continue;
			wbuf_reset(&b);
			if (j->pg[s]) {
				if ((r = pgship_put_pgsource(j, s, &b)) < 0 || (r = send_msg(t, MSG_PGSOURCE, &b)) < 0)
					goto out;
				continue;
			}
			snprintf(ms.name, sizeof(ms.name), "%s", j->g->sources[s].cfg->name);
			memcpy(ms.digest, j->digest[s], DIGEST_BYTES);
			if ((r = proto_put_source(&b, &ms)) < 0 || (r = send_msg(t, MSG_SOURCE, &b)) < 0)
				goto out;
		}
		j->stage = JOB_EXTENTS;
		j->rec = 0;
		t->in_flight++;
	} else if (j->stage == JOB_EXTENTS) {
		if (j->spool && j->rec < j->spool->n) {
			r = emit_record(t, j, j->rec++);
		} else {
			j->stage = JOB_PGDATA;
			j->pg_cur = 0;
		}
	} else if (j->stage == JOB_PGDATA) {
		while (j->pg_cur < j->g->n_sources && !j->pg[j->pg_cur])
			j->pg_cur++;
		if (j->pg_cur == j->g->n_sources)
			j->stage = JOB_END;
		else if ((r = pgship_data(t, j, j->pg_cur)) == 1) {
			j->pg_cur++;
			r = 0;
		}
	} else if (j->stage == JOB_END) {
		struct msg_epoch_end m = { .epoch = j->epoch, .n_extents = j->n_extents,
					   .raw_bytes = j->raw_bytes };
		snprintf(m.group, sizeof(m.group), "%s", j->g->name);
		if ((r = proto_put_epoch_end(&b, &m)) < 0 || (r = send_msg(t, MSG_EPOCH_END, &b)) < 0)
			goto out;
		j->stage = JOB_SENT;
		target_log(t, LOG_DEBUG, "epoch %" PRIu64 " of %s sent: %" PRIu64 " extents, %" PRIu64 " bytes",
		     j->epoch, j->g->name, j->n_extents, j->raw_bytes);
	}
out:
	wbuf_free(&b);
	return r;
}

