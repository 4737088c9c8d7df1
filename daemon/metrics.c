/* metrics.c - the daemon's state for monitoring: the Prometheus text
 * exposition (the `metrics` verb and GET /metrics) and the words and
 * figures the status shares with it (a target's state name, its lag). */
#include "daemon.h"
#include "spool.h"
#include "units.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a target is doing, for people and monitoring. */
const char *target_state_name(const struct target *t)
{
	struct daemon *d = t->d;

	switch (t->state) {
	case T_READY:
		for (uint32_t k = 0; k < d->n_groups; k++)
			if (t->groups[k].acked < d->groups[k]->last_cut)
				return "catching-up";
		return "connected";
	case T_HANDSHAKE:
		return "connecting";
	default:
		return t->last_error[0] ? "error" : "offline";
	}
}

double target_lag_seconds(const struct target *t, uint32_t k, uint64_t now)
{
	/* The age of the state the target holds: how much recent data it would
	 * lose now (the current RPO).  -1: no epoch yet. */
	uint64_t lag = target_lag_usec(t, k, now);

	return lag == UINT64_MAX ? -1 : (double)lag / 1e6;
}

/* Prometheus text exposition format 0.0.4.  Counts print as integers;
 * measurements rounded to what they mean (units_round). */
static void m_head(struct wbuf *b, const char *name, const char *type, const char *help)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	wbuf_put_bytes(b, line, (size_t)n);
}

static void m_int(struct wbuf *b, const char *name, const char *labels, uint64_t v)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s{%s} %" PRIu64 "\n", name, labels, v);
	wbuf_put_bytes(b, line, (size_t)n);
}

static void m_val(struct wbuf *b, const char *name, const char *labels, double v, enum units_measure kind)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s{%s} %.*g\n", name, labels, UNITS_REAL_DIGITS,
			 units_round(v, kind));
	wbuf_put_bytes(b, line, (size_t)n);
}

char *metrics_text(struct daemon *d)
{
	struct wbuf b;
	char l[300];
	uint64_t now = clock_now_usec();
	char *out;

	wbuf_init(&b, 16 << 20);
	m_head(&b, "bascule_group_last_epoch", "gauge", "Number of the last epoch cut.");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_int(&b, "bascule_group_last_epoch", l, d->groups[i]->last_cut);
	}
	m_head(&b, "bascule_group_epochs_cut_total", "counter", "Epochs cut since the daemon started.");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_int(&b, "bascule_group_epochs_cut_total", l, d->groups[i]->epochs_cut);
	}
	m_head(&b, "bascule_group_consistent", "gauge", "1 if the last epoch is point-in-time, 0 if fuzzy.");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_int(&b, "bascule_group_consistent", l, d->groups[i]->consistent);
	}
	m_head(&b, "bascule_group_scan_duration_seconds", "gauge", "Duration of the last scan.");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_val(&b, "bascule_group_scan_duration_seconds", l, (double)d->groups[i]->last_scan_usec / 1e6,
		      UNITS_SECONDS);
	}
	m_head(&b, "bascule_target_info", "gauge", "Always 1: the target's type (replica or vault).");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\",type=\"%s\"", d->targets[i]->cfg->name,
			 d->targets[i]->cfg->kind == TARGET_VAULT ? "vault" : "replica");
		m_int(&b, "bascule_target_info", l, 1);
	}
	m_head(&b, "bascule_target_interval_seconds", "gauge",
	       "Configured interval between two epochs shipped to the target (vault; 0: every epoch).");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_val(&b, "bascule_target_interval_seconds", l, (double)d->targets[i]->cfg->interval / 1e6,
		      UNITS_SECONDS);
	}
	m_head(&b, "bascule_target_lag_seconds", "gauge",
	       "Age of the newest epoch the target holds: the current RPO (-1: none yet).");
	for (uint32_t i = 0; i < d->n_targets; i++)
		for (uint32_t k = 0; k < d->n_groups; k++) {
			snprintf(l, sizeof(l), "target=\"%s\",group=\"%s\"", d->targets[i]->cfg->name,
				 d->groups[k]->name);
			m_val(&b, "bascule_target_lag_seconds", l, target_lag_seconds(d->targets[i], k, now), UNITS_SECONDS);
		}
	m_head(&b, "bascule_target_acked_epoch", "gauge", "Last epoch the target applied durably.");
	for (uint32_t i = 0; i < d->n_targets; i++)
		for (uint32_t k = 0; k < d->n_groups; k++) {
			snprintf(l, sizeof(l), "target=\"%s\",group=\"%s\"", d->targets[i]->cfg->name,
				 d->groups[k]->name);
			m_int(&b, "bascule_target_acked_epoch", l, d->targets[i]->groups[k].acked);
		}
	m_head(&b, "bascule_target_up", "gauge", "1 if the target is connected.");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_up", l, d->targets[i]->state == T_READY);
	}
	m_head(&b, "bascule_target_sent_bytes_total", "counter", "Bytes sent to the target (on the wire).");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_sent_bytes_total", l, d->targets[i]->bytes_sent);
	}
	m_head(&b, "bascule_target_block_bytes_total", "counter", "Block data sent, before compression.");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_block_bytes_total", l, d->targets[i]->raw_sent);
	}
	m_head(&b, "bascule_target_pending_bytes", "gauge", "Block data queued for the target (upper bound).");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_pending_bytes", l, target_pending(d->targets[i]));
	}
	m_head(&b, "bascule_target_throughput_bytes_per_second", "gauge", "Bytes sent per second, last seconds.");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_val(&b, "bascule_target_throughput_bytes_per_second", l, d->targets[i]->rate, UNITS_ESTIMATE);
	}
	m_head(&b, "bascule_target_errors_total", "counter", "Errors (disconnections, refusals) of the target.");
	for (uint32_t i = 0; i < d->n_targets; i++) {
		snprintf(l, sizeof(l), "target=\"%s\"", d->targets[i]->cfg->name);
		m_int(&b, "bascule_target_errors_total", l, d->targets[i]->errors);
	}
	wbuf_put_u8(&b, 0);
	out = b.p ? strdup((char *)b.p) : NULL;
	wbuf_free(&b);
	return out;
}
