/* Unit tests: the configuration parser and every error path, each naming
 * FILE:LINE:COLUMN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "config.h"
#include "err.h"

static const char minimal[] =
	"state_dir: /var/lib/bascule\n"
	"key: /etc/bascule/site.key\n"
	"control_socket: /run/bascule/status.sock\n"
	"groups:\n"
	"  - name: web1\n"
	"    interval: 5s\n"
	"    sources:\n"
	"      - name: root\n"
	"        disk: /var/lib/libvirt/images/web1.img\n"
	"targets:\n"
	"  - name: secondary\n"
	"    type: replica\n"
	"    url: local:/srv/bascule/replica\n";

static int parse(const char *text, struct config **c)
{
	return config_parse("test.yaml", text, strlen(text), false, c);
}

/* Parse TEXT, expect failure whose message contains WANT. */
static void expect_error(const char *text, const char *want)
{
	struct config *c = NULL;
	int r = parse(text, &c);

	assert_int_equal(r, -EINVAL);
	assert_null(c);
	if (!strstr(err_msg(r), want)) {
		fprintf(stderr, "message: %s\nwanted: %s\n", err_msg(r), want);
		fail();
	}
}

static char *replace(const char *from, const char *to)
{
	static char out[4096];
	const char *p = strstr(minimal, from);

	assert_non_null(p);
	snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - minimal), minimal, to, p + strlen(from));
	return out;
}

static void test_minimal(void **state)
{
	struct config *c = NULL;

	assert_int_equal(parse(minimal, &c), 0);
	assert_string_equal(c->state_dir, "/var/lib/bascule");
	assert_int_equal(c->groups.n, 1);
	assert_int_equal(CFG_GROUP(c, 0)->interval, 5000000);
	assert_int_equal(CFG_GROUP(c, 0)->max_interval, 60000000); /* default filled */
	assert_string_equal(CFG_SOURCE(CFG_GROUP(c, 0), 0)->disk, "/var/lib/libvirt/images/web1.img");
	assert_int_equal(CFG_TARGET(c, 0)->keep_epochs, 24);
	assert_string_equal(CFG_TARGET(c, 0)->remote_command, "bascule recv");
	config_free(c);
}

static void test_unknown_key(void **state)
{
	expect_error(replace("    interval: 5s\n", "    intervall: 5s\n"),
		     "test.yaml:6:5: unknown key 'intervall' in group");
}

static void test_bad_duration(void **state)
{
	expect_error(replace("interval: 5s", "interval: 5 parsecs"),
		     "test.yaml:6:15: interval must be a duration");
}

static void test_bad_rate(void **state)
{
	char text[4096];
	snprintf(text, sizeof(text), "%sio_rate: 4 potatoes\n", minimal);
	expect_error(text, "test.yaml:14:10: io_rate must be a rate");
}

/* The host's read cap and the bound on cuts reading at once (many groups
 * per host): defaults, what is accepted, and what is refused with the
 * place and the range. */
static void test_io_caps(void **state)
{
	char text[4096];
	struct config *c = NULL;

	assert_int_equal(parse(minimal, &c), 0);
	assert_int_equal(c->io_rate, 0);
	assert_int_equal(c->max_concurrent_cuts, 2);
	assert_int_equal(c->cut_timeout, 30 * 60 * 1000000ULL); /* the watchdog's default */
	config_free(c);
	c = NULL;
	snprintf(text, sizeof(text), "%sio_rate: 200MB/s\nmax_concurrent_cuts: 3\ncut_timeout: 0\n", minimal);
	assert_int_equal(parse(text, &c), 0);
	assert_int_equal(c->io_rate, 200000000);
	assert_int_equal(c->max_concurrent_cuts, 3);
	assert_int_equal(c->cut_timeout, 0); /* never */
	config_free(c);
	c = NULL;
	snprintf(text, sizeof(text), "%sio_rate: unlimited\n", minimal);
	assert_int_equal(parse(text, &c), 0);
	assert_int_equal(c->io_rate, 0);
	config_free(c);
	/* A cap of a few bytes a second would never finish a scan. */
	snprintf(text, sizeof(text), "%sio_rate: 100KB/s\n", minimal);
	expect_error(text, "test.yaml:14:10: io_rate must be 0 (off) or at least 1048576 bytes/s, got '100KB/s'");
	snprintf(text, sizeof(text), "%sio_rate: -5MB/s\n", minimal);
	expect_error(text, "test.yaml:14:10: io_rate must be a rate");
	snprintf(text, sizeof(text), "%smax_concurrent_cuts: 0\n", minimal);
	expect_error(text, "test.yaml:14:22: max_concurrent_cuts must be between 1 and 64, got '0'");
	snprintf(text, sizeof(text), "%smax_concurrent_cuts: 65\n", minimal);
	expect_error(text, "test.yaml:14:22: max_concurrent_cuts must be between 1 and 64, got '65'");
	snprintf(text, sizeof(text), "%smax_concurrent_cuts: two\n", minimal);
	expect_error(text, "test.yaml:14:22: max_concurrent_cuts must be a");
}

/* block_size was a key that changed nothing (Bascule tracks the 4 KiB pages
 * VMs write, always): it is gone, and a file naming it is told so. */
static void test_no_block_size(void **state)
{
	char text[4096];
	snprintf(text, sizeof(text), "%sblock_size: 4KiB\n", minimal);
	expect_error(text, "test.yaml:14:1: unknown key 'block_size'");
}

static void test_out_of_bounds(void **state)
{
	expect_error(replace("interval: 5s", "interval: 1ms"), "test.yaml:6:15: interval must be between");
}

static void test_wrong_type(void **state)
{
	expect_error(replace("interval: 5s", "interval: [1, 2]"), "test.yaml:6:15: interval must be");
	expect_error("groups: 5\ntargets: []\n", "test.yaml:1:9: groups must be a list");
}

static void test_missing_required(void **state)
{
	expect_error(replace("        disk: /var/lib/libvirt/images/web1.img\n", ""),
		     "test.yaml:8:9: source 'root' of group 'web1' is missing the required key 'disk'");
}

static void test_duplicate(void **state)
{
	char text[4096];
	snprintf(text, sizeof(text), "%s  - name: secondary\n    url: local:/x\n", minimal);
	expect_error(text, "test.yaml:14:5: target name 'secondary' is used twice");
	expect_error(replace("    interval: 5s\n", "    interval: 5s\n    interval: 6s\n"),
		     "test.yaml:7:5: key 'interval' given twice");
}

static void test_bad_name(void **state)
{
	expect_error(replace("name: root", "name: ../etc"), "test.yaml:8:15: '../etc' is not a valid name");
}

static void test_relative_path(void **state)
{
	expect_error(replace("state_dir: /var/lib/bascule", "state_dir: var/lib"),
		     "test.yaml:1:12: state_dir must be an absolute path");
}

static void test_bad_url(void **state)
{
	expect_error(replace("url: local:/srv/bascule/replica", "url: ftp://x"),
		     "test.yaml:11:5: target 'secondary': url must be local:/DIR");
	expect_error(replace("type: replica", "type: tape"), "type must be one of: replica");
}

static void test_syntax(void **state)
{
	expect_error("groups: [\n", "test.yaml:2:1: YAML syntax error");
	expect_error("", "test.yaml:1:1: the file is empty");
	expect_error("- a\n- b\n", "test.yaml:1:1: each top level must be a mapping");
}

static void test_missing_files(void **state)
{
	char dir[] = "/tmp/bascule-cfg.XXXXXX", text[8192], key[600];
	struct config *c = NULL;
	int fd, r;

	assert_non_null(mkdtemp(dir));
	snprintf(key, sizeof(key), "%s/site.key", dir);
	snprintf(text, sizeof(text),
		 "key: %s\ngroups:\n  - name: g\n    sources:\n      - name: s\n        disk: %s/nope.img\n"
		 "targets:\n  - name: t\n    url: local:/r\n", key, dir);
	/* key missing: a key error (exit 4), positioned */
	r = config_parse("test.yaml", text, strlen(text), true, &c);
	assert_int_equal(r, -ENOKEY);
	assert_int_equal(err_exit_code(r), EXIT_KEY);
	assert_non_null(strstr(err_msg(r), "test.yaml:1:6: key"));
	assert_non_null(strstr(err_msg(r), "No such file"));
	/* key readable by others */
	fd = open(key, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	fchmod(fd, 0644);
	close(fd);
	r = config_parse("test.yaml", text, strlen(text), true, &c);
	assert_int_equal(r, -EPERM);
	assert_int_equal(err_exit_code(r), EXIT_KEY);
	assert_non_null(strstr(err_msg(r), "test.yaml:1:6: "));
	assert_non_null(strstr(err_msg(r), "chmod 600"));
	/* disk missing */
	chmod(key, 0600);
	r = config_parse("test.yaml", text, strlen(text), true, &c);
	assert_int_equal(r, -EINVAL);
	assert_non_null(strstr(err_msg(r), "test.yaml:6:15: disk"));
	unlink(key);
	rmdir(dir);
}

static void test_metrics_listen(void **state)
{
	struct config *c = NULL;
	char text[4096];
	const char *good[] = { "127.0.0.1:9853", "0.0.0.0:1", "[::1]:9853", "[::]:65535" };
	const struct { const char *v, *want; } bad[] = {
		{ "127.0.0.1", "test.yaml:14:17: metrics_listen: '127.0.0.1' is not a listening address: "
			       "write ADDRESS:PORT" },
		{ "localhost:9853", "test.yaml:14:17: metrics_listen: 'localhost:9853': 'localhost' is not a "
				    "numeric IP address (names are not resolved)" },
		{ "127.0.0.1:0", "the port must be a number from 1 to 65535" },
		{ "127.0.0.1:65536", "the port must be a number from 1 to 65535" },
		{ "127.0.0.1:http", "the port must be a number" },
		{ "::1:9853", "an IPv6 address goes in brackets" },
		{ "[::1]9853", "is not a listening address" },
		{ ":9853", "is not a listening address" },
		{ "999.1.1.1:9853", "not a numeric IP address" },
	};

	assert_int_equal(parse(minimal, &c), 0);
	assert_null(c->metrics_listen); /* no listener unless asked */
	config_free(c);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "%smetrics_listen: \"%s\"\n", minimal, good[i]);
		c = NULL;
		assert_int_equal(parse(text, &c), 0);
		assert_string_equal(c->metrics_listen, good[i]);
		config_free(c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "%smetrics_listen: \"%s\"\n", minimal, bad[i].v);
		expect_error(text, bad[i].want);
	}
}

/* A file that cannot be read is a configuration error (exit 3), whatever the
 * errno; config_read without checks needs neither disks nor keys. */
static const char pg_cfg[] =
	"state_dir: /var/lib/bascule\n"
	"groups:\n"
	"  - name: App-1\n"
	"    sources:\n"
	"      - name: db\n"
	"        type: postgres\n"
	"        conninfo: \"host=/var/run/postgresql user=bascule\"\n"
	"        synchronous: remote\n"
	"      - name: root\n"
	"        disk: /var/lib/libvirt/images/web1.img\n"
	"targets:\n"
	"  - name: secondary\n"
	"    url: local:/srv/bascule/replica\n"
	"    postgres_standby: hot\n";

static char *pg_replace(const char *from, const char *to)
{
	static char out[4096];
	const char *p = strstr(pg_cfg, from);

	assert_non_null(p);
	snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - pg_cfg), pg_cfg, to, p + strlen(from));
	return out;
}

/* A postgres source beside a disk: its defaults (slot and
 * application_name derived, wal_interval, base_interval, wal_spool_max),
 * and every bad value named with its position. */
static void test_postgres(void **state)
{
	struct config *c = NULL;
	const struct cfg_source *s, *d;

	assert_int_equal(parse(pg_cfg, &c), 0);
	s = CFG_SOURCE(CFG_GROUP(c, 0), 0);
	d = CFG_SOURCE(CFG_GROUP(c, 0), 1);
	assert_int_equal(s->kind, SOURCE_POSTGRES);
	assert_int_equal(d->kind, SOURCE_DISK);
	assert_string_equal(s->slot, "bascule_app_1_db");
	assert_string_equal(s->application_name, "bascule_app_1_db");
	assert_true(s->remote);
	assert_int_equal(s->wal_interval, 200000);
	assert_int_equal(s->base_interval, 24ULL * 3600 * 1000000);
	assert_int_equal(s->wal_spool_max, 1ULL << 30);
	assert_string_equal(s->checkpoint, "fast");
	assert_string_equal(CFG_TARGET(c, 0)->postgres_standby, "hot");
	assert_true(config_has_postgres(c));
	config_free(c);

	expect_error(pg_replace("        conninfo: \"host=/var/run/postgresql user=bascule\"\n", ""),
		     "test.yaml:5:9: postgres source 'db' of group 'App-1' is missing the required key 'conninfo'");
	expect_error(pg_replace("user=bascule\"", "user=bascule password=x\""),
		     "test.yaml:5:9: source 'db': conninfo holds a password");
	expect_error(pg_replace("user=bascule\"", "user=bascule nosuchkey=1\""),
		     "test.yaml:5:9: source 'db': conninfo does not parse");
	expect_error(pg_replace("synchronous: remote", "synchronous: always"),
		     "test.yaml:8:22: synchronous must be one of: local, remote (got 'always')");
	expect_error(pg_replace("synchronous: remote", "wal_interval: 1ms"),
		     "test.yaml:8:23: wal_interval must be between");
	expect_error(pg_replace("synchronous: remote", "wal_spool_max: 1MiB"),
		     "test.yaml:8:24: wal_spool_max must be between");
	expect_error(pg_replace("synchronous: remote", "slot: Bad-Slot"),
		     "test.yaml:5:9: source 'db': slot 'Bad-Slot' is not a slot name PostgreSQL accepts");
	expect_error(pg_replace("synchronous: remote", "disk: /dev/sda"),
		     "test.yaml:5:9: source 'db' is a postgres source: it has no disk");
	expect_error(pg_replace("        disk: /var/lib/libvirt/images/web1.img\n",
				"        disk: /var/lib/libvirt/images/web1.img\n        slot: x\n"),
		     "test.yaml:9:9: source 'root': conninfo, slot and application_name are for sources of type postgres");
	expect_error(pg_replace("postgres_standby: hot", "postgres_standby: warm"),
		     "test.yaml:14:23: postgres_standby must be one of: hot, cold (got 'warm')");
	expect_error(pg_replace("      - name: root\n        disk: /var/lib/libvirt/images/web1.img\n",
				"      - name: db2\n        type: postgres\n        slot: bascule_app_1_db\n"
				"        conninfo: \"host=/var/run/postgresql user=bascule\"\n"),
		     "test.yaml:9:9: source 'db2': slot bascule_app_1_db of this cluster is already source 'db' of group 'App-1'");
	expect_error(pg_replace("    postgres_standby: hot\n", "    type: vault\n    vault_key: /k\n    postgres_standby: cold\n"),
		     "test.yaml:12:5: target 'secondary': postgres_standby is for targets of type replica");
}

static void test_unreadable(void **state)
{
	char dir[] = "/tmp/bascule-cfg.XXXXXX", path[600], text[8192];
	struct config *c = NULL;
	FILE *f;
	int r;
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/none.yaml", dir);
	r = config_load(path, &c);
	assert_int_equal(r, -EINVAL);
	assert_int_equal(err_exit_code(r), EXIT_CONFIG);
	assert_non_null(strstr(err_msg(r), "cannot read configuration"));
	assert_non_null(strstr(err_msg(r), "No such file"));
	assert_null(c);
	snprintf(path, sizeof(path), "%s/b.yaml", dir);
	snprintf(text, sizeof(text), "key: %s/no.key\ncontrol_socket: /run/x.sock\ngroups:\n  - name: g\n"
		 "    sources:\n      - name: s\n        disk: %s/no.img\ntargets:\n  - name: t\n"
		 "    url: local:/r\n", dir, dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(config_read(path, true, &c), -ENOKEY);
	assert_int_equal(config_read(path, false, &c), 0);
	assert_string_equal(c->control_socket, "/run/x.sock");
	config_free(c);
	unlink(path);
	rmdir(dir);
}

/* An s3:// vault target: what it needs, what is refused, the lock derived
 * from the retention. */
static void test_s3_vault(void **state)
{
	static const char vault[] =
		"  - name: offsite\n"
		"    type: vault\n"
		"    url: s3://bascule-vault/site-a\n"
		"    s3_endpoint: https://s3.example\n"
		"    s3_credentials: /etc/bascule/s3.credentials\n"
		"    vault_key: /etc/bascule/vault.key\n"
		"    retention: {all: 2d, daily: 30d, monthly: 12m}\n";
	char text[4096], bad[4096];
	struct config *c = NULL;
	const char *mode;
	uint64_t secs;
	(void)state;

	snprintf(text, sizeof(text), "%s%s", minimal, vault);
	assert_int_equal(parse(text, &c), 0);
	config_vault_lock(CFG_TARGET(c, 1), &mode, &secs);
	assert_string_equal(mode, "COMPLIANCE");
	assert_int_equal(secs, 12 * (30 * 86400ULL + 37800) + 86400); /* 12 months of 30.44 days, + 1d */
	config_free(c);

	snprintf(bad, sizeof(bad), "%s%s    object_lock: governance\n    lock_margin: 1h\n", minimal, vault);
	assert_int_equal(parse(bad, &c), 0);
	config_vault_lock(CFG_TARGET(c, 1), &mode, &secs);
	assert_string_equal(mode, "GOVERNANCE");
	config_free(c);
	snprintf(bad, sizeof(bad), "%s%s    object_lock: none\n", minimal, vault);
	assert_int_equal(parse(bad, &c), 0);
	config_vault_lock(CFG_TARGET(c, 1), &mode, &secs);
	assert_null(mode);
	config_free(c);

	snprintf(bad, sizeof(bad), "%s%s    object_lock: sometimes\n", minimal, vault);
	expect_error(bad, "object_lock must be one of: compliance");
	/* s3_url_style: a choice of two; virtual needs an endpoint by name */
	snprintf(bad, sizeof(bad), "%s%s    s3_url_style: virtual\n", minimal, vault);
	assert_int_equal(parse(bad, &c), 0);
	assert_string_equal(CFG_TARGET(c, 1)->s3_url_style, "virtual");
	config_free(c);
	snprintf(bad, sizeof(bad), "%s%s    s3_url_style: sideways\n", minimal, vault);
	expect_error(bad, "s3_url_style must be one of: path");
	snprintf(bad, sizeof(bad), "%s%s    s3_url_style: virtual\n", minimal, vault);
	memcpy(strstr(bad, "https://s3.example"), "https://10.0.0.7:8", 18);
	expect_error(bad, "s3_url_style virtual names the bucket in the host");
	snprintf(bad, sizeof(bad), "%s%s    s3_url_style: path\n", minimal, vault);
	memcpy(strstr(bad, "https://s3.example"), "https://10.0.0.7:8", 18);
	assert_int_equal(parse(bad, &c), 0);
	config_free(c);
	snprintf(bad, sizeof(bad), "%s", text);
	memcpy(strstr(bad, "    s3_endpoint"), "    #3", 6);
	expect_error(bad, "an s3:// vault needs s3_endpoint");
	snprintf(bad, sizeof(bad), "%s%s", minimal, vault);
	memcpy(strstr(bad, "https://s3"), "ftp://s3.", 9);
	expect_error(bad, "s3_endpoint must be https://");
	snprintf(bad, sizeof(bad), "%s%s", minimal, vault);
	memcpy(strstr(bad, "s3://bascule-vault"), "s3://BA", 7);
	expect_error(bad, "a bucket name is lower-case letters");
	snprintf(bad, sizeof(bad), "%s%s", minimal, vault);
	memcpy(strstr(bad, "    retention"), "    #", 5);
	expect_error(bad, "with object_lock compliance, objects are locked for the longest retention span");
	/* a lock reaching 2106 (Ceph issue 54675) */
	snprintf(bad, sizeof(bad), "%s%s", minimal, vault);
	memcpy(strstr(bad, "monthly: 12m"), "monthly: 99y", 12);
	expect_error(bad, "2106");
	/* s3 keys elsewhere */
	snprintf(bad, sizeof(bad), "%s    s3_region: eu-west-3\n", minimal);
	expect_error(bad, "are for targets of type vault");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_bad_duration),
		cmocka_unit_test(test_bad_rate),
		cmocka_unit_test(test_no_block_size),
		cmocka_unit_test(test_out_of_bounds),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_duplicate),
		cmocka_unit_test(test_bad_name),
		cmocka_unit_test(test_relative_path),
		cmocka_unit_test(test_bad_url),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_missing_files),
		cmocka_unit_test(test_metrics_listen),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_postgres),
		cmocka_unit_test(test_s3_vault),
		cmocka_unit_test(test_io_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
