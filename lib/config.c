/* config.c - table-driven YAML configuration loader on libyaml. */
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "ssh.h"
#include "units.h"
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

enum cfg_type {
	CT_STR,      /* any string */
	CT_NAME,     /* a safe name (file name on the replica) */
	CT_PATH,     /* absolute path */
	CT_DISK,     /* absolute path of an existing file or block device */
	CT_SECRET,   /* absolute path of an existing secret file (mode 0600) */
	CT_SIZE,     /* "64KiB" */
	CT_DURATION, /* "5s" */
	CT_RATE,     /* "100MB/s" */
	CT_UINT,
	CT_ENUM,
	CT_LIST,     /* a sequence of mappings described by .sub */
};

struct cfg_table;

struct cfg_key {
	const char *key;
	enum cfg_type type;
	size_t off;
	bool required;
	uint64_t min, max;       /* numeric bounds, inclusive */
	const char *def;         /* default, written as a user would */
	const char *note;
	const char *const *enums;
	const struct cfg_table *sub;
};

struct cfg_table {
	const char *what;        /* "group", "source", ... for messages */
	size_t size;             /* element size for lists */
	const struct cfg_key *keys;
};

static const char *const target_types[] = { "replica", NULL };
static const char *const clone_modes[] = { "auto", "never", NULL };

#define K(name, t, st, field) .key = name, .type = t, .off = offsetof(st, field)

static const struct cfg_key source_keys[] = {
	{ K("name", CT_NAME, struct cfg_source, name), .required = true,
	  .note = "source name; the replica is the file DIR/GROUP/NAME" },
	{ K("disk", CT_DISK, struct cfg_source, disk), .required = true,
	  .note = "disk image file (any format) or block device to protect" },
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

static const struct cfg_key target_keys[] = {
	{ K("name", CT_NAME, struct cfg_target, name), .required = true, .note = "target name" },
	{ K("type", CT_ENUM, struct cfg_target, type), .def = "replica", .enums = target_types,
	  .note = "replica: a live, bootable copy at the secondary site" },
	{ K("url", CT_STR, struct cfg_target, url), .required = true,
	  .note = "local:/DIR (bascule recv on this machine) or ssh://user@host[:port]/DIR" },
	{ K("remote_command", CT_STR, struct cfg_target, remote_command), .def = "bascule recv",
	  .note = "receiver command; --root DIR and retention options are appended" },
	{ K("bandwidth", CT_RATE, struct cfg_target, bandwidth), .def = "0",
	  .note = "cap on bytes sent per second to this target, 0 = unlimited" },
	{ K("identity", CT_SECRET, struct cfg_target, identity), .note = "SSH private key" },
	{ K("known_hosts", CT_PATH, struct cfg_target, known_hosts), .note = "SSH known_hosts file" },
	{ K("keep_epochs", CT_UINT, struct cfg_target, keep_epochs), .def = "24", .min = 0,
	  .max = 100000, .note = "undo data kept on the replica for rollback, in epochs" },
	{ K("keep_time", CT_DURATION, struct cfg_target, keep_time), .def = "0",
	  .note = "also keep undo data younger than this (0 = by count only)" },
	{ K("max_in_flight", CT_UINT, struct cfg_target, max_in_flight), .def = "4", .min = 1,
	  .max = 64, .note = "epochs sent but not yet acknowledged, at most" },
	{ K("window", CT_STR, struct cfg_target, window),
	  .note = "send only between these local times, e.g. 22:00-06:00 (default: always)" },
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
	{ K("block_size", CT_SIZE, struct config, block_size), .def = "4KiB", .min = 4096,
	  .max = 4096, .note = "change-tracking unit; VMs write 4 KiB pages, so 4KiB" },
	{ K("io_rate", CT_RATE, struct config, io_rate), .def = "0",
	  .note = "cap on scan reads per second across all sources, 0 = unlimited" },
	{ K("scan_threads", CT_UINT, struct config, scan_threads), .def = "0", .max = 64,
	  .note = "hashing threads, 0 = one per core" },
	{ K("groups", CT_LIST, struct config, groups), .required = true, .sub = &group_table,
	  .note = "groups of sources" },
	{ K("targets", CT_LIST, struct config, targets), .required = true, .sub = &target_table,
	  .note = "where epochs are sent" },
	{ 0 }
};
static const struct cfg_table top_table = { "top level", sizeof(struct config), top_keys };

struct parse_ctx {
	const char *file;
	yaml_document_t doc;
	bool check_files;
};

static int cfg_err(struct parse_ctx *p, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int cfg_err(struct parse_ctx *p, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(EINVAL, "%s:%zu:%zu: %s", p->file, n ? n->start_mark.line + 1 : 1,
		       n ? n->start_mark.column + 1 : 1, msg);
}

bool config_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > NAME_MAX_LEN || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

static const char *type_name(enum cfg_type t)
{
	switch (t) {
	case CT_STR: return "a string";
	case CT_NAME: return "a name (letters, digits, '_', '-', '.')";
	case CT_PATH: case CT_DISK: case CT_SECRET: return "an absolute path";
	case CT_SIZE: return "a size such as 4KiB or 10MB";
	case CT_DURATION: return "a duration such as 500ms, 5s or 2m";
	case CT_RATE: return "a rate such as 100MB/s";
	case CT_UINT: return "a whole number";
	case CT_ENUM: return "one of the listed words";
	case CT_LIST: return "a list";
	}
	return "?";
}

static int parse_table(struct parse_ctx *p, const yaml_node_t *map, const struct cfg_table *t,
		       void *obj);

static void free_table(const struct cfg_table *t, void *obj)
{
	for (const struct cfg_key *k = t->keys; k->key; k++) {
		void *field = (char *)obj + k->off;
		switch (k->type) {
		case CT_STR: case CT_NAME: case CT_PATH: case CT_DISK: case CT_SECRET: case CT_ENUM:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		case CT_LIST: {
			struct cfg_list *l = field;
			for (size_t i = 0; i < l->n; i++)
				free_table(k->sub, (char *)l->items + i * k->sub->size);
			free(l->items);
			l->items = NULL;
			l->n = 0;
			break;
		}
		default:
			break;
		}
	}
}

/* Convert VALUE (text) into the field of K; N is for messages (NULL for defaults). */
static int set_value(struct parse_ctx *p, const yaml_node_t *n, const struct cfg_key *k,
		     const char *value, void *obj)
{
	void *field = (char *)obj + k->off;
	uint64_t v = 0;
	int r = 0;

	switch (k->type) {
	case CT_NAME:
		if (!config_name_ok(value))
			return cfg_err(p, n, "'%s' is not a valid name for %s: use 1-%d letters, digits, "
					     "'_', '-' or '.', not starting with '.'",
				       value, k->key, NAME_MAX_LEN);
		goto string;
	case CT_PATH: case CT_DISK: case CT_SECRET:
		if (value[0] != '/')
			return cfg_err(p, n, "%s must be an absolute path, got '%s'", k->key, value);
		if (strlen(value) >= PATH_MAX - 64)
			return cfg_err(p, n, "%s is too long", k->key);
		if (p->check_files && n && k->type != CT_PATH) {
			struct stat st;
			if (stat(value, &st) < 0)
				return cfg_err(p, n, "%s '%s' cannot be used: %s", k->key, value,
					       strerror(errno));
			if (k->type == CT_DISK && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
				return cfg_err(p, n, "%s '%s' is neither a regular file nor a block device",
					       k->key, value);
			if (k->type == CT_SECRET) {
				int fd = open(value, O_RDONLY | O_CLOEXEC);
				if (fd < 0)
					return cfg_err(p, n, "%s '%s' cannot be opened: %s", k->key, value,
						       strerror(errno));
				r = key_check_secret_file(value, fd);
				close(fd);
				if (r < 0)
					return cfg_err(p, n, "%s", err_msg(r));
			}
		}
		goto string;
	case CT_ENUM:
		for (int i = 0; k->enums[i]; i++)
			if (strcmp(k->enums[i], value) == 0)
				goto string;
		{
			char list[256] = "";
			for (int i = 0; k->enums[i]; i++) {
				strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
				strncat(list, k->enums[i], sizeof(list) - strlen(list) - 1);
			}
			return cfg_err(p, n, "%s must be one of: %s (got '%s')", k->key, list, value);
		}
	case CT_STR:
	string:
		free(*(char **)field);
		*(char **)field = strdup(value);
		return *(char **)field ? 0 : -ENOMEM;
	case CT_SIZE:
		r = units_parse_size(value, &v);
		break;
	case CT_DURATION:
		r = units_parse_duration(value, &v);
		break;
	case CT_RATE:
		r = units_parse_rate(value, &v);
		break;
	case CT_UINT: {
		char *end;
		errno = 0;
		if (value[0] == '-' || !*value)
			r = -EINVAL;
		else {
			v = strtoull(value, &end, 10);
			r = (errno || *end) ? -EINVAL : 0;
		}
		break;
	}
	case CT_LIST:
		return cfg_err(p, n, "%s must be %s", k->key, type_name(k->type));
	}
	if (r < 0)
		return cfg_err(p, n, "%s must be %s, got '%s'", k->key, type_name(k->type), value);
	if ((k->min || k->max) && (v < k->min || (k->max && v > k->max))) {
		if (k->type == CT_DURATION) {
			char a[32], b[32];
			return cfg_err(p, n, "%s must be between %s and %s, got '%s'", k->key,
				       units_fmt_duration(k->min, a, sizeof(a)),
				       units_fmt_duration(k->max, b, sizeof(b)), value);
		}
		return cfg_err(p, n, "%s must be between %llu and %llu, got '%s'", k->key,
			       (unsigned long long)k->min, (unsigned long long)k->max, value);
	}
	*(uint64_t *)field = v;
	return 0;
}

static int parse_list(struct parse_ctx *p, const yaml_node_t *seq, const struct cfg_key *k,
		      void *obj)
{
	struct cfg_list *l = (struct cfg_list *)((char *)obj + k->off);
	size_t count;
	int r;

	if (seq->type != YAML_SEQUENCE_NODE)
		return cfg_err(p, seq, "%s must be a list of %ss (each item starting with '- ')",
			       k->key, k->sub->what);
	count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
	if (count == 0)
		return cfg_err(p, seq, "%s must not be empty", k->key);
	if (count > 4096)
		return cfg_err(p, seq, "%s has more than 4096 items", k->key);
	l->items = calloc(count, k->sub->size);
	if (!l->items)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *item = yaml_document_get_node(&p->doc, seq->data.sequence.items.start[i]);
		void *elem = (char *)l->items + i * k->sub->size;
		struct cfg_pos *pos = elem;

		l->n = i + 1;
		pos->line = (int)item->start_mark.line + 1;
		pos->col = (int)item->start_mark.column + 1;
		if ((r = parse_table(p, item, k->sub, elem)) < 0)
			return r;
	}
	return 0;
}

static int parse_table(struct parse_ctx *p, const yaml_node_t *map, const struct cfg_table *t,
		       void *obj)
{
	uint64_t seen = 0;
	int r;

	if (map->type != YAML_MAPPING_NODE)
		return cfg_err(p, map, "each %s must be a mapping of 'key: value' lines", t->what);
	/* Step 2: parse what the file says. */
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *kn = yaml_document_get_node(&p->doc, pair->key);
		yaml_node_t *vn = yaml_document_get_node(&p->doc, pair->value);
		const struct cfg_key *k;
		const char *key;
		int idx = 0;

		if (kn->type != YAML_SCALAR_NODE)
			return cfg_err(p, kn, "keys must be plain words");
		key = (const char *)kn->data.scalar.value;
		for (k = t->keys; k->key; k++, idx++)
			if (strcmp(k->key, key) == 0)
				break;
		if (!k->key) {
			char list[512] = "";
			for (const struct cfg_key *o = t->keys; o->key; o++) {
				strncat(list, o == t->keys ? "" : ", ", sizeof(list) - strlen(list) - 1);
				strncat(list, o->key, sizeof(list) - strlen(list) - 1);
			}
			return cfg_err(p, kn, "unknown key '%s' in %s (known keys: %s)", key, t->what, list);
		}
		if (seen & (1ULL << idx))
			return cfg_err(p, kn, "key '%s' given twice", key);
		seen |= 1ULL << idx;
		if (k->type == CT_LIST) {
			if ((r = parse_list(p, vn, k, obj)) < 0)
				return r;
			continue;
		}
		if (vn->type != YAML_SCALAR_NODE)
			return cfg_err(p, vn, "%s must be %s, not a %s", key, type_name(k->type),
				       vn->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
		if ((r = set_value(p, vn, k, (const char *)vn->data.scalar.value, obj)) < 0)
			return r;
	}
	/* Step 3: defaults, and required keys. */
	{
		int idx = 0;
		for (const struct cfg_key *k = t->keys; k->key; k++, idx++) {
			if (seen & (1ULL << idx))
				continue;
			if (k->required)
				return cfg_err(p, map, "%s is missing the required key '%s' (%s)", t->what,
					       k->key, k->note);
			if (k->def && (r = set_value(p, NULL, k, k->def, obj)) < 0)
				return r;
		}
	}
	return 0;
}

static int check_unique(struct parse_ctx *p, const struct cfg_list *l, size_t size,
			const char *what)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *a = *(char **)((char *)l->items + i * size + sizeof(struct cfg_pos));
		for (size_t j = 0; j < i; j++) {
			const char *b = *(char **)((char *)l->items + j * size + sizeof(struct cfg_pos));
			if (strcmp(a, b) == 0) {
				const struct cfg_pos *pos = (void *)((char *)l->items + i * size);
				return err_set(EINVAL, "%s:%d:%d: %s name '%s' is used twice", p->file,
					       pos->line, pos->col, what, a);
			}
		}
	}
	return 0;
}

static int cross_check(struct parse_ctx *p, struct config *c)
{
	int r;

	if ((r = check_unique(p, &c->groups, sizeof(struct cfg_group), "group")) < 0 ||
	    (r = check_unique(p, &c->targets, sizeof(struct cfg_target), "target")) < 0)
		return r;
	for (size_t i = 0; i < c->groups.n; i++) {
		struct cfg_group *g = CFG_GROUP(c, i);
		if ((r = check_unique(p, &g->sources, sizeof(struct cfg_source), "source")) < 0)
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
			for (size_t k = 0; k < i; k++) {
				struct cfg_group *o = CFG_GROUP(c, k);
				for (size_t m = 0; m < o->sources.n; m++)
					if (strcmp(CFG_SOURCE(o, m)->disk, s->disk) == 0)
						return err_set(EINVAL,
							       "%s:%d:%d: disk %s is already a source of group '%s'",
							       p->file, s->pos.line, s->pos.col, s->disk, o->name);
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
		if (strncmp(t->url, "local:/", 7) == 0)
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
	struct parse_ctx p = { .file = name, .check_files = check_files };
	yaml_parser_t parser;
	yaml_node_t *root;
	struct config *c;
	int r = 0;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (!yaml_parser_initialize(&parser)) {
		free(c);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &p.doc)) {
		r = err_set(EINVAL, "%s:%zu:%zu: YAML syntax error: %s%s%s", name,
			    parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			    parser.problem ? parser.problem : "unknown",
			    parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		free(c);
		return r;
	}
	root = yaml_document_get_root_node(&p.doc);
	if (!root)
		r = err_set(EINVAL, "%s:1:1: the configuration is empty", name);
	else
		r = parse_table(&p, root, &top_table, c);
	if (r == 0)
		r = cross_check(&p, c);
	yaml_document_delete(&p.doc);
	yaml_parser_delete(&parser);
	if (r == 0)
		c->file = strdup(name);
	if (r < 0 || !c->file) {
		config_free(c);
		return r < 0 ? r : -ENOMEM;
	}
	*ret = c;
	return 0;
}

int config_load(const char *path, struct config **ret)
{
	char *text = NULL;
	size_t len;
	int r;

	r = fs_read_all(path, 1 << 20, &text, &len);
	if (r < 0)
		return err_set(r == -EFBIG ? EINVAL : r, "cannot read configuration %s: %s", path,
			       r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
	r = config_parse(path, text, len, true, ret);
	free(text);
	return r;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free_table(&top_table, c);
	free(c->file);
	free(c);
}

static void print_table(const struct cfg_table *t, const char *prefix)
{
	for (const struct cfg_key *k = t->keys; k->key; k++) {
		printf("%s%-16s %-10s %s%s%s%s\n", prefix, k->key,
		       k->type == CT_LIST ? "list" : k->type == CT_DURATION ? "duration"
		       : k->type == CT_SIZE ? "size" : k->type == CT_RATE ? "rate"
		       : k->type == CT_UINT ? "number" : "string",
		       k->note, k->required ? " (required)" : "", k->def ? "; default " : "",
		       k->def ? k->def : "");
		if (k->sub) {
			char sub[64];
			snprintf(sub, sizeof(sub), "%s  ", prefix);
			print_table(k->sub, sub);
		}
	}
}

void config_print_reference(void)
{
	print_table(&top_table, "");
}
