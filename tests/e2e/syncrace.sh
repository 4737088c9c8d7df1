# syncrace: `bascule sync --wait` issued again and again while the daemon's
# own (timer) cuts run back to back and find nothing to commit.  Every sync
# must get its epoch: a number promised to a sync is never dropped.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 256M "$T/disk.img"
"$BIN/tests/randwrite" "$T/disk.img" 20000 1
SOURCES="root:$T/disk.img"
bsc_config 100ms 100ms   # a scan every 100 ms, each taking tens of ms
bsc_start
bsc_sync || fail "first sync"
for i in $(seq 1 40); do
	bsc sync --wait --timeout 5s >/dev/null 2>"$T/err" || fail "sync $i never got its epoch: $(cat "$T/err")"
	sleep "0.0$((RANDOM % 10))"
done
note "40 syncs during back-to-back timer cuts, each got its epoch"
