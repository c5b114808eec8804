#!/bin/sh
# build-initramfs.sh OUTDIR — the tiny guest of the qemu:///system tests.
#
# Writes OUTDIR/vmlinuz (the newest Debian kernel in /boot) and
# OUTDIR/initramfs.img: a gzipped cpio of Debian's static busybox, the
# kernel's virtio PCI and virtio-net modules, and an /init that mounts
# /proc and /sys, brings eth0 up, asks for a DHCP lease with
#   udhcpc -i eth0 -s /udhcpc.script -n -q -t 10 -x hostname:NAME
# (NAME from studiorun.hostname=NAME on the kernel command line), prints
# the lease on the console (ttyS0) and powers off.
#
# Inputs: busybox-static (/bin/busybox), linux-image-cloud-amd64 or
# linux-image-amd64 (/boot/vmlinuz-*, /lib/modules), cpio, kmod (modprobe).
# A missing input exits 3 with a line "missing: ..." (tests skip on it).
# Cached: nothing is rebuilt while the outputs are newer than this script,
# testdata/lib/initramfs.sh (which it sources), busybox and the kernel, and were built for the same kernel.
set -eu

out=${1:?usage: build-initramfs.sh OUTDIR}
self=$(readlink -f "$0")
lib=$(dirname "$self")/../lib/initramfs.sh
. "$lib"
need_initramfs_inputs

fresh() {
	for f in "$out/vmlinuz" "$out/initramfs.img" "$out/kernel-version"; do
		[ -f "$f" ] || return 1
		for input in "$self" "$lib" "$busybox" "$kernel"; do
			[ "$f" -nt "$input" ] || return 1
		done
	done
	[ "$(cat "$out/kernel-version")" = "$kver" ]
}
if fresh; then
	echo "cached: $out ($kver)"
	exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/proc" "$root/sys" "$root/dev"
cp "$busybox" "$root/bin/busybox"
# The virtio NIC's modules.
add_modules "$root" virtio_pci virtio_net

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
while read -r ko; do
	insmod "/lib/modules/$ko"
done </modules.order
host=$(sed -n 's/.*studiorun\.hostname=\([^ ]*\).*/\1/p' /proc/cmdline)
ip link set lo up
ip link set eth0 up
echo "studiorun-guest: udhcpc on eth0 as ${host:-(no hostname)}"
udhcpc -i eth0 -s /udhcpc.script -n -q -t 10 ${host:+-x hostname:$host}
echo "studiorun-guest: udhcpc exited $?, powering off"
poweroff -f
EOF
cat >"$root/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc's event script: configures nothing, prints the lease.
case "$1" in
bound | renew) echo "studiorun-guest: $1 $interface ip=$ip hostname=${hostname:-} router=${router:-} dns=${dns:-} domain=${domain:-}" ;;
*) echo "studiorun-guest: $1 $interface" ;;
esac
EOF
chmod 0755 "$root/init" "$root/udhcpc.script"

pack_initramfs "$root" "$work/initramfs.img"
cp "$kernel" "$work/vmlinuz"
echo "$kver" >"$work/kernel-version"
chmod 0644 "$work/initramfs.img" "$work/vmlinuz" "$work/kernel-version"
# The version last: fresh() wants all three.
mv -f "$work/vmlinuz" "$work/initramfs.img" "$out/"
mv -f "$work/kernel-version" "$out/"
echo "built: $out ($kver)"
