# bandwidth: a target capped at 20MB/s receives an incompressible epoch at
# that rate, within 10%, measured on the wire between two status polls; a
# target outside its schedule window sends nothing until the window opens.
# run.sh: alone
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
head -c $((96 * 1048576)) /dev/urandom > "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h "bandwidth: 20MB/s"
bsc_start
bsc sync >/dev/null
sleep 1.5   # past the cut and the first burst
# Sample the counter with the daemon's answer timed on both sides (midpoint);
# parse the JSON afterwards, outside the timed window.
sample() {
	local a b
	a=$(date +%s.%N); bsc status --json > "$T/st.json"; b=$(date +%s.%N)
	echo "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets"][0]["bytes_sent"])' "$T/st.json") $(echo "($a + $b) / 2" | bc -l)"
}
read -r b0 t0 < <(sample)
sleep 3
read -r b1 t1 < <(sample)
rate=$(echo "($b1 - $b0) / ($t1 - $t0) / 1000000" | bc -l)
note "measured $(printf %.2f "$rate") MB/s for a 20MB/s cap"
[ "$(echo "$rate >= 18 && $rate <= 22" | bc)" = 1 ] || fail "rate $rate MB/s is not within 10% of 20MB/s"
bsc_sync 60s || fail "sync under the cap"
cmp "$T/disk.img" "$(replica_of root)" || fail "replica differs"
bsc_stop

# A window that is closed now: nothing is sent; the log says when it opens.
h=$(( ($(date +%-H) + 2) % 24 ))
bsc_config 1h 24h "window: $(printf %02d $h):00-$(printf %02d $(( (h + 1) % 24 ))):00"
"$BIN/tests/randwrite" "$T/disk.img" 100 3
bsc_start
set +e; bsc sync --wait --timeout 3s 2>/dev/null; rc=$?; set -e
[ $rc -eq 6 ] || fail "a target outside its window should not receive the epoch (exit $rc)"
grep -q "outside its window" "$T/daemon.log" || fail "no message about the window"
cmp -s "$T/disk.img" "$(replica_of root)" && fail "data was sent outside the window"
note "outside the window: queued, nothing sent"
