# tests/lib/pgsink.sh - basculed protecting a PostgreSQL cluster, tested
# against tests/helpers/pgsink: a STAND-IN for `bascule recv` that keeps
# the WAL and base backups it receives (checking the chained digest) in
# $SINK/GROUP/SOURCE/{wal,base}, while the real receiver is being written.
# Source after common.sh and pg.sh (with PG_RELAY_USER=bascule: the passfile
# belongs to relay_user, which bascule pgstream runs as).
#   sink_config NAME [SOURCE_LINES...] [-- TARGET_LINES...]
#                               pg_bsc_config (pg.sh) with the target
#                               secondary = the stand-in at $SINK (run as
#                               $SINK_CMD when set: a wrapper of pgsink)
#   pgsrc FIELD                 status field of source app/db (JSON value)
#   pgtgt FIELD                 the target's view of app/db
#   lsn_of 'X/Y'                an LSN as a number
#   sink_restore NAME           restore the stand-in's base + WAL into cluster
#                               NAME, start it, wait for the end of recovery
#   wal_compare A B             complete segments in both directories are equal;
#                               prints how many
#   pgvault_config NAME DIR [SOURCE_LINES...]
#                               the same group, to a vault target at local:DIR
#   pgvault_up [SOURCE_LINES...]
#                               cluster p started, basculed shipping group app
#                               to the vault at $V (default $T/vault;
#                               $PG_BSC_DISKS adds disks), its first base and
#                               WAL held there; VK=(--vault ... --vault-key ...)
#   pgvault_restore NAME ARGS...
#                               bascule restore of app/db (ARGS: --at, --epoch)
#                               into cluster NAME's data, started
#                               ($T/r-NAME.out and .err)
#   pgvault_second_base         a burst of WAL, until the vault holds a newer base
#   pgvault_one_base            more epochs until the vault's newest lists one
#                               base only (the newer), at most five ($nb)
#   rows_client NAME COUNT OUT [FIRST]
#                               commit COUNT numbered rows (table t; ids from
#                               FIRST, default 1), one every 10 ms; OUT gets
#                               "id lsn unix_time" per commit that returned
SINK=$T/sink

sink_config() {
	local name=$1
	shift
	pg_bsc_config "$name" "local:$SINK" "$@" -- "remote_command: ${SINK_CMD:-$BIN/tests/pgsink}"
}

# pgvault_config NAME VAULT_DIR [SOURCE_LINES...]: group app shipped to one
# vault target, offsite, at local:VAULT_DIR (made writable for relay_user),
# key $T/vault.key (created), interval 1s.
pgvault_config() {
	local name=$1 v=$2
	shift 2
	vault_dir "$v"
	[ -f "$T/vault.key" ] || "$BIN/bascule" keygen vault "$T/vault.key" >/dev/null
	PG_BSC_TARGET=offsite pg_bsc_config "$name" "local:$v" "$@" -- "type: vault" "vault_key: $T/vault.key" \
		"interval: 1s" "retention: {all: 1h}"
}

pgvault_up() {
	V=${V:-$T/vault}
	VK=(--vault "local:$V" --vault-key "$T/vault.key")
	pg_init p
	pg_start p
	bsc_keygen
	pgvault_config p "$V" "wal_interval: 200ms" "wal_spool_max: 64MiB" "$@"
	bsc_start
	wait_for 60 "the vault to hold the base and WAL of app/db" \
		'[ "$(pgtgt acked_lsn 2>/dev/null)" != null ] && [ -n "$(pgtgt acked_lsn 2>/dev/null)" ]'
	[ "$(status_field type)" = vault ] || fail "target 0 is not the vault"
}

pgvault_restore() {
	local n=$1; shift
	pg_adopt "$n"
	"$BIN/bascule" restore "${VK[@]}" --source app/db --to "$(pg_dir "$n")/data" --pg-conf "$(pg_dir "$n")/site.conf" \
		"$@" > "$T/r-$n.out" 2> "$T/r-$n.err" || fail "restore app/db $*: $(cat "$T/r-$n.err")"
	pg_start "$n"
}

pgvault_second_base() {
	local bases
	bases=$(pgtgt bases_received)
	pg_sql p "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 30) AS x FROM generate_series(1, 40000) g" >/dev/null
	wait_for 60 "a second base backup at the vault" '[ "$(pgtgt bases_received)" -gt "$bases" ]'
}

# The newest epoch keeps the first base as long as the epoch before it did
# not yet hold the second (times since then need a base before them): one
# more epoch, a few times if a loaded machine merged them.
pgvault_one_base() {
	for _ in 1 2 3 4 5; do
		"$BIN/bascule" vault ls "${VK[@]}" --json > "$T/ls.json"
		nb=$(python3 -c "import json; e=json.load(open('$T/ls.json'))[-1]; print(len(e['postgres'][0]['bases']))")
		[ "$nb" = 1 ] && return 0
		pg_sql p "INSERT INTO big VALUES (0, 'one more epoch')" >/dev/null
		expect_rc 0 bsc sync app --wait --vault --timeout 60s
	done
	fail "the newest vault epoch still lists $nb bases after five more epochs"
}

pgsrc() { status_get "json.dumps(next(s for s in d['groups'][0]['sources'] if s['name'] == 'db')['postgres']['$1'])"; }
pgtgt() { status_get "json.dumps(d['targets'][0]['groups']['app']['postgres']['db']['$1'])"; }
lsn_of() { python3 -c "h, l = '$1'.strip('\"').split('/'); print(int(h, 16) << 32 | int(l, 16))"; }

sink_restore() {
	local name=$1 d
	d=$(pg_dir "$name")
	mkdir -p "$d/data" "$d/wal"
	tar -xf "$SINK/app/db/base/base.tar" -C "$d/data"
	for f in "$SINK"/app/db/wal/*; do b=$(basename "$f"); cp "$f" "$d/wal/${b%.partial}"; done
	rm -f "$d/data/postmaster.pid" "$d/data/standby.signal"
	cat >> "$d/data/postgresql.conf" <<CONF
unix_socket_directories = '$d'
listen_addresses = ''
restore_command = 'cp $d/wal/%f %p'
CONF
	touch "$d/data/recovery.signal"
	chown -R postgres: "$d"; chmod 700 "$d/data"
	PG_CLUSTERS+=("$name")
	pg_as "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/log" -w -t 120 start >/dev/null ||
		fail "PostgreSQL did not start from the stand-in's base and WAL: $(tail -5 "$d/log")"
	wait_for 60 "cluster $name to finish recovery" '[ "$(pg_sql "$name" "SELECT pg_is_in_recovery()")" = f ]'
}

wal_compare() {
	local a=$1 b=$2 n=0 f
	for f in "$a"/[0-9A-F]*; do
		f=$(basename "$f")
		[[ $f =~ ^[0-9A-F]{24}$ ]] && [ -f "$b/$f" ] || continue
		cmp -s "$a/$f" "$b/$f" || fail "WAL segment $f of $a differs from $b's"
		n=$((n + 1))
	done
	echo "$n"
}

rows_client() {
	local name=$1 count=$2 out=$3 first=${4:-1}
	pg_sql "$name" "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())" >/dev/null
	# Each INSERT commits on its own; the SELECT after it runs once the
	# commit returned: the WAL end then bounds the commit record from above.
	for i in $(seq "$first" $((first + count - 1))); do
		echo "INSERT INTO t (id) VALUES ($i);"
		echo "SELECT $i, pg_current_wal_insert_lsn() - '0/0'::pg_lsn, extract(epoch from clock_timestamp()), pg_sleep(0.01);"
	done | pg_as "$PG_BIN/psql" -X -q -At -F ' ' -h "$(pg_dir "$name")" -U postgres -d postgres > "$out" 2>/dev/null || true
}

# rpo_stats ROWS: for each commit of ROWS (rows_client), the time until the
# stand-in acknowledged WAL past it ($SINK/acks.log): "median p99 max N" in ms.
rpo_stats() {
	python3 - "$1" "$SINK/acks.log" <<'PY'
import sys, bisect
acks = []
for line in open(sys.argv[2]):
    t, g, e, s, end = line.split()
    acks.append((int(end), int(t)))
acks.sort()
ends = [a[0] for a in acks]
# the earliest acknowledgement covering LSN: the minimum time over acks with end >= LSN
best = [0] * len(acks)
m = None
for i in range(len(acks) - 1, -1, -1):
    m = acks[i][1] if m is None else min(m, acks[i][1])
    best[i] = m
rpo = []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 3:
        continue
    lsn, at = int(f[1]), float(f[2]) * 1e6
    i = bisect.bisect_left(ends, lsn)
    if i == len(ends):
        continue
    rpo.append(max(0.0, best[i] - at) / 1000.0)
rpo.sort()
if not rpo:
    print("0 0 0 0"); sys.exit()
q = lambda p: rpo[min(len(rpo) - 1, int(p * len(rpo)))]
print("%.1f %.1f %.1f %d" % (q(0.5), q(0.99), rpo[-1], len(rpo)))
PY
}
