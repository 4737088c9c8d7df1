# tamper: a relay between daemon and receiver flips one bit of the stream.
# The epoch is refused, nothing of it is applied, the error is visible, and
# replication resumes once the link is clean.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 64M "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h "remote_command: $BIN/tests/relay --trigger $T/tamper --at 3000 -- $BIN/bascule recv"
bsc_start
"$BIN/tests/randwrite" "$T/disk.img" 500 1
bsc_sync || fail "initial sync through the relay"
cp "$T/disk.img" "$T/before.img"
before_epoch=$("$BIN/bascule" replica list --root "$T/replica" | sed -n 's/.*vm1: epoch \([0-9]*\).*/\1/p')

touch "$T/tamper"
"$BIN/tests/randwrite" "$T/disk.img" 2000 2
bsc sync >/dev/null
# the receiver says it first, then the daemon reaps it: wait for the second
for _ in $(seq 300); do grep -q "exited with status" "$T/daemon.log" && break; sleep 0.1; done
grep -q "authentication failed on a frame" "$T/daemon.log" || fail "the flipped bit was not reported"
grep -q "exited with status 5 (integrity error" "$T/daemon.log" || fail "the daemon does not say the receiver refused the stream"
bsc status | grep -q "error: .*integrity" || fail "bascule status does not show the error"
cmp -s "$(replica_of root)" "$T/before.img" || fail "something of the tampered epoch was applied"
now_epoch=$("$BIN/bascule" replica list --root "$T/replica" | sed -n 's/.*vm1: epoch \([0-9]*\).*/\1/p')
[ "$now_epoch" = "$before_epoch" ] || fail "replica moved from epoch $before_epoch to $now_epoch"
note "tampered stream refused; replica still at epoch $before_epoch"

rm -f "$T/tamper"
bsc_sync 30s || fail "replication did not resume once the link was clean"
cmp -s "$(replica_of root)" "$T/disk.img" || fail "replica differs after resuming"
