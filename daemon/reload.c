/* reload.c - apply a new configuration without restarting (SIGHUP, or the
 * control verb reload).
 *
 * The new file is parsed and checked first: if it is invalid, nothing
 * changes and the error is reported.  Groups and targets are matched by
 * name: unchanged ones go on untouched (epochs, connections); a group whose
 * sources changed is rebuilt from its state on disk (block maps are reused,
 * so only a new source is copied in full); a removed or rebuilt group is
 * retired and freed once no queued epoch needs it; removed targets are
 * disconnected, new ones connected.  Each target's progress is remapped by
 * group and source name.  A new metrics_listen is opened before anything is
 * committed, so a port that cannot be had refuses the whole reload. */
#include "daemon.h"
#include "creds.h"
#include "err.h"
#include "log.h"
#include "pgsource.h"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The same sources, of the same kinds, reading the same disks (a postgres
 * source's settings may change: its stream restarts if it must). */
static bool same_sources(const struct group *g, const struct cfg_group *c)
{
	if (g->n_sources != c->sources.n)
		return false;
	for (uint32_t s = 0; s < g->n_sources; s++) {
		const struct cfg_source *a = g->sources[s].cfg, *b = CFG_SOURCE(c, s);
		if (strcmp(a->name, b->name) || a->kind != b->kind ||
		    (a->kind == SOURCE_DISK && strcmp(a->disk, b->disk)))
			return false;
	}
	return true;
}

static bool same_target(const struct cfg_target *a, const struct cfg_target *b)
{
	return str_eq(a->type, b->type) && str_eq(a->url, b->url) &&
	       str_eq(a->remote_command, b->remote_command) && str_eq(a->identity, b->identity) &&
	       str_eq(a->known_hosts, b->known_hosts) && a->bandwidth == b->bandwidth &&
	       a->keep_epochs == b->keep_epochs && a->keep_time == b->keep_time &&
	       a->max_in_flight == b->max_in_flight && str_eq(a->window, b->window) &&
	       a->parallel == b->parallel;
}

static struct group *find_group(struct group **v, uint32_t n, const char *name)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i] && strcmp(v[i]->name, name) == 0)
			return v[i];
	return NULL;
}

static void retire(struct daemon *d, struct group *g)
{
	struct group **nr = realloc(d->retired, (d->n_retired + 1) * sizeof(*nr));

	g->timer = sd_event_source_disable_unref(g->timer);
	g->pg_timer = sd_event_source_disable_unref(g->pg_timer);
	g->retired = true;
	g->idx = UINT32_MAX;
	if (!nr) {
		/* Cannot keep it: better to leak it than to free what jobs use. */
		return;
	}
	d->retired = nr;
	d->retired[d->n_retired++] = g;
}

void daemon_free_retired(struct daemon *d)
{
	for (uint32_t i = 0; i < d->n_retired;) {
		struct group *g = d->retired[i];
		if (g->jobs || g->cut) {
			i++;
			continue;
		}
		group_free(g);
		free(g);
		d->retired[i] = d->retired[--d->n_retired];
	}
}

/* The target's progress for the new group list, by names. */
static int remap_target(struct daemon *d, struct target *t, struct group **old_groups, uint32_t n_old)
{
	struct tgroup *ng = calloc(d->n_groups ? d->n_groups : 1, sizeof(*ng));

	if (!ng)
		return -ENOMEM;
	for (uint32_t k = 0; k < d->n_groups; k++) {
		struct group *g = d->groups[k];
		struct tgroup *o = NULL;
		struct group *og = NULL;
		snprintf(ng[k].name, sizeof(ng[k].name), "%s", g->name);
		for (uint32_t i = 0; t->groups && i < n_old; i++)
			if (strcmp(t->groups[i].name, g->name) == 0) {
				o = &t->groups[i];
				og = old_groups[i];
			}
		if (!o)
			continue; /* a new group: everything is sent (new sources are seeded) */
		ng[k].acked = o->acked;
		ng[k].acked_cut_time = o->acked_cut_time;
		ng[k].known = o->known;
		for (uint32_t s = 0; s < g->n_sources; s++)
			for (uint32_t os = 0; og && os < og->n_sources; os++)
				if (strcmp(og->sources[os].cfg->name, g->sources[s].cfg->name) == 0) {
					ng[k].sent[s] = o->sent[os];
					ng[k].pg[s] = o->pg[os];
				}
		if (og == g) {
			/* Same object: signature state stays with it. */
			memcpy(ng[k].want_sig, o->want_sig, sizeof(ng[k].want_sig));
			memcpy(ng[k].sig, o->sig, sizeof(ng[k].sig));
			ng[k].sig_pending = o->sig_pending;
			memset(o->sig, 0, sizeof(o->sig));
		}
	}
	/* Signatures of groups that went away are dropped. */
	for (uint32_t i = 0; t->groups && i < n_old; i++)
		for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++)
			sigstore_free(t->groups[i].sig[s]);
	free(t->groups);
	t->groups = ng;
	return 0;
}

/* A reload parsed and checked, waiting to be applied. */
struct reload_waiter {
	void (*done)(void *ctx, int r);
	void *ctx;
};

struct reload {
	struct config *nc;
	struct httpd *nh;              /* the new metrics_listen, already listening */
	bool new_listen;
	uid_t relay_uid;
	gid_t relay_gid;
	struct reload_waiter *waiters;
	size_t n_waiters;
};

int daemon_relay_user(const struct config *cfg, uid_t *ret_uid, gid_t *ret_gid)
{
	bool needed = false;
	uid_t uid;
	gid_t gid;
	int r;

	if (geteuid() != 0) {
		*ret_uid = geteuid();
		*ret_gid = getegid();
		return 0; /* the children keep basculed's user */
	}
	for (size_t i = 0; i < cfg->targets.n; i++) {
		const struct cfg_target *t = CFG_TARGET(cfg, i);
		needed |= t->kind == TARGET_VAULT || strncmp(t->url, "ssh://", 6) == 0;
	}
	needed |= config_has_postgres(cfg); /* bascule pgstream runs as relay_user */
	if ((r = creds_user(cfg->relay_user, &uid, &gid)) < 0) {
		if (!needed)
			return 0; /* only local: replicas: nothing runs as relay_user */
		return err_set(r == -ENOENT ? EINVAL : -r,
			       "%s: relay_user '%s' does not exist: create it with `useradd --system %s` "
			       "(the ssh:// relay, the vault writer and bascule pgstream run as that user), or set relay_user "
			       "to another unprivileged user", cfg->file, cfg->relay_user, cfg->relay_user);
	}
	if (uid == 0)
		return err_set(EINVAL, "%s: relay_user '%s' is root: the network children must run as an "
				       "unprivileged user (`useradd --system bascule`)", cfg->file, cfg->relay_user);
	*ret_uid = uid;
	*ret_gid = gid;
	return 0;
}

static void reload_free(struct reload *rl)
{
	if (!rl)
		return;
	httpd_free(rl->nh);
	config_free(rl->nc);
	free(rl->waiters);
	free(rl);
}

/* Parse and check the file; open a new metrics_listen.  Nothing changes. */
static int reload_prepare(struct daemon *d, struct reload **ret)
{
	struct config *nc = NULL, *oc = d->cfg;
	struct reload *rl;
	int r;

	if ((r = config_load(oc->file, &nc)) < 0)
		return err_wrap(r, "new configuration refused, the running one stays");
	if (!(rl = calloc(1, sizeof(*rl)))) {
		config_free(nc);
		return -ENOMEM;
	}
	rl->nc = nc;
	if (!str_eq(nc->state_dir, oc->state_dir) || !str_eq(nc->key, oc->key) ||
	    !str_eq(nc->control_socket, oc->control_socket)) {
		reload_free(rl);
		return err_set(EINVAL, "new configuration refused, the running one stays: state_dir, key "
				       "and control_socket change only with a restart of basculed");
	}
	if ((nc->control_group && (r = creds_group_gid(nc->control_group, &d->control_gid)) < 0) ||
	    (nc->monitor_group && (r = creds_group_gid(nc->monitor_group, &d->monitor_gid)) < 0) ||
	    (r = daemon_relay_user(nc, &rl->relay_uid, &rl->relay_gid)) < 0) {
		reload_free(rl);
		return err_wrap(r, "new configuration refused, the running one stays");
	}
	/* metrics_listen: the new address is opened while the old one still
	 * serves, so a port already taken refuses the reload here.  An address
	 * that overlaps the old one (same port) cannot be had this way. */
	rl->new_listen = !str_eq(nc->metrics_listen, oc->metrics_listen);
	if (rl->new_listen && nc->metrics_listen && (r = httpd_open(d, nc->metrics_listen, &rl->nh)) < 0) {
		if (r == -EADDRINUSE && oc->metrics_listen)
			r = err_wrap(r, "new configuration refused, the running one stays (metrics are still "
					"served on %s; to move to an address on the same port, reload once "
					"without metrics_listen, then with it)", oc->metrics_listen);
		else
			r = err_wrap(r, "new configuration refused, the running one stays");
		reload_free(rl);
		return r;
	}
	*ret = rl;
	return 0;
}

/* Apply RL (no cut runs); frees it.  0, or a negative errno (the running
 * configuration then stays). */
static int reload_commit(struct daemon *d, struct reload *rl)
{
	struct config *nc = rl->nc, *oc = d->cfg;
	struct group **ng = NULL, **old_groups = d->groups;
	struct target **nt = NULL;
	uint32_t n_old = d->n_groups, kept_g = 0, new_g = 0, kept_t = 0, new_t = 0, n_nt = 0;
	int r = 0;

	ng = calloc(nc->groups.n ? nc->groups.n : 1, sizeof(*ng));
	nt = calloc(nc->targets.n ? nc->targets.n : 1, sizeof(*nt));
	if (!ng || !nt) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < nc->groups.n; i++) {
		const struct cfg_group *c = CFG_GROUP(nc, i);
		struct group *g = find_group(old_groups, n_old, c->name);
		if (g && same_sources(g, c)) {
			g->cfg = c;
			g->wal_interval = 0;
			for (uint32_t s = 0; s < g->n_sources; s++) {
				struct pgsrc *p = g->sources[s].pg, *q;
				g->sources[s].cfg = CFG_SOURCE(c, s);
				if (g->sources[s].qemu) /* guest_agent, agent_timeout, full_scan_every */
					qemusrc_reconfig(g->sources[s].qemu, g->sources[s].cfg, c->full_scan_every);
				if (!p)
					continue;
				/* A reference more for the new settings, the old one dropped. */
				if (pgsource_get(d, g->name, g->sources[s].cfg, &q) == 0)
					pgsource_put(q);
				if (!g->wal_interval || g->sources[s].cfg->wal_interval < g->wal_interval)
					g->wal_interval = g->sources[s].cfg->wal_interval;
			}
			kept_g++;
		} else {
			g = calloc(1, sizeof(*g));
			if (!g || (r = group_init(d, g, c)) < 0) {
				if (g) {
					group_free(g);
					free(g);
				}
				r = err_wrap(r ? r : -ENOMEM, "cannot set up group %s", c->name);
				goto fail;
			}
			new_g++;
		}
		g->idx = i;
		ng[i] = g;
	}
	/* Committed from here on. */
	if (rl->new_listen) {
		if (d->httpd)
			log_info("reload: no longer serving metrics on %s", oc->metrics_listen);
		httpd_free(d->httpd);
		d->httpd = rl->nh;
		rl->nh = NULL;
	}
	rl->nc = NULL; /* the daemon's now */
	d->relay_uid = rl->relay_uid;
	d->relay_gid = rl->relay_gid;
	for (uint32_t i = 0; i < n_old; i++) {
		struct group *g = old_groups[i];
		bool kept = false;
		for (uint32_t k = 0; k < nc->groups.n; k++)
			kept |= ng[k] == g;
		if (!kept) {
			log_info("reload: group %s %s", g->name,
				 find_group(ng, (uint32_t)nc->groups.n, g->name) ? "rebuilt (sources changed)"
										 : "removed");
			retire(d, g);
		}
	}
	d->groups = ng;
	d->n_groups = (uint32_t)nc->groups.n;
	d->cfg = nc;
	for (uint32_t i = 0; i < d->n_groups; i++) {
		struct group *g = d->groups[i];
		for (uint32_t s = 0; s < g->n_sources; s++)
			if (g->sources[s].wd < 0 && !g->sources[s].pg)
				g->sources[s].wd = inotify_add_watch(d->inotify_fd, g->sources[s].cfg->disk,
								     IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB);
		int tr = group_arm_timers(d, g);
		if (tr < 0)
			log_error("reload: %s: it is cut only on request", err_msg(tr));
	}
	/* Targets.  A new relay_user restarts the children that run as it. */
	for (uint32_t i = 0; i < nc->targets.n; i++) {
		const struct cfg_target *c = CFG_TARGET(nc, i);
		bool as_relay = c->kind == TARGET_VAULT || strncmp(c->url, "ssh://", 6) == 0;
		struct target *t = NULL;
		for (uint32_t k = 0; k < d->n_targets; k++)
			if (d->targets[k] && strcmp(d->targets[k]->cfg->name, c->name) == 0 &&
			    same_target(d->targets[k]->cfg, c) &&
			    (!as_relay || str_eq(oc->relay_user, nc->relay_user))) {
				t = d->targets[k];
				d->targets[k] = NULL;
			}
		if (t) {
			t->cfg = c;
			remap_target(d, t, old_groups, n_old);
			kept_t++;
		} else {
			t = calloc(1, sizeof(*t));
			if (!t || target_init(d, t, c) < 0) {
				log_error("reload: cannot set up target %s: out of memory", c->name);
				if (t)
					target_free(t);
				free(t);
				continue;
			}
			new_t++;
		}
		t->idx = n_nt;
		nt[n_nt++] = t;
	}
	for (uint32_t k = 0; k < d->n_targets; k++)
		if (d->targets[k]) {
			log_info("reload: target %s removed or changed: disconnecting it", d->targets[k]->cfg->name);
			target_free(d->targets[k]);
			free(d->targets[k]);
		}
	free(d->targets);
	d->targets = nt;
	d->n_targets = n_nt;
	nt = NULL;
	for (uint32_t i = 0; i < d->n_targets; i++)
		if (d->targets[i] && d->targets[i]->state == T_BACKOFF && !d->targets[i]->retry &&
		    !d->targets[i]->wire_up)
			target_start(d->targets[i]);
	{
		struct config **ol = realloc(d->old_cfgs, (d->n_old_cfgs + 1) * sizeof(*ol));
		if (ol) {
			d->old_cfgs = ol;
			d->old_cfgs[d->n_old_cfgs++] = oc; /* retired objects still point into it */
		}
	}
	free(old_groups);
	d->scan_threads = nc->scan_threads ? (unsigned)nc->scan_threads : d->scan_threads;
	daemon_free_retired(d);
	d->reloading = false;
	/* Cuts asked for while the reload waited. */
	for (uint32_t i = 0; i < d->n_groups; i++)
		if (d->groups[i]->want_cut && !d->groups[i]->paused)
			group_request_cut(d->groups[i]);
	epoch_schedule(d); /* and those that waited for a slot */
	log_info("configuration reloaded: %u groups (%u kept, %u new or rebuilt), %u targets (%u kept, "
		 "%u new or changed)", d->n_groups, kept_g, new_g, d->n_targets, kept_t, new_t);
	return 0;
fail:
	for (uint32_t i = 0; ng && i < nc->groups.n; i++)
		if (ng[i] && !find_group(old_groups, n_old, ng[i]->name)) {
			group_free(ng[i]);
			free(ng[i]);
		}
	free(ng);
	free(nt);
	d->reloading = false;
	return r;
}

int daemon_reload(struct daemon *d, void (*done)(void *ctx, int r), void *ctx)
{
	struct reload *rl = NULL;
	struct reload_waiter *w;
	int r;

	/* A reload waits for the running cuts, and no cut starts meanwhile: one
	 * the watchdog gave up on (cut_timeout) may never end (found by review). */
	for (uint32_t i = 0; i < d->n_groups; i++)
		if (epoch_cut_timed_out(d->groups[i]))
			return err_set(EBUSY, "group %s has a cut that ran past cut_timeout and still hangs in a read: "
				       "a reload would wait for it and stop every group's cuts; the configuration in use "
				       "is kept (free the hung read - the disk, the NFS server - or restart basculed)",
				       d->groups[i]->name);
	if ((r = reload_prepare(d, &rl)) < 0)
		return r;
	if (!epoch_cutting(d)) {
		r = reload_commit(d, rl);
		reload_free(rl);
		return r;
	}
	/* A cut runs: the new configuration is applied when it ends (it may
	 * take long: a loop that waited for it would answer nobody meanwhile).
	 * No new cut starts until then.  A second reload replaces the first. */
	if (d->reload) {
		rl->waiters = d->reload->waiters;
		rl->n_waiters = d->reload->n_waiters;
		d->reload->waiters = NULL;
		reload_free(d->reload);
	}
	d->reload = rl;
	d->reloading = true;
	if (done) {
		if (!(w = realloc(rl->waiters, (rl->n_waiters + 1) * sizeof(*w)))) {
			d->reload = NULL;
			d->reloading = false;
			reload_free(rl);
			return -ENOMEM;
		}
		rl->waiters = w;
		rl->waiters[rl->n_waiters++] = (struct reload_waiter){ done, ctx };
	}
	log_info("reload: the new configuration is checked; it applies when the running cut ends");
	return 1;
}

void daemon_reload_resume(struct daemon *d)
{
	struct reload *rl = d->reload;
	int r;

	if (!rl || epoch_cutting(d))
		return;
	d->reload = NULL;
	r = reload_commit(d, rl);
	if (r < 0)
		log_error("reload: %s", err_msg(r));
	for (size_t i = 0; i < rl->n_waiters; i++)
		rl->waiters[i].done(rl->waiters[i].ctx, r);
	reload_free(rl);
}

void daemon_reload_forget(struct daemon *d, void *ctx)
{
	for (size_t i = 0; d->reload && i < d->reload->n_waiters; i++)
		if (d->reload->waiters[i].ctx == ctx)
			d->reload->waiters[i] = d->reload->waiters[--d->reload->n_waiters];
}

void daemon_reload_free(struct daemon *d)
{
	reload_free(d->reload);
	d->reload = NULL;
}
