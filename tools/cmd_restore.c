/* cmd_restore.c - bascule restore: a source at a retained epoch, from the
 * vault, in parallel ranges, resumable. */
#include "clock.h"
#include "cmd.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "replica.h"
#include "vpg.h"
#include "units.h"
#include "vault_cmd.h"
#include "vault_tool.h"
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* The progress file PATH.part.progress: manifest name, then done ranges. */
static int progress_open(const char *part, const uint8_t man[VAULT_NAME], const char *source, uint8_t *done,
			 uint64_t n_ranges, bool *resumed)
{
	char path[4300];
	char *data = NULL;
	size_t len = 0;
	int fd;

	*resumed = false;
	snprintf(path, sizeof(path), "%s.progress", part);
	if (fs_read_all(path, 1u << 30, &data, &len) == 0 && len >= VAULT_NAME + 64 &&
	    !memcmp(data, man, VAULT_NAME) && !strncmp(data + VAULT_NAME, source, 64)) {
		for (size_t o = VAULT_NAME + 64; o + 8 <= len; o += 8) {
			uint64_t rg = get_be64((uint8_t *)data + o);
			if (rg < n_ranges)
				done[rg] = 1;
		}
		*resumed = true;
		free(data);
		return open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	}
	free(data);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		char head[VAULT_NAME + 64] = { 0 };
		memcpy(head, man, VAULT_NAME);
		memcpy(head + VAULT_NAME, source, strnlen(source, 63));
		if (fs_write_full(fd, head, sizeof(head)) < 0 || fsync(fd) < 0) {
			close(fd);
			return -EIO;
		}
	}
	return fd;
}

/* An object the epoch needs is missing or fails its check: the epoch is
 * damaged in the vault (exit 5); other errors (the link) stay as they are. */
static int damaged(int r, const char *group, const char *source, uint64_t epoch)
{
	if (r != -ENOENT && r != -EBADMSG)
		return r;
	err_recode(r, EBADMSG);
	return err_wrap(EBADMSG, "the epoch is damaged in the vault: %s/%s epoch %" PRIu64 " (`bascule vault "
				 "check` names every bad object; other epochs may still restore)",
			group, source, epoch);
}

/* 1 if SOURCE of GROUP is a PostgreSQL source in some manifest of V. */
static int pg_named(const struct vview *v, const char *group, const char *source)
{
	for (size_t i = 0; i < v->n; i++)
		for (uint32_t s = 0; !strcmp(v->ms[i].group, group) && s < v->ms[i].n_pg; s++)
			if (!strcmp(v->ms[i].pg[s].name, source))
				return 1;
	return 0;
}

/* May epoch M (NULL: none found) of GROUP be restored?  0, or an error that
 * names what is newer and failed. */
static int restore_choice(const struct vview *v, const struct vopts *o, const char *group,
			  const struct vmanifest *m, uint64_t want_epoch, uint64_t at, bool accept_older);

/* A PostgreSQL source: the epoch whose WAL holds every commit up to --at
 * is the first cut at or after it (the newest if none is), or --epoch, or
 * the newest; recovery then stops at --at itself. */
static int restore_pg_source(struct vview *v, struct vstore *vs, const struct vkeys *k, const struct vopts *o,
			     const char *group, const char *sname, uint64_t want_epoch, bool accept_older,
			     const struct restore_pg_args *a)
{
	const struct vmanifest *m = NULL, *newest = NULL;
	const struct vman_pg *p = NULL;
	char t[40];
	int r;

	for (size_t i = 0; i < v->n; i++) {
		const struct vmanifest *x = &v->ms[i];
		if (strcmp(x->group, group))
			continue;
		if (!newest || x->epoch > newest->epoch)
			newest = x;
		if (want_epoch ? x->epoch == want_epoch : a->at && x->cut_time >= a->at && (!m || x->epoch < m->epoch))
			m = x;
	}
	if (!want_epoch && !m) {
		m = newest;
		if (m && a->at)
			fprintf(stderr, "bascule restore: the newest epoch of %s in the vault was cut at %s, before --at: "
					"recovering to the end of its WAL\n", group, vcmd_time(m->cut_time, t, sizeof(t)));
	}
	if ((r = restore_choice(v, o, group, m, want_epoch, m && a->at && m->cut_time >= a->at ? m->cut_time : 0,
				accept_older)) < 0)
		return r;
	for (uint32_t s = 0; s < m->n_pg; s++)
		if (!strcmp(m->pg[s].name, sname))
			p = &m->pg[s];
	if (!p)
		return err_set(ENOENT, "group %s has no PostgreSQL source %s at epoch %" PRIu64, group, sname, m->epoch);
	if ((r = restore_pg(vs, k, m, p, a)) == -EBADMSG)
		r = err_wrap(EBADMSG, "the epoch is damaged in the vault: %s/%s epoch %" PRIu64 "; nothing was restored "
				      "(`bascule vault check` names every bad object)", group, sname, m->epoch);
	return r;
}

static int restore_choice(const struct vview *v, const struct vopts *o, const char *group,
			  const struct vmanifest *m, uint64_t want_epoch, uint64_t at, bool accept_older)
{
	const struct vrecord_entry *rec = v->rec_path ? vrecord_find(&v->rec, group) : NULL;
	size_t failed = 0, blocking = 0;

	for (size_t i = 0; i < v->n_sus; i++) {
		const struct suspect *x = &v->sus[i];
		if (x->recorded ? strcmp(x->group, group) || (at && x->cut_time > at) : false)
			continue;
		failed++;
		/* A failed manifest may be any group's, any epoch: unless this
		 * group's record says the chosen epoch is its newest commit. */
		if (x->recorded || !m || !rec || m->epoch < rec->epoch)
			blocking++;
	}
	if (!m) {
		if (!failed)
			return err_set(ENOENT, "the vault holds no %s of group %s (see `bascule vault ls`)",
				       want_epoch ? "such epoch" : at ? "epoch cut by that time" : "epoch", group);
		fprintf(stderr, "what failed:\n");
		vview_print(v, group, stderr, "  ");
		char which[48] = "any epoch";
		if (want_epoch)
			snprintf(which, sizeof(which), "epoch %" PRIu64, want_epoch);
		return err_set(EBADMSG, "the vault holds no valid manifest of %s of group %s; %zu manifest(s) or "
					"recorded epoch(s) failed their check (above): it may be among them",
			       which, group, failed);
	}
	if (!failed)
		return 0;
	if (want_epoch || accept_older || !blocking) {
		fprintf(stderr, "warning: restoring epoch %" PRIu64 " of %s although the vault fails these "
				"checks:\n", m->epoch, group);
		vview_print(v, group, stderr, "  ");
		return 0;
	}
	fprintf(stderr, "newer epochs may exist but fail their check:\n");
	vview_print(v, group, stderr, "  ");
	if (!v->rec_path && !o->record_given)
		fprintf(stderr, "(no record of commits was read: with -c CONFIG or --record FILE, epochs "
				"whose manifests were deleted are named too)\n");
	return err_set(EBADMSG, "refusing to restore epoch %" PRIu64 " of %s, the newest valid one: the vault "
				"fails its check for what may be newer (above); restore it anyway with "
				"--accept-older, or choose with --epoch N",
		       m->epoch, group);
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS,
					      { "source", required_argument, NULL, O_SOURCE },
					      { "epoch", required_argument, NULL, O_EPOCH },
					      { "at", required_argument, NULL, O_AT },
					      { "to", required_argument, NULL, O_TO },
					      { "jobs", required_argument, NULL, O_JOBS },
					      { "force", no_argument, NULL, O_FORCE },
					      { "record", required_argument, NULL, O_RECORD },
					      { "accept-older", no_argument, NULL, O_ACCEPT },
					      { "pg-user", required_argument, NULL, O_PG_USER },
					      { "pg-bin", required_argument, NULL, O_PG_BIN },
					      { "pg-conf", required_argument, NULL, O_PG_CONF },
					      { 0 } };
	struct promote_opts po = { 0 };
	struct vopts o = { 0 };
	const char *source = NULL, *to = NULL;
	uint64_t want_epoch = 0, at = 0;
	unsigned jobs = 4;
	bool force = false, accept_older = false, have_k, resumed = false;
	struct vstore *vs = NULL;
	struct vview v = { 0 };
	struct vmanifest *m = NULL;
	struct vpacks packs = { 0 };
	struct vmap map = { 0 };
	struct restore rs;
	struct vkeys k;
	uint8_t pk[32];
	char group[NAME_MAX_LEN + 1], *sname, part[4200];
	const struct vman_source *src = NULL;
	struct stat st;
	int c, r;

	memset(&rs, 0, sizeof(rs));
	rs.fd = rs.pfd = -1;
	pthread_mutex_init(&rs.lock, NULL);
	pthread_cond_init(&rs.wake, NULL);
	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		if (vopts_parse(&o, c, optarg))
			continue;
		switch (c) {
		case O_SOURCE: source = optarg; break;
		case O_TO: to = optarg; break;
		case O_FORCE: force = true; break;
		case O_ACCEPT: accept_older = true; break;
		case O_PG_USER: po.pg_user = optarg; break;
		case O_PG_BIN: po.pg_bin = optarg; break;
		case O_PG_CONF: po.pg_conf = optarg; break;
		case O_EPOCH: {
			char *end;
			want_epoch = strtoull(optarg, &end, 10);
			if (*end || !want_epoch) {
				fprintf(stderr, "bascule restore: --epoch wants an epoch number (see `bascule vault ls`)\n");
				return EXIT_USAGE;
			}
			break;
		}
		case O_AT:
			if (units_parse_time(optarg, &at) < 0) {
				fprintf(stderr, "bascule restore: --at wants @UNIXSECONDS or YYYY-MM-DDTHH:MM:SS[Z]\n");
				return EXIT_USAGE;
			}
			break;
		case O_JOBS:
			if (vopts_jobs(optarg, "restore", &jobs) < 0)
				return EXIT_USAGE;
			break;
		case 'h':
			printf("Usage: bascule restore --vault URL --vault-key FILE --source GROUP/SOURCE --to PATH\n"
			       "       [--epoch N | --at TIME] [--accept-older] [--record FILE] [--jobs N]\n"
			       "       [--identity F --known-hosts F] [--force]\n"
			       "       [--pg-user USER] [--pg-conf FILE] [--pg-bin DIR]   (PostgreSQL sources)\n"
			       "       (or -c CONFIG [--target T] for the vault's URL, credentials, key and record)\n\n"
			       "Rebuild one source as it was at an epoch (default: the newest) from the vault,\n"
			       "reading only the objects that epoch needs, with N parallel connections (4).\n"
			       "Every block is authenticated and checked against its keyed id as it is written;\n"
			       "the whole image against the manifest.  A regular file is written as PATH.part\n"
			       "and renamed to PATH when complete; an interrupted restore resumes when run\n"
			       "again with the same arguments.  TIME: @UNIXSECONDS or YYYY-MM-DDTHH:MM:SS[Z].\n\n"
			       "The newest epoch is the newest valid one only if nothing newer may be hidden: a\n"
			       "manifest that fails its check, or an epoch the daemon's record of commits lists\n"
			       "(-c, or --record STATE_DIR/vault/TARGET/committed) that the vault no longer\n"
			       "holds, makes restore refuse (exit 5, naming them) unless --accept-older, or\n"
			       "--epoch N, says to restore an older epoch.\n\n"
			       "A PostgreSQL source restores into a data directory PATH (absent, or empty and\n"
			       "not a mount point; its tablespaces go beside it, in .NAME.tblspc):\n"
			       "with --at, the first epoch cut at or after TIME, the newest base that arrived\n"
			       "before TIME and the WAL from it; every object is checked before anything is\n"
			       "made, then PostgreSQL recovers (recovery_target_time = TIME, a new timeline)\n"
			       "and is stopped.  --pg-user USER (postgres) owns and runs it, --pg-conf FILE is\n"
			       "appended to its postgresql.auto.conf, --pg-bin DIR holds its programs.\n\n"
			       "Exit 0: restored; 5: the epoch is damaged in the vault (others may restore), or\n"
			       "newer epochs fail their check; 4: a key is missing or wrong; 3: bad\n"
			       "configuration; 2: usage; 1: failure (no such epoch, the vault or PATH cannot\n"
			       "be reached or written, a data directory not empty, a TIME before the oldest\n"
			       "base kept, recovery failed).\n");
			return EXIT_OK;
		default: return vopts_usage("restore");
		}
	}
	if (!source || !to || optind != argc || (want_epoch && at)) {
		fprintf(stderr, "bascule restore: give --source GROUP/SOURCE and --to PATH (and at most one of "
				"--epoch, --at); see --help\n");
		return EXIT_USAGE;
	}
	snprintf(group, sizeof(group), "%s", source);
	sname = strchr(group, '/');
	if (!sname || !sname[1]) {
		fprintf(stderr, "bascule restore: --source is GROUP/SOURCE, e.g. vm1/disk0\n");
		return EXIT_USAGE;
	}
	*sname++ = 0;
	log_init("bascule-restore", arg_global.verbose);
	if ((r = vopts_finish(&o, "restore")) < 0 || (r = vopts_keys(&o, true, pk, &k, &have_k)) < 0 ||
	    (r = vopts_store(&o, &vs)) < 0 || (r = vview_load(&v, vs, &o, pk, &k)) < 0)
		goto out;
	if (pg_named(&v, group, sname)) {
		struct restore_pg_args pa = { .to = to, .at = at, .po = &po };
		r = restore_pg_source(&v, vs, &k, &o, group, sname, want_epoch, accept_older, &pa);
		goto out;
	}
	for (size_t i = 0; i < v.n; i++) {
		if (strcmp(v.ms[i].group, group))
			continue;
		if (want_epoch ? v.ms[i].epoch == want_epoch : (!at || v.ms[i].cut_time <= at))
			if (!m || v.ms[i].epoch > m->epoch)
				m = &v.ms[i];
	}
	if ((r = restore_choice(&v, &o, group, m, want_epoch, at, accept_older)) < 0)
		goto out;
	for (uint32_t s = 0; s < m->n_sources; s++)
		if (!strcmp(m->src[s].name, sname))
			src = &m->src[s];
	if (!src) {
		r = err_set(ENOENT, "group %s has no source %s at epoch %" PRIu64, group, sname, m->epoch);
		goto out;
	}
	/* One listing tells the version to read of every object the epoch
	 * needs (over S3: not one per pack), for this store and the workers'. */
	if ((r = vault_prefetch(vs, m->n_objects ? m->obj[0] : NULL, VAULT_NAME, m->n_objects)) < 0)
		goto out;
	if ((r = vault_load_map(vs, &k, src, &packs, &map)) < 0) {
		r = damaged(r, group, sname, m->epoch);
		goto out;
	}
	/* The output: a device in place, a file through PATH.part. */
	rs.device = stat(to, &st) == 0 && S_ISBLK(st.st_mode);
	if (!rs.device && stat(to, &st) == 0 && !force) {
		r = err_set(EEXIST, "%s exists: restore to a new path, or give --force to replace it", to);
		goto out;
	}
	snprintf(part, sizeof(part), "%s%s", to, rs.device ? "" : ".part");
	rs.n_ranges = (map.n + RANGE_BLOCKS - 1) / RANGE_BLOCKS;
	if (!(rs.done = calloc(rs.n_ranges + 1, 1)) || !(rs.written = calloc(rs.n_ranges + 1, sizeof(*rs.written)))) {
		r = -ENOMEM;
		goto out;
	}
	if (!rs.device) {
		char tag[NAME_MAX_LEN * 2 + 2];
		snprintf(tag, sizeof(tag), "%s/%s", group, sname);
		if ((rs.pfd = progress_open(part, m->name, tag, rs.done, rs.n_ranges, &resumed)) < 0) {
			r = err_set(EIO, "cannot write %s.progress", part);
			goto out;
		}
	}
	rs.fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC | (resumed || rs.device ? 0 : O_TRUNC), 0600);
	if (rs.fd < 0) {
		r = err_set(errno, "cannot open %s: %s", part, strerror(errno));
		goto out;
	}
	if (!rs.device && ftruncate(rs.fd, (off_t)map.size) < 0) {
		r = err_set(errno, "cannot size %s: %s", part, strerror(errno));
		goto out;
	}
	if (rs.device) {
		uint64_t dsz;
		if (fs_fd_size(rs.fd, &dsz) == 0 && dsz < map.size) {
			r = err_set(ENOSPC, "device %s holds %" PRIu64 " bytes; %s/%s needs %" PRIu64, to, dsz,
				    group, sname, map.size);
			goto out;
		}
	}
	{
		uint64_t done = 0, t0 = (uint64_t)time(NULL);
		uint64_t a, b;
		pthread_t th[64];
		unsigned started = 0;
		for (uint64_t i = 0; i < rs.n_ranges; i++)
			done += rs.done[i];
		if (resumed)
			printf("resuming: %" PRIu64 " of %" PRIu64 " ranges were already restored\n", done, rs.n_ranges);
		(void)t0;
		rs.o = &o;
		rs.k = &k;
		rs.packs = &packs;
		rs.map = &map;
		rs.vs = vs;
		a = clock_mono_usec();
		for (unsigned j = 0; j < jobs && j < rs.n_ranges; j++) {
			pthread_mutex_lock(&rs.lock);
			rs.running++;
			pthread_mutex_unlock(&rs.lock);
			if (pthread_create(&th[started], NULL, restore_worker, &rs) == 0) {
				started++;
				continue;
			}
			pthread_mutex_lock(&rs.lock);
			rs.running--;
			pthread_mutex_unlock(&rs.lock);
		}
		restore_sync(&rs);
		for (unsigned j = 0; j < started; j++)
			pthread_join(th[j], NULL);
		b = clock_mono_usec();
		if ((r = atomic_load(&rs.err)) < 0) {
			r = err_set(-r, "%s%s", rs.errmsg,
				    rs.device ? "" : "; what was restored is kept: run the same command again to "
						     "resume, or another epoch");
			r = damaged(r, group, sname, m->epoch);
			goto out;
		}
		if (fsync(rs.fd) < 0) {
			r = err_set(errno, "cannot fsync %s: %s", part, strerror(errno));
			goto out;
		}
		if (!rs.device) {
			char pp[4300];
			if (rename(part, to) < 0 || fs_fsync_parent(to) < 0) {
				r = err_set(errno, "cannot rename %s to %s: %s", part, to, strerror(errno));
				goto out;
			}
			snprintf(pp, sizeof(pp), "%s.progress", part);
			unlink(pp);
		}
		{
			double secs = (double)(b - a) / 1e6;
			char t[32];
			printf("restored %s/%s epoch %" PRIu64 " (cut %s, %s) to %s: %" PRIu64 " bytes, %" PRIu64
			       " read from the vault in %.2f s (%.1f MB/s of image), every block verified\n",
			       group, sname, m->epoch, vcmd_time(m->cut_time, t, sizeof(t)),
			       m->flags & 1 ? "consistent" : "fuzzy", to, map.size,
			       (uint64_t)atomic_load(&rs.bytes_read), secs,
			       secs > 0 ? (double)map.size / secs / 1e6 : 0.0);
		}
	}
	r = 0;
out:
	if (rs.fd >= 0)
		close(rs.fd);
	if (rs.pfd >= 0)
		close(rs.pfd);
	free(rs.done);
	free(rs.written);
	vmap_free(&map);
	vpacks_free(&packs);
	vview_free(&v);
	vstore_close(vs);
	config_free(o.cfg);
	sodium_memzero(&k, sizeof(k));
	return r < 0 ? vopts_fail(&o, "restore", r) : EXIT_OK;
}
