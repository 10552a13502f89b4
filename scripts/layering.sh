#!/usr/bin/env bash
# Fails if a pure crate (crypto, proto, core) depends, in normal builds, on a
# runtime, network, database or HTTP crate: the layering of docs/architecture.md.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
for crate in xchat-crypto xchat-proto xchat-core; do
  [ -d "crates/$crate" ] || continue
  tree=$(cargo tree --locked -e normal -p "$crate" --prefix none)
  for banned in tokio libp2p rusqlite axum hyper; do
    if grep -Eq "^${banned}(-[a-z0-9-]+)? v" <<<"$tree"; then
      echo "layering: $crate depends on $banned" >&2
      status=1
    fi
  done
done
[ "$status" -eq 0 ] && echo "layering: crypto, proto and core are free of tokio, libp2p, rusqlite, axum and hyper"
exit "$status"
