/* rbtext.h - runbooks as text for the tests (test_runbook.c, test_report.c,
 * test_hdrill.c): parsed as "rb.yaml" without file checks, a wanted error,
 * a base text with one piece replaced.  Include after cmocka.h (a file may
 * use some of them only: marked unused). */
#pragma once
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "fsutil.h"
#include "runbook.h"

static __attribute__((unused)) int parse(const char *text, struct runbook **rb)
{
	return runbook_parse("rb.yaml", text, strlen(text), false, rb);
}

/* TEXT is refused with an error containing WANT, nothing returned. */
static __attribute__((unused)) void expect_error(const char *text, const char *want)
{
	struct runbook *rb = NULL;
	int r = parse(text, &rb);

	if (r == 0 || !strstr(err_msg(r), want))
		fail_msg("wanted an error containing '%s', got: %s", want, r ? err_msg(r) : "success");
	assert_null(rb);
}

/* BASE with FROM replaced by TO (FROM "": TO appended); malloc'd. */
static __attribute__((unused)) char *rb_edit(const char *base, const char *from, const char *to)
{
	const char *p = *from ? strstr(base, from) : base + strlen(base);
	char *out;

	assert_non_null(p);
	out = malloc(strlen(base) + strlen(to) + 1);
	memcpy(out, base, (size_t)(p - base));
	strcpy(out + (p - base), to);
	strcat(out, p + strlen(from));
	return out;
}

/* The runbook in PATH (an example of etc/), parsed without file checks
 * (its paths are examples); the test fails with the error if it does not. */
static __attribute__((unused)) struct runbook *rb_example(const char *path)
{
	char *text = NULL;
	size_t len;
	struct runbook *rb = NULL;
	int r;

	assert_int_equal(fs_read_all(path, 1 << 20, &text, &len), 0);
	r = runbook_parse(path, text, len, false, &rb);
	free(text);
	if (r < 0)
		fail_msg("%s", err_msg(r));
	return rb;
}
