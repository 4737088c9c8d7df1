# upgrade: a primary and replica made by the previous version (block map
# BSCBMAP1, digests of version 1, replica state BSCSTAT3, replica map
# BSCRMAP1: a leaf for every block) taken over by this one.  Both maps are
# converted in place (no .new left, records only where data is), the
# replica's old state verifies with the version-1 digest, the first scan
# commits an epoch so every digest moves to version 2 (state BSCSTAT4), and
# the replica stays byte-identical and verifies through further epochs.
# The previous version is built from the history (tests/lib/oldbuild.sh),
# or taken from OLD_BUILD=DIR (a build of it); skipped only when neither
# is there (no git history).
. "$(dirname "$0")/../lib/common.sh"
. "$ROOT/tests/lib/oldbuild.sh"
old_build
NEW=$BIN
BIN=$OLD_BUILD
bsc_keygen
# 96 MiB sparse: 3 extents of data, the rest holes.
truncate -s 96M "$T/disk.img"
for at in 0 40 90; do
	dd if=/dev/urandom of="$T/disk.img" bs=1M count=2 seek=$at conv=notrunc status=none
done
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
bsc_start
bsc_sync 120s >/dev/null || fail "initial sync with the previous version"
dd if=/dev/urandom of="$T/disk.img" bs=4k count=16 seek=$((41 * 256)) conv=notrunc status=none
bsc_sync 120s >/dev/null || fail "second epoch with the previous version"
bsc_stop
map=$T/state/groups/vm1/root.map
[ "$(head -c 8 "$map")" = BSCBMAP1 ] || fail "the previous version did not write a BSCBMAP1 map"
[ "$(head -c 8 "$T/replica/.bascule/groups/vm1/state")" = BSCSTAT3 ] ||
	fail "the previous version did not write a BSCSTAT3 replica state"
rmap=$T/replica/.bascule/groups/vm1/root.map
[ "$(head -c 8 "$rmap")" = BSCRMAP1 ] || fail "the previous version did not write a BSCRMAP1 replica map"
old_kib=$(du -k "$map" | cut -f1)
old_rkib=$(du -k "$rmap" | cut -f1)

BIN=$NEW
# The old replica state is read and checked with the version-1 digest.
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" > "$T/verify.out" 2>&1 ||
	fail "verify of the previous version's replica: $(cat "$T/verify.out")"
grep -q "vm1/root: OK" "$T/verify.out" || fail "verify said: $(cat "$T/verify.out")"
epoch_before=$(grep -c " cut (" "$T/daemon.log")
bsc_start
bsc_sync 120s >/dev/null || fail "first sync after the upgrade"
[ "$(head -c 8 "$map")" = BSCBMAP3 ] || fail "the map was not converted: $(head -c 8 "$map")"
[ ! -e "$map.new" ] || fail "the conversion left $map.new"
new_kib=$(du -k "$map" | cut -f1)
note "block map: $old_kib KiB on disk before, $new_kib KiB after the conversion"
# 6 MiB of data: 6 chunks of records (48 KiB), the words, the header
[ "$new_kib" -le 96 ] || fail "the converted map is not sparse: $new_kib KiB (was $old_kib)"
[ "$(head -c 8 "$rmap")" = BSCBMAP3 ] || fail "the replica map was not converted: $(head -c 8 "$rmap")"
[ ! -e "$rmap.new" ] || fail "the conversion left $rmap.new"
new_rkib=$(du -k "$rmap" | cut -f1)
note "replica map: $old_rkib KiB on disk before, $new_rkib KiB after the conversion"
[ "$new_rkib" -le 96 ] || fail "the converted replica map is not sparse: $new_rkib KiB (was $old_rkib)"
[ "$(head -c 8 "$T/replica/.bascule/groups/vm1/state")" = BSCSTAT4 ] ||
	fail "the first cut after the upgrade did not move the replica to BSCSTAT4"
[ "$(grep -c " cut (" "$T/daemon.log")" -gt "$epoch_before" ] ||
	fail "no epoch committed after the upgrade: $(tail -3 "$T/daemon.log")"
cmp "$T/disk.img" "$(replica_of root)" || fail "replica differs after the upgrade"
for e in 2 3; do
	"$BIN/tests/randwrite" "$T/disk.img" 64 "$e"
	bsc_sync 120s >/dev/null || fail "epoch $e after the upgrade"
	cmp "$T/disk.img" "$(replica_of root)" || fail "replica differs after epoch $e"
done
! grep -q "digest mismatch\|MISMATCH\|full resync\|disagrees" "$T/daemon.log" ||
	fail "a digest alarm or a full resync: $(grep -i "mismatch\|resync\|disagrees" "$T/daemon.log" | head -2)"
bsc_stop
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" > "$T/verify.out" 2>&1 ||
	fail "verify after the upgrade: $(cat "$T/verify.out")"
grep -q "vm1/root: OK" "$T/verify.out" || fail "verify said: $(cat "$T/verify.out")"
note "converted, moved to digest v2, replica identical and verified"
