/* pgsink - test helper: a STAND-IN for `bascule recv`, for the primary's
 * side of PostgreSQL sources while the real receiver (tools/recvloop.c,
 * tools/replica/) is written.  It speaks the wire as a receiver does
 * (lib/wire, lib/proto, lib/pgproto): sends STATE, takes epochs, keeps
 *   ROOT/GROUP/SOURCE/wal/      the WAL received, 16 MiB segments named as
 *                               in pg_wal (NAME.partial until complete)
 *   ROOT/GROUP/SOURCE/base/     the newest base backup's files
 *   ROOT/GROUP/SOURCE.img       a disk source's blocks (no journal)
 *   ROOT/state                  where each copy ends (text)
 *   ROOT/acks.log               "USEC GROUP EPOCH SOURCE END_LSN" per source
 *                               and epoch acknowledged (RPO measurements)
 * checks the chained WAL digest and the base digest of every epoch (NACK
 * with EBADMSG on a mismatch), fsyncs, then acknowledges.  Not a replica:
 * no undo, no journal, a crash inside an epoch may leave its bytes past
 * the state's end (they are written again).
 *   pgsink --root DIR --key FILE [--segsize BYTES] [other recv options, ignored] */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include "clock.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "pgproto.h"
#include "pgwal.h"
#include "proto.h"
#include "wire.h"

#define MAXS 64

struct src {                   /* what ROOT/state says of one source */
	char group[NAME_MAX_LEN + 1], name[NAME_MAX_LEN + 1];
	bool pg;
	uint64_t epoch, size, system_id, base_id, end_lsn;
	uint32_t tli;
	uint8_t digest[DIGEST_BYTES];
};

static const char *root;
static uint32_t segsize = 16u << 20;
static struct site_key *key;
static struct src srcs[256];
static size_t n_srcs;
static struct { char name[NAME_MAX_LEN + 1]; uint64_t epoch, cut_time; } groups[64];
static size_t n_groups;

/* The epoch being received. */
static struct {
	char group[NAME_MAX_LEN + 1];
	uint64_t epoch, cut_time, n_msgs, raw;
	uint32_t n;
	struct src *s[MAXS];
	struct msg_pgsource pgs[MAXS];
	struct pgdigest d[MAXS];
	uint64_t next[MAXS];       /* WAL: the next LSN; files: bytes so far */
	char dir[MAXS][4200];      /* a PG source's wal or wal.new directory */
	int fd[MAXS];
	char file[MAXS][NAME_MAX_LEN + 1];
	uint64_t foff[MAXS];
} ep;

static void die(const char *m)
{
	fprintf(stderr, "pgsink: error: %s\n", m);
	exit(1);
}

static struct src *find(const char *g, const char *n, bool create)
{
	for (size_t i = 0; i < n_srcs; i++)
		if (!strcmp(srcs[i].group, g) && !strcmp(srcs[i].name, n))
			return &srcs[i];
	if (!create || n_srcs == 256)
		return NULL;
	memset(&srcs[n_srcs], 0, sizeof(srcs[0]));
	snprintf(srcs[n_srcs].group, sizeof(srcs[0].group), "%s", g);
	snprintf(srcs[n_srcs].name, sizeof(srcs[0].name), "%s", n);
	return &srcs[n_srcs++];
}

static void hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < DIGEST_BYTES; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void load_state(void)
{
	char path[4200], line[512], g[NAME_MAX_LEN + 1], n[NAME_MAX_LEN + 1], h[80];
	FILE *f;

	snprintf(path, sizeof(path), "%s/state", root);
	if (!(f = fopen(path, "r")))
		return;
	while (fgets(line, sizeof(line), f)) {
		struct src x = { 0 };
		unsigned tli, pg;
		if (sscanf(line, "group %64s %" SCNu64 " %" SCNu64, g, &groups[n_groups].epoch,
			   &groups[n_groups].cut_time) == 3 && n_groups < 64) {
			snprintf(groups[n_groups++].name, NAME_MAX_LEN + 1, "%s", g);
		} else if (sscanf(line, "source %64s %64s %u %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %u %" SCNu64
				  " %64s", g, n, &pg, &x.epoch, &x.size, &x.system_id, &x.base_id, &tli, &x.end_lsn,
				  h) == 10) {
			struct src *s = find(g, n, true);
			*s = x;
			snprintf(s->group, sizeof(s->group), "%s", g);
			snprintf(s->name, sizeof(s->name), "%s", n);
			s->pg = pg;
			s->tli = tli;
			for (int i = 0; i < DIGEST_BYTES; i++)
				sscanf(h + 2 * i, "%2hhx", &s->digest[i]);
		}
	}
	fclose(f);
}

static void save_state(void)
{
	char path[4200], h[2 * DIGEST_BYTES + 1];
	struct wbuf b;
	int r;

	wbuf_init(&b, 1 << 20);
	for (size_t i = 0; i < n_groups; i++) {
		char line[256];
		int n = snprintf(line, sizeof(line), "group %s %" PRIu64 " %" PRIu64 "\n", groups[i].name,
				 groups[i].epoch, groups[i].cut_time);
		wbuf_put_bytes(&b, line, (size_t)n);
	}
	for (size_t i = 0; i < n_srcs; i++) {
		char line[512];
		int n;
		hex(srcs[i].digest, h);
		n = snprintf(line, sizeof(line), "source %s %s %u %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %u %"
			     PRIu64 " %s\n", srcs[i].group, srcs[i].name, srcs[i].pg, srcs[i].epoch, srcs[i].size,
			     srcs[i].system_id, srcs[i].base_id, srcs[i].tli, srcs[i].end_lsn, h);
		wbuf_put_bytes(&b, line, (size_t)n);
	}
	snprintf(path, sizeof(path), "%s/state", root);
	if ((r = fs_write_atomic(path, b.p, b.len, 0600)) < 0)
		die("cannot write the state");
	wbuf_free(&b);
}

static int send_state(struct wire *w)
{
	struct state_group *sg = calloc(1, sizeof(*sg));
	struct wbuf b;
	int r;

	wbuf_init(&b, WIRE_MAX_BODY);
	wbuf_put_u32(&b, (uint32_t)n_groups);
	for (size_t i = 0; i < n_groups; i++) {
		memset(sg, 0, sizeof(*sg));
		memcpy(sg->group, groups[i].name, sizeof(sg->group));
		sg->epoch = groups[i].epoch;
		sg->cut_time = groups[i].cut_time;
		for (size_t k = 0; k < n_srcs && sg->n_sources < PROTO_MAX_SOURCES; k++) {
			struct state_source *x = &sg->sources[sg->n_sources];
			if (strcmp(srcs[k].group, groups[i].name))
				continue;
			snprintf(x->name, sizeof(x->name), "%s", srcs[k].name);
			x->epoch = srcs[k].epoch;
			x->size = srcs[k].pg ? 0 : srcs[k].size;
			memcpy(x->digest, srcs[k].digest, DIGEST_BYTES);
			x->system_id = srcs[k].system_id;
			x->base_id = srcs[k].base_id;
			x->timeline = srcs[k].tli;
			x->end_lsn = srcs[k].end_lsn;
			sg->n_sources++;
		}
		proto_put_state_group(&b, sg);
	}
	r = wire_send(w, MSG_STATE, b.p, b.len);
	wbuf_free(&b);
	free(sg);
	return r;
}

static void sub(char *buf, size_t len, const char *a, const char *b, const char *c)
{
	snprintf(buf, len, "%s/%s/%s%s%s", root, a, b, c[0] ? "/" : "", c);
}

/* Remove DIR's files, then DIR. */
static void rmdir_all(const char *dir)
{
	char cmd[4500];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		die("rm -rf failed");
}

static int write_wal(uint32_t i, uint64_t lsn, const uint8_t *p, uint32_t len)
{
	while (len) {
		char name[PGWAL_SEG_NAME_LEN + 16], path[4400];
		uint64_t segno = lsn / segsize, off = lsn % segsize;
		uint32_t n = len < segsize - off ? len : (uint32_t)(segsize - off);
		int fd;

		pgwal_seg_name(name, ep.pgs[i].timeline, segno, segsize);
		snprintf(path, sizeof(path), "%s/%s", ep.dir[i], name);
		if ((fd = open(path, O_WRONLY)) < 0) {
			strcat(path, ".partial");
			if ((fd = open(path, O_WRONLY | O_CREAT, 0600)) < 0 || ftruncate(fd, segsize) < 0)
				return -errno;
		}
		if (fs_pwrite_full(fd, p, n, off) < 0) {
			close(fd);
			return -errno;
		}
		close(fd);
		if (off + n == segsize) {
			char done[4400];
			snprintf(done, sizeof(done), "%s/%s", ep.dir[i], name);
			rename(path, done);
		}
		p += n;
		lsn += n;
		len -= n;
	}
	return 0;
}

/* fsync the segments of source I that hold [A, Z). */
static void sync_wal(uint32_t i, uint64_t a, uint64_t z)
{
	for (uint64_t seg = a / segsize; a < z && seg <= (z - 1) / segsize; seg++) {
		char name[PGWAL_SEG_NAME_LEN + 16], path[4400];
		int fd;
		pgwal_seg_name(name, ep.pgs[i].timeline, seg, segsize);
		snprintf(path, sizeof(path), "%s/%s", ep.dir[i], name);
		if ((fd = open(path, O_RDONLY)) < 0) {
			strcat(path, ".partial");
			fd = open(path, O_RDONLY);
		}
		if (fd < 0 || fdatasync(fd) < 0)
			die("cannot fsync a WAL segment");
		close(fd);
	}
	fs_fsync_dir(ep.dir[i]);
}

/* The digest of the base files received, read back. */
static void base_digest(uint32_t i, uint8_t out[DIGEST_BYTES], uint64_t *bytes)
{
	char path[4400], cmd[4400];
	struct pgdigest d;
	uint8_t *buf = malloc(1 << 20);
	FILE *l;

	pgdigest_files_begin(&d);
	*bytes = 0;
	/* The files in the order received: their names were logged. */
	sub(path, sizeof(path), ep.group, ep.s[i]->name, "base.new/.order");
	snprintf(cmd, sizeof(cmd), "%s", path);
	if ((l = fopen(cmd, "r"))) {
		char name[128];
		while (fscanf(l, "%127s", name) == 1) {
			struct stat st;
			int fd;
			char f[4500];
			snprintf(f, sizeof(f), "%s/%s/%s/base.new/%s", root, ep.group, ep.s[i]->name, name);
			if ((fd = open(f, O_RDONLY)) < 0 || fstat(fd, &st) < 0)
				die("cannot read a base file back");
			pgdigest_file(&d, name, (uint64_t)st.st_size);
			for (uint64_t off = 0; off < (uint64_t)st.st_size;) {
				ssize_t n = pread(fd, buf, 1 << 20, (off_t)off);
				if (n <= 0)
					die("cannot read a base file back");
				pgdigest_update(&d, buf, (size_t)n);
				off += (uint64_t)n;
			}
			fsync(fd);
			close(fd);
			*bytes += (uint64_t)st.st_size;
		}
		fclose(l);
	}
	pgdigest_final(&d, out);
	free(buf);
}

static int nack(struct wire *w, int code, const char *text)
{
	struct msg_ack m = { .epoch = ep.epoch, .code = (uint32_t)code };
	struct wbuf b;

	snprintf(m.group, sizeof(m.group), "%s", ep.group);
	snprintf(m.text, sizeof(m.text), "%s", text);
	fprintf(stderr, "pgsink: error: epoch %" PRIu64 " refused: %s\n", ep.epoch, text);
	wbuf_init(&b, 4096);
	proto_put_ack(&b, &m, true);
	wire_send(w, MSG_NACK, b.p, b.len);
	wbuf_free(&b);
	wire_flush_blocking(w);
	exit(5);
}

static void commit(struct wire *w, const struct msg_epoch_end *m)
{
	char path[4400], to[4400];
	FILE *log;
	size_t gi;

	if (m->n_extents != ep.n_msgs || m->raw_bytes != ep.raw)
		nack(w, EPROTO, "EPOCH_END counts differ from what was received");
	snprintf(path, sizeof(path), "%s/acks.log", root);
	log = fopen(path, "a");
	for (uint32_t i = 0; i < ep.n; i++) {
		struct src *s = ep.s[i];
		if (ep.fd[i] >= 0) {
			fsync(ep.fd[i]);
			close(ep.fd[i]);
			ep.fd[i] = -1;
		}
		if (!s->pg) {
			s->epoch = ep.epoch;
			continue;
		}
		{
			uint8_t d[DIGEST_BYTES];
			pgdigest_final(&ep.d[i], d);
			if (ep.next[i] != ep.pgs[i].end_lsn)
				nack(w, EPROTO, "the WAL does not reach the epoch's end");
			if (memcmp(d, ep.pgs[i].wal_digest, DIGEST_BYTES))
				nack(w, EBADMSG, "WAL digest mismatch");
			sync_wal(i, ep.pgs[i].start_lsn, ep.pgs[i].end_lsn);
			if (ep.pgs[i].flags & PGSRC_BASE) {
				uint8_t bd[DIGEST_BYTES];
				uint64_t bytes;
				base_digest(i, bd, &bytes);
				if (memcmp(bd, ep.pgs[i].base_digest, DIGEST_BYTES) || bytes != ep.pgs[i].base_bytes)
					nack(w, EBADMSG, "base backup digest mismatch");
				/* The new base and its WAL replace the old ones. */
				sub(path, sizeof(path), ep.group, s->name, "base");
				rmdir_all(path);
				sub(to, sizeof(to), ep.group, s->name, "base.new");
				if (rename(to, path) < 0)
					die("cannot install the base");
				sub(path, sizeof(path), ep.group, s->name, "wal");
				rmdir_all(path);
				if (rename(ep.dir[i], path) < 0)
					die("cannot install the WAL");
			}
			sub(path, sizeof(path), ep.group, s->name, "");
			fs_fsync_dir(path);
			s->epoch = ep.epoch;
			s->system_id = ep.pgs[i].system_id;
			s->base_id = ep.pgs[i].base_id;
			s->tli = ep.pgs[i].timeline;
			s->end_lsn = ep.pgs[i].end_lsn;
			memcpy(s->digest, d, DIGEST_BYTES);
			if (log)
				fprintf(log, "%" PRIu64 " %s %" PRIu64 " %s %" PRIu64 "\n", clock_now_usec(), ep.group,
					ep.epoch, s->name, s->end_lsn);
		}
	}
	if (log)
		fclose(log);
	for (gi = 0; gi < n_groups && strcmp(groups[gi].name, ep.group); gi++)
		;
	if (gi == n_groups && n_groups < 64)
		snprintf(groups[n_groups++].name, NAME_MAX_LEN + 1, "%s", ep.group);
	groups[gi].epoch = ep.epoch;
	groups[gi].cut_time = ep.cut_time;
	save_state();
	{
		struct msg_ack a = { .epoch = ep.epoch };
		struct wbuf b;
		snprintf(a.group, sizeof(a.group), "%s", ep.group);
		wbuf_init(&b, 4096);
		proto_put_ack(&b, &a, false);
		wire_send(w, MSG_ACK, b.p, b.len);
		wbuf_free(&b);
		if (wire_flush_blocking(w) < 0)
			exit(1);
	}
	ep.n = 0;
}

int main(int argc, char **argv)
{
	ZSTD_DCtx *z = ZSTD_createDCtx();
	uint8_t *raw = malloc(PGPROTO_MAX_WAL);
	const char *keyfile = "/etc/bascule/site.key";
	struct wire w;
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--root") && i + 1 < argc)
			root = argv[++i];
		else if (!strcmp(argv[i], "--key") && i + 1 < argc)
			keyfile = argv[++i];
		else if (!strcmp(argv[i], "--segsize") && i + 1 < argc)
			segsize = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (argv[i][0] == '-' && i + 1 < argc)
			i++; /* --keep-epochs, --keep-time, --pg-standby: not a replica */
	}
	if (!root || key_load(keyfile, &key) < 0 || !pgwal_segsize_ok(segsize))
		die("usage: pgsink --root DIR --key FILE [--segsize BYTES]");
	fs_mkdir_p(root, 0700);
	load_state();
	wire_init(&w, STDIN_FILENO, STDOUT_FILENO, WIRE_ROLE_RECV, key);
	while (!wire_ready(&w)) {
		enum wire_type t;
		struct rbuf body;
		if ((r = wire_next(&w, &t, &body)) < 0 || wire_flush_blocking(&w) < 0)
			die("handshake failed");
		if (!wire_ready(&w) && wire_fill(&w) <= 0)
			die("the daemon left during the handshake");
	}
	if (send_state(&w) < 0 || wire_flush_blocking(&w) < 0)
		die("cannot send STATE");
	for (;;) {
		enum wire_type t;
		struct rbuf body;
		uint8_t wal_key[DIGEST_BYTES];

		if ((r = wire_recv_blocking(&w, &t, &body)) < 0) {
			fprintf(stderr, "pgsink: %s\n", err_msg(r));
			r = ep.n ? 1 : 0;
			goto out;
		}
		switch (t) {
		case MSG_EPOCH_BEGIN: {
			struct msg_epoch_begin m;
			if (proto_get_epoch_begin(&body, &m) < 0)
				die("bad EPOCH_BEGIN");
			memset(&ep, 0, sizeof(ep));
			for (int i = 0; i < MAXS; i++)
				ep.fd[i] = -1;
			snprintf(ep.group, sizeof(ep.group), "%s", m.group);
			ep.epoch = m.epoch;
			ep.cut_time = m.cut_time;
			break;
		}
		case MSG_SOURCE: {
			struct msg_source m;
			char path[4400];
			if (proto_get_source(&body, &m) < 0 || m.idx != ep.n)
				die("bad SOURCE");
			ep.s[ep.n] = find(ep.group, m.name, true);
			ep.s[ep.n]->size = m.size;
			memcpy(ep.s[ep.n]->digest, m.digest, DIGEST_BYTES);
			snprintf(path, sizeof(path), "%s/%s", root, ep.group);
			fs_mkdir_p(path, 0700);
			snprintf(path, sizeof(path), "%s/%s/%s.img", root, ep.group, m.name);
			if ((ep.fd[ep.n] = open(path, O_RDWR | O_CREAT, 0600)) < 0 || ftruncate(ep.fd[ep.n], (off_t)m.size) < 0)
				die("cannot open a disk copy");
			ep.n++;
			break;
		}
		case MSG_PGSOURCE: {
			struct msg_pgsource m;
			struct src *s;
			uint8_t prev[DIGEST_BYTES];
			char path[4400];
			if (pgproto_get_pgsource(&body, &m) < 0 || m.idx != ep.n)
				die("bad PGSOURCE");
			s = ep.s[ep.n] = find(ep.group, m.name, true);
			s->pg = true;
			ep.pgs[ep.n] = m;
			pgdigest_wal_key(key, ep.group, m.name, wal_key);
			if (m.flags & PGSRC_BASE) {
				pgdigest_base(wal_key, m.base_id, m.base_digest, prev);
				sub(path, sizeof(path), ep.group, m.name, "base.new");
				rmdir_all(path);
				fs_mkdir_p(path, 0700);
				sub(ep.dir[ep.n], sizeof(ep.dir[0]), ep.group, m.name, "wal.new");
				rmdir_all(ep.dir[ep.n]);
			} else {
				if (s->base_id != m.base_id || s->end_lsn != m.start_lsn || s->tli != m.timeline)
					nack(&w, EPROTO, "PGSOURCE does not start where the copy ends");
				memcpy(prev, s->digest, DIGEST_BYTES);
				sub(ep.dir[ep.n], sizeof(ep.dir[0]), ep.group, m.name, "wal");
			}
			fs_mkdir_p(ep.dir[ep.n], 0700);
			pgdigest_begin(&ep.d[ep.n], wal_key, prev, m.timeline, m.start_lsn, m.end_lsn);
			ep.next[ep.n] = m.start_lsn;
			ep.n++;
			break;
		}
		case MSG_EXTENT: {
			struct msg_extent m;
			const uint8_t *data = raw;
			if (proto_get_extent(&body, &m) < 0 || m.src >= ep.n || ep.s[m.src]->pg)
				die("bad EXTENT");
			if (m.enc == EXT_RAW)
				data = m.data;
			else if (m.enc == EXT_ZSTD) {
				if (ZSTD_decompressDCtx(z, raw, PROTO_MAX_EXTENT, m.data, m.data_len) != m.raw_len)
					die("bad compressed extent");
			} else if (m.enc == EXT_ZERO)
				memset(raw, 0, m.raw_len);
			else
				die("pgsink does no resync");
			if (fs_pwrite_full(ep.fd[m.src], data, m.raw_len, m.offset) < 0)
				die("cannot write a disk copy");
			ep.n_msgs++;
			ep.raw += m.raw_len;
			break;
		}
		case MSG_WAL:
		case MSG_BASEFILE: {
			const uint8_t *data = raw;
			uint32_t src, len;
			uint8_t enc;
			const uint8_t *d;
			uint32_t dlen;
			struct msg_wal mw;
			struct msg_basefile mb;
			if (t == MSG_WAL) {
				if (pgproto_get_wal(&body, &mw) < 0)
					die("bad WAL");
				src = mw.src, len = mw.raw_len, enc = mw.enc, d = mw.data, dlen = mw.data_len;
			} else {
				if (pgproto_get_basefile(&body, &mb) < 0)
					die("bad BASEFILE");
				src = mb.src, len = mb.raw_len, enc = mb.enc, d = mb.data, dlen = mb.data_len;
			}
			if (src >= ep.n || !ep.s[src]->pg)
				die("WAL or BASEFILE for no postgres source");
			if (enc == EXT_RAW)
				data = d;
			else if (ZSTD_decompressDCtx(z, raw, PGPROTO_MAX_WAL, d, dlen) != len)
				die("bad compressed WAL");
			ep.n_msgs++;
			ep.raw += len;
			if (t == MSG_WAL) {
				if (mw.lsn != ep.next[src] || mw.lsn + len > ep.pgs[src].end_lsn)
					nack(&w, EPROTO, "WAL out of order");
				pgdigest_update(&ep.d[src], data, len);
				if (write_wal(src, mw.lsn, data, len) < 0)
					die("cannot write WAL");
				ep.next[src] += len;
			} else {
				char path[4500];
				if (!(ep.pgs[src].flags & PGSRC_BASE))
					nack(&w, EPROTO, "BASEFILE in an epoch without a base");
				if (strcmp(ep.file[src], mb.file)) {
					FILE *o;
					if (mb.offset != 0)
						nack(&w, EPROTO, "a base file does not start at 0");
					snprintf(ep.file[src], sizeof(ep.file[0]), "%s", mb.file);
					snprintf(path, sizeof(path), "%s/%s/%s/base.new/.order", root, ep.group, ep.s[src]->name);
					if ((o = fopen(path, "a"))) {
						fprintf(o, "%s\n", mb.file);
						fclose(o);
					}
					ep.foff[src] = 0;
				}
				if (mb.offset != ep.foff[src])
					nack(&w, EPROTO, "base file pieces not contiguous");
				snprintf(path, sizeof(path), "%s/%s/%s/base.new/%s", root, ep.group, ep.s[src]->name, mb.file);
				{
					int fd = open(path, O_WRONLY | O_CREAT, 0600);
					if (fd < 0 || fs_pwrite_full(fd, data, len, mb.offset) < 0)
						die("cannot write a base file");
					close(fd);
				}
				ep.foff[src] += len;
			}
			break;
		}
		case MSG_EPOCH_END: {
			struct msg_epoch_end m;
			if (proto_get_epoch_end(&body, &m) < 0)
				die("bad EPOCH_END");
			commit(&w, &m);
			break;
		}
		case MSG_BYE:
			r = 0;
			goto out;
		default:
			die("unexpected message");
		}
	}
out:
	wire_free(&w);
	ZSTD_freeDCtx(z);
	free(raw);
	key_free(key);
	return r;
}
