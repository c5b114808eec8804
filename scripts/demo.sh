#!/usr/bin/env bash
# make demo: the studio's workflow from end to end with the three scripts,
# as a user runs them.
#
#   1. the plans of soe.star, studio.star and servers.star (offline: needs
#      nothing but the binary);
#   2. the SOE image: soe.star builds vfx-studio-soe_0.1.0.qcow2 from the
#      Debian 12 base image (made once from Debian packages and cached);
#   3. the fleet: studio.star runs vfx-nfs-001 and vfx-dev-001 on libvirt,
#      on a NAT network whose DHCP holds their reservations;
#   4. the roles: servers.star configures both over SSH as ops (key in an
#      ssh-agent of the demo's own), the NFS export and its mount at /vfx;
#   5. a file written to /vfx on vfx-dev-001 is read on vfx-nfs-001, a
#      plan shows nothing left to change, and studio.star down removes the
#      fleet (DEMO_KEEP=1 keeps it running).
#
# Steps 2-5 need root, libvirtd, qemu and debootstrap. As root on Debian
# or Ubuntu, what is missing is installed first (.ci/deps, which says what
# it installs; DEMO_INSTALL=0 does not); otherwise the demo stops after
# step 1 and says what it needs. Guests run under KVM where it works, else
# under software emulation (slower: about 3 minutes in all here).
#
# Environment:
#   DEMO_SUBNET   the studio network (default: studio_hosts.star's 172.16.0.0/24)
#   DEMO_KEEP     1: leave the fleet running (studiorun scripts/studio.star down --yes removes it)
#   DEMO_INSTALL  0: never install packages
#   STUDIORUN_BIN the studiorun binary (default build/studiorun)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${STUDIORUN_BIN:-build/studiorun}
DEMO=build/demo
IMAGES=${STUDIORUN_CACHE:-$HOME/.cache/studiorun}/images
BASE=build/debian-12-base.qcow2
KEY=$DEMO/ops_ed25519

step() { printf '\n==> %s\n' "$*"; }
say() { echo "demo: $*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ -x "$BIN" ] || die "no $BIN: run make build (or make demo)"
soe_vars=(--var source=disk --var "base_image=$BASE" --var "ops_public_key_file=$KEY.pub")
subnet_vars=()
[ -z "${DEMO_SUBNET:-}" ] || subnet_vars=(--var "subnet=$DEMO_SUBNET")

step "1/5 the plans (evaluated, nothing applied)"
"$BIN" scripts/soe.star plan --offline --var source=disk --var base_image=$BASE
"$BIN" scripts/studio.star plan --offline "${subnet_vars[@]}"
"$BIN" scripts/servers.star plan --offline "${subnet_vars[@]}"

# What the live part needs, and whether it is there.
missing=()
for tool in virsh qemu-system-x86_64 qemu-img debootstrap ssh ssh-keygen ssh-agent ssh-add; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
libvirt_up() { virsh -c qemu:///system version >/dev/null 2>&1; }
if [ "$(id -u)" != 0 ]; then
  say "the rest of the demo (building the image, running the fleet, configuring it) needs root:"
  say "  sudo make demo"
  exit 0
fi
if [ ${#missing[@]} -gt 0 ] || ! libvirt_up; then
  if [ "${DEMO_INSTALL:-1}" = 0 ] || ! command -v apt-get >/dev/null; then
    say "the rest of the demo needs libvirtd running and: ${missing[*]:-(all tools present)}"
    say "on Debian or Ubuntu: sudo .ci/deps (the packages it installs are listed in it)"
    exit 0
  fi
  step "installing what the demo needs (.ci/deps): ${missing[*]:-libvirtd is not answering}"
  .ci/deps
fi

step "2/5 the SOE image"
sh testdata/images/debian-base.sh "$IMAGES"
mkdir -p "$DEMO"
ln -sf "$IMAGES/debian-12-base.qcow2" "$BASE"
ln -sf "$IMAGES/debian-12-base.qcow2.key" "$BASE.key"
[ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C ops@studiorun-demo -f "$KEY"
"$BIN" scripts/soe.star up --yes "${soe_vars[@]}"

# From here on the fleet exists: say how to remove it if the demo fails.
finish() {
  local rc=$?
  [ -z "${SSH_AGENT_PID:-}" ] || kill "$SSH_AGENT_PID" 2>/dev/null || true
  if [ "$rc" != 0 ]; then
    say "failed (exit $rc); the fleet is left as it is for a look. Remove it with:"
    say "  $BIN scripts/studio.star down --yes ${subnet_vars[*]}"
  fi
}
trap finish EXIT

# The hosts' addresses: studio_hosts.star numbers them from the subnet's
# base, .10 the NFS server and .11 the first dev host.
IFS=./ read -r a b c d _ <<<"${DEMO_SUBNET:-172.16.0.0/24}"
nfs=$a.$b.$c.$((d + 10))
dev=$a.$b.$c.$((d + 11))

step "3/5 the fleet"
"$BIN" scripts/studio.star up --yes "${subnet_vars[@]}" | tee "$DEMO/studio.up"

step "4/5 the roles, over SSH as ops (the guests are still booting: up waits for their SSH)"
# Guests created in this run have new host keys: forget the old ones.
if grep -q '^libvirt\.domain\..*: created' "$DEMO/studio.up" && [ -f "$DEMO/known_hosts" ]; then
  for h in "$nfs" "$dev"; do ssh-keygen -q -R "$h" -f "$DEMO/known_hosts" >/dev/null 2>&1 || true; done
fi
eval "$(ssh-agent -s)" >/dev/null
ssh-add -q "$KEY"
servers=(--known-hosts "$DEMO/known_hosts" --connect-timeout 5m --var "ops_public_key_file=$KEY.pub" "${subnet_vars[@]}")
"$BIN" scripts/servers.star up --yes --accept-new-host-keys "${servers[@]}"

step "5/5 the share: written on vfx-dev-001, read on vfx-nfs-001"
opsh() {
  local host=$1
  shift
  ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$DEMO/known_hosts" \
    -o GlobalKnownHostsFile=/dev/null "ops@$host" "$@"
}
note="hello from vfx-dev-001 at $(date -u +%FT%TZ)"
opsh "$dev" "echo '$note' | sudo -n tee /vfx/demo.txt >/dev/null && findmnt -no SOURCE,FSTYPE /vfx"
got=$(opsh "$nfs" "cat /srv/nfs/vfx/demo.txt")
say "vfx-nfs-001:/srv/nfs/vfx/demo.txt says: $got"
[ "$got" = "$note" ] || die "the file read on vfx-nfs-001 is not the one written on vfx-dev-001"
if "$BIN" scripts/servers.star plan --detailed-exitcode "${servers[@]}" >"$DEMO/converged.plan" 2>&1; then
  say "servers.star plan: nothing left to change"
else
  cat "$DEMO/converged.plan"
  die "servers.star plan still has changes after up"
fi

if [ "${DEMO_KEEP:-}" = 1 ]; then
  say "the fleet keeps running (DEMO_KEEP=1): log in with ssh -i $KEY ops@$dev"
  say "remove it with: $BIN scripts/studio.star down --yes ${subnet_vars[*]}"
else
  step "down: the fleet removed (DEMO_KEEP=1 keeps it)"
  "$BIN" scripts/studio.star down --yes "${subnet_vars[@]}"
fi
say "done"
