/* vstore.h - the vault's object store: a directory reached locally
 * (local:DIR), over SFTP (sftp://user@host[:port]/DIR, libssh2, strict
 * host-key checking) or an S3 bucket with Object Lock (s3://BUCKET/PREFIX,
 * lib/vstore_s3.h: each object locked as it is put, reads by content).
 * Objects are created exclusively and written once; the writer never
 * renames or deletes (only `bascule vault prune`, with its own account,
 * calls vstore_remove).  Names are relative paths such as
 * "d/3f/3f9a...".  Blocking; one store per thread.  Over SFTP, directories
 * are created 0770 and objects 0640 (less the server's umask), so that a
 * provider-side pruning account in the same group can list and delete. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vstore;

struct ssh_creds;
struct s3_creds;

struct vstore_opts {
	const char *identity;    /* sftp: private key */
	const char *known_hosts; /* sftp: strict host-key checking against this file */
	const struct ssh_creds *creds; /* sftp: both already in memory (then the paths are unused) */
	mode_t object_mode;      /* mode of new objects; 0: 0600 local, 0640 sftp.  A mode without
				  * the owner's write bit (0440) makes objects the writer's own
				  * account cannot reopen for writing (an intake's write-once
				  * account, whose server also refuses setstat) */
	/* s3:// (docs/vault.md, "S3 object storage") */
	const char *s3_endpoint;     /* https://host[:port] (required) */
	const char *s3_region;       /* signing region; NULL: us-east-1 */
	const char *s3_credentials;  /* AWS shared-credentials file, mode 0600 */
	const struct s3_creds *s3_creds; /* or already read (then the path is unused) */
	const char *s3_ca;           /* TLS trust anchors; NULL: the system's */
	const char *s3_url_style;    /* "path", "virtual"; NULL: as AWS does (lib/s3.h, S3_URL_AUTO) */
	const char *s3_ca_pem;       /* or that file already read (then the path is unused) */
	size_t s3_ca_pem_len;
	const char *lock_mode;       /* "COMPLIANCE", "GOVERNANCE", NULL: objects put unlocked */
	uint64_t lock_seconds;       /* each put object's retain-until: now + this */
};

/* Open URL; sftp: connect, check the host key, authenticate, start SFTP. */
int vstore_open(const char *url, const struct vstore_opts *o, struct vstore **ret);
void vstore_close(struct vstore *v);
/* local: the vault directory's descriptor (objects are reached relative to
 * it, so it may be opened before a process loses the right to walk there);
 * -1 for sftp. */
int vstore_dirfd(const struct vstore *v);
/* 1 if URL names a vault transport this build knows (local:, sftp://, s3://). */
int vstore_url_ok(const char *url);

/* Create NAME exclusively holding LEN bytes, durably (fsync); missing parent
 * directories are created.  -EEXIST if NAME already exists. */
int vstore_put(struct vstore *v, const char *name, const void *data, size_t len);
/* Read up to LEN bytes at OFF; returns the count (short only at the end). */
ssize_t vstore_read(struct vstore *v, const char *name, uint64_t off, void *buf, size_t len);
/* The whole object, at most MAX bytes (-EFBIG beyond); *ret malloc'd. */
int vstore_get(struct vstore *v, const char *name, size_t max, uint8_t **ret, size_t *ret_len);
int vstore_stat(struct vstore *v, const char *name, uint64_t *size, uint64_t *mtime);
/* Call CB for every entry of directory DIR (not . and ..); a non-zero return
 * from CB stops the listing and is returned.  A missing DIR lists nothing. */
typedef int (*vstore_list_cb)(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime);
int vstore_list(struct vstore *v, const char *dir, vstore_list_cb cb, void *ctx);
/* Every object below DIR, at any depth, as "SUB/NAME" (is_dir 0): over S3
 * one paged listing, not one per directory. */
int vstore_list_tree(struct vstore *v, const char *dir, vstore_list_cb cb, void *ctx);
/* Remove NAME.  S3 with Object Lock: -EAGAIN (with the date) while it is
 * locked, nothing removed; try again after that date. */
int vstore_remove(struct vstore *v, const char *name);
/* What else the store holds under NAME besides its genuine content (a
 * versioned S3 bucket keeps an overwrite as a newer version, a delete as
 * a marker): 0 nothing, 1 something, said in WHY; local and sftp stores
 * never keep anything else (0). */
int vstore_audit(struct vstore *v, const char *name, char *why, size_t len);
/* A hint that the objects NAMES (N of them, e.g. "d/3f/3f9a..."; NULL:
 * every object) under DIR are about to be read: an S3 store learns which
 * version of each to read from one listing of DIR instead of one per
 * object (vstore_s3_prefetch: what it skips and how much it may cost).
 * Returns how many it learnt, 0 for local and sftp stores, or a negative
 * errno (the listing failed: the reads would too). */
int vstore_prefetch(struct vstore *v, const char *dir, const char *const *names, size_t n);
/* Let V use what FROM's prefetches learnt (same vault; FROM outlives V
 * and prefetches nothing more meanwhile): one listing for the stores of
 * several threads.  Nothing for local and sftp stores. */
void vstore_share(struct vstore *v, const struct vstore *from);
/* Bytes written and read through this store (benchmarks, logs). */
uint64_t vstore_bytes_written(const struct vstore *v);
uint64_t vstore_bytes_read(const struct vstore *v);
