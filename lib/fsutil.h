/* fsutil.h - crash-safe file primitives: every piece of state Bascule keeps is
 * written with fs_write_atomic (temp file, fsync, rename, fsync dir). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Write LEN bytes to PATH atomically and durably.  MODE applies to a new file. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* The same for NAME (no '/') in directory DIRFD, which is fsync'd.  The
 * temporary NAME.tmp is created O_EXCL|O_NOFOLLOW: a leftover regular file
 * is removed first, anything else there (a symbolic link planted to have the
 * write go elsewhere) is refused with -EEXIST and left alone.  UID and GID,
 * unless -1, become the new file's owner (fchown before the rename). */
int fs_write_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
		       uid_t uid, gid_t gid);
/* fs_write_atomic_at in two steps, so that the fsync of the new content can
 * go with others (fs_sync_all): begin writes NAME.tmp, not fsync'd, and
 * gives its fd in *RET_FD (the caller fsyncs and closes it); end, once it
 * is durable, renames it over NAME and fsyncs DIRFD. */
int fs_write_atomic_begin_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
			     uid_t uid, gid_t gid, int *ret_fd);
int fs_write_atomic_end_at(int dirfd, const char *name);
#define FS_SYNC_MAX 32
/* fsync (fdatasync where DATA_ONLY) the N fds (at most FS_SYNC_MAX) at once,
 * the caller and threads started on first use and kept: the file system
 * commits them together, in about the time of one.  0 once all are
 * durable, else the first negative errno.  Not in a child forked from a
 * process that used it, before exec. */
int fs_sync_all(const int *fds, const bool *data_only, size_t n);
/* Read a whole file of at most MAX bytes; *ret is malloc'd and NUL-terminated.
 * -EFBIG if larger. */
int fs_read_all(const char *path, size_t max, char **ret, size_t *ret_len);
int fs_fsync_dir(const char *dir);
/* fsync the directory that contains PATH. */
int fs_fsync_parent(const char *path);
int fs_mkdir_p(const char *path, mode_t mode);
/* Full pread/pwrite: retry on short I/O and EINTR; a short read at EOF
 * returns the count read. */
ssize_t fs_pread_full(int fd, void *buf, size_t len, uint64_t off);
int fs_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int fs_write_full(int fd, const void *buf, size_t len);
/* LEN bytes of the file open on IN_FD from OFF into the pipe OUT_FD, by
 * splice(2): the file's cached pages are handed to the pipe, not copied.
 * 0, -EINVAL when splice cannot move them (write them instead; nothing
 * was moved then), or the pipe's -errno (-EPIPE: its reader is gone). */
int fs_splice_full(int in_fd, uint64_t off, int out_fd, size_t len);
/* Take an exclusive flock on PATH (created 0600); returns the fd or -EBUSY. */
int fs_lock(const char *path);
/* Size of a regular file or block device open on FD. */
int fs_fd_size(int fd, uint64_t *ret);
/* Join DIR and NAME into BUF; -ENAMETOOLONG if it does not fit. */
int fs_path(char *buf, size_t len, const char *dir, const char *name);
/* PATH made absolute against the working directory (a command-line path such
 * as --root demo/secondary), without trailing slashes; BUF untouched on error
 * (-ENAMETOOLONG, or getcwd's error). */
int fs_abspath(const char *path, char *buf, size_t len);
/* Remove NAME in DIRFD and, if it is a directory, everything beneath it
 * (no link followed; DEPTH 0 from the caller).  0 if it is gone. */
int fs_remove_tree_at(int dirfd, const char *name, int depth);
/* 1 if directory DIRFD holds nothing but . and .., 0 if it holds
 * something, or a negative errno.  DIRFD stays open and its own. */
int fs_dir_empty(int dirfd);
