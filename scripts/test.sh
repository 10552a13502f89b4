#!/usr/bin/env bash
# The test command of README.md: everything a fresh machine needs, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The web UI's browser tests (crates/xchat-node/tests/web.rs) drive Debian's
# headless Chromium; they fail, saying so, when it is missing.
if ! command -v chromium >/dev/null; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends chromium
fi

cargo test --workspace --locked "$@"
# The demo is a test too: a small network on loopback, every step checked.
cargo run --locked -q -p xchat-cli -- demo --exit
