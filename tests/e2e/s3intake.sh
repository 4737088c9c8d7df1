#!/bin/bash
# s3intake: the hybrid PRA's intake in an S3 bucket with Object Lock
# (issue 14 item 3, issue 16 item 1), against a real radosgw
# (tests/lib/ceph.sh).  The bucket's owner enrols the client (intake add on
# an s3:// URL); the client ships with its own put-only account (the bucket
# policy of docs/hybrid.md), each object and manifest locked COMPLIANCE.
# The test shows: three nights ship (a full one, two deltas); ls and check
# OK through the URL and through a config file, with the operator's account
# and the client's public key only; every object is locked; restores of
# nights 1 and 3 (a chain of 3) byte-identical; a ship killed -9 mid-upload
# leaves no night that counts (ls: an unfinished run), the next run
# completes; the client's account cannot delete an object or a version,
# shorten a lock, touch client.pub nor another client's prefix (403); a
# night written over with the client's account (a newer version of an object
# and of a manifest) is CRITICAL in check, named TAMPERED, and restore still
# rebuilds the genuine night byte-identical; prune (the operator's account,
# allowed to delete) removes nothing still locked and says so, and extends
# the locks of the nights it keeps (read back: retain-until now + lock_for,
# the not-kept nights' untouched; --dry-run extends nothing; a second prune
# nothing more; without lock_for: exit 3); the hybrid drill on the S3
# intake (a real pg_dump shipped as night 5, a delta): PASS, its signed
# report's RTO/RPO and night, the loaded database equal to the source;
# intake metrics on S3; config errors: an s3:// intake without credentials
# (3), 0644 credentials (4), virtual-hosted on an IP endpoint (3).
. "$(dirname "$0")/../lib/common.sh" "$1"
. "$ROOT/tests/lib/ceph.sh"
. "$ROOT/tests/lib/ship.sh"
. "$ROOT/tests/lib/pg.sh"
need_root
B=$BIN/bascule
S=$BIN/tests/s3tool
ceph_start
note "ceph up in ${CEPH_UP_MS} ms"
ceph_user owner "$T/owner"
ceph_user mairie "$T/client.cred"
ceph_user bscintake "$T/ops.cred"
export S3_ENDPOINT=$RGW_URL S3_BUCKET=bintake
S3_CREDENTIALS=$T/owner expect_rc 0 "$S" mkbucket lock
# the bucket policy docs/hybrid.md gives (users mairie and bscintake)
sed -n '/^       {"Version"/,/^       \]}/p' "$ROOT/docs/hybrid.md" | sed 's/^       //; s/bascule-intake/bintake/g' > "$T/policy.json"
[ -s "$T/policy.json" ] || fail "no bucket policy found in docs/hybrid.md"
S3_CREDENTIALS=$T/owner expect_rc 0 "$S" raw PUT - policy= "$T/policy.json"
[ "$(cat "$T/out")" = 204 ] || [ "$(cat "$T/out")" = 200 ] || fail "bucket policy refused: $(cat "$T/out")"

# ---- the operator: the intake as a URL (the owner enrols) and as a file
URL=s3://bintake/intake
OWN=(--s3-endpoint "$RGW_URL" --s3-credentials "$T/owner")
OPS=(--s3-endpoint "$RGW_URL" --s3-credentials "$T/ops.cred")
cat > "$T/intake.yaml" <<EOF
intake: $URL
s3_endpoint: $RGW_URL
s3_credentials: $T/ops.cred
lock_for: 5d
EOF
echo "a passphrase for the safe" > "$T/pass"; chmod 600 "$T/pass"
mkdir -p "$T/client"
"$B" keygen client "$T/client/mairie" --passphrase-file "$T/pass" > /dev/null
expect_rc 2 "$B" intake add "$URL" "${OWN[@]}" --client mairie --pub "$T/client/mairie.pub" --owner root
expect_rc 0 "$B" intake add "$URL" "${OWN[@]}" --client mairie --pub "$T/client/mairie.pub"
expect_rc 0 "$B" intake add "$URL" "${OWN[@]}" --client mairie --pub "$T/client/mairie.pub"   # again: same key, fine
"$B" keygen client "$T/client/other" --passphrase-file "$T/pass" > /dev/null
expect_rc 1 "$B" intake add "$URL" "${OWN[@]}" --client mairie --pub "$T/client/other.pub"
grep -q "enrolled with another key" "$T/err" || fail "a second key for mairie: $(cat "$T/err")"
expect_rc 3 "$B" intake ls "$URL" --client mairie
grep -q "needs --s3-endpoint" "$T/err" || fail "an s3:// intake without its store's options: $(cat "$T/err")"

# ---- the client: ship.yaml on the bucket, its put-only account
# the dump: 1 MiB of seeded random bytes, the night's number at a
# night-dependent offset; mode "big" writes 12 MiB first, then waits (the
# upload of its first objects is then under way) before the rest
cat > "$T/gen.py" <<'PY'
import random, sys
n = int(sys.argv[1])
b = bytearray(random.Random(1).randbytes(1 << 20))
b[n * 4096:n * 4096 + 8] = b"night%03d" % n
sys.stdout.buffer.write(b)
PY
head -c $((12 << 20)) /dev/urandom > "$T/big"
cat > "$T/dump.sh" <<EOF
if [ "\$(cat $T/mode)" = pg ]; then exec $PG_BIN/pg_dump --format=custom --compress=0 -h $T/pg-c -U postgres postgres; fi
if [ "\$(cat $T/mode)" = big ]; then cat $T/big; sleep 120; fi
python3 $T/gen.py \$(cat $T/n)
EOF
echo small > "$T/mode"
ship_yaml "$T/client/ship.yaml" mairie "\"bash -c 'set -o pipefail; bash $T/dump.sh | tee $T/client/last.dump'\"" \
	"$URL/mairie/incoming" 3 "s3_endpoint: $RGW_URL" "s3_credentials: $T/client.cred" "object_lock: compliance" \
	"lock_for: 2d" "s3_url_style: path"
night_of() { printf "2026-11-%02d" "$1"; }
ship_night() {
	echo "$1" > "$T/n"
	"$B" ship -c "$T/client/ship.yaml" --night "$(night_of "$1")" > "$T/ship.out" 2>&1 || fail "night $1: ship failed: $(cat "$T/ship.out")"
	cp "$T/client/last.dump" "$T/dump-$1"
}
for i in 1 2 3; do ship_night "$i"; done
nights() { "$B" intake ls "$1" --client mairie --json | python3 -c '
import json, sys
print(" ".join(x["night"][8:] + x["kind"][0] + ("" if x["status"] == "ok" else "!") for x in json.load(sys.stdin)[0]["nights"]))'; }
[ "$(nights "$T/intake.yaml")" = "01f 02d 03d" ] || fail "the shipped nights (config file): $(nights "$T/intake.yaml")"
"$B" intake ls "$URL" "${OPS[@]}" --client mairie > "$T/ls.out" || fail "ls on the URL: $(cat "$T/ls.out")"
grep -q "client mairie (key .*): 3 nights" "$T/ls.out" || fail "ls on the URL: $(cat "$T/ls.out")"
expect_rc 0 "$B" intake check "$T/intake.yaml" --all --max-age 1000d
grep -q "^INTAKE OK - mairie: 3 nights" "$T/out" || fail "check: $(cat "$T/out")"
expect_rc 0 "$B" intake check "$URL" "${OPS[@]}" --client mairie --max-age 1000d
note "3 nights shipped to $URL/mairie/incoming; ls and check OK (URL and config file, the operator's account, no secret): $(head -1 "$T/out")"
# every object locked COMPLIANCE for about lock_for
S3_CREDENTIALS=$T/ops.cred expect_rc 0 "$S" ls intake/mairie/incoming/
cp "$T/out" "$T/objs"
n=0
while read -r key ver _ state; do
	[ "$state" = latest ] || continue
	S3_CREDENTIALS=$T/ops.cred expect_rc 0 "$S" ret-get "$key" "$ver"; read -r mode until < "$T/out"
	[ "$mode" = COMPLIANCE ] && [ "$until" -gt $(($(date +%s) + 86400)) ] || fail "$key not locked for lock_for: $(cat "$T/out")"
	n=$((n + 1))
done < "$T/objs"
[ "$n" -ge 6 ] || fail "only $n objects in the bucket: $(cat "$T/objs")"
note "all $n objects and manifests locked COMPLIANCE until about now + 2d"

# ---- restores, with the client's decryption key (the only secret)
restore() { "$B" intake restore "$T/intake.yaml" --client mairie --key "$T/client/mairie.key" --passphrase-file "$T/pass" "$@"; }
restore --night 2026-11-03 --to "$T/r3" > "$T/restore.out" 2>&1 || fail "restore of night 3: $(cat "$T/restore.out")"
cmp "$T/r3" "$T/dump-3" || fail "the restore of night 3 differs from its dump"
restore --night 2026-11-01 --to "$T/r1" > "$T/restore.out" 2>&1 || fail "restore of night 1: $(cat "$T/restore.out")"
cmp "$T/r1" "$T/dump-1" || fail "the restore of night 1 differs from its dump"
note "restores of night 3 (a chain of 3) and night 1 byte-identical"

# ---- ship killed -9 mid-upload: nothing that counts, the next run completes
echo big > "$T/mode"; echo 4 > "$T/n"
before=$(wc -l < "$T/objs")
setsid "$B" ship -c "$T/client/ship.yaml" --night 2026-11-04 --full > "$T/kill.out" 2>&1 &
SPID=$!
wait_for 60 "a first object of night 4 in the bucket" \
	'[ "$(S3_CREDENTIALS=$T/ops.cred "$S" ls intake/mairie/incoming/2026-11-04/ 2>/dev/null | wc -l)" -ge 1 ]'
kill -9 -- "-$SPID" 2>/dev/null || kill -9 "$SPID"
wait "$SPID" 2>/dev/null || true
S3_CREDENTIALS=$T/ops.cred expect_rc 0 "$S" ls intake/mairie/incoming/2026-11-04.manifest
[ ! -s "$T/out" ] || fail "a manifest of the killed run: $(cat "$T/out")"
[ "$(nights "$T/intake.yaml")" = "01f 02d 03d" ] || fail "nights after a killed run: $(nights "$T/intake.yaml")"
"$B" intake ls "$T/intake.yaml" --client mairie > "$T/ls.out"
grep -q "unfinished runs: [1-9]" "$T/ls.out" || fail "ls does not show the unfinished run: $(cat "$T/ls.out")"
expect_rc 0 "$B" intake check "$T/intake.yaml" --all --max-age 1000d
echo small > "$T/mode"
ship_night 4
[ "$(nights "$T/intake.yaml")" = "01f 02d 03d 04f" ] || fail "nights after the rerun: $(nights "$T/intake.yaml")"
restore --night 2026-11-04 --to "$T/r4" > "$T/restore.out" 2>&1 || fail "restore of night 4: $(cat "$T/restore.out")"
cmp "$T/r4" "$T/dump-4" || fail "the restore of night 4 differs from its dump"
note "ship killed -9 with night 4's first objects up: no manifest, not counted, ls shows an unfinished run; the rerun ships and restores"

# ---- the hybrid drill on the S3 intake: night 5, a real pg_dump (a delta
# on night 4), restored, loaded and checked by `bascule drill --mode hybrid`
pg_init c
pg_start c
pg_bench_init c 1
M5="night5-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pg_sql c "CREATE TABLE town_secrets (v text); INSERT INTO town_secrets VALUES ('$M5')"
echo pg > "$T/mode"
ship_night 5
echo small > "$T/mode"
ship_sums c postgres > "$T/sums-5"
created=$("$B" intake ls "$T/intake.yaml" --client mairie --json | python3 -c "
import json, sys; n = json.load(sys.stdin)[0]['nights']
assert n[-1]['night'] == '2026-11-05' and n[-1]['kind'] == 'delta' and n[-1]['base'] == '2026-11-04', n
print(n[-1]['created_unix'])")
"$B" keygen signing "$T/sign.key" > /dev/null
cat > "$T/rb.yaml" <<YAML
name: mairie hybrid drill on S3
objectives: {rto: 1h, rpo: 2d}
hosts:
  - name: here
    url: local
hybrid:
  intake: $T/intake.yaml
  client: mairie
  key: $T/client/mairie.key
  passphrase_file: $T/pass
  load: "postgresql://postgres@/drill_s3?host=$(pg_dir c)"
  pg_bin: $PG_BIN
  jobs: 2
  host: here
  max_age: 1h
services:
  - name: app
    start: "true"
    checks:
      - name: marker
        sql: host=$(pg_dir c) user=postgres dbname=drill_s3
        query: SELECT v FROM town_secrets
        expect: "$M5"
        retries: 2
        interval: 1s
report:
  dir: $T/reports
  signing_key: $T/sign.key
state_dir: $T/drill-state
YAML
chmod 600 "$T/rb.yaml"
ship_drill "$T/rb.yaml" "$created" 2026-11-05 2026-11-04 drill_s3
[ "$(ship_sums c drill_s3)" = "$(cat "$T/sums-5")" ] || fail "the database the S3 drill loaded is not night 5: $(ship_sums c drill_s3)"
note "hybrid drill on the S3 intake (night 5, a delta on 4): PASS, signed report verified: $(cat "$T/figures"); drill_s3 equals the source at night 5"

# ---- intake metrics on the S3 intake (the operator's file, no secret)
expect_rc 0 "$B" intake metrics "$T/intake.yaml" --max-age 2d
grep -q '^bascule_intake_up{client="mairie"} 1$' "$T/out" && grep -q '^bascule_intake_nights{client="mairie"} 5$' "$T/out" \
	&& grep -q '^bascule_intake_check_status{client="mairie"} 0$' "$T/out" \
	&& grep -q '^bascule_intake_unfinished_bytes{client="mairie"} [1-9]' "$T/out" \
	|| fail "intake metrics on S3: $(cat "$T/out")"
age=$(sed -n 's/^bascule_intake_last_dump_age_seconds{client="mairie"} \([0-9.]*\)$/\1/p' "$T/out")
[ -n "$age" ] && [ "${age%.*}" -lt 3600 ] || fail "intake metrics on S3: the age of night 5: '$age'"
note "intake metrics on S3: up 1, 5 nights, check_status 0, last dump ${age}s old, the killed run's bytes shown"

# ---- the client's own account: put only
CL=$T/client.cred
key=$(awk '$4 == "latest" && $1 ~ /2026-11-02\// {print $1; exit}' "$T/objs")
ver=$(awk -v k="$key" '$1 == k {print $2; exit}' "$T/objs")
man=$(awk '$4 == "latest" && $1 ~ /2026-11-03.manifest$/ {print $1; exit}' "$T/objs")
[ -n "$key" ] && [ -n "$ver" ] && [ -n "$man" ] || fail "night 2's object or night 3's manifest not found: $(cat "$T/objs")"
S3_CREDENTIALS=$CL expect_rc 4 "$S" del "$key" "$ver"
grep -q 403 "$T/err" || fail "the client's DELETE of a version: $(cat "$T/err")"
S3_CREDENTIALS=$CL expect_rc 4 "$S" del "$key"
grep -q 403 "$T/err" || fail "the client's DELETE of an object: $(cat "$T/err")"
S3_CREDENTIALS=$CL expect_rc 4 "$S" ret-put "$key" "$ver" COMPLIANCE 60
grep -q 403 "$T/err" || fail "the client's shortened lock: $(cat "$T/err")"
head -c 100 /dev/urandom > "$T/evil"
S3_CREDENTIALS=$CL expect_rc 4 "$S" put intake/mairie/client.pub "$T/evil"
grep -q 403 "$T/err" || fail "the client wrote its client.pub: $(cat "$T/err")"
S3_CREDENTIALS=$CL expect_rc 4 "$S" put intake/other/incoming/x "$T/evil"
grep -q 403 "$T/err" || fail "the client wrote under another client's prefix: $(cat "$T/err")"
# the operator's account may delete, but not a locked version
S3_CREDENTIALS=$T/ops.cred expect_rc 4 "$S" del "$key" "$ver"
grep -q "403.*object lock" "$T/err" || fail "the operator's DELETE of a locked version: $(cat "$T/err")"
note "client's account: DELETE of a version, of an object, a shorter lock, a put of client.pub or under another prefix: 403; the operator's DELETE of a locked version: 403 (the lock)"

# ---- tampering with the client's account: newer versions; genuine intact
head -c "$(awk -v k="$key" '$1 == k {print $3; exit}' "$T/objs")" /dev/urandom > "$T/evil-obj"
S3_CREDENTIALS=$CL expect_rc 0 "$S" put "$key" "$T/evil-obj"
S3_CREDENTIALS=$CL expect_rc 0 "$S" put "$man" "$T/evil"
expect_rc 2 "$B" intake check "$T/intake.yaml" --all --max-age 1000d
grep -q "TAMPERED WITH: night 2026-11-02: ${key#intake/mairie/incoming/}: OVERWRITTEN" "$T/out" \
	|| fail "check does not name the overwritten object: $(cat "$T/out")"
"$B" intake ls "$T/intake.yaml" --client mairie --json > "$T/ls.json"
python3 - "$T/ls.json" <<'PY' || fail "ls --json does not show both tampered nights: $(cat "$T/ls.json")"
import json, sys
n = {x["night"]: x for x in json.load(open(sys.argv[1]))[0]["nights"]}
assert "OVERWRITTEN" in n["2026-11-02"]["tampered"] and "OVERWRITTEN" in n["2026-11-03"]["tampered"]
assert all(x["status"] == "ok" for x in n.values())
PY
rm -f "$T/r3"
restore --night 2026-11-03 --to "$T/r3" > "$T/restore.out" 2>&1 || fail "restore of night 3 after the tampering: $(cat "$T/restore.out")"
cmp "$T/r3" "$T/dump-3" || fail "the restore of night 3 after the tampering differs"
note "an overwritten object (night 2) and manifest (night 3): check CRITICAL ($(cut -c1-200 "$T/out" | head -1)...); restore of night 3 reads the genuine versions, byte-identical"

# ---- prune with the operator's account: nothing locked goes; the locks of
# the nights it keeps (4 and its delta 5) extended to now + lock_for (5d in
# intake.yaml, against the 2d they were put with); night 1's left alone
until_of() { S3_CREDENTIALS=$T/ops.cred "$S" ret-get "$1" "$(awk -v k="$1" '$1 == k && $4 == "latest" {print $2}' "$T/objs")" | awk '{print $2}'; }
expect_rc 3 "$B" intake prune "$URL" "${OPS[@]}" --client mairie --keep 1
grep -q "is an S3 intake: prune extends the Object Lock .* --lock-for" "$T/err" || fail "prune on S3 without lock_for: $(cat "$T/err")"
S3_CREDENTIALS=$T/ops.cred expect_rc 0 "$S" ls intake/mairie/incoming/; cp "$T/out" "$T/objs"
kept=$(awk '$4 == "latest" && $1 ~ /2026-11-0[45]/ {print $1}' "$T/objs")
[ "$(echo "$kept" | wc -l)" -ge 4 ] || fail "nights 4 and 5's objects: $(cat "$T/objs")"
old=$(awk '$4 == "latest" && $1 ~ /2026-11-01/ {print $1; exit}' "$T/objs")
expect_rc 0 "$B" intake prune "$T/intake.yaml" --client mairie --keep 1 --dry-run
grep -q "locks of the 2 kept nights: [1-9][0-9]* would be extended until" "$T/out" || fail "prune --dry-run's locks: $(cat "$T/out")"
for k in $kept; do [ "$(until_of "$k")" -lt $(($(date +%s) + 3 * 86400)) ] || fail "--dry-run extended $k"; done
t0=$(date +%s.%N)
expect_rc 0 "$B" intake prune "$T/intake.yaml" --client mairie --keep 1
t_prune=$(echo "$(date +%s.%N) - $t0" | bc)
extended=$(grep "locks of the" "$T/out")
grep -q "is locked (COMPLIANCE) until" "$T/out" || fail "prune of locked nights: $(cat "$T/out")"
grep -q "removed 0 nights" "$T/out" || fail "prune removed something: $(cat "$T/out")"
n=$(echo "$kept" | wc -l)
grep -q "locks of the 2 kept nights: $n extended until .*, 0 already locked long enough" "$T/out" \
	|| fail "prune did not extend the kept nights' $n locks: $(cat "$T/out")"
[ "$(nights "$T/intake.yaml")" = "01f 02d 03d 04f 05d" ] || fail "nights after prune: $(nights "$T/intake.yaml")"
for k in $kept; do
	u=$(until_of "$k")
	[ "$u" -gt $(($(date +%s) + 4 * 86400)) ] || fail "$k: locked until $u, not extended to about now + 5d"
done
u=$(until_of "$old")
[ "$u" -lt $(($(date +%s) + 3 * 86400)) ] || fail "$old (night 1, not kept) had its lock extended: $u"
expect_rc 0 "$B" intake prune "$T/intake.yaml" --client mairie --keep 1
grep -q "locks of the 2 kept nights: 0 extended until .*, $n already locked long enough" "$T/out" \
	|| fail "a second prune extended again: $(cat "$T/out")"
note "prune --keep 1 (${t_prune} s): $(grep "is locked" "$T/out" | head -1); $extended; the $n objects and manifests of nights 4-5 read back locked until > now + 4d, night 1's still ~2d"

# ---- configuration errors
ship_yaml "$T/client/bad.yaml" mairie "cat" "$URL/mairie/incoming" 3 "s3_endpoint: $RGW_URL"
expect_rc 3 "$B" ship -c "$T/client/bad.yaml"
grep -q "needs s3_endpoint .* and s3_credentials" "$T/err" || fail "no credentials: $(cat "$T/err")"
cp "$CL" "$T/cred644"; chmod 644 "$T/cred644"
ship_yaml "$T/client/bad.yaml" mairie "cat" "$URL/mairie/incoming" 3 "s3_endpoint: $RGW_URL" "s3_credentials: $T/cred644"
expect_rc 4 "$B" ship -c "$T/client/bad.yaml"
grep -q "cred644" "$T/err" || fail "0644 credentials: $(cat "$T/err")"
ship_yaml "$T/client/bad.yaml" mairie "cat" "$URL/mairie/incoming" 3 "s3_endpoint: $RGW_URL" "s3_credentials: $T/client.cred" \
	"s3_url_style: virtual"
expect_rc 3 "$B" ship -c "$T/client/bad.yaml"
grep -q "s3_url_style virtual .* IP endpoint" "$T/err" || fail "virtual-hosted on an IP endpoint: $(cat "$T/err")"
expect_rc 3 "$B" intake ls "$URL" "${OPS[@]}" --s3-url-style sideways
! grep -rq "$(awk '/aws_secret/ {print $3}' "$CL")" "$T/err" "$T/out" "$T/ship.out" "$T/kill.out" || fail "the secret was logged"
note "ok"
