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
#   lsn_of X/Y;  elapsed START
#   psql2 SQL        a query on the promoted database (pg.sh)
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/sites.sh"
. "$ROOT/tests/lib/runbook.sh"
. "$ROOT/tests/lib/pg.sh"
ROWS=${ROWS:-1000}
PGDRILL_STANDBY=${PGDRILL_STANDBY:-cold} # the replica target's postgres_standby

lsn_of() { python3 -c "h, l = '$1'.split('/'); print(int(h, 16) << 32 | int(l, 16))"; }
elapsed() { printf "%.1f" "$(echo "$(date +%s.%N) - $1" | bc)"; }

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
	pg_site_standby "$R"
	pg_bsc_config p "ssh://$SSH_USER@$IP_S:22$R" -- "identity: $T/id_ed25519" "known_hosts: $T/known_hosts" \
		"postgres_standby: $PGDRILL_STANDBY"
	trust_secondary
	NSEXEC=(ip netns exec "$NS_P")
	bsc_start
	acked() { status_get "d['targets'][0]['groups']['app']['postgres']['db']['acked_lsn']"; }
	wait_for 120 "the first base backup acknowledged by the secondary" '[ "$(acked 2>/dev/null)" != None ] && [ -n "$(acked 2>/dev/null)" ]'
	note "base backup acknowledged at $(acked) after $(elapsed "$t0") s"

	# The orchestrator's key for the primary (root there) and its host key.
	drill_orchestrator_up

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
$(runbook_sites)
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
$(runbook_report)
YAML
	chmod 600 "$T/runbook.yaml"
}
