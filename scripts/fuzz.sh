#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, on the stable toolchain
# (no sanitizer: the crates under test forbid unsafe code). Needs cargo-fuzz
# (`cargo install cargo-fuzz`); prints the executions each target ran clean.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

for target in $(cargo fuzz list); do
  log=$(mktemp)
  if cargo fuzz run -s none "$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' || echo "?")
    echo "$target: $runs executions, no crash"
  else
    echo "$target: FAILED (log: $log)"
    tail -30 "$log"
    exit 1
  fi
done
