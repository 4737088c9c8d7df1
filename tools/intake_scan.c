/* intake_scan.c - read and verify a client's intake directory with its
 * public key only: manifests, objects, chains, unfinished runs. */
#include "intake_tool.h"
#include "err.h"
#include "fsutil.h"
#include "vstore.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *intake_state_name(enum night_state s)
{
	switch (s) {
	case NIGHT_OK: return "ok";
	case NIGHT_INCOMPLETE: return "incomplete";
	case NIGHT_BAD: return "BAD";
	case NIGHT_DAMAGED: return "DAMAGED";
	case NIGHT_BROKEN: return "BROKEN CHAIN";
	}
	return "?";
}

void intake_client_free(struct intake_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		intake_manifest_free(&c->nights[i].m);
	free(c->nights);
	c->nights = NULL;
	c->n = 0;
}

struct scan {
	struct intake_client *c;
	struct vstore *v;
	size_t cap;
	int err;
};

/* What else the store keeps under NAME, one of N's (an S3 overwrite or
 * delete marker): noted in N->tamper; the genuine version is what is read. */
static void audit(struct vstore *v, struct intake_night *n, const char *name)
{
	char why[400];
	size_t k = strlen(n->tamper);

	if (vstore_audit(v, name, why, sizeof(why)) != 1) {
		err_clear();
		return;
	}
	if (k < sizeof(n->tamper) - 1)
		snprintf(n->tamper + k, sizeof(n->tamper) - k, "%s%s: %s", k ? "; " : "", name, why);
}

static int on_top(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct scan *s = ctx;
	struct intake_night *n;
	size_t len = strlen(name);
	uint8_t *data = NULL;
	size_t dlen;
	int r;

	(void)size;
	(void)mtime;
	if (is_dir || len != 10 + 9 || strcmp(name + 10, ".manifest") != 0)
		return 0;
	if (s->c->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		struct intake_night *x = realloc(s->c->nights, nc * sizeof(*x));
		if (!x)
			return -ENOMEM;
		s->c->nights = x;
		s->cap = nc;
	}
	n = &s->c->nights[s->c->n];
	memset(n, 0, sizeof(*n));
	memcpy(n->night, name, 10);
	n->night[10] = 0;
	if (!intake_night_ok(n->night))
		return 0;
	s->c->n++;
	if ((r = vstore_get(s->v, name, INTAKE_MANIFEST_MAX, &data, &dlen)) < 0) {
		n->state = NIGHT_BAD;
		snprintf(n->problem, sizeof(n->problem), "manifest unreadable: %s", err_msg(r));
		err_clear();
		return 0;
	}
	r = intake_manifest_decode(s->c->pub.sign_pk, data, dlen, &n->m);
	free(data);
	if (r == 0 && (r = intake_manifest_expect(&n->m, s->c->name, n->night)) < 0)
		intake_manifest_free(&n->m);
	if (r < 0) {
		n->state = r == -ENODATA ? NIGHT_INCOMPLETE : NIGHT_BAD;
		snprintf(n->problem, sizeof(n->problem), "%s", err_msg(r));
		err_clear();
		return r == -ENOMEM ? r : 0;
	}
	n->have_m = true;
	audit(s->v, n, name);
	return 0;
}

static int cmp_night(const void *a, const void *b)
{
	return strcmp(((const struct intake_night *)a)->night, ((const struct intake_night *)b)->night);
}

static struct intake_night *find(struct intake_client *c, const char *night)
{
	struct intake_night key;

	snprintf(key.night, sizeof(key.night), "%s", night);
	return c->n ? bsearch(&key, c->nights, c->n, sizeof(key), cmp_night) : NULL;
}

/* Every object of N: present, its size, and with READ its digest. */
static void check_objects(struct vstore *v, struct intake_night *n, bool read, uint8_t *buf)
{
	for (uint32_t i = 0; i < n->m.n; i++) {
		const struct intake_object *o = &n->m.objects[i];
		char name[128];
		uint64_t size, mtime;
		int r;

		intake_object_name(&n->m, i, name, sizeof(name));
		if ((r = vstore_stat(v, name, &size, &mtime)) < 0) {
			err_clear();
			n->state = NIGHT_DAMAGED;
			snprintf(n->problem, sizeof(n->problem), "object %s is MISSING", name);
			return;
		}
		audit(v, n, name);
		if (size != o->size) {
			n->state = NIGHT_DAMAGED;
			snprintf(n->problem, sizeof(n->problem), "object %s is %s (%llu bytes, %llu signed)", name,
				 size < o->size ? "TRUNCATED" : "ALTERED", (unsigned long long)size,
				 (unsigned long long)o->size);
			return;
		}
		if (read) {
			uint8_t d[32];
			ssize_t got = vstore_read(v, name, 0, buf, (size_t)o->size);
			if (got == (ssize_t)o->size)
				crypto_generichash(d, 32, buf, (size_t)o->size, NULL, 0);
			if (got != (ssize_t)o->size || sodium_memcmp(d, o->digest, 32) != 0) {
				err_clear();
				n->state = NIGHT_DAMAGED;
				snprintf(n->problem, sizeof(n->problem), "object %s is DAMAGED (its digest differs "
					 "from the signed one)", name);
				return;
			}
		}
	}
}

struct runs {
	struct intake_client *c;
	const struct intake_night *n; /* the night's manifest, if any */
	char night[11];
};

static int on_object(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct runs *r = ctx;

	(void)mtime;
	if (is_dir)
		return 0;
	if (r->n && r->n->have_m && !strncmp(name, r->n->m.run, INTAKE_RUN_LEN) && name[INTAKE_RUN_LEN] == '-')
		return 0;
	r->c->orphan_objects++;
	r->c->orphan_bytes += size;
	return 0;
}

static int on_night_dir(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct scan *s = ctx;
	struct runs r = { .c = s->c };

	(void)size;
	(void)mtime;
	if (!is_dir || !intake_night_ok(name))
		return 0;
	r.n = find(s->c, name);
	return vstore_list(s->v, name, on_object, &r);
}

int intake_scan(const char *dir, const char *name, bool read_data, struct intake_client *ret)
{
	struct intake_client c = { 0 };
	struct scan s = { .c = &c };
	char sub[300];
	uint8_t *buf = NULL;
	int r;

	if (!name_ok(name))
		return err_set(EINVAL, "'%s' is not a client name (letters, digits, '_', '-', '.')", name);
	snprintf(c.name, sizeof(c.name), "%s", name);
	if ((r = intake_store_pub(dir, name, &c.pub)) < 0)
		return r;
	clientkey_id(&c.pub, c.key_id);
	snprintf(c.dir, sizeof(c.dir), "%s/%s/incoming", dir, name);
	snprintf(sub, sizeof(sub), "%s/incoming", name);
	if ((r = intake_store_open(dir, sub, &s.v)) < 0)
		return err_wrap(r, "client %s", name);
	if ((r = vstore_list(s.v, "", on_top, &s)) < 0)
		goto fail;
	if (c.n)
		qsort(c.nights, c.n, sizeof(*c.nights), cmp_night);
	if (read_data && !(buf = malloc(INTAKE_OBJECT_MAX))) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < c.n; i++) {
		struct intake_night *n = &c.nights[i];
		if (!n->have_m)
			continue;
		check_objects(s.v, n, read_data, buf);
		if (n->state != NIGHT_OK)
			continue;
		if (n->m.kind == INTAKE_FULL) {
			snprintf(n->full, sizeof(n->full), "%s", n->night);
			continue;
		}
		{
			struct intake_night *b = find(&c, n->m.base_night);
			if (!b || !b->have_m) {
				n->state = NIGHT_BROKEN;
				snprintf(n->problem, sizeof(n->problem), "its base night %s is %s", n->m.base_night,
					 b ? intake_state_name(b->state) : "missing");
			} else if (sodium_memcmp(b->m.digest, n->m.base_digest, 32) != 0) {
				n->state = NIGHT_BROKEN;
				snprintf(n->problem, sizeof(n->problem), "its base night %s is not the one it was "
					 "made from (replaced?)", n->m.base_night);
			} else if (b->state != NIGHT_OK) {
				n->state = NIGHT_BROKEN;
				snprintf(n->problem, sizeof(n->problem), "its base night %s is %s", n->m.base_night,
					 intake_state_name(b->state));
			} else {
				n->chain = b->chain + 1;
				snprintf(n->full, sizeof(n->full), "%s", b->full);
			}
		}
	}
	for (size_t i = 0; i < c.n; i++)
		if (c.nights[i].state == NIGHT_OK)
			c.stored += c.nights[i].m.stored + c.nights[i].m.file_len;
	if ((r = vstore_list(s.v, "", on_night_dir, &s)) < 0)
		goto fail;
	free(buf);
	vstore_close(s.v);
	*ret = c;
	return 0;
fail:
	free(buf);
	vstore_close(s.v);
	intake_client_free(&c);
	return r;
}

const struct intake_night *intake_newest(const struct intake_client *c)
{
	for (size_t i = c->n; i-- > 0;)
		if (c->nights[i].state == NIGHT_OK)
			return &c->nights[i];
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int intake_client_list(const char *dir, const char *client, char ***ret, size_t *ret_n)
{
	char **names;

	if (!client)
		return intake_clients(dir, ret, ret_n);
	if (!(names = malloc(sizeof(*names))) || !(names[0] = strdup(client))) {
		free(names);
		return err_set(ENOMEM, "out of memory");
	}
	*ret = names;
	*ret_n = 1;
	return 0;
}

int intake_clients(const char *dir, char ***ret, size_t *ret_n)
{
	DIR *d;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (intake_store_s3(dir))
		return intake_store_clients(dir, ret, ret_n);
	if (!(d = opendir(dir)))
		return err_set(errno, "cannot read the intake directory %s: %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		char p[4400];
		if (!name_ok(e->d_name))
			continue;
		snprintf(p, sizeof(p), "%s/%s/client.pub", dir, e->d_name);
		if (access(p, F_OK) != 0)
			continue;
		if (n == cap) {
			char **x = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*x));
			if (!x)
				goto nomem;
			names = x;
		}
		if (!(names[n] = strdup(e->d_name)))
			goto nomem;
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	*ret = names;
	*ret_n = n;
	return 0;
nomem:
	/* a partial list would let check --all say OK about clients it never saw */
	closedir(d);
	intake_clients_free(names, n);
	return err_set(ENOMEM, "out of memory listing the clients of %s", dir);
}

void intake_clients_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
