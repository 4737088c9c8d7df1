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
 * STATE_PREFIX.qemu and its fleecing image at STATE_PREFIX.fleece. */
int qemusrc_new(const struct cfg_source *cfg, const char *state_prefix, struct qemusrc **ret_q);
void qemusrc_free(struct qemusrc *q);

/* Begin the cut of epoch EPOCH, the group being committed at LAST_CUT:
 * freeze through the guest agent if configured (always thawed before this
 * returns), arm the next bitmap and the view atomically, export the view and
 * find what to read.  *RET_SIZE is the guest-visible size; *RET_FULL is true
 * when every block must be read (first cut, QEMU restarted, bitmap missing
 * or inconsistent, our state lost); *RET_FROZEN when the agent froze the
 * guest's filesystems (else the epoch is crash-consistent only). */
int qemusrc_cut_begin(struct qemusrc *q, uint64_t epoch, uint64_t last_cut, uint64_t *ret_size,
		      bool *ret_full, bool *ret_frozen);
/* Blocks [FIRST, FIRST + N) of the view: WANT[i] = 1 if block FIRST+i changed
 * since the last cut (or everything, in a full cut); ZERO[i] = 1 if it
 * reads as zeros without a read. */
void qemusrc_changed(const struct qemusrc *q, uint64_t first, uint32_t n, uint8_t *want, uint8_t *zero);
/* The first block at or after FIRST that qemusrc_changed would want
 * (UINT64_MAX: none): a binary search over the cut's extents. */
uint64_t qemusrc_next_changed(const struct qemusrc *q, uint64_t first);
/* Read LEN bytes at OFF of the view (thread-safe).  0 or a negative errno. */
int qemusrc_pread(struct qemusrc *q, void *buf, size_t len, uint64_t off);
/* End the cut: release the view; if COMMITTED, the frozen bitmap is dropped
 * and EPOCH recorded as the one the live bitmap counts from; otherwise it is
 * merged back into the live one (nothing forgotten). */
int qemusrc_cut_end(struct qemusrc *q, uint64_t epoch, bool committed);
/* Bytes read from the view since the source was made (status, tests). */
uint64_t qemusrc_read_bytes(const struct qemusrc *q);
