# twotargets: a local target and an SSH target whose link is cut.  The cut
# target never holds back the other one, nor the control socket.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
sites_up
bsc_keygen
truncate -s 64M "$T/disk.img"
"$BIN/tests/randwrite" "$T/disk.img" 1000 1
R=$T/secondary/replica
authorize_recv "$R"
trust_secondary
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
cat >> "$T/bascule.yaml" <<YAML
  - name: remote
    url: ssh://$SSH_USER@$IP_S$R
    identity: $T/id_ed25519
    known_hosts: $T/known_hosts
YAML
NSEXEC=(ip netns exec "$NS_P")
bsc_start
bsc_sync 60s || fail "initial sync to both targets"
sites_cut
"$BIN/tests/randwrite" "$T/disk.img" 2000 2
want=$(bsc sync | sed -n 's/vm1: epoch \([0-9]*\).*/\1/p')
ok=0
for _ in $(seq 100); do
	s=$(date +%s%N)
	st=$(bsc status --json)
	ms=$(( ($(date +%s%N) - s) / 1000000 ))
	[ $ms -lt 1000 ] || fail "the control socket took $ms ms to answer while a target is cut"
	acked=$(echo "$st" | python3 -c 'import json,sys; d=json.load(sys.stdin); print([t for t in d["targets"] if t["name"]=="secondary"][0]["groups"]["vm1"]["acked"])')
	[ -n "$acked" ] && [ "$acked" -ge "$want" ] && { ok=1; break; }
	sleep 0.1
done
[ $ok = 1 ] || fail "the local target did not get epoch $want while the other link was cut"
cmp "$T/disk.img" "$T/replica/vm1/root" || fail "local replica differs"
note "local target at epoch $want while the SSH target's link is cut; status answers in < 1 s"
sites_restore
bsc_sync 120s || fail "the SSH target did not catch up after the cut"
cmp "$T/disk.img" "$R/vm1/root" || fail "remote replica differs after catch-up"
