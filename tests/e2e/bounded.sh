# bounded: a 8 GiB disk (sparse, with data scattered over it) is replicated
# while the daemon's anonymous memory stays small: block maps are mmap'd
# files the kernel can page, buffers are per chunk, not per disk.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 8G "$T/big.img"
"$BIN/tests/randwrite" "$T/big.img" 20000 5
SOURCES="root:$T/big.img"
bsc_config 1h 24h
bsc_start
peak=0
( while kill -0 "$DAEMON_PID" 2>/dev/null; do
	awk '/RssAnon/ {print $2}' "/proc/$DAEMON_PID/status" 2>/dev/null; sleep 0.05
  done ) > "$T/rss" &
bsc_sync 300s || fail "sync of the 8 GiB disk"
"$BIN/tests/randwrite" "$T/big.img" 2000 6
bsc_sync 300s || fail "second sync"
[ "$("$BIN/tests/blockdiff" "$T/big.img" "$(replica_of root)")" = 0 ] || fail "replica differs"
peak=$(sort -n "$T/rss" | tail -1)
map=$(stat -c %s "$T/state/groups/vm1/root.map")
note "8 GiB disk: block map $((map / 1048576)) MiB on disk, daemon's peak anonymous memory $((peak / 1024)) MiB"
[ "$peak" -lt $((96 * 1024)) ] || fail "daemon anonymous memory peaked at ${peak} KiB for a 8 GiB disk"
