# pgzeroloss: synchronous: remote with synchronous_standby_names naming the
# source's application_name.  A client commits numbered rows and records
# each commit that returned; postgres (postmaster and backends) and basculed
# are killed -9 at a random moment: every recorded commit is in the store
# of tests/helpers/pgsink (a STAND-IN for `bascule recv`: see pgprimary.sh),
# as its base + WAL restored into a data directory show.  While streaming,
# the position reported flushed to PostgreSQL never passes what the stand-in
# acknowledged.  pgbench TPS unprotected, synchronous: local and remote.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root

pg_init p
pg_start p
pg_bench_init p 4
tps() { grep -h "^tps" "$(pg_dir p)/pgbench.log" | tail -1 | awk '{printf "%.0f", $3}'; }
pg_bench p 8 2
unprotected=$(tps)
bsc_keygen
sink_config p "synchronous: local"
bsc_start
wait_for 60 "the stand-in's first base backup" '[ -f "$SINK/app/db/base/backup_manifest" ]'
pg_bench p 8 2
local_tps=$(tps)
# Remote: commits wait for the stand-in (a reload switches the mode).
sink_config p "synchronous: remote"
bsc reload >/dev/null || fail "reload to synchronous: remote failed"
pg_set p synchronous_standby_names bsc_app
pg_reload p
wait_for 30 "bsc_app to be the synchronous standby" \
	'[ "$(pg_sql p "SELECT sync_state FROM pg_stat_replication WHERE application_name = '"'bsc_app'"'")" = sync ]'
pg_bench p 8 2
remote_tps=$(tps)
note "pgbench TPS (2 clients, 8 s each, this machine): unprotected $unprotected, synchronous: local $local_tps, remote $remote_tps"

# The flush PostgreSQL is told never passes what the stand-in acknowledged.
pg_bench p 3 2 &
LOAD=$!
for _ in $(seq 10); do
	flush=$(pg_sql p "SELECT coalesce(flush_lsn - '0/0'::pg_lsn, 0) FROM pg_stat_replication WHERE application_name = 'bsc_app'")
	acked=$(awk 'BEGIN { m = 0 } $4 == "db" && $5 > m { m = $5 } END { print m }' "$SINK/acks.log")
	[ "${flush:-0}" -le "$acked" ] || fail "PostgreSQL was told $flush is flushed, the stand-in holds $acked"
	sleep 0.2
done
wait "$LOAD" || fail "pgbench failed"

# Numbered rows, then kill -9 of everything at a random moment.
rows_client p 100000 "$T/rows" &
ROWS=$!
sleep "$((2 + RANDOM % 3)).$((RANDOM % 10))"
pg_kill9 p
wait "$ROWS" || true
n=$(wc -l < "$T/rows")
[ "$n" -ge 20 ] || fail "only $n commits returned before the kill"
last=$(tail -1 "$T/rows" | cut -d' ' -f1)
# The stand-in's end may be cut inside an epoch: it ends at its last ack.
wait_for 10 "the stand-in to exit" '! pgrep -f "tests/pgsink --root $SINK" >/dev/null'
sink_restore r
missing=$(pg_sql r "SELECT count(*) FROM generate_series(1, $last) g WHERE NOT EXISTS (SELECT 1 FROM t WHERE id = g)")
[ "$missing" = 0 ] || fail "$missing of the $last commits that returned are not in the stand-in's store"
note "killed -9 (postgres and basculed) after $last commits had returned: all $last in the stand-in's store ($(pg_sql r "SELECT count(*) FROM t") rows restored)"
