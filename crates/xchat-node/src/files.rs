//! Where a profile keeps the files of its conversations.

use xchat_proto::content::FileId;

/// The name, in the profile's `files/` directory, of the file `id`: its
/// id in hex, never a name a peer chose (no path traversal is possible).
pub fn file_name(id: &FileId) -> String {
    let mut name = String::with_capacity(2 * 16 + 5);
    for byte in id.as_bytes() {
        name.push_str(&format!("{byte:02x}"));
    }
    name.push_str(".file");
    name
}
