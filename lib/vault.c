/* vault.c - vault objects: frames, indexes, manifests (format in vault.h and
 * docs/vault.md).  Crypto is libsodium's; compression is zstd. */
#include "vault.h"
#include "array.h"
#include "err.h"
#include "vpg.h"
#include "vstore.h"
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define AEAD_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define AEAD_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
static const char MAN_MAGIC[8] = "BSCVMAN1";
static const char IDX_MAGIC[8] = "BSCVIDX1";
static const char SIGN_CTX[] = "bascule-vault-manifest-v1";
static const uint8_t FRAME_AD[] = "bscv-frame-v1";
static const uint8_t INDEX_AD[] = "bscv-index-v1";
#define MAN_MAX (256u << 20)
/* The largest sealed frame: its 2-byte header, its blocks' zstd bound, the tag. */
#define FRAME_CT_MAX (2 + ZSTD_COMPRESSBOUND(VAULT_FRAME_BLOCKS * VAULT_BLOCK) + AEAD_ABYTES)
_Static_assert(FRAME_CT_MAX - AEAD_ABYTES + VAULT_FRAME_BLOCKS * VAULT_BLOCK <= VAULT_FRAME_WORK,
	       "a frame's plaintext and its blocks fit in VAULT_FRAME_WORK");

void vault_keys(const struct vault_key *k, struct vkeys *ret)
{
	uint8_t seed[32];

	vaultkey_derive(k, VK_DATA, ret->data);
	vaultkey_derive(k, VK_NAMES, ret->names);
	vaultkey_derive(k, VK_MANIFEST, ret->manifest);
	vaultkey_derive(k, VK_SIGN_SEED, seed);
	crypto_sign_seed_keypair(ret->pk, ret->sk, seed);
	sodium_memzero(seed, sizeof(seed));
}

void vault_hex(const uint8_t name[VAULT_NAME], char hex[2 * VAULT_NAME + 1])
{
	sodium_bin2hex(hex, 2 * VAULT_NAME + 1, name, VAULT_NAME);
}

int vault_unhex(const char *hex, uint8_t name[VAULT_NAME])
{
	size_t n = 0;

	if (strlen(hex) != 2 * VAULT_NAME || sodium_hex2bin(name, VAULT_NAME, hex, 2 * VAULT_NAME, NULL, &n, NULL) != 0 ||
	    n != VAULT_NAME)
		return -EINVAL;
	for (const char *c = hex; *c; c++)
		if (*c >= 'A' && *c <= 'F')
			return -EINVAL; /* names are written in lower case only */
	return 0;
}

void vault_path(const uint8_t name[VAULT_NAME], bool manifest, char *buf, size_t len)
{
	char hex[2 * VAULT_NAME + 1];

	vault_hex(name, hex);
	if (manifest)
		snprintf(buf, len, "m/%s", hex);
	else
		snprintf(buf, len, "d/%.2s/%s", hex, hex);
}

int vault_prefetch(struct vstore *v, const uint8_t *names, size_t stride, size_t n)
{
	enum { PATH = 2 * VAULT_NAME + 8 };
	char *paths = n ? malloc(n * PATH) : NULL;
	const char **p = n ? malloc(n * sizeof(*p)) : NULL;
	int r;

	if (n && (!paths || !p)) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		vault_path(names + i * stride, false, paths + i * PATH, PATH);
		p[i] = paths + i * PATH;
	}
	r = vstore_prefetch(v, "d", p, n);
out:
	free(paths);
	free(p);
	return r;
}

void vault_object_name(const void *data, size_t len, uint8_t name[VAULT_NAME])
{
	crypto_generichash(name, VAULT_NAME, data, len, NULL, 0);
}

size_t vault_padme(size_t len)
{
	unsigned e, s;
	size_t mask;

	if (len < 2)
		return len;
	e = 63u - (unsigned)__builtin_clzll((unsigned long long)len);
	s = 64u - (unsigned)__builtin_clzll((unsigned long long)e);
	mask = ((size_t)1 << (e - s)) - 1;
	return (len + mask) & ~mask;
}

void vault_block_id(const struct vkeys *k, const uint8_t block[VAULT_BLOCK], uint8_t id[VAULT_ID])
{
	crypto_generichash(id, VAULT_ID, block, VAULT_BLOCK, k->names, sizeof(k->names));
}

void vault_series(const struct vkeys *k, const char *group, uint8_t ret[16])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, k->names, sizeof(k->names), 16);
	crypto_generichash_update(&st, (const uint8_t *)"series", 7);
	crypto_generichash_update(&st, (const uint8_t *)group, strlen(group) + 1);
	crypto_generichash_final(&st, ret, 16);
}

/* ---- frames ---- */

static void frame_nonce(const uint8_t pn[16], uint32_t off, uint8_t nonce[AEAD_NONCE])
{
	memcpy(nonce, pn, 16);
	put_be64(nonce + 16, off);
}

int vault_frame_seal(const struct vkeys *k, const uint8_t pn[16], const uint8_t *blocks, uint32_t n,
		     void *zctx, struct wbuf *out)
{
	size_t raw = (size_t)n * VAULT_BLOCK, bound = ZSTD_compressBound(raw), z;
	uint8_t nonce[AEAD_NONCE], *pt;
	unsigned long long clen;
	size_t off = out->len;
	int r;

	if (n == 0 || n > VAULT_FRAME_BLOCKS || off > UINT32_MAX - (2 + bound + AEAD_ABYTES))
		return -EINVAL;
	if (!(pt = malloc(2 + bound)))
		return -ENOMEM;
	z = ZSTD_compressCCtx(zctx, pt + 2, bound, blocks, raw, 3);
	if (!ZSTD_isError(z) && z < raw) {
		pt[0] = 1;
	} else {
		pt[0] = 0;
		memcpy(pt + 2, blocks, raw);
		z = raw;
	}
	pt[1] = (uint8_t)n;
	if ((r = wbuf_reserve(out, 2 + z + AEAD_ABYTES)) < 0) {
		free(pt);
		return r;
	}
	frame_nonce(pn, (uint32_t)off, nonce);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out->p + off, &clen, pt, 2 + z, FRAME_AD,
						   sizeof(FRAME_AD), NULL, nonce, k->data);
	out->len += (size_t)clen;
	free(pt);
	return 0;
}

/* The plaintext PT (PLEN bytes) of a frame: its blocks in place (stored)
 * or decompressed into OUT. */
static int frame_unpack(const uint8_t *pt, size_t plen, void *dctx, uint8_t *out, const uint8_t **blocks,
			uint32_t *n_blocks)
{
	uint32_t n = plen >= 2 ? pt[1] : 0;

	if (n == 0 || n > VAULT_FRAME_BLOCKS)
		return -EBADMSG;
	if (pt[0] == 1) {
		/* What the writer makes and nothing else: one zstd frame of the
		 * current format, its content size n blocks, nothing after it
		 * (a restore decodes before the blocks' ids are checked: no
		 * legacy decoder, no second frame, for made-up bytes). */
		size_t z;
		if (plen < 2 + 4 || ((uint32_t)pt[2] | (uint32_t)pt[3] << 8 | (uint32_t)pt[4] << 16 | (uint32_t)pt[5] << 24) != ZSTD_MAGICNUMBER ||
		    ZSTD_findFrameCompressedSize(pt + 2, plen - 2) != plen - 2 ||
		    ZSTD_getFrameContentSize(pt + 2, plen - 2) != (unsigned long long)n * VAULT_BLOCK)
			return -EBADMSG;
		z = ZSTD_decompressDCtx(dctx, out, (size_t)n * VAULT_BLOCK, pt + 2, plen - 2);
		if (ZSTD_isError(z) || z != (size_t)n * VAULT_BLOCK)
			return -EBADMSG;
		*blocks = out;
	} else if (pt[0] == 0 && plen - 2 == (size_t)n * VAULT_BLOCK)
		*blocks = pt + 2;
	else
		return -EBADMSG;
	*n_blocks = n;
	return 0;
}

static bool frame_len_ok(uint32_t clen)
{
	return clen >= 2 + AEAD_ABYTES && clen <= FRAME_CT_MAX;
}

int vault_frame_open(const struct vkeys *k, const uint8_t pn[16], uint32_t off, const uint8_t *c,
		     uint32_t clen, void *dctx, uint8_t *out, uint32_t *n_blocks)
{
	uint8_t nonce[AEAD_NONCE], *pt;
	const uint8_t *blocks;
	unsigned long long plen;
	int r = -EBADMSG;

	if (!frame_len_ok(clen))
		return -EBADMSG;
	if (!(pt = malloc(clen)))
		return -ENOMEM;
	frame_nonce(pn, off, nonce);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &plen, NULL, c, clen, FRAME_AD, sizeof(FRAME_AD),
						       nonce, k->data) == 0 &&
	    (r = frame_unpack(pt, plen, dctx, out, &blocks, n_blocks)) == 0 && blocks != out)
		memcpy(out, blocks, (size_t)*n_blocks * VAULT_BLOCK);
	free(pt);
	return r;
}

/* XChaCha20-Poly1305 (IETF) encrypts with the ChaCha20 block counter from 1
 * (block 0 makes the Poly1305 key) under HChaCha20's subkey and the nonce's
 * last 8 bytes: the stream XChaCha20 from block 1, without the tag. */
int vault_frame_decrypt(const struct vkeys *k, const uint8_t pn[16], uint32_t off, const uint8_t *c,
			uint32_t clen, void *dctx, uint8_t *work, const uint8_t **blocks, uint32_t *n_blocks)
{
	uint8_t nonce[AEAD_NONCE];
	size_t plen = clen - AEAD_ABYTES;

	if (!frame_len_ok(clen))
		return -EBADMSG;
	frame_nonce(pn, off, nonce);
	crypto_stream_xchacha20_xor_ic(work, c, plen, nonce, 1, k->data);
	return frame_unpack(work, plen, dctx, work + plen, blocks, n_blocks);
}

/* ---- pack table ---- */

static uint32_t name_hash(const uint8_t *name)
{
	uint32_t h;
	memcpy(&h, name, sizeof(h));
	return h;
}

static int vpacks_rehash(struct vpacks *t, uint32_t nslot)
{
	uint32_t *s = calloc(nslot, sizeof(*s));

	if (!s)
		return -ENOMEM;
	for (uint32_t i = 0; i < t->n; i++) {
		uint32_t h = name_hash(t->p[i].name) & (nslot - 1);
		while (s[h])
			h = (h + 1) & (nslot - 1);
		s[h] = i + 1;
	}
	free(t->slot);
	t->slot = s;
	t->nslot = nslot;
	return 0;
}

uint32_t vpacks_find(const struct vpacks *t, const uint8_t name[VAULT_NAME])
{
	if (!t->nslot)
		return UINT32_MAX;
	for (uint32_t h = name_hash(name) & (t->nslot - 1); t->slot[h]; h = (h + 1) & (t->nslot - 1))
		if (!memcmp(t->p[t->slot[h] - 1].name, name, VAULT_NAME))
			return t->slot[h] - 1;
	return UINT32_MAX;
}

int vpacks_add(struct vpacks *t, const struct vpack *p, uint32_t *ret)
{
	uint32_t h;
	int r;

	if ((h = vpacks_find(t, p->name)) != UINT32_MAX) {
		*ret = h;
		return 0;
	}
	if (t->n == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 64;
		struct vpack *np = realloc(t->p, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		t->p = np;
		t->cap = cap;
	}
	if ((t->n + 1) * 2 > t->nslot && (r = vpacks_rehash(t, t->nslot ? t->nslot * 2 : 128)) < 0)
		return r;
	t->p[t->n] = *p;
	for (h = name_hash(p->name) & (t->nslot - 1); t->slot[h]; h = (h + 1) & (t->nslot - 1))
		;
	t->slot[h] = t->n + 1;
	*ret = t->n++;
	return 0;
}

void vpacks_free(struct vpacks *t)
{
	free(t->p);
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

/* ---- maps ---- */

uint64_t vault_max_source = 1ULL << 50;

int vmap_resize(struct vmap *m, uint64_t size)
{
	uint64_t n = (size + VAULT_BLOCK - 1) / VAULT_BLOCK;

	if (size > vault_max_source)
		return err_set(EFBIG, "a vault index describes a source of %llu bytes, beyond the limit",
			       (unsigned long long)size);
	if (n != m->n) {
		struct vloc *e = realloc(m->e, (n ? n : 1) * sizeof(*e));
		if (!e)
			return -ENOMEM;
		for (uint64_t i = m->n; i < n; i++) {
			memset(&e[i], 0, sizeof(e[i]));
			e[i].pack = VLOC_ZERO;
		}
		m->e = e;
		m->n = n;
	}
	m->size = size;
	return 0;
}

void vmap_free(struct vmap *m)
{
	free(m->e);
	memset(m, 0, sizeof(*m));
}

void vault_image_hash(const struct vkeys *k, const struct vmap *m, uint8_t ret[32])
{
	static const uint8_t zero[VAULT_ID];
	crypto_generichash_state st;
	uint8_t sz[8];

	crypto_generichash_init(&st, k->names, sizeof(k->names), 32);
	put_be64(sz, m->size);
	crypto_generichash_update(&st, sz, sizeof(sz));
	for (uint64_t i = 0; i < m->n; i++)
		crypto_generichash_update(&st, m->e[i].pack == VLOC_ZERO ? zero : m->e[i].id, VAULT_ID);
	crypto_generichash_final(&st, ret, 32);
}

/* ---- indexes ---- */

int vault_index_encode(const struct vkeys *k, bool full, uint64_t epoch, const struct vmap *m,
		       const uint64_t *changed, size_t n_changed, const struct vpacks *packs,
		       struct wbuf *out)
{
	uint32_t *local = NULL, n_local = 0;
	uint64_t n = 0;
	struct wbuf b;
	void *z = NULL;
	size_t zcap;
	int r = -ENOMEM;

	wbuf_init(&b, VAULT_OBJ_MAX);
	if (!(local = malloc((packs->n ? packs->n : 1) * sizeof(*local))))
		goto out;
	memset(local, 0xff, (packs->n ? packs->n : 1) * sizeof(*local));
	/* Entries: every non-zero block (full) or the changed ones (delta). */
#define EACH(body)                                                                                      \
	do {                                                                                            \
		if (full) {                                                                             \
			for (uint64_t bi = 0; bi < m->n; bi++)                                          \
				if (m->e[bi].pack != VLOC_ZERO) {                                       \
					const struct vloc *l = &m->e[bi];                               \
					(void)l;                                                        \
					body;                                                           \
				}                                                                       \
		} else {                                                                                \
			for (size_t ci = 0; ci < n_changed; ci++) {                                     \
				uint64_t bi = changed[ci];                                              \
				const struct vloc *l = &m->e[bi];                                       \
				(void)l;                                                                \
				body;                                                                   \
			}                                                                               \
		}                                                                                       \
	} while (0)
	EACH({
		(void)bi;
		n++;
		if (l->pack != VLOC_ZERO && local[l->pack] == UINT32_MAX)
			local[l->pack] = n_local++;
	});
	wbuf_put_bytes(&b, IDX_MAGIC, 8);
	wbuf_put_u8(&b, full ? 1 : 2);
	wbuf_put_u64(&b, epoch);
	wbuf_put_u64(&b, m->size);
	wbuf_put_u32(&b, n_local);
	{
		/* the packs in local order */
		uint8_t *tab = malloc((size_t)(n_local ? n_local : 1) * (VAULT_NAME + 16));
		if (!tab)
			goto out;
		for (uint32_t p = 0; p < packs->n; p++)
			if (local[p] != UINT32_MAX) {
				memcpy(tab + (size_t)local[p] * 48, packs->p[p].name, VAULT_NAME);
				memcpy(tab + (size_t)local[p] * 48 + VAULT_NAME, packs->p[p].nonce, 16);
			}
		wbuf_put_bytes(&b, tab, (size_t)n_local * 48);
		free(tab);
	}
	wbuf_put_u64(&b, n);
	/* Columns: numbers compress far better apart from the random ids. */
	{
		uint64_t prev = 0;
		EACH({
			wbuf_put_u64(&b, bi - prev);
			prev = bi;
		});
	}
	EACH(wbuf_put_u32(&b, l->pack == VLOC_ZERO ? VLOC_ZERO : local[l->pack]));
	EACH(wbuf_put_u32(&b, l->off));
	EACH(wbuf_put_u32(&b, l->len));
	EACH(wbuf_put_u8(&b, l->slot));
	EACH(wbuf_put_bytes(&b, l->id, VAULT_ID));
#undef EACH
	if (b.len >= b.max) {
		r = -EFBIG;
		goto out;
	}
	zcap = ZSTD_compressBound(b.len);
	if (!(z = malloc(zcap)))
		goto out;
	zcap = ZSTD_compress(z, zcap, b.p, b.len, 3);
	if (ZSTD_isError(zcap)) {
		r = -EIO;
		goto out;
	}
	r = vault_seal(k->data, INDEX_AD, sizeof(INDEX_AD), z, zcap, 0, out);
out:
	free(z);
	free(local);
	wbuf_free(&b);
	return r;
}

int vault_index_apply(const struct vkeys *k, const uint8_t *obj, size_t len, struct vpacks *packs,
		      struct vmap *m)
{
	uint8_t *z = NULL, *raw = NULL, kind, magic[8];
	size_t zlen;
	unsigned long long rawlen;
	uint32_t n_local, *map = NULL;
	uint64_t epoch, size, n;
	struct rbuf b;
	int r;

	if ((r = vault_unseal(k->data, INDEX_AD, sizeof(INDEX_AD), obj, len, &z, &zlen)) < 0)
		return err_set(EBADMSG, "an index object does not open with this vault key (wrong key, or altered)");
	rawlen = ZSTD_getFrameContentSize(z, zlen);
	if (rawlen == ZSTD_CONTENTSIZE_ERROR || rawlen == ZSTD_CONTENTSIZE_UNKNOWN || rawlen > VAULT_OBJ_MAX) {
		r = -EBADMSG;
		goto out;
	}
	if (!(raw = malloc(rawlen ? rawlen : 1))) {
		r = -ENOMEM;
		goto out;
	}
	if (ZSTD_decompress(raw, rawlen, z, zlen) != rawlen) {
		r = -EBADMSG;
		goto out;
	}
	b = rbuf_init(raw, rawlen);
	if ((r = rbuf_get_bytes(&b, magic, 8)) < 0 || memcmp(magic, IDX_MAGIC, 8) ||
	    (r = rbuf_get_u8(&b, &kind)) < 0 || (kind != 1 && kind != 2) || (r = rbuf_get_u64(&b, &epoch)) < 0 ||
	    (r = rbuf_get_u64(&b, &size)) < 0 || (r = rbuf_get_u32(&b, &n_local)) < 0 ||
	    n_local > rbuf_left(&b) / 48) {
		r = -EBADMSG;
		goto out;
	}
	if (!(map = malloc((n_local ? n_local : 1) * sizeof(*map)))) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n_local; i++) {
		struct vpack p;
		rbuf_get_bytes(&b, p.name, VAULT_NAME);
		rbuf_get_bytes(&b, p.nonce, 16);
		if ((r = vpacks_add(packs, &p, &map[i])) < 0)
			goto out;
	}
	if (kind == 1) {
		free(m->e);
		m->e = NULL;
		m->n = 0;
	}
	if ((r = vmap_resize(m, size)) < 0)
		goto out;
	if ((r = rbuf_get_u64(&b, &n)) < 0 || n > m->n || rbuf_left(&b) != n * (8 + 4 + 4 + 4 + 1 + VAULT_ID)) {
		r = -EBADMSG;
		goto out;
	}
	{
		const uint8_t *cb = b.p + b.off, *cp = cb + n * 8, *co = cp + n * 4, *cl = co + n * 4,
			      *cs = cl + n * 4, *ci = cs + n;
		uint64_t bi = 0;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t d = get_be64(cb + i * 8);
			uint32_t p = get_be32(cp + i * 4);
			struct vloc *l;
			bi += d;
			if ((i && d == 0) || bi >= m->n || (p != VLOC_ZERO && p >= n_local)) {
				r = -EBADMSG;
				goto out;
			}
			l = &m->e[bi];
			l->pack = p == VLOC_ZERO ? VLOC_ZERO : map[p];
			l->off = get_be32(co + i * 4);
			l->len = get_be32(cl + i * 4);
			l->slot = cs[i];
			memcpy(l->id, ci + i * VAULT_ID, VAULT_ID);
			if (l->pack != VLOC_ZERO && l->slot >= VAULT_FRAME_BLOCKS) {
				r = -EBADMSG;
				goto out;
			}
		}
	}
	r = 0;
out:
	if (r == -EBADMSG)
		err_set(EBADMSG, "an index object is malformed");
	free(map);
	free(raw);
	free(z);
	return r;
}

/* ---- manifests ---- */

static void sign_input(crypto_sign_state *st, const uint8_t *data, size_t len)
{
	crypto_sign_init(st);
	crypto_sign_update(st, (const uint8_t *)SIGN_CTX, sizeof(SIGN_CTX));
	crypto_sign_update(st, data, len);
}

int vault_manifest_encode(const struct vkeys *k, const struct vmanifest *m, struct wbuf *out)
{
	struct wbuf pub, priv, head;
	crypto_sign_state st;
	size_t start = out->len, sealed_at;
	int r = 0;

	wbuf_init(&pub, MAN_MAX);
	wbuf_init(&priv, MAN_MAX);
	wbuf_init(&head, MAN_MAX);
	wbuf_put_u8(&pub, 1);
	wbuf_put_bytes(&pub, m->series, 16);
	wbuf_put_u64(&pub, m->epoch);
	wbuf_put_u64(&pub, m->cut_time);
	wbuf_put_u32(&pub, m->n_objects);
	for (uint32_t i = 0; i < m->n_objects; i++) {
		wbuf_put_bytes(&pub, m->obj[i], VAULT_NAME);
		wbuf_put_u64(&pub, m->obj_size[i]);
	}
	wbuf_put_str(&priv, m->group);
	wbuf_put_u8(&priv, m->flags);
	wbuf_put_u32(&priv, m->n_sources);
	for (uint32_t s = 0; s < m->n_sources; s++) {
		const struct vman_source *x = &m->src[s];
		wbuf_put_str(&priv, x->name);
		wbuf_put_u64(&priv, x->size);
		wbuf_put_bytes(&priv, x->digest, 32);
		wbuf_put_bytes(&priv, x->image, 32);
		wbuf_put_bytes(&priv, x->base, VAULT_NAME);
		wbuf_put_u32(&priv, x->n_deltas);
		for (uint32_t d = 0; d < x->n_deltas; d++)
			wbuf_put_bytes(&priv, x->deltas[d], VAULT_NAME);
	}
	/* PostgreSQL sources follow the disks (absent from older manifests). */
	if (m->n_pg && (r = vpg_encode(&priv, m->pg, m->n_pg)) < 0)
		goto out;
	if (pub.len >= pub.max || priv.len >= priv.max) {
		r = -EFBIG;
		goto out;
	}
	/* magic || be32 publen || pub || be32 privlen || sealed priv || signature */
	wbuf_put_bytes(&head, MAN_MAGIC, 8);
	wbuf_put_u32(&head, (uint32_t)pub.len);
	wbuf_put_bytes(&head, pub.p, pub.len);
	if ((r = wbuf_put_bytes(out, head.p, head.len)) < 0 || (r = wbuf_put_u32(out, 0)) < 0)
		goto out;
	sealed_at = out->len;
	if ((r = vault_seal(k->manifest, head.p, head.len, priv.p, priv.len, head.len + 4 + 64, out)) < 0)
		goto out;
	put_be32(out->p + sealed_at - 4, (uint32_t)(out->len - sealed_at));
	if ((r = wbuf_reserve(out, 64)) < 0)
		goto out;
	sign_input(&st, out->p + start, out->len - start);
	crypto_sign_final_create(&st, out->p + out->len, NULL, k->sk);
	out->len += 64;
out:
	wbuf_free(&pub);
	wbuf_free(&priv);
	wbuf_free(&head);
	return r;
}

void vault_manifest_free(struct vmanifest *m)
{
	if (!m)
		return;
	free(m->obj);
	free(m->obj_size);
	for (uint32_t s = 0; m->src && s < m->n_sources; s++)
		free(m->src[s].deltas);
	free(m->src);
	vpg_free(m->pg, m->n_pg);
	memset(m, 0, sizeof(*m));
}

static int decode_private(const struct vkeys *k, const uint8_t *ad, size_t adlen, const uint8_t *c,
			  size_t clen, struct vmanifest *m)
{
	uint8_t *pt;
	size_t plen;
	struct rbuf b;
	int r;

	if ((r = vault_unseal(k->manifest, ad, adlen, c, clen, &pt, &plen)) < 0)
		return err_set(EKEYREJECTED, "the manifest does not open with this vault key (another "
					     "vault's key?)");
	b = rbuf_init(pt, plen);
	if ((r = rbuf_get_str(&b, m->group, sizeof(m->group))) < 0 || (r = rbuf_get_u8(&b, &m->flags)) < 0 ||
	    (r = rbuf_get_u32(&b, &m->n_sources)) < 0 || m->n_sources > 64)
		goto bad;
	if (!(m->src = calloc(m->n_sources ? m->n_sources : 1, sizeof(*m->src)))) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < m->n_sources; s++) {
		struct vman_source *x = &m->src[s];
		if ((r = rbuf_get_str(&b, x->name, sizeof(x->name))) < 0 || (r = rbuf_get_u64(&b, &x->size)) < 0 ||
		    (r = rbuf_get_bytes(&b, x->digest, 32)) < 0 || (r = rbuf_get_bytes(&b, x->image, 32)) < 0 ||
		    (r = rbuf_get_bytes(&b, x->base, VAULT_NAME)) < 0 || (r = rbuf_get_u32(&b, &x->n_deltas)) < 0 ||
		    x->n_deltas > rbuf_left(&b) / VAULT_NAME)
			goto bad;
		if (!(x->deltas = malloc((x->n_deltas ? x->n_deltas : 1) * VAULT_NAME))) {
			r = -ENOMEM;
			goto out;
		}
		rbuf_get_bytes(&b, x->deltas, (size_t)x->n_deltas * VAULT_NAME);
	}
	/* Every piece it names must be in the public list: prune goes by it. */
	if (rbuf_left(&b) && ((r = vpg_decode(&b, &m->pg, &m->n_pg)) < 0 ||
			      (r = vpg_check_listed(m->pg, m->n_pg, m->obj, m->n_objects)) < 0)) {
		if (r == -ENOMEM)
			goto out;
		goto bad;
	}
	if ((r = rbuf_expect_end(&b)) < 0)
		goto bad;
	m->opened = true;
	r = 0;
	goto out;
bad:
	r = err_set(EBADMSG, "the manifest's private part is malformed");
out:
	sodium_memzero(pt, plen);
	free(pt);
	return r;
}

/* The public part of a manifest (signature not checked): series, epoch, cut
 * time, objects into *M; the sealed private part's place into CP, CPLEN and
 * the length of what it is bound to into ADLEN. */
static int manifest_public(const uint8_t *data, size_t len, struct vmanifest *m, size_t *adlen,
			   const uint8_t **cp, uint32_t *cplen)
{
	struct rbuf b, pub;
	uint32_t publen, privlen;
	const uint8_t *pp;
	uint8_t ver;

	memset(m, 0, sizeof(*m));
	if (len < 8 + 4 + 4 + 64 || memcmp(data, MAN_MAGIC, 8) != 0)
		return err_set(EBADMSG, "not a Bascule vault manifest");
	b = rbuf_init(data + 8, len - 8 - 64);
	if (rbuf_get_u32(&b, &publen) < 0 || rbuf_get_view(&b, publen, &pp) < 0 ||
	    rbuf_get_u32(&b, &privlen) < 0 || rbuf_get_view(&b, privlen, cp) < 0 || rbuf_expect_end(&b) < 0)
		goto bad;
	pub = rbuf_init(pp, publen);
	if (rbuf_get_u8(&pub, &ver) < 0 || ver != 1 || rbuf_get_bytes(&pub, m->series, 16) < 0 ||
	    rbuf_get_u64(&pub, &m->epoch) < 0 || rbuf_get_u64(&pub, &m->cut_time) < 0 ||
	    rbuf_get_u32(&pub, &m->n_objects) < 0 || m->n_objects > rbuf_left(&pub) / (VAULT_NAME + 8))
		goto bad;
	m->obj = malloc((m->n_objects ? m->n_objects : 1) * VAULT_NAME);
	m->obj_size = malloc((m->n_objects ? m->n_objects : 1) * sizeof(uint64_t));
	if (!m->obj || !m->obj_size) {
		vault_manifest_free(m);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < m->n_objects; i++) {
		rbuf_get_bytes(&pub, m->obj[i], VAULT_NAME);
		rbuf_get_u64(&pub, &m->obj_size[i]);
	}
	if (rbuf_expect_end(&pub) < 0)
		goto bad;
	*adlen = 8 + 4 + publen;
	*cplen = privlen;
	return 0;
bad:
	vault_manifest_free(m);
	return err_set(EBADMSG, "the manifest is malformed (signed, but not by this version of Bascule?)");
}

int vault_manifest_decode(const uint8_t pk[32], const struct vkeys *k, const uint8_t *data, size_t len,
			  struct vmanifest *ret)
{
	struct vmanifest m;
	crypto_sign_state st;
	const uint8_t *cp;
	uint32_t cplen;
	size_t adlen;
	int r;

	if (len < 8 + 4 + 4 + 64 || memcmp(data, MAN_MAGIC, 8) != 0)
		return err_set(EBADMSG, "not a Bascule vault manifest");
	sign_input(&st, data, len - 64);
	if (crypto_sign_final_verify(&st, data + len - 64, pk) != 0)
		return err_set(EBADMSG, "BAD SIGNATURE: the manifest was altered, or signed by another vault key");
	if ((r = manifest_public(data, len, &m, &adlen, &cp, &cplen)) < 0)
		return r;
	if (k && (r = decode_private(k, data, adlen, cp, cplen, &m)) < 0) {
		vault_manifest_free(&m);
		return r;
	}
	vault_object_name(data, len, m.name);
	m.file_size = len;
	*ret = m;
	return 0;
}

int vault_manifest_peek(const uint8_t *data, size_t len, uint8_t ret_series[16], uint64_t *ret_epoch,
			uint64_t *ret_cut_time)
{
	struct vmanifest m;
	const uint8_t *cp;
	uint32_t cplen;
	size_t adlen;
	int r;

	if ((r = manifest_public(data, len, &m, &adlen, &cp, &cplen)) < 0)
		return r;
	memcpy(ret_series, m.series, 16);
	*ret_epoch = m.epoch;
	*ret_cut_time = m.cut_time;
	vault_manifest_free(&m);
	return 0;
}

/* ---- reading a store ---- */

struct mlist {
	struct vstore *v;
	const uint8_t *pk;
	const struct vkeys *k;
	vault_bad_cb bad;
	void *ctx;
	struct vmanifest *m;
	size_t n, cap;
};

static int on_manifest(void *ctx, const char *name, int is_dir, uint64_t size, uint64_t mtime)
{
	struct mlist *l = ctx;
	struct vmanifest *nm;
	char path[300];
	uint8_t want[VAULT_NAME], *data;
	size_t len;
	int r;

	(void)size;
	if (is_dir)
		return 0;
	snprintf(path, sizeof(path), "m/%s", name);
	if (vault_unhex(name, want) < 0) {
		if (l->bad)
			l->bad(l->ctx, path, err_set(EBADMSG, "a file that is not a manifest sits among the manifests"));
		err_clear(); /* reported, and skipped */
		return 0;
	}
	if ((r = vstore_get(l->v, path, MAN_MAX, &data, &len)) < 0) {
		if (r == -ECONNRESET)
			return r;
		if (l->bad)
			l->bad(l->ctx, path, r);
		err_clear(); /* reported, and skipped */
		return 0;
	}
	if (!(nm = array_grow(l->m, &l->cap, l->n, sizeof(*nm), 64))) {
		free(data);
		return -ENOMEM;
	}
	l->m = nm;
	r = vault_manifest_decode(l->pk, l->k, data, len, &l->m[l->n]);
	free(data);
	if (r == 0 && memcmp(l->m[l->n].name, want, VAULT_NAME) != 0) {
		vault_manifest_free(&l->m[l->n]);
		r = err_set(EBADMSG, "the manifest's contents do not match its name (altered or truncated)");
	}
	if (r < 0) {
		if (r == -ENOMEM)
			return r;
		if (l->bad)
			l->bad(l->ctx, path, r);
		err_clear(); /* reported, and skipped */
		return 0;
	}
	l->m[l->n].mtime = mtime;
	l->n++;
	return 0;
}

static int cmp_manifest(const void *a, const void *b)
{
	const struct vmanifest *x = a, *y = b;
	int c = memcmp(x->series, y->series, 16);
	if (c)
		return c;
	return x->epoch < y->epoch ? -1 : x->epoch > y->epoch;
}

int vault_manifests(struct vstore *v, const uint8_t pk[32], const struct vkeys *k, vault_bad_cb bad,
		    void *ctx, struct vmanifest **ret, size_t *n)
{
	struct mlist l = { .v = v, .pk = pk, .k = k, .bad = bad, .ctx = ctx };
	int r = vstore_prefetch(v, "m", NULL, 0);

	if (r >= 0)
		r = vstore_list(v, "m", on_manifest, &l);

	if (r < 0) {
		vault_manifests_free(l.m, l.n);
		return r;
	}
	if (l.n)
		qsort(l.m, l.n, sizeof(*l.m), cmp_manifest);
	*ret = l.m;
	*n = l.n;
	return 0;
}

void vault_manifests_free(struct vmanifest *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		vault_manifest_free(&m[i]);
	free(m);
}

static int apply_object(struct vstore *v, const struct vkeys *k, const uint8_t name[VAULT_NAME],
			struct vpacks *packs, struct vmap *m)
{
	char path[300], hex[2 * VAULT_NAME + 1];
	uint8_t *data, got[VAULT_NAME];
	size_t len;
	int r;

	vault_path(name, false, path, sizeof(path));
	vault_hex(name, hex);
	if ((r = vstore_get(v, path, VAULT_OBJ_MAX, &data, &len)) < 0)
		return r;
	vault_object_name(data, len, got);
	if (memcmp(got, name, VAULT_NAME) != 0)
		r = err_set(EBADMSG, "index object %s is damaged (its contents do not match its name)", path);
	else if ((r = vault_index_apply(k, data, len, packs, m)) < 0)
		r = err_wrap(r, "index object %s", path);
	free(data);
	return r;
}

int vault_load_map(struct vstore *v, const struct vkeys *k, const struct vman_source *s,
		   struct vpacks *packs, struct vmap *ret)
{
	struct vmap m = { 0 };
	uint8_t image[32];
	int r;

	if ((r = apply_object(v, k, s->base, packs, &m)) < 0)
		goto fail;
	for (uint32_t d = 0; d < s->n_deltas; d++)
		if ((r = apply_object(v, k, s->deltas[d], packs, &m)) < 0)
			goto fail;
	vault_image_hash(k, &m, image);
	if (m.size != s->size || memcmp(image, s->image, 32) != 0) {
		r = err_set(EBADMSG, "the indexes of %s do not rebuild the image the manifest describes", s->name);
		goto fail;
	}
	*ret = m;
	return 0;
fail:
	vmap_free(&m);
	return r;
}
