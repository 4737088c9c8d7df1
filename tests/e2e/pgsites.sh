# pgsites: a PostgreSQL 15 cluster on the primary site protected by basculed
# into the real `bascule recv` at the secondary over SSH (tests/lib/sites.sh),
# every part real:
#  - the initial base backup and the WAL streamed under pgbench load reach
#    the secondary's replica store; `sync app --wait` returns once the
#    secondary holds every transaction committed before the call;
#  - kill -9 of recv in the middle of the streaming: basculed reconnects,
#    the WAL goes on from where the secondary's committed copy ends;
#  - zero loss with synchronous: remote (synchronous_standby_names naming
#    the source): a client commits numbered rows, postgres and basculed are
#    killed -9 at a random moment;
#  - postgres_standby: hot: recv starts a PostgreSQL standby at the
#    secondary (as the receiving user, with the command='s --pg-conf) that
#    replays the received WAL: a row committed on the primary is readable
#    there within seconds; it goes on while recv is killed and restarted;
#  - `bascule replica promote` at the secondary then promotes the standby:
#    a primary (timeline 2) in seconds, whose pgbench tables equal the
#    primary's and which holds every numbered row whose commit returned;
#    the epoch it names is labelled consistent (WAL-only), not fuzzy;
#  - recv's lines reach basculed's log at their own level ("hot standby
#    started" at info): until the kill, none is a warning.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/sites.sh"
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root
sites_up
bsc_keygen
R=$T/secondary/replica
authorize_recv "$R"
pg_site_standby "$R"
trust_secondary
pg_init p
pg_start p
pg_bench_init p 4
config() { # SYNCHRONOUS
	pg_bsc_config p "ssh://$SSH_USER@$IP_S$R" "synchronous: $1" "wal_interval: 200ms" -- \
		"identity: $T/id_ed25519" "known_hosts: $T/known_hosts" "postgres_standby: hot"
}
config local
NSEXEC=(ip netns exec "$NS_P")
bsc_start
wait_for 90 "the first epoch acknowledged by the secondary" '[ "$(pgtgt acked_lsn)" != null ]'
wait_for 90 "the hot standby at the secondary to accept connections" 'psql2 "SELECT 1" >/dev/null 2>&1'
[ "$(psql2 "SELECT pg_is_in_recovery()")" = t ] || fail "the secondary's PostgreSQL is not a standby"
pg_sql p "CREATE TABLE mark (x int); INSERT INTO mark VALUES (42)" >/dev/null
t0=$(date +%s.%N)
wait_for 30 "the row to be readable on the hot standby" '[ "$(psql2 "SELECT x FROM mark" 2>/dev/null)" = 42 ]'
note "hot standby at the secondary: a committed row readable there after $(printf %.2f "$(echo "$(date +%s.%N) - $t0" | bc)") s"
# recv's lines come into the daemon's log at their own level: it warned of nothing in this run so far.
grep -q "^basculed: target secondary: receiver: bascule-recv: app/db: hot standby started in " "$T/daemon.log" ||
	fail "recv's 'hot standby started' is not logged at info: $(grep "hot standby" "$T/daemon.log")"
! grep "warning: target secondary: receiver: " "$T/daemon.log" > "$T/warnings" ||
	fail "$(wc -l < "$T/warnings") of recv's lines as warnings in a normal run: $(head -3 "$T/warnings")"
note "base backup $(pgsrc base | python3 -c 'import json,sys; b=json.load(sys.stdin); print(b["id"], b["bytes"], "bytes")') at the secondary"

pg_bench p 10 2 &
LOAD=$!
rows_client p 500 "$T/rows" &
ROWS=$!
sleep 3
# kill -9 of the receiver mid-stream: the daemon reconnects and goes on.
pid=$(pgrep -u "$SSH_USER" -f "bascule recv --root $R" | head -1)
[ -n "$pid" ] || fail "no bascule recv running at the secondary"
kill -9 "$pid"
wait "$ROWS"
[ "$(tail -1 "$T/rows" | cut -d' ' -f1)" = 500 ] || fail "the rows client stopped at $(tail -1 "$T/rows")"
expect_rc 0 timeout 120 "$BIN/bascule" --socket "$T/ctl.sock" sync app --wait --timeout 90s
[ "$(grep -c "target secondary: connected" "$T/daemon.log")" -ge 2 ] ||
	fail "basculed did not reconnect after recv was killed: $(grep "target secondary" "$T/daemon.log" | tail -3)"
wait "$LOAD" || fail "pgbench failed"

# The final state, then a sync: the secondary holds it.
pg_sql p "CHECKPOINT" >/dev/null
pg_bench_digest p > "$T/digest.primary"
end=$(pg_sql p "SELECT pg_current_wal_flush_lsn()")
expect_rc 0 timeout 120 "$BIN/bascule" --socket "$T/ctl.sock" sync app --wait --timeout 90s
acked=$(lsn_of "$(pgtgt acked_lsn)")
[ "$acked" -ge "$(lsn_of "$end")" ] || fail "sync returned with the secondary at $(pgtgt acked_lsn), the primary at $end"
expect_rc 0 bsc check --max-lag 60s
expect_rc 0 bsc status
grep -q "^  postgres db  *streaming  *received [0-9A-F]*/[0-9A-F]* durable" "$T/out" || fail "bascule status shows no streaming postgres source: $(cat "$T/out")"
grep -q "^    db  *acked [0-9A-F]*/[0-9A-F]* lag" "$T/out" || fail "bascule status shows no acked LSN of the target: $(cat "$T/out")"

# Zero loss: synchronous: remote, then kill -9 of postgres and basculed.
config remote
bsc reload >/dev/null || fail "reload to synchronous: remote failed"
pg_set p synchronous_standby_names bsc_app
pg_reload p
wait_for 30 "bsc_app to be the synchronous standby" \
	'[ "$(pg_sql p "SELECT sync_state FROM pg_stat_replication WHERE application_name = '"'bsc_app'"'")" = sync ]'
# A burst of WAL (a bulk load, ~64 MiB: the spool's writer zero-fills and
# syncs new segments meanwhile): WAL cut from the tail in memory must stay
# readable (a tail that wrapped past the spool's files lost it: "no longer
# holds", the target disconnected, the commits stalled).
lost() { grep -c "no longer holds\|sending failed" "$T/daemon.log" || true; }
n0=$(lost)
pg_sql p "CREATE TABLE burst AS SELECT g, repeat(md5(g::text), 16) AS pad FROM generate_series(1, 120000) g" >/dev/null
[ "$(lost)" = "$n0" ] || fail "a burst of WAL in synchronous: remote: $(grep "no longer holds\|sending failed" "$T/daemon.log" | tail -2)"
pg_sql p "DROP TABLE burst" >/dev/null
pg_sql p "TRUNCATE t" >/dev/null
rows_client p 100000 "$T/rows" &
ROWS=$!
sleep "$((2 + RANDOM % 3)).$((RANDOM % 10))"
pg_kill9 p
wait "$ROWS" || true
last=$(tail -1 "$T/rows" | cut -d' ' -f1)
[ "${last:-0}" -ge 20 ] || fail "only ${last:-no} commits returned before the kill"
wait_for 20 "the receiver to exit" '! pgrep -u "$SSH_USER" -f "bascule recv --root $R" >/dev/null'

# Promote at the secondary (the hot standby): a primary with every row and equal tables.
t0=$(date +%s.%N)
expect_rc 0 "$BIN/bascule" replica promote --root "$R" --key "$T/secondary/site.key" --group app \
	--pg-conf "$T/site.conf"
t1=$(date +%s.%N)
grep -q "standby promoted" "$T/out" || fail "promote did not promote the hot standby: $(cat "$T/out")"
# The group's epochs are WAL-only (no disk is scanned): consistent by PostgreSQL's recovery, not fuzzy.
grep -q "^group app promoted at epoch [0-9]* (consistent: WAL, by PostgreSQL recovery)" "$T/out" ||
	fail "promote does not label the WAL-only epoch consistent: $(head -1 "$T/out")"
D=$R/app/db
[ "$(psql2 "SELECT pg_is_in_recovery()")" = f ] || fail "the promoted cluster is in recovery"
missing=$(psql2 "SELECT count(*) FROM generate_series(1, $last) g WHERE NOT EXISTS (SELECT 1 FROM t WHERE id = g)")
[ "$missing" = 0 ] || fail "$missing of the $last commits that returned are not in the promoted cluster"
for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
	psql2 "SELECT '$t', count(*), coalesce(sum(hashtext(x::text)::bigint), 0) FROM $t x"
done > "$T/digest.promoted"
cmp -s "$T/digest.primary" "$T/digest.promoted" || fail "promoted tables differ: $(diff "$T/digest.primary" "$T/digest.promoted")"
note "killed -9 (postgres, basculed) after $last commits returned (synchronous: remote); hot standby promoted in $(printf %.1f "$(echo "$t1 - $t0" | bc)") s: all $last rows there, the pgbench tables equal the primary's"
