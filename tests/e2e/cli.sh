# cli: the command lines' contracts: --help and --version everywhere, usage
# errors exit 2, a bad configuration exits 3 naming FILE:LINE:COLUMN, no
# daemon exits 8, and the example configuration in etc/ is valid.
. "$(dirname "$0")/../lib/common.sh"
expect_rc 0 "$BIN/basculed" --help
grep -q -- "--check-config" "$T/out" || fail "basculed --help does not mention --check-config"
expect_rc 0 "$BIN/basculed" --version
expect_rc 0 "$BIN/bascule" --help
for c in keygen key sync status metrics history check pause resume trust-host recv replica space drill pgstream; do
	expect_rc 0 "$BIN/bascule" "$c" --help
	grep -qi usage "$T/out" || fail "bascule $c --help prints no usage"
	grep -q "$c" <("$BIN/bascule" --help) || fail "bascule --help does not list $c"
done
# Every verb too (`bascule intake check --help` was "unrecognized option").
for c in "key id" "report verify" "vault init" "vault ls" "vault check" "vault prune" "vault extend-locks" \
	"intake add" "intake ls" "intake check" "intake restore" "intake open-key" "intake prune" "intake metrics" \
	"replica list" "replica verify" "replica recover" "replica rollback" "replica promote" "replica demote" \
	"replica clone" "replica wal-get" restore ship relay reload; do
	# shellcheck disable=SC2086 # the verb's words
	expect_rc 0 "$BIN/bascule" $c --help
	grep -qi usage "$T/out" || fail "bascule $c --help prints no usage"
done
expect_rc 0 "$BIN/bascule" --version
expect_rc 2 "$BIN/bascule" frobnicate
expect_rc 2 "$BIN/bascule" keygen
expect_rc 2 "$BIN/bascule" replica rollback --root /x
expect_rc 2 "$BIN/bascule" pgstream --slot s
expect_rc 2 "$BIN/bascule" pgstream --conninfo "host=/nowhere" --to-dir "$T/w" --base-backup "$T/b"
grep -q "not both" "$T/err" || fail "pgstream: no advice for --to-dir with --base-backup: $(cat "$T/err")"
expect_rc 2 "$BIN/bascule" pgstream --conninfo "host=/nowhere" --slot s --endpos 1/x --to-dir "$T/w"
script -qec "$BIN/bascule pgstream --conninfo host=/nowhere" /dev/null > "$T/tty.out" 2>&1 || true
grep -q "stdout is a terminal" "$T/tty.out" || fail "pgstream writes frames to a terminal: $(cat "$T/tty.out")"
expect_rc 2 "$BIN/basculed" --nope
expect_rc 8 "$BIN/bascule" --socket "$T/none.sock" sync
grep -q "is basculed running" "$T/err" || fail "no advice when the daemon is not running"

bsc_keygen
truncate -s 1M "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1s 60s
expect_rc 0 "$BIN/basculed" -c "$T/bascule.yaml" --check-config
sed -i 's/    interval: 1s/    intervall: 1s/' "$T/bascule.yaml"
expect_rc 3 "$BIN/basculed" -c "$T/bascule.yaml" --check-config
grep -q "$T/bascule.yaml:6:5: unknown key 'intervall'" "$T/err" || fail "no file:line:col: $(cat "$T/err")"
bsc_config 1s 60s
sed -i "s|disk: $T/disk.img|disk: $T/missing.img|" "$T/bascule.yaml"
expect_rc 3 "$BIN/basculed" -c "$T/bascule.yaml" --check-config
grep -q "bascule.yaml:10:15: disk '$T/missing.img' cannot be used: No such file" "$T/err" || fail "missing disk: $(cat "$T/err")"
expect_rc 3 "$BIN/basculed" -c "$T/nonexistent.yaml" --check-config

# The shipped example parses (its disks do not exist here: point each disk
# and the key at files that do, keep everything else as shipped).
awk -v t="$T" '/^ *disk:/ { n++; sub(/disk: .*/, "disk: " t "/d" n ".img") }
	/^key:/ { $0 = "key: " t "/site.key" } { print }' "$ROOT/etc/bascule.yaml" > "$T/example.yaml"
truncate -s 1M "$T/d1.img" "$T/d2.img" "$T/d3.img"
expect_rc 0 "$BIN/basculed" -c "$T/example.yaml" --check-config
grep -q "2 groups, 1 targets" "$T/out" || fail "unexpected example summary: $(cat "$T/out")"

# Installed layout: basculed in sbin finds bascule in ../bin for local targets.
mkdir -p "$T/usr/sbin" "$T/usr/bin"
cp "$BIN/basculed" "$T/usr/sbin/"; cp "$BIN/bascule" "$T/usr/bin/"
SOURCES="root:$T/disk.img"; bsc_config 1h 24h
"$T/usr/sbin/basculed" -c "$T/bascule.yaml" >> "$T/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do [ -S "$T/ctl.sock" ] && break; sleep 0.05; done
bsc_sync 20s || fail "installed basculed could not run its receiver from ../bin"
bsc_stop

# Hostile bytes on the receiver's input: a clear refusal, not a crash.
head -c 4096 /dev/urandom > "$T/garbage"
expect_rc 5 "$BIN/bascule" recv --root "$T/hostile" --key "$T/site.key" < "$T/garbage"
grep -q "does not speak the Bascule protocol\|malformed\|maximum" "$T/err" || fail "unclear refusal: $(cat "$T/err")"
expect_rc 1 "$BIN/bascule" recv --root "$T/hostile" --key "$T/site.key" < /dev/null
grep -q "closed the connection during the handshake" "$T/err" || fail "unclear message on EOF: $(cat "$T/err")"
