#!/usr/bin/env bash
# studiorun against ansible-playbook on issue 4's six tasks (ops user,
# exclusive authorized key, sudoers file 0440 checked with visudo, /vfx, an
# fstab line, a package check), side by side in one run (needs root):
#
#   bash testdata/bench/ansible_vs_studiorun.sh
#
# For each host count N (10 and 30): N fresh test hosts with python3
# (testdata/hosts/testhosts.sh), ansible-playbook six_tasks.yml (forks = N,
# pipelining on, host keys checked against a known_hosts made from the
# hosts' keys) first run then no-op; the hosts removed, N fresh ones, then
# studiorun six_tasks.star up --yes (--parallel N, --known-hosts a new file
# with --accept-new-host-keys on the first run) first run then no-op, which
# must report "No changes". It prints the wall times and the speed-ups.
# Bringing hosts up and down is not timed. Everything it made is removed on
# exit.
#
# Environment:
#   STUDIORUN_BENCH_HOSTS  host counts, space- or comma-separated (default "10 30")
#   STUDIORUN_BIN          a studiorun binary to use (default: go build once)
#   STUDIORUN_BENCH_KEEP   1: keep the work dir (logs, configs) on exit
# and testhosts.sh's (STUDIORUN_CACHE, STUDIORUN_TESTHOSTS_DIR, ...).
#
# Needs ansible-playbook with the ansible.posix collection (Debian:
# apt-get install --no-install-recommends ansible), go (unless STUDIORUN_BIN),
# and what testhosts.sh needs. The hosts' root filesystem adds python3 and
# python3-apt (Ansible's modules and its apt module need them; python3-minimal
# lacks json): built once and cached, ~40 s the first time.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=ansible_vs_studiorun
# shellcheck source=testdata/bench/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)
TESTHOSTS=$REPO/testdata/hosts/testhosts.sh
COUNTS=${STUDIORUN_BENCH_HOSTS:-10 30}
COUNTS=${COUNTS//,/ }

[ "$(id -u)" = 0 ] || die "needs root (test hosts are network namespaces with their own sshd); run it with sudo"
command -v ansible-playbook >/dev/null ||
  die "ansible-playbook not found: install Ansible (Debian: apt-get install -y --no-install-recommends ansible)"
[ -n "${STUDIORUN_BIN:-}" ] || command -v go >/dev/null || die "go not found (or set STUDIORUN_BIN to a studiorun binary)"
for tool in ip nsenter unshare flock ssh ssh-keygen awk; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install iproute2 util-linux openssh-client gawk)"
done
[ -r "$TESTHOSTS" ] || die "no $TESTHOSTS"
for n in $COUNTS; do
  if ! [[ $n =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt 200 ]; then die "bad host count $n in STUDIORUN_BENCH_HOSTS: want 1..200"; fi
done

# The test hosts get python3 for Ansible; the same root filesystem serves
# both tools. They belong to this process: testhosts.sh gc (run by the Go
# tests) removes them only once it is gone.
export STUDIORUN_TESTHOSTS_EXTRA_PACKAGES=python3,python3-apt
export STUDIORUN_TESTHOSTS_OWNER=$$

bench_workdir studiorun-bench
PREFIX="srbench$$"
HOSTS_FILE=$WORK/hosts.list # names of the hosts up now, one a line
: >"$HOSTS_FILE"

# ssh control masters Ansible left (ControlPersist) in CP_DIR.
close_masters() {
  local s
  for s in "$WORK"/cp-*/*; do
    [ -S "$s" ] || continue
    ssh -o ControlPath="$s" -O exit bench >/dev/null 2>&1 || true
  done
}

hosts_down() {
  local name
  close_masters
  while read -r name; do
    [ -n "$name" ] || continue
    bash "$TESTHOSTS" down "$name" >/dev/null 2>&1 &
  done <"$HOSTS_FILE"
  wait
  : >"$HOSTS_FILE"
}

bench_cleanup() { hosts_down; }

# up_one TAG I: host I of TAG, named $PREFIX-TAG-I; its "NAME ADDRESS" in
# $WORK/up-TAG/I.out. The host must let the test key log in as root over SSH
# with the host key in its files (testhosts.sh can start the wrong sshd when
# it enters a host before the host's init has entered its root: then another
# key is asked for). A host that fails is removed and made again under
# another name, twice at most.
up_one() {
  local tag=$1 i=$2 name try addr kh
  local d=$WORK/up-$tag state=${STUDIORUN_TESTHOSTS_DIR:-/run/studiorun-testhosts}
  for try in "" r rr; do
    name=$PREFIX-$tag-$i$try
    echo "$name" >>"$HOSTS_FILE"
    if bash "$TESTHOSTS" up "$name" auto "$WORK/id_ed25519.pub" >"$d/$i.out" 2>>"$d/$i.err"; then
      read -r _ addr <"$d/$i.out" || true
      kh=$d/$i.known_hosts
      printf '%s %s\n' "${addr:-none}" \
        "$(cut -d' ' -f1,2 "$state/$name/upper/etc/ssh/ssh_host_ed25519_key.pub" 2>/dev/null)" >"$kh"
      if [ -n "${addr:-}" ] &&
        ssh -n -i "$WORK/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=10 \
          -o UserKnownHostsFile="$kh" -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null \
          "root@$addr" true 2>>"$d/$i.err"; then
        return 0
      fi
      echo "testhosts: $name ($addr): no SSH login with the test key and the host's key" >>"$d/$i.err"
      bash "$TESTHOSTS" down "$name" >/dev/null 2>&1 || true
    fi
  done
  return 1
}

# hosts_up TAG N: N fresh hosts; their names go to $WORK/TAG.names, their
# addresses to $WORK/TAG.addrs and their known_hosts lines to
# $WORK/TAG.known_hosts.
hosts_up() {
  local tag=$1 n=$2 i name addr failed=0 pids=()
  local d=$WORK/up-$tag state=${STUDIORUN_TESTHOSTS_DIR:-/run/studiorun-testhosts}
  mkdir -p "$d"
  for ((i = 0; i < n; i++)); do
    up_one "$tag" "$i" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  if [ "$failed" = 1 ]; then
    cat "$d"/*.err >&2
    die "test hosts did not come up"
  fi
  if grep -qs . "$d"/*.err; then
    say "  (a host failed to come up and was made again:)"
    cat "$d"/*.err >&2
  fi
  : >"$WORK/$tag.names"
  : >"$WORK/$tag.addrs"
  : >"$WORK/$tag.known_hosts"
  for ((i = 0; i < n; i++)); do
    read -r name addr <"$d/$i.out" || true
    [ -n "${addr:-}" ] || die "testhosts.sh up of host $i of $tag printed no address"
    echo "$name" >>"$WORK/$tag.names"
    echo "$addr" >>"$WORK/$tag.addrs"
    # The host key straight from the host's files: no scan over the network.
    printf '%s %s\n' "$addr" "$(cut -d' ' -f1,2 "$state/$name/upper/etc/ssh/ssh_host_ed25519_key.pub")" \
      >>"$WORK/$tag.known_hosts"
  done
}

# check_host TAG: the first host has the ops user in group sudo, its
# sudoers file 0440, /vfx and one fstab line (read in the host, not over SSH).
check_host() {
  local name out
  name=$(head -n1 "$WORK/$1.names")
  out=$(bash "$TESTHOSTS" exec "$name" /bin/sh -c \
    'id -nG ops && stat -c %a /etc/sudoers.d/ops && test -d /vfx && grep -c "^tmpfs /scratch " /etc/fstab' 2>&1) ||
    die "$name is not configured after the first run: $out"
  grep -qw sudo <<<"$out" || die "$name: ops is not in group sudo: $out"
  grep -qx 440 <<<"$out" || die "$name: /etc/sudoers.d/ops mode is not 440: $out"
  [ "$(tail -n1 <<<"$out")" = 1 ] || die "$name: want one fstab line: $out"
}

# ansible_run N TAG LOG: one ansible-playbook run on the hosts of TAG.
ansible_run() {
  local n=$1 tag=$2 log=$3
  local cfg=$WORK/ansible-$tag
  if [ ! -d "$cfg" ]; then
    mkdir -p "$cfg" "$WORK/cp-$tag"
    {
      echo "[bench]"
      awk '{ print $1 }' "$WORK/$tag.addrs"
    } >"$cfg/inventory.ini"
    printf '{"public_key": "%s"}\n' "$(cat "$WORK/id_ed25519.pub")" >"$cfg/vars.json"
    cat >"$cfg/ansible.cfg" <<EOF
[defaults]
inventory = $cfg/inventory.ini
forks = $n
remote_user = root
private_key_file = $WORK/id_ed25519
host_key_checking = True
interpreter_python = /usr/bin/python3
retry_files_enabled = False
local_tmp = $cfg/tmp

[ssh_connection]
pipelining = True
control_path_dir = $WORK/cp-$tag
control_path = %(directory)s/%%h-%%p-%%r
ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes -o UserKnownHostsFile=$WORK/$tag.known_hosts -o StrictHostKeyChecking=yes
EOF
  fi
  ANSIBLE_CONFIG=$cfg/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
    ansible-playbook "$HERE/six_tasks.yml" --extra-vars "@$cfg/vars.json" \
    >"$log" 2>&1 || { tail -n 40 "$log" >&2; die "ansible-playbook failed on $n hosts (log above)"; }
}

# recap LOG: the summed ok/changed/failed/unreachable of PLAY RECAP.
recap() {
  awk '/^PLAY RECAP/ { r = 1; next }
       r && / : ok=/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); s[kv[1]] += kv[2] }; h++ }
       END { printf "hosts=%d ok=%d changed=%d failed=%d unreachable=%d\n", h, s["ok"], s["changed"], s["failed"], s["unreachable"] }' "$1"
}

# studiorun_run N TAG LOG [FLAG...]: one studiorun up on the hosts of TAG.
studiorun_run() {
  local n=$1 tag=$2 log=$3
  local proj=$WORK/studiorun-$tag
  shift 3
  if [ ! -d "$proj" ]; then
    mkdir -p "$proj/.studiorun"
    cp "$HERE/six_tasks.star" "$proj/six_tasks.star"
    : >"$WORK/$tag.sr_known_hosts"
    # A var file: --var splits its value at commas.
    printf '{"hosts": [%s], "key": "%s", "public_key": "%s"}\n' \
      "$(sed 's/.*/"&"/' "$WORK/$tag.addrs" | paste -sd,)" "$WORK/id_ed25519" \
      "$(cat "$WORK/id_ed25519.pub")" >"$proj/vars.json"
  fi
  (cd "$proj" && "$BIN" six_tasks.star up --yes --parallel "$n" --var-file vars.json \
    --known-hosts "$WORK/$tag.sr_known_hosts" "$@") >"$log" 2>&1 ||
    { tail -n 40 "$log" >&2; die "studiorun up failed on $n hosts (log above)"; }
}

# Preparation, not timed: the key, the binary, the cached root filesystem.
ssh-keygen -q -t ed25519 -N '' -C studiorun-bench -f "$WORK/id_ed25519"
if [ -n "${STUDIORUN_BIN:-}" ]; then
  BIN=$(readlink -f "$STUDIORUN_BIN") # the runs are in other folders
  [ -x "$BIN" ] || die "STUDIORUN_BIN=$BIN is not executable"
else
  BIN=$WORK/studiorun
  say "building studiorun"
  (cd "$REPO" && go build -o "$BIN" ./cmd/studiorun) || die "go build failed"
fi
say "test hosts' root filesystem: $(bash "$TESTHOSTS" rootfs)"
say "$(ansible-playbook --version | head -n1); $("$BIN" version 2>/dev/null | head -n1)"

# Both tools share the CPUs with whatever else runs here: the load shows it.
say "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
declare -A A1 A0 S1 S0
for n in $COUNTS; do
  say "$n hosts: ansible-playbook"
  hosts_up "a$n" "$n"
  t0=$(now)
  ansible_run "$n" "a$n" "$WORK/a$n.first.log"
  t1=$(now)
  ansible_run "$n" "a$n" "$WORK/a$n.noop.log"
  t2=$(now)
  A1[$n]=$(elapsed "$t0" "$t1")
  A0[$n]=$(elapsed "$t1" "$t2")
  first=$(recap "$WORK/a$n.first.log")
  noop=$(recap "$WORK/a$n.noop.log")
  say "  first: ${A1[$n]} s ($first); no-op: ${A0[$n]} s ($noop)"
  [[ $first == "hosts=$n "*" failed=0 unreachable=0" && $first != *" changed=0 "* ]] ||
    die "ansible first run: want $n hosts changed, none failed: $first"
  [[ $noop == "hosts=$n "*" changed=0 failed=0 unreachable=0" ]] ||
    die "ansible no-op run: want $n hosts, 0 changed: $noop"
  check_host "a$n"
  hosts_down

  say "$n hosts: studiorun"
  hosts_up "s$n" "$n"
  t0=$(now)
  studiorun_run "$n" "s$n" "$WORK/s$n.first.log" --accept-new-host-keys
  t1=$(now)
  studiorun_run "$n" "s$n" "$WORK/s$n.noop.log"
  t2=$(now)
  S1[$n]=$(elapsed "$t0" "$t1")
  S0[$n]=$(elapsed "$t1" "$t2")
  say "  first: ${S1[$n]} s; no-op: ${S0[$n]} s"
  grep -q "No changes" "$WORK/s$n.noop.log" ||
    { tail -n 40 "$WORK/s$n.noop.log" >&2; die "studiorun's second up on $n hosts was not a no-op (log above)"; }
  grep -q "No changes" "$WORK/s$n.first.log" && die "studiorun's first up on $n hosts changed nothing"
  check_host "s$n"
  hosts_down
done

say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
echo
printf '%-6s | %-14s | %-14s | %-16s | %-16s | %-14s | %-14s\n' \
  hosts "ansible first" "ansible no-op" "studiorun first" "studiorun no-op" "speed-up first" "speed-up no-op"
printf '%s\n' "-------+----------------+----------------+------------------+------------------+----------------+---------------"
for n in $COUNTS; do
  printf '%-6s | %-14s | %-14s | %-16s | %-16s | %-14s | %-14s\n' "$n" \
    "${A1[$n]} s" "${A0[$n]} s" "${S1[$n]} s" "${S0[$n]} s" \
    "$(ratio "${A1[$n]}" "${S1[$n]}")" "$(ratio "${A0[$n]}" "${S0[$n]}")"
done
