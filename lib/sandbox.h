/* sandbox.h - how the processes that read network input (`bascule relay`,
 * the vault writer, `bascule pgstream`) give up what they do not need before
 * they read any: root's uid (to relay_user), new privileges (no_new_privs), core
 * dumps and ptrace (not dumpable), and the filesystem and TCP ports beyond
 * a short list (Landlock).  docs/architecture.md, "Privilege separation". */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SANDBOX_MAX_PATHS 40
#define SANDBOX_MAX_PORTS 20
#include <sys/types.h>

struct sandbox {
	const char *prog;          /* "bascule relay": the prefix of messages */
	const char *user;          /* drop to this user when run as root (relay_user) */
	const char *user_key;      /* how the user is named in errors: "relay_user" (default), "--user" */
	bool user_given;           /* not root: USER was asked for explicitly and must be the current one */
	const char *ro[SANDBOX_MAX_PATHS]; /* readable beneath (directories or files) */
	int rw_fd[SANDBOX_MAX_PATHS];      /* directories opened beforehand: read, write, create beneath */
	size_t n_ro, n_rw;
	bool resolver;             /* read /etc and /usr, and the resolver's files wherever they link */
	uint16_t tcp_ports[SANDBOX_MAX_PORTS];     /* the only TCP ports it may connect to (none: no TCP at all) */
	size_t n_ports;
};

/* The account SB->user names when running as root (else the current one;
 * then SB->user, if given, must be it): uid, gid, and its home directory
 * in RET_HOME if not NULL.  -ENOENT with the useradd command when the user
 * does not exist, -EINVAL if it is root, -EPERM when a non-root process is
 * asked to become another user. */
int sandbox_account(const struct sandbox *sb, uid_t *ret_uid, gid_t *ret_gid, char *ret_home, size_t len);

/* Enter the sandbox SB describes: look up the user and open the paths (as
 * the caller, typically root), drop supplementary groups, gid and uid
 * (setresgid/setresuid; kept when not root), set PR_SET_NO_NEW_PRIVS and
 * PR_SET_DUMPABLE 0 (sanitizer builds stay dumpable: LeakSanitizer reads
 * /proc/self at exit), then restrict the process with Landlock where the
 * kernel has it.  Returns 0, or a negative errno with a sentence (-ENOENT
 * with the useradd command when the user does not exist, -EINVAL if it is
 * root).  Without Landlock the rest still applies and *NOTE (if not NULL)
 * holds the warning to log; it is "" otherwise. */
int sandbox_enter(const struct sandbox *sb, char *note, size_t note_len);

/* Test hook: with BASCULE_RELAY_PROBE=PATH[:PATH...] in the environment,
 * report on stderr, for each PATH, whether this process can open it now
 * ("PROG: probe: open PATH: ok" or "...: errno 13 (Permission denied)"),
 * and the identity it runs with.  Nothing without the variable. */
void sandbox_probe(const char *prog);
