# intakeprune: intake prune and intake metrics (issue 14).  Seven nights of
# a small deterministic generator (1 MiB, a few bytes changed a night) ship
# with full_every 3 to a local: intake: fulls on nights 1, 4, 7.  The test
# shows: --dry-run removes nothing; --keep 2 keeps exactly nights 4-7 (night
# 6 is a delta whose chain goes back to the full night 4: a kept delta's base
# is never removed), check stays OK and a kept night restores byte-identical;
# prune killed -9 after K removals (K = 1, 2, 3) leaves check OK and the next
# prune finishes; metrics pass promtool, the age grows with --now, a skipped
# night and a flipped byte show in the values; usage errors exit 2.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/ship.sh"
B="$BIN/bascule"
IN=$T/in
echo "a passphrase for the safe" > "$T/pass"; chmod 600 "$T/pass"
mkdir -p "$T/client"
"$B" keygen client "$T/client/c1" --passphrase-file "$T/pass" > /dev/null
"$B" intake add "$IN" --client c1 --pub "$T/client/c1.pub" > /dev/null
# the dump: 1 MiB of seeded random bytes, the night's number written at a
# night-dependent offset (the test keeps what ship read, to compare restores)
cat > "$T/gen.py" <<'PY'
import random, sys
n = int(sys.argv[1])
b = bytearray(random.Random(1).randbytes(1 << 20))
b[n * 4096:n * 4096 + 8] = b"night%03d" % n
sys.stdout.buffer.write(b)
PY
ship_yaml "$T/client/ship.yaml" c1 "\"bash -c 'set -o pipefail; python3 $T/gen.py \$(cat $T/n) | tee $T/client/last.dump'\"" \
	"local:$IN/c1/incoming" 3
night_of() { printf "2026-11-%02d" "$1"; }
for i in 1 2 3 4 5 6 7; do
	echo "$i" > "$T/n"
	out=$("$B" ship -c "$T/client/ship.yaml" --night "$(night_of "$i")" 2>&1) || fail "night $i: ship failed: $out"
	cp "$T/client/last.dump" "$T/dump-$i"
done
nights() { "$B" intake ls "$IN" --client c1 --json | python3 -c '
import json, sys
print(" ".join(x["night"][8:] + x["kind"][0] for x in json.load(sys.stdin)[0]["nights"]))'; }
[ "$(nights)" = "01f 02d 03d 04f 05d 06d 07f" ] || fail "the shipped nights: $(nights)"
cp -a "$IN" "$T/in.orig"

# ---- usage errors
expect_rc 2 "$B" intake prune "$IN" --client c1
expect_rc 2 "$B" intake prune "$IN" --keep 2
expect_rc 2 "$B" intake prune "$IN" --client c1 --keep 0
expect_rc 2 "$B" intake prune "$IN" --client c1 --keep x
expect_rc 2 "$B" intake metrics "$IN" --bogus
expect_rc 1 "$B" intake prune "$IN" --client nosuch --keep 2
expect_rc 1 "$B" intake metrics "$IN" --out "$T/nodir/m.prom"

# ---- --dry-run removes nothing
before=$(cd "$IN" && find . -printf "%p %s\n" | sort)
expect_rc 0 "$B" intake prune "$IN" --client c1 --keep 2 --dry-run
grep -q "would remove 3 nights" "$T/out" || fail "dry-run output: $(cat "$T/out")"
[ "$(cd "$IN" && find . -printf "%p %s\n" | sort)" = "$before" ] || fail "--dry-run removed something"

# ---- kill -9 after K removals: check OK, the next prune finishes
for k in 1 2 3 4 5; do
	rm -rf "$T/ink"; cp -a "$T/in.orig" "$T/ink"
	set +e; BASCULE_TEST_PRUNE_KILL_AFTER=$k "$B" intake prune "$T/ink" --client c1 --keep 2 > "$T/kill.out" 2>&1; rc=$?; set -e
	[ $rc -eq 137 ] || [ $rc -eq 0 ] || fail "prune with a kill after $k removals exited $rc: $(cat "$T/kill.out")"
	"$B" intake check "$T/ink" --client c1 --max-age 1000d > "$T/check.out" || fail "check after a prune killed after $k removals: $(cat "$T/check.out")"
	"$B" intake ls "$T/ink" --client c1 > "$T/ls.out" || fail "ls after a kill after $k removals"
	grep -qiE "incomplete|broken|missing|bad" "$T/ls.out" && fail "ls after a kill after $k removals sees damage: $(cat "$T/ls.out")"
	expect_rc 0 "$B" intake prune "$T/ink" --client c1 --keep 2
	[ "$(ls "$T/ink/c1/incoming" | wc -l)" = "$(ls "$T/in.orig/c1/incoming" | grep -c "0[4-7]")" ] \
		|| fail "after a kill after $k removals and a second prune: $(ls "$T/ink/c1/incoming")"
done
note "prune killed -9 after 1..5 removals: check OK each time, the next prune finishes"

# ---- --keep 2: nights 6 (delta on 5 on full 4) and 7 kept, with 4 and 5
expect_rc 0 "$B" intake prune "$IN" --client c1 --keep 2
[ "$(nights)" = "04f 05d 06d 07f" ] || fail "after --keep 2: $(nights)"
ls "$IN/c1/incoming" | grep -q "2026-11-0[123]" && fail "objects of pruned nights left: $(ls "$IN/c1/incoming")"
"$B" intake check "$IN" --client c1 --max-age 1000d > "$T/check.out" || fail "check after prune: $(cat "$T/check.out")"
grep -q "^INTAKE OK - c1: 4 nights" "$T/check.out" || fail "check after prune: $(cat "$T/check.out")"
"$B" intake restore "$IN" --client c1 --night 2026-11-06 --key "$T/client/c1.key" \
	--passphrase-file "$T/pass" --to "$T/restored-6" > "$T/restore.out" 2>&1 || fail "restore of night 6: $(cat "$T/restore.out")"
cmp "$T/restored-6" "$T/dump-6" || fail "the restore of kept night 6 differs from its dump"
expect_rc 0 "$B" intake prune "$IN" --all --keep 2
grep -q "removed 0 nights\|nothing to remove" "$T/out" || note "a second prune said: $(cat "$T/out")"
[ "$(nights)" = "04f 05d 06d 07f" ] || fail "a second prune changed: $(nights)"
note "--keep 2 kept exactly 04 (full) 05 06 (deltas) 07 (full); check OK; night 6 restores"

# ---- metrics
metric() { awk -v m="$1" '$1 == m"{client=\"c1\"}" { print $2 }' "$2"; }
up=$(date -u -d "@$(stat -c %Y "$IN/c1/incoming/2026-11-07.manifest")" +%s)
expect_rc 0 "$B" intake metrics "$IN" --out "$T/m1.prom" --max-age 2d --now "@$((up + 3600))"
[ ! -s "$T/out" ] || fail "metrics --out wrote on stdout: $(cat "$T/out")"
promtool check metrics < "$T/m1.prom" || fail "promtool rejects the metrics: $(cat "$T/m1.prom")"
awk -f "$ROOT/tests/lib/promcheck.awk" "$T/m1.prom" || fail "promcheck.awk rejects the metrics"
"$B" intake metrics "$IN" --max-age 2d --now "@$((up + 3 * 86400))" > "$T/m2.prom" || true
a1=$(metric bascule_intake_last_dump_age_seconds "$T/m1.prom"); a2=$(metric bascule_intake_last_dump_age_seconds "$T/m2.prom")
[ "$a1" -ge 3500 ] && [ "$a1" -le 3700 ] || fail "age an hour after the upload: $a1"
[ "$((a2 - a1))" -ge $((2 * 86400 - 100)) ] || fail "the age did not grow: $a1 then $a2"
[ "$(metric bascule_intake_check_status "$T/m1.prom")" = 0 ] || fail "check_status fresh: $(cat "$T/m1.prom")"
[ "$(metric bascule_intake_check_status "$T/m2.prom")" = 2 ] || fail "check_status after a skipped night: $(cat "$T/m2.prom")"
[ "$(metric bascule_intake_nights "$T/m1.prom")" = 4 ] || fail "nights metric: $(cat "$T/m1.prom")"
# a flipped byte in night 5's object (night 6 needs it)
obj=$(ls -d "$IN"/c1/incoming/2026-11-05/* | head -1)
[ -f "$obj" ] || obj=$(find "$IN/c1/incoming/2026-11-05" -type f | head -1)
python3 - "$obj" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 1]))
PY
"$B" intake metrics "$IN" --max-age 2d --now "@$((up + 3600))" > "$T/m3.prom" || true
promtool check metrics < "$T/m3.prom" || fail "promtool rejects the metrics of a damaged intake"
[ "$(metric bascule_intake_objects_ok "$T/m3.prom")" = 0 ] || fail "objects_ok after a flipped byte: $(cat "$T/m3.prom")"
[ "$(metric bascule_intake_check_status "$T/m3.prom")" = 2 ] || fail "check_status after a flipped byte: $(cat "$T/m3.prom")"
expect_rc 1 "$B" intake metrics "$T/nonexistent"
note "metrics: promtool OK; age ${a1}s then ${a2}s; a skipped night and a flipped byte give check_status 2"
