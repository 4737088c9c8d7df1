/* vault_ls.c - bascule vault ls: the epochs a vault holds, with sizes. */
#include "cmd.h"
#include "err.h"
#include "pgwal.h"
#include "vault_tool.h"
#include "vpg.h"
#include <inttypes.h>
#include <string.h>

static int cmp_name(const void *a, const void *b)
{
	return memcmp(a, b, VAULT_NAME);
}

/* Bytes of the objects of manifest B not in A (the previous epoch of the
 * same group): what epoch B added. */
static uint64_t new_bytes(const struct vmanifest *a, const struct vmanifest *b)
{
	uint8_t (*names)[VAULT_NAME] = NULL;
	uint64_t n = 0;

	if (a && a->n_objects && (names = malloc((size_t)a->n_objects * VAULT_NAME))) {
		memcpy(names, a->obj, (size_t)a->n_objects * VAULT_NAME);
		qsort(names, a->n_objects, VAULT_NAME, cmp_name);
	}
	for (uint32_t i = 0; i < b->n_objects; i++)
		if (!names || !bsearch(b->obj[i], names, a->n_objects, VAULT_NAME, cmp_name))
			n += b->obj_size[i];
	free(names);
	return n;
}

/* PostgreSQL points: the WAL's end, the bases kept, and the span of
 * recovery targets the epoch serves (from the oldest base's arrival to its
 * cut; earlier times are served by earlier epochs). */
static void ls_pg_json(const struct vmanifest *m)
{
	char e[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN];

	if (!m->n_pg)
		return;
	printf(",\"postgres\":[");
	for (uint32_t s = 0; s < m->n_pg; s++) {
		const struct vman_pg *p = &m->pg[s];
		printf("%s{\"source\":\"%s\",\"timeline\":%u,\"end_lsn\":\"%s\",\"restorable_from\":%.6f,"
		       "\"wal_objects\":%u,\"bases\":[", s ? "," : "", p->name, p->tli, pgwal_lsn_format(p->end_lsn, e),
		       (double)p->bases[0].arrived / 1e6, p->n_wal);
		for (uint32_t k = 0; k < p->n_bases; k++)
			printf("%s{\"id\":\"%s\",\"arrived\":%.6f,\"epoch\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
			       k ? "," : "", pgwal_lsn_format(p->bases[k].id, b), (double)p->bases[k].arrived / 1e6,
			       p->bases[k].epoch, p->bases[k].bytes);
		printf("]}");
	}
	printf("]");
}

static void ls_pg_text(const struct vmanifest *m)
{
	char e[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN], t[32];

	for (uint32_t s = 0; s < m->n_pg; s++) {
		const struct vman_pg *p = &m->pg[s];
		printf("%20s postgres %s: WAL to %s (timeline %u, %u objects), base %s of %s, %u base(s); recovery "
		       "targets from %s\n", "", p->name, pgwal_lsn_format(p->end_lsn, e), p->tli, p->n_wal,
		       pgwal_lsn_format(p->bases[p->n_bases - 1].id, b),
		       vcmd_time(p->bases[p->n_bases - 1].arrived, t, sizeof(t)), p->n_bases,
		       vcmd_time(p->bases[0].arrived, (char[32]){ 0 }, 32));
	}
}

/* ---- ls ---- */

int cmd_vault_ls(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS, { "json", no_argument, NULL, O_JSON },
					      { "record", required_argument, NULL, O_RECORD }, { 0 } };
	struct vopts o = { 0 };
	struct vstore *vs = NULL;
	struct vview v = { 0 };
	struct vkeys k;
	uint8_t pk[32];
	bool have_k, json = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		if (vopts_parse(&o, c, optarg))
			continue;
		if (c == O_JSON)
			json = true;
		else if (c == 'h') {
			printf("Usage: bascule vault ls --vault URL (--verify-key FILE.pub | --vault-key FILE) "
			       "[--record FILE] [--json]\n       (or -c CONFIG [--target T])\n\n"
			       "List the epochs the vault holds: group (with the vault key; without it, an\n"
			       "opaque series), epoch, cut time, bytes referenced, bytes new since the previous\n"
			       "epoch.  Then what it should hold but does not give: manifests that fail their\n"
			       "check, and epochs the daemon's record of commits (with -c, or --record FILE:\n"
			       "STATE_DIR/vault/TARGET/committed) lists but no valid manifest holds.\n"
			       "Exit 0: all is well; 5: something failed (named); 3: bad configuration;\n"
			       "4: a key is missing or wrong; 2: usage; 1: the vault cannot be read.\n");
			return EXIT_OK;
		} else
			return vopts_usage("vault ls");
	}
	if (optind != argc)
		return vopts_usage("vault ls");
	if ((r = vopts_finish(&o, "vault ls")) < 0 || (r = vopts_keys(&o, false, pk, &k, &have_k)) < 0 ||
	    (r = vopts_store(&o, &vs)) < 0 || (r = vview_load(&v, vs, &o, pk, have_k ? &k : NULL)) < 0)
		goto out;
	if (!json)
		printf("%-20s %8s  %-19s  %-10s %12s %12s\n", "GROUP", "EPOCH", "CUT", "KIND", "SIZE", "NEW");
	else
		printf("[");
	for (size_t i = 0; i < v.n; i++) {
		const struct vmanifest *m = &v.ms[i], *prev = i && !memcmp(v.ms[i - 1].series, m->series, 16) ? &v.ms[i - 1] : NULL;
		uint64_t total = 0, nb = new_bytes(prev, m);
		char label[80], t[32], a[32], b[32];
		for (uint32_t j = 0; j < m->n_objects; j++)
			total += m->obj_size[j];
		vcmd_series(m, label, sizeof(label));
		if (json) {
			printf("%s{\"group\":\"%s\",\"epoch\":%" PRIu64 ",\"cut_time\":%.6f,\"consistent\":%s,"
			       "\"bytes\":%" PRIu64 ",\"new_bytes\":%" PRIu64 ",\"objects\":%u",
			       i ? "," : "", label, m->epoch, (double)m->cut_time / 1e6,
			       m->opened ? (m->flags & 1 ? "true" : "false") : "null", total, nb, m->n_objects);
			ls_pg_json(m);
			printf("}");
		} else {
			vcmd_size(total, a, sizeof(a));
			vcmd_size(nb, b, sizeof(b));
			printf("%-20s %8" PRIu64 "  %-19s  %-10s %12s %12s\n", label, m->epoch,
			       vcmd_time(m->cut_time, t, sizeof(t)),
			       m->opened ? (m->flags & 1 ? "consistent" : "fuzzy") : "-", a, b);
			ls_pg_text(m);
		}
	}
	if (json) {
		/* What failed: {"failed": why, "path", and group/epoch when known}. */
		for (size_t i = 0; i < v.n_sus; i++) {
			const struct suspect *x = &v.sus[i];
			json_t *e = json_pack("{s:s, s:s, s:b}", "failed", x->why, "path", x->path, "recorded",
					      x->recorded);
			char *text;
			if (x->group[0])
				json_object_set_new(e, "group", json_string(x->group));
			if (x->epoch)
				json_object_set_new(e, "epoch", json_integer((json_int_t)x->epoch));
			text = json_dumps(e, JSON_COMPACT);
			printf("%s%s", v.n || i ? "," : "", text ? text : "{}");
			free(text);
			json_decref(e);
		}
		printf("]\n");
	} else if (v.n_sus) {
		printf("\nFAILED: what the vault should hold but does not give (restore does not fall back past "
		       "it without --accept-older or --epoch):\n");
		vview_print(&v, NULL, stdout, "  ");
	}
	r = v.n_sus ? err_set(EBADMSG, "%zu manifest(s) or recorded epoch(s) failed their check (see above)",
			      v.n_sus)
		    : 0;
out:
	vview_free(&v);
	vstore_close(vs);
	config_free(o.cfg);
	return r < 0 ? vopts_fail(&o, "vault ls", r) : EXIT_OK;
}
