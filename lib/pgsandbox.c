/* pgsandbox.c - unprivileged identity, no_new_privs and a Landlock ruleset
 * for the process that speaks to PostgreSQL. */
#include "pgsandbox.h"
#include "err.h"
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Landlock ABI constants newer than the installed kernel headers (the
 * kernel tells which ABI it speaks; an older one ignores nothing we ask
 * for, because we only ask for what its ABI version has). */
#define LL_FS_ABI1 ((1ULL << 13) - 1)      /* EXECUTE .. MAKE_SYM */
#define LL_FS_REFER (1ULL << 13)           /* ABI 2 */
#define LL_FS_TRUNCATE (1ULL << 14)        /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15)       /* ABI 5 */
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR (1ULL << 3)
#define LL_NET_BIND_TCP (1ULL << 0)        /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ULL << 1)
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2

/* LeakSanitizer lists the threads in /proc/self/task at exit, which needs
 * a dumpable process and /proc: sanitizer builds (tests) keep both. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#else
#define SANITIZER_BUILD 0
#endif

struct ll_ruleset_attr {
	uint64_t handled_access_fs, handled_access_net, scoped;
};
struct ll_path_attr {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));
struct ll_port_attr {
	uint64_t allowed_access, port;
};

int pgsandbox_account(const char *user, uid_t *ret_uid, gid_t *ret_gid, char *ret_home, size_t len)
{
	struct passwd *pw;

	errno = 0;
	if (geteuid() == 0) {
		const char *u = user ? user : PGSANDBOX_DEFAULT_USER;
		if (!(pw = getpwnam(u)))
			return err_set(ENOENT, "user '%s' does not exist: create it (useradd --system --no-create-home "
				       "--shell /usr/sbin/nologin %s) or name another unprivileged user with --user",
				       u, u);
		if (pw->pw_uid == 0)
			return err_set(EPERM, "--user %s is root: name an unprivileged user (pgstream parses "
				       "network input and must not run as root)", u);
	} else {
		if (!(pw = getpwuid(geteuid())))
			return err_set(ENOENT, "the current user (uid %u) has no passwd entry", (unsigned)geteuid());
		if (user && strcmp(user, pw->pw_name))
			return err_set(EPERM, "--user %s: only root can switch to another user (running as %s)",
				       user, pw->pw_name);
	}
	*ret_uid = pw->pw_uid;
	*ret_gid = pw->pw_gid;
	snprintf(ret_home, len, "%s", pw->pw_dir ? pw->pw_dir : "/");
	return 0;
}

static int switch_user(const char *user)
{
	uid_t uid, ruid, euid, suid;
	gid_t gid;
	char home[512];
	int r;

	if ((r = pgsandbox_account(user, &uid, &gid, home, sizeof(home))) < 0)
		return r;
	if (geteuid() != 0)
		return 0;
	if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return err_set(errno, "cannot switch to user %s: %s", user ? user : PGSANDBOX_DEFAULT_USER,
			       strerror(errno));
	if (getresuid(&ruid, &euid, &suid) < 0 || ruid != uid || euid != uid || suid != uid ||
	    setuid(0) == 0)
		return err_set(EPERM, "the switch to user %s did not hold", user ? user : PGSANDBOX_DEFAULT_USER);
	return 0;
}

static int add_path(int ruleset, const char *path, uint64_t access)
{
	struct ll_path_attr a = { .allowed_access = access };
	int r = 0;

	if ((a.parent_fd = open(path, O_PATH | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 0 : err_set(errno, "sandbox: cannot open %s: %s", path, strerror(errno));
	if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &a, 0) < 0)
		r = err_set(errno, "sandbox: cannot allow %s: %s", path, strerror(errno));
	close(a.parent_fd);
	return r;
}

static int add_port(int ruleset, uint16_t port)
{
	struct ll_port_attr a = { .allowed_access = LL_NET_CONNECT_TCP, .port = port };

	if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_NET_PORT, &a, 0) < 0)
		return err_set(errno, "sandbox: cannot allow TCP port %u: %s", port, strerror(errno));
	return 0;
}

int pgsandbox_enter(const struct pgsandbox *s)
{
	struct ll_ruleset_attr attr = { 0 };
	int abi, ruleset = -1, r;

	if ((r = switch_user(s->user)) < 0)
		return r;
	if (prctl(PR_SET_DUMPABLE, SANITIZER_BUILD, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_set(errno, "sandbox: prctl: %s", strerror(errno));
	/* Files libpq will open must be readable as the new user: say so now
	 * rather than as a puzzling libpq error later. */
	for (size_t i = 0; i < s->n_files; i++) {
		int fd = open(s->files[i], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0 && errno != ENOENT)
			return err_set(EACCES, "%s cannot be read by the user pgstream runs as (uid %u): %s; "
				       "make it that user's (chown) and keep it mode 0600", s->files[i],
				       (unsigned)getuid(), strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1)
		return 0;
	attr.handled_access_fs = LL_FS_ABI1 | (abi >= 2 ? LL_FS_REFER : 0) | (abi >= 3 ? LL_FS_TRUNCATE : 0) |
				 (abi >= 5 ? LL_FS_IOCTL_DEV : 0);
	if (abi >= 4)
		attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
	if (abi >= 6)
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
	ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (ruleset < 0)
		return err_set(errno, "sandbox: landlock_create_ruleset: %s", strerror(errno));
	r = add_path(ruleset, "/etc", LL_FS_READ_FILE | LL_FS_READ_DIR);
	if (r == 0 && SANITIZER_BUILD)
		r = add_path(ruleset, "/proc", LL_FS_READ_FILE | LL_FS_READ_DIR);
	for (size_t i = 0; r == 0 && i < s->n_dirs; i++)
		r = add_path(ruleset, s->dirs[i], LL_FS_READ_FILE | LL_FS_READ_DIR);
	for (size_t i = 0; r == 0 && i < s->n_files; i++)
		r = add_path(ruleset, s->files[i], LL_FS_READ_FILE);
	if (abi >= 4 && s->tcp) {
		for (size_t i = 0; r == 0 && i < s->n_ports; i++)
			r = add_port(ruleset, s->ports[i]);
		if (r == 0)
			r = add_port(ruleset, 53); /* the resolver's TCP fallback */
	}
	if (r == 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
		r = err_set(errno, "sandbox: landlock_restrict_self: %s", strerror(errno));
	close(ruleset);
	if (r == 0 && chdir("/") < 0)
		r = err_set(errno, "sandbox: chdir /: %s", strerror(errno));
	return r < 0 ? r : 1;
}
