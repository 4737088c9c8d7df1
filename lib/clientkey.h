/* clientkey.h - a hybrid-PRA client's keys (docs/hybrid.md, "Keys"):
 *   FILE.key   the decryption secret (X25519), sealed with a passphrase
 *              (pwseal.h): "bascule-client-key-v1 OPS MEM salt nonce box",
 *              mode 0600, meant to be kept offline; only restore needs it
 *   FILE.pub   "bascule-client-pub-v1 <base64 of X25519 pk | Ed25519 pk>":
 *              what ship encrypts to, and what the operator verifies with
 *   FILE.sign  "bascule-client-sign-v1 <base64 of the Ed25519 secret key>",
 *              mode 0600: the cron host signs each night with it
 *   opened     "bascule-client-opened-key-v1 <base64 of the X25519 secret>",
 *              mode 0600 (bascule intake open-key): FILE.key opened once,
 *              its passphrase and Argon2id behind it, for the hours of a
 *              recovery; restore reads it as it reads FILE.key
 * The cron host keeps FILE.pub and FILE.sign, neither of which decrypts.
 * Every loader names a swapped file ("X is the client's signing key, not
 * its public key") and all key errors are -ENOKEY/-EPERM/-EKEYREJECTED
 * (exit 4). */
#pragma once
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

#define CLIENT_BOX_PK crypto_box_PUBLICKEYBYTES
#define CLIENT_BOX_SK crypto_box_SECRETKEYBYTES

struct client_pub {
	uint8_t box_pk[CLIENT_BOX_PK];            /* X25519: nights are sealed to it */
	uint8_t sign_pk[crypto_sign_PUBLICKEYBYTES]; /* Ed25519: manifests verify with it */
};

/* Write BASE.key (sealed with PASSPHRASE), BASE.pub and BASE.sign; none may
 * exist (-EEXIST, nothing written).  On a later failure what was written is
 * removed. */
int clientkey_generate(const char *base, const char *passphrase);
int clientkey_load_pub(const char *path, struct client_pub *ret);
/* The same from TEXT (LEN bytes) read elsewhere (an object of an S3
 * intake) under NAME: -EKEYREJECTED naming it when it is not a public key. */
int clientkey_parse_pub(const char *name, const char *text, size_t len, struct client_pub *ret);
/* The 64-byte Ed25519 secret key; the caller wipes it. */
int clientkey_load_sign(const char *path, uint8_t ret[crypto_sign_SECRETKEYBYTES]);
/* Open the decryption secret with PASSPHRASE (not read for an opened key:
 * NULL then will do); the caller wipes RET. */
int clientkey_load_secret(const char *path, const char *passphrase, uint8_t ret[CLIENT_BOX_SK]);
/* Whether PATH holds an opened decryption key (no passphrase to ask). */
bool clientkey_is_opened(const char *path);
/* Write SK, opened, to the new file PATH (mode 0600, never overwritten). */
int clientkey_write_opened(const char *path, const uint8_t sk[CLIENT_BOX_SK]);
/* -EKEYREJECTED unless SK (a signing secret) belongs to PUB. */
int clientkey_check_pair(const struct client_pub *pub, const uint8_t sk[crypto_sign_SECRETKEYBYTES],
			 const char *pub_path, const char *sign_path);
/* 16 hex digits naming a client public key, for messages and listings. */
void clientkey_id(const struct client_pub *pub, char ret[17]);
