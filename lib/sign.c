/* sign.c - Ed25519 signing key files. */
#include "sign.h"
#include "err.h"
#include "key.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SK_HEADER "bascule-signing-key-v1 "
#define PK_HEADER "bascule-signing-pub-v1 "
#define MAKE "bascule keygen signing FILE"

int sign_keygen(const char *path)
{
	uint8_t pk[SIGN_PK_BYTES], sk[SIGN_SK_BYTES];
	char pub[PATH_MAX];
	int r;

	if (sodium_init() < 0)
		return err_set(ENOSYS, "libsodium could not be initialised");
	if (snprintf(pub, sizeof(pub), "%s.pub", path) >= (int)sizeof(pub))
		return -ENAMETOOLONG;
	if (access(pub, F_OK) == 0)
		return err_set(EEXIST, "%s exists already (refusing to overwrite a key)", pub);
	crypto_sign_keypair(pk, sk);
	r = key_file_write(path, SK_HEADER, sk, sizeof(sk), 0600);
	sodium_memzero(sk, sizeof(sk));
	if (r < 0)
		return r;
	if ((r = key_file_write(pub, PK_HEADER, pk, sizeof(pk), 0644)) < 0) {
		unlink(path);
		return r;
	}
	return 0;
}

int sign_load_secret(const char *path, uint8_t sk[SIGN_SK_BYTES])
{
	return key_file_read(path, SK_HEADER, true, "a Bascule signing key", MAKE, sk, SIGN_SK_BYTES);
}

int sign_load_public(const char *path, uint8_t pk[SIGN_PK_BYTES])
{
	return key_file_read(path, PK_HEADER, false, "a Bascule signing public key (FILE.pub)", MAKE, pk,
			     SIGN_PK_BYTES);
}

void sign_key_id(const uint8_t pk[SIGN_PK_BYTES], char ret[17])
{
	uint8_t id[8];

	crypto_generichash(id, sizeof(id), pk, SIGN_PK_BYTES, NULL, 0);
	sodium_bin2hex(ret, 17, id, sizeof(id));
}
