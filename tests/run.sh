#!/bin/bash
# tests/run.sh BUILD_DIR [unit|e2e|TEST...] - run the unit tests (cmocka) and
# the end-to-end tests, or only the named ones; print one summary line
# "N passed, N failed, N skipped".
#   tests/run.sh build                      everything
#   tests/run.sh build unit                 the unit tests
#   tests/run.sh build e2e/cli idle unit/test_wire   these tests only
# A name matches e2e/NAME (tests/e2e/NAME.sh) or unit/NAME (BUILD/tests/NAME);
# an unknown name is an error (exit 2), never a silent run of everything.
set -uo pipefail
usage() { echo "usage: tests/run.sh BUILD_DIR [unit|e2e|TEST...]" >&2; exit 2; }
B=${1:-}
[ -n "$B" ] || usage
shift
cd "$(dirname "$0")/.."
[ -d "$B" ] || { echo "tests/run.sh: no build directory $B (run make build-tests first)" >&2; exit 2; }
LOGDIR=$(mktemp -d /tmp/bascule-logs.XXXXXX)
pass=0 failn=0 skip=0 failed=()
run() {
	local name=$1; shift
	local start=$(date +%s.%N) rc
	"$@" > "$LOGDIR/${name//\//-}.log" 2>&1
	rc=$?
	local took=$(printf "%.1f" "$(echo "$(date +%s.%N) - $start" | bc)")
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1)); echo "ok    $name (${took}s)"
	elif [ $rc -eq 77 ]; then
		skip=$((skip + 1)); echo "skip  $name: $(tail -1 "$LOGDIR/${name//\//-}.log")"
	else
		failn=$((failn + 1)); failed+=("$name"); echo "FAIL  $name (${took}s)"
		sed 's/^/      /' "$LOGDIR/${name//\//-}.log" | tail -n 40
	fi
}
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
for n in "${e2es[@]}"; do run "e2e/$n" bash "tests/e2e/$n.sh" "$B"; done
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $failn failed, $skip skipped"
[ $failn -eq 0 ]
