/* clientkey.c - a hybrid-PRA client's key files (see clientkey.h). */
#include "clientkey.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "pwseal.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define H_KEY "bascule-client-key-v1"
#define H_PUB "bascule-client-pub-v1 "
#define H_SIGN "bascule-client-sign-v1 "
#define H_OPEN_WORD "bascule-client-opened-key-v1"
#define H_OPEN H_OPEN_WORD " "
#define MAKE "bascule keygen client FILE"

/* The first word of PATH into HEAD: false if it cannot be read. */
static bool file_head(const char *path, char head[40])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, head, 39);
	close(fd);
	if (n <= 0)
		return false;
	head[n] = 0;
	head[strcspn(head, " \n")] = 0;
	return true;
}

/* What a Bascule key file whose first word is not the one expected is, for
 * the message about a swapped file; NULL if nothing known. */
static const char *kind_of(const char *path, const char *want_head)
{
	static const struct { const char *head, *what; } kinds[] = {
		{ "bascule-client-key-v1", "the client's decryption key (FILE.key, keep it offline)" },
		{ "bascule-client-pub-v1", "the client's public key (FILE.pub)" },
		{ "bascule-client-sign-v1", "the client's signing key (FILE.sign)" },
		{ H_OPEN_WORD, "the client's opened decryption key (bascule intake open-key)" },
		{ "bascule-site-key-v1", "a site key" },
		{ "bascule-signing-key-v1", "a report signing key" },
		{ "bascule-signing-pub-v1", "a report signing public key" },
		{ "bascule-vault-key-v1", "a vault key" },
		{ "bascule-vault-pub-v1", "a vault verify key" },
	};
	char head[40];

	if (!file_head(path, head))
		return NULL;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(head, kinds[i].head))
			return strcmp(head, want_head) ? kinds[i].what : NULL;
	return NULL;
}

/* A key error for PATH that is another known kind of key: say so. */
static int swapped(int r, const char *path, const char *head, const char *want, const char *expect_file)
{
	char h[40];
	const char *k;

	snprintf(h, sizeof(h), "%s", head);
	h[strcspn(h, " ")] = 0;
	if (r != -EKEYREJECTED || !(k = kind_of(path, h)))
		return r;
	return err_set(EKEYREJECTED, "%s is %s, not %s: give the %s file here (swapped key files?)", path, k,
		       want, expect_file);
}

int clientkey_load_pub(const char *path, struct client_pub *ret)
{
	uint8_t raw[CLIENT_BOX_PK + crypto_sign_PUBLICKEYBYTES];
	int r = key_file_read(path, H_PUB, false, "a Bascule client public key", MAKE, raw, sizeof(raw));

	if (r < 0)
		return swapped(r, path, H_PUB, "the client's public key", "FILE.pub");
	memcpy(ret->box_pk, raw, CLIENT_BOX_PK);
	memcpy(ret->sign_pk, raw + CLIENT_BOX_PK, crypto_sign_PUBLICKEYBYTES);
	return 0;
}

int clientkey_parse_pub(const char *name, const char *text, size_t len, struct client_pub *ret)
{
	uint8_t raw[CLIENT_BOX_PK + crypto_sign_PUBLICKEYBYTES];
	int r = key_text_parse(name, text, len, H_PUB, "a Bascule client public key", MAKE, raw, sizeof(raw));

	if (r < 0)
		return r;
	memcpy(ret->box_pk, raw, CLIENT_BOX_PK);
	memcpy(ret->sign_pk, raw + CLIENT_BOX_PK, crypto_sign_PUBLICKEYBYTES);
	return 0;
}

int clientkey_load_sign(const char *path, uint8_t ret[crypto_sign_SECRETKEYBYTES])
{
	/* Another kind of key named first: its mode (a .pub is 0644) is not the point. */
	if (kind_of(path, "bascule-client-sign-v1"))
		return swapped(-EKEYREJECTED, path, H_SIGN, "the client's signing key", "FILE.sign");
	return key_file_read(path, H_SIGN, true, "a Bascule client signing key", MAKE, ret,
			     crypto_sign_SECRETKEYBYTES);
}

bool clientkey_is_opened(const char *path)
{
	char head[40];

	return file_head(path, head) && !strcmp(head, H_OPEN_WORD);
}

int clientkey_write_opened(const char *path, const uint8_t sk[CLIENT_BOX_SK])
{
	return key_file_write(path, H_OPEN, sk, CLIENT_BOX_SK, 0600);
}

int clientkey_load_secret(const char *path, const char *passphrase, uint8_t ret[CLIENT_BOX_SK])
{
	int fd, r;

	if (clientkey_is_opened(path))
		return key_file_read(path, H_OPEN, true, "an opened client decryption key",
				     "bascule intake open-key --key FILE.key --out FILE", ret, CLIENT_BOX_SK);
	if (kind_of(path, H_KEY))
		return swapped(-EKEYREJECTED, path, H_KEY, "the client's decryption key", "FILE.key");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		int e = errno;
		return err_set(e == ENOENT ? ENOKEY : e == ELOOP ? EPERM : e, "cannot open key file %s: %s", path,
			       strerror(e));
	}
	r = key_check_secret_file(path, fd);
	close(fd);
	if (r < 0)
		return r;
	r = pwseal_open(path, H_KEY, "a Bascule client decryption key (FILE.key)", passphrase, ret,
			CLIENT_BOX_SK);
	return r < 0 ? swapped(r, path, H_KEY, "the client's decryption key", "FILE.key") : 0;
}

int clientkey_check_pair(const struct client_pub *pub, const uint8_t sk[crypto_sign_SECRETKEYBYTES],
			 const char *pub_path, const char *sign_path)
{
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];

	crypto_sign_ed25519_sk_to_pk(pk, sk);
	if (sodium_memcmp(pk, pub->sign_pk, sizeof(pk)) != 0)
		return err_set(EKEYREJECTED, "the signing key %s does not belong to the public key %s (two "
					     "clients' files mixed up?): give the FILE.sign and FILE.pub "
					     "written together by 'bascule keygen client FILE'", sign_path, pub_path);
	return 0;
}

void clientkey_id(const struct client_pub *pub, char ret[17])
{
	uint8_t id[8];

	crypto_generichash(id, sizeof(id), (const uint8_t *)pub, sizeof(*pub), NULL, 0);
	sodium_bin2hex(ret, 17, id, sizeof(id));
}

int clientkey_generate(const char *base, const char *passphrase)
{
	char pkey[PATH_MAX], ppub[PATH_MAX], psign[PATH_MAX];
	uint8_t box_sk[CLIENT_BOX_SK], sign_sk[crypto_sign_SECRETKEYBYTES];
	uint8_t raw[CLIENT_BOX_PK + crypto_sign_PUBLICKEYBYTES];
	int r;

	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	if (snprintf(pkey, sizeof(pkey), "%s.key", base) >= (int)sizeof(pkey) ||
	    snprintf(ppub, sizeof(ppub), "%s.pub", base) >= (int)sizeof(ppub) ||
	    snprintf(psign, sizeof(psign), "%s.sign", base) >= (int)sizeof(psign))
		return -ENAMETOOLONG;
	for (const char *p = pkey; p; p = p == pkey ? ppub : p == ppub ? psign : NULL)
		if (access(p, F_OK) == 0)
			return err_set(EEXIST, "%s exists already (refusing to overwrite a key)", p);
	crypto_box_keypair(raw, box_sk);
	crypto_sign_keypair(raw + CLIENT_BOX_PK, sign_sk);
	if ((r = pwseal_write(pkey, H_KEY, box_sk, sizeof(box_sk), passphrase, true)) < 0)
		goto out;
	if ((r = key_file_write(psign, H_SIGN, sign_sk, sizeof(sign_sk), 0600)) < 0) {
		unlink(pkey);
		goto out;
	}
	if ((r = key_file_write(ppub, H_PUB, raw, sizeof(raw), 0644)) < 0) {
		unlink(pkey);
		unlink(psign);
	}
out:
	sodium_memzero(box_sk, sizeof(box_sk));
	sodium_memzero(sign_sk, sizeof(sign_sk));
	return r;
}
