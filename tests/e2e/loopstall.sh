# loopstall: the daemon's event loop is never held for more than 100 ms by
# one event, under what used to hold it: a reload while a long cut runs
# (the loop joined the cut), disconnects of a receiver that ignores SIGTERM
# (the loop waited up to 2 s for it), and a target that stops reading.
# The figures are the loop's own (`bascule status --json`, "loop": each
# dispatch timed; preemption by the rest of the machine does not count,
# sleeping does).  A test hook that holds the loop for 300 ms shows the
# figures see a stall.
. "$(dirname "$0")/../lib/common.sh"
need_root
bsc_keygen
# 160 MiB of data at io_rate 48MB/s: a cut takes over 3 s.
dd if=/dev/zero of="$T/disk.img" bs=1M count=160 status=none
"$BIN/tests/randwrite" "$T/disk.img" 2000 1
SOURCES="root:$T/disk.img"
cat > "$T/stubborn-recv" <<SH
#!/bin/sh
# A receiver whose shell ignores SIGTERM and outlives it (its pipes closed):
# only SIGKILL ends it.
trap '' TERM
"$BIN/bascule" recv "\$@"
exec sleep 60 </dev/null >/dev/null 2>&1
SH
chmod +x "$T/stubborn-recv"
config() { # SLOW_BANDWIDTH
	bsc_config 1h 24h
	cat >> "$T/bascule.yaml" <<YAML
  - name: stubborn
    url: local:$T/stubborn
    remote_command: $T/stubborn-recv
  - name: slow
    url: local:$T/slow
    bandwidth: $1
io_rate: 48MB/s
YAML
}
config 8MB/s
stat_of() { status_get "d['loop']['$1']"; }
state_of() { status_get "[t for t in d['targets'] if t['name']=='$1'][0]['state']"; }
wait_connected() { # TARGET
	for _ in $(seq 200); do [ "$(state_of "$1")" = connected ] && return 0; sleep 0.1; done
	fail "target $1 did not reconnect: $(state_of "$1")"
}
bsc_start
bsc_sync 120s >/dev/null || fail "initial sync"
note "start: $(stat_of dispatches) dispatches, longest $(stat_of max_stall_seconds) s"

# 1. A reload while a cut runs: it waits for the cut, the loop does not.
"$BIN/tests/randwrite" "$T/disk.img" 500 2
want=$(bsc sync | sed -n 's/vm1: epoch \([0-9]*\).*/\1/p')
[ "$(status_get "d['groups'][0]['cutting']")" = True ] || fail "no cut running for the reload to meet"
config 16MB/s # the slow target changes: it is disconnected and started again
bsc reload > "$T/reload.out" 2>&1 &
RL=$!
for _ in $(seq 5); do
	s=$(date +%s%N); bsc status --json >/dev/null; ms=$(( ($(date +%s%N) - s) / 1000000 ))
	[ $ms -lt 1000 ] || fail "status took $ms ms while a reload waited for a cut"
	sleep 0.2
done
wait $RL || fail "bascule reload: $(cat "$T/reload.out")"
grep -q "it applies when the running cut ends" "$T/daemon.log" || fail "the reload did not wait for the cut"
cut_line=$(grep -n "epoch $want of vm1 cut" "$T/daemon.log" | head -1 | cut -d: -f1)
rl_line=$(grep -n "configuration reloaded" "$T/daemon.log" | tail -1 | cut -d: -f1)
[ -n "$cut_line" ] && [ -n "$rl_line" ] && [ "$cut_line" -lt "$rl_line" ] \
	|| fail "the reload was not applied after the cut ended (cut at line $cut_line, reload at $rl_line)"
bsc_sync 120s >/dev/null || fail "sync after the reload"
note "reload during a cut: applied when it ended; status answered meanwhile"

# 2. Disconnects of a receiver that only SIGKILL ends.
for i in 1 2 3; do
	wait_connected stubborn
	pkill -KILL -f "bascule recv --root $T/stubborn " || fail "no receiver of the stubborn target"
	for _ in $(seq 100); do [ "$(state_of stubborn)" != connected ] && break; sleep 0.05; done
done
wait_connected stubborn
grep -q "did not end: SIGKILL" "$T/daemon.log" || fail "the stubborn receiver never needed SIGKILL: $(grep stubborn "$T/daemon.log" | tail -3)"
[ -z "$(ps -o stat= --ppid "$DAEMON_PID" | grep Z)" ] || fail "zombies left: $(ps -o stat,pid,cmd --ppid "$DAEMON_PID")"
note "3 disconnects of a receiver that ignores SIGTERM: killed after the grace, reaped"

# 3. A target that stops reading: its pipe fills, the others go on.
wait_connected slow
spid=$(pgrep -f "bascule recv --root $T/slow " | head -1)
[ -n "$spid" ] || fail "no receiver of the slow target"
kill -STOP "$spid"
"$BIN/tests/randwrite" "$T/disk.img" 6000 3
want=$(bsc sync | sed -n 's/vm1: epoch \([0-9]*\).*/\1/p')
for _ in $(seq 300); do
	[ "$(status_get "[t for t in d['targets'] if t['name']=='secondary'][0]['groups']['vm1']['acked']")" -ge "$want" ] && break
	sleep 0.1
done
kill -CONT "$spid"
bsc_sync 120s >/dev/null || fail "sync once the slow target reads again"
cmp "$T/disk.img" "$T/slow/vm1/root" || fail "the slow target's replica differs"
note "a stopped receiver held back nothing"

max=$(stat_of max_stall_seconds); over=$(stat_of stalls_over_100ms); wall=$(stat_of max_wall_seconds)
note "$(stat_of dispatches) dispatches: longest $max s of its own ($wall s of wall time), $over over 100 ms"
[ "$over" = 0 ] || fail "the loop was held over 100 ms $over times (longest $max s): $(grep "event loop was held" "$T/daemon.log" | head -3)"
python3 -c "import sys; sys.exit(0 if float('$max') < 0.1 else 1)" || fail "longest dispatch $max s"
bsc_stop

# 4. The figures see a stall: a test hook holds the loop for 300 ms.
NSEXEC=(env BASCULE_TEST_STALL_MS=300)
bsc_start
for _ in $(seq 100); do grep -q "holding the event loop" "$T/daemon.log" && break; sleep 0.1; done
sleep 0.5
[ "$(stat_of stalls_over_100ms)" -ge 1 ] || fail "a 300 ms stall was not counted"
python3 -c "import sys; sys.exit(0 if float('$(stat_of max_stall_seconds)') >= 0.29 else 1)" \
	|| fail "a 300 ms stall measured $(stat_of max_stall_seconds) s"
grep -q "the event loop was held for 3[0-9][0-9] ms by one event" "$T/daemon.log" || fail "the stall was not logged"
note "a 300 ms stall of the test hook: counted ($(stat_of max_stall_seconds) s) and logged"
