#!/bin/bash
# Bench of PostgreSQL protection over the test sites' link (needs root): one
# PostgreSQL 15 on the primary site under pgbench load (scale 10, 4 clients),
# protected in turn by each tool an operator would otherwise use, side by
# side in one run.  For each: pgbench TPS (the median of its per-second
# progress) and the RPO, sampled by tests/helpers/pgrpo (a row committed
# every 200 ms; the time from its COMMIT returning to the protection holding
# it), median and p99.
#   - none: the load alone
#   - pg_receivewal --synchronous at the secondary (what Barman runs), async
#     and as the primary's synchronous standby; held = its flush position
#   - pgBackRest archive-push, archive-async, archive_timeout 60 s; held = the
#     segment in the repository.  The repository is a directory on this
#     machine, a stand-in for a repository host: segment shipping, not the
#     link, sets its RPO
#   - bascule, synchronous: local to a hot standby at the secondary over SSH
#     (held = the row readable on the standby) and synchronous: remote
#     (zero loss: COMMIT returns once the secondary has the WAL)
# PG_TRACE=DIR: where the remote row's round trip goes (strace, perf and
# flush_lag in DIR, summarised by tests/bench/pgtrace.py DIR; PG_TRACE_SET=all
# traces every system call).
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
. "$(dirname "$0")/../lib/sites.sh"
PG_RELAY_USER=$RELAY_USER
. "$(dirname "$0")/../lib/pg.sh"
WINDOW=${PG_WINDOW:-20}      # seconds of load per protection
ONLY=${PG_ONLY:-}            # "bascule": only the load alone and bascule's rows (quicker before/after)
SAMPLES=$((WINDOW * 1000 / 200 - 10))
sites_up
pg_init prim
pg_start prim "$NS_P" "$IP_P"
pg_bench_init prim 10
PRIM="host=$(pg_dir prim) port=5432 user=postgres dbname=postgres"
REMOTE_REP="host=$IP_P port=5432 user=$PG_REP_ROLE dbname=postgres passfile=$PG_PASSFILE"
echo "== 6. PostgreSQL 15 under pgbench (scale 10, 4 clients, ${WINDOW} s each) over the namespace link"

# load MODE ARG: pgbench for the window with pgrpo sampling (MODE "" = load
# alone); prints "TPS RPO_MEDIAN RPO_P99"
load() {
	local log=$T/pgbench.out rpo=$T/rpo.out pid tps
	: > "$rpo"
	pg_as "$PG_BIN/pgbench" -h "$(pg_dir prim)" -U postgres -n -c 4 -j 2 -T $((WINDOW + 120)) -P 1 postgres > "$log" 2>&1 &
	pid=$!
	sleep 2
	if [ -n "$1" ]; then
		"$B/tests/pgrpo" "$PRIM" "$SAMPLES" 200 "$1" "$2" > "$rpo" || fail "pgrpo $1 failed"
	else
		sleep "$WINDOW"
	fi
	kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
	tps=$(sed -n 's/^progress: [0-9.]* s, \([0-9.]*\) tps.*/\1/p' "$log" | tail -n +3 | median)
	[ -n "$tps" ] || fail "pgbench printed no progress: $(tail -3 "$log")"
	if [ -s "$rpo" ]; then echo "$tps $(median < "$rpo") $(pct 99 < "$rpo")"; else echo "$tps - -"; fi
}
row() { # label tps median p99
	if [ "$3" = - ]; then printf "   %-52s %7.0f TPS   RPO %s\n" "$1" "$2" "${5:-n/a}"
	else printf "   %-52s %7.0f TPS   RPO median %6.3f s  p99 %6.3f s\n" "$1" "$2" "$3" "$4"; fi
}

read -r T0 _ _ < <(load "" "")
row "no protection" "$T0" -

# pg_receivewal at the secondary, over the link.
if [ "$ONLY" != bascule ]; then
mkdir -p "$T/secondary/receivewal"; chown "$PG_RELAY_USER" "$T/secondary/receivewal"
pg_sql prim "SELECT pg_create_physical_replication_slot('receivewal')" >/dev/null
ip netns exec "$NS_S" runuser -u "$PG_RELAY_USER" -- "$PG_BIN/pg_receivewal" -D "$T/secondary/receivewal" \
	-S receivewal --synchronous --no-loop -d "$REMOTE_REP application_name=pg_receivewal" \
	> "$T/receivewal.log" 2>&1 &
RW=$!
for _ in $(seq 100); do
	[ "$(pg_sql prim "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal'")" = 1 ] && break
	sleep 0.1
done
read -r t m p < <(load --flush-of pg_receivewal)
row "pg_receivewal --synchronous (async standby)" "$t" "$m" "$p"
T_RW=$t M_RW=$m P_RW=$p
pg_set prim synchronous_standby_names pg_receivewal; pg_reload prim
read -r t _ _ < <(load "" "")
row "pg_receivewal as synchronous standby" "$t" - - "0 (synchronous)"
T_RWS=$t
pg_set prim synchronous_standby_names ""; pg_reload prim
kill "$RW"; wait "$RW" 2>/dev/null || true
pg_sql prim "SELECT pg_drop_replication_slot('receivewal')" >/dev/null

# pgBackRest archive-push, asynchronous, to a repository directory.
if command -v pgbackrest >/dev/null; then
	mkdir -p "$T/pgbr/repo" "$T/pgbr/spool" "$T/pgbr/log" "$T/pgbr/lock"; chown -R postgres: "$T/pgbr"
	cat > "$T/pgbr/pgbackrest.conf" <<CONF
[global]
repo1-path=$T/pgbr/repo
archive-async=y
spool-path=$T/pgbr/spool
log-path=$T/pgbr/log
lock-path=$T/pgbr/lock
log-level-console=warn
[bench]
pg1-path=$(pg_dir prim)/data
pg1-socket-path=$(pg_dir prim)
CONF
	chmod 644 "$T/pgbr/pgbackrest.conf"
	pg_set prim archive_mode on
	pg_set prim archive_command "pgbackrest --config=$T/pgbr/pgbackrest.conf --stanza=bench archive-push %p"
	pg_set prim archive_timeout 60
	pg_stop prim; pg_start prim "$NS_P" "$IP_P"
	pg_as pgbackrest --config="$T/pgbr/pgbackrest.conf" --stanza=bench stanza-create > "$T/pgbr/create.log" 2>&1 \
		|| fail "pgbackrest stanza-create: $(tail -3 "$T/pgbr/create.log")"
	read -r t m p < <(load --segment-in "$T/pgbr/repo/archive/bench/15-1")
	row "pgBackRest archive-push (async, archive_timeout 60 s)" "$t" "$m" "$p"
	T_BR=$t M_BR=$m P_BR=$p
	pg_set prim archive_mode off
	pg_stop prim; pg_start prim "$NS_P" "$IP_P"
else
	echo "   (pgBackRest missing: scripts/deps.sh bench installs it)"
fi
fi

# Bascule: basculed on the primary site, recv over SSH at the secondary with
# a hot standby (its own socket and port there).
bsc_keygen
R=$T/secondary/replica
authorize_recv "$R"
pg_site_standby "$R"
trust_secondary
bsc_pg_config() { # MODE
	pg_bsc_config prim "ssh://$SSH_USER@$IP_S$R" "synchronous: $1" -- \
		"identity: $T/id_ed25519" "known_hosts: $T/known_hosts" "postgres_standby: hot"
}
bsc_pg_config local
NSEXEC=(ip netns exec "$NS_P")
bsc_start
STANDBY="host=$SOCK port=5433 user=postgres dbname=postgres"
wait_for 120 "the hot standby at the secondary to accept connections" 'psql2 "SELECT 1" >/dev/null 2>&1'
read -r t m p < <(load --row-on "$STANDBY")
row "bascule, synchronous: local (readable on the hot standby)" "$t" "$m" "$p"
T_BL=$t M_BL=$m P_BL=$p
bsc_pg_config remote
bsc reload >/dev/null || fail "reload to synchronous: remote failed"
pg_set prim synchronous_standby_names bsc_app; pg_reload prim
wait_for 30 "bsc_app to be the synchronous standby" \
	'[ "$(pg_sql prim "SELECT sync_state FROM pg_stat_replication WHERE application_name = '"'bsc_app'"'")" = sync ]'
if [ -n "${PG_TRACE:-}" ]; then
	# Where the round trip goes: 2 s into the load, each process's time on
	# a CPU and waiting for one (schedstat, 2 s, no tracer); then 3 s of
	# strace (-ttt -T) of basculed's processes and of recv at the
	# secondary, and flush_lag every 200 ms; tests/bench/pgtrace.py DIR
	# summarises them.
	mkdir -p "$PG_TRACE"
	(
		sleep 2
		pids=$(pgrep -f "bascule recv --root $R" | tr "\n" " ")
		for p in $DAEMON_PID $(pgrep -P "$DAEMON_PID"); do pids="$pids $p"; done
		args=(); for p in $pids; do args+=(-p "$p"); done
		# each process's and thread's role for pgtrace.py: its id and the
		# process's command line
		for p in $pids; do for t in /proc/$p/task/*; do
			echo "${t##*/} $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)"; done; done > "$PG_TRACE/pids"
		# PID, ns on a CPU, ns runnable waiting for one, threads (summed)
		sched() { for p in $pids; do cat /proc/$p/task/*/schedstat 2>/dev/null |
			awk -v p=$p '{r += $1; w += $2} END {printf "%s %.0f %.0f %d\n", p, r, w, NR}'; done; }
		{ date +%s.%N; sched; } > "$PG_TRACE/schedstat.0"
		sleep 2
		{ date +%s.%N; sched; } > "$PG_TRACE/schedstat.1"
		timeout -s INT 3 strace -f -y -ttt -T -e "trace=${PG_TRACE_SET:-read,write,writev,fsync,fdatasync,renameat,rename,ppoll,poll,epoll_wait,sendto,recvfrom,clone,clone3}" \
			-o "$PG_TRACE/strace" "${args[@]}" 2>/dev/null || true
		# then recv alone: its syscalls counted, and a CPU profile
		for p in $(pgrep -f "bascule recv --root $R"); do
			timeout -s INT 2 strace -c -f -p "$p" -o "$PG_TRACE/strace-c.$p" 2>/dev/null || true
			command -v perf >/dev/null && timeout -s INT 2 perf record -g -o "$PG_TRACE/perf.$p" -p "$p" \
				>/dev/null 2>&1 || true
		done
	) &
	(
		sleep 4
		for _ in $(seq 15); do
			pg_sql prim "SELECT extract(epoch FROM flush_lag) FROM pg_stat_replication WHERE application_name = 'bsc_app'"
			sleep 0.2
		done > "$PG_TRACE/flush_lag"
	) &
fi
read -r t _ _ < <(load "" "")
row "bascule, synchronous: remote (zero loss)" "$t" - - "0 (synchronous: durable at the secondary)"
[ -n "${PG_TRACE:-}" ] && cp "$T/daemon.log" "$PG_TRACE/daemon.log"
T_BR2=$t
pg_set prim synchronous_standby_names ""; pg_reload prim
bsc_stop
pct_of() { echo "100 * $1 / $T0" | bc -l; }
printf "   -> TPS against no protection: bascule local %.0f%%, remote %.0f%%" "$(pct_of "$T_BL")" "$(pct_of "$T_BR2")"
[ -n "${T_RWS:-}" ] && printf " (pg_receivewal synchronous %.0f%%)" "$(pct_of "$T_RWS")"
echo
[ -n "${M_BR:-}" ] && printf "   -> RPO p99: bascule local %.3f s, pg_receivewal %.3f s, pgBackRest %.3f s\n" "$P_BL" "$P_RW" "$P_BR"
echo "   (TPS on this shared 2-core machine varies by 20-40%% from run to run: compare within one run)"
