/* cmd_key.c - bascule key id FILE: print the public id of an existing key
 * file, so the operator can check that the primary and the secondary hold
 * the same site key (or which signing key signed a report) without copying
 * or showing the key itself. */
#include "cmd.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "sign.h"
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum key_kind { KIND_SITE, KIND_SIGNING, KIND_SIGNING_PUB };

static void key_usage(FILE *f)
{
	fprintf(f, "Usage: bascule key id FILE\n\n"
		   "Print the key id of FILE: a site key (bascule keygen site), a signing key or\n"
		   "its FILE.pub (bascule keygen signing).  The id is a public fingerprint, safe to\n"
		   "show: run it on both sites, the same site key prints the same id, the one the\n"
		   "daemon and the receiver name in their messages.  A secret key file must be\n"
		   "mode 0600.  Exit 0, or 4 when FILE is missing, unreadable, unsafe (group or\n"
		   "others may read it) or not a Bascule key.\n");
}

/* Which kind of key FILE holds, from its header; the loaders check the rest. */
static int key_sniff(const char *path, enum key_kind *ret)
{
	static const struct {
		const char *header;
		enum key_kind kind;
	} kinds[] = {
		{ "bascule-site-key-v1 ", KIND_SITE },
		{ "bascule-signing-key-v1 ", KIND_SIGNING },
		{ "bascule-signing-pub-v1 ", KIND_SIGNING_PUB },
	};
	char *text = NULL;
	size_t len = 0;
	int r;

	if ((r = fs_read_all(path, 4096, &text, &len)) < 0)
		return r == -EFBIG ? err_set(EKEYREJECTED, "%s is not a Bascule key file (too large)", path) : r;
	r = err_set(EKEYREJECTED, "%s is not a Bascule site or signing key (create one with 'bascule "
				  "keygen site FILE' or 'bascule keygen signing FILE')", path);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strncmp(text, kinds[i].header, strlen(kinds[i].header)) == 0) {
			*ret = kinds[i].kind;
			r = 0;
			break;
		}
	sodium_memzero(text, len);
	free(text);
	return r;
}

static int key_print_id(const char *path)
{
	uint8_t sk[SIGN_SK_BYTES], pk[SIGN_PK_BYTES];
	struct site_key *k = NULL;
	char id[32]; /* 16 hex digits for both kinds */
	enum key_kind kind = KIND_SITE;
	int r;

	if ((r = key_sniff(path, &kind)) < 0)
		return r;
	switch (kind) {
	case KIND_SITE:
		if ((r = key_load(path, &k)) < 0)
			return r;
		key_id_hex(k, id);
		key_free(k);
		break;
	case KIND_SIGNING:
		r = sign_load_secret(path, sk);
		if (r == 0)
			crypto_sign_ed25519_sk_to_pk(pk, sk);
		sodium_memzero(sk, sizeof(sk));
		if (r < 0)
			return r;
		sign_key_id(pk, id);
		break;
	case KIND_SIGNING_PUB:
		if ((r = sign_load_public(path, pk)) < 0)
			return r;
		sign_key_id(pk, id);
		break;
	}
	printf("%s\n", id);
	return 0;
}

int cmd_key(int argc, char **argv)
{
	int r;

	if ((argc == 2 || argc == 3) && (!strcmp(argv[argc - 1], "--help") || !strcmp(argv[argc - 1], "-h"))) {
		key_usage(stdout);
		return EXIT_OK;
	}
	if (argc != 3 || strcmp(argv[1], "id") != 0) {
		key_usage(stderr);
		return EXIT_USAGE;
	}
	if ((r = key_print_id(argv[2])) < 0) {
		/* Whatever is wrong with the file (missing, unreadable, unsafe,
		 * not a key), it is a key problem: exit 4 as documented. */
		cmd_fail("key id", r);
		return r == -ENOMEM ? EXIT_FAIL : EXIT_KEY;
	}
	return EXIT_OK;
}
