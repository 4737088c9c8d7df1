/* sandbox.c - privilege drop and Landlock for the network children (see
 * sandbox.h).  Landlock is used through its three system calls; the
 * constants of ABIs newer than the build's <linux/landlock.h> are spelled
 * out here, and each right is asked for only if the running kernel's ABI
 * knows it, so one binary works from ABI 1 (Linux 5.13) to the newest. */
#include "sandbox.h"
#include "err.h"
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)   /* ABI 3 */
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)  /* ABI 5 */
#endif
#define LL_NET_BIND_TCP (1ULL << 0)                /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)         /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ULL << 1)
#define LL_RULE_NET_PORT 2

/* LeakSanitizer lists the threads in /proc/self/task at exit, which needs
 * a dumpable process and /proc: sanitizer builds (tests) keep both. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#else
#define SANITIZER_BUILD 0
#endif

/* struct landlock_ruleset_attr as of ABI 6; an older kernel accepts it
 * as long as the fields it does not know are 0. */
struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

struct ll_net_port_attr {
	uint64_t allowed_access;
	uint64_t port;
};

#define FS_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define FS_FILE_RIGHTS (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
			LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE | \
			LANDLOCK_ACCESS_FS_IOCTL_DEV)
/* What a writer may do beneath its directories: no devices, no FIFOs,
 * sockets or symlinks, nothing to execute. */
#define FS_WRITE (FS_READ | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_FILE | \
		  LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_DIR | \
		  LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_TRUNCATE)

/* The kernel's Landlock ABI, or -ENOSYS / -EOPNOTSUPP without it (test
 * hook: BASCULE_TEST_NO_LANDLOCK=1 plays a kernel without it). */
static int ll_abi(void)
{
	long v;

	if (getenv("BASCULE_TEST_NO_LANDLOCK"))
		return -ENOSYS;
	v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	return v < 0 ? -errno : (int)v;
}

/* Every filesystem right the kernel's ABI knows: what the ruleset handles
 * (everything not granted below is denied). */
static uint64_t ll_fs_rights(int abi)
{
	uint64_t r = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1 */

	if (abi >= 2)
		r |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		r |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		r |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return r;
}

static int ll_add_path(int rs, int fd, uint64_t access, uint64_t handled)
{
	struct landlock_path_beneath_attr pb = { .parent_fd = fd };
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		access &= FS_FILE_RIGHTS;
	pb.allowed_access = access & handled;
	if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
		return -errno;
	return 0;
}

/* The resolver's files that link out of /etc and /usr (resolv.conf is often
 * /run/systemd/resolve/stub-resolv.conf): readable where they point. */
static int ll_add_resolver(int rs, uint64_t handled)
{
	static const char *const files[] = { "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
					     "/etc/host.conf", "/etc/gai.conf", NULL };
	char real[PATH_MAX];
	int r = 0;

	for (size_t i = 0; files[i] && r == 0; i++) {
		int fd;
		if (!realpath(files[i], real) || !strncmp(real, "/etc/", 5) || !strncmp(real, "/usr/", 5))
			continue;
		if ((fd = open(real, O_PATH | O_CLOEXEC)) < 0)
			continue;
		r = ll_add_path(rs, fd, LANDLOCK_ACCESS_FS_READ_FILE, handled);
		close(fd);
	}
	return r;
}

/* Build the ruleset (before the uid changes: the paths may be reachable
 * by root only).  Returns its fd, or -ENOSYS/-EOPNOTSUPP without Landlock,
 * or another negative errno with a sentence. */
static int ll_build(const struct sandbox *sb, int abi)
{
	struct ll_ruleset_attr ra = { .handled_access_fs = ll_fs_rights(abi) };
	const char *ro[SANDBOX_MAX_PATHS + 3]; /* /etc, /usr, and /proc in sanitizer builds */
	size_t n_ro = 0;
	int rs, r = 0;

	if (abi >= 4)
		ra.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
	if (abi >= 6)
		ra.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
	rs = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof(ra), 0);
	if (rs < 0)
		return err_set(errno, "%s: cannot create a Landlock ruleset: %s", sb->prog, strerror(errno));
	if (sb->resolver) {
		ro[n_ro++] = "/etc";
		ro[n_ro++] = "/usr";
	}
	for (size_t i = 0; i < sb->n_ro; i++)
		ro[n_ro++] = sb->ro[i];
	if (SANITIZER_BUILD)
		ro[n_ro++] = "/proc";
	for (size_t i = 0; i < n_ro && r == 0; i++) {
		int fd = open(ro[i], O_PATH | O_CLOEXEC);
		if (fd < 0)
			continue; /* nothing there to allow */
		if ((r = ll_add_path(rs, fd, FS_READ, ra.handled_access_fs)) < 0)
			r = err_set(-r, "%s: Landlock rule for %s: %s", sb->prog, ro[i], strerror(-r));
		close(fd);
	}
	for (size_t i = 0; i < sb->n_rw && r == 0; i++)
		if ((r = ll_add_path(rs, sb->rw_fd[i], FS_WRITE, ra.handled_access_fs)) < 0)
			r = err_set(-r, "%s: Landlock rule for a directory: %s", sb->prog, strerror(-r));
	if (r == 0 && sb->resolver)
		r = ll_add_resolver(rs, ra.handled_access_fs);
	for (size_t i = 0; i < sb->n_ports && r == 0 && abi >= 4; i++) {
		struct ll_net_port_attr np = { .allowed_access = LL_NET_CONNECT_TCP, .port = sb->tcp_ports[i] };
		if (syscall(SYS_landlock_add_rule, rs, LL_RULE_NET_PORT, &np, 0) < 0)
			r = err_set(errno, "%s: Landlock rule for TCP port %u: %s", sb->prog,
				    (unsigned)sb->tcp_ports[i], strerror(errno));
	}
	if (r < 0) {
		close(rs);
		return r;
	}
	return rs;
}

int sandbox_account(const struct sandbox *sb, uid_t *ret_uid, gid_t *ret_gid, char *ret_home, size_t len)
{
	const char *key = sb->user_key ? sb->user_key : "relay_user";
	struct passwd *pw;

	errno = 0;
	if (getuid() == 0 || geteuid() == 0) {
		if (!(pw = getpwnam(sb->user)))
			return err_set(ENOENT, "%s '%s' does not exist: create it with `useradd --system %s`, or "
					       "name another unprivileged user with %s", key, sb->user, sb->user, key);
		if (pw->pw_uid == 0)
			return err_set(EINVAL, "%s '%s' is root: processes that read network input must run as "
					       "an unprivileged user (`useradd --system bascule`)", key, sb->user);
	} else {
		if (!(pw = getpwuid(getuid())))
			return err_set(ENOENT, "the current user (uid %u) has no passwd entry", (unsigned)getuid());
		if (sb->user && sb->user_given && strcmp(sb->user, pw->pw_name))
			return err_set(EPERM, "%s %s: only root can switch to another user (running as %s)", key,
				       sb->user, pw->pw_name);
	}
	*ret_uid = pw->pw_uid;
	*ret_gid = pw->pw_gid;
	if (ret_home)
		snprintf(ret_home, len, "%s", pw->pw_dir ? pw->pw_dir : "/");
	return 0;
}

int sandbox_enter(const struct sandbox *sb, char *note, size_t note_len)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	int abi = ll_abi(), rs = -1, r = 0;

	if (note && note_len)
		note[0] = 0;
	if ((getuid() == 0 || geteuid() == 0) && (r = sandbox_account(sb, &uid, &gid, NULL, 0)) < 0)
		return r;
	if (abi > 0 && (rs = ll_build(sb, abi)) < 0)
		return rs;
	if (getuid() == 0 || geteuid() == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
			r = err_set(errno, "%s: cannot become user %s: %s", sb->prog, sb->user, strerror(errno));
			goto out;
		}
		if (setuid(0) == 0) {
			r = err_set(EPERM, "%s: still able to become root after dropping to %s", sb->prog, sb->user);
			goto out;
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_DUMPABLE, SANITIZER_BUILD, 0, 0, 0) < 0) {
		r = err_set(errno, "%s: prctl: %s", sb->prog, strerror(errno));
		goto out;
	}
	if (rs >= 0 && syscall(SYS_landlock_restrict_self, rs, 0) < 0) {
		r = err_set(errno, "%s: cannot enter the Landlock sandbox: %s", sb->prog, strerror(errno));
		goto out;
	}
	if (rs < 0 && note)
		snprintf(note, note_len, "this kernel has no Landlock (%s): running as uid %u with "
					 "no_new_privs but without a filesystem sandbox (docs/architecture.md)",
			 strerror(-abi), (unsigned)getuid());
out:
	if (rs >= 0)
		close(rs);
	return r;
}

void sandbox_probe(const char *prog)
{
	const char *env = getenv("BASCULE_RELAY_PROBE");
	char list[4096], *save = NULL;

	if (!env)
		return;
	fprintf(stderr, "%s: probe: uid %u gid %u, dumpable %d, no_new_privs %d, landlock abi %d\n", prog,
		(unsigned)getuid(), (unsigned)getgid(), prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
		prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), ll_abi());
	snprintf(list, sizeof(list), "%s", env);
	for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
		int fd = open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0) {
			fprintf(stderr, "%s: probe: open %s: ok\n", prog, p);
			close(fd);
		} else
			fprintf(stderr, "%s: probe: open %s: errno %d (%s)\n", prog, p, errno, strerror(errno));
	}
}
