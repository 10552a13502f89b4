#!/usr/bin/env bash
# Runs xchat-net's mDNS test inside a private network namespace whose only
# LAN is a veth pair made here, so its multicast never leaves this process's
# sandbox. Needs root (or unprivileged user namespaces) and `ip` (iproute2).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outside the namespace: inside it there is no network to fetch crates.
# `--workspace --test mdns` rather than `-p xchat-net`: the features of shared
# dependencies are then resolved as for the whole workspace, so the build of
# `cargo test --workspace` is reused instead of a second build of libp2p.
cargo test --workspace --locked --test mdns --no-run

exec unshare --net bash -euo pipefail -c '
  ip link set lo up
  ip link add xlan0 type veth peer name xlan1
  ip addr add 10.213.0.1/24 dev xlan0
  ip addr add 10.213.0.2/24 dev xlan1
  ip link set xlan0 up
  ip link set xlan1 up
  cargo test --workspace --locked --offline --test mdns -- --ignored
'
