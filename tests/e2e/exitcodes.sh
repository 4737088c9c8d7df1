# exitcodes: the exit-code table.  docs/operations.md ("Exit codes by
# command") and bascule(1) list the codes each command can exit with; every
# (command, code) pair they list has a row below (a situation, the command,
# the code, a word of its message), and every row's pair is listed, so the
# documentation and the programs cannot drift apart.  Each command's --help
# may name only codes the table lists for it.
. "$(dirname "$0")/../lib/common.sh"
need_root
command -v setpriv >/dev/null || { echo "SKIP: no setpriv (util-linux)"; exit 77; }
B="$BIN/bascule"
D="$BIN/basculed"
chmod 755 "$T" # other users reach the control socket (its group decides)

declare -A SEEN
FAILED=()
N=0
# row CMD CODE WORD -- COMMAND...: COMMAND (stdin /dev/null) must exit CODE
# and print WORD (any case) on stdout or stderr.  CMD is the command as the
# documentation's table names it ("sync", "replica verify", "basculed").
row() {
	local cmd=$1 code=$2 word=$3 rc=0
	shift 3
	[ "$1" = -- ] && shift
	"$@" < /dev/null > "$T/row.out" 2>&1 || rc=$?
	row_judge "$cmd" "$code" "$word" "$rc" "$T/row.out" "$*"
}
# row_judge CMD CODE WORD RC OUT COMMAND: what row asserts of a command
# that exited RC and printed OUT.
row_judge() {
	local cmd=$1 code=$2 word=$3 rc=$4 out=$5
	N=$((N + 1))
	SEEN["$cmd|$code"]=1
	if [ "$rc" -ne "$code" ] || { [ -n "$word" ] && ! grep -qiF -- "$word" "$out"; }; then
		FAILED+=("$cmd: '$6' exited $rc, want $code with '$word': $(head -c 400 "$out" | tr -d '\0' | tr '\n' ' ')")
	fi
}
# row_bg CMD CODE WORD -- COMMAND...: as row, but COMMAND runs in the
# background (rows that each wait out the same lock run at once); rows_wait
# waits for them all and judges each as row does.
ROWS_BG=() ROWS_BG_PIDS=()
row_bg() {
	local i=${#ROWS_BG[@]} desc
	desc="$1|$2|$3"
	shift 3
	[ "$1" = -- ] && shift
	ROWS_BG+=("$desc|$*")
	( rc=0; "$@" < /dev/null > "$T/row-bg.$i.out" 2>&1 || rc=$?; echo "$rc" > "$T/row-bg.$i.rc" ) &
	ROWS_BG_PIDS+=($!)
}
rows_wait() {
	local i cmd code word what
	wait "${ROWS_BG_PIDS[@]}" || true
	for i in "${!ROWS_BG[@]}"; do
		IFS='|' read -r cmd code word what <<< "${ROWS_BG[i]}"
		row_judge "$cmd" "$code" "$word" "$(cat "$T/row-bg.$i.rc" 2> /dev/null || echo 255)" "$T/row-bg.$i.out" "$what"
	done
	ROWS_BG=() ROWS_BG_PIDS=()
}
with_stdin() { local f=$1; shift; "$@" < "$f"; }
as_user() { local u=$1; shift; setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups "$@"; }
# The last "the receiver exited with status N" the daemon logged in LOG
# (waiting up to 60 s of wall time for one after line FROM): print it, exit N.
receiver_exit() {
	local log=$1 from=${2:-0} line end=$((SECONDS + 60))
	while :; do
		line=$(tail -n +"$((from + 1))" "$log" | grep -o "[^:]*: the replica refused.*exited with status [0-9]*\|the receiver exited with status [0-9]* ([^)]*)" | tail -1 || true)
		[ -n "$line" ] || [ $SECONDS -ge $end ] && break
		sleep 0.1
	done
	echo "$line"
	[ -n "$line" ] || return 99
	return "$(echo "$line" | grep -o 'exited with status [0-9]*' | tail -1 | grep -o '[0-9]*$')"
}
lines() { wc -l < "$1"; }

# ---- fixtures: keys, disks, a configuration with a replica and a vault
bsc_keygen
"$B" keygen site "$T/other.key" > /dev/null
"$B" keygen vault "$T/vault.key" > /dev/null
"$B" keygen vault "$T/vault2.key" > /dev/null
"$B" keygen signing "$T/sign.key" > /dev/null
truncate -s 4M "$T/vm1.img" "$T/vm2.img"
head -c 1M /dev/urandom | dd of="$T/vm1.img" conv=notrunc status=none
head -c 1M /dev/urandom | dd of="$T/vm2.img" conv=notrunc status=none
vault_dir "$T/vault"
cat > "$T/bascule.yaml" <<EOF
state_dir: $T/state
key: $T/site.key
control_socket: $T/ctl.sock
monitor_group: nogroup
groups:
  - name: vm1
    interval: 1h
    max_interval: 24h
    sources: [{name: root, disk: $T/vm1.img}]
  - name: vm2
    interval: 1h
    max_interval: 24h
    sources: [{name: root, disk: $T/vm2.img}]
targets:
  - name: secondary
    url: local:$T/replica
  - name: offsite
    type: vault
    url: local:$T/vault
    vault_key: $T/vault.key
    retention: {all: 1h}
EOF
variant() { # variant NAME SED-EXPRESSION: a copy of the configuration, changed
	sed "$2" "$T/bascule.yaml" > "$T/$1.yaml"
}
variant unknownkey 's/^    interval: 1h/    intervall: 1h/'
variant nokey "s|^key: .*|key: $T/missing.key|"
cp "$T/site.key" "$T/open.key"; chmod 644 "$T/open.key"
variant openkey "s|^key: .*|key: $T/open.key|"
touch "$T/afile"
variant badstate "s|^state_dir: .*|state_dir: $T/afile/state|"
variant noretention '/retention:/d'

# ---- basculed
row basculed 0 "usage" -- "$D" --help
row basculed 0 "OK" -- "$D" -c "$T/bascule.yaml" --check-config
row basculed 2 "usage" -- "$D" --nope
row basculed 2 "usage" -- "$D" extra-argument
row basculed 3 "unknown key 'intervall'" -- "$D" -c "$T/unknownkey.yaml" --check-config
row basculed 3 "unknown key 'intervall'" -- "$D" -c "$T/unknownkey.yaml"
row basculed 3 "cannot read configuration" -- "$D" -c "$T/none.yaml" --check-config
row basculed 4 "chmod 600" -- "$D" -c "$T/openkey.yaml" --check-config
row basculed 4 "chmod 600" -- "$D" -c "$T/openkey.yaml"
row basculed 4 "missing.key" -- "$D" -c "$T/nokey.yaml" --check-config
row basculed 4 "missing.key" -- "$D" -c "$T/nokey.yaml"
row basculed 1 "afile" -- "$D" -c "$T/badstate.yaml"

# ---- bascule itself, keygen
row bascule 0 "usage" -- "$B" --help
row bascule 0 "bascule" -- "$B" --version
row bascule 2 "unknown command" -- "$B" frobnicate
row bascule 2 "usage" -- "$B"
row keygen 0 "key id" -- "$B" keygen site "$T/new.key"
row keygen 1 "refusing to overwrite" -- "$B" keygen site "$T/site.key"
row keygen 2 "usage" -- "$B" keygen
echo "short" > "$T/shortpass"; chmod 600 "$T/shortpass"
row keygen 2 "at least 12" -- "$B" keygen client "$T/cl" --passphrase-file "$T/shortpass"
row keygen 2 "at least 12" -- "$B" keygen vault "$T/esc.key" --escrow "$T/esc.escrow" --passphrase-file "$T/shortpass"
echo "a passphrase long enough" > "$T/openpass"; chmod 644 "$T/openpass"
row keygen 4 "openpass" -- "$B" keygen client "$T/cl2" --passphrase-file "$T/openpass"

# ---- ship (hybrid PRA, client side; docs/hybrid.md)
echo "a passphrase long enough" > "$T/clpass"; chmod 600 "$T/clpass"
"$B" keygen client "$T/cl" --passphrase-file "$T/clpass" > /dev/null
mkdir -p "$T/intake/incoming"
ship_yaml() { # FILE DUMP [KEY=VALUE]: a ship.yaml with a local intake
	{ echo "client: cl"; echo "dump: \"$2\""; echo "public_key: ${PUBK:-$T/cl.pub}"
	  echo "signing_key: $T/cl.sign"; echo "state_dir: $T/shipstate"
	  echo "intake: ${INTAKE:-local:$T/intake/incoming}"; } > "$1"
}
ship_yaml "$T/ship.yaml" "head -c 100000 /dev/urandom"
row ship 0 "shipped night" -- "$B" ship -c "$T/ship.yaml" --verbose --night 2026-01-01
ship_yaml "$T/shipfail.yaml" "echo no such database >&2; exit 3"
row ship 1 "no such database" -- "$B" ship -c "$T/shipfail.yaml" --night 2026-01-02
row ship 2 "usage" -- "$B" ship extra
row ship 3 "ship configuration" -- "$B" ship -c "$T/none.yaml"
PUBK=$T/cl.sign ship_yaml "$T/shipswap.yaml" "true"
row ship 4 "swapped" -- "$B" ship -c "$T/shipswap.yaml" --night 2026-01-02
row ship 9 "another bascule ship" -- flock "$T/shipstate/lock" "$B" ship -c "$T/ship.yaml" --night 2026-01-02
mkdir -p "$T/shipfull"; mount -t tmpfs -o size=1m bsc-ecship "$T/shipfull"; MOUNTS+=("$T/shipfull")
INTAKE=local:$T/shipfull ship_yaml "$T/shipnospace.yaml" "head -c 3000000 /dev/urandom"
row ship 7 "space" -- "$B" ship -c "$T/shipnospace.yaml" --night 2026-01-03
row ship 2 "not a date" -- "$B" ship -c "$T/ship.yaml" --night 2026-13-45
# the note of the last night cannot be written (a directory where its
# temporary file goes): the night is shipped, exit 1, and no note is left
# naming the night before (the next delta would be labelled with the wrong
# base): the next night is full
mkdir "$T/shipstate/last.tmp"
row ship 1 "the next night will be full" -- "$B" ship -c "$T/ship.yaml" --night 2026-01-04
rmdir "$T/shipstate/last.tmp"
[ ! -e "$T/shipstate/last" ] || FAILED+=("ship: a failed note left $T/shipstate/last: $(cat "$T/shipstate/last")")
out=$("$B" ship -c "$T/ship.yaml" --night 2026-01-05 --verbose 2>&1) || FAILED+=("ship after a lost note: $out")
echo "$out" | grep -q "(full)" || FAILED+=("ship after a lost note is not full: $out")

# ---- intake (the operator's side; the nights shipped above)
"$B" intake add "$T/idir" --client cl --pub "$T/cl.pub" > /dev/null
cp -a "$T/intake/incoming/." "$T/idir/cl/incoming/"
cp "$T/idir/cl/client.pub" "$T/cl.pub.saved"; echo garbage > "$T/idir/cl/client.pub"
row intake 1 "--force" -- "$B" intake add "$T/idir" --client cl --pub "$T/cl.pub"
grep -qx garbage "$T/idir/cl/client.pub" || FAILED+=("intake add replaced an unreadable client.pub without --force")
row intake 0 "enrolled" -- "$B" intake add "$T/idir" --client cl --pub "$T/cl.pub" --force
cmp -s "$T/idir/cl/client.pub" "$T/cl.pub.saved" || FAILED+=("intake add --force did not restore client.pub")
RK=(--key "$T/cl.key" --passphrase-file "$T/clpass")
row intake 0 "2026-01-05" -- "$B" intake ls "$T/idir"
row intake 2 "usage" -- "$B" intake ls
row intake 3 "UNKNOWN" -- "$B" intake check "$T/nosuchdir" --all --max-age 1d
row intake 2 "CRITICAL" -- "$B" intake check "$T/idir" --client cl --max-age 1d --now "@$(( $(date +%s) + 2 * 86400 ))"
row intake 1 "WARNING" -- "$B" intake check "$T/idir" --client cl --max-age 30d --warn-age 1d --now "@$(( $(date +%s) + 2 * 86400 ))"
row intake 1 "exists" -- "$B" intake restore "$T/idir" --client cl "${RK[@]}" --to "$T/clpass"
echo "not the passphrase at all" > "$T/wrongpass"; chmod 600 "$T/wrongpass"
row intake 4 "passphrase" -- "$B" intake restore "$T/idir" --client cl --key "$T/cl.key" --passphrase-file "$T/wrongpass" --to "$T/r0"
# a key opened once (intake open-key): restore reads it without a passphrase
row intake 4 "passphrase" -- "$B" intake open-key --key "$T/cl.key" --passphrase-file "$T/wrongpass" --out "$T/cl.opened"
[ ! -e "$T/cl.opened" ] || FAILED+=("intake open-key with a wrong passphrase left $T/cl.opened")
row intake 0 "mode 0600" -- "$B" intake open-key "${RK[@]}" --out "$T/cl.opened"
row intake 1 "exists" -- "$B" intake open-key "${RK[@]}" --out "$T/cl.opened"
row intake 2 "already an opened key" -- "$B" intake open-key --key "$T/cl.opened" --out "$T/cl.opened2"
row intake 2 "usage" -- "$B" intake open-key --key "$T/cl.key"
chmod 644 "$T/cl.opened"
row intake 4 "chmod 600" -- "$B" intake restore "$T/idir" --client cl --key "$T/cl.opened" --to "$T/r0"
chmod 600 "$T/cl.opened"
"$B" keygen client "$T/cl3" --passphrase-file "$T/clpass" > /dev/null
"$B" intake open-key --key "$T/cl3.key" --passphrase-file "$T/clpass" --out "$T/cl3.opened" > /dev/null
row intake 4 "is not the decryption key of client cl" -- "$B" intake restore "$T/idir" --client cl --key "$T/cl3.opened" --to "$T/r0"
row intake 0 "restored night" -- "$B" intake restore "$T/idir" --client cl --key "$T/cl.opened" --to "$T/r0"
# a planted symlink where restore puts its temporary file is not followed
echo "not to be overwritten" > "$T/victim"
ln -s "$T/victim" "$T/r6.restoring-0"; ln -s "$T/victim" "$T/r6.restoring-1"
row intake 0 "restored night" -- "$B" intake restore "$T/idir" --client cl "${RK[@]}" --to "$T/r6"
[ "$(cat "$T/victim")" = "not to be overwritten" ] || FAILED+=("intake restore wrote through a planted symlink")
[ -f "$T/r6" ] && [ ! -L "$T/r6" ] || FAILED+=("intake restore: $T/r6 is not the restored file: $(ls -l "$T/r6")")
cmp -s "$T/r0" "$T/r6" || FAILED+=("intake restore with the opened key ($T/r0) differs from the sealed key's ($T/r6)")
mkdir -p "$T/rfull"; mount -t tmpfs -o size=16k bsc-ecrest "$T/rfull"; MOUNTS+=("$T/rfull")
row intake 7 "space" -- "$B" intake restore "$T/idir" --client cl "${RK[@]}" --to "$T/rfull/dump"
f=$(ls "$T/idir/cl/incoming/2026-01-05/" | head -1)
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)" "$T/idir/cl/incoming/2026-01-05/$f"
row intake 5 "2026-01-05" -- "$B" intake restore "$T/idir" --client cl "${RK[@]}" --to "$T/r5"

# ---- the daemon's control socket
bsc_start
row basculed 9 "another basculed" -- "$D" -c "$T/bascule.yaml"
row sync 0 "acknowledged" -- bsc sync --wait --vault --timeout 60s
row sync 0 "requested" -- bsc sync vm1
row sync 0 '"acknowledged":true' -- bsc sync vm1 --wait --timeout 60s --json
row sync 2 "no such group 'nosuch'" -- bsc sync nosuch
row sync 2 "usage" -- bsc sync --bogus
row sync 3 "cannot read configuration" -- "$B" -c "$T/none.yaml" sync
row sync 4 "permission denied" -- as_user nobody "$B" --socket "$T/ctl.sock" sync
row sync 8 "is basculed running" -- "$B" --socket "$T/none.sock" sync
bsc pause vm2 > /dev/null
row sync 1 "paused" -- bsc sync vm2
row resume 0 "" -- bsc resume vm2
row resume 2 "no such group" -- bsc resume nosuch
row resume 3 "cannot read configuration" -- "$B" -c "$T/none.yaml" resume
row resume 4 "permission denied" -- as_user nobody "$B" --socket "$T/ctl.sock" resume
row resume 8 "is basculed running" -- "$B" --socket "$T/none.sock" resume
row pause 0 "" -- bsc pause vm2
bsc resume vm2 > /dev/null
row pause 2 "no such group" -- bsc pause nosuch
row pause 2 "usage" -- bsc pause vm1 vm2
row pause 3 "cannot read configuration" -- "$B" -c "$T/none.yaml" pause
row pause 4 "permission denied" -- as_user nobody "$B" --socket "$T/ctl.sock" pause
row pause 8 "is basculed running" -- "$B" --socket "$T/none.sock" pause
row reload 0 "" -- bsc reload
row reload 2 "usage" -- bsc reload now
cp "$T/bascule.yaml" "$T/good.yaml"; cp "$T/unknownkey.yaml" "$T/bascule.yaml"
row reload 3 "unknown key 'intervall'" -- bsc reload
cp "$T/good.yaml" "$T/bascule.yaml"
row reload 3 "cannot read configuration" -- "$B" -c "$T/none.yaml" reload
row reload 4 "permission denied" -- as_user nobody "$B" --socket "$T/ctl.sock" reload
row reload 8 "is basculed running" -- "$B" --socket "$T/none.sock" reload
for c in status metrics history; do
	row $c 0 "" -- "$B" -c "$T/bascule.yaml" $c
	row $c 0 "" -- as_user nobody "$B" --socket "$T/ctl.sock" $c # monitor_group may read
	row $c 3 "cannot read configuration" -- "$B" -c "$T/none.yaml" $c
	row $c 4 "monitor_group" -- as_user daemon "$B" --socket "$T/ctl.sock" $c
	row $c 8 "is basculed running" -- "$B" --socket "$T/none.sock" $c
done
row check 0 "OK" -- bsc check --max-lag 1h --target secondary
sleep 0.2 # every lag is above 10 ms now
row check 1 "WARNING" -- bsc check --max-lag 1h --warn-lag 10ms --target secondary
row check 2 "CRITICAL" -- bsc check --max-lag 10ms --target secondary
row check 3 "UNKNOWN" -- bsc check --max-lag 1h --target nosuch
row check 3 "UNKNOWN" -- "$B" --socket "$T/none.sock" check --max-lag 1h

# ---- recv, directly and as the daemon runs it
head -c 4096 /dev/urandom > "$T/garbage"
row recv 0 "usage" -- "$B" recv --help
row recv 1 "during the handshake" -- "$B" recv --root "$T/r-eof" --key "$T/site.key"
row recv 2 "usage" -- "$B" recv
row recv 4 "missing.key" -- "$B" recv --root "$T/r-key" --key "$T/missing.key"
row recv 4 "chmod 600" -- "$B" recv --root "$T/r-key" --key "$T/open.key"
printf 'hello\n' > "$T/junk.key"; chmod 600 "$T/junk.key"
row recv 4 "not a Bascule site key" -- "$B" recv --root "$T/r-key" --key "$T/junk.key"
row recv 5 "malformed" -- with_stdin "$T/garbage" "$B" recv --root "$T/r-junk" --key "$T/site.key"
# the group is promoted at the secondary: not a key problem
pre=$(lines "$T/daemon.log")
"$B" replica promote --root "$T/replica" --key "$T/site.key" --group vm2 > /dev/null 2> "$T/promote.err" ||
	fail "replica promote of vm2 beside the daemon's receiver failed: $(cat "$T/promote.err")"
# the promotion took the replica over from the daemon's receiver: wait until
# the daemon has told that end, so the exit looked for below is the refusal
! grep -q "taking over from receiver" "$T/promote.err" ||
	wait_for 60 "the daemon to log its receiver's end after the promotion" \
		'tail -n +"$((pre + 1))" "$T/daemon.log" | grep "the receiver was killed by signal\|the receiver exited with status" > /dev/null'
from=$(lines "$T/daemon.log")
bsc sync vm2 > /dev/null
row recv 1 "promoted on the receiving site" -- receiver_exit "$T/daemon.log" "$from"
demote=$(tail -n +"$((from + 1))" "$T/daemon.log" | grep "^basculed: .*refused" | grep -o "run there: bascule replica demote [^;]*" | head -1 | sed 's/^run there: bascule //' || true)
[ -n "$demote" ] || fail "the daemon logged no refusal of vm2 naming 'run there: bascule replica demote' after line $from of its log: $(tail -n +"$((from + 1))" "$T/daemon.log" | grep -i "refused\|exited\|killed" | head -5)"
# shellcheck disable=SC2086 # the command the message gives, word for word
row "replica demote" 0 "a replica again" -- "$B" $demote
row sync 0 "acknowledged" -- bsc sync vm2 --wait --timeout 60s
# another site key at the secondary
cat > "$T/recv-other-key" <<SH
#!/bin/sh
exec "$B" recv "\$@" --key "$T/other.key"
SH
chmod +x "$T/recv-other-key"

# a second daemon: wrong key at one receiver, a full replica at another
mkdir "$T/small"
mount -t tmpfs -o size=2M tmpfs "$T/small"
MOUNTS+=("$T/small")
head -c 6M /dev/urandom > "$T/big.img"
cat > "$T/two.yaml" <<EOF
state_dir: $T/state2
key: $T/site.key
control_socket: $T/ctl2.sock
groups:
  - name: big
    interval: 1h
    max_interval: 24h
    sources: [{name: disk, disk: $T/big.img}]
targets:
  - name: full
    url: local:$T/small
  - name: otherkey
    url: local:$T/r-other
    remote_command: $T/recv-other-key
EOF
"$D" -c "$T/two.yaml" > "$T/daemon2.log" 2>&1 &
D2=$!
EXIT_HOOKS+=(stop_d2)
stop_d2() { kill "$D2" 2> /dev/null || true; wait "$D2" 2> /dev/null || true; }
wait_for 60 "the second basculed's control socket" '[ -S "$T/ctl2.sock" ] ||
	{ kill -0 "$D2" 2> /dev/null || fail "the second basculed exited at start: $(tail -3 "$T/daemon2.log")"; false; }'
row sync 6 "target full lags" -- "$B" --socket "$T/ctl2.sock" sync --wait --timeout 2s
grep -v otherkey "$T/daemon2.log" > "$T/daemon2-full.log" || true
row recv 7 "no space" -- receiver_exit "$T/daemon2-full.log"
grep -v "target full" "$T/daemon2.log" > "$T/daemon2-key.log" || true
row recv 4 "not the same site key" -- receiver_exit "$T/daemon2-key.log"
stop_d2

# ---- the vault (local directory; the daemon keeps shipping meanwhile)
V=(--vault "local:$T/vault")
row "vault ls" 0 "vm1" -- "$B" vault ls -c "$T/bascule.yaml"
row "vault ls" 0 "series-" -- "$B" vault ls "${V[@]}" --verify-key "$T/vault.key.pub"
row "vault ls" 1 "does not exist" -- "$B" vault ls --vault "local:$T/novault" --verify-key "$T/vault.key.pub"
row "vault ls" 2 "which vault" -- "$B" vault ls --verify-key "$T/vault.key.pub"
row "vault ls" 2 "usage" -- "$B" vault ls "${V[@]}" --bogus
row "vault ls" 3 "unknown key" -- "$B" vault ls -c "$T/unknownkey.yaml"
row "vault ls" 4 "verify-key" -- "$B" vault ls "${V[@]}"
row "vault ls" 4 "missing.pub" -- "$B" vault ls "${V[@]}" --verify-key "$T/missing.pub"
row "vault check" 0 "0 bad manifests" -- "$B" vault check "${V[@]}" --verify-key "$T/vault.key.pub"
row "vault check" 1 "does not exist" -- "$B" vault check --vault "local:$T/novault" --verify-key "$T/vault.key.pub"
row "vault check" 2 "which vault" -- "$B" vault check --verify-key "$T/vault.key.pub"
row "vault check" 3 "unknown key" -- "$B" vault check -c "$T/unknownkey.yaml"
row "vault check" 4 "needs the vault key" -- "$B" vault check "${V[@]}" --read-data --verify-key "$T/vault.key.pub"
row "vault prune" 0 "epochs kept" -- "$B" vault prune "${V[@]}" --verify-key "$T/vault.key.pub" --keep-all 1h --dry-run
row "vault prune" 0 "epochs kept" -- "$B" vault prune -c "$T/bascule.yaml" --dry-run
row "vault prune" 1 "does not exist" -- "$B" vault prune --vault "local:$T/novault" --verify-key "$T/vault.key.pub" --keep-all 1h
row "vault prune" 2 "no retention policy" -- "$B" vault prune "${V[@]}" --verify-key "$T/vault.key.pub"
row "vault prune" 2 "span" -- "$B" vault prune "${V[@]}" --verify-key "$T/vault.key.pub" --keep-all 3x
row "vault prune" 3 "no retention policy" -- "$B" vault prune -c "$T/noretention.yaml"
row "vault prune" 4 "verify-key" -- "$B" vault prune "${V[@]}" --keep-all 1h
RK=("${V[@]}" --vault-key "$T/vault.key" --source vm1/root)
row restore 0 "restored vm1/root" -- "$B" restore "${RK[@]}" --to "$T/r1.img"
row restore 0 "restored vm1/root" -- "$B" restore -c "$T/bascule.yaml" --source vm1/root --to "$T/r2.img"
row restore 1 "exists" -- "$B" restore "${RK[@]}" --to "$T/r1.img"
row restore 1 "no such epoch" -- "$B" restore "${RK[@]}" --epoch 99999 --to "$T/r3.img"
row restore 2 "usage" -- "$B" restore "${RK[@]}" --bogus
row restore 2 "GROUP/SOURCE" -- "$B" restore "${V[@]}" --vault-key "$T/vault.key" --to "$T/r3.img"
row restore 2 "which vault" -- "$B" restore --vault-key "$T/vault.key" --source vm1/root --to "$T/r3.img"
row restore 3 "unknown key" -- "$B" restore -c "$T/unknownkey.yaml" --source vm1/root --to "$T/r3.img"
row restore 4 "needs the vault key" -- "$B" restore "${V[@]}" --source vm1/root --to "$T/r3.img"
row restore 4 "not this vault's key" -- "$B" restore "${V[@]}" --vault-key "$T/vault2.key" --source vm1/root --to "$T/r3.img"
row "vault ls" 4 "not this vault's key" -- "$B" vault ls "${V[@]}" --verify-key "$T/vault2.key.pub"
row restore 4 "missing.key" -- "$B" restore "${V[@]}" --vault-key "$T/missing.key" --source vm1/root --to "$T/r3.img"
# new data in vm2: the objects written now only its newest epoch needs
touch "$T/marker"; sleep 0.01
head -c 64K /dev/urandom | dd of="$T/vm2.img" bs=64K seek=20 conv=notrunc status=none
bsc sync vm2 --wait --vault --timeout 60s > /dev/null
bsc_stop # the vault stays as it is from here on
newest=$("$B" vault ls "${V[@]}" --vault-key "$T/vault.key" --json | python3 -c "
import json,sys; print(max(e['epoch'] for e in json.load(sys.stdin) if e.get('group')=='vm1'))")
# an object the newest epoch of vm2 needs is missing, then damaged
obj=$(find "$T/vault/d" -type f -newer "$T/marker" | head -1)
[ -n "$obj" ] || fail "no vault object was written for vm2's newest epoch"
mv "$obj" "$T/saved-object"
row restore 5 "damaged in the vault" -- "$B" restore -c "$T/bascule.yaml" --source vm2/root --to "$T/r4.img"
row "vault check" 5 "MISSING" -- "$B" vault check "${V[@]}" --verify-key "$T/vault.key.pub"
mv "$T/saved-object" "$obj"
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)" "$obj"
row "vault check" 5 "DAMAGED" -- "$B" vault check "${V[@]}" --verify-key "$T/vault.key.pub"
row restore 5 "damaged in the vault" -- "$B" restore -c "$T/bascule.yaml" --source vm2/root --to "$T/r5.img"
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)" "$obj"
# the provider removes the newest manifest of vm1 (tests/e2e/vaultrollback.sh shows more)
man=""
for f in "$T"/vault/m/*; do
	mv "$f" "$T/held"
	e=$("$B" vault ls "${V[@]}" --vault-key "$T/vault.key" --json | python3 -c "
import json,sys; print(max([e['epoch'] for e in json.load(sys.stdin) if e.get('group')=='vm1' and 'failed' not in e] or [0]))")
	[ "$e" -lt "$newest" ] && { man=$f; break; }
	mv "$T/held" "$f"
done
[ -n "$man" ] || fail "cannot find the manifest of vm1 epoch $newest"
row restore 5 "epoch $newest" -- "$B" restore -c "$T/bascule.yaml" --source vm1/root --to "$T/r6.img"
row "vault ls" 5 "vm1 epoch $newest" -- "$B" vault ls -c "$T/bascule.yaml"
row restore 0 "restored vm1/root" -- "$B" restore -c "$T/bascule.yaml" --source vm1/root --to "$T/r6.img" --accept-older
mv "$T/held" "$man"
row "vault ls" 0 "vm1" -- "$B" vault ls -c "$T/bascule.yaml"

# ---- replica commands (the daemon is stopped: the receiver lock is free)
R=(--root "$T/replica" --key "$T/site.key")
row "replica list" 0 "rollback points" -- "$B" replica list --root "$T/replica"
row "replica list" 1 "not a Bascule replica" -- "$B" replica list --root "$T/noreplica"
row "replica list" 2 "usage" -- "$B" replica list
row "replica verify" 0 "OK" -- "$B" replica verify "${R[@]}"
row "replica verify" 1 "no group 'nosuch'" -- "$B" replica verify "${R[@]}" --group nosuch
row "replica verify" 2 "usage" -- "$B" replica verify
row "replica verify" 4 "missing.key" -- "$B" replica verify --root "$T/replica" --key "$T/missing.key"
[ -e /etc/bascule/site.key ] ||
	row "replica verify" 4 "give --key" -- "$B" replica verify --root "$T/replica"
row "replica recover" 0 "group vm1" -- "$B" replica recover "${R[@]}"
row "replica recover" 2 "usage" -- "$B" replica recover
row "replica recover" 4 "missing.key" -- "$B" replica recover --root "$T/replica" --key "$T/missing.key"
row "replica clone" 0 "cloned" -- "$B" replica clone "${R[@]}" --group vm1 --to-dir "$T/clone"
row "replica clone" 1 "no group 'nosuch'" -- "$B" replica clone "${R[@]}" --group nosuch --to-dir "$T/clone2"
row "replica clone" 2 "usage" -- "$B" replica clone "${R[@]}" --group vm1
row "replica clone" 4 "missing.key" -- "$B" replica clone --root "$T/replica" --key "$T/missing.key" --group vm1 --to-dir "$T/clone3"
point=$("$B" replica list --root "$T/replica" --group vm1 | sed -n 's/.*rollback points: \([0-9]*\).*/\1/p')
row "replica rollback" 0 "rolled back" -- "$B" replica rollback "${R[@]}" --group vm1 --to "$point"
row "replica rollback" 1 "cannot roll back" -- "$B" replica rollback "${R[@]}" --group vm1 --to 99999
row "replica rollback" 2 "--group" -- "$B" replica rollback "${R[@]}" --to "$point"
row "replica rollback" 2 "usage" -- "$B" replica rollback "${R[@]}" --group vm1
row "replica rollback" 4 "missing.key" -- "$B" replica rollback --root "$T/replica" --key "$T/missing.key" --group vm1 --to "$point"
row "replica promote" 0 "promoted" -- "$B" replica promote "${R[@]}" --group vm2
row "replica promote" 1 "no group 'nosuch'" -- "$B" replica promote "${R[@]}" --group nosuch
row "replica promote" 2 "usage" -- "$B" replica promote "${R[@]}"
row "replica promote" 4 "missing.key" -- "$B" replica promote --root "$T/replica" --key "$T/missing.key" --group vm2
row "replica demote" 0 "a replica again" -- "$B" replica demote "${R[@]}" --group vm2
row "replica demote" 1 "no group 'nosuch'" -- "$B" replica demote "${R[@]}" --group nosuch
row "replica demote" 2 "usage" -- "$B" replica demote "${R[@]}"
row "replica demote" 4 "missing.key" -- "$B" replica demote --root "$T/replica" --key "$T/missing.key" --group vm2
# a link planted in the replica directory (by its owner, or anyone who can
# write it): refused, nothing changed (tests/e2e/untrusted.sh plants them as
# a non-root owner)
G1="$T/replica/.bascule/groups/vm1"
mv "$G1/state" "$G1/state.real" && ln -s state.real "$G1/state"
row "replica recover" 5 "symbolic link" -- "$B" replica recover "${R[@]}"
row "replica rollback" 5 "symbolic link" -- "$B" replica rollback "${R[@]}" --group vm1 --to "$point"
rm "$G1/state" && mv "$G1/state.real" "$G1/state"
mv "$T/replica/vm1/root" "$T/replica/vm1/root.real" && ln -s root.real "$T/replica/vm1/root"
row "replica clone" 5 "symbolic link" -- "$B" replica clone "${R[@]}" --group vm1 --to-dir "$T/clone4"
rm "$T/replica/vm1/root" && mv "$T/replica/vm1/root.real" "$T/replica/vm1/root"
ln -s "$T/site.key" "$T/replica/.bascule/groups/vm2/promoted.tmp"
row "replica promote" 5 "symbolic link" -- "$B" replica promote "${R[@]}" --group vm2
rm "$T/replica/.bascule/groups/vm2/promoted.tmp"
ln -s "$T/site.key" "$T/replica/.bascule/groups/vm2/state.tmp"
row "replica demote" 5 "symbolic link" -- "$B" replica demote "${R[@]}" --group vm2
rm "$T/replica/.bascule/groups/vm2/state.tmp"
# a replica disk altered behind the receiver's back
cp "$T/replica/vm1/root" "$T/vm1-replica.saved"
printf 'X' | dd of="$T/replica/vm1/root" bs=1 seek=4096 conv=notrunc status=none
row "replica verify" 5 "MISMATCH" -- "$B" replica verify "${R[@]}" --group vm1
cp "$T/vm1-replica.saved" "$T/replica/vm1/root"
# another process holds the replica's lock (not a receiver: it is waited
# for 10 s, then given up)
( exec 9>> "$T/replica/.bascule/lock"; flock 9; exec sleep 120 ) &
HOLDER=$!
EXIT_HOOKS+=(stop_holder)
stop_holder() { kill "$HOLDER" 2> /dev/null || true; wait "$HOLDER" 2> /dev/null || true; }
wait_for 60 "the holder to take the replica's lock" '! flock -n "$T/replica/.bascule/lock" true'
# verify reads beside the holder (under the apply lock), never 9
row "replica verify" 0 "verifying beside it" -- "$B" replica verify "${R[@]}"
# (each waits the holder out on its own: all at once)
row_bg "replica recover" 9 "in use" -- "$B" replica recover "${R[@]}"
row_bg "replica rollback" 9 "in use" -- "$B" replica rollback "${R[@]}" --group vm1 --to "$point"
row_bg "replica promote" 9 "in use" -- "$B" replica promote "${R[@]}" --group vm2
row_bg "replica demote" 9 "in use" -- "$B" replica demote "${R[@]}" --group vm2
row_bg recv 9 "in use" -- "$B" recv --root "$T/replica" --key "$T/site.key"
rows_wait
stop_holder

# ---- trust-host: a real sshd in a namespace of its own
if ip netns add "bsc-x$$" 2> /dev/null; then
	NS=bsc-x$$
	EXIT_HOOKS+=(drop_ns)
	drop_ns() { ip netns pids "$NS" 2> /dev/null | xargs -r kill -9 2> /dev/null; ip netns del "$NS" 2> /dev/null; return 0; }
	ip -n "$NS" link set lo up
	. "$(dirname "$0")/../lib/sites.sh"
	start_sshd trust "$NS" 127.0.0.1 root
	ssh-keygen -q -t ed25519 -N "" -f "$T/another_host_key"
	echo "127.0.0.1 $(cut -d' ' -f1,2 "$T/another_host_key.pub")" > "$T/known_changed"
	inns() { ip netns exec "$NS" "$@"; }
	row trust-host 0 "SHA256:" -- inns "$B" trust-host 127.0.0.1 --known-hosts "$T/known_hosts" --yes
	row trust-host 0 "already" -- inns "$B" trust-host 127.0.0.1 --known-hosts "$T/known_hosts" --yes
	row trust-host 1 "Connection refused" -- inns "$B" trust-host 127.0.0.1:1 --known-hosts "$T/known_x" --yes
	row trust-host 2 "usage" -- "$B" trust-host
	row trust-host 4 "changed" -- inns "$B" trust-host 127.0.0.1 --known-hosts "$T/known_changed" --yes
else
	note "no network namespaces here: trust-host rows skipped"
	for c in 0 1 2 4; do SEEN["trust-host|$c"]=1; done
fi

# ---- drill and report verify: a drill whose hosts are all this machine
bsc_start
bsc sync --wait --timeout 60s > /dev/null
runbook() { # runbook FILE RTO CHECK TEST_STOP
	cat > "$1" <<EOF
name: exit codes
objectives: {rto: $2, rpo: 1h}
hosts: [{name: here, url: local}]
primary: {host: here, bascule: $B, control_socket: $T/ctl.sock}
secondary: {host: here, bascule: $B, replica_root: $T/replica, site_key: $T/site.key, clone_dir: $T/drill-clones}
prechecks: {max_lag: 0s, require_connected: false}
services:
  - name: web
    group: vm1
    start: "true"
    test_start: "true"
    test_stop: "$4"
    checks: [{name: up, command: "$3", host: here, retries: 0}]
report: {dir: $T/reports, signing_key: $T/sign.key}
state_dir: $T/drill-state-$(basename "$1" .yaml)
EOF
}
runbook "$T/rb-ok.yaml" 1h true true
runbook "$T/rb-slow.yaml" 1s "sleep 1.5" true
runbook "$T/rb-fail.yaml" 1h false false
cp "$T/rb-ok.yaml" "$T/rb-bad.yaml"; sed -i 's/^name:/nam:/' "$T/rb-bad.yaml"
row space 0 '"available_bytes":' -- "$B" space --json "$T/not-yet/made"
row space 1 "not a directory" -- "$B" space "$T/afile/x"
row space 2 "usage" -- "$B" space
row drill 0 "drill" -- "$B" drill "$T/rb-ok.yaml" --mode plan
row drill 0 "met" -- "$B" drill "$T/rb-ok.yaml" --mode test
row drill 1 "not met" -- "$B" drill "$T/rb-slow.yaml" --mode test
row drill 2 "failed" -- "$B" drill "$T/rb-fail.yaml" --mode test
row drill 3 "abort" -- "$B" drill "$T/rb-fail.yaml" --abort
row drill 2 "unknown key" -- "$B" drill "$T/rb-bad.yaml" --mode plan
row drill 2 "runbook" -- "$B" drill
report=$(ls "$T"/reports/*.json 2> /dev/null | grep -v journal | head -1 || true)
[ -n "$report" ] || fail "the drill wrote no report in $T/reports"
row "report verify" 0 "signature valid" -- "$B" report verify --key "$T/sign.key.pub" "$report"
python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); d['report']['result']='altered'; json.dump(d, open(sys.argv[2],'w'))" "$report" "$T/tampered.json"
row "report verify" 1 "signature" -- "$B" report verify --key "$T/sign.key.pub" "$T/tampered.json"
row "report verify" 2 "" -- "$B" report verify "$T/no-such-report.json"
row "report verify" 2 "usage" -- "$B" report verify
bsc_stop

# ---- bascule pgstream, against a real PostgreSQL 15 (tests/lib/pg.sh)
. "$ROOT/tests/lib/pg.sh"
pg_init ec
pg_start ec
PG=("$B" pgstream --user "$PG_RELAY_USER" --connect-timeout 10s)
row pgstream 0 "usage" -- "$B" pgstream --help
row pgstream 2 "usage" -- "$B" pgstream --slot s
row pgstream 3 "invalid connection option" -- "${PG[@]}" --conninfo "hst=x" --slot s --to-dir "$T/pgw"
row pgstream 1 "check host= and port=" -- "${PG[@]}" --conninfo "host=$(pg_dir ec) port=5999" --slot s --to-dir "$T/pgw"
echo "*:*:*:$PG_REP_ROLE:wrong" > "$T/pgbad"; chown "$PG_RELAY_USER" "$T/pgbad"; chmod 600 "$T/pgbad"
row pgstream 4 "password authentication failed" -- "${PG[@]}" --conninfo "host=$(pg_dir ec) user=$PG_REP_ROLE passfile=$T/pgbad" --slot s --to-dir "$T/pgw"
printf '\0\0\0\010\101\0\0\0\377\377\377\377\0\0\0\0' > "$T/pgflushed"
row pgstream 5 "past what it was sent" -- sh -c '"$@" < "$0" > /dev/null' "$T/pgflushed" "${PG[@]}" --conninfo "$(pg_conninfo ec)" --slot s
mkdir -p "$T/pgfull"; mount -t tmpfs -o size=8m bsc-ecfull "$T/pgfull"; MOUNTS+=("$T/pgfull")
row pgstream 7 "no space" -- "${PG[@]}" --conninfo "$(pg_conninfo ec)" --slot full --to-dir "$T/pgfull"
"${PG[@]}" --conninfo "$(pg_conninfo ec)" --slot busy --to-dir "$T/pgbusy" 2> /dev/null &
PGBUSY=$!
wait_for 60 "pgstream to hold the slot 'busy'" \
	'[ -n "$(pg_sql ec "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '"'busy'"'")" ]'
row pgstream 9 "is active for PID" -- "${PG[@]}" --conninfo "$(pg_conninfo ec)" --slot busy --to-dir "$T/pgbusy2"
kill -TERM "$PGBUSY" 2> /dev/null || true
wait "$PGBUSY" || true

# ---- the documentation's table against the rows
doc_pairs() { # FILE FORMAT: "command|code" lines the document lists
	case $2 in
	md) sed -n '/^## Exit codes by command/,/^## /p' "$1" | grep '^| `' |
		sed 's/^| `\(bascule \)\{0,1\}\([^`]*\)` | \([0-9 ]*\) |.*/\2|\3/' ;;
	man) awk '/^\.SH EXIT STATUS/ { on = 1; next } /^\.SH/ { on = 0 }
		on && /^\.TP/ { getline c; sub(/^\.B[RI]? */, "", c); gsub(/"/, "", c); getline k; print c "|" k }' "$1" |
		sed 's/^bascule //; s/,//g' ;;
	esac | while IFS='|' read -r c codes; do
		for k in $codes; do echo "$c|$k"; done
	done | sort -u
}
doc_pairs "$ROOT/docs/operations.md" md > "$T/doc.pairs"
doc_pairs "$ROOT/docs/man/bascule.1" man > "$T/man.pairs"
awk -F'|' '$1 == "basculed"' "$T/doc.pairs" > "$T/doc-basculed.pairs"
doc_pairs "$ROOT/docs/man/basculed.8" man | sed 's/^[^|]*|/basculed|/' > "$T/man-basculed.pairs"
[ "$(wc -l < "$T/doc.pairs")" -gt 50 ] || fail "could not read the table of docs/operations.md: $(cat "$T/doc.pairs")"
# Rows another test holds (they need a running PostgreSQL clone a replica
# made, a shipped client's intake): counted only while that test still
# asserts the code.
elsewhere() { # CMD CODE FILE PATTERN
	grep -qF -- "$4" "$ROOT/tests/e2e/$3" && SEEN["$1|$2"]=1 ||
		FAILED+=("$1 exit $2: tests/e2e/$3 no longer asserts it ('$4')")
}
row "vault init" 2 "prepares s3://" -- "$B" vault init --vault "local:$T/vault"
# vault init's other codes need a real radosgw (tests/lib/ceph.sh): s3vault.sh holds them.
elsewhere "vault init" 0 s3vault.sh 'grep -q "Object Lock enabled, versioning on"'
elsewhere "vault init" 1 s3vault.sh 'grep -q "does not exist" "$T/err" || fail "missing bucket'
elsewhere "vault init" 3 s3vault.sh 'grep -q "has no Object Lock"'
elsewhere "vault init" 4 s3vault.sh 'grep -q "refused the credentials" "$T/err" || fail "wrong credentials'
row "vault extend-locks" 2 "works on the s3:// vault" -- "$B" vault extend-locks --vault "local:$T/vault"
row "vault extend-locks" 3 "" -- "$B" vault extend-locks -c "$T/nonexistent.yaml"
elsewhere "vault extend-locks" 0 s3locks.sh 'expect_rc 0 "$B" vault extend-locks -c'
elsewhere "vault extend-locks" 1 s3locks.sh 'grep -q "does not exist" "$T/err" || fail "extend-locks, missing bucket'
elsewhere "vault extend-locks" 4 s3locks.sh 'grep -q "refused the credentials" "$T/err" || fail "extend-locks, wrong credentials'
elsewhere "replica clone" 9 pgdrilltest.sh '[ $rc = 9 ] && grep -q "a PostgreSQL server (pid'
elsewhere drill 5 hybriddrill.sh '[ $rc = 5 ] || fail "a damaged night: drill exit'
for k in "${!SEEN[@]}"; do echo "$k"; done | sort -u > "$T/test.pairs"
diff <(grep -v '^basculed|' "$T/doc.pairs") <(sort -u "$T/man.pairs") > "$T/d1" ||
	FAILED+=("docs/operations.md and bascule(1) list different codes: $(tr '\n' ' ' < "$T/d1")")
diff "$T/doc-basculed.pairs" "$T/man-basculed.pairs" > "$T/d2" ||
	FAILED+=("docs/operations.md and basculed(8) list different codes: $(tr '\n' ' ' < "$T/d2")")
comm -23 "$T/doc.pairs" "$T/test.pairs" | while read -r p; do echo "documented, no row: $p"; done > "$T/d3"
comm -13 "$T/doc.pairs" "$T/test.pairs" | while read -r p; do echo "a row, not documented: $p"; done >> "$T/d3"
while read -r l; do FAILED+=("$l"); done < "$T/d3"
# --help names only codes the table lists for that command
helps=("basculed|$D --help" "bascule|$B --help")
while read -r c; do
	case $c in basculed | bascule) continue ;; esac
	helps+=("$c|$B $c --help")
done < <(cut -d'|' -f1 "$T/doc.pairs" | sort -u)
for h in "${helps[@]}"; do
	c=${h%%|*}
	# shellcheck disable=SC2086
	{ ${h#*|} 2>&1 | awk '/^Exit/ { on = 1 } on && /^$/ { on = 0 } on' |
		grep -oE '(^|[ ,;])[0-9]([ :,;.]|$)' | grep -oE '[0-9]' || true; } | sort -u |
		while read -r k; do
			[ "$c" = bascule ] && continue # the global list: every code
			# replica's verbs share one --help: the codes of any verb
			[ "${c%% *}" = replica ] && grep -q "^replica [a-z]*|$k\$" "$T/doc.pairs" && continue
			grep -qxF "$c|$k" "$T/doc.pairs" || echo "bascule $c --help names exit $k, the table does not"
		done
done > "$T/d4"
while read -r l; do FAILED+=("$l"); done < "$T/d4"

note "$N rows, $(wc -l < "$T/test.pairs") (command, code) pairs, $(wc -l < "$T/doc.pairs") documented"
if [ ${#FAILED[@]} -gt 0 ]; then
	printf '  %s\n' "${FAILED[@]}" >&2
	fail "${#FAILED[@]} of the exit-code table's checks failed"
fi
