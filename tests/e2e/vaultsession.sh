# vaultsession: one of the vault writer's parallel SFTP sessions dies in the
# middle of a pack's upload (the provider's sshd process for that connection
# is killed, as a provider restarting a node would cut it).  The epoch in
# flight does not commit: no manifest appears, `vault check` passes, the
# half-written pack is only an unreferenced object; the daemon says what
# failed, the writer starts again with fresh sessions and the epoch commits;
# restore is byte-identical to the source.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
need_root
bsc_keygen
sites_up
vault_sftp_up
B="$BIN/bascule"

truncate -s 64M "$T/disk.img"
SOURCES="root:$T/disk.img"
bsc_config 1h 24h
cat >> "$T/bascule.yaml" <<EOF
  - name: offsite
    type: vault
    url: $URL
    identity: $T/id_ed25519
    known_hosts: $T/known_hosts_v
    vault_key: $T/vault.key
    interval: 1h
EOF
# VAULT_PARALLEL=1: the only session is the writer's own (packs put in line)
[ -z "${VAULT_PARALLEL:-}" ] || echo "    parallel: $VAULT_PARALLEL" >> "$T/bascule.yaml"
vault_rate 80mbit # ~7 s for the 64 MiB: time to catch a pack in flight
bsc_start
bsc sync --wait --vault --timeout 60s >/dev/null || fail "the first (empty) epoch did not reach the vault"
head -c $((64 << 20)) /dev/urandom | dd of="$T/disk.img" conv=notrunc status=none # 8 packs, incompressible
bsc sync --vault >/dev/null

# The provider's sshd forks one process per connection, whose descendants
# serve its SFTP session: find the connection of a process holding a pack
# open for writing (an upload session of the pool, not the writer's own),
# and kill that connection's processes, as a node restart would.
SSHD=$(cat "$T/ssh-provider/sshd.pid")
tree() { local c; echo "$1"; for c in $(pgrep -P "$1"); do tree "$c"; done; }
writing() { # PID...: true if one of them holds a file of d/ open, less than half written
	local p f o
	for p; do for f in /proc/"$p"/fd/*; do
		o=$(readlink "$f" 2>/dev/null) && [[ "$o" == "$V"/d/* ]] && [ "$(stat -c %s "$o")" -lt $((4 << 20)) ] && return 0
	done; done
	return 1
}
victim=
for _ in $(seq 600); do
	for c in $(pgrep -P "$SSHD"); do
		writing $(tree "$c") && { victim=$c; break 2; }
	done
	sleep 0.05
done
[ -n "$victim" ] || fail "no upload session seen writing a pack"
sessions=$(pgrep -c -P "$SSHD")
kill -9 $(tree "$victim")
note "killed one of $sessions SFTP connections while it wrote a pack"

# The writer reports the failed put and exits; basculed starts it again and
# the epoch commits over fresh sessions.
bsc sync --wait --vault --timeout 180s >/dev/null || fail "the epoch did not commit after the session died: $(tail -5 "$T/daemon.log")"
grep -q "vault .*$IP_V" "$T/daemon.log" || fail "the daemon log does not name the failed vault upload: $(tail -5 "$T/daemon.log")"
[ "$(ls "$V/m" | wc -l)" -ge 1 ] || fail "no manifest after the retry"
in_primary "$B" vault check --vault "$URL" "${SFTPW[@]}" --verify-key "$T/vault.key.pub" > "$T/check.out" 2>&1 \
	|| fail "vault check after the session died: $(cat "$T/check.out")"
in_primary "$B" restore --vault "$URL" "${SFTPW[@]}" --vault-key "$T/vault.key" --source vm1/root \
	--to "$T/restored" >/dev/null 2>"$T/restore.err" || fail "restore failed: $(cat "$T/restore.err")"
cmp -s "$T/restored" "$T/disk.img" || fail "the restored disk differs from the source"
note "epoch committed after the retry; check passes ($(grep -o '[0-9]* unreferenced' "$T/check.out") objects); restore identical"

bsc_stop
