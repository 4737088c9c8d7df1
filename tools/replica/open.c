/* open.c - opening a replica directory (lock, recovery), its groups, and
 * reads of replica files. */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- open, list ---- */

int replica_groups(struct replica *r, char ***ret, size_t *ret_n)
{
	char dir[RPATH];
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/groups", r->meta);
	d = opendir(dir);
	if (!d) {
		*ret = NULL;
		*ret_n = 0;
		return errno == ENOENT ? 0 : -errno;
	}
	while ((e = readdir(d))) {
		char **nn;
		if (!config_name_ok(e->d_name))
			continue;
		nn = realloc(names, (n + 1) * sizeof(*names));
		if (!nn)
			break;
		names = nn;
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	/* Stable order for people and tests. */
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
			char *t = names[k];
			names[k] = names[k - 1];
			names[k - 1] = t;
		}
	*ret = names;
	*ret_n = n;
	return 0;
}

void replica_groups_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}


int replica_open(const char *root, bool create, const struct site_key *key,
		 struct replica **ret)
{
	return replica_open_mode(root, create, false, false, key, ret);
}

int replica_open_mode(const char *root, bool create, bool readonly, bool takeover,
		      const struct site_key *key, struct replica **ret)
{
	struct replica *r;
	char path[RPATH], absroot[sizeof(r->root)];
	char **groups = NULL;
	size_t n = 0;
	int rc;

	if ((rc = fs_abspath(root, absroot, sizeof(absroot))) < 0)
		return rc;
	root = absroot;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->lock_fd = r->apply_fd = -1;
	r->key = key;
	r->keep_epochs = 24;
	snprintf(r->root, sizeof(r->root), "%s", root);
	snprintf(r->meta, sizeof(r->meta), "%s/.bascule", root);
	if (!create && access(r->meta, F_OK) < 0) {
		rc = err_set(ENOENT, "%s is not a Bascule replica directory (no .bascule inside)", root);
		goto fail;
	}
	if (readonly) {
		/* Readers see whole state files (atomic renames); no lock, no repair.
		 * Those that read replica files take the apply lock shared. */
		r->live = true;
		*ret = r;
		return 0;
	}
	snprintf(path, sizeof(path), "%s/groups", r->meta);
	if ((rc = fs_mkdir_p(path, 0700)) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/lock", r->meta);
	rc = fs_lock(path);
	if (rc == -EBUSY && takeover)
		rc = take_over(path);
	if (rc < 0) {
		rc = err_set(rc, "replica %s is in use by another bascule process (recv or replica); "
				 "stop it first", root);
		goto fail;
	}
	r->lock_fd = rc;
	{
		/* Record the holder for a later takeover. */
		char pid[32];
		int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		if (ftruncate(r->lock_fd, 0) == 0)
			fs_pwrite_full(r->lock_fd, pid, (size_t)len, 0);
	}
	if ((rc = replica_groups(r, &groups, &n)) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if ((rc = recover_group(r, groups[i])) < 0)
			goto fail;
	replica_groups_free(groups, n);
	*ret = r;
	return 0;
fail:
	replica_groups_free(groups, n);
	replica_close(r);
	return rc;
}

void replica_close(struct replica *r)
{
	if (!r)
		return;
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	if (r->apply_fd >= 0)
		close(r->apply_fd);
	free(r);
}

int replica_read_range(struct replica *r, const char *group, const char *source, uint64_t off,
		       uint8_t *buf, uint32_t len, uint64_t *ret_size)
{
	char path[RPATH];
	uint64_t size;
	ssize_t n = 0;
	int fd, rc;

	if ((rc = replica_file(r, path, sizeof(path), group, source)) < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		memset(buf, 0, len);
		if (ret_size)
			*ret_size = 0;
		return errno == ENOENT ? 0 : -errno;
	}
	if ((rc = fs_fd_size(fd, &size)) == 0 && off < size)
		n = fs_pread_full(fd, buf, len, off);
	close(fd);
	if (rc < 0 || n < 0)
		return rc < 0 ? rc : (int)n;
	memset(buf + n, 0, len - (size_t)n);
	if (ret_size)
		*ret_size = size;
	return 0;
}

/* Replica files present under ROOT/GROUP without any state for them. */
int replica_unknown_sources(struct replica *r, const char *group, struct state_group *g)
{
	char dir[RPATH];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s", r->root, group);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((e = readdir(d)) && g->n_sources < PROTO_MAX_SOURCES) {
		char p[RPATH + 300];
		struct stat st;
		bool known = false;
		if (!config_name_ok(e->d_name))
			continue;
		for (uint32_t i = 0; i < g->n_sources; i++)
			known |= strcmp(g->sources[i].name, e->d_name) == 0;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (known || stat(p, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
			continue;
		memset(&g->sources[g->n_sources], 0, sizeof(g->sources[0]));
		memcpy(g->sources[g->n_sources].name, e->d_name, strlen(e->d_name) + 1); /* <= 64: name_ok */
		g->sources[g->n_sources].size = (uint64_t)st.st_size;
		g->sources[g->n_sources].status = SRC_UNKNOWN;
		g->n_sources++;
	}
	closedir(d);
	return 0;
}
