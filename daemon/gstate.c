/* gstate.c - a group's setup (its sources, maps and spool directory) and
 * the daemon's state of it: its last epoch number, the reservation of
 * numbers for WAL-only cuts (docs/design.md "Epoch numbers"), the cut's
 * time and the disks' sizes and digests, in STATE_DIR/groups/G/state,
 * replaced atomically. */
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
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define G_MAGIC "BSCGRST2"    /* digests of version 2 (lib/merkle.h) */
#define G_MAGIC_V1 "BSCGRST1" /* the same layout, digests of version 1: still read */

int gstate_path(struct group *g, char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/groups/%s/%s", g->d->cfg->state_dir, g->name, name);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

/* The daemon's state directory is its own (root's, mode 0700): the checksum
 * finds damage; nobody else writes there, so it is not keyed.  RESERVED
 * (>= EPOCH, after the sources; absent in files of earlier versions): the
 * numbers WAL-only cuts may use without writing the state again.
 * DIGEST_V1: the disks' digests are still of version 1 (a WAL-only cut
 * after an upgrade carries the old state's until a scan recomputes them). */
int gstate_write(struct group *g, uint64_t epoch, uint64_t cut_time, bool consistent,
			const uint64_t *size, uint8_t (*digest)[DIGEST_BYTES], uint64_t reserved, bool digest_v1)
{
	char path[4300];
	struct wbuf b;
	int r;

	sfile_begin(&b, digest_v1 ? G_MAGIC_V1 : G_MAGIC);
	r = wbuf_put_u64(&b, epoch);
	if (!r) r = wbuf_put_u64(&b, cut_time);
	if (!r) r = wbuf_put_u8(&b, consistent);
	if (!r) r = wbuf_put_u32(&b, g->n_sources);
	for (uint32_t i = 0; !r && i < g->n_sources; i++) {
		r = wbuf_put_str(&b, g->sources[i].cfg->name);
		if (!r) r = wbuf_put_u64(&b, size[i]);
		if (!r) r = wbuf_put_bytes(&b, digest[i], DIGEST_BYTES);
	}
	if (!r) r = wbuf_put_u64(&b, reserved > epoch ? reserved : epoch);
	if (!r && !(r = gstate_path(g, path, sizeof(path), "state")))
		r = sfile_write(&b, NULL, path, 0600);
	wbuf_free(&b);
	return r;
}

int gstate_load(struct group *g)
{
	char path[4300], name[NAME_MAX_LEN + 1];
	struct sfile f = { 0 };
	uint64_t last_cut, cut_time;
	uint8_t cons;
	uint32_t n;
	struct rbuf b;
	int r;

	if ((r = gstate_path(g, path, sizeof(path), "state")) < 0)
		return r;
	if ((r = sfile_read(AT_FDCWD, path, &f)) == -ENOENT)
		return 0; /* first run */
	if (r < 0 && r != -EBADMSG)
		return r;
	r = err_set(EBADMSG, "daemon state %s is corrupt; move it away to start this group afresh "
			     "(every target will be fully resynchronised)", path);
	g->digest_v1 = f.data && sfile_is(&f, G_MAGIC_V1);
	if (!f.data || sfile_open(&f, g->digest_v1 ? G_MAGIC_V1 : G_MAGIC, NULL, &b) < 0 ||
	    rbuf_get_u64(&b, &last_cut) < 0 ||
	    rbuf_get_u64(&b, &cut_time) < 0 || rbuf_get_u8(&b, &cons) < 0 || rbuf_get_u32(&b, &n) < 0 ||
	    n > PROTO_MAX_SOURCES)
		goto out;
	g->last_cut = last_cut;
	g->cut_time = cut_time;
	g->consistent = cons;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t size;
		uint8_t d[DIGEST_BYTES];
		if (rbuf_get_str(&b, name, sizeof(name)) < 0 || rbuf_get_u64(&b, &size) < 0 ||
		    rbuf_get_bytes(&b, d, DIGEST_BYTES) < 0)
			goto out;
		for (uint32_t k = 0; k < g->n_sources; k++)
			if (strcmp(g->sources[k].cfg->name, name) == 0) {
				g->sources[k].size = size;
				memcpy(g->sources[k].digest, d, DIGEST_BYTES);
			}
	}
	g->reserved = g->last_cut;
	if (rbuf_left(&b) && (rbuf_get_u64(&b, &g->reserved) < 0 || g->reserved < g->last_cut))
		goto out;
	if (g->reserved > g->last_cut) {
		/* Stopped without giving the reservation back (killed): WAL-only
		 * epochs up to it may have been cut and sent.  Numbers go on
		 * after it, never reusing one a target may hold. */
		log_info("group %s: the daemon stopped without recording its last WAL-only epochs: epoch "
			 "numbers go on after %" PRIu64, g->name, g->reserved);
		g->last_cut = g->reserved;
	}
	r = 0;
out:
	sfile_free(&f);
	return r;
}

/* The state as the loop knows it, the reservation given back: a restart
 * goes on from last_cut + 1 (a clean stop leaves no gap). */
void gstate_release(struct group *g)
{
	uint64_t size[PROTO_MAX_SOURCES];
	uint8_t digest[PROTO_MAX_SOURCES][DIGEST_BYTES];
	int r;

	if (!g->sources || g->retired || g->reserved <= g->last_cut)
		return; /* a retired group's successor owns the file now */
	for (uint32_t i = 0; i < g->n_sources; i++) {
		size[i] = g->sources[i].size;
		memcpy(digest[i], g->sources[i].digest, DIGEST_BYTES);
	}
	if ((r = gstate_write(g, g->last_cut, g->cut_time, g->consistent, size, digest, g->last_cut, g->digest_v1)) < 0)
		log_warn("group %s: %s (the next start numbers epochs after %" PRIu64 ")", g->name, err_msg(r),
			 g->reserved);
	else
		g->reserved = g->last_cut;
}

static const uint8_t zeros[PROTO_BLOCK];

int group_init(struct daemon *d, struct group *g, const struct cfg_group *cfg)
{
	char path[4300];
	uint8_t kid[KEY_ID_BYTES], zero_leaf[LEAF_BYTES];
	int r;

	memset(g, 0, sizeof(*g));
	g->d = d;
	g->cfg = cfg;
	snprintf(g->name, sizeof(g->name), "%s", cfg->name);
	if (cfg->sources.n > PROTO_MAX_SOURCES)
		return err_set(EINVAL, "group %s has more than %d sources", g->name, PROTO_MAX_SOURCES);
	g->n_sources = (uint32_t)cfg->sources.n;
	g->sources = calloc(g->n_sources, sizeof(*g->sources));
	if (!g->sources)
		return -ENOMEM;
	if ((r = gstate_path(g, path, sizeof(path), "spool")) < 0 || (r = fs_mkdir_p(path, 0700)) < 0)
		return r;
	key_id(d->key, kid);
	for (uint32_t i = 0; i < g->n_sources; i++) {
		struct source *s = &g->sources[i];
		char name[NAME_MAX_LEN + 8];
		s->g = g;
		s->cfg = CFG_SOURCE(cfg, i);
		s->idx = i;
		s->wd = -1;
		if (s->cfg->kind == SOURCE_POSTGRES) {
			if ((r = pgsource_get(d, g->name, s->cfg, &s->pg)) < 0)
				return r;
			s->pg->s = s;
			g->n_pg++;
			if (!g->wal_interval || s->cfg->wal_interval < g->wal_interval)
				g->wal_interval = s->cfg->wal_interval;
			continue;
		}
		g->n_disks++;
		hash_leaf_secret(d->key, g->name, s->cfg->name, s->secret);
		hash_leaf(s->secret, zeros, PROTO_BLOCK, zero_leaf);
		snprintf(name, sizeof(name), "%s.map", s->cfg->name);
		if ((r = gstate_path(g, path, sizeof(path), name)) < 0 ||
		    (r = blockmap_open(path, kid, zero_leaf, &s->map)) < 0)
			return r;
		if (s->cfg->qemu.qmp) {
			path[strlen(path) - 4] = 0; /* STATE/GROUP/NAME */
			if ((r = qemusrc_new(s->cfg, path, g->cfg->full_scan_every, &s->qemu)) < 0)
				return r;
			g->n_qemu++;
			g->n_guests++;
			for (uint32_t k = 0; k < i; k++)
				if (g->sources[k].qemu && qemusrc_same_guest(g->sources[k].qemu, s->qemu)) {
					g->n_guests--; /* a disk of a guest already counted */
					break;
				}
		}
	}
	if (g->n_guests > 1)
		log_warn("group %s: its qemu: disks are of %" PRIu32 " guests (QMP sockets), each viewed in its own "
			 "transaction, one after the other: its epochs are fuzzy (consistent: false), each guest "
			 "consistent alone%s (docs/qemu.md, \"Consistency of a group\")", g->name, g->n_guests,
			 g->cfg->freeze ? ", but when the group's freeze hook succeeds" : "");
	if ((r = gstate_load(g)) < 0)
		return r;
	g->verified_time = g->cut_time;
	/* Spools are derived data: anything left from a previous run goes. */
	if (gstate_path(g, path, sizeof(path), "spool") == 0) {
		struct dirent *e;
		DIR *dir = opendir(path);
		while (dir && (e = readdir(dir))) {
			char p[4700];
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
			unlink(p);
		}
		if (dir)
			closedir(dir);
	}
	g->want_cut = true; /* a first scan at start-up finds what changed while down */
	return 0;
}

void group_free(struct group *g)
{
	if (g->cut) {
		pthread_join(g->cut->thread, NULL);
		spool_unref(g->cut->spool);
		free(g->cut);
		g->cut = NULL;
	}
	gstate_release(g);
	for (uint32_t i = 0; g->sources && i < g->n_sources; i++) {
		struct pgsrc *p = g->sources[i].pg;
		blockmap_close(g->sources[i].map);
		qemusrc_free(g->sources[i].qemu);
		sodium_memzero(g->sources[i].secret, LEAF_SECRET_BYTES);
		if (p && p->s == &g->sources[i])
			p->s = NULL;
		pgsource_put(p);
	}
	spool_unref(g->spool);
	free(g->sources);
	sd_event_source_unref(g->timer);
	sd_event_source_unref(g->pg_timer);
}
