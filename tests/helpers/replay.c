/* replay - test helper: replays a daemon-to-receiver session recorded by
 * `relay --record PREFIX` into a new receiver, cut after any byte.
 *
 * A recorded stream cannot be fed as is (both nonces enter the session keys,
 * docs/protocol.md 2), so the recording is opened with the site key and the
 * receiver's recorded nonce, and its frames are sealed again, unchanged, in a
 * real handshake with the new receiver: the same bodies, the same lengths.
 *
 *   replay --key FILE --record PREFIX --list
 *       one line per application frame the daemon sent:
 *       "INDEX TYPE WIRE_BYTES [GROUP EPOCH]" (WIRE_BYTES with the header)
 *   replay --key FILE --record PREFIX --from I --to J [--cut N] -- CMD [ARGS...]
 *       runs CMD (bascule recv ...) on pipes, handshakes as the daemon, waits
 *       for STATE, sends frames I..J-1 but only their first N bytes (default:
 *       all), closes the stream, reads the replies until CMD closes (printing
 *       "ACK|NACK GROUP EPOCH" lines) and exits with CMD's exit status. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "proto.h"
#include "wire.h"

#define MAX_FRAMES 100000
#define MAX_RECORD (256u << 20)

struct frame {
	enum wire_type type;
	uint8_t *body;
	size_t len;
};

static const char *type_name(enum wire_type t)
{
	switch (t) {
	case MSG_EPOCH_BEGIN: return "EPOCH_BEGIN";
	case MSG_SOURCE: return "SOURCE";
	case MSG_EXTENT: return "EXTENT";
	case MSG_EPOCH_END: return "EPOCH_END";
	case MSG_BYE: return "BYE";
	case MSG_SIG_REQUEST: return "SIG_REQUEST";
	default: return "OTHER";
	}
}

static void die(const char *what, int r)
{
	fprintf(stderr, "replay: %s: %s\n", what, err_msg(r));
	exit(1);
}

/* Open the recorded session PREFIX: the daemon's application frames. */
static size_t load(const char *prefix, const struct site_key *key, struct frame *frames)
{
	char path[4096];
	char *d2r, *r2d;
	size_t d2r_len, r2d_len, n = 0;
	struct rbuf hello;
	struct wire w;
	int r;

	snprintf(path, sizeof(path), "%s.r2d", prefix);
	if ((r = fs_read_all(path, MAX_RECORD, &r2d, &r2d_len)) < 0)
		die(path, r);
	snprintf(path, sizeof(path), "%s.d2r", prefix);
	if ((r = fs_read_all(path, MAX_RECORD, &d2r, &d2r_len)) < 0)
		die(path, r);
	/* The receiver's HELLO: header, magic[8], u16 version, u8 role, key_id[8], nonce[32]. */
	wire_init(&w, -1, -1, WIRE_ROLE_RECV, key);
	hello = rbuf_init((const uint8_t *)r2d, r2d_len);
	if (r2d_len < WIRE_HDR_BYTES + 19 + WIRE_NONCE_BYTES || (uint8_t)r2d[4] != MSG_HELLO)
		die("the recording does not start with the receiver's HELLO", -EBADMSG);
	hello.off = WIRE_HDR_BYTES + 19;
	if (rbuf_get_bytes(&hello, w.my_nonce, WIRE_NONCE_BYTES) < 0)
		die("receiver HELLO", -EBADMSG);
	for (size_t fed = 0;;) {
		enum wire_type t;
		struct rbuf body;

		r = wire_next(&w, &t, &body);
		if (r < 0)
			die("opening the recording", r);
		if (r == 0) {
			/* Feed the next part, as wire_fill() would have read it. */
			size_t part = d2r_len - fed < (1u << 20) ? d2r_len - fed : (1u << 20);
			if (!part)
				break;
			wbuf_consume(&w.in, w.in_off);
			w.in_off = 0;
			if ((r = wbuf_put_bytes(&w.in, d2r + fed, part)) < 0)
				die("recording", r);
			fed += part;
			continue;
		}
		if (n == MAX_FRAMES)
			die("recording", -E2BIG);
		frames[n].type = t;
		frames[n].len = rbuf_left(&body);
		frames[n].body = malloc(frames[n].len + 1);
		if (!frames[n].body)
			die("recording", -ENOMEM);
		memcpy(frames[n].body, body.p + body.off, frames[n].len);
		n++;
		if (t == MSG_BYE)
			break;
	}
	wire_free(&w);
	free(d2r);
	free(r2d);
	return n;
}

static void list(const struct frame *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rbuf b = rbuf_init(f[i].body, f[i].len);
		printf("%zu %s %zu", i, type_name(f[i].type),
		       WIRE_HDR_BYTES + f[i].len + crypto_secretstream_xchacha20poly1305_ABYTES);
		if (f[i].type == MSG_EPOCH_BEGIN) {
			struct msg_epoch_begin m;
			if (proto_get_epoch_begin(&b, &m) == 0)
				printf(" %s %llu", m.group, (unsigned long long)m.epoch);
		} else if (f[i].type == MSG_EPOCH_END) {
			struct msg_epoch_end m;
			if (proto_get_epoch_end(&b, &m) == 0)
				printf(" %s %llu", m.group, (unsigned long long)m.epoch);
		}
		printf("\n");
	}
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int run(const struct site_key *key, const struct frame *f, size_t from, size_t to,
	       size_t cut, char **cmd)
{
	int in[2], out[2], status, r;
	enum wire_type t;
	struct rbuf body;
	struct wire w;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		die("pipe", -errno);
	pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execvp(cmd[0], cmd);
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
	if ((r = wire_flush_blocking(&w)) < 0)
		die("handshake", r);
	/* The frames, sealed for this session, then only CUT bytes of them. */
	for (size_t i = from; i < to; i++)
		if ((r = wire_send(&w, f[i].type, f[i].body, f[i].len)) < 0)
			die("sealing", r);
	if (cut > w.out.len)
		cut = w.out.len;
	if (write_all(in[1], w.out.p, cut) < 0)
		fprintf(stderr, "replay: the receiver stopped reading\n");
	close(in[1]);
	w.out.len = w.out_off = 0;
	/* The replies, until the receiver closes. */
	while (wire_recv_blocking(&w, &t, &body) > 0) {
		struct msg_ack a;
		if ((t == MSG_ACK || t == MSG_NACK) && proto_get_ack(&body, &a, t == MSG_NACK) == 0)
			printf("%s %s %llu\n", t == MSG_ACK ? "ACK" : "NACK", a.group,
			       (unsigned long long)a.epoch);
	}
	fflush(stdout);
	close(out[0]);
	wire_free(&w);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
	const char *keyfile = NULL, *record = NULL;
	size_t from = 0, to = 0, cut = SIZE_MAX, n;
	bool do_list = false;
	struct site_key *key;
	struct frame *frames;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--key") && i + 1 < argc)
			keyfile = argv[++i];
		else if (!strcmp(argv[i], "--record") && i + 1 < argc)
			record = argv[++i];
		else if (!strcmp(argv[i], "--from") && i + 1 < argc)
			from = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--to") && i + 1 < argc)
			to = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--cut") && i + 1 < argc)
			cut = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--list"))
			do_list = true;
		else if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else
			break;
	}
	if (!keyfile || !record || (!do_list && (i >= argc || to < from))) {
		fprintf(stderr, "usage: replay --key FILE --record PREFIX --list\n"
				"       replay --key FILE --record PREFIX --from I --to J [--cut N] -- CMD [ARGS...]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0)
		return 1;
	if ((r = key_load(keyfile, &key)) < 0)
		die(keyfile, r);
	frames = calloc(MAX_FRAMES, sizeof(*frames));
	if (!frames)
		return 1;
	n = load(record, key, frames);
	if (do_list) {
		list(frames, n);
		r = 0;
	} else if (to > n) {
		die("--to", -ERANGE);
	} else {
		r = run(key, frames, from, to, cut, argv + i);
	}
	for (size_t k = 0; k < n; k++)
		free(frames[k].body);
	free(frames);
	key_free(key);
	return r;
}
