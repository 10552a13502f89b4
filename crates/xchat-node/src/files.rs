//! Where a profile keeps the files of its conversations, how a file is
//! sealed for sending, and how a received one is fetched, verified and
//! kept.
//!
//! ```text
//! files/<id hex>.sealed   a file this device sends: its ciphertext, served to the recipient
//! files/<id hex>.part     a file being received: plaintext of the chunks verified so far
//! files/<id hex>.file     a file received whole, its BLAKE3 hash checked
//! ```
//!
//! Names are file ids in hex, never a name a peer chose: no path traversal
//! is possible.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand_core::CryptoRng;
use tokio::sync::mpsc;
use xchat_core::io::{FetchFile, Input};
use xchat_core::transfer::TransferFailure;
use xchat_crypto::file::{CHUNK_BYTES, ChunkCipher, FileDigest, FileKey};
use xchat_net::file::{EncryptedChunk, FetchRequest, RoutePolicy};
use xchat_proto::content::{FileDescriptor, FileId, FileName, MediaType};

use crate::courier::Courier;

/// Chunks between two progress reports of a transfer (4 MiB).
pub const PROGRESS_EVERY_CHUNKS: u64 = 64;

fn hex(id: &FileId) -> String {
    id.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The ciphertext of a file this device sends.
pub fn sealed_path(files: &Path, id: &FileId) -> PathBuf {
    files.join(format!("{}.sealed", hex(id)))
}

/// A file received whole.
pub fn received_path(files: &Path, id: &FileId) -> PathBuf {
    files.join(format!("{}.file", hex(id)))
}

fn partial_path(files: &Path, id: &FileId) -> PathBuf {
    files.join(format!("{}.part", hex(id)))
}

/// Why a file could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendFileError {
    /// The file could not be read, or its ciphertext not written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The name or media type is not one a descriptor can carry.
    #[error("{0}")]
    Descriptor(#[from] xchat_proto::ProtoError),
    /// The file is too large, or could not be encrypted.
    #[error("{0}")]
    Cipher(#[from] xchat_crypto::file::FileError),
}

/// Encrypts `source` under a new key into `files/<id>.sealed` and describes
/// it, as a blocking operation.
///
/// # Errors
/// [`SendFileError`].
pub fn seal(
    files: &Path,
    source: &Path,
    name: String,
    media_type: String,
    rng: &mut impl CryptoRng,
) -> Result<FileDescriptor, SendFileError> {
    let name = FileName::new(name)?;
    let media_type = MediaType::new(media_type)?;
    std::fs::create_dir_all(files)?;
    let id = FileId::random(rng);
    let key = FileKey::generate(rng);
    let path = sealed_path(files, &id);
    let partial = path.with_extension("sealing");
    let sealed = (|| {
        let reader = BufReader::with_capacity(1 << 20, File::open(source)?);
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, File::create(&partial)?);
        let digest = xchat_crypto::file::encrypt(&key, reader, &mut writer)?;
        writer.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
        std::fs::rename(&partial, &path)?;
        Ok::<_, SendFileError>(digest)
    })();
    let digest = match sealed {
        Ok(digest) => digest,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    Ok(FileDescriptor::new(id, name, media_type, key, digest)?)
}

/// Fetches the file of `fetch` from the device that offered it, from
/// `fetch.from_chunk` on: every chunk is verified before its plaintext is
/// written; the whole file's hash is checked before it is kept. Progress
/// and the outcome go to the node as inputs.
pub async fn fetch(courier: &Courier, fetch: FetchFile, files: PathBuf, node: mpsc::Sender<Input>) {
    let file = fetch.descriptor.id();
    let failed = |reason| Input::FileFailed { file, reason };
    let outcome = run_fetch(courier, &fetch, &files, &node).await;
    let input = match outcome {
        Ok(()) => Input::FileCompleted { file },
        Err(reason) => failed(reason),
    };
    // The node stopping is the only way this fails: the transfer resumes
    // from the store's progress after a restart.
    let _ = node.send(input).await;
}

async fn run_fetch(
    courier: &Courier,
    fetch: &FetchFile,
    files: &Path,
    node: &mpsc::Sender<Input>,
) -> Result<(), TransferFailure> {
    let descriptor = &fetch.descriptor;
    let file = descriptor.id();
    let peer =
        courier.resolve(&fetch.identity, fetch.device).await.ok_or(TransferFailure::Unreachable)?;
    let from_chunk = u32::try_from(fetch.from_chunk).map_err(|_| TransferFailure::Corrupt)?;
    let request = FetchRequest {
        file_id: file,
        token: descriptor.key().fetch_token(),
        from_chunk,
        route: RoutePolicy::Any,
    };
    let mut incoming =
        courier.net().fetch_file(peer, request).await.map_err(|_| TransferFailure::Unreachable)?;
    tokio::fs::create_dir_all(files).await.map_err(|_| TransferFailure::NoSpace)?;
    let partial = partial_path(files, &file);

    // The socket is read here while a blocking thread verifies, writes and
    // hashes what came before: the two run side by side, and the disk's
    // writes and syncs never hold up the runtime.
    let (chunks, queue) = mpsc::channel(KEEP_AHEAD_CHUNKS);
    let keeper = Keeper {
        partial: partial.clone(),
        cipher: ChunkCipher::new(descriptor.key()),
        digest: *descriptor.digest(),
        from_chunk: u64::from(from_chunk),
        file,
        node: node.clone(),
    };
    let kept = tokio::task::spawn_blocking(move || keeper.keep(queue));
    let read = async {
        while let Some(chunk) =
            incoming.next_chunk().await.map_err(|_| TransferFailure::Unreachable)?
        {
            // A keeper that stopped has its own reason, given below.
            if chunks.send(chunk).await.is_err() {
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(chunks);
    let kept = kept.await.map_err(|_| TransferFailure::NoSpace)?;
    match (kept, read) {
        (Err(failure), _) | (Ok(false), Err(failure)) => Err(failure),
        (Ok(false), Ok(())) => Err(TransferFailure::Unreachable),
        (Ok(true), _) => {
            std::fs::rename(&partial, received_path(files, &file))
                .map_err(|_| TransferFailure::NoSpace)?;
            Ok(())
        }
    }
}

/// Chunks read ahead of the keeper (1 MiB).
const KEEP_AHEAD_CHUNKS: usize = 16;

/// The blocking half of a fetch: verifies each chunk, writes its plaintext
/// to `<id>.part`, syncs and reports progress every
/// [`PROGRESS_EVERY_CHUNKS`], and hashes the file as it grows.
struct Keeper {
    partial: PathBuf,
    cipher: ChunkCipher,
    digest: FileDigest,
    from_chunk: u64,
    file: FileId,
    node: mpsc::Sender<Input>,
}

impl Keeper {
    /// Keeps the chunks of `queue` until the last one: `Ok(true)` once the
    /// whole file is written, synced and its hash checked, `Ok(false)` if
    /// the chunks stopped before the last one (the reader says why).
    fn keep(self, mut queue: mpsc::Receiver<EncryptedChunk>) -> Result<bool, TransferFailure> {
        let mut out = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&self.partial)
            .map_err(|_| TransferFailure::NoSpace)?;
        let offset = self.from_chunk * CHUNK_BYTES as u64;
        out.set_len(offset).map_err(|_| TransferFailure::NoSpace)?;
        // What earlier fetches verified and kept is hashed first.
        let mut hasher = blake3::Hasher::new();
        hash_prefix(&mut out, offset, &mut hasher).map_err(|_| TransferFailure::NoSpace)?;
        let mut done = self.from_chunk;
        let mut len = offset;
        while let Some(chunk) = queue.blocking_recv() {
            if u64::from(chunk.index()) != done {
                return Err(TransferFailure::Corrupt);
            }
            let last = chunk.is_last();
            let plaintext = chunk.open(&self.cipher).map_err(|_| TransferFailure::Corrupt)?;
            out.write_all(&plaintext).map_err(|_| TransferFailure::NoSpace)?;
            hasher.update(&plaintext);
            len += plaintext.len() as u64;
            done += 1;
            if done.is_multiple_of(PROGRESS_EVERY_CHUNKS) {
                out.sync_data().map_err(|_| TransferFailure::NoSpace)?;
                let progress = Input::FileProgress { file: self.file, chunks_done: done };
                // Only a stopping node refuses it; the transfer resumes then.
                let _ = self.node.blocking_send(progress);
            }
            if last {
                out.sync_all().map_err(|_| TransferFailure::NoSpace)?;
                // Each chunk authenticated itself; the hash binds the whole
                // file to what the sender described (no chunk dropped,
                // swapped or replayed across files).
                let whole = len == self.digest.plaintext_len()
                    && hasher.finalize().as_bytes() == self.digest.hash();
                if !whole {
                    drop(out);
                    let _ = std::fs::remove_file(&self.partial);
                    return Err(TransferFailure::Corrupt);
                }
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Hashes the first `len` bytes of `file` and leaves it positioned there.
fn hash_prefix(file: &mut File, len: u64, hasher: &mut blake3::Hasher) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let copied =
        std::io::copy(&mut BufReader::with_capacity(1 << 20, &mut *file).take(len), hasher)?;
    if copied != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "part shorter than its progress",
        ));
    }
    file.seek(SeekFrom::Start(len))?;
    Ok(())
}

/// Deletes every file of `id` (a vanished message's).
pub fn delete(files: &Path, id: &FileId) {
    for path in [sealed_path(files, id), partial_path(files, id), received_path(files, id)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, "a vanished file could not be deleted"),
        }
    }
}
