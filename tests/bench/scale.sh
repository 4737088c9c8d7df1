#!/bin/bash
# make bench, scale section: the per-epoch cost of a large sparse disk.
#   tests/bench/scale.sh BUILD_DIR [SIZE_GIB...]   (default: 2 16 64)
# For each size: a sparse image with WRITTEN_MIB (default 2048, capped at
# half the disk) of random data in 64 extents spread over the disk, replicated to
# a local replica; then EPOCHS (default 5) epochs each carrying 256 random
# 4 KiB writes (1 MiB, scattered over the whole disk).  Per epoch, medians:
# wall time from `sync` to ack, bytes the daemon read (rchar: every read(2),
# page cache or not), CPU seconds of the daemon and of the receiver, the
# cut's time after the scan (digest, msync, commit) and the digest's own
# (from the daemon's log, where it says it); and the daemon's resident
# memory (VmRSS, VmHWM) at the end, with the block map's size on disk.
# Then IDLE_EPOCHS (default 3) syncs with no write at all: wall time and
# bytes read (an idle file costs a stat with the scan hint, docs/design.md;
# one settling sync first, once the last write is 3 s old, is not counted:
# it is the full scan that can vouch for the file).
# Another build's figures on the same machine: run it with that build's dir.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
shift || true
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
SIZES=${*:-2 16 64}
EPOCHS=${EPOCHS:-5}
IDLE_EPOCHS=${IDLE_EPOCHS:-3}
WRITTEN_MIB=${WRITTEN_MIB:-2048}
cpu_of() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
rchar_of() { awk '/^rchar/ {print $2}' "/proc/$1/io"; }
kib_of() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

echo "== scale: per epoch, 256 scattered 4 KiB writes (1 MiB), $EPOCHS epochs, medians (load $(cut -d' ' -f1-3 /proc/loadavg))"
printf "   %8s %9s %8s %10s %10s %8s %9s %9s %9s %9s %9s\n" "disk" "written" "initial" "sync->ack" "read" "cpu" \
	"recv cpu" "post-scan" "digest" "VmRSS" "VmHWM"
bsc_keygen
for gib in $SIZES; do
	rm -rf "$T/state" "$T/replica" "$T/disk.img"
	: > "$T/daemon.log"
	size=$((gib * 1024 * 1024 * 1024))
	truncate -s "$size" "$T/disk.img"
	w=$WRITTEN_MIB
	[ $((w * 2)) -le $((gib * 1024)) ] || w=$((gib * 1024 / 2))
	ext=$((w / 64))
	for i in $(seq 0 63); do
		dd if=/dev/urandom of="$T/disk.img" bs=1M count="$ext" seek=$((i * gib * 1024 / 64)) \
			conv=notrunc status=none
	done
	sync
	SOURCES="root:$T/disk.img"
	bsc_config 1h 24h
	s=$(secs)
	bsc_start
	bsc_sync 3600s >/dev/null || fail "initial sync of $gib GiB"
	initial=$(echo "$(secs) - $s" | bc -l)
	walls=(); reads=(); cpus=(); rcpus=()
	rp=$(recv_pid)
	for e in $(seq "$EPOCHS"); do
		"$B/tests/randwrite" "$T/disk.img" 256 "$e"
		r0=$(rchar_of "$DAEMON_PID"); c0=$(cpu_of "$DAEMON_PID"); rc0=$(cpu_of "$rp"); s=$(secs)
		bsc_sync 3600s >/dev/null || fail "epoch $e of $gib GiB"
		walls+=("$(echo "$(secs) - $s" | bc -l)")
		reads+=("$(echo "($(rchar_of "$DAEMON_PID") - $r0) / 1048576" | bc -l)")
		cpus+=("$(echo "$(cpu_of "$DAEMON_PID") - $c0" | bc -l)")
		rcpus+=("$(echo "$(cpu_of "$rp") - $rc0" | bc -l)")
	done
	# idle epochs: the file untouched since the last write
	wait_for 30 "the last write 3 s old" \
		sh -c "[ \$((\$(date +%s) - \$(stat -c %Z '$T/disk.img'))) -ge 3 ]"
	bsc_sync 3600s >/dev/null || fail "settling sync of $gib GiB"
	iwalls=(); ireads=()
	for e in $(seq "$IDLE_EPOCHS"); do
		r0=$(rchar_of "$DAEMON_PID"); s=$(secs)
		bsc_sync 3600s >/dev/null || fail "idle epoch $e of $gib GiB"
		iwalls+=("$(echo "$(secs) - $s" | bc -l)")
		ireads+=("$(echo "($(rchar_of "$DAEMON_PID") - $r0) / 1048576" | bc -l)")
	done
	# the last EPOCHS changing cuts (before the idle ones): cut time minus scan time, and the digest's
	post=$(grep " cut (" "$T/daemon.log" | tail -n $((EPOCHS + IDLE_EPOCHS + 1)) | head -n "$EPOCHS" |
		sed -n 's/.*scanned [0-9.]* MiB in \([0-9.]*\) ms.*(cut \([0-9.]*\) ms).*/\2 \1/p' |
		awk '{print $1 - $2}' | median)
	dig=$(grep " cut (" "$T/daemon.log" | tail -n $((EPOCHS + IDLE_EPOCHS + 1)) | head -n "$EPOCHS" | sed -n 's/.*digest \([0-9.]*\) ms.*/\1/p')
	[ -z "$dig" ] || dig=$(echo "$dig" | median) # a build that does not log it: "-"
	rss=$(kib_of "$DAEMON_PID" VmRSS); hwm=$(kib_of "$DAEMON_PID" VmHWM)
	printf "   %5d GiB %5d MiB %7.1fs %9.2fs %6.1f MiB %7.2fs %8.2fs %7.1fms %7sms %6d MiB %6d MiB\n" "$gib" "$w" \
		"$initial" "$(printf '%s\n' "${walls[@]}" | median)" \
		"$(printf '%s\n' "${reads[@]}" | median)" \
		"$(printf '%s\n' "${cpus[@]}" | median)" "$(printf '%s\n' "${rcpus[@]}" | median)" \
		"$post" "${dig:--}" $((rss / 1024)) $((hwm / 1024))
	printf "   %18s idle epoch (no write, median of %d): sync->ack %.2fs, read %.1f MiB\n" "" "$IDLE_EPOCHS" \
		"$(printf '%s\n' "${iwalls[@]}" | median)" "$(printf '%s\n' "${ireads[@]}" | median)"
	printf "   %18s block map on disk: %s (apparent %s)\n" "" \
		"$(du -sh "$T/state" | cut -f1)" "$(du -sh --apparent-size "$T/state" | cut -f1)"
	bsc_stop
	rp=$(recv_pid)
	[ -z "$rp" ] || kill -9 "$rp" 2>/dev/null || true
done
