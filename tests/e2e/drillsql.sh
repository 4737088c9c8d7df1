# drillsql: the runbook's sql check (libpq) against a real PostgreSQL 15, in
# short unplanned drills with no daemon (a service with no group: nothing
# to promote, only its start and its checks).
#   - a check waiting for a database that comes up after the start returns:
#     PASS once the query gives the expected value;
#   - a wrong expected value fails the step with the query's result, exit 2;
#   - a query error, a query still running at the timeout (cancelled on the
#     server), a refused connection: each its sentence, never a password;
#   - a password in the conninfo is refused at load with file:line:col.
. "$(dirname "$0")/../lib/common.sh"
. "$ROOT/tests/lib/pg.sh"
need_root

pg_init db
pg_start db
PD=$(pg_dir db)
pg_sql db "CREATE ROLE drill LOGIN PASSWORD 'drill-secret-7'" >/dev/null
pg_sql db "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 3);
	GRANT SELECT ON orders TO drill" >/dev/null
sed -i "s/^local all postgres trust/local all postgres trust\nlocal all drill scram-sha-256/" "$PD/data/pg_hba.conf"
pg_reload db
echo "*:*:*:drill:drill-secret-7" > "$T/drill.pgpass"; chmod 600 "$T/drill.pgpass"
CI="host=$PD port=5432 dbname=postgres user=drill passfile=$T/drill.pgpass"
mkdir -p "$T/replica/.bascule" # an empty replica directory (bascule recv makes it)

# runbook START QUERY EXPECT [TIMEOUT] [RETRIES] [CONNINFO]
runbook() {
	cat > "$T/runbook.yaml" <<YAML
name: "sql check"
objectives:
  rto: 1m
hosts:
  - name: here
    url: local
primary:
  host: here
  bascule: $BIN/bascule
secondary:
  host: here
  bascule: $BIN/bascule
  replica_root: $T/replica
services:
  - name: db
    start: $1
    start_timeout: 30s
    checks:
      - name: orders
        sql: "${6:-$CI}"
        query: "$2"
        expect: "$3"
        timeout: ${4:-5s}
        retries: ${5:-0}
        interval: 200ms
report:
  dir: $T/reports
state_dir: $T/state
YAML
	chmod 600 "$T/runbook.yaml"
}
drill() {
	set +e; "$BIN/bascule" drill "$T/runbook.yaml" --mode unplanned > "$T/drill.out" 2>&1; rc=$?; set -e
	REP=$T/last.json # as the drill left it (an --abort rewrites it)
	cp "$(ls -t "$T"/reports/*.json | grep -v journal | head -1)" "$REP"
	# A failed drill is left for --resume or --abort: abort it (nothing to undo).
	[ -e "$T/state/current.json" ] && "$BIN/bascule" drill "$T/runbook.yaml" --abort > /dev/null 2>&1 || true
	! grep -q "drill-secret-7" "$T/drill.out" "$T"/reports/* || fail "a password appears in the drill's output or report"
	return 0
}

# 1. The database comes up a second after the start returns: the check waits for it.
pg_stop db
runbook "(sleep 1; runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data -l $PD/log -w start) >/dev/null 2>&1 </dev/null &" \
	"SELECT count(*) FROM orders" 3 2s 50
drill
[ $rc = 0 ] && grep -q "(unplanned): PASS" "$T/drill.out" || fail "sql check: exit $rc: $(cat "$T/drill.out")"
att=$(python3 -c "import json; print([s['attempts'] for s in json.load(open('$REP'))['report']['steps'] if s['kind']=='check'][0])")
[ "$att" -gt 1 ] || fail "the database was down at the first attempt, yet the check passed at once"
note "sql check: PASS after $att attempts (the database came up after the start)"

# 2. A wrong expected value: the step fails with the query's result.
runbook true "SELECT count(*) FROM orders" 4 2s 1
drill
[ $rc = 2 ] || fail "a wrong expected value: exit $rc, wanted 2: $(cat "$T/drill.out")"
grep -q "FAIL .*check db.*check orders failed after 2 attempts: host=$PD port=5432 dbname=postgres user=drill: the query returned '3', wanted '4'" "$T/drill.out" \
	|| fail "the failed step does not say what the query returned: $(cat "$T/drill.out")"
python3 -c "import json,sys; r=json.load(open('$REP'))['report']; s=[s for s in r['steps'] if s['kind']=='check'][0]
sys.exit(0 if r['result']=='ERROR' and s['status']=='failed' and \"returned '3', wanted '4'\" in s['message'] else 1)" \
	|| fail "the report does not hold the failed check"
note "wrong expected value: exit 2, step failed with \"returned '3', wanted '4'\""

# 3. A query error, a query cancelled at the timeout, a refused connection.
runbook true "SELECT nope FROM orders" 1
drill
grep -q "the query failed: ERROR:  column \"nope\" does not exist" "$T/drill.out" || fail "query error: $(cat "$T/drill.out")"
runbook true "SELECT pg_sleep(30)" "" 500ms
t0=$(date +%s)
drill
grep -q "the query did not finish within 0.5 s (cancelled)" "$T/drill.out" || fail "query timeout: $(cat "$T/drill.out")"
[ $(($(date +%s) - t0)) -lt 10 ] || fail "the timed-out query held the drill"
for _ in $(seq 50); do
	[ "$(pg_sql db "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")" = 0 ] && break
	sleep 0.1
done
[ "$(pg_sql db "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")" = 0 ] \
	|| fail "the timed-out query still runs on the server: it was not cancelled"
runbook true "SELECT 1" 1 1s 0 "host=$PD port=5499 dbname=postgres user=drill passfile=$T/drill.pgpass"
drill
grep -q "cannot connect to host=$PD port=5499 dbname=postgres user=drill: connection to server on socket" "$T/drill.out" \
	|| fail "refused connection: $(cat "$T/drill.out")"
note "query error, timeout (cancelled on the server), refused connection: each named"

# 4. A password in the conninfo is refused at load, without quoting it.
runbook true "SELECT 1" 1 1s 0 "host=$PD dbname=postgres user=drill password=drill-secret-7"
set +e; "$BIN/bascule" drill "$T/runbook.yaml" --mode plan > "$T/plan.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "runbook.yaml:[0-9]*:[0-9]*: check 'orders' of service 'db': the conninfo holds a password.*passfile" "$T/plan.out" \
	|| fail "a password in the conninfo: exit $rc: $(cat "$T/plan.out")"
grep -q drill-secret-7 "$T/plan.out" && fail "the refusal quotes the password"
runbook true "SELECT 1" 1 1s 0 "host=$PD port=notaport dbname"
set +e; "$BIN/bascule" drill "$T/runbook.yaml" --mode plan > "$T/plan.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "runbook.yaml:[0-9]*:[0-9]*: check 'orders' of service 'db': the conninfo does not parse" "$T/plan.out" \
	|| fail "a conninfo that does not parse: exit $rc: $(cat "$T/plan.out")"
note "a password in the conninfo, a conninfo that does not parse: refused at load (exit 2, file:line:col)"
