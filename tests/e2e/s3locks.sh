#!/bin/bash
# s3locks.sh - Object Lock over time on a real radosgw: with retention
# {all: 20} (seconds) and lock_margin 20s every object is locked for 40 s.
# Epoch A ships the whole disk, epoch B rewrites its second half (a new full
# index: A's index and the packs of that half are needed by A only).  Once A
# is past its retention but still locked, prune keeps it (and all it needs)
# and says until when; extend-locks lengthens the locks of what B still
# needs of A.  After A's first lock date: those objects are still locked,
# prune removes A's manifest and what only A needed, B restores
# byte-identical and check passes.  Prune runs with the pruner's key (the
# daemon's may not delete: its prune is refused, exit 4).  extend-locks: wrong credentials 4,
# missing bucket 1.
. "$(dirname "$0")/../lib/common.sh" "$1"
. "$ROOT/tests/lib/s3vault.sh"
need_root
s3vault_up
export S3_BUCKET=bvault
S3V_RETENTION="{all: 20}" S3V_MARGIN=20s s3vault_yaml bvault "$T/cred"
bsc_start
vsync
tA=$(date +%s)
cp "$T/disk.img" "$T/disk.A"
expect_rc 0 "$S" ls site-a/; awk '{print $1}' "$T/out" | sort -u > "$T/keysA"
dd if=/dev/urandom of="$T/disk.img" bs=1M seek=8 count=8 conv=notrunc status=none
vsync
cp "$T/disk.img" "$T/disk.B"
bsc_stop
[ "$(vault_epochs | wc -w)" -ge 2 ] || fail "fewer than 2 epochs in the vault: $(vault_epochs)"
until_of() { "$S" ret-get "$1" "$(awk -v k="$1" '$1 == k && $4 == "latest" {print $2}' "$T/ls")" | awk '{print $2}'; }
"$S" ls site-a/ > "$T/ls"
first=0
while read -r k; do u=$(until_of "$k"); [ "$u" -gt "$first" ] && first=$u; done < "$T/keysA"
note "epoch A's $(wc -l < "$T/keysA") objects locked until at most $((first - tA)) s after A"

# -- past A's retention, before its lock lapses: prune keeps it, extend-locks extends
wait_for 60 "epoch A to leave its 20 s retention" '[ $(date +%s) -ge $((tA + 21)) ]'
[ "$(date +%s)" -lt "$first" ] || fail "the machine was too slow: A's locks lapsed before the test could prune"
expect_rc 0 "$B" vault prune -c "$T/bascule.yaml" --s3-credentials "$T/pruner" --grace 0
grep -q "kept for now: m/.* is locked (COMPLIANCE) until" "$T/out" || fail "prune of a locked manifest: $(cat "$T/out")"
grep -q "; 0 objects (.*) removed" "$T/out" || fail "prune removed what a locked manifest needs: $(cat "$T/out")"
expect_rc 0 "$B" vault extend-locks -c "$T/bascule.yaml"
ext=$(sed -n 's/.*objects they need: \([0-9]*\) locks extended.*/\1/p' "$T/out")
[ "${ext:-0}" -ge 1 ] || fail "extend-locks extended nothing: $(cat "$T/out")"
note "at A+$(($(date +%s) - tA)) s: prune left A (still locked); extend-locks: $(cat "$T/out")"

# -- after A's first lock date
wait_for 60 "epoch A's first locks to lapse" '[ $(date +%s) -gt $first ]'
"$S" ls site-a/ > "$T/ls"
still=0
while read -r k; do [ "$(until_of "$k")" -gt "$(date +%s)" ] && still=$((still + 1)); done < "$T/keysA"
[ "$still" -ge 1 ] || fail "no object of epoch A is locked after its first date, though B needs some"
expect_rc 4 "$B" vault prune -c "$T/bascule.yaml" --grace 0
grep -q "may not delete" "$T/err" || fail "prune with the daemon's key: $(cat "$T/err")"
expect_rc 0 "$B" vault prune -c "$T/bascule.yaml" --s3-credentials "$T/pruner" --grace 0
grep -q "removing .* epoch" "$T/out" || fail "prune did not remove epoch A: $(cat "$T/out")"
removed=$(sed -n 's/.* \([0-9]*\) objects ([^)]*) removed.*/\1/p' "$T/out")
[ "${removed:-0}" -ge 1 ] || fail "prune removed no object only A needed: $(cat "$T/out")"
"$S" ls site-a/ > "$T/ls"
left=0
while read -r k; do grep -q "^$k .* latest$" "$T/ls" && left=$((left + 1)); done < "$T/keysA"
[ "$left" = "$still" ] || fail "of A's objects, $left remain but $still were still locked (needed by B)"
restore() { "$B" restore -c "$T/bascule.yaml" --source vm1/disk "$@"; }
restore --to "$T/r-B" > "$T/restore.out" 2>&1 || fail "restore of B after prune failed: $(cat "$T/restore.out")"
cmp -s "$T/r-B" "$T/disk.B" || fail "B restored after prune differs"
expect_rc 0 "$B" vault check -c "$T/bascule.yaml"
note "after A's first lock date: $still of A's objects still locked (needed by B); prune removed A and $removed objects; B restores byte-identical, check ok"

# -- extend-locks: clear errors
sed 's/\(aws_secret_access_key = \).*/\1wrongwrongwrong/' "$T/cred" > "$T/badcred"; chmod 600 "$T/badcred"
S3V_RETENTION="{all: 20}" s3vault_yaml bvault "$T/badcred"
expect_rc 4 "$B" vault extend-locks -c "$T/bascule.yaml"
grep -q "refused the credentials" "$T/err" || fail "extend-locks, wrong credentials: $(cat "$T/err")"
S3V_RETENTION="{all: 20}" s3vault_yaml nosuchbucket "$T/cred"
expect_rc 1 "$B" vault extend-locks -c "$T/bascule.yaml"
grep -q "does not exist" "$T/err" || fail "extend-locks, missing bucket: $(cat "$T/err")"
note "ok"
