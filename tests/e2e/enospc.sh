# enospc: the replica lives on a small tmpfs.  An epoch that does not fit is
# refused with a clear error, the replica stays at its last epoch (and
# verifies), and replication converges once space is freed.
. "$(dirname "$0")/../lib/common.sh"
need_root
bsc_keygen
mkdir "$T/replica"
mount -t tmpfs -o size=48M tmpfs "$T/replica"
MOUNTS+=("$T/replica")
truncate -s 256M "$T/disk.img"
dd if=/dev/urandom of="$T/disk.img" bs=1M count=8 conv=notrunc status=none
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
bsc_start
bsc_sync || fail "initial sync should fit"
cp "$T/disk.img" "$T/before.img"

# 40 MiB more of incompressible data: redo + replica blocks exceed 48 MiB.
dd if=/dev/urandom of="$T/disk.img" bs=1M count=40 seek=100 conv=notrunc status=none
set +e
bsc sync --wait --timeout 5s 2>"$T/sync.err"; rc=$?
set -e
[ $rc -eq 6 ] || fail "sync --wait should time out (exit 6) while the replica is full, got $rc"
grep -qi "no space" "$T/daemon.log" || fail "no clear no-space error in the daemon log"
grep -qi "no space" "$T/sync.err" || fail "sync does not show the target's no-space error: $(cat "$T/sync.err")"
cmp -s "$(replica_of root)" "$T/before.img" || fail "the replica changed although the epoch did not fit"
bsc_stop
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" | grep -q OK || fail "replica does not verify after ENOSPC"
ls "$T/replica/.bascule/groups/vm1/journal/" | grep -q . && fail "journal leftovers after ENOSPC: $(ls "$T/replica/.bascule/groups/vm1/journal/")"

note "sync said: $(cat "$T/sync.err")"
note "epoch refused for lack of space; replica intact at its last epoch"
mount -o remount,size=256M "$T/replica"
bsc_start
bsc_sync 60s || fail "no convergence after space was freed"
cmp "$(replica_of root)" "$T/disk.img" || fail "replica differs after convergence"
