/* seekbench - bench helper behind the scan hint's TiB figure (docs/design.md
 * "A TiB's epoch, flat in virtual size"): how many lseek calls, and how much
 * time, one pass over a large sparse file costs to find its data, four ways:
 *   per-chunk   SEEK_DATA at every 2 MiB chunk (and SEEK_HOLE in a chunk that
 *               has data): the scan before the hint;
 *   skip-ahead  the same, but a chunk inside the hole the last SEEK_DATA
 *               reported costs no call: the scan now (daemon/scan.c);
 *   walk        SEEK_DATA/SEEK_HOLE alternately over the whole file;
 *   fiemap      FS_IOC_FIEMAP, 256 extents per call.
 * seekbench FILE [GIB [EXTENTS [EXTENT_MIB [PASSES]]]] (defaults 1024 64 32
 * 5) makes FILE: GIB GiB sparse, EXTENTS extents of EXTENT_MIB MiB of data
 * spread evenly, written back (fsync) so that what is measured is the
 * filesystem's extent lookup, not the page cache's; then prints, per way,
 * the calls per pass and the median wall and system time of PASSES passes.
 * FILE is left in place (the caller removes it). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include "clock.h"

#define CHUNK (2u << 20) /* the scan's unit, as in daemon/scan.c */
#define MAX_PASSES 99

static uint64_t calls;

static off_t seek(int fd, uint64_t pos, int whence)
{
	calls++;
	return lseek(fd, (off_t)pos, whence);
}

/* one chunk [off, off + CHUNK): the data runs in it, as the scan looks for
 * them; SKIP: trust the last SEEK_DATA's answer (no data in [*from, *next),
 * none from *from on when *next is UINT64_MAX) while it covers the chunk */
static uint64_t chunk_data(int fd, uint64_t off, uint64_t size, int skip, uint64_t *from, uint64_t *next)
{
	uint64_t pos = off, end = off + CHUNK < size ? off + CHUNK : size, found = 0;

	while (pos < end) {
		off_t d, h;
		if (skip && *from <= pos && *next > pos) {
			if (*next >= end)
				break;
			d = (off_t)*next;
		} else {
			d = seek(fd, pos, SEEK_DATA);
			*from = pos;
			*next = d < 0 ? UINT64_MAX : (uint64_t)d;
			if (d < 0 || (uint64_t)d >= end)
				break;
		}
		h = seek(fd, (uint64_t)d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h > end)
			h = (off_t)end;
		found += (uint64_t)h - (uint64_t)d;
		pos = (uint64_t)h;
	}
	return found;
}

static uint64_t pass_chunks(int fd, uint64_t size, int skip)
{
	uint64_t from = 0, next = 0, found = 0;

	for (uint64_t off = 0; off < size; off += CHUNK)
		found += chunk_data(fd, off, size, skip, &from, &next);
	return found;
}

static uint64_t pass_walk(int fd, uint64_t size)
{
	uint64_t pos = 0, found = 0;

	for (;;) {
		off_t d = seek(fd, pos, SEEK_DATA), h;
		if (d < 0)
			break;
		h = seek(fd, (uint64_t)d, SEEK_HOLE);
		if (h < 0)
			h = (off_t)size;
		found += (uint64_t)(h - d);
		pos = (uint64_t)h;
	}
	return found;
}

static uint64_t pass_fiemap(int fd, uint64_t size)
{
	enum { N = 256 };
	struct fiemap *fm = calloc(1, sizeof(*fm) + N * sizeof(struct fiemap_extent));
	uint64_t pos = 0, found = 0;

	while (fm && pos < size) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = pos;
		fm->fm_length = size - pos;
		fm->fm_extent_count = N;
		calls++;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0 || fm->fm_mapped_extents == 0)
			break;
		for (uint32_t i = 0; i < fm->fm_mapped_extents; i++)
			found += fm->fm_extents[i].fe_length;
		struct fiemap_extent *last = &fm->fm_extents[fm->fm_mapped_extents - 1];
		if (last->fe_flags & FIEMAP_EXTENT_LAST)
			break;
		pos = last->fe_logical + last->fe_length;
	}
	free(fm);
	return found;
}

static double sys_secs(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int make_file(const char *path, uint64_t size, unsigned extents, uint64_t ext_bytes)
{
	size_t blen = 1u << 20;
	uint8_t *buf = malloc(blen);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc = -1;

	if (fd < 0 || !buf || ftruncate(fd, (off_t)size) < 0)
		goto out;
	memset(buf, 0xa5, blen);
	for (unsigned e = 0; e < extents; e++) {
		uint64_t at = size / extents * e / CHUNK * CHUNK;
		for (uint64_t o = 0; o < ext_bytes; o += blen)
			if (pwrite(fd, buf, blen, (off_t)(at + o)) != (ssize_t)blen)
				goto out;
	}
	if (fsync(fd) < 0)
		goto out;
	rc = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "per-chunk", "skip-ahead", "walk", "fiemap" };
	uint64_t gib = argc > 2 ? strtoull(argv[2], NULL, 10) : 1024;
	unsigned extents = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 64;
	uint64_t ext_mib = argc > 4 ? strtoull(argv[4], NULL, 10) : 32;
	int passes = argc > 5 ? atoi(argv[5]) : 5, fd;
	uint64_t size = gib << 30, want = (uint64_t)extents * (ext_mib << 20);

	if (argc < 2 || gib == 0 || extents == 0 || ext_mib == 0 || passes < 1 || passes > MAX_PASSES ||
	    want > size / 2) {
		fprintf(stderr, "usage: seekbench FILE [GIB [EXTENTS [EXTENT_MIB [PASSES (1-%d)]]]]: "
				"the extents' data at most half the file\n", MAX_PASSES);
		return 2;
	}
	fd = make_file(argv[1], size, extents, ext_mib << 20);
	if (fd < 0) {
		fprintf(stderr, "seekbench: cannot make %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("   %" PRIu64 " GiB sparse file, %u extents of %" PRIu64 " MiB, %d passes (medians):\n", gib, extents,
	       ext_mib, passes);
	for (int w = 0; w < 4; w++) {
		double wall[MAX_PASSES], sys[MAX_PASSES];
		uint64_t n = 0, found = 0;
		for (int p = 0; p < passes; p++) {
			double s0 = sys_secs(), t0 = (double)clock_mono_usec();
			calls = 0;
			found = w < 2 ? pass_chunks(fd, size, w) : w == 2 ? pass_walk(fd, size) : pass_fiemap(fd, size);
			wall[p] = ((double)clock_mono_usec() - t0) / 1000.0;
			sys[p] = (sys_secs() - s0) * 1000.0;
			n = calls;
		}
		if (found != want) {
			fprintf(stderr, "seekbench: %s found %" PRIu64 " bytes of data, %" PRIu64 " written\n",
				names[w], found, want);
			close(fd);
			return 1;
		}
		qsort(wall, (size_t)passes, sizeof(double), cmp_double);
		qsort(sys, (size_t)passes, sizeof(double), cmp_double);
		printf("   %-10s %8" PRIu64 " calls per pass  %10.3f ms wall  %9.1f ms system\n", names[w], n,
		       wall[passes / 2], sys[passes / 2]);
	}
	close(fd);
	return 0;
}
