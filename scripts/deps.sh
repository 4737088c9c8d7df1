#!/bin/sh
# deps.sh - install the Debian packages Bascule needs to build, test and demo.
# Used by `make demo`, `make test`, `make fuzz` and .ci/run.  Installs only
# what is missing; needs root (or sudo) only when something is missing.
#   scripts/deps.sh [build|test|fuzz|bench]   (default: test; test and fuzz
#   include build, bench includes test)
set -eu
BUILD_PKGS="build-essential pkg-config libsodium-dev libzstd-dev libyaml-dev
libsystemd-dev libjansson-dev libxxhash-dev libssh2-1-dev librsync-dev libcmocka-dev libcurl4-openssl-dev
libmicrohttpd-dev libpq-dev libnbd-dev libxml2-dev libssl-dev"
TEST_PKGS="bc python3 systemd openssh-server openssh-client nftables e2fsprogs util-linux rsync rdiff xfsprogs procps iproute2 kmod
qemu-system-x86 qemu-utils busybox-static chromium fonts-dejavu-core curl prometheus postgresql-15 postgresql-client-15
ceph-mon ceph-osd radosgw ceph-common openssl faketime"
# `make fuzz` only: clang and its runtimes (libFuzzer, ASan, UBSan).
FUZZ_PKGS="clang libclang-rt-dev"
# `make bench` only: the tools it compares against.
BENCH_PKGS="borgbackup restic pgbackrest awscli rclone"
want=$BUILD_PKGS
case "${1:-test}" in
build) ;;
test) want="$want $TEST_PKGS" ;;
fuzz) want="$want $FUZZ_PKGS" ;;
bench) want="$want $TEST_PKGS $BENCH_PKGS" ;;
*) echo "usage: scripts/deps.sh [build|test|fuzz|bench]" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "bascule: installing missing Debian packages:$missing" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { echo "bascule: run as root or install sudo, or install:$missing" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Installing openssh-server must not start a server on this machine: the tests
# start their own sshd inside network namespaces.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
