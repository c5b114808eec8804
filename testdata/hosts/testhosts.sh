#!/usr/bin/env bash
# Test hosts with a real OpenSSH server, on this machine (needs root).
#
# Each host is a network namespace with an address on the bridge srtest0
# (10.77.0.1/24 on this machine's side; host INDEX gets 10.77.0.(10+INDEX)),
# and a pid, mount and UTS namespace whose root is an overlay of a Debian root
# filesystem built once with debootstrap and cached. The host's own sshd runs
# chrooted in that root, so /etc (users, sudoers, fstab), /home and /root are
# the host's own, and a mount made in a session stays inside the host. Nothing
# is mounted in this machine's mount namespace: removing a host kills its pid
# namespace, which releases its mounts.
#
#   testhosts.sh rootfs              build the cached root filesystem; print its path
#   testhosts.sh up NAME INDEX|auto [PUBKEY_FILE]
#                                    create host NAME; print "NAME ADDRESS"
#   testhosts.sh down NAME           remove host NAME (processes, netns, files)
#   testhosts.sh down-all            remove every host (and the bridge)
#   testhosts.sh gc                  remove the hosts whose owner process is gone
#   testhosts.sh stop NAME           kill the host's sshd and its sessions
#   testhosts.sh start NAME          start the host's sshd again
#   testhosts.sh rekey NAME          new host key, sshd restarted
#   testhosts.sh exec NAME CMD...    run CMD in the host's root (not over SSH)
#   testhosts.sh list                NAME INDEX ADDRESS OWNER_PID per host
#
# Environment:
#   STUDIORUN_CACHE            cache dir (default $HOME/.cache/studiorun)
#   STUDIORUN_TESTHOSTS_DIR    state dir (default /run/studiorun-testhosts)
#   STUDIORUN_DEBIAN_MIRROR    mirror for debootstrap (default: the one apt uses)
#   STUDIORUN_TESTHOSTS_EXTRA_PACKAGES  more packages for the root filesystem,
#                              comma-separated (part of the cache key)
#   STUDIORUN_TESTHOSTS_OWNER  pid owning created hosts (default: parent pid);
#                              gc removes hosts whose owner is gone
#
# Needs iproute2, util-linux (nsenter, unshare, flock), openssh-client
# (ssh-keygen), and for the first build debootstrap and a reachable Debian
# mirror (~35 s, ~210 MB). The hosts reach only the bridge, where this machine
# is 10.77.0.1: there is no NAT, so apt in a host has only the package lists
# made by debootstrap (queries work, downloads do not).
set -euo pipefail

SUITE=bookworm
PACKAGES="openssh-server,openssh-sftp-server,sudo,procps,iproute2"
# Bump when the recipe below changes: it is part of the cache key.
RECIPE=1

CACHE=${STUDIORUN_CACHE:-${HOME:-/root}/.cache/studiorun}
STATE=${STUDIORUN_TESTHOSTS_DIR:-/run/studiorun-testhosts}
BRIDGE=srtest0
NET=10.77.0
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "testhosts: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root"; }

mirror() {
  if [ -n "${STUDIORUN_DEBIAN_MIRROR:-}" ]; then echo "$STUDIORUN_DEBIAN_MIRROR"; return; fi
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  [ -n "$m" ] || m=$(grep -hsE '^deb (\[[^]]*\] )?https?://[^ ]*/debian/? ' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}' | head -n1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

rootfs_path() {
  local pkgs=$PACKAGES
  [ -z "${STUDIORUN_TESTHOSTS_EXTRA_PACKAGES:-}" ] || pkgs="$pkgs,$STUDIORUN_TESTHOSTS_EXTRA_PACKAGES"
  local key
  key=$(printf '%s\n' "$SUITE" minbase "$pkgs" "$RECIPE" | sha256sum | cut -c1-12)
  echo "$CACHE/rootfs-$SUITE-$key"
}

# rootfs: debootstrap once into the cache, keyed by its inputs. Concurrent
# callers wait on a lock on the cache dir; the tree appears under its final
# name only when complete.
cmd_rootfs() {
  need_root
  local root pkgs tmp
  root=$(rootfs_path)
  if [ -e "$root/.complete" ]; then echo "$root"; return; fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed"
  mkdir -p "$CACHE"
  exec 8>"$CACHE/rootfs.lock"
  flock 8
  if [ -e "$root/.complete" ]; then echo "$root"; return; fi
  pkgs=$PACKAGES
  [ -z "${STUDIORUN_TESTHOSTS_EXTRA_PACKAGES:-}" ] || pkgs="$pkgs,$STUDIORUN_TESTHOSTS_EXTRA_PACKAGES"
  tmp="$root.tmp.$$"
  rm -rf "$root" "$root".tmp.*
  echo "testhosts: debootstrap $SUITE ($pkgs) from $(mirror) into $root" >&2
  if ! debootstrap --variant=minbase --include="$pkgs" "$SUITE" "$tmp" "$(mirror)" >"$tmp.log" 2>&1; then
    tail -n 30 "$tmp.log" >&2
    rm -rf "$tmp"
    die "debootstrap failed (log: $tmp.log)"
  fi
  rm -f "$tmp.log"
  # Host keys are made per host; the build's own must not be shared.
  rm -f "$tmp"/etc/ssh/ssh_host_*
  # sshd for tests: root by key, logs to a file (there is no syslog), no
  # reverse DNS. Other settings stay Debian's defaults.
  cat >"$tmp/etc/ssh/sshd_config.d/studiorun-test.conf" <<'EOF'
# studiorun test host
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
UseDNS no
EOF
  mkdir -p "$tmp/run/sshd" "$tmp/root/.ssh" "$tmp/var/log"
  chmod 700 "$tmp/root/.ssh"
  rm -rf "$tmp"/var/cache/apt/archives/*.deb
  touch "$tmp/.complete"
  mv "$tmp" "$root"
  echo "$root"
}

hostdir() { echo "$STATE/$1"; }

valid_name() {
  [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]] || die "bad host name: $1"
}

# The host's init process (pid 1 of its pid namespace), as this machine's pid.
init_pid() {
  local p
  p=$(cat "$(hostdir "$1")/init.pid" 2>/dev/null) || die "no host $1"
  [ -d "/proc/$p" ] || die "host $1 is not running"
  echo "$p"
}

in_host() { # NAME CMD...: run CMD in the host's namespaces and root
  local pid
  pid=$(init_pid "$1"); shift
  nsenter -t "$pid" -m -n -p -u -r -w \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"
}

ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge 2>/dev/null || ip link show "$BRIDGE" >/dev/null
    ip addr replace "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
}

running() { # PID: exists and is not a zombie
  local st
  st=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

owner_id() { # PID -> "PID STARTTIME"
  local st
  st=$(cut -d' ' -f22 "/proc/$1/stat" 2>/dev/null) || return 1
  echo "$1 $st"
}

owner_alive() { # HOSTDIR
  local pid st
  read -r pid st <"$1/owner" 2>/dev/null || return 1
  # A killed owner may stay a zombie for a while: that is gone too.
  running "$pid" && [ "$(owner_id "$pid" 2>/dev/null)" = "$pid $st" ]
}

wait_tcp() { # ADDRESS: until something listens on port 22
  local i
  for i in $(seq 1 500); do
    if (exec 3<>"/dev/tcp/$1/22") 2>/dev/null; then return 0; fi
    sleep 0.01
  done
  return 1
}

start_sshd() {
  local name=$1 d addr
  d=$(hostdir "$name")
  addr=$(cat "$d/address")
  in_host "$name" /bin/sh -c 'mkdir -p /run/sshd && chmod 755 /run/sshd && exec /usr/sbin/sshd -E /var/log/sshd.log' ||
    die "sshd did not start in $name"
  wait_tcp "$addr" || die "sshd of $name does not listen on $addr:22 (see /var/log/sshd.log in the host)"
}

stop_sshd() { # kill every process of the host but its init
  in_host "$1" /bin/sh -c 'kill -KILL -1 2>/dev/null; exit 0'
}

cmd_up() {
  need_root
  [ $# -ge 2 ] || die "usage: up NAME INDEX|auto [PUBKEY_FILE]"
  local name=$1 index=$2 pubkey=${3:-} root d addr veth
  valid_name "$name"
  root=$(cmd_rootfs)
  mkdir -p "$STATE"
  if [ -z "$pubkey" ]; then
    [ -e "$STATE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C studiorun-test -f "$STATE/id_ed25519"
    pubkey="$STATE/id_ed25519.pub"
  fi
  [ -r "$pubkey" ] || die "no public key $pubkey"
  d=$(hostdir "$name")

  # Allocate the name and the index under the state lock.
  exec 9>"$STATE/lock"
  flock 9
  [ ! -e "$d" ] || die "host $name exists"
  if [ "$index" = auto ]; then
    local used i
    used=$(cat "$STATE"/*/index 2>/dev/null || true)
    index=
    for i in $(seq 0 243); do
      if ! grep -qx "$i" <<<"$used"; then index=$i; break; fi
    done
    [ -n "$index" ] || die "no free address on $NET.0/24"
  else
    [[ $index =~ ^[0-9]+$ ]] && [ "$index" -le 243 ] || die "INDEX must be 0..243"
    if grep -qsx "$index" "$STATE"/*/index; then die "index $index is in use"; fi
  fi
  mkdir -p "$d"
  # A host that fails to come up is removed again.
  up_name=$name
  trap '[ -n "${up_done:-}" ] || cmd_down "$up_name" >/dev/null 2>&1 || true' EXIT
  # The owner first: gc removes a host with an index and a dead owner.
  owner_id "${STUDIORUN_TESTHOSTS_OWNER:-$PPID}" >"$d/owner" || echo "0 0" >"$d/owner"
  echo "$index" >"$d/index"
  ensure_bridge
  flock -u 9
  exec 9>&-

  addr="$NET.$((10 + index))"
  veth="srth$index"
  echo "$addr" >"$d/address"

  # The host's own files, put in the upper layer before it is mounted.
  local u="$d/upper"
  mkdir -p "$u/etc/ssh" "$u/root/.ssh" "$d/work" "$d/root"
  ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$u/etc/ssh/ssh_host_ed25519_key"
  cp "$pubkey" "$u/root/.ssh/authorized_keys"
  chmod 700 "$u/root/.ssh"
  chmod 600 "$u/root/.ssh/authorized_keys"
  echo "$name" >"$u/etc/hostname"
  printf '127.0.0.1\tlocalhost\n%s\t%s\n' "$addr" "$name" >"$u/etc/hosts"

  # Network: a veth from the bridge into the host's namespace.
  ip link del "$veth" 2>/dev/null || true
  ip netns add "$name"
  ip link add "$veth" type veth peer name eth0 netns "$name"
  ip link set "$veth" master "$BRIDGE" up
  ip -n "$name" addr add "$addr/24" dev eth0
  ip -n "$name" link set lo up
  ip -n "$name" link set eth0 up
  ip -n "$name" route add default via "$NET.1"

  # The host's init: new mount, pid and UTS namespaces inside the netns; it
  # mounts the overlay and the API filesystems, then sleeps chrooted.
  local R="$d/root"
  # shellcheck disable=SC2016
  local setup='
    set -e
    R=$1 D=$2
    mount -t overlay overlay -o "lowerdir=$3,upperdir=$D/upper,workdir=$D/work" "$R"
    mount -t proc proc "$R/proc"
    mount -t sysfs -o ro sysfs "$R/sys" || true
    mount -t tmpfs -o mode=755,size=64m tmpfs "$R/run"
    mkdir -p "$R/run/sshd" "$R/run/lock"
    mount -t tmpfs -o mode=755,size=1m tmpfs "$R/dev"
    for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
      set -- $n; mknod -m 666 "$R/dev/$1" c "$2" "$3"
    done
    mkdir "$R/dev/pts" "$R/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
    ln -s pts/ptmx "$R/dev/ptmx"
    ln -s /proc/self/fd "$R/dev/fd"
    ln -s /proc/self/fd/0 "$R/dev/stdin"
    ln -s /proc/self/fd/1 "$R/dev/stdout"
    ln -s /proc/self/fd/2 "$R/dev/stderr"
    mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
    hostname "$(cat "$R/etc/hostname")"
    touch "$D/ready"
    exec chroot "$R" /bin/sleep infinity
  '
  setsid ip netns exec "$name" unshare --mount --propagation private --pid --fork --uts --kill-child \
    /bin/sh -c "$setup" setup "$R" "$d" "$root" </dev/null >"$d/init.log" 2>&1 &
  local parent=$! child= i
  for i in $(seq 1 500); do
    if [ -e "$d/ready" ]; then
      child=$(cat "/proc/$parent/task/$parent/children" 2>/dev/null | awk '{print $1}')
      # Ready once the chroot is done (the host's first process is sleep):
      # entering the host earlier would run this machine's programs in it.
      if [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = sleep ]; then
        break
      fi
      child=
    fi
    [ -d "/proc/$parent" ] || break
    sleep 0.01
  done
  [ -n "$child" ] || { cat "$d/init.log" >&2; die "host $name did not start"; }
  echo "$parent" >"$d/unshare.pid"
  echo "$child" >"$d/init.pid"
  start_sshd "$name"
  up_done=1
  echo "$name $addr"
}

cmd_down() {
  need_root
  [ $# -eq 1 ] || die "usage: down NAME"
  local name=$1 d p i
  valid_name "$name"
  d=$(hostdir "$name")
  for p in $(cat "$d/unshare.pid" "$d/init.pid" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  # Whatever else still runs in the netns (a stray nsenter).
  for p in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  # The pid namespace's init exits (or is a zombie) only after every other
  # process of the host: then its mounts are released.
  for p in $(cat "$d/init.pid" 2>/dev/null); do
    for i in $(seq 1 300); do running "$p" || break; sleep 0.01; done
  done
  ip netns del "$name" 2>/dev/null || true
  [ ! -e "$d/index" ] || ip link del "srth$(cat "$d/index")" 2>/dev/null || true
  rm -rf "$d"
}

host_names() {
  local h
  for h in "$STATE"/*/; do [ -e "$h/index" ] && basename "$h"; done 2>/dev/null || true
}

cmd_down_all() {
  need_root
  local n
  for n in $(host_names); do cmd_down "$n"; done
  ip link del "$BRIDGE" 2>/dev/null || true
}

cmd_gc() {
  need_root
  local n
  for n in $(host_names); do
    owner_alive "$STATE/$n" || cmd_down "$n"
  done
}

cmd_list() {
  local n
  for n in $(host_names); do
    echo "$n $(cat "$STATE/$n/index") $(cat "$STATE/$n/address") $(cut -d' ' -f1 "$STATE/$n/owner")"
  done
}

cmd_rekey() {
  need_root
  local name=$1 pid k
  pid=$(init_pid "$name")
  stop_sshd "$name"
  k="/proc/$pid/root/etc/ssh/ssh_host_ed25519_key"
  rm -f "$k" "$k.pub"
  ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$k"
  start_sshd "$name"
}

main() {
  [ $# -ge 1 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
  local c=$1; shift
  case $c in
    rootfs) cmd_rootfs ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    down-all) cmd_down_all ;;
    gc) cmd_gc ;;
    stop) need_root; stop_sshd "$1" ;;
    start) need_root; start_sshd "$1" ;;
    rekey) cmd_rekey "$@" ;;
    exec) need_root; [ $# -ge 2 ] || die "usage: exec NAME CMD..."; in_host "$@" ;;
    list) cmd_list ;;
    *) die "unknown command $c" ;;
  esac
}

main "$@"
