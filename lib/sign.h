/* sign.h - Ed25519 signing keys for drill reports (libsodium crypto_sign).
 *   secret: "bascule-signing-key-v1 <base64 of the 64-byte secret key>", 0600
 *   public: "bascule-signing-pub-v1 <base64 of the 32-byte public key>" */
#pragma once
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#define SIGN_SK_BYTES crypto_sign_SECRETKEYBYTES
#define SIGN_PK_BYTES crypto_sign_PUBLICKEYBYTES
#define SIGN_BYTES crypto_sign_BYTES

/* Write PATH (secret, 0600) and PATH.pub; neither may exist. */
int sign_keygen(const char *path);
int sign_load_secret(const char *path, uint8_t sk[SIGN_SK_BYTES]);
int sign_load_public(const char *path, uint8_t pk[SIGN_PK_BYTES]);
/* 16 hex digits naming a public key (BLAKE2b), for messages and reports. */
void sign_key_id(const uint8_t pk[SIGN_PK_BYTES], char ret[17]);
