# pointintime: on XFS (reflink), each epoch is scanned from a FICLONE clone
# taken between the freeze and thaw hooks: consistent, and the guest is frozen
# only for the clone.  On ext4 without hooks, an epoch scanned while the
# disk is being written is marked fuzzy; one scanned at rest, consistent.
# Also: io_rate caps the scan's reads.
. "$(dirname "$0")/../lib/common.sh"
need_root
command -v mkfs.xfs >/dev/null || { echo "SKIP: no mkfs.xfs"; exit 77; }
bsc_keygen
truncate -s 1G "$T/xfs.img"
mkfs.xfs -q -m reflink=1 "$T/xfs.img"
mkdir "$T/xfs"
mount -o loop "$T/xfs.img" "$T/xfs"
MOUNTS+=("$T/xfs")
truncate -s 64M "$T/xfs/disk.img"
"$BIN/tests/randwrite" "$T/xfs/disk.img" 2000 1
SOURCES="root:$T/xfs/disk.img"
bsc_config 1h 24h "keep_epochs: 5"
# state_dir on the same filesystem as the disk, for the clone; hooks log.
sed -i "s|^state_dir: .*|state_dir: $T/xfs/state|" "$T/bascule.yaml"
sed -i "s|^    max_interval: 24h|    max_interval: 24h\n    freeze: echo freeze \$BASCULE_GROUP \$BASCULE_EPOCH >> $T/hooks.log\n    thaw: echo thaw \$BASCULE_GROUP \$BASCULE_EPOCH >> $T/hooks.log|" "$T/bascule.yaml"
bsc_start
bsc_sync || fail "sync"
"$BIN/tests/randwrite" "$T/xfs/disk.img" 500 2
bsc_sync || fail "sync"
cmp "$T/xfs/disk.img" "$(replica_of root)" || fail "replica differs"
grep -q "^freeze vm1 [0-9]" "$T/hooks.log" && grep -q "^thaw vm1 [0-9]" "$T/hooks.log" || fail "hooks did not run: $(cat "$T/hooks.log" 2>/dev/null)"
[ "$(grep -c freeze "$T/hooks.log")" = "$(grep -c thaw "$T/hooks.log")" ] || fail "every freeze needs its thaw"
grep -q "cut (consistent)" "$T/daemon.log" || fail "epochs on a reflink clone should be consistent"
grep -q "cut (fuzzy)" "$T/daemon.log" && fail "an epoch on XFS with hooks was fuzzy"
ls "$T/xfs/state/groups/vm1/" | grep -q clone && fail "clone left behind"
bsc_stop
"$BIN/bascule" replica list --root "$T/replica" | grep -q "(consistent)" || fail "replica list does not show consistent"
note "XFS: $(grep -c freeze "$T/hooks.log") frozen, cloned, consistent epochs"

# ext4 (the scratch directory), no hooks: written during the scan -> fuzzy.
rm -rf "$T/state" "$T/replica" "$T/daemon.log"
truncate -s 1G "$T/big.img"
"$BIN/tests/randwrite" "$T/big.img" 20000 3
SOURCES="root:$T/big.img"
bsc_config 1h 24h
sed -i "s|^control_socket:|io_rate: 200MB/s\ncontrol_socket:|" "$T/bascule.yaml"
bsc_start
bsc_sync 120s || fail "sync"
sleep 0.1
( for i in $(seq 40); do "$BIN/tests/randwrite" "$T/big.img" 10 "$((i + 10))"; sleep 0.1; done ) &
W=$!
bsc_sync 120s || fail "sync while writing"
wait $W
grep "cut (" "$T/daemon.log" | tail -1 | grep -q "cut (fuzzy)" || fail "an epoch scanned during writes should be fuzzy: $(grep "cut (" "$T/daemon.log" | tail -1)"
sleep 0.1
bsc_sync 120s || fail "sync at rest"
grep "cut (" "$T/daemon.log" | tail -1 | grep -q "cut (consistent)" || fail "an epoch scanned at rest should be consistent"
# io_rate 200MB/s: past the allowed burst of 100 ms (20 MB), reads are paced.
ms=$(grep "cut (" "$T/daemon.log" | tail -1 | sed 's/.*scanned \([0-9.]*\) MiB in \([0-9.]*\) ms.*/\2/')
mib=$(grep "cut (" "$T/daemon.log" | tail -1 | sed 's/.*scanned \([0-9.]*\) MiB in.*/\1/')
rate=$(echo "($mib * 1048576 - 20000000) / ($ms / 1000) / 1000000" | bc -l)
[ "$(echo "$rate <= 220" | bc)" = 1 ] || fail "io_rate 200MB/s not honoured: scanned at $rate MB/s"
note "ext4: fuzzy while written, consistent at rest; scan paced at $(printf %.0f "$rate") MB/s for io_rate 200MB/s"
