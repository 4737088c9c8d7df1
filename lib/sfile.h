/* sfile.h - small state files that are whole or refused: where a group
 * stands, on the primary (daemon/epoch.c) and on a replica (tools/replica/).
 *
 *   MAGIC (8 bytes) | body | BLAKE2b-256 of MAGIC and body (32 bytes)
 *
 * The checksum is keyed when a key is given: the file is then authenticated
 * (only a holder of the key could have written it), not only checked for
 * damage.  Written atomically and durably (fs_write_atomic_at: never through
 * a symbolic link); read whole, never through one either. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "buf.h"

#define SFILE_MAGIC 8
#define SFILE_SUM 32
#define SFILE_KEY_BYTES 32
#define SFILE_MAX (1u << 20)

struct sfile {
	uint8_t *data;
	size_t len;
};

/* Initialise B and put MAGIC in it; the caller appends the body. */
void sfile_begin(struct wbuf *b, const char magic[SFILE_MAGIC]);
/* Append to B the checksum of what it holds, keyed by KEY (SFILE_KEY_BYTES)
 * unless NULL: B is then the whole file, for any atomic write. */
int sfile_seal(struct wbuf *b, const uint8_t *key);
/* sfile_seal, then fs_write_atomic to PATH with MODE.  B stays the
 * caller's to free. */
int sfile_write(struct wbuf *b, const uint8_t *key, const char *path, mode_t mode);
/* Read NAME (at most SFILE_MAX bytes) into *RET, to be checked with
 * sfile_open.  -ENOENT if it does not exist; -EBADMSG if it is not a
 * regular file (a symbolic link, a FIFO), too short or too long; other
 * errors with a sentence.  *RET untouched on failure. */
int sfile_read(int dirfd, const char *name, struct sfile *ret);
/* 0 and *RET_BODY (a view of the bytes between magic and checksum) if F
 * starts with MAGIC and its checksum holds under KEY (NULL: unkeyed);
 * -EBADMSG otherwise, with no sentence: the caller names the file and says
 * what to do. */
int sfile_open(const struct sfile *f, const char magic[SFILE_MAGIC], const uint8_t *key,
	       struct rbuf *ret_body);
/* The body of F without checking its checksum: to show a keyed file to
 * someone who has not the key (bascule replica list), never to act on it.
 * -EBADMSG unless F starts with MAGIC. */
int sfile_open_unchecked(const struct sfile *f, const char magic[SFILE_MAGIC], struct rbuf *ret_body);
/* Whether F starts with MAGIC (which format it claims to be). */
int sfile_is(const struct sfile *f, const char magic[SFILE_MAGIC]);
void sfile_free(struct sfile *f);
