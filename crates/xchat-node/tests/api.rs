#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The local API over real HTTP on loopback, in front of real nodes: who
//! may call it (token, login code and cookie, Host and Origin), what bad
//! input gets back, and two nodes that add each other and talk only
//! through their APIs, one of them listening on the events WebSocket.
//!
//! The OpenAPI document committed as `docs/openapi.json` is checked fresh
//! here too; after changing the API, regenerate it with:
//!
//! ```sh
//! UPDATE_GENERATED=1 cargo test -p xchat-node --test api openapi
//! ```

// The relays and the network settings the browser tests use too.
#[allow(dead_code, reason = "this file uses a part of it")]
#[path = "support/nodes.rs"]
mod nodes;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use nodes::{BITS, network, relays};
use rand_core::{OsRng, UnwrapErr};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use xchat_crypto::address::Address;
use xchat_crypto::phrase::RecoveryPhrase;
use xchat_crypto::signature::SigningKey;
use xchat_node::api::{self, Api, ApiConfig};
use xchat_node::{NodeConfig, Profile, ProfileDir, Relay, RunningNode, Unlock};

/// Generous: a loaded 2-core machine compiles other crates while this runs.
const WAIT: Duration = Duration::from_secs(120);

fn start(dir: &ProfileDir, relays: &[Relay]) -> RunningNode {
    let profile = if dir.exists() {
        Profile::open(dir.clone(), None).unwrap()
    } else {
        let phrase = RecoveryPhrase::generate(&mut UnwrapErr(OsRng));
        let now = xchat_node::now_ms();
        Profile::create(dir.clone(), &phrase, &Unlock::KeyFile, now, &mut UnwrapErr(OsRng)).unwrap()
    };
    xchat_node::start(profile, NodeConfig { network: network(relays), stamp_bits: BITS }).unwrap()
}

/// One node with its API, on its own (no relays: enough for everything
/// that does not leave the node).
struct Alone {
    _home: tempfile::TempDir,
    dir: ProfileDir,
    node: RunningNode,
    api: Api,
}

async fn alone() -> Alone {
    let home = tempfile::tempdir().unwrap();
    let dir = ProfileDir::new(home.path().join("profile"));
    let node = start(&dir, &[]);
    let api = api::serve(node.handle.clone(), &dir, ApiConfig::default()).await.unwrap();
    Alone { _home: home, dir, node, api }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    /// The body as text (lossy).
    body: String,
    /// The body's bytes.
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }

    /// The error code, after checking the status.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        self.json()["error"]["code"].as_str().unwrap_or_else(|| panic!("{self:?}")).to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A blocking HTTP client (`ureq`), run off the async workers.
#[derive(Clone)]
struct Client {
    base: String,
    headers: Vec<(String, String)>,
}

impl Client {
    fn new(api: &Api) -> Self {
        Self::bare(api.local_addr).with("authorization", &format!("Bearer {}", api.token.expose()))
    }

    fn bare(addr: SocketAddr) -> Self {
        Self { base: format!("http://127.0.0.1:{}", addr.port()), headers: Vec::new() }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(body.to_string().into_bytes())).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(body.to_string().into_bytes())).await
    }

    async fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Reply {
        self.send(method, path, body.map(|b| (b, Some("application/json")))).await
    }

    /// Uploads `bytes` as a file's body, of `media_type` when given.
    async fn upload(&self, path: &str, bytes: Vec<u8>, media_type: Option<&'static str>) -> Reply {
        self.send("POST", path, Some((bytes, media_type))).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(Vec<u8>, Option<&'static str>)>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let method = method.to_owned();
        let headers = self.headers.clone();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .max_redirects_will_error(false)
                .timeout_global(Some(WAIT))
                .build()
                .into();
            let mut request = ureq::http::Request::builder().method(method.as_str()).uri(url);
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            let response = match body {
                Some((body, Some(media_type))) => {
                    agent.run(request.header("content-type", media_type).body(body).unwrap())
                }
                Some((body, None)) => agent.run(request.body(body).unwrap()),
                None => agent.run(request.body(()).unwrap()),
            }
            .unwrap();
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let mut body = response.into_body();
            let bytes = body.with_config().limit(64 << 20).read_to_vec().unwrap();
            let body = String::from_utf8_lossy(&bytes).into_owned();
            Reply { status, headers, body, bytes }
        })
        .await
        .unwrap()
    }
}

/// A request written by hand, to send a Host header no client library
/// would.
fn raw_get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, answer)
}

/// An address that is no one's here.
fn stranger() -> String {
    Address::from_key(SigningKey::generate(&mut UnwrapErr(OsRng)).verifying_key()).to_string()
}

const UNKNOWN: &str = "00000000000000000000000000000000";

/// Every route, with a body where it takes one.
fn routes() -> Vec<(&'static str, String, Option<Value>)> {
    let c = format!("/api/v1/contacts/{UNKNOWN}");
    let v = format!("/api/v1/conversations/{UNKNOWN}");
    vec![
        ("GET", "/api/v1/identity".into(), None),
        ("GET", "/api/v1/identity/qr.svg".into(), None),
        ("GET", "/api/v1/contacts".into(), None),
        ("POST", "/api/v1/contacts".into(), Some(json!({"name": "x", "address": stranger()}))),
        ("GET", format!("{c}/safety-number"), None),
        ("POST", format!("{c}/verify"), None),
        ("POST", format!("{c}/acknowledge-key-change"), None),
        ("GET", "/api/v1/conversations".into(), None),
        ("GET", format!("{v}/messages"), None),
        ("POST", format!("{v}/messages"), Some(json!({"text": "hi"}))),
        ("PUT", format!("{v}/timer"), Some(json!({"seconds": 60}))),
        ("POST", format!("{v}/read"), Some(json!({"ids": []}))),
        (
            "POST",
            format!("{v}/call"),
            Some(json!({"call_id": UNKNOWN, "signal": {"type": "hang_up", "reason": "normal"}})),
        ),
        ("POST", format!("{v}/files?name=x.txt"), Some(json!("some bytes"))),
        ("GET", format!("{v}/files"), None),
        ("GET", format!("/api/v1/files/{UNKNOWN}"), None),
        ("GET", format!("/api/v1/files/{UNKNOWN}/preview"), None),
        ("POST", format!("/api/v1/files/{UNKNOWN}/accept"), None),
        ("POST", format!("/api/v1/files/{UNKNOWN}/cancel"), None),
        ("POST", "/api/v1/backup".into(), Some(json!({"path": "/tmp/never-written.xbackup"}))),
        ("GET", "/api/v1/events".into(), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_missing_or_wrong_token() {
    let t = alone().await;
    let wrong = format!("Bearer {}", "ab".repeat(32));
    let clients = [
        Client::bare(t.api.local_addr),
        Client::bare(t.api.local_addr).with("authorization", &wrong),
        Client::bare(t.api.local_addr).with("authorization", t.api.token.expose()),
        Client::bare(t.api.local_addr)
            .with("cookie", &format!("xchat_session={}", "ab".repeat(32))),
    ];
    for client in &clients {
        for (method, path, body) in routes() {
            let reply = client.call(method, &path, body.map(|b| b.to_string().into_bytes())).await;
            assert_eq!(reply.error(401), "unauthorized", "{method} {path}");
        }
    }
    // Nothing was added by the refused POST.
    let contacts = Client::new(&t.api).get("/api/v1/contacts").await;
    assert_eq!(contacts.json(), json!([]));
    t.node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_or_origin_is_forbidden_and_no_cors_header_is_sent() {
    let t = alone().await;
    let addr = t.api.local_addr;
    let port = addr.port();
    let auth = format!("Authorization: Bearer {}\r\n", t.api.token.expose());
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let (status, _) = raw_get(addr, "/api/v1/identity", &format!("Host: {host}\r\n{auth}"));
        assert_eq!(status, 200, "{host}");
    }
    for host in
        [format!("evil.example:{port}"), "127.0.0.1".into(), format!("127.0.0.1:{}", port ^ 1)]
    {
        let (status, answer) =
            raw_get(addr, "/api/v1/identity", &format!("Host: {host}\r\n{auth}"));
        assert_eq!(status, 403, "{host}");
        assert!(answer.contains("forbidden_host"), "{answer}");
    }
    // No Host at all (HTTP/1.0 style), and the login page too.
    let (status, _) = raw_get(addr, "/login?code=00", "");
    assert_eq!(status, 403);

    let client = Client::new(&t.api);
    for origin in ["http://evil.example", "null", &format!("https://127.0.0.1:{port}")] {
        let reply = client.clone().with("origin", origin).get("/api/v1/identity").await;
        assert_eq!(reply.error(403), "forbidden_origin", "{origin}");
    }
    for origin in [format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}")] {
        let reply = client.clone().with("origin", &origin).get("/api/v1/identity").await;
        assert_eq!(reply.status, 200, "{origin}");
        assert!(
            reply.headers.iter().all(|(name, _)| !name.starts_with("access-control-")),
            "{reply:?}"
        );
    }
    t.node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_is_private_and_new_at_each_start() {
    let t = alone().await;
    let file = t.dir.token_file();
    let first = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first.trim(), t.api.token.expose());
    assert_eq!(first.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!format!("{:?}", t.api).contains(t.api.token.expose()), "Debug shows the token");
    let old = Client::new(&t.api);
    assert_eq!(old.get("/api/v1/identity").await.status, 200);
    t.api.shutdown().await;

    let again = api::serve(t.node.handle.clone(), &t.dir, ApiConfig::default()).await.unwrap();
    let second = std::fs::read_to_string(&file).unwrap();
    assert_eq!(second.trim(), again.token.expose());
    assert_ne!(first, second);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let stale =
        Client::bare(again.local_addr).with("authorization", &format!("Bearer {}", first.trim()));
    assert_eq!(stale.get("/api/v1/identity").await.error(401), "unauthorized");
    assert_eq!(Client::new(&again).get("/api/v1/identity").await.status, 200);
    t.node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_is_refused_unless_allowed() {
    let t = alone().await;
    let config = ApiConfig { bind: "0.0.0.0:0".parse().unwrap(), allow_remote: false };
    let refused = api::serve(t.node.handle.clone(), &t.dir, config).await;
    assert!(matches!(refused, Err(api::ApiError::RemoteRefused(_))), "{refused:?}");
    t.node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_code_works_once_and_its_cookie_authorises() {
    let t = alone().await;
    let url = t.api.login_url.expose().to_owned();
    let port = t.api.local_addr.port();
    let path = url.strip_prefix(&format!("http://127.0.0.1:{port}")).unwrap().to_owned();
    assert!(!format!("{:?}", t.api.login_url).contains("code="));
    let browser = Client::bare(t.api.local_addr);

    let login = browser.get(&path).await;
    assert_eq!(login.status, 303, "{login:?}");
    assert_eq!(login.header("location"), Some("/"));
    let cookie = login.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let name = format!("xchat_session_{}=", t.api.local_addr.port());
    assert!(session.starts_with(&name), "{cookie}");

    let with_cookie = browser.clone().with("cookie", &session);
    let identity = with_cookie.get("/api/v1/identity").await;
    assert_eq!(identity.status, 200, "{identity:?}");
    assert_eq!(identity.json()["address"], t.node.handle.address().to_string());

    // The code is spent; a made-up one never worked.
    assert_eq!(browser.get(&path).await.error(401), "invalid_login_code");
    assert_eq!(browser.get("/login?code=abc").await.error(401), "invalid_login_code");
    assert_eq!(browser.get("/login").await.error(401), "invalid_login_code");
    // A browser opening it is sent to the web UI, which explains.
    let stale = browser.clone().with("accept", "text/html,application/xhtml+xml").get(&path).await;
    assert_eq!(stale.status, 303, "{stale:?}");
    assert_eq!(stale.header("location"), Some("/?login=failed"));
    assert!(stale.header("set-cookie").is_none());

    // A new code works (once) too.
    let fresh = t.api.new_login_url().unwrap();
    let fresh =
        fresh.expose().strip_prefix(&format!("http://127.0.0.1:{port}")).unwrap().to_owned();
    assert_eq!(browser.get(&fresh).await.status, 303);
    assert_eq!(browser.get(&fresh).await.error(401), "invalid_login_code");
    t.node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_a_stable_code() {
    let t = alone().await;
    let c = Client::new(&t.api);
    let own = t.node.handle.address().to_string();

    // Contacts.
    let add = |body: Value| {
        let c = c.clone();
        async move { c.post("/api/v1/contacts", body).await }
    };
    assert_eq!(
        add(json!({"name": "x", "address": "xchat1nope"})).await.error(400),
        "invalid_address"
    );
    assert_eq!(add(json!({"name": "x", "address": own})).await.error(400), "own_address");
    assert_eq!(add(json!({"name": "", "address": stranger()})).await.error(400), "invalid_name");
    assert_eq!(add(json!({"name": "x"})).await.error(400), "invalid_json");
    assert_eq!(
        c.call("POST", "/api/v1/contacts", Some(b"{".to_vec())).await.error(400),
        "invalid_json"
    );
    let bob = stranger();
    let added = add(json!({"name": "bob", "address": bob})).await;
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(added.json()["outcome"], "new");
    let id = added.json()["id"].as_str().unwrap().to_owned();
    let again = add(json!({"name": "bob", "address": bob})).await;
    assert_eq!((again.status, again.json()["outcome"].clone()), (201, json!("unchanged")));
    assert_eq!(again.json()["id"], id.as_str());
    assert_eq!(add(json!({"name": "bobby", "address": bob})).await.error(409), "address_taken");

    // Ids.
    for path in [
        "/api/v1/contacts/xyz/safety-number".to_owned(),
        format!("/api/v1/contacts/{}/safety-number", id.to_uppercase()),
        "/api/v1/conversations/0011/messages".to_owned(),
    ] {
        assert_eq!(c.get(&path).await.error(400), "invalid_id", "{path}");
    }
    let before = format!("/api/v1/conversations/{id}/messages?before=zz");
    assert_eq!(c.get(&before).await.error(400), "invalid_id");
    let read = format!("/api/v1/conversations/{id}/read");
    assert_eq!(c.post(&read, json!({"ids": ["nope"]})).await.error(400), "invalid_id");
    let too_many: Vec<String> = (0..1001).map(|_| UNKNOWN.to_owned()).collect();
    assert_eq!(c.post(&read, json!({"ids": too_many})).await.error(400), "too_many_ids");

    // Unknown contact, on every route that names one.
    let contact_routes =
        routes().into_iter().filter(|(_, p, _)| p.contains(UNKNOWN) && !p.contains("/files/"));
    for (method, path, body) in contact_routes {
        let reply = c.call(method, &path, body.map(|b| b.to_string().into_bytes())).await;
        assert_eq!(reply.error(404), "unknown_contact", "{method} {path}");
    }

    // Texts.
    let messages = format!("/api/v1/conversations/{id}/messages");
    assert_eq!(c.post(&messages, json!({"text": ""})).await.error(400), "invalid_text");
    let long = "a".repeat(xchat_proto::content::MAX_TEXT_BYTES + 1);
    assert_eq!(c.post(&messages, json!({"text": long})).await.error(400), "invalid_text");
    assert_eq!(c.post(&messages, json!({"text": 5})).await.error(400), "invalid_json");
    let huge = "a".repeat(api::MAX_BODY_BYTES + 1);
    assert_eq!(c.post(&messages, json!({"text": huge})).await.error(413), "body_too_large");
    let sent = c.post(&messages, json!({"text": "queued while bob is nowhere"})).await;
    assert_eq!(sent.status, 201, "{sent:?}");
    let sent_id = sent.json()["id"].as_str().unwrap().to_owned();

    // Call signals.
    let call = format!("/api/v1/conversations/{id}/call");
    let signal = |call_id: &str, signal: Value| json!({"call_id": call_id, "signal": signal});
    let offer = |sdp: String| json!({"type": "offer", "sdp": sdp});
    let hang_up = json!({"type": "hang_up", "reason": "normal"});
    for bad in ["xyz", "", "00112233445566778899AABBCCDDEEFF", "00112233445566778899aabbccddeeff00"]
    {
        let reply = c.post(&call, signal(bad, hang_up.clone())).await;
        assert_eq!(reply.error(400), "invalid_call_id", "{bad:?}");
    }
    let max = xchat_proto::content::MAX_SDP_BYTES;
    for sdp in [String::new(), "v".repeat(max + 1)] {
        let reply = c.post(&call, signal(UNKNOWN, offer(sdp))).await;
        assert_eq!(reply.error(400), "invalid_sdp");
    }
    let candidate = "c".repeat(xchat_proto::content::MAX_ICE_CANDIDATE_BYTES + 1);
    let ice = json!({"type": "ice_candidate", "candidate": candidate, "sdp_mid": "0"});
    assert_eq!(c.post(&call, signal(UNKNOWN, ice)).await.error(400), "invalid_ice_candidate");
    let ice = json!({"type": "ice_candidate", "candidate": "", "sdp_mid": ""});
    assert_eq!(c.post(&call, signal(UNKNOWN, ice)).await.error(400), "invalid_ice_candidate");
    for bad in [
        json!({"type": "ring"}),
        json!({"type": "hang_up", "reason": "bored"}),
        json!({"type": "offer"}),
        json!({"type": "offer", "sdp": "v=0", "extra": 1}),
    ] {
        assert_eq!(
            c.post(&call, signal(UNKNOWN, bad.clone())).await.error(400),
            "invalid_json",
            "{bad}"
        );
    }
    let huge = offer("v".repeat(api::MAX_BODY_BYTES + 1));
    assert_eq!(c.post(&call, signal(UNKNOWN, huge)).await.error(413), "body_too_large");
    let queued = c.post(&call, signal(UNKNOWN, offer("v=0\r\n".into()))).await;
    assert_eq!(queued.status, 202, "{queued:?}");
    let answer = json!({"type": "answer", "sdp": "v=0"});
    assert_eq!(c.post(&call, signal(UNKNOWN, answer)).await.status, 202);

    // History paging.
    for limit in ["0", "1001", "-1", "x"] {
        let reply = c.get(&format!("{messages}?limit={limit}")).await;
        assert!(reply.status == 400, "{limit}: {reply:?}");
        assert!(["invalid_limit", "invalid_query"].contains(&reply.error(400).as_str()));
    }
    let page = c.get(&format!("{messages}?limit=1")).await.json();
    assert_eq!(page[0]["id"], sent_id.as_str());
    assert_eq!(page[0]["direction"], "out");
    assert_eq!(page[0]["status"], "pending");
    let unknown_before = c.get(&format!("{messages}?before={UNKNOWN}")).await;
    assert_eq!(unknown_before.error(404), "unknown_message");
    assert_eq!(c.get(&format!("{messages}?before={sent_id}")).await.json(), json!([]));

    // Timers.
    let timer = format!("/api/v1/conversations/{id}/timer");
    for seconds in [json!(5), json!(-1), json!(100_000_000), json!("60")] {
        let reply = c.put(&timer, json!({"seconds": seconds})).await;
        assert!(
            ["invalid_timer", "invalid_json"].contains(&reply.error(400).as_str()),
            "{seconds}"
        );
    }
    assert_eq!(c.put(&timer, json!({"seconds": 60})).await.status, 204);
    let conversations = c.get("/api/v1/conversations").await.json();
    assert_eq!(conversations[0]["timer_seconds"], 60);
    assert_eq!(conversations[0]["last"]["id"], sent_id.as_str());
    assert_eq!(c.put(&timer, json!({"seconds": 0})).await.status, 204);
    assert_eq!(c.get("/api/v1/conversations").await.json()[0]["timer_seconds"], Value::Null);

    // The events route is a WebSocket only; unknown routes are JSON 404s.
    assert_eq!(c.get("/api/v1/events").await.error(400), "not_websocket");
    assert_eq!(c.get("/api/v1/nothing").await.error(404), "not_found");
    assert_eq!(c.call("DELETE", "/api/v1/contacts", None).await.error(405), "method_not_allowed");
    assert_eq!(c.get("/api/v1/contacts/%ff/safety-number").await.error(400), "invalid_id");
    t.node.handle.shutdown().await;
}

/// The next event of `kind` on the socket.
async fn next_event<S>(socket: &mut S, kind: &str) -> Value
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = socket.next().await.unwrap().unwrap();
            if let tungstenite::Message::Text(text) = frame {
                let event: Value = serde_json::from_str(text.as_str()).unwrap();
                if event["type"] == kind {
                    return event;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} event"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_add_each_other_and_talk_through_their_apis() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let relays = relays(3).await;
    let home = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) =
        (ProfileDir::new(home.path().join("alice")), ProfileDir::new(home.path().join("bob")));
    let alice = start(&alice_dir, &relays);
    let bob = start(&bob_dir, &relays);
    let alice_api =
        api::serve(alice.handle.clone(), &alice_dir, ApiConfig::default()).await.unwrap();
    let bob_api = api::serve(bob.handle.clone(), &bob_dir, ApiConfig::default()).await.unwrap();
    let (a, b) = (Client::new(&alice_api), Client::new(&bob_api));
    tokio::time::timeout(WAIT, alice.handle.published()).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, bob.handle.published()).await.unwrap().unwrap();

    let alice_id = a.get("/api/v1/identity").await.json();
    let bob_id = b.get("/api/v1/identity").await.json();
    assert_eq!(alice_id["address"], alice.handle.address().to_string());
    assert_eq!(alice_id["peer_id"], alice.handle.net().local_peer_id().to_string());
    assert_eq!(alice_id["device"].as_str().unwrap().len(), 32);

    // Bob listens for events before anything is sent.
    let mut request = format!("ws://127.0.0.1:{}/api/v1/events", bob_api.local_addr.port())
        .into_client_request()
        .unwrap();
    let bearer = format!("Bearer {}", bob_api.token.expose());
    request.headers_mut().insert("authorization", bearer.parse().unwrap());
    let (mut bob_events, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    let added =
        a.post("/api/v1/contacts", json!({"name": "bob", "address": bob_id["address"]})).await;
    assert_eq!(added.status, 201, "{added:?}");
    let bob_at_alice = added.json()["id"].as_str().unwrap().to_owned();
    let added =
        b.post("/api/v1/contacts", json!({"name": "alice", "address": alice_id["address"]})).await;
    assert_eq!(added.status, 201, "{added:?}");
    let alice_at_bob = added.json()["id"].as_str().unwrap().to_owned();

    let sent = a
        .post(
            &format!("/api/v1/conversations/{bob_at_alice}/messages"),
            json!({"text": "hello bob"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{sent:?}");
    let id = sent.json()["id"].as_str().unwrap().to_owned();

    let event = next_event(&mut bob_events, "message_received").await;
    let message = &event["message"];
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["contact"], alice_at_bob.as_str());
    assert_eq!(message["text"], "hello bob");
    assert_eq!(message["direction"], "in");
    assert_eq!(message["status"], "unread");
    assert_eq!(message["file"], Value::Null);

    let history = b.get(&format!("/api/v1/conversations/{alice_at_bob}/messages")).await.json();
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history[0]["id"], id.as_str());
    assert_eq!(history[0]["text"], "hello bob");
    let conversations = b.get("/api/v1/conversations").await.json();
    assert_eq!(conversations[0]["contact"], alice_at_bob.as_str());
    assert_eq!(conversations[0]["name"], "alice");
    assert_eq!(conversations[0]["unread"], 1);
    assert_eq!(conversations[0]["last"]["id"], id.as_str());

    // Bob reads it: no longer unread, and alice hears of it.
    let read =
        b.post(&format!("/api/v1/conversations/{alice_at_bob}/read"), json!({"ids": [id]})).await;
    assert_eq!(read.status, 204, "{read:?}");
    assert_eq!(b.get("/api/v1/conversations").await.json()[0]["unread"], 0);
    let mine = format!("/api/v1/conversations/{bob_at_alice}/messages");
    tokio::time::timeout(WAIT, async {
        while a.get(&mine).await.json()[0]["status"] != "read" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("alice never saw her message read");

    // Both see the same safety number; alice marks bob verified.
    let ours = a.get(&format!("/api/v1/contacts/{bob_at_alice}/safety-number")).await.json();
    let theirs = b.get(&format!("/api/v1/contacts/{alice_at_bob}/safety-number")).await.json();
    assert_eq!(ours, theirs);
    assert_eq!(ours["digits"].as_str().unwrap().len(), 60);
    assert_eq!(ours["groups"].as_array().unwrap().len(), 12);
    assert_eq!(
        a.call("POST", &format!("/api/v1/contacts/{bob_at_alice}/verify"), None).await.status,
        204
    );
    let contacts = a.get("/api/v1/contacts").await.json();
    assert_eq!(
        contacts,
        json!([{"id": bob_at_alice, "name": "bob", "address": bob_id["address"],
                "verified": true, "key_changed": false}])
    );

    // Stopping the API ends its WebSockets too (else it would wait for them).
    tokio::time::timeout(WAIT, bob_api.shutdown()).await.expect("the API waited for its WebSocket");
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(frame)) = bob_events.next().await {
            if frame.is_close() {
                break;
            }
        }
    })
    .await
    .expect("the WebSocket stayed open");
    alice.handle.shutdown().await;
    bob.handle.shutdown().await;
}

/// `text` with every byte but letters and digits percent-encoded, for a
/// query string.
fn query_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

/// Every path under `root`, but SQLite's journals (they come and go).
fn tree(root: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut found = std::collections::BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if ["-wal", "-shm", "-journal"].iter().any(|end| name.ends_with(end)) {
                continue;
            }
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.insert(path);
        }
    }
    found
}

fn is_id(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_backups_refuse_bad_input() {
    let t = alone().await;
    let c = Client::new(&t.api);
    let added = c.post("/api/v1/contacts", json!({"name": "bob", "address": stranger()})).await;
    let bob = added.json()["id"].as_str().unwrap().to_owned();
    let files_of_bob = format!("/api/v1/conversations/{bob}/files");
    let home = t.dir.root().parent().unwrap().to_path_buf();
    let files = t.node.handle.files().to_path_buf();

    // Names that would leave files/, or that no descriptor may carry.
    let before = tree(&home);
    for name in ["../../etc/passwd", "a/b", "a\\b", "..", ".", "", "bell\u{7}", "x\u{202e}txt.exe"]
    {
        let path = format!("{files_of_bob}?name={}", query_encode(name));
        let reply = c.upload(&path, b"root:x:0:0".to_vec(), Some("text/plain")).await;
        assert_eq!(reply.error(400), "invalid_file_name", "{name:?}");
    }
    let path = format!("{files_of_bob}?name=ok.txt");
    let reply = c.upload(&path, b"x".to_vec(), Some("not a media type")).await;
    assert_eq!(reply.error(400), "invalid_media_type");
    assert_eq!(c.upload(&files_of_bob, b"x".to_vec(), None).await.error(400), "invalid_query");
    let unknown = format!("/api/v1/conversations/{UNKNOWN}/files?name=ok.txt");
    assert_eq!(c.upload(&unknown, b"x".to_vec(), None).await.error(404), "unknown_contact");
    // Past the limit by its Content-Length: refused before a byte is read.
    let mut stream = std::net::TcpStream::connect(t.api.local_addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\nxyz",
        t.api.local_addr.port(),
        t.api.token.expose(),
        api::files::MAX_UPLOAD_BYTES + 1,
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("file_too_large"), "{answer}");
    assert_eq!(tree(&home), before, "a refused upload wrote something");
    assert!(!home.join("etc").exists() && !t.dir.root().join("etc").exists());

    // A good one: sealed, offered, its plaintext copy gone.
    let text = b"a note for bob\n".to_vec();
    let sent = c
        .upload(
            &format!("{files_of_bob}?name=note%20%C3%A9.txt"),
            text.clone(),
            Some("text/plain; charset=utf-8"),
        )
        .await;
    assert_eq!(sent.status, 201, "{sent:?}");
    let (message, file) = (sent.json()["message"].clone(), sent.json()["file"].clone());
    assert!(is_id(&message) && is_id(&file), "{sent:?}");
    let file = file.as_str().unwrap().to_owned();
    let kept: Vec<String> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, vec![format!("{file}.sealed")], "only the sealed copy stays");
    let listed = c.get(&files_of_bob).await.json();
    assert_eq!(
        listed,
        json!([{"file": file, "message": message, "direction": "out", "name": "note é.txt",
                "media_type": "text/plain", "size": text.len(), "state": "offered",
                "chunks_done": 0, "chunks_total": 1}])
    );
    let history = c.get(&format!("/api/v1/conversations/{bob}/messages")).await.json();
    assert_eq!(history[0]["id"], message);
    assert_eq!(history[0]["file"], file.as_str());
    // Only the encrypted copy of a sent file is kept: nothing to download.
    assert_eq!(c.get(&format!("/api/v1/files/{file}")).await.error(409), "transfer_state");
    let cancel = format!("/api/v1/files/{file}/cancel");
    assert_eq!(c.call("POST", &cancel, None).await.status, 204);
    assert_eq!(c.call("POST", &cancel, None).await.error(409), "transfer_state");
    assert_eq!(c.get(&files_of_bob).await.json()[0]["state"], "failed");

    // Unknown and malformed file ids.
    for path in
        [format!("/api/v1/files/{UNKNOWN}/accept"), format!("/api/v1/files/{UNKNOWN}/cancel")]
    {
        assert_eq!(c.call("POST", &path, None).await.error(404), "unknown_file", "{path}");
    }
    assert_eq!(c.get(&format!("/api/v1/files/{UNKNOWN}")).await.error(404), "unknown_file");
    assert_eq!(c.get("/api/v1/files/..%2f..%2fetc").await.error(400), "invalid_id");
    assert_eq!(c.call("POST", "/api/v1/files/xyz/accept", None).await.error(400), "invalid_id");

    // Backups.
    let backup = |body: Value| {
        let c = c.clone();
        async move { c.post("/api/v1/backup", body).await }
    };
    assert_eq!(backup(json!({"path": "relative.xbackup"})).await.error(400), "relative_path");
    assert_eq!(backup(json!({"path": ""})).await.error(400), "relative_path");
    assert_eq!(backup(json!({"path": 5})).await.error(400), "invalid_json");
    let missing = home.join("no-such-dir").join("b.xbackup");
    assert_eq!(backup(json!({"path": missing.to_str().unwrap()})).await.error(400), "invalid_path");
    let target = home.join("first.xbackup");
    let written = backup(json!({"path": target.to_str().unwrap()})).await;
    assert_eq!(written.status, 201, "{written:?}");
    assert_eq!(written.json()["path"], target.to_str().unwrap());
    assert_eq!(written.json()["contacts"], 1);
    assert!(written.json()["messages"].as_u64().unwrap() >= 1, "{written:?}");
    let size = std::fs::metadata(&target).unwrap().len();
    assert!(size > 0);
    let again = backup(json!({"path": target.to_str().unwrap()})).await;
    assert_eq!(again.error(409), "path_exists");
    assert_eq!(std::fs::metadata(&target).unwrap().len(), size, "the first backup was touched");
    t.node.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_from_api_to_api() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let relays = relays(3).await;
    let home = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) =
        (ProfileDir::new(home.path().join("alice")), ProfileDir::new(home.path().join("bob")));
    let alice = start(&alice_dir, &relays);
    let bob = start(&bob_dir, &relays);
    let alice_api =
        api::serve(alice.handle.clone(), &alice_dir, ApiConfig::default()).await.unwrap();
    let bob_api = api::serve(bob.handle.clone(), &bob_dir, ApiConfig::default()).await.unwrap();
    let (a, b) = (Client::new(&alice_api), Client::new(&bob_api));
    tokio::time::timeout(WAIT, alice.handle.published()).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, bob.handle.published()).await.unwrap().unwrap();

    let mut request = format!("ws://127.0.0.1:{}/api/v1/events", bob_api.local_addr.port())
        .into_client_request()
        .unwrap();
    let bearer = format!("Bearer {}", bob_api.token.expose());
    request.headers_mut().insert("authorization", bearer.parse().unwrap());
    let (mut bob_events, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    let alice_address = a.get("/api/v1/identity").await.json()["address"].clone();
    let bob_address = b.get("/api/v1/identity").await.json()["address"].clone();
    let added = a.post("/api/v1/contacts", json!({"name": "bob", "address": bob_address})).await;
    let bob_at_alice = added.json()["id"].as_str().unwrap().to_owned();
    let added =
        b.post("/api/v1/contacts", json!({"name": "alice", "address": alice_address})).await;
    let alice_at_bob = added.json()["id"].as_str().unwrap().to_owned();

    // 3 MiB and a bit: 49 chunks, the last one partial.
    let mut bytes = vec![0u8; 3 * 1024 * 1024 + 1000];
    rand_core::TryRngCore::try_fill_bytes(&mut OsRng, &mut bytes).unwrap();
    let sent = a
        .upload(
            &format!("/api/v1/conversations/{bob_at_alice}/files?name=photo.png"),
            bytes.clone(),
            Some("image/png"),
        )
        .await;
    assert_eq!(sent.status, 201, "{sent:?}");
    let file = sent.json()["file"].as_str().unwrap().to_owned();
    let message = sent.json()["message"].as_str().unwrap().to_owned();

    let event = next_event(&mut bob_events, "message_received").await;
    assert_eq!(event["message"]["id"], message.as_str());
    assert_eq!(event["message"]["file"], file.as_str());
    assert_eq!(event["message"]["contact"], alice_at_bob.as_str());
    let listed = b.get(&format!("/api/v1/conversations/{alice_at_bob}/files")).await.json();
    assert_eq!(listed[0]["file"], file.as_str());
    assert_eq!(listed[0]["direction"], "in");
    assert_eq!(listed[0]["state"], "offered");
    assert_eq!(listed[0]["size"], bytes.len());
    assert_eq!(listed[0]["chunks_total"], 49);
    let download = format!("/api/v1/files/{file}");
    assert_eq!(b.get(&download).await.error(409), "transfer_state");

    let accepted = b.call("POST", &format!("/api/v1/files/{file}/accept"), None).await;
    assert_eq!(accepted.status, 204, "{accepted:?}");
    let complete = tokio::time::timeout(WAIT, async {
        loop {
            let event = next_event(&mut bob_events, "transfer_changed").await;
            assert_eq!(event["file"], file.as_str());
            assert_eq!(event["contact"], alice_at_bob.as_str());
            assert!(event["chunks_done"].is_u64(), "{event}");
            if event["state"] == "complete" {
                return event;
            }
            assert!(event["state"] != "failed", "{event}");
        }
    })
    .await
    .expect("the file never completed");
    assert_eq!(complete["chunks_done"], 49);

    let got = b.get(&download).await;
    assert_eq!(got.status, 200, "{}", got.body.chars().take(200).collect::<String>());
    assert!(got.bytes == bytes, "the downloaded bytes differ");
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("content-length"), Some(bytes.len().to_string().as_str()));
    assert_eq!(
        got.header("content-disposition"),
        Some("attachment; filename=\"photo.png\"; filename*=UTF-8''photo.png")
    );
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    let listed = b.get(&format!("/api/v1/conversations/{alice_at_bob}/files")).await.json();
    assert_eq!(
        (listed[0]["state"].clone(), listed[0]["chunks_done"].clone()),
        (json!("complete"), json!(49))
    );
    // The sender keeps only the sealed copy.
    assert_eq!(a.get(&download).await.error(409), "transfer_state");
    assert_eq!(
        a.get(&format!("/api/v1/conversations/{bob_at_alice}/files")).await.json()[0]["direction"],
        "out"
    );
    alice.handle.shutdown().await;
    bob.handle.shutdown().await;
}

#[test]
fn openapi_document_is_fresh() {
    let fresh = api::openapi::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "docs/openapi.json is stale: UPDATE_GENERATED=1 cargo test -p xchat-node --test api openapi"
    );
    // Every route of the brief is in it.
    let document: Value = serde_json::from_str(&fresh).unwrap();
    for (_, path, _) in routes() {
        let path = path.split('?').next().unwrap();
        assert!(
            ["{id}", "{contact}", "{file}"]
                .iter()
                .any(|name| document["paths"].get(path.replace(UNKNOWN, name)).is_some()),
            "{path} missing"
        );
    }
}
