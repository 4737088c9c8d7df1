/* s3_int.h - internals shared by lib/s3.c (credentials, requests, retries)
 * and lib/s3_ops.c (the S3 operations and their XML answers). */
#pragma once
#include "s3.h"
#include <curl/curl.h>

struct s3_resp {
	long status;
	uint8_t *body;
	size_t len, cap, max;   /* max: refuse a body beyond (0: 1 MiB) */
	char version_id[256];   /* x-amz-version-id */
	char etag[128];
	uint64_t content_length;
	time_t last_modified;
	time_t date;            /* the store's clock when it answered (Date) */
	int too_big;
	void *sink;             /* s3_get_range: bytes go here (up to sink_len) */
	size_t sink_len;
	const int *sock;        /* the connection's socket (-1: none yet) */
};

struct s3_req {
	const char *method;
	const char *key;        /* NULL: the bucket */
	const char *query;      /* pre-sorted, encoded, without '?' */
	const void *body;
	size_t len;
	struct curl_slist *headers; /* extra headers (signed), freed by the caller */
	int no_retry;
};

struct s3 {
	CURL *curl;
	int sock;               /* the socket curl opened last (its connection is kept alive) */
	char *bucket, *endpoint, *host, *scheme, *region, *ca_file;
	char *ca_pem;           /* the CA certificates in memory (CURLOPT_CAINFO_BLOB) */
	size_t ca_pem_len;
	char *userpwd;          /* "AK:SK": only ever handed to curl */
	char sigv4[96];
	int virtual_host, retries;
	long connect_timeout, stall_timeout;
	size_t part_size;
	long last_status;
};

/* Run REQ, retrying; R gets the answer.  Returns 0 on a 2xx, else a negative
 * errno with a sentence built from the error XML (WHAT names the operation). */
int s3_do(struct s3 *s, const struct s3_req *req, struct s3_resp *r, const char *what);
void s3_resp_free(struct s3_resp *r);
/* Percent-encode S (keeping '/' when KEEP_SLASH) into a malloc'd string. */
char *s3_escape(const char *s, int keep_slash);
/* Base64 of N bytes into OUT (>= 4*((n+2)/3)+1). */
void s3_base64(const uint8_t *d, size_t n, char *out);
/* Content-MD5 and x-amz-checksum-sha256 (base64) and x-amz-content-sha256
 * (hex) headers of BODY appended to *H. */
int s3_body_headers(struct curl_slist **h, const void *body, size_t len);
/* Parse an ISO 8601 UTC date ("2026-12-02T11:00:00.000Z"). */
time_t s3_parse_date(const char *s);
