# resync: a replica changed behind the daemon's back (1% of its blocks), and
# a replica whose state is lost (restored from elsewhere, or an old primary
# after failback), are brought back with librsync signatures and deltas per
# 1 MiB range: less than 5% of the disk travels, and they end byte-identical.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
SIZE=$((256 * 1048576))
head -c $SIZE /dev/urandom > "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
bsc_start
bsc_sync 120s || fail "initial sync"
bsc_stop

# 1. Diverged: 1% of the replica's blocks changed behind the daemon's back.
"$BIN/tests/randwrite" "$(replica_of root)" $((SIZE / 4096 / 100)) 5
set +e
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" > "$T/verify.out" 2>&1; rc=$?
set -e
[ $rc -eq 5 ] || fail "verify should find the divergence (exit 5), got $rc: $(cat "$T/verify.out")"
grep -q "MISMATCH" "$T/verify.out" || fail "no MISMATCH line: $(cat "$T/verify.out")"
"$BIN/bascule" replica list --root "$T/replica" | grep -q "diverged" || fail "replica not marked diverged"
bsc_start
bsc_sync 120s || fail "resync of the diverged replica"
cmp "$T/disk.img" "$(replica_of root)" || fail "diverged replica not identical after resync"
wire=$(status_field bytes_sent)
note "diverged replica resynced: $wire bytes on the wire for a $SIZE-byte disk ($((wire * 1000 / SIZE))‰)"
[ "$wire" -lt $((SIZE / 20)) ] || fail "resync sent $wire bytes, not < 5% of the disk"
grep -q "resynchronising it with librsync deltas" "$T/daemon.log" || fail "no librsync resync in the log"
bsc_stop

# 2. Unknown: the replica's state is gone but its file is an old copy.
rm -rf "$T/replica/.bascule"
"$BIN/tests/randwrite" "$T/disk.img" $((SIZE / 4096 / 100)) 6
rm -rf "$T/state"
: > "$T/daemon.log"
bsc_start
bsc_sync 120s || fail "resync of an unknown replica"
cmp "$T/disk.img" "$(replica_of root)" || fail "unknown replica not identical after resync"
wire=$(status_field bytes_sent)
note "unknown replica resynced: $wire bytes on the wire ($((wire * 1000 / SIZE))‰)"
[ "$wire" -lt $((SIZE / 20)) ] || fail "resync of an unknown replica sent $wire bytes, not < 5%"
grep -q "of unknown content" "$T/daemon.log" || fail "the unknown replica was not recognised"
bsc_stop
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" | grep -q OK || fail "verify after resync"
