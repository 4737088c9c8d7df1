/* rchain.h - a chain of librsync deltas applied in one pass.
 *
 * Patching night after night (a full dump, then N deltas) reads and writes
 * the whole dump N times.  A delta is a list of commands: COPY a range of
 * its basis, or LITERAL bytes.  Composed, the chain is a list of extents,
 * each a range of the full dump or of the deltas' literal bytes; the last
 * night is then written once, from the full dump and the literals.
 *
 * The full dump and a file for the literals (appended as the deltas are
 * fed, read back with pread) are the caller's; memory is the extents: a
 * few per changed range of each night.  Deltas are hostile input: every
 * command is bounded against the night it applies to (-EBADMSG with a
 * sentence). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rchain;
typedef int (*rchain_out_fn)(void *ctx, const uint8_t *p, size_t n);

/* A chain from the full dump of FULL_SIZE bytes open on FULL_FD, literal
 * bytes appended to LIT_FD (an empty file, read and write); both stay open
 * for the chain's life. */
int rchain_new(int full_fd, uint64_t full_size, int lit_fd, struct rchain **ret);
/* The next delta, against the night the chain stands at: fed in pieces
 * (the decompressed delta as it comes), then ended: *RET_SIZE the size of
 * the night it makes, which the chain stands at from then on. */
int rchain_feed(struct rchain *c, const uint8_t *p, size_t n);
int rchain_end(struct rchain *c, uint64_t *ret_size);
/* The night the chain stands at, to OUT in order, in pieces of at most
 * 1 MiB. */
int rchain_write(struct rchain *c, rchain_out_fn out, void *ctx);
/* The full dump's file may still be filling while rchain_write reads it
 * (it is decompressed by another thread): before reading up to byte END
 * of it, rchain_write calls WAIT(CTX, END), which returns once the file
 * holds that much (0) or never will (a negative errno, which rchain_write
 * returns).  The deltas need only the full dump's size: they can be fed
 * before it is there. */
typedef int (*rchain_wait_fn)(void *ctx, uint64_t end);
void rchain_wait_full(struct rchain *c, rchain_wait_fn wait, void *ctx);
/* Extents the chain holds (for tests and figures). */
size_t rchain_extents(const struct rchain *c);
void rchain_free(struct rchain *c);
