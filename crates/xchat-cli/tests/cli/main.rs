#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The `xchat` binary as people run it: real processes, real profiles on
//! disk, two `xchat up` nodes on loopback (Bob joins through Alice), and
//! the commands that talk to them through their local APIs.
//!
//! [`e2e`] runs longer stories with relays: offline peers, restarts, a
//! `kill -9` with messages in flight, a large file, vanishing messages.

mod e2e;

use std::io::BufRead as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: a loaded 2-core machine compiles other crates while this runs.
const WAIT: Duration = Duration::from_secs(120);
/// How often a poll asks again.
const POLL: Duration = Duration::from_millis(250);

fn xchat() -> &'static Path {
    assert_cmd::cargo::cargo_bin!("xchat")
}

/// `xchat --profile DIR ARGS...`, run to its end.
fn run(profile: &Path, args: &[&str]) -> Output {
    Command::new(xchat())
        .arg("--profile")
        .arg(profile)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and expects success; the standard output.
fn ok(profile: &Path, args: &[&str]) -> String {
    let output = run(profile, args);
    assert!(
        output.status.success(),
        "xchat {args:?} failed: {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Runs and expects failure with exit code `code`; the standard error.
fn fails(profile: &Path, args: &[&str], code: i32) -> String {
    let output = run(profile, args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "xchat {args:?}\nstdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

/// Runs with `input` on standard input and expects success; the standard
/// output.
fn answering(profile: &Path, args: &[&str], input: &str) -> String {
    let mut child = Command::new(xchat())
        .arg("--profile")
        .arg(profile)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "xchat {args:?}: {}", stderr(&output));
    stdout(&output)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A new profile without passphrase; its address.
fn init(profile: &Path) -> String {
    init_with_phrase(profile).0
}

/// A new profile without passphrase; its address and recovery phrase.
fn init_with_phrase(profile: &Path) -> (String, String) {
    let made = json(&ok(profile, &["--json", "init", "--no-passphrase"]));
    let phrase = made["recovery_phrase"].as_str().unwrap();
    assert_eq!(phrase.split(' ').count(), 24);
    (made["address"].as_str().unwrap().to_owned(), phrase.to_owned())
}

/// A running `xchat up`, killed when dropped (a failed assertion too).
struct Node {
    process: Running,
    /// What `up --json` printed.
    up: Value,
}

/// A child process, killed when dropped (a failed assertion too).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Sends SIGTERM, as Ctrl-C would stop it, and waits for the end.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.wait("stopping on SIGTERM")
    }

    /// Waits for the process to end by itself.
    fn wait(&mut self, what: &str) -> std::process::ExitStatus {
        wait_for(what, || self.0.try_wait().unwrap()).unwrap()
    }
}

/// Standard output's lines, read on a thread of their own.
fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (lines, read) = std::sync::mpsc::sync_channel(64);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    read
}

/// The first of `lines` that holds `wanted`, within [`WAIT`].
fn line_with(lines: &std::sync::mpsc::Receiver<String>, wanted: &str) -> String {
    let started = Instant::now();
    loop {
        let left = WAIT.checked_sub(started.elapsed()).unwrap_or_default();
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {wanted:?}: {e}"),
        }
    }
}

impl Node {
    fn start(profile: &Path, bootstrap: &[String]) -> Self {
        let mut command = Command::new(xchat());
        command
            .arg("--profile")
            .arg(profile)
            .args(["--json", "up", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--api", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for bootstrap in bootstrap {
            command.args(["--bootstrap", bootstrap]);
        }
        let mut child = command.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        // The guard owns the process from here: a failure below kills it.
        let mut node = Self { process: Running(child), up: Value::Null };
        let line = lines_of(out).recv_timeout(WAIT).expect("xchat up printed nothing");
        node.up = json(&line);
        let url_file = profile.join("api.url");
        wait_for("api.url", || url_file.exists().then_some(())).unwrap();
        let url = std::fs::read_to_string(&url_file).unwrap();
        assert_eq!(url.trim(), node.up["api"].as_str().unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&url_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "api.url mode {mode:o}");
        }
        node
    }

    /// The multiaddr others bootstrap from.
    fn listen(&self) -> String {
        let listen = self.up["listen"][0].as_str().unwrap().to_owned();
        assert!(listen.starts_with("/ip4/127.0.0.1/tcp/"), "{listen}");
        assert!(listen.contains("/p2p/"), "{listen}");
        listen
    }

    /// Stops the node as Ctrl-C would, and waits for it.
    fn terminate(self) -> std::process::ExitStatus {
        self.process.terminate()
    }
}

/// Asks `probe` until it gives something, for at most [`WAIT`].
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> Result<T, String> {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return Ok(found);
        }
        if started.elapsed() > WAIT {
            return Err(format!("{what}: nothing after {WAIT:?}"));
        }
        std::thread::sleep(POLL);
    }
}

/// The newest messages with `name`, newest first (the API's JSON).
fn history(profile: &Path, name: &str) -> Vec<Value> {
    json(&ok(profile, &["--json", "history", name])).as_array().unwrap().clone()
}

#[test]
fn two_nodes_talk_through_the_cli() {
    let home = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (home.path().join("alice"), home.path().join("bob"));
    let (alice_address, alice_phrase) = init_with_phrase(&alice_dir);
    let bob_address = init(&bob_dir);

    let alice = Node::start(&alice_dir, &[]);
    let bob = Node::start(&bob_dir, &[alice.listen()]);
    assert_eq!(alice.up["address"], alice_address.as_str());

    // Each adds the other; Bob through Alice's `xchat:` URI.
    let added = json(&ok(&alice_dir, &["--json", "contact", "add", "bob", &bob_address]));
    assert_eq!(added["outcome"], "new");
    let uri = format!("xchat:{alice_address}?name=Alice");
    let said = ok(&bob_dir, &["contact", "add", "alice", &uri]);
    assert!(said.contains("Added alice"), "{said}");
    let listed = ok(&alice_dir, &["contact", "list"]);
    assert!(listed.contains("bob") && listed.contains(&bob_address), "{listed}");
    let contacts = json(&ok(&bob_dir, &["--json", "contact", "list"]));
    assert_eq!(contacts[0]["name"], "alice");
    assert_eq!(contacts[0]["address"], alice_address.as_str());

    // Verifying with --yes asks nothing, and marks the contact.
    let verified = ok(&alice_dir, &["contact", "verify", "bob", "--yes"]);
    assert!(verified.contains("bob is verified"), "{verified}");
    let digits: String = verified.chars().filter(char::is_ascii_digit).collect();
    assert!(digits.len() >= 60, "no safety number shown: {verified}");
    let contacts = json(&ok(&alice_dir, &["--json", "contact", "list"]));
    assert_eq!(contacts[0]["verified"], true);

    // Without --yes, only a yes typed verifies.
    for (answer, verified) in [("n\n", false), ("", false), ("y\n", true)] {
        let said = answering(&bob_dir, &["contact", "verify", "alice"], answer);
        assert!(said.contains("Safety number with alice"), "{said}");
        let contacts = json(&ok(&bob_dir, &["--json", "contact", "list"]));
        assert_eq!(contacts[0]["verified"], verified, "after answering {answer:?}: {said}");
    }

    // Alice sends; Bob's history shows it, as the network carries it.
    let sent = json(&ok(&alice_dir, &["--json", "send", "bob", "hello from alice"]));
    let id = sent["id"].as_str().unwrap().to_owned();
    let arrived = wait_for("alice's message at bob", || {
        history(&bob_dir, "alice").into_iter().find(|m| m["id"] == id.as_str())
    })
    .unwrap();
    assert_eq!(arrived["direction"], "in");
    assert_eq!(arrived["text"], "hello from alice");
    let shown = ok(&bob_dir, &["history", "alice"]);
    assert!(shown.contains("alice: hello from alice"), "{shown}");
    assert!(shown.contains("(unread)"), "{shown}");
    // At Alice, the same message, going out.
    let mine = history(&alice_dir, "bob");
    assert_eq!(mine[0]["id"], id.as_str());
    assert_eq!(mine[0]["direction"], "out");
    let shown = ok(&alice_dir, &["history", "bob", "--limit", "1"]);
    assert!(shown.contains("you: hello from alice"), "{shown}");

    // --expire sets the conversation's timer before sending.
    let said = ok(&alice_dir, &["send", "bob", "this one vanishes", "--expire", "1h"]);
    assert!(said.contains("vanishing timer 1h"), "{said}");
    let newest = &history(&alice_dir, "bob")[0];
    assert_eq!(newest["text"], "this one vanishes");
    let lifetime = newest["expires_at"].as_u64().unwrap() - newest["sent_at"].as_u64().unwrap();
    assert!((3_599_000..=3_601_000).contains(&lifetime), "expires {lifetime} ms after sending");
    let said = ok(&alice_dir, &["send", "bob", "this one stays", "--expire", "off"]);
    assert!(said.contains("vanishing timer off"), "{said}");
    assert!(history(&alice_dir, "bob")[0]["expires_at"].is_null());
    let refused = fails(&alice_dir, &["send", "bob", "x", "--expire", "1y"], 2);
    assert!(refused.contains("not a timer"), "{refused}");

    // Errors: an unknown name, a malformed address.
    let unknown = fails(&alice_dir, &["send", "carol", "hi"], 1);
    assert!(unknown.contains("no contact named \"carol\""), "{unknown}");
    let unknown = fails(&alice_dir, &["history", "carol"], 1);
    assert!(unknown.contains("no contact named"), "{unknown}");
    let malformed = fails(&alice_dir, &["contact", "add", "carol", "xchat1notanaddress"], 1);
    assert!(malformed.contains("invalid_address"), "{malformed}");
    let malformed = fails(&alice_dir, &["contact", "add", "carol", "xchat:xchat1nope"], 1);
    assert!(malformed.contains("not an xchat address"), "{malformed}");

    // Chat at Bob: the backlog, a message arriving live, a line typed and
    // sent, then Ctrl-D.
    let mut chat = Command::new(xchat())
        .arg("--profile")
        .arg(&bob_dir)
        .args(["chat", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (typed, out) = (chat.stdin.take().unwrap(), chat.stdout.take().unwrap());
    let mut chat = Running(chat);
    let mut typed = Some(typed);
    let shown = lines_of(out);
    line_with(&shown, "alice: hello from alice");
    ok(&alice_dir, &["send", "bob", "ping"]);
    line_with(&shown, "alice: ping");
    writeln!(typed.as_mut().unwrap(), "pong").unwrap();
    let pong = wait_for("bob's typed line at alice", || {
        history(&alice_dir, "bob").into_iter().find(|m| m["text"] == "pong")
    })
    .unwrap();
    assert_eq!(pong["direction"], "in");
    drop(typed.take());
    let ended = chat.wait("chat ending at end of input");
    assert!(ended.success(), "chat ended with {ended}");
    // What the chat showed is marked read.
    let seen = history(&bob_dir, "alice");
    let ping = seen.iter().find(|m| m["text"] == "ping").unwrap();
    assert_eq!(ping["status"], "seen");

    // A file: Alice sends it, Bob accepts, the node fetches it, Bob saves it.
    let original: Vec<u8> = (0..2 * 1024 * 1024 + 77).map(|i: u32| (i % 253) as u8).collect();
    let photo = home.path().join("photo.jpg");
    std::fs::write(&photo, &original).unwrap();
    let offered = ok(&alice_dir, &["file", "send", "bob", photo.to_str().unwrap()]);
    assert!(offered.contains("Offered photo.jpg"), "{offered}");
    let file = wait_for("the offer at bob", || {
        let files = json(&ok(&bob_dir, &["--json", "file", "list", "alice"]));
        files.as_array().unwrap().first().map(|f| f["file"].as_str().unwrap().to_owned())
    })
    .unwrap();
    ok(&bob_dir, &["file", "accept", &file]);
    wait_for("the file complete at bob", || {
        let files = json(&ok(&bob_dir, &["--json", "file", "list", "alice"]));
        (files[0]["state"] == "complete").then_some(())
    })
    .unwrap();
    let saved = home.path().join("saved.jpg");
    ok(&bob_dir, &["file", "get", &file, "--out", saved.to_str().unwrap()]);
    assert!(std::fs::read(&saved).unwrap() == original, "the saved file differs");
    let again = fails(&bob_dir, &["file", "get", &file, "--out", saved.to_str().unwrap()], 1);
    assert!(again.contains("exists"), "{again}");

    // A backup, written once; a second one to the same path is refused.
    let backup = home.path().join("alice.xbak");
    let written = ok(&alice_dir, &["backup", "export", backup.to_str().unwrap()]);
    assert!(written.contains("Backup written"), "{written}");
    assert!(std::fs::metadata(&backup).unwrap().len() > 0);
    fails(&alice_dir, &["backup", "export", backup.to_str().unwrap()], 1);
    // It restores Alice on a new profile with her phrase only: a wrong
    // phrase is refused and leaves nothing behind.
    let restored_dir = home.path().join("alice-restored");
    let import = |phrase: &str| {
        Command::new(xchat())
            .arg("--profile")
            .arg(&restored_dir)
            .args(["--json", "backup", "import", backup.to_str().unwrap(), "--no-passphrase"])
            .env("XCHAT_PHRASE", phrase)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let (_, other_phrase) = init_with_phrase(&home.path().join("carol"));
    let refused = import(&other_phrase);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(!restored_dir.exists(), "a refused import left a profile");
    let restored = import(&alice_phrase);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let restored = json(&stdout(&restored));
    assert_eq!(restored["address"], alice_address.as_str());
    assert_eq!(restored["contacts"], 1);

    // A clean stop removes api.url: the commands then say no node runs.
    drop(bob);
    let status = alice.terminate();
    assert!(status.success(), "xchat up ended with {status}");
    assert!(!alice_dir.join("api.url").exists());
    let none = fails(&alice_dir, &["contact", "list"], 5);
    assert!(none.contains("no node running"), "{none}");
}

#[test]
fn commands_without_a_running_node_exit_5() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("profile");
    let said = fails(&dir, &["history", "bob"], 3);
    assert!(said.contains("xchat init"), "{said}");
    init(&dir);
    let said = fails(&dir, &["contact", "list"], 5);
    assert!(said.contains("no node running"), "{said}");
    assert!(said.contains("xchat up"), "{said}");

    // A node killed without cleaning up leaves a stale api.url: nothing
    // answers there.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    std::fs::write(dir.join("api.url"), format!("http://127.0.0.1:{port}\n")).unwrap();
    std::fs::write(dir.join("api.token"), "00".repeat(32)).unwrap();
    let said = fails(&dir, &["send", "bob", "hello"], 5);
    assert!(said.contains("no node running"), "{said}");
}

#[test]
fn completions_print_a_script_for_each_shell() {
    let home = tempfile::tempdir().unwrap();
    let bash = ok(home.path(), &["completions", "bash"]);
    assert!(bash.contains("complete -F _xchat"), "{bash}");
    for word in ["contact", "send", "history", "chat", "--expire"] {
        assert!(bash.contains(word), "bash completions lack {word}");
    }
    let zsh = ok(home.path(), &["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef xchat"), "{zsh}");
    let fish = ok(home.path(), &["completions", "fish"]);
    assert!(fish.contains("complete -c xchat"), "{fish}");
    fails(home.path(), &["completions", "tcsh"], 2);
}

#[test]
fn every_command_help_has_an_example() {
    let home = tempfile::tempdir().unwrap();
    for command in [
        &["contact", "add"][..],
        &["contact", "list"],
        &["contact", "verify"],
        &["send"],
        &["history"],
        &["chat"],
        &["completions"],
        &["file", "send"],
        &["file", "list"],
        &["file", "accept"],
        &["file", "get"],
        &["backup", "export"],
        &["backup", "import"],
        &["relay"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = ok(home.path(), &args);
        assert!(help.contains("Example"), "xchat {command:?} --help has no example:\n{help}");
        assert!(help.contains("xchat "), "{help}");
    }
}
