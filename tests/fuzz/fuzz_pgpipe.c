/* fuzz_pgpipe - the pgstream pipe's frame parser (both sides, frame after
 * frame as a stream arrives), the base backup order check, and the decoders
 * of the replication protocol's CopyData messages and WAL names, on
 * arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pgmsg.h"
#include "pgpipe.h"
#include "pgwal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wbuf in = { .p = (uint8_t *)data, .len = size, .cap = size, .max = size };
	struct pgp_msg m;
	struct pgmsg_stream s;
	struct pgmsg_backup b;
	char *str;
	uint64_t lsn, segno;
	uint32_t tli;

	for (int side = PGP_OWNER; side <= PGP_CHILD; side++) {
		struct pgp_bb_order o = { 0 };
		size_t off = 0;
		while (pgpipe_next(&in, &off, (enum pgp_side)side, &m) > 0)
			pgpipe_bb_order(&o, m.type);
	}
	pgmsg_get_stream(data, size, &s);
	pgmsg_get_backup(data, size, &b);
	if ((str = malloc(size + 1))) {
		memcpy(str, data, size);
		str[size] = 0;
		pgwal_lsn_parse(str, &lsn);
		pgwal_seg_parse(str, 16u << 20, &tli, &segno);
		free(str);
	}
	return 0;
}
