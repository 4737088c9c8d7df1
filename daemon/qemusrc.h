/* qemusrc.h - a disk source read from a running QEMU (docs/qemu.md): a
 * persistent dirty bitmap on the guest's block node tells which blocks
 * changed; each cut starts a new bitmap and a point-in-time view of the disk
 * in one QMP transaction, and the dirty blocks are read from that view
 * through QEMU's NBD server with libnbd.  Everything of ours inside QEMU is
 * named bascule-*, and what a killed daemon left is removed at the next cut. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qemusrc;
struct cfg_source;

/* A source for CFG (cfg->qemu set), keeping its small state file at
 * STATE_PREFIX.qemu and its fleecing image at STATE_PREFIX.fleece; the
 * bitmap is trusted for VERIFY_EVERY usec after a full read (the group's
 * full_scan_every), then a verifying full read counts what it missed. */
int qemusrc_new(const struct cfg_source *cfg, const char *state_prefix, uint64_t verify_every,
		struct qemusrc **ret_q);
void qemusrc_free(struct qemusrc *q);
/* The group's configuration reloaded (same qmp and node; no cut running). */
void qemusrc_reconfig(struct qemusrc *q, const struct cfg_source *cfg, uint64_t verify_every);

/* Sources A and B are disks of the same guest (the same QMP socket). */
bool qemusrc_same_guest(const struct qemusrc *a, const struct qemusrc *b);
/* Begin the cut of epoch EPOCH of the N disks QS of one guest, the group
 * being committed at LAST_CUT: one freeze through the guest agent if one is
 * configured (always thawed before this returns), the next bitmap and the
 * view of every disk armed in one transaction (one point in time across
 * them), the views exported and what to read found: every block on the
 * first cut, after QEMU restarted, a bitmap missing or inconsistent, our
 * state lost, or in a verifying read.  RET_SIZES[i] is disk i's
 * guest-visible size; *RET_FROZEN when the agent froze the guest's
 * filesystems (else the epoch is crash-consistent only).  On failure every
 * disk's cut is ended. */
int qemusrc_cut_begin(struct qemusrc *const *qs, unsigned n, uint64_t epoch, uint64_t last_cut,
		      uint64_t *ret_sizes, bool *ret_frozen);
/* Blocks [FIRST, FIRST + N) of the view: WANT[i] = 1 if block FIRST+i changed
 * since the last cut (or everything, in a full cut); ZERO[i] = 1 if it
 * reads as zeros without a read. */
void qemusrc_changed(const struct qemusrc *q, uint64_t first, uint32_t n, uint8_t *want, uint8_t *zero);
/* The first block at or after FIRST that qemusrc_changed would want
 * (UINT64_MAX: none): a binary search over the cut's extents. */
uint64_t qemusrc_next_changed(const struct qemusrc *q, uint64_t first);
/* Read LEN bytes at OFF of the view (thread-safe).  0 or a negative errno. */
int qemusrc_pread(struct qemusrc *q, void *buf, size_t len, uint64_t off);
/* Whether the dirty bitmap marks any of blocks [FIRST, FIRST + N) (a full
 * read without a bitmap: every block).  In a verifying read, the bitmap's
 * own extents, not the full read's. */
bool qemusrc_marked(const struct qemusrc *q, uint64_t first, uint32_t n);
/* Block BLOCK read differs from what the map held (thread-safe): in a
 * verifying read, counted as a missed write if the bitmap did not mark it. */
void qemusrc_block_changed(struct qemusrc *q, uint64_t block);
/* End the cut: release the view; if COMMITTED, the frozen bitmap is dropped
 * and EPOCH recorded as the one the live bitmap counts from; otherwise it is
 * merged back into the live one (nothing forgotten).  SCANNED: the cut read
 * all it had to (also when it found nothing to commit). */
int qemusrc_cut_end(struct qemusrc *q, uint64_t epoch, bool committed, bool scanned);
/* Bytes read from the view since the source was made (status, tests). */
uint64_t qemusrc_read_bytes(const struct qemusrc *q);

/* Verifying full reads (status, metrics). */
struct qemusrc_stats {
	uint64_t verify_reads;   /* done since the daemon started */
	uint64_t missed_writes;  /* blocks they found changed that the bitmap had not recorded */
	uint64_t missed_cuts;    /* verifying reads that found any */
	uint64_t verified;       /* unix usec of the last full read committed (0: none known) */
};
void qemusrc_get_stats(const struct qemusrc *q, struct qemusrc_stats *ret);
