# pgstream: `bascule pgstream` against a real PostgreSQL 15 under pgbench load.
#  - its WAL segments are byte for byte those pg_receivewal writes over the
#    same range, and it resumes from its directory without a gap;
#  - its base backup plus its WAL verify (pg_verifybackup, WAL parsed) and
#    restore into a data directory PostgreSQL recovers to the end LSN, where
#    every pgbench table equals the primary's;
#  - after a promotion it follows the new timeline (history file, segments)
#    as pg_receivewal does;
#  - the slot (and synchronous commit) advance only to what the owner
#    reported flushed;
#  - the child runs as the unprivileged user with no_new_privs, and its
#    Landlock sandbox refuses a file the user could read;
#  - each bad input gives its error naming the fix and its exit code.
. "$(dirname "$0")/../lib/common.sh"
. "$ROOT/tests/lib/pg.sh"
need_root

t0=$(date +%s.%N)
pg_init p
t1=$(date +%s.%N)
pg_start p
t2=$(date +%s.%N)
note "cluster: initdb $(printf %.2f "$(echo "$t1 - $t0" | bc)") s, start $(printf %.2f "$(echo "$t2 - $t1" | bc)") s"
CI=$(pg_conninfo p)
PD=$(pg_dir p)
PS=("$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "$CI")
slot_lsn() { pg_sql p "SELECT coalesce(restart_lsn - '0/0'::pg_lsn, 0) FROM pg_replication_slots WHERE slot_name = '$1'"; }
lsn_num() { pg_sql p "SELECT '$1'::pg_lsn - '0/0'::pg_lsn"; }
# slot_reached SLOT LSN: the slot's restart_lsn is LSN or later (the state in $WAIT_WHY if not)
slot_reached() {
	[ "$(slot_lsn "$1")" -ge "$(lsn_num "$2")" ] && return 0
	echo "slot $1 at $(pg_sql p "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = '$1'"), want $2;" \
		"senders: $(pg_sql p "SELECT application_name, state, sent_lsn, write_lsn, flush_lsn FROM pg_stat_replication" | tr '\n' ' ')" > "$WAIT_WHY"
	return 1
}
slot_active() { [ -n "$(pg_sql p "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$1'")" ]; }
seg_of() { pg_sql p "SELECT pg_walfile_name('$1')"; } # the segment holding the byte before LSN

# A sanitizer report from any of our processes fails the test.
san_check() {
	! grep -l "AddressSanitizer\|LeakSanitizer\|runtime error" "$T"/*.log "$T"/*.err "$T/err" 2>/dev/null ||
		fail "sanitizer report: $(grep -h -A5 "Sanitizer\|runtime error" "$T"/*.log "$T"/*.err "$T/err" 2>/dev/null | head -20)"
}

# --- 1. the same segments as pg_receivewal --------------------------------
pg_sql p "SELECT pg_create_physical_replication_slot('prw', true)" >/dev/null
pg_sql p "SELECT pg_create_physical_replication_slot('bsc', true)" >/dev/null
mkdir -p "$T/prw"
"$PG_BIN/pg_receivewal" -h "$PD" -U postgres -S prw -D "$T/prw" -s 1 --no-loop 2> "$T/prw.log" &
PRW=$!
"${PS[@]}" --slot bsc --to-dir "$T/bsc" --status-interval 1s 2> "$T/bsc.log" &
BSC=$!
wait_for 30 "the pgstream child" 'pgrep -f -- "--slot bsc --user $PG_RELAY_USER --status-interval" >/dev/null'
child=$(pgrep -f -- "--slot bsc --user $PG_RELAY_USER --status-interval" | head -1)
[ "$(ps -o user= -p "$child")" = "$PG_RELAY_USER" ] || fail "the child runs as $(ps -o user= -p "$child"), not $PG_RELAY_USER"
grep -q "^NoNewPrivs:.*1" "/proc/$child/status" || fail "the child may gain privileges (no_new_privs not set)"
[ "$(ps -o user= -p "$BSC")" = root ] || fail "the owner does not run as root"
pg_bench_init p 4
# kill -9 of the owner at a random moment under load: the child stops (its
# stdin closed), a new run resumes from the directory, and the segments
# still equal pg_receivewal's below.
pg_bench p 4 2 &
LOAD=$!
sleep "$((RANDOM % 3)).$((RANDOM % 10))"
kill -9 "$BSC"
wait "$BSC" || true
wait_for 30 "the orphaned child to leave the slot" '! slot_active bsc'
"${PS[@]}" --slot bsc --to-dir "$T/bsc" --status-interval 1s 2>> "$T/bsc.log" &
BSC=$!
wait "$LOAD" || fail "pgbench failed"
pg_sql p "SELECT pg_switch_wal()" >/dev/null
pg_bench p 2 2
pg_sql p "SELECT pg_switch_wal()" >/dev/null
END1=$(pg_sql p "SELECT pg_current_wal_lsn()")
last=$(seg_of "$END1")
wait_for 120 "pg_receivewal's $last" '[ -f "$T/prw/$last" ]'
# (a streamer that died says why at once, its sanitizer report included)
bsc_has() {
	[ -f "$T/bsc/$1" ] && return 0
	kill -0 "$BSC" 2>/dev/null || fail "pgstream --to-dir exited before $1: $(tail -40 "$T/bsc.log")"
	return 1
}
wait_for 120 "pgstream's $last" bsc_has "$last"
# SIGTERM: background jobs of a script ignore SIGINT, and pg_receivewal 15
# dies of SIGTERM (143) with its complete segments already in place.
kill -TERM "$PRW" "$BSC"
wait "$PRW" || [ $? = 143 ] || fail "pg_receivewal failed: $(tail -3 "$T/prw.log")"
wait "$BSC" || fail "pgstream --to-dir exited $? on SIGTERM: $(tail -3 "$T/bsc.log")"
n=0
for f in "$T"/prw/[0-9A-F]*; do
	b=$(basename "$f")
	[[ $b =~ ^[0-9A-F]{24}$ ]] || continue
	[ -f "$T/bsc/$b" ] || fail "pgstream lacks the complete segment $b"
	cmp -s "$f" "$T/bsc/$b" || fail "segment $b differs from pg_receivewal's"
	n=$((n + 1))
done
for f in "$T"/bsc/*; do
	b=$(basename "$f")
	[[ $b =~ ^[0-9A-F]{24}(\.partial)?$ ]] || fail "unexpected file $b in the WAL directory"
done
[ "$n" -ge 4 ] || fail "only $n complete segments compared"
note "$n complete segments equal pg_receivewal's, up to $END1 (the streamer killed -9 once under load and restarted)"
san_check

# --- 2. base backup + WAL restore and recover ------------------------------
# The streamer resumes from its directory (after its newest segment), also
# over the next segment's NAME.partial left short by a run killed while it
# padded it with zeros: padded on, then written.
nxt=$(pg_sql p "SELECT pg_walfile_name('$END1'::pg_lsn + 1)")
torn=""
[ -e "$T/bsc/$nxt.partial" ] || { head -c 100000 /dev/zero > "$T/bsc/$nxt.partial"; torn=1; }
"${PS[@]}" --slot bsc --to-dir "$T/bsc" --status-interval 1s -v 2> "$T/bsc2.log" &
BSC=$!
wait_for 30 "streaming to resume" 'grep -q "streaming timeline 1 from" "$T/bsc2.log" 2>/dev/null'
resume=$(sed -n 's/.*streaming timeline 1 from \(.*\)/\1/p' "$T/bsc2.log" | head -1)
[ "$(lsn_num "$resume")" = "$(lsn_num "$END1")" ] || fail "resumed at $resume, not after the newest segment ($END1)"
[ -z "$torn" ] || note "resumed over a $nxt.partial of 100000 bytes (a padding cut short)"
pg_bench p 6 2 &
LOAD=$!
sleep 1
expect_rc 0 "${PS[@]}" --base-backup "$T/bb" --checkpoint fast --label "e2e base"
grep -q "base backup of timeline 1 from .* to .*: 1 archives" "$T/out" || fail "no summary: $(cat "$T/out")"
wait "$LOAD" || fail "pgbench under the base backup failed"
pg_bench_digest p > "$T/digest.primary"
END2=$(pg_sql p "SELECT pg_current_wal_lsn()")
wait_for 60 "the slot to reach $END2" 'slot_reached bsc "$END2"'
kill -TERM "$BSC"
wait "$BSC" || fail "pgstream --to-dir exited $? on SIGTERM"
[ -f "$T/bb/base.tar" ] && [ -f "$T/bb/backup_manifest" ] || fail "base backup files missing: $(ls "$T/bb")"
# The WAL as recovery reads it: the partial segment under its final name.
mkdir -p "$T/walcopy"
for f in "$T"/bsc/*; do b=$(basename "$f"); cp "$f" "$T/walcopy/${b%.partial}"; done
chown -R postgres "$T/walcopy"
RD=$(pg_dir r)
mkdir -p "$RD/data"
tar -xf "$T/bb/base.tar" -C "$RD/data"
chown -R postgres: "$RD"; chmod 700 "$RD/data"
"$PG_BIN/pg_verifybackup" -m "$T/bb/backup_manifest" -w "$T/walcopy" "$RD/data" > "$T/verify.log" 2>&1 \
	|| fail "pg_verifybackup refuses the backup and its WAL: $(tail -5 "$T/verify.log")"
cat >> "$RD/data/postgresql.conf" <<CONF
unix_socket_directories = '$RD'
listen_addresses = ''
restore_command = 'cp $T/walcopy/%f %p'
CONF
touch "$RD/data/recovery.signal"; chown postgres "$RD/data/recovery.signal"
PG_CLUSTERS+=(r)
pg_as "$PG_BIN/pg_ctl" -D "$RD/data" -l "$RD/log" -w -t 120 start >/dev/null || fail "the restored cluster did not start: $(tail -5 "$RD/log")"
wait_for 60 "the restored cluster to finish recovery" '[ "$(pg_sql r "SELECT pg_is_in_recovery()")" = f ]'
# All the WAL received is replayed (no target: to its end; it may hold
# records after END2, autovacuum's or a checkpoint's, none of pgbench's).
done_at=$(sed -n 's/.*redo done at \([0-9A-F]*\/[0-9A-F]*\).*/\1/p' "$RD/log" | tail -1)
[ -n "$done_at" ] || fail "no redo in the restored cluster's log: $(tail -5 "$RD/log")"
pg_bench_digest r > "$T/digest.restored"
cmp -s "$T/digest.primary" "$T/digest.restored" || fail "restored tables differ: $(diff "$T/digest.primary" "$T/digest.restored")"
pg_stop r
san_check
note "base backup $(du -h "$T/bb/base.tar" | cut -f1) + WAL recovered to $done_at (primary at $END2): $(wc -l < "$T/digest.restored") tables equal"

# --- 3. a timeline switch: streaming from a standby that is promoted ------
# pgstream and pg_receivewal both stream from standby s (cascading, from a
# slot on s); s is promoted: the old timeline ends at the switch point, both
# follow timeline 2 with its history file, and write the same segments.
SD=$(pg_dir s)
mkdir -p "$SD"; chown postgres: "$SD"
pg_as "$PG_BIN/pg_basebackup" -h "$PD" -U postgres -D "$SD/data" -R -X stream -c fast > "$T/sbb.log" 2>&1 ||
	fail "pg_basebackup of the standby failed: $(tail -3 "$T/sbb.log")"
echo "unix_socket_directories = '$SD'" >> "$SD/data/postgresql.conf"
PG_CLUSTERS+=(s)
pg_start s
pg_sql s "SELECT pg_create_physical_replication_slot('tl', true), pg_create_physical_replication_slot('tlprw', true)" >/dev/null
mkdir -p "$T/tlprw"
"$PG_BIN/pg_receivewal" -h "$SD" -U postgres -S tlprw -D "$T/tlprw" -s 1 --no-loop 2> "$T/tlprw.log" &
PRW=$!
"$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "$(pg_conninfo s)" --slot tl --to-dir "$T/tl" \
	--status-interval 1s -v 2> "$T/tl.log" &
TL=$!
wait_for 30 "streaming from the standby" 'grep -q "streaming timeline 1" "$T/tl.log" 2>/dev/null'
pg_bench p 2 2
pg_sql p "SELECT pg_switch_wal()" >/dev/null
P_END=$(pg_sql p "SELECT pg_current_wal_lsn()")
replayed() { [ "$(pg_sql s "SELECT pg_last_wal_replay_lsn() >= '$P_END'")" = t ]; }
wait_for 60 "the standby to replay $P_END" replayed
pg_as "$PG_BIN/pg_ctl" -D "$SD/data" -w -t 60 promote > /dev/null || fail "the standby did not promote"
pg_bench s 2 2
pg_sql s "SELECT pg_switch_wal()" >/dev/null
S_END=$(pg_sql s "SELECT pg_current_wal_lsn()")
last=$(pg_sql s "SELECT pg_walfile_name('$S_END')")
[[ $last == 00000002* ]] || fail "the promoted standby is not on timeline 2 ($last)"
wait_for 120 "pg_receivewal's $last" '[ -f "$T/tlprw/$last" ]'
wait_for 120 "pgstream's $last" '[ -f "$T/tl/$last" ]'
kill -TERM "$PRW" "$TL"
wait "$PRW" || [ $? = 143 ] || fail "pg_receivewal failed: $(tail -3 "$T/tlprw.log")"
wait "$TL" || fail "pgstream --to-dir exited $? after a timeline switch: $(tail -3 "$T/tl.log")"
grep -q "streaming timeline 2 from" "$T/tl.log" || fail "pgstream did not follow timeline 2: $(tail -3 "$T/tl.log")"
cmp -s "$T/tlprw/00000002.history" "$T/tl/00000002.history" || fail "00000002.history differs or is missing"
n1=0 n2=0
for f in "$T"/tlprw/[0-9A-F]*; do
	b=$(basename "$f")
	[[ $b =~ ^[0-9A-F]{24}$ ]] || continue
	cmp -s "$f" "$T/tl/$b" || fail "segment $b (timeline switch) differs from pg_receivewal's or is missing"
	[[ $b == 00000001* ]] && n1=$((n1 + 1)) || n2=$((n2 + 1))
done
[ "$n2" -ge 1 ] || fail "no complete segment of timeline 2 compared"
pg_stop s
san_check
note "timeline switch: $n1 + $n2 complete segments of timelines 1 and 2 and 00000002.history equal pg_receivewal's"

# --- 4. the slot advances only to what was reported flushed ----------------
L=$(pg_sql p "SELECT pg_current_wal_lsn()")
mkfifo "$T/fifo"
"${PS[@]}" --slot peer --application-name bascule_peer --status-interval 1s < "$T/fifo" 2> "$T/peer.err" |
	"$BIN/tests/pgpeer" --status "$T/peer.status" --flush-limit "$L" > "$T/fifo" 2> "$T/pgpeer.err" &
wait_for 30 "the peer to stream" 'grep -q "^received" "$T/peer.status" 2>/dev/null'
peer=$(pgrep -f "tests/pgpeer --status $T/peer.status")
pg_bench p 2 2
A=$(pg_sql p "SELECT pg_current_wal_lsn()")
received() { lsn_num "$(sed -n 's/^received //p' "$T/peer.status")"; }
wait_for 60 "the peer to receive $A" '[ "$(received)" -ge "$(lsn_num "$A")" ]'
written() { pg_sql p "SELECT coalesce(write_lsn - '0/0'::pg_lsn, 0) FROM pg_stat_replication WHERE application_name = 'bascule_peer'"; }
wait_for 30 "write_lsn to reach $A" '[ "$(written)" -ge "$(lsn_num "$A")" ]'
[ "$(pg_sql p "SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'bascule_peer'")" = "$L" ] ||
	fail "flush_lsn is $(pg_sql p "SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'bascule_peer'"), not the reported $L"
[ "$(slot_lsn peer)" = "$(lsn_num "$L")" ] || fail "slot peer at $(slot_lsn peer), not at the reported $L ($(lsn_num "$L"))"
# Synchronous commit waits for the flush the owner reports.
pg_set p synchronous_standby_names bascule_peer
pg_reload p
sync_state() { pg_sql p "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'bascule_peer'"; }
wait_for 30 "bascule_peer to be the synchronous standby" '[ "$(sync_state)" = sync ]'
pg_sql p "CREATE TABLE IF NOT EXISTS synctest (x int)" >/dev/null &
SYNC=$!
sleep 1
kill -0 "$SYNC" 2>/dev/null || fail "a commit returned while the owner held the flush position at $L"
kill -USR1 "$peer"
wait "$SYNC" || fail "the synchronous commit failed once flushed"
B=$(pg_sql p "SELECT pg_current_wal_lsn()")
wait_for 30 "slot peer to follow the flush" 'slot_reached peer "$B"'
pg_set p synchronous_standby_names ''
pg_reload p
# An owner that stops reading: the child stops reading the server once it
# holds 8 MiB for the owner (memory bounded), and nothing is lost.
pchild=$(pgrep -f -- "--slot peer --application-name bascule_peer")
kill -STOP "$peer"
# ~55 MB of WAL whatever the machine's load (pgbench for 4 s at a load of 17
# made less than the child's 8 MiB and the sockets' buffers hold).
pg_sql p "CREATE TABLE backpressure AS SELECT g, repeat(md5(g::text), 16) AS pad FROM generate_series(1, 100000) g" >/dev/null
C=$(pg_sql p "SELECT pg_current_wal_lsn()")
sent() { pg_sql p "SELECT sent_lsn - '0/0'::pg_lsn FROM pg_stat_replication WHERE application_name = 'bascule_peer'"; }
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pchild/status")
behind=$(( $(lsn_num "$C") - $(sent) ))
kill -CONT "$peer"
wait_for 60 "the peer to receive $C after its stall" '[ "$(received)" -ge "$(lsn_num "$C")" ]'
# (under AddressSanitizer its shadow memory and quarantine make RSS meaningless)
# (grep reads all of ldd's output: grep -q leaving early would kill ldd by SIGPIPE,
# a failure under pipefail, and the limit was applied to a sanitizer build)
ldd "$BIN/bascule" | grep libasan > /dev/null || [ "$rss" -lt 65536 ] || fail "the child held $rss kB while its owner stalled"
[ "$behind" -gt 0 ] || fail "the server sent everything while the owner stalled: no back-pressure exercised"
note "owner stalled: the child held $rss kB, the server kept $((behind >> 20)) MiB unsent; all received after"
kill -TERM "$pchild"
wait || true
san_check
note "slot held at the reported $L while $A was received; commit waited for the flush"

# --- 5. the sandbox ----------------------------------------------------------
echo secret > "$T/probe"; chmod 644 "$T/probe"   # readable by $PG_RELAY_USER without Landlock
BASCULE_TEST_SANDBOX_PROBE=$T/probe "${PS[@]}" < /dev/null > /dev/null 2> "$T/probe.err" || true
grep -q "sandbox probe $T/probe: Permission denied" "$T/probe.err" || fail "the sandbox let the child read $T/probe: $(cat "$T/probe.err")"
BASCULE_TEST_SANDBOX_PROBE=/etc/hostname "${PS[@]}" < /dev/null > /dev/null 2> "$T/probe.err" || true
grep -q "sandbox probe /etc/hostname: opened" "$T/probe.err" || fail "the sandbox refuses /etc: $(cat "$T/probe.err")"

# --- 6. over TCP, in the primary's namespace (tests/lib/sites.sh) -----------
. "$ROOT/tests/lib/sites.sh"
sites_net_up
pg_init n
pg_start n "$NS_P" "$IP_P"
TCP=("$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "host=$IP_P port=5432 user=$PG_REP_ROLE passfile=$PG_PASSFILE")
in_primary "${TCP[@]}" --base-backup "$T/bb-tcp" --checkpoint fast > "$T/tcp.out" 2> "$T/tcp.err" ||
	fail "a base backup over TCP failed: $(cat "$T/tcp.err")"
grep -q "base backup of timeline 1" "$T/tcp.out" || fail "no base backup over TCP: $(cat "$T/tcp.out")"
# Landlock's network rules (Linux 6.7+): the conninfo's port only.
if grep -q "opened\|refused" <(BASCULE_TEST_SANDBOX_PROBE=tcp:$IP_P:5432 in_primary "${TCP[@]}" < /dev/null 2>&1 >/dev/null); then
	BASCULE_TEST_SANDBOX_PROBE=tcp:$IP_P:5433 in_primary "${TCP[@]}" < /dev/null > /dev/null 2> "$T/probe.err" || true
	grep -q "sandbox probe tcp:$IP_P:5433: Permission denied" "$T/probe.err" ||
		fail "the sandbox let the child connect to another port: $(cat "$T/probe.err")"
	note "over TCP: base backup from $IP_P:5432; another port refused by the sandbox"
else
	fail "the sandbox refuses the conninfo's own port"
fi
pg_stop n
san_check

# --- 7. bad input: each error names the fix, with its exit code -------------
bad() { # bad RC PATTERN ARGS...
	local rc=$1 pat=$2; shift 2
	expect_rc "$rc" "$@"
	san_check
	grep -q -- "$pat" "$T/err" || fail "'$*': no '$pat' in: $(cat "$T/err")"
}
bad 3 "invalid connection option \"hst\".*libpq's syntax" "$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "hst=x" --slot a --to-dir "$T/w"
bad 1 "No such file.*check host= and port=" "$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "host=$PD port=5999 user=$PG_REP_ROLE" --slot a --to-dir "$T/w"
echo "*:*:*:$PG_REP_ROLE:wrong" > "$T/badpass"; chown "$PG_RELAY_USER" "$T/badpass"; chmod 600 "$T/badpass"
bad 4 "password authentication failed.*check user= and its password" "$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "host=$PD user=$PG_REP_ROLE passfile=$T/badpass" --slot a --to-dir "$T/w"
pg_sql p "CREATE ROLE norep LOGIN PASSWORD 'norep-pw'" >/dev/null
echo "*:*:*:norep:norep-pw" > "$T/norep.pass"; chown "$PG_RELAY_USER" "$T/norep.pass"; chmod 600 "$T/norep.pass"
bad 4 "no pg_hba.conf entry for replication.*add a replication line" "$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "host=$PD user=norep passfile=$T/norep.pass" --slot a --to-dir "$T/w"
echo "local replication norep scram-sha-256" >> "$PD/data/pg_hba.conf"; pg_reload p
# (the postmaster reloads pg_hba.conf when it handles the signal: wait for it)
hba_loaded() { ! "$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "host=$PD user=norep passfile=$T/norep.pass" --slot a --to-dir "$T/w" 2>&1 | grep -q pg_hba.conf; }
wait_for 30 "pg_hba.conf to be reloaded" hba_loaded
bad 4 "must be superuser or replication role.*ALTER ROLE bascule REPLICATION" "$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "host=$PD user=norep passfile=$T/norep.pass" --slot a --to-dir "$T/w"
chmod 644 "$T/norep.pass"; chown root "$T/norep.pass"; chmod 600 "$T/norep.pass"
bad 3 "norep.pass cannot be read by the user pgstream runs as.*chown" "$BIN/bascule" pgstream --user "$PG_RELAY_USER" --conninfo "host=$PD user=norep passfile=$T/norep.pass" --slot a --to-dir "$T/w"
bad 3 "user 'nosuch-bsc' does not exist.*useradd" "$BIN/bascule" pgstream --user nosuch-bsc --conninfo "$CI" --slot a --to-dir "$T/w"
bad 2 "a slot name is" "$BIN/bascule" pgstream --conninfo "$CI" --slot Bad-Name --to-dir "$T/w"
bad 2 "needs --slot" "$BIN/bascule" pgstream --conninfo "$CI" --to-dir "$T/w"
# A full WAL directory: no space (7), nothing reported flushed.
mkdir -p "$T/full"
mount -t tmpfs -o size=8m bsc-pgfull "$T/full"
MOUNTS+=("$T/full")
bad 7 "No space left on device" "${PS[@]}" --slot nospace --to-dir "$T/full"
pg_sql p "SELECT pg_drop_replication_slot('nospace')" >/dev/null
# An owner that claims more WAL flushed than it was sent breaks the protocol (5).
printf '\0\0\0\010\101\0\0\0\377\377\377\377\0\0\0\0' > "$T/flushed.frame"
expect_rc 5 "${PS[@]}" --slot a < "$T/flushed.frame"
grep -q "past what it was sent" "$T/err" || fail "no protocol error: $(cat "$T/err")"
# The slot in use by another process.
"${PS[@]}" --slot busy --to-dir "$T/busy" 2>/dev/null &
BUSY=$!
wait_for 30 "slot busy to be active" 'slot_active busy'
bad 9 "is active for PID [0-9]*: another process streams from slot busy" "${PS[@]}" --slot busy --to-dir "$T/busy2"
kill -TERM "$BUSY"; wait "$BUSY" || true
# A slot whose WAL was removed (wal_status lost).
for s in prw bsc peer busy; do pg_sql p "SELECT pg_drop_replication_slot('$s')" >/dev/null; done
pg_sql p "SELECT pg_create_physical_replication_slot('gone', true)" >/dev/null
pg_set p max_slot_wal_keep_size 1MB
pg_reload p
for _ in $(seq 20); do
	[ "$(pg_sql p "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'gone'")" = lost ] && break
	pg_sql p "CREATE TABLE IF NOT EXISTS filler (x int); INSERT INTO filler VALUES (1); SELECT pg_switch_wal(); CHECKPOINT" >/dev/null
done
[ "$(pg_sql p "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'gone'")" = lost ] || fail "could not make slot gone lose its WAL"
bad 1 "replication slot gone holds no WAL.*take a new base backup.*pg_drop_replication_slot('gone')" "${PS[@]}" --slot gone --to-dir "$T/gone"
pg_sql p "SELECT pg_drop_replication_slot('gone')" >/dev/null
# Every WAL sender taken.
pg_set p max_wal_senders 2
pg_restart p
sleep 60 | "${PS[@]}" > /dev/null 2>&1 &
sleep 60 | "${PS[@]}" > /dev/null 2>&1 &
senders() { pg_sql p "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'"; }
wait_for 30 "two WAL senders" '[ "$(senders)" = 2 ]'
bad 9 "exceeds max_wal_senders (currently 2).*raise max_wal_senders" "${PS[@]}" --slot a --to-dir "$T/w"
pkill -f -- "pgstream --user $PG_RELAY_USER --conninfo $CI\$" 2>/dev/null || true
pkill -f -- "--conninfo $CI --user $PG_RELAY_USER --status-interval" 2>/dev/null || true
# Replication off: wal_level minimal (max_wal_senders must then be 0).
pg_set p wal_level minimal
pg_set p max_wal_senders 0
pg_restart p
bad 3 "max_wal_senders (currently 0).*set wal_level = replica" "${PS[@]}" --slot a --to-dir "$T/w"
note "bad input: conninfo 3, unreachable 1, auth 4, pg_hba 4, privilege 4, unreadable passfile 3, no user 3, no space 7, owner protocol 5, slot busy 9, WAL lost 1, senders 9, wal_level 3"
san_check
