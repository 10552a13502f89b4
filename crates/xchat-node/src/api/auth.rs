//! Who may call the API: the bearer token, the web UI's one-time login codes
//! and the session cookies they buy, and the Host and Origin checks that
//! keep other web pages out.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand_core::{OsRng, TryRngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::ApiError;
use super::problem::Problem;

/// Random bytes in a token, a login code or a session.
pub const SECRET_BYTES: usize = 32;
/// How long a login code may be used (once).
pub const LOGIN_CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Login codes waiting to be used at once; the oldest go first.
pub const MAX_LOGIN_CODES: usize = 16;
/// Sessions kept at once; the oldest are logged out first.
pub const MAX_SESSIONS: usize = 64;
/// Where a browser that opened an unknown, used or expired login link is
/// sent: the web UI, which then explains.
pub const LOGIN_FAILED_PAGE: &str = "/?login=failed";
/// The web UI's session cookie's name, before the API's port: cookies
/// ignore the port, so each node on one machine (`xchat demo`'s Alice and
/// Bob, say) needs its own name, or logging in to one would log the same
/// browser out of the other.
pub const SESSION_COOKIE: &str = "xchat_session";

/// The session cookie's name of the API listening on `port`.
pub fn session_cookie(port: u16) -> String {
    format!("{SESSION_COOKIE}_{port}")
}

/// A random secret as lowercase hex: the API token, a login code or a
/// session. Compared in constant time; its `Debug` redacts.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// A new secret from the operating system's generator.
    ///
    /// # Errors
    /// [`ApiError::Random`].
    pub fn generate() -> Result<Self, ApiError> {
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        OsRng.try_fill_bytes(bytes.as_mut()).map_err(|_| ApiError::Random)?;
        Ok(Self(Zeroizing::new(hex::encode(bytes.as_ref()))))
    }

    /// The hex text, to hand to whoever is to hold it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The API's bearer token: 32 random bytes as hex, new at each start.
pub type ApiToken = Secret;
/// A one-time login code of the web UI.
pub type LoginCode = Secret;

/// Writes `token` to `path`, readable by the owner only: into a new file
/// beside it, then renamed over the old one, so a reader sees the old token
/// or the new, never half of one, and never a file others could read.
///
/// # Errors
/// Any I/O error.
pub fn write_token_file(path: &Path, token: &ApiToken) -> std::io::Result<()> {
    let line = zeroize::Zeroizing::new(format!("{}\n", token.expose()));
    crate::write_private_file(path, line.as_bytes())
}

/// The API's keys and its address: what every request is checked against.
#[derive(Debug)]
pub struct Gate {
    token: ApiToken,
    addr: SocketAddr,
    /// Host header values that name this server.
    hosts: Vec<String>,
    /// Origin header values of this server's own pages.
    origins: Vec<String>,
    codes: Mutex<Vec<(LoginCode, Instant)>>,
    sessions: Mutex<Vec<Secret>>,
}

impl Gate {
    /// This server's session cookie's name ([`session_cookie`]).
    pub fn session_cookie(&self) -> String {
        session_cookie(self.addr.port())
    }

    /// The gate of a server at `addr` with `token`.
    pub fn new(token: ApiToken, addr: SocketAddr) -> Self {
        let port = addr.port();
        let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")];
        // The bound address itself (`[::1]:port`, or the address given with
        // allow_remote).
        let bound = addr.to_string();
        if !addr.ip().is_unspecified() && !hosts.contains(&bound) {
            hosts.push(bound);
        }
        let origins = hosts.iter().map(|host| format!("http://{host}")).collect();
        Self {
            token,
            addr,
            hosts,
            origins,
            codes: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
        }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new one-time login code, valid for [`LOGIN_CODE_LIFETIME`].
    ///
    /// # Errors
    /// [`ApiError::Random`].
    pub fn new_login_code(&self) -> Result<LoginCode, ApiError> {
        self.new_login_code_at(Instant::now())
    }

    fn new_login_code_at(&self, now: Instant) -> Result<LoginCode, ApiError> {
        let code = LoginCode::generate()?;
        let mut codes = self.codes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        codes.retain(|(_, expires)| *expires > now);
        if codes.len() >= MAX_LOGIN_CODES {
            codes.remove(0);
        }
        codes.push((code.clone(), now + LOGIN_CODE_LIFETIME));
        Ok(code)
    }

    /// Uses `code` up: true if it was a live code (it is then gone).
    fn redeem(&self, code: &str) -> bool {
        self.redeem_at(code, Instant::now())
    }

    fn redeem_at(&self, code: &str, now: Instant) -> bool {
        let mut codes = self.codes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        codes.retain(|(_, expires)| *expires > now);
        // Every code is compared, so the time does not tell which matched.
        let found = codes
            .iter()
            .enumerate()
            .fold(None, |found, (i, (c, _))| if c.matches(code) { Some(i) } else { found });
        match found {
            Some(index) => {
                codes.remove(index);
                true
            }
            None => false,
        }
    }

    fn new_session(&self) -> Result<Secret, ApiError> {
        let session = Secret::generate()?;
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sessions.len() >= MAX_SESSIONS {
            sessions.remove(0);
        }
        sessions.push(session.clone());
        Ok(session)
    }

    /// Whether the request carries the token or a live session.
    fn authorised(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| value.strip_prefix("Bearer "))
            .any(|token| self.token.matches(token.trim()));
        if bearer {
            return true;
        }
        let name = session_cookie(self.addr.port());
        let cookies: Vec<&str> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(name.as_str())?.strip_prefix('='))
            .collect();
        if cookies.is_empty() {
            return false;
        }
        let sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cookies.iter().any(|cookie| sessions.iter().fold(false, |hit, s| s.matches(cookie) | hit))
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let mut hosts = headers.get_all(HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(host), None) => host
                .to_str()
                .is_ok_and(|host| self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))),
            _ => false,
        }
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        headers.get_all(ORIGIN).iter().all(|origin| {
            origin
                .to_str()
                .is_ok_and(|origin| self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)))
        })
    }
}

/// Middleware on every route: 403 unless `Host` names this server and
/// `Origin`, if present, is this server's.
pub async fn check_host_and_origin(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    if !gate.host_allowed(request.headers()) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            "the Host header does not name this server",
        )
        .into_response();
    }
    if !gate.origin_allowed(request.headers()) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "requests from other origins are refused",
        )
        .into_response();
    }
    next.run(request).await
}

/// Middleware on `/api/v1/*`: 401 without the token or a session cookie.
pub async fn require_auth(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if gate.authorised(request.headers()) {
        next.run(request).await
    } else {
        let mut response = Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the token from the profile's api.token file as a bearer token",
        )
        .into_response();
        response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
        response
    }
}

/// `/login`'s query.
#[derive(Debug, serde::Deserialize)]
pub struct LoginQuery {
    code: Option<String>,
}

/// `GET /login?code=...`: trades a live one-time code for a session cookie
/// and sends the browser to the web UI.
pub async fn login(
    State(state): State<super::routes::State>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let code = query.ok().and_then(|Query(q)| q.code).unwrap_or_default();
    if code.is_empty() || !state.gate.redeem(&code) {
        // A person who opened a stale link in a browser gets the web UI's
        // login screen, which says what happened; programs get the error.
        let browser = headers
            .get(ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
        if browser {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(LOCATION, HeaderValue::from_static(LOGIN_FAILED_PAGE));
            return response;
        }
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid_login_code",
            "this login link is unknown, used or expired: ask the daemon for a new one",
        )
        .into_response();
    }
    let session = match state.gate.new_session() {
        Ok(session) => session,
        Err(_) => return Problem::internal().into_response(),
    };
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        state.gate.session_cookie(),
        session.expose()
    );
    let Ok(cookie) = HeaderValue::from_str(&cookie) else {
        return Problem::internal().into_response();
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    response.headers_mut().insert(LOCATION, HeaderValue::from_static("/"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(Secret::generate().unwrap(), "127.0.0.1:4000".parse().unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::generate().unwrap();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "Secret(<redacted>)");
        assert!(!shown.contains(secret.expose()));
    }

    #[test]
    fn secrets_are_32_random_bytes_in_lowercase_hex() {
        let (a, b) = (Secret::generate().unwrap(), Secret::generate().unwrap());
        assert_eq!(a.expose().len(), 2 * SECRET_BYTES);
        assert!(a.expose().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a.expose(), b.expose());
        assert!(a.matches(a.expose()) && !a.matches(b.expose()) && !a.matches(""));
    }

    #[test]
    fn login_code_is_single_use() {
        let gate = gate();
        let code = gate.new_login_code().unwrap();
        assert!(!gate.redeem("0000"));
        assert!(gate.redeem(code.expose()));
        assert!(!gate.redeem(code.expose()));
    }

    #[test]
    fn login_code_expires_after_ten_minutes() {
        let gate = gate();
        let start = Instant::now();
        let code = gate.new_login_code_at(start).unwrap();
        assert!(!gate.redeem_at(code.expose(), start + LOGIN_CODE_LIFETIME));
        let code = gate.new_login_code_at(start).unwrap();
        assert!(
            gate.redeem_at(code.expose(), start + LOGIN_CODE_LIFETIME - Duration::from_secs(1))
        );
    }

    #[test]
    fn only_the_newest_login_codes_are_kept() {
        let gate = gate();
        let first = gate.new_login_code().unwrap();
        let rest: Vec<_> = (0..MAX_LOGIN_CODES).map(|_| gate.new_login_code().unwrap()).collect();
        assert!(!gate.redeem(first.expose()));
        assert!(rest.iter().all(|code| gate.redeem(code.expose())));
    }

    #[test]
    fn host_must_name_this_server() {
        let gate = gate();
        assert!(gate.host_allowed(&headers(&[("host", "127.0.0.1:4000")])));
        assert!(gate.host_allowed(&headers(&[("host", "localhost:4000")])));
        assert!(!gate.host_allowed(&headers(&[("host", "evil.example:4000")])));
        assert!(!gate.host_allowed(&headers(&[("host", "127.0.0.1:4001")])));
        assert!(!gate.host_allowed(&headers(&[])));
        assert!(!gate.host_allowed(&headers(&[("host", "127.0.0.1:4000"), ("host", "x:1")])));
    }

    #[test]
    fn origin_if_present_must_be_this_server() {
        let gate = gate();
        assert!(gate.origin_allowed(&headers(&[])));
        assert!(gate.origin_allowed(&headers(&[("origin", "http://localhost:4000")])));
        assert!(!gate.origin_allowed(&headers(&[("origin", "http://evil.example")])));
        assert!(!gate.origin_allowed(&headers(&[("origin", "null")])));
    }

    #[test]
    fn bearer_token_or_session_cookie_authorises() {
        let gate = gate();
        let token = gate.token.expose().to_owned();
        assert!(gate.authorised(&headers(&[("authorization", &format!("Bearer {token}"))])));
        assert!(!gate.authorised(&headers(&[("authorization", "Bearer 00")])));
        assert!(!gate.authorised(&headers(&[("authorization", &token)])));
        let session = gate.new_session().unwrap();
        let cookie = format!("a=b; {}={}", gate.session_cookie(), session.expose());
        assert!(gate.authorised(&headers(&[("cookie", &cookie)])));
        let (name, other) = (gate.session_cookie(), session_cookie(gate.addr.port() ^ 1));
        assert!(!gate.authorised(&headers(&[("cookie", &format!("{name}=00"))])));
        // Another node's cookie, even with this one's session, is not this
        // one's.
        let elsewhere = format!("{other}={}", session.expose());
        assert!(!gate.authorised(&headers(&[("cookie", &elsewhere)])));
    }
}
