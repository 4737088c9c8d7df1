/* Unit tests: lib/qmp against a scripted QMP peer on a unix socket (greeting,
 * capabilities, events between replies, errors, replies of given-up
 * commands, silence, oversized and garbage lines). The real QEMU is driven
 * by tests/e2e/qemusrc.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "clock.h"
#include "err.h"
#include "qmp.h"

struct peer {
	int lfd;
	char path[108];
	const char *const *script; /* lines to send; "<" = read one line first */
	char got[8][512];          /* lines read */
	int ngot;
	pthread_t t;
};

static void *peer_run(void *arg)
{
	struct peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	FILE *in;
	char line[65536];

	if (fd < 0)
		return NULL;
	in = fdopen(dup(fd), "r");
	for (const char *const *l = p->script; *l; l++) {
		if (strcmp(*l, "<") == 0) {
			if (!fgets(line, sizeof(line), in))
				break;
			if (p->ngot < 8)
				snprintf(p->got[p->ngot++], sizeof(p->got[0]), "%.500s", line);
		} else if (strcmp(*l, "...") == 0) {
			usleep(1500000); /* silence past the client's timeout */
		} else {
			(void)!write(fd, *l, strlen(*l));
		}
	}
	usleep(100000);
	fclose(in);
	close(fd);
	return NULL;
}

static void peer_start(struct peer *p, const char *const *script)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(p, 0, sizeof(*p));
	snprintf(p->path, sizeof(p->path), "/tmp/bascule-qmp-test.%d.sock", (int)getpid());
	unlink(p->path);
	memcpy(sa.sun_path, p->path, strlen(p->path) + 1);
	p->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(p->lfd >= 0);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(p->lfd, 1), 0);
	p->script = script;
	assert_int_equal(pthread_create(&p->t, NULL, peer_run, p), 0);
}

static void peer_stop(struct peer *p)
{
	pthread_join(p->t, NULL);
	close(p->lfd);
	unlink(p->path);
}

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}\n"

static void test_greeting_events_errors(void **state)
{
	static const char *const script[] = {
		GREETING, "<", "{\"return\": {}, \"id\": 1}\n",
		"<", "{\"event\": \"BLOCK_JOB_READY\", \"data\": {}}\n",
		"{\"return\": {\"old\": 1}, \"id\": 1}\n", /* not ours: skipped */
		"{\"return\": [{\"device\": \"d0\"}], \"id\": 2}\n",
		"<", "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"no node x\"}, \"id\": 3}\n",
		NULL };
	struct peer p;
	struct qmp *q = NULL;
	json_t *v = NULL;
	(void)state;

	peer_start(&p, script);
	assert_int_equal(qmp_open(p.path, 2000, &q), 0);
	assert_int_equal(qmp_exec(q, "query-block", NULL, &v), 0);
	assert_true(json_is_array(v));
	assert_string_equal(json_string_value(json_object_get(json_array_get(v, 0), "device")), "d0");
	json_decref(v);
	v = NULL;
	assert_int_equal(qmp_exec(q, "block-dirty-bitmap-remove", json_pack("{ss,ss}", "node", "x", "name", "b"), &v),
			 -EREMOTEIO);
	assert_null(v);
	assert_string_equal(qmp_error_class(q), "DeviceNotFound");
	assert_non_null(strstr(err_msg(-EREMOTEIO), "no node x"));
	qmp_close(q);
	peer_stop(&p);
	/* What went on the wire: capabilities first, arguments and ids as given. */
	assert_non_null(strstr(p.got[0], "\"execute\":\"qmp_capabilities\""));
	assert_non_null(strstr(p.got[1], "\"execute\":\"query-block\""));
	assert_non_null(strstr(p.got[1], "\"id\":2"));
	assert_non_null(strstr(p.got[2], "\"arguments\":{\"node\":\"x\",\"name\":\"b\"}"));
}

/* A peer that never answers costs the timeout, not a hang. */
static void test_silence_times_out(void **state)
{
	static const char *const script[] = { GREETING, "<", "{\"return\": {}, \"id\": 1}\n", "<", "...", NULL };
	struct peer p;
	struct qmp *q = NULL;
	uint64_t t0;
	(void)state;

	peer_start(&p, script);
	assert_int_equal(qmp_open(p.path, 500, &q), 0);
	t0 = clock_mono_usec();
	assert_int_equal(qmp_exec(q, "query-block", NULL, NULL), -ETIMEDOUT);
	assert_true(clock_mono_usec() - t0 >= 450000);
	assert_true(clock_mono_usec() - t0 < 1400000);
	qmp_close(q);
	peer_stop(&p);
}

/* Not QMP: no greeting, garbage, a closed socket, nobody listening. */
static void test_refused(void **state)
{
	static const char *const garbage[] = { "hello there\n", NULL };
	static const char *const agent_only[] = { "{\"return\": {}, \"id\": 1}\n", NULL };
	static const char *const wrong_token[] = { "<", "{\"return\": 12, \"id\": 1}\n", NULL };
	struct peer p;
	struct qmp *q = NULL;
	(void)state;

	peer_start(&p, garbage);
	assert_int_equal(qmp_open(p.path, 1000, &q), -EPROTO);
	assert_null(q);
	peer_stop(&p);
	peer_start(&p, agent_only);
	assert_int_equal(qmp_open(p.path, 1000, &q), -EPROTO);
	assert_non_null(strstr(err_msg(-EPROTO), "no QMP greeting"));
	peer_stop(&p);
	peer_start(&p, wrong_token);
	assert_int_equal(qmp_open_agent(p.path, 1000, &q), -EPROTO);
	assert_null(q);
	peer_stop(&p);
	assert_int_equal(qmp_open("/nonexistent/qmp.sock", 1000, &q), -ENOENT);
	assert_null(q);
	qmp_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_events_errors),
		cmocka_unit_test(test_silence_times_out),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
