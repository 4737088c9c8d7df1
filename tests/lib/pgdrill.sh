# tests/lib/pgdrill.sh - the sites of the PostgreSQL drill tests (source
# after common.sh; sets PG_RELAY_USER, sources sites.sh and pg.sh):
#   pgdrill_up       PostgreSQL 15 "p" on the primary (pgbench tables, table
#                    t of numbered rows, role drill for the sql checks),
#                    basculed protecting it (source app/db) into bascule recv
#                    at the secondary over SSH (postgres_standby
#                    $PGDRILL_STANDBY, default cold), its first base
#                    backup acknowledged; the orchestrator's SSH key for the
#                    primary, the signing key, $T/appctl (the application:
#                    pgbench and a writer of ROWS more numbered rows; stop
#                    waits for the writer) and $T/site.conf (the promoted
#                    database on $SOCK, port 5433)
#   write_runbook STOP QUERY EXPECT
#                    $T/runbook.yaml: service app (group app) with sql checks
#                    QUERY = EXPECT and "not in recovery", database shop
#                    (app/db) shut down by STOP
#   wait_for SECONDS WHAT CONDITION;  lsn_of X/Y;  elapsed START
#   psql2 SQL        a query on the promoted database
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/sites.sh"
. "$ROOT/tests/lib/pg.sh"
ROWS=${ROWS:-1000}
PGDRILL_STANDBY=${PGDRILL_STANDBY:-cold} # the replica target's postgres_standby

wait_for() {
	local s=$1 what=$2 cond=$3
	for _ in $(seq $((s * 10))); do eval "$cond" && return 0; sleep 0.1; done
	fail "timed out after ${s}s waiting for $what"
}
lsn_of() { python3 -c "h, l = '$1'.split('/'); print(int(h, 16) << 32 | int(l, 16))"; }
elapsed() { printf "%.1f" "$(echo "$(date +%s.%N) - $1" | bc)"; }
psql2() { runuser -u "$SSH_USER" -- "$PG_BIN/psql" -X -q -At -h "$SOCK" -p 5433 -U postgres -d postgres -c "$1"; }

pgdrill_up() {
	local t0; t0=$(date +%s.%N)
	pg_init p ${PGDRILL_INITDB_ARGS:-} # e.g. --data-checksums (pg_rewind at failback)
	pg_start p
	PD=$(pg_dir p)
	pg_bench_init p 1
	pg_sql p "CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
		CREATE ROLE drill LOGIN PASSWORD 'drill-pw-3'; GRANT SELECT ON t TO drill" >/dev/null
	sed -i "s/^local all postgres trust/local all postgres trust\nlocal all drill scram-sha-256/" "$PD/data/pg_hba.conf"
	pg_reload p

	sites_up
	start_sshd primary "$NS_P" "$IP_P" root
	bsc_keygen
	R=$T/secondary/replica
	authorize_recv "$R"
	# The secondary's PostgreSQL (a hot standby, the promoted database) runs
	# as the receiving user, on its own socket.
	SOCK=$T/sock; mkdir -p "$SOCK"; chown "$SSH_USER" "$SOCK"
	printf "unix_socket_directories = '%s'\nport = 5433\nlisten_addresses = ''\n" "$SOCK" > "$T/site.conf"
	sed -i "s|--key $T/secondary/site.key\"|--key $T/secondary/site.key --pg-conf $T/site.conf\"|" "$T/ssh-secondary/authorized_keys"
	stop_promoted() {
		[ -f "$R/app/db/postmaster.pid" ] || return 0
		runuser -u "$SSH_USER" -- "$PG_BIN/pg_ctl" -D "$R/app/db" -m immediate -w stop >/dev/null 2>&1 || true
	}
	EXIT_HOOKS+=(stop_promoted)
	cat > "$T/bascule.yaml" <<-YAML
	state_dir: $T/state
	key: $T/site.key
	control_socket: $T/ctl.sock
	relay_user: $RELAY_USER
	groups:
	  - name: app
	    sources:
	      - name: db
	        type: postgres
	        conninfo: "$(pg_conninfo p)"
	        slot: bsc_app
	targets:
	  - name: secondary
	    url: ssh://$SSH_USER@$IP_S:22$R
	    identity: $T/id_ed25519
	    known_hosts: $T/known_hosts
	    postgres_standby: $PGDRILL_STANDBY
	YAML
	trust_secondary
	NSEXEC=(ip netns exec "$NS_P")
	bsc_start
	acked() { status_get "d['targets'][0]['groups']['app']['postgres']['db']['acked_lsn']"; }
	wait_for 120 "the first base backup acknowledged by the secondary" '[ "$(acked 2>/dev/null)" != None ] && [ -n "$(acked 2>/dev/null)" ]'
	note "base backup acknowledged at $(acked) after $(elapsed "$t0") s"

	# The orchestrator's key for the primary (root there) and its host key.
	ssh-keygen -q -t ed25519 -N "" -f "$T/drill_id" -C drill
	cat "$T/drill_id.pub" > "$T/ssh-primary/authorized_keys"
	in_secondary "$BIN/bascule" trust-host "$IP_P" --known-hosts "$T/drill_known_hosts" --yes >/dev/null \
		|| fail "trust-host of the primary failed"
	"$BIN/bascule" keygen signing "$T/sign.key" >/dev/null

	# The application: pgbench, and a writer committing ROWS more numbered rows
	# (one transaction each); its stop waits for the writer, then ends pgbench.
	cat > "$T/appctl" <<-SH
	#!/bin/bash
	case \$1 in
	start)
		runuser -u postgres -- $PG_BIN/pgbench -h $PD -U postgres -n -T 600 -c 2 postgres > $T/app-bench.log 2>&1 < /dev/null &
		echo \$! > $T/app-bench.pid
		( for i in \$(seq $ROWS); do echo "INSERT INTO t (id) SELECT coalesce(max(id), 0) + 1 FROM t;"; done |
			runuser -u postgres -- $PG_BIN/psql -X -q -h $PD -U postgres -d postgres -v ON_ERROR_STOP=1 ) > $T/app-rows.log 2>&1 < /dev/null &
		echo \$! > $T/app-rows.pid ;;
	stop)
		for f in rows bench; do
			[ -f $T/app-\$f.pid ] || continue
			[ \$f = bench ] && kill -TERM \$(cat $T/app-\$f.pid) 2>/dev/null
			while kill -0 \$(cat $T/app-\$f.pid) 2>/dev/null; do sleep 0.05; done
			rm -f $T/app-\$f.pid
		done ;;
	esac
	SH
	chmod +x "$T/appctl"

	echo "*:*:*:drill:drill-pw-3" > "$T/drill.pgpass"; chmod 600 "$T/drill.pgpass"
	CI2="host=$SOCK port=5433 dbname=postgres user=drill passfile=$T/drill.pgpass"
}

write_runbook() { # STOP_COMMAND QUERY EXPECT
	cat > "$T/runbook.yaml" <<YAML
name: "pgdrill: PostgreSQL from the primary to the secondary"
objectives:
  rto: 5m
  rpo: 0s
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
prechecks:
  max_lag: 60s
services:
  - name: app
    group: app
    stop: $T/appctl stop
    stop_timeout: 60s
    start: "true"
    restart: $T/appctl start
    checks:
      - name: rows
        sql: "$CI2"
        query: "$2"
        expect: "$3"
        timeout: 3s
        retries: 20
        interval: 250ms
      - name: primary
        sql: "$CI2"
        query: "SELECT NOT pg_is_in_recovery()"
        expect: "t"
        timeout: 3s
        retries: 0
databases:
  - name: shop
    source: app/db
    data_dir: $PD/data
    pg_bin: $PG_BIN
    stop: "$1"
    restart: "runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data status > /dev/null || runuser -u postgres -- $PG_BIN/pg_ctl -D $PD/data -l $PD/log -w -t 60 start > /dev/null"
    pg_conf: $T/site.conf
report:
  dir: $T/reports
  signing_key: $T/sign.key
state_dir: $T/drillstate
YAML
	chmod 600 "$T/runbook.yaml"
}
