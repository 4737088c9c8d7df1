# pgdrillunplanned: an unplanned drill of a PostgreSQL database with real
# parts (the sites of tests/lib/pgdrill.sh: PostgreSQL 15 on the primary
# under load, basculed over SSH into recv, cold standby).  The primary site
# is lost at a random moment (kill -9 of every postgres process and of
# basculed) while the application commits numbered rows; the orchestrator
# at the secondary promotes the newest epoch acknowledged, starts the
# database and checks it.
#   - the drill completes, FAIL against an RPO objective of 0 (exit 1);
#   - the report's data loss is the incident minus the time of the last
#     transaction recovered, which is the commit of the last row present;
#   - the rows present are a prefix of those committed, and every row the
#     old primary committed and the secondary lacks was committed inside
#     that window (after the last transaction recovered, before the incident).
. "$(dirname "$0")/../lib/common.sh"
ROWS=1000000 # the writer still commits when the site is lost
. "$ROOT/tests/lib/pgdrill.sh"
need_root
t_start=$(date +%s.%N)
pgdrill_up
write_runbook "true" "SELECT count(*) > 0 FROM t" t
in_primary "$T/appctl" start
wait_for 60 "the writer's first rows" '[ "$(pg_sql p "SELECT count(*) FROM t")" -ge 200 ]'
sleep "0.$((RANDOM % 10))"
post=$(head -1 "$PD/data/postmaster.pid")
pids="$post $(pgrep -P "$post" | tr '\n' ' ')"
kill -9 $pids "$DAEMON_PID" 2>/dev/null || true
incident=$(date +%s.%6N) # microseconds, as the report counts
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=""
for p in $pids; do wait_for 10 "postgres process $p to end" "gone $p"; done
in_primary "$T/appctl" stop # the writer and pgbench end: their server is gone

t_drill=$(date +%s.%N)
set +e; in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode unplanned --incident "@$incident" > "$T/drill.out" 2>&1; rc=$?; set -e
drill_s=$(elapsed "$t_drill")
[ $rc = 1 ] && grep -q "(unplanned): FAIL" "$T/drill.out" && grep -q "RPO .* (objective 0.00 s): NOT met" "$T/drill.out" \
	|| fail "unplanned drill: exit $rc (want 1: done, RPO 0 not met): $(cat "$T/drill.out")"
grep -q "ok .*start database shop on secondary" "$T/drill.out" && grep -q "ok .*check app (2 checks" "$T/drill.out" \
	|| fail "the promoted database was not started and checked: $(cat "$T/drill.out")"
rep=$(ls -t "$T"/reports/*unplanned.json | grep -v journal | head -1)
rf() { python3 -c "import json; r=json.load(open('$rep'))['report']; db=r['groups'][0]['databases'][0]; print($1)"; }
last_us=$(rf "db['last_transaction_us']")
loss_us=$(rf "db['data_loss_us']")
inc_us=$(python3 -c "print(round($incident * 1e6))")
[ "$last_us" -gt 0 ] || fail "the report has no last transaction: $(rf db)"
[ "$loss_us" = $((inc_us - last_us)) ] && [ "$(rf "r['achieved']['rpo_us']")" = "$loss_us" ] \
	|| fail "data loss $loss_us, incident $inc_us, last transaction $last_us: $(rf "r['achieved']")"

# The secondary holds a prefix of the rows; its last row's commit is the last transaction recovered.
n=$(psql2 "SELECT count(*) FROM t")
[ "$n" -ge 1 ] && [ "$(psql2 "SELECT max(id) FROM t")" = "$n" ] || fail "the promoted rows are not a prefix: $(psql2 "SELECT count(*), max(id) FROM t")"
max_at=$(psql2 "SELECT (extract(epoch FROM max(at)) * 1e6)::bigint FROM t")
[ "$last_us" -ge "$max_at" ] && [ $((last_us - max_at)) -lt 1000000 ] \
	|| fail "the last transaction recovered ($last_us) is not the commit of the last row present (inserted at $max_at)"
# The old primary, recovered from its crash: what it committed that the secondary lacks lies in the window.
rm -f "$PD/data/postmaster.pid"
pg_start p
m=$(pg_sql p "SELECT count(*) FROM t")
[ "$m" -ge "$n" ] || fail "the old primary has fewer rows ($m) than the promoted database ($n)"
outside=$(pg_sql p "SELECT count(*) FROM t WHERE id > $n AND (at <= to_timestamp($max_at / 1e6) OR at > to_timestamp($incident))")
[ "$outside" = 0 ] || fail "$outside rows lost outside the reported window"
note "unplanned drill in $drill_s s: $n rows promoted, $((m - n)) lost, all committed within the reported data loss $(python3 -c "print($loss_us / 1e6)") s (last transaction recovered to the incident); RTO $(rf "r['achieved']['rto_us'] / 1e6") s; whole test $(elapsed "$t_start") s"
