/* cmd.h - subcommands of the bascule program; one file each. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct site_key;

struct global_opts {
	const char *config;   /* -c FILE */
	const char *socket;   /* --socket PATH */
	int verbose;
};

extern struct global_opts arg_global;

/* Each returns an EXIT_* code. ARGV[0] is the subcommand name. */
int cmd_keygen(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_recv(int argc, char **argv);
int cmd_replica(int argc, char **argv);
int cmd_sync(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_trust_host(int argc, char **argv);
int cmd_relay(int argc, char **argv);    /* run by basculed for ssh:// targets */
int cmd_drill(int argc, char **argv);
int cmd_space(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_pgstream(int argc, char **argv); /* tools/cmd_pgstream.c */

int cmd_ship(int argc, char **argv);     /* tools/cmd_ship.c */
int cmd_intake(int argc, char **argv);   /* tools/cmd_intake.c */

/* A passphrase from FILE (mode 0600, first line) or typed on the terminal
 * after PROMPT, without echo (twice when CONFIRM); BUF is the caller's to
 * wipe.  -ENOTTY naming --passphrase-file when there is no terminal. */
int cmd_read_passphrase(const char *file, bool confirm, const char *prompt, char *buf, size_t len);

/* Report ERR (negative errno) once, as "bascule WHAT: message", and return
 * the matching exit code. */
int cmd_fail(const char *what, int err);
/* Send REQ to the daemon at SOCK and return its answer (owned by the caller)
 * if it says ok; else NULL after printing why as "bascule WHAT: …", with
 * *RET_CODE the exit code (the daemon's "exit" for a refusal, 8 when it
 * cannot be reached). */
json_t *cmd_ctl(const char *what, const char *sock, json_t *req, int *ret_code);
/* The same, waiting TIMEOUT_MS for the answer (cmd_ctl: 10 s). */
json_t *cmd_ctl_wait(const char *what, const char *sock, json_t *req, int timeout_ms, int *ret_code);
/* Resolve the control socket: --socket, else the config's control_socket. */
int cmd_socket_path(char *buf, unsigned len);

#define CMD_SITE_KEY "/etc/bascule/site.key" /* --key's default */
/* Load the site key FILE (NULL: --key was not given, CMD_SITE_KEY).  Errors
 * as key_load(), all of them key errors (exit 4); the message says --key
 * chooses another file when the default was used. */
int cmd_key_load(const char *file, struct site_key **ret);
