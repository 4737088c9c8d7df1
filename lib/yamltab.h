/* yamltab.h - table-driven YAML documents on libyaml, shared by the daemon's
 * configuration (bascule.yaml(5)) and the failover runbook (runbook(5)).
 *
 * A document is described by tables of keys (name, type, bounds, default,
 * note) that map onto C structs.  Parsing runs in three steps per mapping:
 * everything unset, parse what the file says, fill defaults and demand
 * required keys.  Every error names FILE:LINE:COLUMN and what to do. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "name.h"

/* What a document may build, checked while libyaml's events are read, before
 * anything else (libyaml's own time grows with the square of the nesting):
 * lists and mappings inside each other, values in all (an alias counting as
 * many values as what it stands for), and anchors (&name, each alias is
 * looked up among them).  Past any: "FILE:LINE:COL: ...". */
#define YAMLTAB_MAX_DEPTH 32
#define YAMLTAB_MAX_NODES 262144
#define YAMLTAB_MAX_ANCHORS 256

/* Numbers a key may hold when its table row sets no smaller max: a duration
 * at most 100 years (in microseconds), a size or rate at most 1 EiB, a plain
 * number at most 2^32 - 1.  A value past the bound, or too large for 64 bits
 * (5e89), is refused with its position. */
#define YAMLTAB_MAX_DURATION (36500ULL * 86400ULL * 1000000ULL)
#define YAMLTAB_MAX_SIZE (1ULL << 60)
#define YAMLTAB_MAX_UINT 4294967295ULL

struct cfg_pos {
	int line, col; /* 1-based, of the item in the file */
};

/* A parsed list: items of the sub-table's size, or char * for CT_STRLIST. */
struct cfg_list {
	void *items;
	size_t n;
};

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
	CT_BOOL,     /* true/false/yes/no; stored as bool */
	CT_ENUM,
	CT_LIST,     /* a sequence of mappings described by .sub (struct cfg_list) */
	CT_STRLIST,  /* a sequence of names (struct cfg_list of char *) */
	CT_MAP,      /* a nested mapping described by .sub, stored inline at .off */
	CT_ADDR,     /* a numeric listening address "127.0.0.1:9853" (netaddr.h), as a string */
};

struct cfg_table;

struct cfg_key {
	const char *key;
	enum cfg_type type;
	size_t off;
	bool required;
	uint64_t min, max;       /* numeric bounds, inclusive */
	bool zero_off;           /* 0 ("off", "unlimited") is allowed besides min..max */
	const char *def;         /* default, written as a user would */
	const char *note;
	const char *const *enums;
	const struct cfg_table *sub;
	bool if_present;         /* CT_MAP: an absent section stays unset (all zero), its
				  * defaults and required keys apply only when it is given */
};

struct cfg_table {
	const char *what;        /* "group", "source", ... for messages */
	size_t size;             /* element size for lists */
	const struct cfg_key *keys;
};

#define K(name, t, st, field) .key = name, .type = t, .off = offsetof(st, field)

/* Parse TEXT (named NAME in messages) into OBJ described by TOP.  CHECK_FILES
 * false skips the existence checks of disks and secrets.  On failure OBJ is
 * left for yamltab_free() and the error is recorded with err_set(). */
int yamltab_parse(const char *name, const char *text, size_t len, bool check_files,
		  const struct cfg_table *top, void *obj);
void yamltab_free(const struct cfg_table *t, void *obj);
/* Read the document at PATH (at most 1 MiB); WHAT ("configuration") names
 * it in the error. */
int yamltab_read(const char *path, const char *what, char **text, size_t *len);
/* Print every key with its type, default and note (man page source). */
void yamltab_print(const struct cfg_table *t, const char *prefix);
/* Names of a list of structs whose first fields are a cfg_pos and a char *name
 * must be unique: else -EINVAL "FILE:LINE:COL: WHAT name 'x' is used twice". */
int yamltab_unique(const char *file, const struct cfg_list *l, size_t size, const char *what);
/* Index of NAME in such a list, or -1. */
long yamltab_find(const struct cfg_list *l, size_t size, const char *name);
