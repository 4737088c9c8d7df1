/* vaultkey.c - vault key, derived keys, public key, escrow. */
#include "vaultkey.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
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

static int stretch(const char *passphrase, const uint8_t salt[crypto_pwhash_SALTBYTES],
		   unsigned long long ops, size_t mem, uint8_t out[crypto_secretbox_KEYBYTES])
{
	if (crypto_pwhash(out, crypto_secretbox_KEYBYTES, passphrase, strlen(passphrase), salt, ops,
			  mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return err_set(ENOMEM, "Argon2id needs %zu MiB of memory, which is not available",
			       mem >> 20);
	return 0;
}

int vaultkey_escrow_write(const struct vault_key *k, const char *path, const char *passphrase)
{
	uint8_t salt[crypto_pwhash_SALTBYTES], nonce[crypto_secretbox_NONCEBYTES];
	uint8_t box[VAULT_KEY_BYTES + crypto_secretbox_MACBYTES], key[crypto_secretbox_KEYBYTES];
	char b1[64], b2[64], b3[128], line[512];
	unsigned long long ops = crypto_pwhash_OPSLIMIT_MODERATE;
	size_t mem = crypto_pwhash_MEMLIMIT_MODERATE;
	int r;

	if (strlen(passphrase) < 12)
		return err_set(EINVAL, "the escrow passphrase must be at least 12 characters long");
	randombytes_buf(salt, sizeof(salt));
	randombytes_buf(nonce, sizeof(nonce));
	if ((r = stretch(passphrase, salt, ops, mem, key)) < 0)
		return r;
	crypto_secretbox_easy(box, k->master, VAULT_KEY_BYTES, nonce, key);
	sodium_memzero(key, sizeof(key));
	sodium_bin2base64(b1, sizeof(b1), salt, sizeof(salt), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b2, sizeof(b2), nonce, sizeof(nonce), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b3, sizeof(b3), box, sizeof(box), sodium_base64_VARIANT_ORIGINAL);
	snprintf(line, sizeof(line), VE_HEADER " %llu %zu %s %s %s\n", ops, mem, b1, b2, b3);
	r = fs_write_atomic(path, line, strlen(line), 0600);
	return r < 0 ? err_wrap(r, "cannot write the escrow file %s", path) : 0;
}

int vaultkey_escrow_open(const char *path, const char *passphrase, struct vault_key **ret)
{
	char *text = NULL, b1[64], b2[64], b3[128];
	unsigned long long ops;
	size_t mem, n1 = 0, n2 = 0, n3 = 0, len;
	uint8_t salt[crypto_pwhash_SALTBYTES], nonce[crypto_secretbox_NONCEBYTES];
	uint8_t box[VAULT_KEY_BYTES + crypto_secretbox_MACBYTES], key[crypto_secretbox_KEYBYTES];
	struct vault_key *k;
	int r;

	if ((r = fs_read_all(path, 4096, &text, &len)) < 0)
		return err_set(-r, "cannot read the escrow file %s: %s", path, strerror(-r));
	r = sscanf(text, VE_HEADER " %llu %zu %63s %63s %127s", &ops, &mem, b1, b2, b3);
	free(text);
	if (r != 5 || ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_MAX ||
	    mem < crypto_pwhash_MEMLIMIT_MIN || mem > (size_t)4 << 30 ||
	    sodium_base642bin(salt, sizeof(salt), b1, strlen(b1), NULL, &n1, NULL,
			      sodium_base64_VARIANT_ORIGINAL) || n1 != sizeof(salt) ||
	    sodium_base642bin(nonce, sizeof(nonce), b2, strlen(b2), NULL, &n2, NULL,
			      sodium_base64_VARIANT_ORIGINAL) || n2 != sizeof(nonce) ||
	    sodium_base642bin(box, sizeof(box), b3, strlen(b3), NULL, &n3, NULL,
			      sodium_base64_VARIANT_ORIGINAL) || n3 != sizeof(box))
		return err_set(EKEYREJECTED, "%s is not a Bascule vault escrow file", path);
	if (!(k = vk_new()))
		return -ENOMEM;
	if ((r = stretch(passphrase, salt, ops, (size_t)mem, key)) < 0) {
		vaultkey_free(k);
		return r;
	}
	r = crypto_secretbox_open_easy(k->master, box, sizeof(box), nonce, key);
	sodium_memzero(key, sizeof(key));
	if (r != 0) {
		vaultkey_free(k);
		return err_set(EKEYREJECTED, "wrong passphrase for %s (or the file was altered)", path);
	}
	*ret = k;
	return 0;
}
