/* ssh.h - what the relay, the vault store, the drill and bascule trust-host
 * share about SSH (libssh2): target URLs, TCP connection, credentials read
 * into memory, and strict host-key checking against a known_hosts file. */
#pragma once
#include <stdbool.h>
#include <limits.h>
#include <stddef.h>
#include <libssh2.h>

struct ssh_url {
	char user[65];
	char host[256];
	int port;
	char path[4096];
};

/* Parse ssh://user@host[:port]/DIR (host may be [v6]).  -EINVAL with a
 * sentence on error. */
int ssh_url_parse(const char *url, struct ssh_url *ret);
/* The same for SCHEME://user@host[:port]/DIR (sftp for vaults). */
int ssh_url_parse_scheme(const char *url, const char *scheme, struct ssh_url *ret);
/* Resolve HOST and start a TCP connection (non-blocking if NONBLOCK: the fd
 * may still be connecting).  Sets keepalive and a user timeout so a dead
 * link is noticed within ~30 s.  Returns the fd or a negative errno. */
int ssh_tcp_connect(const char *host, int port, bool nonblock);
/* "SHA256:<base64>" of the session's host key, as ssh-keygen -l prints it. */
void ssh_fingerprint(LIBSSH2_SESSION *s, char *buf, size_t len);
/* The host key's type name ("ssh-ed25519") and libssh2 knownhost type bits. */
const char *ssh_hostkey_type(LIBSSH2_SESSION *s, int *ret_kh_type);
#define SSH_IDENTITY_MAX (64u << 10)
#define SSH_KNOWN_HOSTS_MAX (16u << 20)

/* An SSH identity and a known_hosts file read into memory, so that a process
 * can read them and then give up opening files (docs/architecture.md,
 * "Privilege separation").  The paths are kept for messages only. */
struct ssh_creds {
	char *identity;          /* private key text; wiped by ssh_creds_free */
	size_t identity_len;
	char *known_hosts;       /* NULL if the file does not exist: every host is unknown */
	size_t known_hosts_len;
	char identity_path[PATH_MAX], known_hosts_path[PATH_MAX];
};

/* Read IDENTITY and KNOWN_HOSTS (either may be NULL) into *RET; a negative
 * errno with a sentence if a file that exists cannot be read (*RET untouched). */
int ssh_creds_load(const char *identity, const char *known_hosts, struct ssh_creds *ret);
/* Wipe and free; accepts NULL and a zeroed struct. */
void ssh_creds_free(struct ssh_creds *c);
/* Check the session's host key for HOST:PORT against known_hosts TEXT (NULL:
 * none), named KNOWN_HOSTS in messages; as ssh_check_hostkey. */
int ssh_check_hostkey_text(LIBSSH2_SESSION *s, const char *text, size_t len, const char *known_hosts,
			   const char *host, int port);
/* Check the session's host key for HOST:PORT in KNOWN_HOSTS.  0 if it
 * matches; -ENOKEY if the host is unknown, -EKEYREJECTED if its key
 * changed: in both cases the sentence gives the fingerprint and the command
 * to trust the key after checking it. */
int ssh_check_hostkey(LIBSSH2_SESSION *s, const char *known_hosts, const char *host, int port);
/* The known_hosts name of HOST:PORT: "host" for 22, "[host]:port" otherwise. */
void ssh_host_entry(const char *host, int port, char *buf, size_t len);
/* Last libssh2 error of the session as text. */
const char *ssh_error(LIBSSH2_SESSION *s);
/* Blocking session to U: TCP, handshake, strict host-key check against
 * KNOWN_HOSTS, public-key authentication with IDENTITY.  WHAT names the
 * peer in messages ("host web1", "the vault"). */
/* The same with credentials already in memory (no file is opened). */
int ssh_open_creds(const struct ssh_url *u, const struct ssh_creds *c, const char *what,
		   LIBSSH2_SESSION **ret, int *ret_fd);
int ssh_open(const struct ssh_url *u, const char *identity, const char *known_hosts, const char *what,
	     LIBSSH2_SESSION **ret, int *ret_fd);
