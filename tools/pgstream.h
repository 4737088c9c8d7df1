/* pgstream.h - `bascule pgstream`: the child that speaks PostgreSQL's
 * replication protocol (pgstream.c) and the standalone owner that runs it
 * and writes WAL and base backups into directories (pgdir.c). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct pgstream_opts {
	const char *conninfo;
	const char *slot;          /* physical slot, created if missing (NULL: none) */
	const char *appname;       /* application_name (NULL: fallback "bascule") */
	const char *user;          /* --user: who the child runs as */
	int status_interval_ms;    /* standby status updates at least this often */
	int connect_timeout_ms;
	/* standalone mode */
	const char *to_dir;        /* --to-dir: WAL segments as pg_receivewal writes them */
	const char *backup_dir;    /* --base-backup: tar files and backup_manifest */
	uint64_t endpos;           /* --endpos: stop once WAL up to here is durable (0: never) */
	const char *label;
	bool fast_checkpoint, progress;
	int verbose;
};

/* The child: connect (after sandbox_enter), say HELLO on stdout, carry out
 * the commands read on stdin.  Returns the exit code (the pipe error's). */
int pgstream_child_run(const struct pgstream_opts *o);

/* The standalone owner: start CHILD_ARGV (this program as the child) with
 * pipes, write what it sends under o->to_dir or o->backup_dir, report WAL
 * flushed once fsynced.  Returns the exit code. */
int pgstream_dir_run(const struct pgstream_opts *o, char *const *child_argv);

/* SIGTERM and SIGINT blocked and readable on the returned signalfd (the
 * way both halves stop), SIGPIPE ignored (a closed pipe is an EPIPE). */
int pgstream_signalfd(void);
