# tests/lib/common.sh - helpers shared by the end-to-end tests.
# Source it with the build directory as $1; it sets BIN (build dir), T (a
# fresh scratch directory, removed at exit with everything started here).
set -euo pipefail
BIN=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=$(mktemp -d /tmp/bascule-test.XXXXXX)
DAEMON_PID=""
MOUNTS=()
EXIT_HOOKS=()
NSEXEC=()   # e.g. (ip netns exec NS): where basculed runs
TEST_NAME=$(basename "$0" .sh)

# No test fails without saying why.  A command that fails where set -e
# ends the script is named (file, line, the line's text, its status) by the
# ERR trap, inherited (set -E) by functions and subshells: a failure in a
# helper of tests/lib names the helper's line and the test's line that
# called it.  A failure in a subshell (a pipeline's stage, a background
# job) is told as that subshell's, which may or may not end the test.
# Where set -e is off (a command substitution, expect_rc's set +e) the shell
# goes on and nothing is told.  The EXIT trap tells an exit status nobody
# explained (an explicit exit N, a signal).
_SAID=""
on_err() {
	local rc=$1 cmd=$2 i src line where=""
	[[ $- == *e* ]] || return 0
	[ -z "$_SAID" ] || return 0
	_SAID=1
	for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
		src=${BASH_SOURCE[i]} line=${BASH_LINENO[i - 1]}
		[ "$line" -gt 0 ] || continue
		[ "${FUNCNAME[i]}" = main ] && where+="${where:+, called from }${src#"$ROOT"/}:$line" && break
		where+="${where:+, called from }${src#"$ROOT"/}:$line (${FUNCNAME[i]})"
	done
	if [ "$BASHPID" = "$$" ]; then
		echo "FAIL: $TEST_NAME: '$cmd' exited $rc at $where: $(sed -n "${BASH_LINENO[0]}{s/^[[:space:]]*//;p}" "${BASH_SOURCE[1]}" 2> /dev/null | cut -c1-300)" >&2
	else
		echo "  $TEST_NAME: in a subshell (pid $BASHPID): '$cmd' exited $rc at $where" >&2
	fi
}
set -E
trap 'on_err $? "$BASH_COMMAND"' ERR

cleanup() {
	local rc=$?
	if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -z "$_SAID" ]; then
		echo "FAIL: $TEST_NAME: exited with status $rc and no FAIL line said why (an exit $rc outside fail(), or a signal$([ $rc -le 128 ] || echo ": $(kill -l $((rc - 128)) 2> /dev/null)"))" >&2
	fi
	if [ -n "$DAEMON_PID" ]; then
		kill -9 "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
	fi
	pkill -9 -f "bascule recv --root $T" 2>/dev/null || true
	for h in "${EXIT_HOOKS[@]}"; do "$h" || true; done
	for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
	# A sanitizer report in the daemon or a receiver fails the test.
	if [ -f "$T/daemon.log" ] && grep -qE "runtime error|AddressSanitizer|LeakSanitizer" "$T/daemon.log"; then
		echo "FAIL: $TEST_NAME: sanitizer report in the daemon log:" >&2
		grep -E -A12 "runtime error|AddressSanitizer|LeakSanitizer" "$T/daemon.log" | head -40 >&2
		rc=1
	fi
	if [ $rc -ne 0 ] && [ -f "$T/daemon.log" ]; then
		echo "--- last lines of the daemon log ($TEST_NAME) ---" >&2
		tail -n 30 "$T/daemon.log" >&2
	fi
	[ -n "${KEEP:-}" ] && echo "kept $T" >&2 || rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

fail() { _SAID=1; echo "FAIL: $TEST_NAME: $*" >&2; exit 1; }
note() { echo "  $TEST_NAME: $*"; }
# expect_rc CODE CMD...: run CMD, fail unless it exits CODE; its output in
# $T/out and $T/err.
expect_rc() {
	local want=$1; shift
	set +e; "$@" >"$T/out" 2>"$T/err"; local rc=$?; set -e
	[ $rc -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$T/err")"
}
# wait_for SECONDS WHAT CONDITION...: poll CONDITION every 0.1 s until it
# succeeds; after SECONDS of wall time fail "timed out after SECONDS s
# waiting for WHAT".  One CONDITION word is a shell string (eval'ed, so it
# sees the caller's variables); more are a command and its arguments.  A
# condition may write why it does not hold yet to $WAIT_WHY: the failure
# message ends with what it last wrote there.
WAIT_WHY=$T/wait.why
wait_for() {
	local _wf_secs=$1 _wf_what=$2 _wf_end
	shift 2
	_wf_end=$(($(date +%s%N) / 1000000 + _wf_secs * 1000))
	rm -f "$WAIT_WHY"
	until if [ $# -eq 1 ]; then eval "$1"; else "$@"; fi; do
		[ $(($(date +%s%N) / 1000000)) -lt "$_wf_end" ] ||
			fail "timed out after ${_wf_secs}s waiting for $_wf_what$([ ! -s "$WAIT_WHY" ] || echo ": $(cat "$WAIT_WHY")")"
		sleep 0.1
	done
}
need_root() { [ "$(id -u)" = 0 ] || { echo "SKIP: $TEST_NAME needs root"; exit 77; }; }
# Accounts.  useradd, groupadd and usermod lock /etc/passwd and /etc/group
# and fail at once when another holds them ("cannot lock /etc/passwd"): tests
# running at once (tests/run.sh -j) take turns on one lock of their own, and
# the look-then-create is done under it.
#   user_lock CMD...                 run CMD holding the lock
#   ensure_group NAME                a system group NAME
#   ensure_user NAME [USERADD_ARGS]  a system user NAME (useradd --system ARGS)
user_lock() { flock /run/bascule-test-useradd.lock "$@"; }
ensure_group() { user_lock sh -c 'getent group "$1" >/dev/null || groupadd --system "$1"' sh "$1"; }
ensure_user() {
	local u=$1; shift
	id "$u" >/dev/null 2>&1 && return 0
	user_lock sh -c 'u=$1; shift; id "$u" >/dev/null 2>&1 || useradd --system "$@" "$u"' sh "$u" "$@"
}
# The unprivileged user basculed's network children run as (relay_user,
# default bascule), as `useradd --system bascule` makes it on a primary.
RELAY_USER=bascule
relay_user_up() {
	[ "$(id -u)" = 0 ] || return 0
	ensure_user "$RELAY_USER" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin
}
relay_user_up
# vault_dir DIR: a local: vault directory, writable by the vault writer.
vault_dir() { mkdir -p "$1"; [ "$(id -u)" != 0 ] || chown "$RELAY_USER" "$1"; }

# bsc_config [interval] [max_interval] [extra target lines...]: one group
# "vm1" with the sources in $SOURCES ("name:path ..."), one local target.
bsc_config() {
	local interval=${1:-1s} maxint=${2:-60s}
	shift 2 || true
	{
		echo "state_dir: $T/state"
		echo "key: $T/site.key"
		echo "control_socket: $T/ctl.sock"
		echo "groups:"
		echo "  - name: vm1"
		echo "    interval: $interval"
		echo "    max_interval: $maxint"
		echo "    sources:"
		for s in $SOURCES; do
			echo "      - name: ${s%%:*}"
			echo "        disk: ${s#*:}"
		done
		echo "targets:"
		echo "  - name: secondary"
		echo "    url: ${TARGET_URL:-local:$T/replica}"
		for l in "$@"; do echo "    $l"; done
	} > "$T/bascule.yaml"
}

bsc_keygen() { [ -f "$T/site.key" ] || "$BIN/bascule" keygen site "$T/site.key" >/dev/null; }

bsc_start() {
	"${NSEXEC[@]}" "$BIN/basculed" -c "$T/bascule.yaml" -v >> "$T/daemon.log" 2>&1 &
	DAEMON_PID=$!
	for _ in $(seq 1200); do
		[ -S "$T/ctl.sock" ] && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || fail "basculed exited at start: $(tail -3 "$T/daemon.log")"
		sleep 0.05
	done
	fail "basculed did not open its control socket within 60 s"
}

bsc_stop() {
	[ -n "$DAEMON_PID" ] || return 0
	kill "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=""
	rm -f "$T/ctl.sock"
}

# gone PID: the process has exited: it no longer exists, or is a zombie
# (dead, its parent not yet told: a receiver of a stopped basculed).
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(ps -o stat= -p "$1" | cut -c1)" = Z ]; }
bsc() { "$BIN/bascule" --socket "$T/ctl.sock" "$@"; }
bsc_sync() { bsc sync --wait --timeout "${1:-60s}"; }
replica_of() { echo "${REPLICA_DIR:-$T/replica}/vm1/$1"; }
recv_pid() { pgrep -f "bascule recv --root ${REPLICA_DIR:-$T/replica} --" | head -1 || true; }
# jq-like: status_get 'PYTHON EXPR on d' -> value (d = the status JSON)
status_get() { bsc status --json | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# The value of a field of target 0 in bascule status --json.
status_field() { status_get "d['targets'][0]['$1']"; }
# same_sparse A B: A and B hold the same bytes (a hole reads as zeros), as
# cmp -s says, reading only the data extents of either (SEEK_DATA): a large
# sparse disk compares in the time of its data.
same_sparse() {
	python3 - "$1" "$2" <<'PY'
import os, sys
fa, fb = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
def extents(fd):
    pos, end = 0, os.fstat(fd).st_size
    while pos < end:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        h = os.lseek(fd, d, os.SEEK_HOLE)
        yield d, h
        pos = h
def read(fd, off, n):
    b = os.pread(fd, n, off)
    return b + bytes(n - len(b))
for fd in (fa, fb):
    for d, h in extents(fd):
        while d < h:
            n = min(h - d, 8 << 20)
            if read(fa, d, n) != read(fb, d, n):
                sys.exit(1)
            d += n
sys.exit(0 if os.fstat(fa).st_size == os.fstat(fb).st_size else 1)
PY
}
