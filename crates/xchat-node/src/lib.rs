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
pub mod commit;
pub mod courier;
pub mod files;
pub mod mailboxes;
pub mod node;
pub mod profile;
pub mod relay;

pub use node::{NodeConfig, NodeError, NodeHandle, RunningNode, start};
pub use profile::{Profile, ProfileDir, ProfileError, Unlock};
pub use relay::{Relay, start_relay, start_relay_in};

/// Writes `bytes` to `path` as a file only its owner may read (mode 0600 on
/// Unix), replacing any file there at once: it is written and synced beside
/// `path`, then renamed over it, so a crash leaves the old file or the new
/// one, never a torn or world-readable one.
///
/// # Errors
/// What the file system says.
pub fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut scratch = path.as_os_str().to_owned();
    scratch.push(".new");
    let scratch = std::path::PathBuf::from(scratch);
    // A leftover of a crash.
    match std::fs::remove_file(&scratch) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&scratch)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&scratch, path)
}

/// Milliseconds since the Unix epoch, by the system clock (0 before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
