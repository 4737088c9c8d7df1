# tests/lib/s3vault.sh - an s3:// vault target on a real radosgw, for the
# S3 vault tests (s3vault.sh, s3locks.sh).  Source after tests/lib/common.sh.
#   s3vault_up                  ceph (tests/lib/ceph.sh) up; the provider's
#                               account ($T/owner) owns bucket bvault, made with
#                               Object Lock; the daemon's account ($T/cred) may
#                               only what the vault needs, the pruner's
#                               ($T/pruner) read and delete (s3vault_policy); the
#                               site and vault keys, a 16 MiB disk $T/disk.img
#   s3vault_policy BUCKET       the bucket policy of docs/vault.md on BUCKET
#   s3vault_yaml BUCKET CRED    $T/bascule.yaml: group vm1 (that disk), a local
#                               replica and the vault target offsite on
#                               s3://BUCKET/site-a; S3V_RETENTION ({all: 1h})
#                               and S3V_MARGIN (10m) set its retention and
#                               lock_margin, S3V_BANDWIDTH (0) its bandwidth,
#                               S3V_ENDPOINT ($RGW_URL), S3V_CA (none) and
#                               S3V_URL_STYLE (none) its s3_endpoint, s3_ca
#                               and s3_url_style
#   vsync                       sync --wait --vault
#   vault_epochs                the vault's epochs, oldest first
. "$ROOT/tests/lib/ceph.sh"
S=$BIN/tests/s3tool
B=$BIN/bascule

# The policy docs/vault.md gives: the daemon's user may put, read, list
# and extend locks; not delete, nor change the bucket (lifecycle, policy);
# the pruner's may read, list and delete.
s3vault_policy() {
	sed -n '/^       {"Version"/,/^       \]}/p' "$ROOT/docs/vault.md" |
		sed 's/^       //; s/bascule-vault/'"$1"'/g; s/bscvault/vault/; s/bscprune/pruner/' > "$T/policy.json"
	[ -s "$T/policy.json" ] || fail "no bucket policy found in docs/vault.md"
	S3_BUCKET=$1 S3_CREDENTIALS=$T/owner expect_rc 0 "$S" raw PUT - policy= "$T/policy.json"
	[ "$(cat "$T/out")" = 204 ] || [ "$(cat "$T/out")" = 200 ] || fail "bucket policy refused: $(cat "$T/out")"
}

s3vault_up() {
	ceph_start
	note "ceph up in ${CEPH_UP_MS} ms"
	ceph_user provider "$T/owner"
	ceph_user vault "$T/cred"
	ceph_user pruner "$T/pruner"
	export S3_ENDPOINT=$RGW_URL S3_CREDENTIALS=$T/cred
	S3_BUCKET=bvault S3_CREDENTIALS=$T/owner expect_rc 0 "$S" mkbucket lock
	s3vault_policy bvault
	bsc_keygen
	"$B" keygen vault "$T/vault.key" >/dev/null
	head -c $((16 << 20)) /dev/urandom > "$T/disk.img"
}

s3vault_yaml() {
	SOURCES="disk:$T/disk.img" TARGET_URL=local:$T/replica bsc_config 500ms 60s
	cat >> "$T/bascule.yaml" <<-EOF
	  - name: offsite
	    type: vault
	    url: s3://$1/site-a
	    s3_endpoint: ${S3V_ENDPOINT:-$RGW_URL}
	    ${S3V_CA:+s3_ca: $S3V_CA}
	    ${S3V_URL_STYLE:+s3_url_style: $S3V_URL_STYLE}
	    s3_region: us-east-1
	    s3_credentials: $2
	    vault_key: $T/vault.key
	    interval: 1s
	    retention: ${S3V_RETENTION:-{all: 1h\}}
	    object_lock: compliance
	    lock_margin: ${S3V_MARGIN:-10m}
	    parallel: 2
	    bandwidth: ${S3V_BANDWIDTH:-0}
	EOF
}

vsync() { "$B" -c "$T/bascule.yaml" sync --wait --vault --timeout 60s >/dev/null || fail "sync --wait --vault failed: $(tail -5 "$T/daemon.log")"; }
vault_epochs() { "$B" vault ls -c "$T/bascule.yaml" --json | python3 -c "import json,sys; print(' '.join(str(e['epoch']) for e in json.load(sys.stdin)))"; }
