/* recv_ssh.c - `bascule recv` under sshd's forced command: a person testing
 * the restricted key by hand gets an answer and leaves replication alone;
 * the daemon is told which of its options the secondary overrides. */
#include "recv_ssh.h"
#include "subproc.h"
#include "err.h"
#include "key.h"
#include "log.h"
#include "units.h"
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The parent of PID and whether its command name starts with "sshd" (the
 * session process: "sshd", or "sshd-session" from OpenSSH 9.8). */
static pid_t proc_parent(pid_t pid, bool *ret_sshd)
{
	char path[64], buf[512], *close_paren;
	ssize_t n;
	int fd, ppid = 0;

	*ret_sshd = false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* "PID (COMM) STATE PPID ..."; COMM may hold spaces and parentheses. */
	close_paren = strrchr(buf, ')');
	if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
		return 0;
	*ret_sshd = strncmp(strchr(buf, '(') + 1, "sshd", 4) == 0;
	return (pid_t)ppid;
}

/* sshd runs a forced command through the user's shell, which may exec it:
 * sshd is our parent or our grandparent. */
static bool under_sshd(void)
{
	pid_t pid = getpid();

	for (int up = 0; up < 3 && pid > 1; up++) {
		bool sshd;
		pid_t parent = proc_parent(pid, &sshd);
		if (up > 0 && sshd)
			return true;
		pid = parent;
	}
	return false;
}

/* The value after OPT in the daemon's request CMD (shell words, as
 * subproc_quote_argv writes them), into BUF.  False if absent. */
static bool request_option(const char *cmd, const char *opt, char *buf, size_t len)
{
	char **w = NULL;
	bool found = false;

	if (subproc_split_words(cmd, &w, NULL) < 0)
		return false;
	for (size_t i = 0; w[i] && w[i + 1] && !found; i++)
		if (!strcmp(w[i], opt) && strlen(w[i + 1]) < len) {
			memcpy(buf, w[i + 1], strlen(w[i + 1]) + 1);
			found = true;
		}
	subproc_words_free(w);
	return found;
}

/* Paths equal but for trailing slashes. */
static bool same_dir(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	while (la > 1 && a[la - 1] == '/')
		la--;
	while (lb > 1 && b[lb - 1] == '/')
		lb--;
	return la == lb && strncmp(a, b, la) == 0;
}

/* The daemon's request: say which of its options do not apply here. */
static void warn_overridden(const struct recv_opts *o, const char *cmd)
{
	char asked[PATH_MAX], word[64], theirs[512] = "", ours[512] = "", d1[32], d2[32];
	uint64_t v;
	size_t lt = 0, lo = 0;

	if (request_option(cmd, "--root", asked, sizeof(asked)) && !same_dir(asked, o->root)) {
		lt += (size_t)snprintf(theirs + lt, sizeof(theirs) - lt, " --root %s", asked);
		lo += (size_t)snprintf(ours + lo, sizeof(ours) - lo, " --root %s", o->root);
	}
	if (lt < sizeof(theirs) && lo < sizeof(ours) &&
	    request_option(cmd, "--keep-epochs", word, sizeof(word)) &&
	    (v = strtoull(word, NULL, 10)) != o->keep_epochs) {
		lt += (size_t)snprintf(theirs + lt, sizeof(theirs) - lt, " --keep-epochs %s", word);
		lo += (size_t)snprintf(ours + lo, sizeof(ours) - lo, " --keep-epochs %llu",
				       (unsigned long long)o->keep_epochs);
	}
	if (lt < sizeof(theirs) && lo < sizeof(ours) &&
	    request_option(cmd, "--keep-time", word, sizeof(word)) &&
	    units_parse_duration(word, &v) == 0 && v != o->keep_time) {
		snprintf(theirs + lt, sizeof(theirs) - lt, " --keep-time %s",
			 units_fmt_duration(v, d1, sizeof(d1)));
		snprintf(ours + lo, sizeof(ours) - lo, " --keep-time %s",
			 units_fmt_duration(o->keep_time, d2, sizeof(d2)));
	}
	if (theirs[0])
		log_warn("the primary asked for%s; the command= of this key on the secondary sets%s, "
			 "which applies (the replica directory and retention of an ssh:// target are "
			 "decided in the secondary's authorized_keys: change them there)",
			 theirs, ours);
}

/* A hand test: is the receiver ready?  Opens no replica file. */
static int answer_probe(const struct recv_opts *o, const char *cmd)
{
	struct site_key *key = NULL;
	char id[2 * KEY_ID_BYTES + 1], dir[PATH_MAX], keep[32];
	int r;

	printf("bascule recv: this key runs only the Bascule receiver (command= in the secondary's "
	       "authorized_keys); '%.200s' was not run\n", cmd);
	if ((r = key_load(o->keyfile, &key)) < 0) {
		log_error("%s", err_msg(r));
		return EXIT_KEY;
	}
	key_id_hex(key, id);
	key_free(key);
	/* The receiver creates the directory if missing: the nearest existing
	 * ancestor must then be writable. */
	snprintf(dir, sizeof(dir), "%s", o->root);
	while (access(dir, F_OK) < 0 && strcmp(dir, "/") != 0) {
		char *slash = strrchr(dir, '/');
		if (!slash)
			break;
		if (slash == dir)
			slash++; /* keep "/" */
		*slash = 0;
	}
	if (o->root[0] != '/' || access(dir, W_OK | X_OK) < 0) {
		log_error("the replica directory %s cannot be written by this user (%s): create it "
			  "owned by the receiving user (install -d -o USER -m 0700 %s)",
			  o->root, o->root[0] != '/' ? "not an absolute path" : strerror(errno), o->root);
		return EXIT_FAIL;
	}
	printf("bascule recv: ready: replica directory %s, site key %s (key id %s), undo data of the "
	       "last %llu epochs%s%s\n", o->root, o->keyfile, id, (unsigned long long)o->keep_epochs,
	       o->keep_time ? " and of the last " : "",
	       o->keep_time ? units_fmt_duration(o->keep_time, keep, sizeof(keep)) : "");
	printf("bascule recv: replication was not disturbed (this test opened no replica file)\n");
	return EXIT_OK;
}

int recv_ssh_check(const struct recv_opts *o, int *ret_exit)
{
	const char *cmd = getenv("SSH_ORIGINAL_COMMAND");

	if (!cmd || !under_sshd())
		return 0;
	if (strstr(cmd, "recv") && strstr(cmd, "--root")) {
		warn_overridden(o, cmd);
		return 0;
	}
	*ret_exit = answer_probe(o, cmd);
	return 1;
}

bool recv_ssh_requested(const char *opt, char *buf, size_t len)
{
	const char *cmd = getenv("SSH_ORIGINAL_COMMAND");

	return cmd && under_sshd() && strstr(cmd, "recv") && request_option(cmd, opt, buf, len);
}
