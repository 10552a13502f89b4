//! The REST handlers of `/api/v1`. Each turns a request into one node
//! command or one read of the messenger and its store; the core decides,
//! the handler only translates.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use xchat_core::contact::{Contact, ContactId};
use xchat_core::io::{Done, Input};
use xchat_crypto::address::Address;
use xchat_crypto::safety::SafetyNumber;
use xchat_proto::content::{MAX_RECEIPT_IDS, VanishingTimer};
use xchat_store::MAX_HISTORY_PAGE;

use super::auth::Gate;
use super::problem::{ErrorBody, Problem};
use super::schema::{
    ContactAdded, ContactJson, Conversation, HistoryQuery, IdentityJson, Message, MessageQueued,
    NewCallSignal, NewContact, NewMessage, ReadJson, SafetyNumberJson, TimerJson, contact_id,
    message_id, timer_seconds,
};
use crate::node::NodeHandle;

/// Messages in a history page when the client does not say.
pub const DEFAULT_HISTORY_PAGE: usize = 50;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct State {
    /// The node.
    pub node: NodeHandle,
    /// The API's keys.
    pub gate: Arc<Gate>,
    /// Becomes true when the API stops: WebSockets close then, since the
    /// server waits for every connection to end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

type Answer = Result<Response, Problem>;

/// The routes under `/api/v1` (the WebSocket is added beside them).
pub(super) fn api_routes() -> axum::Router<State> {
    axum::Router::new()
        .route("/identity", get(identity))
        .route("/identity/qr.svg", get(identity_qr))
        .route("/contacts", get(contacts).post(add_contact))
        .route("/contacts/{id}/safety-number", get(safety_number))
        .route("/contacts/{id}/verify", post(verify))
        .route("/contacts/{id}/acknowledge-key-change", post(acknowledge_key_change))
        .route("/conversations", get(conversations))
        .route("/conversations/{contact}/messages", get(history).post(send_text))
        .route("/conversations/{contact}/timer", put(set_timer))
        .route("/conversations/{contact}/read", post(mark_read))
        .route("/conversations/{contact}/call", post(send_call_signal))
}

/// This profile's address, device and peer id.
#[utoipa::path(get, path = "/api/v1/identity", tag = "identity",
    responses((status = 200, body = IdentityJson), (status = 401, body = ErrorBody)))]
pub async fn identity(Extract(state): Extract<State>) -> Answer {
    let device = state.node.read(|messenger, _| messenger.device().device_id()).await?;
    Ok(Json(IdentityJson {
        address: state.node.address().to_string(),
        device: hex::encode(device.as_bytes()),
        peer_id: state.node.net().local_peer_id().to_string(),
    })
    .into_response())
}

/// This profile's `xchat:` link as a QR code, in SVG, for a contact's
/// phone or camera. Drawn here so the web UI needs no script from elsewhere.
#[utoipa::path(get, path = "/api/v1/identity/qr.svg", tag = "identity",
    responses(
        (status = 200, description = "an SVG image of the QR code of the profile's `xchat:` link", content_type = "image/svg+xml", body = String),
        (status = 401, body = ErrorBody),
    ))]
pub async fn identity_qr(Extract(state): Extract<State>) -> Answer {
    let uri = state.node.address().to_uri();
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|_| Problem::internal())?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    let headers = [
        (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
        (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (axum::http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"),
        (axum::http::header::CACHE_CONTROL, "no-store"),
    ];
    Ok((headers, svg).into_response())
}

/// Every contact, by name.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts",
    responses((status = 200, body = Vec<ContactJson>), (status = 401, body = ErrorBody)))]
pub async fn contacts(Extract(state): Extract<State>) -> Answer {
    let mut contacts = state
        .node
        .read(|messenger, _| {
            messenger.contacts().iter().map(ContactJson::from).collect::<Vec<ContactJson>>()
        })
        .await?;
    contacts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(contacts).into_response())
}

/// Adds a contact, or gives a known name a new address (a key change).
#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", request_body = NewContact,
    responses(
        (status = 201, body = ContactAdded),
        (status = 400, description = "`invalid_address`, `own_address`, `invalid_name`, `invalid_json`", body = ErrorBody),
        (status = 409, description = "`address_taken`, `too_many_contacts`", body = ErrorBody),
    ))]
pub async fn add_contact(
    Extract(state): Extract<State>,
    body: Result<Json<NewContact>, JsonRejection>,
) -> Answer {
    let Json(body) = body?;
    // An address as typed, or the `xchat:` link a contact shared (its QR
    // code holds one).
    let typed = body.address.trim();
    let address = if typed.starts_with("xchat:") {
        Address::parse_uri(typed).map(|uri| *uri.address()).ok()
    } else {
        Address::parse(typed).ok()
    }
    .ok_or_else(|| {
        Problem::bad_request(
            "invalid_address",
            "this is not an xchat address (xchat1...) or link (xchat:xchat1...)",
        )
    })?;
    match state.node.command(Input::ContactAdded { name: body.name, address }).await? {
        Done::Contact(added) => {
            Ok((StatusCode::CREATED, Json(ContactAdded::from(added))).into_response())
        }
        _ => Err(Problem::internal()),
    }
}

/// The safety number of this profile and a contact: equal on both sides
/// when no one is in the middle.
#[utoipa::path(get, path = "/api/v1/contacts/{id}/safety-number", tag = "contacts",
    params(("id" = String, Path, description = "the contact's id")),
    responses(
        (status = 200, body = SafetyNumberJson),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
    ))]
pub async fn safety_number(
    Extract(state): Extract<State>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(id) = id?;
    let contact = find_contact(&state, &id).await?;
    let ours = *state.node.address().key();
    // Thousands of hash iterations: off the async workers.
    let number = tokio::task::spawn_blocking(move || SafetyNumber::new(&ours, &contact.identity))
        .await
        .map_err(|_| Problem::internal())?;
    Ok(Json(SafetyNumberJson {
        digits: number.digits().to_owned(),
        groups: number.groups().map(str::to_owned).collect(),
    })
    .into_response())
}

/// Marks a contact verified (the user compared safety numbers).
#[utoipa::path(post, path = "/api/v1/contacts/{id}/verify", tag = "contacts",
    params(("id" = String, Path, description = "the contact's id")),
    responses(
        (status = 204),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
    ))]
pub async fn verify(
    Extract(state): Extract<State>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(id) = id?;
    let contact = contact_id(&id)?;
    state.node.command(Input::ContactVerified { contact }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Accepts a contact's new key without verifying it: sending resumes.
#[utoipa::path(post, path = "/api/v1/contacts/{id}/acknowledge-key-change", tag = "contacts",
    params(("id" = String, Path, description = "the contact's id")),
    responses(
        (status = 204),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
    ))]
pub async fn acknowledge_key_change(
    Extract(state): Extract<State>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(id) = id?;
    let contact = contact_id(&id)?;
    state.node.command(Input::KeyChangeAcknowledged { contact }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One conversation per contact, the most recent first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations",
    responses((status = 200, body = Vec<Conversation>), (status = 401, body = ErrorBody)))]
pub async fn conversations(Extract(state): Extract<State>) -> Answer {
    let listed = state
        .node
        .read(|messenger, store| -> Result<Vec<(Conversation, u64)>, xchat_store::StoreError> {
            // The conversations' timers and the unread messages are not
            // kept apart from the messenger's state: loaded whole.
            let loaded = store.load_state()?;
            let mut listed = Vec::new();
            for contact in messenger.contacts().iter() {
                let last = store.history(contact.id, None, 1)?.into_iter().next();
                let timer = loaded
                    .conversations
                    .iter()
                    .find(|c| c.contact == contact.id)
                    .map_or(VanishingTimer::OFF, |c| c.timer);
                let unread = loaded.unread.iter().filter(|u| u.contact == contact.id).count();
                let at = last.as_ref().map_or(0, |m| m.sent_at.0);
                listed.push((
                    Conversation {
                        contact: hex::encode(contact.id.0),
                        name: contact.name.clone(),
                        unread: u64::try_from(unread).unwrap_or(u64::MAX),
                        timer_seconds: timer_seconds(timer),
                        last: last.as_ref().map(Message::from),
                    },
                    at,
                ));
            }
            Ok(listed)
        })
        .await?
        .map_err(|error| Problem::from(crate::node::NodeError::Store(error)))?;
    let mut listed = listed;
    listed.sort_by(|(a, at), (b, bt)| bt.cmp(at).then_with(|| a.name.cmp(&b.name)));
    Ok(Json(listed.into_iter().map(|(c, _)| c).collect::<Vec<_>>()).into_response())
}

/// A page of a conversation's history, newest first.
#[utoipa::path(get, path = "/api/v1/conversations/{contact}/messages", tag = "conversations",
    params(("contact" = String, Path, description = "the contact's id"), HistoryQuery),
    responses(
        (status = 200, body = Vec<Message>),
        (status = 400, description = "`invalid_id`, `invalid_limit`, `invalid_query`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`, `unknown_message`", body = ErrorBody),
    ))]
pub async fn history(
    Extract(state): Extract<State>,
    contact: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Answer {
    let Path(contact) = contact?;
    let contact = contact_id(&contact)?;
    let Query(query) = query?;
    let limit = match query.limit {
        None => DEFAULT_HISTORY_PAGE,
        Some(limit) => usize::try_from(limit)
            .ok()
            .filter(|limit| (1..=MAX_HISTORY_PAGE).contains(limit))
            .ok_or_else(|| {
                Problem::bad_request("invalid_limit", format!("limit is 1 to {MAX_HISTORY_PAGE}"))
            })?,
    };
    let before = query.before.as_deref().map(message_id).transpose()?;
    let page = state
        .node
        .read(move |messenger, store| {
            if messenger.contacts().get(contact).is_none() {
                return Err(Problem::unknown_contact());
            }
            let before = match before {
                None => None,
                Some(id) => match store.message(id).map_err(store_failed)? {
                    Some(message) if message.contact == contact => {
                        Some((message.sent_at, message.id))
                    }
                    _ => {
                        return Err(Problem::new(
                            StatusCode::NOT_FOUND,
                            "unknown_message",
                            "no message with this id in this conversation",
                        ));
                    }
                },
            };
            let page = store.history(contact, before, limit).map_err(store_failed)?;
            Ok(page.iter().map(Message::from).collect::<Vec<_>>())
        })
        .await??;
    Ok(Json(page).into_response())
}

/// Sends a text.
#[utoipa::path(post, path = "/api/v1/conversations/{contact}/messages", tag = "conversations",
    params(("contact" = String, Path, description = "the contact's id")),
    request_body = NewMessage,
    responses(
        (status = 201, body = MessageQueued),
        (status = 400, description = "`invalid_id`, `invalid_text`, `invalid_json`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
        (status = 409, description = "`key_change_not_acknowledged`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
    ))]
pub async fn send_text(
    Extract(state): Extract<State>,
    contact: Result<Path<String>, PathRejection>,
    body: Result<Json<NewMessage>, JsonRejection>,
) -> Answer {
    let Path(contact) = contact?;
    let contact = contact_id(&contact)?;
    let Json(body) = body?;
    match state.node.command(Input::TextSent { contact, text: body.text }).await? {
        Done::MessageQueued(id) => {
            Ok((StatusCode::CREATED, Json(MessageQueued { id: hex::encode(id.as_bytes()) }))
                .into_response())
        }
        _ => Err(Problem::internal()),
    }
}

/// Sets the conversation's vanishing timer (0 turns it off); the contact is
/// told.
#[utoipa::path(put, path = "/api/v1/conversations/{contact}/timer", tag = "conversations",
    params(("contact" = String, Path, description = "the contact's id")),
    request_body = TimerJson,
    responses(
        (status = 204),
        (status = 400, description = "`invalid_id`, `invalid_timer`, `invalid_json`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
    ))]
pub async fn set_timer(
    Extract(state): Extract<State>,
    contact: Result<Path<String>, PathRejection>,
    body: Result<Json<TimerJson>, JsonRejection>,
) -> Answer {
    let Path(contact) = contact?;
    let contact = contact_id(&contact)?;
    let Json(body) = body?;
    let timer = if body.seconds == 0 {
        VanishingTimer::OFF
    } else {
        VanishingTimer::from_secs(body.seconds).map_err(|_| {
            Problem::bad_request(
                "invalid_timer",
                format!(
                    "a timer is 0 (off) or {} to {} seconds",
                    xchat_proto::content::MIN_VANISHING_TIMER_SECS,
                    xchat_proto::content::MAX_VANISHING_TIMER_SECS
                ),
            )
        })?
    };
    find_contact_id(&state, contact).await?;
    state.node.command(Input::TimerSet { contact, timer }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Marks incoming messages read (their timers start; the contact gets a
/// read receipt if receipts are on).
#[utoipa::path(post, path = "/api/v1/conversations/{contact}/read", tag = "conversations",
    params(("contact" = String, Path, description = "the contact's id")),
    request_body = ReadJson,
    responses(
        (status = 204),
        (status = 400, description = "`invalid_id`, `too_many_ids`, `invalid_json`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
    ))]
pub async fn mark_read(
    Extract(state): Extract<State>,
    contact: Result<Path<String>, PathRejection>,
    body: Result<Json<ReadJson>, JsonRejection>,
) -> Answer {
    let Path(contact) = contact?;
    let contact = contact_id(&contact)?;
    let Json(body) = body?;
    if body.ids.len() > MAX_RECEIPT_IDS {
        return Err(Problem::bad_request(
            "too_many_ids",
            format!("at most {MAX_RECEIPT_IDS} ids at once"),
        ));
    }
    let ids = body.ids.iter().map(|id| message_id(id)).collect::<Result<Vec<_>, _>>()?;
    find_contact_id(&state, contact).await?;
    state.node.command(Input::MessagesRead { contact, ids }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Sends one step of a call's signalling (offer, answer, ICE candidate,
/// hang-up, decline) to the contact, end-to-end encrypted, live: direct to
/// each of the contact's devices, not kept in the history, and dropped
/// (with a `call_signal_failed` event) if no device takes it within 30 s.
#[utoipa::path(post, path = "/api/v1/conversations/{contact}/call", tag = "calls",
    params(("contact" = String, Path, description = "the contact's id")),
    request_body = NewCallSignal,
    responses(
        (status = 202, description = "encrypted and on its way"),
        (status = 400, description = "`invalid_id`, `invalid_call_id`, `invalid_sdp`, `invalid_ice_candidate`, `invalid_json`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
        (status = 409, description = "`key_change_not_acknowledged` (an offer, answer or candidate to a changed key; a hang-up or decline still goes)", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 429, description = "`too_many_call_signals`", body = ErrorBody),
    ))]
pub async fn send_call_signal(
    Extract(state): Extract<State>,
    contact: Result<Path<String>, PathRejection>,
    body: Result<Json<NewCallSignal>, JsonRejection>,
) -> Answer {
    let Path(contact) = contact?;
    let contact = contact_id(&contact)?;
    let Json(body) = body?;
    let signal = body.to_call_signal()?;
    state.node.command(Input::CallSignalSent { contact, signal }).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The contact with this id (text from the path).
async fn find_contact(state: &State, id: &str) -> Result<Contact, Problem> {
    find_contact_id(state, contact_id(id)?).await
}

pub(super) async fn find_contact_id(state: &State, id: ContactId) -> Result<Contact, Problem> {
    state
        .node
        .read(move |messenger, _| messenger.contacts().get(id).cloned())
        .await?
        .ok_or_else(Problem::unknown_contact)
}

pub(super) fn store_failed(error: xchat_store::StoreError) -> Problem {
    crate::node::NodeError::Store(error).into()
}
