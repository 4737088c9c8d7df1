# hybrid: the hybrid PRA (issue 14).  A client's PostgreSQL (pgbench, plus a
# table holding a random marker) ships nightly with `bascule ship`, run as
# cron would (empty environment, no terminal), from the client's namespace
# to the operator's real sshd, SFTP only, chrooted, write-once account.
# The test shows: seven nights (a full one, then deltas after 2% of the
# accounts changed each night) each ship, with the bytes stored per night
# against the full night and the dump; intake check OK; restores of nights
# 3 and 7 byte-identical to the dumps taken then; blindness (marker, table
# names and the SHA-256/BLAKE2b of the dumps' 4 KiB blocks absent at the
# operator); a skipped night CRITICAL with the client and the age; a
# flipped byte named by check, refused by restore (exit 5) while an
# earlier night restores; the client's account cannot delete, rename or
# overwrite; ship killed -9 during the dump and during the upload leaves
# nothing counted and the next run completes; a failing pg_dump exits
# non-zero with its message and adds no night.
#   HYBRID_SCALE is the pgbench scale: default 20 (issue 14's floor), 5 in
#   the sanitizer build (the same paths, a quarter of the bytes: CI's budget).
# run.sh: first
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/sites.sh"
. "$(dirname "$0")/../lib/pg.sh"
. "$(dirname "$0")/../lib/ship.sh"
need_root
command -v sftp >/dev/null || { echo "SKIP: no OpenSSH sftp client"; exit 77; }
case ${BIN##*/} in build-san*) SCALE=${HYBRID_SCALE:-5} ;; *) SCALE=${HYBRID_SCALE:-20} ;; esac
B="$BIN/bascule"
sites_net_up

# ---- the operator: an intake directory, a chrooted write-once account
IN=/srv/bascule-test-intake-$SITE_ID
CU=bsc-mairie
intake_down() { rm -rf "$IN"; }
EXIT_HOOKS+=(intake_down)
ensure_user "$CU" -M -d /nonexistent -s /usr/sbin/nologin
user_lock usermod -p '*' "$CU"
mkdir -p "$IN"; chmod 755 "$IN"
ship_enrol "$T/client" mairie "$IN" "$CU"
[ "$(stat -c %U "$IN/mairie/incoming")" = "$CU" ] || fail "intake add --owner did not give incoming/ to $CU"
# the prune account (docs/hybrid.md, "Retention"): not the client's, in the
# group of incoming/ (2770: what the client creates inherits the group, and
# the sftp server's umask 0007 leaves the nights' directories group-writable)
PU=bsc-prune
ensure_group bsc-intake
ensure_user "$PU" -M -d /nonexistent -s /usr/sbin/nologin
user_lock usermod -p '*' -aG bsc-intake "$PU"
chgrp bsc-intake "$IN/mairie/incoming"; chmod 2770 "$IN/mairie/incoming"
d="$T/ssh-operator"; mkdir -p "$d" /run/sshd
ssh-keygen -q -t ed25519 -N "" -f "$d/host_key" -C operator
ssh-keygen -q -t ed25519 -N "" -f "$T/client/id_ed25519" -C mairie
cp "$T/client/id_ed25519.pub" "$d/authorized_keys.$CU"
{ sshd_conf_head "$d" "$CU"; cat <<CONF; } > "$d/sshd_config"
Match User $CU
	ChrootDirectory $IN/%u
	ForceCommand internal-sftp -u 0007 -P remove,rmdir,rename,posix-rename,setstat,fsetstat,lsetstat,symlink,hardlink
	AllowTcpForwarding no
	X11Forwarding no
CONF
# the chroot is the client's directory: root-owned, its name the account's
mv "$IN/mairie" "$IN/$CU"; ln -s "$CU" "$IN/mairie" 2>/dev/null || true
rm -f "$IN/mairie"; mv "$IN/$CU" "$IN/mairie"
sed -i "s|ChrootDirectory $IN/%u|ChrootDirectory $IN/mairie|" "$d/sshd_config"
sshd_start_v "$d"
in_primary "$B" trust-host "$IP_V" --known-hosts "$T/client/known_hosts" --yes > /dev/null \
	|| fail "trust-host of the operator failed: $(tail -5 "$d/sshd.log")"

# ---- the client: PostgreSQL with pgbench and a marker
pg_init c
pg_start c
pg_bench_init c "$SCALE"
MARKER="bsc-marker-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pg_sql c "CREATE TABLE town_secrets (v text); INSERT INTO town_secrets VALUES ('$MARKER')"
# the client's roles: an owner and a grant, which --owners keeps
pg_sql c "CREATE ROLE town_app; CREATE ROLE town_reader; ALTER TABLE town_secrets OWNER TO town_app;
	GRANT SELECT ON town_secrets TO town_reader"
DUMP="$PG_BIN/pg_dump --format=custom --compress=0 -h $(pg_dir c) -U postgres postgres"
ship_yaml "$T/client/ship.yaml" mairie "\"bash -c 'set -o pipefail; $DUMP | tee $T/client/last.dump'\"" \
	"sftp://$CU@$IP_V/incoming" 7 "identity: $T/client/id_ed25519" "known_hosts: $T/client/known_hosts"
chmod 600 "$T/client/id_ed25519"
# cron: no environment, no terminal, stdin closed
cron_ship() { in_primary env -i PATH=/usr/bin:/bin setsid "$B" ship -c "$T/client/ship.yaml" "$@" < /dev/null; }
change_rows() { pg_sql c "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE random() < 0.02" > /dev/null; }
ls_json() { "$B" intake ls "$IN" --client mairie --json; }
sums() { ship_sums c "$1"; }
night_of() { printf "2026-11-%02d" "$1"; }

# ---- seven nights
declare -A STORED
for i in 1 2 3 4 5 6 7; do
	[ "$i" -gt 1 ] && change_rows "$i"
	out=$(cron_ship --night "$(night_of "$i")" 2>&1) || fail "night $i: ship failed: $out"
	[ -z "$out" ] || fail "night $i: ship is not quiet on success: $out"
	cp "$T/client/last.dump" "$T/dump-$i"
	case $i in 3|7) sums postgres > "$T/sums-$i" ;; esac
done
ls_json > "$T/ls.json"
python3 - "$T" <<'PY' > "$T/sizes" || fail "the nights are not what was shipped: $(cat "$T/ls.json")"
import json, os, sys
T = sys.argv[1]
c = json.load(open(f"{T}/ls.json"))[0]
n = c["nights"]
assert [x["night"] for x in n] == [f"2026-11-{i:02d}" for i in range(1, 8)], n
assert all(x["status"] == "ok" for x in n), n
assert n[0]["kind"] == "full" and all(x["kind"] == "delta" for x in n[1:]), n
assert all(n[i]["base"] == n[i - 1]["night"] and n[i]["chain"] == i for i in range(1, 7)), n
full = n[0]["stored_bytes"]
dump = os.path.getsize(f"{T}/dump-1")
deltas = [x["stored_bytes"] for x in n[1:]]
# a delta night costs a fraction of a full one, and (the issue's aim) at
# most 3x the changed rows' share of the dump (2% of the accounts: 6%)
assert max(deltas) < 0.8 * full, (full, deltas)
assert max(deltas) < 0.06 * dump, (dump, deltas)
print(f"dump {dump/1048576:.1f} MiB, full night {full/1048576:.2f} MiB stored "
      f"({100*full/dump:.1f}% of the dump); delta nights (2% of accounts changed): "
      + ", ".join(f"{d/1024:.0f} KiB" for d in deltas)
      + f" = {100*sum(deltas)/len(deltas)/full:.1f}% of the full night, "
      f"{100*sum(deltas)/len(deltas)/dump:.2f}% of the dump on average")
PY
note "seven nights shipped as cron would, quietly: $(cat "$T/sizes")"
# what the prune account needs: the nights' directories in its group, group-writable
[ "$(stat -c %U:%G:%a "$IN/mairie/incoming/2026-11-01")" = "$CU:bsc-intake:2770" ] \
	|| fail "a night's directory: $(stat -c %U:%G:%a "$IN/mairie/incoming/2026-11-01"), want $CU:bsc-intake:2770"
out=$(cron_ship --night "$(night_of 7)" --verbose) || fail "a second run of night 7 failed: $out"
echo "$out" | grep -q "already shipped" || fail "a second run of a shipped night: $out"

# ---- check, restore
"$B" intake check "$IN" --client mairie --max-age 26h > "$T/check.out" || fail "check after 7 nights: $(cat "$T/check.out")"
grep -q "^INTAKE OK - mairie: 7 nights" "$T/check.out" || fail "check output: $(cat "$T/check.out")"
for i in 3 7; do
	"$B" intake restore "$IN" --client mairie --night "$(night_of "$i")" --key "$T/client/mairie.key" \
		--passphrase-file "$T/pass" --to "$T/restored-$i" > "$T/restore.out" 2>&1 \
		|| fail "restore of night $i: $(cat "$T/restore.out")"
	cmp "$T/restored-$i" "$T/dump-$i" || fail "the restore of night $i differs from the dump taken then"
done
note "nights 3 and 7 restored byte-identical to the dumps taken then ($(sed -n 's/.*in \([0-9.]* s\)$/\1/p' "$T/restore.out") for night 7, a chain of 7)"
"$PG_BIN/pg_restore" -l "$T/restored-7" | grep -q "TABLE DATA public town_secrets" \
	|| fail "pg_restore does not read the restored dump"

# ---- restore --load: nights 3 and 7 into a database, checksums equal the source's then
# (as a role that is not a superuser, with a password: the URL's password
# reaches pg_restore in its environment, never in a message)
pg_sql c "ALTER ROLE $PG_REP_ROLE CREATEDB" > /dev/null
URL="postgresql://$PG_REP_ROLE:$PG_REP_PASSWORD@/drill_n?host=$(pg_dir c)"
load() { "$B" intake restore "$IN" --client mairie --key "$T/client/mairie.key" --passphrase-file "$T/pass" \
	--load "$URL" --jobs 2 "$@"; }
t0=$(date +%s.%N)
load --night "$(night_of 3)" > "$T/load.out" 2> "$T/load.err" || fail "--load of night 3: $(cat "$T/load.err")"
grep -q "^loaded 2026-11-03 into drill_n: 5 tables, [0-9]* rows, [0-9.]* s$" "$T/load.out" \
	|| fail "--load's final line: $(cat "$T/load.out")"
[ "$(sums drill_n)" = "$(cat "$T/sums-3")" ] || fail "night 3 loaded differs from the source at night 3: $(sums drill_n) vs $(cat "$T/sums-3")"
! grep -q "$PG_REP_PASSWORD" "$T/load.out" "$T/load.err" || fail "--load printed the password"
loaded3=$(cat "$T/load.out")
rc=0; load --to "$T/x" > "$T/load.out" 2>&1 || rc=$?
[ $rc = 2 ] || fail "--to with --load: exit $rc, want 2: $(cat "$T/load.out")"
rc=0; "$B" intake restore "$IN" --client mairie --key "$T/client/mairie.key" --passphrase-file "$T/pass" \
	--load "host=$(pg_dir c)" > "$T/load.out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "names no database" "$T/load.out" || fail "--load of a URL without a database: exit $rc: $(cat "$T/load.out")"
rc=0; load --night "$(night_of 7)" > "$T/load.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "database drill_n exists and is not empty" "$T/load.out" \
	|| fail "--load into a non-empty database: exit $rc, want 1: $(cat "$T/load.out")"
[ "$(sums drill_n)" = "$(cat "$T/sums-3")" ] || fail "a refused --load changed the database"
# night 7 with the key opened once beforehand (intake open-key): no passphrase asked
"$B" intake open-key --key "$T/client/mairie.key" --passphrase-file "$T/pass" --out "$T/mairie.opened" > /dev/null
[ "$(stat -c %a "$T/mairie.opened")" = 600 ] || fail "the opened key's mode is $(stat -c %a "$T/mairie.opened"), want 600"
"$B" intake restore "$IN" --client mairie --key "$T/mairie.opened" --load "$URL" --jobs 2 --night "$(night_of 7)" \
	--replace < /dev/null > "$T/load.out" 2> "$T/load.err" || fail "--load --replace of night 7 with the opened key: $(cat "$T/load.err")"
[ "$(sums drill_n)" = "$(cat "$T/sums-7")" ] || fail "night 7 loaded differs from the source at night 7"
[ "$(sums drill_n)" != "$(cat "$T/sums-3")" ] || fail "nights 3 and 7 have the same checksums: the test shows nothing"
note "--load of nights 3 and 7: per-table checksums equal the source's then ($loaded3; $(cat "$T/load.out")); into a non-empty database without --replace: exit 1; whole step $(echo "$(date +%s.%N) - $t0" | bc) s"

# ---- --load into an existing empty database, --owners, --pg-bin; pg_restore failing
q() { pg_as "$PG_BIN/psql" -X -q -At -h "$(pg_dir c)" -U postgres -d "$1" -c "$2"; }
owner_grant() { q "$1" "SELECT tableowner || ' ' || has_table_privilege('town_reader', 'public.town_secrets', 'SELECT')
	FROM pg_tables WHERE tablename = 'town_secrets'"; }
[ "$(owner_grant drill_n)" = "$PG_REP_ROLE false" ] || fail "without --owners: owner and grant $(owner_grant drill_n)"
# the operator's own empty database (a setting of its own): loaded into, not recreated
pg_sql c "CREATE DATABASE drill_e TEMPLATE template0" > /dev/null
pg_sql c "ALTER DATABASE drill_e SET work_mem = '7MB'" > /dev/null
dboid() { pg_sql c "SELECT oid FROM pg_database WHERE datname = '$1'"; }
oid=$(dboid drill_e)
# a pg_restore of its own, which notes its calls (--pg-bin DIR runs DIR/pg_restore)
mkdir "$T/pgbin"
printf '#!/bin/sh\necho "$*" >> %s/pgbin/calls\nexec %s/pg_restore "$@"\n' "$T" "$PG_BIN" > "$T/pgbin/pg_restore"
chmod 755 "$T/pgbin/pg_restore"
# --owners as the superuser: this server has the client's roles
"$B" intake restore "$IN" --client mairie --key "$T/client/mairie.key" --passphrase-file "$T/pass" --night "$(night_of 7)" \
	--load "postgresql:///drill_e?host=$(pg_dir c)&user=postgres" --jobs 2 --owners --pg-bin "$T/pgbin" \
	> "$T/load.out" 2> "$T/load.err" || fail "--load into an empty database, --owners: $(cat "$T/load.err")"
[ "$(dboid drill_e)" = "$oid" ] || fail "--load recreated the existing empty database drill_e (oid $oid, now $(dboid drill_e))"
pg_sql c "SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = $oid" | grep -q "work_mem=7MB" \
	|| fail "--load lost drill_e's own setting"
[ "$(sums drill_e)" = "$(cat "$T/sums-7")" ] || fail "night 7 loaded into the empty database differs from the source"
[ "$(owner_grant drill_e)" = "town_app true" ] || fail "--owners: owner and grant $(owner_grant drill_e), want town_app true"
grep -q -- "--jobs 2 .*drill_e" "$T/pgbin/calls" && ! grep -q -- "--no-owner" "$T/pgbin/calls" \
	|| fail "--pg-bin: $T/pgbin/pg_restore was not the one run: $(cat "$T/pgbin/calls" 2>&1)"
rc=0; load --night "$(night_of 1)" --pg-bin "$T/nosuchdir" > "$T/load.out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q -- "--pg-bin $T/nosuchdir: no executable pg_restore" "$T/load.out" \
	|| fail "--pg-bin of a directory without pg_restore: exit $rc, want 2: $(cat "$T/load.out")"
# pg_restore fails: --owners as a role that cannot give the dump's owners away
URL="postgresql://$PG_REP_ROLE:$PG_REP_PASSWORD@/drill_f?host=$(pg_dir c)"
rc=0; load --night "$(night_of 1)" --owners > "$T/load.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "pg_restore exited 1:" "$T/load.out" && grep -q "must be member of role" "$T/load.out" \
	&& grep -q "(the database is dropped)" "$T/load.out" || fail "a failing pg_restore: exit $rc, want 1: $(cat "$T/load.out")"
[ -z "$(dboid drill_f)" ] || fail "the database a failed --load created is still there"
failed_own=$(grep -m1 "ERROR" "$T/load.out")
# into an existing empty database where the role may not create: kept (not --load's)
pg_sql c "CREATE DATABASE drill_nc TEMPLATE template0" > /dev/null
URL="postgresql://$PG_REP_ROLE:$PG_REP_PASSWORD@/drill_nc?host=$(pg_dir c)"
rc=0; load --night "$(night_of 1)" > "$T/load.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "permission denied for schema public" "$T/load.out" \
	|| fail "pg_restore refused CREATE: exit $rc, want 1: $(cat "$T/load.out")"
[ -n "$(dboid drill_nc)" ] || fail "a failed --load dropped a database it did not create"
! grep -q "$PG_REP_PASSWORD" "$T/load.out" || fail "--load printed the password"
note "--load into an existing empty database kept its oid and settings; --owners kept town_app's ownership and town_reader's grant; --pg-bin ran $T/pgbin/pg_restore ($(wc -l < "$T/pgbin/calls") calls), a bad one exits 2; pg_restore failing: exit 1 with its stderr ($failed_own), its database dropped, an existing one kept"

# ---- blindness
python3 - "$T" "$IN" "$MARKER" <<'PY' || fail "blindness check failed"
import hashlib, os, sys
T, IN, marker = sys.argv[1], sys.argv[2], sys.argv[3].encode()
digests = set()
for i in (1, 7):
    with open(f"{T}/dump-{i}", "rb") as f:
        while True:
            b = f.read(4096)
            if not b: break
            for d in (hashlib.sha256(b).digest(), hashlib.blake2b(b).digest(),
                      hashlib.blake2b(b, digest_size=32).digest()):
                digests.add(d[:16])
words = [marker, b"pgbench_accounts", b"town_secrets", b"postgres"]
nfiles = size = 0
for root, dirs, files in os.walk(f"{IN}/mairie/incoming"):
    for n in files:
        p = os.path.join(root, n)
        data = open(p, "rb").read()
        nfiles += 1; size += len(data)
        for w in words:
            assert w not in data, f"{w!r} found in {p}"
        for i in range(0, len(data) - 15):
            if data[i:i+16] in digests:
                raise SystemExit(f"an unkeyed block hash appears in {p} at {i}")
print(f"  hybrid: blindness checked over {nfiles} files, {size} bytes, {len(digests)} digests")
PY
note "marker, table and database names, SHA-256/BLAKE2b of every 4 KiB block: absent from the intake"

# ---- a skipped night: the dead man's switch
rc=0; "$B" intake check "$IN" --client mairie --max-age 26h --now "@$(( $(date +%s) + 30 * 3600 ))" \
	> "$T/check.out" || rc=$?
[ $rc = 2 ] && grep -q "CRITICAL - mairie: newest complete night 2026-11-07 is 30h" "$T/check.out" \
	|| fail "a night skipped: check exit $rc: $(cat "$T/check.out")"
rc=0; "$B" intake check "$IN" --all --max-age 26h --now "@$(( $(date +%s) + 30 * 3600 ))" > "$T/check.out" || rc=$?
[ $rc = 2 ] || fail "check --all on a skipped night: exit $rc: $(cat "$T/check.out")"
note "a skipped night: $(head -1 "$T/check.out" | cut -d'|' -f1)"

# ---- a flipped byte in night 7
obj=$(ls "$IN/mairie/incoming/2026-11-07/" | head -1)
f="$IN/mairie/incoming/2026-11-07/$obj"
cp -p "$f" "$T/saved-obj"
ship_flip "$f"
rc=0; "$B" intake check "$IN" --client mairie --max-age 26h > "$T/check.out" || rc=$?
[ $rc = 2 ] && grep -q "2026-11-07 DAMAGED: object 2026-11-07/$obj" "$T/check.out" \
	|| fail "a flipped byte: check exit $rc: $(cat "$T/check.out")"
rc=0; "$B" intake restore "$IN" --client mairie --night 2026-11-07 --key "$T/client/mairie.key" \
	--passphrase-file "$T/pass" --to "$T/r-bad" > "$T/restore.out" 2>&1 || rc=$?
[ $rc = 5 ] || fail "restore of the damaged night: exit $rc, want 5: $(cat "$T/restore.out")"
[ ! -e "$T/r-bad" ] || fail "a refused restore left $T/r-bad"
URL="postgresql://$PG_REP_ROLE:$PG_REP_PASSWORD@/drill_bad?host=$(pg_dir c)"
rc=0; load --night 2026-11-07 --tmp "$T" > "$T/load.out" 2>&1 || rc=$?
[ $rc = 5 ] || fail "--load of the damaged night: exit $rc, want 5: $(cat "$T/load.out")"
[ -z "$(pg_sql c "SELECT 1 FROM pg_database WHERE datname = 'drill_bad'")" ] || fail "--load of a damaged night created its database"
[ -z "$(ls "$T" | grep bascule-load)" ] || fail "--load of a damaged night left its scratch directory"
# a wrong passphrase: the key opens beside the database's creation, which
# it then undoes (exit 4, no database, no scratch directory)
echo "not the passphrase of the safe" > "$T/badpass"; chmod 600 "$T/badpass"
rc=0; "$B" intake restore "$IN" --client mairie --night 2026-11-06 --key "$T/client/mairie.key" \
	--passphrase-file "$T/badpass" --load "$URL" --tmp "$T" > "$T/load.out" 2>&1 || rc=$?
[ $rc = 4 ] && grep -q "wrong passphrase" "$T/load.out" || fail "--load with a wrong passphrase: exit $rc, want 4: $(cat "$T/load.out")"
[ -z "$(pg_sql c "SELECT 1 FROM pg_database WHERE datname = 'drill_bad'")" ] || fail "--load with a wrong passphrase left its database"
[ -z "$(ls "$T" | grep bascule-load)" ] || fail "--load with a wrong passphrase left its scratch directory"
"$B" intake restore "$IN" --client mairie --night 2026-11-06 --key "$T/client/mairie.key" \
	--passphrase-file "$T/pass" --to "$T/r-6" > /dev/null || fail "night 6 no longer restores"
cmp "$T/r-6" "$T/dump-6" || fail "night 6 restored wrong"
note "flipped byte: check CRITICAL naming 2026-11-07/$obj; restore and --load exit 5 (no database created); night 6 still restores; --load with a wrong passphrase: exit 4, no database left"
cp -p "$T/saved-obj" "$f"

# ---- the client's account: no delete, rename or overwrite
sftp_c() { in_primary sftp -q -b - -i "$T/client/id_ed25519" -o UserKnownHostsFile="$T/client/known_hosts" \
	-o StrictHostKeyChecking=yes "$CU@$IP_V" 2>&1; }
man=/incoming/2026-11-03.manifest
sum=$(sha256sum < "$IN/mairie/incoming/2026-11-03.manifest")
echo junk > "$T/junk"
out=$(echo "rm $man" | sftp_c) && fail "the client's account could delete: $out"
out=$(echo "rename $man /incoming/x" | sftp_c) && fail "the client's account could rename: $out"
out=$(echo "put $T/junk $man" | sftp_c) && fail "the client's account could overwrite: $out"
out=$(echo "chmod 644 $man" | sftp_c) && fail "the client's account could chmod: $out"
[ "$(sha256sum < "$IN/mairie/incoming/2026-11-03.manifest")" = "$sum" ] || fail "night 3's manifest changed"
note "the client's SFTP account: rm, rename, put over a night and chmod refused ($(echo "$out" | tail -1))"

# ---- kill -9 during the dump, during the upload; the next run completes
# (ship started with ip netns exec itself, so that $! is ship, not a subshell)
ship_bg() {
	ip netns exec "$NS_P" env -i PATH=/usr/bin:/bin setsid "$B" ship -c "$T/client/ship.yaml" \
		--night 2026-11-08 --full < /dev/null > /dev/null 2>&1 &
	pid=$!
}
visible_after_kill() {
	wait "$pid" 2>/dev/null || true
	ls_json > "$T/ls.json"
	python3 -c "
import json,sys; n=json.load(open('$T/ls.json'))[0]['nights']
assert [x['night'] for x in n if x['status']=='ok'][-1] == '2026-11-07', n" \
		|| fail "ship killed $1: a night became visible: $(cat "$T/ls.json")"
	[ ! -e "$IN/mairie/incoming/2026-11-08.manifest" ] || fail "ship killed $1 left a manifest"
	"$B" intake check "$IN" --client mairie --max-age 26h > "$T/check.out" \
		|| fail "check after ship was killed $1: $(cat "$T/check.out")"
}
change_rows 8
ship_bg
sleep 0.3
kill -9 "$pid" || fail "ship ended within 0.3 s: it could not be killed during the dump"
visible_after_kill "during the dump"
vault_rate 4mbit
ship_bg
for _ in $(seq 600); do
	[ -n "$(ls "$IN/mairie/incoming/2026-11-08/" 2>/dev/null)" ] && break
	sleep 0.1
done
kill -9 "$pid" || fail "ship ended before it could be killed during the upload"
visible_after_kill "during the upload"
unfinished=$(python3 -c "import json; c=json.load(open('$T/ls.json'))[0]; print(c['unfinished_objects'], 'objects,', c['unfinished_bytes'], 'bytes')")
vault_rate 1gbit
out=$(cron_ship --night 2026-11-08 --verbose 2>&1) || fail "the run after the kills failed: $out"
cp "$T/client/last.dump" "$T/dump-8"
"$B" intake check "$IN" --client mairie --max-age 26h > "$T/check.out" || fail "check: $(cat "$T/check.out")"
grep -q "newest 2026-11-08" "$T/check.out" || fail "night 8 not the newest: $(cat "$T/check.out")"
"$B" intake restore "$IN" --client mairie --key "$T/client/mairie.key" --passphrase-file "$T/pass" \
	--to "$T/r-8" > /dev/null || fail "restore of night 8 after the kills failed"
cmp "$T/r-8" "$T/dump-8" || fail "night 8 restored wrong"
note "ship killed -9 during the dump and during the upload (4 Mbit/s): no night visible, check OK, unfinished: $unfinished; the next run: $out"

# ---- pg_dump fails: its message, exit non-zero, no night
sed "s|^dump: .*|dump: $PG_BIN/pg_dump --format=custom -h $(pg_dir c) -U postgres nosuchdb|" \
	"$T/client/ship.yaml" > "$T/client/bad.yaml"
rc=0; out=$(in_primary env -i PATH=/usr/bin:/bin setsid "$B" ship -c "$T/client/bad.yaml" --night 2026-11-09 \
	< /dev/null 2>&1) || rc=$?
[ $rc = 1 ] && echo "$out" | grep -q 'database "nosuchdb" does not exist' \
	|| fail "a failing pg_dump: exit $rc: $out"
[ ! -e "$IN/mairie/incoming/2026-11-09.manifest" ] || fail "a failed dump left a manifest"
"$B" intake check "$IN" --client mairie --max-age 26h > "$T/check.out" || fail "check: $(cat "$T/check.out")"
grep -q "newest 2026-11-08" "$T/check.out" || fail "a failed dump counted: $(cat "$T/check.out")"
note "pg_dump failing: exit 1 with its message ($(echo "$out" | sed 's/.*: //' | head -c 80)), no night added"

# ---- a manifest cut while it was written: the night's name is used up
# (the write-once account cannot replace it): ship says so, exit 1, never
# "already shipped"
head -c 100 "$IN/mairie/incoming/2026-11-08.manifest" > "$IN/mairie/incoming/2026-11-10.manifest"
chown "$CU" "$IN/mairie/incoming/2026-11-10.manifest"; chmod 440 "$IN/mairie/incoming/2026-11-10.manifest"
rc=0; out=$(cron_ship --night 2026-11-10 --verbose 2>&1) || rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "name is used up" && ! echo "$out" | grep -q "already shipped" \
	|| fail "ship over a truncated manifest: exit $rc, want 1 saying the name is used up: $out"
rm -f "$IN/mairie/incoming/2026-11-10.manifest"
note "a truncated manifest at the intake: ship exit 1 ($(echo "$out" | head -c 120)…)"

# ---- prune by its own account: the nights the client's account could not remove
# (nights 1-7 are one chain, night 8 a full night: --keep 1 removes the chain)
runuser -u "$PU" -- "$B" intake prune "$IN" --client mairie --keep 1 > "$T/prune.out" 2>&1 \
	|| fail "intake prune as $PU: $(cat "$T/prune.out")"
grep -q "removed 7 nights" "$T/prune.out" || fail "prune as $PU: $(cat "$T/prune.out")"
! ls "$IN/mairie/incoming" | grep -q "^2026-11-0[1-7]" && [ -e "$IN/mairie/incoming/2026-11-08.manifest" ] \
	|| fail "after prune --keep 1: $(ls "$IN/mairie/incoming" | tr '\n' ' ')"
"$B" intake check "$IN" --client mairie --max-age 26h > "$T/check.out" || fail "check after prune: $(cat "$T/check.out")"
grep -q "^INTAKE OK - mairie: 1 nights\?, newest 2026-11-08" "$T/check.out" || fail "check after prune: $(cat "$T/check.out")"
out=$(echo "rm /incoming/2026-11-08.manifest" | sftp_c) && fail "the client's account could delete after prune: $out"
[ -e "$IN/mairie/incoming/2026-11-08.manifest" ] || fail "the client's account removed night 8"
note "intake prune as $PU (group bsc-intake of incoming/ 2770): $(tail -1 "$T/prune.out"); the client's account still cannot rm"
