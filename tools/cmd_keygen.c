/* cmd_keygen.c - bascule keygen site|signing|vault|client FILE */
#include "cmd.h"
#include "clientkey.h"
#include "pwseal.h"
#include "err.h"
#include "fsutil.h"
#include "key.h"
#include "sign.h"
#include "vaultkey.h"
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

int cmd_read_passphrase(const char *file, bool confirm, const char *prompt, char *buf, size_t len)
{
	if (file) {
		char *text = NULL;
		size_t n;
		int fd = open(file, O_RDONLY | O_CLOEXEC), r;
		if (fd < 0)
			return err_set(errno, "cannot open the passphrase file %s: %s", file, strerror(errno));
		r = key_check_secret_file(file, fd);
		close(fd);
		if (r < 0 || (r = fs_read_all(file, len - 1, &text, &n)) < 0)
			return r;
		text[strcspn(text, "\r\n")] = 0;
		snprintf(buf, len, "%s", text);
		sodium_memzero(text, n);
		free(text);
		return 0;
	}
	for (int round = 0; round < (confirm ? 2 : 1); round++) {
		struct termios old, quiet;
		char again[256];
		char *dst = round ? again : buf;
		size_t dl = round ? sizeof(again) : len;
		FILE *tty = fopen("/dev/tty", "r+");
		if (!tty)
			return err_set(ENOTTY, "no terminal to ask for the passphrase: give "
					       "--passphrase-file FILE (mode 0600)");
		fprintf(tty, round ? "Same passphrase again: " : "%s", prompt);
		fflush(tty);
		tcgetattr(fileno(tty), &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
		if (!fgets(dst, (int)dl, tty))
			dst[0] = 0;
		tcsetattr(fileno(tty), TCSAFLUSH, &old);
		fprintf(tty, "\n");
		fclose(tty);
		dst[strcspn(dst, "\r\n")] = 0;
		if (round && strcmp(buf, again) != 0) {
			sodium_memzero(again, sizeof(again));
			return err_set(EINVAL, "the two passphrases differ");
		}
		sodium_memzero(again, sizeof(again));
	}
	return 0;
}

/* A new passphrase (asked twice on the terminal) into PASS: EXIT_OK, or the
 * exit code after saying why: 2 (usage) when the two typed differ or it is
 * shorter than PWSEAL_MIN_PASSPHRASE, as cmd_fail() otherwise (4 for a
 * passphrase file others can read). */
static int new_passphrase(const char *pfile, const char *prompt, char *pass, size_t len)
{
	int r = cmd_read_passphrase(pfile, true, prompt, pass, len);

	if (r == -EINVAL) {
		fprintf(stderr, "bascule keygen: %s: type the same passphrase twice\n", err_msg(r));
		return EXIT_USAGE;
	}
	if (r < 0)
		return cmd_fail("keygen", r);
	if (strlen(pass) < PWSEAL_MIN_PASSPHRASE) {
		fprintf(stderr, "bascule keygen: the passphrase must be at least %d characters long\n",
			PWSEAL_MIN_PASSPHRASE);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

static int keygen_vault(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "escrow", required_argument, NULL, 'e' },
		{ "from-escrow", required_argument, NULL, 'f' },
		{ "passphrase-file", required_argument, NULL, 'p' },
		{ 0 }
	};
	const char *escrow = NULL, *from = NULL, *pfile = NULL;
	struct vault_key *k = NULL;
	char pass[256] = "";
	int c, r;

	optind = 0; /* glibc: reinitialise (the global options were parsed already) */
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'e': escrow = optarg; break;
		case 'f': from = optarg; break;
		case 'p': pfile = optarg; break;
		default: return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || (escrow && from)) {
		fprintf(stderr, "Usage: bascule keygen vault FILE [--escrow FILE.escrow] [--passphrase-file P]\n"
				"       bascule keygen vault FILE --from-escrow FILE.escrow [--passphrase-file P]\n");
		return EXIT_USAGE;
	}
	if (from) {
		if ((r = cmd_read_passphrase(pfile, false, "Escrow passphrase: ", pass, sizeof(pass))) < 0 ||
		    (r = vaultkey_escrow_open(from, pass, &k)) < 0)
			goto out;
		if ((r = key_file_write(argv[optind], "bascule-vault-key-v1 ", k->master,
					sizeof(k->master), 0600)) < 0 ||
		    (r = vaultkey_write_public(k, argv[optind])) < 0)
			goto out;
		printf("recovered vault key %s (and %s.pub) from %s\n", argv[optind], argv[optind], from);
		goto out;
	}
	if (escrow && (c = new_passphrase(pfile, "Escrow passphrase (12+ characters): ", pass, sizeof(pass)))) {
		sodium_memzero(pass, sizeof(pass));
		return c;
	}
	if ((r = vaultkey_generate(argv[optind], &k)) < 0)
		goto out;
	if (escrow && (r = vaultkey_escrow_write(k, escrow, pass)) < 0)
		goto out;
	printf("wrote vault key %s (keep it on the primary only) and verify key %s.pub%s%s%s\n",
	       argv[optind], argv[optind], escrow ? "; escrow copy " : "", escrow ? escrow : "",
	       escrow ? " for the offline safe" : "");
	if (!escrow)
		printf("no escrow copy: losing %s loses the vault (see --escrow)\n", argv[optind]);
out:
	sodium_memzero(pass, sizeof(pass));
	vaultkey_free(k);
	return r < 0 ? cmd_fail("keygen", r) : EXIT_OK;
}

static int keygen_client(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "passphrase-file", required_argument, NULL, 'p' },
		{ 0 }
	};
	const char *pfile = NULL;
	char pass[256] = "";
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pfile = optarg; break;
		default: return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "Usage: bascule keygen client FILE [--passphrase-file P]\n");
		return EXIT_USAGE;
	}
	if ((c = new_passphrase(pfile, "Passphrase sealing the decryption key (12+ characters): ", pass,
				sizeof(pass)))) {
		sodium_memzero(pass, sizeof(pass));
		return c;
	}
	if ((r = clientkey_generate(argv[optind], pass)) < 0)
		goto out;
	printf("wrote %s.key (decryption key, sealed with the passphrase: keep it offline, off the\n"
	       "cron host), %s.pub (for ship and for the operator's 'intake add') and %s.sign\n"
	       "(signing key, 0600, for the cron host only)\n", argv[optind], argv[optind], argv[optind]);
out:
	sodium_memzero(pass, sizeof(pass));
	return r < 0 ? cmd_fail("keygen", r) : EXIT_OK;
}

int cmd_keygen(int argc, char **argv)
{
	struct site_key *k = NULL;
	char id[2 * KEY_ID_BYTES + 1];
	int r;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("Usage: bascule keygen site FILE\n"
		       "       bascule keygen signing FILE\n"
		       "       bascule keygen vault FILE [--escrow FILE.escrow] [--passphrase-file P]\n"
		       "       bascule keygen vault FILE --from-escrow FILE.escrow [--passphrase-file P]\n"
		       "       bascule keygen client FILE [--passphrase-file P]\n\n"
		       "site: write a new random 32-byte site key to FILE (which must not exist), mode\n"
		       "0600.  Copy the same file to the secondary site (mode 0600, owned by the\n"
		       "receiving user).  Prints the key id, which both sites show in their messages\n"
		       "('bascule key id FILE' prints it again, on either site).\n\n"
		       "signing: write a new Ed25519 key pair for drill reports: FILE (secret, 0600,\n"
		       "for the runbook's report.signing_key) and FILE.pub (give it to auditors:\n"
		       "bascule report verify --key FILE.pub REPORT).\n\n"
		       "vault: write a new vault key FILE (0600; it never leaves the primary) and\n"
		       "FILE.pub (the key that verifies the vault's manifests, for vault check).  With\n"
		       "--escrow, also a copy sealed with a passphrase (Argon2id) for the offline safe;\n"
		       "--from-escrow recovers FILE from it.  Losing both the key and the escrow copy\n"
		       "loses the vault: nobody can decrypt it.\n\n"
		       "client: the keys of a hybrid-PRA client (docs/hybrid.md): FILE.key, the\n"
		       "decryption key, sealed with a passphrase (Argon2id; from --passphrase-file,\n"
		       "mode 0600, or asked twice on the terminal), to keep offline; FILE.pub, the\n"
		       "public encryption and verify keys, for bascule ship and 'bascule intake add';\n"
		       "FILE.sign, the signing key (0600), for the cron host.  None may exist.\n");
		return EXIT_OK;
	}
	if (argc >= 3 && strcmp(argv[1], "client") == 0)
		return keygen_client(argc - 1, argv + 1);
	if (argc >= 3 && strcmp(argv[1], "vault") == 0)
		return keygen_vault(argc - 1, argv + 1);
	if (argc == 3 && strcmp(argv[1], "signing") == 0) {
		uint8_t pk[SIGN_PK_BYTES];
		char pub[4200], kid[17];
		if ((r = sign_keygen(argv[2])) < 0)
			return cmd_fail("keygen", r);
		snprintf(pub, sizeof(pub), "%s.pub", argv[2]);
		if ((r = sign_load_public(pub, pk)) < 0)
			return cmd_fail("keygen", r);
		sign_key_id(pk, kid);
		printf("wrote signing key %s and public key %s (key id %s)\n", argv[2], pub, kid);
		return EXIT_OK;
	}
	if (argc != 3 || strcmp(argv[1], "site") != 0) {
		fprintf(stderr, "Usage: bascule keygen site|signing|vault|client FILE\n");
		return EXIT_USAGE;
	}
	if ((r = key_generate(argv[2])) < 0)
		return cmd_fail("keygen", r);
	if ((r = key_load(argv[2], &k)) < 0)
		return cmd_fail("keygen", r);
	key_id_hex(k, id);
	key_free(k);
	printf("wrote site key %s (key id %s)\n", argv[2], id);
	return EXIT_OK;
}
