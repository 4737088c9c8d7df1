# tests/lib/pg.sh - real PostgreSQL 15 clusters for the tests, from Debian's
# packages (source after common.sh; after sites.sh too for a cluster inside a
# namespace).  Each cluster NAME lives in $T/pg-NAME (data/ and its Unix
# socket), is owned by the postgres user, and is stopped at exit even on
# failure (pg_down_all runs from the EXIT trap of common.sh).
#   pg_init NAME [INITDB_ARGS...]  initdb (replication settings, small memory)
#   pg_start NAME [NS ADDR]        start; optionally also listen on ADDR:5432
#                                  inside network namespace NS (sites.sh)
#   pg_stop NAME [MODE]            pg_ctl stop (fast by default)
#   pg_sql NAME SQL                one query as the superuser, unaligned output
#   pg_set NAME KEY VALUE          ALTER SYSTEM SET (then pg_reload or restart)
#   pg_reload NAME
#   pg_conninfo NAME               the replication role's conninfo (socket)
#   pg_bench_init NAME SCALE       pgbench tables; pg_bench NAME SECONDS [CLIENTS]
#   pg_lsn NAME                    pg_current_wal_lsn() in bytes (decimal)
#   pg_kill9 NAME                  kill -9 of NAME's postmaster and backends and
#                                  of basculed at one moment; returns once all
#                                  are gone (sets PG_KILLED: the pids)
#   pg_bsc_config NAME URL [SOURCE_LINES...] [-- TARGET_LINES...]
#                                  $T/bascule.yaml: basculed (relay_user) with
#                                  group app, source db of cluster NAME (slot
#                                  bsc_app), target secondary (or
#                                  $PG_BSC_TARGET) at URL; the lines
#                                  given go into the source and the target;
#                                  $PG_BSC_DISKS ("name:path ...") adds disk
#                                  sources to group app (a mixed group)
#   pg_site_standby ROOT           (with sites.sh, after authorize_recv ROOT)
#                                  the secondary's PostgreSQL of replica ROOT
#                                  (hot standby, then the promoted primary) on
#                                  socket $SOCK port 5433 ($T/site.conf, given
#                                  to recv by the key's command=), stopped at
#                                  exit; psql2 SQL queries it
#   pg_adopt NAME                  $(pg_dir NAME) for a cluster bascule makes in
#                                  its data/ (restore, promote): stopped at exit;
#                                  $(pg_dir NAME)/site.conf (for --pg-conf) puts
#                                  its socket there
# The replication role is $PG_REP_ROLE with password $PG_REP_PASSWORD (scram);
# $PG_PASSFILE holds it, owned by $PG_RELAY_USER (the unprivileged user
# `bascule pgstream --user` switches to).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_REP_ROLE=bascule_rep
PG_REP_PASSWORD=rep-secret-1
PG_RELAY_USER=${PG_RELAY_USER:-nobody}
PG_PASSFILE=$T/pgpass
PG_CLUSTERS=()

pg_dir() { echo "$T/pg-$1"; }
pg_as() { runuser -u postgres -- "$@"; }

pg_down_all() {
	local n
	for n in "${PG_CLUSTERS[@]}"; do
		[ -f "$(pg_dir "$n")/data/postmaster.pid" ] || continue
		pg_as "$PG_BIN/pg_ctl" -D "$(pg_dir "$n")/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
	done
	PG_CLUSTERS=()
}
EXIT_HOOKS+=(pg_down_all)

pg_init() {
	local name=$1 d; shift
	d=$(pg_dir "$name")
	need_root
	[ -x "$PG_BIN/initdb" ] || fail "PostgreSQL 15 is not installed (scripts/deps.sh test installs postgresql-15)"
	chmod 711 "$T"
	mkdir -p "$d"; chown postgres: "$d"; chmod 755 "$d"
	pg_as "$PG_BIN/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync "$@" \
		> "$d/initdb.log" 2>&1 || fail "initdb $name failed: $(tail -5 "$d/initdb.log")"
	cat >> "$d/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$d'
port = 5432
shared_buffers = 32MB
max_connections = 30
wal_level = replica
max_wal_senders = 8
max_replication_slots = 8
wal_sender_timeout = 60s
log_line_prefix = '%m [%p] %a '
log_replication_commands = on
CONF
	cat > "$d/data/pg_hba.conf" <<HBA
local all postgres trust
local replication postgres trust
local all $PG_REP_ROLE scram-sha-256
local replication $PG_REP_ROLE scram-sha-256
host replication $PG_REP_ROLE 0.0.0.0/0 scram-sha-256
HBA
	PG_CLUSTERS+=("$name")
	if [ ! -f "$PG_PASSFILE" ]; then
		echo "*:*:*:$PG_REP_ROLE:$PG_REP_PASSWORD" > "$PG_PASSFILE"
		chown "$PG_RELAY_USER" "$PG_PASSFILE"; chmod 600 "$PG_PASSFILE"
	fi
}

pg_adopt() {
	local d
	d=$(pg_dir "$1")
	mkdir -p "$d"; chown postgres: "$d"; chmod 755 "$d"; chmod 711 "$T"
	printf "unix_socket_directories = '%s'\nlisten_addresses = ''\nport = 5432\n" "$d" > "$d/site.conf"
	PG_CLUSTERS+=("$1")
}

pg_start() {
	local name=$1 ns=${2:-} addr=${3:-} d
	d=$(pg_dir "$name")
	local pre=()
	if [ -n "$ns" ]; then
		sed -i "s/^listen_addresses = .*/listen_addresses = '$addr'/" "$d/data/postgresql.conf"
		pre=(ip netns exec "$ns")
	fi
	"${pre[@]}" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/log" -w -t 120 start >/dev/null \
		|| fail "PostgreSQL $name did not start: $(tail -5 "$d/log")"
	if ! pg_sql "$name" "SELECT 1 FROM pg_roles WHERE rolname = '$PG_REP_ROLE'" | grep -q 1; then
		pg_sql "$name" "CREATE ROLE $PG_REP_ROLE LOGIN REPLICATION PASSWORD '$PG_REP_PASSWORD'" >/dev/null
	fi
}

pg_stop() {
	local d
	d=$(pg_dir "$1")
	pg_as "$PG_BIN/pg_ctl" -D "$d/data" -m "${2:-fast}" -w -t 120 stop >/dev/null \
		|| fail "PostgreSQL $1 did not stop: $(tail -5 "$d/log")"
}

pg_restart() { pg_stop "$1"; pg_start "$1"; }
pg_sql() { pg_as "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$(pg_dir "$1")" -U postgres -d postgres -c "$2"; }
pg_set() { pg_sql "$1" "ALTER SYSTEM SET $2 = '$3'" >/dev/null; }
pg_reload() { pg_sql "$1" "SELECT pg_reload_conf()" >/dev/null; }
pg_conninfo() { echo "host=$(pg_dir "$1") port=5432 user=$PG_REP_ROLE dbname=postgres passfile=$PG_PASSFILE"; }
pg_lsn() { pg_sql "$1" "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"; }

pg_bench_init() {
	pg_as "$PG_BIN/pgbench" -h "$(pg_dir "$1")" -U postgres -i -q -s "$2" postgres > "$(pg_dir "$1")/pgbench-init.log" 2>&1 \
		|| fail "pgbench -i failed: $(tail -5 "$(pg_dir "$1")/pgbench-init.log")"
}
pg_bench() {
	pg_as "$PG_BIN/pgbench" -h "$(pg_dir "$1")" -U postgres -n -T "$2" -c "${3:-2}" postgres \
		>> "$(pg_dir "$1")/pgbench.log" 2>&1 || fail "pgbench failed: $(tail -5 "$(pg_dir "$1")/pgbench.log")"
}
# The content of every pgbench table: count and an order-independent digest.
pg_bench_digest() {
	local t
	for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
		pg_sql "$1" "SELECT '$t', count(*), coalesce(sum(hashtext(x::text)::bigint), 0) FROM $t x"
	done
}

# kill -9 of the whole cluster and the daemon together: nothing is shut down
# cleanly, as a power cut would leave them.  The postmaster.pid is removed
# once they are gone: a later start of the data directory is not refused.
pg_kill9() {
	local d post p
	d=$(pg_dir "$1")
	post=$(head -1 "$d/data/postmaster.pid")
	PG_KILLED="$post $(pgrep -P "$post" | tr '\n' ' ')"
	# shellcheck disable=SC2086
	kill -9 $PG_KILLED ${DAEMON_PID:+"$DAEMON_PID"} 2>/dev/null || true
	if [ -n "$DAEMON_PID" ]; then
		wait "$DAEMON_PID" 2>/dev/null || true
		DAEMON_PID=""
	fi
	for p in $PG_KILLED; do wait_for 10 "postgres process $p to end" "gone $p"; done
	rm -f "$d/data/postmaster.pid"
}

pg_bsc_config() {
	local name=$1 url=$2 src=() tgt=() sep=0 l
	shift 2
	for l in "$@"; do
		if [ "$l" = -- ]; then sep=1; continue; fi
		if [ $sep = 0 ]; then src+=("$l"); else tgt+=("$l"); fi
	done
	{
		echo "state_dir: $T/state"
		echo "key: $T/site.key"
		echo "control_socket: $T/ctl.sock"
		echo "relay_user: $RELAY_USER"
		echo "groups:"
		echo "  - name: app"
		echo "    sources:"
		echo "      - name: db"
		echo "        type: postgres"
		echo "        conninfo: \"$(pg_conninfo "$name")\""
		echo "        slot: bsc_app"
		for l in "${src[@]}"; do echo "        $l"; done
		for l in ${PG_BSC_DISKS:-}; do
			echo "      - name: ${l%%:*}"
			echo "        disk: ${l#*:}"
		done
		echo "targets:"
		echo "  - name: ${PG_BSC_TARGET:-secondary}"
		echo "    url: $url"
		for l in "${tgt[@]}"; do echo "    $l"; done
	} > "$T/bascule.yaml"
}

# This machine runs both sites: the secondary's PostgreSQL gets its own
# socket and port there.  It runs as the receiving user ($SSH_USER).
pg_site_standby() {
	PG_SITE_ROOT=$1
	SOCK=$T/sock; mkdir -p "$SOCK"; chown "$SSH_USER" "$SOCK"
	printf "unix_socket_directories = '%s'\nport = 5433\nlisten_addresses = ''\n" "$SOCK" > "$T/site.conf"
	sed -i "s|--key $T/secondary/site.key\"|--key $T/secondary/site.key --pg-conf $T/site.conf\"|" "$T/ssh-secondary/authorized_keys"
	grep -q -- "--pg-conf $T/site.conf" "$T/ssh-secondary/authorized_keys" ||
		fail "pg_site_standby: no receiver of $PG_SITE_ROOT in the secondary's authorized_keys (authorize_recv first)"
	EXIT_HOOKS+=(pg_site_standby_stop)
}
pg_site_standby_stop() {
	[ -f "$PG_SITE_ROOT/app/db/postmaster.pid" ] || return 0
	runuser -u "$SSH_USER" -- "$PG_BIN/pg_ctl" -D "$PG_SITE_ROOT/app/db" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
}
psql2() { runuser -u "$SSH_USER" -- "$PG_BIN/psql" -X -q -At -h "$SOCK" -p 5433 -U postgres -d postgres -c "$1"; }
