/* key.c - generate, check and load site key files. */
#include "key.h"
#include "err.h"
#include "fsutil.h"
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_HEADER "bascule-site-key-v1 "

int key_check_secret_file(const char *path, int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return err_set(errno, "cannot stat %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(EPERM, "secret file %s is not a regular file", path);
	if (st.st_mode & 077)
		return err_set(EPERM,
			       "secret file %s is accessible by group or others (mode %04o); "
			       "refusing to use it: run 'chmod 600 %s' and check who could have read it",
			       path, (unsigned)(st.st_mode & 07777), path);
	return 0;
}

void key_free(struct site_key *k)
{
	if (k)
		sodium_free(k);
}

int key_text_parse(const char *name, const char *data, size_t len, const char *header, const char *what,
		   const char *make, uint8_t *out, size_t n)
{
	char text[512];
	size_t binlen = 0;
	int r = 0;

	if (len >= sizeof(text))
		len = sizeof(text) - 1;
	memcpy(text, data, len);
	text[len] = 0;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = 0;
	if (strlen(text) != len || strncmp(text, header, strlen(header)) != 0 ||
	    sodium_base642bin(out, n, text + strlen(header), strlen(text + strlen(header)), NULL,
			      &binlen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    binlen != n)
		r = err_set(EKEYREJECTED, "%s is not %s (expected one line '%s<base64>'; create "
					  "one with '%s')", name, what, header, make);
	sodium_memzero(text, sizeof(text));
	return r;
}

int key_file_read(const char *path, const char *header, bool secret, const char *what,
		  const char *make, uint8_t *out, size_t n)
{
	char text[512];
	ssize_t len;
	int fd, r = 0;

	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		/* A key that is not there is a key error (exit 4), not an I/O failure. */
		int e = errno, missing = e == ENOENT || e == ENOTDIR;
		return err_set(e == ELOOP ? EPERM : missing ? ENOKEY : e, "cannot open key file %s: %s%s%s%s",
			       path, strerror(e), missing ? " (create one with '" : "", missing ? make : "",
			       missing ? "')" : "");
	}
	if (secret && (r = key_check_secret_file(path, fd)) < 0)
		goto out;
	len = fs_pread_full(fd, text, sizeof(text) - 1, 0);
	if (len < 0) {
		r = err_set((int)len, "cannot read key file %s: %s", path, strerror((int)-len));
		goto out;
	}
	r = key_text_parse(path, text, (size_t)len, header, what, make, out, n);
out:
	sodium_memzero(text, sizeof(text));
	close(fd);
	return r;
}

int key_load(const char *path, struct site_key **ret)
{
	struct site_key *k;
	int r;

	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	if (!(k = sodium_malloc(sizeof(*k))))
		return -ENOMEM;
	if ((r = key_file_read(path, KEY_HEADER, true, "a Bascule site key",
				"bascule keygen site FILE", k->k, KEY_BYTES)) < 0) {
		key_free(k);
		return r;
	}
	*ret = k;
	return 0;
}

int key_file_write(const char *path, const char *header, const uint8_t *data, size_t n, mode_t mode)
{
	char b64[256], line[sizeof(b64) + 64];
	int fd, r = 0, len;

	if (sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL) > sizeof(b64))
		return -EINVAL;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return err_set(errno, "cannot create %s: %s%s", path, strerror(errno),
			       errno == EEXIST ? " (refusing to overwrite an existing key)" : "");
	sodium_bin2base64(b64, sizeof(b64), data, n, sodium_base64_VARIANT_ORIGINAL);
	len = snprintf(line, sizeof(line), "%s%s\n", header, b64);
	if (fchmod(fd, mode) < 0 || fs_write_full(fd, line, (size_t)len) < 0 || fsync(fd) < 0)
		r = err_set(errno, "cannot write %s: %s", path, strerror(errno));
	sodium_memzero(b64, sizeof(b64));
	sodium_memzero(line, sizeof(line));
	close(fd);
	if (r < 0) {
		unlink(path);
		return r;
	}
	return fs_fsync_parent(path);
}

int key_generate(const char *path)
{
	uint8_t raw[KEY_BYTES];
	int r;

	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	randombytes_buf(raw, sizeof(raw));
	r = key_file_write(path, KEY_HEADER, raw, sizeof(raw), 0600);
	sodium_memzero(raw, sizeof(raw));
	return r;
}

void key_id(const struct site_key *k, uint8_t ret[KEY_ID_BYTES])
{
	static const char what[] = "bascule key id v1";

	crypto_generichash(ret, KEY_ID_BYTES, (const uint8_t *)what, sizeof(what) - 1, k->k,
			   KEY_BYTES);
}

void key_derive(const struct site_key *k, const char *purpose, uint8_t *ret, size_t n)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, k->k, KEY_BYTES, n);
	crypto_generichash_update(&st, (const uint8_t *)"bascule derived key: ", 21);
	crypto_generichash_update(&st, (const uint8_t *)purpose, strlen(purpose));
	crypto_generichash_final(&st, ret, n);
	sodium_memzero(&st, sizeof(st));
}

void key_id_hex(const struct site_key *k, char ret[2 * KEY_ID_BYTES + 1])
{
	uint8_t id[KEY_ID_BYTES];

	key_id(k, id);
	sodium_bin2hex(ret, 2 * KEY_ID_BYTES + 1, id, sizeof(id));
}
