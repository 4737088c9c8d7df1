/* batch.c - group commit of light epochs (docs/replica.md, "Group commit").
 *
 * A light epoch (apply.c: WAL only, nothing to apply after its commit
 * point) can be staged: its WAL, chain record and undo journal written,
 * their fsyncs gathered here, its state kept in memory only.  The next
 * epoch of the group goes on from that state.  replica_flush then makes
 * every staged epoch durable with one round of fsyncs, and puts the state
 * of the last in place: that rename is the commit point of them all.
 * Until then the state on disk is the one before the batch: a crash loses
 * the staged epochs (never acked), and leaves what any light epoch killed
 * before its commit point leaves (WAL beyond the copy's end, chain records
 * and undo journals of epochs above the state's), which the next epochs
 * overwrite.
 *
 * What the flushed epochs make unnecessary (the undo journals of rollback
 * points past what is kept, a WAL segment named complete, bases and WAL no
 * epoch needs any more) is removed after the commit point but not before
 * the ACKs: replica_tidy, called once they went out (the next commit and
 * replica_close do it otherwise), and before any newer epoch of the group
 * commits (replica_flush_tidy): it prunes from the flushed states, which
 * would not see a newer epoch's base.  Nothing of it makes an epoch
 * durable: a crash before it leaves extra rollback points (the next
 * commit prunes them) and segments still named .partial (readers take
 * either name; they stay so named). */
#include "pg.h"
#include "err.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct replica_batch {
	char group[NAME_MAX_LEN + 1];
	struct syncset ss;
	size_t n;                             /* epochs staged */
	size_t done;                          /* epochs flushed, their tidying due (replica_tidy) */
	struct rstate st[REPLICA_BATCH_MAX + 1]; /* st[0]: the state on disk; st[i]: after the i-th */
};

static int syncset_move(struct syncset *to, struct syncset *from)
{
	int rc = 0;

	for (size_t i = 0; i < from->n && !rc; i++)
		rc = syncset_fd(to, from->fd[i], from->data_only[i]);
	syncset_drop(from);
	return rc;
}

int batch_state(struct replica *r, const char *group, struct rstate *ret)
{
	struct replica_batch *b = r->batch;
	int rc;

	if (!b || !b->n)
		return 0;
	if (strcmp(b->group, group) != 0)
		return (rc = replica_flush(r)) < 0 ? rc : 0;
	*ret = b->st[b->n];
	return 1;
}

bool replica_staged(const struct replica *r)
{
	return r->batch && r->batch->n;
}

int batch_add(struct replica *r, const struct rstate *prev, const struct rstate *next, struct syncset *ss)
{
	struct replica_batch *b = r->batch;
	int rc;

	if (!b && !(b = r->batch = calloc(1, sizeof(*b)))) {
		syncset_drop(ss);
		return -ENOMEM;
	}
	if (!b->n)
		replica_tidy(r); /* st[] is the flushed batch's until then */
	if (b->n && (strcmp(b->group, prev->group) != 0 || b->st[b->n].epoch != prev->epoch)) {
		syncset_drop(ss);
		return err_set(EPROTO, "epoch %llu of %s does not follow the staged epoch %llu of %s",
			       (unsigned long long)next->epoch, next->group, (unsigned long long)b->st[b->n].epoch,
			       b->group);
	}
	if (!b->n) {
		snprintf(b->group, sizeof(b->group), "%s", prev->group);
		b->st[0] = *prev;
	}
	/* Fsyncs moved in first: a failure leaves the batch as it was. */
	if ((rc = syncset_move(&b->ss, ss)) < 0)
		return rc;
	b->st[++b->n] = *next;
	/* Full: durable now (a state file and a directory per epoch at most). */
	if (b->n == REPLICA_BATCH_MAX || b->ss.n + 4 > FS_SYNC_MAX)
		return replica_flush(r);
	return 1;
}

static int flush_locked(struct replica *r, struct replica_batch *b)
{
	const struct rstate *last = &b->st[b->n];
	int rc, slot = ackslot_ready(r, last->group);

	/* The commit point: the state in an ack slot after the round of
	 * fsyncs (an overwrite, one fdatasync), else state.tmp fsync'd with
	 * the round and renamed over the state. */
	if (slot < 0 || (!slot && (rc = state_write_begin(r, last, &b->ss)) < 0)) {
		syncset_drop(&b->ss);
		return slot < 0 ? slot : rc;
	}
	if ((rc = syncset_run(r, &b->ss)) < 0) {
		dircache_reset(r);
		return rc;
	}
	if (slot && (rc = ackslot_commit(r, last)) == 0)
		rc = state_write(r, last); /* too large for a slot */
	else if (!slot)
		rc = state_write_end(r, last);
	if (rc < 0)
		return rc;
	b->done = b->n;
	return 0;
}

/* The tidying after the commit point of the epochs flushed last (st[1] to
 * st[done]). */
static void tidy_locked(struct replica *r, struct replica_batch *b)
{
	size_t n = b->done;

	b->done = 0;
	/* The rollback points as the state on disk (the last's) sees them:
	 * the cache follows each epoch, the pruning looks from the last. */
	for (size_t i = 0; i + 1 < n; i++)
		rbcache_committed(r, b->group, b->st[i].epoch, b->st[i].cut_time, b->st[i + 1].epoch);
	undo_prune(r, &b->st[n - 1], b->st[n].epoch);
	for (size_t i = 0; i < n; i++)
		pgstore_committed(r, &b->st[i], &b->st[i + 1], b->st[i + 1].epoch % 64 == 0);
}

void replica_tidy(struct replica *r)
{
	struct replica_batch *b = r->batch;

	if (!b || !b->done || apply_lock(r, LOCK_EX) < 0)
		return; /* the lock not had: tried again by the next call */
	tidy_locked(r, b);
	apply_unlock(r, LOCK_EX);
}

int replica_flush(struct replica *r)
{
	struct replica_batch *b = r->batch;
	int rc;

	if (!b || !b->n)
		return 0;
	if ((rc = apply_lock(r, LOCK_EX)) < 0)
		return rc;
	if (b->done)
		tidy_locked(r, b);
	rc = flush_locked(r, b);
	apply_unlock(r, LOCK_EX);
	/* Flushed or not, the batch is over: after a failure the state on disk
	 * is the one before it, and the session ends. */
	syncset_drop(&b->ss);
	b->n = 0;
	return rc;
}

int replica_flush_tidy(struct replica *r)
{
	int rc = replica_flush(r);

	if (rc == 0)
		replica_tidy(r);
	return rc;
}

void batch_free(struct replica *r)
{
	if (!r->batch)
		return;
	syncset_drop(&r->batch->ss);
	free(r->batch);
	r->batch = NULL;
}
