# qemusrc: a running guest on a qcow2 image, replicated through QEMU (a
# qemu: source): after `sync --wait` the replica is the guest-visible disk;
# a cut reads the dirty blocks only; QEMU killed and restarted -> one full
# read, then the bitmap again; the daemon stopped (SIGTERM) mid-cut -> the
# cut stops uncommitted at once, its view removed, its bitmap merged back;
# the daemon killed mid-cut -> its view removed,
# the frozen bitmap merged back, no full read; a guest agent that never
# answers -> the epoch is fuzzy and the guest thawed; the replica promoted
# (`bascule replica promote`) boots and finds every record flushed before
# the sync.  Then a bare QEMU with two disks: one freeze and one
# transaction per cut, a missed write found by the verifying read, the
# daemon killed mid-cut of both disks; and a group of two guests: fuzzy.
# run.sh: first
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/vm.sh"
need_root
command -v qemu-img >/dev/null || fail "qemu-img is not installed (qemu-utils)"
vm_prepare
bsc_keygen
IMG=$T/vm1.qcow2
qemu-img create -q -f qcow2 "$IMG" 256M
export VM_FORMAT=qcow2 VM_QMP=$T/qmp.sock VM_QEMU_EXTRA="-qmp unix:$T/qmp-test.sock,server=on,wait=off"
PORT=$((18500 + RANDOM % 400))
vms_down() { local p; for p in "$T"/vm-*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null; done; [ -z "${AGENT:-}" ] || kill "$AGENT" 2>/dev/null; true; }
EXIT_HOOKS+=(vms_down)
boot() { rm -f "$VM_QMP" "$T/qmp-test.sock"; eval "$(vm_qemu_cmd vm1 "$IMG" "$PORT")" || fail "QEMU did not start"
	wait_for 30 "no QMP socket" "[ -S $VM_QMP ] && [ -S $T/qmp-test.sock ]"; }
# qmp CMD [JSON-ARGS]: the return value of CMD on the test's own monitor.
qmp() { vm_qmp "$T/qmp-test.sock" "$@"; }
# ours [SOCK]: what of Bascule's is inside QEMU (nodes, jobs, exports;
# bitmaps apart), asked on SOCK (the guest's test monitor by default) in
# one connection (a loaded machine's python starts slowly: a view lives
# seconds)
ours() { python3 - "${1:-$T/qmp-test.sock}" "$VM_QMP_PY" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("qmp", sys.argv[2])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
q = m.Qmp(sys.argv[1])
print(*[n["node-name"] for n in q.call("query-named-block-nodes", {"flat": True}) if n["node-name"].startswith("bascule-")]
      + [j["device"] for j in q.call("query-block-jobs")] + [e["id"] for e in q.call("query-block-exports")])
PY
}
# stopped_in S: SIGTERM to the daemon, which must be gone within S seconds
# and exit 0; sets STOP_MS
stopped_in() { local t0 rc
	t0=$(date +%s%N); kill "$DAEMON_PID"
	wait_for "$1" "basculed to exit on SIGTERM" "gone $DAEMON_PID"
	STOP_MS=$((($(date +%s%N) - t0) / 1000000))
	set +e; wait "$DAEMON_PID"; rc=$?; set -e
	DAEMON_PID=""; rm -f "$T/ctl.sock"
	[ $rc = 0 ] || fail "basculed stopped with exit $rc"; }
bitmaps() { qmp query-named-block-nodes '{"flat":true}' | python3 -c 'import json,sys; print(*sorted(b["name"] for n in json.load(sys.stdin) if n["node-name"] == "disk0" for b in n.get("dirty-bitmaps", []) if "name" in b))'; }
written() { vm_last_written "$T/vm-vm1.console"; }
wait_written() { local n=$(($(written) + $1)); wait_for 60 "the guest to write $1 more records" "[ \$(written) -ge $n ]"; }
# same: pause the guest (QEMU flushes), sync, compare the replica with the
# guest-visible content of the qcow2, resume.
same() {
	qmp stop >/dev/null
	bsc_sync 60s || fail "sync --wait failed ($1)"
	qemu-img compare -U -q -f qcow2 -F raw "$IMG" "$(replica_of root)" || fail "replica differs from the guest's disk ($1)"
	qmp cont >/dev/null
}
reads() { grep -o "cut [0-9]* read [0-9]* bytes through NBD ([a-z ]*" "$T/daemon.log"; }

boot
wait_written 5
SOURCES="root:QEMU"
bsc_config 500ms 60s
vm_config_qemu "$VM_QMP"
# MiB go cold 2 s after every target holds them (the default is 1h).
sed -i 's/^    max_interval: 60s/&\n    cold_after: 2s/' "$T/bascule.yaml"
bsc_start
wait_written 10
same "first sync"
reads | head -1 | grep -q "full read" || fail "the first cut was not a full read: $(reads | head -3)"
wait_for 30 "a cut in bitmap mode" "reads | grep -q 'dirty bitmap'"
# In bitmap mode a cut reads what the guest wrote since the last one: a few
# 4 KiB records per 500 ms, never the disk (the full read is 256 MiB virtual).
# (cuts up to the first sync also read what the target's first full copy
# needs, whatever the bitmap says: count only the later ones)
n0=$(reads | wc -l)
wait_written 10
max=$(reads | tail -n +$((n0 + 1)) | grep "dirty bitmap" | awk '{ if ($4 > m) m = $4 } END { print m + 0 }')
note "bitmap-mode cuts: $(reads | grep -c 'dirty bitmap'), largest read $max bytes; first (full) cut: $(reads | head -1)"
[ "$max" -gt 0 ] && [ "$max" -le $((1024 * 1024)) ] || fail "a bitmap-mode cut read $max bytes (the guest writes ~40 KiB/s)"
same "bitmap mode"
# A MiB of the map goes cold (BSCBMAP3: its records punched, its node kept)
# once every target holds its change, cut cold_after ago (2 s here), and 4
# epochs were cut since (the guest
# writes near the start of the disk: its cuts go on); written again, it is
# read whole from the view and hot again, the replica equal.  MiB 200's word
# (lib/blockmap.c: little-endian u64 at 4096 + 8 x 200; top bits 11: cold).
hmp_io() { qmp human-monitor-command "{\"command-line\": \"qemu-io -d vd0/virtio-backend \\\"$1\\\"\"}" >/dev/null; }
word200() { od -An -tx1 -j $((4096 + 200 * 8 + 7)) -N1 "$T/state/groups/vm1/root.map" | tr -d ' '; }
hmp_io "write -q -P 0x3c 200M 1M"
wait_for 60 "MiB 200 of the map to go cold (word's top byte: $(word200))" '[ "$(word200)" = c0 ]'
n1=$(reads | wc -l)
hmp_io "write -q -P 0x3d $((200 * 1048576 + 8192)) 4k"
same "a cold MiB written again"
woke=$(reads | tail -n +$((n1 + 1)) | awk '{ if ($4 > m) m = $4 } END { print m + 0 }')
note "a cold MiB written again: $(grep -c 'MiB of the map gone cold' "$T/daemon.log") cuts made MiB cold; the cut after the write read $woke bytes"
[ "$woke" -ge 1048576 ] || fail "the cut after a write into a cold MiB read $woke bytes, not the whole MiB"
# Between cuts nothing of ours stays in QEMU.  The group is paused for the
# look: cuts every 500 ms whose views live ~0.3 s, up to a second under ASan
# at a load of 15, left no gap for a sample to fall in (CI).  The cut that
# runs at the pause ends and its view goes; a leak stays.
bsc pause vm1 >/dev/null
wait_for 30 "nothing of ours left in QEMU between cuts" 'left=$(ours); echo "$left" > "$WAIT_WHY"; [ -z "$left" ]'
bsc resume vm1 >/dev/null

# The daemon killed (-9) in the middle of a cut, its view (nodes, job, NBD
# export) left in QEMU: removed at the next cut, the frozen bitmap merged
# back (no full read), the replica equal.  The cut is made long and the only
# one: no timed cuts (interval 1h), reads capped at 2 MB/s, and 64 MiB
# written through the guest's device (HMP qemu-io, -d vd0/virtio-backend)
# before one `bascule sync`; its export in QEMU says it is reading.
cp "$T/bascule.yaml" "$T/bascule.yaml.fast"
bsc_stop
sed -i 's/^    interval: 500ms/    interval: 1h/; s/^    max_interval: 60s/    max_interval: 24h/; s|^control_socket:|io_rate: 2MB/s\ncontrol_socket:|' "$T/bascule.yaml"
bsc_start
bsc_sync 60s >/dev/null || fail "sync before the killed cut"
wait_for 15 "nothing of ours in QEMU before the long cut (seen: $(ours))" '[ -z "$(ours)" ]'
qmp human-monitor-command '{"command-line": "qemu-io -d vd0/virtio-backend \"write -P 0x5a 128M 64M\""}' >/dev/null
bsc sync >/dev/null
wait_for 30 "the long cut's NBD export in QEMU" '[[ "$(ours)" == *bascule-exp-* ]]'
# First SIGTERM in the middle of it (it would read for 32 s): its workers
# stop at their next chunk, the cut is not committed, its view is removed
# and its frozen bitmap merged back, as for a failed cut; exit 0 within
# seconds.  The next start's first cut reads the 64 MiB again: the cut
# killed below.
: >> "$T/daemon.log"; l0=$(($(wc -l < "$T/daemon.log") + 1)); s0=$SECONDS
stopped_in 20
grep -q "stopping: epoch [0-9]* of group vm1 is told to stop" "$T/daemon.log" ||
	fail "the stop does not say it stops the running cut"
grep -q "of group vm1 not cut: .*stopped with the daemon, not committed" "$T/daemon.log" ||
	fail "the stopped cut is not logged as not committed: $(grep 'not cut' "$T/daemon.log" | tail -2)"
nread=$(tail -n +"$l0" "$T/daemon.log" | sed -n 's/.*source root: cut [0-9]* read \([0-9]*\) bytes through NBD (dirty bitmap.*, not committed$/\1/p')
[ -n "$nread" ] && [ "$nread" -lt $((48 << 20)) ] || fail "the stopped cut read '$nread' bytes of 64 MiB: its workers did not stop"
[ -z "$(ours)" ] && [ "$(bitmaps | wc -w)" = 1 ] || fail "the stopped cut left '$(ours)' in QEMU, bitmaps '$(bitmaps)'"
note "SIGTERM mid-cut: exit 0 in $STOP_MS ms, the cut stopped after $((nread >> 20)) MiB of 64, QEMU clean, its bitmap merged back ($((SECONDS - s0)) s)"
t0=$(date +%s.%N)
bsc_start
wait_for 30 "the long cut's NBD export in QEMU" '[[ "$(ours)" == *bascule-exp-* ]]'
kill -9 "$DAEMON_PID"; took=$(printf "%.2f" "$(echo "$(date +%s.%N) - $t0" | bc)")
wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""; rm -f "$T/ctl.sock"
left=$(ours)
[[ $left == *bascule-fl-* && $left == *bascule-exp-* ]] || fail "the daemon was not killed mid-cut: QEMU holds '$left'"
[ "$(bitmaps)" = "bascule-a bascule-b" ] || fail "bitmaps after the kill: '$(bitmaps)', expected the frozen and the live one"
note "killed mid-cut ($took s after the start), left in QEMU: $left; bitmaps $(bitmaps)"
nk=$(reads | wc -l)
# restarted without io_rate, still without timed cuts: between two syncs
# nothing of ours may be in QEMU
sed -i '/^io_rate: /d' "$T/bascule.yaml"
bsc_start
bsc_sync 60s >/dev/null || fail "sync after the restart"
after=$(reads | tail -n +$((nk + 1)) | head -1)
[[ $after == *"dirty bitmap"* ]] || fail "the cut after the kill was not in bitmap mode: $after"
grep -q "a cut was interrupted .* merged into" "$T/daemon.log" || fail "the interrupted cut's bitmap take-over is not logged"
wait_for 15 "QEMU to hold nothing of ours but one bitmap (seen: '$(ours)', bitmaps '$(bitmaps)')" \
	'[ -z "$(ours)" ] && [ "$(bitmaps | wc -w)" = 1 ]'
[ ! -e "$T/state/vm1/root.fleece" ] || fail "the fleecing image of the killed cut is still there"
same "daemon killed mid-cut"
note "first cut after the restart: $after"
bsc_stop
mv "$T/bascule.yaml.fast" "$T/bascule.yaml"
bsc_start

# QEMU killed: the bitmap goes with it; the next cut reads all, then re-arms.
kill -9 "$(cat "$T/vm-vm1.pid")"
qpid=$(cat "$T/vm-vm1.pid")
wait_for 10 "QEMU to die of kill -9" "! kill -0 $qpid 2>/dev/null"
nfull=$(reads | grep -c "full read")
boot
wait_written 5
wait_for 30 "a full read after QEMU restarted" "[ \$(reads | grep -c 'full read') -gt $nfull ]"
# (QEMU killed in the middle of a cut, as under ASan's slower cuts: that
# cut's hand-over fails and says the next cut reads the whole disk)
grep -Eq "bitmap missing, inconsistent or not ours|bitmap hand-over: .*the next cut reads the whole disk" "$T/daemon.log" ||
	fail "the full read after a QEMU restart is not logged with its reason"
nb=$(reads | grep -c "dirty bitmap")
wait_for 30 "no bitmap mode after the full read" "[ \$(reads | grep -c 'dirty bitmap') -gt $nb ]"
same "after QEMU restarted"

# A guest agent that never answers (no qemu-guest-agent runs in the busybox
# guest: a socket that accepts and stays silent): thawed, fuzzy, logged.
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8); c=[]
while True: c.append(s.accept()[0])' "$T/qga.sock" & AGENT=$!
bsc_stop
sed -i "s|          node: vd0|          node: vd0\n          guest_agent: $T/qga.sock\n          agent_timeout: 300ms|" "$T/bascule.yaml"
bsc_start
wait_for 30 "an agent that never answers was not logged" "grep -q 'guest agent: .*this epoch will be fuzzy' $T/daemon.log"
same "agent silent"
bsc status --json | grep -q '"consistent": *false' || fail "an epoch cut while the agent was silent is not shown fuzzy (consistent: false) in status"

# The promoted replica boots with every record flushed before the sync.
qmp stop >/dev/null
need=$(written)
bsc_sync 60s || fail "last sync failed"
bsc_stop
kill "$(cat "$T/vm-vm1.pid")"
set +e; "$BIN/bascule" replica promote --root "${REPLICA_DIR:-$T/replica}" --key "$T/site.key" --group vm1 \
	--link-dir "$T/promoted" > "$T/promote.out" 2>&1; rc=$?; set -e
[ $rc = 0 ] || fail "replica promote: exit $rc: $(cat "$T/promote.out")"
unset VM_QMP VM_QEMU_EXTRA; VM_FORMAT=raw
P2=$((PORT + 1))
eval "$(vm_qemu_cmd vm1-promoted "$T/promoted/root" "$P2")" || fail "cannot boot the promoted replica"
wait_for 60 "the replica did not boot" "[ -n \"\$(vm_boot_seq $P2)\" ]"
seq=$(vm_boot_seq "$P2")
kill "$(cat "$T/vm-vm1-promoted.pid")"
[ "$seq" -ge "$need" ] || fail "the booted promoted replica found records up to $seq, $need were flushed before the sync"
note "replica promoted and booted: boot_seq=$seq >= $need written before the sync"

# Two disks of one guest in one group (a bare QEMU, no guest running: its
# writes come through its devices): ONE freeze and ONE transaction naming
# both nodes per cut (the agent's log, QEMU's trace of its QMP
# transactions), the epoch consistent, both replicas equal to the disks.
bsc_stop
kill "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null || true
rm -rf "$T/state" "$T/replica" "$T/qga.sock"
qemu-img create -q -f qcow2 "$T/m0.qcow2" 64M
qemu-img create -q -f qcow2 "$T/m1.qcow2" 64M
VM_QEMU_EXTRA="-blockdev driver=qcow2,node-name=disk1,file.driver=file,file.filename=$T/m1.qcow2 \
-device virtio-blk-pci,drive=disk1,id=vd1 -trace enable=qmp_enter_transaction,file=$T/qmp-trace.log"
vm_qemu_bare vm2 "$T/m0.qcow2" qcow2 "$T/m.qmp"
unset VM_QEMU_EXTRA
wait_for 30 "the second QEMU's monitors" "[ -S $T/m.qmp ] && [ -S $T/m.qmp.test ]"
# io DEVICE PATTERN OFFSET [LEN [MONITOR]]: LEN (64 KiB) written through
# DEVICE of the two-disk QEMU (or of the one on MONITOR), then flushed (the
# qcow2 file is compared while this QEMU holds it)
io() { local c; for c in "write -q -P $2 $3 ${4:-64k}" flush; do
	vm_qmp "${5:-$T/m.qmp.test}" human-monitor-command "{\"command-line\": \"qemu-io -d $1/virtio-backend \\\"$c\\\"\"}" >/dev/null; done; }
io vd0 0x11 1M; io vd1 0x22 2M
python3 "$VM_QMP_PY" agent "$T/qga.sock" "$T/qga.log" & AGENT=$!
wait_for 10 "the stand-in agent's socket" "[ -S $T/qga.sock ]"
SOURCES="root:QEMU data:QEMU"
: >> "$T/daemon.log"; l0=$(($(wc -l < "$T/daemon.log") + 1)) # this part's log: tail -n +$l0
bsc_config 1h 24h
vm_config_qemu "$T/m.qmp"
sed -i "0,/node: vd0/! s/node: vd0/node: vd1/; s|^          node: vd[01]\$|&\n          guest_agent: $T/qga.sock|; \
s/^    max_interval: .*/&\n    full_scan_every: 1h/" "$T/bascule.yaml"
bsc_start
bsc_sync 60s >/dev/null || fail "first sync of the two-disk guest"
io vd0 0x33 5M; io vd1 0x44 6M
bsc_sync 60s >/dev/null || fail "second sync of the two-disk guest"
both() { for d in 0 1; do qemu-img compare -U -q -f qcow2 -F raw "$T/m$d.qcow2" "$(replica_of "$([ $d = 0 ] && echo root || echo data)")" || return 1; done; }
both || fail "a replica differs from its disk of the two-disk guest"
ncut=$(tail -n +"$l0" "$T/daemon.log" | grep -c "source root: cut [0-9]* read")
ndata=$(tail -n +"$l0" "$T/daemon.log" | grep -c "source data: cut [0-9]* read")
ntr=$(grep -c "^qmp_enter_transaction" "$T/qmp-trace.log")
nboth=$(grep "^qmp_enter_transaction" "$T/qmp-trace.log" | grep '"disk0"' | grep -c '"disk1"')
nfr=$(grep -c "^guest-fsfreeze-freeze" "$T/qga.log"); nth=$(grep -c "^guest-fsfreeze-thaw" "$T/qga.log")
note "two-disk guest: $ncut cuts (root) / $ndata (data), $ntr QMP transactions ($nboth naming both nodes), $nfr freezes, $nth thaws"
[ "$ncut" -ge 2 ] && [ "$ndata" = "$ncut" ] || fail "cuts of the two disks: $ncut root, $ndata data"
[ "$ntr" = "$ncut" ] && [ "$nboth" = "$ncut" ] || fail "$ntr QMP transactions ($nboth naming disk0 and disk1) for $ncut cuts: expected one per cut naming both nodes"
[ "$nfr" = "$ncut" ] && [ "$nth" -ge "$nfr" ] || fail "$nfr freezes / $nth thaws for $ncut cuts: expected one freeze per cut, each thawed"
[ "$(status_get 'd["groups"][0]["consistent"]')" = True ] || fail "the two-disk guest's epoch is not reported consistent"

# A write the bitmap missed (its bitmap cleared behind the daemon's back):
# the bitmap-mode cut does not see it (the replica differs); the verifying
# full read (full_scan_every, here 0: every cut) finds it, sends it, counts
# 16 missed blocks (64 KiB) in status and metrics, logs it, and the next one
# finds nothing.
io vd1 0x55 9M
for b in $(vm_qmp "$T/m.qmp.test" query-named-block-nodes '{"flat":true}' | python3 -c 'import json,sys
print(*[b["name"] for n in json.load(sys.stdin) if n["node-name"] == "disk1" for b in n.get("dirty-bitmaps", []) if b.get("name", "").startswith("bascule-")])'); do
	vm_qmp "$T/m.qmp.test" block-dirty-bitmap-clear "{\"node\": \"disk1\", \"name\": \"$b\"}" >/dev/null
done
bsc_sync 60s >/dev/null || fail "sync after the bitmap was cleared"
! both || fail "the cut after the bitmap was cleared saw the write anyway: the test proves nothing"
bsc_stop
sed -i 's/^    full_scan_every: 1h/    full_scan_every: 0/' "$T/bascule.yaml"
bsc_start
bsc_sync 60s >/dev/null || fail "sync with full_scan_every: 0"
both || fail "the verifying full read did not repair the write the bitmap missed"
grep -q "source data: the verifying full read of cut [0-9]* found 16 blocks changed that the dirty bitmap did not record" "$T/daemon.log" ||
	fail "the missed write is not logged: $(grep 'verifying' "$T/daemon.log" | tail -3)"
[ "$(status_get '[s["qemu"]["missed_writes"] for s in d["groups"][0]["sources"]]')" = "[0, 16]" ] ||
	fail "status does not count 16 missed writes on data: $(status_get 'd["groups"][0]["sources"]')"
m=$(bsc metrics)
grep -q '^bascule_qemu_missed_writes_total{group="vm1",source="data"} 16$' <<< "$m" ||
	fail "the metric does not count 16 missed writes on data: $(grep missed_writes <<< "$m")"
io vd0 0x66 12M
bsc_sync 60s >/dev/null || fail "sync after the verifying read"
grep -q "source data: the verifying full read of cut [0-9]* found nothing the dirty bitmap missed" "$T/daemon.log" ||
	fail "a verifying read with nothing missed is not logged as such"
both || fail "a replica differs after a verifying read"
note "verifying reads: $(grep -c 'verifying full read of cut' "$T/daemon.log") logged, status $(status_get '[s["qemu"] for s in d["groups"][0]["sources"]]')"


# The daemon killed (-9) in the middle of a cut of the two-disk guest (both
# views exported; reads capped at 2 MB/s, 8 MiB written through each
# device): at the restart the leftovers of both disks are removed and each
# disk's frozen bitmap is merged back (or, killed after the commit, that
# disk read in full): never a gap, both replicas equal, nothing of ours left.
s0=$SECONDS
bsc_stop
sed -i 's/^    full_scan_every: 0/    full_scan_every: 1h/; s|^control_socket:|io_rate: 2MB/s\ncontrol_socket:|' "$T/bascule.yaml"
m_ours() { ours "$T/m.qmp.test"; }
exported() { local o; o=$(m_ours); echo "$o" > "$WAIT_WHY"; [[ $o == *bascule-exp-disk0* && $o == *bascule-exp-disk1* ]]; }
# two_disk_cut WHAT P0 OFF0 P1 OFF1: start basculed, sync, write 8 MiB of
# P0 at OFF0 through vd0 and of P1 at OFF1 through vd1, and return once the
# cut of them (capped) has both views exported; CUT_LOG: its first log line.
two_disk_cut() {
	bsc_start
	bsc_sync 60s >/dev/null || fail "sync before the two-disk guest's $1"
	io vd0 "$2" "$3" 8M; io vd1 "$4" "$5" 8M
	: >> "$T/daemon.log"; CUT_LOG=$(($(wc -l < "$T/daemon.log") + 1))
	bsc sync >/dev/null
	wait_for 30 "both views of the two-disk cut exported ($1)" exported
}
two_disk_cut "killed cut" 0x77 16M 0x78 24M
l1=$CUT_LOG
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""; rm -f "$T/ctl.sock"
left=$(m_ours)
[[ $left == *bascule-exp-disk0* && $left == *bascule-exp-disk1* ]] || fail "the daemon was not killed mid-cut: QEMU holds '$left'"
sed -i '/^io_rate: /d' "$T/bascule.yaml"
bsc_start
bsc_sync 60s >/dev/null || fail "sync after the two-disk guest's killed cut"
both || fail "a replica of the two-disk guest differs after the daemon was killed mid-cut"
for s in root data; do
	tail -n +"$l1" "$T/daemon.log" | grep -Eq "source $s: (a cut was interrupted .* merged into|.*: one full read of the disk)" ||
		fail "source $s: no take-over of the killed cut's bitmap nor full read after the restart"
done
wait_for 15 "nothing of ours left in the two-disk QEMU (seen: $(m_ours))" '[ -z "$(m_ours)" ]'
note "two-disk guest killed mid-cut (QEMU held: $left): $(tail -n +"$l1" "$T/daemon.log" | grep -c 'a cut was interrupted') bitmaps taken over, $(tail -n +"$l1" "$T/daemon.log" | grep -c 'one full read of the disk') full reads; both replicas equal ($((SECONDS - s0)) s)"

# A read that never returns: QEMU stopped (SIGSTOP) while both views are
# exported and read (capped), so the NBD reads block; the cut is abandoned
# after cut_timeout, and a SIGTERM then exits 0 within seconds without
# waiting for it.  QEMU continued, the next start removes both views and
# takes the frozen bitmaps over: both replicas equal.
s0=$SECONDS
bsc_stop
sed -i 's|^control_socket:|io_rate: 2MB/s\ncut_timeout: 2s\ncontrol_socket:|' "$T/bascule.yaml"
two_disk_cut "hung cut" 0x79 32M 0x7a 40M
l3=$CUT_LOG
qpid=$(cat "$T/vm-vm2.pid")
kill -STOP "$qpid"
resume() { kill -CONT "$qpid" 2>/dev/null || true; }
EXIT_HOOKS+=(resume)
wait_for 30 "the cut reading from a stopped QEMU to be abandoned" '[ "$(status_get "d[\"groups\"][0][\"cut_timed_out\"]")" = True ]'
stopped_in 20
resume
tail -n +"$l3" "$T/daemon.log" | grep -q "stopping: the cut of group vm1 still runs .*left to the end of the process" ||
	fail "the stop does not say it left the hung cut: $(tail -n +"$l3" "$T/daemon.log" | grep stopping)"
sed -i '/^io_rate: /d; /^cut_timeout: /d' "$T/bascule.yaml"
bsc_start
bsc_sync 60s >/dev/null || fail "sync after the stop with a hung two-disk cut"
both || fail "a replica of the two-disk guest differs after the stop with a hung cut"
[ "$(tail -n +"$l3" "$T/daemon.log" | grep -c 'a cut was interrupted .* merged into')" = 2 ] ||
	fail "the hung cut's frozen bitmaps were not both taken over at the restart"
wait_for 15 "nothing of ours left in the two-disk QEMU (seen: $(m_ours))" '[ -z "$(m_ours)" ]'
note "a cut hung on a stopped QEMU, then SIGTERM: exit 0 in $STOP_MS ms; both bitmaps taken over at the restart, replicas equal ($((SECONDS - s0)) s)"

# A group of disks of TWO guests (a second bare QEMU with one disk): each
# guest is viewed in its own transaction, one after the other, so its
# epochs are fuzzy: said in the log at start, consistent: false in status,
# "fuzzy (disks of several QEMU guests ...)" in history; all three replicas
# equal to their disks.
s0=$SECONDS
bsc_stop
rm -rf "$T/state" "$T/replica"
qemu-img create -q -f qcow2 "$T/g2.qcow2" 64M
vm_qemu_bare vm3 "$T/g2.qcow2" qcow2 "$T/g2.qmp"
wait_for 30 "the third QEMU's monitors" "[ -S $T/g2.qmp ] && [ -S $T/g2.qmp.test ]"
io vd0 0x99 3M 64k "$T/g2.qmp.test"
python3 - "$T/bascule.yaml" "$T/g2.qmp" <<'PY'
import sys
p, qmp = sys.argv[1], sys.argv[2]
s = open(p).read()
s = s.replace("targets:\n", "      - name: other\n        qemu:\n          qmp: %s\n          node: vd0\ntargets:\n" % qmp, 1)
open(p, "w").write(s)
PY
: >> "$T/daemon.log"; l2=$(($(wc -l < "$T/daemon.log") + 1))
bsc_start
bsc_sync 60s >/dev/null || fail "first sync of the two-guest group"
io vd1 0xa1 7M; io vd0 0xa2 5M 64k "$T/g2.qmp.test"
bsc_sync 60s >/dev/null || fail "second sync of the two-guest group"
three() { both && qemu-img compare -U -q -f qcow2 -F raw "$T/g2.qcow2" "$(replica_of other)"; }
three || fail "a replica of the two-guest group differs from its disk"
tail -n +"$l2" "$T/daemon.log" | grep -q "group vm1: its qemu: disks are of 2 guests .*its epochs are fuzzy" ||
	fail "the start does not say the two-guest group's epochs are fuzzy"
[ "$(status_get 'd["groups"][0]["consistent"]')" = False ] || fail "the two-guest group's epoch is reported consistent"
bsc status | grep -q "fuzzy" || fail "bascule status does not say fuzzy: $(bsc status | head -3)"
bsc history | grep -q "cut.*fuzzy (disks of several QEMU guests" || fail "history does not say why the epoch is fuzzy: $(bsc history | tail -3)"
note "two-guest group: fuzzy in status, log and history; three replicas equal ($((SECONDS - s0)) s)"
