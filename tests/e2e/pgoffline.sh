# pgoffline: a replica target offline for long (issue 13, part 2), with
# synchronous: local and wal_spool_max at its minimum (64 MiB), into the
# stand-in receiver tests/helpers/pgsink (see pgprimary.sh):
#  - while it is away, four times wal_spool_max of WAL is written: the
#    primary's pg_wal and the slot's retention stay bounded (measured), and
#    basculed's spool goes back under wal_spool_max once a base backup
#    covers its newest WAL;
#  - status (needs_base, behind_spool), the log and `bascule check` show
#    the alert;
#  - on its return it gets a new base backup and converges: its base + WAL,
#    restored, hold every row.
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root

MiB=$((1 << 20))
pg_init p
# Recycled segments beyond these go at each checkpoint.
echo "min_wal_size = 32MB" >> "$(pg_dir p)/data/postgresql.conf"
echo "max_wal_size = 64MB" >> "$(pg_dir p)/data/postgresql.conf"
pg_start p
pg_sql p "CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())" >/dev/null
# The target is offline while $T/offline exists.
SINK_CMD=$T/sinkwrap
printf '#!/bin/sh\n[ -e %s/offline ] && { echo "offline (pgoffline test)" >&2; exit 1; }\nexec %s "$@"\n' \
	"$T" "$BIN/tests/pgsink" > "$SINK_CMD"
chmod 755 "$SINK_CMD"
bsc_keygen
sink_config p "wal_spool_max: 64MiB"
bsc_start
wait_for 60 "the first base backup at the stand-in" '[ -f "$SINK/app/db/base/backup_manifest" ]'
pg_sql p "INSERT INTO t (id) VALUES (1)" >/dev/null
bsc_sync 60s >/dev/null || fail "the first sync failed"
[ "$(pgtgt bases_received)" = 1 ] || fail "bases_received $(pgtgt bases_received) after the first base"

# Offline: the stand-in is gone and cannot come back.
touch "$T/offline"
sink=$(pgrep -f "tests/pgsink --root $SINK" | head -1)
[ -n "$sink" ] || fail "no stand-in process"
kill -9 "$sink"
wait_for 30 "the target to be disconnected" '[ "$(status_field state)" != connected ]'
start=$(pg_lsn p)
max_wal=0 max_slot=0 max_spool=0
for i in $(seq 2 17); do
	# A row, then the rest of its 16 MiB segment: 256 MiB of WAL in all.
	pg_sql p "INSERT INTO t (id) VALUES ($i)" >/dev/null
	pg_sql p "SELECT pg_switch_wal()" >/dev/null
	[ $((i % 4)) = 0 ] && pg_sql p "CHECKPOINT" >/dev/null
	w=$(du -sb "$(pg_dir p)/data/pg_wal" | cut -f1)
	[ "$w" -gt "$max_wal" ] && max_wal=$w
	r=$(pg_sql p "SELECT coalesce(pg_current_wal_lsn() - restart_lsn, 0) FROM pg_replication_slots WHERE slot_name = 'bsc_app'")
	[ "$r" -gt "$max_slot" ] && max_slot=$r
	sp=$(pgsrc spool_bytes)
	[ "$sp" -gt "$max_spool" ] && max_spool=$sp
done
written=$(( $(pg_lsn p) - start ))
[ "$written" -ge $((4 * 64 * MiB)) ] || fail "only $((written / MiB)) MiB of WAL written"
wait_for 60 "the target to fall behind the spool" '[ "$(pgtgt behind_spool)" = true ]'
# The WAL since the newest base backup stays (a burst outruns the base
# taken at half of wal_spool_max); once a base covers it, the spool goes
# back under wal_spool_max and the segment being written.
wait_for 60 "the spool to go back under wal_spool_max (at $(pgsrc spool_bytes))" \
	'[ "$(pgsrc spool_bytes)" -le $(((64 + 16) * MiB)) ]'
settled=$(pgsrc spool_bytes)
pg_sql p "CHECKPOINT" >/dev/null
w=$(du -sb "$(pg_dir p)/data/pg_wal" | cut -f1); [ "$w" -gt "$max_wal" ] && max_wal=$w
note "target offline, $((written / MiB)) MiB of WAL written in a burst: pg_wal at most $((max_wal / MiB)) MiB, the slot retained at most $((max_slot / MiB)) MiB; the spool peaked at $((max_spool / MiB)) MiB, settled at $((settled / MiB)) MiB (wal_spool_max 64 MiB)"
# Bounded: the slot follows the spool, not the absent target.
[ "$max_slot" -le $((64 * MiB)) ] || fail "the slot retained $((max_slot / MiB)) MiB for an absent target"
[ "$max_wal" -le $((128 * MiB)) ] || fail "the primary's pg_wal grew to $((max_wal / MiB)) MiB"
[ "$max_spool" -lt "$written" ] || fail "the spool kept all $((written / MiB)) MiB written"

# The alert: status, the log, bascule check.
[ "$(pgtgt needs_base)" = true ] || fail "status: needs_base $(pgtgt needs_base) for a target behind the spool"
grep -q "fell behind the WAL spool of app/db" "$T/daemon.log" || fail "no log line for the target behind the spool"
expect_rc 2 bsc check --max-lag 1h
grep -q "needs a base backup" "$T/out" || fail "bascule check does not say the target needs a base backup: $(cat "$T/out")"

# Back: a new base backup for it, then it converges.
rm -f "$T/offline"
wait_for 120 "the target to hold a new base backup" \
	'[ "$(grep -c "holds base backup .* of app/db" "$T/daemon.log")" -ge 2 ] && [ "$(pgtgt needs_base)" = false ]'
pg_sql p "INSERT INTO t (id) VALUES (18)" >/dev/null
bsc_sync 60s >/dev/null || fail "sync failed once the target came back"
expect_rc 0 bsc check --max-lag 1h
bsc_stop
sink_restore r
[ "$(pg_sql r "SELECT count(*), min(id), max(id) FROM t")" = "18|1|18" ] ||
	fail "the restored cluster has rows $(pg_sql r "SELECT count(*), min(id), max(id) FROM t") of 18"
note "back online: a new base backup ($(grep -c 'taking a base backup' "$T/daemon.log") taken in all), restored with 18 rows of 18"
