# tests/lib/vm.sh - real QEMU guests for the failover tests (source after common.sh).
#
# The guest is a Debian kernel (linux-image-cloud-amd64, fetched with
# apt-get download and cached) and a busybox initramfs built here.  Its init
# appends numbered 4 KiB records to its disk (/dev/vda), each one flushed
# (fsync) before it is reported on the serial console as
# "bascule-guest: wrote N", and serves over HTTP (port 80, QEMU user
# networking) /status with "boot_seq=N": the highest contiguous record it
# found on its disk at boot.  A guest booted from a replica therefore proves
# how much of what its predecessor wrote made it across.
#   vm_prepare                       kernel + initramfs into $VM_DIR (cached)
#   vm_qemu_cmd NAME DISK PORT [net-opts]  the command booting a guest (KVM if
#                                    usable, else TCG); pid in $T/vm-NAME.pid,
#                                    console appended to $T/vm-NAME.console
#                                    VM_FORMAT=qcow2 boots from a qcow2 image,
#                                    VM_QMP=PATH adds a QMP socket (block node
#                                    "disk0", device "vd0"), VM_QEMU_EXTRA more options
#   vm_last_written CONSOLE          highest N the guest reported written
#   vm_boot_seq PORT                 boot_seq from the guest's HTTP status
#   vm_disk_seq DISK                 the boot_seq a guest booted from DISK (raw)
#                                    would report, read without booting it
#   vm_qmp SOCK CMD [JSON-ARGS]      the return value of CMD on a QMP socket
#   vm_qemu_bare NAME DISK FORMAT QMP  start a QEMU holding DISK as device vd0
#                                    (node disk0) with no guest running (-S):
#                                    its writes come from vm_write; monitors
#                                    on QMP (the daemon's) and QMP.test;
#                                    VM_QEMU_EXTRA more options (a second disk)
#   vm_config_qemu QMP [NODE]        each "disk: QEMU" source of $T/bascule.yaml
#                                    becomes a qemu: source on QMP (node vd0)
#   vm_write QMP DISK_BYTES IO_BYTES COUNT RATE SEED  random writes through
#                                    vd0 (tests/lib/qmp.py write)
#   vm_write_start OUT QMP ...        the same in the background (until
#                                    killed), its summary in OUT; pid in VM_WRITER
VM_CACHE=${BASCULE_TEST_CACHE:-/var/cache/bascule-test}
VM_DIR=$VM_CACHE/guest

vm_prepare() {
	local pkg deb v x mods m
	command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86 is not installed"
	[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || fail "busybox-static is not installed"
	mkdir -p "$VM_DIR"
	if [ ! -f "$VM_DIR/vmlinuz" ]; then
		pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
		if [ -z "$pkg" ]; then
			apt-get update -qq >/dev/null 2>&1 || true
			pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
		fi
		[ -n "$pkg" ] || fail "cannot find the Debian cloud kernel package (apt-get update?)"
		x=$(mktemp -d)
		(cd "$x" && apt-get download "$pkg" >/dev/null 2>&1) || fail "apt-get download $pkg failed"
		deb=$(ls "$x"/*.deb)
		dpkg-deb -x "$deb" "$x/root"
		v=$(ls "$x/root/lib/modules")
		depmod -b "$x/root" "$v"
		rm -rf "$VM_DIR/modules"; mkdir -p "$VM_DIR/modules"
		# virtio block and net with their dependencies, in load order
		mods=$(for m in virtio_pci virtio_blk virtio_net; do
			grep "/$m.ko:" "$x/root/lib/modules/$v/modules.dep" | cut -d: -f2 | tr ' ' '\n' | tac
			grep -o "^[^:]*/$m.ko" "$x/root/lib/modules/$v/modules.dep"; done | awk 'NF && !seen[$0]++')
		for m in $mods; do cp "$x/root/lib/modules/$v/$m" "$VM_DIR/modules/"; basename "$m" .ko >> "$VM_DIR/modules/order"; done
		cp "$x/root/boot/vmlinuz-$v" "$VM_DIR/vmlinuz.tmp" && mv "$VM_DIR/vmlinuz.tmp" "$VM_DIR/vmlinuz"
		rm -rf "$x"
	fi
	vm_initramfs
	vm_accel
}

vm_initramfs() {
	local r bb
	r=$(mktemp -d)
	mkdir -p "$r"/{bin,proc,sys,dev,www,lib}
	bb=$(command -v busybox); cp "$bb" "$r/bin/busybox"
	cp "$VM_DIR"/modules/*.ko "$VM_DIR/modules/order" "$r/lib/"
	cat > "$r/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/order); do insmod /lib/$m.ko; done
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
# The highest contiguous record on the disk (record N lives in block N).
n=$(dd if=/dev/vda bs=1M count=32 2>/dev/null | strings -n 8 |
    awk '/^BSCREC [0-9]+ $/ { if ($2 == n + 1) n = $2 } END { print n + 0 }')
echo "boot_seq=$n" > /www/status
echo "bascule-guest: booted boot_seq=$n" > /dev/console
httpd -p 80 -h /www
i=$n
while :; do
	i=$((i + 1))
	if printf 'BSCREC %d \n' $i | dd of=/dev/vda bs=4096 seek=$i conv=sync,notrunc,fsync 2>/dev/null; then
		echo "bascule-guest: wrote $i" > /dev/console
		echo "written=$i" > /www/written
	fi
	sleep 0.1
done
INIT
	chmod +x "$r/init"
	(cd "$r" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$VM_DIR/initramfs.gz"
	rm -rf "$r"
}

# vm_accel: kvm if /dev/kvm boots the guest, else tcg.  An openable
# /dev/kvm is not enough: under some nested hypervisors the vCPU spins
# without ever running the guest, so the probe boots it for real.  The
# answer is kept for the machine's boot ($VM_DIR/accel, with the boot id):
# a failing probe costs 15 s, and every guest test would pay it.
VM_ACCEL=${VM_ACCEL:-}
vm_accel() {
	local d boot
	[ -n "$VM_ACCEL" ] && return 0
	VM_ACCEL=tcg
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || return 0
	boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)
	if [ -n "$boot" ] && [ "$(sed -n 1p "$VM_DIR/accel" 2>/dev/null)" = "$boot" ]; then
		VM_ACCEL=$(sed -n 2p "$VM_DIR/accel")
		[ "$VM_ACCEL" = kvm ] || VM_ACCEL=tcg
		echo "guests run with accel=$VM_ACCEL (probed at this boot: $VM_DIR/accel)" >&2
		return 0
	fi
	d=$(mktemp -d)
	truncate -s 1M "$d/disk"
	timeout 20 qemu-system-x86_64 -machine q35,accel=kvm -m 160 -nodefaults -no-user-config \
		-display none -serial "file:$d/console" -kernel "$VM_DIR/vmlinuz" -initrd "$VM_DIR/initramfs.gz" \
		-append 'console=ttyS0 quiet panic=-1' -no-reboot -drive "file=$d/disk,format=raw,if=virtio" \
		>/dev/null 2>&1 &
	for _ in $(seq 150); do grep -q 'bascule-guest: booted' "$d/console" 2>/dev/null && { VM_ACCEL=kvm; break; }; sleep 0.1; done
	kill %% 2>/dev/null; wait 2>/dev/null
	rm -rf "$d"
	[ -z "$boot" ] || { printf '%s\n%s\n' "$boot" "$VM_ACCEL" > "$VM_DIR/accel.$$" && mv "$VM_DIR/accel.$$" "$VM_DIR/accel"; }
	echo "guests run with accel=$VM_ACCEL" >&2
}

# vm_qemu_cmd NAME DISK PORT [NETOPTS]: the command line that boots a guest;
# its console is appended to $T/vm-NAME.console, its pid in $T/vm-NAME.pid.
vm_qemu_cmd() {
	local name=$1 disk=$2 port=$3 netopts=${4:-} accel=${VM_ACCEL:-tcg}
	local drive="-drive file=$disk,format=${VM_FORMAT:-raw},if=virtio,cache=writeback"
	[ -n "${VM_QMP:-}" ] && drive="-blockdev driver=${VM_FORMAT:-raw},node-name=disk0,file.driver=file,\
file.filename=$disk -device virtio-blk-pci,drive=disk0,id=vd0 -qmp unix:$VM_QMP,server=on,wait=off"
	echo "qemu-system-x86_64 -name $name -machine q35,accel=$accel -m 160 -smp 1 -nodefaults -no-user-config \
-display none -chardev file,id=con,path=$T/vm-$name.console,append=on -serial chardev:con \
-kernel $VM_DIR/vmlinuz -initrd $VM_DIR/initramfs.gz \
-append 'console=ttyS0 quiet panic=-1' -no-reboot \
$drive \
-nic user,model=virtio-net-pci${netopts:+,$netopts},hostfwd=tcp::$port-:80 \
${VM_QEMU_EXTRA:+$VM_QEMU_EXTRA }-pidfile $T/vm-$name.pid -daemonize"
}

vm_last_written() {
	[ -f "$1" ] || { echo 0; return 0; }
	awk 'match($0, /bascule-guest: wrote [0-9]+/) { n = substr($0, RSTART + 21, RLENGTH - 21) + 0 }
	     END { print n + 0 }' "$1"
}

vm_boot_seq() {
	{ curl -s -m 2 "http://127.0.0.1:$1/status" || true; } | sed -n 's/^boot_seq=//p'
}

# The guest's init, in Python: the highest N such that records 1..N each
# sit in their block (the first 32 MiB).
vm_disk_seq() {
	python3 - "$1" <<'PY'
import sys
with open(sys.argv[1], "rb") as f:
    d = f.read(32 << 20)
n = 0
while d[(n + 1) * 4096:(n + 1) * 4096 + 32].startswith(b"BSCREC %d \n" % (n + 1)):
    n += 1
print(n)
PY
}

VM_QMP_PY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/qmp.py
vm_qmp() { python3 "$VM_QMP_PY" call "$@"; }
vm_config_qemu() { sed -i "s|^        disk: QEMU\$|        qemu:\\n          qmp: $1\\n          node: ${2:-vd0}|" "$T/bascule.yaml"; }
vm_write() { local sock=$1; shift; python3 "$VM_QMP_PY" write "$sock" vd0/virtio-backend "$@"; }
vm_write_start() {
	local out=$1 sock=$2; shift 2
	python3 "$VM_QMP_PY" write "$sock" vd0/virtio-backend "$@" > "$out" &
	VM_WRITER=$!
}

vm_qemu_bare() {
	local name=$1 disk=$2 format=$3 qmp=$4
	rm -f "$qmp" "$qmp.test"
	qemu-system-x86_64 -name "$name" -S -machine q35,accel=tcg -m 64 -nodefaults -no-user-config -display none \
		-blockdev "driver=$format,node-name=disk0,file.driver=file,file.filename=$disk" \
		-device virtio-blk-pci,drive=disk0,id=vd0 -qmp "unix:$qmp,server=on,wait=off" \
		-qmp "unix:$qmp.test,server=on,wait=off" ${VM_QEMU_EXTRA:-} \
		-pidfile "$T/vm-$name.pid" -daemonize || fail "QEMU did not start on $disk"
}
