# privsep: the processes of the primary that touch the network run as the
# unprivileged relay_user and cannot reach the disks or the site key.
# During replication over ssh (the test sites' real sshd) and to a vault,
# `ps -o user,cmd` shows `bascule relay` and `bascule vault recv` as that
# user while basculed is root; the test hook BASCULE_RELAY_PROBE makes each
# try to open a replicated disk (mode 0644: only the Landlock sandbox stops
# it), the site key and the other's files after dropping privileges, and
# each gets EACCES, while /etc stays readable (the resolver) and the vault
# writer reaches its own directories.  Also: a missing or root relay_user
# is a configuration error (exit 3) naming the key and the useradd command;
# run by another user, the relay keeps that user; without Landlock (a test
# hook plays such a kernel) the relay says so and still drops to the user;
# basculed itself is not dumpable.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
command -v setpriv >/dev/null || { echo "SKIP: no setpriv (util-linux)"; exit 77; }
sites_up
bsc_keygen
"$BIN/bascule" keygen vault "$T/vault.key" >/dev/null
truncate -s 16M "$T/disk.img"
"$BIN/tests/randwrite" "$T/disk.img" 500 1
chmod 644 "$T/disk.img" # readable by anyone: only the sandbox keeps the relay out
R=$T/secondary/replica
authorize_recv "$R"
trust_secondary
vault_dir "$T/vault"
ruid=$(id -u "$RELAY_USER")
write_config() { # FILE [RELAY_USER]
	cat > "$1" <<YAML
state_dir: $T/state
key: $T/site.key
control_socket: $T/ctl.sock
${2:+relay_user: $2}
groups:
  - name: vm1
    interval: 1h
    max_interval: 24h
    sources:
      - name: root
        disk: $T/disk.img
targets:
  - name: secondary
    url: ssh://$SSH_USER@$IP_S$R
    identity: $T/id_ed25519
    known_hosts: $T/known_hosts
  - name: offsite
    type: vault
    url: local:$T/vault
    vault_key: $T/vault.key
YAML
}
write_config "$T/bascule.yaml"

# 1. relay_user missing, or root: refused at start, exit 3, saying how.
write_config "$T/nouser.yaml" bascule-nosuchuser
expect_rc 3 "$BIN/basculed" -c "$T/nouser.yaml" --check-config
grep -q "relay_user 'bascule-nosuchuser' does not exist: create it with \`useradd --system bascule-nosuchuser\`" "$T/err" \
	|| fail "no clear error for a missing relay_user: $(cat "$T/err")"
write_config "$T/root.yaml" root
expect_rc 3 "$BIN/basculed" -c "$T/root.yaml" --check-config
grep -q "relay_user 'root' is root" "$T/err" || fail "relay_user root accepted: $(cat "$T/err")"
note "a missing or root relay_user: exit 3, with the useradd command"

# 2. Replication over ssh and to the vault; the children as relay_user.
PROBE="$T/disk.img:$T/site.key:$T/vault.key:$T/id_ed25519:$T/state/groups/vm1/root.map:/etc/hostname"
NSEXEC=(ip netns exec "$NS_P" env "BASCULE_RELAY_PROBE=$PROBE")
bsc_start
bsc_sync 60s >/dev/null || fail "sync over ssh and to the vault"
cmp "$T/disk.img" "$R/vm1/root" || fail "the replica differs"
ps -eo user:32,cmd > "$T/ps"
grep -E "^$RELAY_USER +[^ ]*bascule relay --url ssh://" "$T/ps" >/dev/null \
	|| fail "the relay does not run as $RELAY_USER: $(grep "bascule relay" "$T/ps")"
grep -E "^$RELAY_USER +[^ ]*bascule vault recv " "$T/ps" >/dev/null \
	|| fail "the vault writer does not run as $RELAY_USER: $(grep "vault recv" "$T/ps")"
grep -E "^root +[^ ]*basculed " "$T/ps" >/dev/null || fail "basculed is not root here: $(grep basculed "$T/ps")"
note "ps -o user,cmd: $(grep -E "bascule (relay|vault recv) " "$T/ps" | awk '{print $1, "bascule", $3, $4}' | sort -u | tr '\n' ';')"

LOG_FROM=1
log_now() { tail -n +"$LOG_FROM" "$T/daemon.log"; }
probe() { # WHO PATH RESULT: the daemon logged that WHO's probe of PATH gave RESULT
	log_now | grep -qF "receiver: $1: probe: open $2: $3" \
		|| fail "$1 did not report '$3' for $2: $(log_now | grep "$1: probe" | head -8)"
}
# Sanitizer builds stay dumpable: LeakSanitizer attaches to the process's
# own threads at exit, which a non-dumpable process of another uid forbids.
dump=0; case "$BIN" in *-san) dump=1 ;; esac
for who in "bascule relay" "bascule-vault"; do
	log_now | grep -qE "receiver: $who: probe: uid $ruid gid [0-9]+, dumpable $dump, no_new_privs 1, landlock abi [1-9]" \
		|| fail "$who is not uid $ruid, undumpable, no_new_privs, in Landlock: $(grep "$who: probe: uid" "$T/daemon.log" | head -2)"
	for f in "$T/disk.img" "$T/site.key" "$T/vault.key" "$T/id_ed25519" "$T/state/groups/vm1/root.map"; do
		probe "$who" "$f" "errno 13 (Permission denied)"
	done
done
probe "bascule relay" /etc/hostname ok
note "relay and vault writer: EACCES on the disk, the site key, the vault key, the identity, the block map"
# The vault writer reaches what it needs, and nothing of the relay's.
bsc_stop
# Relative names are the vault writer's cache (its working directory).
PROBE="$T/vault:committed:pending:$T/state/vault/offsite/committed"
NSEXEC=(ip netns exec "$NS_P" env "BASCULE_RELAY_PROBE=$PROBE")
LOG_FROM=$(($(wc -l < "$T/daemon.log") + 1))
bsc_start
"$BIN/tests/randwrite" "$T/disk.img" 50 2
bsc_sync 60s >/dev/null || fail "sync after the restart"
probe "bascule-vault" "$T/vault" ok
probe "bascule-vault" committed ok
probe "bascule-vault" pending ok
probe "bascule relay" "$T/vault" "errno 13 (Permission denied)"
probe "bascule relay" "$T/state/vault/offsite/committed" "errno 13 (Permission denied)"
[ "$(stat -c %U "$T/state/vault/offsite")" = "$RELAY_USER" ] || fail "the vault cache is not $RELAY_USER's"
[ "$(stat -c %U "$T/state")" = root ] && [ "$(stat -c %a "$T/state")" = 700 ] || fail "state_dir is not root's, 0700"
note "the vault writer reaches its cache and the vault directory; the relay neither"
bsc_stop

# 3. Run by another user, the relay keeps it (and says nothing of root).
cp "$T/id_ed25519" "$T/id_user"; chown "$SSH_USER" "$T/id_user"
set +e
in_primary env BASCULE_RELAY_PROBE=/etc/hostname setpriv --reuid="$SSH_USER" --regid="$(id -g "$SSH_USER")" \
	--clear-groups "$BIN/bascule" relay --url "ssh://$SSH_USER@$IP_S$R" --identity "$T/id_user" \
	--known-hosts "$T/known_hosts" --command "bascule recv --root '$R'" < /dev/null > /dev/null 2> "$T/user.err"
set -e
grep -q "bascule relay: probe: uid $(id -u "$SSH_USER") " "$T/user.err" \
	|| fail "run as $SSH_USER the relay changed user: $(cat "$T/user.err")"
note "run as $SSH_USER, the relay stays $SSH_USER"

# 4. A kernel without Landlock: the relay says so, and still drops to the user.
set +e
in_primary env BASCULE_TEST_NO_LANDLOCK=1 BASCULE_RELAY_PROBE="$T/disk.img" "$BIN/bascule" relay \
	--url "ssh://$SSH_USER@$IP_S$R" --identity "$T/id_ed25519" --known-hosts "$T/known_hosts" \
	--command "bascule recv --root '$R'" < /dev/null > /dev/null 2> "$T/noll.err"
set -e
grep -q "bascule relay: warning: this kernel has no Landlock .*running as uid $ruid with no_new_privs but without a filesystem sandbox" \
	"$T/noll.err" || fail "no warning without Landlock: $(cat "$T/noll.err")"
grep -q "probe: uid $ruid .*no_new_privs 1" "$T/noll.err" || fail "without Landlock the relay kept root: $(cat "$T/noll.err")"
probe_line=$(grep "probe: open $T/disk.img" "$T/noll.err")
note "without Landlock: warned, uid $ruid, no_new_privs ($probe_line: DAC alone)"

# 5. basculed is not dumpable: run as a user, its /proc files stay root's.
mkdir -p "$T/u"; cp "$T/disk.img" "$T/u/disk.img"; "$BIN/bascule" keygen site "$T/u/site.key" >/dev/null
cat > "$T/u/bascule.yaml" <<YAML
state_dir: $T/u/state
key: $T/u/site.key
control_socket: $T/u/ctl.sock
groups:
  - name: vm1
    sources: [{name: root, disk: $T/u/disk.img}]
targets:
  - name: local
    url: local:$T/u/replica
YAML
chown -R "$SSH_USER" "$T/u"
setpriv --reuid="$SSH_USER" --regid="$(id -g "$SSH_USER")" --clear-groups "$BIN/basculed" -c "$T/u/bascule.yaml" \
	>> "$T/u/daemon.log" 2>&1 &
UPID=$!
upid_stop() { kill "$UPID" 2>/dev/null; }
EXIT_HOOKS+=(upid_stop)
for _ in $(seq 100); do [ -S "$T/u/ctl.sock" ] && break; sleep 0.1; done
[ -S "$T/u/ctl.sock" ] || fail "basculed as $SSH_USER did not start: $(cat "$T/u/daemon.log")"
[ "$(stat -c %U /proc/$UPID/environ)" = root ] || fail "basculed run by $SSH_USER is dumpable (its /proc files are $(stat -c %U /proc/$UPID/environ)'s)"
kill $UPID; wait $UPID 2>/dev/null || true
note "basculed is not dumpable (/proc/PID/environ stays root's)"
