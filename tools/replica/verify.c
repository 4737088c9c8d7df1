/* verify.c - re-reading every replica against its digest, beside a live
 * receiver or with the lock, and marking what diverged. */
#include "pg.h"
#include "blockmap.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "merkle.h"
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

static int verify_locked(struct replica *r, const char *group, void (*out)(const char *line));

/* A live verify found sources diverged: mark them in the state as it is now,
 * under the exclusive lock, and end the receiver's session (its next commit
 * would write back the state it loaded before the mark); the daemon
 * reconnects, reads the mark in STATE and resynchronises those sources. */
static int mark_diverged_live(struct replica *r, const struct rstate *found)
{
	struct rstate now;
	int rc;

	if ((rc = apply_lock(r, LOCK_EX)) < 0)
		return rc;
	if ((rc = replica_load_state(r, found->group, &now)) < 0)
		goto out;
	if (now.epoch != found->epoch) {
		rc = err_set(EAGAIN, "group %s moved from epoch %llu to %llu during the verify; run it "
				     "again", found->group, (unsigned long long)found->epoch,
			     (unsigned long long)now.epoch);
		goto out;
	}
	for (uint32_t i = 0; i < found->n_sources; i++) {
		struct state_source *x = state_find(&now, found->sources[i].name);
		if (x && found->sources[i].status == SRC_DIVERGED)
			x->status = SRC_DIVERGED;
	}
	if ((rc = state_write(r, &now)) < 0)
		goto out;
	lock_end_receiver(r, "so that the primary resynchronises now");
out:
	apply_unlock(r, LOCK_EX);
	return rc;
}

int replica_verify(struct replica *r, const char *group, void (*out)(const char *line))
{
	int rc;

	if (!r->live)
		return verify_locked(r, group, out);
	/* Beside a running receiver: one complete epoch, its next apply waits. */
	if ((rc = apply_lock(r, LOCK_SH)) < 0)
		return rc;
	rc = verify_locked(r, group, out);
	apply_unlock(r, LOCK_SH);
	return rc;
}

static int verify_locked(struct replica *r, const char *group, void (*out)(const char *line))
{
	struct rstate s;
	int rc, bad = 0;
	bool marked = false;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc;
	for (uint32_t i = 0; i < s.n_sources; i++) {
		struct state_source *x = &s.sources[i];
		struct target_file tf;
		uint8_t *buf = NULL, *leaves = NULL, *mleaves = NULL;
		uint64_t mism = 0, nb = nblocks(x->size), b;
		struct merkle_sum *c = NULL;
		uint8_t d[DIGEST_BYTES];
		char line[512];

		if (pg_source(x)) {
			/* The base's files and the WAL chain (pgread.c). */
			if ((rc = pg_verify(r, group, x, line, sizeof(line))) < 0) {
				bad = 1;
				if (rc == -EBADMSG) {
					x->status = SRC_DIVERGED;
					marked = true;
				}
			}
			out(line);
			continue;
		}
		if ((rc = tf_open(r, group, x->name, false, &tf)) < 0) {
			snprintf(line, sizeof(line), "%s/%s: cannot open: %s", group, x->name, err_msg(rc));
			out(line);
			bad = 1;
			continue;
		}
		buf = malloc(256 * PROTO_BLOCK);
		leaves = malloc(256 * LEAF_BYTES);
		mleaves = malloc(256 * LEAF_BYTES);
		c = malloc(sizeof(*c));
		rc = (buf && leaves && mleaves && c) ? 0 : -ENOMEM;
		if (c)
			merkle_sum_init(c, x->dv, x->size);
		if (tf.size != x->size)
			rc = err_set(EBADMSG, "size %llu, expected %llu", (unsigned long long)tf.size,
				     (unsigned long long)x->size);
		for (b = 0; rc == 0 && b < nb; b += 256) {
			uint64_t n = nb - b > 256 ? 256 : nb - b, off = b * PROTO_BLOCK;
			size_t want = (size_t)(n * PROTO_BLOCK);
			ssize_t got;
			if (off + want > x->size)
				want = (size_t)(x->size - off);
			got = fs_pread_full(tf.fd, buf, want, off);
			if (got != (ssize_t)want) {
				rc = err_set(EIO, "short read");
				break;
			}
			for (uint64_t k = 0; k < n; k++) {
				size_t bl = want - k * PROTO_BLOCK > PROTO_BLOCK ? PROTO_BLOCK : want - k * PROTO_BLOCK;
				hash_leaf(tf.secret, buf + k * PROTO_BLOCK, bl, leaves + k * LEAF_BYTES);
			}
			merkle_sum_leaves(c, leaves, (size_t)n);
			blockmap_leaves(tf.map, b, n, mleaves);
			for (uint64_t k = 0; k < n; k++)
				mism += memcmp(leaves + k * LEAF_BYTES, mleaves + k * LEAF_BYTES, LEAF_BYTES) != 0;
		}
		if (c)
			merkle_sum_final(c, d);
		if (rc < 0) {
			snprintf(line, sizeof(line), "%s/%s: FAILED: %s", group, x->name, err_msg(rc));
			bad = 1;
		} else if (sodium_memcmp(d, x->digest, DIGEST_BYTES) != 0) {
			char a[17], e[17];
			hash_hex(d, 8, a);
			hash_hex(x->digest, 8, e);
			snprintf(line, sizeof(line),
				 "%s/%s: MISMATCH at epoch %llu: digest %s…, expected %s… (%llu of %llu "
				 "blocks differ from the map)",
				 group, x->name, (unsigned long long)x->epoch, a, e,
				 (unsigned long long)mism, (unsigned long long)nb);
			bad = 1;
			/* The primary will resynchronise it (librsync deltas, not a full copy). */
			x->status = SRC_DIVERGED;
			marked = true;
		} else {
			char hx[17];
			hash_hex(d, 8, hx);
			snprintf(line, sizeof(line), "%s/%s: OK at epoch %llu (%llu bytes, digest %s…)",
				 group, x->name, (unsigned long long)x->epoch,
				 (unsigned long long)x->size, hx);
		}
		out(line);
		free(buf);
		free(leaves);
		free(mleaves);
		free(c);
		tf_close(&tf);
	}
	if (marked && (rc = r->live ? mark_diverged_live(r, &s) : state_write(r, &s)) < 0)
		return rc;
	return bad ? err_set(EBADMSG, "replica of group %s does not match its digests; marked "
				      "diverged: the primary resynchronises it %s", group,
			     r->live ? "now (the receiver's session was ended)" : "at its next connection")
		   : 0;
}
