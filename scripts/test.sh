#!/usr/bin/env bash
# The test command of README.md: everything a fresh machine needs, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked "$@"
