#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and prints executions per
# target (issue 19, part 2). Needs cargo-fuzz (`cargo install cargo-fuzz`); its nightly
# flags are enabled on the stable toolchain with RUSTC_BOOTSTRAP=1.
#
#   bash bench/fuzz.sh                 # every target, 30 s each
#   bash bench/fuzz.sh -s 120          # 120 s each
#   bash bench/fuzz.sh -s 10 page_token jwt_claims
#
# Each target starts from its committed seeds (fuzz/corpus/<target>/seed-*) and keeps
# what it finds next to them (not committed). A crash stops that target; its input is
# in fuzz/artifacts/<target>/, and `cargo fuzz run <target> <file>` replays it. The
# script exits non-zero if any target crashed.
set -euo pipefail

SECONDS_PER_TARGET=30
usage() { sed -n '2,14p' "$0"; exit "${1:-0}"; }
while getopts "s:h" opt; do
  case "$opt" in
    s) SECONDS_PER_TARGET="$OPTARG" ;;
    h) usage 0 ;;
    *) usage 1 ;;
  esac
done
shift $((OPTIND - 1))
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || { echo "-s takes whole seconds, at least 1" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 1; }

# -s none: the code forbids `unsafe`, so AddressSanitizer has little to find and
# doubles the build; -a keeps debug assertions (integer overflow checks) on in -O.
FLAGS=(-O -a -s none)
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
  mapfile -t TARGETS < <(cargo fuzz list)
  cargo fuzz build "${FLAGS[@]}"
else
  for target in "${TARGETS[@]}"; do cargo fuzz build "${FLAGS[@]}" "$target"; done
fi

failed=()
printf '%-16s %12s %10s %8s %s\n' target executions exec/s corpus result
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  log="$(mktemp)"
  status=ok
  if ! cargo fuzz run "${FLAGS[@]}" "$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    status="CRASH (see fuzz/artifacts/$target/)"
    failed+=("$target")
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5 >&2 || true
  fi
  runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)"
  rate="$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)"
  corpus="$(find "corpus/$target" -type f | wc -l)"
  printf '%-16s %12s %10s %8s %s\n' "$target" "${runs:-?}" "${rate:-?}" "$corpus" "$status"
  rm -f "$log"
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
