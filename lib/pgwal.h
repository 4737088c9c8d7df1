/* pgwal.h - PostgreSQL's WAL positions and file names, as the server and
 * pg_receivewal spell them (access/xlog_internal.h): an LSN is a byte
 * position in the WAL, written "X/Y" (high and low 32 bits in hex); the WAL
 * is cut into segments of a power-of-two size (16 MiB by default) named
 * TTTTTTTTXXXXXXXXYYYYYYYY (timeline, then the segment number split at
 * 2^32 bytes of WAL); a timeline's history is TTTTTTTT.history. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGWAL_LSN_LEN 18       /* "FFFFFFFF/FFFFFFFF" and its NUL */
#define PGWAL_SEG_NAME_LEN 25  /* 24 hex digits and the NUL */
#define PGWAL_HISTORY_NAME_LEN 17 /* "TTTTTTTT.history" and the NUL */
#define PGWAL_SEG_MIN (1u << 20)
#define PGWAL_SEG_MAX (1u << 30)

/* Parse "X/Y" (1 to 8 hex digits each, nothing else); -EINVAL otherwise,
 * *RET untouched. */
int pgwal_lsn_parse(const char *s, uint64_t *ret);
/* Format LSN into BUF (at least PGWAL_LSN_LEN bytes); returns BUF. */
char *pgwal_lsn_format(uint64_t lsn, char *buf);
/* A WAL segment size PostgreSQL allows (a power of two, 1 MiB to 1 GiB). */
bool pgwal_segsize_ok(uint64_t segsize);
/* The segment holding LSN, and where a segment starts. */
static inline uint64_t pgwal_segno(uint64_t lsn, uint32_t segsize) { return lsn / segsize; }
static inline uint64_t pgwal_seg_start(uint64_t lsn, uint32_t segsize) { return lsn - lsn % segsize; }
/* NAME (PGWAL_SEG_NAME_LEN bytes) of segment SEGNO of timeline TLI. */
void pgwal_seg_name(char *name, uint32_t tli, uint64_t segno, uint32_t segsize);
/* Parse a segment file name, exactly 24 upper-case hex digits; -EINVAL if
 * NAME is not one (or names a segment that cannot exist at SEGSIZE). */
int pgwal_seg_parse(const char *name, uint32_t segsize, uint32_t *ret_tli, uint64_t *ret_segno);
/* NAME (PGWAL_HISTORY_NAME_LEN bytes) of timeline TLI's history file. */
void pgwal_history_name(char *name, uint32_t tli);
/* Whether NAME is a history file's (TTTTTTTT.history, upper-case hex,
 * timeline above 0): its timeline in *RET_TLI. */
bool pgwal_history_file(const char *name, uint32_t *ret_tli);
/* A replication slot name PostgreSQL accepts: 1 to 63 of [a-z0-9_]. */
bool pgwal_slot_name_ok(const char *name);

/* One line of a timeline history file: timeline TLI ended at END (where its
 * child begins), as PostgreSQL writes "TLI<tab>X/Y<tab>reason". */
struct pgwal_switch {
	uint32_t tli;
	uint64_t end;
};
#define PGWAL_HISTORY_MAX (64u << 10) /* the largest history file read */
/* The ancestors of timeline TLI from its history file TEXT (LEN bytes),
 * oldest first, at most MAX of them (*RET_N).  Blank lines and lines
 * starting with '#' are skipped.  -EINVAL unless every other line is
 * "TLI<tab>X/Y[<tab>reason]" with timelines increasing and below TLI and
 * LSNs not decreasing; RET untouched then. */
int pgwal_history_parse(const char *text, size_t len, uint32_t tli, struct pgwal_switch *ret,
			size_t max, size_t *ret_n);
/* From a backup_manifest (JSON, LEN bytes): the WAL a base backup needs,
 * the first WAL-Ranges entry's Start-LSN and timeline and the last one's
 * End-LSN and timeline.  -EINVAL if it is not a manifest with such ranges;
 * outputs untouched then. */
int pgwal_manifest_range(const char *json, size_t len, uint64_t *ret_start, uint32_t *ret_start_tli,
			 uint64_t *ret_end, uint32_t *ret_end_tli);
