/* intake_tool.h - the operator's side of the hybrid PRA (docs/hybrid.md):
 * what `bascule intake ls|check|restore` know of a client's intake
 * directory, read with the client's public key only (tools/intake_scan.c). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "clientkey.h"
#include "intake.h"

/* Where an intake lives (tools/intake_store.c): DIR of every intake
 * command is a directory, an s3://BUCKET/PREFIX URL (then the --s3-*
 * options say how to reach it), or a YAML file naming one (intake:,
 * s3_endpoint:, s3_region:, s3_credentials:, s3_ca:, s3_url_style:; etc/intake-s3.yaml).
 * Each client is NAME/client.pub and NAME/incoming/ under it. */
struct intake_s3_args {
	const char *endpoint, *region, *credentials, *ca, *url_style;
};
extern struct intake_s3_args arg_intake_s3;
enum { O_IS3_ENDPOINT = 2000, O_IS3_REGION, O_IS3_CREDENTIALS, O_IS3_CA, O_IS3_URL_STYLE };
#define INTAKE_STORE_OPTS                                                                    \
	{ "s3-endpoint", required_argument, NULL, O_IS3_ENDPOINT },                          \
	{ "s3-region", required_argument, NULL, O_IS3_REGION },                              \
	{ "s3-credentials", required_argument, NULL, O_IS3_CREDENTIALS },                    \
	{ "s3-ca", required_argument, NULL, O_IS3_CA },                                      \
	{ "s3-url-style", required_argument, NULL, O_IS3_URL_STYLE }
#define INTAKE_STORE_USAGE                                                                   \
	"DIR: the intake directory, or s3://BUCKET/PREFIX with --s3-endpoint URL\n"          \
	"  --s3-credentials FILE (0600) [--s3-region R] [--s3-ca FILE]\n"                   \
	"  [--s3-url-style path|virtual], or a file naming an\n"                              \
	"  S3 intake and its store (etc/intake-s3.yaml).\n"
/* 1 if getopt's C (with ARG) was one of INTAKE_STORE_OPTS, else 0. */
int intake_store_opt(int c, const char *arg);
/* The lock_for of the intake configuration file DIR (usec; 0 if DIR is not
 * such a file or the file gives none). */
int intake_store_lock_for(const char *dir, uint64_t *ret);
/* Whether DIR names an S3 intake (a URL or a configuration file). */
bool intake_store_s3(const char *dir);
/* Open the store of intake DIR at SUB ("" its root, "NAME/incoming"). */
struct vstore;
int intake_store_open(const char *dir, const char *sub, struct vstore **ret);
/* The enrolled public key of client NAME: -ENOENT with a sentence when it
 * is not enrolled. */
int intake_store_pub(const char *dir, const char *name, struct client_pub *ret);
/* The clients of an S3 intake DIR, as intake_clients. */
int intake_store_clients(const char *dir, char ***ret, size_t *ret_n);

enum night_state {
	NIGHT_OK,         /* verified: signature, objects, chain down to a full night */
	NIGHT_INCOMPLETE, /* manifest shorter than itself: an upload cut; never counted */
	NIGHT_BAD,        /* manifest altered, malformed or not this client's */
	NIGHT_DAMAGED,    /* an object missing, truncated or altered */
	NIGHT_BROKEN,     /* its base night is missing, bad, or not the one it names */
};

struct intake_night {
	char night[11];
	enum night_state state;
	char problem[512];
	bool have_m;
	struct intake_manifest m;
	unsigned chain;   /* deltas since the full night */
	char full[11];    /* the full night its chain starts at */
	char tamper[512]; /* S3: what else the store keeps under its names (an overwrite as a
			   * newer version, a delete marker); its genuine versions are intact
			   * and are what is read; "" if nothing */
};

struct intake_client {
	char name[NAME_MAX_LEN + 1];
	char dir[4096];   /* DIR/NAME/incoming (DIR: as given, a directory or an S3 intake) */
	struct client_pub pub;
	char key_id[17];
	struct intake_night *nights; /* ascending */
	size_t n;
	uint64_t orphan_objects, orphan_bytes; /* objects of runs no manifest names */
	uint64_t stored;  /* bytes of the nights that count */
};

/* Read client NAME of intake DIR: its enrolled key, every manifest
 * (verified), the chains, and, with READ_DATA, every object's digest
 * (else sizes only).  Problems of nights are in their state, not errors;
 * an error is a client that cannot be read at all (not enrolled: -ENOENT
 * with a sentence). */
int intake_scan(const char *dir, const char *name, bool read_data, struct intake_client *ret);
void intake_client_free(struct intake_client *c);
/* Names of the clients enrolled in DIR (directories with a client.pub),
 * sorted; *RET malloc'd array of malloc'd strings. */
int intake_clients(const char *dir, char ***ret, size_t *ret_n);
/* the clients a command works on: CLIENT alone when not NULL, else every
 * enrolled client of DIR (intake_clients); free with intake_clients_free */
int intake_client_list(const char *dir, const char *client, char ***ret, size_t *ret_n);
void intake_clients_free(char **names, size_t n);
/* The newest night that counts (state OK), or NULL. */
const struct intake_night *intake_newest(const struct intake_client *c);
const char *intake_state_name(enum night_state s);

/* What `intake check` says of client NAME at NOW (microseconds): state 0 OK,
 * 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one sentence, Nagios perfdata. */
struct intake_verdict {
	int state;
	char text[1024];
	char perf[256];
	char newest[11];     /* the newest night that counts, "" if none */
	char bad_night[11];  /* the first night that fails its check, "" if none */
	enum night_state bad_state;
	uint64_t age;        /* usec: of the newest night that counts */
};
void intake_judge(const char *dir, const char *name, bool read, uint64_t now, uint64_t max_age,
		  uint64_t warn_age, struct intake_verdict *v);

int intake_add(int argc, char **argv);
int intake_ls(int argc, char **argv);
int intake_check(int argc, char **argv);
int intake_restore(int argc, char **argv);
int intake_open_key(int argc, char **argv);
int intake_prune(int argc, char **argv);
int intake_metrics(int argc, char **argv);

/* What intake_rebuild rebuilds: night NIGHT (NULL: the newest that counts)
 * of CLIENT at intake DIR, with the decryption key KEYFILE (its passphrase
 * from PFILE, or typed), into the new file TO (mode 0600, created
 * exclusively, never overwritten). */
struct intake_rebuild_req {
	const char *dir, *client, *night, *keyfile, *pfile, *to;
	/* --load: with OUT, the night is not written to TO but handed to OUT
	 * in order as it is rebuilt (its digest checked once it has all gone
	 * there: a mismatch is -EBADMSG after the fact), TO naming only the
	 * scratch files (TO.restoring-N, not made durable); START is called
	 * first, once the key opened the chain and every object of it matched
	 * its signed digest.  Both return 0 or a negative errno with a
	 * sentence, which intake_rebuild returns. */
	int (*start)(void *ctx, const char *night);
	int (*out)(void *ctx, const uint8_t *p, size_t n);
	void *ctx;
	/* With OUT, PREPARE (if not NULL) is called once the chain's objects
	 * matched their signed digests, while the key may still be opening
	 * (a wrong key then fails after it: what it made is the caller's to
	 * undo); START only once the key opened the chain. */
	int (*prepare)(void *ctx);
	/* The key already being opened (intake_key_begin), or NULL: opened
	 * here from KEYFILE and PFILE.  intake_rebuild always ends it. */
	struct intake_keyjob *key;
};
/* Open the client's decryption key KEYFILE in a thread (Argon2id: about
 * 0.4 s of one core); the passphrase is read here (PFILE, or typed).
 * intake_key_end joins it: 0 and SK, or the key's error (-EKEYREJECTED,
 * -ENOKEY, -EPERM with its sentence); the job is freed (wiped) either way. */
struct intake_keyjob;
int intake_key_begin(const char *keyfile, const char *pfile, struct intake_keyjob **ret);
int intake_key_end(struct intake_keyjob *j, uint8_t sk[CLIENT_BOX_SK]);
struct intake_rebuilt {
	char night[11];
	char full[11];     /* the full night its chain starts from */
	size_t nights;     /* nights replayed */
	uint64_t created;  /* unix seconds: when the client took the dump (the RPO's origin) */
	uint64_t size;     /* bytes of the dump */
	double seconds;
};
/* Rebuild and verify the dump (tools/intake_restore.c).  0 and *RET, or a
 * negative errno with a sentence: -EBADMSG for a damaged night or a dump
 * that is not the one signed, -EKEYREJECTED for a wrong key; TO then does
 * not exist. */
int intake_rebuild(const struct intake_rebuild_req *q, struct intake_rebuilt *ret);


/* What `intake restore --load URL` adds (tools/intake_load.c). */
struct intake_load_opts {
	const char *url;      /* libpq conninfo or postgresql:// URI naming the database */
	unsigned jobs;        /* pg_restore --jobs */
	bool replace;         /* drop and recreate a non-empty existing database */
	bool owners;          /* keep the dump's owners and privileges (the roles exist) */
	const char *tmpdir;   /* where the rebuilt dump waits (NULL: $TMPDIR or /var/tmp) */
	const char *pg_bin;   /* the directory of pg_restore (NULL: PATH) */
};
/* Create the database, stream Q's night into pg_restore as it is rebuilt
 * (post-data --jobs N from a scratch copy) and check every table of the
 * dump is there; prints its errors and
 * the final line "loaded NIGHT into DB: T tables, R rows, S s".  Returns an
 * EXIT_* code. */
int intake_load(const struct intake_rebuild_req *q, const struct intake_load_opts *o);
