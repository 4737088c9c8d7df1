/* cmd_recv.c - bascule recv: the receiving end of a replica target.
 *
 * Speaks the protocol on stdin/stdout (run by the daemon through a pipe, or
 * by sshd under a command= restriction), applies each epoch with the journal
 * of replica.c and acknowledges it only once it is verified and durable.
 * Any error ends the session: the daemon reconnects and resumes from the
 * STATE this program sends first. */
#include "cmd.h"
#include "err.h"
#include "key.h"
#include "log.h"
#include "proto.h"
#include "replica.h"
#include "rsync.h"
#include "units.h"
#include "recvloop.h"
#include "recv_ssh.h"
#include "wire.h"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define HOT_MAX 64

struct rsink {
	struct replica *r;
	struct rapply *a;
	const char *root;
	/* --pg-standby hot: the standby's settings, and the groups whose
	 * standby this session made sure of */
	bool hot;
	struct promote_opts po;
	char hot_done[HOT_MAX][NAME_MAX_LEN + 1];
	size_t n_hot_done;
	bool hot_base;               /* the epoch being applied brings a base backup */
};

static int replica_state(void *ctx, struct wbuf *out)
{
	struct replica *r = ((struct rsink *)ctx)->r;
	char **groups = NULL;
	size_t n = 0;
	struct wbuf b = *out;
	int rc;

	if ((rc = replica_groups(r, &groups, &n)) < 0)
		goto out;
	/* Group directories holding replica files but no state: unknown copies. */
	{
		char **dirs = NULL;
		size_t nd = 0;
		if ((rc = replica_group_dirs(r, &dirs, &nd)) < 0)
			goto out;
		for (size_t k = 0; k < nd; k++) {
			bool have = false;
			char **ng;
			for (size_t i = 0; i < n; i++)
				have |= strcmp(groups[i], dirs[k]) == 0;
			if (have || !(ng = realloc(groups, (n + 1) * sizeof(*groups))))
				continue;
			groups = ng;
			groups[n++] = dirs[k];
			dirs[k] = NULL;
		}
		replica_groups_free(dirs, nd);
	}
	if ((rc = wbuf_put_u32(&b, 0)) < 0)
		goto out;
	{
		uint32_t count = 0;
		for (size_t i = 0; i < n; i++) {
			struct rstate s;
			struct state_group g;
			memset(&g, 0, sizeof(g));
			if (replica_load_state(r, groups[i], &s) == 0) {
				memcpy(g.group, s.group, sizeof(g.group));
				g.epoch = s.epoch;
				g.cut_time = s.cut_time;
				g.n_sources = s.n_sources;
				memcpy(g.sources, s.sources, sizeof(g.sources));
				if (s.alarm[0])
					for (uint32_t k = 0; k < g.n_sources; k++)
						g.sources[k].status = SRC_DIVERGED;
			} else
				snprintf(g.group, sizeof(g.group), "%s", groups[i]);
			replica_unknown_sources(r, groups[i], &g);
			if (!g.n_sources)
				continue;
			if ((rc = proto_put_state_group(&b, &g)) < 0)
				goto out;
			count++;
		}
		put_be32(b.p, count);
	}
out:
	*out = b;
	replica_groups_free(groups, n);
	return rc;
}

/* Say what to do about a full replica filesystem. */
static int advise(void *ctx, int rc)
{
	const char *root = ((struct rsink *)ctx)->root;

	if (rc == -ENOSPC)
		err_wrap(rc, "the replica filesystem under %s is full (an epoch needs room for its redo "
			     "log, the undo data of what it overwrites and its new blocks): free space "
			     "there, lower --keep-epochs, or move the replica", root);
	return rc;
}

/* Answer SIG_REQUEST: the librsync signature of every 1 MiB range. */
static int send_signatures(void *ctx, struct wire *w, const struct msg_sig *req)
{
	struct replica *r = ((struct rsink *)ctx)->r;
	uint8_t *buf = malloc(PROTO_SIG_RANGE);
	struct wbuf sig, b;
	struct msg_sig m = *req;
	uint64_t size = 0, off = 0;
	int rc = 0;

	wbuf_init(&sig, WIRE_MAX_BODY / 2);
	wbuf_init(&b, WIRE_MAX_BODY);
	if (!buf)
		return -ENOMEM;
	if ((rc = replica_refuse_promoted(r, req->group)) < 0 ||
	    (rc = replica_read_range(r, req->group, req->source, 0, buf, 1, &size)) < 0)
		goto out;
	for (off = 0; off < size; off += PROTO_SIG_RANGE) {
		uint32_t len = size - off > PROTO_SIG_RANGE ? PROTO_SIG_RANGE : (uint32_t)(size - off);
		if ((rc = replica_read_range(r, req->group, req->source, off, buf, len, NULL)) < 0)
			goto out;
		wbuf_reset(&sig);
		wbuf_reset(&b);
		if ((rc = rsync_signature(buf, len, &sig)) < 0)
			goto out;
		m.offset = off;
		m.len = len;
		m.data = sig.p;
		m.data_len = (uint32_t)sig.len;
		if ((rc = proto_put_sig(&b, MSG_SIG, &m)) < 0 || (rc = wire_send(w, MSG_SIG, b.p, b.len)) < 0 ||
		    (rc = wire_flush_blocking(w)) < 0)
			goto out;
	}
	wbuf_reset(&b);
	m.offset = size;
	if ((rc = proto_put_sig(&b, MSG_SIG_END, &m)) == 0 && (rc = wire_send(w, MSG_SIG_END, b.p, b.len)) == 0)
		rc = wire_flush_blocking(w);
	log_info("sent signatures of %s/%s (%llu bytes) for a resync", req->group, req->source,
		 (unsigned long long)size);
out:
	free(buf);
	wbuf_free(&sig);
	wbuf_free(&b);
	return rc;
}

static int r_begin(void *ctx, const struct msg_epoch_begin *m)
{
	struct rsink *k = ctx;
	return replica_epoch_begin(k->r, m, &k->a);
}

static int r_source(void *ctx, const struct msg_source *m)
{
	return replica_epoch_source(((struct rsink *)ctx)->a, m);
}

static int r_extent(void *ctx, uint32_t src, uint64_t off, uint32_t len, const uint8_t *data)
{
	return replica_epoch_extent(((struct rsink *)ctx)->a, src, off, len, data);
}

static int r_pgsource(void *ctx, const struct msg_pgsource *m)
{
	struct rsink *k = ctx;

	k->hot_base |= (m->flags & PGSRC_BASE) != 0;
	return replica_epoch_pgsource(k->a, m);
}

static int r_wal(void *ctx, uint32_t src, uint64_t lsn, uint32_t len, const uint8_t *data)
{
	return replica_epoch_wal(((struct rsink *)ctx)->a, src, lsn, len, data);
}

static int r_basefile(void *ctx, uint32_t src, const char *file, uint64_t off, uint32_t len, const uint8_t *data)
{
	return replica_epoch_basefile(((struct rsink *)ctx)->a, src, file, off, len, data);
}

static int r_basis(void *ctx, uint32_t src, uint64_t off, uint8_t *buf, uint32_t len)
{
	struct rsink *k = ctx;
	const char *sn = replica_epoch_source_name(k->a, src);

	if (!sn)
		return err_set(EPROTO, "delta for an unknown source");
	return replica_read_range(k->r, replica_epoch_group(k->a), sn, off, buf, len, NULL);
}

static int r_commit(void *ctx, const struct msg_epoch_end *m)
{
	struct rsink *k = ctx;
	int rc = replica_epoch_commit(k->a, m);

	replica_epoch_abort(k->a);
	k->a = NULL;
	if (rc < 0)
		k->hot_base = false;
	return rc;
}

static int r_stage(void *ctx, const struct msg_epoch_end *m)
{
	struct rsink *k = ctx;
	int rc = replica_epoch_stage(k->a, m);

	replica_epoch_abort(k->a);
	k->a = NULL;
	return rc;
}

static int r_flush(void *ctx)
{
	return replica_flush(((struct rsink *)ctx)->r);
}

static void r_abort(void *ctx)
{
	struct rsink *k = ctx;

	replica_epoch_abort(k->a);
	k->a = NULL;
	k->hot_base = false;
}

static void hot_line(const char *line)
{
	log_info("%s", line);
}

/* After the ack of GROUP's epochs: the tidying of what they made
 * unnecessary (replica_tidy), then, with
 * --pg-standby hot: once per group and session, and after each epoch that
 * brought a base backup, after the ack, make sure its PostgreSQL sources
 * have a running hot standby (made from the newest base the first time,
 * rebuilt on it when the copy can no longer feed the old one: pgstandby.c).
 * A failure is a warning: the copy itself is complete, and the next session
 * tries again. */
static void r_committed(void *ctx, const char *group)
{
	struct rsink *k = ctx;
	bool base = k->hot_base, done = false;
	int rc;

	k->hot_base = false;
	replica_tidy(k->r); /* the ack is out: the flushed epochs' tidying */
	if (!k->hot)
		return;
	for (size_t i = 0; i < k->n_hot_done; i++)
		done |= !strcmp(k->hot_done[i], group);
	if (done && !base)
		return;
	if (!done && k->n_hot_done < HOT_MAX)
		snprintf(k->hot_done[k->n_hot_done++], sizeof(k->hot_done[0]), "%s", group);
	rc = replica_pg_standby(k->r, group, &k->po, hot_line);
	if (rc == -ENOENT)
		err_clear();
	else if (rc < 0)
		log_warn("the hot standby of group %s is not running: %s (the replica itself is complete; "
			 "bascule replica standby starts it by hand, docs/postgres.md)", group, err_msg(rc));
}

static void recv_usage(FILE *f)
{
	fprintf(f, "Usage: bascule recv --root DIR [--key FILE] [--keep-epochs N] [--keep-time D]\n\n"
		   "Receive epochs on stdin/stdout and apply them to the replicas under DIR\n"
		   "(DIR/GROUP/SOURCE).  Run by basculed (local: targets) or by sshd with\n"
		   "command=\"bascule recv --root DIR\" (ssh:// targets).  Not for interactive use:\n"
		   "through ssh with any other command (ssh USER@SECONDARY test) it only says\n"
		   "whether it is ready, and touches no replica.  PostgreSQL sources are kept as\n"
		   "base backups and WAL in DIR/GROUP/.SOURCE.pg/ (a hot standby: bascule replica\n"
		   "standby; docs/postgres.md).\n\n"
		   "  --root DIR         replica directory (created if missing)\n"
		   "  --key FILE         site key, mode 0600 (default /etc/bascule/site.key)\n"
		   "  --keep-epochs N    keep undo data of the last N epochs for rollback (24)\n"
		   "  --keep-time D      also keep undo data younger than D, e.g. 24h (0)\n"
		   "  --pg-standby MODE  PostgreSQL sources: cold (keep base + WAL, the default) or\n"
		   "                     hot (also run a standby replaying them, started after the\n"
		   "                     first epoch; under sshd the primary's postgres_standby\n"
		   "                     applies unless command= sets this)\n"
		   "  --pg-user U        the hot standby runs as U (default: DIR's owner)\n"
		   "  --pg-conf F        its settings (default /etc/bascule/postgresql.conf if it\n"
		   "                     exists: port, socket directory)\n\n"
		   "Exit 0: the daemon ended the session; 1: the stream ended early, or a group is\n"
		   "promoted here (live after a failover: demote it to replicate into it); 2: usage;\n"
		   "4: the key is missing, unsafe, not a key, or not the primary's; 5: a tampered\n"
		   "stream or a digest mismatch; 7: the replica filesystem is full; 9: another\n"
		   "process holds the replica for more than 10 s.\n");
}

int cmd_recv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ "keep-epochs", required_argument, NULL, 'n' },
		{ "keep-time", required_argument, NULL, 't' },
		{ "pg-standby", required_argument, NULL, 'S' },
		{ "pg-user", required_argument, NULL, 'U' },
		{ "pg-conf", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *root = NULL, *keyfile = NULL, *standby = NULL;
	char asked[16];
	uint64_t keep_epochs = 24, keep_time = 0;
	struct site_key *key = NULL;
	struct replica *r = NULL;
	struct rsink k = { 0 };
	struct recv_sink sink = { .ctx = &k, .state = replica_state, .begin = r_begin, .source = r_source,
				  .extent = r_extent, .basis = r_basis, .pgsource = r_pgsource, .wal = r_wal,
				  .basefile = r_basefile, .commit = r_commit, .stage = r_stage,
				  .flush = r_flush, .abort = r_abort, .committed = r_committed,
				  .signatures = send_signatures, .advise = advise };
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': root = optarg; break;
		case 'k': keyfile = optarg; break;
		case 'n': {
			char *end;
			keep_epochs = strtoull(optarg, &end, 10);
			if (*end || !*optarg) {
				fprintf(stderr, "bascule recv: --keep-epochs wants a number\n");
				return EXIT_USAGE;
			}
			break;
		}
		case 't':
			if (units_parse_duration(optarg, &keep_time) < 0) {
				fprintf(stderr, "bascule recv: --keep-time wants a duration such as 24h\n");
				return EXIT_USAGE;
			}
			break;
		case 'S': standby = optarg; break;
		case 'U': k.po.pg_user = optarg; break;
		case 'F': k.po.pg_conf = optarg; break;
		case 'h': recv_usage(stdout); return EXIT_OK;
		default: recv_usage(stderr); return EXIT_USAGE;
		}
	}
	if (!root || optind != argc) {
		recv_usage(stderr);
		return EXIT_USAGE;
	}
	/* The secondary's command= decides; else what the primary asked for. */
	if (!standby && recv_ssh_requested("--pg-standby", asked, sizeof(asked)))
		standby = asked;
	if (standby && strcmp(standby, "hot") && strcmp(standby, "cold")) {
		fprintf(stderr, "bascule recv: --pg-standby is hot or cold, not '%s'\n", standby);
		return EXIT_USAGE;
	}
	k.hot = standby && !strcmp(standby, "hot");
	log_init("bascule-recv", arg_global.verbose);
	signal(SIGPIPE, SIG_IGN);
	/* The site key and the session's stream keys live in this process: no
	 * core dump, no ptrace or /proc/PID/mem by processes of the same user. */
	if (prctl(PR_SET_DUMPABLE, 0) < 0)
		log_warn("cannot make the receiver non-dumpable: %s", strerror(errno));
	{
		/* Through ssh by hand: answer, and leave the live receiver alone. */
		const struct recv_opts o = { root, keyfile, keep_epochs, keep_time };
		int code;
		if (recv_ssh_check(&o, &code) > 0)
			return code;
	}
	if ((rc = cmd_key_load(keyfile, &key)) < 0)
		goto out;
	if ((rc = replica_open(root, REPLICA_CREATE | REPLICA_TAKEOVER | REPLICA_RECEIVER, key, &r)) < 0)
		goto out;
	r->key_path = keyfile ? keyfile : CMD_SITE_KEY;
	r->keep_epochs = keep_epochs;
	r->keep_time = keep_time;
	k.r = r;
	k.root = root;
	rc = recv_serve(key, &sink);
out:
	if (rc < 0 && !k.r)
		log_error("%s", err_msg(rc));
	replica_close(r);
	key_free(key);
	return err_exit_code(rc);
}
