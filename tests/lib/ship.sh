# tests/lib/ship.sh - the hybrid PRA's client side for the tests (source
# after common.sh).
#   ship_yaml FILE CLIENT DUMP INTAKE FULL_EVERY [LINE...]
#       FILE, a ship.yaml for CLIENT whose keys are $(dirname FILE)/CLIENT.pub
#       and .sign (bascule keygen client) and state_dir $(dirname FILE)/state;
#       DUMP is the dump: value as YAML (quoted by the caller), INTAKE the
#       intake: URL; each LINE is added as it is (identity:, known_hosts:).
#   ship_enrol DIR CLIENT INTAKE [OWNER]
#       DIR/CLIENT.key, .pub, .sign (bascule keygen client, passphrase in
#       $T/pass, 0600), the client enrolled at intake INTAKE (its incoming/
#       owned by the account OWNER when given)
#   ship_flip FILE     one bit of FILE's middle byte flipped, in place
#   ship_sums CLUSTER DB
#       per-table checksums of database DB of pg.sh's CLUSTER (the pgbench
#       tables and town_secrets: count and md5 of the rows in key order)
ship_yaml() {
	local f=$1 client=$2 dump=$3 intake=$4 full=$5 d l
	d=$(dirname "$f")
	shift 5
	{
		echo "client: $client"
		echo "# the test keeps the exact bytes ship read (tee), to compare restores with"
		echo "dump: $dump"
		echo "public_key: $d/$client.pub"
		echo "signing_key: $d/$client.sign"
		echo "state_dir: $d/state"
		echo "intake: $intake"
		for l in "$@"; do echo "$l"; done
		echo "full_every: $full"
	} > "$f"
}

ship_enrol() {
	local d=$1 client=$2 in=$3 owner=${4:-}
	[ -f "$T/pass" ] || { echo "a passphrase for the safe" > "$T/pass"; chmod 600 "$T/pass"; }
	mkdir -p "$d"
	"$BIN/bascule" keygen client "$d/$client" --passphrase-file "$T/pass" > /dev/null
	"$BIN/bascule" intake add "$in" --client "$client" --pub "$d/$client.pub" ${owner:+--owner "$owner"} > /dev/null
}

ship_flip() {
	python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=0x01; open(p,'wb').write(b)" "$1"
}

SHIP_TABLES="pgbench_accounts:aid pgbench_branches:bid pgbench_tellers:tid pgbench_history:tid,bid,aid,mtime town_secrets:v"
ship_sums() {
	local t out=
	for t in $SHIP_TABLES; do
		out+="${t%%:*}=$(pg_as "$PG_BIN/psql" -X -q -At -h "$(pg_dir "$1")" -U postgres -d "$2" -c \
			"SELECT count(*) || ':' || coalesce(md5(string_agg(md5(t::text), '' ORDER BY ${t#*:})), '-') FROM ${t%%:*} t") "
	done
	echo "$out"
}
