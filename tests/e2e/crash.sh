# crash: kill -9 of `bascule recv` at 22 random moments while it receives
# and applies epochs, then of basculed mid-epoch 6 times.  After each kill,
# `bascule replica recover` must leave the replica exactly equal to the image
# of the previous or of the new epoch (the test keeps both), replication must
# converge again, and blocks the replica already has must not be resent.
# run.sh: first
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 128M "$T/disk.img"
mkfs.ext4 -q -F "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h   # epochs only when asked: every epoch is a known image
# Initial copies (a new source is seeded straight into place): kill -9 at
# random moments; the replica is then absent or whole, never a partial seed.
seeds_whole=0 seeds_absent=0 seeding=0
"$BIN/tests/randwrite" "$T/disk.img" 16384 99   # 64 MiB of incompressible data to copy
for i in $(seq 1 6); do
	rm -rf "$T/replica"
	bsc_start
	sleep "0.$(printf '%03d' $((80 + RANDOM % 320)))"
	kill -STOP "$DAEMON_PID"
	pid=$(recv_pid)
	[ -n "$pid" ] && kill -9 "$pid"
	while [ -n "$pid" ] && ! gone "$pid"; do sleep 0.01; done
	find "$T/replica" -name '*.seed' 2>/dev/null | grep -q . && seeding=$((seeding + 1))
	if [ -d "$T/replica/.bascule" ]; then
		"$BIN/bascule" replica recover --root "$T/replica" --key "$T/site.key" >/dev/null 2>&1 \
			|| fail "seed round $i: recover failed"
	fi
	if [ -e "$(replica_of root)" ]; then
		cmp -s "$(replica_of root)" "$T/disk.img" || fail "seed round $i: a partial seed became the replica"
		seeds_whole=$((seeds_whole + 1))
	else
		seeds_absent=$((seeds_absent + 1))
	fi
	find "$T/replica" -name '*.seed' | grep -q . && fail "seed round $i: seed files left after recovery"
	kill -CONT "$DAEMON_PID"
	bsc_stop
done
note "initial copy killed 6 times ($seeding while seeding): $seeds_absent left no replica, $seeds_whole a whole one; never partial"
rm -rf "$T/replica" "$T/state"
bsc_start
bsc_sync || fail "initial sync"
cp "$T/disk.img" "$T/prev.img"
CHANGE=$((3000 * 4096))
old=0 new=0

replays=0
recover_and_check() { # $1: round label; prints old or new
	"$BIN/bascule" replica recover --root "$T/replica" --key "$T/site.key" >/dev/null 2>"$T/recover.err" \
		|| fail "$1: replica recover failed: $(cat "$T/recover.err")"
	if cmp -s "$(replica_of root)" "$T/prev.img"; then
		echo old
	elif cmp -s "$(replica_of root)" "$T/next.img"; then
		echo new
	else
		fail "$1: after recovery the replica is neither the previous nor the new epoch (torn)"
	fi
}

for i in $(seq 1 22); do
	"$BIN/tests/randwrite" "$T/disk.img" 3000 "$i"
	cp "$T/disk.img" "$T/next.img"
	bsc sync >/dev/null
	# An epoch of this size is received ~50-150 ms after the request, committed
	# at ~150 ms and applied by ~200 ms: kill anywhere across that span.
	sleep "0.$(printf '%03d' $((30 + RANDOM % 220)))"
	bsc status --json > "$T/before.json"   # sampled right before the stop, parsed after
	kill -STOP "$DAEMON_PID"
	before=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets"][0]["raw_bytes_sent"])' "$T/before.json")
	pid=$(recv_pid)
	[ -n "$pid" ] && kill -9 "$pid"
	while [ -n "$pid" ] && ! gone "$pid"; do sleep 0.01; done
	where=$(recover_and_check "recv kill $i")
	[ "$where" = old ] && old=$((old + 1)) || new=$((new + 1))
	grep -q "replaying committed epoch" "$T/recover.err" && replays=$((replays + 1))
	kill -CONT "$DAEMON_PID"
	bsc_sync 60s >/dev/null || fail "round $i: no convergence after the kill"
	cmp -s "$(replica_of root)" "$T/next.img" || fail "round $i: replica differs after convergence"
	after=$(status_field raw_bytes_sent)
	delta=$((after - before))
	# A few MiB may be produced between the count and the stop, or before the
	# broken pipe is seen; a replica that already had the epoch gets nothing
	# more than that (the change is 12 MiB).
	if [ "$where" = new ] && [ $delta -gt $((4 * 1048576)) ]; then
		fail "round $i: replica had the epoch, yet $delta bytes were sent again"
	fi
	# The epoch the kill interrupted may have been partly sent after the count
	# (a loaded machine sent 4.7 MiB of it: CI saw 16.5 MB) and is then sent
	# again whole: at most twice the change, far below a fresh copy (~100 MiB).
	[ $delta -le $((2 * CHANGE + 1048576)) ] || fail "round $i: $delta bytes sent for a $CHANGE-byte change"
	mv "$T/next.img" "$T/prev.img"
done
[ "$old" -gt 0 ] && [ "$new" -gt 0 ] || note "warning: all kills fell on one side of the commit point"
note "recv killed 22 times: $old recoveries to the previous epoch, $new to the new one ($replays by replaying a committed redo log)"

dold=0 dnew=0
for i in $(seq 1 6); do
	"$BIN/tests/randwrite" "$T/disk.img" 3000 "$((100 + i))"
	cp "$T/disk.img" "$T/next.img"
	bsc sync >/dev/null
	sleep "0.$(printf '%03d' $((RANDOM % 100)))"
	pid=$(recv_pid)
	kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""
	while [ -n "$pid" ] && ! gone "$pid"; do sleep 0.01; done
	rm -f "$T/ctl.sock"
	where=$(recover_and_check "daemon kill $i")
	[ "$where" = old ] && dold=$((dold + 1)) || dnew=$((dnew + 1))
	bsc_start
	bsc_sync 60s >/dev/null || fail "daemon kill $i: no convergence after restart"
	cmp -s "$(replica_of root)" "$T/next.img" || fail "daemon kill $i: replica differs after restart"
	sent=$(status_field raw_bytes_sent)
	# After a restart only what the replica lacks is sent, never a full copy.
	[ "$where" = new ] && [ "$sent" -gt 65536 ] && fail "daemon kill $i: replica had the epoch, $sent bytes resent"
	[ "$sent" -le $((CHANGE + 65536)) ] || fail "daemon kill $i: $sent bytes sent for a $CHANGE-byte change"
	mv "$T/next.img" "$T/prev.img"
done
note "basculed killed 6 times mid-epoch: $dold at the previous epoch, $dnew at the new one"
# While recv holds the lock, verify reads beside it (after all those kills).
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" 2>"$T/verify.err" | grep -q OK \
	|| fail "live verify after the kills: $(cat "$T/verify.err")"
grep -q "verifying beside it" "$T/verify.err" || fail "verify did not run beside the receiver"
bsc_stop
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" | grep -q OK || fail "final verify"
