/* checks.c - one attempt of a health check. */
#include "checks.h"
#include "err.h"
#include "hostexec.h"
#include "units.h"
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY_MAX (1u << 20)

int checks_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void checks_done(void)
{
	curl_global_cleanup();
}

static int check_tcp(const struct rb_check *c, char *why, size_t len)
{
	char host[256], port[8];
	const char *colon = strrchr(c->tcp, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	int rc, last = ECONNREFUSED;

	snprintf(host, sizeof(host), "%.*s", (int)(colon - c->tcp), c->tcp);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	snprintf(port, sizeof(port), "%s", colon + 1);
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(why, len, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int err = 0;
			socklen_t el = sizeof(err);
			if (poll(&p, 1, (int)(c->timeout / 1000)) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) {
				close(fd);
				freeaddrinfo(res);
				return 0;
			}
			last = err ? err : ETIMEDOUT;
		} else {
			last = errno;
		}
		close(fd);
	}
	freeaddrinfo(res);
	snprintf(why, len, "cannot connect to %s: %s", c->tcp, strerror(last));
	return -last;
}

struct body {
	char *p;
	size_t n;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t n = size * nmemb, take = n;

	if (b->n + take > BODY_MAX)
		take = BODY_MAX - b->n;
	if (take) {
		char *q = realloc(b->p, b->n + take + 1);
		if (!q)
			return 0;
		b->p = q;
		memcpy(b->p + b->n, data, take);
		b->n += take;
		b->p[b->n] = 0;
	}
	return n;
}

static int check_http(const struct rb_check *c, char *why, size_t len)
{
	CURL *h = curl_easy_init();
	struct body b = { 0 };
	char errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode cc;
	int rc = 0;

	if (!h)
		return -ENOMEM;
	curl_easy_setopt(h, CURLOPT_URL, c->http);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(c->timeout / 1000));
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "bascule-drill/" BASCULE_VERSION);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		snprintf(why, len, "GET %s: %s", c->http, errbuf[0] ? errbuf : curl_easy_strerror(cc));
		rc = -EHOSTUNREACH;
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if ((uint64_t)status != c->expect_status) {
		snprintf(why, len, "GET %s: status %ld, wanted %llu", c->http, status,
			 (unsigned long long)c->expect_status);
		rc = -EBADMSG;
		goto out;
	}
	if (c->expect_body && (!b.p || !strstr(b.p, c->expect_body))) {
		snprintf(why, len, "GET %s: status %ld but the body lacks '%s' (got '%.80s')", c->http,
			 status, c->expect_body, b.p ? b.p : "");
		rc = -EBADMSG;
	}
out:
	free(b.p);
	curl_easy_cleanup(h);
	return rc;
}

static int check_command(const struct rb_check *c, const struct rb_host *host,
			 const char *const *env, char *why, size_t len)
{
	struct subproc_result res;
	int rc;

	if ((rc = host_run(host, SUBPROC_SH(c->command), env, c->timeout, &res)) < 0) {
		snprintf(why, len, "%s", err_msg(rc));
		return rc;
	}
	if (res.timed_out) {
		char d[32];
		snprintf(why, len, "command timed out after %s: %.200s",
			 units_fmt_duration(c->timeout, d, sizeof(d)), subproc_said(&res));
		rc = -EBADMSG;
	} else if (res.exit_status != 0) {
		if (res.exit_status < 0)
			snprintf(why, len, "command killed by SIG%s: %.200s",
				 sigabbrev_np(res.term_signal) ?: "(unknown)", subproc_said(&res));
		else
			snprintf(why, len, "command failed (exit %d): %.200s", res.exit_status,
				 subproc_said(&res));
		rc = -EBADMSG;
	}
	subproc_result_free(&res);
	return rc;
}

int check_once(const struct rb_check *c, const struct rb_host *host, const char *const *env,
	       char *why, size_t len)
{
	why[0] = 0;
	if (c->tcp)
		return check_tcp(c, why, len);
	if (c->http)
		return check_http(c, why, len);
	return check_command(c, host, env, why, len);
}
