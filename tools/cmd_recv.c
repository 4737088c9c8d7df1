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
#include "wire.h"
#include <dirent.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static int send_state(struct wire *w, struct replica *r)
{
	char **groups = NULL;
	size_t n = 0;
	struct wbuf b;
	int rc;

	wbuf_init(&b, WIRE_MAX_BODY);
	if ((rc = replica_groups(r, &groups, &n)) < 0)
		goto out;
	/* Group directories holding replica files but no state: unknown copies. */
	{
		DIR *d = opendir(r->root);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			bool have = false;
			char **ng;
			if (!config_name_ok(e->d_name) || e->d_type != DT_DIR)
				continue;
			for (size_t i = 0; i < n; i++)
				have |= strcmp(groups[i], e->d_name) == 0;
			if (have || !(ng = realloc(groups, (n + 1) * sizeof(*groups))))
				continue;
			groups = ng;
			groups[n++] = strdup(e->d_name);
		}
		if (d)
			closedir(d);
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
	rc = wire_send(w, MSG_STATE, b.p, b.len);
out:
	replica_groups_free(groups, n);
	wbuf_free(&b);
	return rc;
}

/* Say what to do about a full replica filesystem. */
static int advise(int rc, const char *root)
{
	if (rc == -ENOSPC)
		err_wrap(rc, "the replica filesystem under %s is full (an epoch needs room for its redo "
			     "log, the undo data of what it overwrites and its new blocks): free space "
			     "there, lower --keep-epochs, or move the replica", root);
	return rc;
}

/* Answer SIG_REQUEST: the librsync signature of every 1 MiB range. */
static int send_signatures(struct wire *w, struct replica *r, const struct msg_sig *req)
{
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

static int send_ack(struct wire *w, const char *group, uint64_t epoch, int err)
{
	struct msg_ack m = { 0 };
	struct wbuf b;
	int rc;

	snprintf(m.group, sizeof(m.group), "%s", group);
	m.epoch = epoch;
	if (err) {
		m.code = (uint32_t)-err;
		snprintf(m.text, sizeof(m.text), "%s", err_msg(err));
	}
	wbuf_init(&b, 4096);
	rc = proto_put_ack(&b, &m, err != 0);
	if (rc == 0)
		rc = wire_send(w, err ? MSG_NACK : MSG_ACK, b.p, b.len);
	wbuf_free(&b);
	if (rc == 0)
		rc = wire_flush_blocking(w);
	return rc;
}

static void recv_usage(FILE *f)
{
	fprintf(f, "Usage: bascule recv --root DIR [--key FILE] [--keep-epochs N] [--keep-time D]\n\n"
		   "Receive epochs on stdin/stdout and apply them to the replicas under DIR\n"
		   "(DIR/GROUP/SOURCE).  Run by basculed (local: targets) or by sshd with\n"
		   "command=\"bascule recv --root DIR\" (ssh:// targets).  Not for interactive use.\n\n"
		   "  --root DIR         replica directory (created if missing)\n"
		   "  --key FILE         site key, mode 0600 (default /etc/bascule/site.key)\n"
		   "  --keep-epochs N    keep undo data of the last N epochs for rollback (24)\n"
		   "  --keep-time D      also keep undo data younger than D, e.g. 24h (0)\n");
}

int cmd_recv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ "keep-epochs", required_argument, NULL, 'n' },
		{ "keep-time", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *root = NULL, *keyfile = "/etc/bascule/site.key";
	uint64_t keep_epochs = 24, keep_time = 0;
	struct site_key *key = NULL;
	struct replica *r = NULL;
	struct rapply *a = NULL;
	ZSTD_DCtx *dctx = NULL;
	uint8_t *raw = NULL, *basis = NULL;
	struct wire w;
	bool wire_up = false;
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
		case 'h': recv_usage(stdout); return EXIT_OK;
		default: recv_usage(stderr); return EXIT_USAGE;
		}
	}
	if (!root || optind != argc) {
		recv_usage(stderr);
		return EXIT_USAGE;
	}
	log_init("bascule-recv", arg_global.verbose);
	signal(SIGPIPE, SIG_IGN);
	if ((rc = key_load(keyfile, &key)) < 0)
		goto out;
	if ((rc = replica_open_mode(root, true, false, true, key, &r)) < 0)
		goto out;
	r->keep_epochs = keep_epochs;
	r->keep_time = keep_time;
	dctx = ZSTD_createDCtx();
	raw = malloc(PROTO_MAX_EXTENT);
	basis = malloc(PROTO_MAX_EXTENT);
	if (!dctx || !raw || !basis) {
		rc = -ENOMEM;
		goto out;
	}
	wire_init(&w, STDIN_FILENO, STDOUT_FILENO, WIRE_ROLE_RECV, key);
	wire_up = true;

	/* Handshake: the daemon speaks first. */
	while (!wire_ready(&w)) {
		enum wire_type t;
		struct rbuf body;
		rc = wire_next(&w, &t, &body);
		if (rc < 0) {
			wire_send_error(&w, rc, err_msg(rc));
			wire_flush_blocking(&w);
			goto out;
		}
		if ((rc = wire_flush_blocking(&w)) < 0)
			goto out;
		if (wire_ready(&w))
			break;
		rc = wire_fill(&w);
		if (rc == 0) {
			rc = err_set(ECONNRESET, "the daemon closed the connection during the handshake");
			goto out;
		}
		if (rc < 0)
			goto out;
	}
	if ((rc = send_state(&w, r)) < 0 || (rc = wire_flush_blocking(&w)) < 0)
		goto out;

	for (;;) {
		enum wire_type t;
		struct rbuf body;

		rc = wire_recv_blocking(&w, &t, &body);
		if (rc == -ECONNRESET && !a) {
			rc = 0; /* the daemon went away between epochs */
			goto out;
		}
		if (rc < 0)
			goto out;
		switch (t) {
		case MSG_EPOCH_BEGIN: {
			struct msg_epoch_begin m;
			if (a) {
				rc = err_set(EPROTO, "EPOCH_BEGIN inside an epoch");
				goto out;
			}
			if ((rc = proto_get_epoch_begin(&body, &m)) < 0)
				goto out;
			if ((rc = advise(replica_epoch_begin(r, &m, &a), root)) < 0) {
				send_ack(&w, m.group, m.epoch, rc);
				goto out;
			}
			break;
		}
		case MSG_SOURCE: {
			struct msg_source m;
			if (!a) {
				rc = err_set(EPROTO, "SOURCE outside an epoch");
				goto out;
			}
			if ((rc = proto_get_source(&body, &m)) < 0 || (rc = replica_epoch_source(a, &m)) < 0)
				goto out;
			break;
		}
		case MSG_EXTENT: {
			struct msg_extent m;
			const uint8_t *data = NULL;
			if (!a) {
				rc = err_set(EPROTO, "EXTENT outside an epoch");
				goto out;
			}
			if ((rc = proto_get_extent(&body, &m)) < 0)
				goto out;
			if (m.enc == EXT_RAW)
				data = m.data;
			else if (m.enc == EXT_ZSTD) {
				unsigned long long fs = ZSTD_getFrameContentSize(m.data, m.data_len);
				size_t n;
				if (fs != m.raw_len) {
					rc = err_set(EBADMSG, "compressed extent announces %llu bytes, expected %u", fs,
						     m.raw_len);
					goto out;
				}
				n = ZSTD_decompressDCtx(dctx, raw, PROTO_MAX_EXTENT, m.data, m.data_len);
				if (ZSTD_isError(n) || n != m.raw_len) {
					rc = err_set(EBADMSG, "corrupt compressed extent");
					goto out;
				}
				data = raw;
			} else if (m.enc == EXT_DELTA) {
				/* Resync: patch the replica's own range into the new one. */
				const char *sn = replica_epoch_source_name(a, m.src);
				if (!sn) {
					rc = err_set(EPROTO, "delta for an unknown source");
					goto out;
				}
				if ((rc = replica_read_range(r, replica_epoch_group(a), sn, m.offset, basis,
							     m.raw_len, NULL)) < 0 ||
				    (rc = rsync_patch(basis, m.raw_len, m.data, m.data_len, raw, m.raw_len)) < 0)
					goto out;
				data = raw;
			}
			if ((rc = advise(replica_epoch_extent(a, m.src, m.offset, m.raw_len, data), root)) < 0) {
				send_ack(&w, replica_epoch_group(a), replica_epoch_number(a), rc);
				goto out;
			}
			break;
		}
		case MSG_EPOCH_END: {
			struct msg_epoch_end m;
			char group[NAME_MAX_LEN + 1];
			uint64_t epoch;
			if (!a) {
				rc = err_set(EPROTO, "EPOCH_END outside an epoch");
				goto out;
			}
			if ((rc = proto_get_epoch_end(&body, &m)) < 0)
				goto out;
			snprintf(group, sizeof(group), "%s", replica_epoch_group(a));
			epoch = replica_epoch_number(a);
			rc = advise(replica_epoch_commit(a, &m), root);
			replica_epoch_abort(a);
			a = NULL;
			if (rc < 0) {
				log_error("epoch %llu of %s refused: %s", (unsigned long long)epoch, group,
					  err_msg(rc));
				send_ack(&w, group, epoch, rc);
				goto out;
			}
			if ((rc = send_ack(&w, group, epoch, 0)) < 0)
				goto out;
			break;
		}
		case MSG_SIG_REQUEST: {
			struct msg_sig m;
			if (a) {
				rc = err_set(EPROTO, "SIG_REQUEST inside an epoch");
				goto out;
			}
			if ((rc = proto_get_sig(&body, MSG_SIG_REQUEST, &m)) < 0 ||
			    (rc = send_signatures(&w, r, &m)) < 0)
				goto out;
			break;
		}
		case MSG_BYE:
			rc = 0;
			goto out;
		default:
			rc = err_set(EPROTO, "unexpected message type %d from the daemon", t);
			goto out;
		}
	}
out:
	if (rc < 0)
		log_error("%s%s", err_msg(rc),
			  a ? " (nothing of the epoch in progress was applied)" : "");
	replica_epoch_abort(a);
	if (wire_up)
		wire_free(&w);
	ZSTD_freeDCtx(dctx);
	free(raw);
	free(basis);
	replica_close(r);
	key_free(key);
	return err_exit_code(rc);
}
