# tests/lib/ship.sh - the hybrid PRA's client side for the tests (source
# after common.sh).
#   ship_yaml FILE CLIENT DUMP INTAKE FULL_EVERY [LINE...]
#       FILE, a ship.yaml for CLIENT whose keys are $(dirname FILE)/CLIENT.pub
#       and .sign (bascule keygen client) and state_dir $(dirname FILE)/state;
#       DUMP is the dump: value as YAML (quoted by the caller), INTAKE the
#       intake: URL; each LINE is added as it is (identity:, known_hosts:).
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
