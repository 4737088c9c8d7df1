# pgreplica: `bascule recv` keeping a PostgreSQL source (base backup + WAL)
# and `bascule replica promote` bringing it up, cold.  The epochs come from
# tests/helpers/pgfeed, a STAND-IN FOR BASCULED (the daemon's PostgreSQL
# side is written alongside), which sends what `bascule pgstream` wrote
# from a real PostgreSQL 15 under pgbench load (--base-backup, --to-dir) as
# protocol-version-2 epochs to a real `bascule recv` on pipes.
#  - the store's complete segments and base files equal pgstream's (cmp),
#    and `replica verify` recomputes the WAL chain and the base's digest;
#  - group commit: small WAL epochs 8 in flight are made durable and acked
#    in fewer rounds than epochs (one by one: as many rounds as epochs);
#  - a WAL byte changed after its epoch's digest: NACK 74, nothing applied,
#    the replica at its previous epoch; feeding resumes (a new base);
#  - kill -9 of recv at random moments during WAL (8 epochs in flight too)
#    and during a base: the store is at a complete epoch (verify), at or
#    after the last one acked, feeding resumes to the end;
#  - promote (cold) leaves a data directory PostgreSQL starts from, whose
#    tables equal the primary's at the promoted LSN, on a new timeline;
#  - promote --epoch N: the tables as they were at that epoch's end;
#  - promote --at TIME between two commits: the first row, not the second.
# run.sh: first
. "$(dirname "$0")/../lib/common.sh"
. "$ROOT/tests/lib/pg.sh"
need_root

pg_init p
pg_start p
PD=$(pg_dir p)
CI=$(pg_conninfo p)
PS=("$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "$CI")
bsc_keygen
KEY=$T/site.key
R=$T/replica
mkdir -p "$R"; chown postgres: "$R"          # the receiving user: PostgreSQL runs as it
lsn_num() { pg_sql p "SELECT '$1'::pg_lsn - '0/0'::pg_lsn"; }
san_check() {
	! grep -l "AddressSanitizer\|LeakSanitizer\|runtime error" "$T"/*.log "$T"/*.err 2>/dev/null ||
		fail "sanitizer report: $(grep -h -A5 "Sanitizer\|runtime error" "$T"/*.log "$T"/*.err 2>/dev/null | head -20)"
}
# pgfeed ROOT [OPTIONS...]: the stand-in for basculed, to a receiver of ROOT
feed() {
	local root=$1; shift
	"$BIN/tests/pgfeed" --key "$KEY" --group app --source db --base "$T/base" --wal "$T/wal" \
		--clock "$T/clock" "$@" -- "$BIN/bascule" recv --root "$root" --key "$KEY" --keep-epochs "${KEEP:-1000}"
}
state_field() { # ROOT FIELD: from `replica list` of source db
	"$BIN/bascule" replica list --root "$1" --key "$KEY" --group app |
		sed -n "s/.*source db .*$2 \([^ ]*\).*/\1/p"
}

# --- the primary: WAL streamed by pgstream, a base backup, load ----------
pg_sql p "SELECT pg_create_physical_replication_slot('bsc', true)" >/dev/null
"${PS[@]}" --slot bsc --to-dir "$T/wal" --status-interval 1s 2> "$T/pgstream.err" &
STREAM=$!
# The primary's clock: its WAL position and time, for the epochs' cut times.
( while :; do pg_sql p "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, (extract(epoch from clock_timestamp()) * 1e6)::bigint" \
	2>/dev/null | tr '|' ' ' >> "$T/clock"; sleep 0.1; done ) &
CLOCK=$!
stop_primary_helpers() { kill "$CLOCK" "$STREAM" 2>/dev/null; }
EXIT_HOOKS+=(stop_primary_helpers)
pg_bench_init p 4
pg_bench p 2 2 &
LOAD=$!
"${PS[@]}" --base-backup "$T/base" --checkpoint fast > "$T/base.out" 2> "$T/base.err" ||
	fail "base backup failed: $(cat "$T/base.err")"
wait "$LOAD" || fail "pgbench failed"
# Segment switches between the phases: the store's segments are compared
# below, and a loaded machine's pgbench seconds may not fill 4 of them.
pg_sql p "SELECT pg_switch_wal()" >/dev/null
pg_bench p 3 2
pg_sql p "SELECT pg_switch_wal()" >/dev/null
pg_sql p "CREATE TABLE marks (id int, at timestamptz default clock_timestamp())" >/dev/null
pg_bench_digest p > "$T/digest.mid"
MID=$(pg_sql p "SELECT pg_current_wal_insert_lsn()")      # the end of what digest.mid saw
pg_sql p "INSERT INTO marks (id) VALUES (1)" >/dev/null
sleep 1.2
AT=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ | cut -c1-26)Z
AT_SEC=$(date -u +%s.%N)
sleep 1.2
pg_sql p "INSERT INTO marks (id) VALUES (2)" >/dev/null
pg_sql p "SELECT pg_switch_wal()" >/dev/null
pg_bench p 3 2
pg_bench_digest p > "$T/digest.end"
pg_sql p "SELECT pg_switch_wal()" >/dev/null
END=$(pg_sql p "SELECT pg_current_wal_lsn()")
last=$(pg_sql p "SELECT pg_walfile_name('$END')")
wait_for 120 "pgstream's $last" '[ -f "$T/wal/$last" ]'
kill -TERM "$STREAM"; wait "$STREAM" || fail "pgstream --to-dir failed: $(tail -3 "$T/pgstream.err")"
kill "$CLOCK"; wait "$CLOCK" 2>/dev/null || true
SYS=$(printf %016x "$(pg_as "$PG_BIN/pg_controldata" -D "$PD/data" | sed -n 's/^Database system identifier: *//p')")
STORE=$R/app/.db.pg/$SYS
note "primary: base $(du -h "$T/base/base.tar" | cut -f1), WAL to $END ($(ls "$T/wal" | wc -l) files); mid $MID"

# --- 1. the store equals pgstream's ----------------------------------------
t0=$(date +%s.%N)
feed "$R" --epoch-bytes 1500000 --upto "$MID" > "$T/feed1.out" 2> "$T/feed1.err" ||
	fail "feeding failed: $(tail -3 "$T/feed1.err")"
MID_EPOCH=$(tail -1 "$T/feed1.out" | cut -d' ' -f2)
[ "$(state_field "$R" end)" = "$MID" ] || fail "the replica ends at $(state_field "$R" end), not $MID"
# Group commit: small WAL-only epochs, each acked before the next is sent,
# then 8 in flight (basculed's max_in_flight): those that arrive while one
# is applied are made durable together and acked together.
# Their commit point is an ack slot overwritten in place (state.ack): the
# state file is not replaced (the same inode) while the epochs move on.
GST=$R/.bascule/groups/app
ino=$(stat -c %i "$GST/state")
e0=$("$BIN/bascule" replica list --root "$R" --key "$KEY" --group app | sed -n 's/^group app: epoch \([0-9]*\).*/\1/p')
g1=$(date +%s.%N)
feed "$R" --epoch-bytes 16384 --epochs 100 > "$T/g1.out" 2> "$T/g1.err" || fail "feeding failed: $(tail -3 "$T/g1.err")"
e1=$("$BIN/bascule" replica list --root "$R" --key "$KEY" --group app | sed -n 's/^group app: epoch \([0-9]*\).*/\1/p')
[ "$e1" -ge "$((e0 + 100))" ] || fail "100 light epochs took the replica from epoch $e0 to $e1"
[ "$(stat -c %i "$GST/state")" = "$ino" ] || fail "light epochs replaced the state file (no ack slot commit)"
[ "$(stat -c %s "$GST/state.ack")" = 16384 ] || fail "no ack slots: $(ls -l "$GST")"
g8=$(date +%s.%N)
feed "$R" --epoch-bytes 16384 --epochs 100 --in-flight 8 > "$T/g8.out" 2> "$T/g8.err" ||
	fail "feeding 8 in flight failed: $(tail -3 "$T/g8.err")"
g9=$(date +%s.%N)
[ "$(grep -c '^ACK' "$T/g1.out")" = 100 ] && [ "$(grep -c '^ACK' "$T/g8.out")" = 100 ] ||
	fail "not 100 ACKs each: $(grep -c '^ACK' "$T/g1.out"), $(grep -c '^ACK' "$T/g8.out")"
! grep -q "group commit" "$T/g1.err" || fail "epochs acked one by one were grouped: $(grep "group commit" "$T/g1.err")"
rounds=$(sed -n 's/.*group commit: 100 epochs made durable and acknowledged in \([0-9]*\) rounds.*/\1/p' "$T/g8.err")
[ -n "$rounds" ] && [ "$rounds" -le 80 ] ||
	fail "8 epochs in flight were not made durable together: $(grep "group commit" "$T/g8.err" || echo "no group commit line")"
# The undo journals past --keep-epochs go once the ACKs are out
# (replica_tidy), not before them: none is left behind (in a copy: the
# promotions below want the old rollback points).
cp -a "$R" "$T/replica5"
KEEP=5 feed "$T/replica5" --epoch-bytes 16384 --epochs 12 --in-flight 8 > "$T/g10.out" 2> "$T/g10.err" ||
	fail "feeding with --keep-epochs 5 failed: $(tail -3 "$T/g10.err")"
[ "$(grep -c '^ACK' "$T/g10.out")" = 12 ] || fail "not 12 ACKs: $(grep -c '^ACK' "$T/g10.out")"
n_undo=$(find "$T/replica5/.bascule/groups/app/undo" -name '*.undo' | wc -l)
[ "$n_undo" = 5 ] || fail "--keep-epochs 5 left $n_undo undo journals: $(ls "$T/replica5/.bascule/groups/app/undo" | head -20)"
rm -rf "$T/replica5"
note "group commit: 100 epochs of 16 KiB in $(printf %.2f "$(echo "$g8 - $g1" | bc)") s one by one, $(printf %.2f "$(echo "$g9 - $g8" | bc)") s 8 in flight ($rounds rounds of fsyncs)"
feed "$R" --epoch-bytes 1500000 > "$T/feed2.out" 2> "$T/feed2.err" || fail "feeding failed: $(tail -3 "$T/feed2.err")"
t1=$(date +%s.%N)
n_epochs=$(cat "$T/feed1.out" "$T/g1.out" "$T/g8.out" "$T/feed2.out" | grep -c '^ACK')
n=0
first=$(basename "$(ls "$STORE"/wal/[0-9A-F]* | head -1)")   # the base's segment
for f in "$T"/wal/[0-9A-F]*; do
	b=$(basename "$f")
	[[ $b =~ ^[0-9A-F]{24}$ ]] && ! [[ $b < ${first:0:24} ]] || continue
	[ -f "$STORE/wal/$b" ] || fail "the store lacks the complete segment $b: $(ls "$STORE/wal")"
	cmp -s "$f" "$STORE/wal/$b" || fail "segment $b differs from pgstream's"
	n=$((n + 1))
done
[ "$n" -ge 4 ] || fail "only $n complete segments compared"
for f in base.tar backup_manifest; do
	cmp -s "$T/base/$f" "$STORE/base/"*/$f || fail "base file $f differs from pgstream's"
done
"$BIN/bascule" replica verify --root "$R" --key "$KEY" > "$T/verify.out" 2>&1 || fail "verify: $(cat "$T/verify.out")"
grep -q "app/db: OK at epoch .*(PostgreSQL: base" "$T/verify.out" || fail "verify says: $(cat "$T/verify.out")"
note "$n_epochs epochs in $(printf %.1f "$(echo "$t1 - $t0" | bc)") s; $n complete segments and the base equal pgstream's; $(cat "$T/verify.out")"
san_check

# --- 2. a WAL byte changed after its epoch's digest ------------------------
R2=$T/replica2
mkdir -p "$R2"; chown postgres: "$R2"
feed "$R2" --epoch-bytes 1000000 --epochs 3 > "$T/t1.out" 2> "$T/t1.err" || fail "feeding failed: $(tail -3 "$T/t1.err")"
before=$(state_field "$R2" end)
expect_rc 3 feed "$R2" --epoch-bytes 1000000 --epochs 1 --tamper-epoch 4
grep -q "^NACK 4 74 the WAL of app/db in epoch 4 .* does not match the primary's digest" "$T/out" ||
	fail "no NACK 74 naming the WAL digest: $(cat "$T/out" "$T/err")"
[ "$(state_field "$R2" end)" = "$before" ] || fail "the tampered epoch moved the replica from $before to $(state_field "$R2" end)"
"$BIN/bascule" replica list --root "$R2" --key "$KEY" | grep -q "group app: epoch 3 " || fail "not at epoch 3 after the NACK"
"$BIN/bascule" replica list --root "$R2" --key "$KEY" | grep -q "source db .* diverged" || fail "the source is not marked diverged"
# The primary then sends a new base (the same one here: the store keeps it).
feed "$R2" --epoch-bytes 3000000 > "$T/t2.out" 2> "$T/t2.err" || fail "feeding after the NACK failed: $(tail -3 "$T/t2.err")"
head -1 "$T/t2.out" | grep -q "^ACK 4 " || fail "feeding did not resume at epoch 4: $(head -1 "$T/t2.out")"
[ "$(state_field "$R2" end)" = "$END" ] || fail "after the NACK the replica ends at $(state_field "$R2" end), not $END"
"$BIN/bascule" replica verify --root "$R2" --key "$KEY" > "$T/verify2.out" 2>&1 || fail "verify after the NACK: $(cat "$T/verify2.out")"
note "tampered WAL: NACK 74, replica kept at epoch 3 ($before), diverged; fed again from a base: verify OK"

# --- 3. kill -9 of recv during WAL and during a base -------------------------
killed_at() { # ROOT WHEN OPTIONS...: feed in the background, kill the receiver when WHEN holds
	local root=$1 when=$2; shift 2
	feed "$root" "$@" > "$T/k.out" 2> "$T/k.err" &
	local f=$!
	wait_for 60 "the moment to kill" "$when"
	sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
	pkill -9 -f "bascule recv --root $root " || true
	wait "$f" && note "(the feed ended before the kill)" || true
}
recovered_ok() { # ROOT: recovery, then a complete epoch that verifies (or nothing yet)
	local root=$1
	# The receiver killed -9 may hold the replica's lock until it is reaped
	# (the condition names $root: in it, $1 would be wait_for's own argument).
	wait_for 20 "the killed receiver to be gone" '! pgrep -f "bascule recv --root $root " >/dev/null'
	"$BIN/bascule" replica recover --root "$1" --key "$KEY" > "$T/rec.out" 2>&1 || fail "recover: $(cat "$T/rec.out")"
	! find "$1" -name '*.tmp' | grep -q . || fail "leftovers after recovery: $(find "$1" -name '*.tmp')"
	if grep -q "no complete epoch" "$T/rec.out"; then echo none; return; fi
	"$BIN/bascule" replica verify --root "$1" --key "$KEY" > "$T/v.out" 2>&1 || fail "verify after kill -9: $(cat "$T/v.out")"
	# A WAL-only epoch commits by its state alone (no redo journal): its
	# undo journal was durable before, so the rollback points go on without
	# a gap from the epoch before the state's (--keep-epochs 1000 keeps all).
	local e pts
	e=$("$BIN/bascule" replica list --root "$1" --key "$KEY" --group app | sed -n 's/^group app: epoch \([0-9]*\).*/\1/p')
	pts=$("$BIN/bascule" replica list --root "$1" --key "$KEY" --group app |
		sed -n 's/^ *rollback points: \([0-9 ]*[0-9]\).*/\1/p')
	# (`replica list` shows the newest 64.)
	local low=$((e > 64 ? e - 64 : 0))
	[ "$pts" = "$(seq -s ' ' $((e - 1)) -1 $low)" ] ||
		fail "after kill -9 at epoch $e the rollback points are '$pts', not $((e - 1)) down to $low"
	# Nothing acknowledged is lost (epochs 8 in flight, made durable together).
	local acked
	acked=$(grep '^ACK' "$T/k.out" | tail -1 | cut -d' ' -f2)
	[ -z "$acked" ] || [ "$e" -ge "$acked" ] || fail "epoch $acked was acknowledged, but after kill -9 the replica is at $e"
	state_field "$1" end
}
R3=$T/replica3
mkdir -p "$R3"; chown postgres: "$R3"
# During a base (the first epoch: 83 MB of base.tar), then during WAL.
killed_at "$R3" '[ -d "$R3/app/.db.pg/$SYS/base" ] && ls "$R3/app/.db.pg/$SYS/base" | grep -q tmp' --epoch-bytes 500000
k1=$(recovered_ok "$R3")
killed_at "$R3" 'grep -q "^ACK" "$T/k.out"' --epoch-bytes 300000 --interval 20
k2=$(recovered_ok "$R3")
killed_at "$R3" 'grep -q "^ACK" "$T/k.out"' --epoch-bytes 30000 --in-flight 8
k3=$(recovered_ok "$R3")
feed "$R3" --epoch-bytes 2000000 > "$T/k4.out" 2> "$T/k4.err" || fail "feeding after the kills failed: $(tail -3 "$T/k4.err")"
[ "$(state_field "$R3" end)" = "$END" ] || fail "after the kills the replica ends at $(state_field "$R3" end)"
"$BIN/bascule" replica verify --root "$R3" --key "$KEY" > "$T/v.out" 2>&1 || fail "final verify: $(cat "$T/v.out")"
for f in "$STORE"/wal/[0-9A-F]*; do
	b=$(basename "$f"); [[ $b =~ ^[0-9A-F]{24}$ ]] || continue
	cmp -s "$f" "$R3/app/.db.pg/$SYS/wal/$b" || fail "after the kills, segment $b differs"
done
note "kill -9 of recv during a base, then twice during WAL (the second with 8 epochs in flight): at a complete epoch each time, none acked lost ($k1, $k2, $k3), resumed to $END"
san_check

# --- 4. promote (cold): a primary at exactly the promoted point ------------
SOCK=$T/sock; mkdir -p "$SOCK"; chown postgres: "$SOCK"
printf "unix_socket_directories = '%s'\nport = 5433\nlisten_addresses = ''\n" "$SOCK" > "$T/site.conf"
# digest_of: the pgbench tables of the promoted cluster, as pg_bench_digest prints them
digest_of() {
	local t
	for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
		pg_as "$PG_BIN/psql" -X -q -At -h "$SOCK" -p 5433 -U postgres -d postgres \
			-c "SELECT '$t', count(*), coalesce(sum(hashtext(x::text)::bigint), 0) FROM $t x"
	done
}
psql_promoted() { pg_as "$PG_BIN/psql" -X -q -At -h "$SOCK" -p 5433 -U postgres -d postgres -c "$1"; }
run_promoted() { # DATADIR: start it, CHECK (a function), stop it
	pg_as "$PG_BIN/pg_ctl" -D "$1" -l "$SOCK/promoted.log" -w -t 60 start > /dev/null ||
		fail "PostgreSQL does not start from the promoted $1: $(tail -5 "$SOCK/promoted.log")"
	"$2"
	pg_as "$PG_BIN/pg_ctl" -D "$1" -m fast -w -t 60 stop > /dev/null || fail "the promoted cluster did not stop"
}
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$T/out"; }
promote() { # COPY OPTIONS...: promote a copy of the replica
	local c=$1; shift
	cp -a "$R" "$c"
	expect_rc 0 "$BIN/bascule" replica promote --root "$c" --key "$KEY" --group app --pg-conf "$T/site.conf" --json "$@"
}
check_end() {
	digest_of > "$T/digest.promoted"
	cmp -s "$T/digest.end" "$T/digest.promoted" || fail "the promoted tables differ: $(diff "$T/digest.end" "$T/digest.promoted")"
	[ "$(psql_promoted "SELECT pg_is_in_recovery()")" = f ] || fail "the promoted cluster is still in recovery"
	[ "$(psql_promoted "SELECT timeline_id FROM pg_control_checkpoint()")" = 2 ] || fail "not on timeline 2"
	psql_promoted "CREATE TABLE after_promote (x int)" > /dev/null || fail "the promoted cluster does not take writes"
}
t0=$(date +%s.%N)
promote "$T/p1"
t1=$(date +%s.%N)
D1=$(json_get "d['postgres'][0]['data_dir']")
[ "$D1" = "$T/p1/app/db" ] || fail "data directory $D1, not $T/p1/app/db"
[ "$(json_get "d['postgres'][0]['end_lsn']")" = "$END" ] || fail "promoted at $(json_get "d['postgres'][0]['end_lsn']"), not $END"
[ "$(json_get "d['postgres'][0]['timeline']")" = 2 ] || fail "promote reports timeline $(json_get "d['postgres'][0]['timeline']")"
[ -f "$D1/pg_wal/00000002.history" ] || fail "no 00000002.history in the promoted pg_wal"
[ "$(stat -c %U "$D1")" = postgres ] && [ "$(stat -c %a "$D1")" = 700 ] || fail "the data directory is $(stat -c '%U %a' "$D1")"
run_promoted "$D1" check_end
note "promote (cold): $(printf %.1f "$(echo "$t1 - $t0" | bc)") s to a primary at $END on timeline 2 (last transaction $(json_get "d['postgres'][0]['last_transaction']")); tables equal the primary's"
# Promoting again (a resumed drill) reports the same and changes nothing.
expect_rc 0 "$BIN/bascule" replica promote --root "$T/p1" --key "$KEY" --group app --json
[ "$(json_get "d['postgres'][0]['redo_lsn']")" != 0/0 ] || fail "a second promote lost what the first did"
# An exact epoch: the tables as digest.mid saw them.
check_mid() {
	digest_of > "$T/digest.promoted"
	cmp -s "$T/digest.mid" "$T/digest.promoted" || fail "promote --epoch $MID_EPOCH: the tables differ: $(diff "$T/digest.mid" "$T/digest.promoted")"
}
promote "$T/p2" --epoch "$MID_EPOCH"
[ "$(json_get "d['postgres'][0]['end_lsn']")" = "$MID" ] || fail "promote --epoch $MID_EPOCH recovered to $(json_get "d['postgres'][0]['end_lsn']"), not $MID"
run_promoted "$T/p2/app/db" check_mid
note "promote --epoch $MID_EPOCH: recovered to $MID, the tables as they were there"
# A time between two commits: mark 1 present, mark 2 not.
check_at() {
	[ "$(psql_promoted "SELECT string_agg(id::text, ',' ORDER BY id) FROM marks")" = 1 ] ||
		fail "promote --at $AT: marks are '$(psql_promoted "SELECT string_agg(id::text, ',' ORDER BY id) FROM marks")', not 1"
}
promote "$T/p3" --at "$AT" --link-dir "$T/p3-link"
[ "$(json_get "d['postgres'][0]['data_dir']")" = "$T/p3-link/db" ] || fail "--link-dir: data directory $(json_get "d['postgres'][0]['data_dir']")"
xact=$(json_get "d['postgres'][0]['last_transaction_us']")
[ "$xact" -le "$(echo "$AT_SEC * 1000000 / 1" | bc)" ] || fail "the last transaction recovered ($xact) is after $AT"
run_promoted "$T/p3-link/db" check_at
note "promote --at $AT: mark 1 present, mark 2 absent; last transaction recovered $(json_get "d['postgres'][0]['last_transaction']")"
san_check

# --- 5. hot: a standby replaying as recv commits, promoted in seconds -------
R4=$T/replica4
mkdir -p "$R4"; chown postgres: "$R4"
install -o postgres -m 0600 "$KEY" "$T/pg.key"     # the restore_command runs as postgres
feed "$R4" --epoch-bytes 1500000 --upto "$MID" > "$T/h1.out" 2> "$T/h1.err" || fail "feeding failed: $(tail -3 "$T/h1.err")"
# wal-get, the standby's restore_command: the committed copy, nothing beyond it
WG=("$BIN/bascule" replica wal-get --root "$R4" --key "$T/pg.key" --group app --source db)
seg_mid=$(pg_sql p "SELECT pg_walfile_name('$MID')")
expect_rc 0 "${WG[@]}" "$seg_mid" "$T/seg"
cmp -s -n $(( $(lsn_num "$MID") % 16777216 )) "$T/seg" "$T/wal/$seg_mid" || fail "wal-get $seg_mid differs from pgstream's below $MID"
[ -z "$(tail -c +$(( $(lsn_num "$MID") % 16777216 + 1 )) "$T/seg" | tr -d '\0' | head -c 1)" ] || fail "wal-get $seg_mid holds bytes past the committed $MID"
seg_next=$(pg_sql p "SELECT pg_walfile_name('$MID'::pg_lsn + 16777216)")
expect_rc 1 "${WG[@]}" "$seg_next" "$T/seg"        # not committed yet (the copy ends at $MID)
expect_rc 1 "${WG[@]}" 00000002.history "$T/seg"   # no such timeline
expect_rc 2 "$BIN/bascule" replica wal-get --root "$R4" --group app "$seg_mid"
expect_rc 0 "$BIN/bascule" replica standby --root "$R4" --key "$T/pg.key" --group app --pg-conf "$T/site.conf"
grep -q "app/db: hot standby started in $R4/app/db" "$T/out" || fail "standby says: $(cat "$T/out" "$T/err")"
[ "$(psql_promoted "SELECT pg_is_in_recovery()")" = t ] || fail "the standby is not in recovery"
feed "$R4" --epoch-bytes 1500000 > "$T/h2.out" 2> "$T/h2.err" || fail "feeding failed: $(tail -3 "$T/h2.err")"
t0=$(date +%s.%N)
wait_for 60 "the standby's replay to $END" \
	'[ "$(psql_promoted "SELECT pg_last_wal_replay_lsn() >= '"'$END'"'" 2>/dev/null)" = t ]'
t1=$(date +%s.%N)
expect_rc 0 "$BIN/bascule" replica standby --root "$R4" --key "$T/pg.key" --group app
grep -q "app/db: hot standby running" "$T/out" || fail "a second standby call says: $(cat "$T/out")"
t2=$(date +%s.%N)
expect_rc 0 "$BIN/bascule" replica promote --root "$R4" --key "$T/pg.key" --group app --json
t3=$(date +%s.%N)
[ "$(json_get "d['postgres'][0]['mode']")" = hot ] || fail "promote did not use the standby: $(cat "$T/out")"
[ "$(json_get "d['postgres'][0]['end_lsn']")" = "$END" ] || fail "hot promote at $(json_get "d['postgres'][0]['end_lsn']")"
[ "$(json_get "d['postgres'][0]['timeline']")" = 2 ] || fail "hot promote reports timeline $(json_get "d['postgres'][0]['timeline']")"
check_end      # running: the tables, not in recovery, timeline 2, takes writes
pg_as "$PG_BIN/pg_ctl" -D "$R4/app/db" -m fast -w -t 60 stop > /dev/null || fail "the promoted standby did not stop"
note "hot: the standby caught up $(printf %.1f "$(echo "$t1 - $t0" | bc)") s after the last epoch; promote (hot) $(printf %.1f "$(echo "$t3 - $t2" | bc)") s to a running primary at $END on timeline 2"
san_check
