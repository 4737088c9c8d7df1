/* checks.h - health checks: TCP connect, HTTP(S) via libcurl, a command, a
 * SQL query via libpq. */
#pragma once
#include "runbook.h"
#include <stddef.h>

/* One attempt of C (commands run on HOST).  0 if it passed; else a negative
 * errno and a sentence in WHY. */
int check_once(const struct rb_check *c, const struct rb_host *host, const char *const *env,
	       char *why, size_t len);
/* curl_global_init, once, before threads. */
int checks_init(void);
void checks_done(void);
