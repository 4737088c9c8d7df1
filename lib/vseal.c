/* vseal.c - sealed, padded blobs of the vault (indexes, manifest private
 * parts, PostgreSQL objects): XChaCha20-Poly1305 over a length-prefixed
 * plaintext padded with Padme inside the ciphertext. */
#include "vault.h"
#include "buf.h"
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define AEAD_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define AEAD_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES

/* ---- sealed blobs (indexes, manifest private parts) ---- */

/* nonce || AEAD(be32 len || PT || zero padding): the padding is inside the
 * ciphertext, so the object's size shows only the padded length.  EXTRA is
 * what the caller adds around the blob (counted for the padding). */
int vault_seal(const uint8_t key[32], const uint8_t *ad, size_t adlen, const uint8_t *pt,
		       size_t len, size_t extra, struct wbuf *out)
{
	size_t raw = AEAD_NONCE + 4 + len + AEAD_ABYTES, total = vault_padme(raw + extra) - extra;
	size_t plen = total - AEAD_NONCE - AEAD_ABYTES;
	unsigned long long clen;
	uint8_t *buf;
	int r;

	if (!(buf = calloc(1, plen)))
		return -ENOMEM;
	put_be32(buf, (uint32_t)len);
	memcpy(buf + 4, pt, len);
	if ((r = wbuf_reserve(out, total)) == 0) {
		randombytes_buf(out->p + out->len, AEAD_NONCE);
		crypto_aead_xchacha20poly1305_ietf_encrypt(out->p + out->len + AEAD_NONCE, &clen, buf, plen,
							   ad, adlen, NULL, out->p + out->len, key);
		out->len += total;
	}
	sodium_memzero(buf, plen);
	free(buf);
	return r;
}

/* Open what vault_seal wrote; *ret points into a malloc'd buffer. */
int vault_unseal(const uint8_t key[32], const uint8_t *ad, size_t adlen, const uint8_t *c,
		       size_t clen, uint8_t **ret, size_t *ret_len)
{
	unsigned long long plen;
	uint8_t *buf;
	uint32_t len;

	if (clen < AEAD_NONCE + AEAD_ABYTES + 4)
		return -EBADMSG;
	if (!(buf = malloc(clen)))
		return -ENOMEM;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(buf, &plen, NULL, c + AEAD_NONCE, clen - AEAD_NONCE, ad,
						       adlen, c, key) != 0 ||
	    (len = get_be32(buf)) > plen - 4) {
		sodium_memzero(buf, clen);
		free(buf);
		return -EBADMSG;
	}
	memmove(buf, buf + 4, len);
	/* the move leaves the plaintext's last 4 bytes past LEN: wipe them
	 * (and the padding), so the caller's wipe of LEN bytes wipes it all */
	sodium_memzero(buf + len, plen - len);
	*ret = buf;
	*ret_len = len;
	return 0;
}

