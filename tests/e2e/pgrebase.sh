# pgrebase: a replica that keeps up receives every new base backup.
# basculed protects a real PostgreSQL 15 under pgbench into a real
# `bascule recv` (local transport, cold standby); wal_spool_max 64 MiB, so
# a new base is taken each time 32 MiB of WAL pass:
#  - a second base reaches the replica while it keeps up (no gap: the log
#    says "newer than the one it holds", never "cannot go on"), and the
#    replica's copy follows it: the newest base directory's start LSN
#    advances past the first base;
#  - `replica verify` covers the WAL between the new base's segment and
#    where the copy was when it came (a byte changed there: MISMATCH);
#  - after sync --wait, a cold promotion replays only from the new base
#    (the promoted cluster's backup_label.old starts at the new base, its
#    pg_wal holds no segment before it) and its pgbench tables equal the
#    primary's.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root

R=$T/replica
mkdir -p "$R"; chown postgres: "$R"
SOCK=$T/sock; mkdir -p "$SOCK"; chown postgres: "$SOCK"
printf "unix_socket_directories = '%s'\nport = 5433\nlisten_addresses = ''\n" "$SOCK" > "$T/site.conf"
psql2() { pg_as "$PG_BIN/psql" -X -q -At -h "$SOCK" -p 5433 -U postgres -d postgres -c "$1"; }
promoted_down() { [ ! -f "$R/app/db/postmaster.pid" ] || pg_as "$PG_BIN/pg_ctl" -D "$R/app/db" -m immediate -w -t 30 stop >/dev/null 2>&1 || true; }
EXIT_HOOKS+=(promoted_down)
# The replica's newest base backup (its start LSN, the directory's name in hex).
newest_base() { find "$R"/app/.db.pg/*/base -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{16}' -printf '%f\n' | sort | tail -1; }
pg_init p
pg_start p
pg_bench_init p 2
bsc_keygen
pg_bsc_config p "local:$R" "wal_spool_max: 64MiB" "wal_interval: 200ms" -- "postgres_standby: cold"
bsc_start
wait_for 90 "the first base backup at the replica" '[ "$(pgtgt bases_received)" -ge 1 ] && [ -n "$(newest_base)" ]'
b1=$(newest_base)

# Load, and WAL past half of wal_spool_max: a second base while it keeps up.
pg_bench p 15 2 &
bench=$!
for _ in 1 2 3; do
	pg_sql p "CREATE TABLE IF NOT EXISTS filler (x text); INSERT INTO filler SELECT repeat(md5(g::text), 8) FROM generate_series(1, 20000) g" >/dev/null
	pg_sql p "SELECT pg_switch_wal()" >/dev/null
done
wait_for 120 "a second base backup at the replica" '[ "$(pgtgt bases_received)" -ge 2 ] && [ "$(newest_base)" != "$b1" ]'
wait "$bench" || fail "pgbench failed"
b2=$(newest_base)
[ $((16#$b2)) -gt $((16#$b1)) ] || fail "the replica's newest base $b2 does not start after the first, $b1"
grep -q "sending base backup .* newer than the one it holds" "$T/daemon.log" ||
	fail "the second base was not sent as a newer base to a replica that keeps up: $(grep -i "base" "$T/daemon.log" | tail -5)"
# The one base sent for want of a copy is the first (the replica held none).
[ "$(grep -c "cannot go on from the WAL spool" "$T/daemon.log")" = 1 ] && grep -q "cannot go on .*(it holds none)" "$T/daemon.log" ||
	fail "a base was sent for a copy that could not go on: $(grep "cannot go on" "$T/daemon.log" | head -3)"
[ "$(pgtgt needs_base)" = false ] || fail "the target still needs a base"

# In sync: the copy follows the new base, and promotion replays from it.
pg_sql p "INSERT INTO filler VALUES ('the last row')" >/dev/null
bsc_sync 60s >/dev/null || fail "sync --wait failed"
pg_bench_digest p > "$T/digest.end"
bsc_stop
# The newest base once the receiver has stopped: another may have come after
# the sync (WAL still passes: checkpoints, the base backups' own), and verify
# and promotion use the one the replica's state committed (a CI run under
# ASan took b3 before a base that came just after the sync).
b3=$(newest_base)
[ $((16#$b3)) -ge $((16#$b2)) ] || fail "the replica's newest base $b3 is older than $b2"
# verify covers the WAL from the new base's segment to where the copy was
# when it came (that WAL came under the old base's chain): a byte changed
# there, in a copy of the replica, is a MISMATCH.
cp -a "$R" "$T/rv"
seg_b3=$(( (16#$b3) / (16 << 20) ))
f=$(ls "$T"/rv/app/.db.pg/*/wal/$(printf "%08X%08X%08X" 1 $((seg_b3 >> 8)) $((seg_b3 & 255)))* | head -1)
[ -f "$f" ] || fail "no WAL segment $seg_b3 in the copy"
printf '\x5a' | dd of="$f" bs=1 seek=40 conv=notrunc status=none
expect_rc 5 "$BIN/bascule" replica verify --root "$T/rv" --key "$T/site.key"
cat "$T/out" "$T/err" | grep -q "MISMATCH in the WAL \(before base\|of epoch\)" || fail "verify did not see the WAL before the new base changed: $(cat "$T/out" "$T/err")"
rm -rf "$T/rv"
expect_rc 0 "$BIN/bascule" replica promote --root "$R" --key "$T/site.key" --group app --pg-conf "$T/site.conf" --json
start=$(sed -n 's/^START WAL LOCATION: \([0-9A-F]*\/[0-9A-F]*\).*/\1/p' "$R/app/db/backup_label.old")
[ -n "$start" ] || fail "the promoted cluster has no backup_label.old: $(ls "$R/app/db")"
[ "$(lsn_of "$start")" = $((16#$b3)) ] ||
	fail "the cold promotion restored the base starting at $start, not the newest one ($b3; the first was $b1)"
for f in "$R"/app/db/pg_wal/0000000[12]*; do
	n=$(basename "$f"); n=${n%%.*}
	[ ${#n} = 24 ] || continue
	segno=$(( (16#${n:8:8} << 8) + 16#${n:16:8} ))
	[ "$segno" -ge "$seg_b3" ] || fail "the promoted pg_wal holds $n, before the new base's segment"
done
pg_as "$PG_BIN/pg_ctl" -D "$R/app/db" -l "$SOCK/promoted.log" -w -t 60 start >/dev/null ||
	fail "the promoted cluster does not start: $(tail -5 "$SOCK/promoted.log")"
for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
	psql2 "SELECT '$t', count(*), coalesce(sum(hashtext(x::text)::bigint), 0) FROM $t x"
done > "$T/digest.promoted"
cmp -s "$T/digest.end" "$T/digest.promoted" || fail "the promoted tables differ: $(diff "$T/digest.end" "$T/digest.promoted")"
[ "$(psql2 "SELECT count(*) FROM filler WHERE x = 'the last row'")" = 1 ] || fail "the last row is missing"
note "bases at the replica: $b1 then $b2 (newest $b3) while it kept up; cold promotion from $start, tables equal the primary's"
