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
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_sources(const struct group *g, const struct cfg_group *c)
{
	if (g->n_sources != c->sources.n)
		return false;
	for (uint32_t s = 0; s < g->n_sources; s++)
		if (strcmp(g->sources[s].cfg->name, CFG_SOURCE(c, s)->name) ||
		    strcmp(g->sources[s].cfg->disk, CFG_SOURCE(c, s)->disk))
			return false;
	return true;
}

static bool same_target(const struct cfg_target *a, const struct cfg_target *b)
{
	return str_eq(a->type, b->type) && str_eq(a->url, b->url) &&
	       str_eq(a->remote_command, b->remote_command) && str_eq(a->identity, b->identity) &&
	       str_eq(a->known_hosts, b->known_hosts) && a->bandwidth == b->bandwidth &&
	       a->keep_epochs == b->keep_epochs && a->keep_time == b->keep_time &&
	       a->max_in_flight == b->max_in_flight && str_eq(a->window, b->window);
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
				if (strcmp(og->sources[os].cfg->name, g->sources[s].cfg->name) == 0)
					ng[k].sent[s] = o->sent[os];
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

int daemon_reload(struct daemon *d)
{
	struct config *nc = NULL, *oc = d->cfg;
	struct group **ng = NULL, **old_groups = d->groups;
	struct target **nt = NULL;
	struct httpd *nh = NULL;
	bool new_listen;
	uint32_t n_old = d->n_groups, kept_g = 0, new_g = 0, kept_t = 0, new_t = 0;
	int r;

	if ((r = config_load(oc->file, &nc)) < 0)
		return err_wrap(r, "new configuration refused, the running one stays");
	if (!str_eq(nc->state_dir, oc->state_dir) || !str_eq(nc->key, oc->key) ||
	    !str_eq(nc->control_socket, oc->control_socket)) {
		config_free(nc);
		return err_set(EINVAL, "new configuration refused, the running one stays: state_dir, key "
				       "and control_socket change only with a restart of basculed");
	}
	if ((nc->control_group && (r = creds_group_gid(nc->control_group, &d->control_gid)) < 0) ||
	    (nc->monitor_group && (r = creds_group_gid(nc->monitor_group, &d->monitor_gid)) < 0)) {
		config_free(nc);
		return err_wrap(r, "new configuration refused, the running one stays");
	}
	/* metrics_listen: the new address is opened while the old one still
	 * serves, so a port already taken refuses the reload here.  An address
	 * that overlaps the old one (same port) cannot be had this way. */
	new_listen = !str_eq(nc->metrics_listen, oc->metrics_listen);
	if (new_listen && nc->metrics_listen && (r = httpd_open(d, nc->metrics_listen, &nh)) < 0) {
		if (r == -EADDRINUSE && oc->metrics_listen)
			r = err_wrap(r, "new configuration refused, the running one stays (metrics are still "
					"served on %s; to move to an address on the same port, reload once "
					"without metrics_listen, then with it)", oc->metrics_listen);
		else
			r = err_wrap(r, "new configuration refused, the running one stays");
		config_free(nc);
		return r;
	}
	/* Let running cuts finish and be queued; start none until the end. */
	d->reloading = true;
	epoch_finish_cuts(d);

	ng = calloc(nc->groups.n, sizeof(*ng));
	nt = calloc(nc->targets.n, sizeof(*nt));
	if (!ng || !nt) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < nc->groups.n; i++) {
		const struct cfg_group *c = CFG_GROUP(nc, i);
		struct group *g = find_group(old_groups, n_old, c->name);
		if (g && same_sources(g, c)) {
			g->cfg = c;
			for (uint32_t s = 0; s < g->n_sources; s++)
				g->sources[s].cfg = CFG_SOURCE(c, s);
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
	if (new_listen) {
		if (d->httpd)
			log_info("reload: no longer serving metrics on %s", oc->metrics_listen);
		httpd_free(d->httpd);
		d->httpd = nh;
		nh = NULL;
	}
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
			if (g->sources[s].wd < 0)
				g->sources[s].wd = inotify_add_watch(d->inotify_fd, g->sources[s].cfg->disk,
								     IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB);
		if (!g->timer)
			sd_event_add_time_relative(d->ev, &g->timer, CLOCK_MONOTONIC, 0, 10000,
						   group_on_timer, g);
	}
	/* Targets. */
	for (uint32_t i = 0; i < nc->targets.n; i++) {
		const struct cfg_target *c = CFG_TARGET(nc, i);
		struct target *t = NULL;
		for (uint32_t k = 0; k < d->n_targets; k++)
			if (d->targets[k] && strcmp(d->targets[k]->cfg->name, c->name) == 0 &&
			    same_target(d->targets[k]->cfg, c)) {
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
				log_error("reload: cannot set up target %s", c->name);
				free(t);
				continue;
			}
			new_t++;
		}
		t->idx = i;
		nt[i] = t;
	}
	for (uint32_t k = 0; k < d->n_targets; k++)
		if (d->targets[k]) {
			log_info("reload: target %s removed or changed: disconnecting it", d->targets[k]->cfg->name);
			target_free(d->targets[k]);
			free(d->targets[k]);
		}
	free(d->targets);
	d->targets = nt;
	d->n_targets = (uint32_t)nc->targets.n;
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
	log_info("configuration reloaded: %u groups (%u kept, %u new or rebuilt), %u targets (%u kept, "
		 "%u new or changed)", d->n_groups, kept_g, new_g, d->n_targets, kept_t, new_t);
	return 0;
fail:
	httpd_free(nh);
	for (uint32_t i = 0; ng && i < nc->groups.n; i++)
		if (ng[i] && !find_group(old_groups, n_old, ng[i]->name)) {
			group_free(ng[i]);
			free(ng[i]);
		}
	free(ng);
	free(nt);
	config_free(nc);
	d->reloading = false;
	return r;
}
