//! Two real `xchat up` processes on loopback, measured through their public
//! API (issue 5's speed targets): how soon `up` serves, message latency from
//! the API call on Alice's node to the WebSocket event on Bob's (p50, p99,
//! 1 KiB texts), sustained messages per second, file transfer MB/s, and each
//! node's idle and peak RSS.
//!
//! `cargo bench -p xchat-cli --bench node`. Sizes can be changed with
//! `XCHAT_BENCH_MESSAGES` (throughput run, default 40,000),
//! `XCHAT_BENCH_CLIENTS` (API clients sending at once in that run, default
//! 64) and `XCHAT_BENCH_FILE_MIB` (default 256). The throughput run also
//! reports the CPU time each process spent per message, which says how far
//! the rate is bound by the machine's cores.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const LATENCY_SAMPLES: usize = 300;
const TEXT_BYTES: usize = 1024;
const WAIT: Duration = Duration::from_secs(300);

struct Node {
    child: Child,
    profile: PathBuf,
    up: Value,
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xchat(profile: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xchat"));
    command.arg("--profile").arg(profile);
    command
}

impl Node {
    /// Starts `xchat up`; returns it and how long it took to print that it
    /// serves (its API answers from then on).
    fn start(profile: &Path, bootstrap: Option<&str>) -> (Self, Duration) {
        let mut command = xchat(profile);
        command.args([
            "--json",
            "up",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ]);
        if let Some(address) = bootstrap {
            command.args(["--bootstrap", address]);
        }
        let started = Instant::now();
        let mut child = command.stdout(Stdio::piped()).stderr(bench_log(profile)).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready = started.elapsed();
        let up: Value = serde_json::from_str(&line).unwrap();
        let base = up["api"].as_str().unwrap().to_owned();
        let token = std::fs::read_to_string(profile.join("api.token")).unwrap().trim().to_owned();
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        (Self { child, profile: profile.to_path_buf(), up, base, token, agent }, ready)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            (_, Some(body)) => self.agent.post(&url).header("authorization", &auth).send_json(body),
            (_, None) => self.agent.post(&url).header("authorization", &auth).send_empty(),
        }
        .unwrap();
        let status = response.status();
        let text = response.into_body().read_to_string().unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    fn events(&self) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        let url = format!("ws://{}/api/v1/events", self.base.trim_start_matches("http://"));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse().unwrap());
        request
    }

    /// The CPU time the node's process has used so far.
    fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }

    fn kib(&self, field: &str) -> u64 {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// Where a node's log goes: with `XCHAT_BENCH_LOG=DIR`, each node's stderr
/// to `DIR/<profile name>.log` (for `RUST_LOG=xchat_node=trace` runs).
fn bench_log(profile: &Path) -> Stdio {
    let Some(dir) = std::env::var_os("XCHAT_BENCH_LOG") else { return Stdio::null() };
    let name = profile.file_name().unwrap().to_string_lossy().into_owned();
    let path = Path::new(&dir).join(format!("{name}.log"));
    Stdio::from(std::fs::File::create(path).unwrap())
}

/// The user and system CPU time of `/proc/<pid>` so far (all its threads),
/// at the clock-tick resolution of `/proc` (10 ms).
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is the first; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / CLOCK_TICKS_PER_SECOND)
}

/// `USER_HZ`, the unit of `/proc`'s CPU times: 100 on every Linux
/// architecture this bench runs on.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn text(i: usize) -> String {
    let head = format!("bench message {i} ");
    format!("{head}{}", "x".repeat(TEXT_BYTES - head.len()))
}

/// Waits for the `message_received` event of `wanted`.
async fn next<S>(events: &mut S, wanted: &str)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, async {
        while let Some(frame) = events.next().await {
            if let Ok(Message::Text(frame)) = frame {
                let event: Value = serde_json::from_str(&frame).unwrap();
                if event["type"] == "message_received" && event["message"]["text"] == wanted {
                    return;
                }
            }
        }
        panic!("events ended");
    })
    .await
    .unwrap_or_else(|_| panic!("{wanted:.20} did not arrive"));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let home = tempfile::tempdir().unwrap();
    let (alice_dir, bob_dir) = (home.path().join("alice"), home.path().join("bob"));
    for dir in [&alice_dir, &bob_dir] {
        let made = xchat(dir).args(["init", "--no-passphrase"]).output().unwrap();
        assert!(made.status.success());
    }
    let (alice, alice_ready) = Node::start(&alice_dir, None);
    let listen = alice.up["listen"][0].as_str().unwrap().to_owned();
    let (bob, bob_ready) = Node::start(&bob_dir, Some(&listen));
    let bob_id = alice.call(
        "POST",
        "/api/v1/contacts",
        Some(json!({"name": "bob", "address": bob.up["address"]})),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_id = bob.call(
        "POST",
        "/api/v1/contacts",
        Some(json!({"name": "alice", "address": alice.up["address"]})),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut events, _) = tokio_tungstenite::connect_async(bob.events()).await.unwrap();
    let send_path = format!("/api/v1/conversations/{bob_id}/messages");

    // The first message finds Bob's records in the DHT and starts the
    // session: warm-up, not measured. Retried until it arrives.
    alice.call("POST", &send_path, Some(json!({"text": "warm-up"})));
    next(&mut events, "warm-up").await;
    let idle = (alice.kib("VmRSS:"), bob.kib("VmRSS:"));

    // Latency: one message at a time, API call to WebSocket event.
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES {
        let text = text(i);
        let started = Instant::now();
        alice.call("POST", &send_path, Some(json!({"text": text})));
        next(&mut events, &text).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    // Throughput: many senders at once, until Bob has seen them all.
    let messages = env_usize("XCHAT_BENCH_MESSAGES", 40_000);
    let clients = env_usize("XCHAT_BENCH_CLIENTS", 64);
    let (base, token) = (alice.base.clone(), alice.token.clone());
    let sent = Arc::new(AtomicUsize::new(0));
    let cpu_before = (alice.cpu(), bob.cpu(), cpu_of("self"));
    let started = Instant::now();
    let senders: Vec<_> = (0..clients)
        .map(|_| {
            let (base, token, path, sent) =
                (base.clone(), token.clone(), send_path.clone(), Arc::clone(&sent));
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                loop {
                    let i = sent.fetch_add(1, Ordering::Relaxed);
                    if i >= messages {
                        return;
                    }
                    // Read to the end, as any client that wants the new
                    // message's id does: only then is the connection kept
                    // for the next request.
                    let answer = agent
                        .post(format!("{base}{path}"))
                        .header("authorization", format!("Bearer {token}"))
                        .send_json(json!({"text": format!("burst {i}")}))
                        .unwrap()
                        .into_body()
                        .read_to_string()
                        .unwrap();
                    assert!(answer.contains("\"id\""), "{answer}");
                }
            })
        })
        .collect();
    let mut seen = 0;
    tokio::time::timeout(WAIT, async {
        while seen < messages {
            if let Some(Ok(Message::Text(frame))) = events.next().await {
                let event: Value = serde_json::from_str(&frame).unwrap();
                if event["type"] == "message_received" {
                    seen += 1;
                }
            }
        }
    })
    .await
    .expect("every burst message arrives");
    let burst = started.elapsed();
    let cpu = (alice.cpu() - cpu_before.0, bob.cpu() - cpu_before.1, cpu_of("self") - cpu_before.2);
    for sender in senders {
        sender.join().unwrap();
    }

    // A file through both APIs: upload at Alice, accept at Bob, fetched.
    let mib = env_usize("XCHAT_BENCH_FILE_MIB", 256);
    let file_bytes = (mib * 1024 * 1024) as u64;
    let source = home.path().join("big.bin");
    {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for byte in &mut block {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            out.write_all(&block).unwrap();
        }
    }
    let upload_started = Instant::now();
    let uploaded = alice
        .agent
        .post(format!("{}/api/v1/conversations/{bob_id}/files?name=big.bin", alice.base))
        .header("authorization", format!("Bearer {}", alice.token))
        .header("content-length", file_bytes.to_string())
        .send(ureq::SendBody::from_reader(&mut std::fs::File::open(&source).unwrap()))
        .unwrap();
    assert!(uploaded.status().is_success());
    let upload = upload_started.elapsed();
    next(&mut events, "big.bin").await;
    let list = bob.call("GET", &format!("/api/v1/conversations/{alice_id}/files"), None);
    let file = list[0]["file"].as_str().unwrap().to_owned();
    let fetch_started = Instant::now();
    bob.call("POST", &format!("/api/v1/files/{file}/accept"), None);
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(frame)) = events.next().await {
            if let Message::Text(frame) = frame {
                let event: Value = serde_json::from_str(&frame).unwrap();
                if event["type"] == "transfer_changed" && event["state"] == "complete" {
                    return;
                }
                assert_ne!(event["state"], "failed", "{event}");
            }
        }
    })
    .await
    .expect("the file completes");
    let fetch = fetch_started.elapsed();
    let peak = (alice.kib("VmHWM:"), bob.kib("VmHWM:"));
    let _ = (&alice.profile, &bob.profile);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    let rate = messages as f64 / burst.as_secs_f64();
    let mb = file_bytes as f64 / 1e6;
    println!("xchat node benchmark: two `xchat up` processes on loopback, through the local API");
    println!(
        "  up ready to serve: alice {:.0} ms, bob {:.0} ms (target < 500 ms)",
        ms(alice_ready),
        ms(bob_ready)
    );
    println!(
        "  latency, 1 KiB text, API call -> WebSocket event ({LATENCY_SAMPLES} samples): \
         p50 {:.2} ms, p99 {:.2} ms (target p99 < 5 ms)",
        ms(p50),
        ms(p99)
    );
    println!(
        "  sustained: {messages} messages from {clients} API clients in {:.2} s = {rate:.0} messages/s (target >= 5000)",
        burst.as_secs_f64()
    );
    let per_message = |d: Duration| d.as_secs_f64() * 1e6 / messages as f64;
    println!(
        "  CPU per message in that run: alice {:.0} µs, bob {:.0} µs, the bench (API clients, event reader) {:.0} µs; \
         {:.0}% of {} cores",
        per_message(cpu.0),
        per_message(cpu.1),
        per_message(cpu.2),
        (cpu.0 + cpu.1 + cpu.2).as_secs_f64() * 100.0
            / (burst.as_secs_f64() * std::thread::available_parallelism().unwrap().get() as f64),
        std::thread::available_parallelism().unwrap()
    );
    println!(
        "  file {mib} MiB: upload + seal {:.0} MB/s; fetch, verify and keep {:.0} MB/s",
        mb / upload.as_secs_f64(),
        mb / fetch.as_secs_f64()
    );
    println!(
        "  RSS: idle alice {} MiB, bob {} MiB (target < 50 MiB); peak alice {} MiB, bob {} MiB",
        idle.0 / 1024,
        idle.1 / 1024,
        peak.0 / 1024,
        peak.1 / 1024
    );
}
