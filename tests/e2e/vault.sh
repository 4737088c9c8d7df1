# vault: the provider-blind, write-once vault over the test sites.
#
# The provider is a real OpenSSH sshd in its own namespace serving SFTP only,
# chrooted, to a write-once account (internal-sftp -P remove,rmdir,rename,
# posix-rename) and a pruning account.  Two QEMU guests write to their disks
# while basculed ships both groups to the vault (interval 2s) and to a local
# replica.  The test shows: continuous shipping; restores of the latest and
# of an older epoch byte-identical to copies taken then; blindness (a random
# marker and unkeyed hashes of every block are absent from the vault; names
# say nothing); tampering and truncation named by `vault check` and refused
# by restore for the affected epochs only; a daemon killed mid-upload leaves
# no corrupt epoch and resumes without re-uploading finished packs; prune
# keeps exactly what the policy says, cannot run with the write-once account,
# and restores work afterwards.
# run.sh: first
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
. "$(dirname "$0")/../lib/vm.sh"
need_root
command -v sftp >/dev/null || { echo "SKIP: no OpenSSH sftp client"; exit 77; }
vm_prepare
vm_accel
bsc_keygen
sites_up
vault_sftp_up
B="$BIN/bascule"
VK=(--vault-key "$T/vault.key")
PUB=(--verify-key "$T/vault.key.pub")

# Two guests' disks; a random 64-byte marker in vm1's, far from the records.
for v in vm1 vm2; do truncate -s 64M "$T/$v.img"; done
head -c 64 /dev/urandom > "$T/marker"
dd if="$T/marker" of="$T/vm1.img" bs=1 seek=$((48 << 20)) conv=notrunc status=none
{
	echo "state_dir: $T/state"
	echo "key: $T/site.key"
	echo "control_socket: $T/ctl.sock"
	echo "groups:"
	for v in vm1 vm2; do
		echo "  - name: $v"
		echo "    interval: 500ms"
		echo "    sources: [{name: disk, disk: $T/$v.img}]"
	done
	echo "targets:"
	echo "  - name: secondary"
	echo "    url: local:$T/replica"
	echo "  - name: offsite"
	echo "    type: vault"
	echo "    url: $URL"
	echo "    identity: $T/id_ed25519"
	echo "    known_hosts: $T/known_hosts_v"
	echo "    vault_key: $T/vault.key"
	echo "    interval: 2s"
	echo "    retention: {all: 1h}"
	# packs over 4 SFTP sessions by default; VAULT_PARALLEL=1 tests/run.sh ...
	# e2e/vault: over one (the writer's own, in line)
	[ -z "${VAULT_PARALLEL:-}" ] || echo "    parallel: $VAULT_PARALLEL"
} > "$T/bascule.yaml"
# parallel beyond 16 sessions is refused, named by file:line:col
{ cat "$T/bascule.yaml"; [ -n "${VAULT_PARALLEL:-}" ] || echo "    parallel: 17"; } \
	| sed 's/parallel: .*/parallel: 17/' > "$T/p17.yaml"
pl=$(grep -n 'parallel: 17' "$T/p17.yaml" | cut -d: -f1)
rc=0; "$BIN/basculed" -c "$T/p17.yaml" --check-config > "$T/p17.out" 2>&1 || rc=$?
[ $rc = 3 ] && grep -q "p17.yaml:$pl:[0-9]*: parallel must be between 0 and 16" "$T/p17.out" \
	|| fail "parallel: 17 not refused with file:line:col (rc $rc): $(cat "$T/p17.out")"
bsc_start

boot() { eval "$(vm_qemu_cmd "$1" "$T/$1.img" "$2")" || fail "QEMU did not start $1 (its console: $T/vm-$1.console)"; }
# Ports of their own (as qemusrc's, qemudrill's): a fixed one met another
# guest's forwarding on this host.
PORT=$((19300 + RANDOM % 300))
boot vm1 "$PORT"
boot vm2 $((PORT + 1))
qpid() { cat "$T/vm-$1.pid"; }
EXIT_HOOKS+=(stop_guests)
stop_guests() { for v in vm1 vm2; do [ -f "$T/vm-$v.pid" ] && kill -CONT "$(qpid $v)" 2>/dev/null; \
	[ -f "$T/vm-$v.pid" ] && kill -9 "$(qpid $v)" 2>/dev/null; done; return 0; }
for _ in $(seq 600); do
	[ "$(vm_last_written "$T/vm-vm1.console")" -ge 5 ] && [ "$(vm_last_written "$T/vm-vm2.console")" -ge 5 ] && break
	sleep 0.2
done
[ "$(vm_last_written "$T/vm-vm2.console")" -ge 5 ] || fail "the guests did not start writing"

# -- continuous shipping while the guests write
sleep 12
ls_json() { in_primary "$B" vault ls --vault "$URL" "${SFTPW[@]}" "$@" --json; }
epochs_of() { ls_json "${VK[@]}" | python3 -c "import json,sys; print(' '.join(str(e['epoch']) for e in json.load(sys.stdin) if e['group']=='$1'))"; }
n1=$(epochs_of vm1 | wc -w); n2=$(epochs_of vm2 | wc -w)
[ "$n1" -ge 2 ] && [ "$n2" -ge 2 ] || fail "the vault should hold several epochs of each guest after 12 s of writes: vm1 $n1, vm2 $n2"
note "shipping while the guests write: vault holds $n1 epochs of vm1, $n2 of vm2"
st=$("$B" -c "$T/bascule.yaml" status --json)
echo "$st" | python3 -c "
import json,sys
s=json.load(sys.stdin)
t=[t for t in s['targets'] if t['name']=='offsite'][0]
assert t['type']=='vault', t
for g in ('vm1','vm2'):
    assert t['groups'][g]['acked']>0 and 0 <= t['groups'][g]['lag_seconds'] < 30, t['groups'][g]
" || fail "status does not report the vault's last committed epochs and their age: $st"

# freeze: stop both guests, ship to every target, keep copies of the disks
freeze() {
	for v in vm1 vm2; do kill -STOP "$(qpid $v)"; done
	sleep 0.3
	"$B" -c "$T/bascule.yaml" sync --wait --vault --timeout 120s >/dev/null || fail "sync --wait --vault failed"
	for v in vm1 vm2; do cp --sparse=always "$T/$v.img" "$T/$v.$1"; done
	latest_vm1=$(epochs_of vm1 | awk '{print $NF}'); latest_vm2=$(epochs_of vm2 | awk '{print $NF}')
}
thaw() { for v in vm1 vm2; do kill -CONT "$(qpid $v)"; done; }
freeze A; EA1=$latest_vm1; EA2=$latest_vm2
recA=$(vm_last_written "$T/vm-vm1.console")
thaw; sleep 8
freeze B; EB1=$latest_vm1; EB2=$latest_vm2
[ "$EB1" -gt "$EA1" ] || fail "no new vault epoch of vm1 between the two freezes ($EA1, $EB1)"
note "copies kept at vault epochs vm1 $EA1 and $EB1 (guest vm1 had written $recA and $(vm_last_written "$T/vm-vm1.console") records)"

# -- restore, over SFTP, the latest and an older epoch: byte-identical
restore() { in_primary "$B" restore --vault "$URL" "${SFTPW[@]}" "${VK[@]}" "$@"; }
restore --source vm1/disk --to "$T/r-vm1-B" > "$T/restore.out" || fail "restore of the latest vm1 failed: $(cat "$T/restore.out")"
cmp "$T/r-vm1-B" "$T/vm1.B" || fail "latest vm1 restore differs from the copy"
restore --source vm2/disk --to "$T/r-vm2-B" >/dev/null || fail "restore of the latest vm2 failed"
cmp "$T/r-vm2-B" "$T/vm2.B" || fail "latest vm2 restore differs from the copy"
restore --source vm1/disk --epoch "$EA1" --to "$T/r-vm1-A" >/dev/null || fail "restore of vm1 epoch $EA1 failed"
cmp "$T/r-vm1-A" "$T/vm1.A" || fail "vm1 epoch $EA1 restore differs from the copy taken then"
restore --source vm2/disk --epoch "$EA2" --to "$T/r-vm2-A" >/dev/null || fail "restore of vm2 epoch $EA2 failed"
cmp "$T/r-vm2-A" "$T/vm2.A" || fail "vm2 epoch $EA2 restore differs from the copy taken then"
note "restores byte-identical: latest and older epochs of both guests ($(sed -n 's/.* in \([0-9.]* s\).*/\1/p' "$T/restore.out") for 64 MiB)"
! restore --source vm1/disk --to "$T/r-vm1-B" >/dev/null 2>&1 || fail "restore overwrote an existing file without --force"

# -- the daemon's account can neither delete nor rename
some=$(ls "$V/m" | head -1)
sftp_w() { in_primary sftp -q -b - -i "$T/id_ed25519" -o UserKnownHostsFile="$T/known_hosts_v" \
	-o StrictHostKeyChecking=yes "bscvault-w@$IP_V" 2>&1; }
out=$(echo "rm /vault/m/$some" | sftp_w) && fail "the write-once account could delete: $out"
out=$(echo "rename /vault/m/$some /vault/m/x" | sftp_w) && fail "the write-once account could rename: $out"
[ -f "$V/m/$some" ] || fail "manifest $some disappeared"
note "write-once account: rm and rename refused by the provider ($(echo "$out" | tail -1))"

# -- blindness
python3 - "$T" "$V" <<'PY' || fail "blindness check failed"
import hashlib, os, sys
T, V = sys.argv[1], sys.argv[2]
marker = open(f"{T}/marker", "rb").read()
digests = set()
for img in ("vm1.B", "vm2.B", "vm1.A", "vm2.A"):
    with open(f"{T}/{img}", "rb") as f:
        while True:
            b = f.read(4096)
            if not b: break
            if b.count(0) == len(b): continue
            for h in (hashlib.sha256, hashlib.sha1, hashlib.md5, hashlib.blake2b, hashlib.blake2s, hashlib.sha512):
                d = h(b).digest()
                digests.add(d[:16])
            digests.add(hashlib.blake2b(b, digest_size=16).digest())
            digests.add(hashlib.blake2b(b, digest_size=32).digest()[:16])
hexes = {d.hex() for d in digests}
nfiles = size = 0
for root, dirs, files in os.walk(V):
    for n in files:
        p = os.path.join(root, n)
        data = open(p, "rb").read()
        nfiles += 1; size += len(data)
        assert marker not in data, f"marker found in {p}"
        for i in range(0, len(data) - 15):
            if data[i:i+16] in digests:
                raise SystemExit(f"an unkeyed block hash appears in {p} at {i}")
        low = n.lower()
        assert len(n) == 64 and all(c in "0123456789abcdef" for c in n), f"unexpected name {p}"
        assert not any(h[:16] in low for h in hexes), f"a block hash appears in the name {p}"
    for d in dirs:
        assert d in ("d", "m") or (len(d) == 2 and all(c in "0123456789abcdef" for c in d)), f"dir {d}"
print(f"  vault: blindness checked over {nfiles} files, {size} bytes, {len(digests)} unkeyed digests")
PY
note "marker and 6 kinds of unkeyed block hashes: absent from the vault; names are 64 hex digits"

# -- no secret needed to check; tamper and truncate are named
in_primary "$B" vault check --vault "$PURL" --identity "$T/id_prune" --known-hosts "$T/known_hosts_v" \
	"${PUB[@]}" > "$T/check.out" 2>&1 || fail "vault check failed on an intact vault: $(cat "$T/check.out")"
grep -q "0 bad manifests, 0 bad objects" "$T/check.out" || fail "check output: $(cat "$T/check.out")"
# the newest data object was written after epoch A: only later epochs need it
newest=$(find "$V/d" -type f -printf '%T@ %P\n' | sort -n | tail -1 | cut -d' ' -f2)
cp -p "$V/d/$newest" "$T/saved-object"
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[40]^=0x55; open(p,'wb').write(b)" "$V/d/$newest"
rc=0; in_primary "$B" vault check --vault "$URL" "${SFTPW[@]}" "${PUB[@]}" > "$T/check.out" 2>&1 || rc=$?
[ $rc = 5 ] || fail "vault check on a tampered object: exit $rc, want 5: $(cat "$T/check.out")"
grep -q "BAD d/$newest: DAMAGED" "$T/check.out" || fail "check does not name the tampered object: $(cat "$T/check.out")"
rc=0; restore --source vm1/disk --to "$T/r-t1" > "$T/restore.out" 2>&1 || rc=$?
rc2=0; restore --source vm2/disk --to "$T/r-t2" > "$T/restore2.out" 2>&1 || rc2=$?
[ $rc = 5 ] || [ $rc2 = 5 ] || fail "restore of the latest epochs did not refuse the tampered object (exit $rc, $rc2)"
restore --source vm1/disk --epoch "$EA1" --to "$T/r-t3" >/dev/null || fail "an unaffected older epoch no longer restores"
cmp "$T/r-t3" "$T/vm1.A" || fail "unaffected epoch restored wrong"
note "tampered $newest: check exit 5 naming it; restore refused the latest epoch (exit 5), epoch $EA1 still restores"
cp -p "$T/saved-object" "$V/d/$newest"
# truncation of another object
victim=$(find "$V/d" -type f -printf '%s %P\n' | sort -n | tail -1 | cut -d' ' -f2)
cp -p "$V/d/$victim" "$T/saved-object2"
truncate -s 1000 "$V/d/$victim"
rc=0; in_primary "$B" vault check --vault "$URL" "${SFTPW[@]}" "${PUB[@]}" > "$T/check.out" 2>&1 || rc=$?
[ $rc = 5 ] && grep -q "BAD d/$victim: TRUNCATED" "$T/check.out" || fail "check on a truncated object: exit $rc: $(cat "$T/check.out")"
cp -p "$T/saved-object2" "$V/d/$victim"
in_primary "$B" vault check --vault "$URL" "${SFTPW[@]}" "${VK[@]}" --read-data > "$T/check.out" 2>&1 \
	|| fail "check --read-data after repair: $(cat "$T/check.out")"
note "truncated object named; after repair check --read-data passes: $(tail -1 "$T/check.out")"

# -- kill the daemon mid-upload: nothing torn becomes visible, no re-upload
vault_rate 40mbit
# Paused while the disk changes: a scheduled cut landing in the middle of
# the write would ship part of it as an epoch of its own, whose manifest
# appears before the kill (seen on a loaded machine).
"$B" -c "$T/bascule.yaml" pause vm2 >/dev/null || fail "pause vm2 failed"
# With parallel sessions the first packs finish together: change enough
# (7 packs) that some are journaled while the rest are still in flight.
CHG=24 AT=32; [ "${VAULT_PARALLEL:-4}" -le 1 ] || { CHG=56 AT=8; }
dd if=/dev/urandom of="$T/vm2.img" bs=1M count=$CHG seek=$AT conv=notrunc status=none
sync
m_seen=-1
for _ in $(seq 100); do   # an upload begun before the pause ends first
	m=$(ls "$V/m" | wc -l); [ "$m" = "$m_seen" ] && break; m_seen=$m; sleep 1
done
before=$(du -sb "$V/d" | cut -f1)
m_before=$(ls "$V/m" | wc -l)
"$B" -c "$T/bascule.yaml" resume vm2 >/dev/null || fail "resume vm2 failed"
"$B" -c "$T/bascule.yaml" sync vm2 >/dev/null
# Killed once a pack of this epoch is journaled: with parallel uploads the
# writer journals each pack as soon as it is durable, not when it next
# looks at its uploads, so the kill cannot lose it.
jsize() { stat -c %s "$T/state/vault/offsite/pending" 2>/dev/null || echo 0; }
j_before=$(jsize)
for _ in $(seq 300); do
	[ $(( $(du -sb "$V/d" | cut -f1) - before )) -gt $((10 << 20)) ] && [ "$(jsize)" -gt "$j_before" ] && break
	sleep 0.1
done
# This test's writer only: every vault test's writer has the same --url.
pkill -9 -f "basculed -c $T/bascule.yaml"; pkill -9 -f "vault recv --url $URL --vault-key $T/vault.key" || true
wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""; rm -f "$T/ctl.sock"
mid=$(du -sb "$V/d" | cut -f1)
[ $((mid - before)) -gt $((10 << 20)) ] || fail "the upload did not get going before the kill"
[ "$(ls "$V/m" | wc -l)" = "$m_before" ] || fail "a manifest appeared for the interrupted epoch"
in_primary "$B" vault check --vault "$URL" "${SFTPW[@]}" "${PUB[@]}" > "$T/check.out" 2>&1 \
	|| fail "the vault is not intact after the kill: $(cat "$T/check.out")"
grep -q " [1-9][0-9]* unreferenced" "$T/check.out" || fail "check counts none of the interrupted epoch's packs: $(cat "$T/check.out")"
note "killed mid-upload after $(( (mid - before) >> 20 )) MiB: no new manifest, check passes ($(grep -o '[0-9]* unreferenced' "$T/check.out") objects)"
bsc_start
"$B" -c "$T/bascule.yaml" sync vm2 --wait --vault --timeout 120s >/dev/null || fail "sync after restart failed"
after=$(du -sb "$V/d" | cut -f1)
grep -q "packs uploaded before an interruption will be reused" "$T/daemon.log" || fail "the journal of uploaded packs was not used"
again=$((after - mid))
# One session loses at most the pack in flight; N sessions lose up to N
# unfinished packs, but never the 8 MiB pack(s) journaled before the kill.
lim=$(( (mid - before) / 2 + (16 << 20) )); [ "${VAULT_PARALLEL:-4}" -le 1 ] || lim=$(( (CHG - 4) << 20 ))
[ $again -lt $lim ] || fail "resume re-uploaded too much: $again bytes after $((mid - before)) before the kill"
restore --source vm2/disk --to "$T/r-vm2-C" >/dev/null || fail "restore after the resumed upload failed"
cmp "$T/r-vm2-C" "$T/vm2.img" || fail "restore after resume differs from the (frozen) source"
note "resumed: $(( (mid - before) >> 20 )) MiB before the kill, $((again >> 20)) MiB after ($CHG MiB changed); restore identical"
vault_rate 1gbit
bsc_stop
# the primary is lost: restore with its configuration, whose disks no longer exist
sed "s|$T/vm1.img|$T/lost/vm1.img|; s|$T/vm2.img|$T/lost/vm2.img|" "$T/bascule.yaml" > "$T/lost.yaml"
in_primary "$B" restore -c "$T/lost.yaml" --source vm1/disk --to "$T/r-vm1-L" >/dev/null \
	|| fail "restore -c with the lost primary's configuration failed"
cmp "$T/r-vm1-L" "$T/vm1.img" || fail "restore -c differs from the source"

# -- prune: exactly the policy; not with the write-once account
ls_json "${VK[@]}" > "$T/before.json"
in_primary "$B" vault ls --vault "$URL" "${SFTPW[@]}" "${PUB[@]}" >/dev/null || fail "ls with the verify key only failed"
# keep-all 1h evaluated one hour after epoch A of vm1 (+1 s): exactly the epochs cut after it, plus the newest of each group
nowB=$(python3 -c "
import json; e=[x for x in json.load(open('$T/before.json')) if x['group']=='vm1' and x['epoch']==$EA1][0]
print(int(e['cut_time']) + 3600 + 1)")
expect=$(python3 -c "
import json
es=json.load(open('$T/before.json')); keep=[]
for g in ('vm1','vm2'):
    xs=sorted([x for x in es if x['group']==g], key=lambda x: x['epoch'])
    for i,x in enumerate(xs):
        if int(x['cut_time']) + 3600 >= $nowB or i == len(xs)-1: keep.append(f\"{g}:{x['epoch']}\")
print(' '.join(sorted(keep)))")
rc=0; in_primary "$B" vault prune --vault "$URL" "${SFTPW[@]}" "${PUB[@]}" --keep-all 1h --now "@$nowB" --grace 0 \
	> "$T/prune.out" 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "may not delete" "$T/prune.out" || fail "prune with the write-once account: exit $rc: $(cat "$T/prune.out")"
in_primary "$B" vault prune --vault "$PURL" --identity "$T/id_prune" --known-hosts "$T/known_hosts_v" "${PUB[@]}" \
	--keep-all 1h --now "@$nowB" --grace 0 > "$T/prune.out" 2>&1 || fail "prune failed: $(cat "$T/prune.out")"
got=$(ls_json "${VK[@]}" | python3 -c "
import json,sys; print(' '.join(sorted(f\"{x['group']}:{x['epoch']}\" for x in json.load(sys.stdin))))")
[ "$got" = "$expect" ] || fail "prune kept [$got], the policy says [$expect]"
in_primary "$B" vault check --vault "$URL" "${SFTPW[@]}" "${VK[@]}" --read-data > "$T/check.out" 2>&1 \
	|| fail "check after prune: $(cat "$T/check.out")"
grep -q " 0 unreferenced" "$T/check.out" || fail "prune left unreferenced objects: $(cat "$T/check.out")"
restore --source vm2/disk --to "$T/r-vm2-D" >/dev/null && cmp "$T/r-vm2-D" "$T/vm2.img" || fail "restore after prune failed"
rc=0; restore --source vm1/disk --epoch "$EA1" --to "$T/r-vm1-D" >/dev/null 2>&1 || rc=$?
[ $rc != 0 ] || fail "pruned epoch $EA1 still restores"
restore --source vm1/disk --epoch "$EB1" --to "$T/r-vm1-E" >/dev/null && cmp "$T/r-vm1-E" "$T/vm1.B" \
	|| fail "kept epoch $EB1 does not restore identically after prune"
note "prune kept exactly [$got]; $(tail -1 "$T/prune.out" | cut -c1-150)"
