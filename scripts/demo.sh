#!/bin/bash
# demo.sh BUILD_DIR - the out-of-the-box run: a sample VM disk with a real
# ext4 filesystem, replicated to a local secondary while it is written to.
# Everything lives in ./demo/ (removed and recreated on each run).
# Every wait is for a condition (bounded, so a broken build fails instead of
# hanging), never a sleep that a loaded machine could outrun.
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
D=$(pwd)/demo
if [ -t 1 ]; then
	say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	say() { printf '\n== %s\n' "$*"; }
fi
die() { echo "demo: FAILED: $*" >&2; exit 1; }
# The database step's files live outside demo/ (PostgreSQL's user must reach
# them, and a home directory may be private); demo/pg points there.
[ -L "$D/pg" ] && rm -rf "$(readlink "$D/pg")"
rm -rf "$D"; mkdir -p "$D/sample"
PG_BIN=/usr/lib/postgresql/15/bin
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
	[ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	for d in "${PGDATA_DIRS[@]}"; do
		[ -f "$d/postmaster.pid" ] && pg_as "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
	done
	# (the sample filesystem is mounted in a mount namespace of its own,
	# which goes with its last process: nothing to unmount here)
	true
}
trap cleanup EXIT
# start_daemon: basculed in the background, then wait until its status
# socket answers (a socket left by a crash does not count).
PGDATA_DIRS=()
start_daemon() {
	"$B/basculed" -c "${CONF:-$D/bascule.yaml}" >> "$D/basculed.log" 2>&1 &
	PID=$!
	for _ in $(seq 600); do
		"$B/bascule" --socket "${SOCK:-$D/status.sock}" status >/dev/null 2>&1 && return 0
		kill -0 "$PID" 2>/dev/null || { tail -5 "$D/basculed.log" >&2; die "basculed exited"; }
		sleep 0.1
	done
	die "basculed does not answer on ${SOCK:-$D/status.sock} after 60 s (see $D/basculed.log)"
}
stop_daemon() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

say "1. a site key (shared by both sites), mode 0600"
"$B/bascule" keygen site "$D/site.key"
"$B/bascule" keygen vault "$D/vault.key" | sed 's/^/   /'

say "2. a sample VM disk: 256 MiB ext4 image with some files"
cp -r /usr/share/common-licenses "$D/sample/" 2>/dev/null || echo hello > "$D/sample/hello"
truncate -s 256M "$D/web1-root.img"
mkfs.ext4 -q -F -d "$D/sample" -L web1-root "$D/web1-root.img"
ls -lsh "$D/web1-root.img"

cat > "$D/bascule.yaml" <<YAML
# Demo configuration: the secondary site is the directory demo/secondary.
state_dir: $D/state
key: $D/site.key
control_socket: $D/status.sock
groups:
  - name: web1
    interval: 500ms
    max_interval: 1s
    sources:
      - name: root
        disk: $D/web1-root.img
targets:
  - name: secondary
    type: replica
    url: local:$D/secondary
  # The third copy: encrypted, write-once objects (here a local directory;
  # in production sftp://user@provider/DIR, see docs/vault.md).
  - name: offsite
    type: vault
    url: local:$D/vault
    vault_key: $D/vault.key
    interval: 2s
YAML
mkdir -p "$D/vault"
if [ "$(id -u)" = 0 ]; then
	# As root, basculed runs the vault writer as relay_user (bascule): the
	# user must exist and own the vault directory (docs/vault.md).
	id bascule >/dev/null 2>&1 || { useradd --system --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin bascule && say "   (created the system user bascule, which the vault writer runs as)"; }
	chown bascule "$D/vault"
fi
say "3. configuration ($D/bascule.yaml) checked"
"$B/basculed" -c "$D/bascule.yaml" --check-config

say "4. basculed starts; the initial copy goes to demo/secondary/web1/root"
start_daemon
"$B/bascule" --socket "$D/status.sock" sync --wait --timeout 60s
"$B/bascule" --socket "$D/status.sock" status

say "5. the 'VM' writes while replication runs (status every second)"
the_vm() { # the 8 writes, the status after each
	for i in $(seq 1 8); do
		write "$i"
		"$B/bascule" --socket "$D/status.sock" status | sed -n 's/^  target/  t='"$i"'s target/p'
		sleep 1   # the pace of the show, not a wait for anything
	done
}
if [ "$(id -u)" = 0 ]; then
	# The filesystem is mounted in a mount namespace of the demo's own
	# (private), never in the machine's: a mount namespace made meanwhile
	# by anything else (ip netns exec, a service's sandbox) copies every
	# mount it sees and keeps the filesystem alive past our umount, which
	# then returns with the last superblock write (free counts, write time)
	# still to come: it lands in the image when that namespace ends, after
	# the final sync (a fresh-clone demo found the replica differing at
	# byte 1038, the superblock's free block count).  Here the umount is
	# the filesystem's end: its last write is in the image when it returns.
	mkdir -p "$D/mnt"
	write() { dd if=/dev/urandom of="$D/mnt/data$1" bs=1M count=4 status=none; sync; }
	export B D
	export -f write the_vm
	unshare --mount --propagation private -- bash -euo pipefail -c \
		'mount -o loop "$D/web1-root.img" "$D/mnt"; the_vm; umount "$D/mnt"' ||
		die "the writes to the sample filesystem failed"
	# its loop device goes with it (autoclear); one still there is held
	# by something else, and the image could still change
	for _ in $(seq 600); do [ -z "$(losetup -j "$D/web1-root.img" 2>/dev/null)" ] && break; sleep 0.1; done
	[ -z "$(losetup -j "$D/web1-root.img" 2>/dev/null)" ] ||
		die "the loop device of $D/web1-root.img is still attached 60 s after its umount: $(losetup -j "$D/web1-root.img")"
else
	# Without root: write files into the filesystem image with debugfs.
	write() { head -c 4M /dev/urandom > "$D/blob"; debugfs -w -R "write $D/blob data$1" "$D/web1-root.img" >/dev/null 2>&1; }
	the_vm
fi
# The image at rest: an epoch cut from now on is a point in time (consistent:
# the daemon wants the image unmodified for 20 ms before its scan starts).
# A lower bound, which load only lengthens: no race to lose.
sleep 0.2

say "6. writes stop; final sync (replica and vault): lag goes to zero"
"$B/bascule" --socket "$D/status.sock" sync --wait --vault --timeout 60s
"$B/bascule" --socket "$D/status.sock" status
stop_daemon

say "7. verification"
cmp "$D/web1-root.img" "$D/secondary/web1/root" || die "the replica differs from the source"
echo "cmp: replica is byte-identical to the source"
"$B/bascule" replica verify --root "$D/secondary" --key "$D/site.key"
e2fsck -fn "$D/secondary/web1/root" >/dev/null 2>&1 || die "e2fsck finds errors in the replica"
echo "e2fsck: the replica is a clean ext4 filesystem"
"$B/bascule" replica list --root "$D/secondary"

say "7b. the vault: epochs, a check needing no secret, a restore of the newest epoch"
"$B/bascule" vault ls -c "$D/bascule.yaml"
"$B/bascule" vault check --vault "local:$D/vault" --verify-key "$D/vault.key.pub"
"$B/bascule" restore -c "$D/bascule.yaml" --source web1/root --to "$D/restored-root.img"
cmp "$D/web1-root.img" "$D/restored-root.img" || die "the restored image differs from the source"
echo "cmp: the vault's newest epoch is byte-identical to the source"

say "8. a short failover drill: stop, final sync, promote, start, check (signed report)"
"$B/bascule" keygen signing "$D/drill-signing.key" >/dev/null
cat > "$D/runbook.yaml" <<YAML
# Demo runbook: both sites on this machine.  The "VM" is the ext4 image; on
# the secondary it is "started" by checking the promoted disk.
name: "demo: web1 from demo/ to demo/secondary"
objectives: {rto: 1m, rpo: 0s}
hosts:
  - name: here
    url: local
primary: {host: here, bascule: $B/bascule, control_socket: $D/status.sock, sync_timeout: 60s}
secondary: {host: here, bascule: $B/bascule, replica_root: $D/secondary, site_key: $D/site.key}
prechecks: {max_lag: 1m}
services:
  - name: web1
    group: web1
    stop: echo "web1 stopped on the primary" >> $D/services.log
    start: echo "web1 started from \$BASCULE_DISKS/root" >> $D/services.log
    disk_dir: $D/dr/web1
    checks:
      - name: filesystem-clean
        command: e2fsck -fn $D/dr/web1/root
        timeout: 1m
        retries: 0
      - name: last-write-present
        command: debugfs -R "stat data8" $D/dr/web1/root 2>&1 | grep -q "Inode:"
        timeout: 1m
        retries: 0
report: {dir: $D/reports, signing_key: $D/drill-signing.key}
state_dir: $D/drill-state
YAML
start_daemon
"$B/bascule" --socket "$D/status.sock" sync --wait --timeout 60s >/dev/null
"$B/bascule" drill "$D/runbook.yaml" --mode plan | tail -n +6
"$B/bascule" drill "$D/runbook.yaml" --mode planned --quiet | tee "$D/drill.out"
"$B/bascule" report verify --key "$D/drill-signing.key.pub" "$D"/reports/*.html
stop_daemon

say "9. a database: PostgreSQL streamed (base backup + WAL), promoted at the secondary"
PGT=$(mktemp -d /tmp/bascule-demo-pg.XXXXXX); chmod 755 "$PGT"; ln -s "$PGT" "$D/pg"
mkdir -p "$PGT/sock" "$PGT/sock2" "$PGT/data" "$PGT/log"; chmod 700 "$PGT/data"
if [ "$(id -u)" = 0 ]; then chown postgres: "$PGT/sock" "$PGT/sock2" "$PGT/data" "$PGT/log"; fi
pg_as "$PG_BIN/initdb" -D "$PGT/data" --auth=trust -U postgres -E UTF8 --locale=C --no-sync >"$PGT/initdb.log" 2>&1 \
	|| die "initdb failed: $(tail -3 "$PGT/initdb.log")"
printf "listen_addresses = ''\nunix_socket_directories = '%s'\n" "$PGT/sock" >> "$PGT/data/postgresql.conf"
PGDATA_DIRS+=("$PGT/data")
pg_as "$PG_BIN/pg_ctl" -D "$PGT/data" -l "$PGT/log/primary.log" -w start >/dev/null || die "PostgreSQL did not start: $(tail -3 "$PGT/log/primary.log")"
psql1() { pg_as "$PG_BIN/psql" -X -q -At -h "$PGT/sock" -U postgres -d postgres -c "$1"; }
psql1 "CREATE TABLE orders (id int PRIMARY KEY, at timestamptz DEFAULT now())"
cat > "$D/db.yaml" <<YAML
# Demo: a PostgreSQL cluster protected through its replication protocol
# (base backup + WAL streamed; docs/postgres.md), to a local cold standby.
state_dir: $D/state-db
key: $D/site.key
control_socket: $D/db.sock
groups:
  - name: app
    sources:
      - name: db
        type: postgres
        conninfo: "host=$PGT/sock user=postgres"
targets:
  - name: secondary
    type: replica
    url: local:$PGT/secondary
    postgres_standby: cold
YAML
CONF=$D/db.yaml SOCK=$D/db.sock start_daemon
psql1 "INSERT INTO orders (id) SELECT generate_series(1, 1000)"
"$B/bascule" --socket "$D/db.sock" sync app --wait --timeout 120s
"$B/bascule" --socket "$D/db.sock" status
stop_daemon
pg_as "$PG_BIN/pg_ctl" -D "$PGT/data" -m fast -w stop >/dev/null
printf "unix_socket_directories = '%s'\nlisten_addresses = ''\n" "$PGT/sock2" > "$PGT/standby.conf"
PGU=(); [ "$(id -u)" = 0 ] && PGU=(--pg-user postgres)
"$B/bascule" replica promote --root "$PGT/secondary" --key "$D/site.key" --group app "${PGU[@]}" --pg-conf "$PGT/standby.conf"
PGDATA_DIRS+=("$PGT/secondary/app/db")
pg_as "$PG_BIN/pg_ctl" -D "$PGT/secondary/app/db" -l "$PGT/log/promoted.log" -w start >/dev/null \
	|| die "the promoted database does not start: $(tail -3 "$PGT/log/promoted.log")"
n=$(pg_as "$PG_BIN/psql" -X -q -At -h "$PGT/sock2" -U postgres -d postgres -c "SELECT count(*) FROM orders")
[ "$n" = 1000 ] || die "the promoted database has $n orders of 1000"
echo "promoted database: a primary on a new timeline with all 1000 orders committed before the sync"

say "10. hybrid PRA: a client's nightly pg_dump, encrypted to its public key, shipped to the operator's intake"
# The client (here the database just promoted) keeps only mairie.pub and
# mairie.sign; mairie.key, sealed with a passphrase, is for the offline safe.
# The operator lists and checks the nights with the public key alone.
echo "a demo passphrase for the safe" > "$D/mairie.pass"; chmod 600 "$D/mairie.pass"
"$B/bascule" keygen client "$D/mairie" --passphrase-file "$D/mairie.pass" >/dev/null
"$B/bascule" intake add "$D/intake" --client mairie --pub "$D/mairie.pub"
cat > "$D/ship.yaml" <<YAML
# Demo: the client's cron job (etc/ship.yaml, docs/hybrid.md), to a local intake.
client: mairie
dump: $PG_BIN/pg_dump --format=custom --compress=0 -h $PGT/sock2 -U postgres postgres
public_key: $D/mairie.pub
signing_key: $D/mairie.sign
state_dir: $D/ship-state
intake: local:$D/intake/mairie/incoming
YAML
"$B/bascule" ship -c "$D/ship.yaml" --verbose --night "$(date -d yesterday +%F)"
pg_as "$PG_BIN/psql" -X -q -At -h "$PGT/sock2" -U postgres -d postgres -c "INSERT INTO orders (id) SELECT generate_series(1001, 1100)"
"$B/bascule" ship -c "$D/ship.yaml" --verbose
pg_as "$PG_BIN/pg_ctl" -D "$PGT/secondary/app/db" -m fast -w stop >/dev/null
"$B/bascule" intake ls "$D/intake"
"$B/bascule" intake check "$D/intake" --all --max-age 26h

echo
echo "Drill: $(grep -m1 -o 'RTO [^(]*' "$D/drill.out")(see $(ls "$D"/reports/*.html))"
echo "Daemon log: $D/basculed.log.  Everything is under $D/."
echo "Restore the client's newest night (the key from the safe, passphrase in $D/mairie.pass):"
echo "  $B/bascule intake restore $D/intake --client mairie --key $D/mairie.key --passphrase-file $D/mairie.pass --to /tmp/mairie.dump"
echo
echo "The drill failed over: web1 is now PROMOTED in demo/secondary (the live copy, at"
echo "$D/dr/web1), and a basculed started again is refused for it.  To make it"
echo "a replica again (the next basculed resyncs it with librsync):"
echo "  $B/bascule replica demote --root $D/secondary --key $D/site.key --group web1"
