/* restore_pg.c - bascule restore of a PostgreSQL source from the vault
 * (docs/postgres.md, "PITR from the vault"): the base a recovery to the
 * time asked for starts from and the WAL from it to the end of the epoch
 * chosen are fetched, each object checked against its name, opened and
 * checked against the manifest (and the base against its digest) into a
 * staging directory beside the data directory; only when all of it is
 * sound is the data directory made, by the same code as a cold promote
 * (tools/replica/pgrun.c, pgpromote.c: replica_pg_restore), recovered to
 * the time and stopped.  A damaged object leaves nothing behind. */
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "pgproto.h"
#include "pgwal.h"
#include "replica.h"
#include "units.h"
#include "vault_tool.h"
#include "vpg.h"
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define SEG (16u << 20)

int vpg_fetch(struct vstore *vs, const struct vkeys *k, const struct vpg_ref *ref, int kind, uint32_t tli,
	      const char *file, uint64_t pos, uint32_t len, void *dctx, uint8_t *out)
{
	char path[300];
	uint8_t *data = NULL, name[VAULT_NAME];
	size_t dlen = 0;
	int r;

	vault_path(ref->obj, false, path, sizeof(path));
	if ((r = vstore_get(vs, path, ref->size + 1, &data, &dlen)) < 0) {
		if (r == -ENOENT)
			return err_set(EBADMSG, "%s: MISSING", path);
		if (r == -EFBIG)
			return err_set(EBADMSG, "%s: DAMAGED (larger than the manifest says)", path);
		return r;
	}
	vault_object_name(data, dlen, name);
	if (dlen != ref->size)
		r = err_set(EBADMSG, "%s: TRUNCATED (%zu bytes, the manifest says %" PRIu64 ")", path, dlen, ref->size);
	else if (memcmp(name, ref->obj, VAULT_NAME))
		r = err_set(EBADMSG, "%s: DAMAGED (its bytes do not hash to its name)", path);
	else if (vpg_obj_open(k, data, dlen, kind, tli, file, pos, len, dctx, out) < 0)
		r = err_set(EBADMSG, "%s: DAMAGED (it does not open with this vault key as the %s the manifest "
				     "names)", path, kind == VPG_WAL ? "WAL" : "base backup piece");
	free(data);
	return r;
}

int vpg_check_wal(const struct vkeys *k, const struct vman_pg *p, uint32_t w, const uint8_t *bytes)
{
	uint8_t d[32];
	char path[300];

	vpg_wal_digest(k, p->tli, p->wal[w].start, bytes, p->wal[w].len, d);
	if (sodium_memcmp(d, p->wal[w].digest, 32) == 0)
		return 0;
	vault_path(p->wal[w].ref.obj, false, path, sizeof(path));
	return err_set(EBADMSG, "%s: DAMAGED (its WAL does not match the manifest's digest)", path);
}

/* ---- staging ---- */

struct stage {
	int pfd, dfd;                /* the data directory's parent; the staging directory */
	char name[300];              /* the staging directory's name in the parent */
	int wal_fd;
	uint64_t wal0, wal_end;      /* the WAL in stage/wal: [wal0, wal_end) at offset lsn - wal0 */
	char what[2 * NAME_MAX_LEN + 2];
	uint8_t *buf;                /* VPG_OBJ_RAW */
};

static int st_base_file(void *ctx, const char *name)
{
	struct stage *s = ctx;
	char rel[NAME_MAX_LEN + 8];
	int fd;

	snprintf(rel, sizeof(rel), "base/%s", name);
	if ((fd = openat(s->dfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_set(errno, "%s: base file %s: %s", s->what, name, strerror(errno));
	return fd;
}

static int st_segment(void *ctx, uint32_t tli, uint64_t segno, uint64_t limit, uint8_t *buf)
{
	struct stage *s = ctx;
	uint64_t a = segno * SEG, z = a + SEG, from, to;

	(void)tli;
	from = a > s->wal0 ? a : s->wal0;
	to = z < limit ? z : limit;
	if (to > s->wal_end)
		to = s->wal_end;
	if (from >= to)
		return -ENOENT;
	memset(buf, 0, SEG);
	if (fs_pread_full(s->wal_fd, buf + (from - a), to - from, from - s->wal0) != (ssize_t)(to - from))
		return err_set(EIO, "%s: cannot read the staged WAL", s->what);
	return 0;
}

static int st_history(void *ctx, uint32_t tli, char **ret, size_t *ret_len)
{
	struct stage *s = ctx;
	char rel[64];
	int fd = -1;
	struct stat st;
	char *text = NULL;
	size_t size;

	snprintf(rel, sizeof(rel), "base/%08X.history", tli);
	if ((fd = openat(s->dfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0 ||
	    st.st_size > (1 << 20) || !(text = malloc((size_t)st.st_size + 1))) {
		if (fd >= 0)
			close(fd);
		return err_set(ENOENT, "%s: the vault holds no history file of timeline %u", s->what, tli);
	}
	size = (size_t)st.st_size;
	if (fs_pread_full(fd, text, size, 0) != (ssize_t)size) {
		close(fd);
		free(text);
		return err_set(EIO, "%s: cannot read the staged history file of timeline %u", s->what, tli);
	}
	close(fd);
	text[size] = 0;
	*ret = text;
	*ret_len = size;
	return 0;
}

/* Base B's files into stage/base, each piece fetched and checked, and the
 * whole against the base's digest. */
static int stage_base(struct stage *s, struct vstore *vs, const struct vkeys *k, const struct vpg_base *B,
		      void *dctx)
{
	struct pgdigest d;
	uint8_t got[32];
	int r = 0;

	if (mkdirat(s->dfd, "base", 0700) < 0)
		return err_set(errno, "cannot create the staging directory's base: %s", strerror(errno));
	pgdigest_files_begin(&d);
	for (uint32_t f = 0; f < B->n_files && r == 0; f++) {
		const struct vpg_file *F = &B->files[f];
		char rel[NAME_MAX_LEN + 8];
		uint32_t tli;
		bool hist = pgwal_history_file(F->name, &tli); /* outside the base's digest */
		int fd;
		snprintf(rel, sizeof(rel), "base/%s", F->name);
		if ((fd = openat(s->dfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
			return err_set(errno, "cannot create %s in the staging directory: %s", rel, strerror(errno));
		if (!hist)
			pgdigest_file(&d, F->name, F->size);
		for (uint32_t q = 0; q < F->n && r == 0; q++) {
			const struct vpg_piece *P = &F->p[q];
			if ((r = vpg_fetch(vs, k, &P->ref, VPG_BASE, B->tli, F->name, P->off, P->len, dctx, s->buf)) == 0) {
				if (!hist)
					pgdigest_update(&d, s->buf, P->len);
				r = fs_pwrite_full(fd, s->buf, P->len, P->off);
			}
		}
		close(fd);
	}
	pgdigest_final(&d, got);
	if (r == 0 && sodium_memcmp(got, B->digest, 32))
		r = err_set(EBADMSG, "base backup %" PRIX64 " of %s does not match its digest: the vault altered "
				     "it (run `bascule vault check --read-data`)", B->id, s->what);
	return r;
}

/* The WAL from FROM to the end into stage/wal. */
static int stage_wal(struct stage *s, struct vstore *vs, const struct vkeys *k, const struct vman_pg *p,
		     uint64_t from, void *dctx)
{
	int w0 = vpg_wal_find(p, from), r = 0;

	if ((s->wal_fd = openat(s->dfd, "wal", O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return err_set(errno, "cannot create the staged WAL: %s", strerror(errno));
	if (w0 < 0)
		return err_set(EBADMSG, "the vault's manifest holds no WAL of %s from %s", s->what,
			       pgwal_lsn_format(from, (char[PGWAL_LSN_LEN]){ 0 }));
	s->wal0 = s->wal_end = p->wal[w0].start;
	for (uint32_t w = (uint32_t)w0; w < p->n_wal && r == 0; w++) {
		const struct vpg_wal *W = &p->wal[w];
		if ((r = vpg_fetch(vs, k, &W->ref, VPG_WAL, p->tli, "", W->start, W->len, dctx, s->buf)) == 0 &&
		    (r = vpg_check_wal(k, p, w, s->buf)) == 0 &&
		    (r = fs_pwrite_full(s->wal_fd, s->buf, W->len, W->start - s->wal0)) == 0)
			s->wal_end = W->start + W->len;
	}
	return r;
}

/* DIR must be absent (0) or an empty directory that is not a mount point
 * (1: it is removed, to be made afresh); else -EEXIST with a sentence. */
static int target_empty(int pfd, const char *base, const char *to)
{
	struct stat st, pst;
	int fd, r;

	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : err_set(errno, "%s: %s", to, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return err_set(EEXIST, "%s exists and is not a directory: restore into a new or empty directory", to);
	if ((fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_set(errno, "cannot open %s: %s", to, strerror(errno));
	r = fs_dir_empty(fd);
	close(fd);
	if (r < 0)
		return err_set(-r, "cannot read %s: %s", to, strerror(-r));
	if (r == 0)
		return err_set(EEXIST, "%s is not empty: restore into a new or empty directory (move it away, or "
				       "give another --to)", to);
	/* The data directory is made afresh (PostgreSQL's files and its
	 * tablespaces beside it): a mount point cannot be removed and made. */
	if (fstat(pfd, &pst) == 0 && pst.st_dev != st.st_dev)
		return err_set(EEXIST, "%s is a mount point: give --to a directory inside it (e.g. %s/data); the "
				       "data directory is made afresh and its tablespaces beside it", to, to);
	return 1;
}

int restore_pg(struct vstore *vs, const struct vkeys *k, const struct vmanifest *m, const struct vman_pg *p,
	       const struct restore_pg_args *a)
{
	struct stage s = { .pfd = -1, .dfd = -1, .wal_fd = -1 };
	const struct vpg_base *B = vpg_base_for(p, a->at);
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	char parent[4200], base[256], t1[40], t2[40], e1[PGWAL_LSN_LEN], e2[PGWAL_LSN_LEN];
	const char *files[VPG_MAX_FILES];
	uint32_t n_files = 0;
	struct pgfeed f;
	struct pg_restore_req req = { 0 };
	struct promote_pg res;
	const char *slash;
	char tblspc[sizeof(base) + 16];
	bool made = false, tblspc_ours = false;
	int r, empty;

	snprintf(s.what, sizeof(s.what), "%s/%s", m->group, p->name);
	if (!dctx || !(s.buf = malloc(VPG_OBJ_RAW))) {
		r = -ENOMEM;
		goto out;
	}
	if (!B) {
		r = err_set(ENOENT, "%s cannot be recovered to %s from epoch %" PRIu64 ": the oldest base backup the "
				    "vault keeps for it arrived at %s; choose a later --at (see `bascule vault ls`)",
			    s.what, units_fmt_time(a->at, t1, sizeof(t1)), m->epoch,
			    units_fmt_time(p->bases[0].arrived, t2, sizeof(t2)));
		goto out;
	}
	/* The parent of --to, and --to itself absent or empty. */
	if ((r = fs_abspath(a->to, parent, sizeof(parent))) < 0)
		goto out;
	slash = strrchr(parent, '/');
	if (!slash || !slash[1] || strlen(slash + 1) >= sizeof(base) - 40) {
		r = err_set(ENOTDIR, "%s cannot be a data directory", a->to);
		goto out;
	}
	snprintf(base, sizeof(base), "%s", slash + 1);
	parent[slash == parent ? 1 : slash - parent] = 0;
	if ((s.pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r = err_set(errno, "cannot open %s (the parent of --to): %s", parent, strerror(errno));
		goto out;
	}
	if ((r = empty = target_empty(s.pfd, base, a->to)) < 0)
		goto out;
	/* Everything is fetched and checked first, beside it, as root's own. */
	snprintf(s.name, sizeof(s.name), ".%s.bascule-restore", base);
	fs_remove_tree_at(s.pfd, s.name, 0); /* an interrupted earlier run's */
	if (mkdirat(s.pfd, s.name, 0700) < 0 ||
	    (s.dfd = openat(s.pfd, s.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		r = err_set(errno, "cannot create %s/%s: %s", parent, s.name, strerror(errno));
		goto out;
	}
	if ((r = stage_base(&s, vs, k, B, dctx)) < 0 || (r = stage_wal(&s, vs, k, p, vpg_seg_start(B->id), dctx)) < 0)
		goto out;
	if (s.wal_end != p->end_lsn) {
		r = err_set(EBADMSG, "the WAL of %s in the vault ends at %s, the manifest says %s", s.what,
			    pgwal_lsn_format(s.wal_end, e1), pgwal_lsn_format(p->end_lsn, e2));
		goto out;
	}
	for (uint32_t i = 0; i < B->n_files; i++)
		if (!pgwal_history_file(B->files[i].name, &(uint32_t){ 0 }))
			files[n_files++] = B->files[i].name;
	req = (struct pg_restore_req){ .source = p->name, .n_files = n_files, .files = files,
				       .system_id = p->system_id, .base_id = B->id, .from = vpg_seg_start(B->id),
				       .end_lsn = p->end_lsn, .tli = p->tli, .at = a->at };
	f = (struct pgfeed){ .ctx = &s, .base_file = st_base_file, .segment = st_segment, .history = st_history,
			     .what = s.what };
	if (empty == 1 && unlinkat(s.pfd, base, AT_REMOVEDIR) < 0) {
		/* a bind mount of the same file system has the same st_dev */
		r = errno == EBUSY ? err_set(EEXIST, "%s is a mount point: give --to a directory inside it (e.g. "
						     "%s/data)", a->to, a->to)
				   : err_set(errno, "cannot replace the empty %s: %s", a->to, strerror(errno));
		goto out;
	}
	made = true;
	/* Its tablespaces go beside it; one already there is another data
	 * directory's (moved away after an earlier restore): never removed. */
	pgrun_tblspc_name(tblspc, sizeof(tblspc), base);
	tblspc_ours = faccessat(s.pfd, tblspc, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT;
	/* The vault's objects were all checked above: what recovery finds
	 * wrong (no PG_VERSION, a WAL record it refuses) is a failed
	 * recovery (exit 1), not damage in the vault (exit 5). */
	if ((r = replica_pg_restore(&f, &req, a->po, a->to, &res)) < 0) {
		if (r == -EBADMSG || r == -EPROTO || r == -EILSEQ)
			r = err_recode(r, EIO);
		goto out;
	}
	{
		char x[40];
		printf("restored %s epoch %" PRIu64 " (cut %s) to %s: base backup %s (arrived %s), WAL to %s",
		       s.what, m->epoch, units_fmt_time(m->cut_time, t1, sizeof(t1)), res.data_dir,
		       pgwal_lsn_format(B->id, e1), units_fmt_time(B->arrived, t2, sizeof(t2)),
		       pgwal_lsn_format(p->end_lsn, e2));
		if (a->at)
			printf(", recovery_target_time %s", units_fmt_time(a->at, x, sizeof(x)));
		printf("\n  recovered to %s (last record at %s), timeline %u, last transaction %s, in %.1f s; every "
		       "object verified\n  stopped: start it with pg_ctl -D %s start\n",
		       pgwal_lsn_format(p->end_lsn, e1), pgwal_lsn_format(res.redo_lsn, e2), res.timeline,
		       res.last_xact ? units_fmt_time(res.last_xact, x, sizeof(x)) : "none", (double)res.usec / 1e6,
		       res.data_dir);
	}
	r = 0;
out:
	if (s.wal_fd >= 0)
		close(s.wal_fd);
	if (s.dfd >= 0)
		close(s.dfd);
	if (s.pfd >= 0) {
		if (s.name[0])
			fs_remove_tree_at(s.pfd, s.name, 0);
		if (r < 0 && made) {
			/* its tablespaces too: a second attempt would find
			 * them there */
			if (tblspc_ours)
				fs_remove_tree_at(s.pfd, tblspc, 0);
			if (fs_remove_tree_at(s.pfd, base, 0) == 0)
				fprintf(stderr, "bascule restore: %s removed (recovery did not complete)\n", a->to);
		}
		close(s.pfd);
	}
	ZSTD_freeDCtx(dctx);
	free(s.buf);
	return r;
}
