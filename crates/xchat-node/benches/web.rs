//! The web UI's speed (issue 6's targets), in Debian's headless Chromium
//! against a real node on loopback whose profile holds a conversation of
//! 10,000 messages:
//!
//! - **first load**: from the navigation's start to interactive, as the
//!   page marks it (`performance.mark('xchat-ready')` in `app.js`: the
//!   identity, contacts and conversations loaded, the app shown and the
//!   events WebSocket started). Each sample is a new browser context
//!   holding only the session cookie: nothing cached. Target 300 ms.
//! - **opening the 10,000-message conversation**: from the click on it to
//!   the first animation frame with its newest 100 messages in the DOM,
//!   timed in the page; also the app's own measure, `xchat-open` (from
//!   `openConversation` to the page handed to the timeline). Target 200 ms.
//!
//! Each sample uses a fresh page; the first few are a warm-up, not counted.
//! It prints p50, p95 and max of each with the ratio to its target, and the
//! machine's load (`/proc/loadavg`) at the start.
//!
//! `cargo bench -p xchat-node --bench web`. `XCHAT_BENCH_SAMPLES` sets the
//! number of samples (default 20). Needs `chromium` (`apt-get install
//! chromium`; `scripts/test.sh` installs it for the tests).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The browser tests' harness, shared; the bench uses a part of it.
#[allow(dead_code)]
#[path = "../tests/support/browser.rs"]
mod browser;
#[allow(dead_code)]
#[path = "../tests/support/nodes.rs"]
mod nodes;

use std::time::Instant;

use serde_json::Value;
use xchat_node::Relay;

use browser::{Browser, Page};
use nodes::LONG_CONVERSATION;

const FIRST_LOAD_TARGET_MS: f64 = 300.0;
const OPEN_TARGET_MS: f64 = 200.0;
const DEFAULT_SAMPLES: usize = 20;
const WARM_UP: usize = 3;

/// The expression: ms from the navigation's start to the `xchat-ready`
/// mark, and how long the first load's `GET /api/v1/conversations` took
/// (most of it: it reads the outbox, see docs/web.md).
const READY_MS: &str = "[performance.getEntriesByName('xchat-ready')[0].startTime,
    performance.getEntriesByType('resource')
        .find((e) => new URL(e.name).pathname === '/api/v1/conversations').duration]";

/// The expression: clicks the conversation once a first frame is drawn,
/// then gives the ms from the click to the first frame with 100 messages
/// in the DOM, and the app's own `xchat-open` measure.
const OPEN_MS: &str = "(async () => {
    const frame = () => new Promise((r) => requestAnimationFrame(r));
    await frame();
    const t0 = performance.now();
    document.querySelector('#conversations .conversation').click();
    while (document.querySelectorAll('#messages li').length < 100) await frame();
    const drawn = performance.now() - t0;
    return [drawn, performance.getEntriesByName('xchat-open')[0].duration,
            document.querySelectorAll('#messages li').length];
})()";

struct Sample {
    ready_ms: f64,
    conversations_ms: f64,
    open_ms: f64,
    app_open_ms: f64,
}

/// One fresh page: a first load, then the long conversation opened.
async fn sample(browser: &mut Browser, cookies: &Value, url: &str) -> Sample {
    let page: Page = browser.page_with_cookies("sample", cookies.clone()).await;
    browser.goto(&page, url).await;
    browser.wait(&page, "document.body.dataset.ready === 'true'", "the app").await;
    let ready = browser.eval(&page, READY_MS).await;
    let opened = browser.eval(&page, OPEN_MS).await;
    let shown = opened[2].as_u64().unwrap();
    assert!((100..=150).contains(&shown), "{shown} messages in the DOM");
    let sample = Sample {
        ready_ms: ready[0].as_f64().unwrap(),
        conversations_ms: ready[1].as_f64().unwrap(),
        open_ms: opened[0].as_f64().unwrap(),
        app_open_ms: opened[1].as_f64().unwrap(),
    };
    browser.close(page).await;
    sample
}

/// Nearest rank of `p` in `sorted`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `p50 182 ms, p95 230 ms, max 250 ms`, and the ratios to `target`.
fn summary(mut values: Vec<f64>, target: Option<f64>) -> String {
    values.sort_by(f64::total_cmp);
    let (p50, p95, max) =
        (percentile(&values, 0.50), percentile(&values, 0.95), values[values.len() - 1]);
    let figures = format!("p50 {p50:.0} ms, p95 {p95:.0} ms, max {max:.0} ms");
    match target {
        Some(target) => format!(
            "{figures} (target {target:.0} ms: p50 {:.2}x, p95 {:.2}x)",
            p50 / target,
            p95 / target
        ),
        None => figures,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(program) = Browser::program() else {
        eprintln!(
            "Chromium is not installed: this benchmark drives Debian's headless `chromium`.\n\
             Install it with `sudo apt-get install chromium` (scripts/test.sh does so for the tests)."
        );
        std::process::exit(2);
    };
    let samples = std::env::var("XCHAT_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(DEFAULT_SAMPLES);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_else(|_| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version = std::process::Command::new(program)
        .arg("--version")
        .output()
        .map(|out| {
            // "Chromium 156.0.8078.79 built on Debian ...": the name and version.
            let text = String::from_utf8_lossy(&out.stdout);
            text.split(" built").next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default();

    let relays: Vec<Relay> = Vec::new();
    let alone = nodes::user(&relays).await;
    let filled = Instant::now();
    nodes::long_conversation(&alone, LONG_CONVERSATION).await;
    let filled = filled.elapsed();

    let mut browser = Browser::launch().await;
    let login = browser.page("login").await;
    browser.log_in(&login, alone.api.login_url.expose()).await;
    let cookies = browser.cookies(&login).await;
    browser.close(login).await;
    let url = format!("http://127.0.0.1:{}/", alone.api.local_addr.port());

    let started = Instant::now();
    for _ in 0..WARM_UP {
        sample(&mut browser, &cookies, &url).await;
    }
    let mut measured = Vec::with_capacity(samples);
    for _ in 0..samples {
        measured.push(sample(&mut browser, &cookies, &url).await);
    }
    browser.assert_clean();
    let took = started.elapsed();

    let build = if cfg!(debug_assertions) { "debug" } else { "optimised" };
    println!(
        "xchat web UI benchmark: {version}, headless, against one node on loopback ({build} build)"
    );
    println!("  machine at the start: load {} ({cpus} CPUs)", load.trim());
    println!(
        "  profile: one conversation of {LONG_CONVERSATION} messages (written in {:.1} s)",
        filled.as_secs_f64()
    );
    println!(
        "  {samples} samples after {WARM_UP} warm-up, each a fresh page in a new browser context \
         (session cookie only, nothing cached), in {:.1} s",
        took.as_secs_f64()
    );
    println!(
        "  first load, navigation start to interactive (mark `xchat-ready`: identity, contacts and \
         conversations loaded, app shown, events socket started):"
    );
    println!(
        "    {}",
        summary(measured.iter().map(|s| s.ready_ms).collect(), Some(FIRST_LOAD_TARGET_MS))
    );
    println!(
        "    of which GET /api/v1/conversations: {}",
        summary(measured.iter().map(|s| s.conversations_ms).collect(), None)
    );
    println!(
        "  opening the {LONG_CONVERSATION}-message conversation, click to the first frame with its \
         newest 100 messages in the DOM:"
    );
    println!("    {}", summary(measured.iter().map(|s| s.open_ms).collect(), Some(OPEN_TARGET_MS)));
    println!(
        "    of which the app's own measure (`xchat-open`, openConversation to the page drawn): {}",
        summary(measured.iter().map(|s| s.app_open_ms).collect(), None)
    );
}
