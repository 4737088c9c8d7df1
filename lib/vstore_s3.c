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

struct vstore_s3 {
	struct s3 *s3;
	char bucket[64];
	char prefix[512];
	const char *lock_mode;
	uint64_t lock_seconds;
	struct resolved cache[CACHE];
	unsigned next;
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

void vstore_s3_client_opts(const struct vstore_opts *o, struct s3_opts *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->endpoint = o->s3_endpoint;
	ret->region = o->s3_region;
	ret->credentials = o->s3_credentials;
	ret->creds = o->s3_creds;
	ret->ca_file = o->s3_ca;
	ret->ca_pem = o->s3_ca_pem;
	ret->ca_pem_len = o->s3_ca_pem_len;
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
	vstore_s3_client_opts(o, &so);
	if ((r = s3_open(&so, v->bucket, &v->s3)) < 0)
		goto fail;
	v->lock_mode = o->lock_mode;
	v->lock_seconds = o->lock_seconds;
	*ret = v;
	return 0;
fail:
	free(v);
	return r;
}

void vstore_s3_close(struct vstore_s3 *v)
{
	if (!v)
		return;
	s3_close(v->s3);
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

/* Find NAME's genuine version: the oldest whose bytes match the name (the
 * listing is newest first), and describe the others. */
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

int vstore_s3_list(struct vstore_s3 *v, const char *dir, vstore_list_cb cb, void *ctx)
{
	char pfx[KEY_MAX];
	struct lister l = { .cb = cb, .ctx = ctx };
	int r;

	if ((r = vstore_s3_key(v, dir, pfx, sizeof(pfx) - 1)) < 0)
		return r;
	if (*pfx)
		strcat(pfx, "/");
	l.skip = strlen(pfx);
	r = s3_list_dir(v->s3, pfx, on_version, &l);
	if (r == 0)
		r = flush(&l);
	return r;
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
