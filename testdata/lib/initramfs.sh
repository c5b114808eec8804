# initramfs.sh — sourced (with `.`) by testdata/guest/build-initramfs.sh and
# testdata/images/test-iso.sh: what their busybox initramfs guests share.
# A script that sources it counts this file among its cache inputs.
#
#   missing WHAT           prints "missing: WHAT" and exits 3 (tests skip on it)
#   need_initramfs_inputs  sets kver and kernel (the newest kernel in /boot
#                          that has its modules) and busybox (/bin/busybox,
#                          Debian's static one); checks cpio and modprobe
#   add_modules ROOT MOD.. copies the modules MOD and their dependencies
#                          (dependencies first; none when built in) into
#                          ROOT/lib/modules, in load order in ROOT/modules.order
#   pack_initramfs ROOT OUT  writes ROOT as a gzipped newc cpio, files sorted
#                          and owned by root, so equal trees give equal files

missing() {
	echo "missing: $*" >&2
	exit 3
}

need_initramfs_inputs() {
	kver=
	for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V); do
		[ -d "/lib/modules/$k" ] && kver=$k
	done
	[ -n "$kver" ] || missing "a Debian kernel in /boot (apt-get install linux-image-cloud-amd64)"
	kernel=/boot/vmlinuz-$kver
	busybox=/bin/busybox
	[ -x "$busybox" ] || missing "$busybox (apt-get install busybox-static)"
	if command -v dpkg-query >/dev/null 2>&1 &&
		[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" != "install ok installed" ]; then
		missing "busybox-static: $busybox is not the static busybox (apt-get install busybox-static)"
	fi
	command -v cpio >/dev/null 2>&1 || missing "cpio (apt-get install cpio)"
	command -v modprobe >/dev/null 2>&1 || missing "modprobe (apt-get install kmod)"
}

add_modules() {
	am_root=$1
	shift
	mkdir -p "$am_root/lib/modules"
	: >"$am_root/modules.order"
	modprobe -S "$kver" --show-depends -a "$@" |
		awk '$1 == "insmod" && !seen[$2]++ { print $2 }' |
		while read -r ko; do
			cp "$ko" "$am_root/lib/modules/"
			basename "$ko" >>"$am_root/modules.order"
		done
}

pack_initramfs() {
	(cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9n >"$2"
}
