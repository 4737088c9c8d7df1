/* cmd_keygen.c - bascule keygen site|signing FILE */
#include "cmd.h"
#include "err.h"
#include "key.h"
#include "sign.h"
#include <stdio.h>
#include <string.h>

int cmd_keygen(int argc, char **argv)
{
	struct site_key *k = NULL;
	char id[2 * KEY_ID_BYTES + 1];
	int r;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("Usage: bascule keygen site FILE\n"
		       "       bascule keygen signing FILE\n\n"
		       "site: write a new random 32-byte site key to FILE (which must not exist), mode\n"
		       "0600.  Copy the same file to the secondary site (mode 0600, owned by the\n"
		       "receiving user).  Prints the key id, which both sites show in their messages.\n\n"
		       "signing: write a new Ed25519 key pair for drill reports: FILE (secret, 0600,\n"
		       "for the runbook's report.signing_key) and FILE.pub (give it to auditors:\n"
		       "bascule report verify --key FILE.pub REPORT).\n");
		return EXIT_OK;
	}
	if (argc == 3 && strcmp(argv[1], "signing") == 0) {
		uint8_t pk[SIGN_PK_BYTES];
		char pub[4200], kid[17];
		if ((r = sign_keygen(argv[2])) < 0)
			return cmd_fail("keygen", r);
		snprintf(pub, sizeof(pub), "%s.pub", argv[2]);
		if ((r = sign_load_public(pub, pk)) < 0)
			return cmd_fail("keygen", r);
		sign_key_id(pk, kid);
		printf("wrote signing key %s and public key %s (key id %s)\n", argv[2], pub, kid);
		return EXIT_OK;
	}
	if (argc != 3 || strcmp(argv[1], "site") != 0) {
		fprintf(stderr, "Usage: bascule keygen site|signing FILE\n");
		return EXIT_USAGE;
	}
	if ((r = key_generate(argv[2])) < 0)
		return cmd_fail("keygen", r);
	if ((r = key_load(argv[2], &k)) < 0)
		return cmd_fail("keygen", r);
	key_id_hex(k, id);
	key_free(k);
	printf("wrote site key %s (key id %s)\n", argv[2], id);
	return EXIT_OK;
}
