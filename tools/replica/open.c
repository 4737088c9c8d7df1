/* open.c - opening a replica directory (its root fd, the lock, upgrade and
 * recovery), its groups, and reads of replica files. */
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

/* Sorted names of DIR's entries that are group or source names (DIRS: only
 * directories). */
static int list_names(struct replica *r, const char *dir, bool dirs, char ***ret, size_t *ret_n)
{
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	DIR *d;
	int rc = 0;

	*ret = NULL;
	*ret_n = 0;
	if (!(d = tree_opendir(r, dir)))
		return errno == ENOENT ? 0 : err_set(errno, "cannot read %s/%s: %s", r->root, dir,
						     strerror(errno));
	while ((e = readdir(d))) {
		char **nn, *s;
		if (!name_ok(e->d_name) || (dirs && e->d_type != DT_DIR))
			continue;
		if (!(nn = realloc(names, (n + 1) * sizeof(*names))) || !(s = strdup(e->d_name))) {
			if (nn)
				names = nn;
			rc = -ENOMEM;
			break;
		}
		names = nn;
		names[n++] = s;
	}
	closedir(d);
	if (rc < 0) {
		replica_groups_free(names, n);
		return rc;
	}
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

int replica_groups(struct replica *r, char ***ret, size_t *ret_n)
{
	return list_names(r, ".bascule/groups", false, ret, ret_n);
}

int replica_group_dirs(struct replica *r, char ***ret, size_t *ret_n)
{
	return list_names(r, ".", true, ret, ret_n);
}

void replica_groups_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* ROOT itself, opened once: the one path that is followed as given. */
static int open_root(struct replica *r, bool create)
{
	struct stat st;
	int rc;

	if (create && (rc = fs_mkdir_p(r->root, 0700)) < 0)
		return rc;
	r->root_fd = open(r->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (r->root_fd < 0) {
		if (errno == ENOENT)
			return err_set(ENOENT, "%s is not a Bascule replica directory (no .bascule inside)",
				       r->root);
		if (errno == ELOOP)
			return err_set(ELOOP, "%s is a symbolic link: give the replica directory itself "
					      "(--root %s is not followed, so that whoever can replace "
					      "it cannot send root elsewhere)",
				       r->root, r->root);
		return err_set(errno, "cannot open the replica directory %s: %s", r->root, strerror(errno));
	}
	if (fstat(r->root_fd, &st) < 0)
		return err_set(errno, "cannot stat %s: %s", r->root, strerror(errno));
	r->owner_uid = st.st_uid;
	r->owner_gid = st.st_gid;
	if (!create && tree_exists(r, ".bascule") != 1)
		return err_set(ENOENT, "%s is not a Bascule replica directory (no .bascule inside)", r->root);
	return 0;
}

int replica_open(const char *root, unsigned int flags, const struct site_key *key,
		 struct replica **ret)
{
	struct replica *r;
	char **groups = NULL;
	size_t n = 0;
	int rc;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->lock_fd = r->apply_fd = r->root_fd = -1;
	r->key = key;
	r->keep_epochs = 24;
	if (key)
		key_derive(key, REPLICA_MAC_PURPOSE, r->mac_key, sizeof(r->mac_key));
	if ((rc = fs_abspath(root, r->root, sizeof(r->root))) < 0 ||
	    (rc = open_root(r, flags & REPLICA_CREATE)) < 0)
		goto fail;
	if (flags & REPLICA_READONLY) {
		/* Readers see whole state files (atomic renames); no lock, no repair.
		 * Those that read replica files take the apply lock shared. */
		r->live = true;
		*ret = r;
		return 0;
	}
	if ((rc = tree_mkdir(r, ".bascule/groups")) < 0 ||
	    (rc = lock_take(r, flags & REPLICA_RECEIVER ? "recv" : "replica", flags & REPLICA_TAKEOVER)) < 0 ||
	    (rc = replica_groups(r, &groups, &n)) < 0)
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
	replica_tidy(r);
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	if (r->apply_fd >= 0)
		close(r->apply_fd);
	if (r->root_fd >= 0)
		close(r->root_fd);
	sodium_memzero(r->mac_key, sizeof(r->mac_key));
	replica_cache_free(r);
	dtree_free(r);
	batch_free(r); /* staged epochs not flushed were never acked */
	ackslot_free(r);
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
	if ((fd = tree_open(r, path, O_RDONLY, 0)) < 0) {
		memset(buf, 0, len);
		if (ret_size)
			*ret_size = 0;
		return fd == -ENOENT ? 0 : fd;
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
	struct dirent *e;
	DIR *d;

	if (!(d = tree_opendir(r, group)))
		return 0;
	while ((e = readdir(d)) && g->n_sources < PROTO_MAX_SOURCES) {
		struct stat st;
		bool known = false;
		if (!name_ok(e->d_name))
			continue;
		for (uint32_t i = 0; i < g->n_sources; i++)
			known |= strcmp(g->sources[i].name, e->d_name) == 0;
		/* Not followed: a link planted here says nothing of what it points to. */
		if (known || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || st.st_size == 0)
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
