/* config.c - table-driven YAML configuration loader on libyaml. */
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "pgpipe.h"
#include "pgwal.h"
#include "ssh.h"
#include "s3.h"
#include "units.h"
#include "vstore_s3.h"
#include <ctype.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const target_types[] = { "replica", "vault", NULL };
static const char *const clone_modes[] = { "auto", "never", NULL };
static const char *const source_types[] = { "disk", "postgres", NULL };
static const char *const sync_modes[] = { "local", "remote", NULL };
static const char *const checkpoint_modes[] = { "fast", "spread", NULL };
static const char *const standby_modes[] = { "hot", "cold", NULL };
const char *const cfg_lock_modes[] = { "compliance", "governance", "none", NULL };
const char *const cfg_url_styles[] = { "path", "virtual", NULL };


static const struct cfg_key qemu_keys[] = {
	{ K("qmp", CT_STR, struct cfg_qemu, qmp),
	  .note = "the running guest's QMP unix socket (-qmp unix:PATH,server=on,wait=off)" },
	{ K("node", CT_STR, struct cfg_qemu, node),
	  .note = "the disk's block node name or device id (query-block)" },
	{ K("guest_agent", CT_STR, struct cfg_qemu, guest_agent),
	  .note = "qemu-guest-agent socket: the guest's filesystems are frozen around each cut (optional)" },
	{ K("agent_timeout", CT_DURATION, struct cfg_qemu, agent_timeout), .def = "2s", .min = 100000,
	  .max = 60000000, .note = "an agent that does not answer in time: thawed, the epoch marked fuzzy" },
	{ 0 }
};
static const struct cfg_table qemu_table = { "qemu", sizeof(struct cfg_qemu), qemu_keys };

static const struct cfg_key source_keys[] = {
	{ K("name", CT_NAME, struct cfg_source, name), .required = true,
	  .note = "source name; the replica is the file DIR/GROUP/NAME" },
	{ K("type", CT_ENUM, struct cfg_source, type), .def = "disk", .enums = source_types,
	  .note = "disk: an image file or block device; postgres: a PostgreSQL cluster, as a base "
		  "backup and its WAL (docs/postgres.md)" },
	{ K("disk", CT_DISK, struct cfg_source, disk),
	  .note = "disk: the image file (any format) or block device to protect (required)" },
	{ K("qemu", CT_MAP, struct cfg_source, qemu), .sub = &qemu_table,
	  .note = "disk: read from a running QEMU through its dirty bitmap, a point-in-time view and NBD "
		  "(qmp, node, guest_agent; docs/qemu.md) instead of the disk key" },
	{ K("conninfo", CT_STR, struct cfg_source, conninfo),
	  .note = "postgres: libpq connection string of a role with REPLICATION, e.g. \"host=/var/run/"
		  "postgresql user=bascule passfile=/etc/bascule/pgpass\" (required; no password in it)" },
	{ K("slot", CT_STR, struct cfg_source, slot),
	  .note = "postgres: physical replication slot, created if missing (default bascule_GROUP_SOURCE, "
		  "lower case)" },
	{ K("application_name", CT_STR, struct cfg_source, application_name),
	  .note = "postgres: the application_name synchronous_standby_names names (default: the slot's name)" },
	{ K("synchronous", CT_ENUM, struct cfg_source, synchronous), .def = "local", .enums = sync_modes,
	  .note = "postgres: local: WAL is reported flushed once durable in state_dir; remote: once every "
		  "replica target holds it (zero loss with synchronous_standby_names)" },
	{ K("wal_interval", CT_DURATION, struct cfg_source, wal_interval), .def = "200ms", .min = 10000,
	  .max = 60000000, .note = "postgres: new durable WAL is cut into an epoch this often (remote: at once)" },
	{ K("base_interval", CT_DURATION, struct cfg_source, base_interval), .def = "24h", .min = 60000000,
	  .note = "postgres: a new base backup this often, so that replay at promotion stays bounded" },
	{ K("wal_spool_max", CT_SIZE, struct cfg_source, wal_spool_max), .def = "1GiB", .min = 64ULL << 20,
	  .note = "postgres: WAL kept in state_dir for targets that lag; one behind it gets a new base backup" },
	{ K("checkpoint", CT_ENUM, struct cfg_source, checkpoint), .def = "fast", .enums = checkpoint_modes,
	  .note = "postgres: the checkpoint that starts a base backup (spread: no I/O burst, slower)" },
	{ 0 }
};
static const struct cfg_table source_table = { "source", sizeof(struct cfg_source), source_keys };

static const struct cfg_key group_keys[] = {
	{ K("name", CT_NAME, struct cfg_group, name), .required = true,
	  .note = "group name: sources captured together (the disks of one VM)" },
	{ K("interval", CT_DURATION, struct cfg_group, interval), .def = "5s", .min = 100000,
	  .max = 86400000000ULL, .note = "minimum time between two epochs of the group" },
	{ K("max_interval", CT_DURATION, struct cfg_group, max_interval), .def = "60s",
	  .min = 100000, .max = 86400000000ULL,
	  .note = "rescan after this long even if no change was signalled (block devices)" },
	{ K("cold_after", CT_DURATION, struct cfg_group, cold_after), .def = "1h", .min = 0,
	  .max = 31536000000000ULL,
	  .note = "a QEMU source's MiB whose newest change every target holds and is this old goes cold: "
		  "its 8 KiB of block records leave the map (a node and an epoch stay); written again, "
		  "it is read whole once (docs/design.md, cold chunks); 0 = never" },
	{ K("full_scan_every", CT_DURATION, struct cfg_group, full_scan_every), .def = "1h", .min = 0,
	  .max = 604800000000ULL,
	  .note = "an image file unchanged (inode, size, mtime, ctime) since its last full scan is "
		  "not reread, for this long at most; then it is read in full again (writers through "
		  "mmap); 0 = read every file in full at every cut.  A QEMU source: the longest its "
		  "dirty bitmap goes unverified by a full read (docs/qemu.md)" },
	{ K("freeze", CT_STR, struct cfg_group, freeze),
	  .note = "shell command run before a point-in-time capture (e.g. fsfreeze in the guest)" },
	{ K("thaw", CT_STR, struct cfg_group, thaw), .note = "shell command run after the capture" },
	{ K("freeze_timeout", CT_DURATION, struct cfg_group, freeze_timeout), .def = "30s",
	  .min = 1000000, .max = 3600000000ULL, .note = "longest a freeze or thaw command may run" },
	{ K("clone", CT_ENUM, struct cfg_group, clone), .def = "auto", .enums = clone_modes,
	  .note = "auto: capture from a reflink clone (FICLONE) where the filesystem allows" },
	{ K("sources", CT_LIST, struct cfg_group, sources), .required = true, .sub = &source_table,
	  .note = "the sources of the group" },
	{ 0 }
};
static const struct cfg_table group_table = { "group", sizeof(struct cfg_group), group_keys };

static const struct cfg_key retention_keys[] = {
	{ K("all", CT_STR, struct cfg_retention, all), .note = "keep every epoch younger than this, e.g. 24h" },
	{ K("hourly", CT_STR, struct cfg_retention, hourly),
	  .note = "keep the newest epoch of each hour for this long, e.g. 7d" },
	{ K("daily", CT_STR, struct cfg_retention, daily),
	  .note = "keep the newest epoch of each day (UTC) for this long, e.g. 30d" },
	{ K("monthly", CT_STR, struct cfg_retention, monthly),
	  .note = "keep the newest epoch of each month for this long; here m means months: 12m" },
	{ 0 }
};
static const struct cfg_table retention_table = { "retention", sizeof(struct cfg_retention), retention_keys };

static const struct cfg_key target_keys[] = {
	{ K("name", CT_NAME, struct cfg_target, name), .required = true, .note = "target name" },
	{ K("type", CT_ENUM, struct cfg_target, type), .def = "replica", .enums = target_types,
	  .note = "replica: a live, bootable copy at the secondary site; vault: encrypted write-once "
		  "objects at a backup provider (docs/vault.md)" },
	{ K("url", CT_STR, struct cfg_target, url), .required = true,
	  .note = "replica: local:/DIR or ssh://user@host[:port]/DIR (the secondary's command= "
		  "--root decides the DIR of ssh://); vault: local:/DIR or sftp://user@host[:port]/DIR" },
	{ K("remote_command", CT_STR, struct cfg_target, remote_command), .def = "bascule recv",
	  .note = "receiver command; --root DIR and retention options are appended (ssh://: the "
		  "secondary's authorized_keys command= replaces it)" },
	{ K("bandwidth", CT_RATE, struct cfg_target, bandwidth), .def = "0",
	  .note = "cap on bytes sent per second to this target, 0 = unlimited" },
	{ K("identity", CT_SECRET, struct cfg_target, identity), .note = "SSH private key" },
	{ K("known_hosts", CT_PATH, struct cfg_target, known_hosts), .note = "SSH known_hosts file" },
	{ K("keep_epochs", CT_UINT, struct cfg_target, keep_epochs), .def = "24", .min = 0,
	  .max = 100000, .note = "undo data kept on the replica for rollback, in epochs (ssh://: the "
			       "secondary's command= decides; the receiver warns when it differs)" },
	{ K("keep_time", CT_DURATION, struct cfg_target, keep_time), .def = "0",
	  .note = "also keep undo data younger than this (0 = by count only; ssh://: as keep_epochs)" },
	{ K("max_in_flight", CT_UINT, struct cfg_target, max_in_flight), .def = "4", .min = 1,
	  .max = 64, .note = "epochs sent but not yet acknowledged, at most" },
	{ K("window", CT_STR, struct cfg_target, window),
	  .note = "send only between these local times, e.g. 22:00-06:00 (default: always)" },
	{ K("vault_key", CT_SECRET, struct cfg_target, vault_key),
	  .note = "vault: the vault key from `bascule keygen vault` (mode 0600; never leaves the primary)" },
	{ K("interval", CT_DURATION, struct cfg_target, interval), .def = "0", .max = 86400000000ULL,
	  .note = "vault: ship at most one epoch per group this often, e.g. 1m (0 = every epoch)" },
	{ K("parallel", CT_UINT, struct cfg_target, parallel), .def = "0", .min = 0, .max = 16,
	  .note = "vault: SFTP sessions (S3 connections) uploading packs at once, 1-16 (0 = 4; local: vaults use one); "
		  "an epoch's manifest is written only once all its packs are durable" },
	{ K("retention", CT_MAP, struct cfg_target, retention), .sub = &retention_table,
	  .note = "vault: what `bascule vault prune` keeps (all, hourly, daily, monthly)" },
	CFG_S3_KEYS(struct cfg_target, "s3:// vault", "the daemon's account"),
	{ K("object_lock", CT_ENUM, struct cfg_target, object_lock), .enums = cfg_lock_modes,
	  .note = "s3:// vault: compliance (default: nobody can delete or shorten a lock before its "
		  "date), governance (an account with s3:BypassGovernanceRetention can), none" },
	{ K("lock_margin", CT_DURATION, struct cfg_target, lock_margin), .def = "1d",
	  .max = 3650ULL * 86400ULL * 1000000ULL,
	  .note = "s3:// vault: each object is locked for the longest retention span plus this" },
	{ K("postgres_standby", CT_ENUM, struct cfg_target, postgres_standby), .enums = standby_modes,
	  .note = "replica: what the secondary keeps of postgres sources: cold (base and WAL) or hot (a "
		  "standby replaying them); passed to the receiver as --pg-standby (default cold)" },
	{ 0 }
};
static const struct cfg_table target_table = { "target", sizeof(struct cfg_target), target_keys };

static const struct cfg_key top_keys[] = {
	{ K("state_dir", CT_PATH, struct config, state_dir), .def = "/var/lib/bascule",
	  .note = "where the daemon keeps block maps, spools and progress" },
	{ K("key", CT_SECRET, struct config, key), .def = "/etc/bascule/site.key",
	  .note = "site key shared with the secondary (bascule keygen site FILE), mode 0600" },
	{ K("control_socket", CT_PATH, struct config, control_socket),
	  .def = "/run/bascule/status.sock", .note = "Unix socket for bascule sync/status" },
	{ K("control_group", CT_NAME, struct config, control_group),
	  .note = "Unix group allowed control verbs (sync, pause, resume, reload) besides root" },
	{ K("monitor_group", CT_NAME, struct config, monitor_group),
	  .note = "Unix group allowed to read status and metrics (the socket's group)" },
	{ K("relay_user", CT_NAME, struct config, relay_user), .def = "bascule",
	  .note = "unprivileged user the network children run as (the ssh:// relay, the vault "
		  "writer) when basculed runs as root; create it with useradd --system bascule" },
	{ K("metrics_listen", CT_ADDR, struct config, metrics_listen),
	  .note = "serve Prometheus metrics at http://ADDR:PORT/metrics, e.g. 127.0.0.1:9853 "
		  "(numeric address; default: no HTTP listener)" },
	{ K("io_rate", CT_RATE, struct config, io_rate), .def = "0", .min = 1 << 20, .zero_off = true,
	  .note = "cap on the host's source reads per second (every scan worker of every group, QEMU's "
		  "NBD reads included), 0 = unlimited, else at least 1MiB/s" },
	{ K("scan_threads", CT_UINT, struct config, scan_threads), .def = "0", .max = 64,
	  .note = "hashing threads of one cut, 0 = one per core" },
	{ K("max_concurrent_cuts", CT_UINT, struct config, max_concurrent_cuts), .def = "2", .min = 1,
	  .max = 64, .note = "cuts that read disks at once, all groups together; the others wait their "
			     "turn, oldest first (WAL-only cuts of postgres sources wait only for their group's own "
			     "disk cut when it must take the next number: docs/design.md)" },
	{ K("cut_timeout", CT_DURATION, struct config, cut_timeout), .def = "30m", .min = 0,
	  .note = "a disk cut running longer (a hung NBD or NFS read) is abandoned: logged, its slot "
		  "given to the next group, the group cuts again once its reads return; 0 = never" },
	{ K("groups", CT_LIST, struct config, groups), .required = true, .sub = &group_table,
	  .note = "groups of sources" },
	{ K("targets", CT_LIST, struct config, targets), .required = true, .sub = &target_table,
	  .note = "where epochs are sent" },
	{ 0 }
};
static const struct cfg_table top_table = { "top level", sizeof(struct config), top_keys };

struct parse_ctx {
	const char *file;
};

/* The keys of a vault target, or their absence from a replica target. */
static int check_vault(struct parse_ctx *p, struct cfg_target *t)
{
	struct cfg_retention *rt = &t->retention;
	const char *spans[4] = { rt->all, rt->hourly, rt->daily, rt->monthly };
	uint64_t *vals[4] = { &rt->policy.all, &rt->policy.hourly, &rt->policy.daily, &rt->policy.monthly };
	const char *names[4] = { "all", "hourly", "daily", "monthly" };
	const struct s3_keys s3k = S3_KEYS_OF(t);
	const char *why;
	char sentence[400];

	if (t->kind == TARGET_VAULT && t->postgres_standby)
		return err_set(EINVAL, "%s:%d:%d: target '%s': postgres_standby is for targets of type replica",
			       p->file, t->pos.line, t->pos.col, t->name);

	if (t->kind == TARGET_REPLICA) {
		if (t->vault_key || t->interval || t->parallel || spans[0] || spans[1] || spans[2] || spans[3] ||
		    s3_keys_any(&s3k))
			return err_set(EINVAL, "%s:%d:%d: target '%s': vault_key, interval, parallel, retention and "
					       "the s3_* and object_lock keys are for targets of type vault",
				       p->file, t->pos.line, t->pos.col, t->name);
		return 0;
	}
	for (int i = 0; i < 4; i++)
		if (spans[i] && retention_parse_span(spans[i], vals[i]) < 0)
			return err_set(EINVAL, "%s:%d:%d: target '%s': retention %s must be a span such as "
					       "24h, 7d, 2w, 12m (months) or 1y, got '%s'",
				       p->file, t->pos.line, t->pos.col, t->name, names[i], spans[i]);
	if (!t->vault_key)
		return err_set(EINVAL, "%s:%d:%d: target '%s': a vault needs vault_key (create one with "
				       "`bascule keygen vault FILE --escrow FILE.escrow`)",
			       p->file, t->pos.line, t->pos.col, t->name);
	if ((why = s3_keys_problem(&s3k, strncmp(t->url, "s3://", 5) == 0, "vault", sentence, sizeof(sentence))))
		return err_set(EINVAL, "%s:%d:%d: target '%s': %s", p->file, t->pos.line, t->pos.col, t->name, why);
	if (strncmp(t->url, "local:/", 7) == 0)
		return 0;
	if (strncmp(t->url, "s3://", 5) == 0) {
		char bucket[64], prefix[512];
		const char *mode;
		uint64_t secs;
		int ur = vstore_s3_parse_url(t->url, bucket, sizeof(bucket), prefix, sizeof(prefix));
		if (ur < 0)
			return err_set(EINVAL, "%s:%d:%d: target '%s': %s", p->file, t->pos.line, t->pos.col,
				       t->name, err_msg(ur));
		config_vault_lock(t, &mode, &secs);
		if (mode && !retention_set(&t->retention.policy))
			return err_set(EINVAL, "%s:%d:%d: target '%s': with object_lock %s, objects are locked "
					       "for the longest retention span: give a retention (or object_lock: "
					       "none)",
				       p->file, t->pos.line, t->pos.col, t->name, t->object_lock ? t->object_lock
												 : "compliance");
		{
			char date[40];
			if (mode && s3_date(time(NULL) + (time_t)secs, date, sizeof(date)) < 0)
				return err_set(EINVAL, "%s:%d:%d: target '%s': %s", p->file, t->pos.line,
					       t->pos.col, t->name, err_msg(-EINVAL));
		}
		return 0;
	}
	if (strncmp(t->url, "sftp://", 7) == 0) {
		struct ssh_url u;
		int ur = ssh_url_parse_scheme(t->url, "sftp", &u);
		if (ur < 0)
			return err_set(EINVAL, "%s:%d:%d: target '%s': %s", p->file, t->pos.line, t->pos.col,
				       t->name, err_msg(ur));
		if (!t->identity || !t->known_hosts)
			return err_set(EINVAL, "%s:%d:%d: target '%s': an sftp:// vault needs identity (the "
					       "SSH private key) and known_hosts",
				       p->file, t->pos.line, t->pos.col, t->name);
		return 0;
	}
	return err_set(EINVAL, "%s:%d:%d: target '%s': a vault url must be local:/DIR, "
			       "sftp://user@host[:port]/DIR or s3://BUCKET/PREFIX, got '%s'",
		       p->file, t->pos.line, t->pos.col, t->name, t->url);
}

const char *config_lock_mode(const char *object_lock)
{
	return !object_lock || !strcmp(object_lock, "compliance") ? "COMPLIANCE"
	       : !strcmp(object_lock, "governance")		 ? "GOVERNANCE"
								 : NULL;
}

void config_vault_lock(const struct cfg_target *t, const char **ret_mode, uint64_t *ret_seconds)
{
	const struct retention *r = &t->retention.policy;
	uint64_t longest = r->all;

	if (r->hourly > longest)
		longest = r->hourly;
	if (r->daily > longest)
		longest = r->daily;
	if (r->monthly > longest)
		longest = r->monthly;
	*ret_mode = config_lock_mode(t->object_lock);
	*ret_seconds = longest + t->lock_margin / 1000000;
}

/* "bascule_GROUP_SOURCE" in the characters a slot name allows. */
static char *default_slot(const char *group, const char *source)
{
	char buf[64];
	size_t n;

	snprintf(buf, sizeof(buf), "bascule_%s_%s", group, source);
	for (n = 0; buf[n]; n++)
		buf[n] = isalnum((unsigned char)buf[n]) ? (char)tolower((unsigned char)buf[n]) : '_';
	return strdup(buf);
}

/* The conninfo parses, and holds no password (a command line is visible
 * to every user in ps). */
static int check_conninfo(struct parse_ctx *p, const struct cfg_source *s)
{
	char *msg = NULL;
	PQconninfoOption *o = PQconninfoParse(s->conninfo, &msg);
	int r = 0;

	if (!o) {
		char m[512];
		pgpipe_flatten(m, sizeof(m), msg ? msg : "out of memory");
		r = err_set(EINVAL, "%s:%d:%d: source '%s': conninfo does not parse (%s): write it as libpq's "
				    "key=value pairs, e.g. \"host=/var/run/postgresql user=bascule\"",
			    p->file, s->pos.line, s->pos.col, s->name, m);
		PQfreemem(msg);
		return r;
	}
	for (PQconninfoOption *i = o; i->keyword; i++)
		if (!strcmp(i->keyword, "password") && i->val && *i->val)
			r = err_set(EINVAL, "%s:%d:%d: source '%s': conninfo holds a password, which ps would show "
					    "to every user: put it in a passfile (passfile=/etc/bascule/pgpass, mode "
					    "0600, owned by relay_user) and take it out of conninfo",
				    p->file, s->pos.line, s->pos.col, s->name);
	PQconninfoFree(o);
	return r;
}

/* A source's keys for its type; a postgres source's slot and
 * application_name derived when not given. */
static int check_source(struct parse_ctx *p, const struct cfg_group *g, struct cfg_source *s)
{
	int r;

	s->kind = strcmp(s->type, "postgres") == 0 ? SOURCE_POSTGRES : SOURCE_DISK;
	if (s->kind == SOURCE_DISK) {
		if (s->qemu.qmp && s->disk)
			return err_set(EINVAL, "%s:%d:%d: source '%s': give either disk or qemu, not both (a QEMU "
					       "source is read through QEMU, never from its image file)",
				       p->file, s->pos.line, s->pos.col, s->name);
		if (!s->qemu.qmp != !s->qemu.node)
			return err_set(EINVAL, "%s:%d:%d: source '%s': qemu needs both qmp (the guest's QMP socket) "
					       "and node (the disk's block node or device id)",
				       p->file, s->pos.line, s->pos.col, s->name);
		if (s->qemu.qmp) {
			size_t n = strlen(s->qemu.qmp) + strlen(s->qemu.node) + 8;
			if (!(s->disk = malloc(n)))
				return -ENOMEM;
			snprintf(s->disk, n, "qemu:%s#%s", s->qemu.qmp, s->qemu.node);
		}
		if (!s->disk)
			return err_set(EINVAL, "%s:%d:%d: source '%s' of group '%s' is missing the required key "
					       "'disk' (the image file or block device to protect; a PostgreSQL "
					       "cluster is type: postgres with a conninfo)",
				       p->file, s->pos.line, s->pos.col, s->name, g->name);
		if (s->conninfo || s->slot || s->application_name)
			return err_set(EINVAL, "%s:%d:%d: source '%s': conninfo, slot and application_name are for "
					       "sources of type postgres",
				       p->file, s->pos.line, s->pos.col, s->name);
		return 0;
	}
	if (s->disk)
		return err_set(EINVAL, "%s:%d:%d: source '%s' is a postgres source: it has no disk (Bascule reads "
				       "its WAL over a replication connection, never its files)",
			       p->file, s->pos.line, s->pos.col, s->name);
	if (!s->conninfo)
		return err_set(EINVAL, "%s:%d:%d: postgres source '%s' of group '%s' is missing the required key "
				       "'conninfo' (e.g. \"host=/var/run/postgresql user=bascule passfile=/etc/bascule/"
				       "pgpass\")",
			       p->file, s->pos.line, s->pos.col, s->name, g->name);
	if ((r = check_conninfo(p, s)) < 0)
		return r;
	if (!s->slot && !(s->slot = default_slot(g->name, s->name)))
		return -ENOMEM;
	if (!pgwal_slot_name_ok(s->slot))
		return err_set(EINVAL, "%s:%d:%d: source '%s': slot '%s' is not a slot name PostgreSQL accepts: "
				       "1 to 63 of a-z, 0-9 and _",
			       p->file, s->pos.line, s->pos.col, s->name, s->slot);
	if (!s->application_name && !(s->application_name = strdup(s->slot)))
		return -ENOMEM;
	if (!s->application_name[0] || strlen(s->application_name) > 60 ||
	    strpbrk(s->application_name, "'\"\\ ") || strspn(s->application_name,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(s->application_name))
		return err_set(EINVAL, "%s:%d:%d: source '%s': application_name '%s' must be 1 to 60 of letters, "
				       "digits and _.- (synchronous_standby_names names it)",
			       p->file, s->pos.line, s->pos.col, s->name, s->application_name);
	s->remote = strcmp(s->synchronous, "remote") == 0;
	return 0;
}

static int cross_check(struct parse_ctx *p, struct config *c)
{
	int r;

	if ((r = yamltab_unique(p->file, &c->groups, sizeof(struct cfg_group), "group")) < 0 ||
	    (r = yamltab_unique(p->file, &c->targets, sizeof(struct cfg_target), "target")) < 0)
		return r;
	for (size_t i = 0; i < c->groups.n; i++) {
		struct cfg_group *g = CFG_GROUP(c, i);
		if ((r = yamltab_unique(p->file, &g->sources, sizeof(struct cfg_source), "source")) < 0)
			return r;
		if (!g->freeze != !g->thaw)
			return err_set(EINVAL, "%s:%d:%d: group '%s' has %s without %s; give both or neither",
				       p->file, g->pos.line, g->pos.col, g->name,
				       g->freeze ? "freeze" : "thaw", g->freeze ? "thaw" : "freeze");
		if (g->max_interval < g->interval)
			return err_set(EINVAL, "%s:%d:%d: group '%s': max_interval is shorter than interval",
				       p->file, g->pos.line, g->pos.col, g->name);
		for (size_t j = 0; j < g->sources.n; j++) {
			struct cfg_source *s = CFG_SOURCE(g, j);
			if ((r = check_source(p, g, s)) < 0)
				return r;
			for (size_t k = 0; k <= i; k++) {
				struct cfg_group *o = CFG_GROUP(c, k);
				for (size_t m = 0; m < o->sources.n && (k < i || m < j); m++) {
					const struct cfg_source *x = CFG_SOURCE(o, m);
					if (s->kind != x->kind)
						continue;
					if (s->kind == SOURCE_DISK && strcmp(x->disk, s->disk) == 0)
						return err_set(EINVAL,
							       "%s:%d:%d: disk %s is already a source of group '%s'",
							       p->file, s->pos.line, s->pos.col, s->disk, o->name);
					if (s->kind == SOURCE_POSTGRES && strcmp(x->slot, s->slot) == 0 &&
					    strcmp(x->conninfo, s->conninfo) == 0)
						return err_set(EINVAL, "%s:%d:%d: source '%s': slot %s of this cluster is "
								       "already source '%s' of group '%s': one slot per "
								       "source (name another with slot:)",
							       p->file, s->pos.line, s->pos.col, s->name, s->slot,
							       x->name, o->name);
				}
			}
		}
	}
	for (size_t i = 0; i < c->targets.n; i++) {
		struct cfg_target *t = CFG_TARGET(c, i);
		if (t->window) {
			int h1, m1, h2, m2, n = 0;
			if (sscanf(t->window, "%2d:%2d-%2d:%2d%n", &h1, &m1, &h2, &m2, &n) != 4 ||
			    (size_t)n != strlen(t->window) || h1 > 23 || h2 > 23 || m1 > 59 || m2 > 59 ||
			    h1 < 0 || h2 < 0 || m1 < 0 || m2 < 0 || (h1 == h2 && m1 == m2))
				return err_set(EINVAL, "%s:%d:%d: target '%s': window must be HH:MM-HH:MM "
						       "(local time, e.g. 22:00-06:00), got '%s'",
					       p->file, t->pos.line, t->pos.col, t->name, t->window);
			t->window_start = h1 * 60 + m1;
			t->window_end = h2 * 60 + m2;
		}
		t->kind = strcmp(t->type, "vault") == 0 ? TARGET_VAULT : TARGET_REPLICA;
		if ((r = check_vault(p, t)) < 0)
			return r;
		if (t->kind == TARGET_VAULT || strncmp(t->url, "local:/", 7) == 0)
			continue;
		if (strncmp(t->url, "ssh://", 6) == 0) {
			struct ssh_url u;
			int ur = ssh_url_parse(t->url, &u);
			if (ur < 0)
				return err_set(EINVAL, "%s:%d:%d: target '%s': %s", p->file, t->pos.line,
					       t->pos.col, t->name, err_msg(ur));
			if (!t->identity || !t->known_hosts)
				return err_set(EINVAL, "%s:%d:%d: target '%s': an ssh:// target needs "
						       "identity (the SSH private key) and known_hosts",
					       p->file, t->pos.line, t->pos.col, t->name);
			continue;
		}
		return err_set(EINVAL, "%s:%d:%d: target '%s': url must be local:/DIR or "
				       "ssh://user@host[:port]/DIR, got '%s'",
			       p->file, t->pos.line, t->pos.col, t->name, t->url);
	}
	return 0;
}

int config_parse(const char *name, const char *text, size_t len, bool check_files,
		 struct config **ret)
{
	struct parse_ctx p = { .file = name };
	struct config *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	r = yamltab_parse(name, text, len, check_files, &top_table, c);
	if (r == 0)
		r = cross_check(&p, c);
	if (r == 0 && !(c->file = strdup(name)))
		r = -ENOMEM;
	if (r < 0) {
		config_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

int config_read(const char *path, bool check_files, struct config **ret)
{
	char *text = NULL;
	size_t len;
	int r;

	/* A configuration that cannot be read is a configuration error (exit 3),
	 * whatever the errno: missing, unreadable, too large. */
	if ((r = yamltab_read(path, "configuration", &text, &len)) < 0)
		return err_recode(r, EINVAL);
	r = config_parse(path, text, len, check_files, ret);
	free(text);
	return r;
}

int config_load(const char *path, struct config **ret)
{
	return config_read(path, true, ret);
}

void config_free(struct config *c)
{
	if (!c)
		return;
	yamltab_free(&top_table, c);
	free(c->file);
	free(c);
}

bool config_has_postgres(const struct config *c)
{
	for (size_t i = 0; i < c->groups.n; i++)
		for (size_t j = 0; j < CFG_GROUP(c, i)->sources.n; j++)
			if (CFG_SOURCE(CFG_GROUP(c, i), j)->kind == SOURCE_POSTGRES)
				return true;
	return false;
}

void config_print_reference(void)
{
	yamltab_print(&top_table, "");
}
