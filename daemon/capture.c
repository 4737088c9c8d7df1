/* capture.c - what a cut's thread (epoch.c) does around its scan: the
 * freeze and thaw hooks, a QEMU guest's disks begun under one freeze and
 * one transaction, the test that no write reached a file during its scan,
 * and the answer to a cut the loop gave up on. */
#include "daemon.h"
#include "cut.h"
#include "err.h"
#include "qemusrc.h"
#include "scanhint.h"
#include "subproc.h"
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

int capture_hook(struct group *g, const char *what, const char *cmd, uint64_t epoch)
{
	char gn[NAME_MAX_LEN + 16], en[48];
	struct subproc_result res = { 0 };
	int r;

	snprintf(gn, sizeof(gn), "BASCULE_GROUP=%s", g->name);
	snprintf(en, sizeof(en), "BASCULE_EPOCH=%" PRIu64, epoch);
	r = subproc_run(SUBPROC_SH(cmd), &(struct subproc_opts){ .env = (const char *const[]){ gn, en, NULL },
							       .timeout = g->cfg->freeze_timeout,
							       .output_max = 4096 },
			&res);
	if (r < 0)
		return err_wrap(r, "cannot run the %s command of group %s", what, g->name);
	if (res.timed_out)
		r = err_set(ETIMEDOUT, "the %s command of group %s did not finish within its freeze_timeout "
				       "and was killed", what, g->name);
	else if (res.exit_status != 0)
		r = err_set(EIO, "the %s command of group %s failed (%s %d): %s", what, g->name,
			    res.term_signal ? "signal" : "exit status",
			    res.term_signal ? res.term_signal : res.exit_status, subproc_said(&res));
	subproc_result_free(&res);
	return r;
}

/* No write reached the file during the scan: the same file, size and times
 * (scanhint_same), and the last change is older than the timestamp
 * granularity (a write in the same coarse tick as the first stat would
 * not move mtime). */
bool capture_same_stat(const struct stat *a, const struct stat *b, uint64_t scan_start)
{
	uint64_t m = (uint64_t)a->st_mtim.tv_sec * 1000000u + (uint64_t)a->st_mtim.tv_nsec / 1000u;

	return m + 20000 < scan_start && scanhint_same(a, b);
}

/* Begin the cut of QEMU source I and of every later source of the same
 * guest, all under one freeze and in one transaction (qemusrc_cut_begin);
 * DONE marks them.  1 if a guest was cut, 0 if I's already was, or a
 * negative errno.  *FUZZY set if an agent configured did not freeze. */
int capture_guest(struct group *g, struct cut *c, uint32_t i, bool *done, bool *fuzzy)
{
	struct qemusrc *qs[PROTO_MAX_SOURCES];
	uint32_t idx[PROTO_MAX_SOURCES], n = 0;
	uint64_t sizes[PROTO_MAX_SOURCES];
	bool agent = false, frozen;
	int r;

	if (done[i])
		return 0;
	for (uint32_t j = i; j < g->n_sources; j++)
		if (g->sources[j].qemu && !done[j] && qemusrc_same_guest(g->sources[i].qemu, g->sources[j].qemu)) {
			done[j] = true;
			agent |= g->sources[j].cfg->qemu.guest_agent != NULL;
			idx[n] = j;
			qs[n++] = g->sources[j].qemu;
		}
	/* The bitmap counts from the last disk cut, not from a WAL-only epoch
	 * after it (a group with a postgres source); after a restart only
	 * last_cut is known. */
	if ((r = qemusrc_cut_begin(qs, n, c->epoch, g->disk_epoch ? g->disk_epoch : g->last_cut, sizes, &frozen)) < 0)
		return r;
	for (uint32_t k = 0; k < n; k++)
		c->size[idx[k]] = sizes[k];
	if (agent && !frozen)
		*fuzzy = true;
	return 1;
}

/* The watchdog gave up on C (epoch_watchdog), or the daemon stops
 * (epoch_stop): fail rather than resize the maps or commit what the loop no
 * longer waits for. */
int capture_abandoned(struct cut *c)
{
	if (!atomic_load(&c->abort))
		return 0;
	if (atomic_load(&c->stop))
		return err_set(ECANCELED, "its reads were told to stop");
	return err_set(ETIMEDOUT, "its reads returned late");
}

