# pgvault: basculed ships a real PostgreSQL 15 (base backup + WAL) to a
# vault target (local:), and `bascule restore --source app/db` makes data
# directories PostgreSQL starts from (point-in-time recovery):
#  - the vault's objects say nothing: no LSN, file name or table content
#    in clear; `vault ls` lists the PostgreSQL points;
#  - numbered rows are committed around a recorded time AT (a pause on
#    either side); restore --at AT: every row committed before AT, none
#    after; restore without --at: every row;
#  - a recovery that fails (a setting PostgreSQL refuses): exit 1, the data
#    directory removed, and the next attempt restores;
#  - a refused DATADIR (not empty) and a time before the oldest base: the
#    documented exit codes, nothing made;
#  - one vault object flipped: restore (exit 5) and `vault check
#    --read-data` (exit 5) name it, no data directory and no staging left;
#  - a second base backup reaches the vault with the WAL unbroken; prune
#    keeping only the newest epoch removes the first base and the WAL
#    before the second, `vault check` is clean, and the kept point restores
#    with every row (the pruned --at point is refused).
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root

B="$BIN/bascule"
t_start=$(date +%s)
pgvault_up
note "the vault holds app/db to $(pgtgt acked_lsn) after $(($(date +%s) - t_start)) s (base $(pgsrc base | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])') bytes)"

# --- rows around AT -----------------------------------------------------------
MARK=marker-$RANDOM$RANDOM
rows_client p 30 "$T/rows1" 1
pg_sql p "CREATE TABLE secret (s text); INSERT INTO secret VALUES ('$MARK')" >/dev/null
sleep 1.5
AT=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ | cut -c1-26)Z
sleep 1.5
rows_client p 30 "$T/rows2" 31
[ "$(tail -1 "$T/rows1" | cut -d' ' -f1)" = 30 ] && [ "$(tail -1 "$T/rows2" | cut -d' ' -f1)" = 60 ] ||
	fail "the rows client did not commit every row"
expect_rc 0 bsc sync app --wait --vault --timeout 60s

# The provider sees sizes only.
! grep -rqa "$MARK" "$V" || fail "the marker is in the vault in clear"
! grep -rqaE "base\.tar|backup_manifest|pg_wal" "$V" || fail "a file name is in the vault in clear"
! find "$V" -type f | grep -qvE '/(d/[0-9a-f]{2}/[0-9a-f]{64}|m/[0-9a-f]{64})$' || fail "unexpected names: $(find "$V" -type f | head -3)"
"$B" vault ls "${VK[@]}" > "$T/ls.out" || fail "vault ls: $(cat "$T/ls.out")"
grep -q "postgres db: WAL to .* (timeline 1, .* objects), base .*recovery targets from" "$T/ls.out" ||
	fail "vault ls shows no PostgreSQL point: $(tail -3 "$T/ls.out")"

# --- restore --at AT, and without --at ----------------------------------------
restore_to() { # NAME ARGS...: restore app/db into cluster NAME's data
	local n=$1; shift
	pg_adopt "$n"
	"$B" restore "${VK[@]}" --source app/db --to "$(pg_dir "$n")/data" --pg-conf "$(pg_dir "$n")/site.conf" "$@"
}
t0=$(date +%s.%N)
restore_to at --at "$AT" > "$T/r1.out" 2> "$T/r1.err" || fail "restore --at failed: $(cat "$T/r1.err")"
t1=$(date +%s.%N)
grep -q "restored app/db epoch .* recovery_target_time" "$T/r1.out" || fail "restore said: $(cat "$T/r1.out")"
grep -q "recovered to .*, timeline 2, last transaction " "$T/r1.out" || fail "no LSN/timeline/last transaction: $(cat "$T/r1.out")"
pg_start at
got=$(pg_sql at "SELECT count(*), min(id), max(id) FROM t")
[ "$got" = "30|1|30" ] || fail "restore --at $AT: rows (count|min|max) $got, expected 30|1|30"
[ "$(pg_sql at "SELECT s FROM secret")" = "$MARK" ] || fail "the marker row is missing after --at"
pg_stop at
note "restore --at $AT: rows 1-30, none of 31-60 ($(printf %.1f "$(echo "$t1 - $t0" | bc)") s); $(sed -n 2p "$T/r1.out" | sed 's/^ *//')"
# A recovery that fails (PostgreSQL refuses a setting) is exit 1, not "damaged
# in the vault" (5): the data directory is removed, a directory beside it that
# is not this restore's is kept, and a second attempt works.
pg_adopt all
bad=$(pg_dir all)/bad.conf
{ cat "$(pg_dir all)/site.conf"; echo "shared_buffers = nonsense"; } > "$bad"
mkdir "$(pg_dir all)/.data.tblspc"; touch "$(pg_dir all)/.data.tblspc/other"
expect_rc 1 "$B" restore "${VK[@]}" --source app/db --to "$(pg_dir all)/data" --pg-conf "$bad"
! grep -q "damaged in the vault" "$T/err" || fail "a failed recovery is reported as vault damage: $(cat "$T/err")"
grep -q "recovery did not complete" "$T/err" || fail "failed recovery: $(cat "$T/err")"
[ ! -e "$(pg_dir all)/data" ] || fail "the data directory of a failed recovery was left"
[ -e "$(pg_dir all)/.data.tblspc/other" ] || fail "a failed restore removed a directory it did not make"
rm -r "$(pg_dir all)/.data.tblspc"
restore_to all > "$T/r2.out" 2> "$T/r2.err" || fail "restore after a failed one failed: $(cat "$T/r2.err")"
pg_start all
got=$(pg_sql all "SELECT count(*), min(id), max(id) FROM t")
[ "$got" = "60|1|60" ] || fail "restore (newest): rows $got, expected 60|1|60"
pg_stop all
note "restore (newest point): all 60 rows"

# --- refused input ----------------------------------------------------------------
pg_adopt busy
mkdir -p "$(pg_dir busy)/data"; touch "$(pg_dir busy)/data/keep"
expect_rc 1 "$B" restore "${VK[@]}" --source app/db --to "$(pg_dir busy)/data"
grep -q "is not empty: restore into a new or empty directory" "$T/err" || fail "non-empty DATADIR: $(cat "$T/err")"
[ "$(ls "$(pg_dir busy)/data")" = keep ] || fail "the non-empty DATADIR was touched"
expect_rc 1 "$B" restore "${VK[@]}" --source app/db --to "$T/early" --at "@$(( $(date +%s) - 3600 ))"
grep -q "the oldest base backup the vault keeps for it arrived at" "$T/err" || fail "early --at: $(cat "$T/err")"
[ ! -e "$T/early" ] || fail "a data directory was made for a time before the oldest base"

# --- a tampered object ------------------------------------------------------------
bsc_stop
victim=$(find "$V/d" -type f -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
rel=${victim#"$V"/}
cp -p "$victim" "$T/victim.orig"
size=$(stat -c %s "$victim")
printf 'X' | dd of="$victim" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect_rc 5 "$B" restore "${VK[@]}" --source app/db --to "$T/tampered"
grep -q "$rel: DAMAGED" "$T/err" || fail "restore does not name the damaged object $rel: $(cat "$T/err")"
[ ! -e "$T/tampered" ] && ! ls -a "$T" | grep -q "\.tampered\.bascule-restore" || fail "restore of a damaged epoch left files"
expect_rc 5 "$B" vault check "${VK[@]}" --read-data
cat "$T/out" "$T/err" | grep -q "BAD $rel: DAMAGED" || fail "vault check does not name $rel: $(cat "$T/out" "$T/err")"
cp -p "$T/victim.orig" "$victim"
expect_rc 0 "$B" vault check "${VK[@]}" --read-data
note "one flipped byte in $rel: restore and check exit 5 naming it, nothing made"

# --- a second base, then prune ------------------------------------------------------
bsc_start
pgvault_second_base
rows_client p 10 "$T/rows3" 61
expect_rc 0 bsc sync app --wait --vault --timeout 60s
pgvault_one_base
bsc_stop
n_before=$(find "$V/d" -type f | wc -l)
# --keep-all 1 keeps every epoch younger than 1 s (and always the newest):
# past that second only the newest, which lists the second base alone.
sleep 2
expect_rc 0 "$B" vault prune --vault "local:$V" --verify-key "$T/vault.key.pub" --keep-all 1 --grace 0
n_after=$(find "$V/d" -type f | wc -l)
[ "$n_after" -lt "$n_before" ] || fail "prune removed no object ($n_before before, $n_after after)"
expect_rc 0 "$B" vault check "${VK[@]}" --read-data
restore_to kept > "$T/r3.out" 2> "$T/r3.err" || fail "restore after prune failed: $(cat "$T/r3.err")"
pg_start kept
got=$(pg_sql kept "SELECT count(*), max(id) FROM t")
[ "$got" = "70|70" ] || fail "restore after prune: rows $got, expected 70|70"
pg_stop kept
expect_rc 1 "$B" restore "${VK[@]}" --source app/db --to "$T/pruned" --at "$AT"
note "second base at the vault (the newest epoch lists $nb); prune --keep-all 1: $n_before -> $n_after objects, check clean, the kept point restores all 70 rows, --at $AT (pruned) refused"
! grep -q "AddressSanitizer\|runtime error" "$T/daemon.log" || fail "sanitizer report in the daemon's log"
