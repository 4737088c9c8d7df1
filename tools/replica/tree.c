/* tree.c - where things are in a replica directory: paths of the group's
 * metadata, of the replica files and their seeds, and files given back to the
 * replica's owner. */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t store_now_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- paths ---- */

int gpath(const struct replica *r, char *buf, size_t len, const char *group,
		 const char *fmt, ...)
{
	char tail[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(tail, sizeof(tail), fmt, ap);
	va_end(ap);
	n = snprintf(buf, len, "%s/groups/%s%s%s", r->meta, group, tail[0] ? "/" : "", tail);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int replica_file(const struct replica *r, char *buf, size_t len, const char *group,
			const char *source)
{
	int n = snprintf(buf, len, "%s/%s/%s", r->root, group, source);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

#define SEEDED 2 /* jsource.exists in a redo: the source comes from its seed file */

int seed_paths(struct replica *r, const char *group, const char *source, char *file,
		      char *map, size_t len)
{
	int n = snprintf(file, len, "%s/%s/.%s.seed", r->root, group, source);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return gpath(r, map, len, group, "%s.map.seed", source);
}

/* Files written by root (bascule replica run by an operator or a drill) keep
 * the replica's owner, so the receiving user can go on writing them. */
int keep_owner(const struct replica *r, const char *path)
{
	struct stat st;

	if (geteuid() != 0 || stat(r->meta, &st) < 0 || st.st_uid == 0)
		return 0;
	if (lchown(path, st.st_uid, st.st_gid) < 0)
		return err_set(errno, "cannot give %s back to the replica's owner (uid %u): %s", path,
			       (unsigned)st.st_uid, strerror(errno));
	return 0;
}

/* Remove the files of DIR whose names end in SUFFIX (leftovers). */
void remove_suffixed(const char *dir, const char *suffix)
{
	size_t sl = strlen(suffix);
	char path[RPATH + 300];
	struct dirent *e;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n > sl && strcmp(e->d_name + n - sl, suffix) == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	}
	if (d)
		closedir(d);
}
