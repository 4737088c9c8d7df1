# wrongkey: the receiver has another site key.  The daemon says so (both key
# ids), sync --wait times out with exit 6 naming the target, recv exits 4;
# a key file readable by others is refused by every program.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
other_id=$("$BIN/bascule" keygen site "$T/other.key" | sed -n 's/.*(key id \([0-9a-f]*\)).*/\1/p')
[ -n "$other_id" ] || fail "keygen did not print the key id"
truncate -s 16M "$T/disk.img"
SOURCES="root:$T/disk.img"
cat > "$T/recv-other-key" <<SH
#!/bin/sh
exec "$BIN/bascule" recv "\$@" --key "$T/other.key"
SH
chmod +x "$T/recv-other-key"
bsc_config 1h 24h "remote_command: $T/recv-other-key"
bsc_start
set +e
bsc sync --wait --timeout 3s 2>"$T/sync.err"; rc=$?
set -e
[ $rc -eq 6 ] || fail "sync --wait should time out with exit 6, got $rc"
grep -q "target secondary lags" "$T/sync.err" || fail "sync does not name the lagging target: $(cat "$T/sync.err")"
grep -q "site key mismatch" "$T/daemon.log" || fail "the daemon does not report the key mismatch"
# Named by site, the right way round: the secondary (recv) holds other.key.
grep -q "the primary's (basculed) key id is [0-9a-f]*, the secondary's (bascule recv) is $other_id" "$T/daemon.log" \
	|| fail "the mismatch does not name the secondary's key id $other_id: $(grep -m1 mismatch "$T/daemon.log")"
grep -q "exited with status 4" "$T/daemon.log" || fail "recv should exit 4 on a wrong key"
bsc_stop

# Unsafe key file modes are refused, with the fix in the message.
chmod 0640 "$T/site.key"
set +e
"$BIN/basculed" -c "$T/bascule.yaml" --check-config 2>"$T/err"; rc=$?
set -e
[ $rc -eq 4 ] || fail "check-config with an unsafe key should exit 4 (a key error), got $rc"
grep -q "chmod 600" "$T/err" || fail "no advice in: $(cat "$T/err")"
set +e
echo | "$BIN/bascule" recv --root "$T/r2" --key "$T/site.key" 2>"$T/err"; rc=$?
set -e
[ $rc -eq 4 ] || fail "recv with an unsafe key should exit 4, got $rc"
chmod 0600 "$T/site.key"
# A file that is not a key
printf 'hello\n' > "$T/junk.key"; chmod 600 "$T/junk.key"
set +e
echo | "$BIN/bascule" recv --root "$T/r2" --key "$T/junk.key" 2>"$T/err"; rc=$?
set -e
[ $rc -eq 4 ] || fail "recv with a junk key should exit 4, got $rc"
grep -q "not a Bascule site key" "$T/err" || fail "unclear junk-key message: $(cat "$T/err")"
# keygen refuses to overwrite
set +e
"$BIN/bascule" keygen site "$T/site.key" 2>"$T/err"; rc=$?
set -e
[ $rc -ne 0 ] && grep -q "refusing to overwrite" "$T/err" || fail "keygen overwrote a key"
[ "$(stat -c %a "$T/other.key")" = 600 ] || fail "keygen did not write mode 0600"
