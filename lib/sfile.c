/* sfile.c - small state files, whole or refused (sfile.h). */
#include "sfile.h"
#include "err.h"
#include "fsutil.h"
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void sfile_begin(struct wbuf *b, const char magic[SFILE_MAGIC])
{
	wbuf_init(b, SFILE_MAX);
	wbuf_put_bytes(b, magic, SFILE_MAGIC);
}

static void checksum(const uint8_t *p, size_t len, const uint8_t *key, uint8_t ret[SFILE_SUM])
{
	crypto_generichash(ret, SFILE_SUM, p, len, key, key ? SFILE_KEY_BYTES : 0);
}

int sfile_seal(struct wbuf *b, const uint8_t *key)
{
	uint8_t sum[SFILE_SUM];

	if (b->len < SFILE_MAGIC)
		return err_set(EINVAL, "a state file without its magic");
	checksum(b->p, b->len, key, sum);
	if (wbuf_put_bytes(b, sum, sizeof(sum)) < 0)
		return err_set(EFBIG, "a state file larger than %u bytes", SFILE_MAX);
	return 0;
}

int sfile_write(struct wbuf *b, const uint8_t *key, const char *path, mode_t mode)
{
	int r = sfile_seal(b, key);

	return r < 0 ? err_wrap(r, "%s", path) : fs_write_atomic(path, b->p, b->len, mode);
}

int sfile_read(int dirfd, const char *name, struct sfile *ret)
{
	struct stat st;
	uint8_t *buf = NULL;
	ssize_t n;
	int fd, r = 0;

	/* O_NONBLOCK: a FIFO put in its place must not hang the reader. */
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return -ENOENT;
		if (errno == ELOOP)
			return err_set(EBADMSG, "%s is a symbolic link, not a state file", name);
		return err_set(errno, "cannot open %s: %s", name, strerror(errno));
	}
	if (fstat(fd, &st) < 0) {
		r = err_set(errno, "cannot read %s: %s", name, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > SFILE_MAX ||
	    st.st_size < SFILE_MAGIC + SFILE_SUM) {
		r = err_set(EBADMSG, "%s is %s, not a state file", name,
			    !S_ISREG(st.st_mode) ? "not a regular file"
			    : st.st_size < SFILE_MAGIC + SFILE_SUM ? "truncated" : "too large");
		goto out;
	}
	if (!(buf = malloc((size_t)st.st_size))) {
		r = -ENOMEM;
		goto out;
	}
	n = fs_pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n != (ssize_t)st.st_size) {
		r = err_set(n < 0 ? (int)-n : EIO, "cannot read %s: %s", name,
			    n < 0 ? strerror((int)-n) : "it shrank while read");
		goto out;
	}
	ret->data = buf;
	ret->len = (size_t)n;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

int sfile_is(const struct sfile *f, const char magic[SFILE_MAGIC])
{
	return f->len >= SFILE_MAGIC + SFILE_SUM && memcmp(f->data, magic, SFILE_MAGIC) == 0;
}

int sfile_open(const struct sfile *f, const char magic[SFILE_MAGIC], const uint8_t *key,
	       struct rbuf *ret_body)
{
	uint8_t sum[SFILE_SUM];

	if (!sfile_is(f, magic))
		return -EBADMSG;
	checksum(f->data, f->len - SFILE_SUM, key, sum);
	if (sodium_memcmp(sum, f->data + f->len - SFILE_SUM, SFILE_SUM) != 0)
		return -EBADMSG;
	*ret_body = rbuf_init(f->data + SFILE_MAGIC, f->len - SFILE_MAGIC - SFILE_SUM);
	return 0;
}

int sfile_open_unchecked(const struct sfile *f, const char magic[SFILE_MAGIC], struct rbuf *ret_body)
{
	if (!sfile_is(f, magic))
		return -EBADMSG;
	*ret_body = rbuf_init(f->data + SFILE_MAGIC, f->len - SFILE_MAGIC - SFILE_SUM);
	return 0;
}

void sfile_free(struct sfile *f)
{
	if (!f)
		return;
	free(f->data);
	f->data = NULL;
	f->len = 0;
}
