/* Unit tests: the vault key (issue 6): derived keys, the public verify key,
 * the Argon2id escrow copy (round trip, wrong passphrase, altered file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "err.h"
#include "fsutil.h"
#include "vaultkey.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/bascule-vk-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void path(char *buf, const char *name)
{
	snprintf(buf, 256, "%s/%s", dir, name);
}

static void test_keys(void **state)
{
	char p[256], pub[300];
	struct vault_key *k = NULL, *l = NULL;
	uint8_t a[32], b[32], pk1[32], pk2[32];
	struct stat st;
	(void)state;
	path(p, "v.key");
	assert_int_equal(vaultkey_generate(p, &k), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(pub, sizeof(pub), "%s.pub", p);
	assert_int_equal(access(pub, R_OK), 0);
	assert_int_equal(vaultkey_load(p, &l), 0);
	assert_memory_equal(k->master, l->master, VAULT_KEY_BYTES);
	/* every derived key differs from the others and from the master */
	vaultkey_derive(k, VK_DATA, a);
	vaultkey_derive(k, VK_NAMES, b);
	assert_memory_not_equal(a, b, 32);
	assert_memory_not_equal(a, k->master, 32);
	vaultkey_public(k, pk1);
	vaultkey_public(l, pk2);
	assert_memory_equal(pk1, pk2, 32);
	/* never overwritten */
	vaultkey_free(l);
	l = NULL;
	assert_int_equal(vaultkey_generate(p, &l), -EEXIST);
	vaultkey_free(k);
	/* unsafe mode refused */
	chmod(p, 0644);
	assert_int_equal(vaultkey_load(p, &l), -EPERM);
}

static void test_escrow(void **state)
{
	char p[256], e[256];
	struct vault_key *k = NULL, *r = NULL;
	char *text;
	size_t len;
	FILE *f;
	(void)state;
	path(p, "e.key");
	path(e, "e.key.escrow");
	assert_int_equal(vaultkey_generate(p, &k), 0);
	assert_int_equal(vaultkey_escrow_write(k, e, "short"), -EINVAL);
	assert_int_equal(vaultkey_escrow_write(k, e, "a long enough passphrase"), 0);
	assert_int_equal(vaultkey_escrow_open(e, "a long enough passphrase", &r), 0);
	assert_memory_equal(k->master, r->master, VAULT_KEY_BYTES);
	vaultkey_free(r);
	r = NULL;
	assert_int_equal(vaultkey_escrow_open(e, "a long enough passphrasE", &r), -EKEYREJECTED);
	assert_null(r);
	/* one character of the sealed key changed: refused, not a wrong key */
	assert_int_equal(fs_read_all(e, 4096, &text, &len), 0);
	text[len - 3] = text[len - 3] == 'A' ? 'B' : 'A';
	f = fopen(e, "w");
	fwrite(text, 1, len, f);
	fclose(f);
	free(text);
	assert_int_equal(vaultkey_escrow_open(e, "a long enough passphrase", &r), -EKEYREJECTED);
	vaultkey_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_escrow),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
