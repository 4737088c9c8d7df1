/* target.c - one replica target: the receiver process, the sealed stream to
 * it, the epochs queued for it, and its acknowledgements.
 *
 * Transport local:DIR runs `bascule recv --root DIR` as a child through two
 * pipes; everything is non-blocking inside the daemon's loop, so a slow
 * target never stalls another.  A target that fails is retried with
 * exponential backoff and jitter; on reconnect it reports where it stands
 * (STATE) and gets exactly the blocks it lacks. */
#include "daemon.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "spool.h"
#include "sshconn.h"
#include "rsync.h"
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define OUT_HIGH (4u << 20)   /* stop producing frames above this much queued */
#define PUMP_BUDGET_USEC 20000
static const uint8_t zeros_block[PROTO_BLOCK];
#define SETUP_TIMEOUT_USEC 20000000 /* from connect to the receiver's STATE */

static void target_pump(struct target *t);

static void tlog(struct target *t, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tlog(struct target *t, int prio, const char *fmt, ...)
{
	char tf[NAME_MAX_LEN + 8], msg[1024];
	const char *f[] = { tf, NULL };
	va_list ap;

	snprintf(tf, sizeof(tf), "TARGET=%s", t->cfg->name);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_fields(prio, f, "target %s: %s", t->cfg->name, msg);
}

int target_init(struct daemon *d, struct target *t, const struct cfg_target *cfg)
{
	memset(t, 0, sizeof(*t));
	t->d = d;
	t->cfg = cfg;
	t->to_fd = t->from_fd = t->sock = t->err_fd = -1;
	t->state = T_BACKOFF;
	if (cfg->kind == TARGET_REPLICA && strncmp(cfg->url, "ssh://", 6) == 0) {
		int r = ssh_url_parse(cfg->url, &t->url);
		if (r < 0)
			return r;
		t->transport = TR_SSH;
	}
	t->groups = calloc(d->n_groups ? d->n_groups : 1, sizeof(*t->groups));
	t->zctx = ZSTD_createCCtx();
	t->chunk = malloc(SPOOL_CHUNK * (sizeof(struct spool_block) + PROTO_BLOCK));
	wbuf_init(&t->ext, PROTO_MAX_EXTENT + 4096 + ZSTD_compressBound(PROTO_MAX_EXTENT));
	if (!t->groups || !t->zctx || !t->chunk)
		return -ENOMEM;
	for (uint32_t i = 0; i < d->n_groups; i++)
		snprintf(t->groups[i].name, sizeof(t->groups[i].name), "%s", d->groups[i]->name);
	return 0;
}

void sigstore_free(struct sigstore *ss)
{
	if (!ss)
		return;
	if (ss->fd >= 0)
		close(ss->fd);
	free(ss->off);
	free(ss->len);
	free(ss->rlen);
	free(ss);
}

static void drop_jobs(struct target *t)
{
	while (t->jobs) {
		struct job *j = t->jobs;
		t->jobs = j->next;
		j->g->jobs--;
		spool_unref(j->spool);
		for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++)
			sigstore_free(j->sig[s]);
		free(j);
	}
	for (uint32_t i = 0; t->groups && i < t->d->n_groups; i++) {
		for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++) {
			sigstore_free(t->groups[i].sig[s]);
			t->groups[i].sig[s] = NULL;
			t->groups[i].want_sig[s] = false;
		}
		t->groups[i].sig_pending = 0;
	}
	t->jobs_tail = NULL;
	t->in_flight = 0;
}

static void set_error(struct target *t, const char *msg)
{
	snprintf(t->last_error, sizeof(t->last_error), "%s", msg);
	t->last_error_time = now_usec();
	t->errors++;
	daemon_event(t->d, "error", "", t->cfg->name, 0, msg);
}

static void remote_line(struct target *t)
{
	t->errline[t->errlen] = 0;
	if (t->errlen) {
		tlog(t, LOG_WARNING, "receiver: %s", t->errline);
		/* Keep the receiver's reason for the status and the disconnect. */
		if (strstr(t->errline, "error")) {
			snprintf(t->remote_reason, sizeof(t->remote_reason), "%s", t->errline);
			snprintf(t->last_error, sizeof(t->last_error), "remote: %s", t->errline);
		}
	}
	t->errlen = 0;
}

void target_remote_output(struct target *t, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || t->errlen == sizeof(t->errline) - 1)
			remote_line(t);
		if (buf[i] != '\n')
			t->errline[t->errlen++] = buf[i];
	}
}

/* Read what the local receiver wrote to stderr; 0 at EOF or when nothing is left. */
static int drain_local_stderr(struct target *t)
{
	char buf[4096];
	ssize_t n;

	while (t->err_fd >= 0 && (n = read(t->err_fd, buf, sizeof(buf))) > 0)
		target_remote_output(t, buf, (size_t)n);
	return 0;
}

static int on_stderr(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct target *t = userdata;

	drain_local_stderr(t);
	if (revents & (EPOLLHUP | EPOLLERR))
		t->err_src = sd_event_source_disable_unref(t->err_src);
	return 0;
}

static const char *exit_meaning(int code)
{
	switch (code) {
	case EXIT_CONFIG: return "bad arguments or configuration";
	case EXIT_KEY: return "key problem (missing, unsafe mode, or not the same site key)";
	case EXIT_INTEGRITY: return "integrity error: the stream was altered or a digest did not match";
	case EXIT_NOSPACE: return "no space left on the replica";
	case EXIT_BUSY: return "the replica is locked by another bascule process";
	case 126: case 127: return "the receiver command could not be run (check remote_command)";
	default: return "failure";
	}
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata);
static void target_disconnect(struct target *t, const char *why);

static int on_setup_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct target *t = userdata;

	t->setup_timer = sd_event_source_disable_unref(t->setup_timer);
	if (t->state != T_READY)
		target_disconnect(t, t->transport == TR_SSH
					     ? "no answer from the secondary within 20 s (link down?)"
					     : "the receiver did not answer within 20 s");
	return 0;
}

static void target_disconnect(struct target *t, const char *why)
{
	int status = 0;
	pid_t pid = t->pid;
	uint64_t delay;

	t->in_src = sd_event_source_disable_unref(t->in_src);
	t->out_src = sd_event_source_disable_unref(t->out_src);
	t->setup_timer = sd_event_source_disable_unref(t->setup_timer);
	if (t->transport == TR_SSH) {
		sshconn_drain_stderr(t);
		remote_line(t); /* a last line without its newline */
		sshconn_close(t);
	}
	if (t->to_fd >= 0)
		close(t->to_fd);
	if (t->from_fd >= 0)
		close(t->from_fd);
	t->to_fd = t->from_fd = -1;
	if (t->wire_up)
		wire_free(&t->w);
	t->wire_up = false;
	if (pid > 0) {
		/* The receiver sees EOF and ends by itself; give it a moment, then force. */
		for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++) {
			if (i == 100)
				kill(pid, SIGTERM);
			drain_local_stderr(t);
			usleep(10000);
		}
		if (waitpid(pid, &status, WNOHANG) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		}
	}
	t->pid = 0;
	drain_local_stderr(t);
	remote_line(t); /* a last line without its newline */
	t->err_src = sd_event_source_disable_unref(t->err_src);
	if (t->err_fd >= 0)
		close(t->err_fd);
	t->err_fd = -1;
	if (why) {
		char msg[sizeof(t->last_error)];
		int n = snprintf(msg, sizeof(msg), "%s", why);
		/* The receiver's own words: why it closed the connection. */
		if (t->remote_reason[0] && !strstr(why, t->remote_reason) && n > 0 && (size_t)n < sizeof(msg))
			n += snprintf(msg + n, sizeof(msg) - (size_t)n, "; the receiver said: %s", t->remote_reason);
		if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) != 0 && n > 0 && (size_t)n < sizeof(msg))
			snprintf(msg + n, sizeof(msg) - (size_t)n, "; the receiver exited with status %d (%s)",
				 WEXITSTATUS(status), exit_meaning(WEXITSTATUS(status)));
		set_error(t, msg);
		tlog(t, LOG_ERR, "%s", msg);
	}
	t->remote_reason[0] = 0;
	drop_jobs(t);
	t->state = T_BACKOFF;
	t->failures++;
	delay = 500000ULL << (t->failures > 6 ? 6 : t->failures - 1);
	if (delay > 30000000ULL)
		delay = 30000000ULL;
	delay = delay * (750 + (uint64_t)(randombytes_uniform(500))) / 1000;
	t->retry = sd_event_source_disable_unref(t->retry);
	sd_event_add_time_relative(t->d->ev, &t->retry, CLOCK_MONOTONIC, delay, 10000, on_retry, t);
}

void target_free(struct target *t)
{
	if (t->pid > 0 || t->to_fd >= 0 || t->sock >= 0) {
		if (t->wire_up && t->state == T_READY) {
			wire_send(&t->w, MSG_BYE, NULL, 0);
			wire_flush_some(&t->w, SIZE_MAX);
		}
		target_disconnect(t, NULL);
	}
	t->retry = sd_event_source_disable_unref(t->retry);
	t->setup_timer = sd_event_source_disable_unref(t->setup_timer);
	drop_jobs(t);
	free(t->groups);
	ZSTD_freeCCtx(t->zctx);
	free(t->chunk);
	wbuf_free(&t->ext);
}

/* Append S to BUF as one shell word in single quotes. */
static void shell_quote(char *buf, size_t len, const char *s)
{
	size_t o = strlen(buf);

	if (o + 2 >= len)
		return;
	buf[o++] = '\'';
	for (; *s && o + 5 < len; s++) {
		if (*s == '\'') {
			memcpy(buf + o, "'\\''", 4);
			o += 4;
		} else
			buf[o++] = *s;
	}
	buf[o++] = '\'';
	buf[o] = 0;
}

/* The vault writer runs here, on the primary: the vault key stays on it. */
static void build_vault_command(struct target *t, char *cmd, size_t len)
{
	char cache[PATH_MAX + 128];

	snprintf(cache, sizeof(cache), "%s/vault/%s", t->d->cfg->state_dir, t->cfg->name);
	cmd[0] = 0;
	shell_quote(cmd, len, t->d->recv_path);
	snprintf(cmd + strlen(cmd), len - strlen(cmd), " vault recv --url ");
	shell_quote(cmd, len, t->cfg->url);
	snprintf(cmd + strlen(cmd), len - strlen(cmd), " --vault-key ");
	shell_quote(cmd, len, t->cfg->vault_key);
	snprintf(cmd + strlen(cmd), len - strlen(cmd), " --cache ");
	shell_quote(cmd, len, cache);
	snprintf(cmd + strlen(cmd), len - strlen(cmd), " --key ");
	shell_quote(cmd, len, t->d->cfg->key);
	if (t->cfg->identity) {
		snprintf(cmd + strlen(cmd), len - strlen(cmd), " --identity ");
		shell_quote(cmd, len, t->cfg->identity);
	}
	if (t->cfg->known_hosts) {
		snprintf(cmd + strlen(cmd), len - strlen(cmd), " --known-hosts ");
		shell_quote(cmd, len, t->cfg->known_hosts);
	}
}

static void build_command(struct target *t, char *cmd, size_t len)
{
	const char *rc = t->cfg->remote_command, *dir = t->cfg->url + strlen("local:");
	char tail[64];

	if (t->cfg->kind == TARGET_VAULT) {
		build_vault_command(t, cmd, len);
		return;
	}
	cmd[0] = 0;
	if (strncmp(rc, "bascule ", 8) == 0) {
		shell_quote(cmd, len, t->d->recv_path);
		snprintf(cmd + strlen(cmd), len - strlen(cmd), " %s", rc + 8);
	} else
		snprintf(cmd, len, "%s", rc);
	snprintf(cmd + strlen(cmd), len - strlen(cmd), " --root ");
	shell_quote(cmd, len, dir);
	snprintf(cmd + strlen(cmd), len - strlen(cmd), " --key ");
	shell_quote(cmd, len, t->d->cfg->key);
	snprintf(tail, sizeof(tail), " --keep-epochs %" PRIu64 " --keep-time %" PRIu64 "ms",
		 t->cfg->keep_epochs, t->cfg->keep_time / 1000);
	snprintf(cmd + strlen(cmd), len - strlen(cmd), "%s", tail);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_sock(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int target_connect_local(struct target *t);

static int target_connect(struct target *t)
{
	int r;

	if (t->transport == TR_LOCAL)
		return target_connect_local(t);
	t->state = T_CONNECTING;
	if ((r = sshconn_start(t, on_sock)) < 0)
		return r;
	tlog(t, LOG_DEBUG, "connecting to %s port %d", t->url.host, t->url.port);
	return 0;
}

static int target_connect_local(struct target *t)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	char cmd[16384];
	pid_t pid;
	int r;

	build_command(t, cmd, sizeof(cmd));
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		goto fail;
	}
	if (pid == 0) {
		/* child: stdin from in[0], stdout to out[1], stderr to err[1]
		 * (the daemon logs each line and keeps the last error) */
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
			_exit(126);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	t->pid = pid;
	t->to_fd = in[1];
	t->from_fd = out[0];
	t->err_fd = err[0];
	t->errlen = 0;
	t->remote_reason[0] = 0;
	fcntl(t->err_fd, F_SETFL, O_NONBLOCK);
	fcntl(t->to_fd, F_SETFL, O_NONBLOCK);
	fcntl(t->from_fd, F_SETFL, O_NONBLOCK);
	fcntl(t->to_fd, F_SETPIPE_SZ, 1 << 20);
	wire_init(&t->w, t->from_fd, t->to_fd, WIRE_ROLE_DAEMON, t->d->key);
	t->wire_up = true;
	t->state = T_HANDSHAKE;
	if ((r = wire_send_hello(&t->w)) < 0)
		goto fail_conn;
	if ((r = sd_event_add_io(t->d->ev, &t->in_src, t->from_fd, EPOLLIN, on_io, t)) < 0 ||
	    (r = sd_event_add_io(t->d->ev, &t->out_src, t->to_fd, EPOLLOUT, on_io, t)) < 0 ||
	    (r = sd_event_add_io(t->d->ev, &t->err_src, t->err_fd, EPOLLIN, on_stderr, t)) < 0)
		goto fail_conn;
	tlog(t, LOG_DEBUG, "started receiver (pid %d)", (int)pid);
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	return r;
fail_conn:
	target_disconnect(t, "cannot set up the connection");
	return r;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct target *t = userdata;
	int r;

	t->retry = sd_event_source_disable_unref(t->retry);
	sd_event_add_time_relative(t->d->ev, &t->setup_timer, CLOCK_MONOTONIC, SETUP_TIMEOUT_USEC,
				   100000, on_setup_timeout, t);
	r = target_connect(t);
	if (r < 0) {
		char msg[1024];
		snprintf(msg, sizeof(msg), "cannot %s: %s",
			 t->transport == TR_SSH ? "connect" : "start the receiver", err_msg(r));
		target_disconnect(t, msg);
	}
	return 0;
}

void target_start(struct target *t)
{
	t->failures = 0;
	on_retry(NULL, 0, t);
}

/* ---- incoming messages ---- */

static struct group *find_group(struct daemon *d, const char *name, uint32_t *idx)
{
	for (uint32_t i = 0; i < d->n_groups; i++)
		if (strcmp(d->groups[i]->name, name) == 0) {
			if (idx)
				*idx = i;
			return d->groups[i];
		}
	return NULL;
}

static int handle_state(struct target *t, struct rbuf *b)
{
	struct daemon *d = t->d;
	struct state_group *sg = malloc(sizeof(*sg));
	uint32_t n;
	int r = 0;

	if (!sg)
		return -ENOMEM;
	for (uint32_t i = 0; i < d->n_groups; i++) {
		memset(t->groups[i].sent, 0, sizeof(t->groups[i].sent));
		t->groups[i].acked = 0;
		t->groups[i].known = true;
	}
	if (rbuf_get_u32(b, &n) < 0 || n > PROTO_MAX_GROUPS) {
		r = err_set(EBADMSG, "malformed STATE");
		goto out;
	}
	for (uint32_t k = 0; k < n; k++) {
		uint32_t gi;
		struct group *g;
		struct tgroup *tg;

		memset(sg, 0, sizeof(*sg));
		if ((r = proto_get_state_group(b, sg)) < 0)
			goto out;
		g = find_group(d, sg->group, &gi);
		if (!g)
			continue; /* a group this daemon does not (or no longer) replicate */
		tg = &t->groups[gi];
		tg->acked = sg->epoch;
		tg->acked_cut_time = sg->cut_time;
		if (sg->epoch > g->last_cut) {
			tlog(t, LOG_WARNING, "replica of group %s is at epoch %" PRIu64 ", ahead of this "
					     "daemon's %" PRIu64 " (state lost?): full resync",
			     g->name, sg->epoch, g->last_cut);
			g->last_cut = sg->epoch;
			continue; /* sent[] stays 0: everything is sent */
		}
		for (uint32_t s = 0; s < g->n_sources; s++) {
			for (uint32_t m = 0; m < sg->n_sources; m++) {
				struct state_source *x = &sg->sources[m];
				if (strcmp(x->name, g->sources[s].cfg->name) != 0)
					continue;
				if (x->status != SRC_OK) {
					tlog(t, LOG_WARNING, "replica %s/%s is %s: resynchronising it with "
							     "librsync deltas",
					     g->name, x->name, x->status == SRC_UNKNOWN ? "of unknown content"
										    : "diverged");
					tg->want_sig[s] = x->size > 0;
				} else if (x->epoch == g->last_cut && g->last_cut &&
					   memcmp(x->digest, g->sources[s].digest, DIGEST_BYTES) != 0) {
					tlog(t, LOG_WARNING, "replica %s/%s at epoch %" PRIu64 " differs from the "
							     "primary's record: full resync",
					     g->name, x->name, x->epoch);
				} else
					tg->sent[s] = x->epoch;
			}
		}
	}
	if (rbuf_expect_end(b) < 0)
		r = err_set(EBADMSG, "malformed STATE");
out:
	free(sg);
	return r;
}

static int request_signatures(struct target *t)
{
	struct wbuf b;
	int r = 0;

	wbuf_init(&b, 4096);
	for (uint32_t i = 0; i < t->d->n_groups && r == 0; i++) {
		struct group *g = t->d->groups[i];
		for (uint32_t s = 0; s < g->n_sources && r == 0; s++) {
			struct msg_sig m = { .len = PROTO_SIG_RANGE };
			if (!t->groups[i].want_sig[s])
				continue;
			snprintf(m.group, sizeof(m.group), "%s", g->name);
			snprintf(m.source, sizeof(m.source), "%s", g->sources[s].cfg->name);
			wbuf_reset(&b);
			if ((r = proto_put_sig(&b, MSG_SIG_REQUEST, &m)) == 0 &&
			    (r = wire_send(&t->w, MSG_SIG_REQUEST, b.p, b.len)) == 0)
				t->groups[i].sig_pending++;
		}
	}
	wbuf_free(&b);
	return r;
}

static int handle_sig(struct target *t, enum wire_type type, struct rbuf *body)
{
	struct msg_sig m;
	struct group *g;
	struct tgroup *tg;
	struct sigstore *ss;
	uint32_t gi, s;
	size_t idx;
	int r;

	if ((r = proto_get_sig(body, type, &m)) < 0)
		return r;
	if (!(g = find_group(t->d, m.group, &gi)))
		return err_set(EPROTO, "signature for an unknown group");
	for (s = 0; s < g->n_sources && strcmp(g->sources[s].cfg->name, m.source); s++)
		;
	tg = &t->groups[gi];
	if (s == g->n_sources || !tg->want_sig[s])
		return err_set(EPROTO, "signature that was not asked for");
	if (!tg->sig[s]) {
		char dir[4200];
		tg->sig[s] = ss = calloc(1, sizeof(*ss));
		if (!ss)
			return -ENOMEM;
		snprintf(dir, sizeof(dir), "%s/groups/%s", t->d->cfg->state_dir, g->name);
		ss->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (ss->fd < 0)
			return err_set(errno, "cannot store signatures in %s: %s", dir, strerror(errno));
	}
	ss = tg->sig[s];
	if (type == MSG_SIG_END) {
		ss->complete = true;
		tg->want_sig[s] = false;
		if (tg->sig_pending && --tg->sig_pending == 0)
			group_request_cut(g);
		tlog(t, LOG_INFO, "signatures of %s/%s received (%" PRIu64 " bytes for %" PRIu64 " bytes of replica)",
		     g->name, m.source, ss->used, m.offset);
		return 0;
	}
	idx = (size_t)(m.offset / PROTO_SIG_RANGE);
	if (idx >= ss->n) {
		size_t n = idx + 1 > ss->n * 2 ? idx + 1 : ss->n * 2;
		uint64_t *o = realloc(ss->off, n * sizeof(*o));
		uint32_t *l, *rl;
		if (o)
			ss->off = o;
		l = o ? realloc(ss->len, n * sizeof(*l)) : NULL;
		if (l)
			ss->len = l;
		rl = l ? realloc(ss->rlen, n * sizeof(*rl)) : NULL;
		if (!rl)
			return -ENOMEM;
		ss->rlen = rl;
		memset(ss->len + ss->n, 0, (n - ss->n) * sizeof(*l));
		ss->n = n;
	}
	if ((r = fs_pwrite_full(ss->fd, m.data, m.data_len, ss->used)) < 0)
		return err_set(r, "cannot store signatures: %s", strerror(-r));
	ss->off[idx] = ss->used;
	ss->len[idx] = m.data_len;
	ss->rlen[idx] = m.len;
	ss->used += m.data_len;
	return 0;
}

static int handle_ack(struct target *t, struct rbuf *b, bool nack)
{
	struct msg_ack m;
	struct job *j, *prev = NULL;
	int r;

	if ((r = proto_get_ack(b, &m, nack)) < 0)
		return r;
	if (nack)
		return err_set(m.code == ENOSPC ? ENOSPC : EPROTO,
			       "the replica refused epoch %" PRIu64 " of %s: %s", m.epoch, m.group, m.text);
	for (j = t->jobs; j; prev = j, j = j->next)
		if (j->stage == 3 && j->epoch == m.epoch && strcmp(j->g->name, m.group) == 0)
			break;
	if (!j)
		return err_set(EPROTO, "acknowledgement of epoch %" PRIu64 " of %s, which was not sent",
			       m.epoch, m.group);
	{
		/* An epoch of a group since rebuilt by a reload counts for its successor. */
		uint32_t gi = UINT32_MAX;
		if (!j->g->retired)
			gi = j->g->idx;
		else
			find_group(t->d, j->g->name, &gi);
		if (gi != UINT32_MAX && j->epoch > t->groups[gi].acked) {
			t->groups[gi].acked = j->epoch;
			t->groups[gi].acked_cut_time = j->cut_time;
		}
	}
	j->g->jobs--;
	if (prev)
		prev->next = j->next;
	else
		t->jobs = j->next;
	if (t->jobs_tail == j)
		t->jobs_tail = prev;
	t->in_flight--;
	t->failures = 0;
	daemon_event(t->d, "ack", j->g->name, t->cfg->name, j->epoch, "");
	if (t->last_error[0])
		tlog(t, LOG_INFO, "epoch %" PRIu64 " of %s acknowledged; target healthy again",
		     j->epoch, j->g->name);
	else
		tlog(t, LOG_DEBUG, "epoch %" PRIu64 " of %s acknowledged", j->epoch, j->g->name);
	t->last_error[0] = 0;
	spool_unref(j->spool);
	for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++)
		sigstore_free(j->sig[s]);
	free(j);
	return 0;
}

static void target_service(struct target *t, bool readable);

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct target *t = userdata;

	target_service(t, fd == t->from_fd);
	return 0;
}

static int on_sock(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct target *t = userdata;
	int r;

	if (t->ssh_stage < 5) {
		r = sshconn_step(t);
		if (r < 0) {
			char msg[1024];
			snprintf(msg, sizeof(msg), "%s", err_msg(r));
			target_disconnect(t, msg);
			return 0;
		}
		if (r == 0) {
			sshconn_update_events(t, false);
			return 0;
		}
		wire_init(&t->w, -1, -1, WIRE_ROLE_DAEMON, t->d->key);
		sshconn_wire_io(t, &t->w.io);
		t->wire_up = true;
		t->state = T_HANDSHAKE;
		if ((r = wire_send_hello(&t->w)) < 0) {
			target_disconnect(t, "cannot start the protocol");
			return 0;
		}
		tlog(t, LOG_DEBUG, "SSH channel to %s open", t->url.host);
	}
	sshconn_drain_stderr(t);
	target_service(t, true);
	if (t->sock_src)
		sshconn_update_events(t, t->wire_up && wire_pending_out(&t->w));
	return 0;
}

static void target_service(struct target *t, bool readable)
{
	char msg[1024];
	int r;

	if (readable) {
		for (;;) {
			enum wire_type type;
			struct rbuf body;

			r = wire_fill(&t->w);
			if (r == -EAGAIN)
				break;
			if (r < 0) {
				snprintf(msg, sizeof(msg), "reading from the receiver failed: %s", strerror(-r));
				target_disconnect(t, msg);
				return;
			}
			while ((r = wire_next(&t->w, &type, &body)) == 1) {
				if (type == MSG_STATE && t->state == T_HANDSHAKE) {
					if ((r = handle_state(t, &body)) < 0)
						break;
					t->state = T_READY;
					t->setup_timer = sd_event_source_disable_unref(t->setup_timer);
					tlog(t, LOG_INFO, "connected");
					if ((r = request_signatures(t)) < 0)
						break;
					for (uint32_t i = 0; i < t->d->n_groups; i++)
						group_request_cut(t->d->groups[i]);
				} else if ((type == MSG_SIG || type == MSG_SIG_END) && t->state == T_READY) {
					if ((r = handle_sig(t, type, &body)) < 0)
						break;
				} else if ((type == MSG_ACK || type == MSG_NACK) && t->state == T_READY) {
					if ((r = handle_ack(t, &body, type == MSG_NACK)) < 0)
						break;
				} else if (type == MSG_BYE) {
					r = err_set(ECONNRESET, "the receiver ended the session");
					break;
				} else {
					r = err_set(EPROTO, "unexpected message %d from the receiver", type);
					break;
				}
			}
			if (r < 0) {
				target_disconnect(t, err_msg(r));
				return;
			}
			if (t->w.eof) {
				target_disconnect(t, "the receiver closed the connection");
				return;
			}
		}
	}
	target_pump(t);
}

/* ---- sending ---- */

/* A vault target takes at most one epoch of a group per interval. */
static bool due(const struct target *t, const struct tgroup *tg)
{
	return !t->cfg->interval || !tg->last_ship || mono_usec() - tg->last_ship >= t->cfg->interval;
}

void targets_tick(struct daemon *d)
{
	for (uint32_t i = 0; i < d->n_targets; i++) {
		struct target *t = d->targets[i];
		if (t->state != T_READY || !t->cfg->interval)
			continue;
		for (uint32_t k = 0; k < d->n_groups; k++) {
			struct group *g = d->groups[k];
			struct tgroup *tg = &t->groups[k];
			bool queued = false, behind = false;
			if (!due(t, tg) || g->cutting || g->paused)
				continue;
			for (const struct job *j = t->jobs; j && !queued; j = j->next)
				queued = j->g == g;
			for (uint32_t s = 0; s < g->n_sources; s++)
				behind |= tg->sent[s] < g->last_cut;
			if (!queued && behind)
				group_request_cut(g);
		}
	}
}

void targets_sync(struct daemon *d, struct group *g)
{
	for (uint32_t i = 0; i < d->n_targets; i++)
		if (d->targets[i]->cfg->interval)
			d->targets[i]->groups[g->idx].last_ship = 0;
}

uint64_t target_lag_usec(const struct target *t, uint32_t k, uint64_t now)
{
	const struct tgroup *tg = &t->groups[k];
	const struct group *g = t->d->groups[k];
	uint64_t since = tg->acked_cut_time;

	if (!since)
		return UINT64_MAX;
	/* Scans that found nothing new since the epoch the target holds
	 * prove it current up to their start: an idle disk does not age. */
	if (tg->acked == g->last_cut && g->verified_time > since)
		since = g->verified_time;
	else if (tg->acked == g->prev_cut && g->prev_cut && g->prev_verified_time > since)
		since = g->prev_verified_time;
	return now > since ? now - since : 0;
}

void targets_floor(struct daemon *d, struct group *g, uint64_t *floor)
{
	uint32_t gi = g->idx;

	for (uint32_t s = 0; s < PROTO_MAX_SOURCES; s++)
		floor[s] = UINT64_MAX;
	for (uint32_t i = 0; i < d->n_targets; i++) {
		struct target *t = d->targets[i];
		/* A target waiting for signatures gets no epoch from this cut:
		 * spooling the whole disk for it each interval would be waste. */
		if (t->state != T_READY || t->groups[gi].sig_pending || !due(t, &t->groups[gi]))
			continue;
		for (uint32_t s = 0; s < g->n_sources; s++)
			if (t->groups[gi].sent[s] < floor[s])
				floor[s] = t->groups[gi].sent[s];
	}
}

void target_enqueue(struct target *t, struct group *g)
{
	uint32_t gi = g->idx;
	struct tgroup *tg = &t->groups[gi];
	struct job *j;

	if (t->state != T_READY)
		return;
	if (tg->sig_pending)
		return; /* signatures first: their arrival requests the resync cut */
	if (!due(t, tg))
		return; /* a vault between two shipments: the tick asks for its next cut */
	/* The spool only holds blocks newer than its floor: a target that came
	 * up during the scan lacks older ones and waits for the next cut. */
	for (uint32_t s = 0; s < g->n_sources; s++)
		if (tg->sent[s] < g->spool_floor[s]) {
			g->want_cut = true;
			return;
		}
	j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->g = g;
	g->jobs++;
	j->epoch = g->last_cut;
	j->cut_time = g->cut_time;
	j->flags = g->consistent ? EPOCH_CONSISTENT : 0;
	j->spool = spool_ref(g->spool);
	for (uint32_t s = 0; s < g->n_sources; s++) {
		j->base[s] = tg->sent[s];
		j->size[s] = g->sources[s].size;
		memcpy(j->digest[s], g->sources[s].digest, DIGEST_BYTES);
		if (tg->sig[s] && tg->sig[s]->complete && j->base[s] == 0) {
			j->sig[s] = tg->sig[s];
			tg->sig[s] = NULL;
		}
		tg->sent[s] = j->epoch;
	}
	tg->last_ship = mono_usec();
	if (t->jobs_tail)
		t->jobs_tail->next = j;
	else
		t->jobs = j;
	t->jobs_tail = j;
	target_pump(t);
}

static int send_msg(struct target *t, enum wire_type type, struct wbuf *b)
{
	return wire_send(&t->w, type, b->p, b->len);
}

static int emit_extent(struct target *t, struct job *j, uint32_t src, uint64_t off, uint32_t len,
		       const uint8_t *data)
{
	struct msg_extent m = { .src = src, .offset = off, .raw_len = len };
	size_t bound = ZSTD_compressBound(len), hdr;
	int r;

	wbuf_reset(&t->ext);
	m.enc = data ? EXT_ZSTD : EXT_ZERO;
	if ((r = proto_put_extent_hdr(&t->ext, &m)) < 0)
		return r;
	hdr = t->ext.len;
	if (data) {
		size_t n;
		if ((r = wbuf_reserve(&t->ext, bound)) < 0)
			return r;
		n = ZSTD_compressCCtx(t->zctx, t->ext.p + hdr, bound, data, len, 1);
		if (ZSTD_isError(n) || n >= len) {
			t->ext.p[hdr - 1] = EXT_RAW;
			memcpy(t->ext.p + hdr, data, len);
			n = len;
		}
		t->ext.len = hdr + n;
	}
	j->n_extents++;
	j->raw_bytes += len;
	t->raw_sent += data ? len : 0;
	return send_msg(t, MSG_EXTENT, &t->ext);
}

/* Resync: the record covers a whole chunk (base 0 takes every block).
 * Rebuild it and send, per 1 MiB range the replica has a signature for, a
 * librsync delta; where the delta is no smaller, or there is no signature,
 * the plain extents. */
static int emit_record_delta(struct target *t, struct job *j, size_t i, const struct spool_block *blocks,
			     const uint8_t *data, bool *ret_done)
{
	const struct spool_entry *e = &j->spool->e[i];
	struct sigstore *ss = j->sig[e->src];
	uint64_t size = j->size[e->src], cstart = e->chunk * SPOOL_CHUNK * (uint64_t)PROTO_BLOCK;
	uint8_t *chunk, *sig = NULL;
	struct wbuf delta;
	uint32_t di = 0;
	int r = 0;

	*ret_done = false;
	if (e->count != SPOOL_CHUNK && cstart + (uint64_t)e->count * PROTO_BLOCK < size)
		return 0; /* not a whole chunk: plain extents */
	chunk = calloc(1, SPOOL_CHUNK * PROTO_BLOCK);
	if (!chunk)
		return -ENOMEM;
	for (uint32_t k = 0; k < e->count; k++)
		if (!blocks[k].zero)
			memcpy(chunk + (size_t)blocks[k].idx * PROTO_BLOCK, data + (size_t)di++ * PROTO_BLOCK,
			       PROTO_BLOCK);
	wbuf_init(&delta, PROTO_SIG_RANGE + 65536);
	for (uint64_t ro = 0; ro < SPOOL_CHUNK * (uint64_t)PROTO_BLOCK && cstart + ro < size;
	     ro += PROTO_SIG_RANGE) {
		uint64_t off = cstart + ro, idx = off / PROTO_SIG_RANGE;
		uint32_t len = size - off > PROTO_SIG_RANGE ? PROTO_SIG_RANGE : (uint32_t)(size - off);
		struct msg_extent m = { .src = e->src, .offset = off, .raw_len = len, .enc = EXT_DELTA };
		bool sent = false;

		wbuf_reset(&delta);
		if (idx < ss->n && ss->len[idx]) {
			sig = realloc(sig, ss->len[idx]);
			if (!sig) {
				r = -ENOMEM;
				break;
			}
			if (fs_pread_full(ss->fd, sig, ss->len[idx], ss->off[idx]) == (ssize_t)ss->len[idx] &&
			    rsync_delta(sig, ss->len[idx], chunk + ro, len, &delta) == 0 && delta.len < len / 2) {
				wbuf_reset(&t->ext);
				if ((r = proto_put_extent_hdr(&t->ext, &m)) < 0 ||
				    (r = wbuf_put_bytes(&t->ext, delta.p, delta.len)) < 0 ||
				    (r = send_msg(t, MSG_EXTENT, &t->ext)) < 0)
					break;
				j->n_extents++;
				j->raw_bytes += len;
				t->delta_sent += delta.len;
				sent = true;
			}
		}
		if (!sent) {
			/* Plain: zero and data runs of this range. */
			for (uint32_t b = 0; b < len && r == 0;) {
				uint32_t start = b;
				bool zero = memcmp(chunk + ro + b, zeros_block, PROTO_BLOCK < len - b ? PROTO_BLOCK : len - b) == 0;
				while (b < len && (b - start) < 256 * PROTO_BLOCK) {
					uint32_t bl = len - b < PROTO_BLOCK ? len - b : PROTO_BLOCK;
					if ((memcmp(chunk + ro + b, zeros_block, bl) == 0) != zero)
						break;
					b += bl;
				}
				r = emit_extent(t, j, e->src, off + start, b - start, zero ? NULL : chunk + ro + start);
			}
			if (r < 0)
				break;
		}
	}
	wbuf_free(&delta);
	free(sig);
	free(chunk);
	*ret_done = r == 0;
	return r;
}

/* Emit the extents of spool record I for job J: the blocks the target lacks,
 * runs of up to 256 blocks, zero runs without data. */
static int emit_record(struct target *t, struct job *j, size_t i)
{
	const struct spool_entry *e = &j->spool->e[i];
	const struct spool_block *blocks;
	const uint8_t *data;
	uint64_t size = j->size[e->src], base = j->base[e->src];
	uint32_t k = 0, di = 0;
	int r;

	if ((r = spool_read(j->spool, i, t->chunk, &blocks, &data)) < 0)
		return r;
	if (j->sig[e->src]) {
		bool done;
		if ((r = emit_record_delta(t, j, i, blocks, data, &done)) < 0 || done)
			return r;
	}
	while (k < e->count) {
		uint32_t start = k, dstart = di;
		uint64_t off, end;
		bool zero = blocks[k].zero;

		if (blocks[k].epoch <= base) {
			di += !blocks[k].zero;
			k++;
			continue;
		}
		/* A run: consecutive indexes, same kind, all lacking, at most 256. */
		do {
			di += !blocks[k].zero;
			k++;
		} while (k < e->count && blocks[k].idx == blocks[k - 1].idx + 1 &&
			 blocks[k].zero == zero && blocks[k].epoch > base && k - start < 256);
		off = (e->chunk * SPOOL_CHUNK + blocks[start].idx) * (uint64_t)PROTO_BLOCK;
		end = off + (uint64_t)(k - start) * PROTO_BLOCK;
		if (end > size)
			end = size;
		if ((r = emit_extent(t, j, e->src, off, (uint32_t)(end - off),
				     zero ? NULL : data + (size_t)dstart * PROTO_BLOCK)) < 0)
			return r;
	}
	return 0;
}

static int produce(struct target *t, struct job *j)
{
	struct wbuf b;
	int r = 0;

	wbuf_init(&b, 1 << 20);
	if (j->stage == 0) {
		struct msg_epoch_begin m = { .epoch = j->epoch, .cut_time = j->cut_time,
					     .flags = j->flags, .n_sources = j->g->n_sources };
		snprintf(m.group, sizeof(m.group), "%s", j->g->name);
		if ((r = proto_put_epoch_begin(&b, &m)) < 0 || (r = send_msg(t, MSG_EPOCH_BEGIN, &b)) < 0)
			goto out;
		for (uint32_t s = 0; s < j->g->n_sources; s++) {
			struct msg_source ms = { .idx = s, .base = j->base[s], .size = j->size[s],
						 .block_size = PROTO_BLOCK };
			snprintf(ms.name, sizeof(ms.name), "%s", j->g->sources[s].cfg->name);
			memcpy(ms.digest, j->digest[s], DIGEST_BYTES);
			wbuf_reset(&b);
			if ((r = proto_put_source(&b, &ms)) < 0 || (r = send_msg(t, MSG_SOURCE, &b)) < 0)
				goto out;
		}
		j->stage = 1;
		j->rec = 0;
		t->in_flight++;
	} else if (j->stage == 1) {
		if (j->rec < j->spool->n) {
			r = emit_record(t, j, j->rec++);
		} else
			j->stage = 2;
	} else if (j->stage == 2) {
		struct msg_epoch_end m = { .epoch = j->epoch, .n_extents = j->n_extents,
					   .raw_bytes = j->raw_bytes };
		snprintf(m.group, sizeof(m.group), "%s", j->g->name);
		if ((r = proto_put_epoch_end(&b, &m)) < 0 || (r = send_msg(t, MSG_EPOCH_END, &b)) < 0)
			goto out;
		j->stage = 3;
		tlog(t, LOG_DEBUG, "epoch %" PRIu64 " of %s sent: %" PRIu64 " extents, %" PRIu64 " bytes",
		     j->epoch, j->g->name, j->n_extents, j->raw_bytes);
	}
out:
	wbuf_free(&b);
	return r;
}

/* Bytes the bandwidth cap allows now; arms a timer when none. */
static size_t bw_allowance(struct target *t)
{
	uint64_t rate = t->cfg->bandwidth, now;

	if (!rate)
		return SIZE_MAX;
	now = mono_usec();
	if (!t->tokens_time)
		t->tokens_time = now;
	t->tokens += (double)(now - t->tokens_time) * (double)rate / 1e6;
	t->tokens_time = now;
	if (t->tokens > (double)rate / 20) /* 50 ms of burst */
		t->tokens = (double)rate / 20;
	return t->tokens > 0 ? (size_t)t->tokens : 0;
}

static int on_bw_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct target *t = userdata;

	t->retry = sd_event_source_disable_unref(t->retry);
	if (t->state != T_BACKOFF)
		target_pump(t);
	return 0;
}

static void target_want_write(struct target *t, bool on)
{
	if (t->transport == TR_SSH)
		sshconn_update_events(t, on);
	else if (t->out_src)
		sd_event_source_set_enabled(t->out_src, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int on_bw_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* 0 if sending is allowed now, else seconds until the window opens. */
static uint64_t window_wait(const struct target *t)
{
	const struct cfg_target *c = t->cfg;
	time_t now = time(NULL);
	struct tm tm;
	int m, s, e;

	if (!c->window)
		return 0;
	localtime_r(&now, &tm);
	m = tm.tm_hour * 60 + tm.tm_min;
	s = c->window_start;
	e = c->window_end;
	if (s < e ? (m >= s && m < e) : (m >= s || m < e))
		return 0;
	return (uint64_t)(((s - m + 1440) % 1440) * 60 - tm.tm_sec);
}

static void target_pump(struct target *t)
{
	uint64_t start = mono_usec(), closed = 0;
	bool more = false;
	int r = 0;

	if (!t->wire_up || (t->transport == TR_LOCAL && t->to_fd < 0))
		return;
	if (t->state == T_READY && (closed = window_wait(t)) > 0) {
		/* Outside the schedule window: queue, start nothing new, wake at its start. */
		if (!t->retry) {
			tlog(t, LOG_INFO, "outside its window %s: sending resumes in %" PRIu64 " s",
			     t->cfg->window, closed);
			sd_event_add_time_relative(t->d->ev, &t->retry, CLOCK_MONOTONIC, closed * 1000000ULL,
						   1000000, on_bw_timer, t);
		}
		if (!wire_pending_out(&t->w)) {
			target_want_write(t, false);
			return;
		}
	}
	for (;;) {
		struct job *j = NULL;
		size_t allow;
		ssize_t n;

		/* Produce while the output queue is short (and the window is open). */
		if (!closed && t->state == T_READY && wire_out_len(&t->w) < OUT_HIGH) {
			for (j = t->jobs; j && j->stage == 3; j = j->next)
				;
			if (j && j->stage == 0 && t->in_flight >= t->cfg->max_in_flight)
				j = NULL;
			if (j && (r = produce(t, j)) < 0)
				break;
		}
		if (!wire_pending_out(&t->w)) {
			if (!j)
				break;
			if (mono_usec() - start > PUMP_BUDGET_USEC) {
				more = true;
				break;
			}
			continue;
		}
		allow = bw_allowance(t);
		if (allow == 0) {
			uint64_t wait = (uint64_t)(-t->tokens * 1e6 / (double)t->cfg->bandwidth) + 1000;
			if (!t->retry)
				sd_event_add_time_relative(t->d->ev, &t->retry, CLOCK_MONOTONIC, wait, 1000,
							   on_bw_timer, t);
			target_want_write(t, false);
			return;
		}
		n = wire_flush_some(&t->w, allow > (1u << 20) ? (1u << 20) : allow);
		if (n == -EAGAIN) {
			more = true;
			break;
		}
		if (n < 0) {
			r = (int)n;
			break;
		}
		if (t->cfg->bandwidth)
			t->tokens -= (double)n;
		t->bytes_sent += (uint64_t)n;
		t->rate_bytes += (uint64_t)n;
		if (mono_usec() - start > PUMP_BUDGET_USEC) {
			more = true; /* let the loop breathe; resume on the next writable event */
			break;
		}
	}
	if (r < 0) {
		char msg[512];
		snprintf(msg, sizeof(msg), "sending failed: %s", r == -EPIPE ? "the receiver went away" : err_msg(r));
		target_disconnect(t, msg);
		return;
	}
	target_want_write(t, more);
}
