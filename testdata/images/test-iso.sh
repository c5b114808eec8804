#!/bin/sh
# test-iso.sh [OUTDIR] — a tiny installer ISO that exercises the image
# builder's ISO path end to end: boot_command typed over QMP, the
# kickstart served by the build's HTTP server, the disk written.
#
# Writes OUTDIR/studiorun-test.iso (default OUTDIR:
# ${STUDIORUN_CACHE:-$HOME/.cache/studiorun}/images): isolinux stopping at
# its "boot:" prompt (no timeout, so the boot command must be typed), a
# Debian kernel and a busybox initramfs whose /init
#   - prints its kernel command line on the serial console (a line
#     "studiorun-cmdline ...") and reads ks=URL from it,
#   - brings up the first en*/eth* NIC and asks for a lease with
#     `udhcpc -s /udhcpc.script` (Debian's busybox needs its script named),
#   - fetches URL with busybox wget,
#   - writes "studiorun-ks-ok <sha256 of the kickstart>", a line
#     "cmdline <its kernel command line>" and then the kickstart itself at
#     the start of /dev/vda, prints the same line on
#     the serial console, and powers off.
# Without ks= it prints "studiorun-ks-missing" and powers off.
#
# Inputs: xorriso, isolinux + syslinux-common, busybox-static, a Debian
# kernel in /boot with its modules (linux-image-cloud-amd64), cpio, kmod.
# A missing input exits 3 with a line "missing: ..." (tests skip on it).
# Cached: rebuilt only when this script, testdata/lib/initramfs.sh (which
# it sources), busybox or the kernel changed.
set -eu

out=${1:-${STUDIORUN_CACHE:-$HOME/.cache/studiorun}/images}
self=$(readlink -f "$0")
lib=$(dirname "$self")/../lib/initramfs.sh
. "$lib"
iso=$out/studiorun-test.iso

need_initramfs_inputs
command -v xorriso >/dev/null 2>&1 || missing "xorriso (apt-get install xorriso)"
isolinux=/usr/lib/ISOLINUX/isolinux.bin
ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
[ -f "$isolinux" ] || missing "$isolinux (apt-get install isolinux)"
[ -f "$ldlinux" ] || missing "$ldlinux (apt-get install syslinux-common)"

inputs=$( (cat "$self" "$lib"; echo "$kver"; sha256sum "$busybox" "$kernel") | sha256sum | cut -c1-16)
if [ -f "$iso" ] && [ "$(cat "$iso.inputs" 2>/dev/null)" = "$inputs" ]; then
	echo "cached: $iso"
	exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.test-iso.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/initramfs
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp "$busybox" "$root/bin/busybox"
# The virtio NIC and disk modules.
add_modules "$root" virtio_pci virtio_net virtio_blk

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
while read -r ko; do
	insmod "/lib/modules/$ko"
done </modules.order
say() { echo "$*" >/dev/console; echo "$*" >/dev/ttyS0 2>/dev/null; }
# The whole command line, so that a test sees what the boot command typed.
say "studiorun-cmdline $(cat /proc/cmdline)"
ks=
set -f
for arg in $(cat /proc/cmdline); do
	case $arg in ks=*) ks=${arg#ks=} ;; esac
done
set +f
if [ -z "$ks" ]; then
	say studiorun-ks-missing
	poweroff -f
fi
nic=
for i in 1 2 3 4 5 6 7 8 9 10; do
	for n in /sys/class/net/en* /sys/class/net/eth*; do
		[ -e "$n" ] && nic=${n##*/} && break 2
	done
	sleep 1
done
ip link set lo up
ip link set "$nic" up
udhcpc -i "$nic" -s /udhcpc.script -n -q -t 10 >/dev/console 2>&1
if wget -q -O /tmp/ks.cfg "$ks"; then
	line="studiorun-ks-ok $(sha256sum /tmp/ks.cfg | cut -d' ' -f1)"
	{ echo "$line"; echo "cmdline $(cat /proc/cmdline)"; cat /tmp/ks.cfg; } >/tmp/marker
	dd if=/tmp/marker of=/dev/vda conv=notrunc,fsync 2>/dev/null
	sync
	say "$line"
else
	say "studiorun-ks-fetch-failed $ks"
fi
poweroff -f
EOF
chmod 0755 "$root/init"
cat >"$root/udhcpc.script" <<'EOF'
#!/bin/busybox sh
case $1 in
bound | renew)
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	;;
esac
exit 0
EOF
chmod 0755 "$root/udhcpc.script"
pack_initramfs "$root" "$work/initrd.img"

cd_root=$work/cd
mkdir -p "$cd_root/isolinux"
cp "$isolinux" "$ldlinux" "$cd_root/isolinux/"
cp "$kernel" "$cd_root/vmlinuz"
cp "$work/initrd.img" "$cd_root/initrd.img"
# PROMPT 1 and TIMEOUT 0: isolinux waits at "boot:" for the boot command.
cat >"$cd_root/isolinux/isolinux.cfg" <<'EOF'
SERIAL 0 115200
PROMPT 1
TIMEOUT 0
DEFAULT linux
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0,115200 quiet no_timer_check
EOF
xorriso -as mkisofs -quiet -o "$work/test.iso" -V STUDIORUN_TEST \
	-b isolinux/isolinux.bin -c isolinux/boot.cat \
	-no-emul-boot -boot-load-size 4 -boot-info-table "$cd_root" 2>"$work/xorriso.log" || {
	cat "$work/xorriso.log" >&2
	exit 1
}
mv "$work/test.iso" "$iso"
echo "$inputs" >"$iso.inputs"
echo "built: $iso (kernel $kver)"
