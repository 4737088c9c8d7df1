/* s3.h - a small S3 client for the vault's s3:// store: libcurl with its
 * SigV4 signing (CURLOPT_AWS_SIGV4 "aws:amz:REGION:s3"), one CURL handle per
 * client (connections reused), TLS verified (optionally against a CA file),
 * retries with backoff on 5xx, throttling and transport errors, and timeouts
 * (connect, and a stall of no progress; never a total time).  Every PUT
 * carries Content-MD5 and x-amz-checksum-sha256 (AWS refuses a locked PUT
 * without one; pgBackRest issue 2613).  Objects larger than part_size go up
 * as a multipart upload (each part with its Content-MD5).
 *
 * Written for Debian's libcurl 7.88.1: the client sets x-amz-content-sha256
 * itself and writes query strings pre-sorted with valueless parameters as
 * "name=", as that curl signs the query exactly as written.
 *
 * Errors: negative errno with a sentence (err_set) naming the bucket, the
 * key and what the store answered: -EACCES (credentials refused, a request
 * forbidden: Object Lock, policy; clock skew says so), -ENOENT (no such
 * bucket, key or version), -EKEYREJECTED (TLS verification failed, as a
 * wrong SSH host key), -EIO (the
 * store failed after the retries), -EINVAL (a bad argument or answer).
 * Credentials never appear in a message or a log. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct s3;
struct s3_creds; /* an access key and its secret, read once (s3_creds_load) */

struct s3_opts {
	const char *endpoint;    /* https://host[:port] or http://host[:port] */
	const char *region;      /* signing region; NULL: us-east-1 */
	const char *credentials; /* AWS shared-credentials file, mode 0600 */
	const struct s3_creds *creds; /* or the keys already read (then CREDENTIALS is unused) */
	const char *profile;     /* its section; NULL: default */
	const char *ca_file;     /* TLS trust anchors; NULL: the system's */
	const char *ca_pem;      /* or those anchors already read (PEM, CA_PEM_LEN bytes): for a
				  * sandboxed process that may not open the file (then CA_FILE is unused) */
	size_t ca_pem_len;
	int url_style;           /* S3_URL_AUTO, S3_URL_PATH (https://host/BUCKET/KEY) or
				  * S3_URL_VIRTUAL (https://BUCKET.host/KEY) */
	int retries;             /* attempts after the first on a retryable failure; <0: 0; 0: 5 */
	long connect_timeout;    /* seconds; 0: 10 */
	long stall_timeout;      /* seconds without a byte moving; 0: 30 */
	size_t part_size;        /* multipart above this (and parts of it); 0: 64 MiB; >= 5 MiB */
};

/* How requests name the bucket.  AUTO is what AWS and its SDKs do:
 * virtual-hosted, except where that cannot work: an endpoint given as an
 * IP address (no BUCKET.ADDRESS name), a bucket with a '.' over https (its
 * name would not match the provider's *.HOST certificate). */
enum { S3_URL_AUTO, S3_URL_PATH, S3_URL_VIRTUAL };

/* S3_URL_* for "path" or "virtual" (NULL: S3_URL_AUTO); -EINVAL with a
 * sentence for anything else. */
int s3_url_style(const char *s);
/* 1 if the host of ENDPOINT (scheme://HOST[:PORT]) is an IPv4 or IPv6
 * address: such an endpoint cannot be virtual-hosted. */
int s3_endpoint_is_ip(const char *endpoint);
/* The s3_* keys of a configuration (bascule.yaml's vault targets,
 * ship.yaml, the operator's intake file), and object_lock where it has one. */
struct s3_keys {
	const char *endpoint, *region, *credentials, *ca, *url_style, *object_lock;
};
/* Whether any of K is given. */
bool s3_keys_any(const struct s3_keys *k);
/* What is wrong with the keys K of a store of kind WHAT ("vault",
 * "intake"), whose URL is s3:// when S3: NULL if nothing, else a sentence
 * (in BUF) that the caller prefixes with where the keys were read, e.g.
 * "FILE:LINE:COL: target 'T': ".  Checks that they are given with an s3://
 * URL only, that endpoint and credentials are, that the endpoint is
 * http(s)://, and that url_style virtual has an endpoint by name. */
const char *s3_keys_problem(const struct s3_keys *k, bool s3, const char *what, char *buf, size_t len);
/* 1 if requests to BUCKET at the endpoint of S are virtual-hosted. */
int s3_virtual_hosted(const struct s3 *s);

/* Object Lock of a PUT: mode NULL (no lock), "COMPLIANCE" or "GOVERNANCE". */
struct s3_lock {
	const char *mode;
	time_t retain_until;
};

/* A version in a listing. */
struct s3_version {
	const char *key;
	const char *version_id;
	const char *etag;
	uint64_t size;
	time_t mtime;
	int is_latest;
	int delete_marker;
	int is_prefix;           /* s3_list_dir: a common prefix ("d/3f/"), not a version */
};
typedef int (*s3_version_cb)(void *ctx, const struct s3_version *v);

/* Read the access key and secret of PROFILE (NULL: default) from the
 * shared-credentials file PATH, refused unless mode 0600 or stricter
 * (-EPERM), into memory: for a process that gives up the right to read the
 * file before it opens its handles (a sandbox).  Freed (wiped) by
 * s3_creds_free, which accepts NULL. */
int s3_creds_load(const char *path, const char *profile, struct s3_creds **ret);
void s3_creds_free(struct s3_creds *c);

/* Read the credentials (o->creds, or the file: refused unless mode 0600 or
 * stricter) and make the handle.  No request is made.  -EINVAL for
 * S3_URL_VIRTUAL with an endpoint given as an IP address. */
int s3_open(const struct s3_opts *o, const char *bucket, struct s3 **ret);
void s3_close(struct s3 *s);
/* The HTTP status of the last request (0: none answered). */
long s3_last_status(const struct s3 *s);

/* Put KEY; LOCK may be NULL.  VERSION_ID (VLEN bytes, may be NULL) gets the
 * version the store made ("" if unversioned). */
int s3_put(struct s3 *s, const char *key, const void *data, size_t len, const struct s3_lock *lock,
	   char *version_id, size_t vlen);
/* s3_put with "If-None-Match: *": a store that honours it (AWS since 2024)
 * refuses to overwrite an existing KEY, -EEXIST.  Ceph RGW 16 ignores it
 * (a new version is made): the caller checks first and reads versions by
 * content (lib/vstore_s3.c). */
int s3_put_new(struct s3 *s, const char *key, const void *data, size_t len, const struct s3_lock *lock,
	       char *version_id, size_t vlen);
/* GET KEY (VERSION_ID, or the latest if NULL), at most MAX bytes (-EFBIG
 * beyond); *ret malloc'd. */
int s3_get(struct s3 *s, const char *key, const char *version_id, size_t max, uint8_t **ret,
	   size_t *ret_len);
/* GET a byte range [OFF, OFF+LEN) of KEY; returns the count. */
long s3_get_range(struct s3 *s, const char *key, const char *version_id, uint64_t off, void *buf,
		  size_t len);
int s3_head(struct s3 *s, const char *key, const char *version_id, uint64_t *size, time_t *mtime);
/* DELETE KEY (a delete marker), or one version of it. */
int s3_delete(struct s3 *s, const char *key, const char *version_id);
/* ListObjectVersions under PREFIX, every page; a non-zero return of CB stops
 * and is returned. */
int s3_list_versions(struct s3 *s, const char *prefix, s3_version_cb cb, void *ctx);
/* ListObjectVersions under PREFIX with delimiter '/': the versions of the
 * keys right under PREFIX, and each deeper "directory" once, as a version
 * with is_prefix set and KEY the prefix ("d/3f/"). */
int s3_list_dir(struct s3 *s, const char *prefix, s3_version_cb cb, void *ctx);
/* Object retention of a version: MODE ("" if none, else COMPLIANCE or
 * GOVERNANCE, MLEN bytes) and its date. */
int s3_retention_get(struct s3 *s, const char *key, const char *version_id, char *mode, size_t mlen,
		     time_t *until);
int s3_retention_put(struct s3 *s, const char *key, const char *version_id, const struct s3_lock *lock);
/* The bucket's Object Lock configuration: *enabled, and its default
 * retention (MODE "" and *days 0 if none). */
int s3_bucket_lock(struct s3 *s, int *enabled, char *mode, size_t mlen, int *days);
/* The bucket's versioning: 1 Enabled, 0 never enabled, -1 Suspended. */
int s3_bucket_versioning(struct s3 *s, int *state);
/* Raw request for tests and checks: METHOD on KEY (NULL: the bucket) with a
 * pre-sorted QUERY (may be NULL) and BODY; returns the HTTP status (>= 0)
 * or a transport error.  No retries. */
long s3_raw(struct s3 *s, const char *method, const char *key, const char *query, const void *body,
	    size_t len);

/* Format T as ISO 8601 UTC ("2026-12-02T11:00:00Z"); -ERANGE for dates in
 * 2106 or later (Ceph 16 stores retain-until in 32 bits: Ceph issue 54675). */
int s3_date(time_t t, char *buf, size_t len);
/* Create the bucket (tests, `bascule vault init` never does: a bucket is the
 * provider's), with Object Lock (and so versioning) if OBJECT_LOCK. */
int s3_bucket_create(struct s3 *s, int object_lock);
