//! `GET /api/v1/events`: the messenger's events on a WebSocket, one JSON
//! object per text frame. A client that reads too slowly to keep up with
//! [`crate::node::EVENT_QUEUE_LEN`] events loses some: it is told
//! `{"type":"lagged"}` and should load what it shows again.

use axum::extract::State;
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use super::problem::{ErrorBody, Problem};
use super::routes;
use super::schema::EventJson;

/// Upgrades to a WebSocket that carries every event from now on.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    description = "A WebSocket (send `Upgrade: websocket`). Each text frame is one `EventJson`.",
    responses(
        (status = 101, description = "switching to the WebSocket protocol; frames are EventJson", body = EventJson),
        (status = 400, description = "`not_websocket`", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<routes::State>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "not_websocket",
            "this route is a WebSocket: send Upgrade: websocket",
        )
        .into_response();
    };
    // Subscribed before the upgrade completes, so no event between the
    // answer and the first frame is missed.
    let events = state.node.subscribe();
    let stopping = state.stopping.clone();
    upgrade.on_upgrade(move |socket| forward(socket, events, stopping))
}

async fn forward(
    mut socket: WebSocket,
    mut events: tokio::sync::broadcast::Receiver<xchat_core::io::Event>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let json = tokio::select! {
            _ = stopping.wait_for(|stopping| *stopping) => break,
            event = events.recv() => match event {
                Ok(event) => match EventJson::from_event(&event) {
                    Some(json) => json,
                    None => continue,
                },
                Err(RecvError::Lagged(missed)) => {
                    debug!(missed, "an events client lagged");
                    EventJson::Lagged
                }
                Err(RecvError::Closed) => break,
            },
            frame = socket.recv() => match frame {
                // The client says nothing we need; a ping is answered by
                // the library. Closed or failed: stop.
                Some(Ok(Frame::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let Ok(text) = serde_json::to_string(&json) else { continue };
        if socket.send(Frame::Text(text.into())).await.is_err() {
            return;
        }
    }
    // The node or the API stopped.
    let _ = socket.send(Frame::Close(None)).await;
}
