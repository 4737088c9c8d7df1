# tests/lib/runbook.sh - what the drill tests share (source after sites.sh;
# tests/e2e/drill.sh with QEMU guests, tests/lib/pgdrill.sh with PostgreSQL).
# The orchestrator runs at the secondary site and reaches the primary over
# SSH as root there (start_sshd primary "$NS_P" "$IP_P" root first).
#   drill_orchestrator_up   its key for the primary ($T/drill_id), the
#                           primary's host key ($T/drill_known_hosts), the
#                           report signing key ($T/sign.key)
#   runbook_sites [SECONDARY_LINES...]
#                           a runbook's hosts, primary and secondary (replica
#                           root $R) sections; the lines go into secondary
#   runbook_report          its report (signed, in $T/reports) and state_dir
#   (for a heredoc: $(runbook_sites ...))

drill_orchestrator_up() {
	ssh-keygen -q -t ed25519 -N "" -f "$T/drill_id" -C drill
	cat "$T/drill_id.pub" > "$T/ssh-primary/authorized_keys"
	in_secondary "$BIN/bascule" trust-host "$IP_P" --known-hosts "$T/drill_known_hosts" --yes >/dev/null \
		|| fail "trust-host of the primary failed"
	"$BIN/bascule" keygen signing "$T/sign.key" >/dev/null
}

runbook_sites() {
	local l
	cat <<YAML
hosts:
  - name: primary
    url: ssh://root@$IP_P:22
    identity: $T/drill_id
    known_hosts: $T/drill_known_hosts
  - name: secondary
    url: local
primary:
  host: primary
  bascule: $BIN/bascule
  control_socket: $T/ctl.sock
  sync_timeout: 60s
secondary:
  host: secondary
  bascule: $BIN/bascule
  replica_root: $R
  site_key: $T/secondary/site.key
YAML
	for l in "$@"; do echo "  $l"; done
}

runbook_report() {
	cat <<YAML
report:
  dir: $T/reports
  signing_key: $T/sign.key
state_dir: $T/drillstate
YAML
}
