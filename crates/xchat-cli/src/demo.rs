//! `xchat demo`: three relay nodes, Alice and Bob on this machine, over
//! real libp2p connections on loopback, each with a real encrypted profile
//! in a temporary directory. Every step is checked, not only shown.

use std::path::Path;
use std::time::Duration;

use rand_core::{OsRng, UnwrapErr};
use tokio::sync::broadcast;
use xchat_core::contact::{Added, ContactId};
use xchat_core::io::{Done, Event, Input};
use xchat_core::record::{MessageRecord, Status};
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::safety::SafetyNumber;
use xchat_net::multiaddr::Protocol;
use xchat_node::{NodeConfig, NodeHandle, Profile, ProfileDir, Relay, RunningNode, Unlock};
use xchat_proto::content::{MessageId, VanishingTimer};

use crate::Failure;

/// Longest one step may take before the demo calls it failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);
/// Relays started: the k = 3 nodes a mailbox is kept on.
const RELAYS: usize = 3;
/// The vanishing timer the demo sets.
const VANISH_SECS: u32 = 30;

fn network(relays: &[Relay]) -> xchat_net::Config {
    xchat_net::Config {
        listen_addresses: vec![
            xchat_net::Multiaddr::empty()
                .with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
                .with(Protocol::Tcp(0)),
        ],
        bootstrap_peers: relays.iter().flat_map(|r| r.addresses.clone()).collect(),
        // The demo's nodes find each other through the relays, and do not
        // announce themselves on the user's network.
        enable_mdns: false,
        ..xchat_net::Config::default()
    }
}

struct Person {
    name: &'static str,
    dir: ProfileDir,
    node: RunningNode,
    events: broadcast::Receiver<Event>,
}

impl Person {
    fn handle(&self) -> &NodeHandle {
        &self.node.handle
    }
}

fn start(name: &'static str, home: &std::path::Path, relays: &[Relay]) -> Result<Person, Failure> {
    let dir = ProfileDir::new(home.join(name));
    let profile = if dir.exists() {
        Profile::open(dir.clone(), None)?
    } else {
        let mut rng = UnwrapErr(OsRng);
        let phrase = RecoveryPhrase::generate(&mut rng);
        Profile::create(dir.clone(), &phrase, &Unlock::KeyFile, xchat_node::now_ms(), &mut rng)?
    };
    let node =
        xchat_node::start(profile, NodeConfig { network: network(relays), ..Default::default() })?;
    let events = node.handle.subscribe();
    Ok(Person { name, dir, node, events })
}

async fn stop(person: Person) -> Result<ProfileDir, Failure> {
    person.node.handle.shutdown().await;
    match person.node.task.await {
        Ok(result) => result?,
        Err(_) => return Err(Failure::new(format!("{}'s node failed", person.name))),
    }
    Ok(person.dir)
}

fn say(text: &str) {
    println!("{text}");
}

fn step(number: u32, title: &str) {
    println!();
    println!("== {number}. {title}");
}

fn ok(text: &str) {
    println!("   ✓ {text}");
}

async fn within<T>(
    what: &str,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(STEP_TIMEOUT, work)
        .await
        .map_err(|_| Failure::new(format!("{what}: not done within {STEP_TIMEOUT:?}")))?
}

async fn next_event<T>(
    person: &mut Person,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> Result<T, Failure> {
    let name = person.name;
    within(what, async {
        loop {
            match person.events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(event) {
                        return Ok(found);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(Failure::new(format!("{name}'s node stopped")));
                }
            }
        }
    })
    .await
}

async fn command(person: &Person, input: Input) -> Result<Done, Failure> {
    person.handle().command(input).await.map_err(Failure::from)
}

async fn send(person: &Person, contact: ContactId, text: &str) -> Result<MessageId, Failure> {
    match command(person, Input::TextSent { contact, text: text.into() }).await? {
        Done::MessageQueued(id) => Ok(id),
        other => Err(Failure::new(format!("sending: unexpected answer {other:?}"))),
    }
}

async fn receive(person: &mut Person, text: &str) -> Result<MessageRecord, Failure> {
    let what = format!("{} receiving {text:?}", person.name);
    next_event(person, &what, |event| match event {
        Event::MessageReceived(message) if message.text == text => Some(message),
        _ => None,
    })
    .await
}

async fn status(person: &mut Person, id: MessageId, wanted: Status) -> Result<(), Failure> {
    let what = format!("{}'s message becoming {wanted:?}", person.name);
    next_event(person, &what, |event| match event {
        Event::StatusChanged { id: changed, status, .. }
            if changed == id && (status == wanted || status == Status::Read) =>
        {
            Some(())
        }
        _ => None,
    })
    .await
}

async fn add(person: &Person, name: &str, other: &Person) -> Result<ContactId, Failure> {
    let input = Input::ContactAdded { name: name.into(), address: other.handle().address() };
    match command(person, input).await? {
        Done::Contact(Added::New(id) | Added::Unchanged(id)) => Ok(id),
        other => Err(Failure::new(format!("adding {name}: unexpected answer {other:?}"))),
    }
}

/// Bytes of the demo's file (32 MiB and a bit: the last chunk is short).
const FILE_BYTES: usize = 32 * 1024 * 1024 + 4321;

fn blake3_of(path: &Path) -> Result<blake3::Hash, Failure> {
    let mut hasher = blake3::Hasher::new();
    let file =
        std::fs::File::open(path).map_err(|e| Failure::new(format!("reading a file: {e}")))?;
    hasher.update_reader(file).map_err(|e| Failure::new(format!("reading a file: {e}")))?;
    Ok(hasher.finalize())
}

async fn send_file(
    alice: &mut Person,
    bob: &mut Person,
    bob_at_alice: ContactId,
    home: &Path,
) -> Result<(), Failure> {
    use std::io::Write as _;
    use xchat_core::transfer::TransferState;

    // Bytes that do not compress, made without a random generator.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let bytes: Vec<u8> = (0..FILE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let source = home.join("holiday-photos.tar");
    std::fs::write(&source, &bytes).map_err(|e| Failure::new(format!("writing the file: {e}")))?;
    drop(bytes);
    let name = "holiday-photos.tar";
    alice
        .handle()
        .send_file(bob_at_alice, source.clone(), name.into(), "application/x-tar".into())
        .await?;
    say(&format!(
        "   Alice offers {name} ({:.1} MiB), encrypted under its own key",
        FILE_BYTES as f64 / 1048576.0
    ));
    let offer = receive(bob, name).await?;
    let file = offer.file.ok_or_else(|| Failure::new("the offer names no file"))?;
    command(bob, Input::FileAccepted { file }).await?;
    let total = xchat_crypto::file::ChunkCipher::chunk_count(FILE_BYTES as u64).unwrap_or(1).max(1);
    let mut stdout = std::io::stdout();
    let bar = |done: u64| {
        let filled = usize::try_from(done * 30 / total).unwrap_or(30).min(30);
        format!(
            "\r   Bob fetches it: [{}{}] {:>3}%",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            done * 100 / total
        )
    };
    let _ = write!(stdout, "{}", bar(0));
    let _ = stdout.flush();
    next_event(bob, "the file arriving", |event| match event {
        Event::TransferChanged { file: changed, state, chunks_done, .. } if changed == file => {
            match state {
                TransferState::Complete => Some(Ok(())),
                TransferState::Failed(reason) => {
                    Some(Err(Failure::new(format!("the transfer failed: {reason:?}"))))
                }
                _ => {
                    let _ = write!(stdout, "{}", bar(chunks_done));
                    let _ = stdout.flush();
                    None
                }
            }
        }
        _ => None,
    })
    .await??;
    println!("{}", bar(total));
    let sent = blake3_of(&source)?;
    let kept = blake3_of(&xchat_node::files::received_path(bob.handle().files(), &file))?;
    say(&format!("   BLAKE3 of Alice's file: {}", sent.to_hex()));
    say(&format!("   BLAKE3 of Bob's copy:   {}", kept.to_hex()));
    if sent != kept {
        return Err(Failure::new("Bob's copy differs"));
    }
    ok("every 64 KiB chunk verified as it came, and the whole file's hash matches");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the demo; with `exit`, returns once every step is verified.
pub(crate) async fn run(exit: bool) -> Result<(), Failure> {
    let home = std::env::temp_dir().join(format!("xchat-demo-{}", std::process::id()));
    let result = script(&home, exit).await;
    // The profiles were the demo's only: nothing of them is kept.
    let _ = std::fs::remove_dir_all(&home);
    result
}

async fn script(home: &Path, exit: bool) -> Result<(), Failure> {
    say("xchat demo: Alice and Bob on a small peer-to-peer network on this machine.");
    say("Every node is a real libp2p node on 127.0.0.1; each person's profile is an");
    say("encrypted SQLCipher database in a temporary directory, deleted at the end.");

    step(1, "The network");
    let mut relays = Vec::new();
    for _ in 0..RELAYS {
        let relay = xchat_node::start_relay(network(&relays)).await?;
        relays.push(relay);
    }
    for relay in &relays {
        ok(&format!("relay {} (keeps mailboxes and the DHT; reads nothing)", relay.peer));
    }

    step(2, "Alice and Bob make their identities");
    let mut alice = start("alice", home, &relays)?;
    let mut bob = start("bob", home, &relays)?;
    say(&format!("   Alice's address: {}", alice.handle().address()));
    say(&format!("   Bob's address:   {}", bob.handle().address()));
    within("publishing", async {
        alice.handle().published().await?;
        bob.handle().published().await?;
        Ok(())
    })
    .await?;
    ok("both published their prekeys and their presence (sealed) in the DHT");

    step(3, "They add each other and compare safety numbers");
    let bob_at_alice = add(&alice, "Bob", &bob).await?;
    let alice_at_bob = add(&bob, "Alice", &alice).await?;
    let (alice_key, bob_key) = (*alice.handle().address().key(), *bob.handle().address().key());
    let seen_by_alice = SafetyNumber::new(&alice_key, &bob_key);
    let seen_by_bob = SafetyNumber::new(&bob_key, &alice_key);
    say(&format!("   Alice sees: {}", seen_by_alice.groups().collect::<Vec<_>>().join(" ")));
    say(&format!("   Bob sees:   {}", seen_by_bob.groups().collect::<Vec<_>>().join(" ")));
    if seen_by_alice.digits() != seen_by_bob.digits() {
        return Err(Failure::new("the safety numbers differ"));
    }
    command(&alice, Input::ContactVerified { contact: bob_at_alice }).await?;
    command(&bob, Input::ContactVerified { contact: alice_at_bob }).await?;
    ok("the numbers match: both mark each other verified");

    step(4, "Alice writes to Bob");
    let text = "Hello Bob! Only you can read this.";
    let id = send(&alice, bob_at_alice, text).await?;
    let message = receive(&mut bob, text).await?;
    say(&format!("   Bob reads: {:?}", message.text));
    status(&mut alice, id, Status::Delivered).await?;
    ok("delivered directly, end to end encrypted; Alice got Bob's encrypted receipt");
    let reply = "Hi Alice! Loud and clear.";
    send(&bob, alice_at_bob, reply).await?;
    receive(&mut alice, reply).await?;
    say(&format!("   Alice reads: {reply:?}"));

    step(5, "Bob goes offline; Alice's message waits in mailboxes");
    stop(bob).await?;
    ok("Bob's node stopped");
    let mut taps: Vec<_> = relays.iter().map(Relay::stored).collect();
    let text = "Are you there? I'll wait.";
    let id = send(&alice, bob_at_alice, text).await?;
    status(&mut alice, id, Status::InMailbox).await?;
    ok("stored on the relays nearest Bob's mailbox key of the day, with proof of work");
    let (mut held, mut shown) = (0, false);
    for tap in &mut taps {
        let mut holds = false;
        while let Ok(envelope) = tap.try_recv() {
            holds = true;
            if envelope.windows(text.len()).any(|w| w == text.as_bytes()) {
                return Err(Failure::new("a relay holds the plaintext"));
            }
            if !shown {
                shown = true;
                say(&format!(
                    "   what a relay holds ({} bytes; no sender, padded): {}…",
                    envelope.len(),
                    hex(envelope.get(..40).unwrap_or(&envelope))
                ));
            }
        }
        held += usize::from(holds);
    }
    if held == 0 {
        return Err(Failure::new("no relay holds the message"));
    }
    ok(&format!("{held} relays hold it; none can read it or tell who sent it"));
    let mut bob = start("bob", home, &relays)?;
    ok("Bob's node starts again and fetches its mailboxes");
    let message = receive(&mut bob, text).await?;
    say(&format!("   Bob reads: {:?}", message.text));
    status(&mut alice, id, Status::Delivered).await?;
    ok("read from the mailbox, then deleted there; Alice sees it delivered");

    step(6, "Alice sends Bob a file");
    send_file(&mut alice, &mut bob, bob_at_alice, home).await?;

    step(7, "A vanishing message");
    let timer = VanishingTimer::from_secs(VANISH_SECS)
        .map_err(|e| Failure::new(format!("the timer: {e}")))?;
    command(&alice, Input::TimerSet { contact: bob_at_alice, timer }).await?;
    let text = "This message disappears 30 seconds after Bob reads it.";
    let id = send(&alice, bob_at_alice, text).await?;
    let message = receive(&mut bob, text).await?;
    command(&bob, Input::MessagesRead { contact: alice_at_bob, ids: vec![message.id] }).await?;
    say(&format!("   Bob read it; it vanishes in {VANISH_SECS} s on both sides..."));
    let expired = |event: Event| matches!(event, Event::MessageExpired { id: gone } if gone == id);
    next_event(&mut bob, "the message vanishing at Bob's", |e| expired(e).then_some(())).await?;
    next_event(&mut alice, "the message vanishing at Alice's", |e| expired(e).then_some(()))
        .await?;
    for person in [&alice, &bob] {
        let kept = person.handle().read(move |_, store| store.message(id)).await?;
        if !matches!(kept, Ok(None)) {
            return Err(Failure::new(format!("{} still keeps the vanished message", person.name)));
        }
    }
    ok("gone from both devices' databases");

    step(8, "The web UI");
    let mut apis = Vec::new();
    for person in [&alice, &bob] {
        let api = xchat_node::api::serve(
            person.handle().clone(),
            &person.dir,
            xchat_node::api::ApiConfig::default(),
        )
        .await
        .map_err(|e| Failure::new(format!("{}'s API: {e}", person.name)))?;
        let address = person.handle().address().to_string();
        let login = api.login_url.clone();
        within("the web UI", async move {
            tokio::task::spawn_blocking(move || check_web_ui(login.expose(), &address))
                .await
                .map_err(|_| Failure::new("the web UI check failed"))?
        })
        .await?;
        apis.push((person.name, api));
    }
    ok("each node serves the web UI on 127.0.0.1; its one-time login link opens a session");

    println!();
    say("Every step was verified.");
    if !exit {
        say("");
        say("Open Alice's and Bob's web UI in a browser (one-time links, valid 10 minutes):");
        for (name, api) in &apis {
            let url = api.new_login_url().map_err(|e| Failure::new(e.to_string()))?;
            say(&format!("   {name:<5}  {}", url.expose()));
        }
        say("The nodes keep running; Ctrl-C stops them.");
        crate::profile::shutdown_signal().await;
    }
    for (_, api) in apis {
        api.shutdown().await;
    }
    stop(alice).await?;
    stop(bob).await?;
    Ok(())
}

/// What a browser does with a login link, checked: the page loads, the
/// link gives a session cookie, and the cookie reads the node's identity.
/// The link is spent afterwards.
fn check_web_ui(login: &str, address: &str) -> Result<(), Failure> {
    let failed = |what: &str| Failure::new(format!("the web UI: {what}"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(STEP_TIMEOUT))
        .build()
        .into();
    let base = login.split("/login").next().unwrap_or(login);
    let page = agent.get(format!("{base}/")).call().map_err(|e| failed(&e.to_string()))?;
    let html =
        page.headers().get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    let csp = page.headers().contains_key("content-security-policy");
    if page.status() != 200 || !html || !csp {
        return Err(failed("the page is not served as HTML with its policy"));
    }
    let opened = agent.get(login).call().map_err(|e| failed(&e.to_string()))?;
    let cookie = opened
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .ok_or_else(|| failed("the login link gave no session"))?
        .to_owned();
    let mut identity = agent
        .get(format!("{base}/api/v1/identity"))
        .header("cookie", &cookie)
        .call()
        .map_err(|e| failed(&e.to_string()))?;
    let identity: serde_json::Value =
        identity.body_mut().read_json().map_err(|_| failed("the session reads nothing"))?;
    if identity["address"] != address {
        return Err(failed("the session does not read this node"));
    }
    Ok(())
}
