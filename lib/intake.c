/* intake.c - hybrid-PRA manifests: encode, verify and decode (intake.h).
 * The decoder follows lib/proto.c: the signature is checked over the exact
 * bytes first, then every field is read through the bounds-checked rbuf
 * into a local, and the output is written only once everything held. */
#include "intake.h"
#include "err.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC_LEN 8
#define SIG_LEN crypto_sign_BYTES

bool intake_night_ok(const char *s)
{
	int mon, day;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
			return false;
	mon = (s[5] - '0') * 10 + (s[6] - '0');
	day = (s[8] - '0') * 10 + (s[9] - '0');
	return mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && s[0] != '0';
}

void intake_manifest_name(const char *night, char *buf, size_t len)
{
	snprintf(buf, len, "%s.manifest", night);
}

void intake_object_name(const struct intake_manifest *m, uint32_t i, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s-%05u", m->night, m->run, i);
}

size_t intake_object_ad(const struct intake_manifest *m, uint32_t i, uint8_t *buf, size_t len)
{
	int n = snprintf((char *)buf, len, "bascule intake object v1|%s|%s|%s|%u", m->client, m->night,
			 m->run, i);
	return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

static bool run_ok(const char *s)
{
	if (strlen(s) != INTAKE_RUN_LEN)
		return false;
	for (; *s; s++)
		if (!strchr("0123456789abcdef", *s))
			return false;
	return true;
}

void intake_manifest_free(struct intake_manifest *m)
{
	if (!m)
		return;
	free(m->objects);
	m->objects = NULL;
	m->n = 0;
}

int intake_manifest_encode(struct intake_manifest *m, const struct intake_secret *secret,
			   const uint8_t box_pk[crypto_box_PUBLICKEYBYTES],
			   const uint8_t sk[crypto_sign_SECRETKEYBYTES], struct wbuf *out)
{
	uint8_t plain[INTAKE_SECRET_BYTES], sig[SIG_LEN];
	size_t start = out->len;
	int r = 0;

	memcpy(plain, secret->stream_key, 32);
	memcpy(plain + 32, secret->dump_digest, 32);
	put_be64(plain + 64, secret->dump_size);
	put_be64(plain + 72, secret->payload_len);
	r = crypto_box_seal(m->sealed, plain, sizeof(plain), box_pk);
	sodium_memzero(plain, sizeof(plain));
	if (r != 0)
		return err_set(EINVAL, "cannot seal the night's key to the client's public key");
	m->stored = 0;
	for (uint32_t i = 0; i < m->n; i++)
		m->stored += m->objects[i].size;
	if ((r = wbuf_put_bytes(out, INTAKE_MAGIC, MAGIC_LEN)) < 0 || (r = wbuf_put_u32(out, 0)) < 0 ||
	    (r = wbuf_put_u8(out, m->kind)) < 0 || (r = wbuf_put_str(out, m->client)) < 0 ||
	    (r = wbuf_put_str(out, m->night)) < 0 || (r = wbuf_put_str(out, m->base_night)) < 0 ||
	    (r = wbuf_put_bytes(out, m->base_digest, 32)) < 0 || (r = wbuf_put_u64(out, m->created)) < 0 ||
	    (r = wbuf_put_str(out, m->run)) < 0 || (r = wbuf_put_bytes(out, m->ss_header, sizeof(m->ss_header))) < 0 ||
	    (r = wbuf_put_u32(out, m->n)) < 0)
		return r;
	for (uint32_t i = 0; i < m->n; i++)
		if ((r = wbuf_put_u64(out, m->objects[i].size)) < 0 ||
		    (r = wbuf_put_bytes(out, m->objects[i].digest, 32)) < 0)
			return r;
	if ((r = wbuf_put_u16(out, INTAKE_SEALED_BYTES)) < 0 ||
	    (r = wbuf_put_bytes(out, m->sealed, INTAKE_SEALED_BYTES)) < 0)
		return r;
	if (out->len - start + SIG_LEN > INTAKE_MANIFEST_MAX)
		return err_set(EFBIG, "a manifest of %zu bytes is over the limit", out->len - start + SIG_LEN);
	put_be32(out->p + start + MAGIC_LEN, (uint32_t)(out->len - start + SIG_LEN));
	crypto_sign_detached(sig, NULL, out->p + start, out->len - start, sk);
	if ((r = wbuf_put_bytes(out, sig, SIG_LEN)) < 0)
		return r;
	m->file_len = (uint32_t)(out->len - start);
	crypto_generichash(m->digest, 32, out->p + start, m->file_len, NULL, 0);
	return 0;
}

int intake_manifest_decode(const uint8_t pk[crypto_sign_PUBLICKEYBYTES], const uint8_t *data, size_t len,
			   struct intake_manifest *ret)
{
	struct intake_manifest m = { 0 };
	struct rbuf b;
	uint32_t total;
	uint16_t slen;
	uint64_t stored = 0;
	int r;

	if (len < MAGIC_LEN || memcmp(data, INTAKE_MAGIC, len < MAGIC_LEN ? len : MAGIC_LEN) != 0) {
		if (len < MAGIC_LEN && memcmp(data, INTAKE_MAGIC, len) == 0)
			return err_set(ENODATA, "incomplete manifest (%zu bytes): an upload cut while writing it", len);
		return err_set(EBADMSG, "not a Bascule intake manifest");
	}
	if (len < MAGIC_LEN + 4)
		return err_set(ENODATA, "incomplete manifest (%zu bytes): an upload cut while writing it", len);
	total = get_be32(data + MAGIC_LEN);
	if (total > INTAKE_MANIFEST_MAX || total < MAGIC_LEN + 4 + SIG_LEN)
		return err_set(EBADMSG, "malformed manifest: length field %u out of bounds", total);
	if (len < total)
		return err_set(ENODATA, "incomplete manifest (%zu of %u bytes): an upload cut while writing it",
			       len, total);
	if (len != total)
		return err_set(EBADMSG, "malformed manifest: %zu bytes where it says %u", len, total);
	if (crypto_sign_verify_detached(data + len - SIG_LEN, data, len - SIG_LEN, pk) != 0)
		return err_set(EBADMSG, "BAD SIGNATURE: the manifest was altered, or not signed by this "
					"client's key");
	b = rbuf_init(data, len - SIG_LEN);
	b.off = MAGIC_LEN + 4;
	if ((r = rbuf_get_u8(&b, &m.kind)) < 0 || (r = rbuf_get_str(&b, m.client, sizeof(m.client))) < 0 ||
	    (r = rbuf_get_str(&b, m.night, sizeof(m.night))) < 0 ||
	    (r = rbuf_get_str(&b, m.base_night, sizeof(m.base_night))) < 0 ||
	    (r = rbuf_get_bytes(&b, m.base_digest, 32)) < 0 || (r = rbuf_get_u64(&b, &m.created)) < 0 ||
	    (r = rbuf_get_str(&b, m.run, sizeof(m.run))) < 0 ||
	    (r = rbuf_get_bytes(&b, m.ss_header, sizeof(m.ss_header))) < 0 || (r = rbuf_get_u32(&b, &m.n)) < 0)
		return err_set(EBADMSG, "malformed manifest (signed, yet its fields do not parse)");
	if (m.kind != INTAKE_FULL && m.kind != INTAKE_DELTA)
		return err_set(EBADMSG, "malformed manifest: kind %u", m.kind);
	if (!name_ok(m.client) || !intake_night_ok(m.night) || !run_ok(m.run))
		return err_set(EBADMSG, "malformed manifest: bad client, night or run name");
	if ((m.kind == INTAKE_FULL) != (m.base_night[0] == 0) ||
	    (m.base_night[0] && (!intake_night_ok(m.base_night) || strcmp(m.base_night, m.night) >= 0)))
		return err_set(EBADMSG, "malformed manifest: base night '%s' for a %s night %s", m.base_night,
			       m.kind == INTAKE_FULL ? "full" : "delta", m.night);
	if (m.n == 0 || m.n > INTAKE_OBJECTS_MAX || rbuf_left(&b) < (size_t)m.n * 40)
		return err_set(EBADMSG, "malformed manifest: %u objects", m.n);
	if (!(m.objects = calloc(m.n, sizeof(*m.objects))))
		return -ENOMEM;
	for (uint32_t i = 0; i < m.n; i++) {
		struct intake_object *o = &m.objects[i];
		if (rbuf_get_u64(&b, &o->size) < 0 || rbuf_get_bytes(&b, o->digest, 32) < 0 ||
		    o->size <= crypto_secretstream_xchacha20poly1305_ABYTES || o->size > INTAKE_OBJECT_MAX ||
		    (i + 1 < m.n && o->size != INTAKE_OBJECT_MAX)) {
			r = err_set(EBADMSG, "malformed manifest: object %u", i);
			goto fail;
		}
		stored += o->size;
	}
	if (rbuf_get_u16(&b, &slen) < 0 || slen != INTAKE_SEALED_BYTES ||
	    rbuf_get_bytes(&b, m.sealed, INTAKE_SEALED_BYTES) < 0 || rbuf_expect_end(&b) < 0) {
		r = err_set(EBADMSG, "malformed manifest: sealed part");
		goto fail;
	}
	m.stored = stored;
	m.file_len = (uint32_t)len;
	crypto_generichash(m.digest, 32, data, len, NULL, 0);
	*ret = m;
	return 0;
fail:
	free(m.objects);
	return r;
}

int intake_manifest_expect(const struct intake_manifest *m, const char *client, const char *night)
{
	if (strcmp(m->client, client) != 0)
		return err_set(EBADMSG, "the manifest of %s belongs to client '%s' (copied from another client?)",
			       night, m->client);
	if (strcmp(m->night, night) != 0)
		return err_set(EBADMSG, "the manifest stored as night %s is night %s (copied or renamed)", night,
			       m->night);
	return 0;
}

int intake_secret_open(const struct intake_manifest *m, const uint8_t box_pk[crypto_box_PUBLICKEYBYTES],
		       const uint8_t box_sk[crypto_box_SECRETKEYBYTES], struct intake_secret *ret)
{
	uint8_t plain[INTAKE_SECRET_BYTES];

	if (crypto_box_seal_open(plain, m->sealed, INTAKE_SEALED_BYTES, box_pk, box_sk) != 0)
		return err_set(EKEYREJECTED, "night %s of %s does not open with this decryption key (another "
					     "client's key?)", m->night, m->client);
	memcpy(ret->stream_key, plain, 32);
	memcpy(ret->dump_digest, plain + 32, 32);
	ret->dump_size = get_be64(plain + 64);
	ret->payload_len = get_be64(plain + 72);
	sodium_memzero(plain, sizeof(plain));
	return 0;
}
