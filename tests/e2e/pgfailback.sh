# pgfailback: a planned drill of a real PostgreSQL 15, writes on the
# promoted database at the secondary, a write on the old primary after it
# (split brain: its history diverges), then a failback drill:
#   - the old primary is rewound with pg_rewind (data checksums on), keeps
#     its own configuration, streams from the secondary as a standby, holds
#     the secondary's final LSN after its clean shutdown and is promoted:
#     PASS, RPO 0 by LSN in the signed report;
#   - it has every row written at the secondary, not the diverged one;
#   - the secondary's group is a replica again (the promoted data directory
#     kept aside), receives a new base backup of the primary's new timeline
#     with its history file, acknowledges it and follows new writes.
. "$(dirname "$0")/../lib/common.sh"
ROWS=${ROWS:-300}
PGDRILL_INITDB_ARGS=--data-checksums
. "$ROOT/tests/lib/pgdrill.sh"
need_root
t_start=$(date +%s.%N)
pgdrill_up
# The promoted database is reached from the primary's site for the failback.
sed -i "s/^listen_addresses = ''/listen_addresses = '$IP_S'/" "$T/site.conf"
write_runbook "[ ! -f $PD/data/postmaster.pid ] || runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data -m fast -w -t 60 stop" "SELECT count(*) = max(id) FROM t" t
CIP="host=$PD port=5432 dbname=postgres user=drill passfile=$T/drill.pgpass"
python3 - "$T/runbook.yaml" "$CIP" "$IP_S" <<'PY'
import sys
p, cip, ips = sys.argv[1:]
s = open(p).read()
s = s.replace('        sql: "', '        failback_sql: "%s"\n        sql: "' % cip)
s = s.replace('    pg_conf:', '    read_as: runuser -u postgres --\n    failback_conninfo: "host=%s port=5433 user=postgres dbname=postgres"\n    pg_conf:' % ips)
open(p, 'w').write(s)
PY
in_primary "$T/appctl" start
wait_for 60 "the writer's first rows" '[ "$(pg_sql p "SELECT count(*) FROM t")" -ge 100 ]'
set +e; in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode planned > "$T/planned.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] || fail "planned drill exit $rc: $(cat "$T/planned.out")"

# Life at the secondary: 100 more rows.  Split brain at home: the old
# primary started alone takes a write, then stops.
psql2 "INSERT INTO t (id) SELECT m + g FROM (SELECT max(id) m FROM t) x, generate_series(1, 100) g"
sec_rows=$(psql2 "SELECT count(*) FROM t")
pg_start p
pg_sql p "INSERT INTO t (id) VALUES (-1)" > /dev/null
pg_stop p
printf "host all postgres %s/32 trust\nhost replication postgres %s/32 trust\n" "$IP_P" "$IP_P" >> "$R/app/db/pg_hba.conf"
psql2 "SELECT pg_reload_conf()" > /dev/null

# Bad input: a failback without failback_conninfo.
sed 's/^    failback_conninfo:.*$//' "$T/runbook.yaml" > "$T/nofb.yaml"; chmod 600 "$T/nofb.yaml"
set +e; in_secondary "$BIN/bascule" drill "$T/nofb.yaml" --mode failback > "$T/nofb.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "nofb.yaml:[0-9]*:[0-9]*: database 'shop': a failback makes the old primary a standby .* give it failback_conninfo" "$T/nofb.out" \
	|| fail "a failback without failback_conninfo: exit $rc: $(cat "$T/nofb.out")"

t_fb=$(date +%s.%N)
log0=$(wc -l < "$T/daemon.log")
set +e; in_secondary "$BIN/bascule" drill "$T/runbook.yaml" --mode failback > "$T/fb.out" 2>&1; rc=$?; set -e
fb_s=$(elapsed "$t_fb")
[ $rc = 0 ] && grep -q "(failback): PASS" "$T/fb.out" || fail "failback drill exit $rc: $(cat "$T/fb.out")"
grep -q "ok .*rewind database shop on primary .*rewound with pg_rewind (the histories diverged at" "$T/fb.out" \
	|| fail "the old primary was not rewound with pg_rewind: $(cat "$T/fb.out")"
rep=$(ls -t "$T"/reports/*failback.json | grep -v journal | head -1)
rf() { python3 -c "import json; r=json.load(open('$rep'))['report']; db=r['groups'][0]['databases'][0]; print($1)"; }
[ "$(rf "db['rpo_by_lsn'] and r['achieved']['rpo_us'] == 0")" = True ] || fail "no RPO 0 by LSN: $(rf "db")"
final=$(rf "db['final_lsn']"); promoted=$(rf "db['promoted_lsn']")
[ "$(lsn_of "$promoted")" -ge "$(lsn_of "$final")" ] || fail "final LSN $final, promoted at $promoted"
"$BIN/bascule" report verify --key "$T/sign.key.pub" "$rep" > /dev/null || fail "the report does not verify"
# Home again: every row of the secondary, not the diverged one; its own settings.
[ "$(pg_sql p "SELECT pg_is_in_recovery()")" = f ] || fail "the old primary is not a primary"
[ "$(pg_sql p "SELECT count(*) FROM t WHERE id <= $sec_rows")" = "$sec_rows" ] && [ "$(pg_sql p "SELECT count(*) FROM t WHERE id = -1")" = 0 ] \
	|| fail "the old primary lacks rows of the secondary or kept the diverged one"
[ "$(pg_sql p "SHOW port")" = 5432 ] || fail "the old primary took the secondary's settings"
note "failback PASS in $fb_s s: final LSN $final of the secondary, promoted at $promoted (timeline $(rf "db['timeline']")); $sec_rows rows back, the diverged write gone"
# The secondary is a replica again (not refused as promoted), the promoted
# data directory kept aside, and the daemon sends it a new base backup of
# the primary's new timeline with that timeline's history file, which the
# secondary acknowledges: the database is protected again.
ls -d "$R/app/.db.demoted-"* > /dev/null 2>&1 || fail "the promoted data directory was not kept aside: $(ls -a "$R/app")"
[ ! -e "$R/app/.db.pg/promoted" ] || fail "the promote record of app/db is still there after the demote"
wait_for 60 "a new base backup sent to the secondary" 'tail -n +"$log0" "$T/daemon.log" | grep -q "sending base backup .* of app/db"'
tl=$(rf "db['timeline']")
[ "$tl" -ge 2 ] || fail "the old primary is on timeline $tl after the failback"
# (acknowledged after it was sent; a refusal fails at once)
fb_log() { tail -n +"$log0" "$T/daemon.log" | sed -n '/sending base backup .* of app\/db/,$p'; }
wait_for 60 "the new base acknowledged by the secondary" \
	'fb_log | grep -q "holds base backup .* of app/db" || { fb_log | grep -q "is missing" && fail "the secondary refused the new base: $(fb_log | grep "is missing" | head -1)"; false; }'
# Its acknowledged LSN (on the stream's timeline, or none) follows a new write.
pg_sql p "INSERT INTO t (id) VALUES (-2)" > /dev/null
want=$(lsn_of "$(pg_sql p "SELECT pg_current_wal_lsn()")")
wait_for 60 "the secondary's acknowledged LSN past the new write" 'a=$(acked 2>/dev/null); [[ "$a" == */* ]] && [ "$(lsn_of "$a")" -ge "$want" ]'
"$BIN/bascule" replica list --root "$R" > "$T/list.out" 2>&1 || fail "replica list: $(cat "$T/list.out")"
grep -q "source db .* timeline $tl end .* ok$" "$T/list.out" || fail "the replica's copy is not on timeline $tl: $(cat "$T/list.out")"
note "the secondary's group is a replica again: a new base on timeline $tl acknowledged, acked $(acked); whole test $(elapsed "$t_start") s"
