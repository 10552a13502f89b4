//! The API's errors: an HTTP status and a stable `code` a client can match
//! on, with a human message that holds no user data. What went wrong inside
//! goes to the log, never to the client.

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::warn;
use xchat_core::contact::ContactError;
use xchat_core::io::CommandError;

use crate::node::NodeError;

/// An error answer: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// What to tell a person.
    pub message: Cow<'static, str>,
}

/// The JSON body of an error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's code and message.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `unknown_contact`, `invalid_text`, ...
    /// (`docs/api.md` lists them).
    pub code: String,
    /// For people; may change.
    pub message: String,
}

impl Problem {
    /// A problem with this status, code and message.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `unknown_contact`.
    pub fn unknown_contact() -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown_contact", "no contact with this id")
    }

    /// 500 `internal`: the details are in the daemon's log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the daemon failed; its log has the details",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.to_owned(), message: self.message.into_owned() },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<NodeError> for Problem {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Refused(refused) => refused.into(),
            NodeError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_stopped",
                "the node is stopping or stopped",
            ),
            other => {
                warn!(error = %other, "an API request failed in the node");
                Self::internal()
            }
        }
    }
}

impl From<CommandError> for Problem {
    fn from(error: CommandError) -> Self {
        let message = error.to_string();
        let (status, code) = match error {
            CommandError::Contact(contact) => match contact {
                ContactError::Unknown => (StatusCode::NOT_FOUND, "unknown_contact"),
                ContactError::InvalidName { .. } => (StatusCode::BAD_REQUEST, "invalid_name"),
                ContactError::AddressTaken => (StatusCode::CONFLICT, "address_taken"),
                ContactError::DuplicateName => (StatusCode::CONFLICT, "duplicate_name"),
                ContactError::KeyChangeNotAcknowledged => {
                    (StatusCode::CONFLICT, "key_change_not_acknowledged")
                }
                ContactError::TooManyContacts => (StatusCode::CONFLICT, "too_many_contacts"),
                ContactError::Internal => {
                    warn!("the contact book's invariant broke");
                    return Self::internal();
                }
            },
            CommandError::InvalidText { .. } => (StatusCode::BAD_REQUEST, "invalid_text"),
            CommandError::OwnAddress => (StatusCode::BAD_REQUEST, "own_address"),
            CommandError::UnknownFile => (StatusCode::NOT_FOUND, "unknown_file"),
            CommandError::TransferState(_) => (StatusCode::CONFLICT, "transfer_state"),
            CommandError::TooManyTransfers { .. } => (StatusCode::CONFLICT, "too_many_transfers"),
            CommandError::TooManyCallSignals { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_call_signals")
            }
        };
        Self::new(status, code, message)
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a request body has at most {} bytes", super::MAX_BODY_BYTES),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            ),
            // The body's text tells which field is wrong; it never holds
            // more of the body than a field name and a position.
            _ => Self::bad_request("invalid_json", rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(_: PathRejection) -> Self {
        // Only ids are taken from paths; what fails to extract (bad
        // percent-encoding) is no id.
        Self::bad_request("invalid_id", "an id is 32 lowercase hex digits")
    }
}

/// The answer for a path no route takes.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The answer for a route that does not take this method.
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method",
    )
}
