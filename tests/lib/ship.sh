# tests/lib/ship.sh - the hybrid PRA's client side for the tests (source
# after common.sh).
#   ship_yaml FILE CLIENT DUMP INTAKE FULL_EVERY [LINE...]
#       FILE, a ship.yaml for CLIENT whose keys are $(dirname FILE)/CLIENT.pub
#       and .sign (bascule keygen client) and state_dir $(dirname FILE)/state;
#       DUMP is the dump: value as YAML (quoted by the caller), INTAKE the
#       intake: URL; each LINE is added as it is (identity:, known_hosts:).
#   ship_enrol DIR CLIENT INTAKE [OWNER]
#       DIR/CLIENT.key, .pub, .sign (bascule keygen client, passphrase in
#       $T/pass, 0600), the client enrolled at intake INTAKE (its incoming/
#       owned by the account OWNER when given)
#   ship_flip FILE     one bit of FILE's middle byte flipped, in place
#   ship_sums CLUSTER DB
#       per-table checksums of database DB of pg.sh's CLUSTER (the pgbench
#       tables and town_secrets: count and md5 of the rows in key order)
#   ship_drill_report REPORT CREATED BEFORE AFTER NIGHT FULL_NIGHT DB
#       checks the signed JSON REPORT of a PASSed `drill --mode hybrid` of
#       client mairie's NIGHT (a delta on FULL_NIGHT, uploaded at CREATED,
#       unix s) loaded into DB (pgbench scale 1 and town_secrets), the drill
#       run between BEFORE and AFTER (unix s): the steps, the RTO within the
#       drill, the RPO the dump's age at the declaration; prints the figures
#   ship_drill RUNBOOK CREATED NIGHT FULL_NIGHT DB
#       runs `bascule drill RUNBOOK --mode hybrid` (its report in
#       $T/reports, signed with $T/sign.key), which must PASS; the report
#       (JSON and HTML) verified and checked by ship_drill_report; the
#       figures in $T/figures, the drill's output in $T/drill.out
ship_yaml() {
	local f=$1 client=$2 dump=$3 intake=$4 full=$5 d l
	d=$(dirname "$f")
	shift 5
	{
		echo "client: $client"
		echo "# the test keeps the exact bytes ship read (tee), to compare restores with"
		echo "dump: $dump"
		echo "public_key: $d/$client.pub"
		echo "signing_key: $d/$client.sign"
		echo "state_dir: $d/state"
		echo "intake: $intake"
		for l in "$@"; do echo "$l"; done
		echo "full_every: $full"
	} > "$f"
}

ship_enrol() {
	local d=$1 client=$2 in=$3 owner=${4:-}
	[ -f "$T/pass" ] || { echo "a passphrase for the safe" > "$T/pass"; chmod 600 "$T/pass"; }
	mkdir -p "$d"
	"$BIN/bascule" keygen client "$d/$client" --passphrase-file "$T/pass" > /dev/null
	"$BIN/bascule" intake add "$in" --client "$client" --pub "$d/$client.pub" ${owner:+--owner "$owner"} > /dev/null
}

ship_flip() {
	python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=0x01; open(p,'wb').write(b)" "$1"
}

ship_drill_report() {
	python3 - "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["report"]
created, before, after = (int(x) * 1000000 for x in sys.argv[2:5])
night, full, db = sys.argv[5:8]
a, h = r["achieved"], r["hybrid"]
assert r["mode"] == "hybrid" and r["result"] == "PASS", (r["result"], r["message"])
assert h["client"] == "mairie" and h["night"] == night and h["kind"] == "delta", h
assert h["full_night"] == full and h["dump_created_us"] == created, h
assert h["database"] == db and h["tables"] == 5 and h["rows"] > 100000, h
assert h["damaged_night"] == "", h
kinds = [s["kind"] for s in r["steps"]]
assert kinds == ["intake-check", "intake-night", "intake-restore", "start", "check"], kinds
assert all(s["status"] == "done" for s in r["steps"]), r["steps"]
# RTO: from the declaration (the drill's start) to the last check green
assert a["complete"] and r["rto_start_us"] == r["started_us"], a
assert 0 < a["rto_us"] <= r["ended_us"] - r["started_us"] and a["rto_end_us"] == r["steps"][-1]["end_us"], a
# RPO: the dump's age at the declaration, at least its age when the drill began
assert a["rpo_reached"] and a["rpo_us"] == r["started_us"] - created, (a, created)
# (before and after are whole seconds: the drill may start up to 1 s after either)
assert before - created - 1000000 <= a["rpo_us"] < after + 1000000 - created, (a, before - created, after - created)
restore = r["steps"][2]
assert r["steps"][3]["start_us"] >= restore["end_us"], "the service started before the load ended"
print(f"RTO {a['rto_us'] / 1e6:.1f} s (restore and load {restore['duration_us'] / 1e6:.1f} s), "
      f"RPO {a['rpo_us'] / 1e6:.1f} s = the dump's age at the declaration; "
      f"{h['tables']} tables, {h['rows']} rows loaded")
PY
}

ship_drill() {
	local before after rc=0 rep
	before=$(date +%s)
	"$BIN/bascule" drill "$1" --mode hybrid > "$T/drill.out" 2>&1 || rc=$?
	after=$(date +%s)
	[ $rc = 0 ] || fail "hybrid drill: exit $rc, want 0: $(cat "$T/drill.out")"
	rep=$(ls -t "$T"/reports/*-hybrid.json | head -1)
	"$BIN/bascule" report verify --key "$T/sign.key.pub" "$rep" > /dev/null || fail "the report does not verify"
	"$BIN/bascule" report verify --key "$T/sign.key.pub" "${rep%.json}.html" > /dev/null \
		|| fail "the report page does not verify"
	ship_drill_report "$rep" "$2" "$before" "$after" "$3" "$4" "$5" > "$T/figures" \
		|| fail "the report: $(cat "$T/drill.out")"
}

SHIP_TABLES="pgbench_accounts:aid pgbench_branches:bid pgbench_tellers:tid pgbench_history:tid,bid,aid,mtime town_secrets:v"
ship_sums() {
	local t out=
	for t in $SHIP_TABLES; do
		out+="${t%%:*}=$(pg_as "$PG_BIN/psql" -X -q -At -h "$(pg_dir "$1")" -U postgres -d "$2" -c \
			"SELECT count(*) || ':' || coalesce(md5(string_agg(md5(t::text), '' ORDER BY ${t#*:})), '-') FROM ${t%%:*} t") "
	done
	echo "$out"
}
