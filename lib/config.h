/* config.h - Bascule's YAML configuration (bascule.yaml(5)).
 *
 * Every key is declared once in a table in config.c (name, type, bounds,
 * default, note).  Parsing runs in three steps: everything unset, parse,
 * fill defaults; then cross-checks.  Every error names FILE:LINE:COLUMN. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "retention.h"
#include "yamltab.h"

enum source_kind { SOURCE_DISK = 0, SOURCE_POSTGRES = 1 };

struct cfg_qemu {
	char *qmp;              /* the guest's QMP socket, NULL = not a QEMU source */
	char *node;             /* block node or device id */
	char *guest_agent;      /* qemu-guest-agent socket, may be NULL */
	uint64_t agent_timeout; /* usec: a freeze that takes longer is given up (thawed) */
};

struct cfg_source {
	struct cfg_pos pos;
	char *name;
	char *type;             /* "disk" | "postgres" */
	char *disk;             /* disk: the image or device; a QEMU source: "qemu:QMP#NODE" */
	struct cfg_qemu qemu;   /* disk read from a running QEMU (docs/qemu.md) */
	/* postgres (docs/postgres.md) */
	char *conninfo;         /* libpq connection string of the replication role */
	char *slot;             /* physical slot, created if missing (default bascule_GROUP_SOURCE) */
	char *application_name;/* default: the slot's name */
	char *synchronous;      /* "local" | "remote" */
	char *checkpoint;       /* base backups: "fast" | "spread" */
	uint64_t wal_interval;  /* usec between two WAL epochs */
	uint64_t base_interval; /* usec between two base backups */
	uint64_t wal_spool_max; /* bytes of WAL kept in the state directory */
	enum source_kind kind;
	bool remote;            /* synchronous: remote */
};

struct cfg_group {
	struct cfg_pos pos;
	char *name;
	uint64_t interval;      /* usec: minimum time between two epochs */
	uint64_t max_interval;  /* usec: rescan even without a change event */
	uint64_t full_scan_every; /* usec: longest an unchanged file goes unread (0: always read) */
	uint64_t cold_after;    /* usec: a QEMU source's MiB unchanged this long goes cold (0: never) */
	char *freeze, *thaw;    /* shell commands, may be NULL */
	uint64_t freeze_timeout;
	char *clone;            /* "auto" | "never" */
	struct cfg_list sources;/* struct cfg_source */
};

enum target_type { TARGET_REPLICA = 0, TARGET_VAULT = 1 };

struct cfg_retention {
	char *all, *hourly, *daily, *monthly; /* as written; parsed into policy */
	struct retention policy;
};

#define CFG_VAULT_PARALLEL 4 /* default upload sessions (docs/vault.md: 1 session waits out each pack's fsync) */

struct cfg_target {
	struct cfg_pos pos;
	char *name;
	char *type;
	char *url;
	char *remote_command;
	uint64_t bandwidth;     /* bytes/s, 0 = unlimited */
	char *identity, *known_hosts;
	uint64_t keep_epochs;
	uint64_t keep_time;     /* usec */
	uint64_t max_in_flight;
	char *window;           /* "HH:MM-HH:MM" local time, NULL = always */
	int window_start, window_end; /* minutes since midnight */
	/* type vault */
	char *vault_key;
	uint64_t interval;      /* usec between two shipped epochs, 0 = every epoch */
	uint64_t parallel;      /* SFTP upload sessions, 0 = CFG_VAULT_PARALLEL */
	struct cfg_retention retention;
	/* an s3:// vault (docs/vault.md, "S3 object storage") */
	char *s3_endpoint, *s3_region, *s3_credentials, *s3_ca;
	char *s3_url_style;     /* "path" | "virtual"; NULL: as AWS does (lib/s3.h S3_URL_AUTO) */
	char *object_lock;      /* "compliance" | "governance" | "none"; NULL: compliance */
	uint64_t lock_margin;   /* usec added to the longest retention span */
	char *postgres_standby; /* replica: "hot" | "cold", passed to the receiver */
	enum target_type kind;
};

struct config {
	char *file;
	char *state_dir;
	char *key;
	char *control_socket;
	char *control_group;    /* may use control verbs (besides root) */
	char *monitor_group;    /* may read status and metrics; owns the socket */
	char *relay_user;       /* the network children's user (docs/architecture.md) */
	char *metrics_listen;   /* "ADDR:PORT" of the HTTP /metrics endpoint, NULL = none */
	uint64_t io_rate;       /* bytes/s, 0 = unlimited */
	uint64_t scan_threads;  /* per cut; 0 = one per core */
	uint64_t max_concurrent_cuts; /* disk cuts running at once, all groups */
	uint64_t cut_timeout;   /* usec: a disk cut running longer gives its slot back (0: never) */
	struct cfg_list groups; /* struct cfg_group */
	struct cfg_list targets;/* struct cfg_target */
};

#define CFG_GROUP(c, i) (&((struct cfg_group *)(c)->groups.items)[i])
#define CFG_SOURCE(g, i) (&((struct cfg_source *)(g)->sources.items)[i])
#define CFG_TARGET(c, i) (&((struct cfg_target *)(c)->targets.items)[i])

/* Load and validate PATH.  On failure returns -EINVAL (a file that cannot be
 * read, or what it says: exit 3), a key error for a secret file it names that
 * is missing or unsafe (-ENOKEY, -EPERM: exit 4), or -ENOMEM, and records
 * "PATH:LINE:COL: what is wrong and what to do" with err_set(). */
int config_load(const char *path, struct config **ret);
/* The same; CHECK_FILES false skips the checks of the files it names (disks,
 * keys): for programs that need only its settings (the control socket, a
 * vault target's URL) and may run where those files are absent or unreadable. */
int config_read(const char *path, bool check_files, struct config **ret);
/* Parse from memory (tests, fuzzing); NAME is used in messages. CHECK_FILES
 * false skips the existence checks of disks and keys. */
int config_parse(const char *name, const char *text, size_t len, bool check_files,
		 struct config **ret);
void config_free(struct config *c);
/* The Object Lock of an s3:// vault target T: MODE "COMPLIANCE",
 * "GOVERNANCE" or NULL (none), and for how long each object is locked when
 * put: the longest span of its retention plus lock_margin. */
/* The values of object_lock (bascule.yaml's vault targets, ship.yaml). */
extern const char *const cfg_lock_modes[];
extern const char *const cfg_url_styles[];  /* s3_url_style: path | virtual */
/* The rows of the s3_* keys, one table for every configuration that names
 * an S3 store (a vault target, ship.yaml, the operator's intake file):
 * TYPE has char *s3_endpoint, s3_url_style, s3_region, s3_credentials,
 * s3_ca; WHAT says of which store ("s3:// vault"), ACCOUNT whose
 * credentials ("the daemon's account").  S3_KEYS_OF(x) is their struct
 * s3_keys (lib/s3.h), object_lock included. */
#define CFG_S3_KEYS(TYPE, WHAT, ACCOUNT)                                                                   \
	{ K("s3_endpoint", CT_STR, TYPE, s3_endpoint), .note = WHAT ": the store's URL, https://HOST[:PORT] (required)" }, \
	{ K("s3_url_style", CT_ENUM, TYPE, s3_url_style), .enums = cfg_url_styles,                          \
	  .note = WHAT ": virtual (https://BUCKET.HOST/KEY, as AWS) or path (https://HOST/BUCKET/KEY); "     \
		  "default: virtual, but path for an endpoint given as an IP address or a bucket with a "    \
		  "'.' over https" },                                                                       \
	{ K("s3_region", CT_STR, TYPE, s3_region),                                                          \
	  .note = WHAT ": the region requests are signed for (default us-east-1)" },                         \
	{ K("s3_credentials", CT_SECRET, TYPE, s3_credentials),                                             \
	  .note = WHAT ": AWS shared-credentials file ([default] aws_access_key_id, aws_secret_access_key) " \
		  "of " ACCOUNT ", mode 0600, never logged (required)" },                                   \
	{ K("s3_ca", CT_PATH, TYPE, s3_ca),                                                                 \
	  .note = WHAT ": CA certificates the store's TLS certificate is checked against (default: the "    \
		  "system's)" }
#define S3_KEYS_OF(x)                                                                                      \
	{ .endpoint = (x)->s3_endpoint, .region = (x)->s3_region, .credentials = (x)->s3_credentials,     \
	  .ca = (x)->s3_ca, .url_style = (x)->s3_url_style, .object_lock = (x)->object_lock }
/* "compliance" (or NULL) -> "COMPLIANCE", "governance" -> "GOVERNANCE",
 * "none" -> NULL: the mode objects are put with. */
const char *config_lock_mode(const char *object_lock);
void config_vault_lock(const struct cfg_target *t, const char **ret_mode, uint64_t *ret_seconds);
/* Whether a group of C holds a postgres source. */
bool config_has_postgres(const struct config *c);
/* Print every key with its type, default and note (bascule.yaml(5) source). */
void config_print_reference(void);
