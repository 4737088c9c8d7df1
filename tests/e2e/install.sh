# install: `make install` writes only under PREFIX (staged in DESTDIR), the
# installed unit and examples name the installed paths (not /usr/bin or
# /usr/sbin), the unit lands on systemd's search path and passes
# `systemd-analyze verify` with its binary and man pages where it says, and
# `make uninstall` leaves nothing behind; the hybrid PRA's ship unit, timer
# and ship.yaml (its crontab line naming the installed bascule) included, and
# the operator's intake-metrics unit and timer, the s3:// vault's daily
# extend-locks unit and timer.
. "$(dirname "$0")/../lib/common.sh"
MK=(make -s -C "$ROOT" B="$BIN")

# 1. The default prefix, staged as a package build would.
D=$T/root
"${MK[@]}" install DESTDIR="$D" > "$T/install.out" || fail "make install: $(cat "$T/install.out")"
(cd "$D" && find . -mindepth 1 \( -type f -o -type l \) | sort) > "$T/files"
cat > "$T/want" <<EOF
./usr/local/bin/bascule
./usr/local/lib/systemd/system/bascule-intake-metrics.service
./usr/local/lib/systemd/system/bascule-intake-metrics.timer
./usr/local/lib/systemd/system/bascule-ship.service
./usr/local/lib/systemd/system/bascule-ship.timer
./usr/local/lib/systemd/system/bascule-vault-extend-locks.service
./usr/local/lib/systemd/system/bascule-vault-extend-locks.timer
./usr/local/lib/systemd/system/basculed.service
./usr/local/sbin/basculed
./usr/local/share/doc/bascule/examples/authorized_keys.example
./usr/local/share/doc/bascule/examples/bascule-alerts.yml
./usr/local/share/doc/bascule/examples/bascule.yaml
./usr/local/share/doc/bascule/examples/icinga-bascule.conf
./usr/local/share/doc/bascule/examples/intake-s3.yaml
./usr/local/share/doc/bascule/examples/runbook-hybrid.yaml
./usr/local/share/doc/bascule/examples/runbook.yaml
./usr/local/share/doc/bascule/examples/ship.yaml
./usr/local/share/man/man1/bascule.1
./usr/local/share/man/man5/bascule.yaml.5
./usr/local/share/man/man5/runbook.5
./usr/local/share/man/man8/basculed.8
EOF
diff "$T/want" "$T/files" > "$T/diff" || fail "installed files differ from the expected layout: $(cat "$T/diff")"
[ -z "$(cd "$D" && find . -mindepth 1 -maxdepth 2 ! -path ./usr ! -path ./usr/local)" ] \
	|| fail "make install wrote outside PREFIX: $(cd "$D" && find . -maxdepth 2)"
U=$D/usr/local/lib/systemd/system/basculed.service
grep -q "^ExecStart=/usr/local/sbin/basculed -c /etc/bascule/bascule.yaml$" "$U" \
	|| fail "the unit does not start the installed basculed: $(grep ^Exec "$U")"
grep -q "command=\"/usr/local/bin/bascule recv " "$D/usr/local/share/doc/bascule/examples/authorized_keys.example" \
	|| fail "the authorized_keys example does not name the installed bascule"
grep -q '"/usr/local/bin/bascule"' "$D/usr/local/share/doc/bascule/examples/icinga-bascule.conf" \
	|| fail "the Icinga example does not name the installed bascule"
S=$D/usr/local/lib/systemd/system/bascule-ship.service
grep -q "^ExecStart=/usr/local/bin/bascule ship -c /etc/bascule/ship.yaml$" "$S" \
	|| fail "the ship unit does not run the installed bascule: $(grep ^Exec "$S")"
grep -q "^OnCalendar=" "$D/usr/local/lib/systemd/system/bascule-ship.timer" || fail "the ship timer has no OnCalendar"
X=$D/usr/local/lib/systemd/system/bascule-vault-extend-locks.service
grep -q "^ExecStart=/usr/local/bin/bascule vault extend-locks -c /etc/bascule/bascule.yaml$" "$X" \
	|| fail "the extend-locks unit does not run the installed bascule: $(grep ^Exec "$X")"
grep -q "^OnCalendar=\*-\*-\* [0-9:]*$" "$D/usr/local/lib/systemd/system/bascule-vault-extend-locks.timer" \
	|| fail "the extend-locks timer is not daily: $(grep ^On "$D/usr/local/lib/systemd/system/bascule-vault-extend-locks.timer")"
cmp -s "$ROOT/etc/ship.yaml" "$D/usr/local/share/doc/bascule/examples/ship.yaml" \
	|| fail "the installed ship.yaml differs from etc/ship.yaml at the default prefix"
grep -q '^\.BI "ship ' "$D/usr/local/share/man/man1/bascule.1" && grep -q '^\.BI "intake restore ' "$D/usr/local/share/man/man1/bascule.1" \
	|| fail "the installed bascule(1) does not document ship and intake"
left=$(grep -rn "@BINDIR@\|@SBINDIR@\|/usr/s\?bin/bascule" "$D" || true)
[ -z "$left" ] || fail "installed files name other paths than the installed ones: $left"
[ "$(stat -c %a "$D/usr/local/sbin/basculed")" = 755 ] && [ "$(stat -c %a "$U")" = 644 ] && [ "$(stat -c %a "$S")" = 644 ] &&
	[ "$(stat -c %a "$X")" = 644 ] || fail "modes: $(stat -c '%a %n' "$D/usr/local/sbin/basculed" "$U" "$S" "$X")"
grep -q "configuration goes to /etc/bascule" "$T/install.out" || fail "make install does not say where the configuration goes"
note "make install: $(wc -l < "$T/files") files under /usr/local only"

# 2. The unit as systemd would read it: where systemd looks for units of this
# prefix, its binary and man pages in place (the staged tree mounted on
# /usr/local in a private mount namespace, so nothing of this machine changes).
if command -v systemd-analyze >/dev/null; then
	unit_dirs=$(systemd-analyze unit-paths 2>/dev/null || true)
	echo "$unit_dirs" | grep -qx /usr/local/lib/systemd/system \
		|| fail "systemd does not look for units in /usr/local/lib/systemd/system: $unit_dirs"
	unshare -m --propagation private sh -c '
		mount --bind "$1/usr/local" /usr/local &&
		/usr/local/sbin/basculed --version >/dev/null &&
		systemd-analyze verify /usr/local/lib/systemd/system/basculed.service \
			/usr/local/lib/systemd/system/bascule-ship.service /usr/local/lib/systemd/system/bascule-ship.timer \
			/usr/local/lib/systemd/system/bascule-intake-metrics.service \
			/usr/local/lib/systemd/system/bascule-intake-metrics.timer \
			/usr/local/lib/systemd/system/bascule-vault-extend-locks.service \
			/usr/local/lib/systemd/system/bascule-vault-extend-locks.timer' \
		sh "$D" > "$T/verify" 2>&1 \
		|| fail "systemd-analyze verify of the installed unit: $(cat "$T/verify")"
	[ -s "$T/verify" ] && fail "systemd-analyze verify: $(cat "$T/verify")"
	score=$(systemd-analyze security --offline=true "$U" 2>/dev/null \
		| sed -n 's/.*Overall exposure level for basculed.service: \([0-9.]*\).*/\1/p')
	note "systemd-analyze verify clean; security: exposure ${score:-?} (0 best, 10 worst)"
else
	note "systemd-analyze not installed: unit not verified"
fi

# 3. make uninstall: nothing left behind (the shared directories stay empty).
"${MK[@]}" uninstall DESTDIR="$D" > "$T/uninstall.out" 2>&1 || fail "make uninstall: $(cat "$T/uninstall.out")"
left=$(cd "$D" && find . -mindepth 1 \( -type f -o -type l \))
[ -z "$left" ] || fail "make uninstall left: $left"
[ -e "$D/usr/local/share/doc/bascule" ] && fail "make uninstall left its doc directory"
note "make uninstall removed every file"

# 4. A distribution package: PREFIX=/usr.
P=$T/pkg
"${MK[@]}" install DESTDIR="$P" PREFIX=/usr > /dev/null || fail "make install PREFIX=/usr"
grep -q "^ExecStartPre=/usr/sbin/basculed -c /etc/bascule/bascule.yaml --check-config$" \
	"$P/usr/lib/systemd/system/basculed.service" || fail "PREFIX=/usr: the unit does not name /usr/sbin/basculed"
grep -q 'command="/usr/bin/bascule recv ' "$P/usr/share/doc/bascule/examples/authorized_keys.example" \
	|| fail "PREFIX=/usr: the authorized_keys example does not name /usr/bin/bascule"
grep -q "^ExecStart=/usr/bin/bascule vault extend-locks " "$P/usr/lib/systemd/system/bascule-vault-extend-locks.service" \
	|| fail "PREFIX=/usr: the extend-locks unit does not name /usr/bin/bascule"
grep -q "^ExecStart=/usr/bin/bascule intake metrics " "$P/usr/lib/systemd/system/bascule-intake-metrics.service" \
	|| fail "PREFIX=/usr: the intake-metrics unit does not name /usr/bin/bascule"
grep -q "^ExecStart=/usr/bin/bascule ship " "$P/usr/lib/systemd/system/bascule-ship.service" \
	|| fail "PREFIX=/usr: the ship unit does not name /usr/bin/bascule"
grep -q " /usr/bin/bascule ship -c " "$P/usr/share/doc/bascule/examples/ship.yaml" \
	|| fail "PREFIX=/usr: the ship.yaml crontab line does not name /usr/bin/bascule"
"${MK[@]}" uninstall DESTDIR="$P" PREFIX=/usr > /dev/null
[ -z "$(cd "$P" && find . \( -type f -o -type l \))" ] || fail "PREFIX=/usr: uninstall left files"
note "PREFIX=/usr: /usr/sbin/basculed in the unit; uninstall clean"
