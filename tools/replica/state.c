/* state.c - the group state file: where a group stands (epoch, sources,
 * digests, alarm), written atomically, authenticated with a key derived from
 * the site key (lib/sfile.c), and the upgrade of a group written by the
 * earlier version, whose state and journals carried an unkeyed checksum.
 *
 *   state   "BSCSTAT4", key id (8 bytes), the state, keyed BLAKE2b (BSCSTAT3,
 *           read too, is the same without each source's digest version: its
 *           digests are of version 1; BSCSTAT2 also without the PostgreSQL
 *           fields of a source)
 *   legacy  "BSCLGCY2", the journals of the earlier format present at the
 *           upgrade (kind, epoch, their checksum), keyed BLAKE2b; its
 *           presence says the group was upgraded */
#include "store.h"
#include "err.h"
#include "log.h"
#include "sfile.h"
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAGIC "BSCSTAT4"
#define S_MAGIC_V3 "BSCSTAT3" /* before digest versions: every digest is of version 1 */
#define S_MAGIC_V2 "BSCSTAT2" /* before PostgreSQL sources: keyed, no LSN fields */
#define S_MAGIC_V1 "BSCSTAT1" /* the earlier format: unkeyed checksum */
#define L_MAGIC "BSCLGCY2"
#define L_MAX 8192            /* journals recorded at an upgrade */

int state_encode(const struct rstate *s, struct wbuf *b)
{
	int rc = wbuf_put_str(b, s->group);

	if (!rc) rc = wbuf_put_u64(b, s->epoch);
	if (!rc) rc = wbuf_put_u64(b, s->cut_time);
	if (!rc) rc = wbuf_put_u64(b, s->applied_time);
	if (!rc) rc = wbuf_put_u8(b, s->flags);
	if (!rc) rc = wbuf_put_u64(b, s->pending_undo);
	if (!rc) rc = wbuf_put_str(b, s->alarm);
	if (!rc) rc = wbuf_put_u32(b, s->n_sources);
	for (uint32_t i = 0; !rc && i < s->n_sources; i++) {
		const struct state_source *x = &s->sources[i];
		rc = wbuf_put_str(b, x->name);
		if (!rc) rc = wbuf_put_u64(b, x->epoch);
		if (!rc) rc = wbuf_put_u64(b, x->size);
		if (!rc) rc = wbuf_put_u8(b, x->status);
		if (!rc) rc = wbuf_put_bytes(b, x->digest, DIGEST_BYTES);
		if (!rc) rc = wbuf_put_u8(b, x->dv);
		if (!rc) rc = wbuf_put_u64(b, x->system_id);
		if (!rc) rc = wbuf_put_u64(b, x->base_id);
		if (!rc) rc = wbuf_put_u32(b, x->timeline);
		if (!rc) rc = wbuf_put_u64(b, x->end_lsn);
	}
	return rc;
}

/* FMT: the version of the format (the magic's digit): up to 2 without the
 * LSN fields, up to 3 without digest versions (version 1). */
static int state_decode(struct rbuf *b, const char *group, int fmt, struct rstate *ret)
{
	struct rstate s;

	memset(&s, 0, sizeof(s));
	if (rbuf_get_str(b, s.group, sizeof(s.group)) < 0 || rbuf_get_u64(b, &s.epoch) < 0 ||
	    rbuf_get_u64(b, &s.cut_time) < 0 || rbuf_get_u64(b, &s.applied_time) < 0 ||
	    rbuf_get_u8(b, &s.flags) < 0 || rbuf_get_u64(b, &s.pending_undo) < 0 ||
	    rbuf_get_str(b, s.alarm, sizeof(s.alarm)) < 0 || rbuf_get_u32(b, &s.n_sources) < 0 ||
	    s.n_sources > PROTO_MAX_SOURCES)
		return -EBADMSG;
	for (uint32_t i = 0; i < s.n_sources; i++) {
		struct state_source *x = &s.sources[i];
		if (rbuf_get_str(b, x->name, sizeof(x->name)) < 0 || !name_ok(x->name) ||
		    rbuf_get_u64(b, &x->epoch) < 0 || rbuf_get_u64(b, &x->size) < 0 ||
		    rbuf_get_u8(b, &x->status) < 0 || rbuf_get_bytes(b, x->digest, DIGEST_BYTES) < 0)
			return -EBADMSG;
		x->dv = DIGEST_V1;
		if (fmt >= 4 && (rbuf_get_u8(b, &x->dv) < 0 || x->dv > DIGEST_V2))
			return -EBADMSG;
		if (fmt >= 3 && (rbuf_get_u64(b, &x->system_id) < 0 || rbuf_get_u64(b, &x->base_id) < 0 ||
			    rbuf_get_u32(b, &x->timeline) < 0 || rbuf_get_u64(b, &x->end_lsn) < 0))
			return -EBADMSG;
	}
	if (rbuf_expect_end(b) < 0 || strcmp(s.group, group) != 0)
		return -EBADMSG;
	*ret = s;
	return 0;
}

int state_decode_current(struct rbuf *b, const char *group, struct rstate *ret)
{
	return state_decode(b, group, S_MAGIC[7] - '0', ret);
}

static int legacy_record(struct replica *r, const char *group, size_t *ret_n);
static int state_seal(struct replica *r, const struct rstate *s, struct wbuf *b, char *path, size_t len);

int state_keep_marks(struct replica *r, struct rstate *s)
{
	struct rstate now;
	int rc = ackslot_seen(r, s->group, false);

	if (rc <= 0)
		return rc;
	/* Written by another process since: a verify's mark (under the apply
	 * lock), never to be replaced by a state loaded before it. */
	if ((rc = replica_load_state(r, s->group, &now)) < 0)
		return rc == -ENOENT ? 0 : rc;
	for (uint32_t i = 0; i < now.n_sources; i++) {
		struct state_source *x = state_find(s, now.sources[i].name);
		if (x && now.sources[i].status == SRC_DIVERGED && x->status != SRC_DIVERGED) {
			x->status = SRC_DIVERGED;
			log_warn("group %s: source %s was marked diverged (bascule replica verify) while this "
				 "receiver ran: the mark is kept, the primary resynchronises it",
				 s->group, x->name);
		}
	}
	return 0;
}

int state_write(struct replica *r, const struct rstate *s0)
{
	char path[RPATH];
	struct wbuf b = { 0 };
	struct rstate s = *s0;
	int rc = state_keep_marks(r, &s);

	if (!rc) rc = state_seal(r, &s, &b, path, sizeof(path));
	/* A new state file: the ack slots of the one before are stale. */
	if (!rc) rc = ackslot_before_state(r, s.group, b.p, b.len);
	if (!rc) rc = tree_write_atomic(r, path, b.p, b.len);
	if (!rc) {
		ackslot_after_state(r, s.group);
		rc = ackslot_seen(r, s.group, true);
	}
	wbuf_free(&b);
	/* A group this version starts has its record from its first state on:
	 * no journal of the earlier format is ever read in it. */
	if (!rc && (rc = legacy_upgraded(r, s.group)) == 0) {
		size_t n;
		rc = legacy_record(r, s.group, &n);
	}
	return rc < 0 ? rc : 0;
}

/* The sealed state S (its file's content) into B; its path into PATH. */
static int state_seal(struct replica *r, const struct rstate *s, struct wbuf *b, char *path, size_t len)
{
	uint8_t kid[KEY_ID_BYTES];
	int rc;

	if (!r->key)
		return err_set(ENOKEY, "group %s needs its site key for this (give --key FILE)", s->group);
	key_id(r->key, kid);
	sfile_begin(b, S_MAGIC);
	rc = wbuf_put_bytes(b, kid, sizeof(kid));
	if (!rc) rc = state_encode(s, b);
	if (!rc) rc = gpath(r, path, len, s->group, "state");
	if (!rc) rc = sfile_seal(b, r->mac_key);
	return rc;
}

int state_write_begin(struct replica *r, const struct rstate *s0, struct syncset *ss)
{
	char path[RPATH];
	struct wbuf b = { 0 };
	struct rstate s = *s0;
	int rc = state_keep_marks(r, &s);

	if (!rc) rc = state_seal(r, &s, &b, path, sizeof(path));
	if (!rc) rc = ackslot_before_state(r, s.group, b.p, b.len);
	if (!rc)
		rc = tree_write_atomic_begin(r, path, b.p, b.len, ss);
	wbuf_free(&b);
	return rc;
}

int state_write_end(struct replica *r, const struct rstate *s)
{
	char path[RPATH];
	int rc;

	if ((rc = gpath(r, path, sizeof(path), s->group, "state")) < 0 ||
	    (rc = tree_write_atomic_end(r, path)) < 0)
		return rc;
	ackslot_after_state(r, s->group);
	if ((rc = ackslot_seen(r, s->group, true)) < 0)
		return rc;
	if ((rc = legacy_upgraded(r, s->group)) == 0) {
		size_t n;
		rc = legacy_record(r, s->group, &n);
	}
	return rc < 0 ? rc : 0;
}

/* Why a state file of this format does not authenticate: another site's
 * key (its id says so), or a file written without any key. */
static int state_refused(struct replica *r, const char *path, struct rbuf body)
{
	uint8_t kid[KEY_ID_BYTES], mine[KEY_ID_BYTES];
	char a[2 * KEY_ID_BYTES + 1], b[2 * KEY_ID_BYTES + 1];

	key_id(r->key, mine);
	if (rbuf_get_bytes(&body, kid, sizeof(kid)) == 0 && sodium_memcmp(kid, mine, sizeof(kid)) != 0) {
		sodium_bin2hex(a, sizeof(a), kid, sizeof(kid));
		sodium_bin2hex(b, sizeof(b), mine, sizeof(mine));
		return err_set(EKEYREJECTED, "replica state %s/%s was written with the site key %s, not "
					     "with %s (key id %s): give the site key of this replica "
					     "(bascule key id FILE shows a key's id)",
			       r->root, path, a, r->key_path ? r->key_path : "the key given", b);
	}
	return err_set(EBADMSG, "replica state %s/%s fails its authentication with the site key "
				"(written by someone without the key, or damaged): refused; run "
				"'bascule replica verify' and restore the group from the primary",
		       r->root, path);
}

/* replica_load_state; *RET_V1 says the file has the earlier format. */
static int state_load(struct replica *r, const char *group, struct rstate *ret, bool *ret_v1)
{
	struct sfile f = { 0 };
	char path[RPATH];
	const char *magic = S_MAGIC;
	struct rbuf b;
	int rc;

	if ((rc = gpath(r, path, sizeof(path), group, "state")) < 0)
		return rc;
	/* Seen before it is read: one written in between is another's. */
	if ((rc = ackslot_seen(r, group, true)) < 0)
		return rc;
	if ((rc = tree_sfile_read(r, path, &f)) < 0)
		return rc == -EBADMSG ? err_wrap(rc, "replica state is not readable; move it away and "
						     "run 'bascule replica verify'") : rc;
	if (sfile_is(&f, S_MAGIC_V3))
		magic = S_MAGIC_V3;
	if (sfile_is(&f, S_MAGIC_V2))
		magic = S_MAGIC_V2;
	if (sfile_is(&f, magic)) {
		if (!r->key) {
			/* No key (bascule replica list): shown, never acted on. */
			sfile_open_unchecked(&f, magic, &b);
			r->unauthenticated = true;
			rc = rbuf_get_bytes(&b, (uint8_t[KEY_ID_BYTES]){ 0 }, KEY_ID_BYTES);
		} else if ((rc = sfile_open(&f, magic, r->mac_key, &b)) < 0) {
			sfile_open_unchecked(&f, magic, &b);
			rc = state_refused(r, path, b);
			goto out;
		} else
			rc = rbuf_get_bytes(&b, (uint8_t[KEY_ID_BYTES]){ 0 }, KEY_ID_BYTES);
	} else if (sfile_open(&f, S_MAGIC_V1, NULL, &b) == 0) {
		/* Written by the earlier version: good until the group is
		 * upgraded (state_upgrade), refused after. */
		*ret_v1 = true;
		if ((rc = legacy_upgraded(r, group)) != 0) {
			if (rc > 0)
				rc = err_set(EBADMSG, "replica state %s/%s has the earlier, unauthenticated "
						      "format (BSCSTAT1), but the group was upgraded: it was "
						      "written since by someone without the site key "
						      "(forged?): refused",
					     r->root, path);
			goto out;
		}
	} else
		rc = -EBADMSG;
	if (rc == 0)
		rc = state_decode(&b, group, *ret_v1 ? 1 : magic[7] - '0', ret);
	if (rc < 0)
		rc = err_set(EBADMSG, "replica state %s/%s is corrupt; run 'bascule replica verify' and "
				      "restore the group from the primary", r->root, path);
	/* Light epochs committed since, in the ack slots (ackslot.c). */
	else if (!*ret_v1 && (rc = ackslot_overlay(r, group, f.data, f.len, ret)) > 0)
		rc = 0;
out:
	sfile_free(&f);
	return rc;
}

int replica_load_state(struct replica *r, const char *group, struct rstate *ret)
{
	bool v1 = false;

	return state_load(r, group, ret, &v1);
}

struct state_source *state_find(struct rstate *s, const char *name)
{
	for (uint32_t i = 0; i < s->n_sources; i++)
		if (strcmp(s->sources[i].name, name) == 0)
			return &s->sources[i];
	return NULL;
}

/* ---- the upgrade from the earlier format ---- */

struct legacy {
	uint8_t kind;
	uint64_t epoch;
	uint8_t sum[JSUM];
};

int legacy_upgraded(struct replica *r, const char *group)
{
	char path[RPATH];
	int rc;

	if ((rc = gpath(r, path, sizeof(path), group, "legacy")) < 0)
		return rc;
	return tree_exists(r, path);
}

/* The journals of the earlier format in DIR (KIND J_REDO or J_UNDO) into L. */
static int legacy_scan(struct replica *r, const char *group, uint8_t kind, struct legacy *l,
		       size_t *n)
{
	const char *sub = kind == J_UNDO ? "undo" : "journal", *ext = kind == J_UNDO ? ".undo" : ".redo";
	char dir[RPATH], rel[RPATH + 300];
	struct dirent *e;
	DIR *d;
	int rc;

	if ((rc = gpath(r, dir, sizeof(dir), group, "%s", sub)) < 0)
		return rc;
	if (!(d = tree_opendir(r, dir)))
		return errno == ENOENT ? 0 : err_set(errno, "cannot read %s/%s: %s", r->root, dir,
						     strerror(errno));
	while ((e = readdir(d)) && *n < L_MAX) {
		char *end, magic[8];
		unsigned long long v = strtoull(e->d_name, &end, 10);
		struct stat st;
		int fd;
		if (strcmp(end, ext) != 0 || !v)
			continue;
		snprintf(rel, sizeof(rel), "%s/%s", dir, e->d_name);
		if ((fd = tree_open(r, rel, O_RDONLY, 0)) < 0)
			continue; /* refused with its reason when it is used */
		if (fstat(fd, &st) == 0 && st.st_size >= 8 + JSUM && pread(fd, magic, 8, 0) == 8 &&
		    memcmp(magic, J_MAGIC_V1, 8) == 0 &&
		    pread(fd, l[*n].sum, JSUM, st.st_size - JSUM) == JSUM) {
			l[*n].kind = kind;
			l[*n].epoch = v;
			(*n)++;
		}
		close(fd);
	}
	closedir(d);
	return 0;
}

/* Record the journals of the earlier format GROUP holds now, all that will
 * ever be read of that format; *RET_N how many. */
static int legacy_record(struct replica *r, const char *group, size_t *ret_n)
{
	struct legacy *l = NULL;
	char path[RPATH];
	struct wbuf b;
	size_t n = 0;
	int rc;

	if (!(l = calloc(L_MAX, sizeof(*l))))
		return -ENOMEM;
	if ((rc = legacy_scan(r, group, J_REDO, l, &n)) < 0 || (rc = legacy_scan(r, group, J_UNDO, l, &n)) < 0)
		goto out;
	sfile_begin(&b, L_MAGIC);
	rc = wbuf_put_u32(&b, (uint32_t)n);
	for (size_t i = 0; !rc && i < n; i++) {
		rc = wbuf_put_u8(&b, l[i].kind);
		if (!rc) rc = wbuf_put_u64(&b, l[i].epoch);
		if (!rc) rc = wbuf_put_bytes(&b, l[i].sum, JSUM);
	}
	if (!rc && !(rc = gpath(r, path, sizeof(path), group, "legacy")))
		rc = tree_sfile_write(r, path, &b, r->mac_key);
	wbuf_free(&b);
	*ret_n = n;
out:
	free(l);
	return rc;
}

int state_upgrade(struct replica *r, const char *group)
{
	struct rstate s;
	bool old_state = false;
	size_t n = 0;
	int rc;

	if (!r->key)
		return 0;
	if ((rc = legacy_upgraded(r, group)) != 0)
		return rc < 0 ? rc : 0;
	/* Before the record exists, a state of either format is read.  The
	 * record first, then the state: a crash in between repeats this. */
	if ((rc = state_load(r, group, &s, &old_state)) < 0 && rc != -ENOENT)
		return rc;
	if ((rc = legacy_record(r, group, &n)) < 0 || (old_state && (rc = state_write(r, &s)) < 0))
		return rc;
	if (old_state || n)
		log_info("group %s of %s upgraded: its state and journals are now authenticated with the "
			 "site key; %zu journal%s of the earlier version kept, accepted by their checksum",
			 group, r->root, n, n == 1 ? "" : "s");
	return 0;
}

bool legacy_accepts(const struct replica *r, const char *group, const char *name,
		    const uint8_t sum[JSUM])
{
	struct sfile f = { 0 };
	char path[RPATH], *end;
	unsigned long long epoch = strtoull(name, &end, 10);
	uint8_t kind = !strcmp(end, ".undo") ? J_UNDO : J_REDO;
	bool found = false;
	struct rbuf b;
	uint32_t n;

	if (gpath(r, path, sizeof(path), group, "legacy") < 0 || tree_sfile_read(r, path, &f) < 0)
		return false;
	if (sfile_open(&f, L_MAGIC, r->mac_key, &b) == 0 && rbuf_get_u32(&b, &n) == 0 && n <= L_MAX)
		for (uint32_t i = 0; i < n && !found; i++) {
			struct legacy x;
			if (rbuf_get_u8(&b, &x.kind) < 0 || rbuf_get_u64(&b, &x.epoch) < 0 ||
			    rbuf_get_bytes(&b, x.sum, JSUM) < 0)
				break;
			found = x.kind == kind && x.epoch == epoch && sodium_memcmp(x.sum, sum, JSUM) == 0;
		}
	sfile_free(&f);
	return found;
}
