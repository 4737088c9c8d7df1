# pgrestart: the primary PostgreSQL crashes (pg_ctl stop -m immediate) under
# pgbench load while basculed streams, and starts again: basculed goes on
# streaming from exactly where its spool ends (mid segment), with no gap —
# the copy at tests/helpers/pgsink (a STAND-IN for `bascule recv`, see
# pgprimary.sh) restored and started equals the primary after its restart
# and more load.  (Before, the daemon refused the resumed stream forever.)
. "$(dirname "$0")/../lib/common.sh"
PG_RELAY_USER=$RELAY_USER
. "$ROOT/tests/lib/pg.sh"
. "$ROOT/tests/lib/pgsink.sh"
need_root
pg_init p
pg_start p
pg_bench_init p 4
bsc_keygen
sink_config p "wal_interval: 200ms"
bsc_start
wait_for 60 "the first base backup at the stand-in" '[ -f "$SINK/app/db/base/backup_manifest" ]'
pg_bench p 4 2
before=$(pgsrc received_lsn)
pg_stop p immediate
pg_start p
wait_for 60 "basculed to stream again after the crash" \
	'[ "$(pgsrc state)" = "\"streaming\"" ] && [ "$(lsn_of "$(pgsrc received_lsn)")" -ge "$(pg_lsn p)" ]'
grep -q "not from where the spool ends" "$T/daemon.log" && fail "basculed refused the resumed stream: $(grep "spool ends" "$T/daemon.log" | head -1)"
pg_bench p 3 2
pg_bench_digest p > "$T/digest.primary"
expect_rc 0 timeout 90 "$BIN/bascule" --socket "$T/ctl.sock" sync app --wait --timeout 60s
bsc_stop
pg_stop p
sink_restore r
pg_bench_digest r > "$T/digest.restored"
cmp -s "$T/digest.primary" "$T/digest.restored" || fail "restored tables differ: $(diff "$T/digest.primary" "$T/digest.restored")"
note "primary crashed at $before (basculed's end of WAL) and restarted: streaming resumed, the restored copy equals the primary"
