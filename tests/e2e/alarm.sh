# alarm: the replica's own record of its content is damaged behind its back
# (one leaf of its map).  The next epoch fails its digest check on the
# replica: it is undone (the replica stays at the previous epoch), the alarm
# is visible in the daemon's log, status and history, and replication
# converges again through a resync, byte-identical.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 64M "$T/disk.img"
"$BIN/tests/randwrite" "$T/disk.img" 2000 1
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
bsc_start
bsc_sync || fail "sync"
bsc_stop
cp "$(replica_of root)" "$T/before.img"
# Block 7 of the replica is unchanged, but its map now says otherwise.
# The map (lib/blockmap.c, BSCBMAP3): a 4 KiB header, a chunk word per MiB
# (rounded up to a page), a 32-byte node per word (4 x their room), then
# 32-byte records whose first 16 are the leaf.
map=$T/replica/.bascule/groups/vm1/root.map
head -c 8 "$map" | grep -q BSCBMAP3 || fail "the replica's map is not a BSCBMAP3 map: $(head -c 8 "$map" | od -c | head -1)"
dir=$(( (64 * 8 + 4095) / 4096 * 4096 ))
printf 'XXXXXXXXXXXXXXXX' | dd of="$map" bs=1 seek=$((4096 + 5 * dir + 7 * 32)) conv=notrunc status=none
"$BIN/tests/randwrite" "$T/disk.img" 200 2
bsc_start
bsc_sync 60s || fail "no convergence after the digest alarm"
cmp "$T/disk.img" "$(replica_of root)" || fail "replica differs after the resync"
grep -q "digest mismatch on vm1/root" "$T/daemon.log" || fail "the mismatch was not reported"
grep -q "the replica refused epoch .* digest mismatch" "$T/daemon.log" || fail "the daemon did not see the refusal"
grep -q "resynchronising it with librsync deltas" "$T/daemon.log" || fail "no resync after the alarm"
bsc history | grep -q "error.*digest mismatch" || fail "history does not show the alarm"
bsc_stop
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" | grep -q OK || fail "verify after the resync"
"$BIN/bascule" replica list --root "$T/replica" | grep -q ALARM && fail "the alarm was not cleared by the good epoch"
note "digest mismatch refused and undone, reported, then resynchronised"
