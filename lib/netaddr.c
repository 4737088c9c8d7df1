/* netaddr.c - numeric listening addresses and their sockets (netaddr.h). */
#include "netaddr.h"
#include "err.h"
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NETADDR_HINT "write ADDRESS:PORT with a numeric address, e.g. 127.0.0.1:9853, " \
		     "0.0.0.0:9853 (every IPv4 address) or [::1]:9853"

int netaddr_parse(const char *text, struct netaddr *ret)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
	struct addrinfo *res = NULL;
	char host[64];
	const char *colon, *port, *hp;
	size_t hlen;
	long pn;
	char *end;
	struct netaddr a = { .len = 0 };
	int r;

	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return err_set(EINVAL, "'%s' is not a listening address: %s", text, NETADDR_HINT);
		hp = text + 1;
		hlen = (size_t)(close - hp);
		port = close + 2;
	} else {
		colon = strrchr(text, ':');
		if (!colon || strchr(text, ':') != colon)
			return err_set(EINVAL, "'%s' is not a listening address: %s%s", text, NETADDR_HINT,
				       colon ? " (an IPv6 address goes in brackets)" : "");
		hp = text;
		hlen = (size_t)(colon - text);
		port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return err_set(EINVAL, "'%s' is not a listening address: %s", text, NETADDR_HINT);
	memcpy(host, hp, hlen);
	host[hlen] = 0;
	pn = strtol(port, &end, 10);
	if (!*port || *end || port[0] == '-' || port[0] == '+' || pn < 1 || pn > 65535)
		return err_set(EINVAL, "'%s': the port must be a number from 1 to 65535", text);
	if ((r = getaddrinfo(host, port, &hints, &res)) != 0 || !res)
		return err_set(EINVAL, "'%s': '%s' is not a numeric IP address (names are not resolved): %s",
			       text, host, NETADDR_HINT);
	if (res->ai_addrlen <= sizeof(a.sa)) {
		memcpy(&a.sa, res->ai_addr, res->ai_addrlen);
		a.len = res->ai_addrlen;
	}
	freeaddrinfo(res);
	if (!a.len)
		return err_set(EINVAL, "'%s': unusable address", text);
	*ret = a;
	return 0;
}

bool netaddr_is_v6(const struct netaddr *a)
{
	return a->sa.ss_family == AF_INET6;
}

int netaddr_listen(const char *text, int backlog)
{
	struct netaddr a;
	int fd, one = 1, r;

	if ((r = netaddr_parse(text, &a)) < 0)
		return r;
	fd = socket(a.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(errno, "cannot listen on %s: %s", text, strerror(errno));
	/* An IPv6 address means that address only, not the IPv4 ones too. */
	if ((netaddr_is_v6(&a) && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a.sa, a.len) < 0 || listen(fd, backlog) < 0) {
		r = err_set(errno, "cannot listen on %s: %s%s", text, strerror(errno),
			    errno == EADDRINUSE ? " (another program holds this port: choose another "
						  "or stop that program)" : "");
		close(fd);
		return r;
	}
	return fd;
}
