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
# mDNS multicasts on the LAN, so its test runs in a private network namespace
# with a virtual LAN of its own (scripts/net-mdns.sh), on any machine that
# lets us make one (with a veth pair in it); where none can be made it says so
# loudly.
if unshare --net sh -c 'ip link add xprobe0 type veth peer name xprobe1' 2>/dev/null; then
    scripts/net-mdns.sh
else
    echo "NOT RUN: the mDNS test (no network namespace allowed here; see scripts/net-mdns.sh)" >&2
fi
# The demo is a test too: a small network on loopback, every step checked.
cargo run --locked -q -p xchat-cli -- demo --exit
