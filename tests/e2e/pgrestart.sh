# pgrestart: the primary PostgreSQL crashes (pg_ctl stop -m immediate) under
# pgbench load while basculed streams, and starts again: basculed goes on
# streaming from exactly where its spool ends (mid segment), with no gap —
# the copy at tests/helpers/pgsink (a STAND-IN for `bascule recv`, see
# pgprimary.sh) restored and started equals the primary after its restart
# and more load.  (Before, the daemon refused the resumed stream forever.)
# Then epoch numbers across a clean stop (no gap) and a kill -9 of basculed
# (numbering after its reservation of WAL-only epoch numbers).
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
# Epoch numbers (docs/design.md): WAL-only cuts commit within a reservation
# written to the group state; a clean stop gives it back (numbering goes on
# at last_cut + 1), a kill -9 does not (numbering goes on after it, so no
# number a target may hold is cut again).
last_cut() { status_get "d['groups'][0]['last_cut']"; }
l1=$(last_cut)
bsc_stop
bsc_start
wait_for 60 "a cut after the restart" '[ "$(last_cut)" -gt "$l1" ]'
l2=$(last_cut)
[ "$l2" -le $((l1 + 20)) ] || fail "after a clean stop at epoch $l1 the numbering jumped to $l2"
! grep -q "epoch numbers go on after" "$T/daemon.log" || fail "a clean stop kept its reservation: $(grep "numbers go on" "$T/daemon.log")"
pg_bench p 1 2
l3=$(last_cut)
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=""; rm -f "$T/ctl.sock"
bsc_start
res=$(sed -n 's/.*epoch numbers go on after \([0-9]*\).*/\1/p' "$T/daemon.log" | tail -1)
[ -n "$res" ] || fail "after kill -9 at epoch $l3 the daemon did not go on after its reservation"
wait_for 60 "a cut after the kill -9" '[ "$(last_cut)" -gt "$res" ]'
l4=$(last_cut)
[ "$res" -ge "$l3" ] && [ "$l4" -le $((res + 20)) ] ||
	fail "after kill -9 at epoch $l3: reservation '${res:-none}', numbering at $l4"
note "epoch numbers: clean stop at $l1 -> $l2; kill -9 at $l3 -> after the reservation $res: $l4"
pg_bench_digest p > "$T/digest.primary"
expect_rc 0 timeout 90 "$BIN/bascule" --socket "$T/ctl.sock" sync app --wait --timeout 60s
bsc_stop
pg_stop p
sink_restore r
pg_bench_digest r > "$T/digest.restored"
cmp -s "$T/digest.primary" "$T/digest.restored" || fail "restored tables differ: $(diff "$T/digest.primary" "$T/digest.restored")"
note "primary crashed at $before (basculed's end of WAL) and restarted: streaming resumed, the restored copy equals the primary"
