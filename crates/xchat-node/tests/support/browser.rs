//! A small Chrome DevTools Protocol client driving Debian's headless
//! Chromium, for the browser tests (`tests/web.rs`) and the web UI's
//! benchmark (`benches/web.rs`).
//!
//! Every wait is a poll with a deadline; a wait that gives up saves a
//! screenshot to `target/screenshots/` and shows the page's log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

/// Generous: a loaded 2-core machine compiles other crates while this runs.
pub(crate) const WAIT: Duration = Duration::from_secs(90);
/// The viewport of a new page.
pub(crate) const WIDE: (u32, u32) = (1100, 720);

/// Headless Chromium and one DevTools connection to it.
pub(crate) struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    /// Script exceptions and CSP violations, by page session: a test ends
    /// by checking there were none.
    pub(crate) problems: Vec<(String, String)>,
    /// Every console and log line, by page session, shown when a wait
    /// gives up.
    log: Vec<(String, String)>,
}

/// One page (tab) in a browser context of its own.
#[derive(Clone)]
pub(crate) struct Page {
    #[allow(dead_code, reason = "read by `cookies` and `close`, which only the benchmark uses")]
    context: Value,
    pub(crate) session: String,
    pub(crate) name: &'static str,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// The Chromium program on the `PATH`, if any.
    pub(crate) fn program() -> Option<&'static str> {
        ["chromium", "chromium-browser"].into_iter().find(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    pub(crate) async fn launch() -> Self {
        let binary = Self::program().unwrap_or_else(|| {
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
    pub(crate) async fn send(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Value {
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
    pub(crate) async fn page(&mut self, name: &'static str) -> Page {
        self.page_with_cookies(name, json!([])).await
    }

    /// A new page in a browser context of its own that starts with
    /// `cookies` (as [`Browser::cookies`] gives them): logged in already,
    /// with an empty cache and storage.
    pub(crate) async fn page_with_cookies(&mut self, name: &'static str, cookies: Value) -> Page {
        let created = self.send(None, "Target.createBrowserContext", json!({})).await;
        let context = created["browserContextId"].clone();
        if cookies.as_array().is_some_and(|c| !c.is_empty()) {
            self.send(
                None,
                "Storage.setCookies",
                json!({"cookies": cookies, "browserContextId": context}),
            )
            .await;
        }
        let target = self
            .send(
                None,
                "Target.createTarget",
                json!({"url": "about:blank", "browserContextId": context}),
            )
            .await;
        let attached = self
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        let page = Page { context, session, name };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.send(Some(&page.session), domain, json!({})).await;
        }
        self.viewport(&page, WIDE).await;
        page
    }

    /// The cookies of `page`'s browser context (the session's among them:
    /// DevTools sees `HttpOnly` cookies too), to start other pages with.
    #[allow(dead_code, reason = "the benchmark's")]
    pub(crate) async fn cookies(&mut self, page: &Page) -> Value {
        let found =
            self.send(None, "Storage.getCookies", json!({"browserContextId": page.context})).await;
        // Only the fields `Storage.setCookies` takes back.
        let keep = ["name", "value", "domain", "path", "httpOnly", "secure", "sameSite"];
        let cookies = found["cookies"].as_array().unwrap().iter().map(|cookie| {
            let fields = keep.iter().map(|k| ((*k).to_owned(), cookie[k].clone()));
            Value::Object(fields.collect())
        });
        Value::Array(cookies.collect())
    }

    /// Closes `page` and its browser context.
    #[allow(dead_code, reason = "the benchmark's")]
    pub(crate) async fn close(&mut self, page: Page) {
        self.send(None, "Target.disposeBrowserContext", json!({"browserContextId": page.context}))
            .await;
    }

    pub(crate) async fn viewport(&mut self, page: &Page, (width, height): (u32, u32)) {
        self.send(
            Some(&page.session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
    }

    pub(crate) async fn dark(&mut self, page: &Page, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.send(
            Some(&page.session),
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    pub(crate) async fn goto(&mut self, page: &Page, url: &str) {
        self.send(Some(&page.session), "Page.navigate", json!({"url": url})).await;
        self.wait(
            page,
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            "the page to load",
        )
        .await;
    }

    /// Opens a login link and waits for the app.
    pub(crate) async fn log_in(&mut self, page: &Page, login_url: &str) {
        self.goto(page, login_url).await;
        self.wait(page, "document.body.dataset.ready === 'true'", "the app to be ready").await;
        let app = self.eval(page, "!document.getElementById('app').hidden").await;
        assert_eq!(app, json!(true), "{}: the app is not shown after logging in", page.name);
    }

    /// The value of a JavaScript expression (awaited if it is a promise).
    pub(crate) async fn eval(&mut self, page: &Page, expression: &str) -> Value {
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
    pub(crate) async fn wait(&mut self, page: &Page, expression: &str, what: &str) -> Value {
        self.wait_for(page, expression, what, WAIT).await
    }

    pub(crate) async fn wait_for(
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

    pub(crate) async fn click(&mut self, page: &Page, selector: &str) {
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
    pub(crate) async fn type_into(&mut self, page: &Page, selector: &str, text: &str) {
        self.eval(page, &format!("document.querySelector({}).focus()", json!(selector))).await;
        self.send(Some(&page.session), "Input.insertText", json!({"text": text})).await;
    }

    /// Presses a key that types nothing (Tab, Escape, Enter on a button).
    pub(crate) async fn press(&mut self, page: &Page, key: &str, code: u32) {
        for kind in ["rawKeyDown", "keyUp"] {
            self.send(
                Some(&page.session),
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code}),
            )
            .await;
        }
    }

    pub(crate) async fn press_enter(&mut self, page: &Page, shift: bool) {
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
    pub(crate) async fn choose_file(&mut self, page: &Page, selector: &str, path: &Path) {
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
    pub(crate) async fn screenshot(&mut self, page: &Page, name: &str) -> PathBuf {
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
    pub(crate) fn assert_clean(&self) {
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
