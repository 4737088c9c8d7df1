/* httpd.c - the optional Prometheus endpoint: GET /metrics over HTTP on
 * metrics_listen (docs/operations.md, "Prometheus").
 *
 * libmicrohttpd parses HTTP, without threads of its own: it runs inside the
 * sd-event loop, its epoll fd one more I/O source and its timeout a timer
 * re-armed after every run.  Its sockets are non-blocking, so a slow or
 * silent client costs a buffer, never a wait.  Requests are bounded (size,
 * idle time, connections in all and per address).  The handler runs on the
 * loop's thread, so it formats the exposition of the control socket's
 * `metrics` verb from the live state, with no lock and no copy
 * (docs/architecture.md, "Threads"). */
#include "daemon.h"
#include "err.h"
#include "log.h"
#include "netaddr.h"
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Limits on what a client may make the daemon hold. */
#define HTTPD_MAX_CONNECTIONS 16   /* in all */
#define HTTPD_MAX_PER_ADDRESS 8    /* from one address: a stuck client leaves room for Prometheus */
#define HTTPD_REQUEST_MEMORY 16384 /* request line and headers of one connection */
#define HTTPD_IDLE_SECONDS 10      /* a connection that moves no byte this long is closed */
#define HTTPD_BACKLOG 16

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct httpd {
	struct daemon *d;
	struct MHD_Daemon *mhd;
	char *listen;                  /* as configured */
	sd_event_source *io, *timer;
};

static void httpd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = 0;
	log_debug("metrics http: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
			     enum MHD_ResponseMemoryMode mode, const char *type)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result r;

	if (!resp) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO; /* closes the connection */
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	r = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return r;
}

#define REPLY_TEXT(c, status, text) \
	reply(c, status, (char *)(text), sizeof(text) - 1, MHD_RESPMEM_PERSISTENT, "text/plain; charset=utf-8")

/* One call per request, once its headers are in: read-only, two paths. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	struct httpd *h = cls;
	char *text;

	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return REPLY_TEXT(c, MHD_HTTP_METHOD_NOT_ALLOWED, "read-only: GET /metrics\n");
	if (!strcmp(url, "/"))
		return REPLY_TEXT(c, MHD_HTTP_OK, "basculed: Prometheus metrics at /metrics\n");
	if (strcmp(url, "/metrics"))
		return REPLY_TEXT(c, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
	if (!(text = metrics_text(h->d)))
		return REPLY_TEXT(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	return reply(c, MHD_HTTP_OK, text, strlen(text), MHD_RESPMEM_MUST_FREE, PROM_CONTENT_TYPE);
}

/* After every run: wake up again when libmicrohttpd has a timeout due. */
static void httpd_rearm(struct httpd *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (MHD_get_timeout(h->mhd, &ms) == MHD_YES) {
		sd_event_source_set_time_relative(h->timer, ms * 1000);
		sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT);
	} else {
		sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
	}
}

static unsigned httpd_connections(struct httpd *h)
{
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

	return i ? i->num_connections : 0;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct httpd *h = userdata;
	unsigned before = httpd_connections(h);

	MHD_run(h->mhd);
	/* At the connection cap libmicrohttpd takes its listening socket out of
	 * its epoll set, and puts it back only when a run starts: once a run has
	 * closed connections, run again, or clients waiting in the backlog
	 * would wait for an event that never comes. */
	if (httpd_connections(h) < before)
		MHD_run(h->mhd);
	httpd_rearm(h);
	return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	return on_io(NULL, -1, 0, userdata);
}

int httpd_open(struct daemon *d, const char *listen, struct httpd **ret)
{
	struct httpd *h = calloc(1, sizeof(*h));
	const union MHD_DaemonInfo *info;
	struct netaddr a;
	int fd, r;

	if (!h || !(h->listen = strdup(listen))) {
		free(h);
		return -ENOMEM;
	}
	h->d = d;
	if ((r = netaddr_parse(listen, &a)) < 0)
		goto fail;
	if ((fd = netaddr_listen(listen, HTTPD_BACKLOG)) < 0) {
		r = fd;
		goto fail;
	}
	/* The listening socket is libmicrohttpd's from here on: it closes it on
	 * failure as on MHD_stop_daemon. */
	h->mhd = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (netaddr_is_v6(&a) ? MHD_USE_IPv6 : 0), 0, NULL, NULL,
		on_request, h, MHD_OPTION_EXTERNAL_LOGGER, httpd_log, h, MHD_OPTION_LISTEN_SOCKET, fd,
		MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)HTTPD_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)HTTPD_MAX_PER_ADDRESS, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)HTTPD_REQUEST_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_IDLE_SECONDS,
		MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
	if (!h->mhd) {
		r = err_set(EIO, "cannot serve metrics on %s: libmicrohttpd refused to start (run with -v "
				 "for its reason)", listen);
		goto fail;
	}
	info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		r = err_set(EIO, "cannot serve metrics on %s: libmicrohttpd has no epoll fd", listen);
		goto fail;
	}
	if ((r = sd_event_add_io(d->ev, &h->io, info->epoll_fd, EPOLLIN, on_io, h)) < 0 ||
	    (r = sd_event_add_time_relative(d->ev, &h->timer, CLOCK_MONOTONIC, 0, 1000, on_timer, h)) < 0) {
		r = err_set(r, "cannot serve metrics on %s: %s", listen, strerror(-r));
		goto fail;
	}
	httpd_rearm(h);
	log_info("serving Prometheus metrics at http://%s/metrics", listen);
	*ret = h;
	return 0;
fail:
	httpd_free(h);
	return r;
}

struct httpd *httpd_free(struct httpd *h)
{
	if (!h)
		return NULL;
	sd_event_source_disable_unref(h->io);
	sd_event_source_disable_unref(h->timer);
	if (h->mhd)
		MHD_stop_daemon(h->mhd); /* closes its connections and the listening socket */
	free(h->listen);
	free(h);
	return NULL;
}
