/* ctl.h - the daemon's control socket protocol (docs/control.md): one JSON
 * object per line each way, over a Unix stream socket. */
#pragma once
#include <jansson.h>

#define CTL_MAX_REQUEST (64 * 1024)

/* Connect to PATH, send REQ, read one JSON line back into *ret (owned by the
 * caller).  Errors: -ERR_NODAEMON (no daemon; message says so: exit 8),
 * -EACCES (not allowed to connect: exit 4), -ETIMEDOUT (no answer), -EPROTO. */
int ctl_call(const char *path, json_t *req, int timeout_ms, json_t **ret);
