/* creds.c - user and group lookups with the reentrant NSS calls. */
#include "creds.h"
#include "err.h"
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <string.h>

int creds_group_gid(const char *name, gid_t *ret)
{
	struct group grp, *res = NULL;
	char buf[4096];

	if (getgrnam_r(name, &grp, buf, sizeof(buf), &res) != 0 || !res)
		return err_set(ENOENT, "Unix group '%s' (control_group/monitor_group) does not exist", name);
	*ret = grp.gr_gid;
	return 0;
}

int creds_user(const char *name, uid_t *ret_uid, gid_t *ret_gid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int r = getpwnam_r(name, &pw, buf, sizeof(buf), &res);

	if (r != 0)
		return err_set(r, "cannot look up user '%s': %s", name, strerror(r));
	if (!res)
		return err_set(ENOENT, "user '%s' does not exist", name);
	*ret_uid = pw.pw_uid;
	*ret_gid = pw.pw_gid;
	return 0;
}

bool creds_in_group(uid_t uid, gid_t gid, gid_t want)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	gid_t groups[256];
	int n = 256;

	if (gid == want)
		return true;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
		return false;
	for (int i = 0; i < n; i++)
		if (groups[i] == want)
			return true;
	return false;
}
