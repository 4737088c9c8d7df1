# hostile: hostile YAML through every program that reads it: 1 MiB of '['
# (libyaml's loader took minutes), an alias bomb and a duration past 64 bits
# (interval: 5e89) are refused at once with FILE:LINE:COL and the documented
# code, by `basculed --check-config`, by `bascule drill` (runbook) and by a
# reload of a running daemon, which keeps its configuration and replicates on.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 4M "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
cp "$T/bascule.yaml" "$T/good.yaml"

python3 -c "import sys; sys.stdout.write('[' * (1 << 20))" > "$T/nested.yaml"
python3 - "$T/bomb.yaml" <<'PY'
import sys
lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
lines += ["a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 9)]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
sed 's/^    interval: 1h$/    interval: 5e89/' "$T/good.yaml" > "$T/huge.yaml"
grep -q "interval: 5e89" "$T/huge.yaml" || fail "test setup: no interval line to change"

# expect_refused WANT_RC WANT_MESSAGE CMD...: CMD exits WANT_RC (or any
# failure: nonzero) within 10 s (under load too) and says WANT_MESSAGE.
expect_refused() {
	local want_rc=$1 want=$2 rc=0 t0
	shift 2
	t0=$(date +%s.%N)
	timeout 10 "$@" > "$T/out" 2>&1 || rc=$?
	[ $rc = 124 ] && fail "$* took more than 10 s"
	if [ "$want_rc" = nonzero ]; then
		[ $rc != 0 ] || fail "$* exited 0: $(cat "$T/out")"
	else
		[ $rc = "$want_rc" ] || fail "$* exited $rc, wanted $want_rc: $(cat "$T/out")"
	fi
	grep -q -- "$want" "$T/out" || fail "$*: no '$want' in: $(cat "$T/out")"
	note "$(basename "$1") ${*: -1}: exit $rc in $(printf '%.2f' "$(echo "$(date +%s.%N) - $t0" | bc)") s"
}

expect_refused 3 "$T/nested.yaml:1:33: lists and mappings nested more than 32 deep" \
	"$BIN/basculed" --check-config -c "$T/nested.yaml"
expect_refused 3 "$T/bomb.yaml:.*values (aliases count as what they stand for)" \
	"$BIN/basculed" --check-config -c "$T/bomb.yaml"
expect_refused 3 "$T/huge.yaml:[0-9]*:15: interval must be between 100ms and 24h00m, got '5e89'" \
	"$BIN/basculed" --check-config -c "$T/huge.yaml"
expect_refused 2 "$T/nested.yaml:1:33: lists and mappings nested more than 32 deep" \
	"$BIN/bascule" drill "$T/nested.yaml" --mode plan

# A reload of each is refused; the running configuration stays and works.
bsc_start
bsc_sync || fail "initial sync"
for f in nested bomb huge; do
	cp "$T/$f.yaml" "$T/bascule.yaml"
	expect_refused nonzero "new configuration refused, the running one stays: $T/bascule.yaml:[0-9]*:[0-9]*: " \
		"$BIN/bascule" --socket "$T/ctl.sock" reload
done
kill -0 "$DAEMON_PID" || fail "basculed exited on a hostile reload"
"$BIN/tests/randwrite" "$T/disk.img" 50 3
bsc_sync 30s || fail "replication stopped after the refused reloads"
cmp -s "$T/disk.img" "$(replica_of root)" || fail "replica differs after the refused reloads"
note "three hostile reloads refused; the running configuration replicates on"
