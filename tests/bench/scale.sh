#!/bin/bash
# make bench, scale section: the per-epoch cost of a large sparse disk, scan
# mode (disk: the image file) against bitmap mode (qemu: the same image held
# by a QEMU, read through its dirty bitmap and NBD).
#   tests/bench/scale.sh BUILD_DIR [SIZE_GIB...]   (default: $SCALE_SIZES or 2 16 64; SCALE_SIZES= none)
# For each size: a sparse raw image with WRITTEN_MIB (default 2048, capped at
# half the disk) of random data in 64 extents spread over the disk, replicated
# to a local replica; then EPOCHS (default 5) epochs each carrying 256 random
# 4 KiB writes (1 MiB, scattered over the whole disk): tests/randwrite on the
# file in scan mode, qemu-io through the guest's device (HMP, QEMU without a
# running guest: tests/lib/vm.sh vm_qemu_bare) in bitmap mode.  Per epoch,
# medians: wall time from `sync` to ack, bytes the cut read from the source
# (the daemon's log: file reads or NBD reads), CPU seconds of the daemon, of
# the receiver and of QEMU, the cut's time after the scan (digest, msync,
# commit) and the digest's own; and the daemon's resident memory at the end
# (VmRSS, VmHWM, and RssAnon: VmRSS less the mapped files' pages, the block
# map's and the spool's, which the kernel can drop), with the state
# directory's size on disk (block map and spool); and the receiver's the
# same (VmRSS, RssAnon, VmHWM; the replica's map on disk).
# Then IDLE_EPOCHS (default 3) syncs with no write at all, after one settling
# sync once the image's last change is 3 s old (not counted: in scan mode it
# is the full scan that can vouch for the file, docs/design.md "The scan
# hint"): medians of wall time from `sync` to ack, bytes the cut read and
# daemon CPU (an idle file costs a stat with the scan hint; an idle QEMU
# source an empty bitmap).
# FULL=1: the whole disk written (64 extents of random data that meet), to
# see the block map of a fully written disk (BSCBMAP3's cold chunks in bitmap
# mode: docs/design.md); the daemon's map on disk is printed for each run.
# CHANGE_PCT (e.g. 1): each epoch instead carries that % of the disk in random
# 64 KiB writes of random data (both modes; qemu-io's data from a random file).
# Then memory per TB: the same for one 1 TiB sparse source (MEM_GIB, 1024)
# with MEM_WRITTEN_MIB (256) written, in the modes MEM_MODES ("bitmap"; "bitmap
# scan" adds the scan's; the initial copy of 1 TiB takes minutes, 10 on a
# loaded machine: MEM_GIB=0 skips it).  SCALE_MODES: "scan bitmap".
# Another build's figures on the same machine: run it with that build's dir
# (RANDWRITE: the write helper, this tree's build/tests/randwrite by default
# when that build has none, e.g. tests/lib/oldbuild.sh's, which is `make all`).
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
shift || true
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
. "$(dirname "$0")/../lib/vm.sh"
SIZES=${*:-${SCALE_SIZES-2 16 64}}
MODES=${SCALE_MODES:-scan bitmap}
EPOCHS=${EPOCHS:-5}
WRITTEN_MIB=${WRITTEN_MIB:-2048}
CHANGE_PCT=${CHANGE_PCT:-}
IDLE_EPOCHS=${IDLE_EPOCHS:-3}
RANDWRITE=${RANDWRITE:-$B/tests/randwrite}
[ -x "$RANDWRITE" ] || RANDWRITE=$ROOT/build/tests/randwrite
kib_of() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
QMP=$T/qmp.sock
qemu_down() { [ -f "$T/vm-scale.pid" ] && kill "$(cat "$T/vm-scale.pid")" 2>/dev/null; rm -f "$T/vm-scale.pid"; true; }
EXIT_HOOKS+=(qemu_down)
command -v qemu-system-x86_64 >/dev/null || MODES=${MODES//bitmap/}


# cuts N [SKIP]: the daemon log's N cut lines before its last SKIP (0) ones
cuts() { grep " cut (" "$T/daemon.log" | head -n -"${2:-0}" | tail -n "$1"; }
read_mib() { sed -n 's/.*scanned \([0-9.]*\) MiB in.*/\1/p'; }

# run MODE GIB MIB EPOCHS: one table row
run() {
	local mode=$1 gib=$2 w=$3 epochs=$4 s initial rp qp=0 e c0 rc0 qc0 rss hwm anon post dig rd
	local walls=() cpus=() rcpus=() qcpus=() iwalls=() icpus=() ird io=4096 n=256 src=
	if [ -n "$CHANGE_PCT" ]; then
		io=65536 n=$(awk -v g="$gib" -v p="$CHANGE_PCT" 'BEGIN { printf "%d", g * 16384 * p / 100 }')
		src=$T/change.src
		head -c $io /dev/urandom > "$src"
	fi
	rm -rf "$T/state" "$T/replica"
	: > "$T/daemon.log"
	if [ "$mode" = bitmap ]; then
		vm_qemu_bare scale "$T/disk.img" raw "$QMP"
		qp=$(cat "$T/vm-scale.pid")
		SOURCES="root:QEMU"
		bsc_config 1h 24h
		vm_config_qemu "$QMP"
	else
		SOURCES="root:$T/disk.img"
		bsc_config 1h 24h
	fi
	s=$(secs)
	bsc_start
	bsc_sync 3600s >/dev/null || fail "initial sync of $gib GiB ($mode)"
	initial=$(echo "$(secs) - $s" | bc -l)
	rp=$(recv_pid)
	for e in $(seq "$epochs"); do
		if [ "$mode" = bitmap ]; then
			vm_write "$QMP.test" $((gib * 1024 * 1024 * 1024)) $io $n 0 "$e" $src >/dev/null
		else
			"$RANDWRITE" "$T/disk.img" $n "$e" plain $io
		fi
		c0=$(cpu_of "$DAEMON_PID"); rc0=$(cpu_of "$rp"); qc0=0
		[ "$qp" = 0 ] || qc0=$(cpu_of "$qp")
		s=$(secs)
		bsc_sync 3600s >/dev/null || fail "epoch $e of $gib GiB ($mode)"
		walls+=("$(echo "$(secs) - $s" | bc -l)")
		cpus+=("$(echo "$(cpu_of "$DAEMON_PID") - $c0" | bc -l)")
		rcpus+=("$(echo "$(cpu_of "$rp") - $rc0" | bc -l)")
		if [ "$qp" = 0 ]; then qcpus+=(0); else qcpus+=("$(echo "$(cpu_of "$qp") - $qc0" | bc -l)"); fi
	done
	# idle epochs: the image untouched since the last write
	wait_for 30 "the last write 3 s old" \
		sh -c "[ \$((\$(date +%s) - \$(stat -c %Z '$T/disk.img'))) -ge 3 ]"
	bsc_sync 3600s >/dev/null || fail "settling sync of $gib GiB ($mode)"
	iwalls=(); icpus=()
	for e in $(seq "$IDLE_EPOCHS"); do
		c0=$(cpu_of "$DAEMON_PID"); s=$(secs)
		bsc_sync 3600s >/dev/null || fail "idle epoch $e of $gib GiB ($mode)"
		iwalls+=("$(echo "$(secs) - $s" | bc -l)")
		icpus+=("$(echo "$(cpu_of "$DAEMON_PID") - $c0" | bc -l)")
	done
	ird=$(cuts "$IDLE_EPOCHS" | read_mib | median)
	# the EPOCHS changing cuts (before the settling and idle ones): bytes
	# read, cut time minus scan time, the digest's
	rd=$(cuts "$epochs" $((IDLE_EPOCHS + 1)) | read_mib | median)
	post=$(cuts "$epochs" $((IDLE_EPOCHS + 1)) |
		sed -n 's/.*scanned [0-9.]* MiB in \([0-9.]*\) ms.*(cut \([0-9.]*\) ms).*/\2 \1/p' |
		awk '{print $1 - $2}' | median)
	dig=$(cuts "$epochs" $((IDLE_EPOCHS + 1)) | sed -n 's/.*digest \([0-9.]*\) ms.*/\1/p')
	[ -z "$dig" ] || dig=$(echo "$dig" | median) # a build that does not log it: "-"
	rss=$(kib_of "$DAEMON_PID" VmRSS); hwm=$(kib_of "$DAEMON_PID" VmHWM); anon=$(kib_of "$DAEMON_PID" RssAnon)
	printf "   %-6s %5d GiB %5d MiB %7.1fs %9.2fs %7.1f MiB %6.2fs %7.2fs %7.2fs %7.1fms %7sms %5d MiB %5d MiB %5d MiB  %s\n" \
		"$mode" "$gib" "$w" "$initial" "$(printf '%s\n' "${walls[@]}" | median)" "$rd" \
		"$(printf '%s\n' "${cpus[@]}" | median)" "$(printf '%s\n' "${rcpus[@]}" | median)" \
		"$(printf '%s\n' "${qcpus[@]}" | median)" "$post" "${dig:--}" $((rss / 1024)) $((hwm / 1024)) $((anon / 1024)) \
		"$(du -sh "$T/state" | cut -f1) ($(du -sh --apparent-size "$T/state" | cut -f1))"
	printf "   %-6s %25s idle epoch (no write, median of %d): sync->ack %.2fs, read %.1f MiB, cpu %.2fs\n" \
		"" "" "$IDLE_EPOCHS" "$(printf '%s\n' "${iwalls[@]}" | median)" "$ird" \
		"$(printf '%s\n' "${icpus[@]}" | median)"
	printf "   %-6s %25s daemon's block map on disk: %s (apparent %s); MiB of it cold: %s\n" "" "" \
		"$(du -sh "$T/state/groups/vm1/root.map" | cut -f1)" \
		"$(du -sh --apparent-size "$T/state/groups/vm1/root.map" | cut -f1)" \
		"$(sed -n 's/.* \([0-9]*\) MiB of the map gone cold.*/\1/p' "$T/daemon.log" | awk '{ n += $1 } END { print n + 0 }')"
	rrss=$(kib_of "$rp" VmRSS); rhwm=$(kib_of "$rp" VmHWM); ranon=$(kib_of "$rp" RssAnon)
	printf "   %-6s %25s receiver: VmRSS %d MiB (RssAnon %d MiB), VmHWM %d MiB; replica map on disk: %s (apparent %s)\n" \
		"" "" $((rrss / 1024)) $((ranon / 1024)) $((rhwm / 1024)) \
		"$(du -sh "$T/replica/.bascule/groups/vm1/root.map" | cut -f1)" \
		"$(du -sh --apparent-size "$T/replica/.bascule/groups/vm1/root.map" | cut -f1)"
	bsc_stop
	qemu_down
	rp=$(recv_pid)
	[ -z "$rp" ] || kill -9 "$rp" 2>/dev/null || true
}

header() {
	printf "   %-6s %9s %9s %8s %10s %11s %7s %8s %8s %9s %9s %9s %9s %9s  %s\n" "mode" "disk" "written" "initial" \
		"sync->ack" "read" "cpu" "recv cpu" "qemu cpu" "post-scan" "digest" "VmRSS" "VmHWM" "RssAnon" \
		"state on disk (apparent)"
}

change="256 scattered 4 KiB writes (1 MiB)"
[ -z "$CHANGE_PCT" ] || change="$CHANGE_PCT% of the disk in random 64 KiB writes"
echo "== scale: per epoch, $change, $EPOCHS epochs, medians (load $(cut -d' ' -f1-3 /proc/loadavg))"
[ -n "${MODES// /}" ] || echo "   (no qemu-system-x86_64: scan mode only)"
header
bsc_keygen
for gib in $SIZES; do
	w=$WRITTEN_MIB
	[ $((w * 2)) -le $((gib * 1024)) ] || w=$((gib * 1024 / 2))
	[ -z "${FULL:-}" ] || w=$((gib * 1024))
	bench_sparse_image "$T/disk.img" "$gib" "$w"
	for mode in $MODES; do run "$mode" "$gib" "$w" "$EPOCHS"; done
done
MEM_GIB=${MEM_GIB:-1024}
if [ "$MEM_GIB" != 0 ]; then
	echo "== scale: memory for $MEM_GIB GiB of sparse source (${MEM_WRITTEN_MIB:-256} MiB written), 3 epochs as above (load $(cut -d' ' -f1-3 /proc/loadavg))"
	header
	bench_sparse_image "$T/disk.img" "$MEM_GIB" "${MEM_WRITTEN_MIB:-256}"
	for mode in ${MEM_MODES:-bitmap}; do
		[[ " $MODES " == *" $mode "* ]] && run "$mode" "$MEM_GIB" "${MEM_WRITTEN_MIB:-256}" 3
	done
fi
rm -f "$T/disk.img"
