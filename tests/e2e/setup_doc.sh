# setup_doc: docs/secondary-setup.md followed as written.  The commands are
# the doc's own fenced blocks, extracted from the file and run in its order,
# as root, on two sites: network namespaces joined by a link (tests/lib/
# sites.sh), each with its own view of /etc, /usr/local, /var/lib, /srv,
# /run and /root (site_fs_up), the secondary running this machine's sshd
# with its stock configuration.  It ends with replication working over ssh
# and `bascule replica verify` passing: a changed doc changes the test.
#
# How blocks are read:
#   ```sh blocks    their first line says where: "# on the primary",
#                   "# on the secondary" or "# on both sites"; ", in the
#                   source tree" runs it in the source tree, else in the
#                   site's working directory; ", with F [and G] from the
#                   primary" first copies the primary's /etc/bascule/F there
#                   (the doc's "copy it by a channel you trust").  A block
#                   with no site fails the test.
#   ```yaml blocks  "# PATH on the primary|secondary": written to PATH there.
#   ``` blocks      (no language) illustrations, not run.
# The substitutions, all of them:
#   - `make ...` runs as `make B=BUILD_DIR ...` (SAN=1 for a sanitizer build):
#     the build under test is the one installed;
#   - `systemctl enable --now|start|stop basculed`: systemd is not PID 1
#     here, so the test runs the installed unit's ExecStartPre= and
#     ExecStart= itself (stop: SIGTERM, as systemd);
#   - a block whose comment shows an answer ("[y/N]? y") runs on a terminal
#     (script(1)) where that answer is typed.
# The fixtures a real pair of sites would have: the link and the name
# secondary.example.net (in the primary's /etc/hosts), sshd running on the
# secondary (as its ssh.service would, /run/sshd included), and the VM disk
# /var/lib/libvirt/images/web1.img the configuration names; no bascule user
# on either site.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
DOC=$ROOT/docs/secondary-setup.md
for c in script unshare nsenter runuser /usr/sbin/sshd; do
	command -v "$c" >/dev/null || fail "$c is not installed"
done
sites_net_up
site_fs_up primary "$NS_P"
site_fs_up secondary "$NS_S"
for s in primary secondary; do mkdir -p "$T/cwd-$s"; done
MAKE_ARGS="B=$BIN"
grep -q __asan_init "$BIN/bascule" && MAKE_ARGS="$MAKE_ARGS SAN=1"

# Fixtures.  The sites are fresh machines: users this test machine has for
# other tests (the relay_user of tests/lib/common.sh) are not theirs.
for s in primary secondary; do
	in_site "$s" sh -c '! id bascule >/dev/null 2>&1 || userdel -f bascule' || fail "cannot make site $s fresh"
done
in_site secondary sh -c 'mkdir -p /run/sshd && /usr/sbin/sshd -E /var/log/sshd-test.log' \
	|| fail "the secondary's sshd did not start"
in_site primary sh -c "echo '$IP_S secondary.example.net' >> /etc/hosts"
in_site primary sh -c 'mkdir -p /var/lib/libvirt/images && truncate -s 32M /var/lib/libvirt/images/web1.img'
in_site primary "$BIN/tests/randwrite" /var/lib/libvirt/images/web1.img 2000 1
for _ in $(seq 100); do
	in_primary bash -c "echo > /dev/tcp/$IP_S/22" 2>/dev/null && break
	sleep 0.1
done

# The blocks, in order: $T/doc/N.{sh,yaml} and a list "N LANG TAG".
mkdir -p "$T/doc"
awk -v d="$T/doc" '
	/^```(sh|yaml)$/ { lang = substr($0, 4); n++; f = sprintf("%s/%02d.%s", d, n, lang); first = 1; next }
	/^```$/ && f != "" { close(f); f = ""; next }
	/^```/ { next }
	f != "" { if (first) { printf "%02d %s %s\n", n, lang, $0 > (d "/list"); first = 0 } print > f }
' "$DOC"
[ -s "$T/doc/list" ] || fail "no command blocks found in $DOC"
note "$(wc -l < "$T/doc/list") blocks in $(basename "$DOC")"

UNIT_DIRS="/etc/systemd/system /usr/local/lib/systemd/system /usr/lib/systemd/system /lib/systemd/system"
unit_line() { # KEY: the installed unit's KEY= line on the primary, as systemd finds it
	in_site primary sh -c "for d in $UNIT_DIRS; do [ -f \$d/basculed.service ] && exec sed -n 's/^$1=//p' \$d/basculed.service; done; exit 1" \
		|| fail "no basculed.service installed on the primary"
}
unit_start() {
	local pre start
	pre=$(unit_line ExecStartPre); start=$(unit_line ExecStart)
	[ -n "$start" ] || fail "the installed unit has no ExecStart="
	# shellcheck disable=SC2086
	in_site primary $pre >> "$T/daemon.log" 2>&1 || fail "ExecStartPre=$pre failed: $(tail -3 "$T/daemon.log")"
	site_argv primary
	# shellcheck disable=SC2086
	"${SITE_ARGV[@]}" $start >> "$T/daemon.log" 2>&1 &
	DAEMON_PID=$!
	for _ in $(seq 200); do
		in_site primary test -S /run/bascule/status.sock && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || fail "basculed exited at start: $(tail -3 "$T/daemon.log")"
		sleep 0.05
	done
	fail "basculed did not open /run/bascule/status.sock"
}
unit_stop() {
	kill "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=""
}

# run_sh N SITE DIR: block N on SITE in DIR; its output in $T/doc/N.out.
run_sh() {
	local n=$1 site=$2 dir=$3 script="$T/doc/$1.$2.run" seg=0 line
	: > "$T/doc/$n.out"
	rm -f "$script".*
	# Split at the systemctl lines, which the test runs itself.
	while IFS= read -r line || [ -n "$line" ]; do
		case "$line" in
		"systemctl enable --now basculed"* | "systemctl start basculed"* | "systemctl stop basculed"*)
			run_part "$n" "$site" "$dir" "$script.$seg"; seg=$((seg + 1))
			case "$line" in *stop*) unit_stop ;; *) unit_start ;; esac
			continue ;;
		make | make\ *) line="make $MAKE_ARGS${line#make}" ;;
		esac
		printf '%s\n' "$line" >> "$script.$seg"
	done < "$T/doc/$n.sh"
	run_part "$n" "$site" "$dir" "$script.$seg"
}
run_part() { # N SITE DIR FILE
	local rc
	[ -s "$4" ] || return 0
	{ echo "cd '$3'"; cat "$4"; } > "$4.x"
	set +e
	if grep -q '\[y/N\]? y' "$4"; then
		printf 'y\n' | in_site "$2" script -qec "bash -euo pipefail $4.x" /dev/null 2>&1 | tr -d '\r' >> "$T/doc/$1.out"
	else
		in_site "$2" bash -euo pipefail "$4.x" >> "$T/doc/$1.out" 2>&1 < /dev/null
	fi
	rc=${PIPESTATUS[0]}
	set -e
	[ "$rc" -eq 0 ] || fail "block $1 of $(basename "$DOC") on the $2 exited $rc:
$(cat "$4")
--- output:
$(tail -20 "$T/doc/$1.out")"
}

while read -r n lang tag <&3; do
	case "$lang" in
	yaml)
		read -r _ path _ _ site <<< "$tag"
		case "$tag" in "# /"*" on the primary" | "# /"*" on the secondary") ;;
		*) fail "yaml block $n does not say 'PATH on the primary|secondary': $tag" ;; esac
		in_site "$site" sh -c "cat > '$path'" < "$T/doc/$n.yaml"
		continue ;;
	esac
	case "$tag" in
	"# on the primary"*) sites=primary ;;
	"# on the secondary"*) sites=secondary ;;
	"# on both sites"*) sites="secondary primary" ;;
	*) fail "block $n of $(basename "$DOC") does not say where it runs: $tag" ;;
	esac
	for site in $sites; do
		dir=$T/cwd-$site
		case "$tag" in *", in the source tree"*) dir=$ROOT ;; esac
		case "$tag" in *", with "*" from the primary"*)
			files=${tag#*, with }; files=${files% from the primary*}
			for f in ${files// and / }; do
				in_site primary cat "/etc/bascule/$f" > "$dir/$f" || fail "block $n: no /etc/bascule/$f on the primary"
			done ;;
		esac
		run_sh "$n" "$site" "$dir"
	done
done 3< "$T/doc/list"
note "every block of the guide ran"
san=$(grep -lE "runtime error|AddressSanitizer|LeakSanitizer" "$T"/doc/*.out || true)
[ -z "$san" ] || fail "sanitizer report in the output of a block: $(cat $san | head -30)"

# What the guide tells the operator to compare, compared.
blk() { grep -l -- "$1" "$T"/doc/[0-9]*.sh | head -1 | sed 's/\.sh$/.out/'; }
keygen_id=$(sed -n 's/.*(key id \([0-9a-f]*\)).*/\1/p' "$(blk "bascule keygen site")")
[ -n "$keygen_id" ] && grep -qx "$keygen_id" "$(blk "bascule key id")" \
	|| fail "the secondary's key id is not the one keygen printed ($keygen_id): $(cat "$(blk "bascule key id")")"
fp=$(grep -o "presents [^ ]* key SHA256:[^ ]*" "$(blk "bascule trust-host")" | awk '{ print $4 }')
[ -n "$fp" ] && grep -q " $fp " "$(blk "ssh-keygen -lf")" \
	|| fail "trust-host showed $fp, not among the fingerprints read on the secondary: $(cat "$(blk "ssh-keygen -lf")")"
hand=$(blk "UserKnownHostsFile=/etc/bascule/known_hosts")
grep -q "ready: replica directory /srv/bascule/replica, site key /etc/bascule/site.key (key id $keygen_id)" "$hand" \
	|| fail "the hand test of the key did not report a ready receiver: $(cat "$hand")"
grep -q "^web1/root: OK at epoch [1-9]" "$(blk "replica verify")" \
	|| fail "replica verify did not check web1/root: $(cat "$(blk "replica verify")")"
note "key ids, host key fingerprint and the hand test agree"

# Replication goes on over ssh: a write on the primary reaches the replica.
digest() { in_site "$1" sha256sum "$2" | cut -d' ' -f1; }
in_site primary "$BIN/tests/randwrite" /var/lib/libvirt/images/web1.img 300 2
in_site primary bascule sync --wait --timeout 60s > /dev/null || fail "sync --wait after the guide"
[ "$(digest primary /var/lib/libvirt/images/web1.img)" = "$(digest secondary /srv/bascule/replica/web1/root)" ] \
	|| fail "the replica differs from the disk after sync --wait"
# The hand test, again while replication runs: the live receiver stays.
live=$(in_site secondary pgrep -u bascule -f "bascule recv" | head -1)
[ -n "$live" ] || fail "no receiver on the secondary while the daemon runs"
n=$(basename "$hand" .out)
run_sh "$n" primary "$T/cwd-primary"
grep -q "replication was not disturbed" "$hand" || fail "the hand test while replicating: $(cat "$hand")"
in_site primary "$BIN/tests/randwrite" /var/lib/libvirt/images/web1.img 300 3
in_site primary bascule sync --wait --timeout 60s > /dev/null || fail "sync --wait after the hand test"
[ "$(in_site secondary pgrep -u bascule -f "bascule recv" | head -1)" = "$live" ] \
	|| fail "the hand test took the replica over from the live receiver"
[ "$(digest primary /var/lib/libvirt/images/web1.img)" = "$(digest secondary /srv/bascule/replica/web1/root)" ] \
	|| fail "the replica differs from the disk after the hand test"
[ "$(in_site secondary stat -c %U /srv/bascule/replica/web1/root)" = bascule ] || fail "the replica is not the receiving user's"
note "replication over ssh goes on; a hand test leaves the live receiver alone"
