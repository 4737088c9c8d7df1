/* log.c - journal or stderr logging with structured fields. */
#include "log.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

static const char *log_ident = "bascule";
static int log_verbose;
static int log_to_journal;

void log_init(const char *ident, int verbose)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	log_ident = ident;
	log_verbose = verbose;
	/* systemd sets JOURNAL_STREAM=DEV:INO when stderr is connected to the
	 * journal.  A child inherits the variable with another stderr (the
	 * daemon's pipe to a receiver or relay): only the same stream counts. */
	log_to_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
			 (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int log_line_prio(const char *line)
{
	size_t ident = strcspn(line, ":");

	if (strncmp(line, "bascule-", 8) || ident == 8 || ident > 32 ||
	    strspn(line + 8, "abcdefghijklmnopqrstuvwxyz") != ident - 8 || strncmp(line + ident, ": ", 2))
		return -1;
	line += ident + 2;
	return !strncmp(line, "error: ", 7) ? LOG_ERR : !strncmp(line, "warning: ", 9) ? LOG_WARNING : LOG_INFO;
}

void log_fields(int prio, const char *const *fields, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (prio == LOG_DEBUG && !log_verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (log_to_journal) {
		struct iovec iov[12];
		char m[2200], p[32], id[64];
		int n = 0;

		snprintf(m, sizeof(m), "MESSAGE=%s", msg);
		snprintf(p, sizeof(p), "PRIORITY=%d", prio);
		snprintf(id, sizeof(id), "SYSLOG_IDENTIFIER=%s", log_ident);
		iov[n++] = (struct iovec){ m, strlen(m) };
		iov[n++] = (struct iovec){ p, strlen(p) };
		iov[n++] = (struct iovec){ id, strlen(id) };
		for (int i = 0; fields && fields[i] && n < 12; i++)
			iov[n++] = (struct iovec){ (void *)fields[i], strlen(fields[i]) };
		sd_journal_sendv(iov, n);
		return;
	}
	/* On stderr the message alone: it names its group, epoch and target
	 * already, the fields are for journal queries (journalctl TARGET=...). */
	fprintf(stderr, "%s: %s%s\n", log_ident,
		prio <= LOG_ERR ? "error: " : prio == LOG_WARNING ? "warning: " : "", msg);
}
