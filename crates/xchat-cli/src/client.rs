//! A blocking client of a running node's local API (`docs/api.md`).
//!
//! `xchat up` leaves two files in the profile while it runs: `api.url`
//! (where the API listens) and `api.token` (its bearer token, new at each
//! start). A command of the same `--profile` reads both, then calls the API
//! with `ureq`. No node running is its own failure, with exit code
//! [`NO_NODE`]: a missing `api.url`, or nothing answering at it (a node
//! that was killed leaves a stale file). The API's own errors keep its
//! message and exit with code 1.

use std::io::ErrorKind;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use xchat_node::ProfileDir;
use zeroize::Zeroizing;

use crate::Failure;

/// The exit code when no node of the profile is running.
pub(crate) const NO_NODE: u8 = 5;
/// The exit code when there is no profile at all.
const NO_PROFILE: u8 = 3;
/// Longest one call may take: the node answers commands after their commit.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A contact, as `GET /api/v1/contacts` lists it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Contact {
    /// The contact's id (32 hex digits).
    pub(crate) id: String,
    /// The user's name for them.
    pub(crate) name: String,
    /// Their address.
    pub(crate) address: String,
    /// Safety numbers compared and marked verified.
    pub(crate) verified: bool,
    /// Their key changed and the user has not acknowledged it.
    pub(crate) key_changed: bool,
}

/// One message, as the API gives it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Message {
    /// The message's id.
    pub(crate) id: String,
    /// The conversation's contact id.
    pub(crate) contact: String,
    /// `in` or `out`.
    pub(crate) direction: String,
    /// When it was sent (ms since the epoch, the sender's clock).
    pub(crate) sent_at: u64,
    /// The text (empty for a call's entry).
    pub(crate) text: String,
    /// The call it records, if it is a call's entry (a missed call).
    #[serde(default)]
    pub(crate) call: Option<CallEntry>,
    /// `pending`, `sent`, `delivered`, `unread`...
    pub(crate) status: String,
    /// When it vanishes, if its timer runs.
    pub(crate) expires_at: Option<u64>,
}

/// A call in the history, as the API gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CallEntry {
    /// The call's id.
    pub(crate) call_id: String,
    /// `missed`.
    pub(crate) outcome: String,
    /// Whether it was a video call.
    pub(crate) video: bool,
}

/// The local API of the node running a profile.
#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    base: String,
    /// `Bearer <token>`.
    authorization: Zeroizing<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

fn no_node(dir: &ProfileDir) -> Failure {
    Failure::with_code(
        NO_NODE,
        format!(
            "no node running for the profile in {}: start it with `xchat up`",
            dir.root().display()
        ),
    )
}

impl Client {
    /// The client of the node running `dir`'s profile.
    pub(crate) fn open(dir: &ProfileDir) -> Result<Self, Failure> {
        if !dir.exists() {
            return Err(Failure::with_code(
                NO_PROFILE,
                format!("no profile in {}: run `xchat init` first", dir.root().display()),
            ));
        }
        let read = |path: std::path::PathBuf| match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(error) if error.kind() == ErrorKind::NotFound => Err(no_node(dir)),
            Err(error) => Err(Failure::new(format!("cannot read {}: {error}", path.display()))),
        };
        let url = read(dir.api_url_file())?;
        let base = url.trim().trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(Failure::new(format!(
                "{} holds no API URL: restart `xchat up`",
                dir.api_url_file().display()
            )));
        }
        let token = read(dir.token_file())?;
        let authorization = Zeroizing::new(format!("Bearer {}", token.trim()));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .into();
        Ok(Self { agent, base, authorization })
    }

    /// `GET path`, its JSON answer.
    pub(crate) fn get(&self, path: &str) -> Result<Value, Failure> {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("authorization", self.authorization.as_str())
            .call();
        answer(response)
    }

    /// `POST path` with a JSON body (or none); its JSON answer, `null` for
    /// 204.
    pub(crate) fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("authorization", self.authorization.as_str());
        answer(match body {
            Some(body) => request.send_json(body),
            None => request.send_empty(),
        })
    }

    /// `PUT path` with a JSON body; its JSON answer, `null` for 204.
    pub(crate) fn put(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let response = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("authorization", self.authorization.as_str())
            .send_json(body);
        answer(response)
    }

    /// `POST path` with `body` streamed from a reader of `len` bytes as
    /// `media_type`; its JSON answer. No overall timeout: a large file takes
    /// as long as it takes.
    pub(crate) fn upload(
        &self,
        path: &str,
        media_type: &str,
        len: u64,
        body: &mut dyn std::io::Read,
    ) -> Result<Value, Failure> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .config()
            .timeout_global(None)
            .build()
            .header("authorization", self.authorization.as_str())
            .header("content-type", media_type)
            .header("content-length", len.to_string())
            .send(ureq::SendBody::from_reader(body));
        answer(response)
    }

    /// `GET path`, its body written to `out` (a download). No overall
    /// timeout.
    pub(crate) fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, Failure> {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .config()
            .timeout_global(None)
            .build()
            .header("authorization", self.authorization.as_str())
            .call()
            .map_err(transport_failure)?;
        if !response.status().is_success() {
            return answer(Ok(response)).map(|_| 0);
        }
        let mut reader = response.into_body().into_reader();
        std::io::copy(&mut reader, out).map_err(|e| Failure::new(format!("downloading: {e}")))
    }

    /// Every contact, by name.
    pub(crate) fn contacts(&self) -> Result<(Value, Vec<Contact>), Failure> {
        let json = self.get("/api/v1/contacts")?;
        let contacts = decode(&json)?;
        Ok((json, contacts))
    }

    /// The contact the user calls `name`.
    pub(crate) fn contact_named(&self, name: &str) -> Result<Contact, Failure> {
        let (_, contacts) = self.contacts()?;
        contacts.into_iter().find(|c| c.name == name).ok_or_else(|| {
            Failure::new(format!("no contact named {name:?}: see `xchat contact list`"))
        })
    }

    /// The WebSocket request for the node's events, authorised.
    pub(crate) fn events_request(
        &self,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, Failure> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let url = format!("ws://{}/api/v1/events", self.base.trim_start_matches("http://"));
        let mut request =
            url.into_client_request().map_err(|e| Failure::new(format!("the events URL: {e}")))?;
        let value = self
            .authorization
            .parse()
            .map_err(|_| Failure::new("the API token file holds no valid token"))?;
        request.headers_mut().insert("authorization", value);
        Ok(request)
    }
}

/// Decodes an API answer into `T`.
pub(crate) fn decode<T: DeserializeOwned>(json: &Value) -> Result<T, Failure> {
    T::deserialize(json).map_err(|e| Failure::new(format!("unexpected answer from the node: {e}")))
}

/// The API's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Value, Failure> {
    let response = response.map_err(transport_failure)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_to_string()
        .map_err(|e| Failure::new(format!("reading the node's answer: {e}")))?;
    if (200..300).contains(&status) {
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(&body)
            .map_err(|e| Failure::new(format!("the node's answer is not JSON: {e}")));
    }
    let (code, message) = match serde_json::from_str::<ErrorBody>(&body) {
        Ok(ErrorBody { error }) => (error.code, error.message),
        Err(_) => (String::from("unknown"), format!("the node answered HTTP {status}")),
    };
    // A stopping node is as good as none.
    let exit = if code == "node_stopped" { NO_NODE } else { 1 };
    Err(Failure::with_code(exit, format!("{message} ({code})")))
}

fn transport_failure(error: ureq::Error) -> Failure {
    let refused = match &error {
        ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset | ErrorKind::NotConnected
        ),
        _ => false,
    };
    if refused {
        Failure::with_code(
            NO_NODE,
            "no node running: nothing answers at the profile's API address (start it with `xchat up`)",
        )
    } else {
        Failure::new(format!("calling the node: {error}"))
    }
}
