/* s3_ops.c - the S3 operations the vault needs, on the core of s3.c; XML
 * answers parsed with libxml2. */
#include "s3_int.h"
#include "err.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

static xmlDocPtr parse(const struct s3_resp *r)
{
	if (!r->body || !r->len)
		return NULL;
	return xmlReadMemory((const char *)r->body, (int)r->len, NULL, NULL,
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
			return c;
	return NULL;
}

/* The text of N's child NAME into OUT ("" if none). */
static void text(xmlNodePtr n, const char *name, char *out, size_t len)
{
	xmlNodePtr c = child(n, name);
	xmlChar *t = c ? xmlNodeGetContent(c) : NULL;
	snprintf(out, len, "%s", t ? (const char *)t : "");
	xmlFree(t);
}

/* "?versionId=V" style query of one optional parameter after PRE. */
static char *version_query(const char *pre, const char *version_id)
{
	char *v = version_id ? s3_escape(version_id, 0) : NULL, *q = NULL;
	if (version_id && !v)
		return NULL;
	int n = asprintf(&q, "%s%s%s%s", pre ? pre : "", pre && v ? "&" : "", v ? "versionId=" : "",
			 v ? v : "");
	free(v);
	return n < 0 ? NULL : q;
}

static struct curl_slist *lock_headers(struct curl_slist *h, const struct s3_lock *lock, int *rc)
{
	char date[40], line[96];
	*rc = 0;
	if (!lock || !lock->mode)
		return h;
	if ((*rc = s3_date(lock->retain_until, date, sizeof(date))) < 0)
		return h;
	snprintf(line, sizeof(line), "x-amz-object-lock-mode: %s", lock->mode);
	h = curl_slist_append(h, line);
	snprintf(line, sizeof(line), "x-amz-object-lock-retain-until-date: %s", date);
	return curl_slist_append(h, line);
}

static int put_single(struct s3 *s, const char *key, const void *data, size_t len,
		      const struct s3_lock *lock, char *vid, size_t vlen, int excl)
{
	int rc;
	struct curl_slist *h = lock_headers(NULL, lock, &rc);
	if (rc < 0) {
		curl_slist_free_all(h);
		return rc;
	}
	if (excl && !(h = curl_slist_append(h, "If-None-Match: *")))
		return -ENOMEM;
	char what[512];
	snprintf(what, sizeof(what), "PUT %s/%s", s->bucket, key);
	struct s3_req q = { .method = "PUT", .key = key, .body = data, .len = len, .headers = h };
	struct s3_resp r = { 0 };
	rc = s3_do(s, &q, &r, what);
	if (rc < 0 && excl && s->last_status == 412)
		rc = err_set(-EEXIST, "s3 %s: the object exists", what);
	if (rc == 0 && vid)
		snprintf(vid, vlen, "%s", r.version_id);
	s3_resp_free(&r);
	curl_slist_free_all(h);
	return rc;
}

/* Multipart: create (with the lock), parts each with its Content-MD5,
 * complete; aborted on failure (a store keeps nothing half-committed: an
 * object exists only once complete succeeds). */
static int put_multipart(struct s3 *s, const char *key, const uint8_t *data, size_t len,
			 const struct s3_lock *lock, char *vid, size_t vlen, int *complete_5xx)
{
	int rc;
	char what[512], upload[512] = "", *q = NULL, *xml = NULL;
	struct curl_slist *h = lock_headers(NULL, lock, &rc);
	if (rc < 0)
		return rc;
	snprintf(what, sizeof(what), "multipart PUT %s/%s", s->bucket, key);
	struct s3_req cq = { .method = "POST", .key = key, .query = "uploads=", .headers = h };
	struct s3_resp r = { 0 };
	rc = s3_do(s, &cq, &r, what);
	curl_slist_free_all(h);
	if (rc == 0) {
		xmlDocPtr d = parse(&r);
		text(d ? xmlDocGetRootElement(d) : NULL, "UploadId", upload, sizeof(upload));
		xmlFreeDoc(d);
		if (!*upload)
			rc = err_set(-EINVAL, "s3 %s: no UploadId in the answer", what);
	}
	s3_resp_free(&r);
	if (rc < 0)
		return rc;
	char *uid = s3_escape(upload, 0);
	size_t nparts = (len + s->part_size - 1) / s->part_size, xl = 0;
	FILE *xf = open_memstream(&xml, &xl);
	if (!uid || !xf) {
		rc = -ENOMEM;
		goto abort;
	}
	fprintf(xf, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < nparts && rc == 0; i++) {
		size_t off = i * s->part_size, n = len - off < s->part_size ? len - off : s->part_size;
		free(q);
		if (asprintf(&q, "partNumber=%zu&uploadId=%s", i + 1, uid) < 0) {
			q = NULL;
			rc = -ENOMEM;
			break;
		}
		struct s3_req pq = { .method = "PUT", .key = key, .query = q, .body = data + off, .len = n };
		rc = s3_do(s, &pq, &r, what);
		if (rc == 0)
			fprintf(xf, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1, r.etag);
		s3_resp_free(&r);
	}
	fprintf(xf, "</CompleteMultipartUpload>");
	fclose(xf);
	xf = NULL;
	if (rc < 0)
		goto abort;
	free(q);
	if (asprintf(&q, "uploadId=%s", uid) < 0) {
		q = NULL;
		rc = -ENOMEM;
		goto abort;
	}
	struct s3_req fq = { .method = "POST", .key = key, .query = q, .body = xml, .len = xl };
	rc = s3_do(s, &fq, &r, what);
	*complete_5xx = rc < 0 && s->last_status >= 500;
	if (rc == 0 && r.body && strstr((const char *)r.body, "<Error>"))
		rc = err_set(-EIO, "s3 %s: completing failed: %.200s", what, (const char *)r.body);
	if (rc == 0 && vid)
		snprintf(vid, vlen, "%s", r.version_id);
	s3_resp_free(&r);
	if (rc == 0)
		goto out;
abort:
	if (xf)
		fclose(xf);
	if (uid) {
		char *aq = NULL;
		if (asprintf(&aq, "uploadId=%s", uid) >= 0) {
			struct s3_req a = { .method = "DELETE", .key = key, .query = aq };
			struct s3_resp ar = { 0 };
			int keep = rc;
			s3_do(s, &a, &ar, "abort multipart");
			s3_resp_free(&ar);
			rc = keep;
			free(aq);
		}
	}
out:
	free(q);
	free(xml);
	free(uid);
	return rc;
}

int s3_put(struct s3 *s, const char *key, const void *data, size_t len, const struct s3_lock *lock,
	   char *version_id, size_t vlen)
{
	/* A completion cut by an RGW restart stays locked on the old upload
	 * ("500 This multipart completion is already in progress" for
	 * rgw_mp_lock_max_time, 10 min): start over once with a new upload.
	 * At worst the key gets a second version with the same bytes. */
	if (len > s->part_size) {
		int again = 0, rc = put_multipart(s, key, data, len, lock, version_id, vlen, &again);
		if (rc < 0 && again)
			rc = put_multipart(s, key, data, len, lock, version_id, vlen, &again);
		return rc;
	}
	return put_single(s, key, data, len, lock, version_id, vlen, 0);
}

int s3_put_new(struct s3 *s, const char *key, const void *data, size_t len, const struct s3_lock *lock,
	       char *version_id, size_t vlen)
{
	/* Multipart has no exclusive form here: the caller's HEAD is all. */
	if (len > s->part_size)
		return s3_put(s, key, data, len, lock, version_id, vlen);
	return put_single(s, key, data, len, lock, version_id, vlen, 1);
}

int s3_get(struct s3 *s, const char *key, const char *version_id, size_t max, uint8_t **ret,
	   size_t *ret_len)
{
	char what[512], *q = version_query(NULL, version_id);
	if (!q)
		return -ENOMEM;
	snprintf(what, sizeof(what), "GET %s/%s", s->bucket, key);
	struct s3_req rq = { .method = "GET", .key = key, .query = q };
	struct s3_resp r = { .max = max ? max : 1 };
	int rc = s3_do(s, &rq, &r, what);
	free(q);
	if (rc < 0) {
		s3_resp_free(&r);
		return rc;
	}
	if (!r.body && !(r.body = malloc(1)))
		return -ENOMEM;
	*ret = r.body;
	*ret_len = r.len;
	return 0;
}

long s3_get_range(struct s3 *s, const char *key, const char *version_id, uint64_t off, void *buf,
		  size_t len)
{
	if (!len)
		return 0;
	char what[512], range[80], *q = version_query(NULL, version_id);
	if (!q)
		return -ENOMEM;
	snprintf(what, sizeof(what), "GET %s/%s", s->bucket, key);
	snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
	struct curl_slist *h = curl_slist_append(NULL, range);
	struct s3_req rq = { .method = "GET", .key = key, .query = q, .headers = h };
	struct s3_resp r = { .sink = buf, .sink_len = len };
	int rc = s3_do(s, &rq, &r, what);
	curl_slist_free_all(h);
	free(q);
	if (rc < 0 && s->last_status == 416) {
		err_clear();
		return 0;
	}
	return rc < 0 ? rc : (long)r.len;
}

int s3_head(struct s3 *s, const char *key, const char *version_id, uint64_t *size, time_t *mtime)
{
	char what[512], *q = version_query(NULL, version_id);
	if (!q)
		return -ENOMEM;
	snprintf(what, sizeof(what), "HEAD %s/%s", s->bucket, key);
	struct s3_req rq = { .method = "HEAD", .key = key, .query = q };
	struct s3_resp r = { 0 };
	int rc = s3_do(s, &rq, &r, what);
	free(q);
	if (rc == 0) {
		if (size)
			*size = r.content_length;
		if (mtime)
			*mtime = r.last_modified;
	}
	s3_resp_free(&r);
	return rc;
}

int s3_delete(struct s3 *s, const char *key, const char *version_id)
{
	char what[512], *q = version_query(NULL, version_id);
	if (!q)
		return -ENOMEM;
	snprintf(what, sizeof(what), "DELETE %s/%s%s%s", s->bucket, key, version_id ? " version " : "",
		 version_id ? version_id : "");
	struct s3_req rq = { .method = "DELETE", .key = key, .query = q };
	struct s3_resp r = { 0 };
	int rc = s3_do(s, &rq, &r, what);
	free(q);
	s3_resp_free(&r);
	return rc;
}

static int list_versions(struct s3 *s, const char *prefix, int delim, s3_version_cb cb, void *ctx)
{
	char kmark[1100] = "", vmark[300] = "";
	char *pfx = s3_escape(prefix ? prefix : "", 0);
	int rc = 0;
	if (!pfx)
		return -ENOMEM;
	for (;;) {
		char *q = NULL, *km = s3_escape(kmark, 0), *vm = s3_escape(vmark, 0);
		/* Sorted: delimiter, key-marker, prefix, version-id-marker, versions. */
		int n = km && vm ? asprintf(&q, "%s%s%s%sprefix=%s&%s%s%sversions=", delim ? "delimiter=%2F&" : "",
					    *kmark ? "key-marker=" : "",
					    km, *kmark ? "&" : "", pfx, *vmark ? "version-id-marker=" : "",
					    vm, *vmark ? "&" : "")
				 : -1;
		free(km);
		free(vm);
		if (n < 0) {
			rc = -ENOMEM;
			break;
		}
		struct s3_req rq = { .method = "GET", .query = q };
		struct s3_resp r = { .max = (size_t)64 << 20 };
		char what[300];
		snprintf(what, sizeof(what), "ListObjectVersions %s/%s", s->bucket, prefix ? prefix : "");
		rc = s3_do(s, &rq, &r, what);
		free(q);
		xmlDocPtr d = rc == 0 ? parse(&r) : NULL;
		s3_resp_free(&r);
		if (rc < 0)
			break;
		xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
		if (!root) {
			rc = err_set(-EINVAL, "s3 %s: the answer is not XML", what);
			break;
		}
		char trunc[16];
		text(root, "IsTruncated", trunc, sizeof(trunc));
		text(root, "NextKeyMarker", kmark, sizeof(kmark));
		text(root, "NextVersionIdMarker", vmark, sizeof(vmark));
		for (xmlNodePtr c = root->children; c && rc == 0; c = c->next) {
			if (c->type != XML_ELEMENT_NODE)
				continue;
			int dm = !strcmp((const char *)c->name, "DeleteMarker");
			if (!strcmp((const char *)c->name, "CommonPrefixes")) {
				char p[1100];
				text(c, "Prefix", p, sizeof(p));
				struct s3_version v = { .key = p, .version_id = "", .etag = "", .is_prefix = 1 };
				rc = *p ? cb(ctx, &v) : 0;
				continue;
			}
			if (!dm && strcmp((const char *)c->name, "Version"))
				continue;
			char key[1100], vid[300], etag[128], size[32], latest[16], mt[64];
			text(c, "Key", key, sizeof(key));
			text(c, "VersionId", vid, sizeof(vid));
			text(c, "ETag", etag, sizeof(etag));
			text(c, "Size", size, sizeof(size));
			text(c, "IsLatest", latest, sizeof(latest));
			text(c, "LastModified", mt, sizeof(mt));
			struct s3_version v = { .key = key, .version_id = vid, .etag = etag,
						.size = strtoull(size, NULL, 10), .mtime = s3_parse_date(mt),
						.is_latest = !strcmp(latest, "true"), .delete_marker = dm };
			rc = cb(ctx, &v);
		}
		xmlFreeDoc(d);
		if (rc || strcmp(trunc, "true") || !*kmark)
			break;
	}
	free(pfx);
	return rc;
}

int s3_list_versions(struct s3 *s, const char *prefix, s3_version_cb cb, void *ctx)
{
	return list_versions(s, prefix, 0, cb, ctx);
}

int s3_list_dir(struct s3 *s, const char *prefix, s3_version_cb cb, void *ctx)
{
	return list_versions(s, prefix, 1, cb, ctx);
}

int s3_retention_get(struct s3 *s, const char *key, const char *version_id, char *mode, size_t mlen,
		     time_t *until)
{
	char what[512], *q = version_query("retention=", version_id);
	if (!q)
		return -ENOMEM;
	snprintf(what, sizeof(what), "GetObjectRetention %s/%s", s->bucket, key);
	struct s3_req rq = { .method = "GET", .key = key, .query = q };
	struct s3_resp r = { 0 };
	int rc = s3_do(s, &rq, &r, what);
	free(q);
	*mode = 0;
	*until = 0;
	if (rc == 0) {
		xmlDocPtr d = parse(&r);
		xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
		char date[64];
		text(root, "Mode", mode, mlen);
		text(root, "RetainUntilDate", date, sizeof(date));
		*until = s3_parse_date(date);
		xmlFreeDoc(d);
	} else if (rc == -ENOENT) {
		err_clear();
		rc = 0; /* no retention on this version */
	}
	s3_resp_free(&r);
	return rc;
}

int s3_retention_put(struct s3 *s, const char *key, const char *version_id, const struct s3_lock *lock)
{
	char what[512], date[40], *body = NULL, *q = version_query("retention=", version_id);
	if (!q)
		return -ENOMEM;
	int rc = s3_date(lock->retain_until, date, sizeof(date));
	if (rc < 0 || asprintf(&body, "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
				      "<Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
			       lock->mode, date) < 0) {
		free(q);
		return rc < 0 ? rc : -ENOMEM;
	}
	snprintf(what, sizeof(what), "PutObjectRetention %s/%s", s->bucket, key);
	struct s3_req rq = { .method = "PUT", .key = key, .query = q, .body = body, .len = strlen(body) };
	struct s3_resp r = { 0 };
	rc = s3_do(s, &rq, &r, what);
	s3_resp_free(&r);
	free(body);
	free(q);
	return rc;
}

int s3_bucket_lock(struct s3 *s, int *enabled, char *mode, size_t mlen, int *days)
{
	char what[300];
	snprintf(what, sizeof(what), "GetObjectLockConfiguration %s", s->bucket);
	struct s3_req rq = { .method = "GET", .query = "object-lock=" };
	struct s3_resp r = { 0 };
	int rc = s3_do(s, &rq, &r, what);
	*enabled = 0;
	*mode = 0;
	*days = 0;
	if (rc == -ENOENT && s->last_status == 404 && r.body &&
	    strstr((const char *)r.body, "ObjectLockConfigurationNotFound")) {
		err_clear();
		rc = 0; /* a bucket without Object Lock */
	} else if (rc == 0) {
		xmlDocPtr d = parse(&r);
		xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
		char en[32], n[16], y[16];
		text(root, "ObjectLockEnabled", en, sizeof(en));
		*enabled = !strcmp(en, "Enabled");
		xmlNodePtr dr = child(child(root, "Rule"), "DefaultRetention");
		text(dr, "Mode", mode, mlen);
		text(dr, "Days", n, sizeof(n));
		text(dr, "Years", y, sizeof(y));
		*days = atoi(n) + 365 * atoi(y);
		xmlFreeDoc(d);
	}
	s3_resp_free(&r);
	return rc;
}

int s3_bucket_versioning(struct s3 *s, int *state)
{
	char what[300];
	snprintf(what, sizeof(what), "GetBucketVersioning %s", s->bucket);
	struct s3_req rq = { .method = "GET", .query = "versioning=" };
	struct s3_resp r = { 0 };
	int rc = s3_do(s, &rq, &r, what);
	*state = 0;
	if (rc == 0) {
		xmlDocPtr d = parse(&r);
		char st[32];
		text(d ? xmlDocGetRootElement(d) : NULL, "Status", st, sizeof(st));
		*state = !strcmp(st, "Enabled") ? 1 : !strcmp(st, "Suspended") ? -1 : 0;
		xmlFreeDoc(d);
	}
	s3_resp_free(&r);
	return rc;
}

int s3_bucket_create(struct s3 *s, int object_lock)
{
	char what[300];
	snprintf(what, sizeof(what), "CreateBucket %s", s->bucket);
	struct curl_slist *h = object_lock ? curl_slist_append(NULL, "x-amz-bucket-object-lock-enabled: true")
					   : NULL;
	struct s3_req rq = { .method = "PUT", .headers = h };
	struct s3_resp r = { 0 };
	int rc = s3_do(s, &rq, &r, what);
	s3_resp_free(&r);
	curl_slist_free_all(h);
	return rc;
}
