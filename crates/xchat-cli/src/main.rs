//! `xchat`: the command people run.
//!
//! `xchat init` makes a profile, `xchat up` runs its node, `xchat id` shows
//! its address, and `xchat demo` runs a small network on this machine and
//! narrates what xchat does. Exit codes: 0 success, 1 failure, 2 bad usage,
//! 3 no profile (run `xchat init`), 4 wrong passphrase.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod profile;

/// A peer-to-peer, end-to-end-encrypted messenger.
#[derive(Debug, Parser)]
#[command(name = "xchat", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    /// The profile's directory (default: the platform's data directory,
    /// or XCHAT_HOME).
    #[arg(long, global = true, env = "XCHAT_HOME", value_name = "DIR")]
    profile: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// How much to log: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log_level: String,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  xchat demo                  watch Alice and Bob talk on a small local network
  xchat init                  make a profile (shows your recovery phrase once)
  xchat up                    run your node
  xchat id --qr               show your address as a QR code";

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a profile: a new identity, or one restored from its phrase.
    Init {
        /// Restore the identity of a recovery phrase (asked for).
        #[arg(long)]
        restore: bool,
        /// Keep the database key in a file (mode 0600) instead of asking
        /// for a passphrase at each start.
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Run the node in the foreground until Ctrl-C.
    Up {
        /// Addresses to listen on (multiaddrs), repeatable.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Nodes to join through (multiaddrs ending in /p2p/<peer id>), repeatable.
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// Do not look for nodes on the local network.
        #[arg(long)]
        no_mdns: bool,
        /// Where the local API listens.
        #[arg(long, default_value = "127.0.0.1:7465", value_name = "HOST:PORT")]
        api: std::net::SocketAddr,
        /// Let the API listen on an address other machines can reach.
        #[arg(long)]
        api_allow_remote: bool,
    },
    /// Show this profile's address.
    Id {
        /// Also draw it as a QR code.
        #[arg(long)]
        qr: bool,
    },
    /// Run Alice and Bob on a small local network and show what happens.
    Demo {
        /// Run the script, then exit: 0 only if every step was verified.
        #[arg(long)]
        exit: bool,
    },
}

/// Why a command failed, with the exit code it gets.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A failure with exit code 1.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { code: 1, message: message.into() }
    }
}

impl From<xchat_node::ProfileError> for Failure {
    fn from(error: xchat_node::ProfileError) -> Self {
        use xchat_node::ProfileError;
        use xchat_store::StoreError;
        let code = match &error {
            ProfileError::Store(StoreError::NotFound) => 3,
            ProfileError::Store(StoreError::WrongKey) | ProfileError::PassphraseNeeded => 4,
            _ => 1,
        };
        let message = match &error {
            ProfileError::Store(StoreError::NotFound) => {
                "no profile here: run `xchat init` first".to_owned()
            }
            _ => error.to_string(),
        };
        Self { code, message }
    }
}

impl From<xchat_node::NodeError> for Failure {
    fn from(error: xchat_node::NodeError) -> Self {
        match error {
            xchat_node::NodeError::Profile(error) => error.into(),
            other => Self::new(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("xchat: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("xchat: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Init { restore, no_passphrase } => {
            profile::init(profile::dir(cli.profile)?, restore, no_passphrase, cli.json)
        }
        Command::Up { listen, bootstrap, no_mdns, api, api_allow_remote } => {
            let options = profile::UpOptions { listen, bootstrap, no_mdns, api, api_allow_remote };
            profile::up(profile::dir(cli.profile)?, options, cli.json).await
        }
        Command::Id { qr } => profile::id(profile::dir(cli.profile)?, qr, cli.json),
        Command::Demo { exit } => demo::run(exit).await,
    }
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second logger cannot be installed: nothing to do then.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
