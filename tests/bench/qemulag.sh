#!/bin/bash
# make bench: the lag of a production-size QEMU disk under write load, bitmap
# mode (qemu: source) against scan mode (disk: the same qcow2 file).
#   tests/bench/qemulag.sh BUILD_DIR
# A LAG_GIB (64) GiB virtual qcow2 image with LAG_WRITTEN_MIB (3072) MiB of
# random data in 64 extents, held by a QEMU with no guest running
# (tests/lib/vm.sh vm_qemu_bare); the guest's writes are LAG_RATE (10 MB/s)
# of random LAG_IO (64 KiB) writes anywhere on the disk, made by qemu-io
# through the guest's device on the monitor (HMP), as long as LAG_SECONDS
# (60); `interval: 1s`; the first target's lag sampled every 0.5 s once an
# epoch cut under the load is acknowledged: median and 99th percentile, and
# the cuts' reads from the source; CPU seconds of the daemon and of QEMU
# (which also runs the writer's qemu-io) over the samples' time.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
. "$(dirname "$0")/../lib/vm.sh"
GIB=${LAG_GIB:-64}
WRITTEN=${LAG_WRITTEN_MIB:-3072}
RATE=${LAG_RATE:-10000000}
IO=${LAG_IO:-65536}
SECS=${LAG_SECONDS:-60}
QMP=$T/qmp.sock
command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null ||
	{ echo "qemulag: qemu-system-x86 and qemu-utils are needed" >&2; exit 77; }
qemu_down() { [ -f "$T/vm-lag.pid" ] && kill "$(cat "$T/vm-lag.pid")" 2>/dev/null; rm -f "$T/vm-lag.pid"; true; }
WRITER=
writer_down() { [ -z "$WRITER" ] || kill "$WRITER" 2>/dev/null; true; }
EXIT_HOOKS+=(writer_down qemu_down)

echo "== lag of a $GIB GiB qcow2 guest disk ($WRITTEN MiB written) under $((RATE / 1000000)) MB/s of random" \
	"$((IO / 1024)) KiB writes (qemu-io via HMP), interval 1s, ${SECS}s (load $(cut -d' ' -f1-3 /proc/loadavg))"
bench_sparse_image "$T/raw.img" "$GIB" "$WRITTEN"
qemu-img convert -f raw -O qcow2 "$T/raw.img" "$T/disk.qcow2"
rm -f "$T/raw.img"
vm_qemu_bare lag "$T/disk.qcow2" qcow2 "$QMP"
bsc_keygen
for mode in bitmap scan; do
	rm -rf "$T/state" "$T/replica"
	: > "$T/daemon.log"; : > "$T/lags"
	if [ "$mode" = bitmap ]; then
		SOURCES="root:QEMU"; bsc_config 1s 60s; vm_config_qemu "$QMP"
	else
		SOURCES="root:$T/disk.qcow2"; bsc_config 1s 60s
	fi
	s=$(secs)
	bsc_start
	bsc_sync 3600s >/dev/null || fail "initial sync ($mode)"
	initial=$(echo "$(secs) - $s" | bc -l)
	n0=$(grep -c " cut (" "$T/daemon.log" || true)
	vm_write_start "$T/writer.out" "$QMP.test" $((GIB * 1024 * 1024 * 1024)) "$IO" 0 "$RATE" "$RANDOM"
	WRITER=$VM_WRITER
	# the initial copy's epoch was cut a minute ago: sample from one cut
	# under the load on
	bsc_sync 600s >/dev/null || fail "sync under load ($mode)"
	c0=$(cpu_of "$DAEMON_PID"); q0=$(cpu_of "$(cat "$T/vm-lag.pid")")
	bench_lag "$SECS" "$T/lags"
	cpu=$(echo "$(cpu_of "$DAEMON_PID") - $c0" | bc -l); qcpu=$(echo "$(cpu_of "$(cat "$T/vm-lag.pid")") - $q0" | bc -l)
	kill "$WRITER"; wait "$WRITER" || true; WRITER=
	cuts=$(grep " cut (" "$T/daemon.log" | tail -n +$((n0 + 1)))
	printf "   %-6s initial sync %6.1f s; lag median %5.1f s, p99 %5.1f s (%d samples); CPU daemon %.1f s, QEMU %.1f s; %d cuts, each read median %.1f MiB, cut median %.0f ms; writer: %s\n" \
		"$mode" "$initial" "$(pct 50 < "$T/lags")" "$(pct 99 < "$T/lags")" "$(wc -l < "$T/lags")" "$cpu" "$qcpu" \
		"$(echo "$cuts" | grep -c . || true)" \
		"$(echo "$cuts" | sed -n 's/.*scanned \([0-9.]*\) MiB in.*/\1/p' | median)" \
		"$(echo "$cuts" | sed -n 's/.*(cut \([0-9.]*\) ms).*/\1/p' | median)" "$(cat "$T/writer.out")"
	bsc_stop
	rp=$(recv_pid)
	[ -z "$rp" ] || kill -9 "$rp" 2>/dev/null || true
done
