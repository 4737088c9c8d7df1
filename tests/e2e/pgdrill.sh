# pgdrill: a planned drill of a PostgreSQL database with real parts.  A real
# PostgreSQL 15 on the primary site under load (pgbench and a writer of
# numbered rows: the "application"), protected by basculed (a type: postgres
# source) into `bascule recv` at the secondary over SSH (cold standby).  The
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
PG_RELAY_USER=$RELAY_USER
. "$(dirname "$0")/../lib/sites.sh"
. "$ROOT/tests/lib/pg.sh"
need_root
t_start=$(date +%s.%N)

wait_for() {
	local s=$1 what=$2 cond=$3
	for _ in $(seq $((s * 10))); do eval "$cond" && return 0; sleep 0.1; done
	fail "timed out after ${s}s waiting for $what"
}
lsn_of() { python3 -c "h, l = '$1'.split('/'); print(int(h, 16) << 32 | int(l, 16))"; }
elapsed() { printf "%.1f" "$(echo "$(date +%s.%N) - $1" | bc)"; }

pg_init p
pg_start p
PD=$(pg_dir p)
pg_bench_init p 1
pg_sql p "CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
	CREATE ROLE drill LOGIN PASSWORD 'drill-pw-3'; GRANT SELECT ON t TO drill" >/dev/null
sed -i "s/^local all postgres trust/local all postgres trust\nlocal all drill scram-sha-256/" "$PD/data/pg_hba.conf"
pg_reload p

sites_up
start_sshd primary "$NS_P" "$IP_P" root
bsc_keygen
R=$T/secondary/replica
authorize_recv "$R"
cat > "$T/bascule.yaml" <<YAML
state_dir: $T/state
key: $T/site.key
control_socket: $T/ctl.sock
relay_user: $RELAY_USER
groups:
  - name: app
    sources:
      - name: db
        type: postgres
        conninfo: "$(pg_conninfo p)"
        slot: bsc_app
targets:
  - name: secondary
    url: ssh://$SSH_USER@$IP_S:22$R
    identity: $T/id_ed25519
    known_hosts: $T/known_hosts
    postgres_standby: cold
YAML
trust_secondary
NSEXEC=(ip netns exec "$NS_P")
bsc_start
acked() { status_get "d['targets'][0]['groups']['app']['postgres']['db']['acked_lsn']"; }
wait_for 120 "the first base backup acknowledged by the secondary" '[ "$(acked 2>/dev/null)" != None ] && [ -n "$(acked 2>/dev/null)" ]'
note "base backup acknowledged at $(acked) after $(elapsed "$t_start") s"

# The orchestrator's key for the primary (root there) and its host key.
ssh-keygen -q -t ed25519 -N "" -f "$T/drill_id" -C drill
cat "$T/drill_id.pub" > "$T/ssh-primary/authorized_keys"
in_secondary "$BIN/bascule" trust-host "$IP_P" --known-hosts "$T/drill_known_hosts" --yes >/dev/null \
	|| fail "trust-host of the primary failed"
"$BIN/bascule" keygen signing "$T/sign.key" >/dev/null

# The application: pgbench, and a writer committing ROWS more numbered rows
# (one transaction each); its stop waits for the writer, then ends pgbench.
ROWS=1000
cat > "$T/appctl" <<SH
#!/bin/bash
case \$1 in
start)
	runuser -u postgres -- $PG_BIN/pgbench -h $PD -U postgres -n -T 600 -c 2 postgres > $T/app-bench.log 2>&1 < /dev/null &
	echo \$! > $T/app-bench.pid
	( for i in \$(seq $ROWS); do echo "INSERT INTO t (id) SELECT coalesce(max(id), 0) + 1 FROM t;"; done |
		runuser -u postgres -- $PG_BIN/psql -X -q -h $PD -U postgres -d postgres -v ON_ERROR_STOP=1 ) > $T/app-rows.log 2>&1 < /dev/null &
	echo \$! > $T/app-rows.pid ;;
stop)
	for f in rows bench; do
		[ -f $T/app-\$f.pid ] || continue
		[ \$f = bench ] && kill -TERM \$(cat $T/app-\$f.pid) 2>/dev/null
		while kill -0 \$(cat $T/app-\$f.pid) 2>/dev/null; do sleep 0.05; done
		rm -f $T/app-\$f.pid
	done ;;
esac
SH
chmod +x "$T/appctl"

# The promoted database listens on its own socket at the secondary.
SOCK=$T/sock; mkdir -p "$SOCK"; chown postgres: "$SOCK"
printf "unix_socket_directories = '%s'\nport = 5433\nlisten_addresses = ''\n" "$SOCK" > "$T/site.conf"
stop_promoted() { [ -f "$R/app/db/postmaster.pid" ] && pg_as "$PG_BIN/pg_ctl" -D "$R/app/db" -m immediate -w stop >/dev/null 2>&1; return 0; }
EXIT_HOOKS+=(stop_promoted)
echo "*:*:*:drill:drill-pw-3" > "$T/drill.pgpass"; chmod 600 "$T/drill.pgpass"
CI2="host=$SOCK port=5433 dbname=postgres user=drill passfile=$T/drill.pgpass"
write_runbook() { # STOP_COMMAND EXPECTED_ROWS
	cat > "$T/runbook.yaml" <<YAML
name: "pgdrill: PostgreSQL from the primary to the secondary"
objectives:
  rto: 5m
  rpo: 0s
hosts:
  - name: primary
    url: ssh://root@$IP_P:22
    identity: $T/drill_id
    known_hosts: $T/drill_known_hosts
  - name: secondary
    url: local
primary:
  host: primary
  bascule: $BIN/bascule
  control_socket: $T/ctl.sock
  sync_timeout: 60s
secondary:
  host: secondary
  bascule: $BIN/bascule
  replica_root: $R
  site_key: $T/secondary/site.key
prechecks:
  max_lag: 60s
services:
  - name: app
    group: app
    stop: $T/appctl stop
    stop_timeout: 60s
    start: "true"
    restart: $T/appctl start
    checks:
      - name: rows
        sql: "$CI2"
        query: "SELECT count(*) FROM t"
        expect: "$2"
        timeout: 3s
        retries: 20
        interval: 250ms
      - name: primary
        sql: "$CI2"
        query: "SELECT NOT pg_is_in_recovery()"
        expect: "t"
        timeout: 3s
        retries: 0
databases:
  - name: shop
    source: app/db
    data_dir: $PD/data
    pg_bin: $PG_BIN
    stop: "$1"
    restart: "runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data status > /dev/null || runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data -l $PD/log -w -t 60 start > /dev/null"
    pg_conf: $T/site.conf
report:
  dir: $T/reports
  signing_key: $T/sign.key
state_dir: $T/drillstate
YAML
	chmod 600 "$T/runbook.yaml"
}
write_runbook "[ ! -f $PD/data/postmaster.pid ] || runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data -m fast -w -t 60 stop" $((2 * ROWS))
in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode plan > "$T/plan.out" || fail "plan: $(cat "$T/plan.out")"
grep -q "database-stop .*shut down database shop on primary" "$T/plan.out" && grep -q "database-acked" "$T/plan.out" \
	&& grep -q "database-start .*start database shop on secondary" "$T/plan.out" || fail "the plan lacks the database steps: $(cat "$T/plan.out")"

in_primary "$T/appctl" start
wait_for 60 "the writer's first rows" '[ "$(pg_sql p "SELECT count(*) FROM t")" -ge 100 ]'

# A database stop that returns while PostgreSQL still runs is refused (no
# final LSN: pg_control does not say "shut down").  --abort brings
# production back.
cp "$T/runbook.yaml" "$T/runbook.good"
write_runbook "true" $((2 * ROWS))
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
grep -q "database shop (app/db): final LSN $final, acknowledged by secondary $acked_lsn (epoch [0-9]*), promoted to $promoted; RPO 0 by LSN" "$T/drill.out" \
	|| fail "the summary does not show the LSNs: $(cat "$T/drill.out")"
# The final LSN is where the WAL PostgreSQL streamed ends: basculed received exactly that.
received=$(status_get "next(s for s in d['groups'][0]['sources'] if s['name'] == 'db')['postgres']['received_lsn']")
[ "$received" = "$final" ] || fail "the drill's final LSN $final is not where the streamed WAL ends ($received)"
note "planned drill: PASS in $drill_s s; final LSN $final (shutdown checkpoint $(rf "db['checkpoint_lsn']")), acknowledged $acked_lsn, promoted to $promoted (timeline $(rf "db['timeline']")), RTO $(python3 -c "import json; print(json.load(open('$rep'))['report']['achieved']['rto_us']/1e6)") s"

# The promoted database: every committed row, the pgbench tables as the primary has them.
psql2() { pg_as "$PG_BIN/psql" -X -q -At -h "$SOCK" -p 5433 -U postgres -d postgres -c "$1"; }
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
