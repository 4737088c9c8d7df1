/* pgwal.c - WAL positions, segment and history file names. */
#include "pgwal.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int hex32(const char *s, size_t n, uint32_t *ret)
{
	uint32_t v = 0;

	if (n == 0 || n > 8)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 :
			c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return -EINVAL;
		v = v << 4 | (uint32_t)d;
	}
	*ret = v;
	return 0;
}

int pgwal_lsn_parse(const char *s, uint64_t *ret)
{
	const char *slash = s ? strchr(s, '/') : NULL;
	uint32_t hi, lo;

	if (!slash || hex32(s, (size_t)(slash - s), &hi) < 0 ||
	    hex32(slash + 1, strlen(slash + 1), &lo) < 0)
		return -EINVAL;
	*ret = (uint64_t)hi << 32 | lo;
	return 0;
}

char *pgwal_lsn_format(uint64_t lsn, char *buf)
{
	snprintf(buf, PGWAL_LSN_LEN, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
	return buf;
}

bool pgwal_segsize_ok(uint64_t segsize)
{
	return segsize >= PGWAL_SEG_MIN && segsize <= PGWAL_SEG_MAX && !(segsize & (segsize - 1));
}

void pgwal_seg_name(char *name, uint32_t tli, uint64_t segno, uint32_t segsize)
{
	uint64_t per_id = 0x100000000ULL / segsize;

	snprintf(name, PGWAL_SEG_NAME_LEN, "%08X%08X%08X", tli, (unsigned)(segno / per_id),
		 (unsigned)(segno % per_id));
}

int pgwal_seg_parse(const char *name, uint32_t segsize, uint32_t *ret_tli, uint64_t *ret_segno)
{
	uint64_t per_id = 0x100000000ULL / segsize;
	uint32_t tli, id, seg;

	if (strlen(name) != 24 || strspn(name, "0123456789ABCDEF") != 24 ||
	    hex32(name, 8, &tli) < 0 || hex32(name + 8, 8, &id) < 0 || hex32(name + 16, 8, &seg) < 0 ||
	    tli == 0 || seg >= per_id)
		return -EINVAL;
	*ret_tli = tli;
	*ret_segno = (uint64_t)id * per_id + seg;
	return 0;
}

void pgwal_history_name(char *name, uint32_t tli)
{
	snprintf(name, PGWAL_HISTORY_NAME_LEN, "%08X.history", tli);
}

bool pgwal_slot_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 63 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}
