/* pgsandbox.h - what `bascule pgstream` gives up before it speaks to the
 * network (docs/architecture.md, "Privilege separation"): root's identity
 * (setresuid to an unprivileged user, supplementary groups dropped), the
 * ability to regain privileges (PR_SET_NO_NEW_PRIVS), core dumps and
 * ptrace by its new user (PR_SET_DUMPABLE 0), and the filesystem and the
 * network beyond what libpq needs (a Landlock ruleset: read-only /etc for
 * the resolver, the named directories and files; TCP connect only to the
 * named ports and to DNS).
 *
 * NOTE: issue 12 gives `bascule relay` a sandbox of the same kind; the two
 * become one helper in lib/ when both have landed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PGSANDBOX_DEFAULT_USER "bascule"

struct pgsandbox {
	const char *user;          /* switch to this user (when root); NULL: PGSANDBOX_DEFAULT_USER */
	const char *const *dirs;   /* read-only trees (missing ones are skipped) */
	size_t n_dirs;
	const char *const *files;  /* read-only files (missing ones are skipped) */
	size_t n_files;
	const uint16_t *ports;     /* TCP ports connect() may reach */
	size_t n_ports;
	bool tcp;                  /* false: no TCP connect at all */
};

/* The account the process will run as: uid, gid and home directory of
 * USER when running as root (NULL: PGSANDBOX_DEFAULT_USER), else of the
 * current user (then USER, if given, must be that user).  -ENOENT naming
 * the fix when the user does not exist, -EPERM when it is root or when a
 * non-root process is asked to switch. */
int pgsandbox_account(const char *user, uid_t *ret_uid, gid_t *ret_gid, char *ret_home, size_t len);

/* Enter the sandbox for good.  Every file named must be readable by the
 * new user (-EACCES naming the file and the fix otherwise).  Returns 1 when
 * everything is in force, 0 when the kernel offers no Landlock (only the
 * identity, no_new_privs and dumpable are then in force), or a negative
 * errno with a sentence. */
int pgsandbox_enter(const struct pgsandbox *s);
