#!/bin/bash
# Vault bench (needs root): the provider's real sshd in its namespace, the
# daemon's write-once chrooted SFTP account, unshaped veth link.
#   5a. SFTP upload throughput: Bascule's store (libssh2, 2 MiB per write
#       call so libssh2 keeps that much in flight), one session and 4 (the
#       default `parallel:`), against OpenSSH sftp put, sftp put -f of the
#       same 8 MiB objects (fsync each, as Bascule does) and scp
# VAULT_BENCH=5a runs only 5a.
#   5b. a 1% change of a 2 GiB ext4 image of real files shipped to the vault:
#       bytes uploaded and time from `sync` to the committed manifest; the
#       changed blocks are new data that compresses like the image's own
#       ("mix"), and, separately, incompressible random bytes
#   5c. restore of the whole image from the vault over SFTP
#   5d. the vault's growth for the same 1% change against borg (default and
#       fixed 4 KiB chunker) and restic, all encrypted, on local disk
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
. "$(dirname "$0")/../lib/sites.sh"
sizeof() { du -sb "$1" | cut -f1; }
sites_up
provider_up
V=$VAULT_CHROOT/vault
URL="sftp://bscvault-w@$IP_V/vault"
echo "== 5. the vault over SFTP between network namespaces (provider: OpenSSH internal-sftp, chrooted, no delete/rename)"

# -- 5a
# Bascule puts 64 objects of 8 MiB, each created exclusively and fsynced at
# the provider (durable before anything names it): against one 512 MiB
# `sftp put` and `scp` (no fsync, the operator's everyday tools), and against
# the same 64 files put by OpenSSH sftp with `put -f` (fsync@openssh.com
# after each: the same durability).  VAULT_BENCH_BEFORE=BUILD_DIR adds that
# build's vaultput (e.g. of main) to each round, for a before/after.
MB=512
head -c $((MB << 20)) /dev/urandom > "$T/blob"
mkdir -p "$T/objs"
for k in $(seq -w $((MB / 8))); do dd if="$T/blob" of="$T/objs/o$k" bs=8M skip=$((10#$k - 1)) count=1 status=none; done
ours=(); par=(); pre1=(); pre4=(); sftps=(); sftpf=(); scps=()
BEFORE=${VAULT_BENCH_BEFORE:+$(cd "$VAULT_BENCH_BEFORE" && pwd)}
sftp_put() { in_primary sftp -q -b - -i "$T/id_ed25519" -o UserKnownHostsFile="$T/known_hosts_v" \
	-o StrictHostKeyChecking=yes "bscvault-w@$IP_V" >/dev/null; }
mbs() { echo "$MB * 1.048576 / ($2 - $1)" | bc -l; }
vput() { in_primary "$1/tests/vaultput" "$URL" "$T/id_ed25519" "$T/known_hosts_v" $MB "$2"; rm -rf "$V/bench"; }
load0=$(cut -d' ' -f1 /proc/loadavg)
for i in $(seq "$RUNS"); do
	ours+=("$(vput "$B" 1)")
	par+=("$(vput "$B" 4)")
	if [ -n "$BEFORE" ]; then pre1+=("$(vput "$BEFORE" 1)"); pre4+=("$(vput "$BEFORE" 4)"); fi
	t0=$(secs); echo "put $T/blob /vault/sftp-$i" | sftp_put; t1=$(secs)
	sftps+=("$(mbs "$t0" "$t1")")
	t0=$(secs)
	{ echo "mkdir /vault/sftpf-$i"; for f in "$T"/objs/*; do echo "put -f $f /vault/sftpf-$i/"; done; } | sftp_put
	t1=$(secs)
	sftpf+=("$(mbs "$t0" "$t1")")
	t0=$(secs)
	in_primary scp -q -i "$T/id_ed25519" -o UserKnownHostsFile="$T/known_hosts_v" -o StrictHostKeyChecking=yes \
		"$T/blob" "bscvault-w@$IP_V:/vault/scp-$i"
	t1=$(secs)
	scps+=("$(mbs "$t0" "$t1")")
	rm -rf "$V"/sftp-* "$V"/sftpf-* "$V"/scp-*
done
rm -rf "$V/bench" "$T/blob" "$T/objs"
med() { printf '%s\n' "$@" | median; }
o1=$(med "${ours[@]}"); o=$(med "${par[@]}"); s=$(med "${sftps[@]}"); sf=$(med "${sftpf[@]}"); c=$(med "${scps[@]}")
printf "   5a. upload of %d MiB (load %s -> %s): bascule (libssh2) 1 session %.0f MB/s, 4 sessions (the default) %.0f MB/s   OpenSSH sftp %.0f MB/s   sftp put -f of the 64 objects %.0f MB/s   scp %.0f MB/s\n" \
	$MB "$load0" "$(cut -d' ' -f1 /proc/loadavg)" "$o1" "$o" "$s" "$sf" "$c"
printf "       -> %.0f%% of sftp, %.0f%% of sftp put -f, %.0f%% of scp\n" \
	"$(echo "100 * $o / $s" | bc -l)" "$(echo "100 * $o / $sf" | bc -l)" "$(echo "100 * $o / $c" | bc -l)"
[ -z "$BEFORE" ] || printf "       before (%s): 1 session %.0f MB/s, 4 sessions %.0f MB/s\n" "$BEFORE" "$(med "${pre1[@]}")" "$(med "${pre4[@]}")"
echo "       runs (MB/s): 1 session ${ours[*]}; 4 sessions ${par[*]}; sftp ${sftps[*]}; sftp -f ${sftpf[*]}; scp ${scps[*]}${BEFORE:+; before 1 session ${pre1[*]}; before 4 sessions ${pre4[*]}}"
[ "${VAULT_BENCH:-}" = 5a ] && exit 0

# -- 5b: a 2 GiB ext4 image of real files, shipped, then 1% changed
IMG=$T/disk.img
SIZE=$((2048 * 1048576))
CHANGE=$((SIZE / 4096 / 100))
mkdir -p "$T/fill"
cp -a /usr/lib/x86_64-linux-gnu /usr/share/doc /usr/share/locale "$T/fill/" 2>/dev/null || true
truncate -s $SIZE "$IMG"
mkfs.ext4 -q -F -d "$T/fill" "$IMG" 2>/dev/null || mkfs.ext4 -q -F "$IMG"
rm -rf "$T/fill"
cp --sparse=always "$IMG" "$T/orig.img"
bsc_keygen
"$BIN/bascule" keygen vault "$T/vault.key" >/dev/null
{
	echo "state_dir: $T/state"
	echo "key: $T/site.key"
	echo "control_socket: $T/ctl.sock"
	echo "groups: [{name: vm1, interval: 1s, max_interval: 1h, sources: [{name: root, disk: $IMG}]}]"
	echo "targets:"
	echo "  - {name: offsite, type: vault, url: '$URL', identity: $T/id_ed25519, known_hosts: $T/known_hosts_v, vault_key: $T/vault.key}"
} > "$T/bascule.yaml"
NSEXEC=(ip netns exec "$NS_P")
bsc_start
t0=$(secs)
bsc sync --wait --vault --timeout 30m >/dev/null
t1=$(secs)
printf "   5b. initial upload of the image (%s allocated): %.1f MB in %.1f s\n" "$(du -h "$IMG" | cut -f1)" \
	"$(echo "$(sizeof "$V") / 1000000" | bc -l)" "$(echo "$t1 - $t0" | bc -l)"
ship_change() { # MODE -> "seconds bytes"
	local before after t0 t1
	"$B/tests/randwrite" "$IMG" "$CHANGE" "$((RANDOM + 100))" "$1"
	before=$(sizeof "$V"); t0=$(secs)
	bsc sync --wait --vault --timeout 10m >/dev/null
	t1=$(secs); after=$(sizeof "$V")
	echo "$(echo "$t1 - $t0" | bc -l) $((after - before))"
}
for mode in mix random; do
	ts=(); bs=()
	for _ in $(seq "$RUNS"); do read -r t b < <(ship_change $mode); ts+=("$t"); bs+=("$b"); done
	t=$(printf '%s\n' "${ts[@]}" | median); b=$(printf '%s\n' "${bs[@]}" | median)
	printf "       1%% change (%d blocks, %-6s): %6.2f MB uploaded in %.2f s (sync to committed manifest)\n" \
		"$CHANGE" "$mode" "$(echo "$b / 1000000" | bc -l)" "$t"
done
bsc_stop

# -- 5c
ts=()
for i in $(seq "$RUNS"); do
	t0=$(secs)
	in_primary "$BIN/bascule" restore --vault "$URL" --identity "$T/id_ed25519" --known-hosts "$T/known_hosts_v" \
		--vault-key "$T/vault.key" --source vm1/root --to "$T/restored-$i" >/dev/null
	t1=$(secs); ts+=("$(echo "$t1 - $t0" | bc -l)")
	cmp "$T/restored-$i" "$IMG" || fail "restore differs"
	rm -f "$T/restored-$i"
done
t=$(printf '%s\n' "${ts[@]}" | median)
printf "   5c. restore of the 2 GiB image over SFTP (4 connections, every block verified): %.1f s, %.0f MB/s of image\n" \
	"$t" "$(echo "$SIZE / $t / 1000000" | bc -l)"

# -- 5d: growth for one 1% "mix" change, same data, against borg and restic (local repositories)
command -v borg >/dev/null && command -v restic >/dev/null ||
	echo "   (borgbackup or restic missing: scripts/deps.sh bench installs them)"
cp --sparse=always "$T/orig.img" "$T/changed.img"
"$B/tests/randwrite" "$T/changed.img" "$CHANGE" 4242 mix
growth() { # NAME INIT-CMD BACKUP-CMD REPO
	local before after t0 t1
	cp --sparse=always "$T/orig.img" "$T/data.img"
	eval "$2" >/dev/null 2>&1; eval "$3" >/dev/null 2>&1 || return 1
	cp --sparse=always "$T/changed.img" "$T/data.img"
	before=$(sizeof "$4"); t0=$(secs); eval "$3" >/dev/null 2>&1; t1=$(secs); after=$(sizeof "$4")
	printf "       %-28s +%7.1f MB in %5.1f s\n" "$1" "$(echo "($after - $before) / 1000000" | bc -l)" "$(echo "$t1 - $t0" | bc -l)"
	rm -rf "$4"
}
echo "   5d. repository growth for the same 1% change (mix) of the 2 GiB image, encrypted, local disk:"
mkdir -p "$T/lv"
cat > "$T/local.yaml" <<EOF
state_dir: $T/lstate
key: $T/site.key
control_socket: $T/lctl.sock
groups: [{name: vm1, interval: 1s, max_interval: 1h, sources: [{name: root, disk: $T/data.img}]}]
targets: [{name: v, type: vault, url: 'local:$T/lv', vault_key: $T/vault.key}]
EOF
bascule_backup() {
	"$B/basculed" -c "$T/local.yaml" >> "$T/ldaemon.log" 2>&1 &
	local p=$!
	for _ in $(seq 100); do [ -S "$T/lctl.sock" ] && break; sleep 0.05; done
	"$B/bascule" --socket "$T/lctl.sock" sync --wait --vault --timeout 30m
	kill $p; wait $p 2>/dev/null || true; rm -f "$T/lctl.sock"
}
growth "bascule vault" "rm -rf $T/lv $T/lstate; mkdir -p $T/lv" bascule_backup "$T/lv"
export BORG_PASSPHRASE=bench RESTIC_PASSWORD=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
if command -v borg >/dev/null; then
	n=0
	growth "borg (default chunker)" "borg init -e repokey $T/borg" "n=\$((n+1)); borg create $T/borg::a\$n $T/data.img" "$T/borg"
	growth "borg (fixed 4 KiB chunker)" "borg init -e repokey $T/borg" \
		"n=\$((n+1)); borg create --chunker-params fixed,4096 $T/borg::b\$n $T/data.img" "$T/borg"
else echo "       borg: not installed"; fi
if command -v restic >/dev/null; then
	growth "restic" "restic init -r $T/restic" "restic -r $T/restic backup $T/data.img" "$T/restic"
else echo "       restic: not installed"; fi
