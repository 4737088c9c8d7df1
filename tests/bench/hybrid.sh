#!/bin/bash
# Bench of the hybrid PRA (issue 14, docs/hybrid.md; needs root): a client's
# PostgreSQL 15 (pgbench, scale HYBRID_BENCH_SCALE, default 20) ships seven
# nights with `bascule ship` to a local intake; between nights 1% to 3% of
# the accounts change (1, 2, 3, 1, 2, 3 %).  Side by side, per night:
#   - bascule ship: bytes the night adds at the intake (what an SFTP intake
#     receives: the objects and the signed manifest), and its wall time,
#     pg_dump included
#   - the full compressed dump: `pg_dump | zstd -3` (what a plain nightly
#     upload sends), its size and time
#   - restic and borg (zstd 3), encrypted, backing up the same dump file:
#     repository growth and time (the dump not included)
# and the aim: a night's upload <= 3x the changed rows' share of the dump.
# Then the restore of the newest night (a chain of 7) and its load:
# `bascule intake restore --to FILE` + `pg_restore -j 2`, and the one
# command `bascule intake restore --load URL --jobs 2` (rebuild, create,
# pg_restore, checks), against `pg_restore -j 2` of the plain dump; the
# overhead ratio (aim <= 20%); and the same --load with the key opened
# beforehand (`intake open-key`: the passphrase's Argon2id, a one-time
# step of the recovery, not in the time).  HYBRID_BENCH_OLD=PATH/bascule also times
# another build's `intake restore --to` and `--load` on the same nights
# (before/after, alternated with this build's).
set -euo pipefail
B=$(cd "${1:-build}" && pwd)
. "$(dirname "$0")/../lib/common.sh" "$B"
. "$(dirname "$0")/../lib/bench.sh"
. "$(dirname "$0")/../lib/pg.sh"
SCALE=${HYBRID_BENCH_SCALE:-20}
sizeof() { du -sb "$1" | cut -f1; }
mb() { echo "$1 / 1000000" | bc -l; }
since() { echo "$(secs) - $1" | bc -l; }

pg_init h
pg_start h
pg_bench_init h "$SCALE"
ACCOUNTS=$((SCALE * 100000))
PGH=(-h "$(pg_dir h)" -U postgres)
IN=$T/intake
echo "a passphrase for the safe" > "$T/pass"; chmod 600 "$T/pass"
"$BIN/bascule" keygen client "$T/bench" --passphrase-file "$T/pass" > /dev/null
"$BIN/bascule" intake add "$IN" --client bench --pub "$T/bench.pub" > /dev/null
cat > "$T/ship.yaml" <<YAML
client: bench
dump: "bash -c 'set -o pipefail; $PG_BIN/pg_dump --format=custom --compress=0 ${PGH[*]} postgres | tee $T/night.dump'"
public_key: $T/bench.pub
signing_key: $T/bench.sign
state_dir: $T/shipstate
intake: local:$IN/bench/incoming
full_every: 7
YAML
export BORG_PASSPHRASE=bench RESTIC_PASSWORD=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
HAVE_TOOLS=1
command -v borg >/dev/null && command -v restic >/dev/null || HAVE_TOOLS=
if [ -n "$HAVE_TOOLS" ]; then
	borg init -e repokey "$T/borg" > /dev/null 2>&1 || fail "borg init failed"
	restic init -q -r "$T/restic" > /dev/null
fi
mkdir -p "$T/data"

echo "== 7. hybrid PRA: a pgbench database (scale $SCALE, $ACCOUNTS accounts) shipped nightly, 7 nights, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf "   %-5s %7s %9s %9s | %-16s | %-17s | %-16s | %-16s | %s\n" night changed "dump MB" "aim MB" \
	"bascule ship" "pg_dump|zstd -3" "restic" "borg (zstd,3)" "ship vs zstd/restic/borg"
ratios=(); aims=(); zaims=()
for i in 1 2 3 4 5 6 7; do
	pct=0 changed=0
	if [ "$i" -gt 1 ]; then
		pct=$(( (i - 2) % 3 + 1 ))
		changed=$(pg_sql h "WITH u AS (UPDATE pgbench_accounts SET abalance = abalance + $i
			WHERE random() < $pct / 100.0 RETURNING 1) SELECT count(*) FROM u")
	fi
	night=$(printf "2026-11-%02d" "$i")
	before=$(sizeof "$IN/bench/incoming"); t0=$(secs)
	"$BIN/bascule" ship -c "$T/ship.yaml" --night "$night" || fail "night $i: ship failed"
	st=$(since "$t0"); up=$(( $(sizeof "$IN/bench/incoming") - before ))
	dump=$(stat -c %s "$T/night.dump")
	t0=$(secs); "$PG_BIN/pg_dump" --format=custom --compress=0 "${PGH[@]}" postgres | zstd -q -3 > "$T/full.zst"
	zt=$(since "$t0"); zs=$(stat -c %s "$T/full.zst")
	mv "$T/night.dump" "$T/data/app.dump"
	rg=0 rt=0 bg=0 bt=0
	if [ -n "$HAVE_TOOLS" ]; then
		b0=$(sizeof "$T/restic"); t0=$(secs); restic -q -r "$T/restic" backup "$T/data" > /dev/null
		rt=$(since "$t0"); rg=$(( $(sizeof "$T/restic") - b0 ))
		b0=$(sizeof "$T/borg"); t0=$(secs); borg create --compression zstd,3 "$T/borg::n$i" "$T/data"
		bt=$(since "$t0"); bg=$(( $(sizeof "$T/borg") - b0 ))
	fi
	# the aim: 3x the changed rows' share of the dump
	aim=$(echo "3 * $changed / $ACCOUNTS * $dump" | bc -l)
	printf "   %-5s %6.1f%% %9.1f %9.1f | %7.2f MB %5.1fs | %7.2f MB %6.1fs | %7.2f MB %5.1fs | %7.2f MB %5.1fs | " \
		"$i" "$(echo "100 * $changed / $ACCOUNTS" | bc -l)" "$(mb "$dump")" "$(mb "$aim")" \
		"$(mb "$up")" "$st" "$(mb "$zs")" "$zt" "$(mb "$rg")" "$rt" "$(mb "$bg")" "$bt"
	if [ "$i" = 1 ]; then echo "(full night)"; else
		printf "%.3f / %.2f / %.2f  (%.0f%% of the aim)\n" "$(echo "$up / $zs" | bc -l)" \
			"$(echo "$up / ($rg + 1)" | bc -l)" "$(echo "$up / ($bg + 1)" | bc -l)" "$(echo "100 * $up / $aim" | bc -l)"
		ratios+=("$(echo "$up / $zs" | bc -l)"); aims+=("$(echo "$up / $aim" | bc -l)")
		zaims+=("$(echo "$up * $ACCOUNTS / ($changed * $zs)" | bc -l)")
	fi
	cp "$T/data/app.dump" "$T/dump-$i"; [ "$i" -gt 1 ] && rm -f "$T/dump-$((i - 1))"
done
[ -n "$HAVE_TOOLS" ] || echo "   (borgbackup or restic missing: scripts/deps.sh bench installs them)"
printf "   delta nights, median: bascule ship uploads %.1f%% of the full compressed dump, %.0f%% of the aim (<= 100%% meets it)\n" \
	"$(echo "100 * $(printf '%s\n' "${ratios[@]}" | median)" | bc -l)" "$(echo "100 * $(printf '%s\n' "${aims[@]}" | median)" | bc -l)"
printf "   (the dump compresses %.0fx, pgbench's filler is blank: against the changed rows' share of the *compressed* dump a night uploads %.1fx it)\n" \
	"$(echo "$dump / $zs" | bc -l)" "$(printf '%s\n' "${zaims[@]}" | median)"

# ---- restore + load of night 7 (a full night and six deltas) against the plain dump
# Each load into a new, empty database, after a CHECKPOINT and with the page
# cache synced; the order of the two alternates between runs.
psql_q() { PGOPTIONS="-c client_min_messages=warning" pg_sql h "$1" > /dev/null; }
load() { # DB FILE: prints the seconds of pg_restore -j 2 into a new database
	local t0
	psql_q "DROP DATABASE IF EXISTS $1"; psql_q "CREATE DATABASE $1"; psql_q CHECKPOINT; sync
	t0=$(secs)
	"$PG_BIN/pg_restore" -j 2 "${PGH[@]}" -d "$1" "$2" || fail "pg_restore into $1 failed"
	since "$t0"
}
want=$(pg_sql h "SELECT sum(abalance) FROM pgbench_accounts")
unpack=(); lours=(); plain=(); lone=(); lopen=(); old=(); oldload=()
"$BIN/bascule" intake open-key --key "$T/bench.key" --passphrase-file "$T/pass" --out "$T/bench.opened" > /dev/null
URL="postgresql:///r_load?host=$(pg_dir h)&user=postgres"
for r in $(seq "$RUNS"); do
	[ $((r % 2)) = 0 ] && plain+=("$(load r_plain "$T/dump-7")")
	rm -f "$T/restored"; sync
	t0=$(secs)
	"$BIN/bascule" intake restore "$IN" --client bench --night 2026-11-07 --key "$T/bench.key" \
		--passphrase-file "$T/pass" --to "$T/restored" > /dev/null || fail "intake restore failed"
	unpack+=("$(since "$t0")")
	if [ -n "${HYBRID_BENCH_OLD:-}" ]; then
		rm -f "$T/restored-old"; sync; t0=$(secs)
		"$HYBRID_BENCH_OLD" intake restore "$IN" --client bench --night 2026-11-07 --key "$T/bench.key" \
			--passphrase-file "$T/pass" --to "$T/restored-old" > /dev/null || fail "$HYBRID_BENCH_OLD intake restore failed"
		old+=("$(since "$t0")"); rm -f "$T/restored-old"
	fi
	[ "$r" = 1 ] && { cmp -s "$T/restored" "$T/dump-7" || fail "the restored night 7 differs from its dump"; }
	lours+=("$(load r_ours "$T/restored")")
	got=$(pg_as "$PG_BIN/psql" -X -q -At "${PGH[@]}" -d r_ours -c "SELECT sum(abalance) FROM pgbench_accounts")
	[ "$got" = "$want" ] || fail "the loaded night 7 has sum(abalance) $got, the database $want"
	[ $((r % 2)) = 1 ] && plain+=("$(load r_plain "$T/dump-7")")
	psql_q "DROP DATABASE IF EXISTS r_load"; psql_q CHECKPOINT; sync
	t0=$(secs)
	"$BIN/bascule" intake restore "$IN" --client bench --night 2026-11-07 --key "$T/bench.key" \
		--passphrase-file "$T/pass" --load "$URL" --jobs 2 --tmp "$T" > "$T/load.out" || fail "intake restore --load failed"
	lone+=("$(since "$t0")")
	got=$(pg_as "$PG_BIN/psql" -X -q -At "${PGH[@]}" -d r_load -c "SELECT sum(abalance) FROM pgbench_accounts")
	[ "$got" = "$want" ] || fail "--load of night 7 has sum(abalance) $got, the database $want"
	psql_q "DROP DATABASE IF EXISTS r_load"; psql_q CHECKPOINT; sync
	t0=$(secs)
	"$BIN/bascule" intake restore "$IN" --client bench --night 2026-11-07 --key "$T/bench.opened" \
		--load "$URL" --jobs 2 --tmp "$T" > /dev/null || fail "intake restore --load with the opened key failed"
	lopen+=("$(since "$t0")")
	if [ -n "${HYBRID_BENCH_OLD:-}" ]; then
		psql_q "DROP DATABASE IF EXISTS r_load"; psql_q CHECKPOINT; sync
		t0=$(secs)
		"$HYBRID_BENCH_OLD" intake restore "$IN" --client bench --night 2026-11-07 --key "$T/bench.key" \
			--passphrase-file "$T/pass" --load "$URL" --jobs 2 --tmp "$T" > /dev/null || fail "$HYBRID_BENCH_OLD --load failed"
		oldload+=("$(since "$t0")")
	fi
done
psql_q "DROP DATABASE r_ours"; psql_q "DROP DATABASE r_plain"; psql_q "DROP DATABASE r_load"
u=$(printf '%s\n' "${unpack[@]}" | median); l=$(printf '%s\n' "${lours[@]}" | median); p=$(printf '%s\n' "${plain[@]}" | median)
printf "   restore + load of night 7 (chain of 7, %.0f MB dump), medians of %d: bascule intake restore --to %.1f s + pg_restore -j 2 %.1f s = %.1f s\n" \
	"$(mb "$(stat -c %s "$T/dump-7")")" "$RUNS" "$u" "$l" "$(echo "$u + $l" | bc -l)"
printf "       plain pg_restore -j 2 of the unencrypted dump %.1f s -> overhead %.0f%% (aim <= 20%%), load $(cut -d' ' -f1-3 /proc/loadavg)\n" \
	"$p" "$(echo "100 * ($u + $l - $p) / $p" | bc -l)"
[ ${#old[@]} = 0 ] || printf "       %s intake restore --to, median %.1f s\n" "$HYBRID_BENCH_OLD" "$(printf '%s\n' "${old[@]}" | median)"
o=$(printf '%s\n' "${lone[@]}" | median)
printf "       bascule intake restore --load --jobs 2 (rebuild, create, pg_restore, checks), median %.1f s -> overhead %.0f%% (%s)\n" \
	"$o" "$(echo "100 * ($o - $p) / $p" | bc -l)" "$(cat "$T/load.out")"
o=$(printf '%s\n' "${lopen[@]}" | median)
printf "       the same with the key opened beforehand (intake open-key), median %.1f s -> overhead %.0f%%\n" \
	"$o" "$(echo "100 * ($o - $p) / $p" | bc -l)"
[ ${#oldload[@]} = 0 ] || { ol=$(printf '%s\n' "${oldload[@]}" | median)
	printf "       %s intake restore --load --jobs 2, median %.1f s -> overhead %.0f%%, load $(cut -d' ' -f1-3 /proc/loadavg)\n" \
		"$HYBRID_BENCH_OLD" "$ol" "$(echo "100 * ($ol - $p) / $p" | bc -l)"; }
