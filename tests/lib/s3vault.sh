# tests/lib/s3vault.sh - an s3:// vault target on a real radosgw, for the
# S3 vault tests (s3vault.sh, s3locks.sh).  Source after tests/lib/common.sh.
#   s3vault_up                  ceph (tests/lib/ceph.sh) up, an S3 user
#                               ($T/cred), bucket bvault with Object Lock, the
#                               site and vault keys, a 16 MiB disk $T/disk.img
#   s3vault_yaml BUCKET CRED    $T/bascule.yaml: group vm1 (that disk), a local
#                               replica and the vault target offsite on
#                               s3://BUCKET/site-a; S3V_RETENTION ({all: 1h})
#                               and S3V_MARGIN (10m) set its retention and
#                               lock_margin
#   vsync                       sync --wait --vault
#   vault_epochs                the vault's epochs, oldest first
. "$ROOT/tests/lib/ceph.sh"
S=$BIN/tests/s3tool
B=$BIN/bascule

s3vault_up() {
	ceph_start
	note "ceph up in ${CEPH_UP_MS} ms"
	ceph_user vault "$T/cred"
	export S3_ENDPOINT=$RGW_URL S3_CREDENTIALS=$T/cred
	S3_BUCKET=bvault expect_rc 0 "$S" mkbucket lock
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
	    s3_endpoint: $RGW_URL
	    s3_region: us-east-1
	    s3_credentials: $2
	    vault_key: $T/vault.key
	    interval: 1s
	    retention: ${S3V_RETENTION:-{all: 1h\}}
	    object_lock: compliance
	    lock_margin: ${S3V_MARGIN:-10m}
	    parallel: 2
	EOF
}

vsync() { "$B" -c "$T/bascule.yaml" sync --wait --vault --timeout 60s >/dev/null || fail "sync --wait --vault failed: $(tail -5 "$T/daemon.log")"; }
vault_epochs() { "$B" vault ls -c "$T/bascule.yaml" --json | python3 -c "import json,sys; print(' '.join(str(e['epoch']) for e in json.load(sys.stdin)))"; }
