# fuzz: every parser of untrusted input (configuration, message bodies, the
# frame and handshake parser) survives 20,000 mutated inputs each, built with
# the suite's flags (under ASan/UBSan in CI).  `make fuzz` runs them under
# libFuzzer with coverage guidance.
. "$(dirname "$0")/../lib/common.sh"
for h in config proto runbook vault pgpipe intake; do
	out=$("$BIN/tests/fuzz_$h" -n 20000 -s 42 "$ROOT"/tests/fuzz/corpus/$h/*) || fail "fuzz_$h: $out"
	note "fuzz_$h: $out"
done
