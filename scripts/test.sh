#!/usr/bin/env bash
# The test command of README.md: everything a fresh machine needs, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked "$@"
# The demo is a test too: a small network on loopback, every step checked.
cargo run --locked -q -p xchat-cli -- demo --exit
