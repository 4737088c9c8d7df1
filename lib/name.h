/* name.h - the names of groups, sources and targets: one rule for the
 * configuration that declares them, the wire format that carries them and
 * the stores that make directories of them (so never "..", never a '/'). */
#pragma once
#include <stdbool.h>

#define NAME_MAX_LEN 64

/* True if NAME is a safe name: 1-64 of [A-Za-z0-9_.-], not starting with '.'. */
bool name_ok(const char *name);
