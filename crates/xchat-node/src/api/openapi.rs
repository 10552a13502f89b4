//! The API's OpenAPI document, generated from the handlers and the JSON
//! types (`docs/openapi.json` is this, committed; a test fails when it is
//! stale).

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{events, files, problem, routes, schema};

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "xchat local API",
        description = "The local API of the xchat daemon: loopback only by default. Every \
            /api/v1 request carries the bearer token from the profile's api.token file, or the \
            web UI's session cookie, xchat_session_<port> (the port the API listens on). See \
            docs/api.md.",
        license(name = "AGPL-3.0-or-later"),
    ),
    paths(
        routes::identity,
        routes::identity_qr,
        routes::contacts,
        routes::add_contact,
        routes::safety_number,
        routes::verify,
        routes::acknowledge_key_change,
        routes::conversations,
        routes::history,
        routes::send_text,
        routes::set_timer,
        routes::mark_read,
        routes::send_call_signal,
        files::upload,
        files::transfers,
        files::accept,
        files::cancel,
        files::download,
        files::preview,
        files::backup,
        events::events,
    ),
    components(schemas(problem::ErrorBody, problem::ErrorDetail, schema::EventJson)),
    modifiers(&Security),
    security(("token" = []), ("session" = [])),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                format!("{}_<port>", super::auth::SESSION_COOKIE),
                "the web UI's session, from the one-time login link; named after the API's port"
                    .to_owned(),
            ))),
        );
    }
}

/// The document as pretty JSON, with a final newline.
pub fn openapi_json() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    json.push('\n');
    json
}
