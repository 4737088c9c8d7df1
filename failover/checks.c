/* checks.c - one attempt of a health check: tcp, http (libcurl), command,
 * sql (libpq). */
#include "checks.h"
#include "err.h"
#include "clock.h"
#include "hostexec.h"
#include "pgconn.h"
#include "units.h"
#include <curl/curl.h>
#include <libpq-fe.h>
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

/* Wait until CONN's socket is ready for EVENTS or DEADLINE (monotonic
 * usec) passes: 1 ready, 0 timed out, -errno. */
static int pq_wait(PGconn *conn, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = PQsocket(conn), .events = events };
	uint64_t now = clock_mono_usec();
	int n;

	if (p.fd < 0)
		return -EBADF;
	if (now >= deadline)
		return 0;
	do
		n = poll(&p, 1, (int)((deadline - now + 999) / 1000));
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* libpq's message on one line. */
static const char *pq_msg(const char *m, char *buf, size_t len)
{
	size_t n;

	snprintf(buf, len, "%s", m && *m ? m : "(no message)");
	for (char *x = buf; *x; x++)
		if (*x == '\n')
			*x = ' ';
	n = strlen(buf);
	while (n && buf[n - 1] == ' ')
		buf[--n] = 0;
	return buf;
}

/* The query on the database, non-blocking within the attempt's timeout
 * (a query still running then is cancelled); passes when it succeeds and,
 * with expect, its first row's first value is EXPECT.  The conninfo is
 * named by pgconn_describe: never its password. */
static int check_sql(const struct rb_check *c, char *why, size_t len)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { c->sql, "bascule-drill", NULL };
	uint64_t deadline = clock_mono_usec() + c->timeout;
	char db[512] = "", m[400];
	PGresult *res = NULL, *last = NULL;
	PGconn *conn;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int rc = 0, w;

	if (pgconn_describe(c->sql, db, sizeof(db), NULL) < 0)
		snprintf(db, sizeof(db), "(a conninfo that does not parse)");
	if (!(conn = PQconnectStartParams(keys, vals, 1)))
		return -ENOMEM;
	if (PQstatus(conn) == CONNECTION_BAD)
		st = PGRES_POLLING_FAILED;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		if ((w = pq_wait(conn, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline)) <= 0) {
			snprintf(why, len, "%s: no connection within %.1f s", db, (double)c->timeout / 1e6);
			rc = -ETIMEDOUT;
			goto out;
		}
		st = PQconnectPoll(conn);
	}
	if (st == PGRES_POLLING_FAILED) {
		snprintf(why, len, "cannot connect to %s: %s", db, pq_msg(PQerrorMessage(conn), m, sizeof(m)));
		rc = -ECONNREFUSED;
		goto out;
	}
	if (!PQsendQuery(conn, c->query)) {
		snprintf(why, len, "%s: %s", db, pq_msg(PQerrorMessage(conn), m, sizeof(m)));
		rc = -EIO;
		goto out;
	}
	/* Every result of the query; the first one decides. */
	for (;;) {
		while (PQisBusy(conn)) {
			if ((w = pq_wait(conn, POLLIN, deadline)) <= 0) {
				PGcancel *cn = PQgetCancel(conn);
				char e[256];
				if (cn) {
					PQcancel(cn, e, sizeof(e));
					PQfreeCancel(cn);
				}
				snprintf(why, len, "%s: the query did not finish within %.1f s (cancelled): %.100s",
					 db, (double)c->timeout / 1e6, c->query);
				rc = -ETIMEDOUT;
				goto out;
			}
			if (!PQconsumeInput(conn)) {
				snprintf(why, len, "%s: %s", db, pq_msg(PQerrorMessage(conn), m, sizeof(m)));
				rc = -EIO;
				goto out;
			}
		}
		if (!(res = PQgetResult(conn)))
			break;
		if (!last)
			last = res;
		else
			PQclear(res);
		res = NULL;
	}
	if (!last || (PQresultStatus(last) != PGRES_TUPLES_OK && PQresultStatus(last) != PGRES_COMMAND_OK)) {
		snprintf(why, len, "%s: the query failed: %s", db,
			 pq_msg(last ? PQresultErrorMessage(last) : PQerrorMessage(conn), m, sizeof(m)));
		rc = -EBADMSG;
		goto out;
	}
	if (c->expect) {
		const char *got = PQntuples(last) < 1 || PQnfields(last) < 1 ? NULL
				  : PQgetisnull(last, 0, 0) ? "NULL" : PQgetvalue(last, 0, 0);
		if (!got) {
			snprintf(why, len, "%s: the query returned no rows, wanted '%.100s'", db, c->expect);
			rc = -EBADMSG;
		} else if (strcmp(got, c->expect)) {
			snprintf(why, len, "%s: the query returned '%.100s', wanted '%.100s'", db, got, c->expect);
			rc = -EBADMSG;
		}
	}
out:
	PQclear(last);
	PQfinish(conn);
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
	if (c->sql)
		return check_sql(c, why, len);
	return check_command(c, host, env, why, len);
}
