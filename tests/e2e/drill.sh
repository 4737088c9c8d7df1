# drill: `bascule drill` end to end with real QEMU guests over the SSH test
# sites.  Two guests (vm2 starts after vm1) run on the primary from disks on
# XFS (consistent epochs), writing numbered, flushed records; basculed
# replicates them to the secondary over SSH.  The orchestrator runs at the
# secondary site (commands there are local) and reaches the primary over
# SSH (libssh2, strict host key).
#   1. plan prints the steps; a broken runbook is refused with file:line:col.
#   2. test: clones boot in isolation while production keeps running and
#      replicating; everything is cleaned up.
#   3. planned, killed with -9 while checking the guests, then --abort while
#      the replica is held by another command: every other undo step runs,
#      exit 3, the journal stays; --abort again demotes and production is
#      back on the primary, replication resumes.
#   4. unplanned after cutting the link and killing the primary: the guests
#      boot from the last consistent epoch; the reported RPO matches the lag
#      the status socket showed before the cut.
#   5. planned, killed with -9 mid-drill, then --resume: PASS, RPO 0, each
#      guest sees every record it had written before the stop.
#   6. the report: signature valid, tampered JSON and HTML refused, the page
#      rendered by headless Chromium (screenshot kept).
# run.sh: first
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
. "$(dirname "$0")/../lib/runbook.sh"
. "$(dirname "$0")/../lib/vm.sh"
need_root
command -v mkfs.xfs >/dev/null || { echo "SKIP: no mkfs.xfs"; exit 77; }
vm_prepare
# Primary disks on XFS: epochs are captured from reflink clones (consistent).
# Mounted before the sshds start: their mount namespaces are copies.
truncate -s 1G "$T/xfs.img"
mkfs.xfs -q -m reflink=1 "$T/xfs.img"
mkdir "$T/xfs"
mount -o loop "$T/xfs.img" "$T/xfs"
MOUNTS+=("$T/xfs")
sites_up
start_sshd primary "$NS_P" "$IP_P" root
bsc_keygen
# The primary's disks live as ROOT/GROUP/SOURCE: failback replicates back into them.
for v in vm1 vm2; do mkdir -p "$T/xfs/vms/$v"; truncate -s 64M "$T/xfs/vms/$v/disk"; done
R=$T/secondary/replica
authorize_recv "$R"
cat > "$T/bascule.yaml" <<YAML
state_dir: $T/xfs/state
key: $T/site.key
control_socket: $T/ctl.sock
groups:
  - name: vm1
    interval: 1s
    max_interval: 2s
    sources:
      - name: disk
        disk: $T/xfs/vms/vm1/disk
  - name: vm2
    interval: 1s
    max_interval: 2s
    sources:
      - name: disk
        disk: $T/xfs/vms/vm2/disk
targets:
  - name: secondary
    url: ssh://$SSH_USER@$IP_S:22$R
    identity: $T/id_ed25519
    known_hosts: $T/known_hosts
YAML
trust_secondary
NSEXEC=(ip netns exec "$NS_P")

# The orchestrator's own key for the primary (root there, as an operator's
# drill account with sudo would be) and the primary's host key.
drill_orchestrator_up

# vmctl: the runbook's service commands.  Ports: 1808N production and
# promoted guests (in their site's namespace), 1809N isolated test copies.
cat > "$T/vmctl" <<SH
#!/bin/bash
set -u
T=$T VM_ACCEL=$VM_ACCEL BASCULE_TEST_CACHE=$VM_CACHE
. $ROOT/tests/lib/vm.sh
SH
cat >> "$T/vmctl" <<'SH'
# vmctl start|stop|kill primary|secondary|test NAME;  vmctl verify NAME
what=$1 where=$2 name=${3:-}
[ "$what" = verify ] && name=$where
n=${name#vm}
case $where in
	primary) disk=$T/xfs/vms/$name/disk port=$((18080 + n)) net="" ;;
	test) disk=${BASCULE_DISKS:-}/disk port=$((18090 + n)) net="restrict=on" ;;
	*) disk=${BASCULE_DISKS:-}/disk port=$((18080 + n)) net="" ;;
esac
[ "$what" = verify ] && [ "${BASCULE_MODE:-}" = test ] && port=$((18090 + n))
inst=$name-$where
pidf=$T/vm-$inst.pid
alive() { [ -f "$pidf" ] && kill -0 "$(cat "$pidf" 2>/dev/null)" 2>/dev/null; }
case $what in
start)
	alive && exit 0   # idempotent: a resumed drill starts it again
	[ -e "$disk" ] || { echo "no disk $disk"; exit 1; }
	eval "$(vm_qemu_cmd "$inst" "$disk" "$port" "$net")" ;;
stop)
	alive || exit 0
	kill -TERM "$(cat "$pidf")"
	while alive; do sleep 0.1; done
	rm -f "$pidf" ;;
kill)
	alive && kill -KILL "$(cat "$pidf")"
	rm -f "$pidf" ;;
verify)
	boot=$(curl -s -m 2 "http://127.0.0.1:$port/status" | sed -n 's/^boot_seq=//p')
	need=1
	[ "${BASCULE_MODE:-}" = planned ] && need=$(vm_last_written "$T/vm-$name-primary.console")
	[ "${BASCULE_MODE:-}" = failback ] && need=$(vm_last_written "$T/vm-$name-secondary.console")
	[ -n "$boot" ] && [ "$boot" -ge "${need:-1}" ] && [ "$boot" -ge 1 ] && exit 0
	echo "guest $name sees ${boot:-no} records, needs $need"; exit 1 ;;
esac
SH
chmod +x "$T/vmctl"

# write_runbook [URL-PREFIX]: the http checks go to PREFIX+N (default
# http://127.0.0.1:1808; test copies listen on 1809N)
write_runbook() {
	cat > "$T/runbook.yaml" <<YAML
name: "drill test: two QEMU guests, primary to secondary"
objectives:
  rto: 5m
  rpo: 30s
$(runbook_sites "clone_dir: $T/clones")
prechecks:
  max_lag: 60s
  min_free: 1MiB
services:
YAML
	for v in vm1 vm2; do
		n=${v#vm}
		cat >> "$T/runbook.yaml" <<YAML
  - name: $v
    group: $v
$([ $v = vm2 ] && echo "    after: [vm1]")
    stop: $T/vmctl stop primary $v
    stop_timeout: 20s
    force_stop: $T/vmctl kill primary $v
    start: $T/vmctl start secondary $v
    start_timeout: 60s
    restart: $T/vmctl start primary $v
    secondary_stop: $T/vmctl stop secondary $v
    test_start: $T/vmctl start test $v
    test_stop: $T/vmctl stop test $v
    checks:
      - name: http
        http: ${1:-http://127.0.0.1:1808}$n/status
        expect_body: "boot_seq="
        timeout: 2s
        retries: 120
        interval: 500ms
      - name: records
        command: $T/vmctl verify $v
        timeout: 10s
        retries: 3
        interval: 1s
YAML
	done
	cat >> "$T/runbook.yaml" <<YAML
switch:
  - name: dns
    command: echo "www -> secondary" >> $T/dns.log
    back: echo "www -> primary" >> $T/dns.log
failback:
  start: $T/fbctl start
  stop: $T/fbctl stop
  control_socket: $T/fb.sock
  replica_root: $T/xfs/vms
  site_key: $T/site.key
$(runbook_report)
YAML
}
drill() { in_secondary "$BIN/bascule" drill "$T/runbook.yaml" "$@"; }
journal_step() { # the kind of the first step that is running, or ""
	python3 -c "import json,sys
try: d=json.load(open('$T/drillstate/current.json'))
except Exception: sys.exit(0)
print(next((s['kind'] for s in d['steps'] if s['status']=='running'), ''))"
}
# what a guest booted at the secondary site reports (its port is there)
boot_seq_at_secondary() { in_secondary bash -c "curl -s -m 2 http://127.0.0.1:$1/status || true" | sed -n 's/^boot_seq=//p'; }
report_field() { python3 -c "import json; d=json.load(open('$1'))['report']; print($2)"; }
wait_written() { # NAME COUNT: the primary guest NAME reported COUNT more records
	local base; base=$(vm_last_written "$T/vm-$1-primary.console"); base=${base:-0}
	for _ in $(seq 600); do
		[ "$(vm_last_written "$T/vm-$1-primary.console")" -ge $((base + $2)) ] 2>/dev/null && return 0
		sleep 0.1
	done
	fail "guest $1 on the primary does not write"
}
start_production() {
	for v in vm1 vm2; do in_primary "$T/vmctl" start primary $v || fail "cannot boot $v"; done
	for v in vm1 vm2; do wait_written $v 5; done
}
kill_at_step() { # KIND: run a planned drill, kill -9 it while step KIND runs
	drill --mode planned > "$T/drill-killed.out" 2>&1 &
	local pid=$!
	for _ in $(seq 1200); do
		[ "$(journal_step)" = "$1" ] && break
		kill -0 $pid 2>/dev/null || { cat "$T/drill-killed.out"; fail "the drill ended before step $1"; }
		sleep 0.05
	done
	[ "$(journal_step)" = "$1" ] || fail "step $1 never ran"
	# The orchestrator itself (ip netns exec may have forked it).
	pkill -9 -f "$BIN/bascule drill $T/runbook.yaml" || fail "no drill process to kill"
	wait $pid 2>/dev/null || true
	note "planned drill killed with -9 during step $1"
}

# ---- 1. plan and validation ----
write_runbook
bsc_start
start_production
bsc_sync 60s >/dev/null || fail "initial sync"
drill --mode plan > "$T/plan.out" || fail "plan failed: $(cat "$T/plan.out")"
grep -q "start vm2 on secondary (wave 2)" "$T/plan.out" || fail "plan lacks the second wave: $(cat "$T/plan.out")"
grep -q "final sync of vm1" "$T/plan.out" || fail "plan lacks the final sync"
[ -e "$T/drillstate/current.json" ] && fail "plan must touch nothing"
sed 's/after: \[vm1\]/after: [vm9]/' "$T/runbook.yaml" > "$T/bad.yaml"
set +e; in_secondary "$BIN/bascule" drill "$T/bad.yaml" --mode plan 2>"$T/bad.err"; rc=$?; set -e
[ $rc = 2 ] && grep -q "bad.yaml:[0-9]*:[0-9]*: service 'vm2' starts after 'vm9'" "$T/bad.err" \
	|| fail "a broken runbook: exit $rc, $(cat "$T/bad.err")"
cp "$T/runbook.yaml" "$T/open.yaml"; chmod 666 "$T/open.yaml"
set +e; in_secondary "$BIN/bascule" drill "$T/open.yaml" --mode plan 2>"$T/open.err"; rc=$?; set -e
[ $rc = 2 ] && grep -q "writable by group or others.*chmod go-w" "$T/open.err" || fail "a world-writable runbook: exit $rc"
note "plan: $(grep -c '^ *[0-9]' "$T/plan.out") steps; broken or world-writable runbook refused"

# ---- 2. test mode: production untouched ----
write_runbook http://127.0.0.1:1809
cut0=$(status_get "max(g['last_cut'] for g in d['groups'])")
w0=$(vm_last_written "$T/vm-vm1-primary.console")
set +e; drill --mode test > "$T/test.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] || { cat "$T/test.out"; fail "test drill exit $rc"; }
grep -q "Drill .*(test): PASS" "$T/test.out" || fail "test drill did not pass: $(cat "$T/test.out")"
for v in vm1 vm2; do
	kill -0 "$(cat "$T/vm-$v-primary.pid")" 2>/dev/null || fail "production guest $v stopped during the test drill"
	[ -e "$T/vm-$v-test.pid" ] && fail "test copy of $v left running"
done
[ "$(ls -A "$T/clones" 2>/dev/null)" = "" ] || fail "clones left behind: $(ls "$T/clones")"
pgrep -f "qemu-system-x86_64 -name vm[12]-test .*$T/" >/dev/null && fail "a test qemu is still running"
grep -q "www" "$T/dns.log" 2>/dev/null && fail "test mode must not switch traffic"
wait_written vm1 3
bsc_sync 60s >/dev/null || fail "replication stopped after the test drill"
cut1=$(status_get "max(g['last_cut'] for g in d['groups'])")
[ "$cut1" -gt "$cut0" ] || fail "no new epoch after the test drill ($cut0 -> $cut1)"
[ "$(status_get "any(g['paused'] for g in d['groups'])")" = False ] || fail "a group was left paused"
note "test: PASS, clones booted and removed; production wrote $w0 -> $(vm_last_written "$T/vm-vm1-primary.console") records, epochs $cut0 -> $cut1"

# ---- 3. planned, killed mid-drill, --abort brings production back ----
# The first abort meets a replica held by another command (flock(1) on the
# replica's lock, standing in for a long `bascule replica verify`): the
# demotes fail after waiting, everything else is undone, exit 3 and the
# journal stays; once the lock is free, --abort again finishes the job.
write_runbook
kill_at_step check
flock "$R/.bascule/lock" sleep 600 & holder=$!
for _ in $(seq 100); do # the daemon's receiver holds it: stop it until flock wins
	pgrep -P $holder >/dev/null && break
	pkill -f "$BIN/bascule recv --root $R" || true
	sleep 0.1
done
pgrep -P $holder >/dev/null || fail "cannot hold the replica's lock"
set +e; drill --abort > "$T/abort1.out" 2>&1; rc=$?; set -e
pkill -P $holder; wait $holder 2>/dev/null || true
[ $rc = 3 ] || fail "an abort whose demotes fail exits 3, got $rc: $(cat "$T/abort1.out")"
grep -q "(planned): ABORT-INCOMPLETE" "$T/abort1.out" || fail "abort 1: $(cat "$T/abort1.out")"
grep -q "FAIL.*demote vm2" "$T/abort1.out" || fail "the failed demote is not named: $(cat "$T/abort1.out")"
grep -q "run 'bascule drill .* --abort' again" "$T/abort1.out" || fail "no advice after a failed abort"
[ -e "$T/drillstate/current.json" ] || fail "a failed abort must keep the drill current"
for v in vm1 vm2; do # the undo steps after the failed demotes ran all the same
	kill -0 "$(cat "$T/vm-$v-primary.pid" 2>/dev/null)" 2>/dev/null || fail "a failed abort did not restart $v on the primary"
	[ -e "$T/vm-$v-secondary.pid" ] && fail "a failed abort left $v running on the secondary"
done
set +e; drill --resume > "$T/resume-refused.out" 2>&1; rc=$?; set -e
[ $rc = 2 ] && grep -q "is being aborted" "$T/resume-refused.out" || fail "resume after abort: exit $rc"
set +e; drill --abort > "$T/abort.out" 2>&1; rc=$?; set -e
grep -q "(planned): ABORTED" "$T/abort.out" || fail "abort: $(cat "$T/abort.out")"
[ $rc = 2 ] || fail "an aborted drill exits 2, got $rc"
grep -q "again: 2 undo steps left" "$T/abort.out" || fail "the second abort should run only the 2 demotes: $(cat "$T/abort.out")"
for v in vm1 vm2; do
	kill -0 "$(cat "$T/vm-$v-primary.pid" 2>/dev/null)" 2>/dev/null || fail "abort did not restart $v on the primary"
	[ -e "$T/vm-$v-secondary.pid" ] && fail "abort left $v running on the secondary"
done
[ -e "$T/drillstate/current.json" ] && fail "the aborted drill is still current"
[ "$(status_get "any(g['paused'] for g in d['groups'])")" = False ] || fail "abort did not resume replication"
"$BIN/bascule" replica list --root "$R" >/dev/null
wait_written vm1 5
bsc_sync 120s >/dev/null || fail "replication does not resume after the abort"
for v in vm1 vm2; do
	[ -e "$R/.bascule/groups/$v/promoted" ] && fail "$v is still promoted after the abort"
done
note "abort with the replica held: exit 3, demotes named, journal kept, resume refused; again: 2 steps ran"
note "abort: $(grep -c '(abort)' "$(ls "$T"/reports/*planned.html | tail -1)") undo steps; guests back on the primary, replication resumed"

# ---- 4. unplanned: link cut, primary killed ----
wait_written vm1 10
lag_at=$(date +%s.%N)
lag=$(status_get "max(t['groups'][g]['lag_seconds'] for t in d['targets'] for g in t['groups'])")
cut_at=$(date +%s.%N)
sites_cut
for v in vm1 vm2; do in_primary "$T/vmctl" kill primary $v; done
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""
set +e; drill --mode unplanned --incident "@$cut_at" > "$T/unplanned.out" 2>&1; rc=$?; set -e
grep -q "(unplanned): PASS" "$T/unplanned.out" || { cat "$T/unplanned.out"; fail "unplanned drill exit $rc"; }
rep=$(ls "$T"/reports/*unplanned.json)
rpo=$(report_field "$rep" "d['achieved']['rpo_us']/1e6")
# The lag grows by the time between its reading and the cut (seconds on a
# loaded machine: the status query itself), and moves by an epoch around it.
python3 -c "import sys; l,r,w=$lag,$rpo,$cut_at-$lag_at; sys.exit(0 if r <= l + w + 1.5 and r >= l - 2.5 else 1)" \
	|| fail "RPO $rpo s does not match the lag $lag s the status socket showed $(echo "$cut_at - $lag_at" | bc) s before the cut"
[ "$(report_field "$rep" "all(g['consistent'] for g in d['groups'])")" = True ] || fail "an inconsistent epoch was promoted"
for v in vm1 vm2; do
	seen=$(boot_seq_at_secondary $((18080 + ${v#vm})))
	wrote=$(vm_last_written "$T/vm-$v-primary.console")
	{ [ "${seen:-0}" -ge 1 ] && [ "$seen" -le "$wrote" ]; } || fail "$v boots with $seen records; the primary wrote $wrote"
done
note "unplanned: lag before the cut $lag s, reported RPO $rpo s; guests boot the last consistent epoch ($seen of $wrote records of vm2)"

# Back to production on the primary (what failback automates): stop the
# secondary's guests, make the replicas replicas again (resynced with
# librsync), restore the link.
for v in vm1 vm2; do in_secondary "$T/vmctl" stop secondary $v; done
for v in vm1 vm2; do in_secondary "$BIN/bascule" replica demote --root "$R" --key "$T/secondary/site.key" --group $v >/dev/null; done
sites_restore
bsc_start
start_production
bsc_sync 120s >/dev/null || fail "no resync after the unplanned drill"

# ---- 5. planned, killed mid-drill, --resume ----
rm -f "$T/dns.log"
kill_at_step check
set +e; drill --resume > "$T/resume.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] || { cat "$T/resume.out"; fail "resumed drill exit $rc"; }
grep -q "(planned): PASS" "$T/resume.out" || fail "resumed drill: $(cat "$T/resume.out")"
rep=$(ls -t "$T"/reports/*planned.json | head -1)
[ "$(report_field "$rep" "d['achieved']['rpo_us']")" = 0 ] || fail "planned RPO is not 0"
[ "$(report_field "$rep" "len(d['resumed_us'])")" = 1 ] || fail "the report does not record the interruption"
for v in vm1 vm2; do
	seen=$(boot_seq_at_secondary $((18080 + ${v#vm})))
	wrote=$(vm_last_written "$T/vm-$v-primary.console")
	[ "$seen" -ge "$wrote" ] || fail "data lost: $v wrote $wrote records before the stop, sees $seen"
	note "$v: wrote $wrote records on the primary, sees $seen on the secondary"
done
grep -q "www -> secondary" "$T/dns.log" || fail "traffic was not switched"
rto=$(report_field "$rep" "d['achieved']['rto_us']/1e6")
note "planned (killed, resumed): PASS, RTO $rto s, RPO 0"

# ---- 6. the report ----
html=${rep%.json}.html
"$BIN/bascule" report verify --key "$T/sign.key.pub" "$rep" >/dev/null || fail "valid JSON report refused"
"$BIN/bascule" report verify --key "$T/sign.key.pub" "$html" >/dev/null || fail "valid HTML report refused"
sed 's/"rpo_us": 0,/"rpo_us": 1,/' "$rep" > "$T/tampered.json"
cmp -s "$rep" "$T/tampered.json" && fail "tampering had no effect"
set +e; "$BIN/bascule" report verify --key "$T/sign.key.pub" "$T/tampered.json" 2>"$T/v.err"; rc=$?; set -e
[ $rc = 1 ] && grep -q "BAD SIGNATURE" "$T/v.err" || fail "tampered JSON: exit $rc $(cat "$T/v.err")"
sed 's/>PASS</>PASS (audited)</' "$html" > "$T/tampered.html"
set +e; "$BIN/bascule" report verify --key "$T/sign.key.pub" "$T/tampered.html" 2>"$T/v.err"; rc=$?; set -e
[ $rc = 1 ] || fail "edited HTML page accepted: exit $rc"
"$BIN/bascule" keygen signing "$T/other.key" >/dev/null
set +e; "$BIN/bascule" report verify --key "$T/other.key.pub" "$rep" 2>/dev/null; rc=$?; set -e
[ $rc = 1 ] || fail "a report signed by another key was accepted"
if command -v chromium >/dev/null; then
	ART=${BASCULE_TEST_ARTIFACTS:-$ROOT/build/test-artifacts}
	mkdir -p "$ART"
	timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
		--screenshot="$ART/drill-report.png" --window-size=1200,1600 "file://$html" >/dev/null 2>&1 \
		|| fail "chromium could not render the report"
	size=$(stat -c %s "$ART/drill-report.png")
	[ "$size" -gt 20000 ] || fail "the screenshot is nearly empty ($size bytes)"
	cp "$html" "$ART/drill-report.html"
	note "report rendered by headless Chromium: $ART/drill-report.png ($size bytes)"
else
	fail "chromium is not installed"
fi
note "report: signature valid; tampered JSON, edited page and foreign key refused"

# ---- 7. failback: reverse replication (librsync resync), then home ----
# The reverse daemon runs at the secondary with the promoted disks as
# sources; its key may only run bascule recv into the primary's disk root.
ssh-keygen -q -t ed25519 -N "" -f "$T/fb_id" -C failback
echo "restrict,command=\"$BIN/bascule recv --root $T/xfs/vms --key $T/site.key\" $(cat "$T/fb_id.pub")" \
	>> "$T/ssh-primary/authorized_keys"
cat > "$T/fb.yaml" <<YAML
state_dir: $T/fbstate
key: $T/site.key
control_socket: $T/fb.sock
groups:
  - name: vm1
    interval: 1s
    sources:
      - name: disk
        disk: $R/vm1/disk
  - name: vm2
    interval: 1s
    sources:
      - name: disk
        disk: $R/vm2/disk
targets:
  - name: home
    url: ssh://root@$IP_P:22$T/xfs/vms
    identity: $T/fb_id
    known_hosts: $T/drill_known_hosts
YAML
cat > "$T/fbctl" <<SH
#!/bin/bash
# failback.start / failback.stop: the reverse basculed (its status is kept
# for the test before it stops)
case \$1 in
start)
	[ -f $T/fb.pid ] && kill -0 \$(cat $T/fb.pid) 2>/dev/null && exit 0
	$BIN/basculed -c $T/fb.yaml -v >> $T/fb.log 2>&1 < /dev/null &
	echo \$! > $T/fb.pid
	for _ in \$(seq 100); do [ -S $T/fb.sock ] && exit 0; sleep 0.1; done
	exit 1 ;;
stop)
	[ -f $T/fb.pid ] || exit 0
	$BIN/bascule --socket $T/fb.sock status --json > $T/fb-status.json || true
	kill \$(cat $T/fb.pid) 2>/dev/null
	while kill -0 \$(cat $T/fb.pid) 2>/dev/null; do sleep 0.1; done
	rm -f $T/fb.pid ;;
esac
SH
chmod +x "$T/fbctl"
wait_secondary_written() { # the promoted guests keep writing at the secondary
	local base; base=$(vm_last_written "$T/vm-$1-secondary.console")
	for _ in $(seq 600); do
		[ "$(vm_last_written "$T/vm-$1-secondary.console")" -ge $((base + $2)) ] && return 0; sleep 0.1
	done
	fail "guest $1 on the secondary does not write"
}
wait_secondary_written vm1 5
write_runbook "http://$IP_P:1808"
set +e; drill --mode failback > "$T/failback.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] && grep -q "(failback): PASS" "$T/failback.out" || { cat "$T/failback.out"; tail -20 "$T/fb.log"; fail "failback exit $rc"; }
for v in vm1 vm2; do
	kill -0 "$(cat "$T/vm-$v-primary.pid" 2>/dev/null)" 2>/dev/null || fail "$v is not running at home after failback"
	[ -e "$T/vm-$v-secondary.pid" ] && fail "$v still runs on the secondary"
	seen=$(in_primary bash -c "curl -s -m 2 http://127.0.0.1:$((18080 + ${v#vm}))/status" | sed -n 's/^boot_seq=//p')
	wrote=$(vm_last_written "$T/vm-$v-secondary.console")
	[ "$seen" -ge "$wrote" ] || fail "failback lost data: $v wrote $wrote records at the secondary, sees $seen at home"
	note "failback $v: wrote $wrote records at the secondary, sees $seen at home"
done
sent=$(python3 -c "import json; t=json.load(open('$T/fb-status.json'))['targets'][0]; print(t['bytes_sent'])")
[ "$sent" -lt $((64 << 20)) ] || fail "failback sent $sent bytes: more than one whole disk (not a resync)"
grep -q "www -> primary" "$T/dns.log" || fail "traffic was not switched back"
[ "$(status_get "any(g['paused'] for g in d['groups'])")" = False ] || fail "forward replication still paused"
bsc_sync 180s >/dev/null || fail "forward replication does not resume after failback"
note "failback: PASS; reverse resync sent $sent bytes for 2 x 64 MiB disks; forward replication resumed"
