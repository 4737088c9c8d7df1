# qemudrill: the commands of the failover path on a qemu: source (issue 15,
# "Every existing command works on such a source unchanged").  A QEMU holds
# a qcow2 image as its guest's disk; the guest's records (record N in block
# N, as tests/lib/vm.sh's guest writes them) are written through the
# device, and the disk is replicated through QEMU (one group, its disk a
# qemu: source) to a local replica and a local vault.  The writes stop at
# epoch E and the guest-visible disk is converted to raw ($T/at-E.raw);
# then they go on, so later epochs land on the replica before:
#   1. a test drill (`bascule drill --mode test`, hosts local): the clone of
#      the group boots as the real guest (KVM, or TCG) and finds every record
#      written before E; the report says PASS with the achieved RTO and RPO,
#      and the clone is gone;
#   2. `bascule restore` of epoch E from the vault equals $T/at-E.raw;
#   3. `bascule replica promote --epoch E` rolls the replica back to E: the
#      promoted disk (raw) equals $T/at-E.raw (qemu-img compare) and holds
#      every record written before E.
# A replica or vault cut from a torn view, or not rolled back, differs.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/vm.sh"
need_root
command -v qemu-img >/dev/null || fail "qemu-img is not installed (qemu-utils)"
t_start=$(date +%s.%N)
vm_prepare
bsc_keygen
"$BIN/bascule" keygen vault "$T/vault.key" >/dev/null
"$BIN/bascule" keygen signing "$T/sign.key" >/dev/null
vault_dir "$T/vault"
IMG=$T/vm1.qcow2
qemu-img create -q -f qcow2 "$IMG" 64M
PORT=$((18900 + RANDOM % 300))
vms_down() { local p; for p in "$T"/vm-*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null; done
	[ -z "${WRITER:-}" ] || kill "$WRITER" 2>/dev/null; true; }
EXIT_HOOKS+=(vms_down)
# The primary: a QEMU holding the qcow2 as device vd0 with no guest booted
# (a TCG boot takes ~40 s on a loaded machine; the drill boots one), its
# writes the guest's records (record N in block N, as the guest's init
# writes and finds them) through the device (HMP qemu-io, so the cut's
# copy-before-write view sees them as a guest's), each one counted in
# $T/written once QEMU has it.  Stopped by SIGTERM after a whole record.
vm_qemu_bare vm1 "$IMG" qcow2 "$T/qmp.sock"
qmp() { vm_qmp "$T/qmp.sock.test" "$@"; }
written() { cat "$T/written" 2>/dev/null || echo 0; }
writer_start() {
	PYTHONPATH=$ROOT/tests/lib python3 - "$T" "$(written)" <<'PY' &
import os, signal, sys, time
from qmp import Qmp
t, n = sys.argv[1], int(sys.argv[2])
q, stop = Qmp(t + "/qmp.sock.test"), []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while not stop:
    n += 1
    with open(t + "/rec", "wb") as f:
        f.write((b"BSCREC %d \n" % n).ljust(4096, b"\0"))
    q.hmp('qemu-io -d vd0/virtio-backend "write -q -s %s/rec %d 4096"' % (t, n * 4096))
    with open(t + "/written.new", "w") as f:
        f.write("%d\n" % n)
    os.rename(t + "/written.new", t + "/written")
    time.sleep(0.05)
PY
	WRITER=$!
}
writer_stop() { kill -TERM "$WRITER"; wait "$WRITER" 2>/dev/null || true; }
wait_written() { local n=$(($(written) + $1)); wait_for 60 "$1 more records written" "[ \$(written) -ge $n ]"; }
acked() { status_get "[t for t in d['targets'] if t['name'] == '$1'][0]['groups']['vm1']['acked']"; }
R=$T/replica
SOURCES="root:QEMU"
bsc_config 500ms 5s "keep_time: 10m"  # epoch E stays a rollback point
vm_config_qemu "$T/qmp.sock"
cat >> "$T/bascule.yaml" <<YAML
  - name: offsite
    type: vault
    url: local:$T/vault
    vault_key: $T/vault.key
    interval: 500ms
YAML
bsc_start
writer_start
wait_written 5
bsc_sync 60s >/dev/null || fail "first sync"

# Epoch E: the writes stopped and flushed, replica and vault synced.
writer_stop
qmp human-monitor-command '{"command-line": "qemu-io -d vd0/virtio-backend flush"}' >/dev/null
need=$(written)
bsc sync --wait --vault --timeout 60s >/dev/null || fail "sync --wait --vault with the writes stopped"
E=$(acked secondary)
EV=$(acked offsite)
[ "$EV" = "$E" ] || fail "the vault acknowledged epoch $EV, the replica $E, after one sync with the writes stopped"
qemu-img convert -U -f qcow2 -O raw "$IMG" "$T/at-E.raw"
[ "$(vm_disk_seq "$T/at-E.raw")" = "$need" ] || fail "the guest's disk at epoch $E holds $(vm_disk_seq "$T/at-E.raw") records, $need were written"
writer_start
wait_written 10
bsc_sync 60s >/dev/null || fail "sync after the writes resumed"
E2=$(acked secondary)
[ "$E2" -gt "$E" ] || fail "no epoch after $E while the writes went on"
grep -q "read [1-9][0-9]* bytes through NBD (dirty bitmap" "$T/daemon.log" || fail "no cut read the source through QEMU's dirty bitmap"
note "epoch $E: $need records written; the replica went on to epoch $E2"

# ---- 1. a test drill: the clone boots and finds the records ----
cat > "$T/vmctl" <<SH
#!/bin/bash
# vmctl start|stop|verify: the clone of vm1 booted from \$BASCULE_DISKS/root
set -u
T=$T VM_ACCEL=$VM_ACCEL BASCULE_TEST_CACHE=$VM_CACHE PORT=$((PORT + 1)) NEED=$need
. $ROOT/tests/lib/vm.sh
SH
cat >> "$T/vmctl" <<'SH'
pidf=$T/vm-vm1-test.pid
case $1 in
start) [ -e "$BASCULE_DISKS/root" ] || { echo "no disk $BASCULE_DISKS/root"; exit 1; }
	eval "$(vm_qemu_cmd vm1-test "$BASCULE_DISKS/root" "$PORT" restrict=on)" ;;
stop) [ -f "$pidf" ] || exit 0
	kill -TERM "$(cat "$pidf")"
	while kill -0 "$(cat "$pidf")" 2>/dev/null; do sleep 0.1; done
	rm -f "$pidf" ;;
verify) seq=$(vm_boot_seq "$PORT")
	[ -n "$seq" ] && [ "$seq" -ge "$NEED" ] && { echo "boot_seq=$seq"; exit 0; }
	echo "the clone sees ${seq:-no} records, needs $NEED"; exit 1 ;;
esac
SH
chmod +x "$T/vmctl"
cat > "$T/runbook.yaml" <<YAML
name: qemu source test drill
objectives: {rto: 5m, rpo: 5m}
hosts: [{name: here, url: local}]
primary: {host: here, bascule: $BIN/bascule, control_socket: $T/ctl.sock, sync_timeout: 60s}
secondary: {host: here, bascule: $BIN/bascule, replica_root: $R, site_key: $T/site.key, clone_dir: $T/clones}
prechecks: {max_lag: 1m}
services:
  - name: vm1
    group: vm1
    stop: "true"
    start: "true"
    test_start: $T/vmctl start
    test_stop: $T/vmctl stop
    checks:
      - {name: http, http: "http://127.0.0.1:$((PORT + 1))/status", expect_body: "boot_seq=", timeout: 2s, retries: 120, interval: 500ms}
      - {name: records, command: $T/vmctl verify, timeout: 10s, retries: 3, interval: 1s}
report: {dir: $T/reports, signing_key: $T/sign.key}
state_dir: $T/drillstate
YAML
t0=$(date +%s.%N)
set +e; "$BIN/bascule" drill "$T/runbook.yaml" --mode test > "$T/drill.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] && grep -q "(test): PASS" "$T/drill.out" || fail "test drill exit $rc: $(cat "$T/drill.out")"
rep=$(ls "$T"/reports/*-test.json)
"$BIN/bascule" report verify "$rep" >/dev/null || fail "the drill's report does not verify"
read -r rto rpo cloned < <(python3 -c "import json; r=json.load(open('$rep'))['report']; a=r['achieved']
s=[s for s in r['steps'] if s['kind']=='clone'][0]
print(a['rto_us']/1e6, a['rpo_us']/1e6, s['message'].split('epoch ')[1].split()[0])")
[ "$cloned" -ge "$E2" ] || fail "the drill cloned epoch $cloned, older than the last one acknowledged ($E2)"
[ -z "$(ls -A "$T/clones" 2>/dev/null)" ] || fail "clones left behind: $(ls "$T/clones")"
[ ! -e "$T/vm-vm1-test.pid" ] || fail "the test clone is still running"
note "test drill: PASS in $(echo "$(date +%s.%N) - $t0" | bc) s, clone of epoch $cloned booted, achieved RTO $rto s, RPO $rpo s"

# ---- 2. restore of epoch E from the vault ----
# (-c: the vault, its key and the commit record from the daemon's
# configuration, whose source is a qemu: one)
"$BIN/bascule" restore -c "$T/bascule.yaml" --source vm1/root --epoch "$E" \
	--to "$T/restored.raw" > "$T/restore.out" 2>&1 || fail "restore of epoch $E: $(cat "$T/restore.out")"
qemu-img compare -q -f raw -F raw "$T/at-E.raw" "$T/restored.raw" \
	|| fail "the disk restored from the vault at epoch $E differs from the guest's disk at that epoch"
note "restore of epoch $E from the vault: equal to the guest's disk then"

# ---- 3. promote at epoch E: rolled back, equal, its records there ----
set +e; "$BIN/bascule" replica promote --root "$R" --key "$T/site.key" --group vm1 --epoch "$E" --link-dir "$T/promoted" \
	> "$T/promote.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] || fail "promote at epoch $E: exit $rc: $(cat "$T/promote.out")"
bsc_stop
writer_stop
qemu-img compare -q -f raw -F raw "$T/at-E.raw" "$T/promoted/root" \
	|| fail "the disk promoted at epoch $E differs from the guest's disk at that epoch"
[ "$(qemu-img info --output=json "$T/promoted/root" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = raw ] \
	|| fail "the promoted disk is not raw"
# (no second boot: the drill's clone booted; this reads the records as the
# guest's init does at boot)
seq=$(vm_disk_seq "$T/promoted/root")
[ "$seq" -ge "$need" ] || fail "the promoted disk holds records up to $seq, $need were flushed before epoch $E"
note "promoted at epoch $E (rolled back from $E2): raw, equal to the guest's disk then, holds records 1..$seq (>= $need)"
note "took $(echo "$(date +%s.%N) - $t_start" | bc) s (accel $VM_ACCEL)"
