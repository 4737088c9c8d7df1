# tests/lib/bench.sh - what the bench scripts share (source after common.sh).
RUNS=${RUNS:-3}
# median of the numbers on stdin; pct P: the P-th percentile
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if (i<1) i=1; print a[i]}'; }
secs() { date +%s.%N; }
# cpu_of PID: its user + system CPU seconds so far (0 if it is gone)
cpu_of() { awk '{print ($14+$15)/100}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# bench_sparse_image PATH GIB MIB: a sparse file of GIB GiB holding MIB MiB
# of random data in 64 extents spread over it
bench_sparse_image() {
	local path=$1 gib=$2 ext=$(($3 / 64)) i
	rm -f "$path"
	truncate -s $((gib * 1024 * 1024 * 1024)) "$path"
	for i in $(seq 0 63); do
		dd if=/dev/urandom of="$path" bs=1M count="$ext" seek=$((i * gib * 1024 / 64)) conv=notrunc status=none
	done
	sync
}
# bench_lag SECS OUT: every 0.5 s for SECS s, the first target's lag_seconds
# (bascule status) appended to OUT
bench_lag() {
	local end=$((SECONDS + $1))
	while [ $SECONDS -lt $end ]; do
		bsc status --json | sed -n 's/.*"lag_seconds": \([0-9.]*\).*/\1/p' | head -1 >> "$2"
		sleep 0.5
	done
}
