//! xchat's daemon: runs one profile's messenger, its encrypted store and the
//! peer-to-peer network together on tokio (`docs/node.md`).
//!
//! - [`profile`]: a profile's directory, made from a recovery phrase or
//!   opened with its key file or passphrase.
//! - [`node`]: the task that owns the messenger: batches of inputs, one
//!   commit per batch, then sends, answers and events.
//! - [`courier`]: the network work behind the core's effects (presence
//!   lookups, direct and mailbox delivery, bundles, mailboxes).
//! - [`api`]: the local API (`docs/api.md`) and the web UI it serves
//!   (`docs/web.md`, assets in `web/`).

pub mod api;
pub mod courier;
pub mod files;
pub mod mailboxes;
pub mod node;
pub mod profile;
pub mod relay;

pub use node::{NodeConfig, NodeError, NodeHandle, RunningNode, start};
pub use profile::{Profile, ProfileDir, ProfileError, Unlock};
pub use relay::{Relay, start_relay};

/// Milliseconds since the Unix epoch, by the system clock (0 before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
