/* intake_restore.c - bascule intake restore: rebuild a night's exact dump
 * with the client's decryption key (docs/hybrid.md, "Recovery"). */
#include "cmd.h"
#include "err.h"
#include "intake_tool.h"
#include <stdio.h>

int intake_restore(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "bascule intake restore: not implemented yet\n");
	return EXIT_FAIL;
}
