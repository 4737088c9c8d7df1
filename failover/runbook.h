/* runbook.h - the failover runbook (runbook(5)): what a drill does.
 * Parsed with lib/yamltab like the daemon's config; errors name
 * FILE:LINE:COLUMN. */
#pragma once
#include "yamltab.h"
#include <stdbool.h>
#include <stdint.h>

struct rb_host {
	struct cfg_pos pos;
	char *name;
	char *url;             /* "local" or ssh://user@host[:port] */
	char *identity, *known_hosts;
};

struct rb_check {
	struct cfg_pos pos;
	char *name;
	char *tcp;             /* host:port */
	char *http;            /* URL (http or https) */
	char *command;         /* shell command; passes when it exits 0 */
	char *sql;             /* libpq conninfo of the database queried (no password in it) */
	char *test_sql;        /* test mode: the conninfo instead of sql (the clone's port) */
	char *failback_sql;    /* failback mode: the conninfo instead of sql (the database at home) */
	char *query;           /* sql: the query */
	char *expect;          /* sql: the first value of the first row wanted (NULL: it runs) */
	char *host;            /* where the command runs (default: the secondary) */
	uint64_t expect_status;
	char *expect_body;     /* substring the body must contain */
	char *ca_file;         /* https: CA bundle to trust */
	uint64_t timeout;      /* usec, per attempt */
	uint64_t retries;
	uint64_t interval;     /* usec between attempts */
};

struct rb_service {
	struct cfg_pos pos;
	char *name;
	char *group;           /* Bascule group holding its disks, may be NULL */
	struct cfg_list after; /* names of services started before this one */
	char *stop, *force_stop, *start, *restart, *secondary_stop, *test_start, *test_stop;
	uint64_t stop_timeout, start_timeout;
	char *disk_dir;        /* promoted disks appear here on the secondary */
	struct cfg_list checks;/* struct rb_check */
	int wave;              /* computed: 1 = no dependencies */
};

/* A PostgreSQL cluster protected by a `type: postgres` source of basculed
 * (docs/failover.md, "Databases"). */
struct rb_database {
	struct cfg_pos pos;
	char *name;
	char *source;          /* GROUP/SOURCE */
	char group[NAME_MAX_LEN + 1], src[NAME_MAX_LEN + 1]; /* computed from source */
	char *host;            /* the primary's PostgreSQL runs there (default: primary.host) */
	char *data_dir;        /* its data directory there (read by pg_controldata, pg_waldump) */
	char *pg_bin;          /* PostgreSQL's programs there and on the secondary */
	char *read_as;         /* prefix running pg_controldata, pg_waldump there (sudo -n -u postgres) */
	char *stop;            /* primary: shut it down cleanly (returns once it is down) */
	char *restart;         /* primary: start it again (abort) */
	char *start;           /* secondary: start the promoted database ($BASCULE_PGDATA) */
	char *secondary_stop;  /* secondary: stop it (abort) */
	char *user;            /* secondary: the user PostgreSQL runs as (promote, default start) */
	char *pg_conf;         /* secondary: settings for the promoted database (promote --pg-conf) */
	uint64_t test_port;    /* test mode: the clone listens on this port (0: not given) */
	char *test_start;      /* test mode: start the clone ($BASCULE_PGDATA) instead of pg_ctl */
	char *test_stop;       /* test mode: stop it */
	char *failback_conninfo; /* failback: the promoted database as the old primary reaches it */
	char *failback_promote;  /* failback: promote the old primary once it holds the final LSN */
	uint64_t stop_timeout, start_timeout;
};

struct rb_switch {
	struct cfg_pos pos;
	char *name;
	char *host;            /* default: the secondary */
	char *command;         /* move traffic to the secondary */
	char *back;            /* move it back (abort, failback) */
	uint64_t timeout;
};

struct rb_site {
	char *host;
	char *bascule;         /* the bascule command on that host */
	char *control_socket;  /* primary: basculed's status socket */
	char *replica_root;    /* secondary: bascule recv --root */
	char *site_key;        /* secondary: the site key */
	char *clone_dir;       /* secondary: test-mode clones */
	uint64_t sync_timeout;
};

struct rb_prechecks {
	uint64_t max_lag;      /* usec; 0 = not checked */
	uint64_t min_free;     /* bytes free under the replica root; 0 = not checked */
	bool require_connected;
};

struct rb_failback {
	char *control_socket;  /* the reverse daemon's socket on the secondary */
	char *start;           /* command starting the reverse replication */
	char *stop;            /* command stopping it */
	char *replica_root;    /* its replica root on the primary */
	char *site_key;        /* site key on the primary */
};

struct rb_objectives {
	uint64_t rto, rpo;     /* usec */
};

/* A hybrid drill (docs/hybrid.md, "The hybrid drill"): a client's nightly
 * dump at the operator's intake, restored and loaded, then the services. */
struct rb_hybrid {
	char *intake;          /* the intake directory (on the drill's machine) */
	char *client;          /* the client enrolled there */
	char *key;             /* the client's decryption key file (FILE.key, 0600) */
	char *passphrase_file; /* its passphrase (0600, first line) */
	char *night;           /* "latest" or YYYY-MM-DD */
	char *load;            /* the database to load into: postgresql:// URL or conninfo, no password */
	char *pg_bin;          /* the directory of pg_restore (NULL: PATH) */
	char *host;            /* where the services start and their command checks run */
	uint64_t jobs;         /* pg_restore --jobs; 0: restore's default */
	bool replace;          /* drop and recreate a non-empty database */
	uint64_t max_age;      /* usec: intake check --max-age */
	uint64_t check_timeout, restore_timeout; /* usec */
};

struct rb_report {
	char *dir, *signing_key;
};

struct runbook {
	char *file;
	uint8_t digest[32];    /* BLAKE2b of the file's bytes */
	char *name;
	struct rb_objectives objectives;
	struct rb_site primary, secondary;
	struct rb_prechecks prechecks;
	struct rb_failback failback;
	struct rb_report report;
	struct rb_hybrid hybrid;  /* hybrid.intake NULL: not a hybrid runbook */
	char *state_dir;
	bool consistent;       /* unplanned: promote only consistent epochs */
	struct cfg_list hosts;    /* struct rb_host */
	struct cfg_list services; /* struct rb_service */
	struct cfg_list switches; /* struct rb_switch */
	struct cfg_list databases;/* struct rb_database */
	int n_waves;
};

#define RB_HOST(rb, i) (&((struct rb_host *)(rb)->hosts.items)[i])
#define RB_SVC(rb, i) (&((struct rb_service *)(rb)->services.items)[i])
#define RB_SW(rb, i) (&((struct rb_switch *)(rb)->switches.items)[i])
#define RB_DB(rb, i) (&((struct rb_database *)(rb)->databases.items)[i])
#define RB_CHECK(s, i) (&((struct rb_check *)(s)->checks.items)[i])

int runbook_load(const char *path, struct runbook **ret);
int runbook_parse(const char *name, const char *text, size_t len, bool check_files,
		  struct runbook **ret);
void runbook_free(struct runbook *rb);
const struct rb_host *runbook_host(const struct runbook *rb, const char *name);
const struct rb_database *runbook_database(const struct runbook *rb, const char *name);
void runbook_print_reference(void);
/* A test drill of RB: each database says how its clone starts apart from
 * the standby and the promoted database (test_port or test_start); an
 * error with the database's position if not. */
int runbook_check_test(const struct runbook *rb);
/* A failback drill of RB: each database names failback_conninfo (parsed,
 * no password); an error with the database's position if not. */
int runbook_check_failback(const struct runbook *rb);
/* A hybrid runbook (it has a hybrid section; primary and secondary are
 * optional there): true. */
bool runbook_is_hybrid(const struct runbook *rb);
