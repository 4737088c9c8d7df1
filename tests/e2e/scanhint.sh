# scanhint: an image file nobody wrote since its last full scan is not
# reread (bytes the daemon read, /proc/PID/io); a write hidden behind a
# restored mtime (touch -d) is still caught, through ctime; a writer the
# file's times do not show (a page of a shared mmap written again while
# still dirty) is caught by the periodic full scan (full_scan_every); a
# write into a far hole of a sparse file is found, and costs its file's
# data only, not the other file's; after a write, one full scan does not
# vouch alone: the second that finds the same stat does.
. "$(dirname "$0")/../lib/common.sh"
need_root
bsc_keygen
FULL_EVERY=12
truncate -s 1G "$T/sparse.img"
dd if=/dev/urandom of="$T/sparse.img" bs=1M count=1 conv=notrunc status=none
dd if=/dev/urandom of="$T/sparse.img" bs=1M count=1 seek=300 conv=notrunc status=none
dd if=/dev/urandom of="$T/disk.img" bs=1M count=64 status=none
SOURCES="root:$T/disk.img sparse:$T/sparse.img"
bsc_config 1s 24h
sed -i "s|^    max_interval: .*|&\n    full_scan_every: ${FULL_EVERY}s|" "$T/bascule.yaml"
bsc_start
bsc_sync 60s >/dev/null || fail "initial sync"
rchar() { awk '/^rchar/ {print $2}' "/proc/$DAEMON_PID/io"; }
src() { status_get "d['groups'][0]['sources'][0]['$1']"; }
# settled: the file's last change (ctime) at least 3 s old, so a second
# agreeing full scan vouches for it (the daemon wants 2 s).
settled() { [ $(($(date +%s) - $(stat -c %Z "$T/disk.img"))) -ge 3 ]; }
# sync_read VAR: a sync; VAR = the bytes the daemon read meanwhile
sync_read() {
	local r0; r0=$(rchar)
	bsc_sync 60s >/dev/null || fail "sync"
	printf -v "$1" '%s' $(($(rchar) - r0))
}
same_as_source() { cmp -s "$T/disk.img" "$(replica_of root)" && cmp -s "$T/sparse.img" "$(replica_of sparse)"; }

# 1. The full scan that vouches, then idle epochs that read nothing.
wait_for 30 "the initial writes to settle" settled
f0=$(src scans_full)
sync_read full
[ "$(src scans_full)" -gt "$f0" ] || fail "the sync after the writes settled did not read the file in full"
[ "$full" -ge $((64 << 20)) ] || fail "a full scan of the 64 MiB file read only $full bytes"
u0=$(src scans_unchanged)
# (under 3 MiB: on a loaded machine the 2 MiB of the sparse file may come
# due for full_scan_every meanwhile; the 64 MiB file must not be reread)
for i in 1 2 3; do
	sync_read idle
	[ "$idle" -lt $((3 << 20)) ] || fail "idle epoch $i read $idle bytes of an unchanged 64 MiB file"
done
[ $(($(src scans_unchanged) - u0)) -eq 3 ] || fail "3 idle epochs, $(($(src scans_unchanged) - u0)) counted unchanged"
grep -q "2 of 2 files unchanged since their full scan" "$T/daemon.log" || fail "the log does not say the files were not reread"
note "full scan read $((full >> 20)) MiB; idle epochs read $idle bytes each"

# 2. A write with its mtime put back (touch -d): ctime moved, it is caught.
mtime=$(stat -c %y "$T/disk.img")
head -c 4096 /dev/zero | tr '\0' 'T' | dd of="$T/disk.img" bs=4096 seek=500 conv=notrunc status=none
touch -d "$mtime" "$T/disk.img"
[ "$(stat -c %y "$T/disk.img")" = "$mtime" ] || fail "touch -d did not restore the mtime (test setup)"
f0=$(src scans_full)
bsc_sync 60s >/dev/null || fail "sync after the hidden write"
same_as_source || fail "a write whose mtime was restored with touch -d was not replicated"
[ "$(src scans_full)" -gt "$f0" ] || fail "the hidden write was caught without a full scan?"
note "write behind a restored mtime: caught (ctime), replica equal"

# 3. A shared mmap: the first write to a page stamps the times (the page
# fault), a second write to the still-dirty page does not.
python3 - "$T/disk.img" "$T/mm" <<'PY' &
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
def wait(name):
    while not os.path.exists(sys.argv[2] + name):
        time.sleep(0.05)
m[100 * 4096:101 * 4096] = b"\x11" * 4096
open(sys.argv[2] + ".1", "w").close()
wait(".go")
m[100 * 4096:101 * 4096] = b"\x22" * 4096
open(sys.argv[2] + ".2", "w").close()
wait(".end")
PY
MM_PID=$!
stop_mm() { touch "$T/mm.end"; wait "$MM_PID" 2>/dev/null || true; }
EXIT_HOOKS+=(stop_mm)
wait_for 30 "the mmap writer's first write" test -e "$T/mm.1"
wait_for 30 "the mmap write to settle" settled
f0=$(src scans_full)
bsc_sync 60s >/dev/null || fail "sync after the first mmap write"
[ "$(src scans_full)" -gt "$f0" ] || fail "the first mmap write (times stamped) did not make a full scan"
bsc_sync 60s >/dev/null || fail "the second full scan after the first mmap write"
full_at=$(date +%s)
same_as_source || fail "the first mmap write was not replicated"
before=$(stat -c '%y %z' "$T/disk.img")
touch "$T/mm.go"
wait_for 30 "the mmap writer's second write" test -e "$T/mm.2"
u0=$(src scans_unchanged)
bsc_sync 60s >/dev/null || fail "sync after the second mmap write"
if [ "$(stat -c '%y %z' "$T/disk.img")" = "$before" ]; then
	[ "$(src scans_unchanged)" -gt "$u0" ] || fail "times unchanged, yet the cut read the file in full"
	same_as_source && fail "the second mmap write reached the replica without a full scan (test premise)"
	note "second mmap write: the times did not move, the hinted epoch missed it (as documented)"
else
	note "second mmap write: the times moved (a writeback in between), caught at once"
fi
# The periodic full scan finds it.
wait_for $((FULL_EVERY + 30)) "full_scan_every to pass" '[ $(($(date +%s) - full_at)) -gt '$FULL_EVERY' ]'
f0=$(src scans_full)
sync_read periodic
[ "$(src scans_full)" -gt "$f0" ] || fail "no full scan after full_scan_every (${FULL_EVERY}s)"
[ "$periodic" -ge $((64 << 20)) ] || fail "the periodic full scan read only $periodic bytes"
same_as_source || fail "the periodic full scan did not bring the mmap write to the replica"
note "periodic full scan after ${FULL_EVERY}s: read $((periodic >> 20)) MiB, replica equal"

# 4. A write into a far hole of the sparse file (900 MiB, past the data the
# scan's probe last saw): found; the untouched 64 MiB file is not reread.
wait_for 30 "the last writes to settle" settled
bsc_sync 60s >/dev/null || fail "settling sync"
head -c 4096 /dev/zero | tr '\0' 'H' | dd of="$T/sparse.img" bs=4096 seek=$((900 * 256)) conv=notrunc status=none
sync_read one
same_as_source || fail "a write into a hole of the sparse file was not replicated"
[ "$one" -lt $((16 << 20)) ] || fail "a write to the sparse file read $one bytes: the unchanged 64 MiB file was reread"
note "a write into a far hole: caught, $((one >> 10)) KiB read (the sparse file's data)"

# 5. A write, settled before any cut sees it (the group paused: no cut on
# its inotify event): the first full scan records the file, only the
# second that finds the same stat vouches, then cuts skip it.
bsc pause vm1 > /dev/null || fail "pause"
head -c 4096 /dev/zero | tr '\0' 'V' | dd of="$T/disk.img" bs=4096 seek=700 conv=notrunc status=none
wait_for 30 "the write to settle" settled
f0=$(src scans_full)
r0=$(rchar)
bsc resume vm1 > /dev/null || fail "resume" # asks for a cut: the first full scan
bsc_sync 60s >/dev/null || fail "sync after resume"
two=$(($(rchar) - r0))
sync_read third
same_as_source || fail "the settled write was not replicated"
[ $(($(src scans_full) - f0)) -eq 2 ] || fail "$(($(src scans_full) - f0)) full scans after a settled write, expected 2 (one vouched alone?)"
[ "$two" -ge $((128 << 20)) ] || fail "the two cuts after a settled write read $two bytes: one full scan vouched alone"
[ "$third" -lt $((3 << 20)) ] || fail "two agreeing full scans, yet the next cut read $third bytes"
note "after a settled write: two full scans ($((two >> 20)) MiB together), then $third bytes"
