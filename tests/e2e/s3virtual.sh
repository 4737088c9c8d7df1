#!/bin/bash
# s3virtual.sh - virtual-hosted requests (https://BUCKET.HOST/KEY, what AWS
# does) against a real radosgw told its DNS name (rgw_dns_name).  The
# names resolve through the ordinary resolver: a hosts file of the test's
# own, bind-mounted over /etc/hosts in a private mount namespace
# (unshare -m) where the commands and basculed run; the machine's
# /etc/hosts is never touched.  By default a named endpoint is
# virtual-hosted and an IP address path-style; s3_url_style path and
# virtual force one; virtual with an IP address is refused (exit 3).
# A restore lists the bucket 3 times, not once per object it reads.
# radosgw's log tells which form each request had: "GET /site-a/..." is
# virtual-hosted, "GET /bvault/site-a/..." path-style.
. "$(dirname "$0")/../lib/common.sh" "$1"
. "$ROOT/tests/lib/s3vault.sh"
need_root
command -v unshare >/dev/null || fail "unshare missing (util-linux)"
DNS=s3.bascule.test
CEPH_RGW_CONF="rgw dns name = $DNS" s3vault_up
printf '127.0.0.1 localhost\n%s %s bvault.%s\n' "$CEPH_IP" "$DNS" "$DNS" > "$T/hosts"
# in_ns CMD...: CMD where the test's hosts file is /etc/hosts.
in_ns() { unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$T/hosts" "$@"; }
in_ns getent hosts "bvault.$DNS" | grep -q "^$CEPH_IP " || fail "bvault.$DNS does not resolve in the namespace"
! getent hosts "bvault.$DNS" >/dev/null || fail "bvault.$DNS resolves outside the namespace: /etc/hosts was changed"
NAMED=http://$DNS:$RGW_PORT
RGWLOG=$T/ceph/log/client.rgw.a.log
mark() { wc -l < "$RGWLOG"; }
# requests SINCE: the request lines radosgw logged after line SINCE
requests() { tail -n +"$(($1 + 1))" "$RGWLOG" | grep -o '"[A-Z]* /[^ ]* HTTP' || true; }

# -- the client alone: an IP address cannot be virtual-hosted
S3_URL_STYLE=virtual S3_BUCKET=bvault expect_rc 3 "$S" lock
grep -q "is an IP address" "$T/err" || fail "virtual with an IP endpoint: $(cat "$T/err")"
m0=$(mark)
S3_BUCKET=bvault expect_rc 0 "$S" ls site-a/
requests "$m0" | grep -q '"GET /bvault?' || fail "an IP endpoint is not path-style by default: $(requests "$m0")"

# -- the vault by name, default style: virtual-hosted
S3V_ENDPOINT=$NAMED s3vault_yaml bvault "$T/cred"
expect_rc 0 in_ns "$B" vault init -c "$T/bascule.yaml"
grep -q "virtual-hosted" "$T/out" || fail "vault init: not virtual-hosted by default: $(cat "$T/out")"
m0=$(mark)
# (unshare execs: the daemon's pid is DAEMON_PID, stopped at exit; through
# the in_ns function a subshell stood between, and basculed outlived the test)
NSEXEC=(unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$T/hosts")
bsc_start
"$BIN/tests/randwrite" "$T/disk.img" 300 1
in_ns "$B" -c "$T/bascule.yaml" sync --wait --vault --timeout 60s >/dev/null ||
	fail "sync --wait --vault failed: $(tail -5 "$T/daemon.log")"
bsc_stop
m1=$(mark)
expect_rc 0 in_ns "$B" restore -c "$T/bascule.yaml" --source vm1/disk --to "$T/r"
cmp -s "$T/r" "$T/disk.img" || fail "restore over virtual-hosted requests differs"
# One listing of m/ (prefetch and directory) and one of d/ for every
# object the epoch needs, whatever their number (not one per object).
nl=$(requests "$m1" | grep -c 'versions=' || true)
ng=$(requests "$m1" | grep -c '"GET /site-a/d/' || true)
[ "$nl" -le 3 ] && [ "$ng" -ge 2 ] || fail "restore made $nl listings for $ng object reads (expected 3 at most)"
expect_rc 0 in_ns "$B" vault check -c "$T/bascule.yaml" --verify-key "$T/vault.key.pub"
requests "$m0" > "$T/reqs"
grep -q '"PUT /site-a/d/' "$T/reqs" || fail "no virtual-hosted PUT of a pack: $(head -5 "$T/reqs")"
grep -q '"GET /site-a/d/' "$T/reqs" || fail "no virtual-hosted GET of a pack: $(head -5 "$T/reqs")"
! grep -q ' /bvault' "$T/reqs" || fail "path-style requests with a named endpoint: $(grep ' /bvault' "$T/reqs" | head -3)"
note "shipped, restored byte-identical (restore: $nl listings, $ng object reads) and checked over $(wc -l < "$T/reqs") virtual-hosted requests (bvault.$DNS)"

# -- s3_url_style: path forces path-style on the same name
m0=$(mark)
expect_rc 0 in_ns "$B" vault ls -c "$T/bascule.yaml" --s3-url-style path
requests "$m0" | grep -q '"GET /bvault?' || fail "--s3-url-style path is not path-style: $(requests "$m0")"
S3V_URL_STYLE=path S3V_ENDPOINT=$NAMED s3vault_yaml bvault "$T/cred"
expect_rc 0 in_ns "$B" vault init -c "$T/bascule.yaml"
grep -q "path-style" "$T/out" || fail "s3_url_style: path: $(cat "$T/out")"
expect_rc 3 "$B" vault ls -c "$T/bascule.yaml" --s3-url-style sideways
grep -q "expected path or virtual" "$T/err" || fail "bad --s3-url-style: $(cat "$T/err")"

# -- virtual with an IP address: a configuration error naming the line
S3V_URL_STYLE=virtual s3vault_yaml bvault "$T/cred"
expect_rc 3 "$BIN/basculed" -c "$T/bascule.yaml" --check-config
grep -q "bascule.yaml:[0-9]*:[0-9]*: target 'offsite': s3_url_style virtual" "$T/err" ||
	fail "virtual with an IP endpoint: $(cat "$T/err")"
note "ok"
