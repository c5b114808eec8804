#!/bin/sh
# debian-base.sh [OUTDIR] — the small Debian 12 base image of the qemu
# tests and of `soe.star --var source=disk`, from Debian packages only.
#
# Writes OUTDIR/debian-12-base.qcow2 (default OUTDIR:
# ${STUDIORUN_CACHE:-$HOME/.cache/studiorun}/images) and beside it
# debian-12-base.qcow2.key (+ .pub): the builder's root SSH key, the only
# key root accepts. The guest has openssh-server, sudo, nfs-common and
# nfs-kernel-server, and DHCP on every en*/eth* NIC through
# systemd-networkd (the NIC is ens3 under qemu, not eth0). dbus is there
# for systemd-logind, which powers the guest off on an ACPI power button
# press (the builder's fallback when shutdown_command fails).
#
# It boots through a bootloader, so that any qemu (or libvirt domain)
# boots it from its disk alone: an MBR disk with syslinux's mbr.bin, a
# small FAT partition holding syslinux (installed with the mtools-based
# `syslinux`, which needs no mount), the kernel and the initrd, and an
# ext4 root partition made with `mke2fs -d` from a debootstrap tree. No
# loop device, nbd or mount is needed, so it runs in containers; it must
# run as root (debootstrap, chroot).
#
# Cached by its inputs: the hash of this script, the Debian mirror and the
# package list is stored in debian-12-base.inputs; while it matches and the
# image exists nothing is rebuilt. Inputs: debootstrap, qemu-img, mke2fs
# (e2fsprogs), mkfs.vfat (dosfstools), mcopy (mtools), syslinux,
# syslinux-common, sfdisk (fdisk), ssh-keygen (openssh-client). A missing
# input exits 3 with a line "missing: ..." (tests skip on it).
set -eu

out=${1:-${STUDIORUN_CACHE:-$HOME/.cache/studiorun}/images}
self=$(readlink -f "$0")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
packages=linux-image-cloud-amd64,systemd-sysv,dbus,openssh-server,sudo,nfs-common,nfs-kernel-server,udev,iproute2,ca-certificates
image=$out/debian-12-base.qcow2

missing() {
	echo "missing: $*" >&2
	exit 3
}
for tool in debootstrap:debootstrap qemu-img:qemu-utils mke2fs:e2fsprogs mkfs.vfat:dosfstools \
	mcopy:mtools syslinux:syslinux sfdisk:fdisk ssh-keygen:openssh-client; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || missing "${tool%%:*} (apt-get install ${tool#*:})"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr" ] || missing "$mbr (apt-get install syslinux-common)"
[ "$(id -u)" = 0 ] || missing "root (debootstrap and chroot need it)"

inputs=$( (cat "$self"; echo "$mirror $suite $packages") | sha256sum | cut -c1-16)
if [ -f "$image" ] && [ -f "$image.key" ] && [ "$(cat "$out/debian-12-base.inputs" 2>/dev/null)" = "$inputs" ]; then
	echo "cached: $image"
	exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.debian-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

echo "debootstrap $suite from $mirror (a few minutes)" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -20 "$work/debootstrap.log" >&2
	exit 1
}

# The builder's key: root logs in with it and nothing else.
ssh-keygen -q -t ed25519 -N '' -C studiorun-builder -f "$work/key"
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$work/key.pub" "$root/root/.ssh/authorized_keys"

echo debian-base >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 debian-base\n' >"$root/etc/hosts"
cat >"$root/etc/fstab" <<'EOF'
LABEL=studiorun-root / ext4 defaults,errors=remount-ro 0 1
EOF
# DHCP on whatever the NIC is called.
cat >"$root/etc/systemd/network/50-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
# A guest that waits for no network at boot, and a serial console.
chroot "$root" systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1
chroot "$root" systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# sshd: keys only for root; no DNS lookups of the client (slow under TCG).
cat >"$root/etc/ssh/sshd_config.d/studiorun.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
# The image is a template: no machine-id and no host keys of its own;
# clones generate them on first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate missing SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
chroot "$root" systemctl enable ssh-hostkeys.service >/dev/null 2>&1
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

kver=$(ls "$root/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)
[ -n "$kver" ] || { echo "no kernel in the debootstrap tree" >&2; exit 1; }

# The boot partition: syslinux, the kernel and the initrd on FAT.
boot_mib=128
mkfs.vfat -n BOOT -C "$work/boot.fat" $((boot_mib * 1024)) >/dev/null
syslinux --install "$work/boot.fat"
cat >"$work/syslinux.cfg" <<EOF
DEFAULT debian
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL debian
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=studiorun-root ro console=ttyS0,115200 console=tty0 net.ifnames=1 no_timer_check
EOF
mcopy -i "$work/boot.fat" "$work/syslinux.cfg" ::/syslinux.cfg
mcopy -i "$work/boot.fat" "$root/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$work/boot.fat" "$root/boot/initrd.img-$kver" ::/initrd.img

# The root partition, from the tree, without mounting anything.
root_mib=1536
mke2fs -q -t ext4 -L studiorun-root -d "$root" "$work/root.ext4" "${root_mib}M"

# The disk: MBR, FAT at 1 MiB (active), ext4 after it.
disk=$work/disk.raw
total_mib=$((1 + boot_mib + root_mib))
truncate -s "${total_mib}M" "$disk"
dd if="$mbr" of="$disk" conv=notrunc bs=440 count=1 2>/dev/null
sfdisk -q "$disk" <<EOF
label: dos
start=2048, size=$((boot_mib * 2048)), type=c, bootable
start=$(((1 + boot_mib) * 2048)), size=$((root_mib * 2048)), type=83
EOF
dd if="$work/boot.fat" of="$disk" bs=1M seek=1 conv=notrunc 2>/dev/null
dd if="$work/root.ext4" of="$disk" bs=1M seek=$((1 + boot_mib)) conv=notrunc 2>/dev/null
qemu-img convert -f raw -O qcow2 "$disk" "$work/image.qcow2"

mv "$work/key" "$image.key"
mv "$work/key.pub" "$image.key.pub"
mv "$work/image.qcow2" "$image"
echo "$inputs" >"$out/debian-12-base.inputs"
echo "built: $image (kernel $kver)"
