//! Many machines on loopback, as users run them: a real `nats-server` with JetStream (file storage), one
//! `kinograph serve --queue` front end and three `kinograph worker` processes, each with its own folders.
//! Three clients send 60 prompts (small graphs and demo-model videos) the way ComfyUI's websocket example
//! client sends them; a worker is killed with `kill -9` while it runs a video, the front end is killed and
//! restarted, and so is the NATS server. Every prompt completes once, its messages reach the client that
//! sent it, and its outputs download through `/view`.

use super::{ServerProcess, agent, check_output_file, demo_prompt, demo_root, get_json, post_json, wait_for};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Seconds a dead worker keeps its prompt before another worker takes it.
const ACK_WAIT: &str = "5";
const CLIENTS: usize = 3;
const PROMPTS_PER_CLIENT: usize = 20;

/// The `nats-server` binary: on the `PATH`, or where Debian's package puts it; `None` when it is not
/// installed, which fails under CI (which installs it) and skips the test elsewhere.
fn nats_server_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|folder| folder.join("nats-server"));
    let found = on_path.chain([PathBuf::from("/usr/sbin/nats-server")]).find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "nats-server is not installed (apt-get install nats-server)");
        eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// A `nats-server -js` with its store in a folder that outlives it, so that it can be killed and started
/// again on the same port and store.
pub struct NatsProcess {
    child: Child,
    port: u16,
    store: PathBuf,
    binary: PathBuf,
}

impl NatsProcess {
    /// One on a free port, or `None` when `nats-server` is not installed.
    pub fn start(store: &Path) -> Option<Self> {
        let binary = nats_server_binary()?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        Some(Self::start_on(&binary, store, port))
    }

    fn start_on(binary: &Path, store: &Path, port: u16) -> Self {
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let process = NatsProcess { child, port, store: store.to_path_buf(), binary: binary.to_path_buf() };
        wait_for("nats-server to listen", Duration::from_secs(30), || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()
        });
        process
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`, then the same server again on its port and store.
    pub fn restart(mut self) -> Self {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        Self::start_on(&self.binary.clone(), &self.store.clone(), self.port)
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kinograph worker` process with its own folders under `root/<name>` and the demo models.
pub struct WorkerProcess {
    child: Child,
    pub name: String,
}

impl WorkerProcess {
    pub fn start(root: &Path, nats: &str, name: &str, extra: &[&str]) -> Self {
        let folder = root.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let log = std::fs::File::create(folder.join("worker.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kinograph"))
            .current_dir(&folder)
            .args(["worker", "--queue", nats, "--name", name, "--ack-wait", ACK_WAIT, "--models-dir"])
            .arg(root.join("models"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("kinograph worker starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let ready =
            stdout.lines().map_while(Result::ok).any(|line| line.starts_with("kinograph worker: taking prompts"));
        assert!(ready, "worker {name} did not start: {}", std::fs::read_to_string(folder.join("worker.log")).unwrap());
        WorkerProcess { child, name: name.to_string() }
    }

    pub fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small graph: two strings joined and saved as a text file.
pub fn text_prompt(label: &str) -> Json {
    json!({
        "1": {"class_type": "PrimitiveString", "inputs": {"value": label}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "a red fox"}},
        "3": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": ["2", 0], "delimiter": ", "}},
        "4": {"class_type": "SaveText", "inputs": {"text": ["3", 0], "filename_prefix": "text/small"}},
    })
}

pub fn python() -> String {
    for candidate in ["python3", "/usr/bin/python3"] {
        let found = Command::new(candidate).args(["-c", "import websocket"]).output();
        if found.is_ok_and(|output| output.status.success()) {
            return candidate.to_string();
        }
    }
    panic!("no python3 with websocket-client found: install it (Debian: apt-get install python3-websocket)")
}

/// Runs `tests/clients/many_prompts_client.py` with `prompts`, downloading into `downloads`.
pub fn spawn_client(address: &str, prompts: &[Json], folder: &Path) -> Child {
    std::fs::create_dir_all(folder.join("downloads")).unwrap();
    let file = folder.join("prompts.json");
    std::fs::write(&file, serde_json::to_string(prompts).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/many_prompts_client.py");
    Command::new(python())
        .arg(script)
        .arg(address)
        .arg(&file)
        .arg(folder.join("downloads"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The JSON summary a client printed, once it exits.
pub fn client_summary(child: Child) -> Json {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "a client failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Prompt `index` of a client: every fourth a demo video, the others small graphs.
fn client_prompt(client: usize, index: usize) -> Json {
    if index % 4 == 1 {
        demo_prompt((client * 100 + index) as u64, &format!("client{client}"))
    } else {
        text_prompt(&format!("client {client}, prompt {index}"))
    }
}

/// Whether a queued prompt (as `/queue` lists it) makes a video.
fn is_video(item: &Json) -> bool {
    item[2].as_object().is_some_and(|nodes| nodes.values().any(|node| node["class_type"] == "SaveVideo"))
}

/// The files a history entry's outputs list, from every node and list.
fn output_list(entry: &Json) -> Vec<&Json> {
    let nodes = entry["outputs"].as_object().into_iter().flat_map(|outputs| outputs.values());
    let lists = nodes.filter_map(Json::as_object).flat_map(|node| node.values()).filter_map(Json::as_array);
    lists.flatten().filter(|item| item["filename"].is_string()).collect()
}

/// The subfolder a history entry's first file is under: the name of the worker that made it.
fn worker_of(entry: &Json) -> String {
    let file = output_list(entry).into_iter().next().expect("an output file");
    file["subfolder"].as_str().unwrap().split('/').next().unwrap().to_string()
}

#[test]
fn sixty_prompts_on_three_workers_survive_a_dead_worker_a_restarted_front_end_and_nats() {
    let root = demo_root();
    let nats_store = root.path().join("nats");
    let Some(mut nats) = NatsProcess::start(&nats_store) else { return };
    let front = ["--queue", &nats.url(), "--ack-wait", ACK_WAIT].map(str::to_string);
    let front: Vec<&str> = front.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(root.path(), &front);
    let mut workers: Vec<WorkerProcess> =
        ["w1", "w2", "w3"].iter().map(|name| WorkerProcess::start(root.path(), &nats.url(), name, &[])).collect();
    let agent = agent();

    // 60 prompts from three clients at once.
    let clients: Vec<Child> = (0..CLIENTS)
        .map(|client| {
            let prompts: Vec<Json> = (0..PROMPTS_PER_CLIENT).map(|index| client_prompt(client, index)).collect();
            spawn_client(&server.address, &prompts, &root.path().join(format!("client{client}")))
        })
        .collect();
    // A worker dies while it runs a video.
    let (victim, killed_prompt) = wait_for("a worker running a video", Duration::from_mins(5), || {
        let queue = get_json(&agent, &server.url("/queue"));
        let videos: Vec<&str> = queue["queue_running"]
            .as_array()?
            .iter()
            .filter(|item| is_video(item))
            .filter_map(|item| item[1].as_str())
            .collect();
        let stats = get_json(&agent, &server.url("/system_stats"));
        stats["workers"].as_array()?.iter().find_map(|worker| {
            let running = worker["current_prompt"].as_str()?;
            videos.contains(&running).then(|| (worker["name"].as_str().unwrap().to_string(), running.to_string()))
        })
    });
    let index = workers.iter().position(|worker| worker.name == victim).unwrap();
    workers[index].kill_hard();
    let summaries: Vec<Json> = clients.into_iter().map(client_summary).collect();

    let mut all = BTreeSet::new();
    let mut delays: Vec<f64> = Vec::new();
    for (client, summary) in summaries.iter().enumerate() {
        let prompts = summary["prompts"].as_object().unwrap();
        assert_eq!(prompts.len(), PROMPTS_PER_CLIENT, "client {client}");
        for (prompt_id, report) in prompts {
            assert!(all.insert(prompt_id.clone()), "{prompt_id} twice");
            assert_eq!(report["status"], "success", "{prompt_id}: {report}");
            let messages = &report["messages"];
            // A prompt that was handed on after its worker died started twice, and finished once.
            assert_eq!(messages["finished"], 1, "{prompt_id}: {report}");
            assert_eq!(messages["execution_success"], 1, "{prompt_id}: {report}");
            assert!(messages["executed"].as_u64() >= Some(1), "{prompt_id}: {report}");
            let files = report["files"].as_array().unwrap();
            assert!(!files.is_empty(), "{prompt_id}: {report}");
            for file in files {
                check_output_file(Path::new(file["path"].as_str().unwrap()));
            }
        }
        delays.extend(summary["delays_ms"].as_array().unwrap().iter().filter_map(Json::as_f64));
    }
    let history = get_json(&agent, &server.url("/history"));
    assert_eq!(history.as_object().unwrap().len(), CLIENTS * PROMPTS_PER_CLIENT);
    let killed = &history[&killed_prompt];
    assert_eq!(killed["status"]["status_str"], "success", "{killed}");
    assert_ne!(worker_of(killed), victim, "the killed worker's prompt was finished by another worker");
    let by_worker: BTreeMap<String, usize> =
        history.as_object().unwrap().values().fold(BTreeMap::new(), |mut counts, entry| {
            *counts.entry(worker_of(entry)).or_default() += 1;
            counts
        });
    delays.sort_by(f64::total_cmp);
    let percentile = |fraction: f64| delays[((delays.len() - 1) as f64 * fraction).round() as usize];
    println!(
        "many machines: 60 prompts on 3 workers, by worker {by_worker:?}; worker event → client websocket p50 {:.1} ms, \
         p99 {:.1} ms over {} messages",
        percentile(0.5),
        percentile(0.99),
        delays.len()
    );

    // The front end killed while prompts wait and run, and started again: nothing lost.
    let queued = |server: &ServerProcess, label: &str| -> Vec<String> {
        (0..6)
            .map(|index| {
                let prompt = if index % 3 == 0 {
                    demo_prompt(1000 + index, &format!("{label}{index}"))
                } else {
                    text_prompt(&format!("{label} {index}"))
                };
                let (status, answer) = post_json(&agent, &server.url("/prompt"), &json!({"prompt": prompt}));
                assert_eq!(status, 200, "{answer}");
                answer["prompt_id"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let before_restart = queued(&server, "front");
    server.kill_hard();
    let server = ServerProcess::start(root.path(), &front);
    // The NATS server killed and started again on its store while prompts wait and run: nothing lost.
    let before_nats = queued(&server, "nats");
    nats = nats.restart();
    let expected = CLIENTS * PROMPTS_PER_CLIENT + before_restart.len() + before_nats.len();
    let history = wait_for("every prompt in the history", Duration::from_mins(5), || {
        let history = get_json(&agent, &server.url("/history"));
        (history.as_object()?.len() == expected).then_some(history)
    });
    for prompt_id in before_restart.iter().chain(&before_nats) {
        let entry = &history[prompt_id];
        assert_eq!(entry["status"]["status_str"], "success", "{prompt_id}: {entry}");
        for file in output_list(entry) {
            let url = server.url(&format!(
                "/view?filename={}&subfolder={}&type=output",
                file["filename"].as_str().unwrap(),
                file["subfolder"].as_str().unwrap()
            ));
            let mut response = agent.get(&url).call().unwrap();
            assert_eq!(response.status(), 200, "{url}");
            assert!(!response.body_mut().read_to_vec().unwrap().is_empty(), "{url}");
        }
    }
    let queue = get_json(&agent, &server.url("/queue"));
    assert_eq!(queue["queue_running"], json!([]), "{queue}");
    assert_eq!(queue["queue_pending"], json!([]), "{queue}");
    drop(nats);
}

/// Sends `count` small graphs over one websocket client, one after another as fast as the server takes
/// them, and waits for each to finish: the wall time from the first POST to the last `executing {node:
/// null}`, and the delay of every message carrying a timestamp from that timestamp to its arrival.
fn run_small_graphs(address: &str, count: usize) -> (Duration, Vec<u64>) {
    use tungstenite::Message;
    let client_id = "throughput";
    let (mut socket, _) = tungstenite::connect(format!("ws://{address}/ws?clientId={client_id}")).unwrap();
    // The socket is read while prompts are sent, so that a message's delay is the server's, not this client's.
    let reader = std::thread::spawn(move || {
        let (mut finished, mut delays) = (0, Vec::new());
        while finished < count {
            let Ok(Message::Text(text)) = socket.read() else { continue };
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
            let message: Json = serde_json::from_str(text.as_str()).unwrap();
            if let Some(timestamp) = message["data"]["timestamp"].as_u64() {
                delays.push(now.saturating_sub(timestamp));
            }
            if message["type"] == "executing" && message["data"]["node"].is_null() {
                finished += 1;
            }
        }
        delays
    });
    let agent = agent();
    let started = std::time::Instant::now();
    for index in 0..count {
        let body = json!({"prompt": text_prompt(&format!("prompt {index}")), "client_id": client_id});
        let (status, answer) = post_json(&agent, &format!("http://{address}/prompt"), &body);
        assert_eq!(status, 200, "{answer}");
    }
    let delays = reader.join().unwrap();
    (started.elapsed(), delays)
}

/// Dispatch overhead: the same 200 small graphs through `kinograph serve` alone and through a front end
/// with one, two and three workers. Prints the time per prompt of each, the difference from the
/// single-process queue (what going through NATS costs a prompt), and the delay from a worker's event to
/// the client's websocket message. A benchmark, not a check: run it with
/// `cargo nextest run -p kinograph --run-ignored only --no-capture -E 'test(dispatch_overhead)'`.
#[test]
#[ignore = "a benchmark: prints figures"]
fn dispatch_overhead_with_one_two_and_three_workers() {
    const PROMPTS: usize = 200;
    let percentile = |sorted: &[u64], fraction: f64| sorted[((sorted.len() - 1) as f64 * fraction).round() as usize];
    let report = |label: &str, elapsed: Duration, mut delays: Vec<u64>, baseline: Option<f64>| -> f64 {
        delays.sort_unstable();
        let per_prompt = elapsed.as_secs_f64() * 1000.0 / PROMPTS as f64;
        let overhead =
            baseline.map_or(String::new(), |base| format!(", dispatch overhead {:+.2} ms", per_prompt - base));
        println!(
            "{label}: {PROMPTS} small graphs in {:.2} s, {per_prompt:.2} ms per prompt{overhead}; event → websocket \
             p50 {} ms, p99 {} ms",
            elapsed.as_secs_f64(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.99)
        );
        per_prompt
    };
    let local = {
        let root = demo_root();
        let server = ServerProcess::start(root.path(), &[]);
        let (elapsed, delays) = run_small_graphs(&server.address, PROMPTS);
        report("single process", elapsed, delays, None)
    };
    for (workers, shared) in [(1, false), (2, false), (3, false), (3, true)] {
        let root = demo_root();
        let Some(nats) = NatsProcess::start(&root.path().join("nats")) else { return };
        let server = ServerProcess::start(root.path(), &["--queue", &nats.url()]);
        let output = root.path().join("output").display().to_string();
        let extra: &[&str] = if shared { &["--shared-outputs", "--output-dir", &output] } else { &[] };
        let _workers: Vec<WorkerProcess> = (0..workers)
            .map(|index| WorkerProcess::start(root.path(), &nats.url(), &format!("w{index}"), extra))
            .collect();
        let (elapsed, delays) = run_small_graphs(&server.address, PROMPTS);
        let outputs = if shared { "a shared output folder" } else { "outputs through the object store" };
        report(&format!("{workers} worker(s) over NATS, {outputs}"), elapsed, delays, Some(local));
    }
}

/// Waits until `/system_stats` lists `count` workers, and returns them.
fn listed_workers(agent: &ureq::Agent, server: &ServerProcess, count: usize) -> Vec<Json> {
    wait_for("the workers in /system_stats", Duration::from_secs(30), || {
        let workers = get_json(agent, &server.url("/system_stats"))["workers"].as_array()?.clone();
        (workers.len() == count).then_some(workers)
    })
}

/// Queues `prompt` and waits for its history entry.
fn run_one(agent: &ureq::Agent, server: &ServerProcess, prompt: &Json) -> Json {
    let (status, answer) = post_json(agent, &server.url("/prompt"), &json!({"prompt": prompt}));
    assert_eq!(status, 200, "{answer}");
    let prompt_id = answer["prompt_id"].as_str().unwrap().to_string();
    wait_for("the prompt to finish", Duration::from_mins(2), || {
        get_json(agent, &server.url(&format!("/history/{prompt_id}"))).get(&prompt_id).cloned()
    })
}

#[test]
fn a_warm_worker_gets_the_prompts_of_its_model_and_free_lets_go_of_it() {
    let root = demo_root();
    let Some(nats) = NatsProcess::start(&root.path().join("nats")) else { return };
    let server = ServerProcess::start(root.path(), &["--queue", &nats.url(), "--ack-wait", ACK_WAIT]);
    let agent = agent();
    let warm = WorkerProcess::start(root.path(), &nats.url(), "warm", &[]);
    // The first video loads the demo models on the only worker there is.
    let first = run_one(&agent, &server, &demo_prompt(1, "first"));
    assert_eq!(worker_of(&first), "warm");
    let _cold = WorkerProcess::start(root.path(), &nats.url(), "cold", &[]);
    let workers = listed_workers(&agent, &server, 2);
    let warm_status = workers.iter().find(|worker| worker["name"] == "warm").unwrap();
    let models: Vec<&str> = warm_status["models"].as_array().unwrap().iter().filter_map(Json::as_str).collect();
    assert!(models.iter().any(|model| model.starts_with("checkpoints/")), "the models it holds: {warm_status}");
    assert!(models.iter().any(|model| model.starts_with("text_encoders/")), "{warm_status}");
    let cold_status = workers.iter().find(|worker| worker["name"] == "cold").unwrap();
    assert_eq!(cold_status["models"], json!([]), "{cold_status}");

    // Each further video goes to the worker that holds the models, while the other stays idle.
    for seed in 2..5 {
        let entry = run_one(&agent, &server, &demo_prompt(seed, &format!("warm{seed}")));
        assert_eq!(worker_of(&entry), "warm", "video {seed} ran where its models were");
    }

    // /free reaches the workers: the warm one lets go of its models, and its status says so.
    let (status, _) = post_json(&agent, &server.url("/free"), &json!({"unload_models": true, "free_memory": true}));
    assert_eq!(status, 200);
    wait_for("the warm worker to hold no model", Duration::from_secs(30), || {
        let workers = get_json(&agent, &server.url("/system_stats"))["workers"].as_array()?.clone();
        let warm = workers.iter().find(|worker| worker["name"] == "warm")?;
        (warm["models"] == json!([])).then_some(())
    });
    drop(warm);
}
