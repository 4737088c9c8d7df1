/* pwseal.c - secrets sealed with a passphrase (Argon2id + secretbox). */
#include "pwseal.h"
#include "err.h"
#include "fsutil.h"
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BOX_MAX (PWSEAL_MAX_SECRET + crypto_secretbox_MACBYTES)

static int stretch(const char *passphrase, const uint8_t salt[crypto_pwhash_SALTBYTES],
		   unsigned long long ops, size_t mem, uint8_t out[crypto_secretbox_KEYBYTES])
{
	if (crypto_pwhash(out, crypto_secretbox_KEYBYTES, passphrase, strlen(passphrase), salt, ops,
			  mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return err_set(ENOMEM, "Argon2id needs %zu MiB of memory, which is not available",
			       mem >> 20);
	return 0;
}

int pwseal_write(const char *path, const char *header, const uint8_t *secret, size_t n,
		 const char *passphrase, bool exclusive)
{
	uint8_t salt[crypto_pwhash_SALTBYTES], nonce[crypto_secretbox_NONCEBYTES];
	uint8_t box[BOX_MAX], key[crypto_secretbox_KEYBYTES];
	char b1[64], b2[64], b3[160], line[512];
	unsigned long long ops = crypto_pwhash_OPSLIMIT_MODERATE;
	size_t mem = crypto_pwhash_MEMLIMIT_MODERATE;
	int r, len;

	if (n > PWSEAL_MAX_SECRET)
		return -EINVAL;
	if (strlen(passphrase) < PWSEAL_MIN_PASSPHRASE)
		return err_set(EINVAL, "the passphrase must be at least %d characters long",
			       PWSEAL_MIN_PASSPHRASE);
	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	randombytes_buf(salt, sizeof(salt));
	randombytes_buf(nonce, sizeof(nonce));
	if ((r = stretch(passphrase, salt, ops, mem, key)) < 0)
		return r;
	crypto_secretbox_easy(box, secret, n, nonce, key);
	sodium_memzero(key, sizeof(key));
	sodium_bin2base64(b1, sizeof(b1), salt, sizeof(salt), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b2, sizeof(b2), nonce, sizeof(nonce), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b3, sizeof(b3), box, n + crypto_secretbox_MACBYTES, sodium_base64_VARIANT_ORIGINAL);
	len = snprintf(line, sizeof(line), "%s %llu %zu %s %s %s\n", header, ops, mem, b1, b2, b3);
	if (!exclusive) {
		r = fs_write_atomic(path, line, (size_t)len, 0600);
		return r < 0 ? err_wrap(r, "cannot write %s", path) : 0;
	}
	{
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return err_set(errno, "cannot create %s: %s%s", path, strerror(errno),
				       errno == EEXIST ? " (refusing to overwrite an existing key)" : "");
		r = fs_write_full(fd, line, (size_t)len) < 0 || fsync(fd) < 0
			    ? err_set(errno, "cannot write %s: %s", path, strerror(errno)) : 0;
		close(fd);
		if (r < 0) {
			unlink(path);
			return r;
		}
		return fs_fsync_parent(path);
	}
}

int pwseal_open(const char *path, const char *header, const char *what, const char *passphrase,
		uint8_t *out, size_t n)
{
	char *text = NULL, hdr[64], b1[64], b2[64], b3[160];
	unsigned long long ops;
	size_t mem, n1 = 0, n2 = 0, n3 = 0, len;
	uint8_t salt[crypto_pwhash_SALTBYTES], nonce[crypto_secretbox_NONCEBYTES];
	uint8_t box[BOX_MAX], key[crypto_secretbox_KEYBYTES], plain[PWSEAL_MAX_SECRET];
	int r;

	if (n > PWSEAL_MAX_SECRET)
		return -EINVAL;
	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	if ((r = fs_read_all(path, 4096, &text, &len)) < 0)
		return err_set(r == -ENOENT ? ENOKEY : -r, "cannot read %s: %s", path, strerror(-r));
	r = sscanf(text, "%63s %llu %zu %63s %63s %159s", hdr, &ops, &mem, b1, b2, b3);
	free(text);
	if (r != 6 || strcmp(hdr, header) != 0 || ops < crypto_pwhash_OPSLIMIT_MIN ||
	    ops > crypto_pwhash_OPSLIMIT_MAX || mem < crypto_pwhash_MEMLIMIT_MIN || mem > (size_t)4 << 30 ||
	    sodium_base642bin(salt, sizeof(salt), b1, strlen(b1), NULL, &n1, NULL,
			      sodium_base64_VARIANT_ORIGINAL) || n1 != sizeof(salt) ||
	    sodium_base642bin(nonce, sizeof(nonce), b2, strlen(b2), NULL, &n2, NULL,
			      sodium_base64_VARIANT_ORIGINAL) || n2 != sizeof(nonce) ||
	    sodium_base642bin(box, sizeof(box), b3, strlen(b3), NULL, &n3, NULL,
			      sodium_base64_VARIANT_ORIGINAL) || n3 != n + crypto_secretbox_MACBYTES)
		return err_set(EKEYREJECTED, "%s is not %s", path, what);
	if ((r = stretch(passphrase, salt, ops, mem, key)) < 0)
		return r;
	r = crypto_secretbox_open_easy(plain, box, n3, nonce, key);
	sodium_memzero(key, sizeof(key));
	if (r != 0)
		return err_set(EKEYREJECTED, "wrong passphrase for %s (or the file was altered)", path);
	memcpy(out, plain, n);
	sodium_memzero(plain, sizeof(plain));
	return 0;
}
