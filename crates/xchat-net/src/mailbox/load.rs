//! How much proof of work a mailbox node asks of a store, from how many
//! stores it took lately. Sans-IO: the node's clock is a parameter.
//!
//! # The rule
//!
//! The node counts the stores it *accepted* in fixed windows of
//! [`Config::load_window_ms`] (10 s by default). Its load is the larger of the
//! last whole window's count and the current window's count so far, so a
//! burst is felt at once and a quiet spell is felt within two windows. It
//! asks:
//!
//! ```text
//! bits = min(floor + extra, cap)
//! extra = 0 below busy stores, then 1 + log2(load / busy): one more bit per doubling
//! ```
//!
//! | load (stores per window) | asked (defaults: floor 16, busy 100, cap 22) |
//! |---|---|
//! | 0 to 99 | 16 |
//! | 100 to 199 | 17 |
//! | 200 to 399 | 18 |
//! | 400 to 799 | 19 |
//! | ... | ... |
//! | 3 200 and more | 22 (the cap) |
//!
//! - **floor** is [`Config::min_difficulty_bits`], what a quiet node asks.
//! - **busy** is [`Config::busy_stores_per_window`], the load that costs one
//!   more bit.
//! - **cap** is [`Config::max_difficulty_bits`], at most xchat-proto's
//!   [`MAX_DEMANDED_DIFFICULTY_BITS`]: an honest sender can always pay it.
//!
//! Each extra bit doubles a sender's cost, so a sender that floods a node
//! pays for its own flood: to keep `2 x busy` stores per window going it
//! pays twice as much for each. Only accepted stores count: refused ones
//! cost the node a decode and a hash at most, and counting them would let
//! anyone raise the price for everyone for free. As the load falls the
//! node asks one bit less per halving, and the floor again once a whole
//! window passed with fewer than `busy` stores.

use xchat_proto::mailbox::MAX_DEMANDED_DIFFICULTY_BITS;

use super::Config;

/// The difficulty asked for `stores` accepted in a window (see the module
/// doc): `floor`, one bit more from `busy` stores, one more per doubling,
/// never above `cap` (nor below `floor`).
pub fn difficulty_for(floor: u8, cap: u8, busy: u64, stores: u64) -> u8 {
    // Number of bits of stores / busy: 0 below busy, 1 up to twice, ...
    let extra = u64::BITS - (stores / busy.max(1)).leading_zeros();
    let asked = u32::from(floor).saturating_add(extra);
    u8::try_from(asked).unwrap_or(u8::MAX).min(cap.max(floor))
}

/// A node's recent stores, counted per window.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    window_ms: u64,
    window_start_ms: u64,
    /// Stores accepted in the current window.
    current: u64,
    /// Stores accepted in the window before, if it just ended.
    previous: u64,
}

impl Load {
    pub(crate) fn new(window_ms: u64) -> Self {
        // A zero window would count nothing: one millisecond at least.
        Self { window_ms: window_ms.max(1), window_start_ms: 0, current: 0, previous: 0 }
    }

    /// Counts one accepted store at `now_ms`.
    pub(crate) fn record(&mut self, now_ms: u64) {
        self.roll(now_ms);
        self.current = self.current.saturating_add(1);
    }

    /// The load at `now_ms`: the larger of the last whole window's stores
    /// and the current window's so far.
    pub(crate) fn stores(&mut self, now_ms: u64) -> u64 {
        self.roll(now_ms);
        self.current.max(self.previous)
    }

    /// Starts a new window when the current one ended; a clock that went
    /// back stays in the current window.
    fn roll(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        if elapsed < self.window_ms {
            return;
        }
        // The window just ended counts; one that ended longer ago is past.
        self.previous = if elapsed < self.window_ms.saturating_mul(2) { self.current } else { 0 };
        self.current = 0;
        self.window_start_ms = now_ms - elapsed % self.window_ms;
    }
}

/// `config` with its difficulties within what a sender can pay: the floor
/// and cap at most [`MAX_DEMANDED_DIFFICULTY_BITS`], the cap at least the
/// floor.
pub(crate) fn payable(mut config: Config) -> Config {
    let floor = config.min_difficulty_bits.min(MAX_DEMANDED_DIFFICULTY_BITS);
    let cap = config.max_difficulty_bits.clamp(floor, MAX_DEMANDED_DIFFICULTY_BITS);
    if (floor, cap) != (config.min_difficulty_bits, config.max_difficulty_bits) {
        tracing::warn!(
            floor,
            cap,
            "mailbox difficulties set past what senders pay; using these instead"
        );
    }
    config.min_difficulty_bits = floor;
    config.max_difficulty_bits = cap;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_790_000_000_000;

    #[test]
    fn one_more_bit_per_doubling_of_load_from_busy() {
        let asked = |stores| difficulty_for(16, 22, 100, stores);
        assert_eq!([asked(0), asked(1), asked(99)], [16, 16, 16]);
        assert_eq!([asked(100), asked(199)], [17, 17]);
        assert_eq!([asked(200), asked(399)], [18, 18]);
        assert_eq!([asked(400), asked(800), asked(1600)], [19, 20, 21]);
    }

    #[test]
    fn difficulty_never_passes_the_cap_nor_falls_below_the_floor() {
        assert_eq!(difficulty_for(16, 22, 100, 3_200), 22);
        assert_eq!(difficulty_for(16, 22, 100, u64::MAX), 22);
        assert_eq!(difficulty_for(16, 22, 0, u64::MAX), 22, "zero busy is one");
        // A cap set below the floor is the floor.
        assert_eq!(difficulty_for(16, 10, 100, u64::MAX), 16);
        assert_eq!(difficulty_for(u8::MAX, u8::MAX, 1, u64::MAX), u8::MAX, "no overflow");
    }

    #[test]
    fn load_counts_the_current_and_last_window_and_forgets_older() {
        let mut load = Load::new(1000);
        for _ in 0..5 {
            load.record(NOW);
        }
        assert_eq!(load.stores(NOW + 1), 5);
        // The next window still sees the last one's stores.
        let next = NOW + 1000;
        load.record(next);
        assert_eq!(load.stores(next), 5);
        load.record(next + 1);
        assert_eq!(load.stores(next + 999), 5);
        // Two windows on, only the window before counts (2 stores).
        assert_eq!(load.stores(next + 1000), 2);
        // After a whole quiet window, nothing.
        assert_eq!(load.stores(next + 2000), 0);
        // A long gap forgets everything at once.
        load.record(next + 2000);
        assert_eq!(load.stores(next + 1_000_000), 0);
    }

    #[test]
    fn clock_going_back_does_not_panic_or_forget() {
        let mut load = Load::new(1000);
        load.record(NOW);
        load.record(NOW - 50_000);
        assert_eq!(load.stores(0), 2);
        let mut zero = Load::new(0);
        zero.record(u64::MAX);
        assert_eq!(zero.stores(u64::MAX), 1);
    }

    #[test]
    fn configured_difficulties_are_kept_payable() {
        let config = payable(Config {
            min_difficulty_bits: 40,
            max_difficulty_bits: 60,
            ..Config::default()
        });
        assert_eq!(
            (config.min_difficulty_bits, config.max_difficulty_bits),
            (MAX_DEMANDED_DIFFICULTY_BITS, MAX_DEMANDED_DIFFICULTY_BITS)
        );
        let config = payable(Config {
            min_difficulty_bits: 12,
            max_difficulty_bits: 4,
            ..Config::default()
        });
        assert_eq!((config.min_difficulty_bits, config.max_difficulty_bits), (12, 12));
        assert_eq!(payable(Config::default()), Config::default());
    }
}
