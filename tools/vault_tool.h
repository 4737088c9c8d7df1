/* vault_tool.h - what the vault commands share (tools/cmd_vault.c,
 * vault_view.c, vault_ls.c, vault_check.c, vault_prune.c, cmd_restore.c). */
#pragma once
#include "config.h"
#include "retention.h"
#include "vault.h"
#include "vrecord.h"
#include "vstore.h"
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Where the vault is and what opens it: command line over -c FILE. */
struct vopts {
	const char *url, *identity, *known_hosts, *vault_key, *verify_key, *target, *record;
	const char *s3_endpoint, *s3_region, *s3_credentials, *s3_ca, *s3_url_style; /* an s3:// vault */
	char record_buf[4200];       /* the record derived from -c CONFIG */
	struct retention policy;
	bool policy_given, record_given, usage;
	struct config *cfg;
	const struct cfg_target *tcfg; /* the target of -c CONFIG, or NULL */
};

enum { O_URL = 1000, O_IDENTITY, O_KNOWN, O_VKEY, O_PUB, O_TARGET, O_EPOCH, O_AT, O_TO, O_SOURCE, O_JOBS,
       O_READ, O_JSON, O_DRY, O_GRACE, O_ALL, O_HOURLY, O_DAILY, O_MONTHLY, O_FORCE, O_GROUP, O_RECORD,
       O_ACCEPT, O_PG_USER, O_PG_BIN, O_PG_CONF, O_S3_ENDPOINT, O_S3_REGION, O_S3_CREDENTIALS, O_S3_CA,
       O_NO_LOCK, O_S3_URL_STYLE };

#define VAULT_OPTS                                                                                      \
	{ "vault", required_argument, NULL, O_URL }, { "identity", required_argument, NULL, O_IDENTITY }, \
	{ "known-hosts", required_argument, NULL, O_KNOWN },                                            \
	{ "vault-key", required_argument, NULL, O_VKEY },                                               \
	{ "verify-key", required_argument, NULL, O_PUB }, { "target", required_argument, NULL, O_TARGET }, \
	{ "config", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },                  \
	{ "s3-endpoint", required_argument, NULL, O_S3_ENDPOINT },                                      \
	{ "s3-region", required_argument, NULL, O_S3_REGION },                                          \
	{ "s3-credentials", required_argument, NULL, O_S3_CREDENTIALS },                                \
	{ "s3-ca", required_argument, NULL, O_S3_CA },                                                  \
	{ "s3-url-style", required_argument, NULL, O_S3_URL_STYLE }

/* The option C of a vault command with argument ARG: 1 if it was one of
 * VAULT_OPTS, else 0. */
int vopts_parse(struct vopts *o, int c, const char *arg);
/* --jobs ARG of vault command CMD into *RET (1 to 64), or -EINVAL, said. */
int vopts_jobs(const char *arg, const char *cmd, unsigned *ret);
/* A command line a vault command cannot use (getopt said why): exit 2. */
int vopts_usage(const char *cmd);
/* The exit code for an error R of a vault command WHAT (printed). */
int vopts_fail(const struct vopts *o, const char *what, int r);
/* Fill what the command line left out from the configuration's vault target. */
int vopts_finish(struct vopts *o, const char *cmd);
int vopts_store(const struct vopts *o, struct vstore **ret);
/* The store options O gives (pointers into O). */
void vopts_store_opts(const struct vopts *o, struct vstore_opts *ret);
/* The verify key PK: --verify-key FILE.pub, else from the vault key, which
 * fills K (*HAVE_K) and is required with NEED_SECRET. */
int vopts_keys(const struct vopts *o, bool need_secret, uint8_t pk[32], struct vkeys *k, bool *have_k);
/* A callback counting (CTX: size_t) and printing bad objects. */
void vcmd_on_bad(void *ctx, const char *path, int err);
/* Local time of USEC, a size as people read it, a group or series name. */
const char *vcmd_time(uint64_t usec, char *buf, size_t len);
void vcmd_size(uint64_t v, char *buf, size_t len);
void vcmd_series(const struct vmanifest *m, char *buf, size_t len);
/* KEEP[i]: whether POLICY keeps manifest MS[i] at NOW (unix seconds), per
 * group (series; MS sorted by series then epoch, as vault_manifests gives
 * them).  -ENOMEM or 0. */
int vcmd_keep(const struct vmanifest *ms, size_t n, const struct retention *policy, uint64_t now, bool *keep);

/* An object of the vault as the manifests name it, for check and prune. */
struct vobj {
	uint8_t name[VAULT_NAME];
	uint64_t size;
	int state; /* 0 unchecked, 1 ok, -errno bad */
};
int vobj_cmp(const void *a, const void *b);
/* The object NAME in V (sorted by vobj_cmp), or NULL. */
struct vobj *vobj_find(struct vobj *v, size_t n, const uint8_t name[VAULT_NAME]);

/* A manifest that fails its check, or an epoch the local record says was
 * committed and that no valid manifest holds: either may hide an epoch newer
 * than the newest valid one, so restore does not fall back past it silently. */
struct suspect {
	char path[80];                /* m/NAME */
	char group[NAME_MAX_LEN + 1]; /* "" if unknown */
	uint64_t epoch, cut_time;     /* 0 if unknown */
	bool recorded;                /* from the local record (authentic), else a failed manifest */
	char why[512];
};

/* The valid manifests, sorted by series then epoch, and the suspects. */
struct vview {
	struct vmanifest *ms;
	size_t n;
	struct suspect *sus;
	size_t n_sus;
	struct vrecord rec;
	const char *rec_path;         /* NULL: no record read */
	bool oom;                     /* a suspect could not be kept: fail rather than forget it */
};

/* List and check the manifests; read the local record if O names one. */
int vview_load(struct vview *v, struct vstore *vs, const struct vopts *o, const uint8_t pk[32],
	       const struct vkeys *k);
void vview_free(struct vview *v);
/* Print the suspects that concern GROUP (NULL: all) and return how many. */
size_t vview_print(const struct vview *v, const char *group, FILE *f, const char *indent);

int cmd_vault_ls(int argc, char **argv);
int cmd_vault_check(int argc, char **argv);
int cmd_vault_prune(int argc, char **argv);
int cmd_vault_init(int argc, char **argv);
int cmd_vault_extend_locks(int argc, char **argv);

/* ---- restore_pg.c: PostgreSQL sources ---- */
struct vpg_ref;
struct vman_pg;
struct promote_opts;
struct restore_pg_args {
	const char *to;              /* the data directory: absent or empty */
	uint64_t at;                 /* recovery_target_time (unix usec), 0: the end of the epoch's WAL */
	const struct promote_opts *po; /* the PostgreSQL user, programs, settings */
};
/* Restore PostgreSQL source P of epoch M (opened) into A->to, recovered to
 * A->at: every object checked first (nothing is made when one fails:
 * -EBADMSG or -ENOENT naming it), then the data directory made and
 * recovered as a cold promote does.  Prints what it reached. */
int restore_pg(struct vstore *vs, const struct vkeys *k, const struct vmanifest *m, const struct vman_pg *p,
	       const struct restore_pg_args *a);
/* Fetch the object REF, check it against its name and size, open it as the
 * piece described (vpg_obj_open) into OUT: 0, or a sentence naming it
 * (d/XX/NAME: MISSING, TRUNCATED, DAMAGED). */
int vpg_fetch(struct vstore *vs, const struct vkeys *k, const struct vpg_ref *ref, int kind, uint32_t tli,
	      const char *file, uint64_t pos, uint32_t len, void *dctx, uint8_t *out);
/* WAL piece W of P (its BYTES) against the manifest's digest. */
int vpg_check_wal(const struct vkeys *k, const struct vman_pg *p, uint32_t w, const uint8_t *bytes);

/* ---- cmd_restore.c and restore_range.c ---- */
#define RANGE_BLOCKS 4096u /* 16 MiB of source per work item */
/* One read of adjacent frames; the read buffer holds READ_MAX + 1 MiB.  A
 * whole pack (closed once past VAULT_PACK_TARGET, so at most one frame
 * more) fits in one read: one GET per pack over S3, not a second one for
 * its last 64 KiB (measured: 164 GETs for 64 packs with 8 MiB). */
#define READ_MAX (VAULT_PACK_TARGET + (1u << 20))

struct restore {
	const struct vopts *o;
	const struct vkeys *k;
	struct vpacks *packs;
	struct vmap *map;
	int fd;
	bool device;
	uint8_t *done;         /* per range */
	uint64_t n_ranges;
	atomic_uint_fast64_t next, bytes_read, bytes_written;
	atomic_int err;
	char errmsg[1024];
	pthread_mutex_t lock;
	int pfd;               /* progress file */
	const struct vstore *vs; /* the store whose prefetch the workers' stores share */
	/* Ranges written and not yet made durable (under LOCK): the main
	 * thread syncs them in batches while the workers go on, then records
	 * them as done; WAKE tells it of a new one or of a worker's end. */
	uint64_t *written;
	size_t n_written;
	unsigned running;
	pthread_cond_t wake;
};

/* A block to restore and the frame it lives in. */
struct fref {
	uint32_t pack, off, len;
	uint64_t block;
};
/* Adjacent frames of one pack, F[I..J), read as bytes [START, END). */
struct rrun {
	uint32_t pack;
	uint64_t start, end;
	size_t i, j;
};
/* What range RG needs read: its frames (sorted by pack and offset) in runs. */
struct rplan {
	uint64_t rg;
	struct fref *f;
	size_t nf;
	struct rrun *runs;
	size_t nr;
};
/* Plan range RG: its zero blocks are written (holes) at once, the others
 * gathered into runs of at most READ_MAX bytes.  0 and *RET (freed by
 * rplan_free), or a negative errno with a sentence (-EBADMSG: the index
 * names a frame larger than a read). */
int restore_plan(struct restore *rs, uint64_t rg, struct rplan *ret);
void rplan_free(struct rplan *p);
/* The object run K of P reads. */
void restore_run_path(const struct restore *rs, const struct rplan *p, size_t k, char *path, size_t len);
/* Open the frames of run K of P, read into RBUF (GOT bytes, or the read's
 * negative errno), in WORK (VAULT_FRAME_WORK bytes), check each block
 * against its id and write it. */
int restore_run(struct restore *rs, const struct rplan *p, size_t k, const uint8_t *rbuf, ssize_t got, void *d,
		uint8_t *work);
/* A restore worker (pthread start routine, ARG the struct restore): takes
 * ranges until none is left or one failed, with a reader thread of its own
 * fetching the next run while it opens the last (restore_read.c); each
 * range done is queued in RS->written for restore_sync. */
void *restore_worker(void *arg);
/* Run in the main thread while the workers run: make the ranges they
 * wrote durable, a batch per fdatasync, and only then record them in the
 * progress file (a resume trusts it); returns when every worker is done. */
void restore_sync(struct restore *rs);
/* Record the first error R of a restore (its sentence in RS->errmsg). */
void restore_fail(struct restore *rs, int r);

/* Restore range RG (RANGE_BLOCKS blocks) of RS->map into RS->fd, reading
 * the frames from VS into RBUF (READ_MAX + 1 MiB) and opening them in
 * WORK (VAULT_FRAME_WORK bytes).  0, or a negative errno with a
 * sentence (-EBADMSG: the vault's data or index is damaged). */
int restore_range(struct restore *rs, struct vstore *vs, void *zstd_dctx, uint64_t rg, uint8_t *rbuf,
		  uint8_t *work);
