# upgradepg: a mixed group (a real PostgreSQL 15 under pgbench load and a
# disk) replicated by the previous version (tests/lib/oldbuild.sh) into a
# real `bascule recv`, then taken over by this one: its group state is
# BSCGRST1 (disks' digests of version 1); this version's WAL-only cuts go
# on from it, its first scan moves the disks' digests to version 2 and the
# state to BSCGRST2; after a restart of the daemon (which reads that state)
# and more load, no digest alarm and no full resync anywhere, the disk
# replica byte-identical, `replica verify` OK for the disk and the database.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/oldbuild.sh"
need_root
old_build
NEW=$BIN
BIN=$OLD_BUILD
R=$T/replica
gstate=$T/state/groups/app/state
pg_init p
pg_start p
pg_bench_init p 2
bsc_keygen
truncate -s 64M "$T/disk.img"
dd if=/dev/urandom of="$T/disk.img" bs=1M count=4 seek=8 conv=notrunc status=none
PG_BSC_DISKS="root:$T/disk.img" pg_bsc_config p "local:$R" "wal_interval: 200ms"
sync_app() { expect_rc 0 timeout 150 "$BIN/bascule" --socket "$T/ctl.sock" sync app --wait --timeout 120s; }
bsc_start
sync_app
pg_bench p 2 2
dd if=/dev/urandom of="$T/disk.img" bs=4k count=8 seek=3000 conv=notrunc status=none
sync_app
bsc_stop
[ "$(head -c 8 "$gstate")" = BSCGRST1 ] || fail "the previous version did not write a BSCGRST1 group state: $(head -c 8 "$gstate")"
lines=$(wc -l < "$T/daemon.log")

BIN=$NEW
bsc_start
pg_bench p 3 2                       # WAL-only cuts every 200 ms meanwhile
sync_app
[ "$(head -c 8 "$gstate")" = BSCGRST2 ] || fail "the group state did not move to BSCGRST2: $(head -c 8 "$gstate")"
bsc_stop
bsc_start                            # reads the state this version wrote
pg_bench p 2 2
"$BIN/tests/randwrite" "$T/disk.img" 32 7
sync_app
bsc_stop
tail -n +"$((lines + 1))" "$T/daemon.log" > "$T/new.log"
! grep -qi "digest mismatch\|MISMATCH\|full resync\|disagrees" "$T/new.log" ||
	fail "a digest alarm or a full resync after the upgrade: $(grep -i "mismatch\|full resync\|disagrees" "$T/new.log" | head -3)"
n_wal=$(grep -c "cut: WAL only" "$T/new.log" || true)
[ "$n_wal" -gt 0 ] || fail "no WAL-only cut after the upgrade: $(tail -3 "$T/new.log")"
cmp "$T/disk.img" "$R/app/root" || fail "the disk replica differs after the upgrade"
"$BIN/bascule" replica verify --root "$R" --key "$T/site.key" > "$T/verify.out" 2>&1 ||
	fail "verify after the upgrade: $(cat "$T/verify.out")"
grep -q "app/root: OK" "$T/verify.out" && grep -q "app/db: OK" "$T/verify.out" ||
	fail "verify said: $(cat "$T/verify.out")"
note "BSCGRST1 -> BSCGRST2 through $n_wal WAL-only cuts and a restart; disk identical, disk and database verified"
