//! The structs `prost-build` generates from `proto/xchat/v1/*.proto`
//! (package `xchat.v1`), committed in `xchat.v1.rs`.
//!
//! Private to this crate: every decoder turns them into validated types at
//! once, and every encoder builds them from validated types. The
//! `generated_code` test fails when `xchat.v1.rs` is not what the `.proto`
//! files make today, and tells how to regenerate it.

// Generated items are `pub` inside this private module, and some (the enums'
// name conversions) are never called.
#![allow(unreachable_pub, dead_code)]

use zeroize::Zeroize;

include!("xchat.v1.rs");

/// Redacts the file key (the derive is skipped in the generator).
impl std::fmt::Debug for FileDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDescriptor")
            .field("name_bytes", &self.name.len())
            .field("media_type", &self.media_type)
            .field("size", &self.size)
            .field("key", &"<redacted>")
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

/// The key leaves this struct only by `mem::take`; whatever is left is wiped.
impl Drop for FileDescriptor {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}
