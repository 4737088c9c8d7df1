# systemd: basculed speaks sd_notify as a Type=notify service with a watchdog:
# READY=1 once its state is loaded, STATUS= lines, WATCHDOG=1 from the event
# loop; when the loop hangs (test hook) the pings stop, so systemd would
# restart it.  Checked against a notify-socket listener (systemd is not PID 1
# here).  The installed unit is verified by tests/e2e/install.sh.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 16M "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1s 5s
"$BIN/tests/notifylisten" "$T/notify.sock" 6 > "$T/notify.log" &
L=$!
sleep 0.2
NOTIFY_SOCKET=$T/notify.sock WATCHDOG_USEC=1000000 BASCULE_TEST_HANG_AFTER=3 \
	"$BIN/basculed" -c "$T/bascule.yaml" >> "$T/daemon.log" 2>&1 &
DAEMON_PID=$!
wait $L
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""
grep -q " READY=1" "$T/notify.log" || fail "no READY=1: $(head "$T/notify.log")"
grep -q " STATUS=1 groups; 1 of 1 targets connected" "$T/notify.log" || fail "no STATUS= line: $(grep STATUS "$T/notify.log" | head -2)"
before=$(awk '$2 == "WATCHDOG=1" && $1 < 3000' "$T/notify.log" | wc -l)
after=$(awk '$2 == "WATCHDOG=1" && $1 > 3600' "$T/notify.log" | wc -l)
[ "$before" -ge 4 ] || fail "only $before WATCHDOG=1 pings in 3 s with WatchdogSec=1s"
[ "$after" -eq 0 ] || fail "$after WATCHDOG=1 pings after the loop hung"
note "READY=1, STATUS=, $before watchdog pings in 3 s, none once the loop hung"

