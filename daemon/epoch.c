/* epoch.c - cutting epochs: freeze, clone, parallel scan, spool, commit,
 * and their scheduling across groups (a group's setup: gstate.c; the hooks
 * and a QEMU guest's begin: capture.c).
 *
 * A cut of group G with number N runs on a thread so the loop stays free:
 *  1. optional freeze hook; reflink clone of each source where possible;
 *  2. scan every chunk of every source on scan_threads workers (scan.c);
 *  3. digests from the maps, msync the maps, thaw;
 *  4. commit: write the group state (last_cut = N) atomically.
 * The loop is then told through an eventfd and queues the epoch per target. */
#include "daemon.h"
#include "blockmap.h"
#include "cut.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "pgsource.h"
#include "qemusrc.h"
#include "sfile.h"
#include "spool.h"
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A WAL-only cut whose number is above the reservation records a new one,
 * this many numbers ahead; those below it commit with no write at all. */
#define WAL_EPOCH_RESERVE 1000

static void *cut_thread(void *arg)
{
	struct cut *c = arg;
	struct group *g = c->g;
	struct daemon *d = g->d;
	struct stat before[PROTO_MAX_SOURCES], after[PROTO_MAX_SOURCES];
	bool frozen = false, cloned = true, quiescent = true, qemu_fuzzy = false, qemu_cut[PROTO_MAX_SOURCES] = { 0 };
	uint32_t guests = 0; /* QEMU guests cut, each in one transaction */
	pthread_t workers[64];
	unsigned nw = d->scan_threads;
	char path[4300];
	uint64_t start = clock_mono_usec(), one = 1;
	int r = 0;

	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		c->fds[i] = -1;
	if (c->wal_only) {
		/* The disks are as the last scan found them (epoch disk_epoch). */
		c->cut_time = clock_now_usec();
		c->consistent = g->consistent;
		for (uint32_t i = 0; i < g->n_sources; i++) {
			c->size[i] = g->sources[i].size;
			memcpy(c->digest[i], g->sources[i].digest, DIGEST_BYTES);
		}
		/* Nothing of the disks changes: only the number needs recording,
		 * and a reservation already covers it, but for one in
		 * WAL_EPOCH_RESERVE (docs/design.md "Epoch numbers"). */
		if (atomic_load(&c->force) || c->pg_new) {
			if (c->epoch > c->reserved) {
				c->reserved = c->epoch + WAL_EPOCH_RESERVE;
				if ((r = gstate_write(g, c->epoch, c->cut_time, c->consistent, c->size, c->digest,
						      c->reserved, g->digest_v1)) < 0)
					goto thaw;
			}
			c->committed = true;
		}
		goto thaw;
	}
	if (g->cfg->freeze) {
		r = capture_hook(g, "freeze", g->cfg->freeze, c->epoch);
		if (r < 0)
			log_warn("group %s: %s; this epoch will be fuzzy", g->name, err_msg(r));
		else
			frozen = true;
		r = 0;
	}
	c->cut_time = clock_now_usec();
	for (uint32_t i = 0; i < g->n_sources; i++) {
		const char *disk = g->sources[i].cfg->disk;
		int fd;
		if (g->sources[i].pg)
			continue; /* its WAL end was taken when the cut began */
		if (g->sources[i].qemu) {
			if ((r = capture_guest(g, c, i, qemu_cut, &qemu_fuzzy)) < 0)
				goto thaw;
			guests += r;
			r = 0;
			continue;
		}
		fd = open(disk, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = err_set(errno, "cannot open source %s: %s", disk, strerror(errno));
			goto thaw;
		}
		if (fstat(fd, &before[i]) < 0) {
			r = -errno;
			close(fd);
			goto thaw;
		}
		c->hinted[i] = scanhint_usable(&g->sources[i].hint, &before[i], start, g->cfg->full_scan_every);
		cloned &= S_ISREG(before[i].st_mode) && strcmp(g->cfg->clone, "auto") == 0;
		if (cloned) {
			char name[NAME_MAX_LEN + 8];
			int cfd;
			snprintf(name, sizeof(name), "%s.clone", g->sources[i].cfg->name);
			gstate_path(g, path, sizeof(path), name);
			cfd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (cfd >= 0 && ioctl(cfd, FICLONE, fd) == 0) {
				unlink(path); /* the open fd keeps the clone alive */
				close(fd);
				fd = cfd;
			} else {
				cloned = false;
				if (cfd >= 0) {
					close(cfd);
					unlink(path);
				}
			}
		}
		c->fds[i] = fd;
		if ((r = fs_fd_size(fd, &c->size[i])) < 0)
			goto thaw;
	}
	if ((r = capture_abandoned(c)) < 0)
		goto thaw; /* an open that hung (a FIFO, a dead NFS server) returned late */
	if (frozen && cloned) {
		/* The clones are the point in time: the guest can go on. */
		r = capture_hook(g, "thaw", g->cfg->thaw, c->epoch);
		if (r < 0)
			log_error("group %s: %s", g->name, err_msg(r));
		r = 0;
		frozen = false;
		c->consistent = true;
	}
	for (uint32_t i = 0; i < g->n_sources; i++) {
		if (g->sources[i].pg)
			continue;
		if ((r = blockmap_resize(g->sources[i].map, c->size[i])) < 0)
			goto thaw;
		c->nchunks[i] = (c->size[i] + SPOOL_CHUNK * PROTO_BLOCK - 1) / (SPOOL_CHUNK * PROTO_BLOCK);
		c->total_chunks += c->nchunks[i];
	}
	if (nw > 64)
		nw = 64;
	if (nw < 1)
		nw = 1;
	c->scan_usec = clock_mono_usec();
	for (unsigned i = 0; i < nw; i++)
		if (pthread_create(&workers[i], NULL, scan_worker, c) != 0) {
			nw = i;
			break;
		}
	for (unsigned i = 0; i < nw; i++)
		pthread_join(workers[i], NULL);
	c->scan_usec = clock_mono_usec() - c->scan_usec;
	if ((r = atomic_load(&c->err)) < 0) {
		r = err_wrap(r, "scan of group %s failed", g->name);
		goto thaw;
	}
	if ((r = capture_abandoned(c)) < 0)
		goto thaw; /* the workers stopped early: no digest of a half scan */
	c->digest_usec = 0;
	for (uint32_t i = 0; i < g->n_sources; i++) {
		uint64_t t0;
		if (g->sources[i].pg)
			continue;
		if (!g->sources[i].qemu) {
			bool after_ok = stat(g->sources[i].cfg->disk, &after[i]) == 0;
			scanhint_update(&g->sources[i].hint, c->hinted[i], &before[i], &after[i], after_ok,
					c->cut_time, start);
			if (!cloned && (!after_ok || !capture_same_stat(&before[i], &after[i], c->cut_time) ||
					!S_ISREG(before[i].st_mode)))
				quiescent = false;
		}
		if ((r = scan_cool(c, i)) < 0)
			goto thaw;
		t0 = clock_mono_usec();
		if ((r = blockmap_digest(g->sources[i].map, c->digest[i])) < 0)
			goto thaw;
		c->digest_usec += clock_mono_usec() - t0;
		if ((r = blockmap_sync(g->sources[i].map)) < 0)
			goto thaw;
	}
	if (!c->consistent)
		c->consistent = frozen || (cloned && g->n_disks == 1) || (!cloned && quiescent);
	/* QEMU sources are point-in-time views, application-consistent when
	 * the agent froze the guest; an agent that did not answer: fuzzy.  The
	 * disks of one guest are viewed in one transaction (one instant), but
	 * two guests one after another: a group of disks of several guests is
	 * fuzzy (docs/qemu.md, "Consistency of a group"). */
	if (g->n_qemu && g->n_qemu == g->n_disks && guests == 1)
		c->consistent = true;
	if (qemu_fuzzy)
		c->consistent = false;
	if ((r = capture_abandoned(c)) < 0)
		goto thaw;
	/* The spool is derived data (dropped at restart): no fsync. */
	spool_finish(c->spool);
	/* Commit: only if something is to be said (or someone asked). */
	if (atomic_load(&c->force) || atomic_load(&c->changed) || atomic_load(&c->spooled) || c->pg_new) {
		if ((r = gstate_write(g, c->epoch, c->cut_time, c->consistent, c->size, c->digest, c->reserved, false)) < 0)
			goto thaw;
		c->committed = true;
	}
thaw:
	if (frozen) {
		int t = capture_hook(g, "thaw", g->cfg->thaw, c->epoch);
		if (t < 0)
			log_error("group %s: %s", g->name, err_msg(t));
	}
	for (uint32_t i = 0; i < PROTO_MAX_SOURCES; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	for (uint32_t i = 0; !c->wal_only && i < g->n_sources; i++)
		if (g->sources[i].qemu) {
			int t = qemusrc_cut_end(g->sources[i].qemu, c->epoch, c->committed, r == 0);
			if (t < 0 && r == 0)
				log_warn("group %s: %s", g->name, err_msg(t));
		}
	if (r < 0 && atomic_load(&c->stop))
		r = err_wrap(r, "stopped with the daemon, not committed");
	else if (r < 0 && atomic_load(&c->abort))
		r = err_wrap(r, "the cut ran longer than cut_timeout and was abandoned");
	if (r < 0) {
		/* What the maps hold is in doubt: the next cut reads every file. */
		for (uint32_t i = 0; i < g->n_sources; i++)
			g->sources[i].hint.valid = false;
		atomic_store(&c->err, r);
		snprintf(c->errmsg, sizeof(c->errmsg), "%s", err_msg(r));
	}
	c->took_usec = clock_mono_usec() - start;
	atomic_store(&c->done, true);
	if (write(d->cut_efd, &one, sizeof(one)) < 0)
		log_error("cannot signal the end of a cut: %s", strerror(errno));
	return NULL;
}

/* Take the WAL end of each postgres source for cut C (pgsource_cut_end). */
static void take_wal(struct group *g, struct cut *c)
{
	for (uint32_t i = 0; i < g->n_sources; i++) {
		struct pgsrc *p = g->sources[i].pg;
		if (!p || p->state == PGS_PREPARING || !p->wal.tli)
			continue;
		c->pg_ok[i] = true;
		c->pg_end[i] = pgsource_cut_end(p);
		c->pg_gen[i] = p->wal.gen;
		c->pg_new |= !p->epoch_valid || p->epoch_gen != c->pg_gen[i] || c->pg_end[i] > p->epoch_end;
		p->cut_end = c->pg_end[i];
	}
}

/* Start a cut of G now (the scheduling is done: see group_start_cut_kind). */
static void cut_launch(struct group *g, bool wal_only)
{
	struct daemon *d = g->d;
	struct cut *c;
	char path[4300], name[64];
	bool disk_waits;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->g = g;
	c->wal_only = wal_only;
	c->start_mono = clock_mono_usec();
	c->reserved = g->reserved;
	/* A cut that commits nothing leaves its number to the next one (it
	 * marked no block), and a cut that fails hands its number and the
	 * blocks it marked to the next: numbers have no gaps.  A number
	 * promised to a sync forces the cuts until it is committed. */
	c->epoch = g->last_cut + 1;
	/* After an upgrade the state's digests are of version 1: the first
	 * scan commits (an empty epoch if need be) so they all move to v2. */
	/* A WAL-only cut while the group's disk cut waits for a slot: the
	 * wish for a cut (want_cut) is the disk cut's, it stays. */
	disk_waits = wal_only && g->cut_waiting;
	/* A disk cut after a failed one commits even if it finds nothing: the
	 * leaves the failed cut marked carry this number (map_ahead). */
	atomic_init(&c->force, (g->want_cut && !disk_waits) || g->promised >= c->epoch ||
			       (!wal_only && (g->digest_v1 || g->map_ahead)));
	take_wal(g, c);
	if (wal_only) {
		/* No spool: a disk is sent only to a target that holds its state. */
		for (uint32_t i = 0; i < g->n_sources; i++)
			c->floor[i] = g->sources[i].pg ? 0 : g->disk_epoch;
	} else {
		d->spool_floor(d, g, c->floor);
		c->cold_upto = scan_cold_upto(d, g);
		snprintf(name, sizeof(name), "spool/%" PRIu64, c->epoch);
		if ((r = gstate_path(g, path, sizeof(path), name)) < 0 || (r = spool_create(path, &c->spool)) < 0) {
			log_error("group %s: %s", g->name, err_msg(r));
			free(c);
			return;
		}
		g->dirty = false;
	}
	if (!disk_waits)
		g->want_cut = false;
	g->want_wal = false;
	g->cutting = true;
	g->cut = c;
	g->last_scan_mono = clock_mono_usec();
	if (wal_only && c->epoch <= c->reserved) {
		/* Within the reservation a WAL-only cut writes nothing: run it
		 * here, no thread to start and wake (a commit of synchronous:
		 * remote waits for it); its end is told through cut_efd too. */
		c->in_loop = true;
		cut_thread(c);
		return;
	}
	if ((r = pthread_create(&c->thread, NULL, cut_thread, c)) != 0) {
		log_error("group %s: cannot start a scan thread: %s", g->name, strerror(r));
		spool_unref(c->spool);
		free(c);
		g->cut = NULL;
		g->cutting = false;
		g->want_cut = true;
	}
}

/* ---- scheduling across groups ----
 *
 * A host serving many groups of large disks must not read them all at
 * once: at most max_concurrent_cuts disk cuts run, the others wait in
 * order of arrival (a group that just finished queues behind those that
 * waited meanwhile), but a waiting cut that holds back its group's WAL (a
 * sync's number is promised to it) goes first.  WAL-only cuts read no disk
 * and do not wait for a slot (the synchronous mode of a postgres source
 * waits on them), but for a group whose own disk cut waits with a sync's
 * number promised, or whose last disk cut failed (map_ahead): the next
 * number must then be a disk cut's (docs/design.md, "Many groups").  A
 * group picked while its WAL-only cut runs holds the slot (slot_held) and
 * its disk cut starts when that cut ends, before any other WAL-only cut,
 * so a busy WAL stream cannot starve it.  A disk cut running longer than
 * cut_timeout gives its slot back (epoch_watchdog, every second).  io_rate caps the
 * reads of those that run, together (scan.c).  The interval timers of the
 * groups tick at phases spread over the interval (group_next_tick), so
 * groups of one interval do not all ask at the same instant. */

/* Does G's disk cut take a slot?  One that timed out gave it back. */
static bool holds_slot(const struct group *g)
{
	return g->slot_held || (g->cut && !g->cut->wal_only && !g->cut->timed_out);
}

unsigned epoch_cuts_running(const struct daemon *d)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < d->n_groups; i++)
		n += holds_slot(d->groups[i]);
	return n;
}

unsigned epoch_cuts_waiting(const struct daemon *d)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < d->n_groups; i++)
		n += d->groups[i]->cut_waiting;
	return n;
}

bool epoch_cut_timed_out(const struct group *g)
{
	return g->cut && g->cut->timed_out;
}

/* The WAL of G waits for its disk cut: a sync's number is promised to it. */
static bool holds_wal(const struct group *g)
{
	return g->want_wal && g->promised > g->last_cut;
}

/* May the waiting G get a slot now: not paused, and running nothing or
 * only a WAL-only cut (it then holds the slot until that cut ends). */
static bool can_start(const struct group *g)
{
	return g->cut_waiting && !g->paused && (!g->cutting || (g->cut && g->cut->wal_only));
}

void epoch_schedule(struct daemon *d)
{
	unsigned max = d->cfg->max_concurrent_cuts ? (unsigned)d->cfg->max_concurrent_cuts : 1, running;

	if (d->reloading || d->stopping)
		return; /* the waiters stay; the reload's end schedules them */
	while ((running = epoch_cuts_running(d)) < max) {
		struct group *next = NULL;
		uint64_t waited;
		for (uint32_t i = 0; i < d->n_groups; i++) {
			struct group *g = d->groups[i];
			if (!can_start(g))
				continue;
			if (!next || holds_wal(g) > holds_wal(next) ||
			    (holds_wal(g) == holds_wal(next) && g->wait_since < next->wait_since))
				next = g;
		}
		if (!next)
			break;
		next->cut_waiting = false;
		waited = clock_mono_usec() - next->wait_since;
		if (waited > d->cut_wait_usec)
			d->cut_wait_usec = waited;
		if (next->cutting)
			next->slot_held = true; /* cut_finished starts it (slot_take) */
		else
			cut_launch(next, false);
		if (holds_slot(next) && running + 1 > d->cuts_peak)
			d->cuts_peak = running + 1;
	}
}

/* G's WAL-only cut ended while G held a slot: its disk cut starts now (or
 * waits again if a reload or a pause came meanwhile).  True if it started. */
static bool slot_take(struct group *g)
{
	if (!g->slot_held)
		return false;
	g->slot_held = false;
	if (g->paused || g->retired || g->d->stopping)
		return false; /* resume or the successor asks again */
	if (g->d->reloading) {
		g->cut_waiting = true; /* wait_since kept: first in line after the reload */
		return false;
	}
	cut_launch(g, false);
	return g->cutting;
}

/* A disk cut of G running longer than cut_timeout (a hung NBD or NFS
 * read) is abandoned.  Its thread cannot be killed and still owns the maps,
 * so the group cuts again only when it returns (the cut then fails,
 * cut_thread); its slot goes to the next group now. */
static void cut_watchdog(struct group *g, uint64_t now)
{
	struct daemon *d = g->d;
	struct cut *c = g->cut;
	char gf[NAME_MAX_LEN + 8], txt[256];
	const char *f[] = { gf, NULL };

	if (!c || c->wal_only || c->timed_out || !d->cfg->cut_timeout || now - c->start_mono <= d->cfg->cut_timeout)
		return;
	c->timed_out = true;
	atomic_store(&c->abort, true);
	d->cuts_timed_out++;
	snprintf(gf, sizeof(gf), "GROUP=%s", g->name);
	snprintf(txt, sizeof(txt), "cut has run %.0f s, over cut_timeout (%.0f s): abandoned, its slot freed; "
		 "the group cuts again once its reads return", (double)(now - c->start_mono) / 1e6,
		 (double)d->cfg->cut_timeout / 1e6);
	log_fields(LOG_ERR, f, "epoch %" PRIu64 " of group %s: %s", c->epoch, g->name, txt);
	daemon_event(d, "error", g->name, "", c->epoch, txt);
	epoch_schedule(d);
}

void epoch_watchdog(struct daemon *d)
{
	uint64_t now = clock_mono_usec();

	for (uint32_t i = 0; i < d->n_groups; i++)
		cut_watchdog(d->groups[i], now);
}

/* WAL_ONLY: no disk is scanned (a group of postgres sources only, or a
 * WAL epoch between two scans once the disks' state is known).  A disk
 * cut waits its turn (epoch_schedule); a WAL-only cut starts now. */
static void group_start_cut_kind(struct group *g, bool wal_only)
{
	struct daemon *d = g->d;

	if (d->reloading || d->stopping || g->retired)
		return; /* want_cut stays: the next tick starts it */
	if (!g->n_disks)
		wal_only = true;
	if (wal_only && g->n_disks && !g->disk_epoch)
		wal_only = false; /* the disks' state is not known in this run yet */
	if (wal_only && g->map_ahead) {
		/* A failed disk cut marked leaves with the number last_cut + 1: a
		 * WAL-only epoch taking it would put them at or below the next
		 * disk cut's spool floor, never sent.  A disk cut takes it, at
		 * most one per interval while they fail (the timer's tick). */
		if (clock_mono_usec() - g->fail_mono < g->cfg->interval) {
			g->want_wal = true;
			return;
		}
		wal_only = false;
	}
	if (wal_only && (g->cut_waiting || g->slot_held) && g->promised > g->last_cut) {
		/* A sync was promised the number of the waiting disk cut: a
		 * WAL-only epoch would take it without the disks.  The WAL
		 * waits and goes with the disk cut. */
		g->want_wal = true;
		return;
	}
	if (wal_only) {
		cut_launch(g, true);
		return;
	}
	if (!g->cut_waiting) {
		g->cut_waiting = true;
		g->wait_since = clock_mono_usec();
		epoch_schedule(d);
		if (g->cut_waiting) {
			d->cuts_waited++;
			log_debug("group %s: its cut waits for a slot (%u of max_concurrent_cuts %u running)",
				  g->name, epoch_cuts_running(d), (unsigned)d->cfg->max_concurrent_cuts);
		}
	} else
		epoch_schedule(d);
}

static void group_start_cut(struct group *g)
{
	group_start_cut_kind(g, false);
}

/* The next tick of G's interval timer after NOW: the interval's multiples
 * shifted by G's phase (its place among the groups). */
static uint64_t group_next_tick(const struct group *g, uint64_t now)
{
	uint64_t iv = g->cfg->interval, n = g->d->n_groups ? g->d->n_groups : 1;
	uint64_t t = now - now % iv + iv / n * (g->idx % n);

	while (t <= now)
		t += iv;
	return t;
}

int group_arm_timers(struct daemon *d, struct group *g)
{
	int r;

	/* At once: the first scan (want_cut) finds what changed while down. */
	if (!g->timer && (r = sd_event_add_time_relative(d->ev, &g->timer, CLOCK_MONOTONIC, 0, 10000,
							 group_on_timer, g)) < 0)
		return err_set(-r, "cannot arm the timer of group %s: %s", g->name, strerror(-r));
	if (g->n_pg && !g->pg_timer &&
	    (r = sd_event_add_time_relative(d->ev, &g->pg_timer, CLOCK_MONOTONIC, g->wal_interval, 1000,
					    group_on_pg_timer, g)) < 0)
		return err_set(-r, "cannot arm the WAL timer of group %s: %s", g->name, strerror(-r));
	return 0;
}

void group_wal_ready(struct group *g, bool now)
{
	if (!now || g->paused || g->retired)
		return;
	if (g->cutting)
		g->want_wal = true;
	else
		group_start_cut_kind(g, true);
}

int group_on_pg_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct group *g = userdata;
	bool wal = false, current = true;

	for (uint32_t i = 0; i < g->n_sources; i++) {
		struct pgsrc *p = g->sources[i].pg;
		if (!p)
			continue;
		wal |= p->wal.tli && p->state != PGS_PREPARING &&
		       (!p->epoch_valid || p->epoch_gen != p->wal.gen || pgsource_cut_end(p) > p->epoch_end);
		current &= pgsource_current(p) && p->epoch_valid && walspool_durable(&p->wal) == p->epoch_end;
	}
	if (wal && !g->cutting && !g->paused)
		group_start_cut_kind(g, true);
	else if (wal && g->cutting)
		g->want_wal = true;
	else if (!wal && current && !g->n_disks && !g->cutting && g->last_cut) {
		/* Streaming, nothing new: the sources still hold epoch last_cut
		 * now, and a target that holds it is that fresh. */
		g->verified_time = clock_now_usec();
	}
	sd_event_source_set_time(s, usec + g->wal_interval);
	sd_event_source_set_enabled(s, SD_EVENT_ON);
	return 0;
}

uint64_t group_request_cut(struct group *g)
{
	uint64_t n;

	g->want_cut = true;
	if (!g->cutting && !g->paused)
		group_start_cut(g);
	if (g->cutting) {
		/* A running scan may have missed the caller's writes: the next
		 * cut (want_cut) takes the number after it, and the running one
		 * commits even if it finds nothing, so that number follows. */
		atomic_store(&g->cut->force, true);
		n = g->cut->epoch + (g->want_cut ? 1 : 0);
	} else
		n = g->last_cut + 1; /* paused, or the cut could not start: the next cut */
	if (n > g->promised)
		g->promised = n;
	return n;
}

int group_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct group *g = userdata;
	uint64_t now = clock_mono_usec(), next = group_next_tick(g, now > usec ? now : usec);

	if (!g->cutting && !g->paused &&
	    (g->dirty || g->want_cut || g->n_qemu || (g->want_wal && g->map_ahead) ||
	     now - g->last_scan_mono >= g->cfg->max_interval))
		group_start_cut(g);
	/* The max_interval scan on time, not at the next interval tick: it
	 * bounds the lag of an idle group. */
	if (!g->cutting && g->last_scan_mono + g->cfg->max_interval < next &&
	    g->last_scan_mono + g->cfg->max_interval > now)
		next = g->last_scan_mono + g->cfg->max_interval;
	sd_event_source_set_time(s, next);
	sd_event_source_set_enabled(s, SD_EVENT_ON);
	return 0;
}

static void cut_finished(struct group *g)
{
	struct cut *c = g->cut;
	struct daemon *d = g->d;
	uint32_t hinted = 0, plain = 0;
	int err;

	if (!c->in_loop)
		pthread_join(c->thread, NULL);
	g->cut = NULL;
	g->cutting = false;
	g->scans++;
	err = atomic_load(&c->err);
	if (err < 0) {
		const char *f[] = { "GROUP=", NULL };
		char gf[NAME_MAX_LEN + 8];
		bool stopped = atomic_load(&c->stop) && !c->timed_out; /* asked for: not an error */
		snprintf(gf, sizeof(gf), "GROUP=%s", g->name);
		f[0] = gf;
		log_fields(stopped ? LOG_INFO : LOG_ERR, f, "epoch %" PRIu64 " of group %s not cut: %s", c->epoch,
			   g->name, c->errmsg);
		if (!stopped)
			daemon_event(d, "error", g->name, "", c->epoch, c->errmsg);
		g->want_cut |= atomic_load(&c->force);
		if (!c->wal_only) {
			g->map_ahead = true;
			g->fail_mono = clock_mono_usec();
		}
		spool_unref(c->spool);
		free(c);
		/* The group retries at its next tick (a lasting error does not
		 * spin); the slot goes to the next waiter now. */
		slot_take(g);
		epoch_schedule(d);
		return;
	}
	for (uint32_t i = 0; !c->wal_only && i < g->n_sources; i++)
		if (g->sources[i].qemu) {
			/* the cut thread is done with it: a copy for status and metrics */
			uint64_t missed = g->sources[i].qstats.missed_writes;
			qemusrc_get_stats(g->sources[i].qemu, &g->sources[i].qstats);
			if (g->sources[i].qstats.missed_writes > missed) {
				char txt[160];
				snprintf(txt, sizeof(txt), "source %s: %" PRIu64 " missed writes (blocks the dirty bitmap "
					 "did not record), found by a verifying full read", g->sources[i].cfg->name,
					 g->sources[i].qstats.missed_writes - missed);
				daemon_event(d, "error", g->name, "", c->epoch, txt);
			}
		}
	for (uint32_t i = 0; !c->wal_only && i < g->n_sources; i++)
		if (!g->sources[i].pg && !g->sources[i].qemu) {
			g->sources[i].scans_hinted += c->hinted[i];
			g->sources[i].scans_full += !c->hinted[i];
			hinted += c->hinted[i];
			plain++;
		}
	if (c->committed) {
		char gf[NAME_MAX_LEN + 8], ef[40];
		const char *f[] = { gf, ef, NULL };
		snprintf(gf, sizeof(gf), "GROUP=%s", g->name);
		snprintf(ef, sizeof(ef), "EPOCH=%" PRIu64, c->epoch);
		g->prev_cut = g->last_cut;
		g->prev_verified_time = g->verified_time;
		g->last_cut = c->epoch;
		g->reserved = c->reserved > c->epoch ? c->reserved : c->epoch;
		g->cut_time = c->cut_time;
		g->verified_time = c->cut_time;
		if (!c->wal_only) {
			g->map_ahead = false;
			g->digest_v1 = false;
		}
		if (g->promised > g->last_cut)
			g->want_cut = true; /* a failed cut took the number a sync waits for */
		g->epochs_cut++;
		g->wal_epoch = c->wal_only;
		if (!c->wal_only)
			g->last_scan_usec = c->scan_usec;
		if (!c->wal_only) {
			/* WAL epochs (every wal_interval) would flood the ring. */
			char txt[160];
			snprintf(txt, sizeof(txt), "%s, %" PRIu64 " blocks changed",
				 c->consistent	      ? "consistent"
				 : g->n_guests > 1 ? "fuzzy (disks of several QEMU guests, viewed one after the other)"
						     : "fuzzy",
				 (uint64_t)atomic_load(&c->changed));
			daemon_event(d, "cut", g->name, "", c->epoch, txt);
		}
		g->consistent = c->consistent;
		if (atomic_load(&c->changed))
			g->change_time = c->cut_time;
		for (uint32_t i = 0; i < g->n_sources; i++) {
			struct pgsrc *p = g->sources[i].pg;
			g->sources[i].size = c->size[i];
			memcpy(g->sources[i].digest, c->digest[i], DIGEST_BYTES);
			if (p) {
				p->epoch_valid = c->pg_ok[i] && c->pg_gen[i] == p->wal.gen;
				p->epoch_end = c->pg_end[i];
				p->epoch_gen = c->pg_gen[i];
				p->epoch_tli = p->wal.tli;
				p->epoch_system = p->wal.system_id;
			}
		}
		if (!c->wal_only)
			g->disk_epoch = c->epoch;
		spool_unref(g->spool);
		g->spool = c->spool;
		c->spool = NULL;
		memcpy(g->spool_floor, c->floor, sizeof(g->spool_floor));
		if (c->wal_only)
			log_fields(LOG_DEBUG, f, "epoch %" PRIu64 " of %s cut: WAL only (%.1f ms)", g->last_cut,
				   g->name, (double)c->took_usec / 1000.0);
		else
			log_fields(LOG_INFO, f,
			   "epoch %" PRIu64 " of %s cut (%s): %" PRIu64 " blocks changed, %" PRIu64
			   " spooled, scanned %.1f MiB in %.1f ms, digest %.1f ms (cut %.1f ms), "
			   "%" PRIu32 " of %" PRIu32 " files unchanged since their full scan",
			   g->last_cut, g->name, g->consistent ? "consistent" : "fuzzy",
			   (uint64_t)atomic_load(&c->changed), (uint64_t)atomic_load(&c->spooled),
			   (double)atomic_load(&c->read_bytes) / 1048576.0, (double)c->scan_usec / 1000.0,
			   (double)c->digest_usec / 1000.0,
			   (double)c->took_usec / 1000.0, hinted, plain);
		d->on_epoch(d, g);
		/* The group keeps no reference once every target has its own. */
		spool_unref(g->spool);
		g->spool = NULL;
	} else {
		/* Nothing changed: the sources still hold epoch last_cut at the
		 * scan's start, and every target at last_cut is that fresh. */
		if (!g->map_ahead && c->cut_time > g->verified_time)
			g->verified_time = c->cut_time;
		spool_unref(c->spool);
	}
	free(c);
	if (!slot_take(g)) {
		if (g->want_cut && !g->paused)
			group_start_cut(g); /* behind the groups that waited meanwhile */
		if (g->want_wal && !g->cutting && !g->paused)
			group_start_cut_kind(g, true);
	}
	epoch_schedule(d); /* the slot this cut held */
}

/* Cuts the stop still waits for: every running one but those past
 * cut_timeout (their reads may never return). */
static unsigned stop_count(const struct daemon *d)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < d->n_groups; i++)
		n += d->groups[i]->cut && !d->groups[i]->cut->in_loop && !d->groups[i]->cut->timed_out;
	return n;
}

void epoch_cuts_done(struct daemon *d)
{
	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = d->groups[i];
		if (g->cut && atomic_load(&g->cut->done))
			cut_finished(g);
	}
	if (d->stopping && !(d->stop_cuts = stop_count(d)) && !d->n_children)
		sd_event_exit(d->ev, 0);
}

void epoch_stop(struct daemon *d)
{
	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = d->groups[i];
		struct cut *c = g->cut;
		g->cut_waiting = g->slot_held = false;
		if (!c || c->in_loop)
			continue;
		atomic_store(&c->stop, true);
		atomic_store(&c->abort, true);
		if (c->timed_out)
			log_warn("stopping: epoch %" PRIu64 " of group %s ran past cut_timeout (its reads have not "
				 "returned): not waited for; nothing of it is committed, the next start cuts again",
				 c->epoch, g->name);
		else
			log_info("stopping: epoch %" PRIu64 " of group %s is told to stop (not committed; the next "
				 "start cuts again)", c->epoch, g->name);
	}
	d->stop_cuts = stop_count(d);
}

bool epoch_cut_left(const struct group *g)
{
	return g->cut && !g->cut->in_loop && !atomic_load(&g->cut->done);
}

struct group *group_find(struct daemon *d, const char *name, uint32_t *ret_idx)
{
	for (uint32_t i = 0; i < d->n_groups; i++)
		if (strcmp(d->groups[i]->name, name) == 0) {
			if (ret_idx)
				*ret_idx = i;
			return d->groups[i];
		}
	return NULL;
}

bool epoch_cutting(const struct daemon *d)
{
	for (uint32_t i = 0; i < d->n_groups; i++)
		if (d->groups[i]->cut)
			return true;
	return false;
}
