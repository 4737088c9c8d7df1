# hybriddrill: the hybrid drill (issue 14, "What it must show": the hybrid
# drill: signed report with the achieved RTO; checked).  A client's real
# PostgreSQL (pgbench, plus a table of marker rows) ships two nights with
# `bascule ship` into a local intake; `bascule drill --mode hybrid` checks
# the intake, picks the newest night, restores and loads it with the
# client's key, starts a service on the loaded database and checks a marker
# row with SQL.  The test shows: PASS, a report that verifies with `bascule
# report verify`, the hybrid object naming the night, the tables and rows
# loaded; the RTO within the drill and the RPO at least the dump's age at
# the declaration; the loaded database equal to the source at that night,
# the service started after the load; --mode planned of a hybrid runbook
# refused; then a flipped byte in the night: exit 5, the report (signed,
# verified) names the damaged night and nothing starts; the object put
# back, --resume finishes the drill: PASS.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/ship.sh"
need_root
B="$BIN/bascule"
IN=$T/intake
mkdir -p "$IN"

# ---- the client: PostgreSQL, its keys, two nights shipped as cron would
pg_init c
pg_start c
pg_bench_init c 1
ship_enrol "$T/client" mairie "$IN"
DUMP="$PG_BIN/pg_dump --format=custom --compress=0 -h $(pg_dir c) -U postgres postgres"
ship_yaml "$T/client/ship.yaml" mairie "\"$DUMP\"" "local:$IN/mairie/incoming" 7
cron_ship() { env -i PATH=/usr/bin:/bin setsid "$B" ship -c "$T/client/ship.yaml" "$@" < /dev/null; }
marker() { echo "night$1-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }
M1=$(marker 1) M2=$(marker 2)
pg_sql c "CREATE TABLE town_secrets (v text); INSERT INTO town_secrets VALUES ('$M1')"
out=$(cron_ship --night 2026-11-01 2>&1) || fail "night 1: ship failed: $out"
pg_sql c "UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 50 = 0; INSERT INTO town_secrets VALUES ('$M2')"
out=$(cron_ship --night 2026-11-02 2>&1) || fail "night 2: ship failed: $out"
ship_sums c postgres > "$T/sums-2"
created=$("$B" intake ls "$IN" --client mairie --json | python3 -c "
import json, sys; n = json.load(sys.stdin)[0]['nights']
assert [x['night'] for x in n] == ['2026-11-01', '2026-11-02'] and n[1]['kind'] == 'delta', n
print(n[1]['created_unix'])")

# ---- the runbook: the hybrid section, a service started on the loaded
# database (it records the night it was given and the marker it read), an
# sql check of night 2's marker row
"$B" keygen signing "$T/sign.key" > /dev/null
LOAD="postgresql://postgres@/drill_h?host=$(pg_dir c)"
write_runbook() { # FILE STATE_DIR
	cat > "$1" <<YAML
name: mairie hybrid drill
objectives: {rto: 1h, rpo: 2d}
hosts:
  - name: here
    url: local
hybrid:
  intake: $IN
  client: mairie
  key: $T/client/mairie.key
  passphrase_file: $T/pass
  load: "$LOAD"
  pg_bin: $PG_BIN
  replace: true
  jobs: 2
  host: here
  max_age: 1h
services:
  - name: app
    start: >-
      echo "\$BASCULE_NIGHT \$($PG_BIN/psql -X -At -h $(pg_dir c) -U postgres -d drill_h
      -c "SELECT count(*) FROM town_secrets")" > $T/app.started
    checks:
      - name: started
        command: test -s $T/app.started
        retries: 0
      - name: marker
        sql: host=$(pg_dir c) user=postgres dbname=drill_h
        query: SELECT v FROM town_secrets WHERE v LIKE 'night2-%'
        expect: "$M2"
        retries: 2
        interval: 1s
report:
  dir: $T/reports
  signing_key: $T/sign.key
state_dir: $2
YAML
	chmod 600 "$1"
}
write_runbook "$T/rb.yaml" "$T/state"

out=$("$B" drill "$T/rb.yaml" --mode plan 2>&1) || fail "plan of the hybrid runbook: $out"
for k in intake-check intake-night intake-restore start check; do
	echo "$out" | grep -q "^ *[0-9]*  $k " || fail "the plan has no $k step: $out"
done
rc=0; "$B" drill "$T/rb.yaml" --mode planned > "$T/planned.out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "is a hybrid runbook.*--mode hybrid" "$T/planned.out" \
	|| fail "--mode planned of a hybrid runbook: exit $rc, want 2: $(cat "$T/planned.out")"

# ---- the drill
ship_drill "$T/rb.yaml" "$created" 2026-11-02 2026-11-01 drill_h
[ "$(ship_sums c drill_h)" = "$(cat "$T/sums-2")" ] || fail "the loaded database is not night 2: $(ship_sums c drill_h) vs $(cat "$T/sums-2")"
[ "$(cat "$T/app.started")" = "2026-11-02 2" ] || fail "the service did not start on night 2's data: $(cat "$T/app.started")"
grep -q "client mairie: night 2026-11-02 loaded into drill_h" "$T/drill.out" || fail "the summary: $(cat "$T/drill.out")"
note "hybrid drill PASS, report signed and verified: $(cat "$T/figures")"

# ---- a flipped byte in night 2: exit 5, the report names the night
obj=$(ls "$IN/mairie/incoming/2026-11-02/" | head -1)
cp -p "$IN/mairie/incoming/2026-11-02/$obj" "$T/saved-obj"
ship_flip "$IN/mairie/incoming/2026-11-02/$obj"
rm -f "$T/app.started"
rc=0; "$B" drill "$T/rb.yaml" --mode hybrid > "$T/drill.out" 2>&1 || rc=$?
[ $rc = 5 ] || fail "a damaged night: drill exit $rc, want 5: $(cat "$T/drill.out")"
grep -q "night 2026-11-02 is DAMAGED" "$T/drill.out" || fail "the summary does not name the night: $(cat "$T/drill.out")"
rep=$(ls -t "$T"/reports/*-hybrid.json | head -1)
"$B" report verify --key "$T/sign.key.pub" "$rep" > /dev/null || fail "the damaged drill's report does not verify"
python3 - "$rep" "$obj" <<'PY' || fail "the damaged drill's report: $(cat "$rep")"
import json, sys
r = json.load(open(sys.argv[1]))["report"]
assert r["result"] == "ERROR" and r["hybrid"]["damaged_night"] == "2026-11-02", r["hybrid"]
s = r["steps"][0]
assert s["kind"] == "intake-check" and s["status"] == "failed", s
assert "2026-11-02" in s["message"] and sys.argv[2] in s["message"] and "DAMAGED" in s["message"], s["message"]
assert all(x["status"] == "pending" for x in r["steps"][1:]), r["steps"]
assert not r["achieved"]["complete"], r["achieved"]
PY
[ ! -e "$T/app.started" ] || fail "a service started although the night is damaged"
note "flipped byte in night 2: drill exit 5, signed report names night 2026-11-02 ($obj), nothing started"

# ---- the night repaired (the object put back): --resume finishes the drill
cp -p "$T/saved-obj" "$IN/mairie/incoming/2026-11-02/$obj"
rc=0; "$B" drill "$T/rb.yaml" --resume > "$T/drill.out" 2>&1 || rc=$?
[ $rc = 0 ] || fail "--resume after the repair: exit $rc, want 0: $(cat "$T/drill.out")"
rep=$(ls -t "$T"/reports/*-hybrid.json | head -1)
"$B" report verify --key "$T/sign.key.pub" "$rep" > /dev/null || fail "the resumed drill's report does not verify"
python3 - "$rep" <<'PY' || fail "the resumed drill's report: $(cat "$T/drill.out")"
import json, sys
r = json.load(open(sys.argv[1]))["report"]
assert r["result"] == "PASS" and r["hybrid"]["night"] == "2026-11-02" and r["hybrid"]["damaged_night"] == "", r["hybrid"]
assert len(r["resumed_us"]) == 1 and r["achieved"]["complete"], r
assert all(x["status"] == "done" for x in r["steps"]), r["steps"]
PY
[ "$(cat "$T/app.started")" = "2026-11-02 2" ] || fail "the resumed drill did not start the service on night 2"
note "the object put back: --resume PASS, the same night loaded and the service started"
