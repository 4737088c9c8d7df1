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

int key_load(const char *path, struct site_key **ret)
{
	char text[256];
	struct site_key *k = NULL;
	size_t binlen = 0;
	ssize_t n;
	int fd, r = 0;

	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return err_set(errno == ELOOP ? EPERM : errno, "cannot open key file %s: %s%s", path,
			       strerror(errno),
			       errno == ENOENT ? " (create one with 'bascule keygen site FILE')" : "");
	if ((r = key_check_secret_file(path, fd)) < 0)
		goto out;
	n = fs_pread_full(fd, text, sizeof(text) - 1, 0);
	if (n < 0) {
		r = err_set((int)n, "cannot read key file %s: %s", path, strerror((int)-n));
		goto out;
	}
	text[n] = 0;
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
		text[--n] = 0;
	k = sodium_malloc(sizeof(*k));
	if (!k) {
		r = -ENOMEM;
		goto out;
	}
	if (strncmp(text, KEY_HEADER, strlen(KEY_HEADER)) != 0 ||
	    sodium_base642bin(k->k, sizeof(k->k), text + strlen(KEY_HEADER),
			      strlen(text + strlen(KEY_HEADER)), NULL, &binlen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    binlen != KEY_BYTES) {
		r = err_set(EKEYREJECTED,
			    "%s is not a Bascule site key (expected one line '%s<base64>'; "
			    "create one with 'bascule keygen site FILE')",
			    path, KEY_HEADER);
		goto out;
	}
	*ret = k;
	k = NULL;
out:
	sodium_memzero(text, sizeof(text));
	key_free(k);
	close(fd);
	return r;
}

int key_generate(const char *path)
{
	uint8_t raw[KEY_BYTES];
	char b64[sodium_base64_ENCODED_LEN(KEY_BYTES, sodium_base64_VARIANT_ORIGINAL)];
	char line[sizeof(b64) + 64];
	int fd, r = 0, len;

	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return err_set(errno, "cannot create %s: %s%s", path, strerror(errno),
			       errno == EEXIST ? " (refusing to overwrite an existing key)" : "");
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	len = snprintf(line, sizeof(line), "%s%s\n", KEY_HEADER, b64);
	if (fchmod(fd, 0600) < 0 || fs_write_full(fd, line, (size_t)len) < 0 || fsync(fd) < 0)
		r = err_set(errno, "cannot write %s: %s", path, strerror(errno));
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(b64, sizeof(b64));
	sodium_memzero(line, sizeof(line));
	close(fd);
	if (r < 0) {
		unlink(path);
		return r;
	}
	return fs_fsync_parent(path);
}

void key_id(const struct site_key *k, uint8_t ret[KEY_ID_BYTES])
{
	static const char what[] = "bascule key id v1";

	crypto_generichash(ret, KEY_ID_BYTES, (const uint8_t *)what, sizeof(what) - 1, k->k,
			   KEY_BYTES);
}

void key_id_hex(const struct site_key *k, char ret[2 * KEY_ID_BYTES + 1])
{
	uint8_t id[KEY_ID_BYTES];

	key_id(k, id);
	sodium_bin2hex(ret, 2 * KEY_ID_BYTES + 1, id, sizeof(id));
}
