/* vstore_s3.h - the vault store on an S3 bucket with Object Lock
 * (s3://BUCKET/PREFIX; the client is lib/s3.h).
 *
 * Write-once by the store: every object is put with its own Object Lock
 * (COMPLIANCE or GOVERNANCE) and a retain-until date, so that not even the
 * writer's own credentials can delete it or shorten its lock before then.
 * A put is exclusive as far as the store allows: HEAD first, then PUT with
 * "If-None-Match: *" (Ceph RGW 16 ignores the header and makes a new
 * version).  On a versioned bucket an overwrite by someone holding the
 * credentials is a newer version, a DELETE a delete marker: the genuine
 * version stays, and is the one read.  Names whose last part is 64 hex
 * digits are the BLAKE2b-256 of the object's bytes (the vault's rule): when
 * a key has several versions, the oldest one whose bytes match its name is
 * read, and the others are reported by vstore_s3_audit as tampering.
 * Other names (none in the vault) read their oldest version. */
#pragma once
#include "vstore.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct vstore_s3;
struct s3;
struct s3_opts;

/* Split URL (s3://BUCKET[/PREFIX]) into BUCKET and PREFIX (no leading or
 * trailing '/'; "" if none); -EINVAL with a sentence if it is not one. */
int vstore_s3_parse_url(const char *url, char *bucket, size_t blen, char *prefix, size_t plen);
/* The S3 client options O gives (pointers into O); -EINVAL with a
 * sentence if its s3_url_style is not one. */
int vstore_s3_client_opts(const struct vstore_opts *o, struct s3_opts *ret);
/* The TCP port of ENDPOINT (443 for https, 80 for http unless written). */
int vstore_s3_port(const char *endpoint);

/* Open URL with O (endpoint, credentials required).  No request is made:
 * a missing bucket or refused credentials show at the first operation. */
int vstore_s3_open(const char *url, const struct vstore_opts *o, struct vstore_s3 **ret);
void vstore_s3_close(struct vstore_s3 *v);
/* The client (for bucket checks and lock operations); owned by V. */
struct s3 *vstore_s3_client(struct vstore_s3 *v);
/* The key NAME has in the bucket ("PREFIX/NAME"). */
int vstore_s3_key(const struct vstore_s3 *v, const char *name, char *buf, size_t len);

/* The S3 store under V (opened on an s3:// URL), or NULL. */
struct vstore_s3 *vstore_s3_of(struct vstore *v);

/* The operations of vstore.h on an S3 store, with the same contracts. */
int vstore_s3_put(struct vstore_s3 *v, const char *name, const void *data, size_t len);
ssize_t vstore_s3_read(struct vstore_s3 *v, const char *name, uint64_t off, void *buf, size_t len);
int vstore_s3_stat(struct vstore_s3 *v, const char *name, uint64_t *size, uint64_t *mtime);
int vstore_s3_list(struct vstore_s3 *v, const char *dir, vstore_list_cb cb, void *ctx);
int vstore_s3_list_tree(struct vstore_s3 *v, const char *dir, vstore_list_cb cb, void *ctx);
/* Delete every version of NAME (and its delete markers), lock-aware:
 * -EAGAIN ("NAME is locked (MODE) until DATE") and nothing deleted while
 * any version is locked; -EACCES with the store's answer when it refuses
 * anyway (a policy, a lock set meanwhile: nothing after the refused version
 * is tried). */
int vstore_s3_remove(struct vstore_s3 *v, const char *name);
int vstore_s3_audit(struct vstore_s3 *v, const char *name, char *why, size_t len);
/* Keep NAME's genuine version locked at least until AT_LEAST: if its lock
 * ends earlier (or it has none), set it to UNTIL, in the mode it has (MODE
 * if none).  1 extended, 0 already locked long enough; *RET_UNTIL gets the
 * date it is locked until.  UNTIL 0: change nothing, 1 if it would extend.
 * Only extends: the store refuses to shorten. */
int vstore_s3_extend(struct vstore_s3 *v, const char *name, const char *mode, time_t at_least, time_t until,
		     time_t *ret_until);
/* Learn the genuine versions of NAMES (N of them, "DIR/..."; NULL: every
 * name under DIR) from one paged ListObjectVersions of DIR, rather than one
 * listing per name at its first read.  Only a name with exactly one
 * version, not a delete marker, is learnt: anything else under a name (an
 * overwrite, a marker, a retried put) is resolved on its own at its first
 * read, as without a prefetch, so the tamper rules are those of a single
 * read.  The listing stops once every wanted name is found, or once it has
 * cost more pages (1000 versions each) than the names still unknown would
 * cost listings: never much dearer than without it.  Returns how many
 * names were learnt (a name learnt twice counts once in V). */
int vstore_s3_prefetch(struct vstore_s3 *v, const char *dir, const char *const *names, size_t n);
/* Let V resolve names from what FROM's prefetches learnt (NULL: stop):
 * several threads' stores, one listing.  FROM outlives V and prefetches
 * nothing more while V uses it (it is read without a lock).  A remove on V
 * stops the sharing. */
void vstore_s3_share(struct vstore_s3 *v, const struct vstore_s3 *from);
/* The version of NAME that is read (its genuine content): VERSION_ID. */
int vstore_s3_version(struct vstore_s3 *v, const char *name, char *version_id, size_t len);
