/* err.h - one error convention for all of Bascule.
 *
 * Library functions return 0 (or a count) on success and a negative errno on
 * failure.  Where a caller needs more than strerror() (a file and line, a
 * target name), the function records a sentence with err_set() before
 * returning; programs print err_msg() once, at the boundary. */
#pragma once
#include <errno.h>
#include <stdarg.h>

/* Exit codes of every Bascule program (documented in docs/operations.md and
 * in the man pages).  Stable: monitoring and cron jobs depend on them. */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,      /* runtime failure: I/O error, target error */
	EXIT_USAGE = 2,     /* bad command line */
	EXIT_CONFIG = 3,    /* bad configuration file */
	EXIT_KEY = 4,       /* missing, unsafe or wrong key */
	EXIT_INTEGRITY = 5, /* tampered or corrupt data, digest mismatch */
	EXIT_TIMEOUT = 6,   /* a wait (sync --wait) ran out of time */
	EXIT_NOSPACE = 7,   /* no space left where data had to be written */
	EXIT_NODAEMON = 8,  /* the daemon's control socket cannot be reached */
	EXIT_BUSY = 9,      /* another instance holds the lock */
};

/* The errno that means "the daemon's control socket cannot be reached"
 * (lib/ctl.c), and only that: exit 8.  A refused TCP connection (an SSH
 * host, a vault) is an ordinary failure (exit 1). */
#define ERR_NODAEMON ESRCH

/* Record a human sentence for the error -code and return -code.  The message
 * is thread-local and replaced by the next err_set(). */
int err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "PREFIX: " (context added on the way up). */
int err_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Keep the sentence recorded for FROM but file it under errno TO (a caller
 * that knows better what kind of error it is); returns -TO. */
int err_recode(int from, int to);
/* The sentence recorded for the latest error of this thread if that error
 * was CODE, else strerror(-code).  A sentence lasts until the next
 * err_set()/err_wrap()/err_clear() of the thread: an error handled and
 * forgotten (ENOENT meaning "none yet", a retry that then succeeded) must
 * be cleared where it is handled, or a later failure with the same errno
 * and no sentence of its own would be reported with the old one. */
const char *err_msg(int code);
/* Forget the recorded sentence: the error it described was handled here,
 * or a new piece of work begins on this thread. */
void err_clear(void);
/* Map a negative errno to one of the EXIT_* codes. */
int err_exit_code(int code);
