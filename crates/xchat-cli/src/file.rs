//! `xchat file` and `xchat backup`: files of a conversation, and encrypted
//! backups, through the local API of the running node.

use std::io::{IsTerminal as _, Read, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::Failure;
use crate::client::{Client, decode};

/// A file of a conversation, as the API lists it.
#[derive(Debug, Deserialize)]
struct Transfer {
    file: String,
    direction: String,
    name: String,
    size: u64,
    state: String,
    chunks_done: u64,
    chunks_total: u64,
}

/// The media type of a file, from its extension; the recipient's UI shows
/// images inline by it.
fn media_type(path: &Path) -> &'static str {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        Some("txt" | "md") => "text/plain",
        Some("mp3") => "audio/mpeg",
        Some("mp4") => "video/mp4",
        Some("zip") => "application/zip",
        Some("tar") => "application/x-tar",
        _ => "application/octet-stream",
    }
}

/// `text` for a URL's query: unreserved characters kept, every other byte
/// percent-encoded.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A reader that draws a progress bar on the terminal as it is read.
struct Progress<R> {
    inner: R,
    done: u64,
    total: u64,
    shown: u64,
    draw: bool,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.done += read as u64;
        let percent = (self.done * 100).checked_div(self.total).unwrap_or(100);
        if self.draw && (percent != self.shown || read == 0) {
            self.shown = percent;
            let filled = usize::try_from(percent * 30 / 100).unwrap_or(30).min(30);
            eprint!("\r[{}{}] {percent:>3}%", "#".repeat(filled), ".".repeat(30 - filled));
            let _ = std::io::stderr().flush();
        }
        Ok(read)
    }
}

/// `xchat file send NAME PATH`.
pub(crate) fn send(client: &Client, name: &str, path: &Path, json: bool) -> Result<(), Failure> {
    let contact = client.contact_named(name)?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::new(format!("{} has no file name", path.display())))?;
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
    let len = file
        .metadata()
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?
        .len();
    let draw = !json && std::io::stderr().is_terminal();
    let mut body = Progress { inner: file, done: 0, total: len, shown: 101, draw };
    let route =
        format!("/api/v1/conversations/{}/files?name={}", contact.id, query_escape(file_name));
    let answer = client.upload(&route, media_type(path), len, &mut body)?;
    if draw {
        eprintln!();
    }
    if json {
        println!("{answer}");
    } else {
        let file = answer.get("file").and_then(Value::as_str).unwrap_or("?");
        println!("Offered {file_name} ({len} bytes) to {name}: file {file}");
    }
    Ok(())
}

/// `xchat file list NAME`.
pub(crate) fn list(client: &Client, name: &str, json: bool) -> Result<(), Failure> {
    let contact = client.contact_named(name)?;
    let answer = client.get(&format!("/api/v1/conversations/{}/files", contact.id))?;
    if json {
        println!("{answer}");
        return Ok(());
    }
    let transfers: Vec<Transfer> = decode(&answer)?;
    if transfers.is_empty() {
        println!("No files with {name}.");
    }
    for t in transfers {
        let arrow = if t.direction == "out" { "->" } else { "<-" };
        println!(
            "{}  {arrow} {:<30} {:>12} bytes  {} ({}/{})",
            t.file,
            crate::conversation::printable(&t.name),
            t.size,
            t.state,
            t.chunks_done,
            t.chunks_total
        );
    }
    Ok(())
}

/// `xchat file accept ID`.
pub(crate) fn accept(client: &Client, file: &str, json: bool) -> Result<(), Failure> {
    client.post(&format!("/api/v1/files/{file}/accept"), None)?;
    if json {
        println!("{}", json!({ "file": file, "accepted": true }));
    } else {
        println!("Accepted: the node fetches it now (`xchat file list NAME` shows how far).");
    }
    Ok(())
}

/// `xchat file get ID --out PATH`: never replaces an existing file.
pub(crate) fn get(client: &Client, file: &str, out: &Path, json: bool) -> Result<(), Failure> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(Failure::new(format!("{} exists: give another --out", out.display())));
    }
    let partial = out.with_extension("xchat-part");
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", partial.display())))?;
    let written = client.download(&format!("/api/v1/files/{file}"), &mut writer);
    let written = match written.and_then(|n| {
        writer.sync_all().map_err(|e| Failure::new(format!("writing: {e}")))?;
        std::fs::rename(&partial, out).map_err(|e| Failure::new(format!("writing: {e}")))?;
        Ok(n)
    }) {
        Ok(n) => n,
        Err(failure) => {
            let _ = std::fs::remove_file(&partial);
            return Err(failure);
        }
    };
    if json {
        println!("{}", json!({ "file": file, "path": out, "bytes": written }));
    } else {
        println!("Saved {written} bytes to {}", out.display());
    }
    Ok(())
}

/// `xchat backup export FILE`.
pub(crate) fn backup(client: &Client, path: &Path, json: bool) -> Result<(), Failure> {
    let path: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Failure::new(format!("no current directory: {e}")))?
            .join(path)
    };
    let answer = client.post("/api/v1/backup", Some(&json!({ "path": path })))?;
    if json {
        println!("{answer}");
    } else {
        println!(
            "Backup written to {} ({} contacts, {} messages), encrypted under your recovery phrase.",
            path.display(),
            answer.get("contacts").and_then(Value::as_u64).unwrap_or(0),
            answer.get("messages").and_then(Value::as_u64).unwrap_or(0)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_escape_keeps_unreserved_characters_only() {
        assert_eq!(query_escape("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(query_escape("../x y&z=é"), "..%2Fx%20y%26z%3D%C3%A9");
    }

    #[test]
    fn media_types_come_from_the_extension() {
        assert_eq!(media_type(Path::new("a/photo.JPG")), "image/jpeg");
        assert_eq!(media_type(Path::new("notes")), "application/octet-stream");
    }
}
