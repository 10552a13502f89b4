//! The web UI: a page and its assets (`crates/xchat-node/web/`), embedded
//! in the binary, served without a session because they hold no data. All
//! data comes from `/api/v1/*`, which wants the session cookie; without one
//! the page shows how to log in.
//!
//! Every answer carries a Content-Security-Policy that lets the page load
//! only its own scripts, styles and images, talk only to this origin, and
//! never be framed: even a peer's text that slipped into markup could not
//! run a script or send anything elsewhere.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::problem::Problem;
use super::routes::State;

/// The policy of every page and asset: nothing inline, nothing from
/// elsewhere, no framing, no form posts, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
    font-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

/// One embedded file: its name under `/assets/`, media type and bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    media_type: "text/html; charset=utf-8",
    body: include_bytes!("../../web/index.html"),
};

/// Everything under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        name: "api.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/api.js"),
    },
    Asset {
        name: "timeline.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/timeline.js"),
    },
    Asset {
        name: "calls.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/calls.js"),
    },
    Asset {
        name: "style.css",
        media_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        name: "clip.svg",
        media_type: "image/svg+xml",
        body: include_bytes!("../../web/clip.svg"),
    },
    Asset {
        name: "timer.svg",
        media_type: "image/svg+xml",
        body: include_bytes!("../../web/timer.svg"),
    },
    Asset {
        name: "icon.svg",
        media_type: "image/svg+xml",
        body: include_bytes!("../../web/icon.svg"),
    },
];

/// `/` and `/assets/{name}`.
pub(super) fn web_routes() -> axum::Router<State> {
    axum::Router::new().route("/", get(index)).route("/assets/{name}", get(asset))
}

async fn index() -> Response {
    serve(&INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => serve(asset),
        None => Problem::new(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    }
}

fn serve(asset: &Asset) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.media_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // The assets change with the binary, under the same names: the
        // browser asks again each time (a 304 would need ETags; the files
        // are small and on loopback).
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_asset_holds_inline_script_or_style() {
        for asset in ASSETS.iter().chain([&INDEX]) {
            let text = String::from_utf8_lossy(asset.body);
            if asset.name.ends_with(".html") {
                // Every script is a module from /assets/, and no element has
                // a style or on* attribute: the CSP would block them anyway,
                // and a page that relies on them is broken.
                assert!(!text.contains("<style"), "{}", asset.name);
                assert!(!text.contains(" style="), "{}", asset.name);
                assert!(!text.contains(" onclick="), "{}", asset.name);
                for script in text.split("<script").skip(1) {
                    assert!(script.trim_start().starts_with("type=\"module\" src=\"/assets/"));
                }
            }
            if asset.name.ends_with(".js") {
                assert!(text.starts_with("// "), "{}: opens with a comment", asset.name);
                assert!(
                    !text.contains("innerHTML"),
                    "{}: peer text goes through textContent",
                    asset.name
                );
                assert!(!text.contains("eval("), "{}", asset.name);
            }
        }
    }
}
