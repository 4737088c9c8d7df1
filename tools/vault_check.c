/* vault_check.c - bascule vault check: signatures and every needed object's
 * digest; with --read-data and the vault key, every frame and block. */
#include "err.h"
#include "pgproto.h"
#include "pgwal.h"
#include "vault_tool.h"
#include "vpg.h"
#include <sodium.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Hash an object in reads of READ_MAX (a whole pack: one GET over S3, not
 * two for its last bytes): its name is the BLAKE2b of its bytes. */
static int check_object(struct vstore *vs, struct vobj *x, uint8_t *buf, size_t cap)
{
	crypto_generichash_state st;
	char path[300];
	uint8_t got[VAULT_NAME];
	uint64_t size, off = 0;
	int r;

	vault_path(x->name, false, path, sizeof(path));
	if ((r = vstore_stat(vs, path, &size, NULL)) < 0)
		return r == -ENOENT ? err_set(ENOENT, "MISSING") : r;
	if (size != x->size)
		return err_set(EBADMSG, "TRUNCATED or resized: %" PRIu64 " bytes, the manifests say %" PRIu64,
			       size, x->size);
	crypto_generichash_init(&st, NULL, 0, VAULT_NAME);
	while (off < size) {
		ssize_t n = vstore_read(vs, path, off, buf, size - off > cap ? cap : size - off);
		if (n <= 0)
			return n < 0 ? (int)n : err_set(EBADMSG, "TRUNCATED while read");
		crypto_generichash_update(&st, buf, (size_t)n);
		off += (uint64_t)n;
	}
	crypto_generichash_final(&st, got, VAULT_NAME);
	if (memcmp(got, x->name, VAULT_NAME))
		return err_set(EBADMSG, "DAMAGED: its bytes do not match its name (ciphertext digest)");
	return 0;
}

/* The objects' checks over JOBS connections at once: each worker has a
 * store of its own (the first the command's; one that cannot connect
 * leaves the work to the others), sharing its listing, and takes the next
 * object; what is wrong with one goes to its WHY sentence
 * (err_msg is per thread). */
struct checks {
	const struct vopts *o;
	struct vstore *vs;
	struct vobj *objs;
	char (*why)[512];
	size_t no;
	atomic_size_t next;
	atomic_uint_fast64_t bytes;
	atomic_int fatal;        /* the store went away, or a worker could not start */
	char fatal_msg[1024];
	pthread_mutex_t lock;
};

struct checker {
	struct checks *c;
	bool first;              /* uses the command's store */
	pthread_t th;
};

static void checks_fail(struct checks *c, int r)
{
	pthread_mutex_lock(&c->lock);
	if (!atomic_load(&c->fatal)) {
		snprintf(c->fatal_msg, sizeof(c->fatal_msg), "%s", err_msg(r));
		atomic_store(&c->fatal, r);
	}
	pthread_mutex_unlock(&c->lock);
}

/* Object I: 0 (its state set), or -ECONNRESET: the store went away. */
static int check_one(struct checks *c, struct vstore *vs, size_t i, uint8_t *buf)
{
	struct vobj *x = &c->objs[i];
	char path[300], why[512];
	int e = check_object(vs, x, buf, READ_MAX);

	if (e == -ECONNRESET)
		return e;
	if (e == 0) {
		atomic_fetch_add(&c->bytes, x->size);
		vault_path(x->name, false, path, sizeof(path));
		if (vstore_audit(vs, path, why, sizeof(why)) == 1)
			e = err_set(EBADMSG, "%s; the genuine version is intact (restore reads it)", why);
	}
	if (e < 0)
		snprintf(c->why[i], sizeof(*c->why), "%s", err_msg(e));
	x->state = e < 0 ? e : 1;
	return 0;
}

static void *check_worker(void *arg)
{
	struct checker *w = arg;
	struct checks *c = w->c;
	struct vstore *own = NULL, *vs = c->vs;
	uint8_t *buf = malloc(READ_MAX);
	int r = buf ? 0 : -ENOMEM;

	if (r == 0 && !w->first) {
		/* a store that allows fewer connections: the others do the work */
		if (vopts_store(c->o, &own) < 0) {
			err_clear();
			free(buf);
			return NULL;
		}
		vstore_share(own, c->vs);
		vs = own;
	}
	while (r == 0 && !atomic_load(&c->fatal)) {
		size_t i = atomic_fetch_add(&c->next, 1);
		if (i >= c->no)
			break;
		if (c->objs[i].state == 0)
			r = check_one(c, vs, i, buf);
	}
	if (r < 0)
		checks_fail(c, r);
	vstore_close(own);
	free(buf);
	return NULL;
}

/* Check OBJS[0..NO) (their state and WHY set) over JOBS workers; *BYTES:
 * those intact.  0, or the first error that stopped them. */
static int check_objects(const struct vopts *o, struct vstore *vs, struct vobj *objs, size_t no, char (*why)[512],
			 unsigned jobs, uint64_t *bytes)
{
	struct checks c = { .o = o, .vs = vs, .objs = objs, .why = why, .no = no };
	struct checker *w = calloc(jobs, sizeof(*w));
	unsigned started = 0;
	int r;

	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&c.lock, NULL);
	for (unsigned j = 0; j < jobs && (j == 0 || j < no); j++) {
		w[j] = (struct checker){ .c = &c, .first = j == 0 };
		if ((r = pthread_create(&w[j].th, NULL, check_worker, &w[j])) != 0) {
			if (j == 0)
				checks_fail(&c, err_set(r, "vault check: cannot start a thread: %s", strerror(r)));
			break; /* the others do the work */
		}
		started++;
	}
	for (unsigned j = 0; j < started; j++)
		pthread_join(w[j].th, NULL);
	*bytes = atomic_load(&c.bytes);
	r = atomic_load(&c.fatal);
	if (r < 0)
		r = err_set(-r, "%s", c.fatal_msg);
	pthread_mutex_destroy(&c.lock);
	free(w);
	return r;
}

/* --read-data: open every frame each retained epoch needs; check block ids. */
static int read_data(struct vstore *vs, const struct vkeys *k, const struct vmanifest *m, uint64_t *blocks)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	uint8_t *frame = malloc(VAULT_FRAME_BLOCKS * VAULT_BLOCK), *c = malloc(1u << 20);
	int r = 0;

	if (!d || !frame || !c) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < m->n_sources && r == 0; s++) {
		struct vpacks packs = { 0 };
		struct vmap map = { 0 };
		uint32_t lp = UINT32_MAX, loff = 0;
		if ((r = vault_load_map(vs, k, &m->src[s], &packs, &map)) < 0) {
			vpacks_free(&packs);
			break;
		}
		for (uint64_t b = 0; b < map.n && r == 0; b++) {
			const struct vloc *l = &map.e[b];
			uint32_t nb;
			uint8_t id[VAULT_ID];
			char path[300];
			if (l->pack == VLOC_ZERO)
				continue;
			if (l->pack != lp || l->off != loff) {
				vault_path(packs.p[l->pack].name, false, path, sizeof(path));
				if (l->len > (1u << 20) || vstore_read(vs, path, l->off, c, l->len) != (ssize_t)l->len ||
				    vault_frame_open(k, packs.p[l->pack].nonce, l->off, c, l->len, d, frame, &nb) < 0) {
					r = err_set(EBADMSG, "%s/%s epoch %" PRIu64 ": block %" PRIu64 " cannot be "
							     "read back from %s",
						    m->group, m->src[s].name, m->epoch, b, path);
					break;
				}
				lp = l->pack;
				loff = l->off;
			}
			vault_block_id(k, frame + (size_t)l->slot * VAULT_BLOCK, id);
			if (memcmp(id, l->id, VAULT_ID))
				r = err_set(EBADMSG, "%s/%s epoch %" PRIu64 ": block %" PRIu64 " decrypts to other "
						     "data than was stored",
					    m->group, m->src[s].name, m->epoch, b);
			(*blocks)++;
		}
		vmap_free(&map);
		vpacks_free(&packs);
	}
out:
	ZSTD_freeDCtx(d);
	free(frame);
	free(c);
	return r;
}

/* --read-data of PostgreSQL sources: every base piece and WAL piece
 * opened as the manifest describes it, each base against its digest, each
 * WAL piece against its keyed digest (the chain's contiguity is the
 * manifest decoder's).  Objects already read back for an earlier manifest
 * (state 2) are not read again; a base is, unless every piece was. */
static int read_pg(struct vstore *vs, const struct vkeys *k, const struct vmanifest *m, struct vobj *objs,
		   size_t no, uint64_t *pieces)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	uint8_t *buf = malloc(VPG_OBJ_RAW), got[32];
	int r = 0;

	if (!d || !buf) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < m->n_pg && r == 0; s++) {
		const struct vman_pg *p = &m->pg[s];
		for (uint32_t b = 0; b < p->n_bases && r == 0; b++) {
			const struct vpg_base *B = &p->bases[b];
			struct pgdigest dg;
			bool all = true;
			for (uint32_t f = 0; f < B->n_files; f++)
				for (uint32_t q = 0; q < B->files[f].n; q++) {
					struct vobj *x = vobj_find(objs, no, B->files[f].p[q].ref.obj);
					all &= x && x->state == 2;
				}
			if (all)
				continue;
			pgdigest_files_begin(&dg);
			for (uint32_t f = 0; f < B->n_files && r == 0; f++) {
				const struct vpg_file *F = &B->files[f];
				/* a history file travels outside the base's digest */
				bool hist = pgwal_history_file(F->name, &(uint32_t){ 0 });
				if (!hist)
					pgdigest_file(&dg, F->name, F->size);
				for (uint32_t q = 0; q < F->n && r == 0; q++) {
					if ((r = vpg_fetch(vs, k, &F->p[q].ref, VPG_BASE, B->tli, F->name, F->p[q].off,
							   F->p[q].len, d, buf)) < 0)
						break;
					if (!hist)
						pgdigest_update(&dg, buf, F->p[q].len);
					(*pieces)++;
				}
			}
			pgdigest_final(&dg, got);
			if (r == 0 && sodium_memcmp(got, B->digest, 32))
				r = err_set(EBADMSG, "%s/%s: base backup %" PRIX64 " does not match its digest", m->group,
					    p->name, B->id);
			/* Read back only once the whole base matched: a manifest
			 * sharing it must not skip a digest that failed. */
			for (uint32_t f = 0; f < B->n_files && r == 0; f++)
				for (uint32_t q = 0; q < B->files[f].n; q++) {
					struct vobj *x = vobj_find(objs, no, B->files[f].p[q].ref.obj);
					if (x)
						x->state = 2;
				}
		}
		for (uint32_t w = 0; w < p->n_wal && r == 0; w++) {
			struct vobj *x = vobj_find(objs, no, p->wal[w].ref.obj);
			if (x && x->state == 2)
				continue;
			if ((r = vpg_fetch(vs, k, &p->wal[w].ref, VPG_WAL, p->tli, "", p->wal[w].start, p->wal[w].len, d,
					   buf)) == 0 && (r = vpg_check_wal(k, p, w, buf)) == 0) {
				if (x)
					x->state = 2;
				(*pieces)++;
			}
		}
	}
out:
	ZSTD_freeDCtx(d);
	free(buf);
	return r;
}

/* Data objects in the store, referenced or not. */
struct objcount {
	struct vstore *vs;
	uint64_t n;
};

static int count_object(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	(void)name;
	(void)size;
	(void)mtime;
	((struct objcount *)ctx)->n += !is_dir;
	return 0;
}

int cmd_vault_check(int argc, char **argv)
{
	static const struct option opts[] = { VAULT_OPTS, { "read-data", no_argument, NULL, O_READ },
					      { "jobs", required_argument, NULL, O_JOBS }, { 0 } };
	struct vopts o = { 0 };
	struct vstore *vs = NULL;
	struct vmanifest *ms = NULL;
	struct vobj *objs = NULL;
	size_t n = 0, bad = 0, no = 0, damaged = 0;
	uint64_t bytes = 0, blocks = 0, pieces = 0;
	char (*why)[512] = NULL; /* per object, what is wrong with it */
	unsigned jobs = 4;
	struct vkeys k;
	uint8_t pk[32];
	bool have_k, readd = false;
	int c, r;

	while ((c = getopt_long(argc, argv, "hc:", opts, NULL)) != -1) {
		if (vopts_parse(&o, c, optarg))
			continue;
		if (c == O_READ)
			readd = true;
		else if (c == O_JOBS) {
			if (vopts_jobs(optarg, "vault check", &jobs) < 0)
				return EXIT_USAGE;
		}
		else if (c == 'h') {
			printf("Usage: bascule vault check --vault URL --verify-key FILE.pub [--read-data "
			       "--vault-key FILE] [--jobs N]\n\nProve that every manifest is signed by the vault key and "
			       "that every object it needs is present and intact (its bytes hash to its name),\n"
			       "N objects at a time over N connections (4; 1 to 64).\n"
			       "Needs no secret: the provider can run it.  --read-data (with the vault key)\n"
			       "also decrypts every block of every epoch and checks it, and every piece of\n"
			       "PostgreSQL base backups and WAL against the manifest's digests.\n"
			       "On s3:// it also names every object someone overwrote (a newer version that\n"
			       "does not match its name) or deleted (a delete marker) at the store.\n"
			       "Exit 0: intact; 5: something is missing or damaged (named on stderr); 1: the\n"
			       "vault cannot be read; 2: usage; 3: bad configuration; 4: a key is missing.\n");
			return EXIT_OK;
		} else
			return vopts_usage("vault check");
	}
	if ((r = vopts_finish(&o, "vault check")) < 0 || (r = vopts_keys(&o, readd, pk, &k, &have_k)) < 0 ||
	    (r = vopts_store(&o, &vs)) < 0 ||
	    (r = vault_manifests(vs, pk, readd ? &k : NULL, vcmd_on_bad, &bad, &ms, &n)) < 0)
		goto out;
	/* A versioned store keeps what was written over a name (an S3 overwrite,
	 * a delete marker): the genuine bytes are intact and read, but someone
	 * holding the credentials tried; that is tampering. */
	for (size_t i = 0; i < n; i++) {
		char path[300], what[512];
		vault_path(ms[i].name, true, path, sizeof(path));
		if (vstore_audit(vs, path, what, sizeof(what)) == 1) {
			fprintf(stderr, "BAD %s: %s; the genuine manifest is intact (restore reads it)\n", path, what);
			damaged++;
		}
		no += ms[i].n_objects;
	}
	if (!(objs = calloc(no + 1, sizeof(*objs))) || !(why = calloc(no + 1, sizeof(*why)))) {
		r = -ENOMEM;
		goto out;
	}
	no = 0;
	for (size_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < ms[i].n_objects; j++) {
			memcpy(objs[no].name, ms[i].obj[j], VAULT_NAME);
			objs[no++].size = ms[i].obj_size[j];
		}
	qsort(objs, no, sizeof(*objs), vobj_cmp);
	{
		size_t u = 0;
		for (size_t i = 0; i < no; i++)
			if (!u || memcmp(objs[u - 1].name, objs[i].name, VAULT_NAME))
				objs[u++] = objs[i];
			else if (objs[u - 1].size != objs[i].size)
				objs[u - 1].state = -EBADMSG;
		no = u;
		for (size_t i = 0; i < no; i++)
			if (objs[i].state < 0)
				snprintf(why[i], sizeof(*why), "manifests disagree about its size");
	}
	/* One listing for the versions of every object (over S3), not one each. */
	if ((r = vault_prefetch(vs, no ? objs[0].name : NULL, sizeof(*objs), no)) < 0)
		goto out;
	if ((r = check_objects(&o, vs, objs, no, why, jobs, &bytes)) < 0)
		goto out;
	for (size_t i = 0; i < no; i++)
		if (objs[i].state < 0) {
			char path[300];
			vault_path(objs[i].name, false, path, sizeof(path));
			fprintf(stderr, "BAD %s: %s; needed by", path, why[i]);
			for (size_t m = 0; m < n; m++)
				for (uint32_t j = 0; j < ms[m].n_objects; j++)
					if (!memcmp(ms[m].obj[j], objs[i].name, VAULT_NAME)) {
						char label[80];
						vcmd_series(&ms[m], label, sizeof(label));
						fprintf(stderr, " %s@%" PRIu64, label, ms[m].epoch);
					}
			fprintf(stderr, "\n");
			damaged++;
		}
	if (readd)
		for (size_t m = 0; m < n; m++) {
			bool skip = false;
			for (uint32_t j = 0; j < ms[m].n_objects && !skip; j++) {
				struct vobj *x = vobj_find(objs, no, ms[m].obj[j]);
				skip = !x || x->state < 0;
			}
			if (skip)
				continue; /* already reported */
			int e = read_data(vs, &k, &ms[m], &blocks);
			if (e == 0)
				e = read_pg(vs, &k, &ms[m], objs, no, &pieces);
			if (e < 0) {
				fprintf(stderr, "BAD %s@%" PRIu64 ": %s\n", ms[m].group, ms[m].epoch, err_msg(e));
				damaged++;
			}
		}
	{
		struct objcount cnt = { vs, 0 };
		char b1[32];
		/* one listing over S3 (57, one per d/XX, took 2.6 s of 5.4) */
		vstore_list_tree(vs, "d", count_object, &cnt);
		vcmd_size(bytes, b1, sizeof(b1));
		printf("%zu manifests, %zu objects (%s) checked%s; %zu bad manifests, %zu bad objects or "
		       "epochs; %" PRIu64 " unreferenced objects (interrupted uploads or pruned epochs)\n",
		       n, no, b1, readd ? ", every block decrypted and verified" : "", bad, damaged,
		       cnt.n > no ? cnt.n - no : 0);
		if (readd)
			printf("%" PRIu64 " blocks read back, %" PRIu64 " PostgreSQL base and WAL pieces\n", blocks,
			       pieces);
	}
	r = bad || damaged ? err_set(EBADMSG, "the vault is damaged: see the BAD lines above") : 0;
out:
	free(objs);
	free(why);
	vault_manifests_free(ms, n);
	vstore_close(vs);
	config_free(o.cfg);
	return r < 0 ? vopts_fail(&o, "vault check", r) : EXIT_OK;
}
