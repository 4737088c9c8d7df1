#!/bin/bash
# S3 vault bench: a real single-node Ceph RGW (tests/lib/ceph.sh, memstore,
# loopback) and one bucket made with Object Lock.
#   8a. upload of 512 MiB of packs (64 files of 8 MiB, random, page cache
#       warm): Bascule's s3:// store (tests/vaultput: HEAD + locked PUT with
#       Content-MD5 and x-amz-checksum-sha256 per object, 1 and `parallel: 4`
#       connections) against `aws s3 cp --recursive` (Debian's awscli, its
#       default 10 requests at once) and `rclone copy` (its default 4
#       transfers) of the same files
#   8b. the daemon: a 512 MiB disk of random bytes shipped to an s3:// vault
#       target (`parallel: 4`), then a 1% random change (4 KiB blocks): bytes
#       uploaded and time from `sync` to the committed manifest
#   8c. restore of that disk from the vault (`bascule restore`, parallel
#       GETs over --jobs 4 connections, every block verified) against
#       `aws s3 cp --recursive` and `rclone copy` downloading the vault's own
#       packs (the same bytes, as plain objects)
#   8d. `bascule vault check` of that vault with the verify key only (every
#       object read and hashed against its name, 4 connections), against
#       the same downloads
# Each run's objects of 8a are deleted and RGW's garbage collected, so that
# the memstore (2 GiB here) holds one run at a time.  tests/bench/run.sh runs
# it (NO_S3_BENCH=1 skips); alone: [RUNS=N] tests/bench/s3.sh build
# (S3_BENCH_NO_8A=1 skips 8a, for work on the restore).
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
. "$ROOT/tests/lib/ceph.sh"
S=$BIN/tests/s3tool
AWS=$(command -v /usr/bin/aws aws | head -1 || true)
have() { [ -n "$1" ] && command -v "$1" >/dev/null; }
have "$AWS" && have rclone || echo "   (awscli or rclone missing: scripts/deps.sh bench installs them)"
MB=512
mbs() { echo "$1 * 1.048576 / $2" | bc -l; } # MiB, seconds -> MB/s
ratio() { [ "$(echo "$2 > 0" | bc)" = 1 ] && echo "100 * $1 / $2" | bc -l || echo 0; } # 0: no peer ran
max() { printf '%s\n' "$@" | sort -g | tail -1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# RGW's collector frees deleted data within seconds (not after 2 h)
CEPH_MEMSTORE_MIB=${CEPH_MEMSTORE_MIB:-2048} CEPH_RGW_CONF=$'rgw gc obj min wait = 0\nrgw gc processor period = 3' ceph_start
ceph_user bench "$T/cred"
export S3_ENDPOINT=$RGW_URL S3_CREDENTIALS=$T/cred S3_BUCKET=bench
"$S" mkbucket lock >/dev/null
# The peers read the same credentials file; awscli's region, no instance metadata.
export AWS_SHARED_CREDENTIALS_FILE=$T/cred AWS_CONFIG_FILE=$T/aws.config AWS_EC2_METADATA_DISABLED=true
printf '[default]\nregion = us-east-1\n' > "$T/aws.config"
AK=$(sed -n 's/^aws_access_key_id = //p' "$T/cred"); SK=$(sed -n 's/^aws_secret_access_key = //p' "$T/cred")
export RCLONE_CONFIG_RGW_TYPE=s3 RCLONE_CONFIG_RGW_PROVIDER=Ceph RCLONE_CONFIG_RGW_ENDPOINT=$RGW_URL \
	RCLONE_CONFIG_RGW_ACCESS_KEY_ID=$AK RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=$SK RCLONE_CONFIG_RGW_REGION=us-east-1
# rclone's AWS SDK would load $AWS_CA_BUNDLE (set on some hosts) and fail
# over plain http ("LoadCustomCABundleError"): the endpoint is http.
rc() { env -u AWS_CA_BUNDLE RCLONE_CONFIG="$T/rclone.conf" rclone "$@"; }
: > "$T/rclone.conf"
aws_s3() { "$AWS" --endpoint-url "$RGW_URL" s3 "$@" --only-show-errors; }
# purge PREFIX: every version under PREFIX (locks lapsed), and its data from RGW.
purge() {
	local k v _
	"$S" ls "$1" | while read -r k v _; do "$S" del "$k" "$v"; done
	[ -z "$("$S" ls "$1")" ]
}
purged() { purge "$1" 2>/dev/null && ceph_gc; }
timed() { local t0 t1; t0=$(secs); "$@" >/dev/null || fail "$* failed"; t1=$(secs); echo "$t1 - $t0" | bc -l; }
runs() { printf ' %.0f' "$@"; } # the figures of each run, rounded

echo "== 8. the vault on S3: Ceph RGW 16 (memstore, loopback, one node) in ${CEPH_UP_MS} ms; load $(loadavg)"

# -- 8a
mkdir -p "$T/packs"
for i in $(seq -w 0 $((MB / 8 - 1))); do head -c $((8 << 20)) /dev/urandom > "$T/packs/$(printf '%064x' "$((10#$i))")"; done
cat "$T/packs"/* > /dev/null
one=(); par=(); awss=(); rcs=()
[ -n "${S3_BENCH_NO_8A:-}" ] || for i in $(seq "$RUNS"); do
	# locked for 10 s: the vault's headers, and deletable soon after (a
	# date already past when RGW reads it, on a loaded machine, is refused)
	one+=("$(S3_LOCK_SECONDS=10 "$BIN/tests/vaultput" "s3://bench/b1-$i" - - "$T/packs")")
	wait_for 60 "the bench objects' locks to lapse" purged "b1-$i/"
	par+=("$(S3_LOCK_SECONDS=10 "$BIN/tests/vaultput" "s3://bench/b4-$i" - - "$T/packs" 4)")
	wait_for 60 "the bench objects' locks to lapse" purged "b4-$i/"
	if have "$AWS"; then
		awss+=("$(mbs $MB "$(timed aws_s3 cp --recursive "$T/packs" "s3://bench/aws-$i/")")")
		purged "aws-$i/" || fail "could not delete aws-$i/"
	fi
	if have rclone; then
		rcs+=("$(mbs $MB "$(timed rc copy "$T/packs" "rgw:bench/rclone-$i")")")
		purged "rclone-$i/" || fail "could not delete rclone-$i/"
	fi
done
if [ -z "${S3_BENCH_NO_8A:-}" ]; then
o1=$(printf '%s\n' "${one[@]}" | median); o4=$(printf '%s\n' "${par[@]}" | median)
a=$( [ ${#awss[@]} -gt 0 ] && printf '%s\n' "${awss[@]}" | median || echo 0)
r=$( [ ${#rcs[@]} -gt 0 ] && printf '%s\n' "${rcs[@]}" | median || echo 0)
peer=$(max "$a" "$r")
printf "   8a. upload of %d MiB of packs (8 MiB objects): bascule 1 connection %.0f MB/s, 4 connections %.0f MB/s   aws s3 cp %.0f MB/s   rclone %.0f MB/s   -> %.0f%% of the faster peer (load %s)\n" \
	$MB "$o1" "$o4" "$a" "$r" "$(ratio "$o4" "$peer")" "$(loadavg)"
echo "       runs (MB/s): 1 connection$(runs "${one[@]}"); 4 connections$(runs "${par[@]}"); aws$(runs "${awss[@]}"); rclone$(runs "${rcs[@]}")"
fi

# -- 8b
IMG=$T/disk.img
head -c $((MB << 20)) /dev/urandom > "$IMG"
CHANGE=$((MB * 256 / 100))
bsc_keygen
"$BIN/bascule" keygen vault "$T/vault.key" >/dev/null
cat > "$T/bascule.yaml" <<EOF
state_dir: $T/state
key: $T/site.key
control_socket: $T/ctl.sock
groups: [{name: vm1, interval: 1s, max_interval: 1h, sources: [{name: root, disk: $IMG}]}]
targets:
  - name: offsite
    type: vault
    url: s3://bench/site-a
    s3_endpoint: $RGW_URL
    s3_region: us-east-1
    s3_credentials: $T/cred
    vault_key: $T/vault.key
    retention: {all: 1h}
    object_lock: compliance
    lock_margin: 10m
    parallel: 4
EOF
stored() { "$S" ls site-a/ | awk '{s += $3} END {print s + 0}'; }
bsc_start
t=$(timed bsc sync --wait --vault --timeout 30m)
printf "   8b. initial upload of the %d MiB disk by the daemon (scan, zstd, seal, put): %.1f MB in %.1f s, %.0f MB/s (load %s)\n" \
	$MB "$(echo "$(stored) / 1000000" | bc -l)" "$t" "$(echo "$MB * 1.048576 / $t" | bc -l)" "$(loadavg)"
ts=(); bs=()
for _ in $(seq "$RUNS"); do
	"$B/tests/randwrite" "$IMG" "$CHANGE" "$((RANDOM + 100))"
	before=$(stored)
	ts+=("$(timed bsc sync --wait --vault --timeout 10m)")
	bs+=("$(($(stored) - before))")
done
bsc_stop
printf "       1%% change (%d blocks of 4 KiB, random): %.2f MB uploaded in %.2f s (sync to committed manifest; runs%s s)\n" \
	"$CHANGE" "$(echo "$(printf '%s\n' "${bs[@]}" | median) / 1000000" | bc -l)" "$(printf '%s\n' "${ts[@]}" | median)" "$(printf ' %.2f' "${ts[@]}")"

# -- 8c
restore_once() { "$BIN/bascule" restore -c "$T/bascule.yaml" --source vm1/root --to "$T/restored" --jobs 4; }
PACKS=$("$S" ls site-a/d/ | awk '{s += $3} END {print s + 0}')
ours=(); awsd=(); rcd=(); chk=()
check_once() { "$BIN/bascule" vault check --vault s3://bench/site-a --s3-endpoint "$RGW_URL" --s3-credentials "$T/cred" \
	--s3-region us-east-1 --verify-key "$T/vault.key.pub"; }
for i in $(seq "$RUNS"); do
	ours+=("$(mbs $MB "$(timed restore_once)")")
	chk+=("$(echo "$PACKS / 1000000 / $(timed check_once)" | bc -l)")
	cmp -s "$T/restored" "$IMG" || fail "the restored disk differs"
	rm -f "$T/restored" # outside the timing, as the peers' downloads are removed
	rm -rf "$T/dl"
	have "$AWS" && awsd+=("$(echo "$PACKS / 1000000 / $(timed aws_s3 cp --recursive s3://bench/site-a/d/ "$T/dl/")" | bc -l)")
	rm -rf "$T/dl"
	have rclone && rcd+=("$(echo "$PACKS / 1000000 / $(timed rc copy rgw:bench/site-a/d "$T/dl")" | bc -l)")
	rm -rf "$T/dl"
done
rm -f "$T/restored"
o=$(printf '%s\n' "${ours[@]}" | median)
a=$( [ ${#awsd[@]} -gt 0 ] && printf '%s\n' "${awsd[@]}" | median || echo 0)
r=$( [ ${#rcd[@]} -gt 0 ] && printf '%s\n' "${rcd[@]}" | median || echo 0)
peer=$(max "$a" "$r")
printf "   8c. restore of the %d MiB disk (4 connections, every block verified): %.0f MB/s of disk   download of its %.0f MB of packs and indexes (d/): aws s3 cp %.0f MB/s   rclone %.0f MB/s   -> %.0f%% of the faster peer (load %s)\n" \
	$MB "$o" "$(echo "$PACKS / 1000000" | bc -l)" "$a" "$r" "$(ratio "$o" "$peer")" "$(loadavg)"
echo "       runs (MB/s): bascule$(runs "${ours[@]}"); aws$(runs "${awsd[@]}"); rclone$(runs "${rcd[@]}")"
c=$(printf '%s\n' "${chk[@]}" | median)
printf "   8d. vault check of that vault (every object hashed against its name, 4 connections): %.0f MB/s of its %.0f MB   -> %.0f%% of the faster peer's download (runs%s)\n" \
	"$c" "$(echo "$PACKS / 1000000" | bc -l)" "$(ratio "$c" "$peer")" "$(runs "${chk[@]}")"
