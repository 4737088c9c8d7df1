/* Unit tests: lib/yamltab.c on hostile documents (nesting, aliases, values
 * past what the program represents), through a table of its own and through
 * the two real readers built on it: the configuration (also read on reload)
 * and the runbook.  Every refusal names FILE:LINE:COLUMN, and comes fast. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"
#include "config.h"
#include "err.h"
#include "runbook.h"
#include "units.h"
#include "yamltab.h"

struct item {
	struct cfg_pos pos;
	char *name;
	uint64_t every;
};

struct doc {
	uint64_t wait, size, rate, count;
	struct cfg_list items;
};

static const struct cfg_key item_keys[] = {
	{ K("name", CT_NAME, struct item, name), .required = true, .note = "name" },
	{ K("every", CT_DURATION, struct item, every), .def = "1s", .note = "no bound of its own" },
	{ 0 }
};
static const struct cfg_table item_table = { "item", sizeof(struct item), item_keys };

static const struct cfg_key doc_keys[] = {
	{ K("wait", CT_DURATION, struct doc, wait), .def = "0", .note = "no bound of its own" },
	{ K("size", CT_SIZE, struct doc, size), .def = "0", .note = "no bound of its own" },
	{ K("rate", CT_RATE, struct doc, rate), .def = "0", .note = "no bound of its own" },
	{ K("count", CT_UINT, struct doc, count), .def = "0", .note = "no bound of its own" },
	{ K("items", CT_LIST, struct doc, items), .sub = &item_table, .note = "a list" },
	{ 0 }
};
static const struct cfg_table doc_table = { "top level", sizeof(struct doc), doc_keys };

static double now_s(void)
{
	return (double)clock_mono_usec() / 1e6;
}

static int parse_doc(const char *text, size_t len, struct doc *d)
{
	memset(d, 0, sizeof(*d));
	return yamltab_parse("t.yaml", text, len, false, &doc_table, d);
}

/* TEXT (LEN bytes) is refused with a message containing WANT. */
static void expect_refused(const char *text, size_t len, const char *want)
{
	struct doc d;
	int r = parse_doc(text, len, &d);

	yamltab_free(&doc_table, &d);
	if (r != -EINVAL || !strstr(err_msg(r), want))
		fail_msg("wanted -EINVAL with '%s', got %d: %s", want, r, r ? err_msg(r) : "success");
}

static char *repeat(const char *unit, size_t total, size_t *ret_len)
{
	size_t n = strlen(unit), len = total / n * n;
	char *s = malloc(len + 1);

	assert_non_null(s);
	for (size_t i = 0; i < len; i += n)
		memcpy(s + i, unit, n);
	s[len] = 0;
	*ret_len = len;
	return s;
}

/* 1 MiB of '[' (the most yamltab_read() accepts) took libyaml's loader
 * minutes: refused at the first level too deep, well under a second, by
 * every reader on the parser. */
static void test_deep_flow_nesting(void **state)
{
	size_t len;
	char *text = repeat("[", 1u << 20, &len), want[64];
	struct config *c = NULL;
	struct runbook *rb = NULL;
	double t0 = now_s();
	int r;

	snprintf(want, sizeof(want), "t.yaml:1:%d: lists and mappings nested more than %d deep",
		 YAMLTAB_MAX_DEPTH + 1, YAMLTAB_MAX_DEPTH);
	expect_refused(text, len, want);
	r = config_parse("bascule.yaml", text, len, false, &c);
	assert_int_equal(r, -EINVAL);
	assert_null(c);
	assert_non_null(strstr(err_msg(r), "bascule.yaml:1:33: lists and mappings nested more than 32"));
	r = runbook_parse("runbook.yaml", text, len, false, &rb);
	assert_int_equal(r, -EINVAL);
	assert_null(rb);
	assert_non_null(strstr(err_msg(r), "runbook.yaml:1:33: lists and mappings nested"));
	if (now_s() - t0 > 1.0)
		fail_msg("three parses of 1 MiB of '[' took %.2f s", now_s() - t0);
	free(text);
}

/* The same with '{' and with block nesting ("- - - -", "a:\n a:\n  a:"). */
static void test_deep_other_nesting(void **state)
{
	size_t len;
	char *text;
	double t0 = now_s();

	text = repeat("{a: ", 1u << 20, &len);
	expect_refused(text, len, "t.yaml:1:");
	expect_refused(text, len, "nested more than 32 deep");
	free(text);
	text = repeat("- ", 1u << 20, &len);
	expect_refused(text, len, "t.yaml:1:65: lists and mappings nested more than 32 deep");
	free(text);
	{
		char *s = malloc(200000), *p = s;
		assert_non_null(s);
		for (int i = 0; i < 400; i++)
			p += sprintf(p, "%*sa:\n", i, "");
		expect_refused(s, (size_t)(p - s), "t.yaml:33:33: lists and mappings nested more than 32");
		free(s);
	}
	if (now_s() - t0 > 1.0)
		fail_msg("took %.2f s", now_s() - t0);
}

/* Nesting up to the bound is still read (and then judged by the tables). */
static void test_nesting_at_the_bound(void **state)
{
	char text[256] = "items: ";
	size_t n = strlen(text);

	/* the root mapping is level 1, "items" level 2, then 30 more */
	for (int i = 0; i < YAMLTAB_MAX_DEPTH - 1; i++)
		text[n++] = '[';
	for (int i = 0; i < YAMLTAB_MAX_DEPTH - 1; i++)
		text[n++] = ']';
	text[n] = 0;
	expect_refused(text, n, "t.yaml:1:9: each item must be a mapping");
	text[7] = '['; /* one more level: refused while reading */
	memmove(text + 8, text + 7, n - 6);
	n++;
	text[n - 1] = ']';
	text[n] = 0;
	expect_refused(text, n, "t.yaml:1:39: lists and mappings nested more than 32 deep");
}

/* Aliases stay usable, count as what they stand for, and cannot make the
 * document grow past the bound ("billion laughs"). */
static void test_aliases(void **state)
{
	static const char ok[] = "wait: &w 5s\nitems:\n  - &one {name: a, every: *w}\n  - {name: b}\n";
	char bomb[4096], *p = bomb;
	struct doc d;

	assert_int_equal(parse_doc(ok, strlen(ok), &d), 0);
	assert_int_equal(d.wait, 5000000);
	assert_int_equal(d.items.n, 2);
	assert_int_equal(((struct item *)d.items.items)[0].every, 5000000);
	assert_int_equal(((struct item *)d.items.items)[1].every, 1000000);
	yamltab_free(&doc_table, &d);

	expect_refused("items: [*nope]\n", 15, "t.yaml:1:9: alias *nope names no anchor");
	/* an alias of the mapping that encloses it */
	expect_refused("items: &x [*x]\n", 15, "t.yaml:1:12: alias *x names no anchor");

	p += sprintf(p, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
	for (int i = 1; i < 9; i++)
		p += sprintf(p, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n",
			     i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
	expect_refused(bomb, (size_t)(p - bomb), "values (aliases count as what they stand for)");
}

/* The bound counts each value once: the root mapping, the key "items", the
 * list and its scalars make exactly YAMLTAB_MAX_NODES, read; one more is not. */
static void test_node_bound(void **state)
{
	size_t k = YAMLTAB_MAX_NODES - 3, len = 0;
	char *text = malloc(2 * k + 16);

	assert_non_null(text);
	len += (size_t)sprintf(text, "items: [");
	for (size_t i = 0; i < k; i++) {
		text[len++] = 'a';
		text[len++] = ',';
	}
	text[len - 1] = ']';
	expect_refused(text, len, "t.yaml:1:8: items has more than 4096 items"); /* read, then judged */
	memcpy(text + len - 1, ",a]", 3);
	len += 2;
	expect_refused(text, len, "more than 262144 values");
	free(text);
}

/* Anchors are bounded, so looking aliases up stays cheap: 1 MiB of aliases
 * naming the first of 256 anchors with long, alike names. */
static void test_many_anchors(void **state)
{
	size_t cap = (1u << 20) + 4096, len = 0;
	char *text = malloc(cap), name[200];
	double t0;

	assert_non_null(text);
	memset(name, 'n', sizeof(name) - 4);
	len += (size_t)sprintf(text + len, "x: [");
	for (int i = 0; i < YAMLTAB_MAX_ANCHORS; i++)
		len += (size_t)sprintf(text + len, "&%.*s%03d v, ", (int)sizeof(name) - 4, name, i);
	len += (size_t)sprintf(text + len, "v]\ny: [");
	while (len + sizeof(name) + 8 < (1u << 20))
		len += (size_t)sprintf(text + len, "*%.*s000, ", (int)sizeof(name) - 4, name);
	len += (size_t)sprintf(text + len, "v]\n");
	t0 = now_s();
	expect_refused(text, len, "t.yaml:1:1: unknown key 'x' in top level");
	if (now_s() - t0 > 1.0)
		fail_msg("took %.2f s", now_s() - t0);

	len = (size_t)sprintf(text, "x: [");
	for (int i = 0; i <= YAMLTAB_MAX_ANCHORS; i++)
		len += (size_t)sprintf(text + len, "&a%d v, ", i);
	len += (size_t)sprintf(text + len, "v]\n");
	expect_refused(text, len, "t.yaml:1:2199: more than 256 anchors (&name)");
	free(text);
}

/* Durations, sizes, rates and numbers past what the program represents:
 * refused with the position, never converted (5e89 seconds is undefined
 * behaviour as a uint64_t). */
static void test_value_bounds(void **state)
{
	struct doc d;
	char text[128];

	expect_refused("wait: 5e89\n", 11, "t.yaml:1:7: wait must be between 0ms and 876000h00m, got '5e89'");
	expect_refused("wait: 5e89s\n", 12, "t.yaml:1:7: wait must be between");
	expect_refused("wait: 1e30d\n", 12, "t.yaml:1:7: wait must be between");
	expect_refused("wait: 101y\n", 11, "t.yaml:1:7: wait must be a duration");
	expect_refused("size: 1e90TiB\n", 14, "t.yaml:1:7: size must be between 0 and 1152921504606846976");
	expect_refused("size: 2e18\n", 11, "t.yaml:1:7: size must be between");
	expect_refused("rate: 5e89MB/s\n", 15, "t.yaml:1:7: rate must be between");
	expect_refused("count: 99999999999999999999999\n", 31, "t.yaml:1:8: count must be between 0 and 4294967295");
	expect_refused("count: 4294967296\n", 18, "t.yaml:1:8: count must be between");
	expect_refused("items: [{name: a, every: 5e89}]\n", 32, "t.yaml:1:26: every must be between");

	snprintf(text, sizeof(text), "wait: 36500d\nsize: 1024PiB\ncount: 4294967295\n");
	expect_refused(text, strlen(text), "size must be a size"); /* no PiB unit */
	snprintf(text, sizeof(text), "wait: 36500d\nsize: 1048576TiB\ncount: 4294967295\n");
	assert_int_equal(parse_doc(text, strlen(text), &d), 0);
	assert_true(d.wait == YAMLTAB_MAX_DURATION);
	assert_true(d.size == YAMLTAB_MAX_SIZE);
	assert_true(d.count == YAMLTAB_MAX_UINT);
	yamltab_free(&doc_table, &d);
}

/* The same through the real tables: a configuration and a runbook. */
static void test_value_bounds_real_tables(void **state)
{
	static const char cfg[] =
		"groups:\n  - name: g\n    interval: 5e89\n    sources: [{name: s, disk: /d}]\n"
		"targets:\n  - name: t\n    url: local:/r\n";
	static const char cfg2[] =
		"groups:\n  - name: g\n    sources: [{name: s, disk: /d}]\n"
		"targets:\n  - name: t\n    url: local:/r\n    keep_time: 1e300s\n";
	static const char rb_text[] =
		"name: t\nobjectives: {rto: 1h, rpo: 5e89}\nhosts: [{name: a, url: local}]\n"
		"primary: {host: a}\nsecondary: {host: a, replica_root: /r}\n"
		"services: [{name: s, start: x}]\n";
	struct config *c = NULL;
	struct runbook *rb = NULL;
	int r;

	r = config_parse("c.yaml", cfg, strlen(cfg), false, &c);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err_msg(r), "c.yaml:3:15: interval must be between 100ms and 24h00m, got '5e89'"));
	r = config_parse("c.yaml", cfg2, strlen(cfg2), false, &c);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err_msg(r), "c.yaml:7:16: keep_time must be between 0ms and 876000h00m"));
	r = runbook_parse("r.yaml", rb_text, strlen(rb_text), false, &rb);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err_msg(r), "r.yaml:2:28: rpo must be between 0ms and 876000h00m"));
}

/* The units themselves: out of range is -ERANGE, not a wrapped number. */
static void test_units_range(void **state)
{
	uint64_t v = 42;

	assert_int_equal(units_parse_duration("5e89", &v), -ERANGE);
	assert_int_equal(units_parse_duration("18446744073709.552", &v), -ERANGE); /* 2^64 us */
	assert_int_equal(units_parse_duration("1e300d", &v), -ERANGE);
	assert_int_equal(units_parse_duration("5000000000000000h 5000000000000000h", &v), -ERANGE);
	assert_int_equal(units_parse_size("1e90TiB", &v), -ERANGE);
	assert_int_equal(units_parse_size("18446744073709551616", &v), -ERANGE);
	assert_int_equal(units_parse_rate("5e89MB/s", &v), -ERANGE);
	assert_int_equal(v, 42); /* untouched on failure */
	assert_int_equal(units_parse_duration("10000000000000", &v), 0);
	assert_true(v == 10000000000000000000ULL);
	assert_int_equal(units_parse_size("16383PiB", &v), -EINVAL);
	assert_int_equal(units_parse_size("1.5KiB", &v), 0);
	assert_int_equal(v, 1536);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deep_flow_nesting),
		cmocka_unit_test(test_deep_other_nesting),
		cmocka_unit_test(test_nesting_at_the_bound),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_many_anchors),
		cmocka_unit_test(test_node_bound),
		cmocka_unit_test(test_value_bounds),
		cmocka_unit_test(test_value_bounds_real_tables),
		cmocka_unit_test(test_units_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
