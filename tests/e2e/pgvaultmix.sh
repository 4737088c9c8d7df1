# pgvaultmix: one group holding a disk image AND a real PostgreSQL 15,
# shipped by basculed to a vault target (local:), restored source by source:
#  - at a recorded time AT (both sources quiet around it): the disk equals
#    the copy taken then (cmp), the database holds the rows committed
#    before AT and none after;
#  - the newest point: the disk equals the image, every row;
#  - a second base backup, then prune keeping only the newest epoch: the
#    first base goes (objects removed), the disk's packs from the first
#    epochs stay (its unchanged blocks still need them), `vault check
#    --read-data` is clean, and both sources restore at the kept point.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root

B="$BIN/bascule"
IMG=$T/disk.img
head -c $((8 << 20)) /dev/urandom > "$IMG"
poke() { # OFFSET_MIB: 64 KiB of new random bytes there
	head -c 65536 /dev/urandom | dd of="$IMG" bs=64K seek=$(($1 * 16)) conv=notrunc status=none
}
PG_BSC_DISKS="disk:$IMG" pgvault_up
grep -q "disk: $IMG" "$T/bascule.yaml" || fail "the config has no disk source: $(cat "$T/bascule.yaml")"
restore_disk() { # FILE ARGS...
	local f=$1; shift
	"$B" restore "${VK[@]}" --source app/disk --to "$f" "$@" > "$T/rd.out" 2> "$T/rd.err" ||
		fail "restore app/disk $*: $(cat "$T/rd.err")"
}

# --- phase 1: a disk change and rows 1-20, then AT (quiet on both sides) -----
poke 1
rows_client p 20 "$T/rows1" 1
expect_rc 0 bsc sync app --wait --vault --timeout 60s
cp "$IMG" "$T/disk.at"
sleep 1.5
AT=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ | cut -c1-26)Z
sleep 1.5
# --- phase 2: another disk change, rows 21-40 ---------------------------------
poke 5
rows_client p 20 "$T/rows2" 21
[ "$(tail -1 "$T/rows1" | cut -d' ' -f1)" = 20 ] && [ "$(tail -1 "$T/rows2" | cut -d' ' -f1)" = 40 ] ||
	fail "the rows client did not commit every row"
expect_rc 0 bsc sync app --wait --vault --timeout 60s
! cmp -s "$IMG" "$T/disk.at" || fail "the disk did not change after AT"

restore_disk "$T/d1.img" --at "$AT"
cmp "$T/d1.img" "$T/disk.at" || fail "restore app/disk --at $AT differs from the disk at that time"
pgvault_restore at --at "$AT"
got=$(pg_sql at "SELECT count(*), min(id), max(id) FROM t")
[ "$got" = "20|1|20" ] || fail "restore app/db --at $AT: rows (count|min|max) $got, expected 20|1|20"
pg_stop at
restore_disk "$T/d2.img"
cmp "$T/d2.img" "$IMG" || fail "restore app/disk (newest) differs from the image"
pgvault_restore all
got=$(pg_sql all "SELECT count(*), max(id) FROM t")
[ "$got" = "40|40" ] || fail "restore app/db (newest): rows $got, expected 40|40"
pg_stop all
note "mixed group at --at $AT: the disk as copied then, rows 1-20; newest: the disk equal, 40 rows"

# --- a disk cut that fails after its scan marked blocks ------------------------
# A directory where the group's state goes: the disk cut fails at its
# commit, after its scan gave the poked blocks the next number.  WAL comes
# meanwhile: that number must go to a disk cut (which fails too while the
# directory is there), not to a WAL-only epoch, which would leave the poked
# blocks at the next disk cut's spool floor, never sent.
ST=$T/state/groups/app/state
lastcut() { status_get "d['groups'][0]['last_cut']"; }
nfail() { grep -c "of group app not cut" "$T/daemon.log" || true; }
l0=$(lastcut) f0=$(nfail)
mv "$ST" "$T/state.keep"
mkdir -p "$ST/in-the-way"
poke 3
wait_for 30 "the disk cut to fail" '[ "$(nfail)" -gt "$f0" ]'
pg_sql p "CREATE TABLE w AS SELECT 1 AS x"
wait_for 30 "the WAL to go (a WAL-only epoch) or its disk cut to fail" \
	'[ "$(lastcut)" -gt "$l0" ] || [ "$(nfail)" -gt $((f0 + 1)) ]'
[ "$(lastcut)" = "$l0" ] || fail "epoch $(lastcut) was cut (WAL only) while the disk cut failed"
rm -r "$ST"
mv "$T/state.keep" "$ST"
expect_rc 0 bsc sync app --wait --vault --timeout 60s
restore_disk "$T/d2b.img"
cmp "$T/d2b.img" "$IMG" || fail "restore app/disk after a failed disk cut differs from the image (blocks lost)"
note "a disk cut failed at its commit, WAL meanwhile: no WAL-only epoch took its number ($(($(nfail) - f0)) failed cuts); then the disk equal"

# --- a second base, then prune to the newest epoch ------------------------------
pgvault_second_base
poke 7
rows_client p 10 "$T/rows3" 41
expect_rc 0 bsc sync app --wait --vault --timeout 60s
pgvault_one_base
bsc_stop
cp "$IMG" "$T/disk.end"
n_before=$(find "$V/d" -type f | wc -l)
sleep 2
expect_rc 0 "$B" vault prune --vault "local:$V" --verify-key "$T/vault.key.pub" --keep-all 1 --grace 0
n_after=$(find "$V/d" -type f | wc -l)
[ "$n_after" -lt "$n_before" ] || fail "prune removed no object ($n_before before, $n_after after)"
expect_rc 0 "$B" vault check "${VK[@]}" --read-data
restore_disk "$T/d3.img"
cmp "$T/d3.img" "$T/disk.end" || fail "restore app/disk after prune differs from the image"
pgvault_restore kept
got=$(pg_sql kept "SELECT count(*), max(id) FROM t")
[ "$got" = "50|50" ] || fail "restore app/db after prune: rows $got, expected 50|50"
pg_stop kept
note "second base at the vault; prune --keep-all 1: $n_before -> $n_after objects, check clean; the kept point restores the disk (equal) and all 50 rows"
! grep -q "AddressSanitizer\|runtime error" "$T/daemon.log" || fail "sanitizer report in the daemon's log"
