/* key.h - secret key files.  A key file is one text line
 *   "bascule-site-key-v1 <base64 of 32 random bytes>"
 * readable by its owner only.  Keys live in sodium_malloc'd memory and are
 * wiped when freed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KEY_BYTES 32
#define KEY_ID_BYTES 8

struct site_key {
	uint8_t k[KEY_BYTES];
};

/* Refuse (with -EPERM and a sentence saying what to do) a secret file that
 * is not a regular file or is readable or writable by group or others. */
int key_check_secret_file(const char *path, int fd);
/* Load a site key; *ret is sodium_malloc'd, free with key_free().  Errors:
 * -ENOKEY (no such file), -EPERM (unsafe mode), -EKEYREJECTED (not a key file). */
int key_load(const char *path, struct site_key **ret);
void key_free(struct site_key *k);
/* Create PATH (must not exist) with a fresh random key, mode 0600, durable. */
int key_generate(const char *path);
/* A public fingerprint of the key: a keyed hash of a constant, safe to print
 * and to send in the clear; two sites with the same key have the same id. */
void key_id(const struct site_key *k, uint8_t ret[KEY_ID_BYTES]);
/* N bytes (16 to 64) of a key for one purpose, derived from the site key:
 * a keyed BLAKE2b of PURPOSE ("replica files v2"), so that keys derived
 * for different purposes are unrelated and none reveals the site key. */
void key_derive(const struct site_key *k, const char *purpose, uint8_t *ret, size_t n);
/* Hex of the key id for messages ("3f9a…"). */
void key_id_hex(const struct site_key *k, char ret[2 * KEY_ID_BYTES + 1]);
/* Read a one-line key file "HEADER<base64>" holding exactly N bytes into
 * OUT; SECRET also demands mode 0600.  WHAT ("a Bascule site key") and MAKE
 * (the command that creates one) are for the messages.  A missing file is
 * -ENOKEY, like every other key error (exit 4). */
int key_file_read(const char *path, const char *header, bool secret, const char *what,
		  const char *make, uint8_t *out, size_t n);
/* The same check of a key's text DATA (LEN bytes, read by the caller from
 * NAME, e.g. an object of a store): -EKEYREJECTED with a sentence naming
 * NAME when it is not one line "HEADER<base64>" of N bytes. */
int key_text_parse(const char *name, const char *data, size_t len, const char *header, const char *what,
		   const char *make, uint8_t *out, size_t n);
/* Create PATH (must not exist) holding "HEADER<base64 of DATA>", durable. */
int key_file_write(const char *path, const char *header, const uint8_t *data, size_t n, mode_t mode);
