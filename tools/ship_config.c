/* ship_config.c - ship.yaml: the declared keys of the hybrid-PRA client's
 * job, parsed by the shared table reader (lib/yamltab.c). */
#include "ship.h"
#include "config.h"
#include "err.h"
#include "s3.h"
#include "vstore_s3.h"
#include "vstore.h"
#include "yamltab.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct cfg_key ship_keys[] = {
	{ K("client", CT_NAME, struct ship_config, client), .required = true,
	  .note = "the client's name, as the operator enrolled it (bascule intake add --client)" },
	{ K("dump", CT_STR, struct ship_config, dump), .def = "pg_dump --format=custom --compress=0",
	  .note = "shell command writing tonight's dump to stdout; a non-zero exit fails the run "
		  "(custom format uncompressed: it deltas well and pg_restore --jobs reads it)" },
	{ K("public_key", CT_PATH, struct ship_config, public_key), .required = true,
	  .note = "the client's FILE.pub (bascule keygen client FILE): nights are sealed to it" },
	{ K("signing_key", CT_PATH, struct ship_config, signing_key), .required = true,
	  .note = "the client's FILE.sign, mode 0600: every night's manifest is signed with it" },
	{ K("state_dir", CT_PATH, struct ship_config, state_dir), .def = "/var/lib/bascule-ship",
	  .note = "the lock, the last night shipped and its dump's librsync signature (never uploaded)" },
	{ K("intake", CT_STR, struct ship_config, intake), .required = true,
	  .note = "the client's intake directory: sftp://USER@HOST[:PORT]/DIR, s3://BUCKET/PREFIX/NAME/incoming "
		  "or local:DIR" },
	{ K("identity", CT_PATH, struct ship_config, identity),
	  .note = "SSH private key of the client's write-once SFTP account (sftp:// only)" },
	{ K("known_hosts", CT_PATH, struct ship_config, known_hosts),
	  .note = "the intake's host key (bascule trust-host HOST --known-hosts FILE); strict" },
	{ K("full_every", CT_UINT, struct ship_config, full_every), .def = "7", .min = 1, .max = 366,
	  .note = "a full dump every N nights, deltas against the previous night in between (1: always full)" },
	{ K("delta_block", CT_SIZE, struct ship_config, delta_block), .def = "0", .max = 65536,
	  .note = "librsync block size, 64 bytes to 64KiB; 0 = auto: 128 bytes, larger for dumps over 1GiB "
		  "so that the signature kept in state_dir stays under 8 million blocks (12 bytes each)" },
	{ K("compression_level", CT_UINT, struct ship_config, compression_level), .def = "3", .min = 1,
	  .max = 19, .note = "zstd level of the payload" },
	CFG_S3_KEYS(struct ship_config, "s3:// intake", "the client's put-only account"),
	{ K("object_lock", CT_ENUM, struct ship_config, object_lock), .enums = cfg_lock_modes,
	  .note = "s3:// intake: each object and manifest is put locked, compliance (default: nobody can "
		  "delete it before its date), governance, or none" },
	{ K("lock_for", CT_DURATION, struct ship_config, lock_for), .def = "35d", .min = 86400000000ULL,
	  .max = 3650ULL * 86400ULL * 1000000ULL,
	  .note = "s3:// intake: how long each night stays locked; at least the operator's prune --keep "
		  "nights plus full_every (a kept delta's full night must stay locked too)" },
	{ 0 }
};
static const struct cfg_table ship_table = { "ship", sizeof(struct ship_config), ship_keys };

/* The s3_* and object_lock keys: required with an s3:// intake, refused without. */
static int check_s3(const char *path, const struct ship_config *c)
{
	const struct s3_keys k = S3_KEYS_OF(c);
	bool s3 = !strncmp(c->intake, "s3://", 5);
	char bucket[64], prefix[512], date[40], sentence[400];
	const char *why;
	int r;

	if (s3 && (r = vstore_s3_parse_url(c->intake, bucket, sizeof(bucket), prefix, sizeof(prefix))) < 0)
		return err_set(EINVAL, "%s: %s", path, err_msg(r));
	if ((why = s3_keys_problem(&k, s3, "intake", sentence, sizeof(sentence))))
		return err_set(EINVAL, "%s: %s", path, why);
	if (!s3)
		return 0;
	if (config_lock_mode(c->object_lock) && s3_date(time(NULL) + (time_t)(c->lock_for / 1000000), date,
							 sizeof(date)) < 0)
		return err_set(EINVAL, "%s: lock_for: %s", path, err_msg(-EINVAL));
	return 0;
}

int ship_config_read(const char *path, struct ship_config **ret)
{
	struct ship_config *c = calloc(1, sizeof(*c));
	char *text = NULL;
	size_t len;
	int r;

	if (!c)
		return -ENOMEM;
	if ((r = yamltab_read(path, "ship configuration", &text, &len)) < 0) {
		r = err_recode(r, EINVAL);
		goto fail;
	}
	r = yamltab_parse(path, text, len, false, &ship_table, c);
	free(text);
	if (r < 0)
		goto fail;
	if (c->delta_block && c->delta_block < 64) {
		r = err_set(EINVAL, "%s: delta_block %llu is below 64 bytes (0 chooses by itself)", path,
			    (unsigned long long)c->delta_block);
		goto fail;
	}
	if (!vstore_url_ok(c->intake)) {
		r = err_set(EINVAL, "%s: intake '%s' must be sftp://USER@HOST[:PORT]/DIR, s3://BUCKET/PREFIX or "
				    "local:DIR", path, c->intake);
		goto fail;
	}
	if ((r = check_s3(path, c)) < 0)
		goto fail;
	if (!strncmp(c->intake, "sftp://", 7) && (!c->identity || !c->known_hosts)) {
		r = err_set(EINVAL, "%s: an sftp:// intake needs identity: and known_hosts: (the SSH key of the "
				    "client's account and the intake's host key)", path);
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	ship_config_free(c);
	return r;
}

void ship_config_free(struct ship_config *c)
{
	if (!c)
		return;
	yamltab_free(&ship_table, c);
	free(c);
}

void ship_config_print_keys(void)
{
	yamltab_print(&ship_table, "");
}
