#!/bin/bash
# s3vault.sh - the vault on S3 with Object Lock, against a real radosgw
# (tests/lib/ceph.sh): basculed ships a disk continuously to
# s3://bvault/site-a; restores of the latest and an older epoch are
# byte-identical; `vault check` needs only the verify key.  With the
# daemon's own credentials (a user that does not own the bucket, under the
# bucket policy of docs/vault.md) a DELETE of a version or an object, a
# shortened retention, a lifecycle rule and removing the policy are refused
# (403); with the pruner's (allowed to delete), a DELETE of a locked version
# too (the lock).  A delete marker (pruner) and overwrites (daemon: a newer
# version of a pack, of a manifest) lose nothing: check names them (exit 5)
# and restore stays byte-identical.  `vault init` refuses a bucket without
# Object Lock (3), without versioning (3), with a default retention (3), a
# missing bucket (1), wrong credentials (4); 0644 credentials are refused
# (4).  radosgw killed mid-upload and restarted: shipping resumes, nothing
# half committed.  Over TLS, verified against s3_ca; no CA or a certificate
# for another address is refused (4).
. "$(dirname "$0")/../lib/common.sh" "$1"
. "$ROOT/tests/lib/s3vault.sh"
need_root
CEPH_TLS=$T/tls   # radosgw also on https (RGW_TLS_URL)
s3vault_up
export S3_BUCKET=bvault
# 8 MB/s to the vault: a 16 MiB epoch streams for 2 s, its first pack is
# up before its last is cut, and radosgw can be killed in between.
export S3V_BANDWIDTH=8MB/s
S3_BUCKET=bnolock S3_CREDENTIALS=$T/owner expect_rc 0 "$S" mkbucket nolock
s3vault_policy bnolock

# -- vault init: what is wrong with the bucket, each its exit code
s3vault_yaml bnolock "$T/cred"
expect_rc 3 "$B" vault init -c "$T/bascule.yaml"
grep -q "has no Object Lock" "$T/err" || fail "no-lock bucket: $(cat "$T/err")"
expect_rc 3 "$B" vault init -c "$T/bascule.yaml" --no-lock
grep -q "versioning is off" "$T/err" || fail "unversioned bucket: $(cat "$T/err")"
echo '<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>' > "$T/ver.xml"
S3_BUCKET=bnolock S3_CREDENTIALS=$T/owner expect_rc 0 "$S" raw PUT - versioning= "$T/ver.xml"
expect_rc 0 "$B" vault init -c "$T/bascule.yaml" --no-lock
S3_BUCKET=bdefret S3_CREDENTIALS=$T/owner expect_rc 0 "$S" mkbucket lock
s3vault_policy bdefret
echo '<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>' > "$T/defret.xml"
S3_BUCKET=bdefret S3_CREDENTIALS=$T/owner expect_rc 0 "$S" raw PUT - object-lock= "$T/defret.xml"
[ "$(cat "$T/out")" = 200 ] || fail "could not set a default retention: $(cat "$T/out")"
s3vault_yaml bdefret "$T/cred"
expect_rc 3 "$B" vault init -c "$T/bascule.yaml"
grep -q "has a default retention (GOVERNANCE, 1 days)" "$T/err" || fail "default retention: $(cat "$T/err")"
s3vault_yaml nosuchbucket "$T/cred"
expect_rc 1 "$B" vault init -c "$T/bascule.yaml"
grep -q "does not exist" "$T/err" || fail "missing bucket: $(cat "$T/err")"
sed 's/\(aws_secret_access_key = \).*/\1wrongwrongwrong/' "$T/cred" > "$T/badcred"; chmod 600 "$T/badcred"
s3vault_yaml bvault "$T/badcred"
expect_rc 4 "$B" vault init -c "$T/bascule.yaml"
grep -q "refused the credentials" "$T/err" || fail "wrong credentials: $(cat "$T/err")"
cp "$T/cred" "$T/cred644"; chmod 644 "$T/cred644"
s3vault_yaml bvault "$T/cred644"
expect_rc 4 "$BIN/basculed" -c "$T/bascule.yaml" --check-config
grep -q "cred644" "$T/err" "$T/out" || fail "0644 credentials: $(cat "$T/err")"
s3vault_yaml bvault "$T/cred"
expect_rc 0 "$B" vault init -c "$T/bascule.yaml"
grep -q "Object Lock enabled, versioning on" "$T/out" || fail "init: $(cat "$T/out")"
grep -q "COMPLIANCE for 1 days" "$T/out" || fail "init lock: $(cat "$T/out")"
note "vault init: no lock 3, versioning off 3, a default retention 3, missing bucket 1, wrong credentials 4, 0644 credentials 4, ready 0"

# -- continuous shipping, then two points kept aside
bsc_start
"$BIN/tests/randwrite" "$T/disk.img" 300 1
vsync
cp "$T/disk.img" "$T/disk.A"
EA=$(vault_epochs | awk '{print $NF}')
"$BIN/tests/randwrite" "$T/disk.img" 300 2
vsync
cp "$T/disk.img" "$T/disk.B"
EB=$(vault_epochs | awk '{print $NF}')
[ -n "$EA" ] && [ "$EB" -gt "$EA" ] || fail "no new vault epoch between the two points ($EA, $EB)"
n=$(vault_epochs | wc -w)
note "shipped to s3://bvault/site-a: $n epochs, kept $EA and $EB"
S3_BUCKET=bvault expect_rc 0 "$S" ls site-a/m/
[ -s "$T/out" ] || fail "no manifest under site-a/m/ in the bucket"
S3_BUCKET=bvault expect_rc 0 "$S" ls site-a/d/; cp "$T/out" "$T/objs"
obj=$(awk '$4 == "latest" {print $1; exit}' "$T/objs"); ver=$(awk -v k="$obj" '$1 == k {print $2; exit}' "$T/objs")
S3_BUCKET=bvault expect_rc 0 "$S" ret-get "$obj" "$ver"; read -r mode until < "$T/out"
[ "$mode" = COMPLIANCE ] && [ "$until" -gt $(($(date +%s) + 3600)) ] || fail "object not locked for 1h10m: $(cat "$T/out")"

restore() { "$B" restore -c "$T/bascule.yaml" --source vm1/disk "$@"; }
restore --to "$T/r-B" > "$T/restore.out" 2>&1 || fail "restore of the latest failed: $(cat "$T/restore.out")"
cmp -s "$T/r-B" "$T/disk.B" || fail "latest restore differs"
restore --epoch "$EA" --to "$T/r-A" >/dev/null 2>&1 || fail "restore of epoch $EA failed"
cmp -s "$T/r-A" "$T/disk.A" || fail "epoch $EA restore differs"
CHK=(--vault s3://bvault/site-a --s3-endpoint "$RGW_URL" --s3-credentials "$T/cred" --verify-key "$T/vault.key.pub")
expect_rc 0 "$B" vault check "${CHK[@]}"
note "restores of the latest and of epoch $EA byte-identical; check with the verify key only: $(cat "$T/out")"
# an object no manifest names (an interrupted upload's) is counted, from one listing of d/
echo stray > "$T/stray"
expect_rc 0 "$S" put "site-a/d/ee/$(printf 'e%.0s' $(seq 64))" "$T/stray"
expect_rc 0 "$B" vault check "${CHK[@]}"
grep -q " 1 unreferenced" "$T/out" || fail "check does not count the one object no manifest needs: $(cat "$T/out")"

# -- radosgw killed while an epoch uploads, then restarted: the writer
# resumes, nothing half-committed (no manifest without its objects)
# The group paused while the disk is rewritten: one epoch of 16 MiB (two
# packs), so that the outage falls after its first pack is up.
nd=$("$S" ls site-a/d/ | wc -l)
"$B" -c "$T/bascule.yaml" pause vm1 >/dev/null
head -c $((16 << 20)) /dev/urandom | dd of="$T/disk.img" conv=notrunc status=none
"$B" -c "$T/bascule.yaml" resume vm1 >/dev/null
wait_for 60 "a first object of the new epoch in the bucket" '[ "$("$S" ls site-a/d/ | wc -l)" -gt "$nd" ]'
rgw_stop
t0=$(date +%s)
wait_for 30 "8 s of store outage (beyond the writer's retries)" '[ $(date +%s) -ge $((t0 + 8)) ]'
rgw_start
vsync
cp "$T/disk.img" "$T/disk.C"
restore --to "$T/r-C" > "$T/restore.out" 2>&1 || fail "restore after the RGW restart failed: $(cat "$T/restore.out")"
cmp -s "$T/r-C" "$T/disk.C" || fail "restore after the RGW restart differs"
expect_rc 0 "$B" vault check "${CHK[@]}"
if grep -q "refused: s3 .*Couldn't connect" "$T/daemon.log"; then
	grep -q "packs uploaded before an interruption will be reused" "$T/daemon.log" ||
		fail "the writer failed an epoch in the outage but did not reuse its uploaded packs: $(grep offsite "$T/daemon.log" | tail -5)"
	how="the epoch in flight failed and its uploaded packs were reused"
else
	how="the outage fell between two uploads (no epoch failed)"
fi
note "radosgw killed mid-upload for 8 s: $how; latest restore byte-identical, check: $(cat "$T/out")"

# -- the daemon's own credentials against the vault: refused by the lock
# and by the bucket policy (docs/vault.md), except new versions
bsc_stop
S3_BUCKET=bvault expect_rc 4 "$S" del "$obj" "$ver"
grep -q 403 "$T/err" || fail "DELETE of a version: $(cat "$T/err")"
S3_BUCKET=bvault expect_rc 4 "$S" del "$obj"
grep -q 403 "$T/err" || fail "DELETE of an object: $(cat "$T/err")"
S3_BUCKET=bvault expect_rc 4 "$S" ret-put "$obj" "$ver" COMPLIANCE 60
grep -q 403 "$T/err" || fail "shortened retention: $(cat "$T/err")"
echo '<LifecycleConfiguration><Rule><ID>x</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration></Rule></LifecycleConfiguration>' > "$T/lc.xml"
S3_BUCKET=bvault expect_rc 0 "$S" raw PUT - lifecycle= "$T/lc.xml"
[ "$(cat "$T/out")" = 403 ] || fail "a lifecycle rule was not refused: $(cat "$T/out")"
S3_BUCKET=bvault expect_rc 0 "$S" raw DELETE - policy=
[ "$(cat "$T/out")" = 403 ] || fail "deleting the bucket policy was not refused: $(cat "$T/out")"
# The pruner's key, allowed to delete: the lock still holds; a DELETE only adds a marker.
S3_BUCKET=bvault S3_CREDENTIALS=$T/pruner expect_rc 4 "$S" del "$obj" "$ver"
grep -q "403.*object lock" "$T/err" || fail "the pruner's DELETE of a locked version: $(cat "$T/err")"
S3_BUCKET=bvault S3_CREDENTIALS=$T/pruner expect_rc 0 "$S" del "$obj"   # a delete marker only
obj2=$(awk -v k="$obj" '$4 == "latest" && $1 != k {print $1; exit}' "$T/objs")
head -c 4096 /dev/urandom > "$T/evil"
S3_BUCKET=bvault expect_rc 0 "$S" put "$obj2" "$T/evil"
S3_BUCKET=bvault expect_rc 0 "$S" ls site-a/m/
man=$(awk '$4 == "latest" {print $1; exit}' "$T/out")
S3_BUCKET=bvault expect_rc 0 "$S" put "$man" "$T/evil"
expect_rc 5 "$B" vault check "${CHK[@]}"
grep -q "BAD ${obj#site-a/}: DELETED" "$T/err" || fail "check does not name the deleted object: $(cat "$T/err")"
grep -q "BAD ${obj2#site-a/}: OVERWRITTEN" "$T/err" || fail "check does not name the overwritten object: $(cat "$T/err")"
grep -q "BAD ${man#site-a/}: OVERWRITTEN" "$T/err" || fail "check does not name the overwritten manifest: $(cat "$T/err")"
sed 's/^/    /' "$T/err"
rm -f "$T/r-C"
restore --to "$T/r-C" > "$T/restore.out" 2>&1 || fail "restore after the attacks failed: $(cat "$T/restore.out")"
cmp -s "$T/r-C" "$T/disk.C" || fail "latest restore differs after the attacks"
rm -f "$T/r-A"
restore --epoch "$EA" --to "$T/r-A" >/dev/null 2>&1 || fail "restore of epoch $EA after the attacks failed"
cmp -s "$T/r-A" "$T/disk.A" || fail "epoch $EA restore differs after the attacks"
note "daemon's key: DELETE of a version, of an object, shorter retention, lifecycle rule, policy removal 403; pruner's DELETE of a locked version 403; a delete marker (pruner) and overwrites of a pack and a manifest (daemon) named by check (exit 5), restores still byte-identical"

# -- TLS: shipping and restore over https, verified against s3_ca; no CA or a
# certificate for another address refused (exit 4), nothing shipped
S3V_ENDPOINT=$RGW_TLS_URL S3V_CA=$T/tls/ca.pem s3vault_yaml bvault "$T/cred"
expect_rc 0 "$B" vault init -c "$T/bascule.yaml"
bsc_start
"$BIN/tests/randwrite" "$T/disk.img" 100 3
vsync
bsc_stop
cp "$T/disk.img" "$T/disk.D"
restore --to "$T/r-D" > "$T/restore.out" 2>&1 || fail "restore over TLS failed: $(cat "$T/restore.out")"
cmp -s "$T/r-D" "$T/disk.D" || fail "restore over TLS differs"
S3V_ENDPOINT=$RGW_TLS_URL s3vault_yaml bvault "$T/cred"
expect_rc 4 "$B" vault init -c "$T/bascule.yaml"
grep -q "TLS verification of $CEPH_IP:$RGW_TLS_PORT failed" "$T/err" || fail "TLS without the CA: $(cat "$T/err")"
ceph_tls_cert "$T/tls" 127.0.0.1
rgw_stop; rgw_start
S3V_ENDPOINT=$RGW_TLS_URL S3V_CA=$T/tls/ca.pem s3vault_yaml bvault "$T/cred"
expect_rc 4 "$B" vault init -c "$T/bascule.yaml"
grep -q "TLS verification of $CEPH_IP:$RGW_TLS_PORT failed" "$T/err" || fail "TLS name mismatch: $(cat "$T/err")"
note "TLS: shipped and restored (byte-identical) over https with s3_ca; no CA: exit 4; a certificate for 127.0.0.1: exit 4 ($(cut -c1-160 "$T/err"))"
! grep -rq "$(awk '/aws_secret/ {print $3}' "$T/cred")" "$T/daemon.log" "$T/err" "$T/out" || fail "the secret was logged"
note "ok"
