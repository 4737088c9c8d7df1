/* vstore_pool.h - parallel uploads to a vault store: N worker threads, each
 * with its own store (over SFTP its own SSH connection and session), putting
 * different objects at once.  One SFTP session is bound by one core's
 * crypto and one channel window; several sessions fill the link.
 *
 * Ordering contract: vstore_pool_put only queues; an object is durable
 * (created exclusively, written, fsynced, closed) when it is reported done
 * by vstore_pool_reap or vstore_pool_drain.  A caller publishes anything
 * that names an object (a manifest, a journal record) only after that. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "vstore.h"

struct vstore_pool;

#define VSTORE_POOL_MAX 16 /* sessions at most */

/* Called in the caller's thread (from reap or drain) once per finished put:
 * *R is vstore_put's result (the callback may change it: an -EEXIST of the same
 * bytes is a success); DATA is the buffer given to put (the callback
 * owns it from then on: free it or reuse it). */
typedef void (*vstore_pool_done_cb)(void *ctx, void *tag, int *r, void *data, size_t len);

/* Called in a worker thread right after a put of TAG succeeded (the object
 * is durable: created, written, fsynced, closed), before the put is
 * reported done: for a record that must follow each object as soon as it
 * is durable (a journal).  Workers call it concurrently: it serialises
 * what it shares.  A negative return makes the put fail. */
typedef int (*vstore_pool_durable_cb)(void *ctx, void *tag);

/* Open N (1..VSTORE_POOL_MAX) stores on URL with O and start a worker on
 * each.  Opening is sequential, in the caller's thread, so that a refused
 * host key or login gives the same error as vstore_open. */
int vstore_pool_open(const char *url, const struct vstore_opts *o, unsigned n, vstore_pool_done_cb done,
		     void *ctx, struct vstore_pool **ret);
/* Set the durable callback (before the first put). */
void vstore_pool_on_durable(struct vstore_pool *p, vstore_pool_durable_cb durable);
/* Queue DATA (malloc'd, LEN bytes; ownership moves to the pool) as NAME.
 * Blocks while 2N puts are already queued or running (N running, N
 * waiting: bounded memory), reaping finished ones meanwhile.  Returns 0,
 * or the first error a put reported since the last drain (DATA is then
 * freed; the caller fails the epoch and drains). */
int vstore_pool_put(struct vstore_pool *p, const char *name, void *data, size_t len, void *tag);
/* Report finished puts without waiting; returns the first error seen. */
int vstore_pool_reap(struct vstore_pool *p);
/* Wait until every queued put has finished and been reported; returns 0
 * only if every put since the last drain succeeded. */
int vstore_pool_drain(struct vstore_pool *p);
/* Drain, stop the workers, close the stores.  Accepts NULL. */
void vstore_pool_close(struct vstore_pool *p);
unsigned vstore_pool_size(const struct vstore_pool *p);
uint64_t vstore_pool_bytes_written(const struct vstore_pool *p);
