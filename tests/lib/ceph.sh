# tests/lib/ceph.sh - a single-node Ceph (one mon, one memstore OSD, radosgw
# with the beast frontend on loopback, no mgr) from Debian's packages, for
# the S3 vault tests.  Source after tests/lib/common.sh.  Settings and
# pitfalls: ../shared/notes/ceph-rgw.md (paxos propose interval, pg num 8,
# radosgw's "ms mon client mode = crc" under auth none).
#   ceph_start            bring the cluster up under $T/ceph; sets CEPH_IP,
#                         RGW_PORT, RGW_URL (http://CEPH_IP:RGW_PORT)
#   ceph_user UID FILE    create an S3 user, write its 0600 shared-credentials FILE
#   rgw_stop / rgw_start  stop / restart radosgw alone (fault tests)
#   CEPH_TLS=DIR          (before ceph_start) radosgw also serves TLS at
#                         RGW_TLS_URL (https://CEPH_IP:RGW_TLS_PORT) with a
#                         certificate for CEPH_IP signed by DIR/ca.pem
#   ceph_tls_cert DIR IP  (re)issue DIR/cert.pem for IP under DIR/ca.pem
#                         (made once); radosgw reads it when it starts
#   ceph_stop             tear everything down (also run at exit, even on failure)
#   CEPH_MEMSTORE_MIB=N   (before ceph_start) the OSD's memstore size (1024)
#   CEPH_RGW_CONF=LINES   (before ceph_start) more settings for radosgw
#   ceph_gc               wait (SECONDS, 120) until RGW's garbage collector
#                         has freed deleted objects' data: the S3 bench
#                         deletes each run's objects to stay inside the
#                         memstore, with "rgw gc obj min wait = 0" and a short
#                         "rgw gc processor period" in CEPH_RGW_CONF
# Each cluster binds its own loopback address 127.X.Y.1 (all of 127/8 is
# local), so that tests running at once never share mon or OSD ports.
CEPH_DIR=""
CEPH_PIDS=()   # mon, osd, rgw, in start order
RGW_PID=""

ceph_need() {
	local c
	for c in ceph-mon ceph-osd radosgw radosgw-admin monmaptool; do
		command -v "$c" >/dev/null || { echo "SKIP: $TEST_NAME needs $c (scripts/deps.sh test)"; exit 77; }
	done
}

# The address and an unused port of it.
ceph_pick_addr() {
	CEPH_IP=127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).1
	RGW_PORT=$((20000 + RANDOM % 20000))
	RGW_URL=http://$CEPH_IP:$RGW_PORT
	RGW_TLS_PORT=$((RGW_PORT + 1))
	RGW_TLS_URL=https://$CEPH_IP:$RGW_TLS_PORT
}

ceph_tls_cert() {
	local dir=$1 ip=$2
	mkdir -p "$dir"
	[ -f "$dir/ca.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bascule test CA" \
		-keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null || fail "openssl: no test CA"
	openssl req -newkey rsa:2048 -nodes -subj "/CN=$ip" -keyout "$dir/key.pem" -out "$dir/req.pem" 2>/dev/null &&
		printf 'subjectAltName=IP:%s\n' "$ip" > "$dir/ext" &&
		openssl x509 -req -in "$dir/req.pem" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
			-extfile "$dir/ext" -out "$dir/cert.pem" 2>/dev/null || fail "openssl: no certificate for $ip"
}

ceph_conf() {
	cat > "$CEPH_DIR/ceph.conf" <<EOF
[global]
fsid = $CEPH_FSID
mon host = [v2:$CEPH_IP:3300,v1:$CEPH_IP:6789]
public addr = $CEPH_IP
run dir = $CEPH_DIR/run
log file = $CEPH_DIR/log/\$name.log
admin socket = $CEPH_DIR/run/\$name.asok
pid file = $CEPH_DIR/run/\$name.pid
keyring = /dev/null
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
paxos propose interval = 0.05
mon data avail warn = 1
mon data avail crit = 0
[mon]
mon data = $CEPH_DIR/mon.\$id
[osd]
osd data = $CEPH_DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = $((${CEPH_MEMSTORE_MIB:-1024} << 20))
osd memory target = 268435456
[client.rgw.a]
ms mon client mode = crc
auth client required = none
rgw frontends = beast endpoint=$CEPH_IP:$RGW_PORT${CEPH_TLS:+ ssl_endpoint=$CEPH_IP:$RGW_TLS_PORT ssl_certificate=$CEPH_TLS/cert.pem ssl_private_key=$CEPH_TLS/key.pem}
rgw data = $CEPH_DIR/rgw
rgw enable usage log = false
${CEPH_RGW_CONF:-}
EOF
}

C() { ceph -c "$CEPH_DIR/ceph.conf" --connect-timeout 10 "$@"; }
radmin() { radosgw-admin -c "$CEPH_DIR/ceph.conf" "$@"; }

# (radosgw-admin gc process has been seen to hang, its watches cut: RGW's own
# collector does the work, radosgw-admin only lists, each call bounded)
gc_empty() { [ -z "$(timeout 20 radosgw-admin -c "$CEPH_DIR/ceph.conf" gc list --include-all 2>/dev/null | tr -d '[] \n')" ]; }
ceph_gc() { wait_for "${1:-120}" "RGW's garbage collector to free deleted data" gc_empty; }

# rgw_up: RGW answers HTTP on its port.
rgw_up() { curl -s -o /dev/null --max-time 2 "$RGW_URL/"; }

rgw_start() {
	radosgw -c "$CEPH_DIR/ceph.conf" -n client.rgw.a -f >> "$CEPH_DIR/log/rgw.out" 2>&1 &
	RGW_PID=$!
	CEPH_PIDS+=("$RGW_PID")
	# Also in a file: a test may restart RGW from a subshell (a fault in
	# the background), whose variables ceph_stop never sees.
	echo "$RGW_PID" >> "$CEPH_DIR/rgw.pids"
	wait_for 60 "radosgw on $RGW_URL" rgw_up
}

rgw_stop() {
	[ -n "$RGW_PID" ] || RGW_PID=$(tail -n 1 "$CEPH_DIR/rgw.pids" 2>/dev/null)
	[ -n "$RGW_PID" ] || return 0
	kill -9 "$RGW_PID" 2>/dev/null || true
	wait "$RGW_PID" 2>/dev/null || true
	RGW_PID=""
}

ceph_start() {
	ceph_need
	local t0 uuid id
	t0=$(date +%s%N)
	CEPH_DIR=$T/ceph
	mkdir -p "$CEPH_DIR/run" "$CEPH_DIR/log" "$CEPH_DIR/rgw"
	CEPH_FSID=$(cat /proc/sys/kernel/random/uuid)
	ceph_pick_addr
	[ -z "${CEPH_TLS:-}" ] || ceph_tls_cert "$CEPH_TLS" "$CEPH_IP"
	EXIT_HOOKS+=(ceph_stop)
	ceph_conf
	monmaptool --create --fsid "$CEPH_FSID" --addv a "[v2:$CEPH_IP:3300,v1:$CEPH_IP:6789]" \
		"$CEPH_DIR/monmap" >/dev/null
	ceph-mon -c "$CEPH_DIR/ceph.conf" --mkfs -i a --monmap "$CEPH_DIR/monmap" >/dev/null 2>&1 ||
		fail "ceph-mon --mkfs failed"
	ceph-mon -c "$CEPH_DIR/ceph.conf" -i a -f >> "$CEPH_DIR/log/mon.out" 2>&1 &
	CEPH_PIDS+=($!)
	wait_for 30 "ceph-mon to answer" "C mon stat >/dev/null 2>&1"
	uuid=$(cat /proc/sys/kernel/random/uuid)
	id=$(C osd new "$uuid")
	mkdir -p "$CEPH_DIR/osd.$id"
	ceph-osd -c "$CEPH_DIR/ceph.conf" -i "$id" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1 ||
		fail "ceph-osd --mkfs failed: $(tail -3 "$CEPH_DIR/log/osd.$id.log" 2>/dev/null)"
	ceph-osd -c "$CEPH_DIR/ceph.conf" -i "$id" -f >> "$CEPH_DIR/log/osd.out" 2>&1 &
	CEPH_PIDS+=($!)
	wait_for 30 "the OSD to be up" "C osd dump 2>/dev/null | grep -q '^osd.$id up'"
	rgw_start
	CEPH_UP_MS=$((($(date +%s%N) - t0) / 1000000))
}

# ceph_rss_kib: the resident memory of the cluster's daemons, in KiB.
ceph_rss_kib() {
	local p s=0 r
	for p in "${CEPH_PIDS[@]}"; do
		r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || r=0
		s=$((s + ${r:-0}))
	done
	echo "$s"
}

# ceph_user UID FILE: an S3 user with fresh keys; FILE the AWS shared-
# credentials file (0600) holding them.
ceph_user() {
	local uid=$1 file=$2 ak sk
	ak=$(head -c 10 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
	sk=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
	radmin user create --uid="$uid" --display-name="$uid" --access-key="$ak" --secret-key="$sk" >/dev/null ||
		fail "radosgw-admin user create $uid failed"
	(umask 077; printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$ak" "$sk" > "$file")
}

# A graceful order (RGW, OSD, mon) with SIGKILL: memstore holds nothing worth
# flushing, and SIGTERM makes the OSD wait for a mon already gone.
ceph_stop() {
	local i p
	[ -n "$CEPH_DIR" ] && [ -f "$CEPH_DIR/rgw.pids" ] &&
		while read -r p; do kill -9 "$p" 2>/dev/null || true; done < "$CEPH_DIR/rgw.pids"
	for ((i = ${#CEPH_PIDS[@]} - 1; i >= 0; i--)); do
		p=${CEPH_PIDS[i]}
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	CEPH_PIDS=()
	RGW_PID=""
}
