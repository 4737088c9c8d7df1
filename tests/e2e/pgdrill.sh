# pgdrill: a planned drill of a PostgreSQL database with real parts.  A real
# PostgreSQL 15 on the primary site under load (pgbench and a writer of
# numbered rows: the "application"), protected by basculed (a type: postgres
# source) into `bascule recv` at the secondary over SSH (cold standby;
# PGDRILL_STANDBY=hot runs it with a hot standby).  The
# orchestrator runs at the secondary and reaches the primary over SSH.
#   - a database stop that returns while PostgreSQL runs is refused at the
#     database step, and --abort brings the database and the application back;
#   - the drill stops the application, shuts PostgreSQL down cleanly, reads
#     its final LSN (pg_control, the shutdown checkpoint) and waits until the
#     replica target acknowledged it, promotes, starts the promoted database
#     and runs the sql checks: PASS;
#   - the signed report shows RPO 0 by LSN: the primary's final LSN, the
#     target's acknowledged LSN and the promoted LSN, equal; it verifies, and
#     an edited LSN does not;
#   - the final LSN the drill computed is where the WAL PostgreSQL streamed
#     ends (basculed's received LSN), and the promoted database holds every
#     row the writer committed and the pgbench tables exactly as the primary
#     has them.
. "$(dirname "$0")/../lib/common.sh"
. "$ROOT/tests/lib/pgdrill.sh"
need_root
t_start=$(date +%s.%N)
pgdrill_up
write_runbook "[ ! -f $PD/data/postmaster.pid ] || runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data -m fast -w -t 60 stop" "SELECT count(*) FROM t" $((2 * ROWS))
in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode plan > "$T/plan.out" || fail "plan: $(cat "$T/plan.out")"
grep -q "database-stop .*shut down database shop on primary" "$T/plan.out" && grep -q "database-acked" "$T/plan.out" \
	&& grep -q "database-start .*start database shop on secondary" "$T/plan.out" || fail "the plan lacks the database steps: $(cat "$T/plan.out")"

in_primary "$T/appctl" start
wait_for 60 "the writer's first rows" '[ "$(pg_sql p "SELECT count(*) FROM t")" -ge 100 ]'

# A database stop that returns while PostgreSQL still runs is refused (no
# final LSN: pg_control does not say "shut down").  --abort brings
# production back.
cp "$T/runbook.yaml" "$T/runbook.good"
write_runbook "true" "SELECT count(*) FROM t" $((2 * ROWS))
set +e; in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode planned > "$T/crash.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "FAIL .*shut down database shop on primary .*database shop on primary is not shut down cleanly after its stop command (pg_control says 'in production')" "$T/crash.out" \
	|| fail "a stop leaving PostgreSQL running was not refused: exit $rc: $(cat "$T/crash.out")"
grep -q "pending .*promote app" "$T/crash.out" || fail "the drill went on after the refused stop"
set +e; in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --abort > "$T/abort.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "(planned): ABORTED" "$T/abort.out" && grep -q "ok .*restart database shop on primary" "$T/abort.out" \
	|| fail "abort: exit $rc: $(cat "$T/abort.out")"
[ "$(pg_sql p "SELECT NOT pg_is_in_recovery()")" = t ] || fail "the primary database is not back after the abort"
wait_for 60 "the application writing again" '[ "$(pg_sql p "SELECT count(*) FROM t")" -gt '"$ROWS"' ]'
pgsrc_state() { status_get "next(s for s in d['groups'][0]['sources'] if s['name'] == 'db')['postgres']['state']"; }
wait_for 60 "the source streaming again" '[ "$(pgsrc_state)" = streaming ]'
cp "$T/runbook.good" "$T/runbook.yaml"
note "a stop leaving PostgreSQL running refused at the database step; --abort restarted the application"
t_drill=$(date +%s.%N)
set +e; in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode planned > "$T/drill.out" 2>&1; rc=$?; set -e
drill_s=$(elapsed "$t_drill")
[ $rc = 0 ] && grep -q "(planned): PASS" "$T/drill.out" || fail "planned drill exit $rc: $(cat "$T/drill.out")"
rep=$(ls -t "$T"/reports/*planned.json | grep -v journal | head -1)
rf() { python3 -c "import json; r=json.load(open('$rep'))['report']; db=r['groups'][0]['databases'][0]; print($1)"; }
final=$(rf "db['final_lsn']")
acked_lsn=$(rf "db['targets']['secondary']['acked_lsn']")
promoted=$(rf "db['promoted_lsn']")
[ "$(rf "db['rpo_by_lsn'] and r['achieved']['rpo_us'] == 0 and r['achieved']['rpo_met']")" = True ] \
	|| fail "the report does not show RPO 0 by LSN: $(rf "db")"
[ "$(lsn_of "$acked_lsn")" -ge "$(lsn_of "$final")" ] && [ "$(lsn_of "$promoted")" -ge "$(lsn_of "$final")" ] \
	|| fail "final LSN $final, acknowledged $acked_lsn, promoted to $promoted"
[ "$(rf "db['standby']")" = "$PGDRILL_STANDBY" ] || fail "promote reports a $(rf "db['standby']") standby, the target is $PGDRILL_STANDBY"
grep -q "database shop (app/db): final LSN $final, acknowledged by secondary $acked_lsn (epoch [0-9]*), promoted to $promoted; RPO 0 by LSN" "$T/drill.out" \
	|| fail "the summary does not show the LSNs: $(cat "$T/drill.out")"
# The final LSN is where the WAL PostgreSQL streamed ends: basculed received exactly that.
received=$(status_get "next(s for s in d['groups'][0]['sources'] if s['name'] == 'db')['postgres']['received_lsn']")
[ "$received" = "$final" ] || fail "the drill's final LSN $final is not where the streamed WAL ends ($received)"
note "planned drill: PASS in $drill_s s; final LSN $final (shutdown checkpoint $(rf "db['checkpoint_lsn']")), acknowledged $acked_lsn, promoted to $promoted (timeline $(rf "db['timeline']"), $PGDRILL_STANDBY standby), RTO $(python3 -c "import json; print(json.load(open('$rep'))['report']['achieved']['rto_us']/1e6)") s"

# The promoted database: every committed row, the pgbench tables as the primary has them.
[ "$(psql2 "SELECT count(*), min(id), max(id) FROM t")" = "$((2 * ROWS))|1|$((2 * ROWS))" ] || fail "the promoted database lacks rows: $(psql2 "SELECT count(*), max(id) FROM t")"
for tb in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
	psql2 "SELECT '$tb', count(*), coalesce(sum(hashtext(x::text)::bigint), 0) FROM $tb x"
done > "$T/digest.promoted"
pg_start p # the old primary, unchanged since its shutdown
pg_bench_digest p > "$T/digest.primary"
cmp -s "$T/digest.primary" "$T/digest.promoted" || fail "the promoted pgbench tables differ: $(diff "$T/digest.primary" "$T/digest.promoted")"
note "promoted: all $((2 * ROWS)) rows, pgbench tables equal the primary's ($(grep history "$T/digest.primary" | cut -d'|' -f2) history rows)"

# The report: signed, and an edited LSN is refused.
"$BIN/bascule" report verify --key "$T/sign.key.pub" "$rep" >/dev/null || fail "the report does not verify"
"$BIN/bascule" report verify --key "$T/sign.key.pub" "${rep%.json}.html" >/dev/null || fail "the report's page does not verify"
grep -q "<h2>Databases</h2>" "${rep%.json}.html" || fail "the page has no Databases table"
sed "s|\"final_lsn\": \"$final\"|\"final_lsn\": \"0/1\"|" "$rep" > "$T/edited.json"
cmp -s "$rep" "$T/edited.json" && fail "the edit had no effect"
set +e; "$BIN/bascule" report verify --key "$T/sign.key.pub" "$T/edited.json" 2>/dev/null; rc=$?; set -e
[ $rc = 1 ] || fail "a report with an edited LSN verified (exit $rc)"
note "report signed and verified; an edited LSN refused; whole test $(elapsed "$t_start") s"
