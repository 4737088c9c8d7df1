#!/bin/bash
# make bench: figures for docs/design.md, medians of several runs.
#   1. leaf hashing: keyed XXH3-128 against BLAKE2b, one core
#   2. scan of a 2 GiB image (no change found): one core and all cores, page
#      cache warm and cold, against raw sequential read of the same file
#   2b. finding the data of a 1 TiB sparse file (SEEK_GIB, 1024; 64 extents
#      of 32 MiB): lseek calls and time per pass, SEEK_DATA per 2 MiB chunk
#      (the scan before the scan hint) against the skip-ahead (now), a
#      whole-file walk and FIEMAP (tests/helpers/seekbench; a few seconds)
#   3. a 1% random change (4 KiB blocks) of the 2 GiB image, synced through
#      the local transport: wall time, CPU seconds, bytes before and after
#      compression, against rsync --inplace --no-whole-file (default and
#      -B 4096) and rdiff (signature + delta) on the same change
# then, as root: ssh.sh (4), vault.sh (5), pg.sh (6), hybrid.sh (7: nightly
# bascule ship of a pgbench dump against zstd, restic, borg; restore + load)
# and s3.sh (8: the vault on a real Ceph RGW against aws s3 cp and rclone);
# then scale.sh (9: per-epoch cost of 2, 16, 64 GiB disks, changing and idle epochs, scan mode against
# QEMU bitmap mode, and memory for 1 TiB: SCALE_SIZES, MEM_GIB=0 to skip it;
# ~20 min on a loaded machine, half of it the 1 TiB initial copy)
# and qemulag.sh (10: lag of a 64 GiB qcow2 guest under 10 MB/s of writes)
# (NO_SSH_BENCH, NO_VAULT_BENCH, NO_PG_BENCH, NO_HYBRID_BENCH, NO_S3_BENCH,
# NO_SCALE_BENCH, NO_QEMU_BENCH skip one)
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
drop_caches() { sync; [ "$(id -u)" = 0 ] && echo 3 > /proc/sys/vm/drop_caches || true; }
IMG=$T/disk.img
SIZE=$((2 * 1024 * 1024 * 1024))
BLOCKS=$((SIZE / 4096))
CHANGE=$((BLOCKS / 100))

echo "Bascule bench on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $RUNS runs each (medians)"
echo
echo "== 1. leaf hash, one core, 4 KiB blocks in memory"
xs=(); bs=()
for _ in $(seq "$RUNS"); do read -r x b _ < <("$B/tests/hashbench"); xs+=("$x"); bs+=("$b"); done
x=$(printf '%s\n' "${xs[@]}" | median); b=$(printf '%s\n' "${bs[@]}" | median)
printf "   keyed XXH3-128 %6.2f GB/s   BLAKE2b %5.2f GB/s   ratio %.1fx\n" "$x" "$b" "$(echo "$x / $b" | bc -l)"

echo
echo "== 2. scan of a 2 GiB fully allocated image (no change found)"
head -c $SIZE /dev/urandom > "$IMG"
bsc_keygen
SOURCES="root:$IMG"
scan_ms() { # one forced cut; prints the scan time in ms from the daemon's log
	local n; n=$(grep -c "cut (" "$T/daemon.log" || true)
	bsc sync >/dev/null
	for _ in $(seq 600); do
		[ "$(grep -c "cut (" "$T/daemon.log" || true)" -gt "$n" ] && break; sleep 0.05
	done
	grep "cut (" "$T/daemon.log" | tail -1 | sed 's/.* in \([0-9.]*\) ms (cut.*/\1/'
}
for threads in 1 0; do
	# A target that never connects: nothing is spooled, the cut is a pure scan.
	bsc_config 1h 24h "remote_command: /bin/false"
	sed -i "s|^control_socket:|scan_threads: $threads\ncontrol_socket:|" "$T/bascule.yaml"
	# Every cut reads the whole file (else the unchanged file is not reread).
	sed -i "s|^    max_interval: .*|&\n    full_scan_every: 0|" "$T/bascule.yaml"
	rm -rf "$T/state"; : > "$T/daemon.log"
	bsc_start; scan_ms >/dev/null   # first scan fills the map
	warm=(); cold=()
	for _ in $(seq "$RUNS"); do warm+=("$(scan_ms)"); done
	for _ in $(seq "$RUNS"); do drop_caches; cold+=("$(scan_ms)"); done
	bsc_stop
	w=$(printf '%s\n' "${warm[@]}" | median); c=$(printf '%s\n' "${cold[@]}" | median)
	label=$([ $threads = 1 ] && echo "1 core " || echo "$(nproc) cores")
	printf "   scan, %s: warm %6.2f GB/s   cold %6.2f GB/s\n" "$label" \
		"$(echo "$SIZE / $w / 1000000" | bc -l)" "$(echo "$SIZE / $c / 1000000" | bc -l)"
	[ $threads = 1 ] && W1=$w C1=$c || WN=$w CN=$c
done
rw=(); rc=()
for _ in $(seq "$RUNS"); do
	s=$(secs); cat "$IMG" > /dev/null; rw+=("$(echo "$(secs) - $s" | bc -l)")
	drop_caches; s=$(secs); dd if="$IMG" of=/dev/null bs=1M status=none; rc+=("$(echo "$(secs) - $s" | bc -l)")
done
RW=$(printf '%s\n' "${rw[@]}" | median); RC=$(printf '%s\n' "${rc[@]}" | median)
printf "   raw read (cat/dd):      warm %6.2f GB/s   cold %6.2f GB/s\n" "$(echo "$SIZE / $RW / 1000000000" | bc -l)" "$(echo "$SIZE / $RC / 1000000000" | bc -l)"
printf "   scan / raw read, all cores: warm %.0f%%   cold %.0f%%\n" \
	"$(echo "100 * $RW * 1000 / $WN" | bc -l)" "$(echo "100 * $RC * 1000 / $CN" | bc -l)"

echo
echo "== 2b. finding the data of a sparse file: lseek calls and time per pass"
"$B/tests/seekbench" "$T/seek.img" "${SEEK_GIB:-1024}" 64 32 "$RUNS"
rm -f "$T/seek.img"

echo
echo "== 3. a 1% random change ($CHANGE blocks of 4 KiB = $((CHANGE * 4096)) bytes) of the 2 GiB image"
bsc_config 1h 24h
rm -rf "$T/state" "$T/replica"; : > "$T/daemon.log"
bsc_start
bsc_sync 300s >/dev/null
tw=(); tc=(); raw=(); wire=()
for r in $(seq "$RUNS"); do
	"$B/tests/randwrite" "$IMG" "$CHANGE" "$r"
	rpid=$(recv_pid)
	r0=$(status_field raw_bytes_sent); w0=$(status_field bytes_sent)
	c0=$(echo "$(cpu_of "$DAEMON_PID") + $(cpu_of "$rpid")" | bc -l)
	s=$(secs); bsc_sync 120s >/dev/null; e=$(secs)
	c1=$(echo "$(cpu_of "$DAEMON_PID") + $(cpu_of "$rpid")" | bc -l)
	r1=$(status_field raw_bytes_sent); w1=$(status_field bytes_sent)
	cmp -s "$IMG" "$(replica_of root)" || fail "replica differs after the bench sync"
	tw+=("$(echo "$e - $s" | bc -l)"); tc+=("$(echo "$c1 - $c0" | bc -l)")
	raw+=("$((r1 - r0))"); wire+=("$((w1 - w0))")
done
bsc_stop
BT=$(printf '%s\n' "${tw[@]}" | median); BC=$(printf '%s\n' "${tc[@]}" | median)
BR=$(printf '%s\n' "${raw[@]}" | median); BW=$(printf '%s\n' "${wire[@]}" | median)
printf "   bascule sync --wait:     %6.2f s wall  %6.2f s CPU  %6.1f MB shipped (%.2fx the change) %6.1f MB on the wire\n" \
	"$BT" "$BC" "$(echo "$BR / 1000000" | bc -l)" "$(echo "$BR / ($CHANGE * 4096)" | bc -l)" "$(echo "$BW / 1000000" | bc -l)"

cp "$(replica_of root)" "$T/dst.img"
rsync_run() { # $@: extra rsync options; prints "wall cpu bytes"
	local tm
	"$B/tests/randwrite" "$IMG" "$CHANGE" "$((RANDOM + 100))"
	# -I: compare every file (same-second mtimes would make rsync skip it)
	tm=$( { TIMEFORMAT='%R %U %S'; time rsync -I --inplace --no-whole-file --stats "$@" "$IMG" "$T/dst.img" > "$T/rsync.out"; } 2>&1 )
	read -r w u s <<<"$tm"
	echo "$w $(echo "$u + $s" | bc -l) $(sed -n 's/^Total bytes sent: \([0-9,]*\).*/\1/p' "$T/rsync.out" | tr -d ,)"
}
for variant in "" "-B 4096"; do
	ts=(); cs=(); bs=()
	for _ in $(seq "$RUNS"); do
		# shellcheck disable=SC2086
		read -r t c b < <(rsync_run $variant); ts+=("$t"); cs+=("$c"); bs+=("$b")
	done
	t=$(printf '%s\n' "${ts[@]}" | median); c=$(printf '%s\n' "${cs[@]}" | median); b=$(printf '%s\n' "${bs[@]}" | median)
	printf "   rsync --inplace %-8s %6.2f s wall  %6.2f s CPU  %6.1f MB sent       -> bascule %.1fx faster, %.1fx fewer bytes\n" \
		"${variant:-(default)}" "$t" "$c" "$(echo "$b / 1000000" | bc -l)" "$(echo "$t / $BT" | bc -l)" "$(echo "$b / $BW" | bc -l)"
done
if command -v rdiff >/dev/null; then
	ts=(); cs=(); bs=()
	for _ in $(seq "$RUNS"); do
		"$B/tests/randwrite" "$IMG" "$CHANGE" "$((RANDOM + 200))"
		tm=$( { TIMEFORMAT='%R %U %S'; time { rdiff --force signature "$T/dst.img" "$T/sig" &&
			rdiff --force delta "$T/sig" "$IMG" "$T/delta"; }; } 2>&1 )
		read -r w u s <<<"$tm"
		ts+=("$w"); cs+=("$(echo "$u + $s" | bc -l)"); bs+=("$(stat -c %s "$T/delta")")
	done
	t=$(printf '%s\n' "${ts[@]}" | median); c=$(printf '%s\n' "${cs[@]}" | median); b=$(printf '%s\n' "${bs[@]}" | median)
	printf "   rdiff signature+delta:   %6.2f s wall  %6.2f s CPU  %6.1f MB delta      -> bascule %.1fx faster, %.1fx fewer bytes\n" \
		"$t" "$c" "$(echo "$b / 1000000" | bc -l)" "$(echo "$t / $BT" | bc -l)" "$(echo "$b / $BW" | bc -l)"
fi
if [ "$(id -u)" = 0 ] && [ -z "${NO_SSH_BENCH:-}" ]; then echo; bash "$(dirname "$0")/ssh.sh" "$B"; fi
if [ "$(id -u)" = 0 ] && [ -z "${NO_VAULT_BENCH:-}" ]; then echo; bash "$(dirname "$0")/vault.sh" "$B"; fi
if [ "$(id -u)" = 0 ] && [ -z "${NO_PG_BENCH:-}" ]; then echo; bash "$(dirname "$0")/pg.sh" "$B"; fi
if [ "$(id -u)" = 0 ] && [ -z "${NO_HYBRID_BENCH:-}" ]; then echo; bash "$(dirname "$0")/hybrid.sh" "$B"; fi
# s3.sh exits 77 (skipped) without Ceph's packages
if [ -z "${NO_S3_BENCH:-}" ]; then echo; bash "$(dirname "$0")/s3.sh" "$B" || [ $? = 77 ]; fi
if [ -z "${NO_SCALE_BENCH:-}" ]; then echo; bash "$(dirname "$0")/scale.sh" "$B"; fi
# qemulag.sh exits 77 (skipped) without QEMU
if [ -z "${NO_QEMU_BENCH:-}" ]; then echo; bash "$(dirname "$0")/qemulag.sh" "$B" || [ $? = 77 ]; fi
