#!/bin/bash
# tests/run.sh BUILD_DIR [unit|e2e] - run the unit tests (cmocka) and the
# end-to-end tests; print one summary line "N passed, N failed, N skipped".
set -uo pipefail
B=${1:?usage: tests/run.sh BUILD_DIR [unit|e2e]}
WHAT=${2:-all}
cd "$(dirname "$0")/.."
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
if [ "$WHAT" != e2e ]; then
	for t in "$B"/tests/test_*; do
		[ -x "$t" ] && run "unit/$(basename "$t")" "$t"
	done
fi
if [ "$WHAT" != unit ]; then
	for t in tests/e2e/*.sh; do
		run "e2e/$(basename "$t" .sh)" bash "$t" "$B"
	done
fi
echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $failn failed, $skip skipped"
[ $failn -eq 0 ]
