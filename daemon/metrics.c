/* metrics.c - the daemon's state for monitoring: the Prometheus text
 * exposition (the `metrics` verb and GET /metrics) and the words and
 * figures the status shares with it (a target's state name, its lag). */
#include "daemon.h"
#include "pgsource.h"
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

/* LABELS "" prints none (a series of the daemon as a whole). */
static void m_int(struct wbuf *b, const char *name, const char *labels, uint64_t v)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels,
			 *labels ? "}" : "", v);
	wbuf_put_bytes(b, line, (size_t)n);
}

static void m_val(struct wbuf *b, const char *name, const char *labels, double v, enum units_measure kind)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s{%s} %.*g\n", name, labels, UNITS_REAL_DIGITS,
			 units_round(v, kind));
	wbuf_put_bytes(b, line, (size_t)n);
}

/* Postgres sources: one series per source, and per replica target. */
static void pg_metrics(struct wbuf *b, struct daemon *d, uint64_t now)
{
	static const struct {
		const char *name, *type, *help;
	} src[] = {
		{ "bascule_pg_up", "gauge", "1 if the WAL of the postgres source streams." },
		{ "bascule_pg_received_lsn", "gauge", "End of the WAL received from the primary (LSN as a number)." },
		{ "bascule_pg_durable_lsn", "gauge", "End of the WAL durable in the spool." },
		{ "bascule_pg_flushed_lsn", "gauge", "WAL reported flushed to the primary (the slot's position)." },
		{ "bascule_pg_primary_lsn", "gauge", "The primary's WAL end, as last learned." },
		{ "bascule_pg_slot_retained_bytes", "gauge", "WAL the slot holds on the primary (pg_wal), an estimate." },
		{ "bascule_pg_spool_bytes", "gauge", "WAL held in the spool (state_dir)." },
		{ "bascule_pg_base_backup_time_seconds", "gauge", "When the newest base backup completed (0: none)." },
		{ "bascule_pg_base_backups_total", "counter", "Base backups taken since the daemon started." },
	};
	static const struct {
		const char *name, *help;
	} tgt[] = {
		{ "bascule_pg_target_acked_lsn", "End of the WAL the target holds durably (-1: no copy to go on from)." },
		{ "bascule_pg_target_lag_bytes", "WAL received and not yet acknowledged by the target (-1: no copy)." },
		{ "bascule_pg_target_lag_seconds", "Age of the oldest WAL the target lacks (-1: no copy)." },
		{ "bascule_pg_target_needs_base", "1 if the target fell behind the spool or holds no base: it gets one." },
	};
	char l[400];

	for (size_t m = 0; m < sizeof(src) / sizeof(src[0]); m++) {
		m_head(b, src[m].name, src[m].type, src[m].help);
		for (uint32_t k = 0; k < d->n_groups; k++)
			for (uint32_t s = 0; s < d->groups[k]->n_sources; s++) {
				struct pgsrc *p = d->groups[k]->sources[s].pg;
				uint64_t v = 0;
				if (!p)
					continue;
				switch (m) {
				case 0: v = p->state == PGS_STREAMING; break;
				case 1: v = p->received; break;
				case 2: v = walspool_durable(&p->wal); break;
				case 3: v = p->reported; break;
				case 4: v = p->server_end; break;
				case 5: v = p->server_end > p->reported && p->reported ? p->server_end - p->reported : 0; break;
				case 6: v = walspool_bytes(&p->wal); break;
				case 7: v = p->bases.have ? p->bases.newest.time / 1000000 : 0; break;
				case 8: v = p->bases_taken; break;
				}
				snprintf(l, sizeof(l), "group=\"%s\",source=\"%s\"", d->groups[k]->name, p->name);
				m_int(b, src[m].name, l, v);
			}
	}
	for (size_t m = 0; m < sizeof(tgt) / sizeof(tgt[0]); m++) {
		m_head(b, tgt[m].name, "gauge", tgt[m].help);
		for (uint32_t i = 0; i < d->n_targets; i++) {
			struct target *t = d->targets[i];
			for (uint32_t k = 0; k < d->n_groups; k++)
				for (uint32_t s = 0; s < d->groups[k]->n_sources; s++) {
					struct pgsrc *p = d->groups[k]->sources[s].pg;
					const struct tpg *tp = &t->groups[k].pg[s];
					bool valid, behind;
					double v = 0;
					if (!p)
						continue;
					valid = tp->known && tp->acked_system == p->system_id && tp->acked_tli == p->tli &&
						tp->acked_lsn;
					behind = valid && tp->acked_lsn < walspool_start(&p->wal);
					switch (m) {
					case 0: v = valid ? (double)tp->acked_lsn : -1; break;
					case 1: v = !valid ? -1 : p->received > tp->acked_lsn ? (double)(p->received - tp->acked_lsn) : 0; break;
					case 2: v = valid ? pgsource_lag_seconds(p, tp->acked_lsn, now) : -1; break;
					case 3: v = tp->needs_base || behind; break;
					}
					snprintf(l, sizeof(l), "target=\"%s\",group=\"%s\",source=\"%s\"", t->cfg->name,
						 d->groups[k]->name, p->name);
					if (m == 2)
						m_val(b, tgt[m].name, l, v, UNITS_SECONDS);
					else {
						char line[512];
						int n = snprintf(line, sizeof(line), "%s{%s} %.0f\n", tgt[m].name, l, v);
						wbuf_put_bytes(b, line, (size_t)n);
					}
				}
		}
	}
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
	m_head(&b, "bascule_group_cut_waiting", "gauge",
	       "1 if a cut of the group is due but waits for a slot (max_concurrent_cuts).");
	for (uint32_t i = 0; i < d->n_groups; i++) {
		snprintf(l, sizeof(l), "group=\"%s\"", d->groups[i]->name);
		m_int(&b, "bascule_group_cut_waiting", l, d->groups[i]->cut_waiting);
	}
	m_head(&b, "bascule_qemu_missed_writes_total", "counter",
	       "Blocks of a QEMU source that a verifying full read found changed and its dirty bitmap had not "
	       "recorded, since the daemon started (docs/qemu.md).");
	for (uint32_t i = 0; i < d->n_groups; i++)
		for (uint32_t s = 0; s < d->groups[i]->n_sources; s++)
			if (d->groups[i]->sources[s].qemu) {
				snprintf(l, sizeof(l), "group=\"%s\",source=\"%s\"", d->groups[i]->name,
					 d->groups[i]->sources[s].cfg->name);
				m_int(&b, "bascule_qemu_missed_writes_total", l,
				      d->groups[i]->sources[s].qstats.missed_writes);
			}
	m_head(&b, "bascule_cuts_running", "gauge", "Cuts reading disks now, all groups together.");
	m_int(&b, "bascule_cuts_running", "", epoch_cuts_running(d));
	m_head(&b, "bascule_cuts_waiting", "gauge", "Groups whose cut waits for a slot.");
	m_int(&b, "bascule_cuts_waiting", "", epoch_cuts_waiting(d));
	m_head(&b, "bascule_cuts_max_concurrent", "gauge", "The max_concurrent_cuts setting.");
	m_int(&b, "bascule_cuts_max_concurrent", "", d->cfg->max_concurrent_cuts);
	m_head(&b, "bascule_cuts_waited_total", "counter", "Cuts that had to wait for a slot since the start.");
	m_int(&b, "bascule_cuts_waited_total", "", d->cuts_waited);
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
	pg_metrics(&b, d, now);
	wbuf_put_u8(&b, 0);
	out = b.p ? strdup((char *)b.p) : NULL;
	wbuf_free(&b);
	return out;
}
