/* vrecord.c - the vault writer's local record of commits (see vrecord.h). */
#include "vrecord.h"
#include "buf.h"
#include "err.h"
#include "fsutil.h"
#include <stdlib.h>
#include <string.h>

#define VRECORD_MAGIC "BSCVREC1"

void vrecord_free(struct vrecord *r)
{
	if (!r)
		return;
	free(r->e);
	r->e = NULL;
	r->n = 0;
}

const struct vrecord_entry *vrecord_find(const struct vrecord *r, const char *group)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].group, group))
			return &r->e[i];
	return NULL;
}

int vrecord_set(struct vrecord *r, const char *group, const uint8_t series[16], uint64_t epoch,
		uint64_t cut_time, const uint8_t manifest[32])
{
	struct vrecord_entry *x = (struct vrecord_entry *)vrecord_find(r, group);

	if (strlen(group) > NAME_MAX_LEN)
		return -ENAMETOOLONG;
	if (!x) {
		struct vrecord_entry *ne;
		if (r->n >= VRECORD_MAX_GROUPS)
			return -E2BIG;
		if (!(ne = realloc(r->e, (r->n + 1) * sizeof(*ne))))
			return -ENOMEM;
		r->e = ne;
		x = &r->e[r->n++];
		memset(x, 0, sizeof(*x));
		memcpy(x->group, group, strlen(group) + 1);
	} else if (epoch < x->epoch)
		return 0;
	memcpy(x->series, series, sizeof(x->series));
	x->epoch = epoch;
	x->cut_time = cut_time;
	memcpy(x->manifest, manifest, sizeof(x->manifest));
	return 0;
}

int vrecord_save(const char *path, const struct vrecord *r)
{
	struct wbuf b;
	int rc;

	wbuf_init(&b, 8 + 4 + (size_t)VRECORD_MAX_GROUPS * (2 + NAME_MAX_LEN + 16 + 8 + 8 + 32));
	if ((rc = wbuf_put_bytes(&b, VRECORD_MAGIC, 8)) < 0 || (rc = wbuf_put_u32(&b, (uint32_t)r->n)) < 0)
		goto out;
	for (size_t i = 0; i < r->n; i++)
		if ((rc = wbuf_put_str(&b, r->e[i].group)) < 0 || (rc = wbuf_put_bytes(&b, r->e[i].series, 16)) < 0 ||
		    (rc = wbuf_put_u64(&b, r->e[i].epoch)) < 0 ||
		    (rc = wbuf_put_u64(&b, r->e[i].cut_time)) < 0 ||
		    (rc = wbuf_put_bytes(&b, r->e[i].manifest, 32)) < 0)
			goto out;
	if ((rc = fs_write_atomic(path, b.p, b.len, 0600)) < 0)
		rc = err_set(rc, "cannot write the record of vault commits %s: %s", path, strerror(-rc));
out:
	wbuf_free(&b);
	return rc;
}

int vrecord_load(const char *path, struct vrecord *ret)
{
	struct vrecord r = { 0 };
	char *data = NULL;
	size_t len = 0;
	uint32_t n;
	uint8_t magic[8];
	struct rbuf b;
	int rc;

	if ((rc = fs_read_all(path, 8 + 4 + (size_t)VRECORD_MAX_GROUPS * (2 + NAME_MAX_LEN + 16 + 8 + 8 + 32),
			      &data, &len)) < 0) {
		if (rc == -ENOENT) {
			err_clear(); /* none yet: not an error, no sentence left behind */
			return rc;
		}
		return err_set(rc, "cannot read the record of vault commits %s: %s", path, strerror(-rc));
	}
	b = rbuf_init(data, len);
	if (rbuf_get_bytes(&b, magic, 8) < 0 || memcmp(magic, VRECORD_MAGIC, 8) != 0 ||
	    rbuf_get_u32(&b, &n) < 0 || n > VRECORD_MAX_GROUPS) {
		rc = -EBADMSG;
		goto fail;
	}
	if (n && !(r.e = calloc(n, sizeof(*r.e)))) {
		rc = -ENOMEM;
		goto fail;
	}
	for (r.n = 0; r.n < n; r.n++) {
		struct vrecord_entry *x = &r.e[r.n];
		if (rbuf_get_str(&b, x->group, sizeof(x->group)) < 0 || rbuf_get_bytes(&b, x->series, 16) < 0 ||
		    rbuf_get_u64(&b, &x->epoch) < 0 ||
		    rbuf_get_u64(&b, &x->cut_time) < 0 || rbuf_get_bytes(&b, x->manifest, 32) < 0) {
			rc = -EBADMSG;
			goto fail;
		}
	}
	if (rbuf_expect_end(&b) < 0) {
		rc = -EBADMSG;
		goto fail;
	}
	free(data);
	vrecord_free(ret);
	*ret = r;
	return 0;
fail:
	free(data);
	vrecord_free(&r);
	if (rc == -EBADMSG)
		rc = err_set(EBADMSG, "%s is not a record of vault commits (damaged? remove it: the next "
				      "commit writes a new one)", path);
	return rc;
}
