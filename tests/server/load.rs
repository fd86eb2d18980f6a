//! A bounded load on loopback: 8 clients, each with its websocket open, send 200 prompts in all (small
//! text graphs and demo-model videos mixed). Every prompt completes exactly once, its messages reach the
//! client that sent it, the history holds 200 distinct entries, and the server's resident memory stays
//! under 1 GiB. Prints requests per second for `/prompt` and `/history` and the time from an event to its
//! websocket message (p50, p99): figures, not assertions.

use super::{ServerProcess, agent, demo_prompt, demo_root, get_json, post_json, wait_for};
use serde_json::{Value as Json, json};
use std::collections::HashSet;
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::Message;
use tungstenite::stream::MaybeTlsStream;

const CLIENTS: usize = 8;
const PROMPTS_PER_CLIENT: usize = 25;
/// The server's resident memory stays under this.
const RSS_BOUND: u64 = 1 << 30;

/// A small graph: two strings joined and saved as text.
fn text_prompt(client: usize, index: usize) -> Json {
    json!({
        "1": {"class_type": "PrimitiveString", "inputs": {"value": format!("client {client}, prompt {index}")}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "a red fox"}},
        "3": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": ["2", 0], "delimiter": ", "}},
        "4": {"class_type": "SaveText", "inputs": {"text": ["3", 0], "filename_prefix": format!("load/text_{client}")}},
    })
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// What one client saw.
struct ClientReport {
    sent: Vec<String>,
    finished: Vec<String>,
    post_times: Vec<Duration>,
    /// Receipt time minus the event's own timestamp, for messages that carry one.
    delays_ms: Vec<u64>,
}

fn run_client(address: &str, client: usize) -> ClientReport {
    let client_id = format!("load-client-{client}");
    let (mut socket, _) = tungstenite::connect(format!("ws://{address}/ws?clientId={client_id}")).unwrap();
    if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
        TcpStream::set_read_timeout(stream, Some(Duration::from_mins(5))).unwrap();
    }
    let reader = std::thread::spawn(move || {
        let (mut finished, mut delays_ms) = (Vec::new(), Vec::new());
        while finished.len() < PROMPTS_PER_CLIENT {
            let message = match socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(error) => panic!("client {client}: the websocket failed after {} prompts: {error}", finished.len()),
            };
            let received = now_millis();
            let message: Json = serde_json::from_str(message.as_str()).unwrap();
            let data = &message["data"];
            if let Some(timestamp) = data["timestamp"].as_u64() {
                delays_ms.push(received.saturating_sub(timestamp));
            }
            if message["type"] == "executing" && data["node"].is_null() {
                finished.push(data["prompt_id"].as_str().unwrap().to_string());
            }
        }
        (finished, delays_ms)
    });
    let agent = agent();
    let (mut sent, mut post_times) = (Vec::new(), Vec::new());
    for index in 0..PROMPTS_PER_CLIENT {
        let prompt_id = format!("load-{client}-{index:02}");
        let prompt = if index % 5 == 0 {
            demo_prompt((client * 100 + index) as u64, &format!("load/video_{client}"))
        } else {
            text_prompt(client, index)
        };
        let started = Instant::now();
        let (status, answer) = post_json(
            &agent,
            &format!("http://{address}/prompt"),
            &json!({"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}),
        );
        post_times.push(started.elapsed());
        assert_eq!(status, 200, "{answer}");
        sent.push(prompt_id);
    }
    let (finished, delays_ms) = reader.join().unwrap();
    ClientReport { sent, finished, post_times, delays_ms }
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

#[test]
fn eight_clients_send_200_prompts_and_every_one_completes_once() {
    let root = demo_root();
    let server = ServerProcess::start(root.path(), &[]);
    let started = Instant::now();
    let reports: Vec<ClientReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|client| {
                scope.spawn({
                    let address = server.address.clone();
                    move || run_client(&address, client)
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();

    let mut all_sent = HashSet::new();
    for (client, report) in reports.iter().enumerate() {
        let finished: HashSet<&String> = report.finished.iter().collect();
        assert_eq!(finished.len(), report.finished.len(), "client {client} heard a prompt finish twice");
        assert_eq!(finished, report.sent.iter().collect(), "client {client} hears exactly its own prompts finish");
        all_sent.extend(report.sent.iter().cloned());
    }
    assert_eq!(all_sent.len(), CLIENTS * PROMPTS_PER_CLIENT);
    let agent = agent();
    let history = wait_for("the history to hold every prompt", Duration::from_mins(1), || {
        let history = get_json(&agent, &server.url("/history"));
        (history.as_object()?.len() == all_sent.len()).then_some(history)
    });
    for (id, entry) in history.as_object().unwrap() {
        assert!(all_sent.contains(id), "unknown prompt {id} in the history");
        assert_eq!(entry["status"]["status_str"], "success", "{id}: {entry}");
    }

    // /history read by every client at once.
    let reads = 50;
    let history_started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                let agent = super::agent();
                for _ in 0..reads {
                    get_json(&agent, &server.url("/history?max_items=20"));
                }
            });
        }
    });
    let history_rate = (CLIENTS * reads) as f64 / history_started.elapsed().as_secs_f64();

    let (rss, peak) = server.memory().expect("the server's memory is readable on Linux");
    assert!(peak < RSS_BOUND, "the server's peak resident memory {peak} bytes is over the bound {RSS_BOUND}");

    let mut posts: Vec<u64> = reports.iter().flat_map(|r| r.post_times.iter().map(|d| d.as_micros() as u64)).collect();
    posts.sort_unstable();
    let post_rate = posts.len() as f64 / (posts.iter().sum::<u64>() as f64 / 1e6 / CLIENTS as f64);
    let mut delays: Vec<u64> = reports.iter().flat_map(|r| r.delays_ms.iter().copied()).collect();
    delays.sort_unstable();
    println!(
        "load: {} prompts from {CLIENTS} clients in {:.1} s; POST /prompt {post_rate:.0}/s (p50 {:.1} ms, p99 {:.1} ms); \
         GET /history?max_items=20 {history_rate:.0}/s; event → websocket p50 {} ms, p99 {} ms over {} messages; \
         server RSS {:.0} MiB, peak {:.0} MiB",
        all_sent.len(),
        elapsed.as_secs_f64(),
        percentile(&posts, 0.5) as f64 / 1000.0,
        percentile(&posts, 0.99) as f64 / 1000.0,
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.len(),
        rss as f64 / 1_048_576.0,
        peak as f64 / 1_048_576.0,
    );
}
