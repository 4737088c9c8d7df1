/* pgstore.c - receiving the WAL and the base backup of a PostgreSQL source
 * up to the epoch's commit point (pg.h), putting a base in place once its
 * epoch is committed, retention, and what a crash leaves behind.
 *
 * Never torn: the group state is the commit point.  WAL is written into
 * the segment files at its place, but never below where the committed copy
 * ends on that timeline (those bytes are read back and must be the same); a
 * base goes into base/ID.tmp and is renamed by the committed redo.  Before
 * the commit point everything is fsync'd and read back: the base's files
 * against the primary's digest, the WAL against the chained digest. */
#include "pg.h"
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

#define MAX_HIST 8

struct pgrecv {
	struct replica *r;
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch, cut_time;
	struct msg_pgsource m;
	bool had;
	struct state_source have;
	uint8_t key[DIGEST_BYTES];
	uint64_t next;               /* where the next WAL message must start */
	uint64_t keep_from, keep_to; /* the copy's WAL on m.timeline: read back, never written */
	int seg_fd;
	uint64_t segno;
	bool base_final;             /* this base is in the store already (sent again) */
	int file_fd;
	struct pgbase b;             /* the files received so far */
	uint32_t n_hist;
	struct {
		uint32_t tli;
		char *data;
		size_t len;
	} hist[MAX_HIST];
};

static const char *lsn(uint64_t v, char *buf)
{
	return pgwal_lsn_format(v, buf);
}

/* ---- names ---- */

/* The files a base backup may hold: base.tar, OID.tar, backup_manifest. */
static bool base_file_name(const char *s)
{
	size_t d = strspn(s, "0123456789");

	return !strcmp(s, "base.tar") || !strcmp(s, "backup_manifest") ||
	       (d >= 1 && d <= 10 && !strcmp(s + d, ".tar"));
}

static int base_dir(const struct pgrecv *p, char *buf, size_t len, bool tmp)
{
	return pg_path(buf, len, p->group, p->m.name, p->m.system_id, "base/%016llx%s",
		       (unsigned long long)p->m.base_id, tmp ? ".tmp" : "");
}

/* Remove the directory REL and the files in it. */
static void remove_dir(struct replica *r, const char *rel)
{
	remove_suffixed(r, rel, "");
	tree_rmdir(r, rel);
}

/* ---- segments ---- */

/* The open segment durable (SS: once SS ran), closed. */
static int seg_close(struct pgrecv *p, struct syncset *ss)
{
	int rc = 0;

	if (p->seg_fd < 0)
		return 0;
	if (ss)
		rc = syncset_fd(ss, p->seg_fd, true);
	else if (fdatasync(p->seg_fd) < 0)
		rc = err_set(errno, "cannot fsync a WAL segment of %s/%s: %s", p->group, p->m.name, strerror(errno));
	close(p->seg_fd);
	p->seg_fd = -1;
	return rc;
}

/* The segment SEGNO of timeline TLI, open for writing (created, 16 MiB
 * reserved, if missing). */
static int seg_use(struct pgrecv *p, uint32_t tli, uint64_t segno)
{
	char name[PGWAL_SEG_NAME_LEN], path[RPATH];
	int fd, rc;

	if (p->seg_fd >= 0 && p->segno == segno)
		return p->seg_fd;
	if ((rc = seg_close(p, NULL)) < 0)
		return rc;
	fd = pgseg_open(p->r, p->group, p->m.name, p->m.system_id, tli, segno, O_RDWR);
	if (fd == -ENOENT) {
		pgwal_seg_name(name, tli, segno, PG_SEG);
		if ((rc = pg_path(path, sizeof(path), p->group, p->m.name, p->m.system_id, "wal/%s.partial",
				  name)) < 0)
			return rc;
		if ((fd = tree_create(p->r, path, 0600)) < 0)
			return fd;
		if (pg_path(path, sizeof(path), p->group, p->m.name, p->m.system_id, "wal") == 0)
			dircache_changed(p->r, path); /* fsync'd before the commit point */
		/* The space of the whole segment now: a full disk refuses the
		 * epoch here, not half-way through a later one. */
		if (fallocate(fd, 0, 0, PG_SEG) < 0 && (errno != EOPNOTSUPP || ftruncate(fd, PG_SEG) < 0)) {
			rc = err_set(errno, "cannot make room for WAL segment %s of %s/%s: %s", name, p->group,
				     p->m.name, strerror(errno));
			close(fd);
			tree_unlink(p->r, path);
			return rc;
		}
	}
	if (fd < 0)
		return fd;
	p->seg_fd = fd;
	p->segno = segno;
	return fd;
}

static int seg_write(struct pgrecv *p, uint64_t at, const uint8_t *data, uint64_t n)
{
	int fd;

	if (n == 0)
		return 0;
	if ((fd = seg_use(p, p->m.timeline, at / PG_SEG)) < 0)
		return fd;
	if (fs_pwrite_full(fd, data, (size_t)n, at % PG_SEG) < 0)
		return err_set(errno, "cannot write the WAL of %s/%s: %s", p->group, p->m.name, strerror(errno));
	return 0;
}

/* A new timeline's first segment begins with the old one's WAL up to the
 * switch point, as PostgreSQL copies it (XLogFileCopy). */
static int copy_head(struct pgrecv *p)
{
	uint64_t segno = p->m.start_lsn / PG_SEG, off = p->m.start_lsn % PG_SEG;
	uint8_t *buf;
	int fd, rc;

	if (!off)
		return 0;
	if (!(buf = malloc(PG_SEG)))
		return -ENOMEM;
	rc = pg_segment(p->r, p->group, p->m.name, p->m.system_id, p->have.timeline, segno, p->m.start_lsn, buf);
	if (rc == -ENOENT)
		rc = err_set(EPROTO, "%s/%s switches to timeline %u at %s, but the replica has no WAL of timeline "
				     "%u there", p->group, p->m.name, p->m.timeline,
			     lsn(p->m.start_lsn, (char[PGWAL_LSN_LEN]){ 0 }), p->have.timeline);
	if (rc == 0 && (fd = seg_use(p, p->m.timeline, segno)) < 0)
		rc = fd;
	if (rc == 0 && fs_pwrite_full(p->seg_fd, buf, (size_t)off, 0) < 0)
		rc = err_set(errno, "cannot write the WAL of %s/%s: %s", p->group, p->m.name, strerror(errno));
	free(buf);
	return rc;
}

/* ---- an epoch ---- */

/* Where the epoch may begin, against the copy (docs/protocol.md, section 7;
 * docs/replica.md for the WAL a new base must bring). */
static int check_start(struct pgrecv *p, const struct pgpath *held)
{
	const struct msg_pgsource *m = &p->m;
	const struct state_source *h = &p->have;
	bool same = p->had && h->system_id == m->system_id;
	char a[PGWAL_LSN_LEN], b[PGWAL_LSN_LEN];

	if (!(m->flags & PGSRC_BASE)) {
		if (!p->had)
			return err_set(EPROTO, "epoch %llu of %s/%s carries no base backup, and the replica holds "
					       "none of this PostgreSQL source yet: it needs one first",
				       (unsigned long long)p->epoch, p->group, m->name);
		if (!same || m->base_id != h->base_id)
			return err_set(EPROTO, "epoch %llu of %s/%s follows base backup %s of system %llu; the "
					       "replica's copy follows %s of system %llu: a new base backup is needed",
				       (unsigned long long)p->epoch, p->group, m->name, lsn(m->base_id, a),
				       (unsigned long long)m->system_id, lsn(h->base_id, b),
				       (unsigned long long)h->system_id);
		if (m->start_lsn != h->end_lsn ||
		    ((m->flags & PGSRC_TIMELINE) ? m->timeline <= h->timeline : m->timeline != h->timeline))
			return err_set(EPROTO, "epoch %llu of %s/%s starts at %s on timeline %u, but the replica's "
					       "copy ends at %s on timeline %u",
				       (unsigned long long)p->epoch, p->group, m->name, lsn(m->start_lsn, a),
				       m->timeline, lsn(h->end_lsn, b), h->timeline);
		return 0;
	}
	if (same && m->base_id < h->base_id)
		return err_set(EPROTO, "epoch %llu of %s/%s brings base backup %s, older than the replica's %s",
			       (unsigned long long)p->epoch, p->group, m->name, lsn(m->base_id, a),
			       lsn(h->base_id, b));
	if (same && m->timeline < h->timeline)
		return err_set(EPROTO, "epoch %llu of %s/%s is on timeline %u, the replica's copy on %u",
			       (unsigned long long)p->epoch, p->group, m->name, m->timeline, h->timeline);
	/* Recovery reads the base's first segment from its first page: the
	 * WAL must begin there, unless the copy holds it already (the epoch
	 * then goes on from where the copy ends, or before). */
	if (m->start_lsn > pg_seg_start(m->base_id) &&
	    !(same && held && m->timeline == h->timeline && m->start_lsn <= h->end_lsn &&
	      pg_seg_start(m->base_id) >= pg_held_from(held)))
		return err_set(EPROTO, "epoch %llu of %s/%s brings base backup %s with WAL from %s: the WAL of a "
				       "new base must start at the beginning of its segment (%s), where recovery "
				       "reads it", (unsigned long long)p->epoch, p->group, m->name,
			       lsn(m->base_id, a), lsn(m->start_lsn, b),
			       lsn(pg_seg_start(m->base_id), (char[PGWAL_LSN_LEN]){ 0 }));
	return 0;
}

int pgrecv_begin(struct replica *r, const char *group, uint64_t epoch, uint64_t cut_time,
		 const struct msg_pgsource *m, const struct state_source *have, struct pgrecv **ret)
{
	struct pgrecv *p;
	struct pgpath held;
	bool have_held = false;
	char dir[RPATH];
	int rc;

	if (!r->key)
		return err_set(ENOKEY, "group %s needs its site key (give --key FILE)", group);
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->r = r;
	p->seg_fd = p->file_fd = -1;
	snprintf(p->group, sizeof(p->group), "%s", group);
	p->epoch = epoch;
	p->cut_time = cut_time;
	p->m = *m;
	p->next = m->start_lsn;
	if (have && pg_source(have)) {
		p->had = true;
		p->have = *have;
	} else if (have) {
		rc = err_set(EPROTO, "source %s/%s is a disk in the replica, a PostgreSQL source in the epoch",
			     group, m->name);
		goto fail;
	}
	pgdigest_wal_key(r->key, group, m->name, p->key);
	if (p->had && p->have.system_id == m->system_id) {
		struct pgbase hb;
		if ((rc = pg_copy_open(r, group, &p->have, &hb, &held)) < 0)
			goto fail;
		have_held = true;
		/* The copy's WAL on its timeline is read back, never written. */
		if (m->timeline == p->have.timeline) {
			p->keep_from = pg_held_from(&held);
			p->keep_to = p->have.end_lsn;
		}
	}
	if ((rc = check_start(p, have_held ? &held : NULL)) < 0)
		goto fail;
	if ((rc = pg_path(dir, sizeof(dir), group, m->name, m->system_id, "wal")) < 0 ||
	    (rc = tree_mkdir(r, dir)) < 0)
		goto fail;
	if (m->flags & PGSRC_BASE) {
		if ((rc = base_dir(p, dir, sizeof(dir), false)) < 0 || (rc = tree_exists(r, dir)) < 0)
			goto fail;
		p->base_final = rc == 1;
		if ((rc = base_dir(p, dir, sizeof(dir), true)) < 0)
			goto fail;
		remove_dir(r, dir); /* a base whose epoch never committed */
		if ((rc = tree_mkdir(r, dir)) < 0)
			goto fail;
	} else if ((m->flags & PGSRC_TIMELINE) && (rc = copy_head(p)) < 0)
		goto fail;
	*ret = p;
	return 0;
fail:
	pgrecv_free(p);
	return rc;
}

int pgrecv_wal(struct pgrecv *p, uint64_t at, uint32_t len, const uint8_t *data)
{
	uint64_t z = at + len, kf = p->keep_from, kt = p->keep_to;
	char x[PGWAL_LSN_LEN], y[PGWAL_LSN_LEN];
	int rc = 0;

	if (at != p->next || len > p->m.end_lsn - at)
		return err_set(EPROTO, "WAL of %s/%s at %s: expected at %s, up to %s", p->group, p->m.name,
			       lsn(at, x), lsn(p->next, y), lsn(p->m.end_lsn, (char[PGWAL_LSN_LEN]){ 0 }));
	p->next = z;
	/* Piece by piece within a segment; the copy's own WAL [KF, KT) is
	 * left as it is (read back at the end instead). */
	while (at < z && rc == 0) {
		uint64_t end = at - at % PG_SEG + PG_SEG;
		if (end > z)
			end = z;
		if (kf < kt && at < kt && end > kf) {
			if (at < kf)
				rc = seg_write(p, at, data, kf - at);
			if (rc == 0 && end > kt)
				rc = seg_write(p, kt, data + (kt - at), end - kt);
		} else
			rc = seg_write(p, at, data, end - at);
		data += end - at;
		at = end;
	}
	return rc;
}

int pgrecv_basefile(struct pgrecv *p, const char *file, uint64_t off, uint32_t len, const uint8_t *data)
{
	uint32_t tli;

	if (pgwal_history_file(file, &tli)) {
		uint32_t k = p->n_hist;
		if (!(p->m.flags & (PGSRC_BASE | PGSRC_TIMELINE)) || tli < 2 || tli > p->m.timeline)
			return err_set(EPROTO, "%s for %s/%s on timeline %u, in an epoch that switches no timeline",
				       file, p->group, p->m.name, p->m.timeline);
		if (k && p->hist[k - 1].tli == tli)
			k--;
		else {
			for (uint32_t i = 0; i < k; i++)
				if (p->hist[i].tli == tli)
					return err_set(EPROTO, "%s sent twice", file);
			if (k == MAX_HIST)
				return err_set(EPROTO, "more than %d history files in one epoch", MAX_HIST);
			p->hist[k].tli = tli;
			p->n_hist++;
		}
		if (off != p->hist[k].len || len > PGWAL_HISTORY_MAX - p->hist[k].len)
			return err_set(EPROTO, "%s: a piece out of order, or over %u bytes", file, PGWAL_HISTORY_MAX);
		if (len) {
			char *n = realloc(p->hist[k].data, p->hist[k].len + len);
			if (!n)
				return -ENOMEM;
			memcpy(n + p->hist[k].len, data, len);
			p->hist[k].data = n;
			p->hist[k].len += len;
		}
		return 0;
	}
	if (!(p->m.flags & PGSRC_BASE) || !base_file_name(file))
		return err_set(EPROTO, "%s/%s: a file '%s' %s", p->group, p->m.name, file,
			       p->m.flags & PGSRC_BASE ? "that a base backup does not hold (base.tar, OID.tar, "
							 "backup_manifest)" : "in an epoch without a base backup");
	if (!p->b.n_files || strcmp(p->b.files[p->b.n_files - 1].name, file)) {
		char dir[RPATH], path[RPATH + 80];
		int rc;
		for (uint32_t i = 0; i < p->b.n_files; i++)
			if (!strcmp(p->b.files[i].name, file))
				return err_set(EPROTO, "%s/%s: base file %s sent twice", p->group, p->m.name, file);
		if (off || p->b.n_files == PGBASE_MAX_FILES)
			return err_set(EPROTO, "%s/%s: base file %s does not start at 0, or too many files", p->group,
				       p->m.name, file);
		if (p->file_fd >= 0) {
			rc = fsync(p->file_fd) < 0 ? -errno : 0;
			close(p->file_fd);
			p->file_fd = -1;
			if (rc < 0)
				return err_set(rc, "cannot fsync a base backup file of %s/%s: %s", p->group, p->m.name,
					       strerror(-rc));
		}
		if ((rc = base_dir(p, dir, sizeof(dir), true)) < 0)
			return rc;
		snprintf(path, sizeof(path), "%s/%s", dir, file);
		if ((p->file_fd = tree_create(p->r, path, 0600)) < 0) {
			rc = p->file_fd;
			p->file_fd = -1;
			return rc;
		}
		snprintf(p->b.files[p->b.n_files].name, sizeof(p->b.files[0].name), "%s", file);
		p->b.files[p->b.n_files++].size = 0;
	}
	if (off != p->b.files[p->b.n_files - 1].size || len > p->m.base_bytes - p->b.bytes)
		return err_set(EPROTO, "%s/%s: base file %s: a piece at %llu out of order, or beyond the %llu bytes "
				       "announced", p->group, p->m.name, file, (unsigned long long)off,
			       (unsigned long long)p->m.base_bytes);
	if (len && fs_write_full(p->file_fd, data, len) < 0)
		return err_set(errno, "cannot write base backup file %s of %s/%s: %s", file, p->group, p->m.name,
			       strerror(errno));
	p->b.files[p->b.n_files - 1].size += len;
	p->b.bytes += len;
	return 0;
}

static int digest_fn(void *ctx, const uint8_t *p, size_t n)
{
	pgdigest_update(ctx, p, n);
	return 0;
}

/* History files received: checked, written (one the copy already commits
 * to must be the same). */
static int write_histories(struct pgrecv *p)
{
	for (uint32_t i = 0; i < p->n_hist; i++) {
		struct pgwal_switch sw[PG_MAX_PATH];
		char name[PGWAL_HISTORY_NAME_LEN], path[RPATH], *old = NULL;
		size_t n, ol = 0;
		int rc;

		pgwal_history_name(name, p->hist[i].tli);
		if (pgwal_history_parse(p->hist[i].data ? p->hist[i].data : "", p->hist[i].len, p->hist[i].tli, sw,
					PG_MAX_PATH, &n) < 0 || n == 0)
			return err_set(EPROTO, "%s of %s/%s does not parse as a timeline history", name, p->group,
				       p->m.name);
		if ((rc = pg_path(path, sizeof(path), p->group, p->m.name, p->m.system_id, "wal/%s", name)) < 0)
			return rc;
		rc = pghistory_load(p->r, p->group, p->m.name, p->m.system_id, p->hist[i].tli, &old, &ol);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		if (rc == 0) {
			bool same = ol == p->hist[i].len && !memcmp(old, p->hist[i].data, ol);
			free(old);
			if (same)
				continue;
			if (p->had && p->have.system_id == p->m.system_id && p->hist[i].tli <= p->have.timeline)
				return err_set(EPROTO, "%s of %s/%s differs from the one the replica's copy follows "
						       "(two promotions chose the same timeline?)", name, p->group,
					       p->m.name);
		}
		if ((rc = tree_write_atomic(p->r, path, p->hist[i].data, p->hist[i].len)) < 0)
			return rc;
	}
	return 0;
}

/* The base backup received: complete, its files read back against the
 * primary's digest, its backup_manifest read. */
static int check_base(struct pgrecv *p)
{
	char dir[RPATH], path[RPATH + 32], a[17], e[17], *json = NULL;
	bool tar = false, manifest = false;
	uint8_t d[DIGEST_BYTES];
	uint64_t start, size;
	uint32_t t0;
	struct pgbase old;
	int fd, rc;

	if (p->file_fd >= 0) {
		rc = fsync(p->file_fd) < 0 ? -errno : 0;
		close(p->file_fd);
		p->file_fd = -1;
		if (rc < 0)
			return err_set(rc, "cannot fsync a base backup file of %s/%s", p->group, p->m.name);
	}
	for (uint32_t i = 0; i < p->b.n_files; i++) {
		tar |= !strcmp(p->b.files[i].name, "base.tar");
		manifest |= !strcmp(p->b.files[i].name, "backup_manifest");
	}
	if (!tar || !manifest || p->b.bytes != p->m.base_bytes)
		return err_set(EPROTO, "the base backup of %s/%s is incomplete: %llu of %llu bytes%s%s", p->group,
			       p->m.name, (unsigned long long)p->b.bytes, (unsigned long long)p->m.base_bytes,
			       tar ? "" : ", no base.tar", manifest ? "" : ", no backup_manifest");
	p->b.system_id = p->m.system_id;
	p->b.id = p->m.base_id;
	/* The files as written, read back (pgread.c computes it the same way). */
	{
		uint8_t *buf = malloc(1u << 20);
		struct pgdigest pd;
		if (!buf)
			return -ENOMEM;
		pgdigest_files_begin(&pd);
		rc = base_dir(p, dir, sizeof(dir), true);
		for (uint32_t i = 0; rc == 0 && i < p->b.n_files; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, p->b.files[i].name);
			if ((fd = tree_open(p->r, path, O_RDONLY, 0)) < 0) {
				rc = fd;
				break;
			}
			pgdigest_file(&pd, p->b.files[i].name, p->b.files[i].size);
			for (uint64_t off = 0; rc == 0 && off < p->b.files[i].size;) {
				size_t n = p->b.files[i].size - off < (1u << 20) ? (size_t)(p->b.files[i].size - off)
										 : (1u << 20);
				if (fs_pread_full(fd, buf, n, off) != (ssize_t)n)
					rc = err_set(EIO, "cannot read back %s/%s", p->r->root, path);
				pgdigest_update(&pd, buf, n);
				off += n;
			}
			close(fd);
		}
		pgdigest_final(&pd, d);
		free(buf);
		if (rc < 0)
			return rc;
	}
	if (sodium_memcmp(d, p->m.base_digest, DIGEST_BYTES) != 0) {
		hash_hex(d, 8, a);
		hash_hex(p->m.base_digest, 8, e);
		return err_set(EBADMSG, "the base backup of %s/%s received in epoch %llu does not match the "
					"primary's digest (replica %s…, primary %s…): refused, nothing of the epoch "
					"was applied", p->group, p->m.name, (unsigned long long)p->epoch, a, e);
	}
	memcpy(p->b.digest, d, DIGEST_BYTES);
	snprintf(path, sizeof(path), "%s/backup_manifest", dir);
	if ((fd = tree_open(p->r, path, O_RDONLY, 0)) < 0)
		return fd;
	if ((rc = fs_fd_size(fd, &size)) == 0 && size > PG_MANIFEST_MAX)
		rc = err_set(EFBIG, "the backup_manifest of %s/%s is over %u MiB", p->group, p->m.name,
			     PG_MANIFEST_MAX >> 20);
	if (rc == 0 && !(json = malloc(size + 1)))
		rc = -ENOMEM;
	if (rc == 0 && fs_pread_full(fd, json, size, 0) != (ssize_t)size)
		rc = err_set(EIO, "cannot read %s/%s", p->r->root, path);
	close(fd);
	if (rc == 0 && pgwal_manifest_range(json, size, &start, &t0, &p->b.end_lsn, &p->b.end_tli) < 0)
		rc = err_set(EPROTO, "the backup_manifest of %s/%s names no WAL range", p->group, p->m.name);
	free(json);
	if (rc < 0)
		return rc;
	if (start != p->m.base_id)
		return err_set(EPROTO, "the backup_manifest of %s/%s starts at %s, the epoch says base %s", p->group,
			       p->m.name, lsn(start, a), lsn(p->m.base_id, e));
	p->b.tli = t0;
	p->b.epoch = p->epoch;
	p->b.cut_time = p->cut_time;
	if (!p->base_final)
		return pgbase_write(p->r, p->group, p->m.name, &p->b, true);
	/* Sent again: it must be the one the store has. */
	if ((rc = pgbase_load(p->r, p->group, p->m.name, p->m.system_id, p->m.base_id, false, &old)) < 0)
		return rc;
	return sodium_memcmp(old.digest, d, DIGEST_BYTES) ? err_set(EPROTO, "base backup %s of %s/%s was sent "
								    "again with other content",
								    lsn(p->m.base_id, a), p->group, p->m.name)
							  : 0;
}

bool pgrecv_light(const struct pgrecv *p)
{
	return p->had && p->have.system_id == p->m.system_id && p->have.base_id == p->m.base_id &&
	       !(p->m.flags & (PGSRC_BASE | PGSRC_TIMELINE)) && !p->n_hist;
}

void pgrecv_jsource(const struct pgrecv *p, struct jsource *j)
{
	memset(j, 0, sizeof(*j));
	snprintf(j->name, sizeof(j->name), "%s", p->m.name);
	j->epoch = p->epoch;
	j->exists = 1;
	memcpy(j->digest, p->m.wal_digest, DIGEST_BYTES);
	j->pg = JPG_SOURCE | (p->m.flags & PGSRC_BASE ? JPG_NEW_BASE : 0);
	j->system_id = p->m.system_id;
	j->base_id = p->m.base_id;
	j->timeline = p->m.timeline;
	j->end_lsn = p->m.end_lsn;
}

/* A new base that came to a copy going on (its WAL from where the copy
 * was): the WAL from the base's segment to there came under the chain of
 * the base before, which retention removes with it.  Checked when it came,
 * it is digested here from the new base's digest and recorded before the
 * base's record (PGCHAIN_PREFIX), so verify still covers it. */
static int chain_prefix(struct pgrecv *p, const char *dir, struct syncset *ss)
{
	const struct msg_pgsource *m = &p->m;
	struct pgchain_rec c = { .epoch = p->epoch - 1, .cut_time = p->cut_time, .tli = m->timeline,
				 .flags = PGCHAIN_PREFIX, .start = pg_seg_start(m->base_id), .end = m->start_lsn };
	uint8_t prev[DIGEST_BYTES];
	int rc;

	if (p->base_final || p->epoch < 2 || c.end <= c.start)
		return 0;
	pgdigest_base(p->key, m->base_id, m->base_digest, prev);
	if ((rc = pg_wal_digest(p->r, p->group, m->name, m->system_id, p->key, prev, c.tli, c.start, c.end,
				c.digest)) < 0)
		return rc;
	return pgchain_append(p->r, dir, &c, ss);
}

int pgrecv_prepare(struct pgrecv *p, struct jsource *ret, struct syncset *ss)
{
	const struct msg_pgsource *m = &p->m;
	uint8_t prev[DIGEST_BYTES], d[DIGEST_BYTES];
	char dir[RPATH], a[17], e[17], x[PGWAL_LSN_LEN], y[PGWAL_LSN_LEN];
	struct pgdigest pd;
	struct pgchain_rec c = { 0 };
	int rc;

	if (p->next != m->end_lsn)
		return err_set(EPROTO, "the WAL of %s/%s in epoch %llu ends at %s, not at %s as announced", p->group,
			       m->name, (unsigned long long)p->epoch, lsn(p->next, x), lsn(m->end_lsn, y));
	/* The WAL directory only if it has a new entry (a segment created). */
	if ((rc = seg_close(p, ss)) < 0 || (rc = pg_path(dir, sizeof(dir), p->group, m->name, m->system_id, "wal")) < 0 ||
	    (rc = (p->n_hist ? tree_fsync_dir(p->r, dir) : dircache_fsync(p->r, dir, ss))) < 0 ||
	    (rc = write_histories(p)) < 0)
		return rc;
	if (m->timeline > 1) {
		struct pgwal_switch sw[PG_MAX_PATH];
		size_t n;
		if ((rc = pghistory_read(p->r, p->group, m->name, m->system_id, m->timeline, sw, PG_MAX_PATH, &n)) < 0)
			return err_recode(rc, EPROTO);
		if ((m->flags & PGSRC_TIMELINE) && !(m->flags & PGSRC_BASE) &&
		    (!n || sw[n - 1].tli != p->have.timeline || sw[n - 1].end != m->start_lsn))
			return err_set(EPROTO, "%s/%s switches from timeline %u to %u at %s, which its history file "
					       "does not say", p->group, m->name, p->have.timeline, m->timeline,
				       lsn(m->start_lsn, x));
	}
	if ((m->flags & PGSRC_BASE) && (rc = check_base(p)) < 0)
		return rc;
	/* The WAL as written, read back, chained on the copy's digest. */
	if (m->flags & PGSRC_BASE)
		pgdigest_base(p->key, m->base_id, m->base_digest, prev);
	else
		memcpy(prev, p->have.digest, DIGEST_BYTES);
	pgdigest_begin(&pd, p->key, prev, m->timeline, m->start_lsn, m->end_lsn);
	rc = pg_read_wal(p->r, p->group, m->name, m->system_id, m->timeline, m->start_lsn, m->end_lsn, digest_fn, &pd);
	pgdigest_final(&pd, d);
	if (rc < 0)
		return rc;
	if (sodium_memcmp(d, m->wal_digest, DIGEST_BYTES) != 0) {
		hash_hex(d, 8, a);
		hash_hex(m->wal_digest, 8, e);
		return err_set(EBADMSG, "the WAL of %s/%s in epoch %llu (%s to %s, timeline %u) does not match the "
					"primary's digest (replica %s…, primary %s…): refused, nothing of the epoch "
					"was applied", p->group, m->name, (unsigned long long)p->epoch,
			       lsn(m->start_lsn, x), lsn(m->end_lsn, y), m->timeline, a, e);
	}
	c.epoch = p->epoch;
	c.cut_time = p->cut_time;
	c.start = m->start_lsn;
	c.end = m->end_lsn;
	c.tli = m->timeline;
	c.flags = m->flags & PGSRC_BASE ? PGCHAIN_BASE : 0;
	memcpy(c.digest, d, DIGEST_BYTES);
	/* The chain is appended to in place: its directory is fsync'd when
	 * the chain is new (a base's), or once per process. */
	if ((rc = base_dir(p, dir, sizeof(dir), (m->flags & PGSRC_BASE) && !p->base_final)) < 0)
		return rc;
	if (m->flags & PGSRC_BASE)
		dircache_changed(p->r, dir);
	if ((m->flags & PGSRC_BASE) && (rc = chain_prefix(p, dir, ss)) < 0)
		return rc;
	if ((rc = pgchain_append(p->r, dir, &c, ss)) < 0 || (rc = dircache_fsync(p->r, dir, ss)) < 0)
		return rc;
	if ((m->flags & PGSRC_BASE) && (rc = tree_fsync_parent(p->r, dir)) < 0)
		return rc;
	pgrecv_jsource(p, ret);
	return 0;
}

void pgrecv_free(struct pgrecv *p)
{
	if (!p)
		return;
	if (p->seg_fd >= 0)
		close(p->seg_fd);
	if (p->file_fd >= 0)
		close(p->file_fd);
	for (uint32_t i = 0; i < p->n_hist; i++)
		free(p->hist[i].data);
	free(p);
}

/* ---- after the commit point ---- */

int pgstore_place_base(struct replica *r, const char *group, const struct jsource *j)
{
	char tmp[RPATH], final[RPATH];
	int rc, t, f;

	if ((rc = pg_path(tmp, sizeof(tmp), group, j->name, j->system_id, "base/%016llx.tmp",
			  (unsigned long long)j->base_id)) < 0 ||
	    (rc = pg_path(final, sizeof(final), group, j->name, j->system_id, "base/%016llx",
			  (unsigned long long)j->base_id)) < 0)
		return rc;
	if ((t = tree_exists(r, tmp)) < 0 || (f = tree_exists(r, final)) < 0)
		return t < 0 ? t : f;
	if (t && f)
		remove_dir(r, tmp); /* sent again: the store had it */
	else if (t && (rc = tree_rename(r, tmp, final)) < 0)
		return rc;
	else if (!t && !f)
		return err_set(EBADMSG, "the base backup %016llx of %s/%s is missing in %s: move the group's "
					"journal away and let the primary send a new one",
			       (unsigned long long)j->base_id, group, j->name, r->root);
	return tree_fsync_parent(r, final);
}

/* Segments of X's last timeline complete within [FROM, X's end): their
 * final names (as pg_receivewal's). */
static void name_complete(struct replica *r, const char *group, const struct state_source *x, uint64_t from)
{
	for (uint64_t s = from / PG_SEG; s < x->end_lsn / PG_SEG; s++) {
		char name[PGWAL_SEG_NAME_LEN], part[RPATH], full[RPATH];
		pgwal_seg_name(name, x->timeline, s, PG_SEG);
		if (pg_path(part, sizeof(part), group, x->name, x->system_id, "wal/%s.partial", name) < 0 ||
		    pg_path(full, sizeof(full), group, x->name, x->system_id, "wal/%s", name) < 0)
			return;
		if (tree_exists(r, part) == 1 && tree_exists(r, full) == 0)
			tree_rename(r, part, full);
	}
}

/* The bases the state S and its rollback points stand on. */
struct pgref {
	char name[NAME_MAX_LEN + 1];
	uint64_t sys, base;
};

static size_t add_ref(struct pgref *v, size_t n, size_t max, const char *name, uint64_t sys, uint64_t base)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name) && v[i].sys == sys && v[i].base == base)
			return n;
	if (n == max)
		return n;
	snprintf(v[n].name, sizeof(v[n].name), "%s", name);
	v[n].sys = sys;
	v[n].base = base;
	return n + 1;
}

static bool referenced(const struct pgref *v, size_t n, const char *name, uint64_t sys, uint64_t base)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name) && v[i].sys == sys && (!base || v[i].base == base))
			return true;
	return false;
}

static uint64_t hex16(const char *s, bool *ok)
{
	char *end;
	uint64_t v = strtoull(s, &end, 16);

	*ok = strlen(s) == 16 && strspn(s, "0123456789abcdef") == 16;
	return v;
}

/* Remove what no retained epoch of source NAME needs: other systems,
 * bases, and the WAL before the oldest base left. */
static void prune_source(struct replica *r, const char *group, const char *name, const struct pgref *v, size_t n)
{
	char dir[RPATH], sub[RPATH + 300];
	struct dirent *e;
	DIR *d, *b;

	if (pg_path(dir, sizeof(dir), group, name, 0, NULL) < 0 || !(d = tree_opendir(r, dir)))
		return;
	while ((e = readdir(d))) {
		uint64_t min = UINT64_MAX;
		bool ok;
		uint64_t sys = hex16(e->d_name, &ok);
		if (!ok)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s/base", dir, e->d_name);
		if ((b = tree_opendir(r, sub))) {
			struct dirent *f;
			while ((f = readdir(b))) {
				uint64_t id = hex16(f->d_name, &ok);
				char one[RPATH + 400];
				if (!ok)
					continue; /* ID.tmp: an epoch in progress, or recovery's */
				if (referenced(v, n, name, sys, id)) {
					min = id < min ? id : min;
					continue;
				}
				snprintf(one, sizeof(one), "%s/%.16s", sub, f->d_name); /* hex16: 16 digits, fits */
				log_info("removing base backup %s of %s/%s: no retained epoch needs it", f->d_name, group,
					 name);
				remove_dir(r, one);
			}
			closedir(b);
		}
		snprintf(sub, sizeof(sub), "%s/%s/wal", dir, e->d_name);
		if (min == UINT64_MAX && !referenced(v, n, name, sys, 0)) {
			/* A system no retained epoch follows (the primary was another cluster). */
			char top[RPATH + 300];
			remove_dir(r, sub);
			snprintf(sub, sizeof(sub), "%s/%s/base", dir, e->d_name);
			tree_rmdir(r, sub);
			snprintf(top, sizeof(top), "%s/%s", dir, e->d_name);
			tree_rmdir(r, top);
			continue;
		}
		if (min != UINT64_MAX && (b = tree_opendir(r, sub))) {
			struct dirent *f;
			while ((f = readdir(b))) {
				char seg[PGWAL_SEG_NAME_LEN];
				uint32_t tli;
				uint64_t segno;
				snprintf(seg, sizeof(seg), "%.24s", f->d_name);
				if ((strlen(f->d_name) == 24 || !strcmp(f->d_name + 24, ".partial")) &&
				    pgwal_seg_parse(seg, PG_SEG, &tli, &segno) == 0 && segno < min / PG_SEG)
					unlinkat(dirfd(b), f->d_name, 0);
			}
			closedir(b);
		}
	}
	closedir(d);
}

static void prune(struct replica *r, const struct rstate *s)
{
	struct pgref *v = calloc(4096, sizeof(*v));
	size_t n = 0;
	uint64_t cur = s->epoch;

	if (!v)
		return;
	for (uint32_t i = 0; i < s->n_sources; i++)
		if (pg_source(&s->sources[i]))
			n = add_ref(v, n, 4096, s->sources[i].name, s->sources[i].system_id, s->sources[i].base_id);
	/* Each undo journal holds where the sources stood before its epoch. */
	while (cur && n < 4096) {
		struct jreader j;
		struct jheader h;
		int rc = jr_open_mode(&j, r, s->group, "undo", cur, &h, false);
		jr_close(&j);
		if (rc < 0)
			break;
		for (uint32_t i = 0; i < h.n_sources; i++)
			if (h.sources[i].pg && h.sources[i].exists)
				n = add_ref(v, n, 4096, h.sources[i].name, h.sources[i].system_id, h.sources[i].base_id);
		cur = h.prev_epoch;
	}
	if (n < 4096)
		for (uint32_t i = 0; i < s->n_sources; i++)
			if (pg_source(&s->sources[i]))
				prune_source(r, s->group, s->sources[i].name, v, n);
	free(v);
}

void pgstore_committed(struct replica *r, const struct rstate *prev, const struct rstate *next, bool do_prune)
{
	struct rstate *p = (struct rstate *)prev;

	for (uint32_t i = 0; i < next->n_sources; i++) {
		const struct state_source *x = &next->sources[i], *o;
		struct pgbase b;
		struct pgpath path;
		if (!pg_source(x))
			continue;
		o = state_find(p, x->name);
		if (o && o->system_id == x->system_id && o->timeline == x->timeline && o->base_id == x->base_id)
			name_complete(r, next->group, x, o->end_lsn);
		else if (pg_copy_open(r, next->group, x, &b, &path) == 0)
			name_complete(r, next->group, x, pg_held_from(&path));
	}
	if (do_prune)
		prune(r, next);
}

void pgstore_recover(struct replica *r, const struct rstate *s)
{
	struct dirent *e;
	DIR *g;

	/* Bases of epochs that never committed, in every source's directory. */
	if ((g = tree_opendir(r, s->group))) {
		while ((e = readdir(g))) {
			size_t l = strlen(e->d_name);
			char dir[RPATH + 300], sub[RPATH + 600];
			struct dirent *f, *t;
			DIR *d, *b;
			if (e->d_name[0] != '.' || l < 5 || strcmp(e->d_name + l - 3, ".pg"))
				continue;
			snprintf(dir, sizeof(dir), "%s/%s", s->group, e->d_name);
			if (!(d = tree_opendir(r, dir)))
				continue;
			while ((f = readdir(d))) {
				bool ok;
				hex16(f->d_name, &ok);
				if (!ok)
					continue;
				snprintf(sub, sizeof(sub), "%s/%s/wal", dir, f->d_name);
				remove_suffixed(r, sub, ".tmp");
				snprintf(sub, sizeof(sub), "%s/%s/base", dir, f->d_name);
				if (!(b = tree_opendir(r, sub)))
					continue;
				while ((t = readdir(b))) {
					char one[RPATH + 900];
					size_t tl = strlen(t->d_name);
					if (tl != 20 || strcmp(t->d_name + 16, ".tmp"))
						continue;
					snprintf(one, sizeof(one), "%s/%s", sub, t->d_name);
					remove_dir(r, one);
				}
				closedir(b);
			}
			closedir(d);
		}
		closedir(g);
	}
	pgstore_committed(r, &(struct rstate){ 0 }, s, false);
}
