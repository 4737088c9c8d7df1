# reload: sources, groups and targets added or removed by editing the
# configuration and sending SIGHUP (or `bascule reload`) take effect without
# a restart: the others keep their epochs and connections, nothing is resent;
# a broken configuration is refused with its error and the running one stays.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
for d in root data other; do truncate -s 32M "$T/$d.img"; "$BIN/tests/randwrite" "$T/$d.img" 2000 "${#d}"; done
SOURCES="root:$T/root.img"
bsc_config 1h 24h
bsc_start
bsc_sync || fail "sync"
e1=$(status_get '[g for g in d["groups"] if g["name"]=="vm1"][0]["last_cut"]')
sent1=$(status_field raw_bytes_sent)
rpid=$(recv_pid)

# Add a source to vm1 and a new group vm2, then SIGHUP.
SOURCES="root:$T/root.img data:$T/data.img"
bsc_config 1h 24h
cat >> "$T/bascule.yaml.add" <<YAML
YAML
python3 - "$T/bascule.yaml" "$T/other.img" <<'PY'
import sys
p, disk = sys.argv[1], sys.argv[2]
s = open(p).read()
s = s.replace("targets:", "  - name: vm2\n    interval: 1h\n    max_interval: 24h\n    sources:\n      - name: other\n        disk: %s\ntargets:" % disk, 1)
open(p, "w").write(s)
PY
kill -HUP "$DAEMON_PID"
for _ in $(seq 50); do grep -q "configuration reloaded" "$T/daemon.log" && break; sleep 0.1; done
grep -q "configuration reloaded: 2 groups" "$T/daemon.log" || fail "SIGHUP did not reload: $(tail -3 "$T/daemon.log")"
bsc_sync 60s || fail "sync after adding a source and a group"
cmp "$T/root.img" "$(replica_of root)" && cmp "$T/data.img" "$(replica_of data)" && cmp "$T/other.img" "$T/replica/vm2/other" \
	|| fail "replicas differ after the reload"
e2=$(status_get '[g for g in d["groups"] if g["name"]=="vm1"][0]["last_cut"]')
[ "$e2" -gt "$e1" ] || fail "vm1's epochs restarted ($e1 -> $e2)"
sent2=$(status_field raw_bytes_sent)
added=$(( $(stat -c %s "$T/data.img") + $(stat -c %s "$T/other.img") ))
[ $((sent2 - sent1)) -le $((added + 1048576)) ] || fail "sent $((sent2 - sent1)) bytes: more than the new disks ($added)"
[ "$(recv_pid)" = "$rpid" ] || fail "the target was reconnected by the reload"
note "source and group added by SIGHUP: vm1 went on from epoch $e1 to $e2, same connection, only the new disks sent"

# A broken configuration is refused; the running one stays.
cp "$T/bascule.yaml" "$T/good.yaml"
sed -i 's/^    interval: 1h$/    intervall: 1h/' "$T/bascule.yaml"
kill -HUP "$DAEMON_PID"
for _ in $(seq 50); do grep -q "new configuration refused" "$T/daemon.log" && break; sleep 0.1; done
grep -q "SIGHUP: new configuration refused, the running one stays: $T/bascule.yaml:[0-9]*:[0-9]*: unknown key 'intervall'" "$T/daemon.log" \
	|| fail "broken configuration not refused clearly: $(grep -i refused "$T/daemon.log" | tail -1)"
set +e; bsc reload 2>"$T/err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "unknown key 'intervall'" "$T/err" || fail "bascule reload should fail with the error: $(cat "$T/err")"
"$BIN/tests/randwrite" "$T/root.img" 100 9
bsc_sync 30s || fail "replication stopped after a refused reload"
cmp "$T/root.img" "$(replica_of root)" || fail "replica differs after a refused reload"

# Remove vm2, add a second target: by the control verb.
cp "$T/good.yaml" "$T/bascule.yaml"
python3 - "$T/bascule.yaml" "$T/replica2" <<'PY'
import re, sys
p, r2 = sys.argv[1], sys.argv[2]
s = open(p).read()
s = re.sub(r"  - name: vm2\n(    .*\n)+?      - name: other\n        disk: .*\n", "", s)
s += "  - name: second\n    url: local:%s\n" % r2
open(p, "w").write(s)
PY
bsc reload || fail "bascule reload"
bsc status --json | grep -q '"name": "vm2"' && fail "vm2 still there after its removal"
bsc_sync 60s || fail "sync to the new target"
cmp "$T/data.img" "$T/replica2/vm1/data" || fail "the new target did not receive vm1"
[ "$(recv_pid)" = "$rpid" ] || fail "the first target was reconnected by the second reload"
note "group removed and target added by bascule reload; the first target kept its connection"
