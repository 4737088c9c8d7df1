/* pgwal.c - WAL positions, segment and history file names. */
#include "pgwal.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
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

bool pgwal_history_file(const char *s, uint32_t *ret_tli)
{
	unsigned t;

	if (strlen(s) != 16 || strcmp(s + 8, ".history") || strspn(s, "0123456789ABCDEF") != 8 ||
	    sscanf(s, "%8X", &t) != 1 || t == 0)
		return false;
	*ret_tli = t;
	return true;
}

bool pgwal_slot_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 63 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

int pgwal_history_parse(const char *text, size_t len, uint32_t tli, struct pgwal_switch *ret,
			size_t max, size_t *ret_n)
{
	struct pgwal_switch *v = calloc(max ? max : 1, sizeof(*v));
	size_t n = 0, off = 0;
	int rc = 0;

	if (!v)
		return -ENOMEM;
	while (off < len && rc == 0) {
		const char *line = text + off, *nl = memchr(line, '\n', len - off);
		size_t ll = nl ? (size_t)(nl - line) : len - off;
		char buf[128], *tab, *tab2;
		uint32_t t;
		uint64_t lsn;

		off += ll + (nl ? 1 : 0);
		if (ll && line[ll - 1] == '\r')
			ll--;
		if (ll == 0 || line[0] == '#' || strspn(line, " \t") == ll)
			continue;
		/* The reason may be long: only the first two fields are read. */
		snprintf(buf, sizeof(buf), "%.*s", (int)(ll < sizeof(buf) - 1 ? ll : sizeof(buf) - 1), line);
		tab = strchr(buf, '\t');
		if (!tab || n == max) {
			rc = -EINVAL;
			break;
		}
		*tab = 0;
		if ((tab2 = strchr(tab + 1, '\t')))
			*tab2 = 0;
		else if (ll >= sizeof(buf) - 1)
			rc = -EINVAL; /* an LSN cut by the buffer */
		if (rc || strspn(buf, "0123456789") != strlen(buf) || !buf[0] || strlen(buf) > 10 ||
		    (t = (uint32_t)strtoul(buf, NULL, 10), strtoull(buf, NULL, 10) > UINT32_MAX) ||
		    pgwal_lsn_parse(tab + 1, &lsn) < 0 || t == 0 || t >= tli ||
		    (n && (t <= v[n - 1].tli || lsn < v[n - 1].end))) {
			rc = -EINVAL;
			break;
		}
		v[n].tli = t;
		v[n].end = lsn;
		n++;
	}
	if (rc == 0) {
		memcpy(ret, v, n * sizeof(*v));
		*ret_n = n;
	}
	free(v);
	return rc;
}

static int manifest_lsn(json_t *range, const char *key, uint64_t *ret)
{
	const char *s = json_string_value(json_object_get(range, key));
	return s ? pgwal_lsn_parse(s, ret) : -EINVAL;
}

int pgwal_manifest_range(const char *json, size_t len, uint64_t *ret_start, uint32_t *ret_start_tli,
			 uint64_t *ret_end, uint32_t *ret_end_tli)
{
	json_t *m = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL), *ranges, *r;
	uint64_t start = UINT64_MAX, end = 0;
	uint32_t t0 = 0, t1 = 0;
	size_t i;
	int rc = -EINVAL;

	if (!m)
		return -EINVAL;
	/* PostgreSQL lists the ranges newest timeline first: take the extremes. */
	ranges = json_object_get(m, "WAL-Ranges");
	if (!json_is_array(ranges) || json_array_size(ranges) == 0)
		goto out;
	json_array_foreach(ranges, i, r) {
		json_t *t = json_object_get(r, "Timeline");
		uint64_t a, z;
		if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > UINT32_MAX ||
		    manifest_lsn(r, "Start-LSN", &a) < 0 || manifest_lsn(r, "End-LSN", &z) < 0 || z < a)
			goto out;
		if (a < start) {
			start = a;
			t0 = (uint32_t)json_integer_value(t);
		}
		if (z >= end) {
			end = z;
			t1 = (uint32_t)json_integer_value(t);
		}
	}
	*ret_start = start;
	*ret_start_tli = t0;
	*ret_end = end;
	*ret_end_tli = t1;
	rc = 0;
out:
	json_decref(m);
	return rc;
}
