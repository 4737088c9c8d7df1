/* spool.c - on-disk capture of a cut's blocks. */
#include "spool.h"
#include "err.h"
#include "fsutil.h"
#include "proto.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(sizeof(struct spool_block) == 16, "spool_block must be 16 bytes");

int spool_create(const char *path, struct spool **ret)
{
	struct spool *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s->fd < 0) {
		int r = err_set(errno, "cannot create spool %s: %s", path, strerror(errno));
		free(s);
		return r;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->refs = 1;
	*ret = s;
	return 0;
}

int spool_append(struct spool *s, uint32_t src, uint64_t chunk, const struct spool_block *blocks,
		 uint32_t count, const uint8_t *data, uint32_t n_data)
{
	size_t meta = (size_t)count * sizeof(*blocks), dlen = (size_t)n_data * PROTO_BLOCK;
	uint64_t off;
	int r;

	pthread_mutex_lock(&s->lock);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		struct spool_entry *e = realloc(s->e, cap * sizeof(*e));
		if (!e) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		s->e = e;
		s->cap = cap;
	}
	off = s->len;
	s->len += meta + dlen;
	s->e[s->n++] = (struct spool_entry){ .src = src, .count = count, .chunk = chunk, .off = off,
					     .n_data = n_data };
	s->blocks += count;
	pthread_mutex_unlock(&s->lock);
	/* Each record has its own reserved range: write outside the lock. */
	r = fs_pwrite_full(s->fd, blocks, meta, off);
	if (r == 0 && dlen)
		r = fs_pwrite_full(s->fd, data, dlen, off + meta);
	return r < 0 ? err_set(r, "cannot write spool %s: %s", s->path, strerror(-r)) : 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct spool_entry *x = a, *y = b;

	if (x->src != y->src)
		return x->src < y->src ? -1 : 1;
	return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

void spool_finish(struct spool *s)
{
	if (s->n > 1)
		qsort(s->e, s->n, sizeof(*s->e), entry_cmp);
}

int spool_read(struct spool *s, size_t i, uint8_t *buf, const struct spool_block **ret_blocks,
	       const uint8_t **ret_data)
{
	const struct spool_entry *e = &s->e[i];
	size_t len = (size_t)e->count * sizeof(struct spool_block) + (size_t)e->n_data * PROTO_BLOCK;
	ssize_t n = fs_pread_full(s->fd, buf, len, e->off);

	if (n != (ssize_t)len)
		return err_set(n < 0 ? (int)n : EIO, "cannot read spool %s", s->path);
	*ret_blocks = (const struct spool_block *)buf;
	*ret_data = buf + (size_t)e->count * sizeof(struct spool_block);
	return 0;
}

struct spool *spool_ref(struct spool *s)
{
	if (s)
		s->refs++;
	return s;
}

void spool_unref(struct spool *s)
{
	if (!s || --s->refs > 0)
		return;
	close(s->fd);
	unlink(s->path);
	pthread_mutex_destroy(&s->lock);
	free(s->e);
	free(s);
}
