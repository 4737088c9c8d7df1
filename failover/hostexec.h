/* hostexec.h - run a shell command on a runbook host: locally (fork + sh -c,
 * in its own process group) or over SSH (libssh2 exec channel, strict host
 * key checking against the host's known_hosts, key authentication).
 * Blocking; safe to call from several threads at once (one SSH session per
 * call). */
#pragma once
#include "runbook.h"
#include <stdbool.h>
#include <stdint.h>

#define RUN_OUTPUT_MAX 65536

struct run_result {
	int exit_status;      /* 0..255, or -1 if it did not exit (signal, timeout, lost) */
	bool timed_out;
	char output[RUN_OUTPUT_MAX]; /* stdout and stderr, the last RUN_OUTPUT_MAX bytes */
	size_t output_len;
};

/* Call once before any thread runs commands. */
int hostexec_init(void);
void hostexec_done(void);
/* Run CMD on H with ENV ("NAME=value" strings, NULL-terminated; may be NULL)
 * within TIMEOUT (usec).  Returns 0 when the command ran (see RES for its
 * status), or a negative errno when it could not be started or the host
 * could not be reached (message set). */
int host_run(const struct rb_host *h, const char *cmd, const char *const *env, uint64_t timeout,
	     struct run_result *res);
/* The last non-empty line of RES's output ("" if there is none), for
 * messages and one-line answers; trims RES's output in place. */
const char *run_last_line(struct run_result *res);
/* The same, or "(no output)" when there is none: never an empty message. */
const char *run_said(struct run_result *res);
/* Quote S for a POSIX shell ('...'), into BUF. */
int shell_quote(const char *s, char *buf, size_t len);
