/* vaultkey.h - the vault key (issue 6): one secret that never leaves the
 * primary, from which every vault key is derived (libsodium crypto_kdf,
 * context "bscvault"), plus its public manifest-verify key and a
 * passphrase-protected escrow copy (Argon2id + XSalsa20-Poly1305).
 *   FILE         "bascule-vault-key-v1 <base64 of 32 bytes>", mode 0600
 *   FILE.pub     "bascule-vault-pub-v1 <base64 Ed25519 public key>"
 *   FILE.escrow  "bascule-vault-escrow-v1 OPS MEM <salt> <nonce> <box>" */
#pragma once
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#define VAULT_KEY_BYTES 32

enum vault_subkey {
	VK_SIGN_SEED = 1, /* Ed25519 seed: manifests are signed with it */
	VK_DATA = 2,      /* object encryption (XChaCha20-Poly1305) */
	VK_NAMES = 3,     /* keyed BLAKE2b of object names and dedup ids */
	VK_MANIFEST = 4,  /* manifest encryption */
};

struct vault_key {
	uint8_t master[VAULT_KEY_BYTES];
};

/* Write a new vault key to PATH (must not exist, 0600) and PATH.pub. */
int vaultkey_generate(const char *path, struct vault_key **ret);
int vaultkey_load(const char *path, struct vault_key **ret);
void vaultkey_free(struct vault_key *k);
void vaultkey_derive(const struct vault_key *k, enum vault_subkey id, uint8_t out[32]);
void vaultkey_public(const struct vault_key *k, uint8_t pk[crypto_sign_PUBLICKEYBYTES]);
/* Read a verify key written by vaultkey_write_public. */
int vaultkey_load_public(const char *path, uint8_t pk[crypto_sign_PUBLICKEYBYTES]);
/* Write PATH.pub for K (must not exist). */
int vaultkey_write_public(const struct vault_key *k, const char *path);
/* Escrow: K sealed with a key stretched from PASSPHRASE (Argon2id). */
int vaultkey_escrow_write(const struct vault_key *k, const char *path, const char *passphrase);
int vaultkey_escrow_open(const char *path, const char *passphrase, struct vault_key **ret);
