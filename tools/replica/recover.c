/* recover.c - applying a journal (idempotent), checking digests, undoing an
 * epoch, and the recovery that finishes whatever a crash interrupted. */
#include "pg.h"
#include "blockmap.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int japply_open(struct japply *a, struct replica *r, const char *group, const char *kind,
		uint64_t epoch, bool verify)
{
	struct jheader *h = &a->h;
	int rc;

	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		a->tfs[i].fd = -1, a->tfs[i].map = NULL, a->tfs[i].tree = NULL;
	if ((rc = jr_open_mode(&a->j, r, group, kind, epoch, h, verify)) < 0)
		return rc;
	for (uint32_t i = 0; i < h->n_sources; i++) {
		if (h->kind == J_REDO && h->sources[i].exists == SEEDED) {
			/* Put the seed in place (done already if we crashed after). */
			char f[RPATH], mp[RPATH], rf[RPATH], rm[RPATH];
			if ((rc = seed_paths(r, h->group, h->sources[i].name, f, mp, sizeof(f))) < 0 ||
			    (rc = replica_file(r, rf, sizeof(rf), h->group, h->sources[i].name)) < 0 ||
			    (rc = gpath(r, rm, sizeof(rm), h->group, "%s.map", h->sources[i].name)) < 0)
				return rc;
			if ((rc = tree_rename(r, mp, rm)) < 0 && rc != -ENOENT)
				return rc;
			if ((rc = tree_rename(r, f, rf)) < 0 && rc != -ENOENT)
				return rc;
			tree_fsync_parent(r, rf);
			tree_fsync_parent(r, rm);
		}
		if (h->sources[i].pg) {
			/* No replica file: a base backup received with the epoch is
			 * put in place (done already if we crashed after). */
			if (h->kind == J_REDO && (h->sources[i].pg & JPG_NEW_BASE) &&
			    (rc = pgstore_place_base(r, h->group, &h->sources[i])) < 0)
				return rc;
			continue;
		}
		if (!h->sources[i].exists)
			continue;
		if ((rc = tf_open(r, h->group, h->sources[i].name, true, &a->tfs[i])) < 0)
			return rc;
	}
	return 0;
}

int japply_run(struct japply *a, struct replica *r)
{
	const struct jheader *h = &a->h;
	uint32_t src, len;
	uint64_t off;
	const uint8_t *data;
	int rc, k;

	while ((k = jr_next(&a->j, &src, &off, &len, &data)) == 1) {
		/* Written so that no sum wraps: a record is within its source. */
		if (src >= h->n_sources || !h->sources[src].exists || h->sources[src].pg ||
		    off > h->sources[src].size ||
		    len > h->sources[src].size - off || off % PROTO_BLOCK)
			return err_set(EBADMSG, "journal %s/%s: record out of bounds", r->root, a->j.path);
		if ((rc = tf_write(&a->tfs[src], off, len, data, h->sources[src].size)) < 0)
			return rc;
	}
	if (k < 0)
		return k;
	for (uint32_t i = 0; i < h->n_sources; i++) {
		char p[RPATH];
		if (h->sources[i].pg)
			continue; /* its WAL and base are the store's (pgstore.c) */
		if (!h->sources[i].exists) {
			/* Undo of a source that the epoch created: remove it. */
			if (replica_file(r, p, sizeof(p), h->group, h->sources[i].name) == 0)
				tree_unlink(r, p);
			if (gpath(r, p, sizeof(p), h->group, "%s.map", h->sources[i].name) == 0)
				tree_unlink(r, p);
			continue;
		}
		if ((rc = tf_resize(&a->tfs[i], h->sources[i].size)) < 0 || (rc = tf_sync(&a->tfs[i])) < 0)
			return rc;
	}
	return 0;
}

void japply_close(struct japply *a)
{
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		tf_close(&a->tfs[i]);
	jr_close(&a->j);
}

int journal_apply(struct replica *r, const char *group, const char *kind, uint64_t epoch,
		  bool verify, struct jheader *ret)
{
	struct japply *a = malloc(sizeof(*a));
	int rc;

	if (!a)
		return -ENOMEM;
	if ((rc = japply_open(a, r, group, kind, epoch, verify)) == 0 && (rc = japply_run(a, r)) == 0)
		*ret = a->h;
	japply_close(a);
	free(a);
	return rc;
}

/* Check the digests of the sources named in H against their maps.  Returns 0
 * or -EBADMSG with a sentence naming the first mismatching source. */
int check_digests(struct replica *r, const struct jheader *h)
{
	for (uint32_t i = 0; i < h->n_sources; i++) {
		struct target_file tf;
		uint8_t d[DIGEST_BYTES];
		char a[17], b[17];
		bool cached = false;
		int rc;

		/* A PostgreSQL source's WAL chain is checked before the commit point. */
		if (!h->sources[i].exists || h->sources[i].pg)
			continue;
		if ((rc = tf_open(r, h->group, h->sources[i].name, false, &tf)) < 0)
			return rc;
		rc = dtree_digest(&tf, h->sources[i].size, h->sources[i].dv, d, &cached);
		if (rc == 0 && cached && sodium_memcmp(d, h->sources[i].digest, DIGEST_BYTES) != 0) {
			/* Never a mismatch on a kept tree's word alone. */
			log_warn("%s/%s: the kept digest tree disagrees at epoch %llu; computing the digest "
				 "from the whole map", h->group, h->sources[i].name, (unsigned long long)h->epoch);
			blockmap_forget_tree(tf.map);
			rc = tf_digest(&tf, h->sources[i].size, h->sources[i].dv, d);
		}
		tf_close(&tf);
		if (rc < 0)
			return rc;
		if (sodium_memcmp(d, h->sources[i].digest, DIGEST_BYTES) != 0) {
			hash_hex(d, 8, a);
			hash_hex(h->sources[i].digest, 8, b);
			return err_set(EBADMSG,
				       "digest mismatch on %s/%s at epoch %llu: replica %s…, primary %s…",
				       h->group, h->sources[i].name, (unsigned long long)h->epoch, a, b);
		}
	}
	return 0;
}

/* The LSN fields of a PostgreSQL source (zeros for a disk). */
static void jsource_pg_to_state(const struct jsource *j, struct state_source *x)
{
	x->system_id = j->pg ? j->system_id : 0;
	x->base_id = j->pg ? j->base_id : 0;
	x->timeline = j->pg ? j->timeline : 0;
	x->end_lsn = j->pg ? j->end_lsn : 0;
}

/* The state that an undo journal restores. */
void state_from_undo(struct rstate *s, const struct jheader *h)
{
	struct rstate n;

	memset(&n, 0, sizeof(n));
	memcpy(n.group, h->group, sizeof(n.group));
	n.epoch = h->prev_epoch;
	n.cut_time = h->cut_time;
	n.applied_time = h->applied_time;
	n.flags = h->flags;
	memcpy(n.alarm, s->alarm, sizeof(n.alarm));
	for (uint32_t i = 0; i < h->n_sources; i++) {
		struct state_source *x;
		if (!h->sources[i].exists)
			continue;
		x = &n.sources[n.n_sources++];
		memcpy(x->name, h->sources[i].name, sizeof(x->name));
		x->epoch = h->sources[i].epoch;
		x->size = h->sources[i].size;
		x->status = h->sources[i].status;
		memcpy(x->digest, h->sources[i].digest, DIGEST_BYTES);
		x->dv = h->sources[i].dv;
		jsource_pg_to_state(&h->sources[i], x);
	}
	/* Sources the epoch did not touch keep their state. */
	for (uint32_t i = 0; i < s->n_sources; i++) {
		bool in = false;
		for (uint32_t k = 0; k < h->n_sources; k++)
			in |= strcmp(h->sources[k].name, s->sources[i].name) == 0;
		if (!in && n.n_sources < PROTO_MAX_SOURCES)
			n.sources[n.n_sources++] = s->sources[i];
	}
	*s = n;
}

int state_after_redo(struct rstate *s, const struct jheader *h)
{
	struct rstate n = *s;

	n.epoch = h->epoch;
	n.cut_time = h->cut_time;
	n.applied_time = clock_now_usec();
	n.flags = h->flags;
	for (uint32_t i = 0; i < h->n_sources; i++) {
		struct state_source *x = state_find(&n, h->sources[i].name);
		if (!x && n.n_sources == PROTO_MAX_SOURCES)
			return err_set(EPROTO, "group %s would have more than %d sources at epoch %llu (the "
					       "replica keeps sources the primary no longer sends): move "
					       "the replica files of the old ones away",
				       s->group, PROTO_MAX_SOURCES, (unsigned long long)h->epoch);
		if (!x)
			x = &n.sources[n.n_sources++];
		memcpy(x->name, h->sources[i].name, sizeof(x->name));
		x->epoch = h->epoch;
		x->size = h->sources[i].size;
		x->status = SRC_OK;
		memcpy(x->digest, h->sources[i].digest, DIGEST_BYTES);
		x->dv = h->sources[i].dv;
		jsource_pg_to_state(&h->sources[i], x);
	}
	*s = n;
	return 0;
}

/* Apply undo K of GROUP and step the state back; crash-safe through
 * pending_undo.  The undo and every file it writes are opened and checked
 * before the state records it: a refused one leaves the group as it was. */
int undo_one(struct replica *r, struct rstate *s, uint64_t k)
{
	struct japply *a = malloc(sizeof(*a));
	char path[RPATH];
	int rc;

	if (!a)
		return -ENOMEM;
	if ((rc = japply_open(a, r, s->group, "undo", k, true)) < 0)
		goto fail;
	if ((rc = gpath(r, path, sizeof(path), s->group, "undo/%llu.undo", (unsigned long long)k)) < 0)
		goto out;
	if (s->pending_undo != k) {
		s->pending_undo = k;
		if ((rc = state_write(r, s)) < 0)
			goto out;
	}
	if ((rc = japply_run(a, r)) < 0)
		goto fail;
	state_from_undo(s, &a->h);
	s->pending_undo = 0;
	if ((rc = state_write(r, s)) < 0)
		goto out;
	tree_unlink(r, path);
	rc = tree_fsync_parent(r, path);
	goto out;
fail:
	rc = err_wrap(rc, "cannot undo epoch %llu of %s", (unsigned long long)k, s->group);
out:
	japply_close(a);
	free(a);
	return rc;
}

/* An applied epoch K failed its digest check: record the undo as pending
 * BEFORE dropping the redo (else a crash in between would leave K's data
 * under a state that claims the epoch before), then undo it. */
int undo_after_mismatch(struct replica *r, struct rstate *s, uint64_t k, const char *redo)
{
	int rc;

	s->pending_undo = k;
	if ((rc = state_write(r, s)) < 0)
		return rc;
	tree_unlink(r, redo);
	tree_fsync_parent(r, redo);
	return undo_one(r, s, k);
}

/* Finish what a crash interrupted in GROUP: a pending undo, or a committed redo. */
static int recover_group_locked(struct replica *r, const char *group)
{
	char dir[RPATH], path[RPATH + 300];
	struct rstate s;
	DIR *d;
	struct dirent *e;
	int rc;

	if ((rc = state_upgrade(r, group)) < 0)
		return rc;
	rc = replica_load_state(r, group, &s);
	if (rc == -ENOENT) {
		memset(&s, 0, sizeof(s));
		snprintf(s.group, sizeof(s.group), "%s", group);
	} else if (rc < 0)
		return rc;
	if (s.pending_undo) {
		log_warn("recovering %s: finishing the undo of epoch %llu", group,
			 (unsigned long long)s.pending_undo);
		if ((rc = undo_one(r, &s, s.pending_undo)) < 0)
			return rc;
	}
	/* A new state never put in place (a light epoch's, killed before its
	 * commit point: apply.c) goes too; anything else with that name (a
	 * planted link) is left for the next state write to refuse. */
	if ((rc = gpath(r, path, sizeof(path), group, "state.tmp")) < 0)
		return rc;
	if ((rc = tree_open(r, path, O_RDONLY, 0)) >= 0) {
		close(rc);
		tree_unlink(r, path);
	}
	/* Uncommitted leftovers go; committed redos are replayed in order. */
	for (int pass = 0; pass < 2; pass++) {
		if ((rc = gpath(r, dir, sizeof(dir), group, pass ? "undo" : "journal")) < 0)
			return rc;
		remove_suffixed(r, dir, ".tmp");
	}
	for (;;) {
		uint64_t best = 0;
		struct jheader h;

		if ((rc = gpath(r, dir, sizeof(dir), group, "journal")) < 0)
			return rc;
		if (!(d = tree_opendir(r, dir)))
			break;
		while ((e = readdir(d))) {
			char *end;
			unsigned long long v = strtoull(e->d_name, &end, 10);
			if (strcmp(end, ".redo") == 0 && v && (!best || v < best))
				best = v;
		}
		closedir(d);
		if (!best)
			break;
		snprintf(path, sizeof(path), "%s/%llu.redo", dir, (unsigned long long)best);
		if (best <= s.epoch) {
			/* Applied and recorded already; the removal was interrupted. */
			tree_unlink(r, path);
			continue;
		}
		log_warn("recovering %s: replaying committed epoch %llu", group, (unsigned long long)best);
		if ((rc = journal_apply(r, group, "redo", best, true, &h)) < 0)
			return err_wrap(rc, "recovery of group %s failed", group);
		if ((rc = check_digests(r, &h)) < 0) {
			snprintf(s.alarm, sizeof(s.alarm), "%s", err_msg(rc));
			log_error("%s", s.alarm);
			if ((rc = undo_after_mismatch(r, &s, best, path)) < 0)
				return rc;
			continue;
		}
		if ((rc = state_after_redo(&s, &h)) < 0 || (rc = state_write(r, &s)) < 0)
			return rc;
		tree_unlink(r, path);
		tree_fsync_dir(r, dir);
	}
	/* Seeds that no committed redo claimed: an epoch that never committed. */
	if (tree_exists(r, group) == 1)
		remove_suffixed(r, group, ".seed");
	if (gpath(r, dir, sizeof(dir), group, "%s", "") == 0)
		remove_suffixed(r, dir, ".seed");
	/* PostgreSQL sources: bases never committed, names of complete segments. */
	pgstore_recover(r, &s);
	return 0;
}

/* Recovery changes replica files: no live reader meanwhile. */
int recover_group(struct replica *r, const char *group)
{
	int rc = apply_lock(r, LOCK_EX);

	if (rc < 0)
		return rc;
	rc = recover_group_locked(r, group);
	apply_unlock(r, LOCK_EX);
	return rc;
}
