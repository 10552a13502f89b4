#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The web UI in a real browser: headless Chromium, driven over the Chrome
//! DevTools Protocol, in front of real nodes and relays on loopback.
//!
//! Each user gets a browser context of their own, as two people on two
//! machines would have. Everything the tests do goes through the page, as a person
//! would: clicks, typed keys, the file picker, a dropped file. Every wait
//! is a poll with a deadline. Screenshots of the main screens go to
//! `target/screenshots/`.
//!
//! Chromium comes from Debian's `chromium` package (`scripts/test.sh`
//! installs it); without it these tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use rand_core::{OsRng, TryRngCore as _, UnwrapErr};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;
use xchat_crypto::address::Address;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::signature::SigningKey;
use xchat_node::api::{self, Api, ApiConfig};
use xchat_node::{NodeConfig, Profile, ProfileDir, Relay, RunningNode, Unlock};

/// Generous: a loaded 2-core machine compiles other crates while this runs.
const WAIT: Duration = Duration::from_secs(90);
/// Cheap stamps in tests, still checked by the relays.
const BITS: u8 = 8;
const WIDE: (u32, u32) = (1100, 720);
const NARROW: (u32, u32) = (360, 720);

// ---------- nodes ----------

fn network(bootstrap: &[Relay]) -> xchat_net::Config {
    xchat_net::Config {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap_peers: bootstrap.iter().flat_map(|r| r.addresses.clone()).collect(),
        enable_mdns: false,
        mailbox: Some(xchat_net::mailbox::Config {
            min_difficulty_bits: BITS,
            ..xchat_net::mailbox::Config::default()
        }),
        ..xchat_net::Config::default()
    }
}

async fn relays(count: usize) -> Vec<Relay> {
    let mut relays: Vec<Relay> = Vec::new();
    for _ in 0..count {
        relays.push(xchat_node::start_relay(network(&relays)).await.unwrap());
    }
    relays
}

/// A node with its API, in a profile of its own.
struct User {
    _home: tempfile::TempDir,
    dir: ProfileDir,
    node: RunningNode,
    api: Api,
}

async fn user(relays: &[Relay]) -> User {
    let home = tempfile::tempdir().unwrap();
    let dir = ProfileDir::new(home.path().join("profile"));
    let phrase = RecoveryPhrase::generate(&mut UnwrapErr(OsRng));
    let profile = Profile::create(
        dir.clone(),
        &phrase,
        &Unlock::KeyFile,
        xchat_node::now_ms(),
        &mut UnwrapErr(OsRng),
    )
    .unwrap();
    let node =
        xchat_node::start(profile, NodeConfig { network: network(relays), stamp_bits: BITS })
            .unwrap();
    let api = api::serve(node.handle.clone(), &dir, ApiConfig::default()).await.unwrap();
    User { _home: home, dir, node, api }
}

/// Two users whose nodes are on the network.
async fn two_users() -> (Vec<Relay>, User, User) {
    let relays = relays(3).await;
    let alice = user(&relays).await;
    let bob = user(&relays).await;
    tokio::time::timeout(WAIT, alice.node.handle.published()).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, bob.node.handle.published()).await.unwrap().unwrap();
    (relays, alice, bob)
}

// ---------- the browser ----------

/// Headless Chromium and one DevTools connection to it.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    /// Script exceptions and CSP violations, by page session: a test ends
    /// by checking there were none.
    problems: Vec<(String, String)>,
    /// Every console and log line, by page session, shown when a wait
    /// gives up.
    log: Vec<(String, String)>,
}

/// One page (tab) in a browser context of its own.
#[derive(Clone)]
struct Page {
    session: String,
    name: &'static str,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn launch() -> Self {
        let binary = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|name| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {name}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .unwrap_or_else(|| {
                panic!(
                    "Chromium is not installed: the web UI's tests need it. Run scripts/test.sh \
                     (it installs it), or: apt-get install chromium"
                )
            });
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                // Calls: a fake camera and microphone (a test pattern and a
                // beep), granted without a prompt; remote media play at once.
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        // Chromium writes its port and the browser target's path here.
        let file = profile.path().join("DevToolsActivePort");
        let active = poll(Duration::from_secs(30), "Chromium's DevTools port", || {
            std::fs::read_to_string(&file).ok().filter(|text| text.lines().count() >= 2)
        })
        .await;
        let mut lines = active.lines();
        let (port, path) = (lines.next().unwrap(), lines.next().unwrap());
        let (socket, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}")).await.unwrap();
        Self { child, _profile: profile, socket, next_id: 0, problems: Vec::new(), log: Vec::new() }
    }

    /// Sends one DevTools command and waits for its answer.
    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket.send(Frame::Text(command.to_string().into())).await.unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline.into(), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("the DevTools connection closed")
                .unwrap();
            let Frame::Text(text) = frame else { continue };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["id"] == json!(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.note(&message);
        }
    }

    /// Keeps what a test must not ignore from an event.
    fn note(&mut self, event: &Value) {
        let session = event["sessionId"].as_str().unwrap_or("").to_owned();
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &event["params"]["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("an exception")
                    .to_owned();
                self.problems.push((session, text));
            }
            Some("Runtime.consoleAPICalled") => {
                let args = event["params"]["args"].as_array().cloned().unwrap_or_default();
                let text: Vec<String> = args
                    .iter()
                    .map(|a| {
                        a["value"].as_str().map_or_else(|| a["value"].to_string(), str::to_owned)
                    })
                    .collect();
                self.log.push((session, format!("console: {}", text.join(" "))));
            }
            Some("Log.entryAdded") => {
                let entry = &event["params"]["entry"];
                let text = entry["text"].as_str().unwrap_or("").to_owned();
                let url = entry["url"].as_str().unwrap_or("");
                self.log.push((session.clone(), format!("{text} {url}")));
                if text.contains("Content Security Policy") {
                    self.problems.push((session, text));
                }
            }
            _ => {}
        }
    }

    /// A new page in a browser context of its own (its own cookies).
    async fn page(&mut self, name: &'static str) -> Page {
        let context = self.send(None, "Target.createBrowserContext", json!({})).await;
        let target = self
            .send(
                None,
                "Target.createTarget",
                json!({"url": "about:blank", "browserContextId": context["browserContextId"]}),
            )
            .await;
        let attached = self
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let page = Page { session: attached["sessionId"].as_str().unwrap().to_owned(), name };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.send(Some(&page.session), domain, json!({})).await;
        }
        self.viewport(&page, WIDE).await;
        page
    }

    async fn viewport(&mut self, page: &Page, (width, height): (u32, u32)) {
        self.send(
            Some(&page.session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
    }

    async fn dark(&mut self, page: &Page, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.send(
            Some(&page.session),
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    async fn goto(&mut self, page: &Page, url: &str) {
        self.send(Some(&page.session), "Page.navigate", json!({"url": url})).await;
        self.wait(
            page,
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            "the page to load",
        )
        .await;
    }

    /// The value of a JavaScript expression (awaited if it is a promise).
    async fn eval(&mut self, page: &Page, expression: &str) -> Value {
        let result = self
            .send(
                Some(&page.session),
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{} threw on `{expression}`: {details}", page.name);
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy; returns its value.
    async fn wait(&mut self, page: &Page, expression: &str, what: &str) -> Value {
        self.wait_for(page, expression, what, WAIT).await
    }

    async fn wait_for(
        &mut self,
        page: &Page,
        expression: &str,
        what: &str,
        limit: Duration,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(page, expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot(page, &format!("failed-{}", page.name)).await;
                let log: Vec<&str> = self
                    .log
                    .iter()
                    .filter(|(session, _)| *session == page.session)
                    .map(|(_, line)| line.as_str())
                    .collect();
                panic!(
                    "{}: gave up waiting for {what} (screenshot: {}); the page's log: {log:#?}",
                    page.name,
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&mut self, page: &Page, selector: &str) {
        let found = self
            .eval(
                page,
                &format!(
                    "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
                    json!(selector)
                ),
            )
            .await;
        assert_eq!(found, json!(true), "{}: nothing to click at {selector}", page.name);
    }

    /// Types into an input as a person would: focus, then text events.
    async fn type_into(&mut self, page: &Page, selector: &str, text: &str) {
        self.eval(page, &format!("document.querySelector({}).focus()", json!(selector))).await;
        self.send(Some(&page.session), "Input.insertText", json!({"text": text})).await;
    }

    /// Presses a key that types nothing (Tab, Escape, Enter on a button).
    async fn press(&mut self, page: &Page, key: &str, code: u32) {
        for kind in ["rawKeyDown", "keyUp"] {
            self.send(
                Some(&page.session),
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code}),
            )
            .await;
        }
    }

    async fn press_enter(&mut self, page: &Page, shift: bool) {
        let modifiers = if shift { 8 } else { 0 };
        for kind in ["keyDown", "keyUp"] {
            self.send(
                Some(&page.session),
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                       "text": if kind == "keyDown" { "\r" } else { "" }, "modifiers": modifiers}),
            )
            .await;
        }
    }

    /// Chooses `path` in the page's file input, as the picker would.
    async fn choose_file(&mut self, page: &Page, selector: &str, path: &Path) {
        let document = self.send(Some(&page.session), "DOM.getDocument", json!({})).await;
        let node = self
            .send(
                Some(&page.session),
                "DOM.querySelector",
                json!({"nodeId": document["root"]["nodeId"], "selector": selector}),
            )
            .await;
        self.send(
            Some(&page.session),
            "DOM.setFileInputFiles",
            json!({"nodeId": node["nodeId"], "files": [path.display().to_string()]}),
        )
        .await;
    }

    /// Saves a PNG of the page to `target/screenshots/<name>.png`.
    async fn screenshot(&mut self, page: &Page, name: &str) -> PathBuf {
        let shot = self
            .send(Some(&page.session), "Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Fails the test on any script error or CSP violation seen so far.
    fn assert_clean(&self) {
        assert!(self.problems.is_empty(), "the pages reported problems: {:#?}", self.problems);
    }
}

async fn poll<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------- what a user does ----------

/// Opens the login link and waits for the app.
async fn log_in(browser: &mut Browser, page: &Page, user: &User) {
    browser.goto(page, user.api.login_url.expose()).await;
    browser.wait(page, "document.body.dataset.ready === 'true'", "the app to be ready").await;
    let app = browser.eval(page, "!document.getElementById('app').hidden").await;
    assert_eq!(app, json!(true), "{}: the app is not shown after logging in", page.name);
}

/// Reads the user's own address from the "Me" dialog (checking its QR
/// code loaded), then closes it.
async fn own_address(browser: &mut Browser, page: &Page) -> String {
    browser.click(page, "#me-button").await;
    let address = browser
        .wait(page, "document.getElementById('me-address').textContent", "the own address")
        .await;
    browser
        .wait(
            page,
            "(() => { const q = document.getElementById('me-qr'); return q.complete && q.naturalWidth >= 200; })()",
            "the QR code",
        )
        .await;
    browser.screenshot(page, &format!("my-address-{}", page.name)).await;
    browser.click(page, "#me-close").await;
    address.as_str().unwrap().to_owned()
}

/// Adds a contact through the dialog; the conversation opens.
async fn add_contact(browser: &mut Browser, page: &Page, name: &str, address: &str) {
    browser.click(page, "#add-button").await;
    browser.wait(page, "document.getElementById('add-dialog').open", "the add dialog").await;
    browser.type_into(page, "#add-address", address).await;
    browser.type_into(page, "#add-name", name).await;
    browser.click(page, "#add-form button[type=submit]").await;
    browser
        .wait(
            page,
            &format!(
                "!document.getElementById('chat').hidden && document.getElementById('peer-name').textContent === {}",
                json!(name)
            ),
            "the new conversation to open",
        )
        .await;
}

/// Types `text` in the composer and sends it with Enter.
async fn send_text(browser: &mut Browser, page: &Page, text: &str) {
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        browser.type_into(page, "#text", line).await;
        if lines.peek().is_some() {
            browser.press_enter(page, true).await;
        }
    }
    browser.press_enter(page, false).await;
}

/// The expression: a message of `direction` whose text is `text` is shown.
fn shows_message(direction: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#messages .message.{direction} .text')].some(t => t.textContent === {})",
        json!(text)
    )
}

/// The expression: the status of the shown outgoing message `text`.
fn status_of(text: &str) -> String {
    format!(
        "(() => {{ const t = [...document.querySelectorAll('#messages .message.out .text')].find(t => t.textContent === {}); return t ? t.closest('.message').dataset.status : null; }})()",
        json!(text)
    )
}

/// Two users in two browser contexts, logged in, who added each other
/// through the UI; each has the other's conversation open.
async fn paired(browser: &mut Browser, alice: &User, bob: &User) -> (Page, Page) {
    let (a, b) = (browser.page("alice").await, browser.page("bob").await);
    log_in(browser, &a, alice).await;
    log_in(browser, &b, bob).await;
    let alice_address = own_address(browser, &a).await;
    let bob_address = own_address(browser, &b).await;
    assert_eq!(alice_address, alice.node.handle.address().to_string());
    assert!(bob_address.starts_with("xchat1"));
    add_contact(browser, &a, "Bob", &bob_address).await;
    // Bob pastes Alice's link rather than her bare address.
    add_contact(browser, &b, "Alice", &format!("xchat:{alice_address}")).await;
    (a, b)
}

/// An address that is no one's here.
fn stranger() -> String {
    Address::from_key(SigningKey::generate(&mut UnwrapErr(OsRng)).verifying_key()).to_string()
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_add_each_other_verify_and_chat_live() {
    let started = Instant::now();
    let (_relays, alice, bob) = two_users().await;
    let mut browser = Browser::launch().await;
    let (a, b) = paired(&mut browser, &alice, &bob).await;

    // Safety numbers: the same 60 digits on both sides; both mark verified.
    let mut numbers = Vec::new();
    for page in [&a, &b] {
        browser.click(page, "#safety-button").await;
        let digits = browser
            .wait(
                page,
                "document.querySelectorAll('#safety-groups li').length === 12 && document.getElementById('safety-groups').dataset.digits",
                "the safety number",
            )
            .await;
        numbers.push(digits.as_str().unwrap().to_owned());
    }
    assert_eq!(numbers[0].len(), 60);
    assert!(numbers[0].bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(numbers[0], numbers[1], "the two sides' safety numbers differ");
    browser.screenshot(&a, "safety-number").await;
    for page in [&a, &b] {
        browser.click(page, "#safety-verify").await;
        browser
            .wait(page, "document.getElementById('safety-verify').hidden", "verify to be done")
            .await;
        browser.click(page, "#safety-close").await;
        browser
            .wait(page, "!document.getElementById('peer-verified').hidden", "the verified badge")
            .await;
    }

    // Alice writes; Bob, whose conversation is open, sees it without a
    // reload and reads it; Alice sees it read.
    send_text(&mut browser, &a, "hello bob").await;
    browser.wait(&b, &shows_message("in", "hello bob"), "Alice's message at Bob's").await;
    let read = browser.wait(&a, &format!("{} === 'read'", status_of("hello bob")), "read").await;
    assert_eq!(read, json!(true));
    assert_eq!(browser.eval(&a, "document.getElementById('text').value").await, json!(""));

    // Typed while the node cannot be reached: kept in a visible outbox,
    // never lost, and sent once the node is back.
    browser.send(Some(&a.session), "Network.enable", json!({})).await;
    let offline = |offline: bool| json!({"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1});
    browser.send(Some(&a.session), "Network.emulateNetworkConditions", offline(true)).await;
    send_text(&mut browser, &a, "typed while offline").await;
    browser
        .wait(
            &a,
            "[...document.querySelectorAll('#outbox .outbox-entry')].some(e => e.querySelector('.text').textContent === 'typed while offline' && e.textContent.includes('Not sent yet'))",
            "the unsent text in the outbox",
        )
        .await;
    browser.screenshot(&a, "outbox").await;
    browser.send(Some(&a.session), "Network.emulateNetworkConditions", offline(false)).await;
    browser
        .wait(&b, &shows_message("in", "typed while offline"), "the outbox's text at Bob's")
        .await;
    browser
        .wait(&a, "document.querySelectorAll('#outbox li').length === 0", "an empty outbox")
        .await;
    browser
        .wait(&a, &shows_message("out", "typed while offline"), "the text in Alice's timeline")
        .await;

    // Bob answers on two lines (Shift+Enter), sent with Enter.
    send_text(&mut browser, &b, "hi alice\nsecond line").await;
    browser.wait(&a, &shows_message("in", "hi alice\nsecond line"), "Bob's answer").await;

    // Bob goes back to his list: Alice's next message is unread there,
    // with its text as the last message, until he opens the conversation.
    browser.click(&b, "#back-button").await;
    send_text(&mut browser, &a, "are you there?").await;
    browser
        .wait(
            &b,
            "(() => { const c = document.querySelector('#conversations .conversation'); return c && c.querySelector('.unread')?.textContent === '1' && c.querySelector('.last').textContent === 'are you there?'; })()",
            "an unread count of 1 and the last message in Bob's list",
        )
        .await;
    let status = browser.eval(&a, &status_of("are you there?")).await;
    assert!(
        ["sent", "delivered", "in_mailbox", "pending"].contains(&status.as_str().unwrap()),
        "{status}: not read while Bob's conversation is closed"
    );
    browser.screenshot(&b, "conversation-list-unread").await;
    browser.click(&b, "#conversations .conversation").await;
    browser.wait(&b, &shows_message("in", "are you there?"), "the conversation again").await;
    browser.wait(&b, "!document.querySelector('#conversations .unread')", "no unread count").await;
    browser.wait(&a, &format!("{} === 'read'", status_of("are you there?")), "read").await;
    send_text(&mut browser, &b, "oui, ça va").await;
    browser.wait(&a, &shows_message("in", "oui, ça va"), "Bob's last answer").await;
    browser
        .wait(
            &a,
            "document.querySelector('#conversations .conversation .last')?.textContent === 'oui, ça va'",
            "the list to show the last message",
        )
        .await;

    // Screenshots: light and dark, wide and narrow.
    browser.screenshot(&a, "chat-light").await;
    browser.dark(&a, true).await;
    browser.screenshot(&a, "chat-dark").await;
    browser.viewport(&a, NARROW).await;
    browser.screenshot(&a, "narrow-chat-dark").await;
    browser.dark(&a, false).await;
    // On a narrow window the list and the conversation are two screens.
    let layout = "(() => { const v = (id) => getComputedStyle(document.getElementById(id)).display !== 'none'; return [v('sidebar'), v('chat')]; })()";
    assert_eq!(browser.eval(&a, layout).await, json!([false, true]));
    assert_eq!(browser.eval(&a, "document.documentElement.scrollWidth <= 360").await, json!(true));
    browser.click(&a, "#back-button").await;
    assert_eq!(browser.eval(&a, layout).await, json!([true, false]));
    browser.screenshot(&a, "narrow-list").await;

    browser.assert_clean();
    eprintln!("two_users_add_each_other_verify_and_chat_live: {:?}", started.elapsed());
}

/// A small PNG drawn by the page itself, as bytes in base64.
const DRAW_PNG: &str = "(async () => {
    const c = document.createElement('canvas'); c.width = 96; c.height = 64;
    const g = c.getContext('2d'); g.fillStyle = '#2c6bed'; g.fillRect(0, 0, 96, 64);
    g.fillStyle = '#ffb000'; g.fillRect(16, 16, 32, 32);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let s = ''; for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
})()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_images_and_vanishing_messages_go_across() {
    let started = Instant::now();
    let (_relays, alice, bob) = two_users().await;
    let mut browser = Browser::launch().await;
    let (a, b) = paired(&mut browser, &alice, &bob).await;
    let b64 = base64::engine::general_purpose::STANDARD;

    // A file by the picker: several chunks, random bytes.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; 300 * 1024 + 17];
    OsRng.try_fill_bytes(&mut bytes).unwrap();
    let path = dir.path().join("report.bin");
    std::fs::write(&path, &bytes).unwrap();
    // Through a slow link, so its upload's progress can be seen moving.
    browser.send(Some(&a.session), "Network.enable", json!({})).await;
    let throttle = |bytes_per_s: i64| json!({"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_s});
    browser.send(Some(&a.session), "Network.emulateNetworkConditions", throttle(200 * 1024)).await;
    browser.choose_file(&a, "#file-input", &path).await;
    let partial = browser
        .wait(
            &a,
            "(() => { const p = document.querySelector('#uploads progress'); return p && p.value > 0 && p.value < p.max && [p.value, p.max]; })()",
            "the upload's progress",
        )
        .await;
    assert_eq!(partial[1], json!(bytes.len()));
    browser.screenshot(&a, "upload-progress").await;
    browser.send(Some(&a.session), "Network.emulateNetworkConditions", throttle(-1)).await;
    browser
        .wait(&a, "document.querySelectorAll('#uploads li').length === 0", "the upload to end")
        .await;

    // An image by drag and drop.
    let png = browser.eval(&a, DRAW_PNG).await;
    let png = b64.decode(png.as_str().unwrap()).unwrap();
    browser
        .eval(
            &a,
            &format!(
                "(() => {{
                    const bytes = Uint8Array.from(atob({}), (c) => c.charCodeAt(0));
                    const data = new DataTransfer();
                    data.items.add(new File([bytes], 'picture.png', {{ type: 'image/png' }}));
                    const chat = document.getElementById('chat');
                    chat.dispatchEvent(new DragEvent('dragenter', {{ dataTransfer: data, bubbles: true }}));
                    chat.dispatchEvent(new DragEvent('drop', {{ dataTransfer: data, bubbles: true, cancelable: true }}));
                    return true;
                }})()",
                json!(b64.encode(&png))
            ),
        )
        .await;

    // Alice sees her own image at once; Bob's node fetches it by itself
    // (a small image) and shows it inline, decoded.
    browser
        .wait(&a, "[...document.querySelectorAll('.message.out img.inline-image')].some(i => i.complete && i.naturalWidth === 96)", "Alice's own image")
        .await;
    browser
        .wait(&b, "[...document.querySelectorAll('.message.in img.inline-image')].some(i => i.complete && i.naturalWidth === 96 && i.naturalHeight === 64)", "the image inline at Bob's")
        .await;
    // The file waits for Bob to accept it; then it can be saved, byte-equal.
    let offered = "[...document.querySelectorAll('.message.in')].find(m => m.querySelector('.file-name')?.textContent === 'report.bin')";
    browser
        .wait(&b, &format!("{offered}?.querySelector('button.accept')"), "the file's offer")
        .await;
    browser.click(&b, ".message.in button.accept").await;
    let href = browser
        .wait(
            &b,
            &format!("{offered}?.querySelector('a.download')?.getAttribute('href')"),
            "the file to arrive",
        )
        .await;
    let fetched = browser
        .eval(
            &b,
            &format!(
                "fetch({}).then(async (r) => {{
                    const bytes = new Uint8Array(await r.arrayBuffer());
                    let s = ''; for (const b of bytes) s += String.fromCharCode(b);
                    return [r.status, r.headers.get('content-disposition'), btoa(s)];
                }})",
                json!(href)
            ),
        )
        .await;
    assert_eq!(fetched[0], json!(200));
    assert!(fetched[1].as_str().unwrap().starts_with("attachment; filename=\"report.bin\""));
    assert!(b64.decode(fetched[2].as_str().unwrap()).unwrap() == bytes, "the saved file differs");
    // A file whose bytes are no image is never served inline.
    let refused = browser
        .eval(
            &b,
            &format!(
                "fetch({} + '/preview').then(async (r) => [r.status, (await r.json()).error.code])",
                json!(href)
            ),
        )
        .await;
    assert_eq!(refused, json!([415, "not_an_image"]));
    // The inline image is the very bytes Alice drew, served as an image.
    let preview = browser
        .eval(
            &b,
            "(async () => {
                const img = [...document.querySelectorAll('.message.in img.inline-image')][0];
                const r = await fetch(img.src);
                const bytes = new Uint8Array(await r.arrayBuffer());
                let s = ''; for (const b of bytes) s += String.fromCharCode(b);
                return [r.headers.get('content-type'), btoa(s)];
            })()",
        )
        .await;
    assert_eq!(preview[0], json!("image/png"));
    assert!(b64.decode(preview[1].as_str().unwrap()).unwrap() == png, "the image differs");
    browser.screenshot(&b, "files-and-image").await;

    // Vanishing messages: Alice sets 30 s; Bob's page learns of it; a
    // message then shows its time left on both sides and disappears from
    // both when it runs out.
    browser
        .eval(&a, "(() => { const s = document.getElementById('timer'); s.value = '30'; s.dispatchEvent(new Event('change')); return true; })()")
        .await;
    browser
        .wait(&b, "document.getElementById('timer').value === '30'", "Bob's timer to follow")
        .await;
    send_text(&mut browser, &a, "this will vanish").await;
    browser.wait(&b, &shows_message("in", "this will vanish"), "the vanishing message").await;
    let expiring = |direction: &str| {
        format!(
            "[...document.querySelectorAll('#messages .message.{direction}')].some(m => m.querySelector('.text')?.textContent === 'this will vanish' && /vanishes in \\d+s/.test(m.querySelector('.expiry')?.textContent))"
        )
    };
    browser.wait(&a, &expiring("out"), "the time left at Alice's").await;
    browser.wait(&b, &expiring("in"), "the time left at Bob's").await;
    // Bob's view was drawn again since: the image is still shown.
    browser
        .wait(&b, "[...document.querySelectorAll('.message.in img.inline-image')].some(i => i.complete && i.naturalWidth === 96)", "the image to stay inline")
        .await;
    browser.screenshot(&b, "vanishing").await;
    let gone_at = Instant::now();
    let gone = |direction: &str| format!("!({})", shows_message(direction, "this will vanish"));
    browser
        .wait_for(&a, &gone("out"), "the message to vanish at Alice's", Duration::from_secs(60))
        .await;
    browser
        .wait_for(&b, &gone("in"), "the message to vanish at Bob's", Duration::from_secs(60))
        .await;
    assert!(gone_at.elapsed() > Duration::from_secs(15), "it vanished too early");
    // The files sent before the timer stay.
    assert_eq!(browser.eval(&b, &format!("!!{offered}")).await, json!(true));

    browser.assert_clean();
    eprintln!("files_images_and_vanishing_messages_go_across: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_session_gets_the_login_screen_and_no_data() {
    let relays: Vec<Relay> = Vec::new();
    let alone = user(&relays).await;
    let base = format!("http://127.0.0.1:{}", alone.api.local_addr.port());
    let mut browser = Browser::launch().await;
    let page = browser.page("stranger").await;

    let login_shown = "!document.getElementById('login').hidden && document.getElementById('app').hidden && document.querySelectorAll('#conversations li').length === 0";
    let api_status = "fetch('/api/v1/contacts').then(r => r.status)";
    // No session at all.
    browser.goto(&page, &format!("{base}/")).await;
    browser.wait(&page, login_shown, "the login screen").await;
    let text = browser.eval(&page, "document.getElementById('login').textContent").await;
    assert!(text.as_str().unwrap().contains("xchat up"), "{text}");
    assert_eq!(browser.eval(&page, api_status).await, json!(401));
    browser.screenshot(&page, "login").await;

    // A made-up session cookie.
    let made_up = format!(
        "document.cookie = 'xchat_session_{}=' + '0'.repeat(64) + '; path=/'",
        alone.api.local_addr.port()
    );
    browser.eval(&page, &made_up).await;
    browser.goto(&page, &format!("{base}/?again")).await;
    browser.wait(&page, login_shown, "the login screen with a wrong session").await;
    assert_eq!(browser.eval(&page, api_status).await, json!(401));

    // A used login link buys nothing either.
    log_in(&mut browser, &page, &alone).await;
    let other = browser.page("other").await;
    browser.goto(&other, alone.api.login_url.expose()).await;
    browser.wait(&other, login_shown, "the login screen after a used link").await;
    let detail = browser.eval(&other, "document.getElementById('login-detail').textContent").await;
    assert_eq!(detail, json!("That login link was already used, or has expired."));
    assert_eq!(browser.eval(&other, api_status).await, json!(401));

    // A contact whose key changed: a banner until acknowledged.
    let add = |name: &str, address: String| {
        format!(
            "fetch('/api/v1/contacts', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({})}}).then(r => r.json())",
            json!({"name": name, "address": address})
        )
    };
    let first = browser.eval(&page, &add("Carol", stranger())).await;
    assert_eq!(first["outcome"], json!("new"));
    let changed = browser.eval(&page, &add("Carol", stranger())).await;
    assert_eq!(changed["outcome"], json!("key_changed"));
    browser.goto(&page, &format!("{base}/")).await;
    browser.wait(&page, "document.body.dataset.ready === 'true'", "the app").await;
    browser.click(&page, "#conversations .conversation").await;
    let banner = browser
        .wait(&page, "!document.getElementById('key-banner').hidden && document.getElementById('key-banner-text').textContent", "the key-change banner")
        .await;
    assert!(banner.as_str().unwrap().contains("Carol's safety number changed"), "{banner}");
    browser.screenshot(&page, "key-changed").await;
    browser.click(&page, "#key-acknowledge").await;
    browser.wait(&page, "document.getElementById('key-banner').hidden", "the banner to go").await;

    // Keyboard only: Tab walks the controls in reading order; Enter opens
    // a dialog, Escape closes it and gives the focus back.
    browser.eval(&page, "document.getElementById('me-button').focus()").await;
    let mut walked = Vec::new();
    for _ in 0..10 {
        browser.press(&page, "Tab", 9).await;
        let focused = browser
            .eval(&page, "document.activeElement.id || document.activeElement.className")
            .await;
        walked.push(focused.as_str().unwrap().to_owned());
    }
    assert_eq!(
        walked,
        [
            "add-button",
            "conversation selected",
            "timer",
            "call-audio-button",
            "call-video-button",
            "safety-button",
            "timeline",
            "file-input",
            "text",
            "send-button"
        ]
    );
    browser.eval(&page, "document.getElementById('add-button').focus()").await;
    browser.press_enter(&page, false).await;
    browser.wait(&page, "document.getElementById('add-dialog').open && document.activeElement.id === 'add-address'", "the dialog, focused").await;
    browser.press(&page, "Escape", 27).await;
    browser.wait(&page, "!document.getElementById('add-dialog').open && document.activeElement.id === 'add-button'", "the dialog closed, focus back").await;

    // The daemon restarts its API (same port, sessions forgotten): the
    // events socket drops, the page finds its session gone and says so;
    // the new login link brings it back.
    let addr = alone.api.local_addr;
    let User { _home, dir, node, api: old } = alone;
    old.shutdown().await;
    let api = api::serve(node.handle.clone(), &dir, ApiConfig { bind: addr, allow_remote: false })
        .await
        .unwrap();
    browser
        .wait(
            &page,
            "!document.getElementById('login').hidden && document.getElementById('login-detail').textContent.includes('no longer knows this session')",
            "the login screen after the restart",
        )
        .await;
    browser.goto(&page, api.login_url.expose()).await;
    browser.wait(&page, "document.body.dataset.ready === 'true'", "the app again").await;
    let _alone = User { _home, dir, node, api };

    // The page and its assets carry the policy that keeps them to this
    // origin, and the logged-in page runs under it without a violation.
    let headers = browser
        .eval(
            &page,
            "Promise.all(['/', '/assets/app.js', '/assets/style.css'].map(u => fetch(u).then(r => [r.headers.get('content-security-policy'), r.headers.get('x-content-type-options'), r.headers.get('referrer-policy'), r.headers.get('content-type')])))",
        )
        .await;
    for answer in headers.as_array().unwrap() {
        let csp = answer[0].as_str().unwrap();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self';"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("connect-src 'self'"));
        assert_eq!(answer[1], json!("nosniff"));
        assert_eq!(answer[2], json!("no-referrer"));
    }
    assert_eq!(headers[1][3], json!("text/javascript; charset=utf-8"));
    // The policy is enforced, and this test would see a violation: an
    // inline style and an inline script put into the page are refused.
    let probe = browser.page("probe").await;
    browser.goto(&probe, &format!("{base}/")).await;
    let ran = browser
        .eval(
            &probe,
            "(() => { document.body.setAttribute('style', 'color: red'); const s = document.createElement('script'); s.textContent = 'window.injected = true'; document.body.append(s); return [window.injected === true, getComputedStyle(document.body).color]; })()",
        )
        .await;
    assert_eq!(ran[0], json!(false), "an inline script ran");
    assert_ne!(ran[1], json!("rgb(255, 0, 0)"), "an inline style applied");
    let deadline = Instant::now() + WAIT;
    while browser.problems.iter().filter(|(session, _)| *session == probe.session).count() < 2 {
        assert!(Instant::now() < deadline, "the CSP violations were not reported");
        // Events arrive with answers: ask something.
        browser.eval(&probe, "1").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    browser.problems.retain(|(session, _)| *session != probe.session);
    // Text shown from data never becomes markup.
    browser.assert_clean();
}

/// Messages in the long conversation (the issue's speed target is for
/// opening one of 10,000 in under 200 ms).
const LONG_CONVERSATION: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_opens_fast_and_keeps_the_dom_bounded() {
    let relays: Vec<Relay> = Vec::new();
    let alone = user(&relays).await;
    let handle = alone.node.handle.clone();
    let address = Address::parse(&stranger()).unwrap();
    let contact = match handle
        .command(xchat_core::io::Input::ContactAdded { name: "Dave".into(), address })
        .await
        .unwrap()
    {
        xchat_core::io::Done::Contact(added) => match added {
            xchat_core::contact::Added::New(id) => id,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    // Many commands in flight: the node commits them in groups.
    let filled = Instant::now();
    let sends = (0..LONG_CONVERSATION).map(|i| {
        let handle = handle.clone();
        async move {
            handle
                .command(xchat_core::io::Input::TextSent { contact, text: format!("message {i}") })
                .await
                .unwrap();
        }
    });
    futures::stream::iter(sends).buffer_unordered(64).collect::<Vec<()>>().await;
    eprintln!("{LONG_CONVERSATION} messages written in {:?}", filled.elapsed());

    let mut browser = Browser::launch().await;
    let page = browser.page("long").await;
    log_in(&mut browser, &page, &alone).await;
    // Time to interactive of a first load, as the page measured it.
    browser.goto(&page, &format!("http://127.0.0.1:{}/", alone.api.local_addr.port())).await;
    browser.wait(&page, "document.body.dataset.ready === 'true'", "the app").await;
    let ready =
        browser.eval(&page, "performance.getEntriesByName('xchat-ready')[0].startTime").await;
    eprintln!("first load to interactive: {:.0} ms", ready.as_f64().unwrap());
    let timings = browser
        .eval(&page, "performance.getEntriesByType('resource').map(e => `${new URL(e.name).pathname} ${e.startTime.toFixed(0)}+${e.duration.toFixed(0)} ms`)")
        .await;
    eprintln!("where the first load's time went: {timings:#}");
    // From the click to the newest page drawn, timed in the page.
    let opened = browser
        .eval(
            &page,
            "(async () => {
                const t0 = performance.now();
                document.querySelector('#conversations .conversation').click();
                while (document.querySelectorAll('#messages li').length < 100) {
                    await new Promise((r) => requestAnimationFrame(r));
                }
                return performance.now() - t0;
            })()",
        )
        .await;
    let opened_ms = opened.as_f64().unwrap();
    // The app's own measure: from the click's handler to the page drawn.
    let measured =
        browser.eval(&page, "performance.getEntriesByName('xchat-open')[0].duration").await;
    eprintln!("of which the app measured (xchat-open): {:.0} ms", measured.as_f64().unwrap());
    eprintln!("opening the {LONG_CONVERSATION}-message conversation: {opened_ms:.0} ms");
    let timings = browser
        .eval(&page, "performance.getEntriesByType('resource').filter(e => e.name.includes('/conversations/')).map(e => `${new URL(e.name).pathname} ${e.duration.toFixed(0)} ms`)")
        .await;
    eprintln!("of which the API calls: {timings:#}");
    // The figures are reported, never asserted (speed is a benchmark's
    // business); a UI that renders everything fails the DOM bound below.

    // Scrolling up pages the whole history in, every message is shown on
    // the way, and the DOM stays bounded.
    let scrolled = browser
        .eval(
            &page,
            "(async () => {
                const timeline = document.getElementById('timeline');
                const status = document.getElementById('history-status');
                const seen = new Set();
                let most = 0;
                for (let i = 0; i < 2000; i += 1) {
                    timeline.scrollTop = 0;
                    timeline.dispatchEvent(new Event('scroll'));
                    await new Promise((r) => setTimeout(r, 5));
                    const shown = document.querySelectorAll('#messages .text');
                    most = Math.max(most, shown.length);
                    for (const t of shown) seen.add(t.textContent);
                    if (status.textContent === 'The beginning of the conversation.') break;
                }
                return [most, seen.size, status.textContent];
            })()",
        )
        .await;
    let most = scrolled[0].as_u64().unwrap();
    assert!(most <= 150, "{most} messages in the DOM at once");
    assert_eq!(scrolled[1], json!(LONG_CONVERSATION), "not every message was shown: {scrolled}");
    assert_eq!(scrolled[2], json!("The beginning of the conversation."));
    // Far up, a button leads back to the newest messages.
    browser.wait(&page, "!document.getElementById('jump-button').hidden", "the jump button").await;
    browser.click(&page, "#jump-button").await;
    let newest = browser
        .wait(
            &page,
            "(() => { const t = document.getElementById('timeline'); return t.scrollHeight - t.scrollTop - t.clientHeight < 48 && document.getElementById('jump-button').hidden && document.querySelectorAll('#messages li').length; })()",
            "the newest messages again",
        )
        .await;
    assert!(newest.as_u64().unwrap() <= 150, "{newest}");
    let last = browser
        .eval(&page, "document.querySelector('#messages li:last-child .text').textContent")
        .await;
    let listed =
        browser.eval(&page, "document.querySelector('#conversations .last').textContent").await;
    assert_eq!(format!("You: {}", last.as_str().unwrap()), listed.as_str().unwrap());
    browser.assert_clean();
}

// ---------- calls ----------

/// The expression: the call screen's state (`incoming`, `ringing`,
/// `connecting`, `connected`, `ended`), or null while none was shown.
const CALL_STATE: &str = "(document.getElementById('call-screen').dataset.state || null)";

/// The expression: the kinds of the open conversation's call log entries.
const CALL_LOG: &str =
    "[...document.querySelectorAll('#call-log .call-entry')].map(e => e.dataset.kind)";

/// The expression: the active call's received media, once video frames
/// were decoded and audio packets received beyond `frames` and `packets`.
fn media_beyond(frames: u64, packets: u64) -> String {
    format!(
        "(async () => {{ const s = await window.xchatCall.stats(); \
         return s && s.framesDecoded > {frames} && s.audioPackets > {packets} ? s : null; }})()"
    )
}

/// The first missed call's entry in the open conversation's history.
const MISSED_ENTRY: &str = "document.querySelector('#messages .call-entry[data-call=\"missed\"]')";

async fn wait_for_log(browser: &mut Browser, page: &Page, kind: &str) {
    browser
        .wait(page, &format!("{CALL_LOG}.includes({})", json!(kind)), &format!("a `{kind}` call"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_call_connects_both_ways_and_hangs_up() {
    let started = Instant::now();
    let (_relays, alice, bob) = two_users().await;
    let mut browser = Browser::launch().await;
    let (a, b) = paired(&mut browser, &alice, &bob).await;
    let setup = started.elapsed();

    // Alice calls (video); Bob's page rings, with the warning an unverified
    // contact's call carries.
    browser.click(&a, "#call-video-button").await;
    browser.wait(&b, &format!("{CALL_STATE} === 'incoming'"), "the incoming call").await;
    let warning = browser
        .eval(&b, "(() => { const w = document.getElementById('call-warning'); return w.hidden ? '' : w.textContent; })()")
        .await;
    assert!(warning.as_str().unwrap().contains("not verified"), "{warning}");
    assert_eq!(browser.eval(&b, "document.getElementById('call-peer').textContent").await, "Alice");
    browser.screenshot(&b, "call-incoming").await;
    let rang = Instant::now();
    browser.click(&b, "#call-accept").await;

    // Both sides decode the other's video and receive its audio, and keep
    // doing so: the counters grow.
    let mut seen = Vec::new();
    for page in [&a, &b] {
        let stats = browser.wait(page, &media_beyond(0, 0), "media from the other side").await;
        seen.push((
            stats["framesDecoded"].as_u64().unwrap(),
            stats["audioPackets"].as_u64().unwrap(),
        ));
    }
    let connected = rang.elapsed();
    for (page, (frames, packets)) in [&a, &b].into_iter().zip(seen) {
        browser
            .wait(page, &media_beyond(frames + 10, packets + 10), "the media to keep flowing")
            .await;
        assert_eq!(browser.eval(page, CALL_STATE).await, "connected");
    }
    browser
        .wait(
            &a,
            "/^\\d+:\\d\\d$/.test(document.getElementById('call-status').textContent)",
            "the call timer",
        )
        .await;
    browser.screenshot(&a, "call-video").await;

    // Mute and camera off say so; pressed again, they are undone.
    for button in ["#call-mute", "#call-camera"] {
        for pressed in ["true", "false"] {
            browser.click(&a, button).await;
            let state = browser
                .eval(
                    &a,
                    &format!(
                        "document.querySelector({}).getAttribute('aria-pressed')",
                        json!(button)
                    ),
                )
                .await;
            assert_eq!(state, pressed, "{button}");
        }
    }

    // Alice hangs up: both sides end the call, and log it with its length.
    browser.click(&a, "#call-hangup").await;
    for page in [&a, &b] {
        browser.wait(page, &format!("{CALL_STATE} === 'ended'"), "the call to end").await;
        wait_for_log(&mut browser, page, "ended").await;
        assert_eq!(browser.eval(page, "window.xchatCall.stats()").await, Value::Null, "closed");
    }
    browser.assert_clean();
    eprintln!(
        "a_video_call_connects_both_ways_and_hangs_up: {:?} (setup {setup:?}, accept to media both ways {connected:?})",
        started.elapsed()
    );
}

/// An offer as a browser makes it (its content does not matter to the node).
const SOME_OFFER: &str =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";

/// Also shows a declined call and a missed call in the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_offer_is_refused() {
    use xchat_core::io::{Input, Refusal};
    use xchat_proto::content::{CallId, CallSignal, Sdp, Signal};

    let started = Instant::now();
    let (relays, alice, bob) = two_users().await;
    let carol = user(&relays).await;
    tokio::time::timeout(WAIT, carol.node.handle.published()).await.unwrap().unwrap();
    let mut browser = Browser::launch().await;
    let (a, b) = paired(&mut browser, &alice, &bob).await;
    let refused = |kind: Refusal| {
        let handle = bob.node.handle.clone();
        async move {
            handle.read(move |m, _| m.refusals().get(&kind).copied().unwrap_or(0)).await.unwrap()
        }
    };

    // Carol is not Bob's contact: her offer, sealed and sent over the
    // network by her node from a real session with Bob's published keys,
    // is refused by Bob's node.
    let added = carol
        .node
        .handle
        .command(Input::ContactAdded { name: "Bob".into(), address: bob.node.handle.address() })
        .await
        .unwrap();
    let xchat_core::io::Done::Contact(xchat_core::contact::Added::New(bob_at_carol)) = added else {
        panic!("{added:?}")
    };
    let offer = CallSignal {
        call_id: CallId::from_bytes([7; 16]),
        signal: Signal::Offer(Sdp::new(SOME_OFFER.into()).unwrap()),
    };
    carol
        .node
        .handle
        .command(Input::CallSignalSent { contact: bob_at_carol, signal: offer })
        .await
        .unwrap();
    // And an envelope injected at Bob's node that is no sealed message at
    // all (bit-flipped sealed messages are refused in the core's tests).
    let mut forged = SOME_OFFER.as_bytes().to_vec();
    forged.insert(0, 0x0a);
    bob.node.handle.command(Input::EnvelopeReceived { envelope: forged }).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while refused(Refusal::UnknownSender).await == 0 {
        assert!(Instant::now() < deadline, "Carol's offer never reached Bob's node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused(Refusal::Malformed).await + refused(Refusal::Undecryptable).await >= 1);
    // A moment for anything that would wrongly reach the page.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(browser.eval(&b, CALL_STATE).await, Value::Null, "Bob's page never rang");
    assert_eq!(browser.eval(&b, "document.body.classList.contains('ringing')").await, false);

    // Alice's honest offer still rings; Bob declines it.
    browser.click(&a, "#call-audio-button").await;
    browser.wait(&b, &format!("{CALL_STATE} === 'incoming'"), "Alice's call").await;
    browser.click(&b, "#call-decline").await;
    wait_for_log(&mut browser, &b, "declined").await;
    wait_for_log(&mut browser, &a, "rejected").await;
    browser.wait(&a, &format!("{CALL_STATE} === 'ended'"), "Alice's call to end").await;

    // Alice calls again and gives up before Bob answers: a missed call.
    browser.click(&a, "#call-video-button").await;
    browser.wait(&a, &format!("{CALL_STATE} === 'ringing'"), "Alice's second call to ring").await;
    browser.wait(&b, &format!("{CALL_STATE} === 'incoming'"), "Alice's second call").await;
    browser.click(&a, "#call-hangup").await;
    // The missed call is an entry of Bob's history, written by his node.
    browser.wait(&b, &format!("!!{MISSED_ENTRY}"), "a missed call in Bob's history").await;
    wait_for_log(&mut browser, &a, "unanswered").await;
    browser.wait(&b, &format!("{CALL_STATE} === 'ended'"), "the ringing to stop").await;
    let status = browser.eval(&b, "document.getElementById('call-status').textContent").await;
    assert_eq!(status, json!("Missed call"));
    browser.click(&b, "#call-close").await;
    browser.screenshot(&b, "call-missed").await;
    let texts = browser
        .eval(&b, "[...document.querySelectorAll('#call-log .call-text')].map(e => e.textContent)")
        .await;
    assert_eq!(texts, json!(["You declined a call · Audio"]), "the page's log of calls taken");
    let missed = browser.eval(&b, &format!("{MISSED_ENTRY}.textContent")).await;
    assert!(missed.as_str().is_some_and(|text| text.starts_with("Missed video call")), "{missed}");
    // Both are still there after a reload: the entry from the node's
    // history, the log from the page's storage.
    browser.goto(&b, &format!("http://{}/", bob.api.local_addr)).await;
    browser.wait(&b, "document.body.dataset.ready === 'true'", "the app again").await;
    browser
        .wait(
            &b,
            "document.querySelector('#conversations .last')?.textContent === 'Missed video call'",
            "the missed call as the conversation's last message",
        )
        .await;
    browser.click(&b, "#conversations button").await;
    browser.wait(&b, &format!("!!{MISSED_ENTRY}"), "the missed call after a reload").await;
    wait_for_log(&mut browser, &b, "declined").await;

    browser.assert_clean();
    eprintln!("a_tampered_offer_is_refused: {:?}", started.elapsed());
}
