# ctlflood: the control socket under a flood.  A permitted client opens
# 1,026 connections to a daemon limited to 1,024 descriptors (systemd's
# default) and holds them, opening again whatever the daemon closes; the
# daemon keeps replicating, answers `bascule status` within a second, and
# does not spin (it used to: accept4 failed with EMFILE, the level-triggered
# listener fired again at once, 100% of a core).  Then with every
# descriptor taken (the limit lowered to what is open): still no spin, and
# it serves again once descriptors come back.
. "$(dirname "$0")/../lib/common.sh"
need_root
command -v prlimit >/dev/null || { echo "SKIP: no prlimit (util-linux)"; exit 77; }
bsc_keygen
truncate -s 32M "$T/disk.img"
"$BIN/tests/randwrite" "$T/disk.img" 1000 1
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
NSEXEC=(prlimit --nofile=1024:1024)
bsc_start
bsc_sync 60s >/dev/null || fail "initial sync"

# flood.py SOCKET N SECONDS: N connections held, those the daemon closed
# opened again each second, for SECONDS; prints how many it opened.
cat > "$T/flood.py" <<'PY'
import os, resource, select, socket, sys, time
path, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, n + 256))
socks, opened, end = [], 0, time.time() + secs
while time.time() < end:
    # Hold N: open what is missing, for half a second at most (when the
    # backlog is full, wait a millisecond for the daemon to accept) ...
    fill_end = time.time() + 0.5
    while len(socks) < n and time.time() < fill_end:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except OSError:
            s.close(); time.sleep(0.001); continue
        socks.append(s); opened += 1
    # ... then, half a second later, drop what the daemon closed.
    time.sleep(0.5)
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLIN)
    by_fd = {s.fileno(): s for s in socks}
    for fd, ev in p.poll(0):
        s = by_fd[fd]
        try:
            if s.recv(1) == b"":
                socks.remove(s); s.close()
        except OSError:
            socks.remove(s); s.close()
print(opened)
PY
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in ticks
HZ=$(getconf CLK_TCK)
# check_answers LABEL: status within 1 s, ten times, while the flood runs.
check_answers() {
	local ms worst=0
	for _ in $(seq 10); do
		s=$(date +%s%N)
		rc=0; bsc status --json > "$T/st.json" 2> "$T/st.err" || rc=$?
		[ $rc = 0 ] || fail "$1: no status during the flood (exit $rc): $(cat "$T/st.err")"
		ms=$(( ($(date +%s%N) - s) / 1000000 ))
		[ $ms -lt 1000 ] || fail "$1: status took $ms ms"
		[ $ms -gt $worst ] && worst=$ms
		sleep 0.3
	done
	echo "$worst"
}

# 1. 1,026 held connections.
python3 "$T/flood.py" "$T/ctl.sock" 1026 12 > "$T/flood.out" &
FP=$!
sleep 2
c0=$(cpu_of "$DAEMON_PID"); t0=$(date +%s%N)
worst=$(check_answers "1026 held connections")
"$BIN/tests/randwrite" "$T/disk.img" 300 2
bsc_sync 30s >/dev/null || fail "replication stopped during the flood"
cmp "$T/disk.img" "$(replica_of root)" || fail "the replica differs after a sync during the flood"
cpu=$(( ($(cpu_of "$DAEMON_PID") - c0) * 1000 / HZ )); wall=$(( ($(date +%s%N) - t0) / 1000000 ))
wait $FP
[ "$(cat "$T/flood.out")" -ge 1026 ] || fail "the flood opened only $(cat "$T/flood.out") connections"
note "1026 held connections ($(cat "$T/flood.out") opened in all): status in ${worst} ms at worst, replication went on, daemon CPU ${cpu} ms in ${wall} ms"
[ $((cpu * 100 / wall)) -lt 50 ] || fail "the daemon used ${cpu} ms of CPU in ${wall} ms under the flood"
n=$(ls "/proc/$DAEMON_PID/fd" | wc -l)
[ "$n" -lt 300 ] || fail "the daemon holds $n descriptors after the flood"
grep -q "control: 64 clients at once, the most served: dropping the oldest" "$T/daemon.log" \
	|| fail "no word of the clients dropped"

# 2. No descriptor left at all: the listener must not spin.
python3 "$T/flood.py" "$T/ctl.sock" 200 8 > "$T/flood.out" &
FP=$!
sleep 1
n=$(ls "/proc/$DAEMON_PID/fd" | wc -l)
prlimit --pid "$DAEMON_PID" --nofile="$n:1024"
sleep 1
c0=$(cpu_of "$DAEMON_PID"); t0=$(date +%s%N)
sleep 3
cpu=$(( ($(cpu_of "$DAEMON_PID") - c0) * 1000 / HZ )); wall=$(( ($(date +%s%N) - t0) / 1000000 ))
note "every descriptor taken: daemon CPU ${cpu} ms in ${wall} ms"
[ $((cpu * 100 / wall)) -lt 50 ] || fail "the daemon spins without descriptors: ${cpu} ms of CPU in ${wall} ms"
bsc status --json >/dev/null 2>&1 && note "a status still got through (a held client gave up its place)"
prlimit --pid "$DAEMON_PID" --nofile=1024:1024
wait $FP
worst=$(check_answers "after the descriptors came back")
"$BIN/tests/randwrite" "$T/disk.img" 300 3
bsc_sync 30s >/dev/null || fail "replication after the descriptors came back"
note "descriptors back: status in ${worst} ms, replication goes on"
