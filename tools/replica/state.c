/* state.c - the group state file: where a group stands (epoch, sources,
 * digests, alarm), written atomically and checked when read. */
#include "store.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int state_write(struct replica *r, const struct rstate *s)
{
	char path[RPATH];
	uint8_t sum[32];
	struct wbuf b;
	int rc;

	wbuf_init(&b, 1 << 20);
	rc = wbuf_put_bytes(&b, S_MAGIC, 8);
	if (!rc) rc = wbuf_put_str(&b, s->group);
	if (!rc) rc = wbuf_put_u64(&b, s->epoch);
	if (!rc) rc = wbuf_put_u64(&b, s->cut_time);
	if (!rc) rc = wbuf_put_u64(&b, s->applied_time);
	if (!rc) rc = wbuf_put_u8(&b, s->flags);
	if (!rc) rc = wbuf_put_u64(&b, s->pending_undo);
	if (!rc) rc = wbuf_put_str(&b, s->alarm);
	if (!rc) {
		rc = wbuf_put_u32(&b, s->n_sources);
		for (uint32_t i = 0; !rc && i < s->n_sources; i++) {
			const struct state_source *x = &s->sources[i];
			rc = wbuf_put_str(&b, x->name);
			if (!rc) rc = wbuf_put_u64(&b, x->epoch);
			if (!rc) rc = wbuf_put_u64(&b, x->size);
			if (!rc) rc = wbuf_put_u8(&b, x->status);
			if (!rc) rc = wbuf_put_bytes(&b, x->digest, DIGEST_BYTES);
		}
	}
	if (!rc) {
		crypto_generichash(sum, sizeof(sum), b.p, b.len, NULL, 0);
		rc = wbuf_put_bytes(&b, sum, sizeof(sum));
	}
	if (!rc && !(rc = gpath(r, path, sizeof(path), s->group, "state")))
		rc = fs_write_atomic(path, b.p, b.len, 0600);
	if (!rc)
		rc = keep_owner(r, path);
	wbuf_free(&b);
	return rc;
}

int replica_load_state(struct replica *r, const char *group, struct rstate *ret)
{
	char path[RPATH], *text = NULL;
	uint8_t sum[32], magic[8];
	struct rstate s;
	struct rbuf b;
	size_t len;
	int rc;

	if ((rc = gpath(r, path, sizeof(path), group, "state")) < 0)
		return rc;
	if (access(path, F_OK) < 0)
		return -ENOENT;
	if ((rc = fs_read_all(path, 1 << 20, &text, &len)) < 0)
		return rc;
	memset(&s, 0, sizeof(s));
	rc = err_set(EBADMSG, "replica state %s is corrupt; run 'bascule replica verify' and "
			      "restore the group from the primary", path);
	if (len < 8 + 32)
		goto out;
	crypto_generichash(sum, sizeof(sum), (uint8_t *)text, len - 32, NULL, 0);
	if (sodium_memcmp(sum, text + len - 32, 32) != 0)
		goto out;
	b = rbuf_init(text, len - 32);
	if (rbuf_get_bytes(&b, magic, 8) < 0 || memcmp(magic, S_MAGIC, 8) != 0 ||
	    rbuf_get_str(&b, s.group, sizeof(s.group)) < 0 || rbuf_get_u64(&b, &s.epoch) < 0 ||
	    rbuf_get_u64(&b, &s.cut_time) < 0 || rbuf_get_u64(&b, &s.applied_time) < 0 ||
	    rbuf_get_u8(&b, &s.flags) < 0 || rbuf_get_u64(&b, &s.pending_undo) < 0 ||
	    rbuf_get_str(&b, s.alarm, sizeof(s.alarm)) < 0 || rbuf_get_u32(&b, &s.n_sources) < 0 ||
	    s.n_sources > PROTO_MAX_SOURCES)
		goto out;
	for (uint32_t i = 0; i < s.n_sources; i++) {
		struct state_source *x = &s.sources[i];
		if (rbuf_get_str(&b, x->name, sizeof(x->name)) < 0 || !config_name_ok(x->name) ||
		    rbuf_get_u64(&b, &x->epoch) < 0 || rbuf_get_u64(&b, &x->size) < 0 ||
		    rbuf_get_u8(&b, &x->status) < 0 || rbuf_get_bytes(&b, x->digest, DIGEST_BYTES) < 0)
			goto out;
	}
	if (rbuf_expect_end(&b) < 0 || strcmp(s.group, group) != 0)
		goto out;
	*ret = s;
	rc = 0;
out:
	free(text);
	return rc;
}

struct state_source *state_find(struct rstate *s, const char *name)
{
	for (uint32_t i = 0; i < s->n_sources; i++)
		if (strcmp(s->sources[i].name, name) == 0)
			return &s->sources[i];
	return NULL;
}
