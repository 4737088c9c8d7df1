/* gstate.c - the daemon's state of a group: its last epoch number, the
 * reservation of numbers for WAL-only cuts (docs/design.md "Epoch
 * numbers"), the cut's time and the disks' sizes and digests, in
 * STATE_DIR/groups/G/state, replaced atomically. */
#include "daemon.h"
#include "err.h"
#include "log.h"
#include "sfile.h"
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
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
