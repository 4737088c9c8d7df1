/* cmd_keygen.c - bascule keygen site FILE */
#include "cmd.h"
#include "err.h"
#include "key.h"
#include <stdio.h>
#include <string.h>

int cmd_keygen(int argc, char **argv)
{
	struct site_key *k = NULL;
	char id[2 * KEY_ID_BYTES + 1];
	int r;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("Usage: bascule keygen site FILE\n\n"
		       "Write a new random 32-byte site key to FILE (which must not exist), mode 0600.\n"
		       "Copy the same file to the secondary site (mode 0600, owned by the receiving\n"
		       "user).  Prints the key id, which both sites show in their messages.\n");
		return EXIT_OK;
	}
	if (argc != 3 || strcmp(argv[1], "site") != 0) {
		fprintf(stderr, "Usage: bascule keygen site FILE\n");
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
