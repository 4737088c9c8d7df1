/* ackslot.c - the commit point of light epochs without a rename
 * (docs/replica.md, "Ack slots").
 *
 *   state.ack   two slots of ACK_SLOT bytes, overwritten in place in turn:
 *               u32 length | "BSCACKS1", key id (8 bytes), the BLAKE2b-256
 *               of the state file it goes on from (its base), a sequence
 *               number, the state (as in the state file), keyed BLAKE2b |
 *               zeros
 *
 * A light epoch (or a batch of them) makes its files durable with one round
 * of fsyncs, then writes its new state into the slot not holding the newest
 * one and fdatasyncs it: an overwrite of blocks already written, so no
 * journal commit, no rename, no directory fsync.  The state of a group is
 * the state file, or the slot with the highest sequence number whose MAC
 * holds and whose base is that state file (a torn slot fails its MAC: the
 * other, the state before, holds).  A state file written afresh (any epoch
 * that is not light, a rollback, a mark) makes the slots of its predecessor
 * stale: their base is no longer the file; state.ack is removed after it,
 * and before it when the new file is byte for byte the slots' base (they
 * would otherwise come back to life). */
#include "store.h"
#include "array.h"
#include "err.h"
#include "fsutil.h"
#include "sfile.h"
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define A_MAGIC "BSCACKS1"
#define ACK_SLOT 8192u       /* bytes per slot: a larger state takes the rename */
#define BASE_BYTES 32

/* What this process (a recv session) knows of each group it wrote or read:
 * the state file as it last read or wrote it (another one is another
 * process's: a verify's mark), and the state.ack it made durable, file and
 * directory entry (one left by a session killed before its fsyncs is made
 * durable at its first use, once, not at every switch between groups). */
struct gmark {
	char group[NAME_MAX_LEN + 1];
	struct stat state_st;
	bool state_known;
	dev_t ack_dev;
	ino_t ack_ino;
	bool ack_durable;
};

/* What the writer remembers of the group it last committed. */
struct ackslots {
	struct gmark *marks;
	size_t n_marks, cap_marks;
	char group[NAME_MAX_LEN + 1];
	uint8_t base[BASE_BYTES]; /* hash of the state file */
	struct stat base_st;      /* the state file it was read from */
	uint64_t seq;             /* newest slot written or found */
	int fd;                   /* state.ack, or -1 */
	int dirfd;                /* the group's directory, or -1 */
};

static void base_hash(const uint8_t *data, size_t len, uint8_t ret[BASE_BYTES])
{
	crypto_generichash(ret, BASE_BYTES, data, len, NULL, 0);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The state.ack of GROUP removed: the next one is made durable afresh. */
static void ack_removed(struct replica *r, const char *group)
{
	struct ackslots *a = r->ackslots;

	for (size_t i = 0; a && i < a->n_marks; i++)
		if (!strcmp(a->marks[i].group, group))
			a->marks[i].ack_durable = false;
}

static void slots_forget(struct replica *r)
{
	struct ackslots *a = r->ackslots;

	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	if (a->dirfd >= 0)
		close(a->dirfd);
	a->fd = a->dirfd = -1;
	a->group[0] = 0;
	a->seq = 0;
}

void ackslot_free(struct replica *r)
{
	slots_forget(r);
	if (r->ackslots)
		free(r->ackslots->marks);
	free(r->ackslots);
	r->ackslots = NULL;
}

static struct ackslots *slots_of(struct replica *r)
{
	if (!r->ackslots && (r->ackslots = calloc(1, sizeof(*r->ackslots))))
		r->ackslots->fd = r->ackslots->dirfd = -1;
	return r->ackslots;
}

/* The mark of GROUP, added if new; NULL when out of memory. */
static struct gmark *gmark_of(struct replica *r, const char *group)
{
	struct ackslots *a = slots_of(r);
	struct gmark *m;

	if (!a)
		return NULL;
	for (size_t i = 0; i < a->n_marks; i++)
		if (!strcmp(a->marks[i].group, group))
			return &a->marks[i];
	if (!(m = array_grow(a->marks, &a->cap_marks, a->n_marks, sizeof(*m), 4)))
		return NULL;
	a->marks = m;
	m = &a->marks[a->n_marks++];
	memset(m, 0, sizeof(*m));
	snprintf(m->group, sizeof(m->group), "%s", group);
	return m;
}

int ackslot_seen(struct replica *r, const char *group, bool record)
{
	struct gmark *m = gmark_of(r, group);
	char path[RPATH];
	struct stat st;
	int fd, rc;

	if (!m)
		return -ENOMEM;
	if (!record && !m->state_known)
		return 0;
	if ((rc = gpath(r, path, sizeof(path), group, "state")) < 0)
		return rc;
	if ((fd = tree_open(r, path, O_RDONLY, 0)) < 0) {
		m->state_known = false;
		return fd == -ENOENT ? 0 : fd;
	}
	rc = fstat(fd, &st) < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return err_set(-rc, "cannot look at %s/%s: %s", r->root, path, strerror(-rc));
	if (!record)
		return !same_file(&st, &m->state_st);
	m->state_st = st;
	m->state_known = true;
	return 0;
}

/* Slot I of BUF (2 * ACK_SLOT bytes) decoded into *RET_ST when it goes on
 * from BASE (NULL: any) and authenticates (KEY NULL: unchecked); 0 or
 * -EBADMSG. */
static int slot_decode(struct replica *r, const uint8_t *buf, int i, const char *group, const uint8_t *base,
		       const uint8_t *key, uint8_t *ret_base, uint64_t *ret_seq, struct rstate *ret_st)
{
	const uint8_t *p = buf + (size_t)i * ACK_SLOT;
	uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	struct sfile f = { .data = (uint8_t *)p + 4, .len = len };
	uint8_t kid[KEY_ID_BYTES], mine[KEY_ID_BYTES], b[BASE_BYTES];
	struct rbuf body;
	uint64_t seq;

	if (len < SFILE_MAGIC + SFILE_SUM || len > ACK_SLOT - 4)
		return -EBADMSG;
	if ((key ? sfile_open(&f, A_MAGIC, key, &body) : sfile_open_unchecked(&f, A_MAGIC, &body)) < 0 ||
	    rbuf_get_bytes(&body, kid, sizeof(kid)) < 0 || rbuf_get_bytes(&body, b, sizeof(b)) < 0 ||
	    rbuf_get_u64(&body, &seq) < 0)
		return -EBADMSG;
	if (key) {
		key_id(r->key, mine);
		if (sodium_memcmp(kid, mine, sizeof(kid)) != 0)
			return -EBADMSG;
	}
	if (base && sodium_memcmp(b, base, BASE_BYTES) != 0)
		return -EBADMSG;
	if (state_decode_current(&body, group, ret_st) < 0)
		return -EBADMSG;
	if (ret_base)
		memcpy(ret_base, b, BASE_BYTES);
	*ret_seq = seq;
	return 0;
}

/* state.ack of GROUP read whole into BUF (2 * ACK_SLOT): 1, 0 when there
 * is none, or a negative errno. */
static int slots_read(struct replica *r, const char *group, uint8_t *buf)
{
	char path[RPATH];
	ssize_t n;
	int fd, rc;

	if ((rc = gpath(r, path, sizeof(path), group, "state.ack")) < 0)
		return rc;
	if ((fd = tree_open(r, path, O_RDONLY, 0)) < 0)
		return fd == -ENOENT ? 0 : fd;
	memset(buf, 0, 2 * ACK_SLOT);
	n = fs_pread_full(fd, buf, 2 * ACK_SLOT, 0);
	rc = n < 0 ? err_set(errno, "cannot read %s/%s: %s", r->root, path, strerror(errno)) : 1;
	close(fd);
	return rc;
}

int ackslot_overlay(struct replica *r, const char *group, const uint8_t *file, size_t len, struct rstate *st)
{
	uint8_t base[BASE_BYTES], *buf = malloc(2 * ACK_SLOT);
	struct rstate best, s;
	uint64_t best_seq = 0, seq;
	bool found = false;
	int rc;

	if (!buf)
		return -ENOMEM;
	base_hash(file, len, base);
	if ((rc = slots_read(r, group, buf)) <= 0)
		goto out;
	for (int i = 0; i < 2; i++)
		if (slot_decode(r, buf, i, group, base, r->key ? r->mac_key : NULL, NULL, &seq, &s) == 0 &&
		    s.epoch > st->epoch && (!found || seq > best_seq)) {
			best = s;
			best_seq = seq;
			found = true;
		}
	if (found)
		*st = best;
	rc = found;
out:
	free(buf);
	return rc;
}

/* ---- the writer's side ---- */

/* The writer's view of GROUP: the state file's hash and where the slots
 * stand, read again whenever the file is not the one last seen (another
 * process wrote it: a verify's mark).  1 when the slots can be used, 0
 * when the state must take the rename (no state file yet), or an errno. */
int ackslot_ready(struct replica *r, const char *group)
{
	struct ackslots *a = r->ackslots;
	char path[RPATH], dir[RPATH];
	struct sfile f = { 0 };
	struct gmark *m;
	struct stat st, ast;
	uint8_t *buf = NULL;
	bool known;
	int fd, rc;

	if (!r->key)
		return 0;
	if (!a && !(a = slots_of(r)))
		return -ENOMEM;
	if (strcmp(a->group, group) != 0)
		slots_forget(r);
	if ((rc = gpath(r, dir, sizeof(dir), group, "%s", "")) < 0 || (rc = gpath(r, path, sizeof(path), group, "state")) < 0)
		return rc;
	if (a->dirfd < 0 && (a->dirfd = tree_open(r, dir, O_RDONLY | O_DIRECTORY, 0)) < 0) {
		rc = a->dirfd;
		a->dirfd = -1;
		return rc == -ENOENT ? 0 : rc;
	}
	if (fstatat(a->dirfd, "state", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = errno;
		slots_forget(r); /* the directory is walked again next time */
		return rc == ENOENT ? 0 : err_set(rc, "cannot look at %s/%s: %s", r->root, path, strerror(rc));
	}
	if (!strcmp(a->group, group) && same_file(&st, &a->base_st) && a->fd >= 0) {
		if (fstat(a->fd, &ast) == 0 && ast.st_nlink == 1)
			return 1;
	}
	/* Seen afresh: the file's hash, the slots' newest sequence number. */
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	a->seq = 0;
	a->group[0] = 0;
	if ((rc = tree_sfile_read(r, path, &f)) < 0)
		goto out;
	if (!(buf = malloc(2 * ACK_SLOT))) {
		rc = -ENOMEM;
		goto out;
	}
	base_hash(f.data, f.len, a->base);
	a->base_st = st;
	if ((rc = slots_read(r, group, buf)) < 0)
		goto out;
	for (int i = 0; rc == 1 && i < 2; i++) {
		struct rstate s;
		uint64_t seq;
		if (slot_decode(r, buf, i, group, a->base, r->mac_key, NULL, &seq, &s) == 0 && seq > a->seq)
			a->seq = seq;
	}
	if ((rc = gpath(r, path, sizeof(path), group, "state.ack")) < 0)
		goto out;
	if (!(m = gmark_of(r, group))) {
		rc = -ENOMEM;
		goto out;
	}
	fd = tree_open(r, path, O_RDWR, 0);
	if (fd == -ENOENT) {
		/* Both slots written (zeros): later overwrites allocate nothing. */
		memset(buf, 0, 2 * ACK_SLOT);
		if ((fd = tree_create(r, path, 0600)) < 0) {
			rc = fd;
			goto out;
		}
		m->ack_durable = false;
		if (fs_pwrite_full(fd, buf, 2 * ACK_SLOT, 0) < 0) {
			rc = err_set(errno, "cannot write %s/%s: %s", r->root, path, strerror(errno));
			close(fd);
			goto out;
		}
	}
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	/* Made durable, file and directory entry, before a slot in it is an
	 * acked commit point: when created, and when not made durable by this
	 * session (left by one killed between its creation and its
	 * directory's fsync, maybe); once per group and session. */
	known = fstat(fd, &ast) == 0;
	if (!known || !m->ack_durable || m->ack_dev != ast.st_dev || m->ack_ino != ast.st_ino) {
		if (fsync(fd) < 0)
			rc = err_set(errno, "cannot write %s/%s: %s", r->root, path, strerror(errno));
		else
			rc = tree_fsync_parent(r, path);
		if (rc < 0) {
			close(fd);
			goto out;
		}
		m->ack_durable = known;
		m->ack_dev = ast.st_dev;
		m->ack_ino = ast.st_ino;
	}
	a->fd = fd;
	snprintf(a->group, sizeof(a->group), "%s", group);
	rc = 1;
out:
	if (rc < 0)
		slots_forget(r);
	free(buf);
	sfile_free(&f);
	return rc;
}

int ackslot_commit(struct replica *r, const struct rstate *s0)
{
	struct ackslots *a;
	uint8_t kid[KEY_ID_BYTES], *slot = NULL;
	struct rstate *s;
	struct wbuf b;
	uint64_t seq;
	bool big;
	int rc;

	if (!(a = r->ackslots) || a->fd < 0 || strcmp(a->group, s0->group) != 0)
		return 0;
	/* A verify's mark written since this process read the state is kept. */
	if (!(s = malloc(sizeof(*s))))
		return -ENOMEM;
	*s = *s0;
	if ((rc = state_keep_marks(r, s)) < 0) {
		free(s);
		return rc;
	}
	seq = a->seq + 1;
	key_id(r->key, kid);
	sfile_begin(&b, A_MAGIC);
	rc = wbuf_put_bytes(&b, kid, sizeof(kid));
	if (!rc) rc = wbuf_put_bytes(&b, a->base, BASE_BYTES);
	if (!rc) rc = wbuf_put_u64(&b, seq);
	if (!rc) rc = state_encode(s, &b);
	if (!rc) rc = sfile_seal(&b, r->mac_key);
	big = !rc && b.len > ACK_SLOT - 4; /* too large for a slot: the rename */
	if (rc < 0 || big || !(slot = calloc(1, ACK_SLOT))) {
		wbuf_free(&b);
		free(s);
		return rc < 0 ? rc : big ? 0 : -ENOMEM;
	}
	slot[0] = (uint8_t)(b.len >> 24);
	slot[1] = (uint8_t)(b.len >> 16);
	slot[2] = (uint8_t)(b.len >> 8);
	slot[3] = (uint8_t)b.len;
	memcpy(slot + 4, b.p, b.len);
	wbuf_free(&b);
	if (fs_pwrite_full(a->fd, slot, ACK_SLOT, (seq & 1) * (uint64_t)ACK_SLOT) < 0 || fdatasync(a->fd) < 0)
		rc = err_set(errno, "cannot write the state of group %s (%s/.bascule/groups/%s/state.ack): %s",
			     s->group, r->root, s->group, strerror(errno));
	else {
		a->seq = seq;
		rc = 1;
	}
	free(slot);
	free(s);
	if (rc < 0)
		slots_forget(r); /* read again from the disk next time */
	return rc;
}

int ackslot_before_state(struct replica *r, const char *group, const uint8_t *file, size_t len)
{
	uint8_t base[BASE_BYTES], b[BASE_BYTES], *buf = malloc(2 * ACK_SLOT);
	char path[RPATH];
	bool revive = false;
	int rc;

	if (!buf)
		return -ENOMEM;
	if ((rc = slots_read(r, group, buf)) <= 0)
		goto out;
	base_hash(file, len, base);
	for (int i = 0; i < 2 && !revive; i++) {
		struct rstate s;
		uint64_t seq;
		revive = slot_decode(r, buf, i, group, NULL, NULL, b, &seq, &s) == 0 &&
			 sodium_memcmp(b, base, BASE_BYTES) == 0;
	}
	/* The new state file is the slots' base: they go first, durably (a
	 * crash then leaves the old file, which is the new one's bytes). */
	if (revive && !(rc = gpath(r, path, sizeof(path), group, "state.ack"))) {
		slots_forget(r);
		ack_removed(r, group);
		rc = tree_unlink(r, path);
		if (rc == 0 || rc == -ENOENT)
			rc = tree_fsync_parent(r, path);
	}
out:
	free(buf);
	return rc < 0 ? rc : 0;
}

void ackslot_after_state(struct replica *r, const char *group)
{
	char path[RPATH];

	if (r->ackslots && !strcmp(r->ackslots->group, group))
		slots_forget(r);
	/* Stale now (their base is gone): durable or not, never read again. */
	ack_removed(r, group);
	if (gpath(r, path, sizeof(path), group, "state.ack") == 0)
		tree_unlink(r, path);
}
