//! `xchat`: the command people run.
//!
//! `xchat init` makes a profile, `xchat up` runs its node, `xchat id` shows
//! its address, and `xchat demo` runs a small network on this machine and
//! narrates what xchat does. `contact`, `send`, `history` and `chat` talk to
//! the running node of the same profile through its local API
//! ([`client`]). Exit codes: 0 success, 1 failure, 2 bad usage, 3 no
//! profile (run `xchat init`), 4 wrong passphrase, 5 no node running.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

mod client;
mod contact;
mod conversation;
mod demo;
mod file;
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
  xchat id --qr               show your address as a QR code
  xchat contact add bob xchat1...   (in another terminal, while `xchat up` runs)
  xchat send bob 'hello'
  xchat chat bob";

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
    /// Run a relay until Ctrl-C: a node that serves the network only. It
    /// joins the DHT, keeps mailboxes for devices that are offline and
    /// relays for those behind NAT; it has no identity and reads nothing.
    /// Its key and the mailboxes it holds live in --profile DIR (default:
    /// the platform's data directory), so a restart brings back the same
    /// node with what it held.
    #[command(after_help = "\
Examples:
  xchat relay --listen /ip4/0.0.0.0/tcp/4001 --listen /ip4/0.0.0.0/udp/4001/quic-v1
  xchat relay --profile /var/lib/xchat-relay --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...")]
    Relay {
        /// Addresses to listen on (multiaddrs), repeatable.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Nodes to join through (multiaddrs ending in /p2p/<peer id>), repeatable.
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// Do not look for nodes on the local network.
        #[arg(long)]
        no_mdns: bool,
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
    /// Add, list and verify contacts (needs `xchat up` running).
    Contact {
        #[command(subcommand)]
        command: ContactCommand,
    },
    /// Send a text to a contact (needs `xchat up` running).
    #[command(after_help = "\
Examples:
  xchat send bob 'see you at eight'
  xchat send bob 'the door code is 4711' --expire 1h   (this and later messages vanish after an hour)
  xchat send bob 'back to normal' --expire off")]
    Send {
        /// The contact's name.
        name: String,
        /// The text.
        text: String,
        /// First set the conversation's vanishing timer: off, or 30s, 5m,
        /// 1h, 1d, 1w (30 seconds to 4 weeks).
        #[arg(long, value_name = "TIMER", value_parser = conversation::parse_timer)]
        expire: Option<u32>,
    },
    /// Show the last messages with a contact, oldest first (times in UTC).
    #[command(after_help = "\
Example:
  xchat history bob --limit 20")]
    History {
        /// The contact's name.
        name: String,
        /// How many of the newest messages (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Talk with a contact: shows the last messages, then new ones as they
    /// arrive; each line typed is sent. Ctrl-D or Ctrl-C ends.
    #[command(after_help = "\
Example:
  xchat chat bob")]
    Chat {
        /// The contact's name.
        name: String,
    },
    /// Files of a conversation (needs `xchat up` running).
    File {
        #[command(subcommand)]
        command: FileCommand,
    },
    /// Encrypted backups of this profile (needs `xchat up` running).
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  xchat completions bash > ~/.local/share/bash-completion/completions/xchat
  xchat completions zsh > \"${fpath[1]}/_xchat\"
  xchat completions fish > ~/.config/fish/completions/xchat.fish")]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum FileCommand {
    /// Send a file of any type and size to a contact, with a progress bar.
    #[command(after_help = "\
Example:
  xchat file send bob ~/Pictures/cat.jpg")]
    Send {
        /// The contact's name.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// List the files of a conversation, with their state.
    #[command(after_help = "\
Example:
  xchat file list bob")]
    List {
        /// The contact's name.
        name: String,
    },
    /// Accept a file a contact offered: the node fetches and verifies it.
    #[command(after_help = "\
Example:
  xchat file accept 9f0c...e1")]
    Accept {
        /// The file's id (from `xchat file list`).
        id: String,
    },
    /// Save a received file.
    #[command(after_help = "\
Example:
  xchat file get 9f0c...e1 --out ~/Downloads/cat.jpg")]
    Get {
        /// The file's id (from `xchat file list`).
        id: String,
        /// Where to save it (must not exist).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Write an encrypted backup of contacts and history (vanishing
    /// messages left out), readable only with your recovery phrase.
    #[command(after_help = "\
Example:
  xchat backup export ~/xchat-2026-11-24.xbak")]
    Export {
        /// The backup file to write (must not exist).
        path: PathBuf,
    },
    /// Make a profile from a backup and its recovery phrase (asked for);
    /// no node needs to run.
    #[command(after_help = "\
Example:
  xchat --profile ~/xchat-restored backup import ~/xchat-2026-11-24.xbak")]
    Import {
        /// The backup file.
        path: PathBuf,
        /// Keep the database key in a file instead of asking for a
        /// passphrase at each start.
        #[arg(long)]
        no_passphrase: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ContactCommand {
    /// Add a contact under your name for them.
    #[command(after_help = "\
Examples:
  xchat contact add bob xchat1q...
  xchat contact add bob 'xchat:xchat1q...?name=Bob'")]
    Add {
        /// Your name for them (1 to 64 bytes).
        name: String,
        /// Their address (`xchat1...`) or `xchat:` URI.
        address: String,
    },
    /// List contacts.
    #[command(after_help = "\
Example:
  xchat contact list --json")]
    List,
    /// Compare safety numbers with a contact, then mark them verified.
    #[command(after_help = "\
Example:
  xchat contact verify bob          (asks before marking bob verified)")]
    Verify {
        /// The contact's name.
        name: String,
        /// Mark verified without asking.
        #[arg(long)]
        yes: bool,
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
        Self::with_code(1, message)
    }

    /// A failure with exit code `code`.
    pub(crate) fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The exit code.
    pub(crate) fn code(&self) -> u8 {
        self.code
    }

    /// What to tell the user.
    pub(crate) fn message(&self) -> &str {
        &self.message
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
        Command::Relay { listen, bootstrap, no_mdns } => {
            let network = profile::network_config(listen, bootstrap, no_mdns)?;
            profile::relay(profile::relay_dir(cli.profile)?, network, cli.json).await
        }
        Command::Id { qr } => profile::id(profile::dir(cli.profile)?, qr, cli.json),
        Command::Demo { exit } => demo::run(exit).await,
        Command::Contact { command } => {
            let client = client::Client::open(&profile::dir(cli.profile)?)?;
            match command {
                ContactCommand::Add { name, address } => {
                    contact::add(&client, &name, &address, cli.json)
                }
                ContactCommand::List => contact::list(&client, cli.json),
                ContactCommand::Verify { name, yes } => {
                    contact::verify(&client, &name, yes, cli.json)
                }
            }
        }
        Command::Send { name, text, expire } => {
            let client = client::Client::open(&profile::dir(cli.profile)?)?;
            conversation::send(&client, &name, &text, expire, cli.json)
        }
        Command::History { name, limit } => {
            let client = client::Client::open(&profile::dir(cli.profile)?)?;
            conversation::history(&client, &name, limit, cli.json)
        }
        Command::Chat { name } => {
            let client = client::Client::open(&profile::dir(cli.profile)?)?;
            conversation::chat(client, name, cli.json).await
        }
        Command::File { command } => {
            let client = client::Client::open(&profile::dir(cli.profile)?)?;
            match command {
                FileCommand::Send { name, path } => file::send(&client, &name, &path, cli.json),
                FileCommand::List { name } => file::list(&client, &name, cli.json),
                FileCommand::Accept { id } => file::accept(&client, &id, cli.json),
                FileCommand::Get { id, out } => file::get(&client, &id, &out, cli.json),
            }
        }
        Command::Backup { command: BackupCommand::Import { path, no_passphrase } } => {
            profile::import(profile::dir(cli.profile)?, &path, no_passphrase, cli.json)
        }
        Command::Backup { command: BackupCommand::Export { path } } => {
            let client = client::Client::open(&profile::dir(cli.profile)?)?;
            file::backup(&client, &path, cli.json)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "xchat", &mut std::io::stdout());
            Ok(())
        }
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
