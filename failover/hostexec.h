/* hostexec.h - run a command on a runbook host: locally (lib/subproc: argv
 * as given, its own process group, killed at the deadline) or over SSH
 * (libssh2 exec channel, strict host key checking against the host's
 * known_hosts, key authentication; the argv quoted once into the string an
 * exec channel takes, never cut).  Blocking; safe to call from several
 * threads at once (one SSH session per call). */
#pragma once
#include "runbook.h"
#include "subproc.h"
#include <stdint.h>

/* What a drill keeps of a command's output: its stdout and stderr, the last
 * HOST_OUTPUT_MAX bytes. */
#define HOST_OUTPUT_MAX 65536

/* Call once before any thread runs commands. */
int hostexec_init(void);
void hostexec_done(void);
/* Run ARGV on H with ENV ("NAME=value" strings added to its environment,
 * NULL-terminated; may be NULL) within TIMEOUT (usec).  A runbook command
 * (a string) is SUBPROC_SH(STRING).  Returns 0 when the command ran: *RES
 * holds its status and output (free with subproc_result_free); or a
 * negative errno when it could not be started or the host could not be
 * reached (message set; *RES untouched). */
int host_run(const struct rb_host *h, const char *const *argv, const char *const *env,
	     uint64_t timeout, struct subproc_result *res);
