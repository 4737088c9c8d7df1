# pghotbase: a hot standby at a target that fell behind the WAL spool.
# basculed protects a real PostgreSQL 15 into a real `bascule recv`
# (local transport, --pg-standby hot, the standby on its own socket and
# port):
#  - a receiver killed and started again (no new base): the same standby
#    server goes on replaying, nothing is rebuilt;
#  - a newer base while the standby's replay is paused three segments
#    behind: the standby is left running and replays the WAL before the
#    new base's segment (still held), no rebuild;
#  - the receiver offline while 4 x wal_spool_max of WAL is written: the
#    target falls behind the spool and gets a new base backup on its
#    return, its copy starting afresh with a gap after the old one; the
#    hot standby is rebuilt on the new base (the log says so, the old
#    server is gone) and replays again: a row committed after the return
#    is readable on it, with every row before;
#  - the primary restarted as a standby and promoted (timeline 2): a base
#    of timeline 2, the hot standby rebuilt on it, a row committed on
#    timeline 2 readable there.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root

MiB=$((1 << 20))
R=$T/replica
mkdir -p "$R"; chown postgres: "$R"        # the standby runs as the replica's owner
SOCK=$T/sock; mkdir -p "$SOCK"; chown postgres: "$SOCK"
printf "unix_socket_directories = '%s'\nport = 5433\nlisten_addresses = ''\n" "$SOCK" > "$T/site.conf"
psql2() { pg_as "$PG_BIN/psql" -X -q -At -h "$SOCK" -p 5433 -U postgres -d postgres -c "$1"; }
standby_down() { [ ! -f "$R/app/db/postmaster.pid" ] || pg_as "$PG_BIN/pg_ctl" -D "$R/app/db" -m immediate -w -t 30 stop >/dev/null 2>&1 || true; }
EXIT_HOOKS+=(standby_down)
# The receiver, offline while $T/offline exists.
printf '#!/bin/sh\n[ -e %s/offline ] && { echo "offline (pghotbase test)" >&2; exit 1; }\nexec %s recv --pg-conf %s "$@"\n' \
	"$T" "$BIN/bascule" "$T/site.conf" > "$T/recvwrap"
chmod 755 "$T/recvwrap"
pg_init p
echo "min_wal_size = 32MB" >> "$(pg_dir p)/data/postgresql.conf"
echo "max_wal_size = 64MB" >> "$(pg_dir p)/data/postgresql.conf"
pg_start p
pg_sql p "CREATE TABLE t (id int PRIMARY KEY)" >/dev/null
bsc_keygen
chown postgres "$T/site.key"                 # wal-get, the standby's restore_command, reads it
pg_bsc_config p "local:$R" "wal_spool_max: 64MiB" "wal_interval: 200ms" -- \
	"remote_command: $T/recvwrap" "postgres_standby: hot"
bsc_start
wait_for 90 "the hot standby to accept connections" 'psql2 "SELECT 1" >/dev/null 2>&1'
pg_sql p "INSERT INTO t VALUES (1)" >/dev/null
wait_for 60 "row 1 on the hot standby" '[ "$(psql2 "SELECT count(*) FROM t" 2>/dev/null)" = 1 ]'
pid1=$(head -1 "$R/app/db/postmaster.pid")
# The receiver of this test's daemon: the pid it records in the replica's
# lock, killed only if it is a descendant of $DAEMON_PID (nothing by name).
recv_kill() {
	local pid p
	pid=$(awk '$2 == "recv" { print $1 }' "$R/.bascule/lock" 2>/dev/null)
	p=$pid
	while [ -n "$p" ] && [ "$p" -gt 1 ] && [ "$p" != "$DAEMON_PID" ]; do
		p=$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null)
	done
	[ -n "$pid" ] && [ "$p" = "$DAEMON_PID" ] || fail "no receiver of this test's daemon to kill (lock: $(cat "$R/.bascule/lock" 2>/dev/null))"
	kill -9 "$pid"
}

# A new session, the same base: the standby is left alone.
recv_kill
pg_sql p "INSERT INTO t VALUES (0)" >/dev/null
wait_for 60 "row 0 on the hot standby after the receiver's restart" \
	'[ "$(psql2 "SELECT count(*) FROM t WHERE id = 0" 2>/dev/null)" = 1 ]'
[ "$(head -1 "$R/app/db/postmaster.pid")" = "$pid1" ] || fail "the standby was restarted by a new session"
! grep -q "rebuilt on base backup" "$T/daemon.log" || fail "a new session without a new base rebuilt the standby"

# A newer base while the standby lags three segments behind (its replay
# paused): the copy goes on from the old base's WAL, which is still held,
# so wal-get serves the standby what it replays from (before the new
# base's segment) and it is left running, no rebuild.
bases=$(grep -c "holds base backup .* of app/db" "$T/daemon.log")
log2=$(wc -l < "$T/daemon.log")
psql2 "SELECT pg_wal_replay_pause()" >/dev/null
for i in 100 101 102; do
	pg_sql p "INSERT INTO t VALUES ($i)" >/dev/null
	pg_sql p "SELECT pg_switch_wal()" >/dev/null
done
wait_for 120 "a newer base backup at the target" \
	'[ "$(grep -c "holds base backup .* of app/db" "$T/daemon.log")" -gt "$bases" ]'
pg_sql p "INSERT INTO t VALUES (103)" >/dev/null
bsc_sync 60s >/dev/null || fail "sync failed after the newer base"
psql2 "SELECT pg_wal_replay_resume()" >/dev/null
wait_for 90 "row 103 on the hot standby that lagged" \
	'[ "$(psql2 "SELECT count(*) FROM t WHERE id = 103" 2>/dev/null)" = 1 ]'
[ "$(head -1 "$R/app/db/postmaster.pid")" = "$pid1" ] && ! tail -n +"$log2" "$T/daemon.log" | grep -q "rebuilt on base backup" ||
	fail "the standby lagging behind a newer base was rebuilt: $(tail -n +"$log2" "$T/daemon.log" | grep -i "standby" | head -3)"
pg_sql p "DELETE FROM t WHERE id >= 100" >/dev/null
wait_for 60 "the rows >= 100 gone on the hot standby" \
	'[ "$(psql2 "SELECT count(*) FROM t WHERE id >= 100" 2>/dev/null)" = 0 ]'
note "a newer base while the hot standby lagged 3 segments: left running (postmaster $pid1), replayed the WAL before the base"

# Offline, while 256 MiB of WAL goes by.
bases=$(grep -c "holds base backup .* of app/db" "$T/daemon.log")
touch "$T/offline"
recv_kill
wait_for 30 "the target to be disconnected" '[ "$(status_field state)" != connected ]'
for i in $(seq 2 17); do
	pg_sql p "INSERT INTO t VALUES ($i)" >/dev/null
	pg_sql p "SELECT pg_switch_wal()" >/dev/null
	[ $((i % 4)) = 0 ] && pg_sql p "CHECKPOINT" >/dev/null
done
wait_for 60 "the target to fall behind the spool" '[ "$(pgtgt behind_spool)" = true ]'
log0=$(wc -l < "$T/daemon.log")

# Back: a new base, and the standby follows it.
rm -f "$T/offline"
wait_for 120 "the target to hold a new base backup" \
	'[ "$(grep -c "holds base backup .* of app/db" "$T/daemon.log")" -gt "$bases" ] && [ "$(pgtgt needs_base)" = false ]'
pg_sql p "INSERT INTO t VALUES (18)" >/dev/null
bsc_sync 60s >/dev/null || fail "sync failed once the target came back"
wait_for 90 "row 18 on the hot standby (replaying from the new base)" \
	'[ "$(psql2 "SELECT count(*) FROM t WHERE id = 18" 2>/dev/null)" = 1 ]'
[ "$(psql2 "SELECT pg_is_in_recovery()")" = t ] || fail "the secondary's PostgreSQL is not a standby"
tail -n +"$log0" "$T/daemon.log" | grep -q "hot standby .*rebuilt on base backup" ||
	fail "no log line for the rebuilt standby: $(tail -n +"$log0" "$T/daemon.log" | grep -i standby | head -5)"
pid2=$(head -1 "$R/app/db/postmaster.pid")
[ "$pid2" != "$pid1" ] || fail "the standby is the same server as before the new base"
wait_for 30 "the old standby ($pid1) to be gone" "gone $pid1"
[ "$(psql2 "SELECT count(*), min(id), max(id) FROM t")" = "19|0|18" ] ||
	fail "the rebuilt standby has rows (count|min|max) $(psql2 "SELECT count(*), min(id), max(id) FROM t"), expected 19|0|18"
note "a new session: the same standby; behind the spool, then back: a new base, the hot standby rebuilt on it (postmaster $pid1 -> $pid2) replays to row 18, all 19 rows"

# A promotion of the primary: timeline 2.
log1=$(wc -l < "$T/daemon.log")
pg_stop p
touch "$(pg_dir p)/data/standby.signal"
pg_start p
pg_as "$PG_BIN/pg_ctl" -D "$(pg_dir p)/data" -w -t 60 promote >/dev/null || fail "pg_ctl promote failed"
wait_for 60 "the promoted primary to accept writes" '[ "$(pg_sql p "SELECT pg_is_in_recovery()")" = f ]'
pg_sql p "INSERT INTO t VALUES (19)" >/dev/null
wait_for 120 "row 19 (timeline 2) on the hot standby" \
	'[ "$(psql2 "SELECT count(*) FROM t WHERE id = 19" 2>/dev/null)" = 1 ]'
tail -n +"$log1" "$T/daemon.log" | grep -q "hot standby .*rebuilt on base backup .* of timeline 2" ||
	fail "the standby was not rebuilt on a base of timeline 2: $(tail -n +"$log1" "$T/daemon.log" | grep -i "standby\|timeline" | head -5)"
[ "$(psql2 "SELECT timeline_id FROM pg_control_checkpoint()")" = 2 ] || fail "the standby is not on timeline 2"
[ "$(psql2 "SELECT count(*) FROM t")" = 20 ] || fail "the standby has $(psql2 "SELECT count(*) FROM t") rows of 20 after the promotion"
note "the primary promoted (timeline 2): the hot standby rebuilt on its base, row 19 there, all 20 rows"
bsc_stop
