# prometheus: a real Prometheus (Debian's package) scrapes basculed's
# metrics_listen.  promtool passes the shipped alert rules, their unit tests
# and the exposition; the HTTP answer is the control socket's `metrics`
# (one code path) with no binary noise in its numbers; a query shows the
# lag series; the shipped BasculeReplicaDown rule fires when the target is
# cut and resolves when it is back.  The endpoint is read-only and bounded:
# other methods and paths are refused, a huge request is cut off, silent
# clients are capped per address and in all and dropped when idle, and none
# of it stalls replication.  A reload moves the listener, refuses a port
# already taken (the old one keeps serving) and closes it when removed.
# Everything listens inside a network namespace of its own.
. "$(dirname "$0")/../lib/common.sh"
need_root
command -v prometheus >/dev/null && command -v promtool >/dev/null ||
	fail "Prometheus is not installed (scripts/deps.sh test installs Debian's prometheus)"

# promtool: the rules file as shipped, and its unit tests.
promtool check rules "$ROOT/etc/prometheus/bascule-alerts.yml" > "$T/rules.out" 2>&1 ||
	fail "promtool check rules: $(cat "$T/rules.out")"
(cd "$ROOT/tests/prometheus" && promtool test rules bascule-alerts.test.yml) > "$T/rtest.out" 2>&1 ||
	fail "promtool test rules: $(cat "$T/rtest.out")"
note "rules: $(grep -o 'SUCCESS.*' "$T/rules.out"), their unit tests pass"

NS=bsc-prom$$
ns_down() {
	[ -n "${PROM_PID:-}" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
	ip netns del "$NS" 2>/dev/null
}
EXIT_HOOKS+=(ns_down)
ip netns add "$NS"
ip -n "$NS" link set lo up
NSEXEC=(ip netns exec "$NS")
in_ns() { ip netns exec "$NS" "$@"; }
http() { in_ns curl -sS --max-time "${HTTP_TIMEOUT:-5}" "$@"; }

bsc_keygen
truncate -s 16M "$T/disk.img"
"$BIN/tests/randwrite" "$T/disk.img" 300 1
SOURCES="root:$T/disk.img"
# The receiver refuses to start while $T/down exists: the secondary is cut.
cat > "$T/recv-unless-down" <<SH
#!/bin/sh
[ -e "$T/down" ] && { echo "bascule-recv: error: secondary cut (test)" >&2; exit 1; }
exec "$BIN/bascule" recv "\$@"
SH
chmod +x "$T/recv-unless-down"
bsc_config 1s 2s "remote_command: $T/recv-unless-down"
echo "metrics_listen: 127.0.0.1:9853" >> "$T/bascule.yaml"
bsc_start
bsc_sync 30s || fail "first sync"
grep -q "serving Prometheus metrics at http://127.0.0.1:9853/metrics" "$T/daemon.log" || fail "no listener in the log"

# The exposition over HTTP: the `metrics` verb's text, checked by promtool.
http -D "$T/headers" -o "$T/http.prom" http://127.0.0.1:9853/metrics || fail "GET /metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/headers" || fail "content type: $(cat "$T/headers")"
bsc metrics > "$T/verb.prom"
series() { sed 's/ [^ ]*$//' "$1"; }
diff <(series "$T/http.prom") <(series "$T/verb.prom") > "$T/diff" || fail "HTTP and the verb differ: $(cat "$T/diff")"
promtool check metrics < "$T/http.prom" > "$T/lint" 2>&1 || fail "promtool check metrics: $(cat "$T/lint")"
awk -f "$ROOT/tests/lib/promcheck.awk" "$T/http.prom" > "$T/prom.out" || fail "promcheck: $(cat "$T/prom.out")"
grep -q '^bascule_target_info{target="secondary",type="replica"} 1$' "$T/http.prom" || fail "no target_info"
grep -q '^bascule_target_lag_seconds{target="secondary",group="vm1"} [0-9]' "$T/http.prom" || fail "no lag"
# Numbers as measured, not binary noise (0.016199999999999999): nothing in the
# metrics or the status has more than 6 decimals (microseconds).
bsc status --json > "$T/status.json"
for f in "$T/http.prom" "$T/status.json"; do
	! grep -nE '[0-9]\.[0-9]{7,}' "$f" || fail "$(basename "$f") prints noisy floats"
done
grep -qE '"cut_time": [0-9]{10}(\.[0-9]{1,3})?,' "$T/status.json" || fail "cut_time not to the ms: $(grep cut_time "$T/status.json")"
note "GET /metrics = the metrics verb ($(cat "$T/prom.out")); promtool check metrics clean"

# Read-only, two paths.
code() { http -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code -X POST -d x=1 http://127.0.0.1:9853/metrics)" = 405 ] || fail "POST is not refused with 405"
[ "$(code -X DELETE http://127.0.0.1:9853/metrics)" = 405 ] || fail "DELETE is not refused"
http -D - -o /dev/null -X PUT http://127.0.0.1:9853/metrics | grep -qi '^allow: GET, HEAD' || fail "405 without Allow"
[ "$(code http://127.0.0.1:9853/nope)" = 404 ] || fail "an unknown path is not 404"
[ "$(code -I http://127.0.0.1:9853/metrics)" = 200 ] || fail "HEAD /metrics"
# A request line and headers larger than the per-connection bound.
c=$(code -H "X-Big: $(head -c 100000 /dev/zero | tr '\0' a)" http://127.0.0.1:9853/metrics || true)
[ "$c" != 200 ] || fail "a 100 KB header was served"
note "POST/PUT/DELETE 405, unknown path 404, a 100 KB header answered $c"

# A real Prometheus: 1 s scrapes and rule evaluations, the shipped rules with
# their `for` shortened to 1 s so that the test takes seconds, not minutes.
mkdir -p "$T/prom"
sed -E 's/^( *)for: .*/\1for: 1s/' "$ROOT/etc/prometheus/bascule-alerts.yml" > "$T/prom/rules.yml"
cat > "$T/prom/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [$T/prom/rules.yml]
scrape_configs:
  - job_name: bascule
    static_configs: [{targets: ["127.0.0.1:9853"]}]
YAML
promtool check config "$T/prom/prometheus.yml" > "$T/pcfg.out" 2>&1 || fail "promtool check config: $(cat "$T/pcfg.out")"
in_ns prometheus --config.file="$T/prom/prometheus.yml" --storage.tsdb.path="$T/prom/data" \
	--web.listen-address=127.0.0.1:9090 > "$T/prom/log" 2>&1 &
PROM_PID=$!
api() { http -G "http://127.0.0.1:9090/api/v1/$1" "${@:2}"; }
# py EXPR: evaluate EXPR on the JSON read from stdin (as j).
py() { python3 -c "import json,sys; j=json.load(sys.stdin); sys.exit(0 if ($1) else 1)"; }
ready() { [ "$(HTTP_TIMEOUT=2 code http://127.0.0.1:9090/-/ready 2>/dev/null)" = 200 ] || { tail -3 "$T/prom/log" > "$WAIT_WHY"; false; }; }
wait_for 60 "Prometheus to start" ready
lag_scraped() {
	api query --data-urlencode 'query=bascule_target_lag_seconds{job="bascule",target="secondary",group="vm1"}' |
		py "j['status']=='success' and len(j['data']['result'])==1 and float(j['data']['result'][0]['value'][1])>=0"
}
wait_for 30 "Prometheus to scrape the lag series" lag_scraped
api query --data-urlencode 'query=bascule_target_lag_seconds' > "$T/q.json"
nrules=$(grep -c '^ *- alert:' "$ROOT/etc/prometheus/bascule-alerts.yml")
api rules | py "len([r for g in j['data']['groups'] for r in g['rules']])==$nrules" ||
	fail "Prometheus did not load the $nrules rules of the shipped file"
note "Prometheus scrapes: $(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['data']['result'][0]; print(r['metric']['__name__'], r['metric']['target'], r['metric']['group'], r['value'][1])" "$T/q.json")"

# Cut the target: the receiver dies and may not start again.
alert() { # alert NAME STATE: the alert NAME for target secondary is in STATE
	api alerts | py "any(a['labels']['alertname']=='$1' and a['labels'].get('target')=='secondary' and a['state']=='$2' for a in j['data']['alerts'])"
}
no_alert() { api alerts | py "not any(a['labels']['alertname']=='$1' for a in j['data']['alerts'])"; }
no_alert BasculeReplicaDown || fail "BasculeReplicaDown before the cut"
touch "$T/down"
kill "$(recv_pid)"
s=$(date +%s)
wait_for 60 "BasculeReplicaDown to fire with the target cut" alert BasculeReplicaDown firing
note "target cut: BasculeReplicaDown firing after $(($(date +%s) - s)) s"
rm "$T/down"
bsc_sync 60s || fail "no catch-up after the cut"
wait_for 60 "BasculeReplicaDown to resolve with the target back" no_alert BasculeReplicaDown
no_alert BasculeRPOOverObjective || fail "BasculeRPOOverObjective fired on a short cut"

# Hostile clients from other addresses (Prometheus scrapes from 127.0.0.1):
# 8 silent connections from 127.0.0.2 are its share; a 9th is closed at once
# while Prometheus is still served.  8 more from 127.0.0.3 fill the cap of 16:
# a new client then waits.  Replication and the control socket go on, and
# the idle connections are dropped after 10 s.
cat > "$T/hostile.py" <<'PY'
import os, socket, sys, time
held = []
def connect(src):
    s = socket.socket(); s.bind((src, 0)); s.connect(("127.0.0.1", 9853)); return s
for _ in range(8):
    held.append(connect("127.0.0.2"))
time.sleep(0.5)
extra = connect("127.0.0.2"); extra.settimeout(5)
try:
    closed = extra.recv(1) == b""
except ConnectionResetError:
    closed = True
except socket.timeout:
    closed = False
print("ninth-closed" if closed else "ninth-kept", flush=True)
while not os.path.exists(sys.argv[1]):                    # the test checks 127.0.0.1
    time.sleep(0.1)
for _ in range(8):
    held.append(connect("127.0.0.3"))
print("capped", flush=True)
t0 = time.time()
for s in held:
    s.settimeout(20)
    try:
        s.recv(1)
    except OSError:
        pass
print("idle-dropped %.1f" % (time.time() - t0), flush=True)
PY
in_ns python3 "$T/hostile.py" "$T/go" > "$T/hostile.out" 2>&1 &
HPID=$!
# hostile_says WORD: the hostile clients printed WORD (else their output in $WAIT_WHY)
hostile_says() { grep -q "$1" "$T/hostile.out" || { tr '\n' ' ' < "$T/hostile.out" > "$WAIT_WHY"; false; }; }
wait_for 15 "the hostile clients to connect" hostile_says ninth
grep -q ninth-closed "$T/hostile.out" || fail "a 9th connection from one address was kept"
[ "$(code http://127.0.0.1:9853/metrics)" = 200 ] || fail "8 silent clients of one address locked out another"
touch "$T/go"
wait_for 15 "the hostile client beyond the cap" hostile_says capped
# A client beyond the cap waits in the backlog, and is served once the idle
# connections are dropped.
HTTP_TIMEOUT=40 code http://127.0.0.1:9853/metrics > "$T/waiting.code" 2>&1 &
WPID=$!
sleep 2
[ ! -s "$T/waiting.code" ] || fail "served a connection beyond the cap of 16: $(cat "$T/waiting.code")"
"$BIN/tests/randwrite" "$T/disk.img" 100 2
s=$(date +%s%N)
bsc_sync 10s || fail "replication stalled beside 16 silent HTTP clients"
ms=$(( ($(date +%s%N) - s) / 1000000 ))
cmp "$T/disk.img" "$(replica_of root)" || fail "replica differs"
wait "$HPID" || fail "hostile client: $(cat "$T/hostile.out")"
grep -q idle-dropped "$T/hostile.out" || fail "idle connections were not dropped: $(cat "$T/hostile.out")"
wait "$WPID" || true
[ "$(cat "$T/waiting.code")" = 200 ] || fail "the client waiting at the cap was not served: $(cat "$T/waiting.code")"
[ "$(code http://127.0.0.1:9853/metrics)" = 200 ] || fail "not served again once the idle clients are gone"
note "9th client of one address closed while another address is served, 17th waits until a slot frees; sync in $ms ms meanwhile; $(grep -o 'idle-dropped.*' "$T/hostile.out") s"

# Reload: a new address; one already taken (Prometheus' port) is refused and
# the old one goes on serving; removing the key closes the listener.
sed -i 's/^metrics_listen: .*/metrics_listen: 127.0.0.1:9854/' "$T/bascule.yaml"
bsc reload || fail "reload to a new metrics_listen"
[ "$(code http://127.0.0.1:9854/metrics)" = 200 ] || fail "not served on the new address"
! http -o /dev/null http://127.0.0.1:9853/metrics 2>/dev/null || fail "the old address still answers"
sed -i 's/^metrics_listen: .*/metrics_listen: 127.0.0.1:9090/' "$T/bascule.yaml"
set +e; bsc reload 2>"$T/err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "new configuration refused.*cannot listen on 127.0.0.1:9090: Address already in use" "$T/err" ||
	fail "a taken port was not refused clearly (rc $rc): $(cat "$T/err")"
[ "$(code http://127.0.0.1:9854/metrics)" = 200 ] || fail "a refused reload stopped the running listener"
sed -i '/^metrics_listen:/d' "$T/bascule.yaml"
bsc reload || fail "reload without metrics_listen"
! http -o /dev/null http://127.0.0.1:9854/metrics 2>/dev/null || fail "still listening with metrics_listen removed"
note "reload: moved to :9854; :9090 refused, :9854 still serving; removed, closed"
kill -0 "$DAEMON_PID" || fail "basculed died"
# A clean stop (under SAN=1, LeakSanitizer checks the listeners opened and
# closed above; common.sh fails the test on a report in the log).
bsc_stop
