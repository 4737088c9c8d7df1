/* ship.h - bascule ship, the hybrid-PRA client's nightly job (docs/hybrid.md):
 * its configuration (ship.yaml, tools/ship_config.c) and one run
 * (tools/ship_run.c): dump, delta, compress, encrypt, sign, upload. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct ship_config {
	char *client;
	char *dump;           /* a shell command writing the dump to stdout */
	char *public_key;     /* FILE.pub */
	char *signing_key;    /* FILE.sign */
	char *state_dir;
	char *intake;         /* local:DIR or sftp://user@host[:port]/DIR */
	char *identity;
	char *known_hosts;
	uint64_t full_every;
	uint64_t delta_block;
	uint64_t compression_level;
	/* an s3:// intake (docs/hybrid.md, "Intake on S3") */
	char *s3_endpoint, *s3_region, *s3_credentials, *s3_ca, *s3_url_style;
	char *object_lock;    /* compliance (default) | governance | none */
	uint64_t lock_for;    /* usec: each object's retain-until is its upload plus this */
};

/* Read and check PATH (exit 3 errors with FILE:LINE:COL).  *RET is
 * malloc'd; free with ship_config_free. */
int ship_config_read(const char *path, struct ship_config **ret);
void ship_config_free(struct ship_config *c);
void ship_config_print_keys(void);

struct ship_opts {
	const char *night;    /* NULL: today's local date */
	bool verbose;
	bool force_full;
};

/* What a run did, for the --verbose line and tests. */
struct ship_result {
	bool already;         /* the night was shipped before: nothing done */
	bool full;
	char night[11], base[11];
	uint64_t dump_bytes, payload_bytes, stored_bytes;
	uint32_t objects;
	double seconds;
};

/* One run under the state directory's lock (-EBUSY if another holds it).
 * The night counts at the intake only once everything succeeded; the dump
 * command's failure is -EIO with its exit status and stderr. */
int ship_run(const struct ship_config *c, const struct ship_opts *o, struct ship_result *ret);
