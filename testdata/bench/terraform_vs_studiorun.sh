#!/usr/bin/env bash
# studiorun against Terraform with the libvirt provider (the article's
# tool) on the same fleet, side by side in one run (needs libvirtd):
#
#   bash testdata/bench/terraform_vs_studiorun.sh
#
# The fleet: a pool, a base volume uploaded from a small qcow2, a NAT
# network and, per host, a copy-on-write overlay, a domain (defined, not
# started) and its DHCP reservation: testdata/bench/fleet.tf for Terraform,
# testdata/apply/bench_fleet.star for studiorun. Each tool, in turn, with
# the same parallelism: creates it, runs again with nothing to change,
# raises every domain's memory from 128 to 256 MiB, and deletes it all.
# It prints the wall times and what each tool did to the domains on the
# memory change (Terraform's provider replaces a domain whose memory
# changes; studiorun updates it in place).
#
# On qemu:///system, not test:///default: the provider cannot define a
# domain on libvirt's test driver (it looks for a machine type that the
# test driver's capabilities do not list).
#
# Terraform 1.5.7 (the last MPL release) and terraform-provider-libvirt
# v0.8.3 are built from the Go module proxy on the first run (several
# minutes) and cached; the provider is used through dev_overrides.
#
# Environment:
#   STUDIORUN_BENCH_HOSTS     host count (default 50)
#   STUDIORUN_BENCH_PARALLEL  parallelism of both tools (default 8)
#   STUDIORUN_BIN             a studiorun binary to use (default: go build once)
#   STUDIORUN_CACHE           cache folder (default ~/.cache/studiorun)
#   TERRAFORM                 a terraform binary to use instead of building one
#   STUDIORUN_BENCH_KEEP      1: keep the work dir (logs, state) on exit
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=terraform_vs_studiorun
# shellcheck source=testdata/bench/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)
N=${STUDIORUN_BENCH_HOSTS:-50}
P=${STUDIORUN_BENCH_PARALLEL:-8}
URI=qemu:///system
CACHE=${STUDIORUN_CACHE:-$HOME/.cache/studiorun}/terraform
TF_VERSION=v1.5.7
PROVIDER_VERSION=v0.8.3

{ [[ $N =~ ^[1-9][0-9]*$ ]] && [ "$N" -le 200 ]; } || die "bad host count $N in STUDIORUN_BENCH_HOSTS: want 1..200"
[[ $P =~ ^[1-9][0-9]*$ ]] || die "bad parallelism $P in STUDIORUN_BENCH_PARALLEL"
for tool in virsh qemu-img awk; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install libvirt-clients qemu-utils gawk)"
done
virsh -c "$URI" version >/dev/null 2>&1 || die "libvirtd does not answer at $URI"
for name in tf-bench-net studiorun-bench-net; do
  ! virsh -c "$URI" net-info "$name" >/dev/null 2>&1 || die "network $name already exists at $URI: remove it first"
done

bench_workdir studiorun-tfbench
chmod 755 "$WORK" # the pools are in it: libvirt's qemu user reads them
bench_cleanup() {
  if [ -f "$WORK/tf/terraform.tfstate" ]; then
    tf destroy -auto-approve -var pool_path="$WORK/tf-pool" >/dev/null 2>&1 || true
  fi
  if [ -d "$WORK/sr/.studiorun" ]; then
    sr down --yes >/dev/null 2>&1 || true
  fi
}

# The tools: studiorun, terraform and the provider.
BIN=${STUDIORUN_BIN:-}
if [ -z "$BIN" ]; then
  command -v go >/dev/null || die "go not found (or set STUDIORUN_BIN to a studiorun binary)"
  BIN=$WORK/studiorun
  (cd "$REPO" && go build -o "$BIN" ./cmd/studiorun)
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
TF=${TERRAFORM:-$CACHE/bin/terraform}
PROVIDER=$CACHE/bin/terraform-provider-libvirt
if [ ! -x "$TF" ]; then
  command -v go >/dev/null || die "go not found: it builds terraform (or set TERRAFORM)"
  say "building terraform $TF_VERSION from the Go module proxy (once, several minutes)"
  GOBIN=$CACHE/bin GOFLAGS=-mod=mod go install "github.com/hashicorp/terraform@$TF_VERSION"
fi
if [ ! -x "$PROVIDER" ]; then
  command -v go >/dev/null || die "go not found: it builds terraform-provider-libvirt"
  say "building terraform-provider-libvirt $PROVIDER_VERSION from the Go module proxy (once)"
  dir=$(go mod download -json "github.com/dmacvicar/terraform-provider-libvirt@$PROVIDER_VERSION" |
    awk -F'"' '$2 == "Dir" { print $4 }')
  [ -d "$dir" ] || die "go mod download of terraform-provider-libvirt $PROVIDER_VERSION gave no folder"
  cp -r "$dir" "$WORK/provider-src"
  chmod -R u+w "$WORK/provider-src"
  (cd "$WORK/provider-src" && go build -o "$PROVIDER" .)
fi
cat >"$WORK/terraformrc" <<RC
provider_installation {
  dev_overrides {
    "dmacvicar/libvirt" = "$CACHE/bin"
  }
  direct {}
}
RC
export TF_CLI_CONFIG_FILE=$WORK/terraformrc TF_IN_AUTOMATION=1

# The two projects, each with the same small base image.
mkdir -p "$WORK/tf" "$WORK/sr/.studiorun"
cp "$HERE/fleet.tf" "$WORK/tf/"
cp "$REPO/testdata/apply/bench_fleet.star" "$WORK/sr/"
qemu-img create -q -f qcow2 "$WORK/tf/base.img" 64M
cp "$WORK/tf/base.img" "$WORK/sr/base.img"

# timed NAME LOG CMD...: runs CMD, its output to LOG; the wall time goes to
# $WORK/NAME.time. A failure stops the run and shows the log.
timed() {
  local name=$1 log=$2 start end
  shift 2
  start=$(now)
  if ! "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "$name failed (log above)"
  fi
  end=$(now)
  elapsed "$start" "$end" >"$WORK/$name.time"
  say "  $name: $(cat "$WORK/$name.time") s"
}

tf() { (cd "$WORK/tf" && "$TF" "$@" -no-color -parallelism="$P" -var host_count="$N"); }
sr() { "$BIN" "$WORK/sr/bench_fleet.star" "$@" --libvirt-uri "$URI" --parallel "$P" --var host_count="$N" --var running=false --var pool_path="$WORK/sr-pool"; }

say "Terraform $("$TF" version | head -n1), terraform-provider-libvirt $PROVIDER_VERSION: $N hosts, parallelism $P"
timed tf-create "$WORK/tf-create.log" tf apply -auto-approve -var pool_path="$WORK/tf-pool"
tf_noop_code=0
(cd "$WORK/tf" && "$TF" plan -detailed-exitcode -no-color -var host_count="$N" -var pool_path="$WORK/tf-pool" >"$WORK/tf-plan.log" 2>&1) || tf_noop_code=$?
timed tf-noop "$WORK/tf-noop.log" tf apply -auto-approve -var pool_path="$WORK/tf-pool"
timed tf-memory "$WORK/tf-memory.log" tf apply -auto-approve -var pool_path="$WORK/tf-pool" -var memory=256
timed tf-destroy "$WORK/tf-destroy.log" tf destroy -auto-approve -var pool_path="$WORK/tf-pool" -var memory=256
rm -f "$WORK/tf/terraform.tfstate"

say "studiorun $("$BIN" version): $N hosts, parallelism $P"
timed sr-create "$WORK/sr-create.log" sr up --yes
sr_noop_code=0
"$BIN" "$WORK/sr/bench_fleet.star" plan --detailed-exitcode --libvirt-uri "$URI" --var host_count="$N" --var running=false \
  --var pool_path="$WORK/sr-pool" >"$WORK/sr-plan.log" 2>&1 || sr_noop_code=$?
timed sr-noop "$WORK/sr-noop.log" sr up --yes
timed sr-memory "$WORK/sr-memory.log" sr up --yes --var memory=256
timed sr-destroy "$WORK/sr-destroy.log" sr down --yes --var memory=256
rm -rf "$WORK/sr/.studiorun"

# What each did to the domains when their memory changed.
tf_memory=$(grep -E '^(Apply complete|Plan):' "$WORK/tf-memory.log" | tail -n1)
sr_memory=$(grep -E '^Apply complete' "$WORK/sr-memory.log" | tail -n1)
t() { cat "$WORK/$1.time"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "-" }'; }
echo
printf '%-34s %12s %12s %10s\n' "$N hosts, parallelism $P" terraform studiorun speed-up
for step in create noop memory destroy; do
  case $step in
  create) label="create" ;;
  noop) label="apply with nothing to change" ;;
  memory) label="memory 128 -> 256 MiB" ;;
  destroy) label="destroy / down" ;;
  esac
  printf '%-34s %10s s %10s s %10s\n' "$label" "$(t "tf-$step")" "$(t "sr-$step")" "$(ratio "$(t "tf-$step")" "$(t "sr-$step")")"
done
echo
echo "plan right after create, exit code (0: no changes, 2: changes): terraform $tf_noop_code, studiorun $sr_noop_code"
echo "memory change: terraform: $tf_memory"
echo "memory change: studiorun: $sr_memory"
