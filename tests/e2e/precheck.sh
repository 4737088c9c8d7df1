# precheck: what "replication healthy" means before a drill, on one machine
# (local targets, runbook commands on host "local"), and the messages a
# person reads when something is wrong.
#   1. A vault between two shipments (interval 1h: "catching-up" once a new
#      epoch is cut) does not block a planned drill; a vault in error is a
#      warning (step, summary, report); the drill passes.
#   2. --mode plan: the check step is on the secondary's host, its limit the
#      bound of its checks.
#   3. A replica target in error stops the drill at the precheck with its
#      state and last error; the report says the RPO was not reached.
#   4. A check failing with no output: the message says so, never ends in ':'.
#   5. bascule report verify refuses a report with a key given twice (exit 1).
#   6. min_free is measured by statvfs on the secondary (bascule space
#      --json), not read from df's columns: on a filesystem whose name has a
#      space (df's columns then shift: "Used" was read as free) the drill
#      passes a min_free the space allows and refuses one it does not,
#      naming the free space bascule space reports.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
"$BIN/bascule" keygen vault "$T/vault.key" >/dev/null
"$BIN/bascule" keygen signing "$T/sign.key" >/dev/null
head -c 8M /dev/urandom > "$T/disk.img"
vault_dir "$T/vault"
write_config() { # REPLICA_URL
	cat > "$T/bascule.yaml" <<YAML
state_dir: $T/state
key: $T/site.key
control_socket: $T/ctl.sock
groups:
  - name: vm1
    interval: 200ms
    max_interval: 1s
    sources: [{name: disk, disk: $T/disk.img}]
targets:
  - name: secondary
    url: $1
  - name: offsite
    type: vault
    url: local:$T/vault
    vault_key: $T/vault.key
    interval: 1h
  - name: broken
    type: vault
    url: local:$T/no-such-dir/vault
    vault_key: $T/vault.key
YAML
}
write_runbook() { # CHECK_COMMAND [REPLICA_ROOT [MIN_FREE]]
	cat > "$T/runbook.yaml" <<YAML
name: precheck test
objectives: {rto: 1m, rpo: 0s}
hosts: [{name: here, url: local}]
primary: {host: here, bascule: $BIN/bascule, control_socket: $T/ctl.sock, sync_timeout: 60s}
secondary: {host: here, bascule: $BIN/bascule, replica_root: ${2:-$T/replica}, site_key: $T/site.key}
prechecks: {max_lag: 1m, min_free: ${3:-0}}
services:
  - name: vm1
    group: vm1
    stop: echo stopped
    start: echo started
    checks: [{name: up, command: "$1", timeout: 10s, retries: 0}]
report: {dir: $T/reports, signing_key: $T/sign.key}
state_dir: $T/drillstate
YAML
}
drill() { "$BIN/bascule" drill "$T/runbook.yaml" "$@"; }
target_state() { status_get "[t['state'] for t in d['targets'] if t['name'] == '$1'][0]"; }
wait_state() { # TARGET STATE (within 60 s)
	local end=$((SECONDS + 60))
	while [ $SECONDS -lt $end ]; do [ "$(target_state "$1")" = "$2" ] && return 0; sleep 0.1; done
	fail "target $1 is $(target_state "$1"), never $2"
}
report_json() { ls -t "$T"/reports/*-planned.json | head -1; }
step1() { stepn 0 "$1"; }
stepn() { python3 -c "import json; s=json.load(open('$(report_json)'))['report']['steps'][$1]; print(s['$2'])"; }

# ---- 1. vault catching-up, vault in error: the drill goes on ----
write_config "local:$T/replica"
write_runbook true
bsc_start
bsc_sync >/dev/null
wait_state broken error
# A write after offsite's last shipment (a sync ships to vaults too): the
# daemon cuts it (no sync) for the replica; offsite's turn is an hour away.
head -c 1M /dev/urandom | dd of="$T/disk.img" bs=1M seek=2 conv=notrunc status=none
wait_state offsite catching-up
set +e; drill --mode planned > "$T/d1.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] && grep -q "(planned): PASS" "$T/d1.out" || fail "a vault catching-up or in error blocked the drill (exit $rc): $(cat "$T/d1.out")"
grep -q "WARNING: step 1 (replication healthy (here)): vault target broken is in error: ." "$T/d1.out" \
	|| fail "no warning for the vault in error: $(cat "$T/d1.out")"
step1 message | grep -q "1 group on 1 replica target, worst lag .*; vault offsite catching-up (not on the failover path)" \
	|| fail "step 1 message: $(step1 message)"
step1 warning | grep -q "vault target broken is in error" || fail "the report's step 1 has no warning"
grep -q 'class="WARN">step 1 (replication healthy (here)): vault target broken is in error' "${T}/reports/"*-planned.html \
	|| fail "the page does not show the warning"
note "vault catching-up and vault in error: drill PASS, warning '$(step1 warning)'"

# ---- 2. the plan of the check step ----
drill --mode plan > "$T/plan.out"
grep -qE "^ +8  check +check vm1 \(1 check, wave 1\) +here +10.0s$" "$T/plan.out" \
	|| fail "check step in the plan: $(grep check "$T/plan.out")"
note "plan: $(grep ' check ' "$T/plan.out" | tr -s ' ')"

# Production back: the replica a replica again, replication resumed.
"$BIN/bascule" replica demote --root "$T/replica" --key "$T/site.key" --group vm1 >/dev/null
bsc resume vm1 >/dev/null
bsc_sync >/dev/null

# ---- 3. a replica target in error stops the drill, with its reason ----
bsc_stop
write_config "local:/proc/no-such-dir/replica"
bsc_start
wait_state secondary error
set +e; drill --mode planned > "$T/d3.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "(planned): ERROR" "$T/d3.out" || fail "a replica in error: exit $rc $(cat "$T/d3.out")"
msg=$(step1 message)
case $msg in
# (error), or (connecting) while it tries again: the last error is named
"replica target secondary is not connected ("*"): the receiver "?*) ;;
*) fail "step 1 message: '$msg'" ;;
esac
grep -q "RPO not reached (objective 0.00 s)" "$T/d3.out" || fail "the summary gives an RPO: $(cat "$T/d3.out")"
grep -q "NOT met" "$T/d3.out" && fail "a drill that reached nothing says NOT met: $(cat "$T/d3.out")"
grep -q "<th>achieved RPO</th><td>not reached</td>" "$(report_json | sed 's/json$/html/')" || fail "the page gives an RPO"
note "replica in error: '$msg'"
drill --abort >/dev/null 2>&1 || true

# ---- 4. a check failing without output ----
bsc_stop
write_config "local:$T/replica"
write_runbook false
bsc_start
bsc_sync >/dev/null
set +e; drill --mode planned > "$T/d4.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] || fail "a failing check: exit $rc"
msg=$(python3 -c "import json; print(json.load(open('$(report_json)'))['report']['message'])")
[ "$msg" = "step 8 (check vm1 (1 check, wave 1)) failed: check up failed after 1 attempt: command failed (exit 1): (no output)" ] \
	|| fail "failed check message: '$msg'"
note "failing check: '$msg'"
drill --abort >/dev/null 2>&1 || true

# ---- 5. a key given twice in a signed report ----
rep=$(report_json)
"$BIN/bascule" report verify --key "$T/sign.key.pub" "$rep" >/dev/null || fail "a valid report refused"
python3 - "$rep" "$T/dup.json" <<'PY'
import sys
t = open(sys.argv[1]).read()
i = t.index('"rto_us": ')
open(sys.argv[2], "w").write(t[:i] + '"rto_us": 1, ' + t[i:])
PY
set +e; "$BIN/bascule" report verify --key "$T/sign.key.pub" "$T/dup.json" 2> "$T/dup.err"; rc=$?; set -e
[ $rc = 1 ] && grep -q "a key appears twice" "$T/dup.err" || fail "duplicate key: exit $rc $(cat "$T/dup.err")"
note "duplicate key refused: $(cat "$T/dup.err")"

# ---- 6. min_free by statvfs, on a filesystem whose name has a space ----
bsc_stop
mkdir "$T/fs"
mount -t tmpfs -o size=256m "replica space" "$T/fs" || fail "cannot mount a tmpfs on $T/fs"
MOUNTS+=("$T/fs")
write_config "local:$T/fs/replica"
write_runbook true "$T/fs/replica" 100MiB
sed -i "s|^state_dir: .*|state_dir: $T/drillstate6|" "$T/runbook.yaml"
bsc_start
bsc_sync >/dev/null
avail=$("$BIN/bascule" space --json "$T/fs/replica" | python3 -c "import json,sys; print(json.load(sys.stdin)['available_bytes'] >> 20)")
[ "$avail" -gt 100 ] && [ "$avail" -lt 256 ] || fail "bascule space --json: $avail MiB available on a 256 MiB tmpfs"
set +e; drill --mode planned > "$T/d6.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] && grep -q "(planned): PASS" "$T/d6.out" || fail "min_free 100MiB with $avail MiB available: exit $rc $(cat "$T/d6.out")"
msg=$(stepn 1 message)
case $msg in
"replica readable, "*" MiB free under $T/fs/replica") ;;
*) fail "step 2 message: '$msg'" ;;
esac
free=${msg#replica readable, }; free=${free%% *}
[ $((free - avail)) -le 2 ] && [ $((avail - free)) -le 2 ] || fail "the precheck saw $free MiB free, bascule space $avail MiB"
note "min_free 100MiB on 'replica space': '$msg'"
"$BIN/bascule" replica demote --root "$T/fs/replica" --key "$T/site.key" --group vm1 >/dev/null
bsc resume vm1 >/dev/null
bsc_sync >/dev/null
write_runbook true "$T/fs/replica" 1GiB
sed -i "s|^state_dir: .*|state_dir: $T/drillstate6|" "$T/runbook.yaml"
set +e; drill --mode planned > "$T/d6b.out" 2>&1; rc=$?; set -e
msg=$(stepn 1 message)
[ $rc = 2 ] || fail "min_free 1GiB on a 256 MiB filesystem: exit $rc $(cat "$T/d6b.out")"
case $msg in
"only "*" MiB free under $T/fs/replica on here, min_free wants 1024 MiB") ;;
*) fail "step 2 message: '$msg'" ;;
esac
note "min_free 1GiB: '$msg'"
drill --abort >/dev/null 2>&1 || true
bsc_stop
