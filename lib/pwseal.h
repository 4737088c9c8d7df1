/* pwseal.h - a small secret sealed with a passphrase, in a one-line file:
 *   "HEADER OPS MEM <salt> <nonce> <box>"   (base64 fields)
 * The passphrase is stretched with Argon2id (OPS, MEM as written, so that a
 * file stays readable when the defaults grow), the secret sealed with
 * XSalsa20-Poly1305 (crypto_secretbox).  Used by the vault key's escrow copy
 * and by a hybrid-PRA client's decryption key (FILE.key). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PWSEAL_MIN_PASSPHRASE 12
#define PWSEAL_MAX_SECRET 64

/* Seal the N bytes of SECRET (N <= PWSEAL_MAX_SECRET) into PATH under
 * HEADER (no trailing space).  EXCLUSIVE: PATH must not exist (-EEXIST),
 * else it is replaced atomically.  Mode 0600, durable.  -EINVAL for a
 * passphrase shorter than PWSEAL_MIN_PASSPHRASE. */
int pwseal_write(const char *path, const char *header, const uint8_t *secret, size_t n,
		 const char *passphrase, bool exclusive);
/* Open PATH (written by pwseal_write with HEADER and N) into OUT (N bytes;
 * untouched on failure).  -EKEYREJECTED "PATH is not WHAT" for another kind
 * of file, -EKEYREJECTED "wrong passphrase" when the box does not open. */
int pwseal_open(const char *path, const char *header, const char *what, const char *passphrase,
		uint8_t *out, size_t n);
