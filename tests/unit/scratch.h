/* scratch.h - a scratch directory for the tests of one file: dir holds its
 * path once scratch_setup (a cmocka group setup) has made it;
 * scratch_teardown removes it with everything in it. */
#pragma once
#include <stdio.h>
#include <stdlib.h>

static char dir[64];

static int scratch_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/bascule-unit-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int scratch_teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}
