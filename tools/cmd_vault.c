/* cmd_vault.c - bascule vault ls|check|prune and bascule restore.
 *
 * ls and check need only the verify key (FILE.pub): the provider can run
 * them.  prune needs the verify key and an account allowed to delete (not
 * the daemon's write-once one).  restore and `check --read-data` need the
 * vault key. */
#include "clock.h"
#include "cmd.h"
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "retention.h"
#include "units.h"
#include "vault.h"
#include "vault_cmd.h"
#include "vrecord.h"
#include "vaultkey.h"
#include "vstore.h"
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#ifndef FALLOC_FL_PUNCH_HOLE
#include <linux/falloc.h>
#endif

/* Where the vault is and what opens it: command line over -c FILE. */
struct vopts {
	const char *url, *identity, *known_hosts, *vault_key, *verify_key, *target, *record;
	char record_buf[4200];       /* the record derived from -c CONFIG */
	struct retention policy;
	bool policy_given, record_given, usage;
	struct config *cfg;
};

enum { O_URL = 1000, O_IDENTITY, O_KNOWN, O_VKEY, O_PUB, O_TARGET, O_EPOCH, O_AT, O_TO, O_SOURCE, O_JOBS,
       O_READ, O_JSON, O_DRY, O_GRACE, O_ALL, O_HOURLY, O_DAILY, O_MONTHLY, O_FORCE, O_GROUP, O_RECORD,
       O_ACCEPT };

#define VAULT_OPTS                                                                                      \
	{ "vault", required_argument, NULL, O_URL }, { "identity", required_argument, NULL, O_IDENTITY }, \
	{ "known-hosts", required_argument, NULL, O_KNOWN },                                            \
	{ "vault-key", required_argument, NULL, O_VKEY },                                               \
	{ "verify-key", required_argument, NULL, O_PUB }, { "target", required_argument, NULL, O_TARGET }, \
	{ "config", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' }

static int vopt(struct vopts *o, int c, const char *arg)
{
	switch (c) {
	case O_URL: o->url = arg; return 1;
	case O_IDENTITY: o->identity = arg; return 1;
	case O_KNOWN: o->known_hosts = arg; return 1;
	case O_VKEY: o->vault_key = arg; return 1;
	case O_PUB: o->verify_key = arg; return 1;
	case O_TARGET: o->target = arg; return 1;
	case O_RECORD: o->record = arg; o->record_given = true; return 1;
	case 'c': arg_global.config = arg; return 1;
	}
	return 0;
}

/* A command line a vault command cannot use (getopt said why). */
static int vusage(const char *cmd)
{
	fprintf(stderr, "Usage: see bascule %s --help\n", cmd);
	return EXIT_USAGE;
}

/* The exit code for an error of a vault command: 2 when its options do not
 * say which vault, else from the error. */
static int vfail(const struct vopts *o, const char *what, int r)
{
	int code = cmd_fail(what, r);
	return o->usage ? EXIT_USAGE : code;
}

/* Fill what the command line left out from the configuration's vault target. */
static int vopts_finish(struct vopts *o, const char *cmd)
{
	int r;

	if (arg_global.config) {
		const struct cfg_target *t = NULL;
		/* The sources' disks need not exist: restore runs where they are lost. */
		if ((r = config_read(arg_global.config, false, &o->cfg)) < 0)
			return r;
		for (size_t i = 0; i < o->cfg->targets.n; i++) {
			const struct cfg_target *x = CFG_TARGET(o->cfg, i);
			if (x->kind == TARGET_VAULT && (!o->target || !strcmp(x->name, o->target))) {
				t = x;
				break;
			}
		}
		if (!t)
			return err_set(EINVAL, "%s has no vault target%s%s", arg_global.config,
				       o->target ? " named " : "", o->target ? o->target : "");
		if (!o->url)
			o->url = t->url;
		if (!o->identity)
			o->identity = t->identity;
		if (!o->known_hosts)
			o->known_hosts = t->known_hosts;
		if (!o->vault_key)
			o->vault_key = t->vault_key;
		if (!o->policy_given)
			o->policy = t->retention.policy;
		/* The vault writer's record of commits (vrecord.h), kept by the daemon. */
		if (!o->record) {
			snprintf(o->record_buf, sizeof(o->record_buf), "%s/vault/%s/%s", o->cfg->state_dir,
				 t->name, VRECORD_FILE);
			o->record = o->record_buf;
		}
	}
	if (!o->url) {
		o->usage = true;
		return err_set(EINVAL, "which vault? give --vault URL (local:DIR or "
				       "sftp://user@host[:port]/DIR) or -c CONFIG; see --help");
	}
	return 0;
}

static int open_store(const struct vopts *o, struct vstore **ret)
{
	struct vstore_opts so = { .identity = o->identity, .known_hosts = o->known_hosts };
	return vstore_open(o->url, &so, ret);
}

/* The verify key: --verify-key FILE.pub, else derived from the vault key. */
static int load_keys(const struct vopts *o, bool need_secret, uint8_t pk[32], struct vkeys *k, bool *have_k)
{
	struct vault_key *vk = NULL;
	int r;

	*have_k = false;
	if (o->vault_key) {
		if ((r = vaultkey_load(o->vault_key, &vk)) < 0)
			return r;
		vault_keys(vk, k);
		vaultkey_free(vk);
		memcpy(pk, k->pk, 32);
		*have_k = true;
		return 0;
	}
	if (need_secret)
		return err_set(ENOKEY, "this needs the vault key: give --vault-key FILE (or -c CONFIG); if the "
				       "key is lost, recover it from the escrow copy with `bascule keygen vault "
				       "NEWFILE --from-escrow FILE.escrow`");
	if (!o->verify_key)
		return err_set(ENOKEY, "give --verify-key FILE.pub (written by `bascule keygen vault`), or "
				       "--vault-key FILE");
	return vaultkey_load_public(o->verify_key, pk);
}

static void on_bad(void *ctx, const char *path, int err)
{
	size_t *bad = ctx;
	(*bad)++;
	fprintf(stderr, "BAD %s: %s\n", path, err_msg(err));
}

static const char *tstr(uint64_t usec, char *buf, size_t len)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

static void human(uint64_t v, char *buf, size_t len)
{
	if (v >= 10ULL << 30)
		snprintf(buf, len, "%.1f GiB", (double)v / (1 << 30));
	else if (v >= 10ULL << 20)
		snprintf(buf, len, "%.1f MiB", (double)v / (1 << 20));
	else if (v >= 10ULL << 10)
		snprintf(buf, len, "%.1f KiB", (double)v / 1024);
	else
		snprintf(buf, len, "%llu B", (unsigned long long)v);
}

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

static void series_label(const struct vmanifest *m, char *buf, size_t len)
{
	if (m->opened)
		snprintf(buf, len, "%s", m->group);
	else {
		char hex[33];
		sodium_bin2hex(hex, sizeof(hex), m->series, 16);
		snprintf(buf, len, "series-%.12s", hex);
	}
}

/* ---- what the vault should hold but does not give ---- */

/* A manifest that fails its check, or an epoch the local record says was
 * committed and that no valid manifest holds: either may hide an epoch newer
 * than the newest valid one, so restore does not fall back past it silently. */
struct suspect {
	char path[80];                /* m/NAME */
	char group[NAME_MAX_LEN + 1]; /* "" if unknown */
	uint64_t epoch, cut_time;     /* 0 if unknown */
	bool recorded;                /* from the local record (authentic), else a failed manifest */
	char why[512];
};

/* The valid manifests, sorted by series then epoch, and the suspects. */
struct vview {
	struct vmanifest *ms;
	size_t n;
	struct suspect *sus;
	size_t n_sus;
	struct vrecord rec;
	const char *rec_path;         /* NULL: no record read */
	bool oom;                     /* a suspect could not be kept: fail rather than forget it */
};

static struct suspect *suspect_add(struct vview *v)
{
	struct suspect *ns = realloc(v->sus, (v->n_sus + 1) * sizeof(*ns));

	if (!ns)
		return NULL;
	v->sus = ns;
	memset(&ns[v->n_sus], 0, sizeof(*ns));
	return &ns[v->n_sus++];
}

static void on_suspect(void *ctx, const char *path, int err)
{
	struct vview *v = ctx;
	struct suspect *x = suspect_add(v);

	if (!x) {
		v->oom = true;
		return;
	}
	snprintf(x->path, sizeof(x->path), "%s", path);
	snprintf(x->why, sizeof(x->why), "%s", err_msg(err));
}

/* The valid manifest of GROUP whose series is SERIES, if any (needs the key). */
static const char *group_of_series(const struct vview *v, const uint8_t series[16])
{
	for (size_t i = 0; i < v->n; i++)
		if (v->ms[i].opened && !memcmp(v->ms[i].series, series, 16))
			return v->ms[i].group;
	return NULL;
}

/* What each failed manifest claims (unauthenticated: for the message). */
static void suspects_describe(struct vview *v, struct vstore *vs, const uint8_t pk[32], const struct vkeys *k)
{
	for (size_t i = 0; i < v->n_sus; i++) {
		struct suspect *x = &v->sus[i];
		uint8_t *data = NULL, series[16];
		struct vmanifest m;
		size_t len = 0, o = strlen(x->why);
		const char *g;
		char hex[33];

		if (x->recorded || vstore_get(vs, x->path, 1u << 26, &data, &len) < 0)
			continue;
		if (vault_manifest_decode(pk, k, data, len, &m) == 0) {
			/* Signed, but not what was written under this name. */
			snprintf(x->why + o, sizeof(x->why) - o, "; it holds a signed copy of the manifest of "
				 "%s%s epoch %" PRIu64 ", so what was written under this name is unknown",
				 m.opened ? m.group : "another", m.opened ? "'s" : " name's", m.epoch);
			vault_manifest_free(&m);
		} else if (vault_manifest_peek(data, len, series, &x->epoch, &x->cut_time) == 0) {
			char t[32];
			g = group_of_series(v, series);
			sodium_bin2hex(hex, sizeof(hex), series, 16);
			snprintf(x->group, sizeof(x->group), "%s", g ? g : "");
			snprintf(x->why + o, sizeof(x->why) - o, "; it claims to be epoch %" PRIu64 " of %s%.12s, "
				 "cut %s (unauthenticated)", x->epoch, g ? g : "series-", g ? "" : hex,
				 units_fmt_time(x->cut_time, t, sizeof(t)));
		}
		free(data);
	}
}

/* Epochs the local record says were committed that no valid manifest holds. */
static int suspects_from_record(struct vview *v)
{
	for (size_t i = 0; i < v->rec.n; i++) {
		const struct vrecord_entry *e = &v->rec.e[i];
		struct suspect *x;
		bool held = false;
		char hex[2 * VAULT_NAME + 1], t[32];
		for (size_t j = 0; j < v->n && !held; j++)
			held = !memcmp(v->ms[j].name, e->manifest, VAULT_NAME) ||
			       (!memcmp(v->ms[j].series, e->series, 16) && v->ms[j].epoch >= e->epoch);
		if (held)
			continue;
		if (!(x = suspect_add(v)))
			return -ENOMEM;
		vault_hex(e->manifest, hex);
		snprintf(x->path, sizeof(x->path), "m/%s", hex);
		snprintf(x->group, sizeof(x->group), "%s", e->group);
		x->epoch = e->epoch;
		x->cut_time = e->cut_time;
		x->recorded = true;
		snprintf(x->why, sizeof(x->why), "committed (cut %s; local record %s), but the vault holds no "
			 "valid manifest of it: deleted, replaced or damaged at the provider",
			 units_fmt_time(e->cut_time, t, sizeof(t)), v->rec_path);
	}
	return 0;
}

/* List and check the manifests; read the local record if O names one. */
static int vview_load(struct vview *v, struct vstore *vs, const struct vopts *o, const uint8_t pk[32],
		      const struct vkeys *k)
{
	int r;

	memset(v, 0, sizeof(*v));
	/* The record first: the writer records an epoch after its manifest is
	 * in the vault, so a listing taken afterwards holds every recorded one. */
	if (o->record) {
		r = vrecord_load(o->record, &v->rec);
		if (r == -ENOENT && o->record_given)
			return err_set(ENOENT, "no record of vault commits at %s", o->record);
		if (r < 0 && r != -ENOENT)
			return r;
		if (r == 0)
			v->rec_path = o->record;
	}
	if ((r = vault_manifests(vs, pk, k, on_suspect, v, &v->ms, &v->n)) < 0)
		return r;
	if (v->oom)
		return -ENOMEM;
	suspects_describe(v, vs, pk, k);
	{
		/* Not one manifest verifies, though each reads as one: the key is
		 * another vault's (a key error, exit 4), or everything was altered. */
		size_t readable = 0;
		for (size_t i = 0; i < v->n_sus; i++)
			readable += v->sus[i].epoch != 0;
		if (!v->n && v->n_sus && readable == v->n_sus)
			return err_set(EKEYREJECTED, "none of the %zu manifests of the vault verifies with %s: it is "
						     "not this vault's key (or every manifest was altered: `bascule "
						     "vault check` with the right verify key tells)",
				       v->n_sus, o->vault_key ? o->vault_key : o->verify_key ? o->verify_key : "this key");
	}
	return v->rec_path ? suspects_from_record(v) : 0;
}

static void vview_free(struct vview *v)
{
	vault_manifests_free(v->ms, v->n);
	free(v->sus);
	vrecord_free(&v->rec);
}

/* Print the suspects that concern GROUP (NULL: all) and return how many. */
static size_t suspects_print(const struct vview *v, const char *group, FILE *f, const char *indent)
{
	size_t count = 0;

	for (size_t i = 0; i < v->n_sus; i++) {
		const struct suspect *x = &v->sus[i];
		if (group && x->recorded && strcmp(x->group, group))
			continue;
		if (x->recorded)
			fprintf(f, "%s%s epoch %" PRIu64 ": %s\n", indent, x->group, x->epoch, x->why);
		else
			fprintf(f, "%s%s: %s\n", indent, x->path, x->why);
		count++;
	}
	return count;
}

/* ---- ls ---- */

static int vault_ls(int argc, char **argv)
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
		if (vopt(&o, c, optarg))
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
			return vusage("vault ls");
	}
	if (optind != argc)
		return vusage("vault ls");
	if ((r = vopts_finish(&o, "vault ls")) < 0 || (r = load_keys(&o, false, pk, &k, &have_k)) < 0 ||
	    (r = open_store(&o, &vs)) < 0 || (r = vview_load(&v, vs, &o, pk, have_k ? &k : NULL)) < 0)
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
		series_label(m, label, sizeof(label));
		if (json)
			printf("%s{\"group\":\"%s\",\"epoch\":%" PRIu64 ",\"cut_time\":%.6f,\"consistent\":%s,"
			       "\"bytes\":%" PRIu64 ",\"new_bytes\":%" PRIu64 ",\"objects\":%u}",
			       i ? "," : "", label, m->epoch, (double)m->cut_time / 1e6,
			       m->opened ? (m->flags & 1 ? "true" : "false") : "null", total, nb, m->n_objects);
		else {
			human(total, a, sizeof(a));
			human(nb, b, sizeof(b));
			printf("%-20s %8" PRIu64 "  %-19s  %-10s %12s %12s\n", label, m->epoch,
			       tstr(m->cut_time, t, sizeof(t)),
			       m->opened ? (m->flags & 1 ? "consistent" : "fuzzy") : "-", a, b);
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
		suspects_print(&v, NULL, stdout, "  ");
	}
	r = v.n_sus ? err_set(EBADMSG, "%zu manifest(s) or recorded epoch(s) failed their check (see above)",
			      v.n_sus)
		    : 0;
out:
	vview_free(&v);
	vstore_close(vs);
	config_free(o.cfg);
	return r < 0 ? vfail(&o, "vault ls", r) : EXIT_OK;
}

/* ---- check ---- */

struct objinfo {
	uint8_t name[VAULT_NAME];
	uint64_t size;
	int state; /* 0 unchecked, 1 ok, -errno bad */
};

static int cmp_obj(const void *a, const void *b)
{
	return memcmp(((const struct objinfo *)a)->name, ((const struct objinfo *)b)->name, VAULT_NAME);
}

static struct objinfo *find_obj(struct objinfo *v, size_t n, const uint8_t name[VAULT_NAME])
{
	struct objinfo key;
	memcpy(key.name, name, VAULT_NAME);
	return bsearch(&key, v, n, sizeof(*v), cmp_obj);
}

/* Hash an object in 8 MiB reads: its name is the BLAKE2b of its bytes. */
static int check_object(struct vstore *vs, struct objinfo *x, uint8_t *buf, size_t cap)
{
	crypto_generichash_state st;
	char path[300];
	uint8_t got[VAULT_NAME];
	uint64_t size, off = 0;
	int r;

	vault_path(x->name, false, path, sizeof(path));
	if ((r = vstore_stat(vs, path, &size, NULL)) < 0)
		return r == -ENOENT ? err_set(ENOENT, "MISSING") : r;
	if (size != x->size)
		return err_set(EBADMSG, "TRUNCATED or resized: %" PRIu64 " bytes, the manifests say %" PRIu64,
			       size, x->size);
	crypto_generichash_init(&st, NULL, 0, VAULT_NAME);
	while (off < size) {
		ssize_t n = vstore_read(vs, path, off, buf, size - off > cap ? cap : size - off);
		if (n <= 0)
			return n < 0 ? (int)n : err_set(EBADMSG, "TRUNCATED while read");
		crypto_generichash_update(&st, buf, (size_t)n);
		off += (uint64_t)n;
	}
	crypto_generichash_final(&st, got, VAULT_NAME);
	if (memcmp(got, x->name, VAULT_NAME))
		return err_set(EBADMSG, "DAMAGED: its bytes do not match its name (ciphertext digest)");
	return 0;
}

/* --read-data: open every frame each retained epoch needs; check block ids. */
static int read_data(struct vstore *vs, const struct vkeys *k, const struct vmanifest *m, uint64_t *blocks)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	uint8_t *frame = malloc(VAULT_FRAME_BLOCKS * VAULT_BLOCK), *c = malloc(1u << 20);
	int r = 0;

	if (!d || !frame || !c) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < m->n_sources && r == 0; s++) {
		struct vpacks packs = { 0 };
		struct vmap map = { 0 };
		uint32_t lp = UINT32_MAX, loff = 0;
		if ((r = vault_load_map(vs, k, &m->src[s], &packs, &map)) < 0) {
			vpacks_free(&packs);
			break;
		}
		for (uint64_t b = 0; b < map.n && r == 0; b++) {
			const struct vloc *l = &map.e[b];
			uint32_t nb;
			uint8_t id[VAULT_ID];
			char path[300];
			if (l->pack == VLOC_ZERO)
				continue;
			if (l->pack != lp || l->off != loff) {
				vault_path(packs.p[l->pack].name, false, path, sizeof(path));
				if (l->len > (1u << 20) || vstore_read(vs, path, l->off, c, l->len) != (ssize_t)l->len ||
				    vault_frame_open(k, packs.p[l->pack].nonce, l->off, c, l->len, d, frame, &nb) < 0) {
					r = err_set(EBADMSG, "%s/%s epoch %" PRIu64 ": block %" PRIu64 " cannot be "
							     "read back from %s",
						    m->group, m->src[s].name, m->epoch, b, path);
					break;
				}
				lp = l->pack;
				loff = l->off;
			}
			vault_block_id(k, frame + (size_t)l->slot * VAULT_BLOCK, id);
			if (memcmp(id, l->id, VAULT_ID))
				r = err_set(EBADMSG, "%s/%s epoch %" PRIu64 ": block %" PRIu64 " decrypts to other "
						     "data than was stored",
					    m->group, m->src[s].name, m->epoch, b);
			(*blocks)++;
		}
		vmap_free(&map);
		vpacks_free(&packs);
	}
out:
	ZSTD_freeDCtx(d);
	free(frame);
	free(c);
	return r;
}

/* Data objects in the store, referenced or not. */
struct objcount {
	struct vstore *vs;
	uint64_t n;
};

static int count_object(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	(void)name;
	(void)size;
	(void)mtime;
	((struct objcount *)ctx)->n += !is_dir;
	return 0;
}

static int count_dir(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct objcount *c = ctx;
	char dir[64];
	(void)size;
	(void)mtime;
	if (!is_dir)
		return 0;
	snprintf(dir, sizeof(dir), "d/%s", name);
	return vstore_list(c->vs, dir, count_object, c);
}

static int vault_check(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS, { "read-data", no_argument, NULL, O_READ }, { 0 } };
	struct vopts o = { 0 };
	struct vstore *vs = NULL;
	struct vmanifest *ms = NULL;
	struct objinfo *objs = NULL;
	size_t n = 0, bad = 0, no = 0, damaged = 0;
	uint64_t bytes = 0, blocks = 0;
	uint8_t *buf = NULL;
	struct vkeys k;
	uint8_t pk[32];
	bool have_k, readd = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		if (vopt(&o, c, optarg))
			continue;
		if (c == O_READ)
			readd = true;
		else if (c == 'h') {
			printf("Usage: bascule vault check --vault URL --verify-key FILE.pub [--read-data "
			       "--vault-key FILE]\n\nProve that every manifest is signed by the vault key and "
			       "that every object it needs is present and intact (its bytes hash to its name).\n"
			       "Needs no secret: the provider can run it.  --read-data (with the vault key)\n"
			       "also decrypts every block of every epoch and checks it.\n"
			       "Exit 0: intact; 5: something is missing or damaged (named on stderr); 1: the\n"
			       "vault cannot be read; 2: usage; 3: bad configuration; 4: a key is missing.\n");
			return EXIT_OK;
		} else
			return vusage("vault check");
	}
	if ((r = vopts_finish(&o, "vault check")) < 0 || (r = load_keys(&o, readd, pk, &k, &have_k)) < 0 ||
	    (r = open_store(&o, &vs)) < 0 ||
	    (r = vault_manifests(vs, pk, readd ? &k : NULL, on_bad, &bad, &ms, &n)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		no += ms[i].n_objects;
	if (!(objs = calloc(no + 1, sizeof(*objs))) || !(buf = malloc(8u << 20))) {
		r = -ENOMEM;
		goto out;
	}
	no = 0;
	for (size_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < ms[i].n_objects; j++) {
			memcpy(objs[no].name, ms[i].obj[j], VAULT_NAME);
			objs[no++].size = ms[i].obj_size[j];
		}
	qsort(objs, no, sizeof(*objs), cmp_obj);
	{
		size_t u = 0;
		for (size_t i = 0; i < no; i++)
			if (!u || memcmp(objs[u - 1].name, objs[i].name, VAULT_NAME))
				objs[u++] = objs[i];
			else if (objs[u - 1].size != objs[i].size)
				objs[u - 1].state = err_set(EBADMSG, "manifests disagree about its size");
		no = u;
	}
	for (size_t i = 0; i < no; i++) {
		if (objs[i].state == 0) {
			int e = check_object(vs, &objs[i], buf, 8u << 20);
			if (e == -ECONNRESET) {
				r = e;
				goto out;
			}
			objs[i].state = e < 0 ? e : 1;
			if (e == 0)
				bytes += objs[i].size;
		}
		if (objs[i].state < 0) {
			char path[300];
			vault_path(objs[i].name, false, path, sizeof(path));
			fprintf(stderr, "BAD %s: %s; needed by", path, err_msg(objs[i].state));
			for (size_t m = 0; m < n; m++)
				for (uint32_t j = 0; j < ms[m].n_objects; j++)
					if (!memcmp(ms[m].obj[j], objs[i].name, VAULT_NAME)) {
						char label[80];
						series_label(&ms[m], label, sizeof(label));
						fprintf(stderr, " %s@%" PRIu64, label, ms[m].epoch);
					}
			fprintf(stderr, "\n");
			damaged++;
		}
	}
	if (readd)
		for (size_t m = 0; m < n; m++) {
			bool skip = false;
			for (uint32_t j = 0; j < ms[m].n_objects && !skip; j++) {
				struct objinfo *x = find_obj(objs, no, ms[m].obj[j]);
				skip = !x || x->state < 0;
			}
			if (skip)
				continue; /* already reported */
			int e = read_data(vs, &k, &ms[m], &blocks);
			if (e < 0) {
				fprintf(stderr, "BAD %s@%" PRIu64 ": %s\n", ms[m].group, ms[m].epoch, err_msg(e));
				damaged++;
			}
		}
	{
		struct objcount cnt = { vs, 0 };
		char b1[32];
		vstore_list(vs, "d", count_dir, &cnt);
		human(bytes, b1, sizeof(b1));
		printf("%zu manifests, %zu objects (%s) checked%s; %zu bad manifests, %zu bad objects or "
		       "epochs; %" PRIu64 " unreferenced objects (interrupted uploads or pruned epochs)\n",
		       n, no, b1, readd ? ", every block decrypted and verified" : "", bad, damaged,
		       cnt.n > no ? cnt.n - no : 0);
		if (readd)
			printf("%" PRIu64 " blocks read back\n", blocks);
	}
	r = bad || damaged ? err_set(EBADMSG, "the vault is damaged: see the BAD lines above") : 0;
out:
	free(objs);
	free(buf);
	vault_manifests_free(ms, n);
	vstore_close(vs);
	config_free(o.cfg);
	return r < 0 ? vfail(&o, "vault check", r) : EXIT_OK;
}

/* ---- prune ---- */

struct liveset {
	struct objinfo *v;
	size_t n;
	struct vstore *vs;
	uint64_t grace_before, removed, removed_bytes, young;
	bool dry;
	char dir[16];
};

static int prune_object(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct liveset *l = ctx;
	uint8_t bin[VAULT_NAME];
	char path[300];
	int r;

	if (is_dir || vault_unhex(name, bin) < 0)
		return 0;
	if (find_obj(l->v, l->n, bin))
		return 0;
	if (mtime > l->grace_before) {
		l->young++;
		return 0; /* may belong to an epoch being written */
	}
	snprintf(path, sizeof(path), "%s/%s", l->dir, name);
	if (!l->dry && (r = vstore_remove(l->vs, path)) < 0)
		return r;
	l->removed++;
	l->removed_bytes += size;
	return 0;
}

static int prune_dir(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct liveset *l = ctx;
	(void)size;
	(void)mtime;
	if (!is_dir || strlen(name) != 2)
		return 0;
	snprintf(l->dir, sizeof(l->dir), "d/%s", name);
	return vstore_list(l->vs, l->dir, prune_object, l);
}

static int vault_prune(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS,
					      { "dry-run", no_argument, NULL, O_DRY },
					      { "grace", required_argument, NULL, O_GRACE },
					      { "keep-all", required_argument, NULL, O_ALL },
					      { "keep-hourly", required_argument, NULL, O_HOURLY },
					      { "keep-daily", required_argument, NULL, O_DAILY },
					      { "keep-monthly", required_argument, NULL, O_MONTHLY },
					      { "now", required_argument, NULL, O_AT },
					      { 0 } };
	struct vopts o = { 0 };
	struct vstore *vs = NULL;
	struct vmanifest *ms = NULL;
	struct liveset live = { 0 };
	size_t n = 0, bad = 0, kept = 0, dropped = 0;
	uint64_t grace = 86400, now = (uint64_t)time(NULL);
	struct vkeys k;
	uint8_t pk[32];
	bool have_k, dry = false;
	char desc[128];
	int c, r;

	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		uint64_t *span = NULL;
		if (vopt(&o, c, optarg))
			continue;
		switch (c) {
		case O_DRY: dry = true; continue;
		case O_GRACE:
			if (retention_parse_span(optarg, &grace) < 0) {
				fprintf(stderr, "bascule vault prune: --grace wants a span such as 24h\n");
				return EXIT_USAGE;
			}
			continue;
		case O_AT: {
			uint64_t us;
			if (units_parse_time(optarg, &us) < 0) {
				fprintf(stderr, "bascule vault prune: --now wants @UNIXSECONDS or an ISO time\n");
				return EXIT_USAGE;
			}
			now = us / 1000000;
			continue;
		}
		case O_ALL: span = &o.policy.all; break;
		case O_HOURLY: span = &o.policy.hourly; break;
		case O_DAILY: span = &o.policy.daily; break;
		case O_MONTHLY: span = &o.policy.monthly; break;
		case 'h':
			printf("Usage: bascule vault prune --vault URL --identity FILE --known-hosts FILE\n"
			       "       --verify-key FILE.pub [--keep-all D] [--keep-hourly D] [--keep-daily D]\n"
			       "       [--keep-monthly D] [--grace D] [--dry-run]   (or -c CONFIG [--target T])\n\n"
			       "Apply the retention policy: remove the manifests of epochs it does not keep,\n"
			       "then every object no remaining manifest needs and older than --grace (24h;\n"
			       "younger ones may belong to an epoch being written).  Run it with an account\n"
			       "allowed to delete: the daemon's write-once account cannot.  Spans: 24h, 7d,\n"
			       "2w, 12m (months), 1y.  The newest epoch of each group is always kept.\n\n"
			       "Exit 0: pruned; 1: the vault cannot be read; 2: usage, no policy given;\n"
			       "3: bad configuration, or no retention in it; 4: no verify key, or an account\n"
			       "that may not delete.\n");
			return EXIT_OK;
		default: return vusage("vault prune");
		}
		if (retention_parse_span(optarg, span) < 0) {
			fprintf(stderr, "bascule vault prune: '%s' is not a span such as 24h, 7d, 12m\n", optarg);
			return EXIT_USAGE;
		}
		o.policy_given = true;
	}
	if ((r = vopts_finish(&o, "vault prune")) < 0 || (r = load_keys(&o, false, pk, &k, &have_k)) < 0)
		goto out;
	if (!retention_set(&o.policy)) {
		o.usage = !arg_global.config; /* with -c, the configuration lacks it */
		r = err_set(EINVAL, "no retention policy: give --keep-all/--keep-hourly/--keep-daily/"
				    "--keep-monthly, or retention in the configuration's vault target");
		goto out;
	}
	if ((r = open_store(&o, &vs)) < 0 ||
	    (r = vault_manifests(vs, pk, have_k ? &k : NULL, on_bad, &bad, &ms, &n)) < 0)
		goto out;
	retention_describe(&o.policy, desc, sizeof(desc));
	/* Per group (series): which epochs the policy keeps. */
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && !memcmp(ms[j].series, ms[i].series, 16))
			j++;
		{
			uint64_t *times = malloc((j - i) * sizeof(*times));
			bool *keep = malloc((j - i) * sizeof(*keep));
			if (!times || !keep) {
				free(times);
				free(keep);
				r = -ENOMEM;
				goto out;
			}
			for (size_t x = i; x < j; x++)
				times[x - i] = ms[x].cut_time / 1000000;
			retention_apply(&o.policy, times, j - i, now, keep);
			for (size_t x = i; x < j; x++) {
				char label[80];
				series_label(&ms[x], label, sizeof(label));
				if (keep[x - i]) {
					kept++;
					continue;
				}
				char path[300];
				vault_path(ms[x].name, true, path, sizeof(path));
				printf("%s %s epoch %" PRIu64 " (%s)\n", dry ? "would remove" : "removing", label,
				       ms[x].epoch, path);
				if (!dry && (r = vstore_remove(vs, path)) < 0) {
					free(times);
					free(keep);
					goto out;
				}
				ms[x].n_objects = 0; /* its objects no longer count as needed */
				dropped++;
			}
			free(times);
			free(keep);
		}
		i = j;
	}
	/* Objects every kept manifest needs. */
	{
		size_t no = 0;
		for (size_t i = 0; i < n; i++)
			no += ms[i].n_objects;
		if (!(live.v = calloc(no + 1, sizeof(*live.v)))) {
			r = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			for (uint32_t j = 0; j < ms[i].n_objects; j++)
				memcpy(live.v[live.n++].name, ms[i].obj[j], VAULT_NAME);
		qsort(live.v, live.n, sizeof(*live.v), cmp_obj);
	}
	live.vs = vs;
	live.dry = dry;
	live.grace_before = now > grace ? now - grace : 0;
	if ((r = vstore_list(vs, "d", prune_dir, &live)) < 0)
		goto out;
	{
		char b[32];
		human(live.removed_bytes, b, sizeof(b));
		printf("policy: %s; %zu epochs kept, %zu %s; %" PRIu64 " objects (%s) %s; %" PRIu64
		       " unreferenced objects younger than the grace period left\n",
		       desc, kept, dropped, dry ? "would be removed" : "removed", live.removed, b,
		       dry ? "would be removed" : "removed", live.young);
	}
	if (bad)
		fprintf(stderr, "warning: %zu manifest(s) failed their check and were left alone; run `bascule "
				"vault check`\n", bad);
	r = 0;
out:
	if (r == -EACCES || r == -EPERM)
		err_wrap(r, "this account may not delete in the vault (the daemon's write-once account "
			    "cannot): run prune with the provider-side pruning account");
	free(live.v);
	vault_manifests_free(ms, n);
	vstore_close(vs);
	config_free(o.cfg);
	return r < 0 ? vfail(&o, "vault prune", r) : EXIT_OK;
}

/* ---- restore ---- */

#define RANGE_BLOCKS 4096u /* 16 MiB of source per work item */
#define READ_MAX (8u << 20)

struct restore {
	const struct vopts *o;
	const struct vkeys *k;
	struct vpacks *packs;
	struct vmap *map;
	int fd;
	bool device;
	uint8_t *done;         /* per range */
	uint64_t n_ranges;
	atomic_uint_fast64_t next, bytes_read, bytes_written;
	atomic_int err;
	char errmsg[1024];
	pthread_mutex_t lock;
	int pfd;               /* progress file */
};

/* A block to restore and the frame it lives in. */
struct fref {
	uint32_t pack, off, len;
	uint64_t block;
};

static int cmp_fref(const void *a, const void *b)
{
	const struct fref *x = a, *y = b;
	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->block < y->block ? -1 : x->block > y->block;
}

static void restore_fail(struct restore *rs, int r)
{
	pthread_mutex_lock(&rs->lock);
	if (!atomic_load(&rs->err)) {
		snprintf(rs->errmsg, sizeof(rs->errmsg), "%s", err_msg(r));
		atomic_store(&rs->err, r);
	}
	pthread_mutex_unlock(&rs->lock);
}

static int restore_range(struct restore *rs, struct vstore *vs, ZSTD_DCtx *d, uint64_t rg, uint8_t *rbuf,
			 uint8_t *frame)
{
	const struct vmap *m = rs->map;
	uint64_t b0 = rg * RANGE_BLOCKS, b1 = b0 + RANGE_BLOCKS > m->n ? m->n : b0 + RANGE_BLOCKS;
	struct fref *f = malloc((b1 - b0 + 1) * sizeof(*f));
	size_t nf = 0;
	int r = 0;

	if (!f)
		return -ENOMEM;
	/* Zero blocks: holes in a file, zeros on a device. */
	for (uint64_t b = b0; b < b1; b++) {
		const struct vloc *l = &m->e[b];
		if (l->pack == VLOC_ZERO) {
			uint64_t e = b;
			while (e < b1 && m->e[e].pack == VLOC_ZERO)
				e++;
			uint64_t off = b * VAULT_BLOCK, len = (e - b) * VAULT_BLOCK;
			if (off + len > m->size)
				len = m->size - off;
			if (rs->device || fallocate(rs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
						    (off_t)len) < 0) {
				static const uint8_t z[1 << 16];
				for (uint64_t o = 0; o < len && r == 0; o += sizeof(z))
					r = fs_pwrite_full(rs->fd, z, len - o < sizeof(z) ? len - o : sizeof(z), off + o);
			}
			b = e - 1;
			continue;
		}
		f[nf++] = (struct fref){ l->pack, l->off, l->len, b };
	}
	qsort(f, nf, sizeof(*f), cmp_fref);
	/* Read runs of adjacent frames of one pack in one request. */
	for (size_t i = 0; i < nf && r == 0;) {
		size_t j = i + 1;
		uint32_t start = f[i].off, end = f[i].off + f[i].len;
		char path[300];
		ssize_t got;
		uint32_t nb = 0;
		while (j < nf && f[j].pack == f[i].pack && f[j].off >= start && f[j].off <= end &&
		       (uint64_t)f[j].off + f[j].len - start <= READ_MAX) {
			if (f[j].off + f[j].len > end)
				end = f[j].off + f[j].len;
			j++;
		}
		vault_path(rs->packs->p[f[i].pack].name, false, path, sizeof(path));
		got = vstore_read(vs, path, start, rbuf, end - start);
		if (got < 0) {
			r = (int)got;
			break;
		}
		atomic_fetch_add(&rs->bytes_read, (uint64_t)got);
		if ((uint64_t)got < end - start) {
			r = err_set(EBADMSG, "vault object %s is truncated (%zd of %u bytes at %u)", path, got,
				    end - start, start);
			break;
		}
		/* Each frame of the run is opened once; its blocks follow it in F. */
		for (size_t x = i; x < j && r == 0; x++) {
			const struct vloc *l = &m->e[f[x].block];
			uint64_t off = f[x].block * VAULT_BLOCK;
			uint32_t len = m->size - off < VAULT_BLOCK ? (uint32_t)(m->size - off) : VAULT_BLOCK;
			uint8_t id[VAULT_ID];
			if (x == i || f[x].off != f[x - 1].off) {
				if (vault_frame_open(rs->k, rs->packs->p[f[x].pack].nonce, f[x].off,
						     rbuf + (f[x].off - start), f[x].len, d, frame, &nb) < 0) {
					r = err_set(EBADMSG, "a frame at %u of vault object %s fails authentication "
							     "(altered or damaged): this epoch cannot be restored from it",
						    f[x].off, path);
					break;
				}
			}
			if (l->slot >= nb) {
				r = err_set(EBADMSG, "index and frame disagree in %s", path);
				break;
			}
			vault_block_id(rs->k, frame + (size_t)l->slot * VAULT_BLOCK, id);
			if (memcmp(id, l->id, VAULT_ID)) {
				r = err_set(EBADMSG, "block %" PRIu64 " read from %s is not the block that was stored",
					    f[x].block, path);
				break;
			}
			r = fs_pwrite_full(rs->fd, frame + (size_t)l->slot * VAULT_BLOCK, len, off);
			if (r == 0)
				atomic_fetch_add(&rs->bytes_written, len);
		}
		i = j;
	}
	free(f);
	return r;
}

static void *restore_worker(void *arg)
{
	struct restore *rs = arg;
	struct vstore *vs = NULL;
	ZSTD_DCtx *d = ZSTD_createDCtx();
	uint8_t *rbuf = malloc(READ_MAX + (1u << 20)), *frame = malloc(VAULT_FRAME_BLOCKS * VAULT_BLOCK);
	int r;

	if (!d || !rbuf || !frame) {
		restore_fail(rs, -ENOMEM);
		goto out;
	}
	if ((r = open_store(rs->o, &vs)) < 0) {
		restore_fail(rs, r);
		goto out;
	}
	while (!atomic_load(&rs->err)) {
		uint64_t rg = atomic_fetch_add(&rs->next, 1);
		if (rg >= rs->n_ranges)
			break;
		if (rs->done[rg])
			continue;
		if ((r = restore_range(rs, vs, d, rg, rbuf, frame)) < 0) {
			restore_fail(rs, r);
			break;
		}
		/* Durable before it is recorded as done (resume trusts the record). */
		if (fdatasync(rs->fd) < 0 && !rs->device) {
			restore_fail(rs, -errno);
			break;
		}
		if (rs->pfd >= 0) {
			uint8_t rec[8];
			put_be64(rec, rg);
			pthread_mutex_lock(&rs->lock);
			r = fs_write_full(rs->pfd, rec, sizeof(rec));
			pthread_mutex_unlock(&rs->lock);
			if (r < 0) {
				restore_fail(rs, r);
				break;
			}
		}
	}
out:
	vstore_close(vs);
	ZSTD_freeDCtx(d);
	free(rbuf);
	free(frame);
	return NULL;
}

/* The progress file PATH.part.progress: manifest name, then done ranges. */
static int progress_open(const char *part, const uint8_t man[VAULT_NAME], const char *source, uint8_t *done,
			 uint64_t n_ranges, bool *resumed)
{
	char path[4300];
	char *data = NULL;
	size_t len = 0;
	int fd;

	*resumed = false;
	snprintf(path, sizeof(path), "%s.progress", part);
	if (fs_read_all(path, 1u << 30, &data, &len) == 0 && len >= VAULT_NAME + 64 &&
	    !memcmp(data, man, VAULT_NAME) && !strncmp(data + VAULT_NAME, source, 64)) {
		for (size_t o = VAULT_NAME + 64; o + 8 <= len; o += 8) {
			uint64_t rg = get_be64((uint8_t *)data + o);
			if (rg < n_ranges)
				done[rg] = 1;
		}
		*resumed = true;
		free(data);
		return open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	}
	free(data);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		char head[VAULT_NAME + 64] = { 0 };
		memcpy(head, man, VAULT_NAME);
		memcpy(head + VAULT_NAME, source, strnlen(source, 63));
		if (fs_write_full(fd, head, sizeof(head)) < 0 || fsync(fd) < 0) {
			close(fd);
			return -EIO;
		}
	}
	return fd;
}

/* An object the epoch needs is missing or fails its check: the epoch is
 * damaged in the vault (exit 5); other errors (the link) stay as they are. */
static int damaged(int r, const char *group, const char *source, uint64_t epoch)
{
	if (r != -ENOENT && r != -EBADMSG)
		return r;
	err_recode(r, EBADMSG);
	return err_wrap(EBADMSG, "the epoch is damaged in the vault: %s/%s epoch %" PRIu64 " (`bascule vault "
				 "check` names every bad object; other epochs may still restore)",
			group, source, epoch);
}

/* May epoch M (NULL: none found) of GROUP be restored?  0, or an error that
 * names what is newer and failed. */
static int restore_choice(const struct vview *v, const struct vopts *o, const char *group,
			  const struct vmanifest *m, uint64_t want_epoch, uint64_t at, bool accept_older)
{
	const struct vrecord_entry *rec = v->rec_path ? vrecord_find(&v->rec, group) : NULL;
	size_t failed = 0, blocking = 0;

	for (size_t i = 0; i < v->n_sus; i++) {
		const struct suspect *x = &v->sus[i];
		if (x->recorded ? strcmp(x->group, group) || (at && x->cut_time > at) : false)
			continue;
		failed++;
		/* A failed manifest may be any group's, any epoch: unless this
		 * group's record says the chosen epoch is its newest commit. */
		if (x->recorded || !m || !rec || m->epoch < rec->epoch)
			blocking++;
	}
	if (!m) {
		if (!failed)
			return err_set(ENOENT, "the vault holds no %s of group %s (see `bascule vault ls`)",
				       want_epoch ? "such epoch" : at ? "epoch cut by that time" : "epoch", group);
		fprintf(stderr, "what failed:\n");
		suspects_print(v, group, stderr, "  ");
		char which[48] = "any epoch";
		if (want_epoch)
			snprintf(which, sizeof(which), "epoch %" PRIu64, want_epoch);
		return err_set(EBADMSG, "the vault holds no valid manifest of %s of group %s; %zu manifest(s) or "
					"recorded epoch(s) failed their check (above): it may be among them",
			       which, group, failed);
	}
	if (!failed)
		return 0;
	if (want_epoch || accept_older || !blocking) {
		fprintf(stderr, "warning: restoring epoch %" PRIu64 " of %s although the vault fails these "
				"checks:\n", m->epoch, group);
		suspects_print(v, group, stderr, "  ");
		return 0;
	}
	fprintf(stderr, "newer epochs may exist but fail their check:\n");
	suspects_print(v, group, stderr, "  ");
	if (!v->rec_path && !o->record_given)
		fprintf(stderr, "(no record of commits was read: with -c CONFIG or --record FILE, epochs "
				"whose manifests were deleted are named too)\n");
	return err_set(EBADMSG, "refusing to restore epoch %" PRIu64 " of %s, the newest valid one: the vault "
				"fails its check for what may be newer (above); restore it anyway with "
				"--accept-older, or choose with --epoch N",
		       m->epoch, group);
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS,
					      { "source", required_argument, NULL, O_SOURCE },
					      { "epoch", required_argument, NULL, O_EPOCH },
					      { "at", required_argument, NULL, O_AT },
					      { "to", required_argument, NULL, O_TO },
					      { "jobs", required_argument, NULL, O_JOBS },
					      { "force", no_argument, NULL, O_FORCE },
					      { "record", required_argument, NULL, O_RECORD },
					      { "accept-older", no_argument, NULL, O_ACCEPT },
					      { 0 } };
	struct vopts o = { 0 };
	const char *source = NULL, *to = NULL;
	uint64_t want_epoch = 0, at = 0;
	unsigned jobs = 4;
	bool force = false, accept_older = false, have_k, resumed = false;
	struct vstore *vs = NULL;
	struct vview v = { 0 };
	struct vmanifest *m = NULL;
	struct vpacks packs = { 0 };
	struct vmap map = { 0 };
	struct restore rs;
	struct vkeys k;
	uint8_t pk[32];
	char group[NAME_MAX_LEN + 1], *sname, part[4200];
	const struct vman_source *src = NULL;
	struct stat st;
	int c, r;

	memset(&rs, 0, sizeof(rs));
	rs.fd = rs.pfd = -1;
	pthread_mutex_init(&rs.lock, NULL);
	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		if (vopt(&o, c, optarg))
			continue;
		switch (c) {
		case O_SOURCE: source = optarg; break;
		case O_TO: to = optarg; break;
		case O_FORCE: force = true; break;
		case O_ACCEPT: accept_older = true; break;
		case O_EPOCH: {
			char *end;
			want_epoch = strtoull(optarg, &end, 10);
			if (*end || !want_epoch) {
				fprintf(stderr, "bascule restore: --epoch wants an epoch number (see `bascule vault ls`)\n");
				return EXIT_USAGE;
			}
			break;
		}
		case O_AT:
			if (units_parse_time(optarg, &at) < 0) {
				fprintf(stderr, "bascule restore: --at wants @UNIXSECONDS or YYYY-MM-DDTHH:MM:SS[Z]\n");
				return EXIT_USAGE;
			}
			break;
		case O_JOBS: {
			char *end;
			unsigned long nj = strtoul(optarg, &end, 10);
			if (*end || nj < 1 || nj > 64) {
				fprintf(stderr, "bascule restore: --jobs wants 1 to 64\n");
				return EXIT_USAGE;
			}
			jobs = (unsigned)nj;
			break;
		}
		case 'h':
			printf("Usage: bascule restore --vault URL --vault-key FILE --source GROUP/SOURCE --to PATH\n"
			       "       [--epoch N | --at TIME] [--accept-older] [--record FILE] [--jobs N]\n"
			       "       [--identity F --known-hosts F] [--force]\n"
			       "       (or -c CONFIG [--target T] for the vault's URL, credentials, key and record)\n\n"
			       "Rebuild one source as it was at an epoch (default: the newest) from the vault,\n"
			       "reading only the objects that epoch needs, with N parallel connections (4).\n"
			       "Every block is authenticated and checked against its keyed id as it is written;\n"
			       "the whole image against the manifest.  A regular file is written as PATH.part\n"
			       "and renamed to PATH when complete; an interrupted restore resumes when run\n"
			       "again with the same arguments.  TIME: @UNIXSECONDS or YYYY-MM-DDTHH:MM:SS[Z].\n\n"
			       "The newest epoch is the newest valid one only if nothing newer may be hidden: a\n"
			       "manifest that fails its check, or an epoch the daemon's record of commits lists\n"
			       "(-c, or --record STATE_DIR/vault/TARGET/committed) that the vault no longer\n"
			       "holds, makes restore refuse (exit 5, naming them) unless --accept-older, or\n"
			       "--epoch N, says to restore an older epoch.\n\n"
			       "Exit 0: restored; 5: the epoch is damaged in the vault (others may restore), or\n"
			       "newer epochs fail their check; 4: a key is missing or wrong; 3: bad\n"
			       "configuration; 2: usage; 1: failure (no such epoch, the vault or PATH cannot\n"
			       "be reached or written).\n");
			return EXIT_OK;
		default: return vusage("restore");
		}
	}
	if (!source || !to || optind != argc || (want_epoch && at)) {
		fprintf(stderr, "bascule restore: give --source GROUP/SOURCE and --to PATH (and at most one of "
				"--epoch, --at); see --help\n");
		return EXIT_USAGE;
	}
	snprintf(group, sizeof(group), "%s", source);
	sname = strchr(group, '/');
	if (!sname || !sname[1]) {
		fprintf(stderr, "bascule restore: --source is GROUP/SOURCE, e.g. vm1/disk0\n");
		return EXIT_USAGE;
	}
	*sname++ = 0;
	log_init("bascule-restore", arg_global.verbose);
	if ((r = vopts_finish(&o, "restore")) < 0 || (r = load_keys(&o, true, pk, &k, &have_k)) < 0 ||
	    (r = open_store(&o, &vs)) < 0 || (r = vview_load(&v, vs, &o, pk, &k)) < 0)
		goto out;
	for (size_t i = 0; i < v.n; i++) {
		if (strcmp(v.ms[i].group, group))
			continue;
		if (want_epoch ? v.ms[i].epoch == want_epoch : (!at || v.ms[i].cut_time <= at))
			if (!m || v.ms[i].epoch > m->epoch)
				m = &v.ms[i];
	}
	if ((r = restore_choice(&v, &o, group, m, want_epoch, at, accept_older)) < 0)
		goto out;
	for (uint32_t s = 0; s < m->n_sources; s++)
		if (!strcmp(m->src[s].name, sname))
			src = &m->src[s];
	if (!src) {
		r = err_set(ENOENT, "group %s has no source %s at epoch %" PRIu64, group, sname, m->epoch);
		goto out;
	}
	if ((r = vault_load_map(vs, &k, src, &packs, &map)) < 0) {
		r = damaged(r, group, sname, m->epoch);
		goto out;
	}
	vstore_close(vs);
	vs = NULL;
	/* The output: a device in place, a file through PATH.part. */
	rs.device = stat(to, &st) == 0 && S_ISBLK(st.st_mode);
	if (!rs.device && stat(to, &st) == 0 && !force) {
		r = err_set(EEXIST, "%s exists: restore to a new path, or give --force to replace it", to);
		goto out;
	}
	snprintf(part, sizeof(part), "%s%s", to, rs.device ? "" : ".part");
	rs.n_ranges = (map.n + RANGE_BLOCKS - 1) / RANGE_BLOCKS;
	if (!(rs.done = calloc(rs.n_ranges + 1, 1))) {
		r = -ENOMEM;
		goto out;
	}
	if (!rs.device) {
		char tag[NAME_MAX_LEN * 2 + 2];
		snprintf(tag, sizeof(tag), "%s/%s", group, sname);
		if ((rs.pfd = progress_open(part, m->name, tag, rs.done, rs.n_ranges, &resumed)) < 0) {
			r = err_set(EIO, "cannot write %s.progress", part);
			goto out;
		}
	}
	rs.fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC | (resumed || rs.device ? 0 : O_TRUNC), 0600);
	if (rs.fd < 0) {
		r = err_set(errno, "cannot open %s: %s", part, strerror(errno));
		goto out;
	}
	if (!rs.device && ftruncate(rs.fd, (off_t)map.size) < 0) {
		r = err_set(errno, "cannot size %s: %s", part, strerror(errno));
		goto out;
	}
	if (rs.device) {
		uint64_t dsz;
		if (fs_fd_size(rs.fd, &dsz) == 0 && dsz < map.size) {
			r = err_set(ENOSPC, "device %s holds %" PRIu64 " bytes; %s/%s needs %" PRIu64, to, dsz,
				    group, sname, map.size);
			goto out;
		}
	}
	{
		uint64_t done = 0, a, b;
		pthread_t th[64];
		unsigned started = 0;
		for (uint64_t i = 0; i < rs.n_ranges; i++)
			done += rs.done[i];
		if (resumed)
			printf("resuming: %" PRIu64 " of %" PRIu64 " ranges were already restored\n", done, rs.n_ranges);
		rs.o = &o;
		rs.k = &k;
		rs.packs = &packs;
		rs.map = &map;
		a = clock_mono_usec();
		for (unsigned j = 0; j < jobs && j < rs.n_ranges; j++)
			if (pthread_create(&th[j], NULL, restore_worker, &rs) == 0)
				started++;
		for (unsigned j = 0; j < started; j++)
			pthread_join(th[j], NULL);
		b = clock_mono_usec();
		if ((r = atomic_load(&rs.err)) < 0) {
			r = err_set(-r, "%s%s", rs.errmsg,
				    rs.device ? "" : "; what was restored is kept: run the same command again to "
						     "resume, or another epoch");
			r = damaged(r, group, sname, m->epoch);
			goto out;
		}
		if (fsync(rs.fd) < 0) {
			r = err_set(errno, "cannot fsync %s: %s", part, strerror(errno));
			goto out;
		}
		if (!rs.device) {
			char pp[4300];
			if (rename(part, to) < 0 || fs_fsync_parent(to) < 0) {
				r = err_set(errno, "cannot rename %s to %s: %s", part, to, strerror(errno));
				goto out;
			}
			snprintf(pp, sizeof(pp), "%s.progress", part);
			unlink(pp);
		}
		{
			double secs = (double)(b - a) / 1e6;
			char t[32];
			printf("restored %s/%s epoch %" PRIu64 " (cut %s, %s) to %s: %" PRIu64 " bytes, %" PRIu64
			       " read from the vault in %.2f s (%.1f MB/s of image), every block verified\n",
			       group, sname, m->epoch, tstr(m->cut_time, t, sizeof(t)),
			       m->flags & 1 ? "consistent" : "fuzzy", to, map.size,
			       (uint64_t)atomic_load(&rs.bytes_read), secs,
			       secs > 0 ? (double)map.size / secs / 1e6 : 0.0);
		}
	}
	r = 0;
out:
	if (rs.fd >= 0)
		close(rs.fd);
	if (rs.pfd >= 0)
		close(rs.pfd);
	free(rs.done);
	vmap_free(&map);
	vpacks_free(&packs);
	vview_free(&v);
	vstore_close(vs);
	config_free(o.cfg);
	sodium_memzero(&k, sizeof(k));
	return r < 0 ? vfail(&o, "restore", r) : EXIT_OK;
}

int cmd_vault(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "ls"))
		return vault_ls(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return vault_check(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "prune"))
		return vault_prune(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "recv"))
		return vault_recv(argc - 1, argv + 1);
	fprintf(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
		"Usage: bascule vault ls|check|prune [OPTIONS]   (each has --help)\n\n"
		"  ls       epochs the vault holds, with sizes (verify key is enough)\n"
		"  check    signatures and every needed object's digest (no secret needed);\n"
		"           --read-data with the vault key decrypts and verifies every block\n"
		"  prune    apply the retention policy (with a delete-capable account)\n"
		"Restore with `bascule restore`; create keys with `bascule keygen vault`.\n");
	return argc >= 2 && !strcmp(argv[1], "--help") ? EXIT_OK : EXIT_USAGE;
}
