# vaultrollback: a provider cannot roll a restore back silently.  A vault
# (local directory) holds three epochs of one disk, each with a copy of the
# disk taken then.  When the newest manifest is deleted, replaced by a copy of
# an older one, or damaged, `bascule restore` without --epoch refuses (exit 5)
# and names what failed; --accept-older (or --epoch) restores the older epoch
# byte-identical; `vault ls` shows the same.  A deleted manifest is seen only
# through the daemon's record of commits (-c, --record): without it the
# restore falls back, as docs/vault.md says.  The daemon's writer warns when
# the vault is behind its record, and the record moves on with new epochs.
. "$(dirname "$0")/../lib/common.sh"
B="$BIN/bascule"
bsc_keygen
"$B" keygen vault "$T/vault.key" > /dev/null
truncate -s 8M "$T/disk.img"
vault_dir "$T/vault"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
cat >> "$T/bascule.yaml" <<EOF
  - name: offsite
    type: vault
    url: local:$T/vault
    vault_key: $T/vault.key
EOF
bsc_start
declare -a EP MAN
for i in 1 2 3; do
	head -c 256K /dev/urandom | dd of="$T/disk.img" bs=256K seek=$((i * 4)) conv=notrunc status=none
	bsc sync --wait --vault --timeout 60s > /dev/null || fail "sync $i"
	cp "$T/disk.img" "$T/copy$i"
	MAN[$i]=$(ls -t "$T/vault/m" | head -1)
	EP[$i]=$("$B" vault ls -c "$T/bascule.yaml" --json | python3 -c "
import json,sys; print(max(e['epoch'] for e in json.load(sys.stdin) if 'failed' not in e))")
done
bsc_stop
note "vault epochs ${EP[*]}, the newest manifest m/${MAN[3]:0:12}…"
[ "${EP[1]}" -lt "${EP[2]}" ] && [ "${EP[2]}" -lt "${EP[3]}" ] || fail "three epochs expected: ${EP[*]}"

restore() { # restore EXPECTED-EXIT OUT ARGS...
	local want=$1 out=$2 rc=0
	shift 2
	rm -f "$out"
	"$B" restore --source vm1/root --to "$out" "$@" > "$T/restore.out" 2>&1 || rc=$?
	[ $rc -eq "$want" ] || fail "restore $* exited $rc, want $want: $(cat "$T/restore.out")"
}
VK=(--vault "local:$T/vault" --vault-key "$T/vault.key")
restore 0 "$T/r" -c "$T/bascule.yaml"
cmp -s "$T/r" "$T/copy3" || fail "the intact vault does not restore the newest epoch"
cp "$T/state/vault/offsite/committed" "$T/record-copy" # as an operator keeps it off the primary

# -- 1. the provider deletes the newest manifest
mv "$T/vault/m/${MAN[3]}" "$T/held"
restore 5 "$T/r" -c "$T/bascule.yaml"
grep -q "vm1 epoch ${EP[3]}: committed" "$T/restore.out" || fail "restore does not name epoch ${EP[3]}: $(cat "$T/restore.out")"
grep -q -- "--accept-older" "$T/restore.out" || fail "restore does not say how to go on: $(cat "$T/restore.out")"
[ ! -e "$T/r" ] && [ ! -e "$T/r.part" ] || fail "a refused restore wrote its output"
restore 5 "$T/r" "${VK[@]}" --record "$T/record-copy"
rc=0; "$B" vault ls -c "$T/bascule.yaml" > "$T/ls.out" 2>&1 || rc=$?
[ $rc -eq 5 ] && grep -q "vm1 epoch ${EP[3]}: committed" "$T/ls.out" || fail "vault ls: exit $rc: $(cat "$T/ls.out")"
"$B" vault ls -c "$T/bascule.yaml" --json > "$T/ls.json" 2> /dev/null && fail "vault ls --json exited 0"
python3 -c "
import json,sys; l=json.load(open(sys.argv[1])); f=[e for e in l if 'failed' in e]
assert len(f)==1 and f[0]['epoch']==${EP[3]} and f[0]['group']=='vm1' and f[0]['recorded'], l" "$T/ls.json" ||
	fail "vault ls --json does not list the lost epoch"
restore 0 "$T/r" -c "$T/bascule.yaml" --accept-older
cmp -s "$T/r" "$T/copy2" || fail "--accept-older did not restore epoch ${EP[2]}"
grep -q "epoch ${EP[2]}" "$T/restore.out" || fail "no epoch in: $(cat "$T/restore.out")"
restore 0 "$T/r" -c "$T/bascule.yaml" --epoch "${EP[2]}"
cmp -s "$T/r" "$T/copy2" || fail "--epoch ${EP[2]} restored something else"
# what is not detectable: without the record, the vault alone looks whole
restore 0 "$T/r" "${VK[@]}"
cmp -s "$T/r" "$T/copy2" || fail "without a record, the newest valid epoch should restore"
note "deleted: with the record, exit 5 naming epoch ${EP[3]}; --accept-older and --epoch restore ${EP[2]}; without it, undetectable (restores ${EP[2]})"

# -- 2. ... and puts a copy of an older manifest under its name
cp "$T/vault/m/${MAN[1]}" "$T/vault/m/${MAN[3]}"
restore 5 "$T/r" "${VK[@]}"
grep -q "m/${MAN[3]}: the manifest's contents do not match its name" "$T/restore.out" &&
	grep -q "copy of the manifest of vm1's epoch ${EP[1]}" "$T/restore.out" ||
	fail "the replaced manifest is not named: $(cat "$T/restore.out")"
restore 5 "$T/r" -c "$T/bascule.yaml"
grep -q "vm1 epoch ${EP[3]}: committed" "$T/restore.out" || fail "restore -c does not name epoch ${EP[3]}: $(cat "$T/restore.out")"
rc=0; "$B" vault ls "${VK[@]}" > "$T/ls.out" 2>&1 || rc=$?
[ $rc -eq 5 ] && grep -q "m/${MAN[3]}" "$T/ls.out" || fail "vault ls: exit $rc: $(cat "$T/ls.out")"
restore 0 "$T/r" "${VK[@]}" --accept-older
cmp -s "$T/r" "$T/copy2" || fail "--accept-older after the replacement did not restore epoch ${EP[2]}"
restore 5 "$T/r" "${VK[@]}" --epoch "${EP[3]}"
note "replaced by a copy of epoch ${EP[1]}'s manifest: exit 5 naming m/${MAN[3]:0:12}…, with or without the record"

# -- 3. the newest manifest damaged in place
cp "$T/held" "$T/vault/m/${MAN[3]}"
python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)" "$T/vault/m/${MAN[3]}"
restore 5 "$T/r" "${VK[@]}"
grep -q "m/${MAN[3]}" "$T/restore.out" || fail "the damaged manifest is not named: $(cat "$T/restore.out")"
restore 5 "$T/r" "${VK[@]}" --epoch "${EP[3]}"
grep -q "no valid manifest of epoch ${EP[3]}" "$T/restore.out" || fail "restore --epoch of the damaged epoch: $(cat "$T/restore.out")"
note "damaged: exit 5 naming it, also with --epoch ${EP[3]}"

# -- 4. the writer notices the loss at its next start; new epochs move the record on
rm "$T/vault/m/${MAN[3]}"
bsc_start
for _ in $(seq 100); do grep -q "epoch ${EP[3]} of vm1 was committed, but" "$T/daemon.log" && break; sleep 0.1; done
grep -q "epoch ${EP[3]} of vm1 was committed, but the vault's newest valid manifest of it is epoch ${EP[2]}" "$T/daemon.log" ||
	fail "the vault writer did not warn about the lost epoch"
head -c 256K /dev/urandom | dd of="$T/disk.img" bs=256K seek=20 conv=notrunc status=none
bsc sync --wait --vault --timeout 60s > /dev/null || fail "sync after the loss"
bsc_stop
restore 0 "$T/r" -c "$T/bascule.yaml"
cmp -s "$T/r" "$T/disk.img" || fail "the epoch shipped after the loss does not restore"
note "the writer warned at start; the next epoch restores without --accept-older"
