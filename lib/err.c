/* err.c - thread-local error sentences and the errno to exit code map. */
#include "err.h"
#include <stdio.h>
#include <string.h>

static __thread char err_buf[1024];
static __thread int err_code;

int err_set(int code, const char *fmt, ...)
{
	va_list ap;

	if (code > 0)
		code = -code;
	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	err_code = code;
	return code;
}

int err_wrap(int code, const char *fmt, ...)
{
	char prefix[512], old[sizeof(err_buf)];
	va_list ap;

	if (code > 0)
		code = -code;
	snprintf(old, sizeof(old), "%s", err_msg(code));
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	/* Truncation is fine: the sentence is for people. */
	size_t n = strlen(prefix);
	if (n > sizeof(err_buf) - 3)
		n = sizeof(err_buf) - 3;
	memcpy(err_buf, prefix, n);
	memcpy(err_buf + n, ": ", 2);
	n += 2;
	size_t m = strlen(old);
	if (m > sizeof(err_buf) - 1 - n)
		m = sizeof(err_buf) - 1 - n;
	memcpy(err_buf + n, old, m);
	err_buf[n + m] = 0;
	err_code = code;
	return code;
}

int err_recode(int from, int to)
{
	char old[sizeof(err_buf)];

	snprintf(old, sizeof(old), "%s", err_msg(from));
	return err_set(to, "%s", old);
}

const char *err_msg(int code)
{
	if (code > 0)
		code = -code;
	if (err_code == code && err_buf[0])
		return err_buf;
	return strerror(-code);
}

void err_clear(void)
{
	err_buf[0] = 0;
	err_code = 0;
}

int err_exit_code(int code)
{
	switch (-code) {
	case 0: return EXIT_OK;
	case EINVAL: return EXIT_CONFIG;
	case EKEYREJECTED: case EKEYEXPIRED: case ENOKEY: case EACCES: case EPERM:
		return EXIT_KEY;
	case EBADMSG: case EPROTO: case EILSEQ:
		return EXIT_INTEGRITY;
	case ETIMEDOUT: return EXIT_TIMEOUT;
	case ENOSPC: case EDQUOT: return EXIT_NOSPACE;
	case ERR_NODAEMON: return EXIT_NODAEMON;
	case EBUSY: case EWOULDBLOCK: return EXIT_BUSY;
	default: return EXIT_FAIL;
	}
}
