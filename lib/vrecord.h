/* vrecord.h - the vault writer's local record of what it committed.
 *
 * After each manifest is written the writer records, per group, the epoch,
 * its cut time and the manifest's name, in its cache directory on the
 * primary (STATE_DIR/vault/TARGET/committed), where the provider cannot
 * reach.  `bascule restore` and `bascule vault ls` compare the vault with
 * it: an epoch recorded as committed whose manifest the vault no longer
 * holds (deleted, replaced, damaged) is named instead of silently falling
 * back to an older one (docs/vault.md, "Rolled back by the provider").
 *
 * The file: magic "BSCVREC1", be32 count, then per group: be16-prefixed
 * name, 16-byte series tag (as in its manifests), be64 epoch, be64 cut time
 * (unix usec), 32-byte manifest name.
 * Written atomically; read with the bounded reader. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "name.h"

#define VRECORD_FILE "committed"
#define VRECORD_MAX_GROUPS 4096

struct vrecord_entry {
	char group[NAME_MAX_LEN + 1];
	uint8_t series[16];
	uint64_t epoch, cut_time;
	uint8_t manifest[32];
};

struct vrecord {
	struct vrecord_entry *e;
	size_t n;
};

/* Read PATH into *ret (emptied first).  -ENOENT if there is none (no
 * sentence: "none yet" is an answer, not an error); -EBADMSG (with a
 * sentence) if it is not a record.  *ret is untouched on failure. */
int vrecord_load(const char *path, struct vrecord *ret);
/* Record that GROUP committed EPOCH; an older epoch than the one recorded
 * is ignored (epoch numbers only grow). */
int vrecord_set(struct vrecord *r, const char *group, const uint8_t series[16], uint64_t epoch,
		uint64_t cut_time, const uint8_t manifest[32]);
/* Write the record to PATH, atomically and durably (mode 0600). */
int vrecord_save(const char *path, const struct vrecord *r);
/* The entry of GROUP, or NULL. */
const struct vrecord_entry *vrecord_find(const struct vrecord *r, const char *group);
void vrecord_free(struct vrecord *r);
