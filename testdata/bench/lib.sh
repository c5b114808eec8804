# shellcheck shell=bash
# Shared by the comparison scripts (sourced): their messages, timing, and a
# work folder that is removed on exit unless STUDIORUN_BENCH_KEEP=1.
# BENCH names the script in its messages; bench_cleanup, when the script
# defines it, runs first on exit (whatever the exit).

die() { echo "$BENCH: $*" >&2; exit 1; }
say() { echo "$BENCH: $*" >&2; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# bench_workdir NAME: WORK is a new folder /tmp/NAME.XXXXXX, cleaned up on
# exit, interrupt or termination.
bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  trap bench_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

bench_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if declare -F bench_cleanup >/dev/null; then
    bench_cleanup || true
  fi
  if [ "${STUDIORUN_BENCH_KEEP:-}" = 1 ]; then
    say "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
