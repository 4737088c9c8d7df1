#!/bin/bash
# tests/run.sh [-j N] BUILD_DIR [unit|e2e|TEST...] - run the unit tests
# (cmocka) and the end-to-end tests, or only the named ones; print one
# summary line "N passed, N failed, N skipped".
#   tests/run.sh build                      everything
#   tests/run.sh -j 2 build                 end-to-end tests two at a time
#   tests/run.sh build unit                 the unit tests
#   tests/run.sh build e2e/cli idle unit/test_wire   these tests only
# A name matches e2e/NAME (tests/e2e/NAME.sh) or unit/NAME (BUILD/tests/NAME);
# an unknown name is an error (exit 2), never a silent run of everything.
#
# With -j N (or TEST_JOBS=N; `make test` passes TEST_JOBS, default 2) up to N
# end-to-end tests run at once: most of a test's time is spent waiting for
# daemons, guests and fsyncs, not on a core.  Every test keeps to its own
# scratch directory, namespaces (named by its pid), sockets and ports, so
# they do not meet.  A test whose header has the line "# run.sh: alone"
# (it measures the machine, or looks at every process on it) runs after the
# others, by itself; "# run.sh: first" starts a long test early, so the pool
# does not end waiting for it.  Unit tests run first, one at a time.
set -uo pipefail
usage() { echo "usage: tests/run.sh [-j N] BUILD_DIR [unit|e2e|TEST...]" >&2; exit 2; }
JOBS=${TEST_JOBS:-1}
if [ "${1:-}" = -j ]; then JOBS=${2:-}; shift 2 || usage; fi
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "tests/run.sh: -j takes a number of tests at once (1 or more), not '$JOBS'" >&2; exit 2; }
B=${1:-}
[ -n "$B" ] || usage
shift
cd "$(dirname "$0")/.."
[ -d "$B" ] || { echo "tests/run.sh: no build directory $B (run make build-tests first)" >&2; exit 2; }
LOGDIR=$(mktemp -d /tmp/bascule-logs.XXXXXX)
pass=0 failn=0 skip=0 failed=()
# report NAME RC SECONDS: one line per test, the end of its log if it failed.
report() {
	local name=$1 rc=$2 took=$3 log="$LOGDIR/${1//\//-}.log"
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1)); echo "ok    $name (${took}s)"
	elif [ "$rc" -eq 77 ]; then
		skip=$((skip + 1)); echo "skip  $name: $(tail -1 "$log")"
	else
		failn=$((failn + 1)); failed+=("$name"); echo "FAIL  $name (${took}s)"
		sed 's/^/      /' "$log" | tail -n 40
	fi
}
since() { printf "%.1f" "$(echo "$(date +%s.%N) - $1" | bc)"; }
run() {
	local name=$1; shift
	local start=$(date +%s.%N) rc
	"$@" > "$LOGDIR/${name//\//-}.log" 2>&1 < /dev/null
	rc=$?
	report "$name" $rc "$(since "$start")"
}
# pool NAME...: the end-to-end tests, up to $JOBS at once, reported as each ends.
pool() {
	local -A names=() starts=()
	local n pid rc
	for n in "$@" ""; do
		while [ ${#names[@]} -ge "$JOBS" ] || { [ -z "$n" ] && [ ${#names[@]} -gt 0 ]; }; do
			wait -n -p pid "${!names[@]}"; rc=$?
			report "e2e/${names[$pid]}" $rc "$(since "${starts[$pid]}")"
			unset "names[$pid]" "starts[$pid]"
		done
		[ -n "$n" ] || break
		bash "tests/e2e/$n.sh" "$B" > "$LOGDIR/e2e-$n.log" 2>&1 < /dev/null &
		names[$!]=$n starts[$!]=$(date +%s.%N)
	done
}
# tag NAME WORD: the test's header says "# run.sh: WORD".
tag() { sed -n '1,/^[^#]/p' "tests/e2e/$1.sh" | grep -qx "# run.sh: $2"; }
units=() e2es=()
all_units() { for t in "$B"/tests/test_*; do [ -x "$t" ] && units+=("$(basename "$t")"); done; }
all_e2e() { for t in tests/e2e/*.sh; do e2es+=("$(basename "$t" .sh)"); done; }
if [ $# -eq 0 ]; then
	all_units; all_e2e
fi
for a in "$@"; do
	case $a in
	unit) all_units ;;
	e2e) all_e2e ;;
	*)
		n=${a#unit/}; n=${n#e2e/}; n=${n%.sh}
		if [ "$a" != "e2e/$n" ] && [ -x "$B/tests/$n" ] && [[ $n == test_* ]]; then
			units+=("$n")
		elif [ "$a" != "unit/$n" ] && [ -f "tests/e2e/$n.sh" ]; then
			e2es+=("$n")
		else
			echo "tests/run.sh: no test named '$a' (e2e: $(cd tests/e2e && ls *.sh | sed 's/\.sh$//' | tr '\n' ' ')unit: $(cd "$B/tests" 2>/dev/null && ls -d test_* | grep -v "\.d$" | tr '\n' ' '))" >&2
			exit 2
		fi ;;
	esac
done
for n in "${units[@]}"; do run "unit/$n" "$B/tests/$n"; done
if [ "$JOBS" -eq 1 ]; then
	for n in "${e2es[@]}"; do run "e2e/$n" bash "tests/e2e/$n.sh" "$B"; done
else
	first=() rest=() alone=()
	for n in "${e2es[@]}"; do
		if tag "$n" alone; then alone+=("$n")
		elif tag "$n" first; then first+=("$n")
		else rest+=("$n"); fi
	done
	pool "${first[@]}" "${rest[@]}"
	for n in "${alone[@]}"; do run "e2e/$n" bash "tests/e2e/$n.sh" "$B"; done
fi
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $failn failed, $skip skipped"
[ $failn -eq 0 ]
