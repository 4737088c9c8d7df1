# cutstream: a real session from basculed to `bascule recv` is recorded
# (relay --record), then replayed into a new receiver cut after every byte of
# the frames of an epoch (tests/helpers/replay).  A session ends only with
# BYE (docs/protocol.md): a cut inside a frame, or anywhere inside an epoch,
# exits 1 with a message; only a cut on a frame boundary between epochs may
# exit 0, and says so.  Whatever the cut, the replica stays exactly at its
# last complete epoch.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 1M "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h "remote_command: $BIN/tests/relay --record $T/rec -- $BIN/bascule recv"

# write_block N TEXT: block N of the disk becomes TEXT repeated (compressible,
# so the epoch's frames stay small and every byte of them can be cut).
write_block() {
	local i s=""
	for i in $(seq 256); do s+=$(printf '%-16s' "$2"); done
	printf '%s' "$s" | dd of="$T/disk.img" bs=4096 seek="$1" conv=notrunc status=none
}
epoch_of() {
	"$BIN/bascule" replica list --root "$1" | sed -n 's/.*group vm1: epoch \([0-9]*\).*/\1/p'
}

bsc_start
write_block 1 "first"
bsc_sync || fail "initial sync"
bsc_stop
cp -a "$T/replica" "$T/rA"

# The recorded session: two epochs, B then C.
bsc_start
write_block 2 "epoch B"
bsc_sync || fail "sync of epoch B"
cp "$T/disk.img" "$T/B.img"
write_block 3 "epoch C"
write_block 9 "epoch C too"
bsc_sync || fail "sync of epoch C"
cp "$T/disk.img" "$T/C.img"
bsc_stop
cmp -s "$(replica_of root)" "$T/C.img" || fail "the recorded session did not replicate"

replay() { "$BIN/tests/replay" --key "$T/site.key" --record "$T/rec" "$@"; }
replay --list > "$T/frames" || fail "cannot open the recording"
# B: every epoch of the session but the last (the daemon may send an empty
# one on connecting), ending with epoch B; C: the last epoch.
read -r b0 b1 c0 c1 < <(awk '$2 == "EPOCH_BEGIN" { s[n + 0] = $1 } $2 == "EPOCH_END" { e[n++] = $1 + 1 }
	END { if (n >= 2) print s[0], e[n - 2], s[n - 1], e[n - 1] }' "$T/frames")
[ -n "${c1:-}" ] || fail "the recording does not hold two epochs: $(cat "$T/frames")"
eB=$(awk -v i="$((b1 - 1))" '$1 == i { print $5 }' "$T/frames")
eC=$(awk -v i="$c0" '$1 == i { print $5 }' "$T/frames")
grep -q "^$((c0 + 3)) EXTENT" "$T/frames" || fail "epoch $eC should carry two extents: $(cat "$T/frames")"
note "recorded up to epoch $eB (frames $b0-$((b1 - 1))) and epoch $eC (frames $c0-$((c1 - 1)))"

# The replica at epoch B, through the replay of B's frames whole.
cp -a "$T/rA" "$T/rB"
recv_cmd() { echo "$BIN/bascule recv --root $1 --key $T/site.key"; }
out=$(replay --from "$b0" --to "$b1" -- $(recv_cmd "$T/rB") 2> "$T/err") \
	|| fail "a replay of epoch $eB whole exited $?: $(cat "$T/err")"
echo "$out" | grep -q "^ACK vm1 $eB$" || fail "epoch $eB was not acknowledged: $out"
[ "$(epoch_of "$T/rB")" = "$eB" ] || fail "replica not at epoch $eB after its replay"
cmp -s "$T/rB/vm1/root" "$T/B.img" || fail "replica differs from the source at epoch $eB"

# Byte offsets of the frame boundaries of C, and where an epoch is open.
bounds=" 0 "; total=0
for i in $(seq "$c0" $((c1 - 1))); do
	total=$((total + $(awk -v i="$i" '$1 == i { print $3 }' "$T/frames")))
	bounds+="$total "
	[ "$i" = "$c0" ] && first=$total
done
note "cutting epoch $eC's $((c1 - c0)) frames ($total bytes) at every byte"
zeros=0 ones=0
for n in $(seq 0 "$total"); do
	rm -rf "$T/r"
	cp -a "$T/rB" "$T/r"
	rc=0
	out=$(replay --from "$c0" --to "$c1" --cut "$n" -- $(recv_cmd "$T/r") 2> "$T/err") || rc=$?
	if [ "$n" = 0 ] || [ "$n" = "$total" ]; then
		# on the boundary before and after the epoch: the peer went away
		[ $rc = 0 ] || fail "cut at byte $n (between epochs) exited $rc: $(cat "$T/err")"
		grep -q "closed the connection between epochs without BYE" "$T/err" \
			|| fail "cut at byte $n (between epochs) is not logged: $(cat "$T/err")"
		want=$([ "$n" = 0 ] && echo "$eB" || echo "$eC")
		zeros=$((zeros + 1))
	else
		[ $rc = 1 ] || fail "cut at byte $n of epoch $eC exited $rc, documented 1: $(cat "$T/err")"
		case "$bounds" in
		*" $n "*) msg="the peer closed the connection" ;;
		*) msg="the stream was cut inside a frame" ;;
		esac
		grep -q "$msg" "$T/err" || fail "cut at byte $n: no '$msg' in: $(cat "$T/err")"
		if [ "$n" -ge "$first" ]; then # EPOCH_BEGIN was received
			grep -q "nothing of the epoch in progress was applied" "$T/err" \
				|| fail "cut at byte $n: the message does not say the epoch was dropped: $(cat "$T/err")"
		fi
		want=$eB
		ones=$((ones + 1))
	fi
	[ "$(epoch_of "$T/r")" = "$want" ] || fail "cut at byte $n: replica at epoch $(epoch_of "$T/r"), not $want"
	cmp -s "$T/r/vm1/root" "$T/$([ "$want" = "$eB" ] && echo B || echo C).img" \
		|| fail "cut at byte $n: replica content is not that of epoch $want"
done
note "$((zeros + ones)) cuts: $zeros on a boundary between epochs (exit 0, logged), $ones inside (exit 1); replica always at its last complete epoch"
