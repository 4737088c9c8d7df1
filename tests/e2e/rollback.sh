# rollback: write a known pattern, replicate; then "encrypt" the disk (as
# ransomware would), replicate; rollback returns the exact earlier image.
. "$(dirname "$0")/../lib/common.sh"
bsc_keygen
truncate -s 64M "$T/disk.img"
mkfs.ext4 -q -F "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
bsc_start
"$BIN/tests/randwrite" "$T/disk.img" 4000 7
bsc_sync || fail "sync"
cp "$T/disk.img" "$T/good.img"
good=$("$BIN/bascule" replica list --root "$T/replica" | sed -n 's/.*vm1: epoch \([0-9]*\).*/\1/p')
# "Encrypt": every block rewritten with other bytes.
openssl enc -aes-256-ctr -pass pass:ransom -pbkdf2 -in "$T/good.img" -out "$T/enc.img" 2>/dev/null \
	|| head -c 64M /dev/urandom > "$T/enc.img"
dd if="$T/enc.img" of="$T/disk.img" bs=1M conv=notrunc status=none
"$BIN/tests/randwrite" "$T/disk.img" 100 8
bsc_sync || fail "sync of the encrypted disk"
cmp -s "$(replica_of root)" "$T/good.img" && fail "the encrypted disk did not reach the replica"
bsc_stop
"$BIN/bascule" replica list --root "$T/replica" | grep -q "rollback points: .*$good" || fail "epoch $good is not a rollback point"
set +e
"$BIN/bascule" replica rollback --root "$T/replica" --key "$T/site.key" --to 999 2>"$T/err"; rc=$?
set -e
[ $rc -ne 0 ] && grep -q "rollback points" "$T/err" || fail "rollback to an unknown epoch should fail and list the points"
"$BIN/bascule" replica rollback --root "$T/replica" --key "$T/site.key" --to "$good" || fail "rollback"
cmp "$(replica_of root)" "$T/good.img" || fail "rollback did not return the exact earlier image"
"$BIN/bascule" replica verify --root "$T/replica" --key "$T/site.key" | grep -q "OK at epoch $good" || fail "verify after rollback"
note "rolled back to epoch $good: exact image"
