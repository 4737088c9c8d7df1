/* recv_ssh.h - `bascule recv` run by sshd under an authorized_keys command=
 * (docs/secondary-setup.md): what the client asked for, against what the
 * forced command line decides. */
#pragma once
#include <stdint.h>

#include <stdbool.h>
#include <stddef.h>

struct recv_opts {
	const char *root;      /* --root */
	const char *keyfile;   /* --key */
	uint64_t keep_epochs;  /* --keep-epochs */
	uint64_t keep_time;    /* --keep-time, usec */
};

/* Look at SSH_ORIGINAL_COMMAND when sshd (our parent or grandparent) forced
 * this command.  Not under a forced command: return 0 (serve).
 *
 * The daemon's request ("... recv --root 'DIR' --keep-epochs N --keep-time
 * Tms", daemon/target.c, relay_argv): warn on stderr, which the daemon logs as
 * "remote: …", for each of its options that the forced command overrides;
 * return 0 (serve).
 *
 * Anything else is a person testing the key by hand (`ssh bascule@host id`):
 * print on stdout whether the receiver is ready (site key id, replica
 * directory, retention) without opening the replica, so no lock is taken
 * and a live receiver is not taken over; return 1 with *RET_EXIT set to 0
 * (ready), 4 (site key unusable) or 1 (replica directory unusable). */
int recv_ssh_check(const struct recv_opts *o, int *ret_exit);

/* Under an sshd forced command: the value of option OPT in the daemon's
 * request (SSH_ORIGINAL_COMMAND), into BUF.  False when not under sshd or
 * absent: for options the secondary's command= leaves to the primary. */
bool recv_ssh_requested(const char *opt, char *buf, size_t len);
