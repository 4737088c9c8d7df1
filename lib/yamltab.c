/* yamltab.c - table-driven YAML documents on libyaml (see yamltab.h). */
#include "yamltab.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "netaddr.h"
#include "units.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

struct parse_ctx {
	const char *file;
	yaml_document_t doc;
	bool check_files;
};

/* A positioned error with errno CODE: EINVAL (exit 3) for what the file says,
 * a key error (exit 4) for a secret file it names that is missing or unsafe. */
static int cfg_err_code(struct parse_ctx *p, const yaml_node_t *n, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int cfg_err_code(struct parse_ctx *p, const yaml_node_t *n, int code, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(code, "%s:%zu:%zu: %s", p->file, n ? n->start_mark.line + 1 : 1,
		       n ? n->start_mark.column + 1 : 1, msg);
}
#define cfg_err(p, n, ...) cfg_err_code(p, n, EINVAL, __VA_ARGS__)

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
	case CT_BOOL: return "true or false";
	case CT_LIST: return "a list";
	case CT_STRLIST: return "a list of names such as [a, b]";
	case CT_MAP: return "a mapping of 'key: value' lines";
	case CT_ADDR: return "an address and port such as 127.0.0.1:9853";
	}
	return "?";
}

static int parse_table(struct parse_ctx *p, const yaml_node_t *map, const struct cfg_table *t,
		       void *obj);

void yamltab_free(const struct cfg_table *t, void *obj)
{
	for (const struct cfg_key *k = t->keys; k->key; k++) {
		void *field = (char *)obj + k->off;
		switch (k->type) {
		case CT_STR: case CT_NAME: case CT_PATH: case CT_DISK: case CT_SECRET: case CT_ENUM:
		case CT_ADDR:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		case CT_MAP:
			yamltab_free(k->sub, field);
			break;
		case CT_STRLIST:
		case CT_LIST: {
			struct cfg_list *l = field;
			for (size_t i = 0; i < l->n; i++)
				if (k->type == CT_STRLIST)
					free(((char **)l->items)[i]);
				else
					yamltab_free(k->sub, (char *)l->items + i * k->sub->size);
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

/* The largest value of a type the program works with, for keys that declare
 * no bound of their own (yamltab.h). */
static uint64_t type_max(enum cfg_type t)
{
	switch (t) {
	case CT_DURATION: return YAMLTAB_MAX_DURATION;
	case CT_SIZE: case CT_RATE: return YAMLTAB_MAX_SIZE;
	case CT_UINT: return YAMLTAB_MAX_UINT;
	default: return UINT64_MAX;
	}
}

/* Convert VALUE (text) into the field of K; N is for messages (NULL for defaults). */
static int set_value(struct parse_ctx *p, const yaml_node_t *n, const struct cfg_key *k,
		     const char *value, void *obj)
{
	void *field = (char *)obj + k->off;
	uint64_t v = 0, max;
	int r = 0;

	switch (k->type) {
	case CT_NAME:
		if (!name_ok(value))
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
				return cfg_err_code(p, n, k->type == CT_SECRET ? ENOKEY : EINVAL,
						    "%s '%s' cannot be used: %s", k->key, value, strerror(errno));
			if (k->type == CT_DISK && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
				return cfg_err(p, n, "%s '%s' is neither a regular file nor a block device",
					       k->key, value);
			if (k->type == CT_SECRET) {
				int fd = open(value, O_RDONLY | O_CLOEXEC);
				if (fd < 0)
					return cfg_err_code(p, n, ENOKEY, "%s '%s' cannot be opened: %s", k->key,
							    value, strerror(errno));
				r = key_check_secret_file(value, fd);
				close(fd);
				if (r < 0)
					return cfg_err_code(p, n, -r, "%s", err_msg(r));
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
	case CT_ADDR: {
		struct netaddr a;
		if ((r = netaddr_parse(value, &a)) < 0)
			return cfg_err(p, n, "%s: %s", k->key, err_msg(r));
		goto string;
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
			r = *end ? -EINVAL : errno == ERANGE ? -ERANGE : 0;
		}
		break;
	}
	case CT_BOOL:
		if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on"))
			*(bool *)field = true;
		else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off"))
			*(bool *)field = false;
		else
			return cfg_err(p, n, "%s must be true or false, got '%s'", k->key, value);
		return 0;
	case CT_LIST: case CT_STRLIST: case CT_MAP:
		return cfg_err(p, n, "%s must be %s", k->key, type_name(k->type));
	}
	if (r == -ERANGE)
		v = UINT64_MAX; /* well formed but beyond 2^64: above any bound */
	else if (r < 0)
		return cfg_err(p, n, "%s must be %s, got '%s'", k->key, type_name(k->type), value);
	max = type_max(k->type);
	if (k->max && k->max < max)
		max = k->max;
	if ((v < k->min && !(k->zero_off && v == 0)) || v > max) {
		if (k->zero_off && max == type_max(k->type))
			return cfg_err(p, n, "%s must be 0 (off) or at least %llu%s, got '%s'", k->key,
				       (unsigned long long)k->min, k->type == CT_RATE ? " bytes/s" : "", value);
		if (k->zero_off)
			return cfg_err(p, n, "%s must be 0 (off) or between %llu and %llu, got '%s'", k->key,
				       (unsigned long long)k->min, (unsigned long long)max, value);
		if (k->type == CT_DURATION) {
			char a[32], b[32];
			return cfg_err(p, n, "%s must be between %s and %s, got '%s'", k->key,
				       units_fmt_duration(k->min, a, sizeof(a)),
				       units_fmt_duration(max, b, sizeof(b)), value);
		}
		return cfg_err(p, n, "%s must be between %llu and %llu, got '%s'", k->key,
			       (unsigned long long)k->min, (unsigned long long)max, value);
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

static int parse_strlist(struct parse_ctx *p, const yaml_node_t *seq, const struct cfg_key *k,
			 void *obj)
{
	struct cfg_list *l = (struct cfg_list *)((char *)obj + k->off);
	size_t count;

	if (seq->type != YAML_SEQUENCE_NODE)
		return cfg_err(p, seq, "%s must be %s", k->key, type_name(k->type));
	count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
	if (count > 4096)
		return cfg_err(p, seq, "%s has more than 4096 items", k->key);
	l->items = calloc(count ? count : 1, sizeof(char *));
	if (!l->items)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		yaml_node_t *item = yaml_document_get_node(&p->doc, seq->data.sequence.items.start[i]);
		const char *v;
		if (item->type != YAML_SCALAR_NODE)
			return cfg_err(p, item, "each item of %s must be a name", k->key);
		v = (const char *)item->data.scalar.value;
		if (!name_ok(v))
			return cfg_err(p, item, "'%s' in %s is not a valid name", v, k->key);
		if (!(((char **)l->items)[i] = strdup(v)))
			return -ENOMEM;
		l->n = i + 1;
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
		if (k->type == CT_STRLIST) {
			if ((r = parse_strlist(p, vn, k, obj)) < 0)
				return r;
			continue;
		}
		if (k->type == CT_MAP) {
			if ((r = parse_table(p, vn, k->sub, (char *)obj + k->off)) < 0)
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
			if (k->type == CT_MAP && k->if_present)
				continue;
			if (k->type == CT_MAP) {
				/* An absent section is an empty one: its defaults apply. */
				yaml_node_t empty = { .type = YAML_MAPPING_NODE,
						      .start_mark = map->start_mark };
				if ((r = parse_table(p, &empty, k->sub, (char *)obj + k->off)) < 0)
					return r;
				continue;
			}
			if (k->def && (r = set_value(p, NULL, k, k->def, obj)) < 0)
				return r;
		}
	}
	return 0;
}


int yamltab_unique(const char *file, const struct cfg_list *l, size_t size, const char *what)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *a = *(char **)((char *)l->items + i * size + sizeof(struct cfg_pos));
		for (size_t j = 0; j < i; j++) {
			const char *b = *(char **)((char *)l->items + j * size + sizeof(struct cfg_pos));
			if (strcmp(a, b) == 0) {
				const struct cfg_pos *pos = (void *)((char *)l->items + i * size);
				return err_set(EINVAL, "%s:%d:%d: %s name '%s' is used twice", file,
					       pos->line, pos->col, what, a);
			}
		}
	}
	return 0;
}

long yamltab_find(const struct cfg_list *l, size_t size, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(*(char **)((char *)l->items + i * size + sizeof(struct cfg_pos)), name))
			return (long)i;
	return -1;
}

/* Building the document from libyaml's events, with the bounds of yamltab.h.
 * An open list or mapping is a frame; a node joins its parent once complete,
 * so an alias can only name a complete node (no cycles). */
struct compose_frame {
	int id;             /* node in the document */
	int key;            /* mapping: the key waiting for its value, or 0 */
	uint64_t weight;    /* values in it so far, aliases expanded */
	char *anchor;       /* &name, registered once the node is complete */
};

struct compose_anchor {
	char *name;
	int id;
	uint64_t weight;
};

struct compose {
	const char *file;
	yaml_document_t *doc;
	struct compose_frame stack[YAMLTAB_MAX_DEPTH];
	int depth;
	uint64_t nodes;
	struct compose_anchor anchors[YAMLTAB_MAX_ANCHORS];
	size_t n_anchors;
	bool done;          /* the root is complete */
};

static int compose_err(struct compose *c, yaml_mark_t m, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int compose_err(struct compose *c, yaml_mark_t m, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(EINVAL, "%s:%zu:%zu: %s", c->file, m.line + 1, m.column + 1, msg);
}

/* Register NAME (owned from here on; NULL: no anchor) for node ID. */
static int compose_anchor(struct compose *c, yaml_mark_t m, char *name, int id, uint64_t weight)
{
	if (!name)
		return 0;
	if (c->n_anchors == YAMLTAB_MAX_ANCHORS) {
		free(name);
		return compose_err(c, m, "more than %d anchors (&name)", YAMLTAB_MAX_ANCHORS);
	}
	c->anchors[c->n_anchors++] = (struct compose_anchor){ name, id, weight };
	return 0;
}

/* N more values in the document (a new node: 1; an alias: what it stands for). */
static int compose_count(struct compose *c, yaml_mark_t m, uint64_t n)
{
	c->nodes += n;
	if (c->nodes > YAMLTAB_MAX_NODES)
		return compose_err(c, m, "more than %d values (aliases count as what they stand "
					 "for): this is not a configuration Bascule can use",
				   YAMLTAB_MAX_NODES);
	return 0;
}

/* Node ID, standing for WEIGHT values (counted already), is complete: attach
 * it to the open list or mapping, or make it the root. */
static int compose_attach(struct compose *c, int id, uint64_t weight)
{
	struct compose_frame *f;
	yaml_node_t *parent;

	if (c->depth == 0) {
		c->done = true;
		return 0;
	}
	f = &c->stack[c->depth - 1];
	f->weight += weight;
	parent = yaml_document_get_node(c->doc, f->id);
	if (parent->type == YAML_SEQUENCE_NODE)
		return yaml_document_append_sequence_item(c->doc, f->id, id) ? 0 : -ENOMEM;
	if (!f->key) {
		f->key = id;
		return 0;
	}
	if (!yaml_document_append_mapping_pair(c->doc, f->id, f->key, id))
		return -ENOMEM;
	f->key = 0;
	return 0;
}

static int compose_event(struct compose *c, yaml_event_t *e)
{
	yaml_mark_t m = e->start_mark;
	int id, r;

	switch (e->type) {
	case YAML_SCALAR_EVENT:
		if ((r = compose_count(c, m, 1)) < 0)
			return r;
		id = yaml_document_add_scalar(c->doc, NULL, e->data.scalar.value,
					      (int)e->data.scalar.length, e->data.scalar.style);
		if (!id)
			return -ENOMEM;
		yaml_document_get_node(c->doc, id)->start_mark = m;
		yaml_document_get_node(c->doc, id)->end_mark = e->end_mark;
		if (e->data.scalar.anchor) {
			char *name = strdup((const char *)e->data.scalar.anchor);
			if (!name)
				return -ENOMEM;
			if ((r = compose_anchor(c, m, name, id, 1)) < 0)
				return r;
		}
		return compose_attach(c, id, 1);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = e->type == YAML_SEQUENCE_START_EVENT;
		yaml_char_t *anchor = seq ? e->data.sequence_start.anchor : e->data.mapping_start.anchor;
		struct compose_frame *f;

		if (c->depth == YAMLTAB_MAX_DEPTH)
			return compose_err(c, m, "lists and mappings nested more than %d deep: "
						 "look for an unclosed '[' or '{'",
					   YAMLTAB_MAX_DEPTH);
		if ((r = compose_count(c, m, 1)) < 0)
			return r;
		id = seq ? yaml_document_add_sequence(c->doc, NULL, YAML_ANY_SEQUENCE_STYLE)
			 : yaml_document_add_mapping(c->doc, NULL, YAML_ANY_MAPPING_STYLE);
		if (!id)
			return -ENOMEM;
		yaml_document_get_node(c->doc, id)->start_mark = m;
		f = &c->stack[c->depth++];
		*f = (struct compose_frame){ .id = id, .weight = 1 };
		if (anchor && !(f->anchor = strdup((const char *)anchor)))
			return -ENOMEM;
		return 0;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT: {
		struct compose_frame f = c->stack[--c->depth];
		yaml_node_t *node = yaml_document_get_node(c->doc, f.id);

		node->end_mark = e->end_mark;
		if ((r = compose_anchor(c, node->start_mark, f.anchor, f.id, f.weight)) < 0)
			return r;
		return compose_attach(c, f.id, f.weight);
	}
	case YAML_ALIAS_EVENT: {
		const char *name = (const char *)e->data.alias.anchor;
		for (size_t i = c->n_anchors; i-- > 0;)
			if (!strcmp(c->anchors[i].name, name)) {
				if ((r = compose_count(c, m, c->anchors[i].weight)) < 0)
					return r;
				return compose_attach(c, c->anchors[i].id, c->anchors[i].weight);
			}
		return compose_err(c, m, "alias *%s names no anchor &%s of a complete value before it",
				   name, name);
	}
	default:
		return 0;
	}
}

/* Read the first document of TEXT into DOC (empty: no root node), bounded. */
static int compose_document(const char *name, const char *text, size_t len, yaml_document_t *doc)
{
	struct compose c = { .file = name, .doc = doc };
	yaml_parser_t parser;
	int r = 0;

	if (!yaml_document_initialize(doc, NULL, NULL, NULL, 1, 1))
		return -ENOMEM;
	if (!yaml_parser_initialize(&parser)) {
		yaml_document_delete(doc);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (r == 0 && !c.done) {
		yaml_event_t e;

		if (!yaml_parser_parse(&parser, &e)) {
			r = err_set(EINVAL, "%s:%zu:%zu: YAML syntax error: %s%s%s", name,
				    parser.problem_mark.line + 1, parser.problem_mark.column + 1,
				    parser.problem ? parser.problem : "unknown",
				    parser.context ? " " : "", parser.context ? parser.context : "");
			break;
		}
		if (e.type == YAML_STREAM_END_EVENT || e.type == YAML_DOCUMENT_END_EVENT)
			c.done = true;
		else
			r = compose_event(&c, &e);
		yaml_event_delete(&e);
	}
	for (int i = 0; i < c.depth; i++)
		free(c.stack[i].anchor);
	for (size_t i = 0; i < c.n_anchors; i++)
		free(c.anchors[i].name);
	yaml_parser_delete(&parser);
	if (r < 0)
		yaml_document_delete(doc);
	return r;
}

int yamltab_parse(const char *name, const char *text, size_t len, bool check_files,
		  const struct cfg_table *top, void *obj)
{
	struct parse_ctx p = { .file = name, .check_files = check_files };
	yaml_node_t *root;
	int r;

	if ((r = compose_document(name, text, len, &p.doc)) < 0)
		return r;
	root = yaml_document_get_root_node(&p.doc);
	if (!root)
		r = err_set(EINVAL, "%s:1:1: the file is empty", name);
	else
		r = parse_table(&p, root, top, obj);
	yaml_document_delete(&p.doc);
	return r;
}

void yamltab_print(const struct cfg_table *t, const char *prefix)
{
	for (const struct cfg_key *k = t->keys; k->key; k++) {
		printf("%s%-16s %-10s %s%s%s%s\n", prefix, k->key,
		       k->type == CT_LIST || k->type == CT_STRLIST ? "list"
		       : k->type == CT_MAP ? "mapping" : k->type == CT_DURATION ? "duration"
		       : k->type == CT_SIZE ? "size" : k->type == CT_RATE ? "rate"
		       : k->type == CT_BOOL ? "boolean" : k->type == CT_ADDR ? "address"
		       : k->type == CT_UINT ? "number" : "string",
		       k->note, k->required ? " (required)" : "", k->def ? "; default " : "",
		       k->def ? k->def : "");
		if (k->sub) {
			char sub[64];
			snprintf(sub, sizeof(sub), "%s  ", prefix);
			yamltab_print(k->sub, sub);
		}
	}
}

int yamltab_read(const char *path, const char *what, char **text, size_t *len)
{
	int r = fs_read_all(path, 1 << 20, text, len);

	if (r < 0)
		return err_set(r == -EFBIG ? EINVAL : -r, "cannot read %s %s: %s", what, path,
			       r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
	return 0;
}
