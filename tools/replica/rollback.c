/* rollback.c - the rollback points of a group and the return to one. */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int replica_rollback_points(struct replica *r, const char *group, uint64_t *epochs,
			    uint64_t *times, size_t max, size_t *ret_n)
{
	return replica_rollback_points_flags(r, group, epochs, times, NULL, max, ret_n);
}

int replica_rollback_points_flags(struct replica *r, const char *group, uint64_t *epochs,
				  uint64_t *times, uint8_t *flags, size_t max, size_t *ret_n)
{
	struct rstate s;
	uint64_t cur;
	size_t n = 0;
	int rc;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc;
	cur = s.epoch;
	while (cur && n < max) {
		struct jreader j;
		struct jheader h;
		rc = jr_open_mode(&j, r, group, "undo", cur, &h, false); /* header only */
		jr_close(&j);
		if (rc < 0)
			break;
		epochs[n] = h.prev_epoch;
		times[n] = h.cut_time;
		if (flags)
			flags[n] = h.flags;
		n++;
		cur = h.prev_epoch;
	}
	*ret_n = n;
	return 0;
}

static int replica_rollback_locked(struct replica *r, const char *group, uint64_t to)
{
	uint64_t epochs[4096], times[4096];
	struct rstate s;
	size_t n = 0, i;
	int rc;

	if ((rc = replica_load_state(r, group, &s)) < 0)
		return rc == -ENOENT ? err_set(ENOENT, "no group %s in this replica", group) : rc;
	if (to == s.epoch)
		return 0;
	if ((rc = replica_rollback_points(r, group, epochs, times, 4096, &n)) < 0)
		return rc;
	for (i = 0; i < n && epochs[i] != to; i++)
		;
	if (i == n) {
		char list[512] = "";
		for (size_t k = 0; k < n && k < 40; k++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%llu", k ? " " : "",
				 (unsigned long long)epochs[k]);
		return err_set(ENOENT, "group %s (at epoch %llu) cannot roll back to epoch %llu; "
				       "rollback points: %s",
			       group, (unsigned long long)s.epoch, (unsigned long long)to,
			       n ? list : "none");
	}
	while (s.epoch != to) {
		if ((rc = undo_one(r, &s, s.epoch)) < 0)
			return rc;
	}
	return 0;
}

/* Undo changes replica files: no live reader meanwhile. */
int replica_rollback(struct replica *r, const char *group, uint64_t to)
{
	int rc = apply_lock(r, LOCK_EX);

	if (rc < 0)
		return rc;
	rc = replica_rollback_locked(r, group, to);
	apply_unlock(r, LOCK_EX);
	return rc;
}
