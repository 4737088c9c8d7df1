# pgdrilltest: a test drill of a PostgreSQL database with real parts.  A
# real PostgreSQL 15 on the primary site under load (pgbench and a writer of
# numbered rows that goes on through the whole drill), protected by basculed
# into `bascule recv` at the secondary over SSH, with a hot standby there.
#   - a runbook whose database says nothing of how its clone starts (no
#     test_port, no test_start) is refused in test mode (exit 2, with the
#     database's position and the key to add);
#   - the test drill clones the group (the database recovered from the
#     stored base and WAL to the clone's epoch), starts the clone on its
#     test_port, runs the sql checks against it (test_sql), stops and removes
#     it: PASS;
#   - while the clone runs the hot standby keeps replaying (its replay LSN
#     advances under the load) and is the same server after the drill;
#   - the clone answered with the data at its epoch: a prefix of the rows
#     committed on the primary, equal to the primary's own, its last row
#     inserted before the clone's last transaction, while the primary has
#     rows beyond it;
#   - the primary is untouched (same server, never in recovery, still
#     written to, the group neither paused nor behind), and nothing is left
#     behind: no clone directory, no server on the test port;
#   - the signed report shows the clone: LSN, timeline, last transaction.
. "$(dirname "$0")/../lib/common.sh"
ROWS=${ROWS:-1000000} # the writer goes on through the drill; stopped by its pid
PGDRILL_STANDBY=hot
. "$ROOT/tests/lib/pgdrill.sh"
need_root
t_start=$(date +%s.%N)
pgdrill_up
TEST_PORT=5434
CI3="host=$SOCK port=$TEST_PORT dbname=postgres user=drill passfile=$T/drill.pgpass"
write_runbook "runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data -m fast -w -t 60 stop" "SELECT count(*) = max(id) FROM t" t
wait_for 60 "the hot standby replaying" '[ "$(psql2 "SELECT pg_is_in_recovery()" 2>/dev/null)" = t ]'
standby_pid=$(head -1 "$R/app/db/postmaster.pid")
primary_pid=$(head -1 "$PD/data/postmaster.pid")

# Bad input: nothing says where the clone listens.
set +e; in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode test > "$T/noport.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "runbook.yaml:[0-9]*:[0-9]*: database 'shop': a test drill starts a clone of it .* give it test_port" "$T/noport.out" \
	|| fail "a test drill without test_port: exit $rc: $(cat "$T/noport.out")"
[ ! -e "$R/.drill-clones" ] || fail "the refused drill made $R/.drill-clones"

# The test runbook: the clone on TEST_PORT, the sql checks against it; the
# application's test start notes the standby's replay LSN, a command check
# waits until the standby has replayed beyond it (while the clone runs) and
# keeps what the clone holds.
slsn() { psql2 "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"; }
cat > "$T/probe" <<-SH
#!/bin/bash
set -e
q() { runuser -u $SSH_USER -- $PG_BIN/psql -X -q -At -h $SOCK -p \$1 -U postgres -d postgres -c "\$2"; }
case \$1 in
start) q 5433 "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn" > $T/standby.lsn0 ;;
standby) [ "\$(q 5433 "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn")" -gt "\$(cat $T/standby.lsn0)" ]
	q 5433 "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn" > $T/standby.lsn1 ;;
clone) q $TEST_PORT "SELECT count(*), max(id), pg_is_in_recovery() FROM t" > $T/clone.rows
	q $TEST_PORT "SELECT sum(hashtext(id || '|' || at))::bigint FROM t" > $T/clone.digest ;;
esac
SH
chmod +x "$T/probe"
python3 - "$T/runbook.yaml" "$CI3" "$T/probe" <<'PY'
import sys
p, ci3, probe = sys.argv[1:]
s = open(p).read()
s = s.replace('    pg_conf:', '    test_port: 5434\n    pg_conf:')
s = s.replace('  rpo: 0s\n', '  rpo: 30s # a test drill: the age of the cloned epoch\n')
s = s.replace('        sql: "', '        test_sql: "%s"\n        sql: "' % ci3)
s = s.replace('    start: "true"\n', '    start: "true"\n    test_start: "%s start"\n' % probe)
s = s.replace('    checks:\n', '    checks:\n      - name: standby-replays\n        command: "%s standby"\n'
	      '        timeout: 5s\n        retries: 100\n        interval: 200ms\n'
	      '      - name: clone-rows\n        command: "%s clone"\n        retries: 0\n' % (probe, probe), 1)
open(p, 'w').write(s)
PY
in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode plan > /dev/null || fail "the test runbook does not load"

# bascule replica clone by hand: a stopped database at the clone's epoch;
# into a clone a server runs on it is refused (exit 9), stopped it is made
# afresh.
cl() { in_secondary "$BIN/bascule" replica clone --root "$R" --key "$T/secondary/site.key" --group app \
	--to-dir "$T/byhand" --pg-conf "$T/site.conf" --json; }
cl > "$T/clone1.json" || fail "replica clone failed"
[ "$(python3 -c "import json; p=json.load(open('$T/clone1.json'))['postgres'][0]; print(p['mode'], p['data_dir'])")" = "clone $T/byhand/db" ] \
	|| fail "replica clone answered $(cat "$T/clone1.json")"
[ ! -f "$T/byhand/db/postmaster.pid" ] && [ ! -f "$T/byhand/db/recovery.signal" ] || fail "the clone was left running or still recovering"
runuser -u "$SSH_USER" -- "$PG_BIN/pg_ctl" -D "$T/byhand/db" -l "$T/byhand/db/bascule.log" -o "-c port=5435" -w start > /dev/null \
	|| fail "the clone does not start: $(tail -3 "$T/byhand/db/bascule.log")"
set +e; cl > "$T/out" 2> "$T/err"; rc=$?; set -e
[ $rc = 9 ] && grep -q "a PostgreSQL server (pid [0-9]*) runs on $T/byhand/db: stop it" "$T/err" \
	|| fail "a clone into a running one: exit $rc: $(cat "$T/err")"
runuser -u "$SSH_USER" -- "$PG_BIN/pg_ctl" -D "$T/byhand/db" -m fast -w stop > /dev/null
cl > /dev/null 2> "$T/err" || fail "a clone over a stopped one failed: $(cat "$T/err")"
rm -rf "$T/byhand"
note "replica clone by hand: a stopped database ($(python3 -c "import json; p=json.load(open('$T/clone1.json'))['postgres'][0]; print(p['end_lsn'], 'timeline', p['timeline'], 'in', p['seconds'], 's')")); into a running clone refused (exit 9)"

in_primary "$T/appctl" start
wait_for 60 "the writer's first rows" '[ "$(pg_sql p "SELECT count(*) FROM t")" -ge 200 ]'
t_drill=$(date +%s.%N)
set +e; in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode test > "$T/drill.out" 2>&1; rc=$?; set -e
drill_s=$(elapsed "$t_drill")
[ $rc = 0 ] && grep -q "(test): PASS" "$T/drill.out" || fail "test drill exit $rc: $(cat "$T/drill.out")"
grep -q "ok .*start test copy of database shop .*started the test copy of shop on port $TEST_PORT" "$T/drill.out" \
	&& grep -q "ok .*stop test copy of database shop" "$T/drill.out" || fail "no database test steps: $(cat "$T/drill.out")"
after=$(pg_sql p "SELECT count(*) FROM t")
# The writer's session ends (its psql exits), then the application stops.
pg_sql p "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO t %'" > /dev/null
in_primary "$T/appctl" stop

# The standby replayed on while the clone ran, and is the same server.
[ "$(cat "$T/standby.lsn1")" -gt "$(cat "$T/standby.lsn0")" ] || fail "the standby did not replay during the test"
[ "$(head -1 "$R/app/db/postmaster.pid")" = "$standby_pid" ] && [ "$(psql2 "SELECT pg_is_in_recovery()")" = t ] \
	|| fail "the hot standby was restarted or promoted by the test drill"
note "standby replayed $(( $(cat "$T/standby.lsn1") - $(cat "$T/standby.lsn0") )) bytes of WAL while the clone ran"

# The clone: the data at its epoch.
rep=$(ls -t "$T"/reports/*test.json | grep -v journal | head -1)
rf() { python3 -c "import json; r=json.load(open('$rep'))['report']; db=r['groups'][0]['databases'][0]; print($1)"; }
IFS='|' read -r n maxid inrec < "$T/clone.rows"
[ "$n" = "$maxid" ] && [ "$n" -ge 200 ] && [ "$inrec" = f ] || fail "the clone holds $(cat "$T/clone.rows") (count, max id, in recovery)"
[ "$(pg_sql p "SELECT sum(hashtext(id || '|' || at))::bigint FROM t WHERE id <= $maxid")" = "$(cat "$T/clone.digest")" ] \
	|| fail "the clone's $n rows differ from the primary's first $n"
[ "$after" -gt "$maxid" ] || fail "the primary has no row after the clone's epoch ($after rows, the clone $maxid)"
xact=$(rf "db['last_transaction_us']")
at_last=$(pg_sql p "SELECT (extract(epoch FROM at) * 1000000)::bigint FROM t WHERE id = $maxid")
at_next=$(pg_sql p "SELECT (extract(epoch FROM at) * 1000000)::bigint FROM t WHERE id = $maxid + 1")
[ "$xact" -ge "$at_last" ] || fail "the clone's last transaction ($xact) is before its last row was inserted ($at_last)"
[ "$(rf "db['standby']")" = clone ] && [ -n "$(rf "db['promoted_lsn']")" ] && [ "$(rf "db['timeline']")" -ge 2 ] \
	|| fail "the report does not show the clone: $(rf "db")"
clone_lsn=$(rf "db['promoted_lsn']")
grep -q "database shop (app/db): test copy cloned at $clone_lsn (timeline [0-9]*), last transaction" "$T/drill.out" \
	|| fail "the summary does not show the clone: $(cat "$T/drill.out")"
note "clone at $clone_lsn (epoch $(python3 -c "import json; print(json.load(open('$rep'))['report']['groups'][0]['epoch'])")): rows 1..$maxid as on the primary, last transaction $(( (xact - at_last) / 1000 )) ms after row $maxid was inserted, row $((maxid + 1)) $(( (at_next - xact) / 1000 )) ms after; the primary went on to $after rows"

# The primary is untouched; nothing is left behind.
[ "$(head -1 "$PD/data/postmaster.pid")" = "$primary_pid" ] && [ "$(pg_sql p "SELECT pg_is_in_recovery()")" = f ] \
	|| fail "the primary was restarted by the test drill"
[ "$(status_get "d['groups'][0]['paused']")" = False ] || fail "the group is paused after the test drill"
[ -z "$(ls -A "$R/.drill-clones" 2>/dev/null)" ] || fail "left behind: $(ls -A "$R/.drill-clones")"
! pgrep -f "$R/.drill-clones" > /dev/null || fail "a process still runs on a clone: $(pgrep -af "$R/.drill-clones")"
[ ! -e "$SOCK/.s.PGSQL.$TEST_PORT" ] || fail "a server still listens on the test port $TEST_PORT"
"$BIN/bascule" report verify --key "$T/sign.key.pub" "$rep" > /dev/null || fail "the report does not verify"
"$BIN/bascule" report verify --key "$T/sign.key.pub" "${rep%.json}.html" > /dev/null || fail "the report's page does not verify"
note "test drill PASS in $drill_s s, the primary untouched, nothing left; whole test $(elapsed "$t_start") s"
