//! xchat's messenger engine: every rule of how messages are sent, received,
//! acknowledged, retried, expired and kept, as a deterministic state machine.
//!
//! The core is *sans-IO*: it never touches a socket, a file, the clock or the
//! OS random generator. The node feeds it inputs (an envelope arrived, the
//! user sent a message, time passed) with the current time and a random
//! generator, and carries out the effects it returns, committing every store
//! write of one input before any send or notification of that input
//! (`docs/architecture.md`). That is what makes every behaviour testable
//! deterministically, and a whole network simulable in one process.
//!
//! Main types: [`Messenger`] (`handle(now, input, rng) -> Vec<Effect>`,
//! `next_deadline()`), [`Input`] and [`Effect`] ([`io`]), the records the
//! store keeps ([`record`]), the contact book ([`contact`]), the retry policy
//! ([`retry`]).
//!
//! Built so far: contacts and key changes, first contact through prekey
//! bundles, texts with an outbox that retries direct then via mailbox until a
//! delivery receipt, delivery and read receipts, vanishing timers, duplicate
//! and hostile-input handling, the bookkeeping of file transfers
//! ([`transfer`]), and the live, end-to-end-encrypted signalling of calls
//! ([`call`]). Several devices per user come next.

pub mod call;
pub mod contact;
pub mod io;
pub mod messenger;
mod outbox;
pub mod record;
pub mod retry;
pub mod time;
pub mod transfer;

pub use io::{Effect, Input};
pub use messenger::Messenger;
