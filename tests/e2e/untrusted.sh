# untrusted: the secondary's root-run commands do not trust the replica's
# owner.  The replica directory belongs to an unprivileged user (the
# `bascule` user of docs/secondary-setup.md; here `nobody`), who plants, as
# that user, each of the links the issue names, and forges a journal; root
# then runs the replica commands an operator or a drill runs.  Each refuses
# with a clear error (exit 5), and nothing outside the replica changes: a
# root-owned file keeps its bytes, a root process keeps running.  Last, the
# receiver run by the owner is not dumpable (its keys stay out of reach).
. "$(dirname "$0")/../lib/common.sh"
need_root
command -v setpriv >/dev/null || { echo "SKIP: no setpriv (util-linux)"; exit 77; }
OWNER=nobody
id "$OWNER" >/dev/null 2>&1 || { echo "SKIP: no user $OWNER"; exit 77; }
OWNER_IDS=(--reuid="$OWNER" --regid="$(id -g "$OWNER")" --init-groups)
as_owner() { setpriv "${OWNER_IDS[@]}" "$@"; }
B="$BIN/bascule"
R="$T/replica"
K=(--key "$T/site.key")
chmod 711 "$T"

# A replica with two epochs (a rollback point), then handed to its owner.
bsc_keygen
truncate -s 8M "$T/disk.img"
"$BIN/tests/randwrite" "$T/disk.img" 200 1
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
bsc_start
bsc_sync >/dev/null || fail "first sync"
"$BIN/tests/randwrite" "$T/disk.img" 200 2
bsc_sync >/dev/null || fail "second sync"
bsc_stop
chown -R "$OWNER:$(id -gn "$OWNER")" "$R"
epoch=$("$B" replica list --root "$R" | sed -n 's/.*vm1: epoch \([0-9]*\).*/\1/p')
point=$("$B" replica list --root "$R" | sed -n 's/.*rollback points: \([0-9]*\).*/\1/p')
[ -n "$epoch" ] && [ -n "$point" ] || fail "no epoch or rollback point: $("$B" replica list --root "$R")"

# What the owner must not be able to reach through root: a root-only file.
head -c 100000 /dev/urandom > "$T/victim"
chmod 600 "$T/victim"
want=$(sha256sum < "$T/victim")
untouched() {
	[ "$(sha256sum < "$T/victim")" = "$want" ] || fail "$1 changed the root-owned file the link pointed to"
	[ "$(stat -c %s "$T/victim")" = 100000 ] || fail "$1 resized the root-owned file"
}
# REFUSED WHAT CMD...: CMD exits 5 naming WHAT, the file is untouched, the
# group is where it was.
refused() {
	local what=$1; shift
	expect_rc 5 "$@"
	grep -q "$what" "$T/err" || fail "'$*' does not say '$what': $(cat "$T/err")"
	grep -q "refused" "$T/err" || fail "'$*' does not say it refused: $(cat "$T/err")"
	untouched "$*"
	"$B" replica list --root "$R" | grep -q "vm1: epoch $epoch " || fail "'$*' moved the group: $("$B" replica list --root "$R")"
}
G="$R/.bascule/groups/vm1"

# 1. state.tmp -> the root file; demote (as the operator or the drill runs it)
as_owner ln -s "$T/victim" "$G/state.tmp"
refused "symbolic link" "$B" replica demote --root "$R" "${K[@]}" --group vm1
[ -L "$G/state.tmp" ] || fail "the planted link was removed (the operator should see it)"
as_owner rm "$G/state.tmp"
note "state.tmp planted: demote refused, the root file kept its bytes"

# 2. G/S -> the root file, then rollback (it would write undo data into it)
as_owner mv "$R/vm1/root" "$R/vm1/root.real"
as_owner ln -s "$T/victim" "$R/vm1/root"
refused "is a symbolic link" "$B" replica rollback --root "$R" "${K[@]}" --group vm1 --to "$point"
"$B" replica list --root "$R" | grep -q "rollback points: $point" || fail "the rollback point is gone"

# 3. clone following the same planted link: nothing of the root file copied
refused "is a symbolic link" "$B" replica clone --root "$R" "${K[@]}" --group vm1 --to-dir "$T/clone"
[ ! -e "$T/clone/root" ] || ! cmp -s "$T/clone/root" "$T/victim" || fail "clone copied the root-only file"
as_owner rm "$R/vm1/root"
as_owner mv "$R/vm1/root.real" "$R/vm1/root"
note "G/S planted: rollback and clone refused, the root file kept its bytes"

# 3b. the drill's clone directory (inside the replica) made a link to a
# root directory: clone does not create, replace or remove anything there
mkdir -p "$T/rootdir/vm1"
echo keep > "$T/rootdir/vm1/root"
as_owner ln -s "$T/rootdir" "$R/.drill-clones"
refused "is a symbolic link" "$B" replica clone --root "$R" "${K[@]}" --group vm1 --to-dir "$R/.drill-clones/vm1"
[ "$(cat "$T/rootdir/vm1/root")" = keep ] || fail "clone wrote into a root directory through a planted link"
as_owner rm "$R/.drill-clones"
"$B" replica clone --root "$R" "${K[@]}" --group vm1 --to-dir "$R/.drill-clones/vm1" > /dev/null ||
	fail "clone into the replica: $(cat "$T/err")"
cmp "$R/.drill-clones/vm1/root" "$R/vm1/root" || fail "the clone differs from the replica"
note "clone directory planted as a link: refused; without it the clone is made"

# 4. a journal forged by the owner in the earlier, unkeyed format (all it
# took before: a checksum anyone can compute), with other data
as_owner /usr/bin/python3 - "$G/undo/$epoch.undo" <<'PY'
import hashlib, sys
p = sys.argv[1]
j = bytearray(open(p, 'rb').read())
j[0:8] = b'BSCJRNL1'
n = len(j) - 32
j[n - 4096 - 9:n - 4096 - 9 + 6] = b'FORGED'
j[n:] = hashlib.blake2b(bytes(j[:n]), digest_size=32).digest()
open(p, 'wb').write(j)
PY
cp "$R/vm1/root" "$T/replica-before"
refused "unauthenticated format" "$B" replica rollback --root "$R" "${K[@]}" --group vm1 --to "$point"
cmp -s "$R/vm1/root" "$T/replica-before" || fail "the forged journal was applied"
note "forged journal refused, nothing of it applied"

# 5. the lock: the owner holds it and writes a root process's pid as the
# receiver; taking over (promote, demote) must not signal that process
bash -c 'exec -a "bascule recv --root decoy" sleep 600' &
decoy=$!
stop_decoy() { kill "$decoy" 2>/dev/null || true; }
EXIT_HOOKS+=(stop_decoy)
setpriv "${OWNER_IDS[@]}" bash -c "exec 9>> '$R/.bascule/lock'; flock 9; echo '$decoy recv' > '$R/.bascule/lock'; exec sleep 600" &
holder=$!
stop_holder() { kill "$holder" 2>/dev/null || true; }
EXIT_HOOKS+=(stop_holder)
for _ in $(seq 100); do flock -n "$R/.bascule/lock" true || break; sleep 0.05; done
expect_rc 9 "$B" replica demote --root "$R" "${K[@]}" --group vm1
kill -0 "$decoy" 2>/dev/null || fail "demote signalled the root process the owner named in the lock file"
kill -0 "$holder" 2>/dev/null || fail "demote signalled a holder that does not say it is a receiver"
stop_holder; wait "$holder" 2>/dev/null || true
stop_decoy
note "lock file naming a root process: it was left alone, demote waited and gave up (9)"

# 6. the receiver, run by the owner, is not dumpable: /proc/PID belongs to
# root, so neither the owner nor a debugger of its uid reads its memory
install -o "$OWNER" -m 0600 "$T/site.key" "$T/owner.key"
mkfifo "$T/recv.in"
setpriv "${OWNER_IDS[@]}" "$B" recv --root "$R" --key "$T/owner.key" < "$T/recv.in" > /dev/null 2> "$T/recv.err" &
rpid=$!
exec 8> "$T/recv.in"
for _ in $(seq 200); do grep -q '^Uid:' "/proc/$rpid/status" 2>/dev/null && [ -f "$R/.bascule/lock" ] && \
	[ "$(cut -d' ' -f1 "$R/.bascule/lock" 2>/dev/null)" = "$rpid" ] && break; sleep 0.05; done
[ "$(cut -d' ' -f1 "$R/.bascule/lock")" = "$rpid" ] || fail "the receiver did not take the lock: $(cat "$T/recv.err")"
[ "$(stat -c %u "/proc/$rpid/mem")" = 0 ] || fail "the receiver is dumpable (/proc/$rpid/mem belongs to uid $(stat -c %u "/proc/$rpid/mem"))"
as_owner cat "/proc/$rpid/environ" > /dev/null 2>&1 && fail "the owner reads the receiver's /proc/$rpid/environ"
exec 8>&-
wait "$rpid" 2>/dev/null || true
note "receiver run by the owner: not dumpable"
