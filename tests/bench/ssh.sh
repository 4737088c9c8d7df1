#!/bin/bash
# Bench over the test sites' SSH link (needs root): Bascule against rsync
# over SSH for the initial copy and a 1% random change of a 2 GiB ext4 image
# holding real files, then Bascule's steady-state lag under 10 MB/s of
# random writes.  Bytes are counted on the primary's network interface (all
# protocol overhead included); CPU is the whole machine's (both sites).
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
. "$(dirname "$0")/../lib/sites.sh"
cpu_total() { awk '/^cpu / {print ($2+$3+$4+$7+$8)/100}' /proc/stat; }
txb() { in_primary cat "/sys/class/net/bp$SITE_ID/statistics/tx_bytes"; }
sites_up
IMG=$T/disk.img
SIZE=$((2048 * 1048576))
CHANGE=$((SIZE / 4096 / 100))
echo "== 4. over SSH between network namespaces (tbf 1 Gbit/s, no added latency: this kernel has no netem)"
mkdir -p "$T/fill"
cp -a /usr/lib/x86_64-linux-gnu /usr/share/doc /usr/share/locale "$T/fill/" 2>/dev/null || true
truncate -s $SIZE "$IMG"
mkfs.ext4 -q -F -d "$T/fill" "$IMG" 2>/dev/null || mkfs.ext4 -q -F "$IMG"
rm -rf "$T/fill"
printf "   2 GiB ext4 image with %s of real files (libraries, docs)\n" "$(du -h --apparent-size "$IMG" | cut -f1) apparent, $(du -h "$IMG" | cut -f1) allocated"

bsc_keygen
R=$T/secondary/replica
authorize_recv "$R"
trust_secondary
# rsync gets its own, unrestricted key for the same user.
ssh-keygen -q -t ed25519 -N "" -f "$T/id_rsync"
cat "$T/id_rsync.pub" >> "$T/ssh-secondary/authorized_keys"
mkdir -p "$T/secondary/rsync"; chown "$SSH_USER" "$T/secondary/rsync"
RSH="ssh -i $T/id_rsync -o UserKnownHostsFile=$T/known_hosts -o BatchMode=yes -c aes128-gcm@openssh.com"
SOURCES="root:$IMG"; TARGET_URL="ssh://$SSH_USER@$IP_S$R"; REPLICA_DIR=$R
bsc_config 1s 2s "identity: $T/id_ed25519" "known_hosts: $T/known_hosts"
NSEXEC=(ip netns exec "$NS_P")

measure() { # label command...: prints "wall cpu bytes"
	local t0 c0 b0
	t0=$(secs); c0=$(cpu_total); b0=$(txb)
	"$@" >/dev/null
	echo "$(echo "$(secs) - $t0" | bc -l) $(echo "$(cpu_total) - $c0" | bc -l) $(( $(txb) - b0 ))"
}
row() { printf "   %-40s %7.2f s wall %7.2f s CPU %9.1f MB on the wire\n" "$1" "$2" "$3" "$(echo "$4 / 1000000" | bc -l)"; }

# Initial copy.
t0=$(secs); c0=$(cpu_total); b0=$(txb)
bsc_start
bsc_sync 600s >/dev/null || fail "bascule initial copy"
bt=$(echo "$(secs) - $t0" | bc -l); bc=$(echo "$(cpu_total) - $c0" | bc -l); bb=$(( $(txb) - b0 ))
cmp -s "$IMG" "$R/vm1/root" || fail "bascule initial copy differs"
row "bascule, initial copy" "$bt" "$bc" "$bb"
read -r rt rc rb < <(measure in_primary rsync -a --inplace --no-whole-file -e "$RSH" "$IMG" "$SSH_USER@$IP_S:$T/secondary/rsync/disk.img")
row "rsync --inplace over SSH, initial copy" "$rt" "$rc" "$rb"
read -r zt zc zb < <(measure in_primary rsync -az -e "$RSH" "$IMG" "$SSH_USER@$IP_S:$T/secondary/rsync/z.img")
row "rsync -z over SSH, initial copy" "$zt" "$zc" "$zb"
printf "   -> bascule %.1fx faster than rsync --inplace, %.1fx than rsync -z\n" "$(echo "$rt / $bt" | bc -l)" "$(echo "$zt / $bt" | bc -l)"
# Each rsync variant updates its own copy, all starting from the same image.
for f in disk4k.img plain.img; do cp "$T/secondary/rsync/disk.img" "$T/secondary/rsync/$f"; done
chown "$SSH_USER" "$T/secondary/rsync/"*

# 1% random change.
declare -a BT BC BB RT RC RB T4 C4 B4 PT PC PB
for r in $(seq "$RUNS"); do
	"$BIN/tests/randwrite" "$IMG" $CHANGE "$r"
	read -r t c b < <(measure bsc_sync 300s); BT+=("$t"); BC+=("$c"); BB+=("$b")
	cmp -s "$IMG" "$R/vm1/root" || fail "bascule replica differs after the change"
	read -r t c b < <(measure in_primary rsync -I --inplace --no-whole-file -e "$RSH" "$IMG" "$SSH_USER@$IP_S:$T/secondary/rsync/disk.img"); RT+=("$t"); RC+=("$c"); RB+=("$b")
	read -r t c b < <(measure in_primary rsync -I --inplace --no-whole-file -B 4096 -e "$RSH" "$IMG" "$SSH_USER@$IP_S:$T/secondary/rsync/disk4k.img"); T4+=("$t"); C4+=("$c"); B4+=("$b")
	read -r t c b < <(measure in_primary rsync -I -e "$RSH" "$IMG" "$SSH_USER@$IP_S:$T/secondary/rsync/plain.img"); PT+=("$t"); PC+=("$c"); PB+=("$b")
done
m() { printf '%s\n' "$@" | median; }
bt=$(m "${BT[@]}"); rt=$(m "${RT[@]}"); t4=$(m "${T4[@]}"); pt=$(m "${PT[@]}")
bb=$(m "${BB[@]}"); rb=$(m "${RB[@]}"); b4=$(m "${B4[@]}"); pb=$(m "${PB[@]}")
echo "   1% random change ($CHANGE blocks of 4 KiB, $((CHANGE * 4096 / 1000000)) MB), medians of $RUNS:"
row "bascule sync --wait" "$bt" "$(m "${BC[@]}")" "$bb"
row "rsync --inplace --no-whole-file" "$rt" "$(m "${RC[@]}")" "$rb"
row "rsync --inplace --no-whole-file -B 4096" "$t4" "$(m "${C4[@]}")" "$b4"
row "rsync (plain)" "$pt" "$(m "${PC[@]}")" "$pb"
printf "   -> bascule %.1fx faster than rsync --inplace, %.1fx than -B 4096; %.1fx and %.1fx fewer bytes\n" \
	"$(echo "$rt / $bt" | bc -l)" "$(echo "$t4 / $bt" | bc -l)" "$(echo "$rb / $bb" | bc -l)" "$(echo "$b4 / $bb" | bc -l)"

# Steady-state lag under 10 MB/s of random 4 KiB writes (interval 1s).
: > "$T/lags"
end=$((SECONDS + ${LAG_SECONDS:-60}))
( while [ $SECONDS -lt $end ]; do "$BIN/tests/randwrite" "$IMG" 256 "$RANDOM"; sleep 0.1; done ) &
W=$!
sleep 3
while [ $SECONDS -lt $end ]; do
	bsc status --json | sed -n 's/.*"lag_seconds": \([0-9.]*\).*/\1/p' | head -1 >> "$T/lags"
	sleep 0.5
done
wait $W
printf "   lag under 10 MB/s of random writes (%d samples): median %.1f s, p99 %.1f s\n" \
	"$(wc -l < "$T/lags")" "$(pct 50 < "$T/lags")" "$(pct 99 < "$T/lags")"
bsc_stop
