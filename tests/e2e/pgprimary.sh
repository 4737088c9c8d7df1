# pgprimary: basculed protecting a real PostgreSQL 15 under pgbench load,
# into tests/helpers/pgsink, a STAND-IN for `bascule recv` (the real
# receiver of postgres sources is written beside this; the stand-in speaks
# the same wire, keeps the WAL and the base backup it receives, checks the
# chained digest, acknowledges once fsynced):
#  - the initial base backup and the streamed WAL reach it; its complete WAL
#    segments equal pg_receivewal's over the same range;
#  - `bascule sync app --wait` returns once it holds every transaction
#    committed before the call: its base + WAL restored into a data
#    directory, PostgreSQL starts and every such row is there, and the
#    pgbench tables equal the primary's;
#  - the slot follows what is durable in basculed's spool (synchronous: local);
#  - status, metrics and `bascule check` show the source and the target;
#  - the RPO (commit returned -> durable at the stand-in) is measured.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root

pg_init p
pg_start p
pg_bench_init p 4
pg_sql p "SELECT pg_create_physical_replication_slot('prw', true)" >/dev/null
mkdir -p "$T/prw"
"$PG_BIN/pg_receivewal" -h "$(pg_dir p)" -U postgres -S prw -D "$T/prw" -s 1 --no-loop 2> "$T/prw.log" &
PRW=$!
bsc_keygen
sink_config p "wal_interval: 200ms"
bsc_start
wait_for 60 "the first base backup at the stand-in" '[ -f "$SINK/app/db/base/backup_manifest" ]'
child=$(pgrep -f -- "pgstream --conninfo host=$(pg_dir p) .* --slot bsc_app" | head -1)
[ -n "$child" ] && [ "$(ps -o user= -p "$child")" = "$RELAY_USER" ] || fail "pgstream does not run as $RELAY_USER"
note "base backup $(pgsrc base | python3 -c 'import json,sys; b=json.load(sys.stdin); print(b["id"], b["bytes"], "bytes")') at the stand-in"

# Load: pgbench, and numbered rows whose commits are timed.
pg_bench p 12 2 &
LOAD=$!
rows_client p 800 "$T/rows" &
ROWS=$!
sleep 4
# The slot follows what basculed made durable: never ahead of it.
slot=$(pg_sql p "SELECT restart_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'bsc_app'")
durable=$(lsn_of "$(pgsrc durable_lsn)")
[ "$slot" -le "$durable" ] || fail "the slot ($slot) is ahead of the spool's durable WAL ($durable)"
wait "$ROWS"
last=$(tail -1 "$T/rows" | cut -d' ' -f1)
[ "$last" = 800 ] || fail "the rows client stopped at ${last:-nothing}"
# Every row committed so far must be at the stand-in when sync returns,
# pgbench still running.
expect_rc 0 timeout 90 "$BIN/bascule" --socket "$T/ctl.sock" sync app --wait --timeout 60s
wait "$LOAD" || fail "pgbench failed"
read -r med p99 max n < <(rpo_stats "$T/rows")
note "RPO (commit returned -> durable at the stand-in), synchronous: local, under pgbench: median ${med} ms, p99 ${p99} ms, max ${max} ms over $n commits"
tps=$(grep -h "^tps" "$(pg_dir p)/pgbench.log" | tail -1)
note "pgbench under protection (local): $tps"

# Quiet, then the final state: the same as the primary's.
pg_bench_digest p > "$T/digest.primary"
seg=$(pg_sql p "SELECT pg_walfile_name(pg_switch_wal())")
pg_sql p "CHECKPOINT" >/dev/null
end=$(pg_sql p "SELECT pg_current_wal_flush_lsn()")
expect_rc 0 timeout 90 "$BIN/bascule" --socket "$T/ctl.sock" sync app --wait --timeout 60s
acked=$(lsn_of "$(pgtgt acked_lsn)")
[ "$acked" -ge "$(lsn_of "$end")" ] || fail "sync returned with the stand-in at $(pgtgt acked_lsn), the primary at $end"

# Status, metrics, check.
[ "$(pgsrc state)" = '"streaming"' ] || fail "source state $(pgsrc state)"
[ "$(pgtgt needs_base)" = false ] || fail "the target needs a base: $(pgtgt needs_base)"
bsc metrics > "$T/metrics"
for m in bascule_pg_up bascule_pg_durable_lsn bascule_pg_slot_retained_bytes bascule_pg_spool_bytes \
	bascule_pg_base_backup_time_seconds bascule_pg_target_acked_lsn bascule_pg_target_lag_bytes \
	bascule_pg_target_lag_seconds bascule_pg_target_needs_base; do
	grep -q "^$m{.*source=\"db\"} " "$T/metrics" || fail "metric $m missing: $(grep bascule_pg "$T/metrics" | head)"
done
grep -q '^bascule_pg_up{group="app",source="db"} 1$' "$T/metrics" || fail "bascule_pg_up is not 1"
expect_rc 0 bsc check --max-lag 60s
grep -q "'pglag_secondary_app_db'=" "$T/out" || fail "bascule check has no postgres perfdata: $(cat "$T/out")"

# The stand-in's complete segments equal pg_receivewal's.
wait_for 60 "pg_receivewal to complete $seg" '[ -f "$T/prw/$seg" ]'
[ -f "$SINK/app/db/wal/$seg" ] || fail "the stand-in lacks the complete segment $seg after sync"
kill -TERM "$PRW"; wait "$PRW" 2>/dev/null || true
n=$(wal_compare "$SINK/app/db/wal" "$T/prw")
[ "$n" -ge 2 ] || fail "only $n complete segments to compare with pg_receivewal's"
note "$n complete WAL segments at the stand-in equal pg_receivewal's"

# Restored: every row committed before the sync, the same pgbench tables.
bsc_stop
sink_restore r
[ "$(pg_sql r "SELECT count(*), min(id), max(id) FROM t")" = "800|1|800" ] ||
	fail "the restored cluster has rows $(pg_sql r "SELECT count(*), min(id), max(id) FROM t") of 800"
pg_bench_digest r > "$T/digest.restored"
cmp -s "$T/digest.primary" "$T/digest.restored" || fail "restored tables differ: $(diff "$T/digest.primary" "$T/digest.restored")"
note "PostgreSQL started from the stand-in's base + WAL: 800 rows of 800, $(wc -l < "$T/digest.restored") pgbench tables equal"
