/* Unit tests: the WAL spool's tail in memory (synchronous: remote cuts from
 * it before the writer thread has written the WAL): what walspool_read
 * gives is the WAL queued, byte for byte, from the tail, from the files or
 * from both across its start, also once the ring has wrapped; what neither
 * holds is refused; WAL that does not follow the tail starts it afresh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daemon.h"
#include "pgsource.h"
#include "scratch.h"

#define SEG (16u << 20)
#define PIECE (256u << 10)

/* The WAL byte at LSN: a pattern no shift of it repeats. */
static uint8_t wal_byte(uint64_t lsn)
{
	return (uint8_t)(lsn * 2654435761u >> 13);
}

static void fill(uint8_t *buf, uint64_t lsn, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = wal_byte(lsn + i);
}

static void check_read(struct walspool *ws, uint64_t lsn, uint32_t len)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	assert_int_equal(walspool_read(ws, lsn, buf, len), 0);
	for (uint32_t i = 0; i < len; i++)
		if (buf[i] != wal_byte(lsn + i))
			fail_msg("byte at %llu: %u, expected %u", (unsigned long long)(lsn + i), buf[i],
				 wal_byte(lsn + i));
	free(buf);
}

/* Queue [FROM, TO) in pieces: to the writer thread (WRITE) and to the tail. */
static void queue(struct walspool *ws, uint64_t from, uint64_t to, bool write)
{
	static uint8_t piece[PIECE];

	for (uint64_t lsn = from; lsn < to; lsn += PIECE) {
		uint32_t n = to - lsn < PIECE ? (uint32_t)(to - lsn) : PIECE;
		fill(piece, lsn, n);
		if (write)
			while (pgwriter_put(&ws->w, WS_DATA, 1, lsn, 0, NULL, piece, n) == -ENOBUFS)
				usleep(1000);
		assert_int_equal(walspool_tail_put(ws, lsn, piece, n), 0);
	}
}

static void wait_readable(struct walspool *ws, uint64_t lsn)
{
	for (int i = 0; i < 30000 && walspool_readable(ws) < lsn; i++)
		usleep(1000);
	assert_true(walspool_readable(ws) >= lsn);
}

static void test_tail(void **state)
{
	struct walspool ws;
	char path[128];
	uint8_t b;

	(void)state;
	snprintf(path, sizeof(path), "%s/wal", dir);
	assert_int_equal(walspool_open(&ws, path), 0);
	assert_int_equal(walspool_init(&ws, 42, SEG, 1, false), 0);
	assert_int_equal(pgwriter_put(&ws.w, WS_BEGIN, 1, 0, 0, NULL, NULL, 0), 0);
	/* In the tail only: readable at once, before the thread wrote it. */
	queue(&ws, 0, 100000, false);
	assert_true(walspool_ready(&ws) == 100000);
	check_read(&ws, 0, 100000);
	check_read(&ws, 99999, 1);
	assert_int_equal(walspool_read(&ws, 99999, &b, 2), -ENOENT);
	/* Written and kept: 6 MiB, the ring (4 MiB) wrapped; what fell out
	 * of it comes from the files, a read across its start from both. */
	ws.tail_start = ws.tail_end = 0;
	queue(&ws, 0, 6u << 20, true);
	wait_readable(&ws, 6u << 20);
	assert_true(ws.tail_start == (2u << 20) && ws.tail_end == (6u << 20));
	check_read(&ws, 0, 6u << 20);
	check_read(&ws, (2u << 20) - 5000, 10000);
	check_read(&ws, (4u << 20) - 3, 7); /* across the ring's wrap */
	/* The tail ahead of the files: the WAL goes on in memory. */
	queue(&ws, 6u << 20, (6u << 20) + 70000, false);
	assert_true(walspool_ready(&ws) == (6u << 20) + 70000);
	check_read(&ws, (6u << 20) - 100, 70100);
	/* The writer stalled (a new segment's zero-fill, a slow fdatasync):
	 * the stream waits once the tail could not take one more frame
	 * without wrapping past the files' end, so what was cut from it stays
	 * readable and the cut's end never goes back. */
	uint64_t end = (6u << 20) + 70000;
	for (int i = 0; i < 64 && walspool_tail_room(&ws, PIECE); i++, end += PIECE)
		queue(&ws, end, end + PIECE, false);
	assert_false(walspool_tail_room(&ws, PIECE));
	assert_true(walspool_ready(&ws) == end);
	check_read(&ws, walspool_readable(&ws), (uint32_t)(end - walspool_readable(&ws)));
	/* WAL that does not follow: the tail starts afresh there, and what
	 * lies between the files' end and it is not given. */
	queue(&ws, 12u << 20, (12u << 20) + 1000, false);
	assert_true(ws.tail_start == (12u << 20));
	assert_true(walspool_ready(&ws) == walspool_readable(&ws));
	assert_int_equal(walspool_read(&ws, 12u << 20, &b, 1), -ENOENT);
	/* A fresh spool forgets the tail. */
	assert_int_equal(walspool_init(&ws, 43, SEG, 1, false), 0);
	assert_true(ws.tail_start == 0 && ws.tail_end == 0);
	walspool_close(&ws);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tail),
	};
	return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
