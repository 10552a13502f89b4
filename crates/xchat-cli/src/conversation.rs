//! `xchat send`, `xchat history` and `xchat chat`: a conversation with one
//! contact, through the running node's API.
//!
//! `chat` has three inputs: the user's lines (read on a thread of their
//! own, since a blocking read of standard input cannot be cancelled, and
//! handed over through a bounded channel), the node's events WebSocket, and
//! Ctrl-C. Sends go through the blocking client on tokio's blocking pool,
//! so incoming messages keep printing while one is on its way.

use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::Failure;
use crate::client::{self, Client, Contact, Message, NO_NODE};

/// Messages `xchat chat` shows before the live ones.
const CHAT_BACKLOG: u32 = 20;
/// Lines typed ahead of the sends.
const TYPED_LINES_QUEUE: usize = 16;

/// Parses a vanishing timer: `off`, or a whole number with a unit `s`,
/// `m`, `h`, `d` or `w` (`30s`, `5m`, `1h`, `1d`, `1w`). The node checks
/// the range (30 s to 4 weeks).
pub(crate) fn parse_timer(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    let usage = || {
        format!(
            "{text:?} is not a timer: give off, or a number and s, m, h, d or w (30s, 5m, 1h, 1d, 1w)"
        )
    };
    let unit = text.chars().last().ok_or_else(usage)?;
    let scale: u32 = match unit.to_ascii_lowercase() {
        's' => 1,
        'm' => 60,
        'h' => 60 * 60,
        'd' => 24 * 60 * 60,
        'w' => 7 * 24 * 60 * 60,
        _ => return Err(usage()),
    };
    let number: u32 = text[..text.len() - unit.len_utf8()].parse().map_err(|_| usage())?;
    if number == 0 {
        return Err(format!("{text:?}: a timer of zero is `off`"));
    }
    number.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long a timer"))
}

/// A timer in seconds as the user would write it (`off`, `1h`, `90s`).
fn timer_text(seconds: u32) -> String {
    const UNITS: [(u32, &str); 5] =
        [(7 * 24 * 60 * 60, "w"), (24 * 60 * 60, "d"), (60 * 60, "h"), (60, "m"), (1, "s")];
    if seconds == 0 {
        return "off".to_owned();
    }
    let (scale, unit) =
        UNITS.iter().find(|(scale, _)| seconds.is_multiple_of(*scale)).copied().unwrap_or((1, "s"));
    format!("{}{unit}", seconds / scale)
}

/// `text` safe to print on a terminal: a peer's text may hold escape
/// sequences that would rewrite the screen. Control characters other than
/// newline and tab become U+FFFD.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{fffd}' } else { c })
        .collect()
}

/// A time (ms since the Unix epoch) as `YYYY-MM-DD HH:MM:SS`, in UTC.
pub(crate) fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Days to a civil date (Howard Hinnant's `civil_from_days`, for days
    // since 1970-01-01, which are never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// One message as a line (or lines) of history.
fn message_line(message: &Message, their_name: &str) -> String {
    let who = if message.direction == "out" { "you" } else { their_name };
    let mut status = message.status.clone();
    if let Some(at) = message.expires_at {
        status.push_str(&format!(", vanishes {}", utc_time(at)));
    }
    let text = match &message.call {
        Some(call) => {
            let kind = if call.video { "video" } else { "voice" };
            format!("[{} {kind} call]", printable(&call.outcome))
        }
        None => printable(&message.text).replace('\n', "\n    "),
    };
    format!("{}  {}: {text}  ({status})", utc_time(message.sent_at), printable(who))
}

fn messages_path(contact: &Contact) -> String {
    format!("/api/v1/conversations/{}/messages", contact.id)
}

fn set_timer(client: &Client, contact: &Contact, seconds: u32) -> Result<(), Failure> {
    client.put(
        &format!("/api/v1/conversations/{}/timer", contact.id),
        &json!({ "seconds": seconds }),
    )?;
    Ok(())
}

/// `POST .../messages`'s answer.
#[derive(Debug, Deserialize)]
struct Queued {
    id: String,
}

/// `xchat send NAME TEXT [--expire TIMER]`.
pub(crate) fn send(
    client: &Client,
    name: &str,
    text: &str,
    expire: Option<u32>,
    json: bool,
) -> Result<(), Failure> {
    let contact = client.contact_named(name)?;
    if let Some(seconds) = expire {
        set_timer(client, &contact, seconds)?;
    }
    let answer = client.post(&messages_path(&contact), Some(&json!({ "text": text })))?;
    if json {
        println!("{answer}");
        return Ok(());
    }
    let queued: Queued = client::decode(&answer)?;
    let timer = expire.map(|s| format!(" (vanishing timer {})", timer_text(s))).unwrap_or_default();
    println!("Queued for {}{timer}: message {}", printable(name), queued.id);
    Ok(())
}

/// The newest `limit` messages with `contact`, newest first (the API's
/// order), and the API's JSON.
fn newest(
    client: &Client,
    contact: &Contact,
    limit: u32,
) -> Result<(Value, Vec<Message>), Failure> {
    let answer = client.get(&format!("{}?limit={limit}", messages_path(contact)))?;
    let messages = client::decode(&answer)?;
    Ok((answer, messages))
}

/// `xchat history NAME [--limit N]`.
pub(crate) fn history(client: &Client, name: &str, limit: u32, json: bool) -> Result<(), Failure> {
    let contact = client.contact_named(name)?;
    let (answer, messages) = newest(client, &contact, limit)?;
    if json {
        println!("{answer}");
        return Ok(());
    }
    if messages.is_empty() {
        println!("No messages with {} yet.", printable(name));
    }
    for message in messages.iter().rev() {
        println!("{}", message_line(message, &contact.name));
    }
    Ok(())
}

/// Marks incoming messages shown to the user as read.
fn mark_read(client: &Client, contact: &Contact, messages: &[&Message]) -> Result<(), Failure> {
    let ids: Vec<&str> = messages
        .iter()
        .filter(|m| m.direction == "in" && m.status == "unread")
        .map(|m| m.id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    client.post(
        &format!("/api/v1/conversations/{}/read", contact.id),
        Some(&json!({ "ids": ids })),
    )?;
    Ok(())
}

/// Runs `call` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|_| Failure::new("a call to the node failed"))?
}

/// Standard input's lines, read on a thread of their own.
fn typed_lines() -> tokio::sync::mpsc::Receiver<std::io::Result<String>> {
    let (lines, typed) = tokio::sync::mpsc::channel(TYPED_LINES_QUEUE);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if lines.blocking_send(line).is_err() {
                return;
            }
        }
    });
    typed
}

/// `xchat chat NAME`.
pub(crate) async fn chat(client: Client, name: String, json: bool) -> Result<(), Failure> {
    let contact = {
        let client = client.clone();
        blocking(move || client.contact_named(&name)).await?
    };
    let their_name = printable(&contact.name);
    // Subscribe before loading the backlog: a message arriving in between
    // is then shown (perhaps twice), never lost.
    let (mut events, _) = tokio_tungstenite::connect_async(client.events_request()?)
        .await
        .map_err(|e| Failure::with_code(NO_NODE, format!("cannot open the node's events: {e}")))?;
    let (backlog, mut shown) = {
        let (client, contact) = (client.clone(), contact.clone());
        blocking(move || {
            let (_, messages) = newest(&client, &contact, CHAT_BACKLOG)?;
            mark_read(&client, &contact, &messages.iter().collect::<Vec<_>>())?;
            let shown: std::collections::HashSet<String> =
                messages.iter().map(|m| m.id.clone()).collect();
            Ok((messages, shown))
        })
        .await?
    };
    for message in backlog.iter().rev() {
        print_message(message, &their_name, json);
    }
    if !json {
        eprintln!(
            "-- chatting with {their_name}: type a line and Enter to send; Ctrl-D or Ctrl-C ends --"
        );
    }
    let mut typed = typed_lines();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = typed.recv() => match line {
                None => break,
                Some(Err(e)) => return Err(Failure::new(format!("reading standard input: {e}"))),
                Some(Ok(line)) if line.trim().is_empty() => {}
                Some(Ok(line)) => {
                    let (client, path) = (client.clone(), messages_path(&contact));
                    let sent = blocking(move || client.post(&path, Some(&json!({ "text": line })))).await;
                    match sent {
                        Ok(answer) if json => println!("{answer}"),
                        Ok(_) => {}
                        // The node is gone: nothing more can be sent.
                        Err(failure) if failure.code() == NO_NODE => return Err(failure),
                        Err(failure) => eprintln!("xchat: not sent: {}", failure.message()),
                    }
                }
            },
            frame = events.next() => match frame {
                Some(Ok(tungstenite::Message::Text(text))) => {
                    let event: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if json {
                        if event_concerns(&event, &contact.id) {
                            println!("{event}");
                        }
                        continue;
                    }
                    if let Some(message) = received_message(&event, &contact.id) {
                        if shown.insert(message.id.clone()) {
                            print_message(&message, &their_name, false);
                            let client = client.clone();
                            let contact = contact.clone();
                            // Best effort: an unmarked message stays unread.
                            let _ = blocking(move || mark_read(&client, &contact, &[&message])).await;
                        }
                    } else {
                        narrate(&event, &contact.id, &their_name);
                    }
                }
                Some(Ok(tungstenite::Message::Close(_))) | None => {
                    return Err(Failure::with_code(NO_NODE, "the node stopped"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(Failure::with_code(NO_NODE, format!("the node's events ended: {e}")));
                }
            },
        }
    }
    Ok(())
}

fn print_message(message: &Message, their_name: &str, json: bool) {
    if json {
        println!(
            "{}",
            json!({ "type": "message", "id": message.id, "direction": message.direction,
            "sent_at": message.sent_at, "text": message.text, "call": message.call,
            "status": message.status })
        );
    } else {
        println!("{}", message_line(message, their_name));
    }
}

/// Whether `event` is about the conversation with `contact`.
fn event_concerns(event: &Value, contact: &str) -> bool {
    event["contact"].as_str() == Some(contact)
        || event["message"]["contact"].as_str() == Some(contact)
        || event["type"] == "lagged"
}

/// The message of a `message_received` event in this conversation.
fn received_message(event: &Value, contact: &str) -> Option<Message> {
    if event["type"] != "message_received" {
        return None;
    }
    let message: Message = serde_json::from_value(event["message"].clone()).ok()?;
    (message.contact == contact).then_some(message)
}

/// Tells the user about the other events of this conversation.
fn narrate(event: &Value, contact: &str, their_name: &str) {
    if !event_concerns(event, contact) {
        return;
    }
    match event["type"].as_str() {
        Some("status_changed") if event["status"] == "failed" => {
            eprintln!("-- a message to {their_name} could not be delivered --");
        }
        Some("timer_changed") => {
            let seconds = event["timer_seconds"].as_u64().and_then(|s| u32::try_from(s).ok());
            eprintln!("-- vanishing timer: {} --", timer_text(seconds.unwrap_or(0)));
        }
        Some("contact_key_changed") => {
            eprintln!(
                "-- WARNING: {their_name}'s key changed: compare safety numbers (`xchat contact verify`) --"
            );
        }
        Some("lagged") => {
            eprintln!("-- some events were missed: restart `xchat chat` to see them --")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::CallEntry;

    #[test]
    fn timers_take_every_unit_and_off() {
        assert_eq!(parse_timer("30s"), Ok(30));
        assert_eq!(parse_timer("5m"), Ok(300));
        assert_eq!(parse_timer("1h"), Ok(3600));
        assert_eq!(parse_timer("1d"), Ok(86_400));
        assert_eq!(parse_timer("1w"), Ok(604_800));
        assert_eq!(parse_timer("off"), Ok(0));
        assert_eq!(parse_timer("OFF"), Ok(0));
    }

    #[test]
    fn timers_without_unit_or_number_are_refused() {
        for bad in ["", "30", "h", "1y", "-1h", "1.5h", "0s", "99999999w", "1hh", "é"] {
            assert!(parse_timer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timer_text_reads_back() {
        for text in ["off", "30s", "90s", "5m", "1h", "1d", "1w", "2w"] {
            assert_eq!(timer_text(parse_timer(text).unwrap()), text);
        }
    }

    #[test]
    fn utc_times_match_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_time(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(utc_time(4_107_542_399_000), "2100-02-28 23:59:59");
    }

    #[test]
    fn escape_sequences_are_not_printed() {
        assert_eq!(printable("hi\u{1b}[2Jthere\r\n"), "hi\u{fffd}[2Jthere\u{fffd}\n");
        assert_eq!(printable("plain, ünïcode\ttab"), "plain, ünïcode\ttab");
    }

    #[test]
    fn history_line_shows_direction_time_and_status() {
        let message = Message {
            id: "00".repeat(16),
            contact: "11".repeat(16),
            direction: "in".into(),
            sent_at: 1_700_000_000_123,
            text: "hello\nthere".into(),
            call: None,
            status: "unread".into(),
            expires_at: Some(1_700_000_060_000),
        };
        assert_eq!(
            message_line(&message, "bob"),
            "2023-11-14 22:13:20  bob: hello\n    there  (unread, vanishes 2023-11-14 22:14:20)"
        );
        let out = Message {
            direction: "out".into(),
            status: "delivered".into(),
            expires_at: None,
            ..message
        };
        assert_eq!(
            message_line(&out, "bob"),
            "2023-11-14 22:13:20  you: hello\n    there  (delivered)"
        );
        let missed = Message {
            text: String::new(),
            call: Some(CallEntry {
                call_id: "22".repeat(16),
                outcome: "missed".into(),
                video: true,
            }),
            expires_at: None,
            ..out
        };
        assert_eq!(
            message_line(&Message { direction: "in".into(), ..missed }, "bob"),
            "2023-11-14 22:13:20  bob: [missed video call]  (delivered)"
        );
    }
}
