/* cmd_trust_host.c - bascule trust-host HOST[:PORT] --known-hosts FILE [--yes]
 * Connect, show the host key's fingerprint, and record it in FILE once the
 * operator confirms (or with --yes, after checking it another way). */
#include "cmd.h"
#include "err.h"
#include "ssh.h"
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "Usage: bascule trust-host HOST[:PORT] --known-hosts FILE [--yes]\n\n"
		   "Connect to the SSH server HOST (port 22 by default), print its host key\n"
		   "fingerprint and, once you confirm it matches the one of the same type shown on\n"
		   "the secondary (ssh-keygen -lf on each /etc/ssh/ssh_host_*_key.pub), add it to\n"
		   "FILE.  Asks on the terminal; with no terminal it refuses (exit 2) unless --yes.\n"
		   "  --yes   do not ask (you checked the fingerprint another way)\n");
}

int cmd_trust_host(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "known-hosts", required_argument, NULL, 'k' },
		{ "yes", no_argument, NULL, 'y' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *kh_path = NULL, *key, *tname;
	char host[256], fp[128], entry[300], line[8192], answer[16];
	LIBSSH2_SESSION *s = NULL;
	LIBSSH2_KNOWNHOSTS *kh = NULL;
	bool yes = false;
	size_t keylen, outlen;
	int c, port = 22, fd = -1, r, kt, type, ret = EXIT_FAIL;

	while ((c = getopt_long(argc, argv, "hy", opts, NULL)) != -1) {
		switch (c) {
		case 'k': kh_path = optarg; break;
		case 'y': yes = true; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (!kh_path || optind + 1 != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	{
		/* host, host:port, [v6] or [v6]:port */
		const char *a = argv[optind], *colon = strrchr(a, ':');
		size_t n = colon ? (size_t)(colon - a) : strlen(a);
		if (a[0] == '[') {
			const char *e = strchr(a, ']');
			if (!e) {
				usage(stderr);
				return EXIT_USAGE;
			}
			a++;
			n = (size_t)(e - a);
			colon = e[1] == ':' ? e + 1 : NULL;
		}
		if (n == 0 || n >= sizeof(host)) {
			usage(stderr);
			return EXIT_USAGE;
		}
		memcpy(host, a, n);
		host[n] = 0;
		if (colon && (port = atoi(colon + 1)) <= 0) {
			fprintf(stderr, "bascule trust-host: bad port in %s\n", argv[optind]);
			return EXIT_USAGE;
		}
	}
	libssh2_init(0);
	fd = ssh_tcp_connect(host, port, false);
	if (fd < 0)
		return cmd_fail("trust-host", fd);
	s = libssh2_session_init();
	if (!s || libssh2_session_handshake(s, fd) != 0) {
		fprintf(stderr, "bascule trust-host: SSH handshake with %s failed: %s\n", host,
			s ? ssh_error(s) : "out of memory");
		goto out;
	}
	ssh_fingerprint(s, fp, sizeof(fp));
	tname = ssh_hostkey_type(s, &kt);
	ssh_host_entry(host, port, entry, sizeof(entry));
	r = ssh_check_hostkey(s, kh_path, host, port);
	if (r == 0) {
		printf("%s is already trusted in %s (%s %s)\n", entry, kh_path, tname, fp);
		ret = EXIT_OK;
		goto out;
	}
	if (r == -EKEYREJECTED) {
		fprintf(stderr, "bascule trust-host: %s\nRemove the old line for %s from %s first if "
				"the new key is legitimate.\n", err_msg(r), entry, kh_path);
		ret = EXIT_KEY;
		goto out;
	}
	printf("%s presents %s key %s\n", entry, tname, fp);
	if (!yes) {
		if (!isatty(STDIN_FILENO)) {
			fprintf(stderr, "bascule trust-host: not a terminal: check the fingerprint, then "
					"run again with --yes\n");
			ret = EXIT_USAGE;
			goto out;
		}
		printf("Does it match the fingerprint shown on the secondary? Trust it [y/N]? ");
		fflush(stdout);
		if (!fgets(answer, sizeof(answer), stdin) || (answer[0] != 'y' && answer[0] != 'Y')) {
			printf("not trusted\n");
			ret = EXIT_KEY;
			goto out;
		}
	}
	key = libssh2_session_hostkey(s, &keylen, &type);
	kh = libssh2_knownhost_init(s);
	if (!kh || libssh2_knownhost_addc(kh, entry, NULL, key, keylen, NULL, 0,
					  LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | kt,
					  NULL) != 0) {
		fprintf(stderr, "bascule trust-host: cannot record the key: %s\n", ssh_error(s));
		goto out;
	}
	{
		struct libssh2_knownhost *e = NULL;
		libssh2_knownhost_get(kh, &e, NULL);
		if (!e || libssh2_knownhost_writeline(kh, e, line, sizeof(line), &outlen,
						      LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
			fprintf(stderr, "bascule trust-host: cannot format the known_hosts line\n");
			goto out;
		}
	}
	{
		int kfd = open(kh_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (kfd < 0 || write(kfd, line, outlen) != (ssize_t)outlen || fsync(kfd) < 0) {
			fprintf(stderr, "bascule trust-host: cannot write %s: %s\n", kh_path, strerror(errno));
			if (kfd >= 0)
				close(kfd);
			goto out;
		}
		close(kfd);
	}
	printf("added %s to %s\n", entry, kh_path);
	ret = EXIT_OK;
out:
	if (kh)
		libssh2_knownhost_free(kh);
	if (s) {
		libssh2_session_disconnect(s, "bye");
		libssh2_session_free(s);
	}
	if (fd >= 0)
		close(fd);
	return ret;
}
