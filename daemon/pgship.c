/* pgship.c - what a target is sent of a postgres source in an epoch
 * (docs/protocol.md, section 7): PGSOURCE, then BASEFILE pieces of a base
 * backup when its copy cannot go on from the spool, then the WAL from
 * where its copy ends to the epoch's end, read from the spool, each piece
 * zstd-compressed when that shrinks it.
 *
 * The chained WAL digest is the target's own: it starts from the digest
 * its STATE reported (or from the base's), and each epoch's PGSOURCE
 * carries the chain over exactly the WAL sent to it.  PGSOURCE goes before
 * the WAL, so the WAL is hashed first, a piece per pump (the loop stays
 * free for a catch-up of a whole spool), and in the order the jobs go out. */
#include "daemon.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "pgsource.h"
#include "pgwal.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define PGSHIP_PIECE PGPROTO_MAX_WAL   /* bytes of WAL or of a file per message */
#define PGSHIP_HASH_STEP (8u << 20)    /* hashed per pump */

struct pgjob {
	struct pgsrc *p;
	struct msg_pgsource m;         /* name, positions, base; wal_digest once hashed */
	struct pgbase base;            /* PGSRC_BASE: the base sent */
	bool newer;                    /* ... a newer one, to a copy that goes on */
	int fds[PGBASE_MAX_FILES];
	/* PGSRC_BASE on a timeline above 1: its history file, sent first */
	char *hist;
	uint32_t hist_len, hist_tli, hist_off;
	bool hist_sent;
	/* the digest, before PGSOURCE */
	bool hashing, hashed;
	struct pgdigest hd;
	uint64_t hpos;
	/* the data */
	uint32_t file;
	uint64_t foff, wpos;
};

void pgship_free(struct pgjob *pj)
{
	if (!pj)
		return;
	for (uint32_t i = 0; i < pj->base.n_files; i++)
		if (pj->fds[i] >= 0)
			close(pj->fds[i]);
	sodium_memzero(&pj->hd, sizeof(pj->hd));
	free(pj->hist);
	free(pj);
}

static struct tpg *tpg_of(struct target *t, struct group *g, uint32_t s)
{
	return &t->groups[g->idx].pg[s];
}

void pgship_state(struct target *t, struct group *g, uint32_t s, const struct state_source *x)
{
	struct tpg *tp = tpg_of(t, g, s);

	memset(tp, 0, sizeof(*tp));
	tp->known = true;
	if (x->status != SRC_OK || !x->base_id || !x->timeline) {
		if (x->base_id || x->status != SRC_OK)
			target_log(t, LOG_WARNING, "its copy of %s/%s is %s: it gets a base backup", g->name, x->name,
				   x->status == SRC_OK ? "incomplete" : x->status == SRC_DIVERGED ? "diverged" : "unknown");
		return; /* nothing to go on from */
	}
	tp->system_id = tp->acked_system = x->system_id;
	tp->tli = tp->acked_tli = x->timeline;
	tp->base_id = x->base_id;
	tp->end_lsn = tp->acked_lsn = x->end_lsn;
	memcpy(tp->chain, x->digest, DIGEST_BYTES);
}

/* Job PJ carries base B: its files opened, PGSOURCE says so, and on a
 * timeline above 1 the timeline's history file goes first (the copy
 * cannot follow the timeline without it).  -EAGAIN while the stream has
 * not sent that history yet. */
static int base_files(struct target *t, struct pgsrc *p, const struct pgbase *B, struct pgjob *pj)
{
	if (B->tli > 1) {
		if (p->hist_tli != B->tli || !p->hist)
			return -EAGAIN;
		if (!(pj->hist = malloc(p->hist_len + 1)))
			return -ENOMEM;
		memcpy(pj->hist, p->hist, p->hist_len);
		pj->hist_len = p->hist_len;
		pj->hist_tli = p->hist_tli;
	}
	pj->base = *B;
	if (pgbases_open_files(&p->bases, pj->fds) < 0) {
		target_log(t, LOG_ERR, "%s", err_msg(-EIO));
		pj->base.n_files = 0;
		return -EIO;
	}
	pj->m.flags = PGSRC_BASE;
	pj->m.base_id = B->id;
	pj->m.base_bytes = B->bytes;
	memcpy(pj->m.base_digest, B->digest, DIGEST_BYTES);
	return 0;
}

bool pgship_prepare(struct target *t, struct group *g, struct job *j, uint32_t s)
{
	struct pgsrc *p = g->sources[s].pg;
	struct tpg *tp = tpg_of(t, g, s);
	struct walspool *ws = &p->wal;
	const struct pgbase *B = &p->bases.newest;
	uint64_t end = p->epoch_end, start = walspool_start(ws);
	struct pgjob *pj;
	char a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN];
	int r;

	if (!p->epoch_valid || p->epoch_gen != ws->gen)
		return false; /* the spool started afresh since: the next epoch */
	if (!(pj = calloc(1, sizeof(*pj))))
		return false;
	for (uint32_t i = 0; i < PGBASE_MAX_FILES; i++)
		pj->fds[i] = -1;
	pj->p = p;
	snprintf(pj->m.name, sizeof(pj->m.name), "%s", p->name);
	pj->m.system_id = p->epoch_system;
	pj->m.timeline = p->epoch_tli;
	pj->m.end_lsn = end;
	if (tp->known && tp->base_id && tp->system_id == p->epoch_system && tp->tli == p->epoch_tli &&
	    tp->end_lsn >= start) {
		/* Its copy goes on from the spool.  Ahead of this epoch (it
		 * holds WAL this daemon streams again after a restart): an
		 * epoch without WAL for it. */
		pj->m.base_id = tp->base_id;
		pj->m.start_lsn = tp->end_lsn;
		if (pj->m.end_lsn < pj->m.start_lsn)
			pj->m.end_lsn = pj->m.start_lsn;
		/* A newer base (base_interval, or half of wal_spool_max of
		 * WAL since the last) goes with the WAL from where its copy
		 * ends: a replica's promotion then replays only from it (the
		 * receiver keeps the old base until this epoch commits), a
		 * vault's WAL stays one unbroken chain across bases (PITR). */
		if (p->bases.have && B->system_id == p->epoch_system &&
		    B->tli == p->epoch_tli && B->id > tp->base_id && B->end_lsn <= pj->m.end_lsn &&
		    (B->tli == 1 || p->hist_tli == B->tli)) {
			if ((r = base_files(t, p, B, pj)) < 0) {
				pgship_free(pj);
				return false;
			}
			pj->newer = true;
			target_log(t, LOG_INFO, "sending base backup %s of %s/%s (%.1f MiB), newer than the one it "
				   "holds, with the WAL from %s to %s", pgwal_lsn_format(B->id, a), g->name, p->name,
				   (double)B->bytes / 1048576.0, pgwal_lsn_format(pj->m.start_lsn, b),
				   pgwal_lsn_format(pj->m.end_lsn, (char[PGWAL_LSN_LEN]){ 0 }));
		}
	} else {
		if (!p->bases.have || B->system_id != p->epoch_system || B->tli != p->epoch_tli || B->end_lsn > end ||
		    pgwal_seg_start(B->id, ws->segsize) < start) {
			if (!tp->needs_base)
				target_log(t, LOG_WARNING, "its copy of %s/%s cannot go on from the WAL spool (it %s): it "
					   "waits for a base backup", g->name, p->name, !tp->known ? "holds none" :
					   tp->system_id != p->epoch_system ? "is of another cluster" :
					   tp->tli != p->epoch_tli ? "is of another timeline" :
					   !tp->base_id ? "holds no base" : "ends before the spool's oldest WAL");
			tp->needs_base = true;
			pgsource_want_base(p, "a target needs one");
			free(pj);
			return false;
		}
		if ((r = base_files(t, p, B, pj)) < 0) {
			if (r == -EAGAIN && !tp->hist_wait_logged)
				target_log(t, LOG_INFO, "base backup %s of %s/%s waits for the history file of timeline "
					   "%u from the stream", pgwal_lsn_format(B->id, a), g->name, p->name, B->tli);
			tp->hist_wait_logged = r == -EAGAIN;
			pgship_free(pj);
			return false;
		}
		tp->hist_wait_logged = false;
		/* Recovery reads the segment holding the base's start from its
		 * first page: the WAL goes from there. */
		pj->m.start_lsn = pgwal_seg_start(B->id, ws->segsize);
		if (!tp->needs_base || !tp->bases_sent)
			target_log(t, LOG_INFO, "sending base backup %s of %s/%s (%.1f MiB) and the WAL from %s to %s",
				   pgwal_lsn_format(B->id, a), g->name, p->name, (double)B->bytes / 1048576.0,
				   pgwal_lsn_format(pj->m.start_lsn, b), pgwal_lsn_format(end, (char[PGWAL_LSN_LEN]){ 0 }));
	}
	j->pg[s] = pj;
	return true;
}

/* The target's copy is where job J leaves it (the next job follows it). */
void pgship_commit(struct target *t, struct group *g, struct job *j, uint32_t s)
{
	struct tpg *tp = tpg_of(t, g, s);
	const struct pgjob *pj = j->pg[s];

	tp->known = true;
	tp->system_id = pj->m.system_id;
	tp->tli = pj->m.timeline;
	tp->base_id = pj->m.base_id;
	tp->end_lsn = pj->m.end_lsn;
	if ((pj->m.flags & PGSRC_BASE) && !pj->newer)
		tp->needs_base = true; /* until acked; a newer base is no alert */
}

/* Hash a step of the job's WAL: 1 once the digest is made, 0 for more,
 * or a negative errno. */
int pgship_digest(struct target *t, struct job *j, uint32_t s)
{
	struct pgjob *pj = j->pg[s];
	struct tpg *tp;
	uint64_t budget = PGSHIP_HASH_STEP;
	int r;

	if (pj->hashed)
		return 1;
	if (!pj->hashing) {
		uint8_t prev[DIGEST_BYTES];
		if (pj->m.flags & PGSRC_BASE)
			pgdigest_base(pj->p->wal_key, pj->m.base_id, pj->m.base_digest, prev);
		else {
			/* The chain as the previous job left it (jobs are hashed in order). */
			tp = j->g->retired ? NULL : tpg_of(t, j->g, s);
			if (!tp)
				return err_set(ESTALE, "the group was reloaded");
			memcpy(prev, tp->chain, DIGEST_BYTES);
		}
		pgdigest_begin(&pj->hd, pj->p->wal_key, prev, pj->m.timeline, pj->m.start_lsn, pj->m.end_lsn);
		pj->hpos = pj->m.start_lsn;
		pj->hashing = true;
	}
	while (pj->hpos < pj->m.end_lsn && budget) {
		uint32_t n = pj->m.end_lsn - pj->hpos > PGSHIP_PIECE ? PGSHIP_PIECE : (uint32_t)(pj->m.end_lsn - pj->hpos);
		if ((r = walspool_read(&pj->p->wal, pj->hpos, t->chunk, n)) < 0)
			return r;
		pgdigest_update(&pj->hd, t->chunk, n);
		pj->hpos += n;
		budget = budget > n ? budget - n : 0;
	}
	if (pj->hpos < pj->m.end_lsn)
		return 0;
	pgdigest_final(&pj->hd, pj->m.wal_digest);
	pj->hashed = true;
	if (!j->g->retired)
		memcpy(tpg_of(t, j->g, s)->chain, pj->m.wal_digest, DIGEST_BYTES);
	return 1;
}

int pgship_put_pgsource(struct job *j, uint32_t s, struct wbuf *b)
{
	struct pgjob *pj = j->pg[s];

	pj->m.idx = j->wire_idx[s];
	return pgproto_put_pgsource(b, &pj->m);
}

int pgship_pack(struct target *t, size_t hdr, const uint8_t *data, uint32_t len)
{
	size_t bound = ZSTD_compressBound(len), n;
	int r;

	if ((r = wbuf_reserve(&t->ext, bound)) < 0)
		return r;
	n = ZSTD_compressCCtx(t->zctx, t->ext.p + hdr, bound, data, len, 1);
	if (ZSTD_isError(n) || n >= len) {
		t->ext.p[hdr - 1] = EXT_RAW;
		memcpy(t->ext.p + hdr, data, len);
		n = len;
	}
	t->ext.len = hdr + n;
	return 0;
}

/* The next message of source S's data: BASEFILE pieces, then WAL.  1 once
 * all is sent, 0 when more follow, or a negative errno. */
int pgship_data(struct target *t, struct job *j, uint32_t s)
{
	struct pgjob *pj = j->pg[s];
	int r;

	wbuf_reset(&t->ext);
	if (pj->hist && !pj->hist_sent) {
		/* TTTTTTTT.history as a BASEFILE outside the base's bytes and
		 * digest (the receivers take that name as a history file). */
		uint32_t n = pj->hist_len - pj->hist_off > PGSHIP_PIECE ? PGSHIP_PIECE : pj->hist_len - pj->hist_off;
		struct msg_basefile m = { .src = j->wire_idx[s], .offset = pj->hist_off, .raw_len = n, .enc = EXT_RAW };
		pgwal_history_name(m.file, pj->hist_tli);
		if ((r = pgproto_put_basefile_hdr(&t->ext, &m)) < 0 || (r = wbuf_put_bytes(&t->ext, pj->hist, n)) < 0 ||
		    (r = wire_send(&t->w, MSG_BASEFILE, t->ext.p, t->ext.len)) < 0)
			return r;
		j->n_extents++;
		j->raw_bytes += n;
		t->raw_sent += n;
		pj->hist_off += n;
		pj->hist_sent = pj->hist_off >= pj->hist_len;
		return 0;
	}
	if (pj->file < pj->base.n_files) {
		const struct pgbase_file *f = &pj->base.files[pj->file];
		uint32_t n = f->size - pj->foff > PGSHIP_PIECE ? PGSHIP_PIECE : (uint32_t)(f->size - pj->foff);
		struct msg_basefile m = { .src = j->wire_idx[s], .offset = pj->foff, .raw_len = n,
					  .enc = n ? EXT_ZSTD : EXT_RAW };
		snprintf(m.file, sizeof(m.file), "%s", f->name);
		if (n && fs_pread_full(pj->fds[pj->file], t->chunk, n, pj->foff) != (ssize_t)n)
			return err_set(EIO, "cannot read %s of base backup %" PRIX64 " of %s/%s", f->name, pj->base.id,
				       pj->p->group, pj->p->name);
		if ((r = pgproto_put_basefile_hdr(&t->ext, &m)) < 0 ||
		    (n && (r = pgship_pack(t, t->ext.len, t->chunk, n)) < 0) ||
		    (r = wire_send(&t->w, MSG_BASEFILE, t->ext.p, t->ext.len)) < 0)
			return r;
		j->n_extents++;
		j->raw_bytes += n;
		t->raw_sent += n;
		pj->foff += n;
		if (pj->foff >= f->size) {
			pj->file++;
			pj->foff = 0;
		}
		return 0;
	}
	if (!pj->wpos)
		pj->wpos = pj->m.start_lsn;
	if (pj->wpos < pj->m.end_lsn) {
		uint32_t n = pj->m.end_lsn - pj->wpos > PGSHIP_PIECE ? PGSHIP_PIECE : (uint32_t)(pj->m.end_lsn - pj->wpos);
		struct msg_wal m = { .src = j->wire_idx[s], .lsn = pj->wpos, .raw_len = n, .enc = EXT_ZSTD };
		if ((r = walspool_read(&pj->p->wal, pj->wpos, t->chunk, n)) < 0 ||
		    (r = pgproto_put_wal_hdr(&t->ext, &m)) < 0 || (r = pgship_pack(t, t->ext.len, t->chunk, n)) < 0 ||
		    (r = wire_send(&t->w, MSG_WAL, t->ext.p, t->ext.len)) < 0)
			return r;
		j->n_extents++;
		j->raw_bytes += n;
		t->raw_sent += n;
		pj->wpos += n;
		return 0;
	}
	return 1;
}

void pgship_acked(struct target *t, struct job *j, uint32_t gi)
{
	for (uint32_t s = 0; s < j->g->n_sources; s++) {
		struct pgjob *pj = j->pg[s];
		struct tpg *tp;
		if (!pj || !pj->p->s || pj->p->s->g->idx != gi)
			continue;
		tp = &t->groups[gi].pg[pj->p->s->idx];
		tp->acked_lsn = pj->m.end_lsn;
		tp->acked_system = pj->m.system_id;
		tp->acked_tli = pj->m.timeline;
		tp->behind_logged = false;
		if (pj->m.flags & PGSRC_BASE) {
			tp->needs_base = false;
			tp->bases_sent++;
			target_log(t, LOG_INFO, "holds base backup %" PRIX64 " of %s/%s and the WAL after it", pj->m.base_id,
				   pj->p->group, pj->p->name);
		}
		pgsource_acked(pj->p);
	}
}
