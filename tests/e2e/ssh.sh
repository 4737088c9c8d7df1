# ssh: two VMs (three disks) replicated over the namespace link to the
# secondary's real sshd; an unknown and a changed host key are refused with
# the fingerprint and the command to trust it; the command= restriction
# leaves the key good for `bascule recv` only.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
sites_up
bsc_keygen
for d in vm1-root vm1-data vm2-root; do
	truncate -s 64M "$T/$d.img"; "$BIN/tests/randwrite" "$T/$d.img" 1000 "${#d}"
done
R=$T/secondary/replica
authorize_recv "$R"
cat > "$T/bascule.yaml" <<YAML
state_dir: $T/state
key: $T/site.key
control_socket: $T/ctl.sock
groups:
  - name: vm1
    interval: 1h
    max_interval: 24h
    sources:
      - name: root
        disk: $T/vm1-root.img
      - name: data
        disk: $T/vm1-data.img
  - name: vm2
    interval: 1h
    max_interval: 24h
    sources:
      - name: root
        disk: $T/vm2-root.img
targets:
  - name: secondary
    type: replica
    url: ssh://$SSH_USER@$IP_S:22$R
    identity: $T/id_ed25519
    known_hosts: $T/known_hosts
    bandwidth: 100MB/s
YAML
NSEXEC=(ip netns exec "$NS_P")

# 1. Unknown host key: refused, with the fingerprint and the command.
bsc_start
set +e; bsc sync --wait --timeout 3s 2>"$T/sync.err"; rc=$?; set -e
[ $rc -eq 6 ] || fail "sync to an untrusted host should time out (6), got $rc"
grep -q "is not in $T/known_hosts" "$T/daemon.log" || fail "unknown host key not reported"
grep -q "SHA256:" "$T/daemon.log" && grep -q "bascule trust-host $IP_S:22 --known-hosts" "$T/daemon.log" \
	|| fail "no fingerprint or command in: $(grep known_hosts "$T/daemon.log" | head -1)"
fp=$(ssh-keygen -lf "$T/ssh-secondary/host_key.pub" | awk '{print $2}')
grep -q "$fp" "$T/daemon.log" || fail "the fingerprint shown is not the server's ($fp)"
[ -d "$R/.bascule" ] && fail "something reached the replica before the host was trusted"
bsc_stop

# 2. Trusted: two VMs, three disks, byte-identical after sync --wait.
in_primary "$BIN/bascule" trust-host "$IP_S" --known-hosts "$T/known_hosts" --yes | grep -q "$fp" \
	|| fail "trust-host does not show the fingerprint"
bsc_start
bsc_sync 60s || fail "sync over SSH"
for d in vm1/root vm1/data vm2/root; do
	cmp "$T/${d%/*}-${d#*/}.img" "$R/$d" || fail "$d differs on the secondary"
done
"$BIN/tests/randwrite" "$T/vm1-data.img" 300 9
"$BIN/tests/randwrite" "$T/vm2-root.img" 300 10
bsc_sync 60s || fail "second sync over SSH"
cmp "$T/vm1-data.img" "$R/vm1/data" && cmp "$T/vm2-root.img" "$R/vm2/root" || fail "differs after the second sync"
[ "$(stat -c %U "$R/vm1/root")" = "$SSH_USER" ] || fail "the replica should belong to the receiving user"
note "2 VMs, 3 disks identical over SSH"

# 3. The key is good for bascule recv only.
sshc() { in_primary ssh -i "$T/id_ed25519" -o UserKnownHostsFile="$T/known_hosts" -o BatchMode=yes \
	-o StrictHostKeyChecking=yes "$@"; }
# A hand test of the key while replication runs: the forced command answers,
# runs nothing else, and leaves the live receiver (and its lock) alone.
live=$(in_secondary pgrep -u "$SSH_USER" -f "bascule recv --root $R" | head -1)
[ -n "$live" ] || fail "no live receiver on the secondary"
set +e; out=$(sshc "$SSH_USER@$IP_S" 'cat /etc/passwd; echo SHELL-RAN' </dev/null 2>&1); rc=$?; set -e
echo "$out" | grep -q "^SHELL-RAN$\|^root:x:0" && fail "the restricted key ran a command: $out"
echo "$out" | grep -q "runs only the Bascule receiver" || fail "the forced command did not answer: $out"
echo "$out" | grep -q "ready: replica directory $R, .*key id $("$BIN/bascule" key id "$T/site.key")" \
	|| fail "the hand test does not say the receiver is ready with the site key: $out"
[ $rc -eq 0 ] || fail "a hand test of a working key exited $rc"
bsc_sync 30s || fail "replication after the hand test"
[ "$(in_secondary pgrep -u "$SSH_USER" -f "bascule recv --root $R" | head -1)" = "$live" ] \
	|| fail "the hand test took over the live receiver"
grep -q "taking over" "$T/daemon.log" && fail "a receiver was taken over: $(grep "taking over" "$T/daemon.log")"
note "hand test of the key: answered, live receiver untouched"
# The secondary's command= decides the retention: a primary asking for
# other values is told so, in its log.
sed -i "s| --key | --keep-epochs 7 --keep-time 1h --key |; s|--root $R |--root $R/ |" "$T/ssh-secondary/authorized_keys"
in_secondary pkill -u "$SSH_USER" -f "bascule recv --root $R" || true
"$BIN/tests/randwrite" "$T/vm1-data.img" 10 11
bsc_sync 30s || fail "sync after the receiver restarted"
grep -q "receiver: bascule-recv: warning: the primary asked for --keep-epochs 24 --keep-time 0ms; the command= of this key on the secondary sets --keep-epochs 7 --keep-time 1h00m, which applies" \
	"$T/daemon.log" || fail "no warning that keep_epochs is overridden: $(grep receiver: "$T/daemon.log" | tail -3)"
grep "receiver:" "$T/daemon.log" | grep -q -- "--root" && fail "a --root warning although the URL names the same directory"
note "options overridden by command= are reported to the primary"
# Port forwarding: a forward to the secondary's sshd would show its banner.
sshc -N -L "127.0.0.1:2222:$IP_S:22" "$SSH_USER@$IP_S" > "$T/fwd.out" 2>&1 &
FWD=$!
sleep 1.5
banner=$(in_primary timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222 && head -c 7 <&3' 2>/dev/null || true)
kill $FWD 2>/dev/null; wait $FWD 2>/dev/null || true
[ "$banner" = "SSH-2.0" ] && fail "port forwarding works with the restricted key"
note "restricted key: no shell, no forwarding"

# 4. Changed host key: refused.
bsc_stop
kill "$(cat "$T/ssh-secondary/sshd.pid")"; sleep 0.3
rm -f "$T/ssh-secondary/host_key" "$T/ssh-secondary/host_key.pub"
start_sshd secondary "$NS_S" "$IP_S"
bsc_start
set +e; bsc sync --wait --timeout 3s 2>/dev/null; rc=$?; set -e
[ $rc -eq 6 ] || fail "sync to a host whose key changed should time out, got $rc"
grep -q "HOST KEY CHANGED" "$T/daemon.log" || fail "changed host key not reported"
set +e; in_primary "$BIN/bascule" trust-host "$IP_S" --known-hosts "$T/known_hosts" --yes >/dev/null 2>&1; rc=$?; set -e
[ $rc -eq 4 ] || fail "trust-host must not silently replace a changed key (exit $rc)"
note "unknown and changed host keys refused"
