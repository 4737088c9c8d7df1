/* Unit tests: lib/log.c's stderr lines read back by log_line_prio, as the
 * daemon does with its children's stderr: each at the level it was logged
 * at, a line of another program as none of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "log.h"

/* What log_fields of program IDENT writes on stderr for PRIO and MSG. */
static void logged(const char *ident, int prio, const char *msg, char *ret, size_t len)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);

	assert_non_null(f);
	unsetenv("JOURNAL_STREAM");
	fflush(stderr);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	log_init(ident, 0);
	log_fields(prio, NULL, "%s", msg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	assert_non_null(fgets(ret, (int)len, f));
	ret[strcspn(ret, "\n")] = 0;
	fclose(f);
}

static void test_round_trip(void **state)
{
	static const char *const idents[] = { "bascule-recv", "bascule-vault", "bascule-restore" };
	static const int prios[] = { LOG_ERR, LOG_WARNING, LOG_INFO };
	char line[512];

	for (size_t i = 0; i < sizeof(idents) / sizeof(idents[0]); i++)
		for (size_t k = 0; k < sizeof(prios) / sizeof(prios[0]); k++) {
			logged(idents[i], prios[k], "app/db: hot standby started in /r/app/db", line, sizeof(line));
			assert_int_equal(log_line_prio(line), prios[k]);
		}
	/* A message that itself holds "error: " after its start stays info. */
	logged("bascule-recv", LOG_INFO, "epoch 3: no error: all fine", line, sizeof(line));
	assert_int_equal(log_line_prio(line), LOG_INFO);
	logged("bascule-recv", LOG_WARNING, "error: quoted", line, sizeof(line));
	assert_int_equal(log_line_prio(line), LOG_WARNING);
}

static void test_other_programs(void **state)
{
	assert_int_equal(log_line_prio("ssh: connect to host 10.0.0.2 port 22: Connection refused"), -1);
	assert_int_equal(log_line_prio("Warning: Permanently added '10.0.0.2' (ED25519) to the list of known hosts."), -1);
	assert_int_equal(log_line_prio("==4242==ERROR: AddressSanitizer: heap-use-after-free"), -1);
	assert_int_equal(log_line_prio("tools/recv.c:12:3: runtime error: signed integer overflow"), -1);
	assert_int_equal(log_line_prio("bascule"), -1);
	assert_int_equal(log_line_prio("bascule-recv:no space"), -1);
	assert_int_equal(log_line_prio(""), -1);
	/* A command's fatal error as bascule.c prints it ("bascule recv: ...",
	 * "bascule pgstream: lost the connection ...") carries no level: it
	 * is not taken for info, nor is a logger whose ident has a space. */
	assert_int_equal(log_line_prio("bascule recv: --keep-epochs wants a number"), -1);
	assert_int_equal(log_line_prio("bascule pgstream: lost the connection to PostgreSQL: server closed"), -1);
	assert_int_equal(log_line_prio("bascule relay: probe: open /etc/hostname: ok"), -1);
	assert_int_equal(log_line_prio("bascule: unknown command 'x'"), -1);
	assert_int_equal(log_line_prio("bascule-: x"), -1);
	assert_int_equal(log_line_prio("bascule-Recv: x"), -1);
	/* An ident too long to be ours. */
	assert_int_equal(log_line_prio("bascule-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx: warning: x"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_other_programs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
