/* subproc.h - run a program to completion within a deadline: the one way
 * Bascule runs a command (drill steps and checks, freeze/thaw hooks).
 *
 * A command is an argv, executed as given: no shell, nothing quoted, nothing
 * cut.  A command written as a string (a runbook's stop:, a group's freeze:)
 * runs as SUBPROC_SH(STRING), that is `/bin/sh -c STRING` with STRING one
 * argument, whatever its length.  The child gets stdin from /dev/null (or a descriptor given), the
 * caller's environment with ENV added, default signal dispositions and an
 * empty signal mask (a daemon's blocked signals are not inherited), and a
 * process group of its own, which is killed whole (SIGKILL) at the deadline.
 * stdout and stderr are captured into a bounded buffer (the last OUTPUT_MAX
 * bytes) or inherited.
 *
 * Blocking, and safe from any thread: posix_spawn (no fork of a threaded
 * process), and the wait is a poll() on a pidfd and the output pipe, with the
 * deadline as its timeout: no SIGCHLD handler, no sleeping loop.  The child
 * is reaped before subproc_run returns. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The argv of `/bin/sh -c CMD` (a compound literal: valid in the enclosing block). */
#define SUBPROC_SH(cmd) ((const char *const[]){ "/bin/sh", "-c", (cmd), NULL })

/* The most output a caller may ask to keep. */
#define SUBPROC_OUTPUT_LIMIT (16u << 20)

struct subproc_opts {
	const char *const *env; /* "NAME=value" added (replacing NAME if set); NULL-terminated; may be NULL */
	uint64_t timeout;       /* usec; 0 = no deadline */
	size_t output_max;      /* keep the last OUTPUT_MAX bytes of stdout and stderr (merged);
				 * 0: the child writes to the caller's stdout and stderr */
	int stdin_fd;           /* > 0: the child's stdin (a descriptor of the caller's); 0: /dev/null */
	int cwd_fd;             /* > 0: the child starts in this directory; 0: the caller's */
};

struct subproc_result {
	int exit_status;  /* 0..255 if it exited; -1 if a signal ended it or the deadline killed it */
	int term_signal;  /* the signal that ended it (SIGKILL after the deadline), else 0 */
	bool timed_out;   /* the deadline passed: the process group was killed */
	char *output;     /* the captured output, NUL-terminated (NULL: none captured) */
	size_t output_len;
	bool output_cut;  /* earlier output was dropped to keep within the bound */
};

/* Run ARGV[0] (searched in PATH when it has no '/') with ARGV under O.
 * Returns 0 when the program ran, whatever its status: *RET holds the
 * status and output (free with subproc_result_free).  A negative errno when it
 * could not be started (ARGV[0] not found or not executable: -ENOENT,
 * -EACCES; no memory, no pipe) with a sentence naming ARGV[0]; *RET is then
 * untouched. */
int subproc_run(const char *const *argv, const struct subproc_opts *o, struct subproc_result *ret);
/* Start ARGV under O (env, stdin, cwd; no deadline, nothing captured) with
 * its stdout on a pipe the caller reads (*RET_FD, blocking, O_CLOEXEC) and
 * its stderr on ERR_FD (-1: the caller's): for output too large to hold,
 * such as a dump.  The caller reads to the end, closes *RET_FD and reaps
 * *RET_PID with subproc_wait.  A child still writing when the caller dies
 * gets SIGPIPE.  Errors as subproc_run. */
int subproc_spawn_reader(const char *const *argv, const struct subproc_opts *o, int err_fd, pid_t *ret_pid,
			 int *ret_fd);
/* Reap PID: *RET's exit_status and term_signal (no output). */
int subproc_wait(pid_t pid, struct subproc_result *ret);
/* Frees the output; accepts a zeroed or already freed result. */
void subproc_result_free(struct subproc_result *r);
/* Append N bytes of output to R, keeping the last MAX bytes (R's buffer is
 * allocated on first use): for output that arrives another way (an SSH
 * channel).  0 or -ENOMEM (R unchanged). */
int subproc_output_add(struct subproc_result *r, size_t max, const void *p, size_t n);
/* The last non-empty line of R's output ("" if none), trailing blanks and
 * newlines removed from the output in place: for one-line answers (JSON)
 * and messages.  "(no output)" instead of "" from subproc_said. */
const char *subproc_last_line(struct subproc_result *r);
const char *subproc_said(struct subproc_result *r);

/* ARGV as one string that a POSIX shell splits back into exactly ARGV (each
 * word in single quotes): what an SSH exec channel takes.  Malloc'd; NULL
 * when out of memory.  Nothing is cut. */
char *subproc_quote_argv(const char *const *argv);
/* The words a POSIX shell would split S into, for the quoting
 * subproc_quote_argv writes and plain words: blanks separate, '...' and a
 * backslash quote; double quotes, $, `, globs and operators are refused
 * (-EINVAL: not a plain command line).  *RET_ARGV is a malloc'd,
 * NULL-terminated array of malloc'd words (free with subproc_words_free). */
int subproc_split_words(const char *s, char ***ret_argv, size_t *ret_n);
void subproc_words_free(char **argv);
