/* pgfeed - test helper: a STAND-IN FOR BASCULED on the PostgreSQL side of
 * the protocol (version 2, docs/protocol.md section 7), for the tests of
 * the receiver while the daemon's own PostgreSQL sources are written.  It
 * takes a base backup directory and a WAL directory written by
 *   bascule pgstream --base-backup DIR / --to-dir DIR
 * and sends them, as basculed would, to a real `bascule recv` on pipes:
 * handshake, STATE, then epochs of one PostgreSQL source (PGSOURCE, WAL,
 * BASEFILE, EPOCH_END), each waiting for its ACK (--in-flight N: up to N
 * epochs sent before their ACKs are read, as basculed's max_in_flight).
 *
 *   pgfeed --key FILE --group G --source S --base DIR --wal DIR
 *          [--epoch-bytes N] [--upto X/Y] [--epochs N] [--interval MS] [--in-flight N]
 *          [--clock FILE] [--tamper-epoch N] [--status FILE] -- CMD [ARGS...]
 *
 * From STATE: a source the replica holds (same system, same base, not
 * diverged) resumes at its end LSN; otherwise a base epoch (the WAL from
 * the start of the base's segment).  WAL follows timeline switches by the
 * newest history file in --wal.  It ends at --upto, else at the end of the
 * last complete segment.  --clock lines "LSN USEC" (the primary's WAL
 * position and time, sampled by the test) give each epoch its cut time
 * (the time its end was written); --tamper-epoch flips a WAL byte of that
 * epoch after its digest was computed.  Prints "ACK EPOCH START END TLI" or
 * "NACK EPOCH CODE TEXT"; exits with the receiver's status, 3 after a NACK. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

#define SEG (16u << 20)
#define PIECE (1u << 20)

static const char *arg_base, *arg_wal, *arg_group, *arg_source, *arg_clock, *arg_status;
static uint64_t arg_bytes = 1u << 20, arg_upto, arg_epochs = UINT64_MAX, arg_interval, arg_tamper, arg_in_flight = 1;
static struct wire w;
static struct site_key *key;
static uint8_t wal_key[DIGEST_BYTES], buf[PIECE], zbuf[PIECE + 4096];

static void die(const char *what, int r)
{
	fprintf(stderr, "pgfeed: %s: %s\n", what, err_msg(r));
	exit(1);
}

static int seg_fd(uint32_t tli, uint64_t segno)
{
	char name[PGWAL_SEG_NAME_LEN], path[4096];
	int fd;

	pgwal_seg_name(name, tli, segno, SEG);
	snprintf(path, sizeof(path), "%s/%s", arg_wal, name);
	if ((fd = open(path, O_RDONLY)) < 0) {
		snprintf(path, sizeof(path), "%s/%s.partial", arg_wal, name);
		fd = open(path, O_RDONLY);
	}
	return fd;
}

static void wal_read(uint32_t tli, uint64_t lsn, uint8_t *p, size_t n)
{
	int fd = seg_fd(tli, lsn / SEG);

	if (fd < 0 || fs_pread_full(fd, p, n, lsn % SEG) != (ssize_t)n)
		die("reading the WAL directory", -ENOENT);
	close(fd);
}

/* The history of the newest timeline in --wal (ancestors, oldest first). */
static struct pgwal_switch hist[64];
static size_t n_hist;
static uint32_t newest_tli = 1;

static void load_history(void)
{
	DIR *d = opendir(arg_wal);
	struct dirent *e;
	char path[4096], *text;
	size_t len;
	unsigned t;

	while (d && (e = readdir(d)))
		if (strlen(e->d_name) == 16 && sscanf(e->d_name, "%8X.history", &t) == 1 && t > newest_tli)
			newest_tli = t;
	if (d)
		closedir(d);
	if (newest_tli == 1)
		return;
	snprintf(path, sizeof(path), "%s/%08X.history", arg_wal, newest_tli);
	if (fs_read_all(path, 65536, &text, &len) < 0 ||
	    pgwal_history_parse(text, len, newest_tli, hist, 64, &n_hist) < 0)
		die("reading the newest history file", -EINVAL);
	free(text);
}

/* The timeline of LSN and where that timeline ends (UINT64_MAX: newest). */
static uint32_t tli_of(uint64_t lsn, uint64_t *ret_end)
{
	for (size_t i = 0; i < n_hist; i++)
		if (lsn < hist[i].end) {
			*ret_end = hist[i].end;
			return hist[i].tli;
		}
	*ret_end = UINT64_MAX;
	return newest_tli;
}

/* The end of the WAL to send: --upto, or the last complete segment of the newest timeline. */
static uint64_t wal_end(void)
{
	uint64_t s = 0;
	DIR *d;
	struct dirent *e;

	if (arg_upto)
		return arg_upto;
	if (!(d = opendir(arg_wal)))
		die("opening the WAL directory", -errno);
	while ((e = readdir(d))) {
		uint32_t t;
		uint64_t n;
		if (strlen(e->d_name) == 24 && pgwal_seg_parse(e->d_name, SEG, &t, &n) == 0 && t == newest_tli &&
		    n + 1 > s)
			s = n + 1;
	}
	closedir(d);
	return s * SEG;
}

/* The cut time of an epoch ending at END: when the primary had written it. */
static uint64_t cut_time(uint64_t end)
{
	FILE *f = arg_clock ? fopen(arg_clock, "r") : NULL;
	unsigned long long l, t;
	uint64_t when = clock_now_usec();

	while (f && fscanf(f, "%llu %llu", &l, &t) == 2)
		if (l >= end) {
			when = t;
			break;
		}
	if (f)
		fclose(f);
	return when;
}

static void send_msg(enum wire_type t, struct wbuf *b)
{
	int r = wire_send(&w, t, b->p, b->len);

	if (r < 0 || (r = wire_flush_blocking(&w)) < 0)
		die("sending", r);
	wbuf_reset(b);
}

/* DATA as a WAL or BASEFILE body: every other piece zstd, as the daemon may. */
static const uint8_t *encode(const uint8_t *data, uint32_t len, uint8_t *enc, uint32_t *out_len, bool z)
{
	size_t n;

	if (z && len && !ZSTD_isError(n = ZSTD_compress(zbuf, sizeof(zbuf), data, len, 1)) && n < len) {
		*enc = EXT_ZSTD;
		*out_len = (uint32_t)n;
		return zbuf;
	}
	*enc = EXT_RAW;
	*out_len = len;
	return data;
}

static const char *base_files[64];
static size_t n_base_files;

static void list_base(void)
{
	DIR *d = opendir(arg_base);
	struct dirent *e;
	static char names[64][64];

	base_files[n_base_files++] = "base.tar";
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, "base.tar") && strlen(e->d_name) < 64 && strstr(e->d_name, ".tar") &&
		    n_base_files < 63) {
			snprintf(names[n_base_files], 64, "%.63s", e->d_name); /* shorter: checked above */
			base_files[n_base_files] = names[n_base_files];
			n_base_files++;
		}
	if (d)
		closedir(d);
	base_files[n_base_files++] = "backup_manifest";
}

/* Send each file of the base (or just digest it when B is NULL). */
static void base_pass(uint8_t digest[DIGEST_BYTES], uint64_t *bytes, struct wbuf *b, uint64_t *msgs)
{
	struct pgdigest d;

	pgdigest_files_begin(&d);
	*bytes = 0;
	for (size_t i = 0; i < n_base_files; i++) {
		char path[4096];
		uint64_t size, off = 0;
		int fd;
		snprintf(path, sizeof(path), "%s/%s", arg_base, base_files[i]);
		if ((fd = open(path, O_RDONLY)) < 0 || fs_fd_size(fd, &size) < 0)
			die(path, -errno);
		pgdigest_file(&d, base_files[i], size);
		do {
			uint32_t n = size - off < PIECE ? (uint32_t)(size - off) : PIECE, dl;
			struct msg_basefile m = { .src = 0, .offset = off, .raw_len = n };
			const uint8_t *p;
			if (fs_pread_full(fd, buf, n, off) != (ssize_t)n)
				die(path, -EIO);
			pgdigest_update(&d, buf, n);
			if (b) {
				snprintf(m.file, sizeof(m.file), "%s", base_files[i]);
				p = encode(buf, n, &m.enc, &dl, (off / PIECE) % 2);
				pgproto_put_basefile_hdr(b, &m);
				wbuf_put_bytes(b, p, dl);
				send_msg(MSG_BASEFILE, b);
				(*msgs)++;
			}
			off += n;
			*bytes += n;
		} while (off < size);
		close(fd);
	}
	pgdigest_final(&d, digest);
}

/* Wait for the answer to EPOCH. */
static void wait_ack(uint64_t epoch, const struct msg_pgsource *m)
{
	enum wire_type t;
	struct rbuf body;
	struct msg_ack a;
	char x[PGWAL_LSN_LEN], y[PGWAL_LSN_LEN];
	int r;

	if ((r = wire_recv_blocking(&w, &t, &body)) < 0)
		die("waiting for the ACK", r);
	if ((t != MSG_ACK && t != MSG_NACK) || proto_get_ack(&body, &a, t == MSG_NACK) < 0 || a.epoch != epoch)
		die("the answer to an epoch", -EPROTO);
	if (t == MSG_NACK) {
		printf("NACK %llu %u %s\n", (unsigned long long)epoch, a.code, a.text);
		fflush(stdout);
		exit(3);
	}
	printf("ACK %llu %s %s %u\n", (unsigned long long)epoch, pgwal_lsn_format(m->start_lsn, x),
	       pgwal_lsn_format(m->end_lsn, y), m->timeline);
	fflush(stdout);
	if (arg_status) {
		char line[128];
		snprintf(line, sizeof(line), "epoch %llu end %s tli %u\n", (unsigned long long)epoch, y, m->timeline);
		fs_write_atomic(arg_status, line, strlen(line), 0644);
	}
}

#define FEED_MAX_IN_FLIGHT 64
static struct { uint64_t epoch; struct msg_pgsource m; } sent[FEED_MAX_IN_FLIGHT];
static size_t n_sent;

/* The oldest epoch sent is answered (in order, as the receiver must). */
static void ack_oldest(void)
{
	wait_ack(sent[0].epoch, &sent[0].m);
	memmove(&sent[0], &sent[1], (--n_sent) * sizeof(sent[0]));
}

static void feed(const struct state_group *g)
{
	const struct state_source *have = NULL;
	uint8_t prev[DIGEST_BYTES], seg0[64];
	uint64_t base_id, base_end, end = wal_end(), epoch = g ? g->epoch : 0, pos, sys, done = 0;
	uint32_t t0, t1;
	char path[4096], *man;
	size_t ml;
	struct wbuf b;

	snprintf(path, sizeof(path), "%s/backup_manifest", arg_base);
	if (fs_read_all(path, 512u << 20, &man, &ml) < 0 || pgwal_manifest_range(man, ml, &base_id, &t0, &base_end, &t1) < 0)
		die("reading backup_manifest", -EINVAL);
	free(man);
	wal_read(t0, base_id - base_id % SEG, seg0, sizeof(seg0)); /* the long page header */
	memcpy(&sys, seg0 + 24, 8);                                /* xlp_sysid (host order) */
	for (uint32_t i = 0; g && i < g->n_sources; i++)
		if (!strcmp(g->sources[i].name, arg_source) && g->sources[i].system_id == sys &&
		    g->sources[i].base_id == base_id && g->sources[i].status == SRC_OK)
			have = &g->sources[i];
	pos = have ? have->end_lsn : base_id - base_id % SEG;
	if (have)
		memcpy(prev, have->digest, DIGEST_BYTES);
	wbuf_init(&b, WIRE_MAX_BODY);
	while (pos < end && done < arg_epochs) {
		struct msg_epoch_begin eb = { .epoch = ++epoch, .flags = EPOCH_CONSISTENT, .n_sources = 1 };
		struct msg_pgsource m = { .idx = 0, .system_id = sys, .base_id = base_id };
		struct msg_epoch_end ee = { .epoch = epoch };
		uint64_t tl_end, n_msgs = 0;
		struct pgdigest d;
		uint32_t cur = have ? have->timeline : 0;
		bool first_tamper = arg_tamper == epoch;

		m.timeline = tli_of(pos, &tl_end);
		m.start_lsn = pos;
		m.end_lsn = pos + arg_bytes;
		if (!have)
			m.end_lsn = m.end_lsn > base_end ? m.end_lsn : base_end;
		m.end_lsn = m.end_lsn < end ? m.end_lsn : end;
		m.end_lsn = m.end_lsn < tl_end ? m.end_lsn : tl_end;
		if (!have)
			m.flags = PGSRC_BASE;
		else if (m.timeline != cur)
			m.flags = PGSRC_TIMELINE;
		snprintf(eb.group, sizeof(eb.group), "%s", arg_group);
		snprintf(ee.group, sizeof(ee.group), "%s", arg_group);
		snprintf(m.name, sizeof(m.name), "%s", arg_source);
		eb.cut_time = cut_time(m.end_lsn);
		if (m.flags & PGSRC_BASE) {
			base_pass(m.base_digest, &m.base_bytes, NULL, NULL);
			pgdigest_base(wal_key, base_id, m.base_digest, prev);
		}
		/* The digest first, over the WAL as it is. */
		pgdigest_begin(&d, wal_key, prev, m.timeline, m.start_lsn, m.end_lsn);
		for (uint64_t at = m.start_lsn; at < m.end_lsn;) {
			uint32_t n = m.end_lsn - at < PIECE ? (uint32_t)(m.end_lsn - at) : PIECE;
			n = n < SEG - at % SEG ? n : SEG - at % SEG;
			wal_read(m.timeline, at, buf, n);
			pgdigest_update(&d, buf, n);
			at += n;
		}
		pgdigest_final(&d, m.wal_digest);
		proto_put_epoch_begin(&b, &eb);
		send_msg(MSG_EPOCH_BEGIN, &b);
		pgproto_put_pgsource(&b, &m);
		send_msg(MSG_PGSOURCE, &b);
		if (m.flags & PGSRC_BASE)
			base_pass(m.base_digest, &m.base_bytes, &b, &n_msgs);
		if (m.timeline > 1 && (m.flags & (PGSRC_BASE | PGSRC_TIMELINE))) {
			struct msg_basefile f = { .src = 0, .enc = EXT_RAW };
			char *text;
			size_t tl;
			snprintf(path, sizeof(path), "%s/%08X.history", arg_wal, m.timeline);
			if (fs_read_all(path, 65536, &text, &tl) < 0)
				die(path, -ENOENT);
			snprintf(f.file, sizeof(f.file), "%08X.history", m.timeline);
			f.raw_len = (uint32_t)tl;
			pgproto_put_basefile_hdr(&b, &f);
			wbuf_put_bytes(&b, text, tl);
			send_msg(MSG_BASEFILE, &b);
			free(text);
			n_msgs++;
			ee.raw_bytes += tl;
		}
		ee.raw_bytes += m.base_bytes;
		for (uint64_t at = m.start_lsn; at < m.end_lsn;) {
			uint32_t n = m.end_lsn - at < PIECE ? (uint32_t)(m.end_lsn - at) : PIECE, dl;
			struct msg_wal wm = { .src = 0, .lsn = at };
			const uint8_t *p;
			n = n < SEG - at % SEG ? n : SEG - at % SEG;
			wal_read(m.timeline, at, buf, n);
			if (first_tamper) {
				buf[n / 2] ^= 0x40; /* after the digest: the receiver must refuse it */
				first_tamper = false;
			}
			wm.raw_len = n;
			p = encode(buf, n, &wm.enc, &dl, n_msgs % 2);
			pgproto_put_wal_hdr(&b, &wm);
			wbuf_put_bytes(&b, p, dl);
			send_msg(MSG_WAL, &b);
			n_msgs++;
			ee.raw_bytes += n;
			at += n;
		}
		ee.n_extents = n_msgs;
		proto_put_epoch_end(&b, &ee);
		send_msg(MSG_EPOCH_END, &b);
		sent[n_sent].epoch = epoch;
		sent[n_sent++].m = m;
		if (n_sent >= arg_in_flight || (m.flags & PGSRC_BASE))
			while (n_sent)
				ack_oldest();
		memcpy(prev, m.wal_digest, DIGEST_BYTES);
		pos = m.end_lsn;
		{
			/* What the replica holds now, for the next epoch. */
			static struct state_source now;
			now.system_id = sys;
			now.base_id = base_id;
			now.timeline = m.timeline;
			now.end_lsn = pos;
			have = &now;
		}
		done++;
		if (arg_interval)
			nanosleep(&(struct timespec){ arg_interval / 1000, (long)(arg_interval % 1000) * 1000000 }, NULL);
	}
	while (n_sent)
		ack_oldest();
	wbuf_free(&b);
}

int main(int argc, char **argv)
{
	const char *keyfile = NULL;
	int in[2], out[2], status, r, i;
	enum wire_type t;
	struct rbuf body;
	struct state_group *g = NULL;
	pid_t pid;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(argv[i], "--key")) keyfile = v;
		else if (!strcmp(argv[i], "--group")) arg_group = v;
		else if (!strcmp(argv[i], "--source")) arg_source = v;
		else if (!strcmp(argv[i], "--base")) arg_base = v;
		else if (!strcmp(argv[i], "--wal")) arg_wal = v;
		else if (!strcmp(argv[i], "--clock")) arg_clock = v;
		else if (!strcmp(argv[i], "--status")) arg_status = v;
		else if (!strcmp(argv[i], "--epoch-bytes")) arg_bytes = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--epochs")) arg_epochs = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--interval")) arg_interval = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--in-flight")) arg_in_flight = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--tamper-epoch")) arg_tamper = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--upto") && pgwal_lsn_parse(v, &arg_upto) == 0) ;
		else {
			fprintf(stderr, "pgfeed: bad option %s (see the top of tests/helpers/pgfeed.c)\n", argv[i]);
			return 2;
		}
		i++;
	}
	if (i + 1 >= argc || !keyfile || !arg_group || !arg_source || !arg_base || !arg_wal || !arg_bytes ||
	    !arg_in_flight || arg_in_flight > FEED_MAX_IN_FLIGHT)
		return 2;
	if ((r = key_load(keyfile, &key)) < 0)
		die(keyfile, r);
	pgdigest_wal_key(key, arg_group, arg_source, wal_key);
	load_history();
	list_base();
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		die("pipe", -errno);
	if ((pid = fork()) == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execvp(argv[i + 1], argv + i + 1);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	wire_init(&w, out[0], in[1], WIRE_ROLE_DAEMON, key);
	if ((r = wire_send_hello(&w)) < 0 || (r = wire_flush_blocking(&w)) < 0)
		die("handshake", r);
	do {
		if ((r = wire_recv_blocking(&w, &t, &body)) < 0)
			die("waiting for STATE", r);
	} while (t != MSG_STATE);
	{
		uint32_t n = 0;
		static struct state_group one, mine;
		rbuf_get_u32(&body, &n);
		for (uint32_t k = 0; k < n && proto_get_state_group(&body, &one) == 0; k++)
			if (!strcmp(one.group, arg_group)) {
				mine = one;
				g = &mine;
			}
	}
	if ((r = wire_flush_blocking(&w)) < 0)
		die("handshake", r);
	feed(g);
	if ((r = wire_send(&w, MSG_BYE, NULL, 0)) < 0 || (r = wire_flush_blocking(&w)) < 0)
		die("BYE", r);
	close(in[1]);
	while (wire_recv_blocking(&w, &t, &body) > 0)
		;
	close(out[0]);
	wire_free(&w);
	key_free(key);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
