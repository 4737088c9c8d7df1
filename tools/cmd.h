/* cmd.h - subcommands of the bascule program; one file each. */
#pragma once
#include <stdbool.h>

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
int cmd_drill(int argc, char **argv);   /* failover/cmd_drill.c */
int cmd_report(int argc, char **argv);

/* Report ERR (negative errno) once, as "bascule WHAT: message", and return
 * the matching exit code. */
int cmd_fail(const char *what, int err);
/* Resolve the control socket: --socket, else the config's control_socket. */
int cmd_socket_path(char *buf, unsigned len);
