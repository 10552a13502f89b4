//! What the browser tests share with the web UI's benchmark
//! (`benches/web.rs` includes these files by path).

pub(crate) mod browser;
pub(crate) mod nodes;
