# tests/lib/sites.sh - test sites in network namespaces (source after common.sh).
#
#   primary  192.0.2.1  ── veth ──  192.0.2.10  secondary  (real OpenSSH sshd)
#   primary  198.51.100.1 ─ veth ─ 198.51.100.20 provider  (real OpenSSH sshd)
#
# The inter-site links are shaped with tbf (default 1 Gbit/s).  This kernel
# has no netem (CONFIG_NET_SCH_NETEM is not set), so latency cannot be added;
# loss and cuts are made with nftables in the primary's namespace.
# Everything is removed at exit, even on failure (sites_down runs from the
# EXIT trap of common.sh).
#   sites_up                  namespaces, links, sshd on the secondary
#   sites_net_up              namespaces and links only (a test starting its own sshd)
#   sites_cut / sites_restore drop / pass every packet on the primary-secondary link
#   sites_loss PCT            drop PCT% of packets at random (0 to stop)
#   in_primary CMD...         run CMD in the primary's namespace
SITE_ID=$$
NS_P=bsc-p$SITE_ID NS_S=bsc-s$SITE_ID NS_V=bsc-v$SITE_ID
IP_P=192.0.2.1 IP_S=192.0.2.10 IP_P2=198.51.100.1 IP_V=198.51.100.20
SSH_USER=bascule-test
SITES_UP=0

in_primary() { ip netns exec "$NS_P" "$@"; }
in_secondary() { ip netns exec "$NS_S" "$@"; }

sites_down() {
	[ "$SITES_UP" = 1 ] || return 0
	for f in "$T"/ssh-*/sshd.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
	for ns in "$NS_P" "$NS_S" "$NS_V"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	SITES_UP=0
}
EXIT_HOOKS+=(sites_down)

# start_sshd NAME NS ADDR [USER]: a real sshd for USER (default: the test
# user; root is allowed with keys only), keys under $T/ssh-NAME
start_sshd() {
	local name=$1 ns=$2 addr=$3 d="$T/ssh-$1" user=${4:-$SSH_USER}
	mkdir -p "$d" /run/sshd
	[ -f "$d/host_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$d/host_key" -C "$name"
	touch "$d/authorized_keys"
	chown "$user" "$d/authorized_keys"; chmod 600 "$d/authorized_keys"
	cat > "$d/sshd_config" <<CONF
ListenAddress $addr:22
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin $([ "$user" = root ] && echo prohibit-password || echo no)
AllowUsers $user
LogLevel VERBOSE
ClientAliveInterval 10
CONF
	ip netns exec "$ns" /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
	for _ in $(seq 50); do ip netns exec "$ns" bash -c "echo > /dev/tcp/$addr/22" 2>/dev/null && return 0; sleep 0.1; done
	fail "sshd $name did not start: $(tail -5 "$d/sshd.log")"
}

sites_up() {
	need_root
	command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || fail "openssh-server is not installed"
	ensure_user "$SSH_USER" --create-home --home-dir "/var/lib/$SSH_USER" --shell /bin/sh
	user_lock usermod -d "/var/lib/$SSH_USER" "$SSH_USER" 2>/dev/null || true
	mkdir -p "/var/lib/$SSH_USER"; chown "$SSH_USER" "/var/lib/$SSH_USER"
	# A locked account (useradd's default) is refused by sshd without PAM: no
	# password at all ("*") is what a key-only account needs.
	user_lock usermod -p '*' "$SSH_USER" 2>/dev/null || true
	sites_net_up
	start_sshd secondary "$NS_S" "$IP_S"
	# The daemon's SSH identity, authorised on the secondary with command=.
	ssh-keygen -q -t ed25519 -N "" -f "$T/id_ed25519" -C bascule-primary
	chmod 600 "$T/id_ed25519"
}

sites_net_up() {
	need_root
	chmod 711 "$T"
	for ns in "$NS_P" "$NS_S" "$NS_V"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
	SITES_UP=1
	ip link add "bp$SITE_ID" netns "$NS_P" type veth peer name "bs$SITE_ID" netns "$NS_S"
	ip link add "bq$SITE_ID" netns "$NS_P" type veth peer name "bv$SITE_ID" netns "$NS_V"
	ip -n "$NS_P" addr add "$IP_P/24" dev "bp$SITE_ID"
	ip -n "$NS_S" addr add "$IP_S/24" dev "bs$SITE_ID"
	ip -n "$NS_P" addr add "$IP_P2/24" dev "bq$SITE_ID"
	ip -n "$NS_V" addr add "$IP_V/24" dev "bv$SITE_ID"
	for l in "$NS_P bp" "$NS_S bs" "$NS_P bq" "$NS_V bv"; do
		set -- $l; ip -n "$1" link set "$2$SITE_ID" up
	done
	sites_rate "${LINK_RATE:-1gbit}"
	in_primary nft add table inet bsclink
	in_primary nft add chain inet bsclink out '{ type filter hook output priority 0; }'
	in_primary nft add chain inet bsclink in '{ type filter hook input priority 0; }'
}

# sites_rate RATE: shape both directions of the primary-secondary link.
sites_rate() {
	ip netns exec "$NS_P" tc qdisc replace dev "bp$SITE_ID" root tbf rate "$1" burst 512kb latency 50ms
	ip netns exec "$NS_S" tc qdisc replace dev "bs$SITE_ID" root tbf rate "$1" burst 512kb latency 50ms
}

sites_flush() { in_primary nft flush chain inet bsclink out; in_primary nft flush chain inet bsclink in; }
sites_cut() {
	sites_flush
	in_primary nft add rule inet bsclink out ip daddr "$IP_S" drop
	in_primary nft add rule inet bsclink in ip saddr "$IP_S" drop
}
sites_restore() { sites_flush; }
sites_loss() {
	sites_flush
	[ "$1" = 0 ] && return 0
	in_primary nft add rule inet bsclink out ip daddr "$IP_S" numgen random mod 100 '<' "$1" drop
	in_primary nft add rule inet bsclink in ip saddr "$IP_S" numgen random mod 100 '<' "$1" drop
}

# authorize_recv ROOT [KEYFILE]: the secondary's authorized_keys line for the
# daemon's key, restricted to `bascule recv --root ROOT`.
authorize_recv() {
	local root=$1
	mkdir -p "$root" "$T/secondary"
	cp "$T/site.key" "$T/secondary/site.key"
	chown -R "$SSH_USER" "$root" "$T/secondary"; chmod 600 "$T/secondary/site.key"
	echo "restrict,command=\"$BIN/bascule recv --root $root --key $T/secondary/site.key\" $(cat "$T/id_ed25519.pub")" \
		> "$T/ssh-secondary/authorized_keys"
}

# trust the secondary's host key in $T/known_hosts (from the primary)
trust_secondary() {
	in_primary "$BIN/bascule" trust-host "$IP_S" --known-hosts "$T/known_hosts" --yes >/dev/null \
		|| fail "trust-host failed"
}

# sshd_conf_head DIR USER...: the start of an sshd_config for an SFTP-only
# server on $IP_V:22 (host key, pid file and DIR/authorized_keys.USER in
# DIR) admitting only USERs; the caller appends its Match blocks.
sshd_conf_head() {
	local d=$1; shift
	cat <<CONF
ListenAddress $IP_V:22
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys.%u
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $*
LogLevel VERBOSE
Subsystem sftp internal-sftp
CONF
}
# sshd_start_v DIR: start sshd with DIR/sshd_config in $NS_V (log in
# DIR/sshd.log) and wait until it accepts connections.
sshd_start_v() {
	ip netns exec "$NS_V" /usr/sbin/sshd -f "$1/sshd_config" -E "$1/sshd.log"
	for _ in $(seq 50); do
		ip netns exec "$NS_V" bash -c "echo > /dev/tcp/$IP_V/22" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "sshd in $NS_V does not accept connections: $(tail -5 "$1/sshd.log")"
}

# provider_up: the backup provider's real sshd on $IP_V serving SFTP only,
# chrooted to $VAULT_CHROOT (root-owned, outside /tmp as sshd demands), to
# two accounts of group bscvault:
#   bscvault-w  the daemon's write-once account:
#               internal-sftp -P remove,rmdir,rename,posix-rename
#   bscvault-p  the pruning account (may delete)
# The vault directory is $VAULT_CHROOT/vault (sftp path /vault).  Keys:
# $T/id_ed25519 for the writer, $T/id_prune for the pruner; the provider's
# host key is trusted in $T/known_hosts_v.
VAULT_CHROOT=/srv/bascule-test-vault-$SITE_ID
provider_down() { rm -rf "$VAULT_CHROOT"; }
provider_up() {
	local d="$T/ssh-provider" u
	EXIT_HOOKS+=(provider_down)
	ensure_group bscvault
	for u in bscvault-w bscvault-p; do
		ensure_user "$u" -g bscvault -M -d /nonexistent -s /usr/sbin/nologin
		user_lock usermod -p '*' "$u"
	done
	mkdir -p "$VAULT_CHROOT/vault" "$d" /run/sshd
	chown root:root "$VAULT_CHROOT"; chmod 755 "$VAULT_CHROOT"
	chown bscvault-w:bscvault "$VAULT_CHROOT/vault"; chmod 2770 "$VAULT_CHROOT/vault"
	ssh-keygen -q -t ed25519 -N "" -f "$d/host_key" -C provider
	ssh-keygen -q -t ed25519 -N "" -f "$T/id_prune" -C bascule-prune
	[ -f "$T/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$T/id_ed25519" -C bascule-primary
	cp "$T/id_ed25519.pub" "$d/authorized_keys.bscvault-w"
	cp "$T/id_prune.pub" "$d/authorized_keys.bscvault-p"
	{ sshd_conf_head "$d" bscvault-w bscvault-p; cat <<CONF; } > "$d/sshd_config"
Match User bscvault-w
	ChrootDirectory $VAULT_CHROOT
	ForceCommand internal-sftp -u 0007 -P remove,rmdir,rename,posix-rename
	AllowTcpForwarding no
	X11Forwarding no
Match User bscvault-p
	ChrootDirectory $VAULT_CHROOT
	ForceCommand internal-sftp -u 0007
	AllowTcpForwarding no
	X11Forwarding no
CONF
	sshd_start_v "$d"
	in_primary "$BIN/bascule" trust-host "$IP_V" --known-hosts "$T/known_hosts_v" --yes >/dev/null \
		|| fail "trust-host of the provider failed: $(tail -5 "$d/sshd.log")"
}

# vault_sftp_up: provider_up, a vault key, and what the vault tests use:
# V (the vault directory), URL and PURL (the writer's and the pruner's
# sftp:// URLs), SFTPW (the writer's --identity/--known-hosts), NSEXEC (run
# basculed in the primary's namespace).
vault_sftp_up() {
	provider_up
	NSEXEC=(ip netns exec "$NS_P")
	V="$VAULT_CHROOT/vault"
	URL="sftp://bscvault-w@$IP_V/vault"
	PURL="sftp://bscvault-p@$IP_V/vault"
	"$BIN/bascule" keygen vault "$T/vault.key" >/dev/null
	SFTPW=(--identity "$T/id_ed25519" --known-hosts "$T/known_hosts_v")
}

# vault_rate RATE: shape the primary-provider link both ways.
vault_rate() {
	ip netns exec "$NS_P" tc qdisc replace dev "bq$SITE_ID" root tbf rate "$1" burst 512kb latency 50ms
	ip netns exec "$NS_V" tc qdisc replace dev "bv$SITE_ID" root tbf rate "$1" burst 512kb latency 50ms
}

# A site's own filesystem, for tests that run an operator's commands as root
# "on the site" (tests/e2e/setup_doc.sh): a persistent mount namespace in
# which SITE_DIRS are overlays on this machine's directories, the writes
# going to $T/fs-NAME.  Useradd, make install, /etc/bascule, sshd's
# /run/sshd: nothing outside the test changes, and the primary and the
# secondary do not share files they would not share between two machines.
#   site_fs_up NAME NETNS     create it; commands then run in NETNS too
#   in_site NAME CMD...       run CMD as root on the site (root's PATH)
#   site_argv NAME            SITE_ARGV=(the command prefix of in_site), for
#                             a background job whose $! must be CMD itself
SITE_DIRS="/etc /usr/local /var/lib /srv /run /root"
SITE_FS=()
site_fs_down() {
	local n
	for n in "${SITE_FS[@]}"; do umount "$T/fs-ns/$n" 2>/dev/null || umount -l "$T/fs-ns/$n"; done
	[ ${#SITE_FS[@]} -eq 0 ] || umount -l "$T/fs-ns"
	SITE_FS=()
	return 0
}
site_fs_up() {
	local name=$1 d="$T/fs-$1" dir
	if [ ${#SITE_FS[@]} -eq 0 ]; then
		EXIT_HOOKS+=(site_fs_down)
		# A namespace file can be bound only on a private mount (as /run/netns).
		mkdir -p "$T/fs-ns"
		mount --bind "$T/fs-ns" "$T/fs-ns"
		mount --make-private "$T/fs-ns"
	fi
	SITE_FS+=("$name")
	mkdir -p "$d"
	touch "$T/fs-ns/$name"
	unshare --mount="$T/fs-ns/$name" --propagation private true
	eval "SITE_NET_$name=$2"
	for dir in $SITE_DIRS; do
		mkdir -p "$d/upper$dir" "$d/work$dir"
		nsenter --mount="$T/fs-ns/$name" mount -t overlay overlay \
			-o "lowerdir=$dir,upperdir=$d/upper$dir,workdir=$d/work$dir" "$dir" \
			|| fail "cannot overlay $dir for site $name"
	done
}
site_argv() {
	local net
	eval "net=\$SITE_NET_$1"
	SITE_ARGV=(nsenter --mount="$T/fs-ns/$1" --net="/run/netns/$net" --
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
		LANG=C.UTF-8 TERM="${TERM:-dumb}"
		${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} ${UBSAN_OPTIONS:+UBSAN_OPTIONS=$UBSAN_OPTIONS})
}
in_site() {
	site_argv "$1"; shift
	"${SITE_ARGV[@]}" "$@"
}
