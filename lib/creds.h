/* creds.h - Unix users and groups: the control socket's permissions, the
 * unprivileged user of the network children (relay_user). */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

/* The gid of group NAME; -ENOENT with a sentence if it does not exist. */
int creds_group_gid(const char *name, gid_t *ret);
/* The uid and primary gid of user NAME; -ENOENT with a sentence if it does
 * not exist (outputs untouched on failure). */
int creds_user(const char *name, uid_t *ret_uid, gid_t *ret_gid);
/* Is UID (whose primary group is GID) a member of group WANT? */
bool creds_in_group(uid_t uid, gid_t gid, gid_t want);
