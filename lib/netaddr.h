/* netaddr.h - numeric listening addresses ("127.0.0.1:9853", "[::1]:9853")
 * and the TCP sockets that listen on them (basculed's metrics_listen).
 *
 * Names are never resolved: a listening address is the operator's to give
 * exactly, and the daemon's loop must not wait on DNS. */
#pragma once
#include <stdbool.h>
#include <sys/socket.h>

struct netaddr {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* Parse TEXT: IPv4:PORT or [IPv6]:PORT, port 1-65535.  -EINVAL with a
 * sentence saying what to write; *RET is written only on success. */
int netaddr_parse(const char *text, struct netaddr *ret);
/* True if A is an IPv6 address. */
bool netaddr_is_v6(const struct netaddr *a);
/* A TCP socket bound to TEXT and listening (SO_REUSEADDR, non-blocking,
 * close-on-exec).  Returns the fd, or a negative errno with a sentence
 * naming the address ("address already in use": another program has it). */
int netaddr_listen(const char *text, int backlog);
