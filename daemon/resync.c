/* resync.c - librsync signatures of a replica whose content is unknown or
 * diverged: asked for after STATE (SIG_REQUEST), received range by range
 * (SIG, SIG_END) into an unlinked file, then handed to the next job of the
 * group, which sends deltas against them (ship.c). */
#include "daemon.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sigstore_free(struct sigstore *ss)
{
	if (!ss)
		return;
	if (ss->fd >= 0)
		close(ss->fd);
	free(ss->off);
	free(ss->len);
	free(ss->rlen);
	free(ss);
}

int resync_request(struct target *t)
{
	struct wbuf b;
	int r = 0;

	wbuf_init(&b, 4096);
	for (uint32_t i = 0; i < t->d->n_groups && r == 0; i++) {
		struct group *g = t->d->groups[i];
		for (uint32_t s = 0; s < g->n_sources && r == 0; s++) {
			struct msg_sig m = { .len = PROTO_SIG_RANGE };
			if (!t->groups[i].want_sig[s])
				continue;
			snprintf(m.group, sizeof(m.group), "%s", g->name);
			snprintf(m.source, sizeof(m.source), "%s", g->sources[s].cfg->name);
			wbuf_reset(&b);
			if ((r = proto_put_sig(&b, MSG_SIG_REQUEST, &m)) == 0 &&
			    (r = wire_send(&t->w, MSG_SIG_REQUEST, b.p, b.len)) == 0)
				t->groups[i].sig_pending++;
		}
	}
	wbuf_free(&b);
	return r;
}

int resync_handle_sig(struct target *t, enum wire_type type, struct rbuf *body)
{
	struct msg_sig m;
	struct group *g;
	struct tgroup *tg;
	struct sigstore *ss;
	uint32_t gi, s;
	size_t idx;
	int r;

	if ((r = proto_get_sig(body, type, &m)) < 0)
		return r;
	if (!(g = group_find(t->d, m.group, &gi)))
		return err_set(EPROTO, "signature for an unknown group");
	for (s = 0; s < g->n_sources && strcmp(g->sources[s].cfg->name, m.source); s++)
		;
	tg = &t->groups[gi];
	if (s == g->n_sources || !tg->want_sig[s])
		return err_set(EPROTO, "signature that was not asked for");
	if (!tg->sig[s]) {
		char dir[4200];
		tg->sig[s] = ss = calloc(1, sizeof(*ss));
		if (!ss)
			return -ENOMEM;
		snprintf(dir, sizeof(dir), "%s/groups/%s", t->d->cfg->state_dir, g->name);
		ss->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (ss->fd < 0)
			return err_set(errno, "cannot store signatures in %s: %s", dir, strerror(errno));
	}
	ss = tg->sig[s];
	if (type == MSG_SIG_END) {
		ss->complete = true;
		tg->want_sig[s] = false;
		if (tg->sig_pending && --tg->sig_pending == 0)
			group_request_cut(g);
		target_log(t, LOG_INFO, "signatures of %s/%s received (%" PRIu64 " bytes for %" PRIu64 " bytes of replica)",
		     g->name, m.source, ss->used, m.offset);
		return 0;
	}
	idx = (size_t)(m.offset / PROTO_SIG_RANGE);
	if (idx >= ss->n) {
		size_t n = idx + 1 > ss->n * 2 ? idx + 1 : ss->n * 2;
		uint64_t *o = realloc(ss->off, n * sizeof(*o));
		uint32_t *l, *rl;
		if (o)
			ss->off = o;
		l = o ? realloc(ss->len, n * sizeof(*l)) : NULL;
		if (l)
			ss->len = l;
		rl = l ? realloc(ss->rlen, n * sizeof(*rl)) : NULL;
		if (!rl)
			return -ENOMEM;
		ss->rlen = rl;
		memset(ss->len + ss->n, 0, (n - ss->n) * sizeof(*l));
		ss->n = n;
	}
	if ((r = fs_pwrite_full(ss->fd, m.data, m.data_len, ss->used)) < 0)
		return err_set(r, "cannot store signatures: %s", strerror(-r));
	ss->off[idx] = ss->used;
	ss->len[idx] = m.data_len;
	ss->rlen[idx] = m.len;
	ss->used += m.data_len;
	return 0;
}

