/* creds.h - Unix users and groups, for the control socket's permissions. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

/* The gid of group NAME; -ENOENT with a sentence if it does not exist. */
int creds_group_gid(const char *name, gid_t *ret);
/* Is UID (whose primary group is GID) a member of group WANT? */
bool creds_in_group(uid_t uid, gid_t gid, gid_t want);
