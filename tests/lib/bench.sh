# tests/lib/bench.sh - what the bench scripts share (source after common.sh).
RUNS=${RUNS:-3}
# median of the numbers on stdin; pct P: the P-th percentile
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if (i<1) i=1; print a[i]}'; }
secs() { date +%s.%N; }
