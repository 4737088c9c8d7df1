# manygroups: one daemon serving 12 groups of sparse disks with real data
# (issue 15 item 4).  Twice a storm of cuts of every group at once: the
# first cuts of the initial sync, and the rescan of every disk after a
# restart.  Throughout: no more than max_concurrent_cuts groups scan at
# once (the groups' own "cutting" flags, polled), the others are seen
# waiting; `bascule status` answers within 2 s every time it is asked; the
# daemon's reads (/proc/PID/io rchar over the restart's rescan, where
# nothing else is read: no change, nothing spooled) stay under io_rate.
# A reload during the first storm, while cuts wait, lowers the bound to 2.
# Then a change in every disk and sync --wait: every replica equals its
# source.  A cut hung (a FIFO) past cut_timeout: abandoned, its slot freed;
# a SIGTERM while one hangs exits 0 at once, and the next start syncs it.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
# 12 MiB of data in each 512 MiB sparse disk: 12 runs of 1 MiB spread over
# it (few extents: a loaded machine's journal frees thousands of 4 KiB
# extents slowly).
NG=12 MAXC=3 RATE_MB=24 DATA_MIB=12
for i in $(seq -w 1 $NG); do
	truncate -s 512M "$T/d$i.img"
	for k in $(seq 0 $((DATA_MIB - 1))); do
		head -c 1M /dev/urandom | dd of="$T/d$i.img" bs=1M seek=$((k * 40 + 10#$i)) conv=notrunc status=none
	done
done
{
	echo "state_dir: $T/state"
	echo "key: $T/site.key"
	echo "control_socket: $T/ctl.sock"
	echo "io_rate: ${RATE_MB}MB/s"
	echo "max_concurrent_cuts: $MAXC"
	echo "scan_threads: 2"
	echo "groups:"
	for i in $(seq -w 1 $NG); do
		printf '  - name: g%s\n    interval: 1s\n    sources:\n      - name: root\n        disk: %s\n' \
			"$i" "$T/d$i.img"
	done
	echo "targets:"
	echo "  - name: secondary"
	echo "    url: local:$T/replica"
} > "$T/bascule.yaml"

# poll_storm SECONDS: poll the status every 0.2 s until every group has
# scanned since the start and none scans or waits any more.  Fails on a
# status slower than 2 s or more than MAXC groups scanning at once; sets
# PEAK (most groups seen scanning), WAITED (most seen waiting), POLLS,
# SLOWEST (ms), and IO_T1/IO_R1 (ns, rchar of the daemon) at the last poll
# that saw a scan.
poll_storm() {
	local end=$(($(date +%s) + $1)) s ms st cutting waiting scanned
	PEAK=0 WAITED=0 POLLS=0 SLOWEST=0 IO_T1="" IO_R1="" SAW_TEXT=""
	while :; do
		[ "$(date +%s)" -lt "$end" ] || fail "the storm did not end within $1 s: $(bsc status 2>&1 | head -20)"
		s=$(date +%s%N)
		st=$(timeout 20 "$BIN/bascule" --socket "$T/ctl.sock" status --json) ||
			fail "bascule status failed during the storm (poll $POLLS)"
		ms=$((($(date +%s%N) - s) / 1000000))
		local io_t io_r
		io_t=$(date +%s%N)
		io_r=$(awk '/^rchar:/ {print $2}' "/proc/$DAEMON_PID/io")
		POLLS=$((POLLS + 1))
		[ $ms -le 2000 ] || fail "bascule status took $ms ms during the storm (poll $POLLS)"
		[ $ms -le "$SLOWEST" ] || SLOWEST=$ms
		read -r cutting waiting scanned < <(echo "$st" | jq -r \
			'[([.groups[] | select(.cutting)] | length), ([.groups[] | select(.waiting)] | length),
			  ([.groups[] | select(.scans >= 1)] | length)] | @tsv')
		[ "$cutting" -le $MAXC ] || fail "$cutting groups scanned at once (max_concurrent_cuts $MAXC)"
		[ "$cutting" -le "$PEAK" ] || PEAK=$cutting
		[ "$waiting" -le "$WAITED" ] || WAITED=$waiting
		# What people read says it too.
		if [ -z "$SAW_TEXT" ] && [ "$waiting" -gt 0 ] && bsc status | grep -q "waiting for a scan slot"; then
			SAW_TEXT=1
		fi
		if [ -n "${RELOAD_WHEN_WAITING:-}" ] && [ "$waiting" -gt 0 ]; then
			RELOAD_WHEN_WAITING=""
			bsc reload > "$T/reload.out" 2>&1 &
			RELOAD_PID=$!
		fi
		if [ "$cutting" -gt 0 ] || [ "$waiting" -gt 0 ] || [ "$scanned" -lt $NG ]; then
			IO_T1=$io_t IO_R1=$io_r
		else
			break
		fi
		sleep 0.2
	done
}

T_START=$(date +%s)
bsc_start
# A reload while cuts wait: applied once the running ones end (no new one
# starts meanwhile), then the waiting ones go on under the new bound.
sed -i "s/^max_concurrent_cuts: .*/max_concurrent_cuts: 2/" "$T/bascule.yaml"
RELOAD_WHEN_WAITING=1 RELOAD_PID=""
poll_storm 240
[ -n "$RELOAD_PID" ] || fail "no poll saw a waiting cut to reload under"
wait "$RELOAD_PID" || fail "bascule reload while cuts waited: $(cat "$T/reload.out")"
[ "$(status_get "d['cuts']['max_concurrent']")" = 2 ] || fail "the reload did not set max_concurrent_cuts 2"
grep -q "configuration reloaded: $NG groups ($NG kept" "$T/daemon.log" || fail "no reload in the log"
note "initial sync ($(($(date +%s) - T_START)) s): $POLLS polls, at most $PEAK groups scanning and $WAITED waiting, slowest status ${SLOWEST} ms"
[ "$PEAK" -ge 1 ] && [ "$WAITED" -ge 1 ] || fail "no queue seen in the first cuts (peak $PEAK, waiting $WAITED)"
[ -n "$SAW_TEXT" ] || fail "bascule status never said a group was waiting for a scan slot"
bsc_sync 240s > /dev/null || fail "initial sync"
note "initial sync acknowledged after $(($(date +%s) - T_START)) s"
for i in $(seq -w 1 $NG); do
	same_sparse "$T/d$i.img" "$T/replica/g$i/root" || fail "replica of g$i differs after the initial sync"
done
peak=$(status_get "d['cuts']['peak_running']")
[ "$peak" -le $MAXC ] && [ "$peak" -ge 1 ] || fail "the daemon counts $peak cuts at once (max $MAXC)"
bsc metrics > "$T/metrics"
for m in bascule_cuts_running bascule_cuts_waiting "bascule_cuts_max_concurrent 2" \
	bascule_cuts_waited_total 'bascule_group_cut_waiting{group="g01"}'; do
	grep -q "^$m" "$T/metrics" || fail "metric $m missing: $(grep cuts "$T/metrics")"
done

# The restart's storm: every group rescans all of its data at once, and
# finds nothing new (the replica holds it): the daemon reads only its
# sources, capped by io_rate.
bsc_stop
sed -i "s/^max_concurrent_cuts: .*/max_concurrent_cuts: $MAXC/" "$T/bascule.yaml"
T_START=$(date +%s)
IO_T0=$(date +%s%N) # a new process: its rchar starts at 0
bsc_start
poll_storm 240
data=$((NG * DATA_MIB << 20))
read_bytes=$IO_R1
secs=$(echo "($IO_T1 - $IO_T0) / 1000000000" | bc -l)
rate=$(echo "$read_bytes / $secs / 1000000" | bc -l)
note "restart ($(($(date +%s) - T_START)) s): $POLLS polls, at most $PEAK scanning and $WAITED waiting, slowest status ${SLOWEST} ms;" \
	"read $((read_bytes >> 20)) MiB in $(printf %.1f "$secs") s: $(printf %.1f "$rate") MB/s for io_rate ${RATE_MB}MB/s" \
	"(load $(cut -d' ' -f1-3 /proc/loadavg))"
[ "$WAITED" -ge 1 ] || fail "no group waited for a slot at the restart"
# The window, from the start to the last poll that saw a scan, holds every
# read of the rescan but those after that poll: at least 3/4 of the data
# must fall in it, or the rate says nothing.
[ "$read_bytes" -ge $((data * 3 / 4)) ] || fail "only $read_bytes bytes read in the window, of $data"
# A burst of 100 ms is allowed, and the poll's granularity: 15% above.
[ "$(echo "$rate <= $RATE_MB * 1.15" | bc)" = 1 ] || fail "read at $rate MB/s, over io_rate ${RATE_MB}MB/s"

# A change in every disk; every replica equal after sync --wait.
T_START=$(date +%s)
for i in $(seq -w 1 $NG); do "$BIN/tests/randwrite" "$T/d$i.img" 64 "$((10#$i + 100))"; done
bsc_sync 240s > /dev/null || fail "sync after the change"
for i in $(seq -w 1 $NG); do
	same_sparse "$T/d$i.img" "$T/replica/g$i/root" || fail "replica of g$i differs after the change"
done
note "$NG groups changed and synced in $(($(date +%s) - T_START)) s: every replica equals its source"

# A hung read (a FIFO without a writer where g01's disk was: the cut's open
# blocks) with one slot: after cut_timeout the cut is abandoned (logged,
# shown), its slot goes to g02; once the read returns g01 cuts again.
sed -i "s/^max_concurrent_cuts: .*/max_concurrent_cuts: 1\ncut_timeout: 2s/" "$T/bascule.yaml"
bsc reload > /dev/null || fail "reload to cut_timeout: 2s"
mv "$T/d01.img" "$T/d01.keep"
mkfifo "$T/d01.img"
unhang() { [ -p "$T/d01.img" ] && timeout 5 sh -c ': <> "$1"' sh "$T/d01.img"; true; }
EXIT_HOOKS+=(unhang)
bsc sync g01 > /dev/null || fail "sync g01 (no wait)"
g01() { status_get "[g for g in d['groups'] if g['name'] == 'g01'][0]['$1']"; }
wait_for 30 "g01's hung cut to be abandoned" '[ "$(g01 cut_timed_out)" = True ]'
grep -q "of group g01: cut has run [0-9]* s, over cut_timeout (2 s): abandoned" "$T/daemon.log" ||
	fail "no log line for the abandoned cut"
bsc status | grep -q "^group g01: .*scanning (HUNG: over cut_timeout" || fail "bascule status does not show g01's hung cut: $(bsc status | grep g01)"
[ "$(status_get "d['cuts']['timed_out']")" = 1 ] && [ "$(status_get "d['cuts']['running']")" = 0 ] ||
	fail "cuts after the timeout: $(status_get "d['cuts']")"
"$BIN/tests/randwrite" "$T/d02.img" 16 202
bsc sync g02 --wait --timeout 60s > /dev/null || fail "g02 could not cut while g01's cut hung (its slot not freed)"
same_sparse "$T/d02.img" "$T/replica/g02/root" || fail "replica of g02 differs"
# A reload would wait for the hung cut and stop every group's cuts: refused.
set +e; timeout 30 "$BIN/bascule" --socket "$T/ctl.sock" reload > "$T/reload.out" 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "group g01 has a cut that ran past cut_timeout" "$T/reload.out" ||
	fail "a reload while g01's cut hangs: exit $rc, $(cat "$T/reload.out")"
exec 3<> "$T/d01.img" # the hung open returns
wait_for 30 "the abandoned cut to end" 'grep -q "of group g01 not cut: .*cut_timeout" "$T/daemon.log"'
exec 3>&-
rm "$T/d01.img"
mv "$T/d01.keep" "$T/d01.img"
[ "$(g01 cut_timed_out)" = False ] || fail "g01 still shown timed out after its cut ended"
bsc sync g01 --wait --timeout 60s > /dev/null || fail "g01 did not cut again after its hung read returned"
same_sparse "$T/d01.img" "$T/replica/g01/root" || fail "replica of g01 differs after the hung cut"
note "a hung open abandoned after cut_timeout 2s: g02 synced meanwhile with the only slot, g01 synced once the read returned"

# SIGTERM while g01's cut hangs again (its disk changed meanwhile, where no
# cut of this run can read it): the daemon does not wait for the hung
# thread (it would forever), it exits 0 within seconds, its socket gone,
# the cut not committed; the next start cuts g01 again and its replica
# holds the change.
s0=$SECONDS
mv "$T/d01.img" "$T/d01.keep"
mkfifo "$T/d01.img"
"$BIN/tests/randwrite" "$T/d01.keep" 16 301
bsc sync g01 > /dev/null || fail "sync g01 (no wait) before the stop"
wait_for 30 "g01's cut to hang again" '[ "$(g01 cut_timed_out)" = True ]'
last=$(g01 last_cut)
t0=$(date +%s%N)
kill "$DAEMON_PID"
wait_for 30 "basculed to exit on SIGTERM while a cut hangs" "gone $DAEMON_PID"
took=$((($(date +%s%N) - t0) / 1000000))
set +e; wait "$DAEMON_PID"; rc=$?; set -e
DAEMON_PID=""
[ $rc = 0 ] || fail "basculed stopped with a hung cut: exit $rc"
[ ! -e "$T/ctl.sock" ] || fail "the control socket is left after the stop"
grep -q "stopping: epoch $((last + 1)) of group g01 ran past cut_timeout .*not waited for" "$T/daemon.log" &&
	grep -q "stopping: the cut of group g01 still runs .*left to the end of the process" "$T/daemon.log" ||
	fail "the stop does not say it leaves g01's hung cut: $(grep stopping "$T/daemon.log" | tail -3)"
! grep -q "epoch $((last + 1)) of g01 cut" "$T/daemon.log" || fail "g01's hung cut was committed"
rm "$T/d01.img"
mv "$T/d01.keep" "$T/d01.img"
# (the start rescans every group: uncapped, three at a time, it is short)
sed -i "/^io_rate: /d; s/^max_concurrent_cuts: .*/max_concurrent_cuts: $MAXC/" "$T/bascule.yaml"
bsc_start
bsc sync g01 --wait --timeout 60s > /dev/null || fail "g01 did not cut after the restart"
same_sparse "$T/d01.img" "$T/replica/g01/root" || fail "replica of g01 lacks the change the hung cut never committed"
note "SIGTERM with g01's cut hung: exit 0 in $took ms (load $(cut -d' ' -f1 /proc/loadavg)); g01 synced after the restart ($((SECONDS - s0)) s)"
bsc_stop
