/* vaultkey.c - vault key, derived keys, public key, escrow. */
#include "vaultkey.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "pwseal.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VK_HEADER "bascule-vault-key-v1 "
#define VP_HEADER "bascule-vault-pub-v1 "
#define VE_HEADER "bascule-vault-escrow-v1"
#define MAKE "bascule keygen vault FILE"
#define KDF_CTX "bscvault"

static struct vault_key *vk_new(void)
{
	if (sodium_init() < 0)
		return NULL;
	return sodium_malloc(sizeof(struct vault_key));
}

void vaultkey_free(struct vault_key *k)
{
	if (k)
		sodium_free(k);
}

void vaultkey_derive(const struct vault_key *k, enum vault_subkey id, uint8_t out[32])
{
	crypto_kdf_derive_from_key(out, 32, (uint64_t)id, KDF_CTX, k->master);
}

void vaultkey_public(const struct vault_key *k, uint8_t pk[crypto_sign_PUBLICKEYBYTES])
{
	uint8_t seed[32], sk[crypto_sign_SECRETKEYBYTES];

	vaultkey_derive(k, VK_SIGN_SEED, seed);
	crypto_sign_seed_keypair(pk, sk, seed);
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
}

int vaultkey_write_public(const struct vault_key *k, const char *path)
{
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
	char pub[PATH_MAX];

	if (snprintf(pub, sizeof(pub), "%s.pub", path) >= (int)sizeof(pub))
		return -ENAMETOOLONG;
	vaultkey_public(k, pk);
	return key_file_write(pub, VP_HEADER, pk, sizeof(pk), 0644);
}

int vaultkey_generate(const char *path, struct vault_key **ret)
{
	struct vault_key *k = vk_new();
	char pub[PATH_MAX];
	int r;

	if (!k)
		return -ENOMEM;
	if (snprintf(pub, sizeof(pub), "%s.pub", path) >= (int)sizeof(pub) || access(pub, F_OK) == 0) {
		vaultkey_free(k);
		return err_set(EEXIST, "%s.pub exists already (refusing to overwrite a key)", path);
	}
	randombytes_buf(k->master, sizeof(k->master));
	if ((r = key_file_write(path, VK_HEADER, k->master, sizeof(k->master), 0600)) < 0 ||
	    (r = vaultkey_write_public(k, path)) < 0) {
		if (r != -EEXIST)
			unlink(path);
		vaultkey_free(k);
		return r;
	}
	*ret = k;
	return 0;
}

int vaultkey_load(const char *path, struct vault_key **ret)
{
	struct vault_key *k = vk_new();
	int r;

	if (!k)
		return -ENOMEM;
	if ((r = key_file_read(path, VK_HEADER, true, "a Bascule vault key", MAKE, k->master,
			       sizeof(k->master))) < 0) {
		vaultkey_free(k);
		return r;
	}
	*ret = k;
	return 0;
}

int vaultkey_load_public(const char *path, uint8_t pk[crypto_sign_PUBLICKEYBYTES])
{
	return key_file_read(path, VP_HEADER, false, "a Bascule vault verify key (FILE.pub)", MAKE, pk,
			     crypto_sign_PUBLICKEYBYTES);
}

int vaultkey_escrow_write(const struct vault_key *k, const char *path, const char *passphrase)
{
	int r = pwseal_write(path, VE_HEADER, k->master, VAULT_KEY_BYTES, passphrase, false);
	return r == -EINVAL ? err_set(EINVAL, "the escrow passphrase must be at least %d characters long",
				      PWSEAL_MIN_PASSPHRASE) : r;
}

int vaultkey_escrow_open(const char *path, const char *passphrase, struct vault_key **ret)
{
	struct vault_key *k = vk_new();
	int r;

	if (!k)
		return -ENOMEM;
	if ((r = pwseal_open(path, VE_HEADER, "a Bascule vault escrow file", passphrase, k->master,
			     VAULT_KEY_BYTES)) < 0) {
		vaultkey_free(k);
		return r;
	}
	*ret = k;
	return 0;
}
