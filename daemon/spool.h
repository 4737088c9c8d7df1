/* spool.h - the blocks of one cut, captured at scan time.
 *
 * Each record holds up to SPOOL_CHUNK consecutive blocks of one source with
 * the epoch each last changed in; zero blocks carry no data.  Targets read
 * from the spool, never from the live source, so what they receive is
 * exactly the state the epoch's digest describes.  Reference counted: the
 * file is removed when the last job that needs it is done. */
#pragma once
#include <pthread.h>
#include <stdint.h>

#define SPOOL_CHUNK 512 /* blocks per record: 2 MiB */

struct spool_block {
	uint16_t idx;   /* block index within the chunk */
	uint8_t zero;   /* 1: all zeros, no data stored */
	uint8_t pad[5];
	uint64_t epoch; /* epoch in which the block last changed */
};

struct spool_entry {
	uint32_t src;
	uint32_t count;
	uint64_t chunk;  /* chunk number within the source */
	uint64_t off;    /* file offset of the record */
	uint32_t n_data; /* blocks with data */
};

struct spool {
	int fd;
	char path[4200];
	int refs;
	pthread_mutex_t lock;
	struct spool_entry *e;
	size_t n, cap;
	uint64_t len;
	uint64_t blocks;
};

int spool_create(const char *path, struct spool **ret);
/* Thread-safe append of one record; DATA holds n_data * 4096 bytes in the
 * order of the non-zero blocks. */
int spool_append(struct spool *s, uint32_t src, uint64_t chunk, const struct spool_block *blocks,
		 uint32_t count, const uint8_t *data, uint32_t n_data);
/* Sort records by (source, chunk) once all are written. */
void spool_finish(struct spool *s);
/* Read record I into BUF (at least SPOOL_CHUNK * (16 + 4096) bytes). */
int spool_read(struct spool *s, size_t i, uint8_t *buf, const struct spool_block **ret_blocks,
	       const uint8_t **ret_data);
struct spool *spool_ref(struct spool *s);
void spool_unref(struct spool *s);
