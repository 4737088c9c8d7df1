/* Unit tests: lib/subproc (argv exactly as given, no cut command, the deadline
 * killing the whole process group, bounded output, the environment, signals
 * a daemon blocks) and lib/clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "clock.h"
#include "err.h"
#include "subproc.h"

static const struct subproc_opts capture = { .timeout = 20000000, .output_max = 65536 };

static void test_argv_as_given(void **state)
{
	/* Quotes, spaces, $, a newline and a backslash reach the program as they are. */
	const char *const argv[] = { "printf", "<%s>", "it's a \"test\"", "$HOME `id` \\n", "two\nlines",
				     "", NULL };
	struct subproc_result r;

	assert_int_equal(subproc_run(argv, &capture, &r), 0);
	assert_int_equal(r.exit_status, 0);
	assert_false(r.timed_out);
	assert_string_equal(r.output, "<it's a \"test\"><$HOME `id` \\n><two\nlines><>");
	subproc_result_free(&r);
	subproc_result_free(&r); /* twice is harmless */
}

/* A command written as a string, longer than any fixed buffer the drill had
 * (16,000 bytes): it runs whole, nothing cut.  Beyond what the kernel takes
 * in one argument (128 KiB) it is refused, with E2BIG: never cut either. */
static void test_long_shell_command(void **state)
{
	size_t n = 120000;
	char *cmd = malloc(n + 64), *want = malloc(n + 1);
	struct subproc_result r;

	memcpy(cmd, "printf %s ", 10);
	for (size_t i = 0; i < n; i++)
		want[i] = (char)('a' + i % 26);
	want[n] = 0;
	memcpy(cmd + 10, want, n);
	memcpy(cmd + 10 + n, "; echo ' END'", 14);
	assert_int_equal(subproc_run(SUBPROC_SH(cmd), &(struct subproc_opts){ .timeout = 20000000,
									.output_max = n + 100 }, &r), 0);
	assert_int_equal(r.exit_status, 0);
	assert_int_equal(r.output_len, n + 5);
	assert_memory_equal(r.output, want, n);
	assert_string_equal(r.output + n, " END\n");
	subproc_result_free(&r);
	free(cmd);
	free(want);
	cmd = malloc(200001);
	memset(cmd, 'x', 200000);
	cmd[200000] = 0;
	assert_int_equal(subproc_run(SUBPROC_SH(cmd), &capture, &r), -E2BIG);
	assert_non_null(strstr(err_msg(-E2BIG), "cannot run /bin/sh"));
	free(cmd);
}

/* The quoting for an SSH channel: a shell splits it back into exactly ARGV. */
static void test_quote_round_trip(void **state)
{
	const char *const words[] = { "printf", "[%s]", "a b", "it's", "'", "", "$x;`y`|&>", "\\", NULL };
	char *q = subproc_quote_argv(words);
	struct subproc_result r;

	assert_non_null(q);
	assert_string_equal(q, "'printf' '[%s]' 'a b' 'it'\\''s' ''\\''' '' '$x;`y`|&>' '\\'");
	assert_int_equal(subproc_run(SUBPROC_SH(q), &capture, &r), 0);
	assert_string_equal(r.output, "[a b][it's]['][][$x;`y`|&>][\\]");
	subproc_result_free(&r);
	free(q);
}

/* Splitting back what subproc_quote_argv wrote, as a shell would; shell
 * syntax outside quotes is refused, not interpreted. */
static void test_split_words(void **state)
{
	const char *const words[] = { "bascule", "recv", "--root", "/srv/a b/it's", "", "$x;`y`|&>", "\\", NULL };
	char *q = subproc_quote_argv(words), **w = NULL;
	size_t n = 0;

	assert_non_null(q);
	assert_int_equal(subproc_split_words(q, &w, &n), 0);
	assert_int_equal(n, 7);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(w[i], words[i]);
	assert_null(w[n]);
	subproc_words_free(w);
	free(q);
	assert_int_equal(subproc_split_words("  plain  words\\ here --keep-time 0ms ", &w, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(w[1], "words here");
	subproc_words_free(w);
	assert_int_equal(subproc_split_words("", &w, &n), 0);
	assert_int_equal(n, 0);
	subproc_words_free(w);
	assert_int_equal(subproc_split_words("a 'open", &w, &n), -EINVAL);
	assert_int_equal(subproc_split_words("a $HOME", &w, &n), -EINVAL);
	assert_int_equal(subproc_split_words("a; rm", &w, &n), -EINVAL);
	assert_int_equal(subproc_split_words("a \\", &w, &n), -EINVAL);
}

static void test_exit_and_signal(void **state)
{
	struct subproc_result r;

	assert_int_equal(subproc_run(SUBPROC_SH("echo out; echo err >&2; exit 3"), &capture, &r), 0);
	assert_int_equal(r.exit_status, 3);
	assert_int_equal(r.term_signal, 0);
	assert_string_equal(r.output, "out\nerr\n");
	assert_string_equal(subproc_last_line(&r), "err");
	subproc_result_free(&r);

	assert_int_equal(subproc_run(SUBPROC_SH("kill -USR1 $$"), &capture, &r), 0);
	assert_int_equal(r.exit_status, -1);
	assert_int_equal(r.term_signal, SIGUSR1);
	assert_false(r.timed_out);
	assert_string_equal(subproc_said(&r), "(no output)");
	subproc_result_free(&r);

	/* stdin is /dev/null: a command reading it ends at once. */
	assert_int_equal(subproc_run(SUBPROC_SH("cat; echo read-done"), &capture, &r), 0);
	assert_string_equal(r.output, "read-done\n");
	subproc_result_free(&r);

	/* A descriptor given as stdin, a directory given by fd as the cwd. */
	int p[2], d = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_true(d > 0);
	assert_int_equal(write(p[1], "fed\n", 4), 4);
	close(p[1]);
	assert_int_equal(subproc_run(SUBPROC_SH("cat; pwd"),
				     &(struct subproc_opts){ .output_max = 4096, .stdin_fd = p[0], .cwd_fd = d }, &r), 0);
	assert_string_equal(r.output, "fed\n/etc\n");
	subproc_result_free(&r);
	close(p[0]);
	close(d);
}

static void test_not_found(void **state)
{
	const char *const argv[] = { "/nonexistent/bascule-no-such-program", "x", NULL };
	struct subproc_result r = { .exit_status = 42 };

	assert_int_equal(subproc_run(argv, &capture, &r), -ENOENT);
	assert_non_null(strstr(err_msg(-ENOENT), "/nonexistent/bascule-no-such-program"));
	assert_int_equal(r.exit_status, 42); /* untouched */
	assert_null(r.output);
}

static bool alive(pid_t pid)
{
	char path[64], st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return false;
	/* "PID (comm) S ...": a zombie (Z) waiting for its new parent is dead. */
	if (fscanf(f, "%*d %*s %c", &st) != 1)
		st = 0;
	fclose(f);
	return st && st != 'Z';
}

/* The deadline kills the command and what it started (its process group),
 * and subproc_run returns at the deadline, not when they would have ended.
 * The command prints the pid of what it started in the background; on a
 * machine so loaded that the shell did not get that far before the
 * deadline, the deadline doubles and the test runs again. */
static void test_deadline_kills_group(void **state)
{
	struct subproc_result r = { 0 };
	uint64_t timeout = 300000, t0, took = 0;
	long bg = 0;

	for (; timeout <= 20000000 && bg <= 0; timeout *= 2) {
		subproc_result_free(&r);
		t0 = clock_mono_usec();
		assert_int_equal(subproc_run(SUBPROC_SH("sleep 60 & echo $!; sleep 60"),
					     &(struct subproc_opts){ .timeout = timeout, .output_max = 4096 },
					     &r), 0);
		took = clock_mono_usec() - t0;
		bg = strtol(r.output, NULL, 10);
		assert_true(r.timed_out);
		assert_int_equal(r.exit_status, -1);
		assert_int_equal(r.term_signal, SIGKILL);
		assert_true(took >= timeout);
		assert_true(took < timeout + 10000000);
	}
	subproc_result_free(&r);
	assert_true(bg > 0);
	/* The background sleep was killed with the group (SIGKILL is
	 * delivered at once; its reaping by init may take a moment). */
	for (int i = 0; i < 1000 && alive((pid_t)bg); i++)
		usleep(10000);
	assert_false(alive((pid_t)bg));
}

/* A command that leaves a process behind holding its output (a service
 * started in the background) is done when it exits, not at the deadline. */
static void test_background_keeps_pipe(void **state)
{
	struct subproc_result r;
	uint64_t t0 = clock_mono_usec();
	long bg;

	assert_int_equal(subproc_run(SUBPROC_SH("sleep 60 & echo $!"), &capture, &r), 0);
	assert_false(r.timed_out);
	assert_int_equal(r.exit_status, 0);
	assert_true(clock_mono_usec() - t0 < 15000000);
	bg = strtol(subproc_last_line(&r), NULL, 10);
	assert_true(bg > 0);
	kill((pid_t)bg, SIGKILL);
	subproc_result_free(&r);
}

static void test_output_bounded(void **state)
{
	struct subproc_result r;

	/* 1 MiB of output, 1000 bytes kept: the last ones. */
	assert_int_equal(subproc_run(SUBPROC_SH("head -c 1048576 /dev/zero | tr '\\0' x; echo; echo LAST"),
				   &(struct subproc_opts){ .timeout = 20000000, .output_max = 1000 }, &r), 0);
	assert_int_equal(r.exit_status, 0);
	assert_int_equal(r.output_len, 1000);
	assert_true(r.output_cut);
	assert_string_equal(r.output + 1000 - 6, "\nLAST\n");
	assert_int_equal(strlen(r.output), 1000);
	subproc_result_free(&r);

	/* Not captured: nothing kept. */
	assert_int_equal(subproc_run(SUBPROC_SH("exit 0"), &(struct subproc_opts){ .timeout = 20000000 }, &r), 0);
	assert_null(r.output);
	assert_int_equal(r.exit_status, 0);

	assert_int_equal(subproc_run(SUBPROC_SH("true"), &(struct subproc_opts){ .output_max = SUBPROC_OUTPUT_LIMIT + 1 },
				   &r), -EINVAL);
}

static void test_environment(void **state)
{
	const char *const env[] = { "BASCULE_GROUP=vm db", "HOME=/elsewhere", NULL };
	struct subproc_result r;

	setenv("BASCULE_TEST_KEPT", "kept", 1);
	assert_int_equal(subproc_run(SUBPROC_SH("echo \"$BASCULE_GROUP|$HOME|$BASCULE_TEST_KEPT\"; env | grep -c '^HOME='"),
				   &(struct subproc_opts){ .env = env, .timeout = 20000000, .output_max = 4096 }, &r),
			 0);
	assert_string_equal(r.output, "vm db|/elsewhere|kept\n1\n");
	subproc_result_free(&r);
}

/* A daemon blocks the signals its loop handles; its commands must not
 * inherit the mask (a hook's `kill -TERM` of its own child would hang). */
static void test_signal_mask_not_inherited(void **state)
{
	sigset_t s, old;
	struct subproc_result r;

	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &s, &old);
	assert_int_equal(subproc_run(SUBPROC_SH("kill -TERM $$; sleep 30"), &capture, &r), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	assert_false(r.timed_out);
	assert_int_equal(r.term_signal, SIGTERM);
	subproc_result_free(&r);
}

static void *run_in_thread(void *arg)
{
	const char *const argv[] = { "sh", "-c", "sleep 0.2; echo $1", "sh", arg, NULL };
	struct subproc_result r;
	intptr_t ok;

	if (subproc_run(argv, &capture, &r) < 0)
		return (void *)0;
	ok = r.exit_status == 0 && !strcmp(subproc_last_line(&r), arg);
	subproc_result_free(&r);
	return (void *)ok;
}

/* From worker threads at once (the drill's parallel steps, a cut's hook). */
static void test_threads(void **state)
{
	pthread_t th[6];
	char names[6][16]; /* room for "t%d" of any int: -Wformat-truncation */

	for (int i = 0; i < 6; i++) {
		snprintf(names[i], sizeof(names[i]), "t%d", i);
		assert_int_equal(pthread_create(&th[i], NULL, run_in_thread, names[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		void *ok;
		pthread_join(th[i], &ok);
		assert_true(ok == (void *)1);
	}
}

static void test_clock(void **state)
{
	uint64_t a = clock_mono_usec(), d = clock_deadline(1500);

	assert_true(clock_now_usec() > 1700000000ULL * 1000000u); /* after 2023 */
	assert_true(d >= a + 1500);
	assert_true(clock_ms_until(d) <= 2);   /* rounded up, never early */
	assert_int_equal(clock_ms_until(a), 0); /* passed */
	assert_int_equal(clock_deadline(0), UINT64_MAX);
	assert_int_equal(clock_ms_until(UINT64_MAX), -1);
	assert_int_equal(clock_deadline(UINT64_MAX - 1), UINT64_MAX);
	assert_int_equal(clock_ms_until(clock_mono_usec() + (uint64_t)1e12 * 3), 2147483647);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_argv_as_given),
		cmocka_unit_test(test_long_shell_command),
		cmocka_unit_test(test_quote_round_trip),
		cmocka_unit_test(test_exit_and_signal),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_deadline_kills_group),
		cmocka_unit_test(test_background_keeps_pipe),
		cmocka_unit_test(test_output_bounded),
		cmocka_unit_test(test_environment),
		cmocka_unit_test(test_signal_mask_not_inherited),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_clock),
		cmocka_unit_test(test_split_words),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
