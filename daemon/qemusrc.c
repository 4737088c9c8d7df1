/* qemusrc.c - QEMU sources (qemusrc.h, docs/qemu.md): bitmap lifecycle, the
 * fleecing view (blockdev-backup sync=none, which QEMU 7.x runs as a
 * copy-before-write filter) armed in one transaction with the next bitmap,
 * the NBD export of the view, and the reads. */
#include "qemusrc.h"
#include "array.h"
#include "clock.h"
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "qmp.h"
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QS_BLOCK 4096u           /* bitmap granularity asked (PROTO_BLOCK) */
#define QS_QMP_TIMEOUT_MS 10000  /* any one QMP command */
#define QS_BS_STEP (1ULL << 30)  /* bytes per NBD_CMD_BLOCK_STATUS request */
#define QS_CBW "bascule-cbw-"      /* + node: the view's copy-before-write filter */

struct qs_extent {
	uint64_t first, end; /* blocks [first, end) */
	bool zero;
};

struct qs_list {
	struct qs_extent *e;
	size_t n, cap;
};

/* A QMP connection and NBD server shared by the disks of one guest in a
 * cut: QEMU's monitor serves one client at a time (a second connection to
 * the same socket would wait for the first to close), and QEMU runs one NBD
 * server (on the first disk's socket; each disk is an export of it). */
struct qs_mon {
	struct qmp *qmp;
	unsigned refs;
	const char *sock;
};

struct qemusrc {
	const struct cfg_source *cfg;
	struct qs_mon *mon;        /* during a cut */
	uint64_t verify_every;     /* usec between verifying full reads (0: every cut) */
	char state[4200], fleece[4200], sock[4200];
	char node[256];            /* the format node the bitmaps live on */
	char fl_file[300], fl[300], job[300], exp[300], cbw[300];
	char live[64], next[64];   /* bitmap names: bascule-a / bascule-b */
	struct qmp *qmp;
	struct nbd_handle *nbd;
	bool have_old, view, exported, server;
	bool full;                 /* every block is read (ext: base:allocation) */
	bool verify;               /* ... while the bitmap is sound: a verifying full read */
	bool persistent;           /* the node keeps persistent bitmaps (qcow2) */
	uint64_t size;
	struct qs_list ext;        /* what to read */
	struct qs_list dirty;      /* a verifying read: what the bitmap says changed */
	uint64_t verified;         /* unix usec of the last full read committed (state file) */
	uint64_t cut_at;           /* unix usec the cut began */
	atomic_uint_fast64_t read_bytes, missed;
	uint64_t read_at_begin;    /* read_bytes when the cut began */
	struct qemusrc_stats st;
};

int qemusrc_new(const struct cfg_source *cfg, const char *prefix, uint64_t verify_every, struct qemusrc **ret_q)
{
	struct qemusrc *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->cfg = cfg;
	q->verify_every = verify_every;
	if ((size_t)snprintf(q->state, sizeof(q->state), "%s.qemu", prefix) >= sizeof(q->state) ||
	    (size_t)snprintf(q->fleece, sizeof(q->fleece), "%s.fleece", prefix) >= sizeof(q->fleece) ||
	    (size_t)snprintf(q->sock, sizeof(q->sock), "%s.nbd", prefix) >= 108) {
		free(q);
		return err_set(ENAMETOOLONG, "source %s: state directory path too long for an NBD socket", cfg->name);
	}
	*ret_q = q;
	return 0;
}

void qemusrc_free(struct qemusrc *q)
{
	if (!q)
		return;
	if (q->mon || q->nbd)
		qemusrc_cut_end(q, 0, false, false);
	free(q->ext.e);
	free(q->dirty.e);
	free(q);
}

void qemusrc_reconfig(struct qemusrc *q, const struct cfg_source *cfg, uint64_t verify_every)
{
	q->cfg = cfg;
	q->verify_every = verify_every;
}

uint64_t qemusrc_read_bytes(const struct qemusrc *q)
{
	return atomic_load(&q->read_bytes);
}

void qemusrc_get_stats(const struct qemusrc *q, struct qemusrc_stats *ret)
{
	*ret = q->st;
	ret->verified = q->verified;
}

bool qemusrc_same_guest(const struct qemusrc *a, const struct qemusrc *b)
{
	return strcmp(a->cfg->qemu.qmp, b->cfg->qemu.qmp) == 0;
}

/* ---- QMP helpers ---- */

static int qs_exec(struct qemusrc *q, const char *cmd, json_t *args, json_t **ret)
{
	return qmp_exec(q->qmp, cmd, args, ret);
}

/* Run and forget an error (removing what may not exist). */
static void qs_try(struct qemusrc *q, const char *cmd, json_t *args)
{
	int r = qs_exec(q, cmd, args, NULL);
	if (r < 0)
		log_debug("source %s: %s (ignored): %s", q->cfg->name, cmd, err_msg(r));
	err_clear();
}

/* The format node named (or behind device id) cfg->qemu.node, and its
 * bitmaps. */
static int qs_find_node(struct qemusrc *q, json_t **ret_bitmaps)
{
	const char *want = q->cfg->qemu.node;
	json_t *nodes = NULL, *blk = NULL, *n;
	size_t i;
	int r;

	if ((r = qs_exec(q, "query-block", NULL, &blk)) < 0)
		return r;
	json_array_foreach(blk, i, n) {
		const char *dev = json_string_value(json_object_get(n, "device"));
		const char *qdev = json_string_value(json_object_get(n, "qdev"));
		const char *nn = json_string_value(json_object_get(json_object_get(n, "inserted"), "node-name"));
		char pfx[300];
		snprintf(pfx, sizeof(pfx), "/machine/peripheral/%s/", want);
		if (nn && ((dev && *dev && strcmp(dev, want) == 0) ||
			   (qdev && (strcmp(qdev, want) == 0 || strncmp(qdev, pfx, strlen(pfx)) == 0)))) {
			want = nn; /* kept alive by blk until the end */
			/* a killed daemon's view left its filter on top */
			if (strncmp(want, QS_CBW, strlen(QS_CBW)) == 0)
				want += strlen(QS_CBW);
			break;
		}
	}
	if ((r = qs_exec(q, "query-named-block-nodes", json_pack("{sb}", "flat", 1), &nodes)) < 0)
		goto out;
	r = err_set(ENODEV, "source %s: QEMU has no block node or device '%s'", q->cfg->name, q->cfg->qemu.node);
	json_array_foreach(nodes, i, n) {
		const char *nn = json_string_value(json_object_get(n, "node-name"));
		if (nn && strcmp(nn, want) == 0) {
			snprintf(q->node, sizeof(q->node), "%s", nn);
			q->persistent = strcmp(json_string_value(json_object_get(n, "drv")) ?: "", "qcow2") == 0;
			*ret_bitmaps = json_incref(json_object_get(n, "dirty-bitmaps"));
			r = 0;
			break;
		}
	}
	if (r == 0)
		err_clear();
out:
	json_decref(nodes);
	json_decref(blk);
	return r;
}

/* Wait until job ID is gone from QUERY ("query-jobs" / "query-block-jobs"),
 * dismissing it if it concluded; an error it reports is returned. */
static int qs_wait_job(struct qemusrc *q, const char *query, const char *id)
{
	uint64_t deadline = clock_mono_usec() + (uint64_t)QS_QMP_TIMEOUT_MS * 3000u;
	int r;

	for (;;) {
		json_t *jobs = NULL, *j, *found = NULL;
		size_t i;
		if ((r = qs_exec(q, query, NULL, &jobs)) < 0)
			return r;
		json_array_foreach(jobs, i, j) {
			const char *jid = json_string_value(json_object_get(j, "id"));
			if (!jid)
				jid = json_string_value(json_object_get(j, "device"));
			if (jid && strcmp(jid, id) == 0)
				found = j;
		}
		if (!found) {
			json_decref(jobs);
			return 0;
		}
		const char *st = json_string_value(json_object_get(found, "status"));
		if (st && strcmp(st, "concluded") == 0) {
			const char *e = json_string_value(json_object_get(found, "error"));
			r = e ? err_set(EIO, "QEMU job %s: %s", id, e) : 0;
			json_decref(jobs);
			qs_try(q, "job-dismiss", json_pack("{ss}", "id", id));
			return r;
		}
		json_decref(jobs);
		if (clock_mono_usec() > deadline)
			return err_set(ETIMEDOUT, "QEMU job %s did not finish", id);
		usleep(20000);
	}
}

/* Remove our view, export and server, whatever stage they reached (also
 * what a daemon killed mid-cut left). */
static void qs_drop_view(struct qemusrc *q)
{
	json_t *ex = NULL;

	if (q->nbd) {
		nbd_shutdown(q->nbd, 0);
		nbd_close(q->nbd);
		q->nbd = NULL;
	}
	qs_try(q, "block-export-del", json_pack("{ss,ss}", "id", q->exp, "mode", "hard"));
	qs_try(q, "block-job-cancel", json_pack("{ss,sb}", "device", q->job, "force", 1));
	if (qs_wait_job(q, "query-block-jobs", q->job) < 0)
		err_clear();
	qs_try(q, "blockdev-del", json_pack("{ss}", "node-name", q->fl));
	/* the export goes away asynchronously: wait for it before the node */
	for (int i = 0; i < 100; i++) {
		json_t *e;
		size_t k;
		bool ours = false, any = false;
		if (qs_exec(q, "query-block-exports", NULL, &ex) < 0)
			break;
		json_array_foreach(ex, k, e) {
			const char *id = json_string_value(json_object_get(e, "id"));
			any = true;
			ours |= id && strcmp(id, q->exp) == 0;
		}
		json_decref(ex);
		ex = NULL;
		if (!ours) {
			if (!any)
				qs_try(q, "nbd-server-stop", NULL);
			break;
		}
		usleep(20000);
	}
	err_clear();
	qs_try(q, "blockdev-del", json_pack("{ss}", "node-name", q->fl));
	qs_try(q, "blockdev-del", json_pack("{ss}", "node-name", q->fl_file));
	unlink(q->fleece);
	q->view = q->exported = false;
}

/* ---- state file: the live bitmap's name, the epoch it counts from, and
 * when the last full read was committed (unix usec; absent: never) ---- */

static bool qs_state_read(struct qemusrc *q, char *name, size_t len, uint64_t *epoch)
{
	FILE *f = fopen(q->state, "re");
	char n[64];
	unsigned long long e, v = 0;
	bool ok;

	if (!f)
		return false;
	ok = fscanf(f, "%63s %llu %llu", n, &e, &v) >= 2;
	fclose(f);
	if (ok) {
		snprintf(name, len, "%s", n);
		*epoch = e;
		q->verified = v;
	}
	return ok;
}

static int qs_state_write(struct qemusrc *q, const char *name, uint64_t epoch)
{
	char tmp[4300];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", q->state);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "%s %llu %llu\n", name, (unsigned long long)epoch, (unsigned long long)q->verified);
	if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
		fclose(f);
		return -errno;
	}
	fclose(f);
	return rename(tmp, q->state) < 0 ? -errno : 0;
}

/* ---- guest agent ---- */

/* Freeze the guest's filesystems; false (logged) if the agent does not
 * answer in time or refuses: the epoch is then crash-consistent only. */
static bool qs_freeze(struct qemusrc *q, struct qmp **ret_ga)
{
	struct qmp *ga = NULL;
	int r = qmp_open_agent(q->cfg->qemu.guest_agent, (int)(q->cfg->qemu.agent_timeout / 1000), &ga);

	if (r == 0 && (r = qmp_exec(ga, "guest-fsfreeze-freeze", NULL, NULL)) == 0) {
		*ret_ga = ga;
		return true;
	}
	log_warn("source %s: guest agent: %s; this epoch will be fuzzy (crash-consistent)", q->cfg->name,
		 err_msg(r));
	if (ga)
		qmp_send(ga, "guest-fsfreeze-thaw", NULL); /* a freeze may have begun */
	qmp_close(ga);
	return false;
}

static void qs_thaw(struct qemusrc *q, struct qmp *ga)
{
	int r = qmp_exec(ga, "guest-fsfreeze-thaw", NULL, NULL);

	if (r < 0) {
		log_error("source %s: guest agent thaw: %s; sent again without waiting", q->cfg->name, err_msg(r));
		qmp_send(ga, "guest-fsfreeze-thaw", NULL);
	}
	qmp_close(ga);
}

/* ---- extents ---- */

static int qs_ext_add(struct qs_list *x, uint64_t off, uint64_t len, bool zero)
{
	uint64_t first = off / QS_BLOCK, end = (off + len + QS_BLOCK - 1) / QS_BLOCK;
	struct qs_extent *l = x->n ? &x->e[x->n - 1] : NULL, *e;

	if (l && l->end >= first && l->zero == zero) {
		if (end > l->end)
			l->end = end;
		return 0;
	}
	if (!(e = array_grow(x->e, &x->cap, x->n, sizeof(*e), 256)))
		return -ENOMEM;
	x->e = e;
	x->e[x->n++] = (struct qs_extent){ first, end, zero };
	return 0;
}

/* The first extent of X ending after block FIRST. */
static size_t qs_ext_find(const struct qs_list *x, uint64_t first)
{
	size_t lo = 0, hi = x->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (x->e[mid].end <= first)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct qs_bs {
	struct qemusrc *q;
	const char *ctx;
	struct qs_list *to;
	uint64_t done; /* bytes described so far */
	int err;
};

static int qs_extent_cb(void *user, const char *ctx, uint64_t off, uint32_t *e, size_t n, int *error)
{
	struct qs_bs *b = user;
	(void)error;

	if (strcmp(ctx, b->ctx) != 0)
		return 0;
	for (size_t i = 0; i + 1 < n; i += 2) {
		uint64_t len = e[i];
		uint32_t fl = e[i + 1];
		int r = 0;
		if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0) /* everything, zeros known */
			r = qs_ext_add(b->to, off, len, (fl & LIBNBD_STATE_ZERO) != 0);
		else if (fl & 1) /* qemu:dirty-bitmap: bit 0 = dirty */
			r = qs_ext_add(b->to, off, len, false);
		if (r < 0)
			b->err = r;
		off += len;
		b->done = off;
	}
	return 0;
}

/* The extents of context CTX into TO. */
static int qs_find_extents(struct qemusrc *q, const char *ctx, struct qs_list *to)
{
	struct qs_bs b = { .q = q, .ctx = ctx, .to = to };

	to->n = 0;
	while (b.done < q->size) {
		uint64_t at = b.done, len = q->size - at;
		if (len > QS_BS_STEP)
			len = QS_BS_STEP;
		if (nbd_block_status(q->nbd, len, at, (nbd_extent_callback){ .callback = qs_extent_cb, .user_data = &b },
				     0) < 0)
			return err_set(EIO, "source %s: NBD block status: %s", q->cfg->name, nbd_get_error());
		if (b.err)
			return b.err;
		if (b.done <= at)
			return err_set(EPROTO, "source %s: NBD block status made no progress", q->cfg->name);
	}
	return 0;
}

/* ---- the cut ---- */

/* Q's part of the cut's transaction, appended to ACTS: [disable the live
 * bitmap,] add the next one (persistent where the node allows) and start
 * the view. */
static void qs_arm_actions(const struct qemusrc *q, json_t *acts)
{
	if (q->have_old)
		json_array_append_new(acts, json_pack("{ss,s{ss,ss}}", "type", "block-dirty-bitmap-disable", "data",
						      "node", q->node, "name", q->live));
	json_array_append_new(acts, json_pack("{ss,s{ss,ss,si,sb}}", "type", "block-dirty-bitmap-add", "data", "node",
					      q->node, "name", q->next, "granularity", (int)QS_BLOCK, "persistent",
					      q->persistent));
	json_array_append_new(acts, json_pack("{ss,s{ss,ss,ss,ss,ss}}", "type", "blockdev-backup", "data", "device",
					      q->node, "target", q->fl, "sync", "none", "job-id", q->job,
					      "filter-node-name", q->cbw));
}

/* Arm the N disks QS of one guest in ONE transaction (on the first one's
 * monitor): every next bitmap and every view start at the same instant, so
 * the views are one point in time across the guest's disks.  A node that
 * refuses a persistent bitmap: all retried without. */
static int qs_arm(struct qemusrc *const *qs, unsigned n)
{
	for (int tries = 0; tries < 2; tries++) {
		json_t *acts = json_array();
		bool any = false;
		for (unsigned i = 0; i < n; i++)
			qs_arm_actions(qs[i], acts);
		int r = qs_exec(qs[0], "transaction", json_pack("{so}", "actions", acts), NULL);
		if (r == 0) {
			for (unsigned i = 0; i < n; i++)
				if (!qs[i]->persistent)
					log_warn("source %s: node %s keeps no persistent bitmap (not qcow2): a QEMU "
						 "restart costs one full read", qs[i]->cfg->name, qs[i]->node);
			if (n > 1)
				log_debug("source %s: one transaction for %u disks of %s", qs[0]->cfg->name, n,
					  qs[0]->cfg->qemu.qmp);
			return 0;
		}
		for (unsigned i = 0; i < n; i++) {
			any |= qs[i]->persistent;
			qs[i]->persistent = false;
		}
		if (!any || !strstr(err_msg(r), "ersist"))
			return r;
	}
	return -EINVAL;
}
/* The bitmap NAME in BITMAPS (a node's "dirty-bitmaps"), if it is sound. */
static json_t *qs_bitmap_get(json_t *bitmaps, const char *name)
{
	json_t *bm;
	size_t i;

	json_array_foreach(bitmaps, i, bm) {
		const char *n = json_string_value(json_object_get(bm, "name"));
		if (n && strcmp(n, name) == 0 && !json_is_true(json_object_get(bm, "inconsistent")))
			return bm;
	}
	return NULL;
}

/* A cut interrupted after its transaction (daemon killed mid-cut) left the
 * state's bitmap NAME disabled (frozen: what changed from the group's last
 * commit to that cut) and the other one recording from that same instant.
 * Merge the frozen one into the recording one, which then counts from the
 * last commit as the state said NAME did; record that first, so a second
 * interruption finds the same picture.  True if done (NAME is then the
 * recording one's); false: the caller reads the whole disk. */
static bool qs_adopt_frozen(struct qemusrc *q, json_t *bitmaps, char *name, size_t len, uint64_t stepoch)
{
	const char *other = strcmp(name, "bascule-a") == 0 ? "bascule-b" : "bascule-a";
	json_t *fr = qs_bitmap_get(bitmaps, name), *rec = qs_bitmap_get(bitmaps, other);
	int r;

	if (strncmp(name, "bascule-", 8) != 0 || !fr || json_is_true(json_object_get(fr, "recording")) || !rec ||
	    !json_is_true(json_object_get(rec, "recording")))
		return false;
	if ((r = qs_exec(q, "block-dirty-bitmap-merge",
			 json_pack("{ss,ss,s[s]}", "node", q->node, "target", other, "bitmaps", name), NULL)) < 0 ||
	    (r = qs_state_write(q, other, stepoch)) < 0) {
		log_warn("source %s: cannot take over the bitmaps of an interrupted cut: %s", q->cfg->name, err_msg(r));
		err_clear();
		return false;
	}
	log_info("source %s: a cut was interrupted (daemon killed?): its frozen bitmap %s merged into %s, "
		 "no full read", q->cfg->name, name, other);
	snprintf(name, len, "%s", other);
	return true; /* the frozen one is removed with the other leftovers */
}

/* The cut's work on Q before the freeze: our leftovers removed, bitmap or
 * full (or verifying) read decided, the fleecing image over the node.  On
 * SHARE (another disk's connection to the same guest) if not NULL. */
static int qs_prepare(struct qemusrc *q, uint64_t last_cut, struct qs_mon *share)
{
	const struct cfg_qemu *c = &q->cfg->qemu;
	json_t *bitmaps = NULL, *bm;
	char stname[64] = "";
	uint64_t stepoch = 0;
	size_t i;
	int r, fd;

	q->verified = 0;
	q->cut_at = clock_now_usec();
	if (share) {
		q->mon = share;
		share->refs++;
	} else {
		if (!(q->mon = calloc(1, sizeof(*q->mon))))
			return -ENOMEM;
		q->mon->refs = 1;
		q->mon->sock = q->sock;
		if ((r = qmp_open(c->qmp, QS_QMP_TIMEOUT_MS, &q->mon->qmp)) < 0) {
			free(q->mon);
			q->mon = NULL;
			return r;
		}
	}
	q->qmp = q->mon->qmp;
	if ((r = qs_find_node(q, &bitmaps)) < 0)
		return r;
	snprintf(q->fl_file, sizeof(q->fl_file), "bascule-flf-%s", q->node);
	snprintf(q->fl, sizeof(q->fl), "bascule-fl-%s", q->node);
	snprintf(q->job, sizeof(q->job), "bascule-bk-%s", q->node);
	snprintf(q->exp, sizeof(q->exp), "bascule-exp-%s", q->node);
	snprintf(q->cbw, sizeof(q->cbw), QS_CBW "%s", q->node);
	qs_drop_view(q); /* a daemon killed mid-cut left it */
	/* Bitmap mode only if our live bitmap is there, sound, and counts from
	 * the epoch the group committed last. */
	q->have_old = false;
	if (qs_state_read(q, stname, sizeof(stname), &stepoch) && stepoch == last_cut) {
		bm = qs_bitmap_get(bitmaps, stname);
		q->have_old = (bm && json_is_true(json_object_get(bm, "recording"))) ||
			      qs_adopt_frozen(q, bitmaps, stname, sizeof(stname), stepoch);
	}
	snprintf(q->live, sizeof(q->live), "%s", q->have_old ? stname : "bascule-b");
	snprintf(q->next, sizeof(q->next), "%s", strcmp(q->live, "bascule-a") == 0 ? "bascule-b" : "bascule-a");
	json_array_foreach(bitmaps, i, bm) {
		const char *n = json_string_value(json_object_get(bm, "name"));
		if (n && strncmp(n, "bascule-", 8) == 0 && !(q->have_old && strcmp(n, q->live) == 0))
			qs_try(q, "block-dirty-bitmap-remove", json_pack("{ss,ss}", "node", q->node, "name", n));
	}
	json_decref(bitmaps);
	/* The bitmap is trusted for at most verify_every since the last full
	 * read: then one full read with the bitmap kept, to catch a write it
	 * missed (counted as such at the end of the cut). */
	q->verify = q->have_old && q->cut_at - q->verified >= q->verify_every;
	q->full = !q->have_old || q->verify;
	/* A full cut that fails or is interrupted must not leave a state that
	 * names the bitmap it arms now (next may be the name the old state
	 * held): that bitmap counts only from this cut, and the next cut would
	 * trust it for writes made before.  No state until the full cut commits. */
	if (!q->have_old) {
		r = unlink(q->state) == 0 ? fs_fsync_parent(q->state)
		    : errno == ENOENT	  ? 0
					  : err_set(errno, "cannot remove %s: %s", q->state, strerror(errno));
		if (r < 0)
			return r;
		log_info("source %s: %s: one full read of the disk, then the dirty bitmap", q->cfg->name,
			 stname[0] ? "bitmap missing, inconsistent or not ours (QEMU restarted?)"
				   : "no bitmap state (first cut, or the last hand-over failed)");
	} else if (q->verify)
		log_info("source %s: verifying full read (the last one was %llu s ago, full_scan_every %llu s): "
			 "a block the bitmap did not record is counted as a missed write", q->cfg->name,
			 (unsigned long long)((q->cut_at - q->verified) / 1000000),
			 (unsigned long long)(q->verify_every / 1000000));
	/* The fleecing image: a qcow2 over the node, written by copy-before-write. */
	fd = open(q->fleece, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(errno, "cannot create %s: %s", q->fleece, strerror(errno));
	close(fd);
	{
		json_t *info = NULL;
		if ((r = qs_exec(q, "blockdev-add", json_pack("{ss,ss,ss}", "driver", "file", "node-name", q->fl_file,
								  "filename", q->fleece), NULL)) < 0)
			return r;
		if ((r = qs_exec(q, "query-named-block-nodes", json_pack("{sb}", "flat", 1), &info)) < 0)
			return r;
		json_array_foreach(info, i, bm)
			if (strcmp(json_string_value(json_object_get(bm, "node-name")) ?: "", q->node) == 0)
				q->size = (uint64_t)json_integer_value(
					json_object_get(json_object_get(bm, "image"), "virtual-size"));
		json_decref(info);
	}
	if ((r = qs_exec(q, "blockdev-create", json_pack("{ss,s{ss,ss,sI}}", "job-id", q->job, "options", "driver",
							  "qcow2", "file", q->fl_file, "size", (json_int_t)q->size),
			 NULL)) < 0 ||
	    (r = qs_wait_job(q, "query-jobs", q->job)) < 0)
		return r;
	return qs_exec(q, "blockdev-add", json_pack("{ss,ss,ss,ss}", "driver", "qcow2", "node-name", q->fl, "file",
						     q->fl_file, "backing", q->node), NULL);
}

/* After the transaction: export Q's view (with the frozen bitmap) and find
 * what to read. */
static int qs_open_view(struct qemusrc *q)
{
	char ctx[128];
	int r;

	q->view = true;
	q->read_at_begin = atomic_load(&q->read_bytes);
	atomic_store(&q->missed, 0);
	r = qs_exec(q, "nbd-server-start",
		    json_pack("{s{ss,s{ss}}}", "addr", "type", "unix", "data", "path", q->mon->sock), NULL);
	if (r < 0 && !strstr(err_msg(r), "already"))
		return r;
	err_clear();
	json_t *a = json_pack("{ss,ss,ss,ss,sb}", "type", "nbd", "id", q->exp, "node-name", q->fl, "name", q->exp,
			      "writable", 0);
	if (q->have_old)
		json_object_set_new(a, "bitmaps", json_pack("[{ss,ss}]", "node", q->node, "name", q->live));
	if ((r = qs_exec(q, "block-export-add", a, NULL)) < 0)
		return r;
	q->exported = true;
	snprintf(ctx, sizeof(ctx), "qemu:dirty-bitmap:%s", q->live);
	q->nbd = nbd_create();
	if (!q->nbd || (q->full && nbd_add_meta_context(q->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0) ||
	    (q->have_old && nbd_add_meta_context(q->nbd, ctx) < 0) || nbd_set_export_name(q->nbd, q->exp) < 0 ||
	    nbd_connect_unix(q->nbd, q->mon->sock) < 0)
		return err_set(EIO, "source %s: NBD %s: %s", q->cfg->name, q->mon->sock, nbd_get_error());
	q->dirty.n = 0;
	if (q->full && (r = qs_find_extents(q, LIBNBD_CONTEXT_BASE_ALLOCATION, &q->ext)) < 0)
		return r;
	return q->have_old ? qs_find_extents(q, ctx, q->verify ? &q->dirty : &q->ext) : 0;
}

int qemusrc_cut_begin(struct qemusrc *const *qs, unsigned n, uint64_t epoch, uint64_t last_cut, uint64_t *ret_sizes,
		      bool *ret_frozen)
{
	struct qemusrc *agent = NULL;
	struct qmp *ga = NULL;
	bool frozen = false;
	unsigned i;
	int r = 0;
	(void)epoch;

	*ret_frozen = false;
	for (i = 0; i < n && r == 0; i++)
		r = qs_prepare(qs[i], last_cut, i ? qs[0]->mon : NULL);
	if (r < 0)
		goto fail;
	/* One freeze for the guest (its disks share one agent: the first one
	 * configured), one transaction, thawed whatever happened. */
	for (i = 0; i < n && !agent; i++)
		if (qs[i]->cfg->qemu.guest_agent)
			agent = qs[i];
	if (agent)
		frozen = qs_freeze(agent, &ga);
	r = qs_arm(qs, n);
	if (ga)
		qs_thaw(agent, ga);
	if (r < 0)
		goto fail;
	for (i = 0; i < n; i++) {
		if ((r = qs_open_view(qs[i])) < 0)
			goto fail;
		ret_sizes[i] = qs[i]->size;
	}
	*ret_frozen = frozen;
	return 0;
fail: {
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s", err_msg(r));
	for (i = 0; i < n; i++)
		qemusrc_cut_end(qs[i], 0, false, false);
	err_set(-r, "%s", msg);
}
	return r;
}

uint64_t qemusrc_next_changed(const struct qemusrc *q, uint64_t first)
{
	size_t k = qs_ext_find(&q->ext, first);

	return k == q->ext.n ? UINT64_MAX : q->ext.e[k].first > first ? q->ext.e[k].first : first;
}

void qemusrc_changed(const struct qemusrc *q, uint64_t first, uint32_t n, uint8_t *want, uint8_t *zero)
{
	memset(want, 0, n);
	memset(zero, 0, n);
	for (size_t k = qs_ext_find(&q->ext, first); k < q->ext.n && q->ext.e[k].first < first + n; k++) {
		uint64_t a = q->ext.e[k].first > first ? q->ext.e[k].first : first;
		uint64_t b = q->ext.e[k].end < first + n ? q->ext.e[k].end : first + n;
		memset(want + (a - first), 1, b - a);
		if (q->ext.e[k].zero)
			memset(zero + (a - first), 1, b - a);
	}
}

bool qemusrc_marked(const struct qemusrc *q, uint64_t first, uint32_t n)
{
	const struct qs_list *l = q->verify ? &q->dirty : &q->ext;
	size_t k = qs_ext_find(l, first);

	return k < l->n && l->e[k].first < first + n;
}

void qemusrc_block_changed(struct qemusrc *q, uint64_t block)
{
	size_t k;

	if (!q->verify)
		return;
	k = qs_ext_find(&q->dirty, block);
	if (k == q->dirty.n || q->dirty.e[k].first > block)
		atomic_fetch_add(&q->missed, 1);
}
int qemusrc_pread(struct qemusrc *q, void *buf, size_t len, uint64_t off)
{
	while (len) {
		size_t n = len > (32u << 20) ? (32u << 20) : len;
		if (nbd_pread(q->nbd, buf, n, off, 0) < 0)
			return err_set(EIO, "source %s: NBD read at %llu: %s", q->cfg->name, (unsigned long long)off,
				       nbd_get_error());
		atomic_fetch_add(&q->read_bytes, n);
		buf = (char *)buf + n;
		off += n;
		len -= n;
	}
	return 0;
}

int qemusrc_cut_end(struct qemusrc *q, uint64_t epoch, bool committed, bool scanned)
{
	int r = 0;

	bool view = q->view;

	if (!q->mon)
		return 0;
	qs_drop_view(q);
	q->view = view; /* qs_drop_view forgets it; the hand-over below needs it */
	if (q->view)
		log_info("source %s: cut %llu read %llu bytes through NBD (%s, %zu extents)%s", q->cfg->name,
			 (unsigned long long)epoch, (unsigned long long)(atomic_load(&q->read_bytes) - q->read_at_begin),
			 q->verify ? "verifying full read" : q->full ? "full read" : "dirty bitmap", q->ext.n,
			 committed ? "" : ", not committed");
	if (q->view && scanned && q->verify) {
		uint64_t m = atomic_load(&q->missed);
		q->st.verify_reads++;
		if (m) {
			q->st.missed_writes += m;
			q->st.missed_cuts++;
			log_error("source %s: the verifying full read of cut %llu found %llu blocks changed that the "
				  "dirty bitmap did not record (missed writes; now sent to the targets). Something wrote "
				  "the disk outside QEMU's view or cleared the bitmap", q->cfg->name,
				  (unsigned long long)epoch, (unsigned long long)m);
		} else
			log_info("source %s: the verifying full read of cut %llu found nothing the dirty bitmap missed",
				 q->cfg->name, (unsigned long long)epoch);
	}
	if (q->view) {
		/* next is live now; live (disabled) is the frozen one */
		if (committed) {
			if (q->full)
				q->verified = q->cut_at;
			if (q->have_old)
				qs_try(q, "block-dirty-bitmap-remove", json_pack("{ss,ss}", "node", q->node, "name", q->live));
			r = qs_state_write(q, q->next, epoch);
		} else if (q->have_old) {
			r = qs_exec(q, "block-dirty-bitmap-merge",
				    json_pack("{ss,ss,s[s]}", "node", q->node, "target", q->next, "bitmaps", q->live), NULL);
			if (r == 0) {
				qs_try(q, "block-dirty-bitmap-remove", json_pack("{ss,ss}", "node", q->node, "name", q->live));
				/* still counting from the group's last commit */
				char n[64];
				uint64_t e = 0, v = q->verified;
				if (qs_state_read(q, n, sizeof(n), &e)) {
					/* a verifying read that found nothing to commit
					 * found nothing missed: it counts as done */
					q->verified = scanned && q->verify ? q->cut_at : v;
					r = qs_state_write(q, q->next, e);
				}
			}
		}
		/* a full cut not committed: no state (removed when it began), so
		 * the next cut is full again */
		q->view = q->verify = false;
	}
	if (r < 0)
		log_error("source %s: bitmap hand-over: %s; the next cut reads the whole disk", q->cfg->name,
			  err_msg(r));
	if (r < 0)
		unlink(q->state);
	if (--q->mon->refs == 0) {
		qmp_close(q->mon->qmp);
		free(q->mon);
	}
	q->mon = NULL;
	q->qmp = NULL;
	return r;
}
