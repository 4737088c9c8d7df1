/* apply.c - receiving an epoch: its redo journal, the undo of what it
 * overwrites, the commit point, the apply, the digest check, undo retention.
 * A PostgreSQL source of the epoch goes through pgstore.c up to the commit
 * point; the redo header records where it then stands.
 *
 * A WAL-only epoch (PostgreSQL sources only, each going on from where its
 * copy ends: no base, no new timeline) is light: it has nothing to apply
 * after its commit point, so it has no redo journal; its WAL and chain
 * record made durable (pgstore.c), its undo journal written, the group
 * state is its commit point. */
#include "pg.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <linux/falloc.h>

/* ---- receiving an epoch ---- */

struct rapply {
	struct replica *r;
	struct msg_epoch_begin begin;
	struct msg_source src[PROTO_MAX_SOURCES];
	uint32_t n_src;
	struct rstate state;
	struct jwriter redo;
	uint64_t n_extents, raw_bytes;
	uint32_t last_src;
	uint64_t next_off; /* extents strictly increase within a source */
	bool header_written;
	uint32_t n_new;    /* sources without state so far (the state holds at most 64) */
	/* Sources new to this replica are written straight into a seed file
	 * (and its map), renamed into place by the committed redo. */
	struct target_file seed[PROTO_MAX_SOURCES];
	bool seeded[PROTO_MAX_SOURCES];
	/* PostgreSQL sources, at their index (src[] holds their name only). */
	struct pgrecv *pg[PROTO_MAX_SOURCES];
	bool new_base;     /* one brings a base backup: retention looks at the bases */
	bool light;        /* a WAL-only epoch: no redo journal (LH is its header) */
	struct jheader lh;
};


static void seed_discard(struct rapply *a)
{
	for (uint32_t i = 0; i < a->n_src; i++) {
		char f[RPATH], m[RPATH];
		if (!a->seeded[i])
			continue;
		tf_close(&a->seed[i]);
		if (seed_paths(a->r, a->begin.group, a->src[i].name, f, m, sizeof(f)) == 0) {
			tree_unlink(a->r, f);
			tree_unlink(a->r, m);
		}
		a->seeded[i] = false;
	}
}

int replica_epoch_begin(struct replica *r, const struct msg_epoch_begin *m, struct rapply **ret)
{
	struct rapply *a;
	char dir[RPATH];
	int rc;

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->r = r;
	a->begin = *m;
	a->redo.fd = -1;
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		a->seed[i].fd = -1;
	/* Epochs of the group staged (batch.c): it goes on from the last. */
	rc = batch_state(r, m->group, &a->state);
	if (rc == 0)
		rc = replica_load_state(r, m->group, &a->state);
	else if (rc == 1)
		rc = 0;
	if (rc == -ENOENT) {
		memset(&a->state, 0, sizeof(a->state));
		snprintf(a->state.group, sizeof(a->state.group), "%s", m->group);
		rc = 0;
	}
	if (rc < 0 || (rc = replica_refuse_promoted(r, m->group)) < 0)
		goto fail;
	if (m->epoch <= a->state.epoch) {
		rc = err_set(EPROTO, "epoch %llu of %s is not newer than the replica's epoch %llu",
			     (unsigned long long)m->epoch, m->group, (unsigned long long)a->state.epoch);
		goto fail;
	}
	if ((rc = gpath(r, dir, sizeof(dir), m->group, "journal")) < 0 ||
	    (rc = tree_mkdir(r, dir)) < 0 ||
	    (rc = gpath(r, dir, sizeof(dir), m->group, "undo")) < 0 ||
	    (rc = tree_mkdir(r, dir)) < 0)
		goto fail;
	*ret = a;
	return 0;
fail:
	free(a);
	return rc;
}

/* The next source of the epoch may be IDX, named NAME. */
static int source_next(const struct rapply *a, uint32_t idx, const char *name, const char *what)
{
	if (a->header_written || idx != a->n_src || a->n_src >= a->begin.n_sources)
		return err_set(EPROTO, "%s message out of order", what);
	for (uint32_t i = 0; i < a->n_src; i++)
		if (strcmp(a->src[i].name, name) == 0)
			return err_set(EPROTO, "source %s announced twice", name);
	return 0;
}

int replica_epoch_pgsource(struct rapply *a, const struct msg_pgsource *m)
{
	struct state_source *have;
	int rc;

	if ((rc = source_next(a, m->idx, m->name, "PGSOURCE")) < 0)
		return rc;
	have = state_find(&a->state, m->name);
	if (!have && a->state.n_sources + ++a->n_new > PROTO_MAX_SOURCES)
		return err_set(EPROTO, "group %s would have more than %d sources with %s", a->begin.group,
			       PROTO_MAX_SOURCES, m->name);
	if ((rc = tree_mkdir(a->r, a->begin.group)) < 0 ||
	    (rc = pgrecv_begin(a->r, a->begin.group, a->begin.epoch, a->begin.cut_time, m, have,
			       &a->pg[a->n_src])) < 0)
		return rc;
	a->new_base |= (m->flags & PGSRC_BASE) != 0;
	memset(&a->src[a->n_src], 0, sizeof(a->src[0]));
	memcpy(a->src[a->n_src].name, m->name, sizeof(m->name));
	a->src[a->n_src].idx = m->idx;
	a->n_src++;
	return 0;
}

int replica_epoch_source(struct rapply *a, const struct msg_source *m)
{
	struct state_source *have;
	uint64_t cur = 0;
	int rc;

	if ((rc = source_next(a, m->idx, m->name, "SOURCE")) < 0)
		return rc;
	have = state_find(&a->state, m->name);
	if (have && pg_source(have))
		return err_set(EPROTO, "source %s/%s is a PostgreSQL source in the replica, a disk in the epoch",
			       a->begin.group, m->name);
	if (have)
		cur = have->epoch;
	/* Base 0 is a full resync: every block of the source is sent. */
	if (m->base != cur && m->base != 0)
		return err_set(EPROTO, "epoch %llu of %s/%s starts from epoch %llu but the replica is at %llu",
			       (unsigned long long)a->begin.epoch, a->begin.group, m->name,
			       (unsigned long long)m->base, (unsigned long long)cur);
	if (!have && a->state.n_sources + ++a->n_new > PROTO_MAX_SOURCES)
		return err_set(EPROTO, "group %s would have more than %d sources with %s (the replica "
				       "keeps sources the primary no longer sends): move the replica "
				       "files of the old ones away",
			       a->begin.group, PROTO_MAX_SOURCES, m->name);
	if (!have) {
		/* New to this replica, and no file of unknown content to patch:
		 * seed it directly, no redo copy of its data. */
		char rf[RPATH];
		if ((rc = replica_file(a->r, rf, sizeof(rf), a->begin.group, m->name)) < 0 ||
		    (rc = tree_exists(a->r, rf)) < 0)
			return rc;
		if (rc == 0) {
			if ((rc = tf_create_seed(a->r, a->begin.group, m->name, &a->seed[a->n_src])) < 0)
				return rc;
			a->seeded[a->n_src] = true;
		}
	}
	a->src[a->n_src++] = *m;
	return 0;
}

static int write_redo_header(struct rapply *a)
{
	struct jheader h;
	char path[RPATH];
	int rc;

	if (a->n_src != a->begin.n_sources)
		return err_set(EPROTO, "extent before all sources were announced");
	memset(&h, 0, sizeof(h));
	h.kind = J_REDO;
	memcpy(h.group, a->begin.group, sizeof(h.group));
	h.epoch = a->begin.epoch;
	h.prev_epoch = a->state.epoch;
	h.cut_time = a->begin.cut_time;
	h.flags = a->begin.flags;
	h.n_sources = a->n_src;
	for (uint32_t i = 0; i < a->n_src; i++) {
		if (a->pg[i]) {
			pgrecv_jsource(a->pg[i], &h.sources[i]);
			continue;
		}
		memcpy(h.sources[i].name, a->src[i].name, sizeof(h.sources[i].name));
		h.sources[i].epoch = a->begin.epoch;
		h.sources[i].size = a->src[i].size;
		h.sources[i].exists = a->seeded[i] ? SEEDED : 1;
		memcpy(h.sources[i].digest, a->src[i].digest, DIGEST_BYTES);
		h.sources[i].dv = DIGEST_V2; /* what a peer of this WIRE_VERSION sends */
	}
	a->light = a->n_src > 0 && !a->state.pending_undo;
	for (uint32_t i = 0; i < a->n_src && a->light; i++)
		a->light = a->pg[i] && pgrecv_light(a->pg[i]);
	if (a->light) {
		a->lh = h;
		a->header_written = true;
		return 0;
	}
	if ((rc = gpath(a->r, path, sizeof(path), a->begin.group, "journal/%llu.redo.tmp",
			(unsigned long long)a->begin.epoch)) < 0)
		return rc;
	a->header_written = true;
	if ((rc = jw_open(&a->redo, a->r, path, &h)) < 0)
		return rc;
	return 0;
}

int replica_epoch_extent(struct rapply *a, uint32_t src, uint64_t off, uint32_t len,
			 const uint8_t *data)
{
	uint64_t size;
	int rc;

	if (!a->header_written && (rc = write_redo_header(a)) < 0)
		return rc;
	if (src >= a->n_src || a->pg[src])
		return err_set(EPROTO, "extent for unknown source %u", src);
	size = a->src[src].size;
	/* Bounds written so that no sum wraps (an offset near 2^64 would). */
	if (src < a->last_src || (src == a->last_src && off < a->next_off) || len == 0 ||
	    off % PROTO_BLOCK || off > size || len > size - off ||
	    (len % PROTO_BLOCK && off + len != size))
		return err_set(EPROTO, "extent [%llu, +%u) of %s out of order or out of bounds",
			       (unsigned long long)off, len, a->src[src].name);
	a->last_src = src;
	a->next_off = off + len;
	a->n_extents++;
	a->raw_bytes += len;
	if (a->seeded[src])
		return tf_write(&a->seed[src], off, len, data, size);
	rc = jw_record(&a->redo, src, off, len, data);
	return rc < 0 ? err_set(rc, "cannot write journal %s/%s: %s", a->r->root, a->redo.path,
				strerror(-rc)) : 0;
}

/* The PostgreSQL source SRC of the epoch, an extent of LEN bytes for it
 * counted (the redo header written first), or an error naming WHAT. */
static struct pgrecv *pg_extent(struct rapply *a, uint32_t src, const char *what, uint32_t len, int *rc)
{
	if (src >= a->n_src || !a->pg[src]) {
		*rc = err_set(EPROTO, "%s for source %u, which is not a PostgreSQL source of the epoch", what, src);
		return NULL;
	}
	if (!a->header_written && (*rc = write_redo_header(a)) < 0)
		return NULL;
	a->n_extents++;
	a->raw_bytes += len;
	return a->pg[src];
}

int replica_epoch_wal(struct rapply *a, uint32_t src, uint64_t lsn, uint32_t len, const uint8_t *data)
{
	int rc;
	struct pgrecv *p = pg_extent(a, src, "WAL", len, &rc);

	return p ? pgrecv_wal(p, lsn, len, data) : rc;
}

int replica_epoch_basefile(struct rapply *a, uint32_t src, const char *file, uint64_t off, uint32_t len,
			   const uint8_t *data)
{
	int rc;
	struct pgrecv *p = pg_extent(a, src, "BASEFILE", len, &rc);

	return p ? pgrecv_basefile(p, file, off, len, data) : rc;
}

/* Save what the uncommitted redo of A will overwrite into undo/N.undo;
 * durable on return, or (SS) once SS ran. */
static int write_undo(struct rapply *a, struct syncset *ss)
{
	struct target_file tfs[PROTO_MAX_SOURCES];
	char path[RPATH], final[RPATH];
	struct jheader rh, uh;
	struct jreader j = { .fd = -1 };
	struct jwriter w = { .fd = -1 };
	uint8_t *buf = malloc(PROTO_MAX_EXTENT);
	uint32_t src, len;
	uint64_t off;
	const uint8_t *data;
	int rc, k;

	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		tfs[i].fd = -1, tfs[i].map = NULL, tfs[i].tree = NULL;
	if (!buf)
		return -ENOMEM;
	if (a->light)
		rh = a->lh; /* no redo journal, no records */
	else if ((rc = jr_open_mode(&j, a->r, a->begin.group, "redo.tmp", a->begin.epoch, &rh, false)) < 0)
		goto out;
	memset(&uh, 0, sizeof(uh));
	uh.kind = J_UNDO;
	memcpy(uh.group, rh.group, sizeof(uh.group));
	uh.epoch = rh.epoch;
	uh.prev_epoch = a->state.epoch;
	uh.cut_time = a->state.cut_time;
	uh.applied_time = a->state.applied_time;
	uh.flags = a->state.flags;
	uh.n_sources = rh.n_sources;
	for (uint32_t i = 0; i < rh.n_sources; i++) {
		struct state_source *x = state_find(&a->state, rh.sources[i].name);
		memcpy(uh.sources[i].name, rh.sources[i].name, sizeof(uh.sources[i].name));
		if (rh.sources[i].pg) {
			/* No data to save: where the copy stood (its WAL and base stay). */
			uh.sources[i].pg = JPG_SOURCE;
			if (x) {
				uh.sources[i].exists = 1;
				uh.sources[i].epoch = x->epoch;
				uh.sources[i].status = x->status;
				memcpy(uh.sources[i].digest, x->digest, DIGEST_BYTES);
				uh.sources[i].dv = x->dv;
				uh.sources[i].system_id = x->system_id;
				uh.sources[i].base_id = x->base_id;
				uh.sources[i].timeline = x->timeline;
				uh.sources[i].end_lsn = x->end_lsn;
			}
		} else if (x) {
			uh.sources[i].exists = 1;
			uh.sources[i].epoch = x->epoch;
			uh.sources[i].size = x->size;
			uh.sources[i].status = x->status;
			memcpy(uh.sources[i].digest, x->digest, DIGEST_BYTES);
			uh.sources[i].dv = x->dv;
			if ((rc = tf_open(a->r, rh.group, x->name, false, &tfs[i])) < 0)
				goto out;
		} else {
			/* A replica file without state (unknown content): keep it too. */
			char fp[RPATH];
			if (replica_file(a->r, fp, sizeof(fp), rh.group, rh.sources[i].name) == 0 &&
			    tree_exists(a->r, fp) == 1) {
				if ((rc = tf_open(a->r, rh.group, rh.sources[i].name, false, &tfs[i])) < 0)
					goto out;
				uh.sources[i].exists = 1;
				uh.sources[i].size = tfs[i].size;
				uh.sources[i].status = SRC_UNKNOWN;
			}
		}
	}
	if ((rc = gpath(a->r, path, sizeof(path), rh.group, "undo/%llu.undo.tmp",
			(unsigned long long)rh.epoch)) < 0 ||
	    (rc = gpath(a->r, final, sizeof(final), rh.group, "undo/%llu.undo",
			(unsigned long long)rh.epoch)) < 0)
		goto out;
	if ((rc = jw_open(&w, a->r, path, &uh)) < 0)
		goto out;
	k = 0;
	while (!a->light && (k = jr_next(&j, &src, &off, &len, &data)) == 1) {
		uint64_t old_size;
		size_t n;
		ssize_t got;
		bool zero = true;

		if (src >= uh.n_sources || !uh.sources[src].exists)
			continue;
		old_size = uh.sources[src].size;
		if (off >= old_size)
			continue;
		n = off + len > old_size ? (size_t)(old_size - off) : len;
		got = fs_pread_full(tfs[src].fd, buf, n, off);
		if (got < 0) {
			rc = err_set((int)got, "cannot read replica for undo: %s", strerror((int)-got));
			goto out;
		}
		if ((size_t)got < n)
			memset(buf + got, 0, n - (size_t)got);
		for (size_t i = 0; i < n && zero; i += PROTO_BLOCK)
			zero = memcmp(buf + i, zero_block, n - i < PROTO_BLOCK ? n - i : PROTO_BLOCK) == 0;
		if ((rc = jw_record(&w, src, off, (uint32_t)n, zero ? NULL : buf)) < 0)
			goto out;
	}
	if (k < 0) {
		rc = k;
		goto out;
	}
	if ((rc = jw_finish(&w, ss)) < 0)
		goto out;
	if ((rc = tree_rename(a->r, path, final)) < 0)
		goto out;
	rc = ss ? syncset_parent(a->r, ss, final) : tree_fsync_parent(a->r, final);
out:
	if (w.r)
		jw_close(&w, rc < 0);
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		tf_close(&tfs[i]);
	jr_close(&j);
	free(buf);
	return rc;
}

/* Reserve space for every range of the redo so that applying it cannot run
 * out of space half-way: a failure here leaves the replica untouched. */
static int reserve_space(struct rapply *a)
{
	struct jreader j = { .fd = -1 };
	struct jheader h;
	uint32_t src, len;
	uint64_t off;
	const uint8_t *data;
	int fds[PROTO_MAX_SOURCES], rc, k;

	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		fds[i] = -1;
	if ((rc = jr_open_mode(&j, a->r, a->begin.group, "redo.tmp", a->begin.epoch, &h, false)) < 0)
		goto out;
	for (uint32_t i = 0; i < h.n_sources; i++) {
		char path[RPATH];
		if (h.sources[i].exists == SEEDED || h.sources[i].pg)
			continue; /* written in its seed file (or the WAL store) already */
		if ((rc = tree_mkdir(a->r, h.group)) < 0 ||
		    (rc = replica_file(a->r, path, sizeof(path), h.group, h.sources[i].name)) < 0)
			goto out;
		if ((fds[i] = tree_open(a->r, path, O_RDWR | O_CREAT, 0600)) < 0) {
			rc = fds[i];
			fds[i] = -1;
			goto out;
		}
	}
	while ((k = jr_next(&j, &src, &off, &len, &data)) == 1) {
		if (!data || src >= h.n_sources || fds[src] < 0)
			continue;
		if (fallocate(fds[src], FALLOC_FL_KEEP_SIZE, (off_t)off, len) < 0 && errno != EOPNOTSUPP) {
			rc = err_set(errno, "cannot reserve space in the replica of %s/%s: %s",
				     h.group, h.sources[src].name, strerror(errno));
			goto out;
		}
	}
	rc = k < 0 ? k : 0;
out:
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	jr_close(&j);
	return rc;
}

/* Epoch CURRENT committed after PREV (its state S): the undo journals of
 * rollback points past what is kept go.  The points come from the cache
 * (cache.c), listed from the journals once per process. */
void undo_prune(struct replica *r, const struct rstate *prev, uint64_t current)
{
	const uint64_t *epochs, *times;
	size_t n = 0, first = SIZE_MAX;
	uint64_t now = clock_now_usec();

	rbcache_committed(r, prev->group, prev->epoch, prev->cut_time, current);
	if (rbcache_points(r, prev->group, current, &epochs, &times, &n) < 0)
		return;
	/* epochs[i] is a rollback point; undo (epochs[i-1] or current) leads there. */
	for (size_t i = 0; i < n; i++) {
		uint64_t undo_epoch = i == 0 ? current : epochs[i - 1];
		char path[RPATH];
		if (i < r->keep_epochs)
			continue;
		if (r->keep_time && times[i] && now - times[i] < r->keep_time)
			continue;
		if (first == SIZE_MAX)
			first = i;
		if (gpath(r, path, sizeof(path), prev->group, "undo/%llu.undo",
			  (unsigned long long)undo_epoch) == 0)
			tree_unlink(r, path);
	}
	if (first != SIZE_MAX)
		rbcache_truncate(r, prev->group, first);
}

/* The WAL or base of source NAME failed its digest: nothing of the epoch
 * is applied; the source is marked diverged, so that the primary sends a
 * new base backup (docs/replica.md). */
static int pg_mismatch(struct rapply *a, const char *name, int rc)
{
	struct state_source *x = state_find(&a->state, name);
	char why[512];
	int rc2;

	snprintf(why, sizeof(why), "%s", err_msg(rc));
	/* The state marked is that of the staged epochs: durable first. */
	if ((rc2 = replica_flush_tidy(a->r)) < 0)
		return rc2;
	if (x && x->status != SRC_DIVERGED) {
		x->status = SRC_DIVERGED;
		if (state_write(a->r, &a->state) < 0)
			log_warn("%s", err_msg(-EIO));
	}
	return err_set(EBADMSG, "%s", why);
}

/* A light epoch: its WAL read back, its undo journal and the new group
 * state written, all of it made durable at once (one round of fsyncs, run
 * together), then the state put in place: the commit point (nothing is
 * left to apply).  STAGE: the round of fsyncs and the state wait for a
 * later epoch's (batch.c); 1 when they do. */
static int commit_light(struct rapply *a, bool stage)
{
	struct syncset ss = { .n = 0 };
	struct rstate next;
	int rc;

	for (uint32_t i = 0; i < a->n_src; i++)
		if ((rc = pgrecv_prepare(a->pg[i], &a->lh.sources[i], &ss)) < 0) {
			syncset_drop(&ss);
			return rc == -EBADMSG ? pg_mismatch(a, a->src[i].name, rc) : rc;
		}
	next = a->state;
	next.alarm[0] = 0;
	if ((rc = write_undo(a, &ss)) < 0 || (rc = state_after_redo(&next, &a->lh)) < 0 ||
	    (rc = batch_add(a->r, &a->state, &next, &ss)) < 0) {
		syncset_drop(&ss);
		return rc;
	}
	a->state = next;
	if (rc == 1 && !stage)
		rc = replica_flush(a->r);
	return rc;
}

static int replica_epoch_commit_locked(struct rapply *a, const struct msg_epoch_end *m, bool stage)
{
	char tmp[RPATH], redo[RPATH];
	struct jheader h;
	struct rstate next;
	int rc;

	if (strcmp(m->group, a->begin.group) != 0 || m->epoch != a->begin.epoch ||
	    m->n_extents != a->n_extents || m->raw_bytes != a->raw_bytes)
		return err_set(EPROTO, "EPOCH_END does not match what was received (%llu extents, "
				       "%llu bytes announced; %llu, %llu received)",
			       (unsigned long long)m->n_extents, (unsigned long long)m->raw_bytes,
			       (unsigned long long)a->n_extents, (unsigned long long)a->raw_bytes);
	if (!a->header_written && (rc = write_redo_header(a)) < 0)
		return rc;
	if (a->light)
		return commit_light(a, stage);
	/* Its commit point comes after the staged epochs' (recovery replays
	 * a committed redo on the state on disk), and so does their tidying
	 * (it prunes from their states, which do not hold this epoch's base). */
	if ((rc = replica_flush_tidy(a->r)) < 0)
		return rc;
	for (uint32_t i = 0; i < a->n_src; i++)
		if (a->seeded[i] && (rc = tf_sync(&a->seed[i])) < 0)
			return rc;
	/* PostgreSQL sources: durable and read back before the commit point. */
	for (uint32_t i = 0; i < a->n_src; i++) {
		struct jsource j;
		if (a->pg[i] && (rc = pgrecv_prepare(a->pg[i], &j, NULL)) < 0)
			return rc == -EBADMSG ? pg_mismatch(a, a->src[i].name, rc) : rc;
	}
	snprintf(tmp, sizeof(tmp), "%s", a->redo.path);
	if ((rc = jw_finish(&a->redo, NULL)) < 0)
		return rc;
	if ((rc = reserve_space(a)) < 0 || (rc = write_undo(a, NULL)) < 0)
		return rc;
	/* Commit point: from here on recovery rolls this epoch forward. */
	if ((rc = gpath(a->r, redo, sizeof(redo), a->begin.group, "journal/%llu.redo",
			(unsigned long long)a->begin.epoch)) < 0)
		return rc;
	if ((rc = tree_rename(a->r, tmp, redo)) < 0)
		return err_wrap(rc, "cannot commit %s/%s", a->r->root, redo);
	jw_close(&a->redo, false);
	for (uint32_t i = 0; i < a->n_src; i++)
		if (a->seeded[i]) {
			tf_close(&a->seed[i]);
			a->seeded[i] = false; /* the committed redo owns the seed now */
		}
	if ((rc = tree_fsync_parent(a->r, redo)) < 0)
		return rc;
	if ((rc = journal_apply(a->r, a->begin.group, "redo", a->begin.epoch, false, &h)) < 0)
		return rc;
	if ((rc = check_digests(a->r, &h)) < 0) {
		int rc2;
		snprintf(a->state.alarm, sizeof(a->state.alarm), "%s", err_msg(rc));
		rc2 = undo_after_mismatch(a->r, &a->state, h.epoch, redo);
		err_set(EBADMSG, "%s", a->state.alarm);
		return rc2 < 0 ? rc2 : -EBADMSG;
	}
	next = a->state;
	next.alarm[0] = 0;
	if ((rc = state_after_redo(&next, &h)) < 0 || (rc = state_write(a->r, &next)) < 0)
		return rc;
	tree_unlink(a->r, redo);
	tree_fsync_parent(a->r, redo);
	undo_prune(a->r, &a->state, next.epoch);
	/* Bases and WAL that no retained epoch needs: looked at when a base
	 * arrives, and now and then as rollback points expire. */
	pgstore_committed(a->r, &a->state, &next, a->new_base || next.epoch % 64 == 0);
	a->state = next;
	return 0;
}

/* The apply changes replica files: a live reader waits, or is waited for. */
static int epoch_commit(struct rapply *a, const struct msg_epoch_end *m, bool stage)
{
	int rc = apply_lock(a->r, LOCK_EX);

	if (rc < 0)
		return rc;
	replica_tidy(a->r); /* the epochs before it first (batch.c) */
	rc = replica_epoch_commit_locked(a, m, stage);
	apply_unlock(a->r, LOCK_EX);
	return rc;
}

int replica_epoch_commit(struct rapply *a, const struct msg_epoch_end *m)
{
	int rc = epoch_commit(a, m, false);

	return rc > 0 ? 0 : rc;
}

int replica_epoch_stage(struct rapply *a, const struct msg_epoch_end *m)
{
	return epoch_commit(a, m, true);
}

void replica_epoch_abort(struct rapply *a)
{
	if (!a)
		return;
	seed_discard(a);
	for (uint32_t i = 0; i < a->n_src; i++)
		pgrecv_free(a->pg[i]); /* what it wrote is beyond the copy's end, or an ID.tmp */
	if (a->header_written)
		jw_close(&a->redo, true);
	else
		wbuf_free(&a->redo.buf);
	free(a);
}

const char *replica_epoch_source_name(const struct rapply *a, uint32_t idx)
{
	return idx < a->n_src ? a->src[idx].name : NULL;
}

const char *replica_epoch_group(const struct rapply *a)
{
	return a->begin.group;
}

uint64_t replica_epoch_number(const struct rapply *a)
{
	return a->begin.epoch;
}
