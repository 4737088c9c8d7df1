/* vstore_s3.c - the vault store on an S3 bucket with Object Lock: locked
 * exclusive puts, reads of the version whose bytes match the name, the
 * bucket's listing as directories, and what else a key holds
 * (vstore_s3.h). */
#include "vstore_s3.h"
#include "err.h"
#include "s3.h"
#include <ctype.h>
#include <limits.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE 64     /* names resolved to their genuine version, kept */
#define KEY_MAX 1024

struct resolved {
	bool used;
	char name[300];
	char vid[300];
	uint64_t size, mtime;
	int foreign;        /* versions whose bytes do not match the name, delete markers */
	char why[512];
};

/* A name a prefetch found with a single version, not a delete marker: its
 * genuine version without a listing of its own (vstore_s3_prefetch). */
struct known {
	char *name;         /* relative to the prefix: "d/3f/3f9a..." */
	char *vid;
	uint64_t size, mtime;
};

struct vstore_s3_known {
	struct known *k;    /* sorted by name */
	size_t n, cap;
};

struct vstore_s3 {
	struct s3 *s3;
	char bucket[64];
	char prefix[512];
	const char *lock_mode;
	uint64_t lock_seconds;
	struct resolved cache[CACHE];
	unsigned next;
	struct vstore_s3_known own;          /* what this store's prefetches found */
	const struct vstore_s3_known *shared; /* or another store's (vstore_s3_share) */
};

int vstore_s3_parse_url(const char *url, char *bucket, size_t blen, char *prefix, size_t plen)
{
	const char *b = url + 5, *slash;
	size_t n;

	if (strncmp(url, "s3://", 5) != 0)
		return err_set(EINVAL, "vault url '%s' is not s3://BUCKET/PREFIX", url);
	slash = strchr(b, '/');
	n = slash ? (size_t)(slash - b) : strlen(b);
	if (n < 3 || n > 63 || n >= blen)
		return err_set(EINVAL, "vault url '%s': a bucket name has 3 to 63 characters", url);
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)b[i]) && !isdigit((unsigned char)b[i]) && b[i] != '-' && b[i] != '.')
			return err_set(EINVAL, "vault url '%s': a bucket name is lower-case letters, digits, "
					       "'-' and '.'", url);
	memcpy(bucket, b, n);
	bucket[n] = 0;
	{
		const char *p = slash ? slash : "";
		while (*p == '/')
			p++;
		if (strlen(p) >= plen)
			return err_set(EINVAL, "vault url '%s': the prefix is too long", url);
		snprintf(prefix, plen, "%s", p);
		for (size_t k = strlen(prefix); k && prefix[k - 1] == '/'; k--)
			prefix[k - 1] = 0;
	}
	return 0;
}

int vstore_s3_client_opts(const struct vstore_opts *o, struct s3_opts *ret)
{
	int style = s3_url_style(o->s3_url_style);

	if (style < 0)
		return style;
	memset(ret, 0, sizeof(*ret));
	ret->url_style = style;
	ret->endpoint = o->s3_endpoint;
	ret->region = o->s3_region;
	ret->credentials = o->s3_credentials;
	ret->creds = o->s3_creds;
	ret->ca_file = o->s3_ca;
	ret->ca_pem = o->s3_ca_pem;
	ret->ca_pem_len = o->s3_ca_pem_len;
	return 0;
}

int vstore_s3_port(const char *endpoint)
{
	bool tls = strncmp(endpoint, "https://", 8) == 0;
	const char *h = strstr(endpoint, "://"), *c;

	h = h ? h + 3 : endpoint;
	if (*h == '[')
		h = strchr(h, ']') ? strchr(h, ']') : h;
	c = strchr(h, ':');
	if (c && isdigit((unsigned char)c[1]))
		return atoi(c + 1);
	return tls ? 443 : 80;
}

int vstore_s3_open(const char *url, const struct vstore_opts *o, struct vstore_s3 **ret)
{
	struct vstore_s3 *v;
	struct s3_opts so;
	int r;

	if (!(v = calloc(1, sizeof(*v))))
		return -ENOMEM;
	if ((r = vstore_s3_parse_url(url, v->bucket, sizeof(v->bucket), v->prefix, sizeof(v->prefix))) < 0)
		goto fail;
	if (!o || !o->s3_endpoint || (!o->s3_credentials && !o->s3_creds)) {
		r = err_set(EINVAL, "vault %s needs an S3 endpoint and a credentials file (s3_endpoint and "
				    "s3_credentials, or --s3-endpoint and --s3-credentials)", url);
		goto fail;
	}
	if ((r = vstore_s3_client_opts(o, &so)) < 0 || (r = s3_open(&so, v->bucket, &v->s3)) < 0)
		goto fail;
	v->lock_mode = o->lock_mode;
	v->lock_seconds = o->lock_seconds;
	*ret = v;
	return 0;
fail:
	free(v);
	return r;
}

static void known_free(struct vstore_s3_known *kn)
{
	for (size_t i = 0; i < kn->n; i++) {
		free(kn->k[i].name);
		free(kn->k[i].vid);
	}
	free(kn->k);
	memset(kn, 0, sizeof(*kn));
}

void vstore_s3_close(struct vstore_s3 *v)
{
	if (!v)
		return;
	s3_close(v->s3);
	known_free(&v->own);
	free(v);
}

struct s3 *vstore_s3_client(struct vstore_s3 *v)
{
	return v->s3;
}

int vstore_s3_key(const struct vstore_s3 *v, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s%s%s", v->prefix, *v->prefix && *name ? "/" : "", name);
	return n < 0 || (size_t)n >= len ? err_set(ENAMETOOLONG, "vault: object name too long: %s", name) : 0;
}

/* ---- which version is the object ---- */

struct ver {
	char vid[300], etag[128];
	uint64_t size;
	time_t mtime;
	bool marker;
};

struct vers {
	const char *key;
	struct ver *v;
	size_t n, cap;
};

static int collect(void *ctx, const struct s3_version *sv)
{
	struct vers *l = ctx;

	if (sv->is_prefix || strcmp(sv->key, l->key) != 0)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 4;
		struct ver *nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	struct ver *x = &l->v[l->n++];
	snprintf(x->vid, sizeof(x->vid), "%s", sv->version_id);
	snprintf(x->etag, sizeof(x->etag), "%s", sv->etag);
	x->size = sv->size;
	x->mtime = sv->mtime;
	x->marker = sv->delete_marker;
	return 0;
}

/* The digest NAME stands for, if its last part is 64 hex digits. */
static bool name_digest(const char *name, uint8_t d[32])
{
	const char *b = strrchr(name, '/');
	size_t n;

	b = b ? b + 1 : name;
	return strlen(b) == 64 && sodium_hex2bin(d, 32, b, 64, NULL, &n, NULL) == 0 && n == 32;
}

/* 1 if version X of KEY hashes to D, 0 if not, or a negative errno. */
static int version_matches(struct vstore_s3 *v, const char *key, const struct ver *x, const uint8_t d[32])
{
	uint8_t *buf = NULL, got[32];
	size_t n = 0;
	int r = s3_get(v->s3, key, x->vid, x->size + 1, &buf, &n);

	if (r < 0)
		return r;
	crypto_generichash(got, sizeof(got), buf, n, NULL, 0);
	free(buf);
	return memcmp(got, d, 32) == 0;
}

static void describe(char *why, size_t len, const struct ver *x, bool overwrite, bool digest)
{
	char when[32];
	struct tm tm;
	size_t k = strlen(why);

	gmtime_r(&x->mtime, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (k >= len - 1)
		return;
	snprintf(why + k, len - k, "%s%s (version %s, %s)", k ? "; " : "",
		 !overwrite ? "DELETED: a delete marker"
		 : digest   ? "OVERWRITTEN: a version whose bytes do not match its name"
			    : "OVERWRITTEN: a newer version with other bytes",
		 x->vid, when);
}

static int cmp_known(const void *a, const void *b)
{
	return strcmp(((const struct known *)a)->name, ((const struct known *)b)->name);
}

static const struct known *known_find(const struct vstore_s3_known *kn, const char *name)
{
	struct known x = { .name = (char *)name }, *k;

	k = kn->n ? bsearch(&x, kn->k, kn->n, sizeof(*kn->k), cmp_known) : NULL;
	return k && k->vid ? k : NULL;
}

/* Find NAME's genuine version: the oldest whose bytes match the name (the
 * listing is newest first), and describe the others.  A name a prefetch
 * found with one version and no delete marker is that version: nothing
 * else is there to tell apart or to report. */
static int resolve(struct vstore_s3 *v, const char *name, struct resolved **ret)
{
	char key[KEY_MAX];
	struct vers l = { .key = key };
	struct resolved *c;
	uint8_t d[32];
	bool digest;
	long genuine = -1;
	int r;

	for (unsigned i = 0; i < CACHE; i++)
		if (v->cache[i].used && !strcmp(v->cache[i].name, name)) {
			*ret = &v->cache[i];
			return 0;
		}
	{
		const struct known *kn = known_find(v->shared ? v->shared : &v->own, name);
		if (kn) {
			c = &v->cache[v->next++ % CACHE];
			memset(c, 0, sizeof(*c));
			snprintf(c->name, sizeof(c->name), "%s", name);
			snprintf(c->vid, sizeof(c->vid), "%s", kn->vid);
			c->size = kn->size;
			c->mtime = kn->mtime;
			c->used = true;
			*ret = c;
			return 0;
		}
	}
	if ((r = vstore_s3_key(v, name, key, sizeof(key))) < 0 ||
	    (r = s3_list_versions(v->s3, key, collect, &l)) < 0)
		goto out;
	digest = name_digest(name, d);
	{
		size_t data = 0;
		for (size_t i = 0; i < l.n; i++)
			data += !l.v[i].marker;
		if (data == 0) {
			r = err_set(ENOENT, "vault object %s is missing", name);
			goto out;
		}
		for (long i = (long)l.n - 1; i >= 0 && genuine < 0; i--) {
			if (l.v[i].marker)
				continue;
			if (data == 1 || !digest) {
				genuine = i; /* the only one (its bytes are checked by whoever reads it) */
				break;
			}
			if ((r = version_matches(v, key, &l.v[i], d)) < 0)
				goto out;
			if (r == 1)
				genuine = i;
		}
		if (genuine < 0) /* none matches: the oldest, which check reports DAMAGED */
			for (long i = (long)l.n - 1; i >= 0 && genuine < 0; i--)
				if (!l.v[i].marker)
					genuine = i;
	}
	c = &v->cache[v->next++ % CACHE];
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->vid, sizeof(c->vid), "%s", l.v[genuine].vid);
	c->size = l.v[genuine].size;
	c->mtime = (uint64_t)l.v[genuine].mtime;
	for (size_t i = 0; i < l.n; i++) {
		const struct ver *x = &l.v[i], *g = &l.v[genuine];
		if ((long)i == genuine)
			continue;
		if (!x->marker) {
			/* The writer's own second put of the same bytes (an RGW that
			 * ignored If-None-Match, a retried upload) is no tampering. */
			if (x->size == g->size && *x->etag && !strcmp(x->etag, g->etag))
				continue;
			if (digest && (r = version_matches(v, key, x, d)) != 0) {
				if (r < 0) {
					c->used = false;
					goto out;
				}
				continue;
			}
		}
		c->foreign++;
		describe(c->why, sizeof(c->why), x, !x->marker, digest);
	}
	c->used = true;
	*ret = c;
	r = 0;
out:
	free(l.v);
	return r;
}

static void forget(struct vstore_s3 *v, const char *name)
{
	for (unsigned i = 0; i < CACHE; i++)
		if (v->cache[i].used && !strcmp(v->cache[i].name, name))
			v->cache[i].used = false;
}

/* ---- the operations ---- */

int vstore_s3_put(struct vstore_s3 *v, const char *name, const void *data, size_t len)
{
	char key[KEY_MAX];
	struct s3_lock lock = { .mode = v->lock_mode, .retain_until = time(NULL) + (time_t)v->lock_seconds };
	int r;

	if ((r = vstore_s3_key(v, name, key, sizeof(key))) < 0)
		return r;
	r = s3_head(v->s3, key, NULL, NULL, NULL);
	if (r == 0)
		return -EEXIST;
	if (r != -ENOENT || s3_last_status(v->s3) != 404)
		return r; /* a missing bucket, refused credentials: not a free name */
	err_clear();
	forget(v, name);
	r = s3_put_new(v->s3, key, data, len, v->lock_mode ? &lock : NULL, NULL, 0);
	if (r == -EEXIST)
		err_clear();
	return r;
}

ssize_t vstore_s3_read(struct vstore_s3 *v, const char *name, uint64_t off, void *buf, size_t len)
{
	char key[KEY_MAX];
	struct resolved *c;
	int r;

	if ((r = vstore_s3_key(v, name, key, sizeof(key))) < 0 || (r = resolve(v, name, &c)) < 0)
		return r;
	if (off >= c->size || !len)
		return 0;
	if (len > c->size - off)
		len = (size_t)(c->size - off);
	return s3_get_range(v->s3, key, c->vid, off, buf, len);
}

int vstore_s3_stat(struct vstore_s3 *v, const char *name, uint64_t *size, uint64_t *mtime)
{
	struct resolved *c;
	int r = resolve(v, name, &c);

	if (r < 0)
		return r;
	if (size)
		*size = c->size;
	if (mtime)
		*mtime = c->mtime;
	return 0;
}

int vstore_s3_version(struct vstore_s3 *v, const char *name, char *version_id, size_t len)
{
	struct resolved *c;
	int r = resolve(v, name, &c);

	if (r == 0)
		snprintf(version_id, len, "%s", c->vid);
	return r;
}

/* ---- prefetch: the versions of many names from one listing ---- */

struct fetch {
	size_t skip;            /* length of "PREFIX/" */
	const char **want;      /* sorted, unique; NULL: every name */
	size_t n_want, found, seen;
	char key[KEY_MAX], vid[300];
	uint64_t size, mtime;
	unsigned versions;      /* of KEY so far, delete markers included */
	bool have, marker;
	struct vstore_s3_known got;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* KEY's versions are all seen: keep it if it has exactly one, a data one. */
static int fetch_flush(struct fetch *f)
{
	const char *name = f->key + f->skip;
	struct known *k;

	if (!f->have)
		return 0;
	f->have = false;
	if (f->versions != 1 || f->marker ||
	    (f->want && !bsearch(&name, f->want, f->n_want, sizeof(*f->want), cmp_str)))
		return 0;
	if (f->got.n == f->got.cap) {
		size_t cap = f->got.cap ? 2 * f->got.cap : 64;
		struct known *nk = realloc(f->got.k, cap * sizeof(*nk));
		if (!nk)
			return -ENOMEM;
		f->got.k = nk;
		f->got.cap = cap;
	}
	k = &f->got.k[f->got.n];
	k->name = strdup(name);
	k->vid = strdup(f->vid);
	k->size = f->size;
	k->mtime = f->mtime;
	if (!k->name || !k->vid) {
		free(k->name);
		free(k->vid);
		return -ENOMEM;
	}
	f->got.n++;
	f->found++;
	return 0;
}

static int fetch_version(void *ctx, const struct s3_version *sv)
{
	struct fetch *f = ctx;
	size_t kl = strlen(sv->key);
	int r;

	if (sv->is_prefix || kl <= f->skip || kl >= sizeof(f->key))
		return 0;
	if (!f->have || strcmp(f->key, sv->key) != 0) {
		if ((r = fetch_flush(f)) < 0)
			return r;
		/* Every wanted name found, or more pages listed (1000
		 * versions each) than the names still unknown would cost
		 * listings of their own: the rest are resolved one by one. */
		if (f->want && (f->found == f->n_want || f->seen / 1000 > f->n_want - f->found))
			return 1;
		memcpy(f->key, sv->key, kl + 1);
		f->have = true;
		f->versions = 0;
		f->marker = false;
	}
	f->seen++;
	f->versions++;
	if (sv->delete_marker) {
		f->marker = true;
	} else {
		snprintf(f->vid, sizeof(f->vid), "%s", sv->version_id);
		f->size = sv->size;
		f->mtime = (uint64_t)sv->mtime;
	}
	return 0;
}

int vstore_s3_prefetch(struct vstore_s3 *v, const char *dir, const char *const *names, size_t n)
{
	char pfx[KEY_MAX];
	struct fetch f = { .skip = *v->prefix ? strlen(v->prefix) + 1 : 0 };
	struct vstore_s3_known *kn = &v->own;
	int r;

	if ((r = vstore_s3_key(v, dir, pfx, sizeof(pfx) - 1)) < 0)
		return r;
	if (*pfx)
		strcat(pfx, "/");
	if (names) {
		if (!n)
			return 0;
		if (!(f.want = malloc(n * sizeof(*f.want))))
			return -ENOMEM;
		memcpy(f.want, names, n * sizeof(*f.want));
		qsort(f.want, n, sizeof(*f.want), cmp_str);
		for (size_t i = 0; i < n; i++)
			if (!f.n_want || strcmp(f.want[f.n_want - 1], f.want[i]))
				f.want[f.n_want++] = f.want[i];
	}
	r = s3_list_versions(v->s3, pfx, fetch_version, &f);
	if (r == 0)
		r = fetch_flush(&f);
	else if (r == 1)
		r = 0; /* stopped early */
	free(f.want);
	if (r == 0 && f.got.n) {
		struct known *nk = reallocarray(kn->k, kn->n + f.got.n, sizeof(*nk));
		if (!nk)
			r = -ENOMEM;
		else {
			kn->k = nk;
			kn->cap = kn->n + f.got.n;
		}
	}
	if (r < 0) {
		known_free(&f.got);
		return r;
	}
	/* Each name once: one already known keeps its entry (a name has one
	 * clean version: the same). */
	{
		const struct vstore_s3_known before = { kn->k, kn->n, kn->n };
		for (size_t i = 0; i < f.got.n; i++) {
			if (known_find(&before, f.got.k[i].name)) {
				free(f.got.k[i].name);
				free(f.got.k[i].vid);
				continue;
			}
			kn->k[kn->n++] = f.got.k[i];
		}
	}
	free(f.got.k);
	if (kn->n)
		qsort(kn->k, kn->n, sizeof(*kn->k), cmp_known);
	return (int)(f.found > INT_MAX ? INT_MAX : f.found);
}

void vstore_s3_share(struct vstore_s3 *v, const struct vstore_s3 *from)
{
	v->shared = from ? &from->own : NULL;
}

int vstore_s3_audit(struct vstore_s3 *v, const char *name, char *why, size_t len)
{
	struct resolved *c;
	int r = resolve(v, name, &c);

	if (r < 0)
		return r;
	snprintf(why, len, "%s", c->why);
	return c->foreign ? 1 : 0;
}

/* A listing: the versions of one key come together, newest first; a key
 * is listed once, with its oldest version's size and time, unless only
 * delete markers are left of it. */
struct lister {
	size_t skip;                 /* length of the listed prefix */
	vstore_list_cb cb;
	void *ctx;
	char key[KEY_MAX];
	bool have, data;
	uint64_t size, mtime;
};

static int flush(struct lister *l)
{
	int r = 0;

	if (l->have && l->data)
		r = l->cb(l->ctx, l->key + l->skip, 0, l->size, l->mtime);
	l->have = false;
	return r;
}

static int on_version(void *ctx, const struct s3_version *sv)
{
	struct lister *l = ctx;
	int r;

	if (strlen(sv->key) <= l->skip || strlen(sv->key) >= sizeof(l->key))
		return 0;
	if (sv->is_prefix) {
		char d[KEY_MAX];
		size_t n;
		if ((r = flush(l)) < 0)
			return r;
		snprintf(d, sizeof(d), "%s", sv->key + l->skip);
		n = strlen(d);
		if (n && d[n - 1] == '/')
			d[n - 1] = 0;
		return *d ? l->cb(l->ctx, d, 1, 0, 0) : 0;
	}
	if (!l->have || strcmp(l->key, sv->key) != 0) {
		if ((r = flush(l)) != 0)
			return r;
		snprintf(l->key, sizeof(l->key), "%s", sv->key);
		l->have = true;
		l->data = false;
	}
	if (!sv->delete_marker) {
		l->data = true;
		l->size = sv->size;
		l->mtime = (uint64_t)sv->mtime;
	}
	return 0;
}

/* DIR's entries (TREE: every object below it, in one paged listing). */
static int list(struct vstore_s3 *v, const char *dir, bool tree, vstore_list_cb cb, void *ctx)
{
	char pfx[KEY_MAX];
	struct lister l = { .cb = cb, .ctx = ctx };
	int r;

	if ((r = vstore_s3_key(v, dir, pfx, sizeof(pfx) - 1)) < 0)
		return r;
	if (*pfx)
		strcat(pfx, "/");
	l.skip = strlen(pfx);
	r = (tree ? s3_list_versions : s3_list_dir)(v->s3, pfx, on_version, &l);
	if (r == 0)
		r = flush(&l);
	return r;
}

int vstore_s3_list(struct vstore_s3 *v, const char *dir, vstore_list_cb cb, void *ctx)
{
	return list(v, dir, false, cb, ctx);
}

int vstore_s3_list_tree(struct vstore_s3 *v, const char *dir, vstore_list_cb cb, void *ctx)
{
	return list(v, dir, true, cb, ctx);
}

static void iso(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int vstore_s3_remove(struct vstore_s3 *v, const char *name)
{
	char key[KEY_MAX], mode[32];
	struct vers l = { .key = key };
	time_t now = time(NULL), until;
	int r;

	forget(v, name);
	v->shared = NULL; /* another store's knowledge is not this one's to change */
	{
		struct known *k = (struct known *)known_find(&v->own, name);
		if (k) {
			free(k->vid);
			k->vid = NULL;
		}
	}
	if ((r = vstore_s3_key(v, name, key, sizeof(key))) < 0 ||
	    (r = s3_list_versions(v->s3, key, collect, &l)) < 0)
		goto out;
	/* Lock-aware: nothing is deleted while any version is locked, so that
	 * a refusal halfway never leaves a key stripped of some versions. */
	for (size_t i = 0; i < l.n && r == 0; i++) {
		if (l.v[i].marker)
			continue;
		if ((r = s3_retention_get(v->s3, key, l.v[i].vid, mode, sizeof(mode), &until)) < 0) {
			if (r == -EINVAL && s3_last_status(v->s3) == 400) {
				err_clear(); /* a bucket without Object Lock: no version is locked */
				r = 0;
				break;
			}
			continue;
		}
		if (*mode && until > now) {
			char when[32];
			iso(until, when, sizeof(when));
			r = err_set(EAGAIN, "%s is locked (%s) until %s", name, mode, when);
		}
	}
	/* Oldest first: a refusal (a lock set meanwhile) leaves the newer
	 * ones, a marker above the locked version included, as they were. */
	for (long i = (long)l.n - 1; i >= 0 && r == 0; i--)
		r = s3_delete(v->s3, key, l.v[i].vid);
out:
	free(l.v);
	return r;
}

int vstore_s3_extend(struct vstore_s3 *v, const char *name, const char *mode, time_t at_least, time_t until,
		     time_t *ret_until)
{
	char key[KEY_MAX], have[32];
	struct resolved *c;
	time_t cur;
	int r;

	if ((r = vstore_s3_key(v, name, key, sizeof(key))) < 0 || (r = resolve(v, name, &c)) < 0 ||
	    (r = s3_retention_get(v->s3, key, c->vid, have, sizeof(have), &cur)) < 0)
		return r;
	*ret_until = cur;
	if (*have && cur >= at_least)
		return 0;
	if (!until)
		return 1; /* a dry run */
	/* A COMPLIANCE lock cannot become GOVERNANCE: keep the mode it has. */
	struct s3_lock lock = { .mode = *have ? have : mode, .retain_until = until };
	if ((r = s3_retention_put(v->s3, key, c->vid, &lock)) < 0)
		return r;
	*ret_until = until;
	return 1;
}
