#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The web UI in a real browser: headless Chromium, driven over the Chrome
//! DevTools Protocol, in front of real nodes and relays on loopback.
//!
//! Each user gets a browser context of their own, as two people on two
//! machines would have. Everything the tests do goes through the page, as a person
//! would: clicks, typed keys, the file picker, a dropped file. Every wait
//! is a poll with a deadline. Screenshots of the main screens go to
//! `target/screenshots/`.
//!
//! Chromium comes from Debian's `chromium` package (`scripts/test.sh`
//! installs it); without it these tests fail and say so.
//!
//! The DevTools client and the nodes are in `support/`, which the web UI's
//! benchmark (`benches/web.rs`) shares: the UI's speed is measured there.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use rand_core::{OsRng, TryRngCore as _};
use serde_json::{Value, json};
use support::browser::{Browser, Page, WAIT};
use support::nodes::{LONG_CONVERSATION, User, long_conversation, stranger, two_users, user};
use xchat_node::Relay;
use xchat_node::api::{self, ApiConfig};

const NARROW: (u32, u32) = (360, 720);

// ---------- what a user does ----------

/// Reads the user's own address from the "Me" dialog (checking its QR
/// code loaded), then closes it.
async fn own_address(browser: &mut Browser, page: &Page) -> String {
    browser.click(page, "#me-button").await;
    let address = browser
        .wait(page, "document.getElementById('me-address').textContent", "the own address")
        .await;
    browser
        .wait(
            page,
            "(() => { const q = document.getElementById('me-qr'); return q.complete && q.naturalWidth >= 200; })()",
            "the QR code",
        )
        .await;
    browser.screenshot(page, &format!("my-address-{}", page.name)).await;
    browser.click(page, "#me-close").await;
    address.as_str().unwrap().to_owned()
}

/// Adds a contact through the dialog; the conversation opens.
async fn add_contact(browser: &mut Browser, page: &Page, name: &str, address: &str) {
    browser.click(page, "#add-button").await;
    browser.wait(page, "document.getElementById('add-dialog').open", "the add dialog").await;
    browser.type_into(page, "#add-address", address).await;
    browser.type_into(page, "#add-name", name).await;
    browser.click(page, "#add-form button[type=submit]").await;
    browser
        .wait(
            page,
            &format!(
                "!document.getElementById('chat').hidden && document.getElementById('peer-name').textContent === {}",
                json!(name)
            ),
            "the new conversation to open",
        )
        .await;
}

/// Types `text` in the composer and sends it with Enter.
async fn send_text(browser: &mut Browser, page: &Page, text: &str) {
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        browser.type_into(page, "#text", line).await;
        if lines.peek().is_some() {
            browser.press_enter(page, true).await;
        }
    }
    browser.press_enter(page, false).await;
}

/// The expression: a message of `direction` whose text is `text` is shown.
fn shows_message(direction: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#messages .message.{direction} .text')].some(t => t.textContent === {})",
        json!(text)
    )
}

/// The expression: the status of the shown outgoing message `text`.
fn status_of(text: &str) -> String {
    format!(
        "(() => {{ const t = [...document.querySelectorAll('#messages .message.out .text')].find(t => t.textContent === {}); return t ? t.closest('.message').dataset.status : null; }})()",
        json!(text)
    )
}

/// Two users in two browser contexts, logged in, who added each other
/// through the UI; each has the other's conversation open.
async fn paired(browser: &mut Browser, alice: &User, bob: &User) -> (Page, Page) {
    let (a, b) = (browser.page("alice").await, browser.page("bob").await);
    browser.log_in(&a, alice.api.login_url.expose()).await;
    browser.log_in(&b, bob.api.login_url.expose()).await;
    let alice_address = own_address(browser, &a).await;
    let bob_address = own_address(browser, &b).await;
    assert_eq!(alice_address, alice.node.handle.address().to_string());
    assert!(bob_address.starts_with("xchat1"));
    add_contact(browser, &a, "Bob", &bob_address).await;
    // Bob pastes Alice's link rather than her bare address.
    add_contact(browser, &b, "Alice", &format!("xchat:{alice_address}")).await;
    (a, b)
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_add_each_other_verify_and_chat_live() {
    let started = Instant::now();
    let (_relays, alice, bob) = two_users().await;
    let mut browser = Browser::launch().await;
    let (a, b) = paired(&mut browser, &alice, &bob).await;

    // Safety numbers: the same 60 digits on both sides; both mark verified.
    let mut numbers = Vec::new();
    for page in [&a, &b] {
        browser.click(page, "#safety-button").await;
        let digits = browser
            .wait(
                page,
                "document.querySelectorAll('#safety-groups li').length === 12 && document.getElementById('safety-groups').dataset.digits",
                "the safety number",
            )
            .await;
        numbers.push(digits.as_str().unwrap().to_owned());
    }
    assert_eq!(numbers[0].len(), 60);
    assert!(numbers[0].bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(numbers[0], numbers[1], "the two sides' safety numbers differ");
    browser.screenshot(&a, "safety-number").await;
    for page in [&a, &b] {
        browser.click(page, "#safety-verify").await;
        browser
            .wait(page, "document.getElementById('safety-verify').hidden", "verify to be done")
            .await;
        browser.click(page, "#safety-close").await;
        browser
            .wait(page, "!document.getElementById('peer-verified').hidden", "the verified badge")
            .await;
    }

    // Alice writes; Bob, whose conversation is open, sees it without a
    // reload and reads it; Alice sees it read.
    send_text(&mut browser, &a, "hello bob").await;
    browser.wait(&b, &shows_message("in", "hello bob"), "Alice's message at Bob's").await;
    let read = browser.wait(&a, &format!("{} === 'read'", status_of("hello bob")), "read").await;
    assert_eq!(read, json!(true));
    assert_eq!(browser.eval(&a, "document.getElementById('text').value").await, json!(""));

    // Typed while the node cannot be reached: kept in a visible outbox,
    // never lost, and sent once the node is back.
    browser.send(Some(&a.session), "Network.enable", json!({})).await;
    let offline = |offline: bool| json!({"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1});
    browser.send(Some(&a.session), "Network.emulateNetworkConditions", offline(true)).await;
    send_text(&mut browser, &a, "typed while offline").await;
    browser
        .wait(
            &a,
            "[...document.querySelectorAll('#outbox .outbox-entry')].some(e => e.querySelector('.text').textContent === 'typed while offline' && e.textContent.includes('Not sent yet'))",
            "the unsent text in the outbox",
        )
        .await;
    browser.screenshot(&a, "outbox").await;
    browser.send(Some(&a.session), "Network.emulateNetworkConditions", offline(false)).await;
    browser
        .wait(&b, &shows_message("in", "typed while offline"), "the outbox's text at Bob's")
        .await;
    browser
        .wait(&a, "document.querySelectorAll('#outbox li').length === 0", "an empty outbox")
        .await;
    browser
        .wait(&a, &shows_message("out", "typed while offline"), "the text in Alice's timeline")
        .await;

    // Bob answers on two lines (Shift+Enter), sent with Enter.
    send_text(&mut browser, &b, "hi alice\nsecond line").await;
    browser.wait(&a, &shows_message("in", "hi alice\nsecond line"), "Bob's answer").await;

    // Bob goes back to his list: Alice's next message is unread there,
    // with its text as the last message, until he opens the conversation.
    browser.click(&b, "#back-button").await;
    send_text(&mut browser, &a, "are you there?").await;
    browser
        .wait(
            &b,
            "(() => { const c = document.querySelector('#conversations .conversation'); return c && c.querySelector('.unread')?.textContent === '1' && c.querySelector('.last').textContent === 'are you there?'; })()",
            "an unread count of 1 and the last message in Bob's list",
        )
        .await;
    let status = browser.eval(&a, &status_of("are you there?")).await;
    assert!(
        ["sent", "delivered", "in_mailbox", "pending"].contains(&status.as_str().unwrap()),
        "{status}: not read while Bob's conversation is closed"
    );
    browser.screenshot(&b, "conversation-list-unread").await;
    browser.click(&b, "#conversations .conversation").await;
    browser.wait(&b, &shows_message("in", "are you there?"), "the conversation again").await;
    browser.wait(&b, "!document.querySelector('#conversations .unread')", "no unread count").await;
    browser.wait(&a, &format!("{} === 'read'", status_of("are you there?")), "read").await;
    send_text(&mut browser, &b, "oui, ça va").await;
    browser.wait(&a, &shows_message("in", "oui, ça va"), "Bob's last answer").await;
    browser
        .wait(
            &a,
            "document.querySelector('#conversations .conversation .last')?.textContent === 'oui, ça va'",
            "the list to show the last message",
        )
        .await;

    // Screenshots: light and dark, wide and narrow.
    browser.screenshot(&a, "chat-light").await;
    browser.dark(&a, true).await;
    browser.screenshot(&a, "chat-dark").await;
    browser.viewport(&a, NARROW).await;
    browser.screenshot(&a, "narrow-chat-dark").await;
    browser.dark(&a, false).await;
    // On a narrow window the list and the conversation are two screens.
    let layout = "(() => { const v = (id) => getComputedStyle(document.getElementById(id)).display !== 'none'; return [v('sidebar'), v('chat')]; })()";
    assert_eq!(browser.eval(&a, layout).await, json!([false, true]));
    assert_eq!(browser.eval(&a, "document.documentElement.scrollWidth <= 360").await, json!(true));
    browser.click(&a, "#back-button").await;
    assert_eq!(browser.eval(&a, layout).await, json!([true, false]));
    browser.screenshot(&a, "narrow-list").await;

    browser.assert_clean();
    eprintln!("two_users_add_each_other_verify_and_chat_live: {:?}", started.elapsed());
}

/// A small PNG drawn by the page itself, as bytes in base64.
const DRAW_PNG: &str = "(async () => {
    const c = document.createElement('canvas'); c.width = 96; c.height = 64;
    const g = c.getContext('2d'); g.fillStyle = '#2c6bed'; g.fillRect(0, 0, 96, 64);
    g.fillStyle = '#ffb000'; g.fillRect(16, 16, 32, 32);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let s = ''; for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
})()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_images_and_vanishing_messages_go_across() {
    let started = Instant::now();
    let (_relays, alice, bob) = two_users().await;
    let mut browser = Browser::launch().await;
    let (a, b) = paired(&mut browser, &alice, &bob).await;
    let b64 = base64::engine::general_purpose::STANDARD;

    // A file by the picker: several chunks, random bytes.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; 300 * 1024 + 17];
    OsRng.try_fill_bytes(&mut bytes).unwrap();
    let path = dir.path().join("report.bin");
    std::fs::write(&path, &bytes).unwrap();
    // Through a slow link, so its upload's progress can be seen moving.
    browser.send(Some(&a.session), "Network.enable", json!({})).await;
    let throttle = |bytes_per_s: i64| json!({"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_s});
    browser.send(Some(&a.session), "Network.emulateNetworkConditions", throttle(200 * 1024)).await;
    browser.choose_file(&a, "#file-input", &path).await;
    let partial = browser
        .wait(
            &a,
            "(() => { const p = document.querySelector('#uploads progress'); return p && p.value > 0 && p.value < p.max && [p.value, p.max]; })()",
            "the upload's progress",
        )
        .await;
    assert_eq!(partial[1], json!(bytes.len()));
    browser.screenshot(&a, "upload-progress").await;
    browser.send(Some(&a.session), "Network.emulateNetworkConditions", throttle(-1)).await;
    browser
        .wait(&a, "document.querySelectorAll('#uploads li').length === 0", "the upload to end")
        .await;

    // An image by drag and drop.
    let png = browser.eval(&a, DRAW_PNG).await;
    let png = b64.decode(png.as_str().unwrap()).unwrap();
    browser
        .eval(
            &a,
            &format!(
                "(() => {{
                    const bytes = Uint8Array.from(atob({}), (c) => c.charCodeAt(0));
                    const data = new DataTransfer();
                    data.items.add(new File([bytes], 'picture.png', {{ type: 'image/png' }}));
                    const chat = document.getElementById('chat');
                    chat.dispatchEvent(new DragEvent('dragenter', {{ dataTransfer: data, bubbles: true }}));
                    chat.dispatchEvent(new DragEvent('drop', {{ dataTransfer: data, bubbles: true, cancelable: true }}));
                    return true;
                }})()",
                json!(b64.encode(&png))
            ),
        )
        .await;

    // Alice sees her own image at once; Bob's node fetches it by itself
    // (a small image) and shows it inline, decoded.
    browser
        .wait(&a, "[...document.querySelectorAll('.message.out img.inline-image')].some(i => i.complete && i.naturalWidth === 96)", "Alice's own image")
        .await;
    browser
        .wait(&b, "[...document.querySelectorAll('.message.in img.inline-image')].some(i => i.complete && i.naturalWidth === 96 && i.naturalHeight === 64)", "the image inline at Bob's")
        .await;
    // The file waits for Bob to accept it; then it can be saved, byte-equal.
    let offered = "[...document.querySelectorAll('.message.in')].find(m => m.querySelector('.file-name')?.textContent === 'report.bin')";
    browser
        .wait(&b, &format!("{offered}?.querySelector('button.accept')"), "the file's offer")
        .await;
    browser.click(&b, ".message.in button.accept").await;
    let href = browser
        .wait(
            &b,
            &format!("{offered}?.querySelector('a.download')?.getAttribute('href')"),
            "the file to arrive",
        )
        .await;
    let fetched = browser
        .eval(
            &b,
            &format!(
                "fetch({}).then(async (r) => {{
                    const bytes = new Uint8Array(await r.arrayBuffer());
                    let s = ''; for (const b of bytes) s += String.fromCharCode(b);
                    return [r.status, r.headers.get('content-disposition'), btoa(s)];
                }})",
                json!(href)
            ),
        )
        .await;
    assert_eq!(fetched[0], json!(200));
    assert!(fetched[1].as_str().unwrap().starts_with("attachment; filename=\"report.bin\""));
    assert!(b64.decode(fetched[2].as_str().unwrap()).unwrap() == bytes, "the saved file differs");
    // A file whose bytes are no image is never served inline.
    let refused = browser
        .eval(
            &b,
            &format!(
                "fetch({} + '/preview').then(async (r) => [r.status, (await r.json()).error.code])",
                json!(href)
            ),
        )
        .await;
    assert_eq!(refused, json!([415, "not_an_image"]));
    // The inline image is the very bytes Alice drew, served as an image.
    let preview = browser
        .eval(
            &b,
            "(async () => {
                const img = [...document.querySelectorAll('.message.in img.inline-image')][0];
                const r = await fetch(img.src);
                const bytes = new Uint8Array(await r.arrayBuffer());
                let s = ''; for (const b of bytes) s += String.fromCharCode(b);
                return [r.headers.get('content-type'), btoa(s)];
            })()",
        )
        .await;
    assert_eq!(preview[0], json!("image/png"));
    assert!(b64.decode(preview[1].as_str().unwrap()).unwrap() == png, "the image differs");
    browser.screenshot(&b, "files-and-image").await;

    // Vanishing messages: Alice sets 30 s; Bob's page learns of it; a
    // message then shows its time left on both sides and disappears from
    // both when it runs out.
    browser
        .eval(&a, "(() => { const s = document.getElementById('timer'); s.value = '30'; s.dispatchEvent(new Event('change')); return true; })()")
        .await;
    browser
        .wait(&b, "document.getElementById('timer').value === '30'", "Bob's timer to follow")
        .await;
    send_text(&mut browser, &a, "this will vanish").await;
    browser.wait(&b, &shows_message("in", "this will vanish"), "the vanishing message").await;
    let expiring = |direction: &str| {
        format!(
            "[...document.querySelectorAll('#messages .message.{direction}')].some(m => m.querySelector('.text')?.textContent === 'this will vanish' && /vanishes in \\d+s/.test(m.querySelector('.expiry')?.textContent))"
        )
    };
    browser.wait(&a, &expiring("out"), "the time left at Alice's").await;
    browser.wait(&b, &expiring("in"), "the time left at Bob's").await;
    // Bob's view was drawn again since: the image is still shown.
    browser
        .wait(&b, "[...document.querySelectorAll('.message.in img.inline-image')].some(i => i.complete && i.naturalWidth === 96)", "the image to stay inline")
        .await;
    browser.screenshot(&b, "vanishing").await;
    let gone_at = Instant::now();
    let gone = |direction: &str| format!("!({})", shows_message(direction, "this will vanish"));
    browser
        .wait_for(&a, &gone("out"), "the message to vanish at Alice's", Duration::from_secs(60))
        .await;
    browser
        .wait_for(&b, &gone("in"), "the message to vanish at Bob's", Duration::from_secs(60))
        .await;
    assert!(gone_at.elapsed() > Duration::from_secs(15), "it vanished too early");
    // The files sent before the timer stay.
    assert_eq!(browser.eval(&b, &format!("!!{offered}")).await, json!(true));

    browser.assert_clean();
    eprintln!("files_images_and_vanishing_messages_go_across: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_session_gets_the_login_screen_and_no_data() {
    let relays: Vec<Relay> = Vec::new();
    let alone = user(&relays).await;
    let base = format!("http://127.0.0.1:{}", alone.api.local_addr.port());
    let mut browser = Browser::launch().await;
    let page = browser.page("stranger").await;

    let login_shown = "!document.getElementById('login').hidden && document.getElementById('app').hidden && document.querySelectorAll('#conversations li').length === 0";
    let api_status = "fetch('/api/v1/contacts').then(r => r.status)";
    // No session at all.
    browser.goto(&page, &format!("{base}/")).await;
    browser.wait(&page, login_shown, "the login screen").await;
    let text = browser.eval(&page, "document.getElementById('login').textContent").await;
    assert!(text.as_str().unwrap().contains("xchat up"), "{text}");
    assert_eq!(browser.eval(&page, api_status).await, json!(401));
    browser.screenshot(&page, "login").await;

    // A made-up session cookie.
    let made_up = format!(
        "document.cookie = 'xchat_session_{}=' + '0'.repeat(64) + '; path=/'",
        alone.api.local_addr.port()
    );
    browser.eval(&page, &made_up).await;
    browser.goto(&page, &format!("{base}/?again")).await;
    browser.wait(&page, login_shown, "the login screen with a wrong session").await;
    assert_eq!(browser.eval(&page, api_status).await, json!(401));

    // A used login link buys nothing either.
    browser.log_in(&page, alone.api.login_url.expose()).await;
    let other = browser.page("other").await;
    browser.goto(&other, alone.api.login_url.expose()).await;
    browser.wait(&other, login_shown, "the login screen after a used link").await;
    let detail = browser.eval(&other, "document.getElementById('login-detail').textContent").await;
    assert_eq!(detail, json!("That login link was already used, or has expired."));
    assert_eq!(browser.eval(&other, api_status).await, json!(401));

    // A contact whose key changed: a banner until acknowledged.
    let add = |name: &str, address: String| {
        format!(
            "fetch('/api/v1/contacts', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({})}}).then(r => r.json())",
            json!({"name": name, "address": address})
        )
    };
    let first = browser.eval(&page, &add("Carol", stranger())).await;
    assert_eq!(first["outcome"], json!("new"));
    let changed = browser.eval(&page, &add("Carol", stranger())).await;
    assert_eq!(changed["outcome"], json!("key_changed"));
    browser.goto(&page, &format!("{base}/")).await;
    browser.wait(&page, "document.body.dataset.ready === 'true'", "the app").await;
    browser.click(&page, "#conversations .conversation").await;
    let banner = browser
        .wait(&page, "!document.getElementById('key-banner').hidden && document.getElementById('key-banner-text').textContent", "the key-change banner")
        .await;
    assert!(banner.as_str().unwrap().contains("Carol's safety number changed"), "{banner}");
    browser.screenshot(&page, "key-changed").await;
    browser.click(&page, "#key-acknowledge").await;
    browser.wait(&page, "document.getElementById('key-banner').hidden", "the banner to go").await;

    // Keyboard only: Tab walks the controls in reading order; Enter opens
    // a dialog, Escape closes it and gives the focus back.
    browser.eval(&page, "document.getElementById('me-button').focus()").await;
    let mut walked = Vec::new();
    for _ in 0..10 {
        browser.press(&page, "Tab", 9).await;
        let focused = browser
            .eval(&page, "document.activeElement.id || document.activeElement.className")
            .await;
        walked.push(focused.as_str().unwrap().to_owned());
    }
    assert_eq!(
        walked,
        [
            "add-button",
            "conversation selected",
            "timer",
            "call-audio-button",
            "call-video-button",
            "safety-button",
            "timeline",
            "file-input",
            "text",
            "send-button"
        ]
    );
    browser.eval(&page, "document.getElementById('add-button').focus()").await;
    browser.press_enter(&page, false).await;
    browser.wait(&page, "document.getElementById('add-dialog').open && document.activeElement.id === 'add-address'", "the dialog, focused").await;
    browser.press(&page, "Escape", 27).await;
    browser.wait(&page, "!document.getElementById('add-dialog').open && document.activeElement.id === 'add-button'", "the dialog closed, focus back").await;

    // The daemon restarts its API (same port, sessions forgotten): the
    // events socket drops, the page finds its session gone and says so;
    // the new login link brings it back.
    let addr = alone.api.local_addr;
    let User { _home, dir, node, api: old } = alone;
    old.shutdown().await;
    let api = api::serve(node.handle.clone(), &dir, ApiConfig { bind: addr, allow_remote: false })
        .await
        .unwrap();
    browser
        .wait(
            &page,
            "!document.getElementById('login').hidden && document.getElementById('login-detail').textContent.includes('no longer knows this session')",
            "the login screen after the restart",
        )
        .await;
    browser.goto(&page, api.login_url.expose()).await;
    browser.wait(&page, "document.body.dataset.ready === 'true'", "the app again").await;
    let _alone = User { _home, dir, node, api };

    // The page and its assets carry the policy that keeps them to this
    // origin, and the logged-in page runs under it without a violation.
    let headers = browser
        .eval(
            &page,
            "Promise.all(['/', '/assets/app.js', '/assets/style.css'].map(u => fetch(u).then(r => [r.headers.get('content-security-policy'), r.headers.get('x-content-type-options'), r.headers.get('referrer-policy'), r.headers.get('content-type')])))",
        )
        .await;
    for answer in headers.as_array().unwrap() {
        let csp = answer[0].as_str().unwrap();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self';"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("connect-src 'self'"));
        assert_eq!(answer[1], json!("nosniff"));
        assert_eq!(answer[2], json!("no-referrer"));
    }
    assert_eq!(headers[1][3], json!("text/javascript; charset=utf-8"));
    // The policy is enforced, and this test would see a violation: an
    // inline style and an inline script put into the page are refused.
    let probe = browser.page("probe").await;
    browser.goto(&probe, &format!("{base}/")).await;
    let ran = browser
        .eval(
            &probe,
            "(() => { document.body.setAttribute('style', 'color: red'); const s = document.createElement('script'); s.textContent = 'window.injected = true'; document.body.append(s); return [window.injected === true, getComputedStyle(document.body).color]; })()",
        )
        .await;
    assert_eq!(ran[0], json!(false), "an inline script ran");
    assert_ne!(ran[1], json!("rgb(255, 0, 0)"), "an inline style applied");
    let deadline = Instant::now() + WAIT;
    while browser.problems.iter().filter(|(session, _)| *session == probe.session).count() < 2 {
        assert!(Instant::now() < deadline, "the CSP violations were not reported");
        // Events arrive with answers: ask something.
        browser.eval(&probe, "1").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    browser.problems.retain(|(session, _)| *session != probe.session);
    // Text shown from data never becomes markup.
    browser.assert_clean();
}

/// 10,000 messages: every one is shown on the way up, never more than 150
/// at once. How fast such a conversation opens is measured by
/// `benches/web.rs`, not here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_shows_every_message_and_keeps_the_dom_bounded() {
    let relays: Vec<Relay> = Vec::new();
    let alone = user(&relays).await;
    long_conversation(&alone, LONG_CONVERSATION).await;

    let mut browser = Browser::launch().await;
    let page = browser.page("long").await;
    browser.log_in(&page, alone.api.login_url.expose()).await;
    // Opening it shows the newest page.
    browser.click(&page, "#conversations .conversation").await;
    let shown = browser
        .wait(
            &page,
            "(() => { const n = document.querySelectorAll('#messages li').length; return n >= 100 && n; })()",
            "the newest messages",
        )
        .await;
    assert!(shown.as_u64().unwrap() <= 150, "{shown} messages in the DOM");

    // Scrolling up pages the whole history in, every message is shown on
    // the way, and the DOM stays bounded.
    let scrolled = browser
        .eval(
            &page,
            "(async () => {
                const timeline = document.getElementById('timeline');
                const status = document.getElementById('history-status');
                const seen = new Set();
                let most = 0;
                for (let i = 0; i < 2000; i += 1) {
                    timeline.scrollTop = 0;
                    timeline.dispatchEvent(new Event('scroll'));
                    await new Promise((r) => setTimeout(r, 5));
                    const shown = document.querySelectorAll('#messages .text');
                    most = Math.max(most, shown.length);
                    for (const t of shown) seen.add(t.textContent);
                    if (status.textContent === 'The beginning of the conversation.') break;
                }
                return [most, seen.size, status.textContent];
            })()",
        )
        .await;
    let most = scrolled[0].as_u64().unwrap();
    assert!(most <= 150, "{most} messages in the DOM at once");
    assert_eq!(scrolled[1], json!(LONG_CONVERSATION), "not every message was shown: {scrolled}");
    assert_eq!(scrolled[2], json!("The beginning of the conversation."));
    // Far up, a button leads back to the newest messages.
    browser.wait(&page, "!document.getElementById('jump-button').hidden", "the jump button").await;
    browser.click(&page, "#jump-button").await;
    let newest = browser
        .wait(
            &page,
            "(() => { const t = document.getElementById('timeline'); return t.scrollHeight - t.scrollTop - t.clientHeight < 48 && document.getElementById('jump-button').hidden && document.querySelectorAll('#messages li').length; })()",
            "the newest messages again",
        )
        .await;
    assert!(newest.as_u64().unwrap() <= 150, "{newest}");
    let last = browser
        .eval(&page, "document.querySelector('#messages li:last-child .text').textContent")
        .await;
    let listed =
        browser.eval(&page, "document.querySelector('#conversations .last').textContent").await;
    assert_eq!(format!("You: {}", last.as_str().unwrap()), listed.as_str().unwrap());
    browser.assert_clean();
}

// ---------- calls ----------

/// The expression: the call screen's state (`incoming`, `ringing`,
/// `connecting`, `connected`, `ended`), or null while none was shown.
const CALL_STATE: &str = "(document.getElementById('call-screen').dataset.state || null)";

/// The expression: the kinds of the open conversation's call log entries.
const CALL_LOG: &str =
    "[...document.querySelectorAll('#call-log .call-entry')].map(e => e.dataset.kind)";

/// The expression: the active call's received media, once video frames
/// were decoded and audio packets received beyond `frames` and `packets`.
fn media_beyond(frames: u64, packets: u64) -> String {
    format!(
        "(async () => {{ const s = await window.xchatCall.stats(); \
         return s && s.framesDecoded > {frames} && s.audioPackets > {packets} ? s : null; }})()"
    )
}

/// The first missed call's entry in the open conversation's history.
const MISSED_ENTRY: &str = "document.querySelector('#messages .call-entry[data-call=\"missed\"]')";

async fn wait_for_log(browser: &mut Browser, page: &Page, kind: &str) {
    browser
        .wait(page, &format!("{CALL_LOG}.includes({})", json!(kind)), &format!("a `{kind}` call"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_call_connects_both_ways_and_hangs_up() {
    let started = Instant::now();
    let (_relays, alice, bob) = two_users().await;
    let mut browser = Browser::launch().await;
    let (a, b) = paired(&mut browser, &alice, &bob).await;
    let setup = started.elapsed();

    // Alice calls (video); Bob's page rings, with the warning an unverified
    // contact's call carries.
    browser.click(&a, "#call-video-button").await;
    browser.wait(&b, &format!("{CALL_STATE} === 'incoming'"), "the incoming call").await;
    let warning = browser
        .eval(&b, "(() => { const w = document.getElementById('call-warning'); return w.hidden ? '' : w.textContent; })()")
        .await;
    assert!(warning.as_str().unwrap().contains("not verified"), "{warning}");
    assert_eq!(browser.eval(&b, "document.getElementById('call-peer').textContent").await, "Alice");
    browser.screenshot(&b, "call-incoming").await;
    let rang = Instant::now();
    browser.click(&b, "#call-accept").await;

    // Both sides decode the other's video and receive its audio, and keep
    // doing so: the counters grow.
    let mut seen = Vec::new();
    for page in [&a, &b] {
        let stats = browser.wait(page, &media_beyond(0, 0), "media from the other side").await;
        seen.push((
            stats["framesDecoded"].as_u64().unwrap(),
            stats["audioPackets"].as_u64().unwrap(),
        ));
    }
    let connected = rang.elapsed();
    for (page, (frames, packets)) in [&a, &b].into_iter().zip(seen) {
        browser
            .wait(page, &media_beyond(frames + 10, packets + 10), "the media to keep flowing")
            .await;
        assert_eq!(browser.eval(page, CALL_STATE).await, "connected");
    }
    browser
        .wait(
            &a,
            "/^\\d+:\\d\\d$/.test(document.getElementById('call-status').textContent)",
            "the call timer",
        )
        .await;
    browser.screenshot(&a, "call-video").await;

    // Mute and camera off say so; pressed again, they are undone.
    for button in ["#call-mute", "#call-camera"] {
        for pressed in ["true", "false"] {
            browser.click(&a, button).await;
            let state = browser
                .eval(
                    &a,
                    &format!(
                        "document.querySelector({}).getAttribute('aria-pressed')",
                        json!(button)
                    ),
                )
                .await;
            assert_eq!(state, pressed, "{button}");
        }
    }

    // Alice hangs up: both sides end the call, and log it with its length.
    browser.click(&a, "#call-hangup").await;
    for page in [&a, &b] {
        browser.wait(page, &format!("{CALL_STATE} === 'ended'"), "the call to end").await;
        wait_for_log(&mut browser, page, "ended").await;
        assert_eq!(browser.eval(page, "window.xchatCall.stats()").await, Value::Null, "closed");
    }
    browser.assert_clean();
    eprintln!(
        "a_video_call_connects_both_ways_and_hangs_up: {:?} (setup {setup:?}, accept to media both ways {connected:?})",
        started.elapsed()
    );
}

/// An offer as a browser makes it (its content does not matter to the node).
const SOME_OFFER: &str =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";

/// Also shows a declined call and a missed call in the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_offer_is_refused() {
    use xchat_core::io::{Input, Refusal};
    use xchat_proto::content::{CallId, CallSignal, Sdp, Signal};

    let started = Instant::now();
    let (relays, alice, bob) = two_users().await;
    let carol = user(&relays).await;
    tokio::time::timeout(WAIT, carol.node.handle.published()).await.unwrap().unwrap();
    let mut browser = Browser::launch().await;
    let (a, b) = paired(&mut browser, &alice, &bob).await;
    let refused = |kind: Refusal| {
        let handle = bob.node.handle.clone();
        async move {
            handle.read(move |m, _| m.refusals().get(&kind).copied().unwrap_or(0)).await.unwrap()
        }
    };

    // Carol is not Bob's contact: her offer, sealed and sent over the
    // network by her node from a real session with Bob's published keys,
    // is refused by Bob's node.
    let added = carol
        .node
        .handle
        .command(Input::ContactAdded { name: "Bob".into(), address: bob.node.handle.address() })
        .await
        .unwrap();
    let xchat_core::io::Done::Contact(xchat_core::contact::Added::New(bob_at_carol)) = added else {
        panic!("{added:?}")
    };
    let offer = CallSignal {
        call_id: CallId::from_bytes([7; 16]),
        signal: Signal::Offer(Sdp::new(SOME_OFFER.into()).unwrap()),
    };
    carol
        .node
        .handle
        .command(Input::CallSignalSent { contact: bob_at_carol, signal: offer })
        .await
        .unwrap();
    // And an envelope injected at Bob's node that is no sealed message at
    // all (bit-flipped sealed messages are refused in the core's tests).
    let mut forged = SOME_OFFER.as_bytes().to_vec();
    forged.insert(0, 0x0a);
    bob.node.handle.command(Input::EnvelopeReceived { envelope: forged }).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while refused(Refusal::UnknownSender).await == 0 {
        assert!(Instant::now() < deadline, "Carol's offer never reached Bob's node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused(Refusal::Malformed).await + refused(Refusal::Undecryptable).await >= 1);
    assert_eq!(browser.eval(&b, CALL_STATE).await, Value::Null, "Bob's page rang");

    // Alice's honest offer rings. It leaves after Bob's node handled
    // Carol's offer and the forged envelope, and the node's events reach
    // the page in order: had either become a `call_signal`, the page would
    // have counted it before this one. So the page must have seen exactly
    // one offer, Alice's, however fast or slow the machine is.
    let alice_at_bob = browser
        .eval(&b, "fetch('/api/v1/contacts').then(r => r.json()).then(c => c.find(x => x.name === 'Alice').id)")
        .await;
    browser.click(&a, "#call-audio-button").await;
    let offers = browser
        .wait(
            &b,
            &format!(
                "(() => {{ const o = window.xchatCall.offers(); return o.latest.some(x => x.contact === {alice_at_bob}) && o; }})()"
            ),
            "Alice's offer at Bob's page",
        )
        .await;
    assert_eq!(offers["count"], json!(1), "Bob's page saw another offer than Alice's: {offers}");
    browser.wait(&b, &format!("{CALL_STATE} === 'incoming'"), "Alice's call").await;
    assert_eq!(browser.eval(&b, "document.getElementById('call-peer').textContent").await, "Alice");
    browser.click(&b, "#call-decline").await;
    wait_for_log(&mut browser, &b, "declined").await;
    wait_for_log(&mut browser, &a, "rejected").await;
    browser.wait(&a, &format!("{CALL_STATE} === 'ended'"), "Alice's call to end").await;

    // Alice calls again and gives up before Bob answers: a missed call.
    browser.click(&a, "#call-video-button").await;
    browser.wait(&a, &format!("{CALL_STATE} === 'ringing'"), "Alice's second call to ring").await;
    browser.wait(&b, &format!("{CALL_STATE} === 'incoming'"), "Alice's second call").await;
    browser.click(&a, "#call-hangup").await;
    // The missed call is an entry of Bob's history, written by his node.
    browser.wait(&b, &format!("!!{MISSED_ENTRY}"), "a missed call in Bob's history").await;
    wait_for_log(&mut browser, &a, "unanswered").await;
    browser.wait(&b, &format!("{CALL_STATE} === 'ended'"), "the ringing to stop").await;
    let status = browser.eval(&b, "document.getElementById('call-status').textContent").await;
    assert_eq!(status, json!("Missed call"));
    browser.click(&b, "#call-close").await;
    browser.screenshot(&b, "call-missed").await;
    let texts = browser
        .eval(&b, "[...document.querySelectorAll('#call-log .call-text')].map(e => e.textContent)")
        .await;
    assert_eq!(texts, json!(["You declined a call · Audio"]), "the page's log of calls taken");
    let missed = browser.eval(&b, &format!("{MISSED_ENTRY}.textContent")).await;
    assert!(missed.as_str().is_some_and(|text| text.starts_with("Missed video call")), "{missed}");
    // Both are still there after a reload: the entry from the node's
    // history, the log from the page's storage.
    browser.goto(&b, &format!("http://{}/", bob.api.local_addr)).await;
    browser.wait(&b, "document.body.dataset.ready === 'true'", "the app again").await;
    browser
        .wait(
            &b,
            "document.querySelector('#conversations .last')?.textContent === 'Missed video call'",
            "the missed call as the conversation's last message",
        )
        .await;
    browser.click(&b, "#conversations button").await;
    browser.wait(&b, &format!("!!{MISSED_ENTRY}"), "the missed call after a reload").await;
    wait_for_log(&mut browser, &b, "declined").await;

    browser.assert_clean();
    eprintln!("a_tampered_offer_is_refused: {:?}", started.elapsed());
}
