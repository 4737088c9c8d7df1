# pgvaulttl: timelines in the vault.  basculed ships a real PostgreSQL 15
# to a vault target (local:); the cluster is then restarted as a standby
# and promoted (timeline 2, 00000002.history), as a failover or failback
# leaves the protected primary:
#  - the stream follows the promotion, and the vault gets a base of
#    timeline 2 with its history file and the WAL of timeline 2
#    (`vault ls --json`: timeline 2);
#  - restore --at a time on timeline 2: the rows committed on both
#    timelines before it, none after; the restored cluster's own new
#    history (00000003.history) names timeline 1 too, which it can only
#    know from the vault's 00000002.history;
#  - restore --at a time before the switch: timeline 1's state then (the
#    older epochs keep the old chain), none of the later rows.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root

B="$BIN/bascule"
now_z() { date -u +%Y-%m-%dT%H:%M:%S.%NZ | cut -c1-26 | sed 's/$/Z/'; }
pgvault_up

# --- timeline 1: rows 1-20, AT1, rows 21-30 -----------------------------------
rows_client p 20 "$T/rows1" 1
sleep 1.5; AT1=$(now_z); sleep 1.5
rows_client p 10 "$T/rows2" 21
expect_rc 0 bsc sync app --wait --vault --timeout 60s
bases=$(pgtgt bases_received)

# --- the promotion: restarted as a standby (no upstream), then promoted --------
pg_stop p
touch "$(pg_dir p)/data/standby.signal"
pg_start p
[ "$(pg_sql p "SELECT pg_is_in_recovery()")" = t ] || fail "the cluster did not start as a standby"
pg_as "$PG_BIN/pg_ctl" -D "$(pg_dir p)/data" -w -t 60 promote >/dev/null || fail "pg_ctl promote failed"
wait_for 60 "the promoted cluster to accept writes" '[ "$(pg_sql p "SELECT pg_is_in_recovery()")" = f ]'
[ -f "$(pg_dir p)/data/pg_wal/00000002.history" ] || fail "no 00000002.history on the promoted primary"

# --- timeline 2: rows 31-40, AT2, rows 41-50 ----------------------------------
wait_for 90 "a base backup of timeline 2 at the vault" '[ "$(pgtgt bases_received)" -gt "$bases" ]'
grep -q "a promotion" "$T/daemon.log" || fail "the daemon's log does not mention the promotion"
rows_client p 10 "$T/rows3" 31
expect_rc 0 bsc sync app --wait --vault --timeout 60s
sleep 1.5; AT2=$(now_z); sleep 1.5
rows_client p 10 "$T/rows4" 41
[ "$(tail -1 "$T/rows3" | cut -d' ' -f1)" = 40 ] && [ "$(tail -1 "$T/rows4" | cut -d' ' -f1)" = 50 ] ||
	fail "the rows client did not commit every row"
expect_rc 0 bsc sync app --wait --vault --timeout 60s
bsc_stop
"$B" vault ls "${VK[@]}" --json > "$T/ls.json" || fail "vault ls: $(cat "$T/ls.json")"
tls=$(python3 -c "import json; print(' '.join(sorted({str(p['timeline']) for e in json.load(open('$T/ls.json')) for p in e.get('postgres', [])})))")
[ "$tls" = "1 2" ] || fail "the vault's epochs are on timelines '$tls', expected '1 2'"
newest_tl=$(python3 -c "import json; print(json.load(open('$T/ls.json'))[-1]['postgres'][0]['timeline'])")
[ "$newest_tl" = 2 ] || fail "the newest vault epoch is on timeline $newest_tl"

# --- on timeline 2 ------------------------------------------------------------
pgvault_restore tl2 --at "$AT2"
grep -q "recovered to .*, timeline 3, last transaction " "$T/r-tl2.out" || fail "restore --at AT2: $(cat "$T/r-tl2.out")"
got=$(pg_sql tl2 "SELECT count(*), min(id), max(id) FROM t")
[ "$got" = "40|1|40" ] || fail "restore --at $AT2 (timeline 2): rows $got, expected 40|1|40"
h3=$(pg_dir tl2)/data/pg_wal/00000003.history
[ -f "$h3" ] && grep -qP '^1\t' "$h3" && grep -qP '^2\t' "$h3" ||
	fail "the restored cluster's 00000003.history lacks timeline 1 or 2: $(cat "$h3" 2>&1)"
pg_stop tl2
note "restore --at $AT2 (timeline 2): rows 1-40, on timeline 3 whose history names timelines 1 and 2"
# --- before the switch ------------------------------------------------------------
pgvault_restore tl1 --at "$AT1"
grep -q "recovered to .*, timeline 2, last transaction " "$T/r-tl1.out" || fail "restore --at AT1: $(cat "$T/r-tl1.out")"
got=$(pg_sql tl1 "SELECT count(*), min(id), max(id) FROM t")
[ "$got" = "20|1|20" ] || fail "restore --at $AT1 (timeline 1): rows $got, expected 20|1|20"
pg_stop tl1
# The newest point: every row.
pgvault_restore all
got=$(pg_sql all "SELECT count(*), max(id) FROM t")
[ "$got" = "50|50" ] || fail "restore (newest): rows $got, expected 50|50"
pg_stop all
note "restore --at $AT1 (before the switch): rows 1-20 of timeline 1; newest: all 50 rows"
! grep -q "AddressSanitizer\|runtime error" "$T/daemon.log" || fail "sanitizer report in the daemon's log"
