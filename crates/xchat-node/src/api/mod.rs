//! The node's local API (`docs/api.md`): REST for commands and queries, a
//! WebSocket for the messenger's events, on loopback only unless told
//! otherwise.
//!
//! Who may call it:
//! - whoever can read the profile's token file (mode 0600, a new random
//!   token at each start) and sends it as `Authorization: Bearer <token>`;
//! - a browser that opened the one-time login URL the daemon printed, and
//!   got the `xchat_session_<port>` cookie (HttpOnly, SameSite=Strict).
//!
//! Every request's `Host` must name this server (a DNS-rebinding page's
//! requests name the attacker's domain) and its `Origin`, when there is one,
//! must be this server's (a cross-site page's requests carry theirs). No
//! CORS header is ever sent, so no other origin can read an answer.
//!
//! - [`auth`]: the token, login codes and sessions, and the checks.
//! - [`problem`]: errors as HTTP statuses with stable codes.
//! - [`schema`]: the JSON forms of the messenger's records and events.
//! - [`routes`]: the handlers.
//! - [`files`]: files (uploads streamed to disk, downloads streamed from
//!   it) and backups.
//! - [`events`]: the WebSocket.
//! - [`openapi`]: the OpenAPI document, generated from the handlers.
//! - [`web`]: the web UI's page and assets (no data: that comes from
//!   `/api/v1/*`).

pub mod auth;
pub mod events;
pub mod files;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod schema;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::node::NodeHandle;
use crate::profile::ProfileDir;

pub use auth::ApiToken;
pub use problem::Problem;

/// The largest request body taken. A JSON body holds at most one text of
/// `xchat_proto::content::MAX_TEXT_BYTES` (64 KiB), with room for its JSON
/// escaping; anything larger is refused with 413 before it is read whole.
/// A file's upload is not JSON and has its own limit,
/// [`files::MAX_UPLOAD_BYTES`]: it is streamed to disk, never held whole.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// Where and how the API listens.
#[derive(Debug, Clone, Copy)]
pub struct ApiConfig {
    /// The address to bind: loopback, any port, by default.
    pub bind: SocketAddr,
    /// Whether a non-loopback `bind` is allowed. The API then answers the
    /// network (still only with the token or a session): for a user who put
    /// it behind their own TLS proxy or tunnel, knowingly.
    pub allow_remote: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { bind: SocketAddr::from(([127, 0, 0, 1], 0)), allow_remote: false }
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A non-loopback address without [`ApiConfig::allow_remote`].
    #[error("refusing to serve the API on non-loopback address {0} (allow_remote is off)")]
    RemoteRefused(SocketAddr),
    /// The address could not be bound.
    #[error("cannot bind the API to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The token file could not be written.
    #[error("cannot write the API token file: {0}")]
    TokenFile(std::io::Error),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
}

/// The running API.
#[derive(Debug)]
pub struct Api {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// The bearer token (also in the profile's token file).
    pub token: ApiToken,
    /// The web UI's one-time login URL (valid for
    /// [`auth::LOGIN_CODE_LIFETIME`], once). It holds a secret: show it to
    /// the user, never log it.
    pub login_url: LoginUrl,
    auth: Arc<auth::Gate>,
    task: tokio::task::JoinHandle<()>,
    /// Set when the API stops: the server and every WebSocket end.
    stopping: watch::Sender<bool>,
}

/// A login URL: it holds a one-time code, so its `Debug` redacts.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginUrl(String);

impl LoginUrl {
    /// The URL, to print for the user.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LoginUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginUrl(<redacted>)")
    }
}

impl Api {
    /// A new one-time login URL (the one made at start may be used or
    /// expired).
    ///
    /// # Errors
    /// [`ApiError::Random`].
    pub fn new_login_url(&self) -> Result<LoginUrl, ApiError> {
        let code = self.auth.new_login_code()?;
        Ok(login_url(self.local_addr, &code))
    }

    /// Stops serving: open connections are dropped, the token file stays
    /// (it is replaced at the next start).
    pub async fn shutdown(mut self) {
        self.stopping.send_replace(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stopping.send_replace(true);
    }
}

/// Binds the API, writes a new token to `profile`'s token file and serves
/// `node` on the current tokio runtime until [`Api::shutdown`] (or the
/// [`Api`] is dropped).
///
/// # Errors
/// [`ApiError::RemoteRefused`] for a non-loopback address without
/// `allow_remote`, [`ApiError::Bind`], [`ApiError::TokenFile`],
/// [`ApiError::Random`].
pub async fn serve(
    node: NodeHandle,
    profile: &ProfileDir,
    config: ApiConfig,
) -> Result<Api, ApiError> {
    if !config.bind.ip().is_loopback() {
        if !config.allow_remote {
            return Err(ApiError::RemoteRefused(config.bind));
        }
        warn!(bind = %config.bind, "the local API listens beyond loopback: anyone who can reach it may try the token");
    }
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| ApiError::Bind { addr: config.bind, source })?;
    let local_addr =
        listener.local_addr().map_err(|source| ApiError::Bind { addr: config.bind, source })?;
    let token = ApiToken::generate()?;
    auth::write_token_file(&profile.token_file(), &token).map_err(ApiError::TokenFile)?;
    let gate = Arc::new(auth::Gate::new(token.clone(), local_addr));
    let code = gate.new_login_code()?;
    let (stopping, stop) = watch::channel(false);
    let state = routes::State { node, gate: Arc::clone(&gate), stopping: stop.clone() };
    let app = router(state);
    let mut stopped = stop;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move {
            // Waits for `true`, or for the sender to be gone.
            let _ = stopped.wait_for(|stopping| *stopping).await;
        });
        if let Err(error) = served.await {
            warn!(%error, "the local API stopped");
        }
    });
    info!(%local_addr, "local API listening");
    Ok(Api {
        local_addr,
        token,
        login_url: login_url(local_addr, &code),
        auth: gate,
        task,
        stopping,
    })
}

/// The app: every route behind the Host and Origin checks, `/api/v1/*`
/// behind the token or a session too.
fn router(state: routes::State) -> Router {
    let gate = Arc::clone(&state.gate);
    let api = routes::api_routes()
        .merge(files::file_routes())
        .route("/events", axum::routing::get(events::events))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&gate), auth::require_auth));
    Router::new()
        .nest("/api/v1", api)
        .route("/login", axum::routing::get(auth::login))
        .merge(web::web_routes())
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(gate, auth::check_host_and_origin))
}

fn login_url(addr: SocketAddr, code: &auth::LoginCode) -> LoginUrl {
    // Loopback (or every address): the name browsers resolve without DNS.
    let host = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    LoginUrl(format!("http://{host}/login?code={}", code.expose()))
}
