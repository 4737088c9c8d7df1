/* vault_view.c - what a vault holds, as the commands see it: the valid
 * manifests, and the suspects (a manifest that fails its check, an epoch the
 * local record of commits lists that no valid manifest holds). */
#include "err.h"
#include "units.h"
#include "vault_tool.h"
#include <inttypes.h>
#include <string.h>

/* ---- what the vault should hold but does not give ---- */

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
int vview_load(struct vview *v, struct vstore *vs, const struct vopts *o, const uint8_t pk[32],
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

void vview_free(struct vview *v)
{
	vault_manifests_free(v->ms, v->n);
	free(v->sus);
	vrecord_free(&v->rec);
}

/* Print the suspects that concern GROUP (NULL: all) and return how many. */
size_t vview_print(const struct vview *v, const char *group, FILE *f, const char *indent)
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
