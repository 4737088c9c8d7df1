# keyid: `bascule key id FILE` prints the id keygen printed, the same for a
# copy of the key (the other site), the id the daemon names in a key
# mismatch; signing keys by their secret or .pub file; every bad key file
# exits 4 with a message saying what is wrong, a bad command line 2.
. "$(dirname "$0")/../lib/common.sh"
B=$BIN/bascule

printed=$("$B" keygen site "$T/site.key" | sed -n 's/.*(key id \([0-9a-f]*\)).*/\1/p')
[ ${#printed} -eq 16 ] || fail "keygen printed no key id"
expect_rc 0 "$B" key id "$T/site.key"
[ "$(cat "$T/out")" = "$printed" ] || fail "key id prints '$(cat "$T/out")', keygen printed $printed"
mkdir "$T/secondary"; cp -p "$T/site.key" "$T/secondary/site.key"
[ "$("$B" key id "$T/secondary/site.key")" = "$printed" ] || fail "a copy of the key has another id"
"$B" keygen site "$T/other.key" > /dev/null
other=$("$B" key id "$T/other.key")
[ "$other" != "$printed" ] && [ ${#other} -eq 16 ] || fail "two keys, ids '$printed' and '$other'"

sprinted=$("$B" keygen signing "$T/sign.key" | sed -n 's/.*(key id \([0-9a-f]*\)).*/\1/p')
expect_rc 0 "$B" key id "$T/sign.key"
[ "$(cat "$T/out")" = "$sprinted" ] || fail "signing key id '$(cat "$T/out")', keygen printed $sprinted"
chmod 644 "$T/sign.key.pub"
expect_rc 0 "$B" key id "$T/sign.key.pub"
[ "$(cat "$T/out")" = "$sprinted" ] || fail "the .pub file has another id than its secret key"
note "key id matches keygen for site and signing keys"

# The ids the daemon prints in a key mismatch are the ones key id shows.
truncate -s 1M "$T/disk.img"
SOURCES="root:$T/disk.img"
printf '#!/bin/sh\nexec "%s" recv "$@" --key "%s"\n' "$B" "$T/other.key" > "$T/recv-other"
chmod +x "$T/recv-other"
bsc_config 1h 24h "remote_command: $T/recv-other"
bsc_start
for _ in $(seq 200); do grep -q "mismatch" "$T/daemon.log" && break; sleep 0.05; done
bsc_stop
line=$(grep -m1 "mismatch" "$T/daemon.log" || true)
case "$line" in *"$printed"*"$other"* | *"$other"*"$printed"*) ;;
	*) fail "the mismatch message does not show the ids key id prints ($printed, $other): $line" ;;
esac
note "the daemon's key mismatch names the ids key id prints"

# Bad files: exit 4, what is wrong and what to do.
chmod 644 "$T/secondary/site.key"
expect_rc 4 "$B" key id "$T/secondary/site.key"
grep -q "chmod 600" "$T/err" || fail "unsafe mode without advice: $(cat "$T/err")"
chmod 644 "$T/sign.key"
expect_rc 4 "$B" key id "$T/sign.key"
expect_rc 4 "$B" key id "$T/missing.key"
grep -q "missing.key" "$T/err" || fail "a missing file is not named: $(cat "$T/err")"
expect_rc 4 "$B" key id /etc/passwd
grep -q "not a Bascule site or signing key" "$T/err" || fail "not a key: $(cat "$T/err")"
printf 'bascule-site-key-v1 AAAA\n' > "$T/short.key"; chmod 600 "$T/short.key"
expect_rc 4 "$B" key id "$T/short.key"
expect_rc 4 "$B" key id "$T"
head -c 100000 /dev/urandom > "$T/big.key"; chmod 600 "$T/big.key"
expect_rc 4 "$B" key id "$T/big.key"
expect_rc 2 "$B" key id
expect_rc 2 "$B" key show "$T/site.key"
expect_rc 2 "$B" key id "$T/site.key" "$T/other.key"
expect_rc 0 "$B" key --help
grep -q "Usage: bascule key id FILE" "$T/out" || fail "key --help prints no usage"
note "bad key files exit 4, usage 2"
