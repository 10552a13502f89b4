//! The file and backup handlers of `/api/v1`: sending a file (its bytes
//! are the request body, streamed to disk), listing a conversation's
//! transfers, accepting or cancelling one, downloading a received file, and
//! writing an encrypted backup.
//!
//! An upload goes to a temporary file in the profile's `files/` directory,
//! named from random bytes (never from the name the client gave: that is
//! only checked and carried in the descriptor); the node seals it from
//! there, and the temporary file is removed whatever happens.

use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use rand_core::{OsRng, TryRngCore as _};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
use tracing::warn;
use xchat_core::io::{Done, Input};
use xchat_core::record::Direction;
use xchat_core::transfer::TransferState;
use xchat_proto::content::{FileName, MediaType};
use xchat_store::StoreError;

use super::problem::{ErrorBody, Problem};
use super::routes::{State, find_contact_id, store_failed};
use super::schema::{
    BackupWritten, FileBytes, FileQueued, NewBackup, TransferJson, UploadQuery, contact_id, file_id,
};
use crate::node::NodeError;

/// The largest file taken by `POST .../files` (4 GiB). Larger bodies are
/// refused with 413 `file_too_large`: before reading when `Content-Length`
/// says so, else as soon as the count passes it.
pub const MAX_UPLOAD_BYTES: u64 = 4 << 30;

/// The media type of an upload without `Content-Type`.
pub const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// Bytes read from disk per frame of a download.
const DOWNLOAD_FRAME_BYTES: usize = 64 * 1024;
/// Bytes buffered before an upload's write to disk.
const UPLOAD_BUFFER_BYTES: usize = 1 << 20;

type Answer = Result<Response, Problem>;

/// The file and backup routes under `/api/v1`.
pub(super) fn file_routes() -> axum::Router<State> {
    axum::Router::new()
        .route("/conversations/{contact}/files", get(transfers).post(upload))
        .route("/files/{file}", get(download))
        .route("/files/{file}/preview", get(preview))
        .route("/files/{file}/accept", post(accept))
        .route("/files/{file}/cancel", post(cancel))
        .route("/backup", post(backup))
}

/// Sends a file: the request body is its bytes, `Content-Type` its media
/// type.
#[utoipa::path(post, path = "/api/v1/conversations/{contact}/files", tag = "files",
    params(("contact" = String, Path, description = "the contact's id"), UploadQuery),
    request_body(content = FileBytes, content_type = "*/*",
        description = "The file's bytes (up to 4 GiB). `Content-Type` is its media type \
            (`application/octet-stream` without one); parameters such as `charset` are dropped."),
    responses(
        (status = 201, body = FileQueued),
        (status = 400, description = "`invalid_id`, `invalid_file_name`, `invalid_media_type`, `invalid_query`, `body_interrupted`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
        (status = 409, description = "`key_change_not_acknowledged`, `too_many_transfers`", body = ErrorBody),
        (status = 413, description = "`file_too_large`", body = ErrorBody),
        (status = 507, description = "`disk_full`", body = ErrorBody),
    ))]
pub async fn upload(
    Extract(state): Extract<State>,
    contact: Result<Path<String>, PathRejection>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Path(contact) = contact?;
    let contact = contact_id(&contact)?;
    let Query(query) = query?;
    // Checked before a byte is read: the descriptor would refuse them
    // after the whole body was on disk.
    let name = FileName::new(query.name).map_err(|_| {
        Problem::bad_request(
            "invalid_file_name",
            "a file name has 1 to 255 bytes, without /, \\, .., control or bidirectional characters",
        )
    })?;
    let media_type = media_type(&headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_UPLOAD_BYTES) {
        return Err(too_large());
    }
    find_contact_id(&state, contact).await?;
    let mut upload = Upload::create(state.node.files()).await?;
    upload.receive(body).await?;
    // The body is in: sealing and offering go on even if the client hangs
    // up now (else a half-done seal could leave a ciphertext no one
    // serves), and the plaintext copy goes once they are done.
    let node = state.node.clone();
    let done = tokio::spawn(async move {
        let done = node
            .send_file(
                contact,
                upload.path.clone(),
                name.as_str().to_owned(),
                media_type.as_str().to_owned(),
            )
            .await;
        drop(upload);
        done
    })
    .await
    .map_err(|_| Problem::internal())?;
    match done? {
        Done::FileQueued { message, file } => Ok((
            StatusCode::CREATED,
            Json(FileQueued {
                message: hex::encode(message.as_bytes()),
                file: hex::encode(file.as_bytes()),
            }),
        )
            .into_response()),
        _ => Err(Problem::internal()),
    }
}

/// The conversation's files, the most recently changed first.
#[utoipa::path(get, path = "/api/v1/conversations/{contact}/files", tag = "files",
    params(("contact" = String, Path, description = "the contact's id")),
    responses(
        (status = 200, body = Vec<TransferJson>),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
    ))]
pub async fn transfers(
    Extract(state): Extract<State>,
    contact: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(contact) = contact?;
    let contact = contact_id(&contact)?;
    let listed = state
        .node
        .read(move |messenger, store| {
            if messenger.contacts().get(contact).is_none() {
                return Err(Problem::unknown_contact());
            }
            let transfers = store.transfers(contact).map_err(store_failed)?;
            Ok(transfers.iter().map(TransferJson::from).collect::<Vec<_>>())
        })
        .await??;
    Ok(Json(listed).into_response())
}

/// Accepts an offered file (or one that failed: it resumes); the node
/// fetches it, and `transfer_changed` events follow its progress.
#[utoipa::path(post, path = "/api/v1/files/{file}/accept", tag = "files",
    params(("file" = String, Path, description = "the file's id")),
    responses(
        (status = 204),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`unknown_file`", body = ErrorBody),
        (status = 409, description = "`transfer_state`: not offered or failed", body = ErrorBody),
    ))]
pub async fn accept(
    Extract(state): Extract<State>,
    file: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(file) = file?;
    let file = file_id(&file)?;
    state.node.command(Input::FileAccepted { file }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Cancels a transfer that is offered, accepted or moving.
#[utoipa::path(post, path = "/api/v1/files/{file}/cancel", tag = "files",
    params(("file" = String, Path, description = "the file's id")),
    responses(
        (status = 204),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`unknown_file`", body = ErrorBody),
        (status = 409, description = "`transfer_state`: complete, failed or cancelled already", body = ErrorBody),
    ))]
pub async fn cancel(
    Extract(state): Extract<State>,
    file: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(file) = file?;
    let file = file_id(&file)?;
    state.node.command(Input::FileCancelled { file }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A received file's bytes, streamed, as an attachment.
#[utoipa::path(get, path = "/api/v1/files/{file}", tag = "files",
    description = "The plaintext of a file received whole (its hash checked), with the \
        descriptor's `Content-Type` and `Content-Disposition: attachment`. A file this device \
        sent is kept only encrypted: 409 `transfer_state`.",
    params(("file" = String, Path, description = "the file's id")),
    responses(
        (status = 200, description = "the file's bytes", content_type = "application/octet-stream", body = FileBytes),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`unknown_file`", body = ErrorBody),
        (status = 409, description = "`transfer_state`: not complete, or sent by this device", body = ErrorBody),
    ))]
pub async fn download(
    Extract(state): Extract<State>,
    file: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(file) = file?;
    let (transfer, opened, length) = open_received(&state, &file).await?;
    let descriptor = &transfer.descriptor;
    let content_type = HeaderValue::from_str(descriptor.media_type().as_str())
        .unwrap_or(HeaderValue::from_static(DEFAULT_MEDIA_TYPE));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_LENGTH, HeaderValue::from(length)),
        (header::CONTENT_DISPOSITION, content_disposition(descriptor.name().as_str())),
        // A peer chose these bytes and their media type: never let a
        // browser run them as a page of this origin.
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, Body::from_stream(read_frames(opened))).into_response())
}

/// A received image's bytes, to show inline: only PNG, JPEG, GIF or WebP,
/// told by the file's first bytes (never by the media type the sender
/// claimed), with that type as `Content-Type`.
#[utoipa::path(get, path = "/api/v1/files/{file}/preview", tag = "files",
    description = "The plaintext of a received image, for an `<img>`: only when its first bytes \
        are those of a PNG, JPEG, GIF or WebP image (SVG never: it can hold script), whatever \
        media type the sender gave. `Content-Type` is the type its bytes show, \
        `Content-Disposition: inline`.",
    params(("file" = String, Path, description = "the file's id")),
    responses(
        (status = 200, description = "the image's bytes", content_type = "image/png", body = FileBytes),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 404, description = "`unknown_file`", body = ErrorBody),
        (status = 409, description = "`transfer_state`: not complete, or sent by this device", body = ErrorBody),
        (status = 415, description = "`not_an_image`: not a PNG, JPEG, GIF or WebP", body = ErrorBody),
    ))]
pub async fn preview(
    Extract(state): Extract<State>,
    file: Result<Path<String>, PathRejection>,
) -> Answer {
    let Path(file) = file?;
    let (_, mut opened, length) = open_received(&state, &file).await?;
    let mut head = [0u8; IMAGE_MAGIC_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        match opened.read(&mut head[filled..]).await.map_err(|error| io_failed(&error))? {
            0 => break,
            read => filled += read,
        }
    }
    let Some(kind) = image_kind(&head[..filled]) else {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_an_image",
            "only PNG, JPEG, GIF and WebP images are shown inline: download the file",
        ));
    };
    opened.rewind().await.map_err(|error| io_failed(&error))?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
        (header::CONTENT_LENGTH, HeaderValue::from(length)),
        (header::CONTENT_DISPOSITION, HeaderValue::from_static("inline")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, Body::from_stream(read_frames(opened))).into_response())
}

/// Bytes read to tell an image's kind.
const IMAGE_MAGIC_BYTES: usize = 12;

/// The media type of an image whose bytes begin with `head`, for the kinds
/// a browser decodes without running anything: PNG, JPEG, GIF, WebP.
fn image_kind(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// A received, complete file, opened, with its transfer and length.
async fn open_received(
    state: &State,
    file: &str,
) -> Result<(xchat_core::transfer::TransferRecord, tokio::fs::File, u64), Problem> {
    let file = file_id(file)?;
    let transfer = state
        .node
        .read(move |_, store| store.transfer(file))
        .await?
        .map_err(store_failed)?
        .ok_or_else(unknown_file)?;
    if transfer.direction == Direction::Outgoing {
        return Err(transfer_state("this device keeps only the encrypted copy of a file it sent"));
    }
    if transfer.state != TransferState::Complete {
        return Err(transfer_state("the file is not received whole yet"));
    }
    let path = crate::files::received_path(state.node.files(), &file);
    let opened = match tokio::fs::File::open(&path).await {
        Ok(opened) => opened,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "unknown_file",
                "the file is no longer on this device",
            ));
        }
        Err(error) => return Err(io_failed(&error)),
    };
    let length = opened.metadata().await.map_err(|error| io_failed(&error))?.len();
    Ok((transfer, opened, length))
}

/// Writes an encrypted backup of the profile (vanishing messages left
/// out), restorable with the recovery phrase.
#[utoipa::path(post, path = "/api/v1/backup", tag = "backup", request_body = NewBackup,
    responses(
        (status = 201, body = BackupWritten),
        (status = 400, description = "`relative_path`, `invalid_path`, `invalid_json`", body = ErrorBody),
        (status = 409, description = "`path_exists`", body = ErrorBody),
        (status = 507, description = "`disk_full`", body = ErrorBody),
    ))]
pub async fn backup(
    Extract(state): Extract<State>,
    body: Result<Json<NewBackup>, JsonRejection>,
) -> Answer {
    let Json(body) = body?;
    let path = PathBuf::from(&body.path);
    if !path.is_absolute() {
        return Err(Problem::bad_request(
            "relative_path",
            "give the backup's absolute path: the daemon's working directory is not yours",
        ));
    }
    match state.node.export_backup(path).await {
        Ok(summary) => Ok((
            StatusCode::CREATED,
            Json(BackupWritten {
                path: body.path,
                contacts: summary.contacts,
                messages: summary.messages,
                vanishing_left_out: summary.vanishing_left_out,
                image_bytes: summary.image_bytes,
            }),
        )
            .into_response()),
        Err(NodeError::Store(StoreError::AlreadyExists)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "path_exists",
            "something is already at this path: a backup never replaces a file",
        )),
        Err(NodeError::Store(StoreError::DiskFull)) => Err(disk_full()),
        Err(NodeError::Store(StoreError::Io(error)))
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Err(Problem::bad_request(
                "invalid_path",
                "the backup's directory does not exist or cannot be written",
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// A temporary file in the profile's `files/`, removed when dropped.
struct Upload {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl Upload {
    async fn create(files: &FsPath) -> Result<Self, Problem> {
        tokio::fs::create_dir_all(files).await.map_err(|error| io_failed(&error))?;
        let mut random = [0u8; 16];
        OsRng.try_fill_bytes(&mut random).map_err(|_| {
            warn!("the operating system's random number generator failed");
            Problem::internal()
        })?;
        let path = files.join(format!("{}.upload", hex::encode(random)));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&path).await.map_err(|error| io_failed(&error))?;
        Ok(Self { path, file: Some(file) })
    }

    /// Writes `body` to the file, up to [`MAX_UPLOAD_BYTES`].
    async fn receive(&mut self, body: Body) -> Result<(), Problem> {
        let Some(file) = self.file.take() else { return Err(Problem::internal()) };
        let mut writer = tokio::io::BufWriter::with_capacity(UPLOAD_BUFFER_BYTES, file);
        let mut frames = body.into_data_stream();
        let mut received = 0u64;
        while let Some(frame) = frames.next().await {
            let frame = frame.map_err(|_| {
                Problem::bad_request("body_interrupted", "the request body ended before its end")
            })?;
            received = received.saturating_add(frame.len() as u64);
            if received > MAX_UPLOAD_BYTES {
                return Err(too_large());
            }
            writer.write_all(&frame).await.map_err(|error| io_failed(&error))?;
        }
        writer.flush().await.map_err(|error| io_failed(&error))?;
        self.file = Some(writer.into_inner());
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        drop(self.file.take());
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => warn!(%error, "an upload's temporary file could not be removed"),
        }
    }
}

/// The media type of an upload: `Content-Type` without its parameters.
fn media_type(headers: &HeaderMap) -> Result<MediaType, Problem> {
    let invalid = || {
        Problem::bad_request(
            "invalid_media_type",
            "Content-Type is a media type: type/subtype, as RFC 6838 names them",
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return MediaType::new(DEFAULT_MEDIA_TYPE.to_owned()).map_err(|_| invalid());
    };
    let value = value.to_str().map_err(|_| invalid())?;
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    MediaType::new(essence).map_err(|_| invalid())
}

/// `attachment`, with the name as plain ASCII (anything else, quotes and
/// backslashes included, as `_`) and exactly in RFC 8187's `filename*`.
fn content_disposition(name: &str) -> HeaderValue {
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '%') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

/// The file's bytes as a stream of frames.
fn read_frames(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buffer = vec![0u8; DOWNLOAD_FRAME_BYTES];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(Bytes::from(buffer)), Some(file)))
            }
            Err(error) => {
                warn!(%error, "a download stopped");
                Some((Err(error), None))
            }
        }
    })
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
        format!("a file sent through the API has at most {MAX_UPLOAD_BYTES} bytes"),
    )
}

fn unknown_file() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "unknown_file", "no file with this id")
}

fn transfer_state(message: &'static str) -> Problem {
    Problem::new(StatusCode::CONFLICT, "transfer_state", message)
}

fn disk_full() -> Problem {
    Problem::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", "the disk is full")
}

fn io_failed(error: &std::io::Error) -> Problem {
    if matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) {
        return disk_full();
    }
    warn!(%error, "an API file operation failed");
    Problem::internal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_is_ascii_and_exact() {
        let value = content_disposition("rapport \"final\" é;.pdf");
        assert_eq!(
            value.to_str().unwrap(),
            "attachment; filename=\"rapport _final_ _;.pdf\"; \
             filename*=UTF-8''rapport%20%22final%22%20%C3%A9%3B.pdf"
        );
    }

    #[test]
    fn only_png_jpeg_gif_and_webp_are_images() {
        assert_eq!(image_kind(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(image_kind(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(image_kind(b"GIF89a\x01\0"), Some("image/gif"));
        assert_eq!(image_kind(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        for not in [&b"<svg xmlns="[..], b"RIFF\0\0\0\0WAVE", b"\x89PN", b"", b"<html>"] {
            assert_eq!(image_kind(not), None, "{not:?}");
        }
    }

    #[test]
    fn media_type_drops_parameters_and_defaults() {
        let mut headers = HeaderMap::new();
        assert_eq!(media_type(&headers).unwrap().as_str(), DEFAULT_MEDIA_TYPE);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("Text/Plain; charset=utf-8"));
        assert_eq!(media_type(&headers).unwrap().as_str(), "text/plain");
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("nonsense"));
        assert_eq!(media_type(&headers).unwrap_err().code, "invalid_media_type");
    }
}
