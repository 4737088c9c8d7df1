/* report_sign.c - Ed25519 signatures of reports, and their verification
 * (a page is re-rendered from its signed data and compared). */
#include "report_int.h"
#include "err.h"
#include "fsutil.h"
#include "sign.h"
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- signatures ---- */

static char *canonical(json_t *report)
{
	char *body = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS), *msg;
	if (!body)
		return NULL;
	msg = malloc(strlen(SIG_CONTEXT) + strlen(body) + 1);
	if (msg) {
		strcpy(msg, SIG_CONTEXT);
		strcat(msg, body);
	}
	free(body);
	return msg;
}

int report_sign(json_t *report, const char *signing_key, json_t **ret_doc)
{
	uint8_t sk[SIGN_SK_BYTES], pk[SIGN_PK_BYTES], sig[SIGN_BYTES];
	char pkb[64], sigb[128], kid[17], *msg;
	json_t *doc;
	int rc;

	if (!signing_key) {
		*ret_doc = json_pack("{s:O, s:n}", "report", report, "signature");
		return *ret_doc ? 0 : -ENOMEM;
	}
	if ((rc = sign_load_secret(signing_key, sk)) < 0)
		return rc;
	if (!(msg = canonical(report))) {
		sodium_memzero(sk, sizeof(sk));
		return -ENOMEM;
	}
	crypto_sign_detached(sig, NULL, (const uint8_t *)msg, strlen(msg), sk);
	crypto_sign_ed25519_sk_to_pk(pk, sk);
	sodium_memzero(sk, sizeof(sk));
	free(msg);
	sign_key_id(pk, kid);
	sodium_bin2base64(pkb, sizeof(pkb), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(sigb, sizeof(sigb), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
	doc = json_pack("{s:O, s:{s:s, s:s, s:s, s:s}}", "report", report, "signature", "algorithm",
			"ed25519", "key_id", kid, "public_key", pkb, "value", sigb);
	if (!doc)
		return -ENOMEM;
	*ret_doc = doc;
	return 0;
}

/* ---- verification ---- */

int report_verify(const char *file, const char *pubkey_file, char *who, size_t wlen)
{
	char *text = NULL, *msg = NULL;
	size_t len;
	json_t *doc = NULL, *r, *sig;
	json_error_t je;
	uint8_t pk[SIGN_PK_BYTES], want[SIGN_PK_BYTES], sg[SIGN_BYTES];
	char signer[17];
	size_t n1 = 0, n2 = 0;
	bool html;
	int rc;

	if ((rc = fs_read_all(file, 64 << 20, &text, &len)) < 0)
		return err_set(rc == -EFBIG ? EINVAL : -rc, "cannot read %s: %s", file,
			       rc == -EFBIG ? "larger than 64 MiB" : strerror(-rc));
	html = strncmp(text, "<!DOCTYPE html>", 15) == 0;
	if (html) {
		char *a = strstr(text, HTML_MARK), *b;
		if (!a || !(b = strstr(a, "</script>"))) {
			rc = err_set(EINVAL, "%s is not a Bascule drill report page (no embedded report)", file);
			goto out;
		}
		a += strlen(HTML_MARK);
		doc = json_loadb(a, (size_t)(b - a), JSON_REJECT_DUPLICATES, &je);
	} else {
		doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	}
	/* Bascule never writes a key twice.  A reader keeps one of the values
	 * (jansson the last, a person the first): refused as an edit. */
	if (!doc && json_error_code(&je) == json_error_duplicate_key) {
		rc = err_set(EBADMSG, "%s: a key appears twice (%s, line %d): the report was edited "
				      "after it was signed", file, je.text, je.line);
		goto out;
	}
	if (!doc || !json_is_object(r = json_object_get(doc, "report"))) {
		rc = err_set(EINVAL, "%s is not a Bascule drill report (%s)", file,
			     doc ? "no report object" : je.text);
		goto out;
	}
	sig = json_object_get(doc, "signature");
	if (!json_is_object(sig)) {
		rc = err_set(EBADMSG, "%s is not signed (the runbook had no report.signing_key)", file);
		goto out;
	}
	if (strcmp(report_jstr(sig, "algorithm"), "ed25519") != 0 ||
	    sodium_base642bin(pk, sizeof(pk), report_jstr(sig, "public_key"), strlen(report_jstr(sig, "public_key")),
			      NULL, &n1, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || n1 != sizeof(pk) ||
	    sodium_base642bin(sg, sizeof(sg), report_jstr(sig, "value"), strlen(report_jstr(sig, "value")), NULL, &n2,
			      NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || n2 != sizeof(sg)) {
		rc = err_set(EBADMSG, "%s: the signature block is malformed", file);
		goto out;
	}
	sign_key_id(pk, signer);
	snprintf(who, wlen, "%s", signer);
	if (pubkey_file) {
		char kid[17];
		if ((rc = sign_load_public(pubkey_file, want)) < 0)
			goto out;
		if (sodium_memcmp(want, pk, sizeof(pk)) != 0) {
			sign_key_id(want, kid);
			rc = err_set(EBADMSG, "%s was signed by key %s, not by %s (%s)", file, signer, kid,
				     pubkey_file);
			goto out;
		}
	}
	if (!(msg = canonical(r))) {
		rc = -ENOMEM;
		goto out;
	}
	if (crypto_sign_verify_detached(sg, (const uint8_t *)msg, strlen(msg), pk) != 0) {
		rc = err_set(EBADMSG, "%s: BAD SIGNATURE: the report was changed after it was signed", file);
		goto out;
	}
	if (html) {
		char *again = report_html(doc);
		bool same = again && strlen(again) == len && memcmp(again, text, len) == 0;
		free(again);
		if (!same) {
			rc = err_set(EBADMSG, "%s: the signed data is intact but the page around it was "
					      "edited (it differs from the page rendered from the signed "
					      "data)", file);
			goto out;
		}
	}
	rc = 0;
out:
	free(msg);
	free(text);
	json_decref(doc);
	return rc;
}
