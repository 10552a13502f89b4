//! `xchat init`, `xchat up` and `xchat id`: the commands that work on the
//! profile itself.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use rand_core::{OsRng, UnwrapErr};
use xchat_crypto::address::Address;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_node::{NodeConfig, Profile, ProfileDir, Unlock};
use zeroize::Zeroizing;

use crate::Failure;

/// Longest `xchat up` waits for the network to listen on every address.
const LISTEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The environment variable a script may set instead of typing the
/// passphrase.
const PASSPHRASE_ENV: &str = "XCHAT_PASSPHRASE";

/// The profile's directory: `--profile`/`XCHAT_HOME`, else the platform's
/// data directory.
pub(crate) fn dir(given: Option<PathBuf>) -> Result<ProfileDir, Failure> {
    if let Some(dir) = given {
        return Ok(ProfileDir::new(dir));
    }
    directories::ProjectDirs::from("", "", "xchat")
        .map(|dirs| ProfileDir::new(dirs.data_dir().join("profile")))
        .ok_or_else(|| Failure::new("no home directory: give --profile DIR"))
}

/// The environment variable a script may set instead of typing the
/// recovery phrase (`init --restore`, `backup import`).
const PHRASE_ENV: &str = "XCHAT_PHRASE";

fn passphrase(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    secret_line(PASSPHRASE_ENV, prompt)
}

/// A secret line: from the environment variable `env` when set, else typed.
fn secret_line(env: &str, prompt: &str) -> Result<Zeroizing<String>, Failure> {
    if let Ok(value) = std::env::var(env) {
        return Ok(Zeroizing::new(value));
    }
    // Typed on a terminal without echo; read from standard input when there
    // is no terminal (a script).
    if let Ok(typed) = rpassword::prompt_password(prompt) {
        return Ok(Zeroizing::new(typed));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(format!("cannot read what was typed: {e}")))?;
    Ok(Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// `xchat init`.
pub(crate) fn init(
    dir: ProfileDir,
    restore: bool,
    no_passphrase: bool,
    json: bool,
) -> Result<(), Failure> {
    if dir.exists() {
        return Err(Failure::new(format!("a profile exists in {} already", dir.root().display())));
    }
    let mut rng = UnwrapErr(OsRng);
    let phrase = if restore {
        let words = secret_line(PHRASE_ENV, "Recovery phrase (24 words): ")?;
        RecoveryPhrase::parse(&words).map_err(|e| Failure::new(format!("that phrase: {e}")))?
    } else {
        RecoveryPhrase::generate(&mut rng)
    };
    let unlock = if no_passphrase { Unlock::KeyFile } else { new_passphrase()? };
    let profile = Profile::create(dir, &phrase, &unlock, xchat_node::now_ms(), &mut rng)?;
    let address = profile.messenger.address();
    if json {
        // A script asked for JSON: it gets the new phrase to keep, once.
        let phrase = if restore { None } else { Some(phrase.to_words()) };
        let made = serde_json::json!({
            "address": address.to_string(),
            "profile": profile.dir.root(),
            "recovery_phrase": phrase.as_deref().map(String::as_str),
        });
        println!("{made}");
    } else {
        println!("Profile made in {}", profile.dir.root().display());
        println!("Your address: {address}");
        if !restore {
            println!();
            println!("Your recovery phrase (write it down; it is shown only this once):");
            println!();
            for (i, word) in phrase.to_words().split(' ').enumerate() {
                print!("{:>2}. {word:<10}", i + 1);
                if i % 6 == 5 {
                    println!();
                }
            }
            println!();
            println!("Anyone with these words can read your messages and speak as you.");
        }
    }
    Ok(())
}

/// A new profile's passphrase, typed twice (or from the environment).
fn new_passphrase() -> Result<Unlock, Failure> {
    let first = passphrase("Passphrase for this profile: ")?;
    if std::env::var(PASSPHRASE_ENV).is_err() {
        let second = passphrase("Again: ")?;
        if *first != *second {
            return Err(Failure::new("the passphrases differ"));
        }
    }
    Ok(Unlock::Passphrase(first))
}

/// `xchat backup import FILE`.
pub(crate) fn import(
    dir: ProfileDir,
    backup: &std::path::Path,
    no_passphrase: bool,
    json: bool,
) -> Result<(), Failure> {
    if dir.exists() {
        return Err(Failure::new(format!("a profile exists in {} already", dir.root().display())));
    }
    let words = secret_line(PHRASE_ENV, "Recovery phrase (24 words): ")?;
    let phrase =
        RecoveryPhrase::parse(&words).map_err(|e| Failure::new(format!("that phrase: {e}")))?;
    let unlock = if no_passphrase { Unlock::KeyFile } else { new_passphrase()? };
    let profile = Profile::restore(dir.clone(), &phrase, &unlock, backup, &mut UnwrapErr(OsRng));
    let profile = match profile {
        Ok(profile) => profile,
        Err(error) => {
            // Nothing usable was made: leave no half profile behind.
            let _ = std::fs::remove_dir_all(dir.root());
            return Err(error.into());
        }
    };
    let address = profile.messenger.address();
    let contacts = profile.messenger.contacts().len();
    if json {
        println!("{{\"address\":\"{address}\",\"contacts\":{contacts}}}");
    } else {
        println!("Profile restored in {}", profile.dir.root().display());
        println!("Your address: {address} ({contacts} contacts)");
    }
    Ok(())
}

fn open(dir: ProfileDir) -> Result<Profile, Failure> {
    let kind = dir.key_kind()?;
    let passphrase = match kind {
        Some(xchat_store::KeyKind::Passphrase) => Some(passphrase("Passphrase: ")?),
        _ => None,
    };
    Ok(Profile::open(dir, passphrase.as_deref().map(String::as_str))?)
}

/// The options of `xchat up`.
#[derive(Debug)]
pub(crate) struct UpOptions {
    /// Listen addresses; the defaults when empty.
    pub(crate) listen: Vec<String>,
    /// Bootstrap nodes.
    pub(crate) bootstrap: Vec<String>,
    /// No mDNS.
    pub(crate) no_mdns: bool,
    /// The API's address.
    pub(crate) api: std::net::SocketAddr,
    /// Whether the API may listen on a non-loopback address.
    pub(crate) api_allow_remote: bool,
}

/// `xchat up`.
pub(crate) async fn up(dir: ProfileDir, options: UpOptions, json: bool) -> Result<(), Failure> {
    let network = network_config(options.listen, options.bootstrap, options.no_mdns)?;
    let listen_count = network.listen_addresses.len();
    let profile = open(dir)?;
    let profile_dir = profile.dir.clone();
    let node = xchat_node::start(profile, NodeConfig { network, ..NodeConfig::default() })?;
    let config =
        xchat_node::api::ApiConfig { bind: options.api, allow_remote: options.api_allow_remote };
    let api = match xchat_node::api::serve(node.handle.clone(), &profile_dir, config).await {
        Ok(api) => api,
        Err(error) => {
            node.handle.shutdown().await;
            return Err(Failure::new(format!("the API: {error}")));
        }
    };
    let api_url = api_url(api.local_addr);
    if let Err(error) = write_api_url(&profile_dir, &api_url) {
        api.shutdown().await;
        node.handle.shutdown().await;
        return Err(Failure::new(format!(
            "cannot write {}: {error}",
            profile_dir.api_url_file().display()
        )));
    }
    let address = node.handle.address();
    let peer = node.handle.net().local_peer_id();
    // Port 0 becomes the port the system picked: print those, for others
    // to bootstrap from.
    let listening = tokio::time::timeout(LISTEN_WAIT, node.handle.listening(listen_count)).await;
    let listening: Vec<String> = match listening {
        Ok(Ok(addresses)) => addresses.iter().map(ToString::to_string).collect(),
        Ok(Err(error)) => return Err(error.into()),
        Err(_) => {
            api.shutdown().await;
            node.handle.shutdown().await;
            remove_api_url(&profile_dir, &api_url);
            return Err(Failure::new("the node does not listen: check --listen"));
        }
    };
    let login = api.login_url.expose();
    if json {
        let up = serde_json::json!({
            "address": address.to_string(),
            "peer_id": peer.to_string(),
            "listen": listening,
            "api": api_url,
            "login_url": login,
        });
        println!("{up}");
    } else {
        println!("xchat is up.");
        println!("  address  {address}");
        println!("  peer id  {peer}");
        for listen in &listening {
            println!("  listen   {listen}");
        }
        println!("  API      {api_url} (token in {})", profile_dir.token_file().display());
        println!("  web UI   {login}  (one-time login link, valid 10 minutes)");
        println!("Ctrl-C stops it.");
    }
    // Scripts and tests read what was printed while the node runs.
    let _ = std::io::stdout().flush();
    let mut task = node.task;
    let ended = tokio::select! {
        () = shutdown_signal() => {
            eprintln!("stopping...");
            node.handle.shutdown().await;
            task.await
        }
        ended = &mut task => ended,
    };
    api.shutdown().await;
    remove_api_url(&profile_dir, &api_url);
    match ended {
        Ok(result) => result.map_err(Failure::from),
        Err(_) => Err(Failure::new("the node's task failed")),
    }
}

/// The network's settings from the command line: the defaults where a
/// list is empty.
pub(crate) fn network_config(
    listen: Vec<String>,
    bootstrap: Vec<String>,
    no_mdns: bool,
) -> Result<xchat_net::Config, Failure> {
    let parse = |addresses: Vec<String>| {
        addresses
            .into_iter()
            .map(|a| a.parse().map_err(|e| Failure::with_code(2, format!("address {a}: {e}"))))
            .collect::<Result<Vec<xchat_net::Multiaddr>, Failure>>()
    };
    let mut network = xchat_net::Config {
        bootstrap_peers: parse(bootstrap)?,
        enable_mdns: !no_mdns,
        ..xchat_net::Config::default()
    };
    if !listen.is_empty() {
        network.listen_addresses = parse(listen)?;
    }
    Ok(network)
}

/// A relay's directory: `--profile`/`XCHAT_HOME`, else the platform's data
/// directory.
pub(crate) fn relay_dir(given: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    directories::ProjectDirs::from("", "", "xchat")
        .map(|dirs| dirs.data_dir().join("relay"))
        .ok_or_else(|| Failure::new("no home directory: give --profile DIR"))
}

/// `xchat relay`: serves the network until Ctrl-C or SIGTERM.
pub(crate) async fn relay(
    dir: PathBuf,
    network: xchat_net::Config,
    json: bool,
) -> Result<(), Failure> {
    let relay = tokio::time::timeout(LISTEN_WAIT, xchat_node::start_relay_in(&dir, network))
        .await
        .map_err(|_| Failure::new("the relay does not listen: check --listen"))??;
    let listening: Vec<String> = relay.addresses.iter().map(ToString::to_string).collect();
    if json {
        let up = serde_json::json!({ "peer_id": relay.peer.to_string(), "listen": listening });
        println!("{up}");
    } else {
        println!("xchat relay is up.");
        println!("  peer id  {}", relay.peer);
        for listen in &listening {
            println!("  listen   {listen}");
        }
        println!("  data     {}", dir.display());
        println!("Others join through a listen address above (--bootstrap). Ctrl-C stops it.");
    }
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    eprintln!("stopping...");
    // The mailbox database commits each write as it is made: nothing is
    // left to flush.
    drop(relay);
    Ok(())
}

/// The URL other commands reach the API at.
fn api_url(bound: std::net::SocketAddr) -> String {
    // Every address, or loopback: reach it on loopback.
    if bound.ip().is_loopback() || bound.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", bound.port())
    } else {
        format!("http://{bound}")
    }
}

/// Writes `url` to the profile's `api.url`, mode 0600: to a file beside
/// it, then renamed over it, so a reader sees the old URL or the new one.
fn write_api_url(dir: &ProfileDir, url: &str) -> std::io::Result<()> {
    let path = dir.api_url_file();
    let scratch = path.with_extension("url.new");
    // A scratch file left by a crash may have another mode: start anew.
    let _ = std::fs::remove_file(&scratch);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&scratch)?;
    writeln!(file, "{url}")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&scratch, &path)
}

/// Removes `api.url` if it still names this run's API.
fn remove_api_url(dir: &ProfileDir, url: &str) {
    let path = dir.api_url_file();
    if std::fs::read_to_string(&path).is_ok_and(|text| text.trim() == url) {
        // Already gone is as good as removed.
        let _ = std::fs::remove_file(&path);
    }
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        // No handler can be installed: wait for the other signal only.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `xchat id`.
pub(crate) fn id(dir: ProfileDir, qr: bool, json: bool) -> Result<(), Failure> {
    let profile = open(dir)?;
    let address = profile.messenger.address();
    if json {
        println!("{{\"address\":\"{address}\",\"uri\":\"{}\"}}", address.to_uri());
        return Ok(());
    }
    println!("{address}");
    if qr {
        println!("{}", qr_code(&address)?);
    }
    Ok(())
}

/// `address`'s URI as a QR code drawn with Unicode half blocks.
pub(crate) fn qr_code(address: &Address) -> Result<String, Failure> {
    let code = qrcode::QrCode::new(address.to_uri().as_bytes())
        .map_err(|e| Failure::new(format!("no QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .build())
}
