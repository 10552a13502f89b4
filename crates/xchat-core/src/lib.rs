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
//! Built so far: the contact book ([`contact`]), the retry policy ([`retry`]), time ([`time`]).

pub mod contact;
pub mod retry;
pub mod time;
