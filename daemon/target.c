/* target.c - one target: its child behind three pipes, the sealed stream
 * to it, its state and what it answers.
 *
 * Every target is a child of the daemon: `bascule recv --root DIR` for a
 * local: replica, `bascule relay` for an ssh:// one (it connects to the
 * secondary and runs the receiver there, unprivileged and sandboxed), the
 * vault writer for a vault.  The daemon speaks the same protocol, sealed,
 * to each, non-blocking inside its loop, so a slow target never stalls
 * another; it never waits for a child either (child.c).  A target that
 * fails is retried with exponential backoff and jitter; on reconnect it
 * reports where it stands (STATE) and gets exactly the blocks it lacks. */
#include "daemon.h"
#include "child.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "spool.h"
#include "subproc.h"
#include "ssh.h"
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define OUT_HIGH (4u << 20)   /* stop producing frames above this much queued */
#define PUMP_BUDGET_USEC 20000
#define SETUP_TIMEOUT_USEC 20000000 /* from the start of the child to its STATE */

static void target_pump(struct target *t);
static void target_disconnect(struct target *t, const char *why);
static void target_service_input(struct target *t);

int target_init(struct daemon *d, struct target *t, const struct cfg_target *cfg)
{
	memset(t, 0, sizeof(*t));
	t->d = d;
	t->cfg = cfg;
	t->to_fd = t->from_fd = t->err_fd = -1;
	t->state = T_BACKOFF;
	t->ssh = cfg->kind == TARGET_REPLICA && strncmp(cfg->url, "ssh://", 6) == 0;
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

static void set_error(struct target *t, const char *msg)
{
	snprintf(t->last_error, sizeof(t->last_error), "%s", msg);
	t->last_error_time = clock_now_usec();
	t->errors++;
	daemon_event(t->d, "error", "", t->cfg->name, 0, msg);
}

/* ---- the child's stderr: each line logged, the last error line kept ---- */

/* At the level the receiver logged it at (its info lines, "hot standby
 * started", are not warnings here); a line not of its logger (ssh's) as a
 * warning. */
static void remote_line(struct target *t)
{
	t->errline[t->errlen] = 0;
	if (t->errlen) {
		int prio = log_line_prio(t->errline);
		target_log(t, prio < 0 ? LOG_WARNING : prio, "receiver: %s", t->errline);
		/* Keep the receiver's reason for the status and the disconnect. */
		if (strstr(t->errline, "error")) {
			snprintf(t->remote_reason, sizeof(t->remote_reason), "%s", t->errline);
			snprintf(t->last_error, sizeof(t->last_error), "remote: %s", t->errline);
		}
	}
	t->errlen = 0;
}

static void drain_stderr(struct target *t)
{
	char buf[4096];
	ssize_t n;

	while (t->err_fd >= 0 && (n = read(t->err_fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' || t->errlen == sizeof(t->errline) - 1)
				remote_line(t);
			if (buf[i] != '\n')
				t->errline[t->errlen++] = buf[i];
		}
}

static int on_stderr(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct target *t = userdata;

	drain_stderr(t);
	if (revents & (EPOLLHUP | EPOLLERR))
		t->err_src = sd_event_source_disable_unref(t->err_src);
	return 0;
}

static void close_stderr(struct target *t)
{
	drain_stderr(t);
	remote_line(t); /* a last line without its newline */
	t->err_src = sd_event_source_disable_unref(t->err_src);
	if (t->err_fd >= 0)
		close(t->err_fd);
	t->err_fd = -1;
}

/* ---- connection and disconnection ---- */

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

static void target_backoff(struct target *t)
{
	uint64_t delay;

	t->state = T_BACKOFF;
	if (t->d->stopping)
		return;
	t->failures++;
	delay = 500000ULL << (t->failures > 6 ? 6 : t->failures - 1);
	if (delay > 30000000ULL)
		delay = 30000000ULL;
	delay = delay * (750 + (uint64_t)(randombytes_uniform(500))) / 1000;
	t->retry = sd_event_source_disable_unref(t->retry);
	if (sd_event_add_time_relative(t->d->ev, &t->retry, CLOCK_MONOTONIC, delay, 10000, on_retry, t) < 0)
		target_log(t, LOG_ERR, "cannot arm the retry timer: the target stays disconnected");
}

/* The session's I/O ends: sources, timers, pipes, wire, jobs. */
static void target_stop_io(struct target *t)
{
	t->in_src = sd_event_source_disable_unref(t->in_src);
	t->out_src = sd_event_source_disable_unref(t->out_src);
	t->setup_timer = sd_event_source_disable_unref(t->setup_timer);
	t->bw_timer = sd_event_source_disable_unref(t->bw_timer);
	t->window_timer = sd_event_source_disable_unref(t->window_timer);
	if (t->to_fd >= 0)
		close(t->to_fd);
	if (t->from_fd >= 0)
		close(t->from_fd);
	t->to_fd = t->from_fd = -1;
	if (t->wire_up)
		wire_free(&t->w);
	t->wire_up = false;
	ship_drop_jobs(t);
}

/* The child is gone (or never started): tell why, back off. */
static void target_closed(struct target *t, const siginfo_t *si)
{
	const char *who = t->ssh ? "the relay" : "the receiver";
	char msg[sizeof(t->last_error)];
	int n;

	close_stderr(t);
	if (!t->closing_quiet && t->closing_why[0]) {
		n = snprintf(msg, sizeof(msg), "%s", t->closing_why);
		/* The receiver's own words: why it closed the connection. */
		if (t->remote_reason[0] && !strstr(t->closing_why, t->remote_reason) && n > 0 &&
		    (size_t)n < sizeof(msg))
			n += snprintf(msg + n, sizeof(msg) - (size_t)n, "; the receiver said: %s", t->remote_reason);
		if (si && si->si_code == CLD_EXITED && si->si_status != 0 && n > 0 && (size_t)n < sizeof(msg))
			snprintf(msg + n, sizeof(msg) - (size_t)n, "; %s exited with status %d (%s)", who,
				 si->si_status, exit_meaning(si->si_status));
		else if (si && si->si_code != CLD_EXITED && n > 0 && (size_t)n < sizeof(msg))
			snprintf(msg + n, sizeof(msg) - (size_t)n, "; %s was killed by signal %d", who,
				 si->si_status);
		set_error(t, msg);
		target_log(t, LOG_ERR, "%s", msg);
	}
	t->remote_reason[0] = t->closing_why[0] = 0;
	t->closing_quiet = false;
	target_backoff(t);
}

static void on_child_exit(void *userdata, const siginfo_t *si)
{
	struct target *t = userdata;

	t->child = NULL;
	t->reaping = true; /* a disconnect found here is told below, with the exit status */
	if (t->state != T_CLOSING && t->wire_up) {
		/* It ended by itself: what it wrote last (a NACK, an ERROR) is
		 * still in the pipe and says why. */
		target_service_input(t);
		if (t->state != T_CLOSING)
			target_disconnect(t, "the receiver closed the connection");
	}
	t->reaping = false;
	target_closed(t, si);
}

/* Close the session; the child is stopped and the disconnect told once it
 * has exited (WHY NULL: nothing to tell). */
static void target_disconnect(struct target *t, const char *why)
{
	if (t->state == T_CLOSING || t->state == T_BACKOFF)
		return;
	target_stop_io(t);
	t->state = T_CLOSING;
	t->closing_quiet = !why;
	snprintf(t->closing_why, sizeof(t->closing_why), "%s", why ? why : "");
	if (t->child)
		child_stop(t->child);
	else if (!t->reaping)
		target_closed(t, NULL);
}

static int on_setup_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct target *t = userdata;

	t->setup_timer = sd_event_source_disable_unref(t->setup_timer);
	if (t->state == T_HANDSHAKE)
		target_disconnect(t, t->ssh ? "no answer from the secondary within 20 s (link down?)"
					    : "the receiver did not answer within 20 s");
	return 0;
}

void target_close(struct target *t)
{
	if (t->wire_up && t->state == T_READY) {
		wire_send(&t->w, MSG_BYE, NULL, 0);
		wire_flush_some(&t->w, SIZE_MAX);
	}
	t->retry = sd_event_source_disable_unref(t->retry);
	target_disconnect(t, NULL);
}

void target_free(struct target *t)
{
	if (t->wire_up && t->state == T_READY) {
		wire_send(&t->w, MSG_BYE, NULL, 0);
		wire_flush_some(&t->w, SIZE_MAX);
	}
	target_stop_io(t);
	child_release(t->child); /* stopped and reaped by the loop, without us */
	t->child = NULL;
	close_stderr(t);
	t->retry = sd_event_source_disable_unref(t->retry);
	free(t->groups);
	t->groups = NULL;
	ZSTD_freeCCtx(t->zctx);
	t->zctx = NULL;
	free(t->chunk);
	t->chunk = NULL;
	wbuf_free(&t->ext);
}

#define ARGV_MAX 40

struct argv {
	char *v[ARGV_MAX];
	size_t n;
	char keep[4][64];             /* numbers formatted for it */
};

static void argv_add(struct argv *a, const char *s)
{
	if (a->n < ARGV_MAX - 1)
		a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
}

/* The vault writer runs here, on the primary: the vault key stays on it.
 * Its cache directory belongs to relay_user, which it runs as. */
static int vault_argv(struct target *t, struct argv *a, char *cache, size_t len)
{
	struct daemon *d = t->d;
	int r;

	if (snprintf(cache, len, "%s/vault/%s", d->cfg->state_dir, t->cfg->name) >= (int)len)
		return -ENAMETOOLONG;
	if ((r = fs_mkdir_p(cache, 0700)) < 0)
		return err_wrap(r, "cannot create the vault cache %s", cache);
	/* The parents are root's (0700): only this last directory is given. */
	if (geteuid() == 0 && lchown(cache, d->relay_uid, d->relay_gid) < 0)
		return err_set(errno, "cannot give %s to relay_user %s: %s", cache, d->cfg->relay_user,
			       strerror(errno));
	argv_add(a, d->recv_path);
	argv_add(a, "vault");
	argv_add(a, "recv");
	argv_add(a, "--url");
	argv_add(a, t->cfg->url);
	argv_add(a, "--vault-key");
	argv_add(a, t->cfg->vault_key);
	argv_add(a, "--cache");
	argv_add(a, cache);
	argv_add(a, "--key");
	argv_add(a, d->cfg->key);
	argv_add(a, "--user");
	argv_add(a, d->cfg->relay_user);
	if (t->cfg->identity) {
		argv_add(a, "--identity");
		argv_add(a, t->cfg->identity);
	}
	if (t->cfg->known_hosts) {
		argv_add(a, "--known-hosts");
		argv_add(a, t->cfg->known_hosts);
	}
	snprintf(a->keep[0], sizeof(a->keep[0]), "%" PRIu64,
		 t->cfg->parallel ? t->cfg->parallel : CFG_VAULT_PARALLEL);
	argv_add(a, "--parallel");
	argv_add(a, a->keep[0]);
	if (strncmp(t->cfg->url, "s3://", 5) == 0) {
		const char *mode;
		uint64_t secs;
		const char *const kv[][2] = { { "--s3-endpoint", t->cfg->s3_endpoint },
					      { "--s3-region", t->cfg->s3_region },
					      { "--s3-credentials", t->cfg->s3_credentials },
					      { "--s3-ca", t->cfg->s3_ca },
					      { "--s3-url-style", t->cfg->s3_url_style } };
		for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
			if (kv[i][1]) {
				argv_add(a, kv[i][0]);
				argv_add(a, kv[i][1]);
			}
		config_vault_lock(t->cfg, &mode, &secs);
		if (mode) {
			snprintf(a->keep[1], sizeof(a->keep[1]), "%" PRIu64, secs);
			argv_add(a, "--lock");
			argv_add(a, mode);
			argv_add(a, "--lock-seconds");
			argv_add(a, a->keep[1]);
		}
	}
	return 0;
}

/* Under a forced command= on the secondary the request is only read, as
 * SSH_ORIGINAL_COMMAND, by tools/recv_ssh.c (which warns about the options
 * the secondary overrides): keep the two in step. */
static int relay_argv(struct target *t, struct argv *a, char *cmd, size_t len)
{
	struct ssh_url u;
	int r;

	if ((r = ssh_url_parse(t->cfg->url, &u)) < 0)
		return r;
	{
		char ke[32], kt[32], *opts;
		int n;
		snprintf(ke, sizeof(ke), "%" PRIu64, t->cfg->keep_epochs);
		snprintf(kt, sizeof(kt), "%" PRIu64 "ms", t->cfg->keep_time / 1000);
		/* remote_command is shell text; the options are quoted words. */
		opts = config_has_postgres(t->d->cfg)
			       ? subproc_quote_argv((const char *const[]){ "--root", u.path, "--keep-epochs", ke,
									   "--keep-time", kt, "--pg-standby",
									   t->cfg->postgres_standby ? t->cfg->postgres_standby
												    : "cold", NULL })
			       : subproc_quote_argv((const char *const[]){ "--root", u.path, "--keep-epochs", ke,
									   "--keep-time", kt, NULL });
		if (!opts)
			return -ENOMEM;
		n = snprintf(cmd, len, "%s %s", t->cfg->remote_command, opts);
		free(opts);
		if (n < 0 || (size_t)n >= len)
			return err_set(ENAMETOOLONG, "target %s: the receiver's command is too long", t->cfg->name);
	}
	argv_add(a, t->d->recv_path);
	argv_add(a, "relay");
	argv_add(a, "--url");
	argv_add(a, t->cfg->url);
	argv_add(a, "--identity");
	argv_add(a, t->cfg->identity);
	argv_add(a, "--known-hosts");
	argv_add(a, t->cfg->known_hosts);
	argv_add(a, "--user");
	argv_add(a, t->d->cfg->relay_user);
	argv_add(a, "--command");
	argv_add(a, cmd);
	return 0;
}

/* remote_command is a command for /bin/sh: the options follow it as "$@",
 * so nothing is quoted or cut, and it is exec'd, so that the receiver is
 * the child (its pipes end with it, signals reach it); "bascule ..." runs
 * this daemon's own bascule. */
static void local_argv(struct target *t, struct argv *a, char *script, size_t len)
{
	const char *rc = t->cfg->remote_command;

	argv_add(a, "/bin/sh");
	argv_add(a, "-c");
	if (strncmp(rc, "bascule ", 8) == 0) {
		snprintf(script, len, "exec \"$0\" %s \"$@\"", rc + 8);
		argv_add(a, script);
		argv_add(a, t->d->recv_path);
	} else {
		snprintf(script, len, "exec %s \"$@\"", rc);
		argv_add(a, script);
		argv_add(a, "sh");
	}
	snprintf(a->keep[0], sizeof(a->keep[0]), "%" PRIu64, t->cfg->keep_epochs);
	snprintf(a->keep[1], sizeof(a->keep[1]), "%" PRIu64 "ms", t->cfg->keep_time / 1000);
	argv_add(a, "--root");
	argv_add(a, t->cfg->url + strlen("local:"));
	argv_add(a, "--key");
	argv_add(a, t->d->cfg->key);
	argv_add(a, "--keep-epochs");
	argv_add(a, a->keep[0]);
	argv_add(a, "--keep-time");
	argv_add(a, a->keep[1]);
	if (config_has_postgres(t->d->cfg)) {
		argv_add(a, "--pg-standby");
		argv_add(a, t->cfg->postgres_standby ? t->cfg->postgres_standby : "cold");
	}
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int target_connect(struct target *t)
{
	char buf[PATH_MAX + 8192];
	struct argv a = { .n = 0 };
	int in, out, err, r;

	if (t->cfg->kind == TARGET_VAULT)
		r = vault_argv(t, &a, buf, sizeof(buf));
	else if (t->ssh)
		r = relay_argv(t, &a, buf, sizeof(buf));
	else {
		local_argv(t, &a, buf, sizeof(buf));
		r = 0;
	}
	if (r < 0 || (r = child_spawn(t->d, a.v, on_child_exit, t, &t->child, &in, &out, &err)) < 0)
		return r;
	t->to_fd = in;
	t->from_fd = out;
	t->err_fd = err;
	t->errlen = 0;
	t->remote_reason[0] = 0;
	fcntl(t->to_fd, F_SETPIPE_SZ, 1 << 20);
	wire_init(&t->w, t->from_fd, t->to_fd, WIRE_ROLE_DAEMON, t->d->key);
	t->wire_up = true;
	t->state = T_HANDSHAKE;
	if ((r = wire_send_hello(&t->w)) < 0 ||
	    (r = sd_event_add_io(t->d->ev, &t->in_src, t->from_fd, EPOLLIN, on_io, t)) < 0 ||
	    (r = sd_event_add_io(t->d->ev, &t->out_src, t->to_fd, EPOLLOUT, on_io, t)) < 0 ||
	    (r = sd_event_add_io(t->d->ev, &t->err_src, t->err_fd, EPOLLIN, on_stderr, t)) < 0 ||
	    (r = sd_event_add_time_relative(t->d->ev, &t->setup_timer, CLOCK_MONOTONIC, SETUP_TIMEOUT_USEC,
					    100000, on_setup_timeout, t)) < 0) {
		r = err_set(-r, "cannot watch the receiver's pipes: %s", strerror(-r));
		target_disconnect(t, err_msg(r));
		return 0; /* told, and backing off */
	}
	target_log(t, LOG_DEBUG, "started %s (pid %d)", t->ssh ? "the relay" : "the receiver",
		   (int)child_pid(t->child));
	return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct target *t = userdata;
	int r;

	t->retry = sd_event_source_disable_unref(t->retry);
	if (t->state != T_BACKOFF || t->d->stopping)
		return 0;
	if ((r = target_connect(t)) < 0) {
		char msg[1024];
		snprintf(msg, sizeof(msg), "cannot start %s: %s", t->ssh ? "the relay" : "the receiver",
			 err_msg(r));
		snprintf(t->closing_why, sizeof(t->closing_why), "%s", msg);
		target_closed(t, NULL);
	}
	return 0;
}

void target_start(struct target *t)
{
	t->failures = 0;
	on_retry(NULL, 0, t);
}

/* ---- incoming messages ---- */

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
		memset(t->groups[i].pg, 0, sizeof(t->groups[i].pg));
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
		g = group_find(d, sg->group, &gi);
		if (!g)
			continue; /* a group this daemon does not (or no longer) replicate */
		tg = &t->groups[gi];
		tg->acked = sg->epoch;
		tg->acked_cut_time = sg->cut_time;
		/* Postgres sources: where each copy ends (its WAL, its base). */
		for (uint32_t s = 0; s < g->n_sources; s++)
			for (uint32_t m = 0; g->sources[s].pg && m < sg->n_sources; m++)
				if (!strcmp(sg->sources[m].name, g->sources[s].cfg->name)) {
					pgship_state(t, g, s, &sg->sources[m]);
					tg->sent[s] = sg->sources[m].epoch;
				}
		if (sg->epoch > g->last_cut) {
			target_log(t, LOG_WARNING, "replica of group %s is at epoch %" PRIu64 ", ahead of this "
						   "daemon's %" PRIu64 " (state lost?): full resync",
				   g->name, sg->epoch, g->last_cut);
			g->last_cut = sg->epoch;
			continue; /* sent[] stays 0: everything is sent */
		}
		for (uint32_t s = 0; s < g->n_sources; s++) {
			for (uint32_t m = 0; !g->sources[s].pg && m < sg->n_sources; m++) {
				struct state_source *x = &sg->sources[m];
				if (strcmp(x->name, g->sources[s].cfg->name) != 0)
					continue;
				if (x->status != SRC_OK) {
					target_log(t, LOG_WARNING, "replica %s/%s is %s: resynchronising it with "
								   "librsync deltas",
						   g->name, x->name, x->status == SRC_UNKNOWN ? "of unknown content"
											      : "diverged");
					tg->want_sig[s] = x->size > 0;
				} else if (x->epoch == g->last_cut && g->last_cut &&
					   memcmp(x->digest, g->sources[s].digest, DIGEST_BYTES) != 0) {
					target_log(t, LOG_WARNING, "replica %s/%s at epoch %" PRIu64 " differs from "
								   "the primary's record: full resync",
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

/* Read and handle what the child sent.  Returns after a disconnect too
 * (state CLOSING). */
static void target_service_input(struct target *t)
{
	char msg[1024];
	int r;

	while (t->wire_up) {
		enum wire_type type;
		struct rbuf body;

		r = wire_fill(&t->w);
		if (r == -EAGAIN)
			return;
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
				target_log(t, LOG_INFO, "connected");
				if ((r = resync_request(t)) < 0)
					break;
				for (uint32_t i = 0; i < t->d->n_groups; i++)
					group_request_cut(t->d->groups[i]);
			} else if ((type == MSG_SIG || type == MSG_SIG_END) && t->state == T_READY) {
				if ((r = resync_handle_sig(t, type, &body)) < 0)
					break;
			} else if ((type == MSG_ACK || type == MSG_NACK) && t->state == T_READY) {
				if ((r = ship_ack(t, &body, type == MSG_NACK)) < 0)
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

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct target *t = userdata;

	if (fd == t->from_fd)
		target_service_input(t);
	if (t->wire_up)
		target_pump(t);
	return 0;
}

void targets_on_epoch(struct daemon *d, struct group *g)
{
	for (uint32_t i = 0; i < d->n_targets; i++)
		if (ship_enqueue(d->targets[i], g))
			target_pump(d->targets[i]);
}

/* ---- sending: the bandwidth cap, the window, the pipe ---- */

/* Bytes the bandwidth cap allows now. */
static size_t bw_allowance(struct target *t)
{
	uint64_t rate = t->cfg->bandwidth, now;

	if (!rate)
		return SIZE_MAX;
	now = clock_mono_usec();
	if (!t->tokens_time)
		t->tokens_time = now;
	t->tokens += (double)(now - t->tokens_time) * (double)rate / 1e6;
	t->tokens_time = now;
	if (t->tokens > (double)rate / 20) /* 50 ms of burst */
		t->tokens = (double)rate / 20;
	return t->tokens > 0 ? (size_t)t->tokens : 0;
}

static int on_send_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct target *t = userdata;

	if (s == t->bw_timer)
		t->bw_timer = sd_event_source_disable_unref(t->bw_timer);
	else
		t->window_timer = sd_event_source_disable_unref(t->window_timer);
	if (t->wire_up)
		target_pump(t);
	return 0;
}

static void target_want_write(struct target *t, bool on)
{
	if (t->out_src)
		sd_event_source_set_enabled(t->out_src, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

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

/* Produce and write while the pipe takes it, within the cap, the window
 * and PUMP_BUDGET_USEC (the loop goes on with other events, then here). */
static void target_pump(struct target *t)
{
	uint64_t start = clock_mono_usec(), closed = 0;
	bool more = false;
	int r = 0;

	if (!t->wire_up || t->to_fd < 0)
		return;
	if (t->state == T_READY && (closed = window_wait(t)) > 0) {
		/* Outside the schedule window: queue, start nothing new, wake at its start. */
		if (!t->window_timer) {
			target_log(t, LOG_INFO, "outside its window %s: sending resumes in %" PRIu64 " s",
				   t->cfg->window, closed);
			if (sd_event_add_time_relative(t->d->ev, &t->window_timer, CLOCK_MONOTONIC,
						       closed * 1000000ULL, 1000000, on_send_timer, t) < 0)
				target_log(t, LOG_ERR, "cannot arm the window timer");
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
			for (j = t->jobs; j && j->stage == JOB_SENT; j = j->next)
				;
			if (j && j->stage == JOB_BEGIN && t->in_flight >= t->cfg->max_in_flight)
				j = NULL;
			if (j && (r = ship_produce(t, j)) < 0)
				break;
		}
		if (!wire_pending_out(&t->w)) {
			if (!j)
				break;
			if (clock_mono_usec() - start > PUMP_BUDGET_USEC) {
				more = true;
				break;
			}
			continue;
		}
		allow = bw_allowance(t);
		if (allow == 0) {
			uint64_t wait = (uint64_t)(-t->tokens * 1e6 / (double)t->cfg->bandwidth) + 1000;
			if (!t->bw_timer &&
			    sd_event_add_time_relative(t->d->ev, &t->bw_timer, CLOCK_MONOTONIC, wait, 1000,
						       on_send_timer, t) < 0)
				target_log(t, LOG_ERR, "cannot arm the bandwidth timer");
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
		if (clock_mono_usec() - start > PUMP_BUDGET_USEC) {
			more = true; /* let the loop breathe; resume on the next writable event */
			break;
		}
	}
	if (r < 0) {
		char msg[512];
		/* EPIPE: the receiver ended before it read everything.  What it
		 * wrote before it went (a NACK: "group promoted here", "no space")
		 * is still in the pipe and says why: read it first, or the
		 * disconnect is told as a bare "closed the connection" whenever
		 * this write comes before the read (a loaded machine). */
		if (r == -EPIPE) {
			target_service_input(t);
			if (t->state == T_CLOSING || t->state == T_BACKOFF)
				return;
			snprintf(msg, sizeof(msg), "the receiver closed the connection");
		} else
			snprintf(msg, sizeof(msg), "sending failed: %s", err_msg(r));
		target_disconnect(t, msg);
		return;
	}
	target_want_write(t, more);
}
