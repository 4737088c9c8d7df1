# outage: the link is cut for 30 s during heavy writes, then restored.  No
# restart is needed; at every poll during the outage and the catch-up the
# replica, frozen as it is at that instant (receiver stopped, directory
# copied), recovers to a complete epoch that verifies; replication converges
# and sends about the changed blocks, not a full copy.  Then with 5% packet
# loss, it still converges.
# run.sh: first
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
sites_up
bsc_keygen
SIZE=$((512 * 1048576))
truncate -s $SIZE "$T/disk.img"
"$BIN/tests/randwrite" "$T/disk.img" 4000 1
R=$T/secondary/replica
REPLICA_DIR=$R
authorize_recv "$R"
trust_secondary
SOURCES="root:$T/disk.img"
TARGET_URL="ssh://$SSH_USER@$IP_S$R"
bsc_config 1s 2s "identity: $T/id_ed25519" "known_hosts: $T/known_hosts"
NSEXEC=(ip netns exec "$NS_P")
bsc_start
bsc_sync 60s || fail "initial sync"

# poll: freeze the replica as it is now and check it recovers to a whole epoch
polls=0
poll() {
	local pids snap=$T/snap
	# Every receiver of this replica: during a takeover there are two (only
	# the lock holder writes, but a copy is a crash image only if it is still).
	pids=$(pgrep -f "bascule recv --root $R" || true)
	[ -n "$pids" ] && kill -STOP $pids
	rm -rf "$snap"; cp -a "$R" "$snap"
	[ -n "$pids" ] && kill -CONT $pids
	"$BIN/bascule" replica recover --root "$snap" --key "$T/site.key" >/dev/null 2>"$T/poll.err" \
		|| fail "poll $polls: the replica could not be recovered: $(cat "$T/poll.err")"
	"$BIN/bascule" replica verify --root "$snap" --key "$T/site.key" > "$T/poll.out" 2>&1 \
		|| fail "poll $polls: torn replica: $(cat "$T/poll.out")"
	polls=$((polls + 1))
}

writes=0
writer() { # heavy random writes: 100 blocks (400 KiB) every 100 ms
	for i in $(seq 1 400); do
		[ -f "$T/stop-writer" ] && break
		"$BIN/tests/randwrite" "$T/disk.img" 100 "$((1000 + i))"
		echo "$i" > "$T/writes"
		sleep 0.1
	done
}
writer & WP=$!
sleep 3
sent_before=$(status_field raw_bytes_sent)
sites_cut
note "link cut"
for _ in $(seq 14); do sleep 2; poll; done
touch "$T/stop-writer"; wait $WP
sleep 2; poll
# What the replica holds at the end of the outage, and what must travel.
cp "$T/snap/vm1/root" "$T/at-cut.img"
lacking=$("$BIN/tests/blockdiff" "$T/at-cut.img" "$T/disk.img")
sent_before=$(status_field raw_bytes_sent)
sites_restore
note "link restored after 30 s; the replica lacks $lacking blocks ($((lacking * 4096 / 1048576)) MiB)"
for _ in $(seq 8); do sleep 1; poll; done
bsc_sync 120s || fail "no convergence after the link came back"
cmp "$T/disk.img" "$(replica_of root)" || fail "replica differs after catch-up"
sent=$(( $(status_field raw_bytes_sent) - sent_before ))
note "$polls polls, every one a whole epoch; catch-up sent $sent bytes of blocks for $((lacking * 4096)) bytes lacking"
[ "$sent" -le $((lacking * 4096 * 12 / 10 + 1048576)) ] || fail "sent $sent bytes for $lacking lacking blocks"
[ "$sent" -ge $((lacking * 4096)) ] || fail "sent less than what was lacking?"
grep -q "taking over from receiver" "$T/daemon.log" && note "a stale receiver was taken over"

# 5% packet loss both ways: still converges.
sites_loss 5
"$BIN/tests/randwrite" "$T/disk.img" 3000 77
bsc_sync 180s || fail "no convergence with 5% packet loss"
cmp "$T/disk.img" "$(replica_of root)" || fail "replica differs with 5% loss"
sites_loss 0
note "converged with 5% packet loss"
