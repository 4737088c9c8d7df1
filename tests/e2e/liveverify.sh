# liveverify: `bascule replica verify` while replication goes on.  The
# receiver holds the replica's lock; verify runs beside it under the apply
# lock (shared), sees one complete epoch, and replication continues after it.
# A block damaged on the secondary is found, the source marked diverged, the
# receiver's session ended, and the primary resynchronises it at once.
. "$(dirname "$0")/../lib/common.sh"
need_root
bsc_keygen
truncate -s 64M "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 200ms 1s
bsc_start
"$BIN/tests/randwrite" "$T/disk.img" 4000 1
bsc_sync 60s >/dev/null || fail "initial sync"

# The VM keeps writing while the operator verifies.
( for i in $(seq 1 200); do "$BIN/tests/randwrite" "$T/disk.img" 20 $((i + 10)); sleep 0.05; done ) &
WRITER=$!
stop_writer() { kill "$WRITER" 2>/dev/null; }
EXIT_HOOKS+=(stop_writer)
sleep 0.5
before=$(status_get 'd["targets"][0]["groups"]["vm1"]["acked"]')
set +e
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" > "$T/verify.out" 2> "$T/verify.err"; rc=$?
set -e
[ $rc -eq 0 ] || fail "live verify exited $rc: $(cat "$T/verify.out" "$T/verify.err")"
grep -q "in use by bascule recv: verifying beside it" "$T/verify.err" || fail "verify does not say it runs beside the receiver: $(cat "$T/verify.err")"
grep -q "vm1/root: OK at epoch" "$T/verify.out" || fail "no OK line: $(cat "$T/verify.out")"
sleep 1
after=$(status_get 'd["targets"][0]["groups"]["vm1"]["acked"]')
[ "$after" -gt "$before" ] || fail "replication did not go on around the verify (acked $before -> $after)"
note "live verify OK ($(grep -o 'at epoch [0-9]*' "$T/verify.out")); acked $before -> $after meanwhile"
wait $WRITER

# Damage one block of the replica behind the receiver's back.
bsc_sync 60s >/dev/null
rpid=$(recv_pid)
printf 'ransomware was here' | dd of="$(replica_of root)" bs=1 seek=$((4096 * 777 + 100)) conv=notrunc status=none
set +e
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" > "$T/verify.out" 2> "$T/verify.err"; rc=$?
set -e
[ $rc -eq 5 ] || fail "verify of a damaged replica exited $rc, expected 5: $(cat "$T/verify.out" "$T/verify.err")"
grep -q "vm1/root: MISMATCH" "$T/verify.out" || fail "no MISMATCH line: $(cat "$T/verify.out")"
grep -q "resynchronises it now" "$T/verify.err" || fail "verify does not say what happens next: $(cat "$T/verify.err")"
for _ in $(seq 100); do [ "$(recv_pid)" != "$rpid" ] && break; sleep 0.1; done
[ "$(recv_pid)" != "$rpid" ] || fail "the receiver's session was not ended"
bsc_sync 60s >/dev/null || fail "no resync after the mismatch"
cmp "$T/disk.img" "$(replica_of root)" || fail "replica still differs after the resync"
grep -q "resynchronising it with librsync deltas" "$T/daemon.log" || fail "the daemon did not resync by deltas"
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" 2>/dev/null | grep -q "vm1/root: OK" \
	|| fail "verify after the resync"
note "damaged block found live, source resynchronised by deltas, replica identical"
