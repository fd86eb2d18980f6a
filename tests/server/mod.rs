//! `kinograph serve` run as users run it: the binary started on loopback over the LTX-Video demo models,
//! driven by real clients (ComfyUI's example clients' calls in Python, HTTP and websockets), killed with
//! `kill -9` and restarted, and loaded by several clients at once.

mod clients;
mod kill;
mod load;
mod many_machines;

use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The demo text-to-video prompt (`kinograph convert workflows/ltxv_text_to_video.json` on the demo models
/// at 256×192, 9 frames, 2 steps), with a `SaveImage` of the decoded frames beside the video.
pub const DEMO_PROMPT: &str = include_str!("../data/server/ltxv_demo_t2v_api.json");

/// A `kinograph serve` process; killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl ServerProcess {
    /// Starts `kinograph serve` in `root` (models in `root/models`, state in `root/state`) on a free port, and
    /// waits for it to listen. Its log goes to `root/serve.log`, appended across restarts.
    pub fn start(root: &Path, extra: &[&str]) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(root.join("serve.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kinograph"))
            .current_dir(root)
            .args(["serve", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("kinograph serve starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("kinograph serve: listening on http://") {
                    let _ = sender.send(address.to_string());
                }
            }
        });
        let address = receiver.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(root.join("serve.log")).unwrap_or_default();
            panic!("kinograph serve did not start listening; its log:\n{log}")
        });
        ServerProcess { child, address }
    }

    /// `kill -9`: the process gets no chance to tidy up.
    pub fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The server's resident memory now and at its peak, from `/proc` (bytes; Linux only).
    pub fn memory(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib * 1024))
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A folder with the demo models in `models/`.
pub fn demo_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    kinograph_nodes::demo::write_demo_models(&root.path().join("models")).unwrap();
    root
}

/// An HTTP client that returns every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_mins(1)))
        .build()
        .into()
}

/// GET `url` as JSON.
pub fn get_json(agent: &ureq::Agent, url: &str) -> Json {
    let mut response = agent.get(url).call().unwrap_or_else(|error| panic!("GET {url}: {error}"));
    assert_eq!(response.status(), 200, "GET {url}");
    let text = response.body_mut().with_config().limit(256 << 20).read_to_string().unwrap();
    serde_json::from_str(&text).unwrap()
}

/// POST `body` to `url`: the status and the JSON answer (`null` when it is not JSON).
pub fn post_json(agent: &ureq::Agent, url: &str, body: &Json) -> (u16, Json) {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|error| panic!("POST {url}: {error}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Json::Null))
}

/// Polls `check` every 20 ms until it gives a value, failing after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The demo prompt with its seed, its output names under `prefix` and its own text.
pub fn demo_prompt(seed: u64, prefix: &str) -> Json {
    let mut prompt: Json = serde_json::from_str(DEMO_PROMPT).unwrap();
    prompt["72"]["inputs"]["noise_seed"] = seed.into();
    prompt["79"]["inputs"]["filename_prefix"] = format!("{prefix}/video").into();
    prompt["90"]["inputs"]["filename_prefix"] = format!("{prefix}/frames").into();
    prompt
}

/// The files an entry's outputs name, as paths under `output`.
pub fn output_files(output: &Path, entry: &Json) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for node in entry["outputs"].as_object().into_iter().flat_map(|outputs| outputs.values()) {
        for file in node["images"].as_array().into_iter().flatten() {
            let (subfolder, name) = (file["subfolder"].as_str().unwrap(), file["filename"].as_str().unwrap());
            files.push(output.join(subfolder).join(name));
        }
    }
    files
}

/// Checks that `path` is a whole file of its kind: a PNG that decodes, or an MP4 whose boxes span the file.
pub fn check_output_file(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => {
            image::load_from_memory(&bytes)
                .unwrap_or_else(|error| panic!("{} does not decode: {error}", path.display()));
        }
        Some("mp4") => check_mp4(path, &bytes),
        _ => assert!(!bytes.is_empty(), "{} is empty", path.display()),
    }
}

/// An MP4's top-level boxes (size, type) must start with `ftyp`, hold a `moov` and `mdat`, and end exactly at
/// the file's end: a truncated file fails.
fn check_mp4(path: &Path, bytes: &[u8]) {
    let mut offset = 0usize;
    let mut kinds = Vec::new();
    while offset + 8 <= bytes.len() {
        let mut size = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        kinds.push(String::from_utf8_lossy(&bytes[offset + 4..offset + 8]).to_string());
        // Size 1: a 64-bit size follows the type; size 0: the box runs to the end of the file.
        if size == 1 && offset + 16 <= bytes.len() {
            size = u64::from_be_bytes(bytes[offset + 8..offset + 16].try_into().unwrap()) as usize;
        } else if size == 0 {
            size = bytes.len() - offset;
        }
        assert!(size >= 8, "{}: a box of {size} bytes at {offset}", path.display());
        offset += size;
    }
    assert_eq!(offset, bytes.len(), "{}: the boxes {kinds:?} do not end at the file's end", path.display());
    assert_eq!(kinds.first().map(String::as_str), Some("ftyp"), "{}", path.display());
    assert!(kinds.iter().any(|k| k == "moov") && kinds.iter().any(|k| k == "mdat"), "{}: {kinds:?}", path.display());
}
