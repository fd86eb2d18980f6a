//! Running from the editor on a kinograph server (`kinograph edit --server URL`): a real server runs
//! in-process on a free loopback port over the tiny demo models, which only the server has, and the
//! editor queues ComfyUI's LTX-Video template on it through the HTTP API and the websocket. The run's
//! node states, preview and output video come back as they do from an in-process run; a server that is
//! not there, or that dies mid-run, is reported, never a panic; the model combos list the server's files;
//! the window names its server and says when it is out of reach.

use crate::ui::{harness, harness_on, step_until};
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::media::load_thumbnails;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::remote::ServerAddress;
use kinograph_editor::model::run::{NodeRunState, QueueError, Runner};
use kinograph_editor::model::{Catalog, Editor};
use kinograph_engine::{Environment, Executor, ModelFolders};
use kinograph_nodes::demo::{DEMO_CHECKPOINT, DEMO_TEXT_ENCODER, write_demo_models};
use kinograph_server::security::AuthToken;
use kinograph_server::{Limits, Server, ServerConfig};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// The longest a test waits for a run (the demo models run in seconds).
const WAIT: Duration = Duration::from_mins(2);

/// A kinograph server on its own runtime and folders, with the demo models; stopped when dropped.
struct TestServer {
    url: String,
    root: TempDir,
    runtime: Option<Runtime>,
}

impl TestServer {
    fn start(token: Option<&str>) -> Self {
        let root = tempfile::tempdir().unwrap();
        write_demo_models(&root.path().join("models")).unwrap();
        let environment = Environment {
            output_dir: root.path().join("output"),
            input_dir: root.path().join("input"),
            models: ModelFolders::new(root.path().join("models")),
        };
        let executor = Executor::new(Arc::new(kinograph_nodes::registry()), environment);
        let config = ServerConfig {
            port: 0,
            state_dir: root.path().join("state"),
            temp_dir: root.path().join("temp"),
            token: token.map(|token| AuthToken::new(token).unwrap()),
            limits: Limits::default(),
            ..ServerConfig::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let stats = Arc::new(|| json!({"system": {"os": "test"}}));
        let server = runtime.block_on(Server::bind(config, executor, stats)).unwrap();
        let address: SocketAddr = server.local_addr().unwrap();
        runtime.spawn(server.run(std::future::pending()));
        TestServer { url: format!("http://{address}"), root, runtime: Some(runtime) }
    }

    fn address(&self, token: Option<&str>) -> ServerAddress {
        ServerAddress::parse(&self.url, token).unwrap()
    }

    /// Stops the server at once, as a crash would: every connection is dropped.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/comfy-templates/ltxv_text_to_video.json")
}

/// An editor on the template whose own models folder is empty: the models are the server's.
fn editor_in(root: &Path) -> Editor {
    let environment = Environment {
        output_dir: root.join("output"),
        input_dir: root.join("input"),
        models: ModelFolders::new(root.join("models")),
    };
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), environment));
    let mut editor = Editor::new(catalog);
    editor.open(&template_path()).unwrap();
    editor
}

/// Points the template at the demo models, small, with `steps` sampling steps.
fn use_demo_models(editor: &mut Editor, steps: u64) {
    editor.set_widget(44, "ckpt_name", json!(DEMO_CHECKPOINT)).unwrap();
    editor.set_widget(38, "clip_name", json!(DEMO_TEXT_ENCODER)).unwrap();
    for (input, value) in [("width", 64), ("height", 64), ("length", 9)] {
        editor.set_widget(70, input, json!(value)).unwrap();
    }
    editor.set_widget(71, "steps", json!(steps)).unwrap();
}

/// Polls until `done` holds, failing the test after [`WAIT`].
fn poll_until(runner: &mut Runner, what: &str, mut done: impl FnMut(&Runner) -> bool) {
    let start = Instant::now();
    while !done(runner) {
        runner.poll();
        assert!(start.elapsed() < WAIT, "{what} did not happen: {:?} {:?}", runner.view, runner.server());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_template_runs_on_a_server_and_its_video_comes_back() {
    let server = TestServer::start(Some("secret-token"));
    let root = tempfile::tempdir().unwrap();
    let mut editor = editor_in(root.path());
    let mut runner = Runner::remote(&editor, server.address(Some("secret-token"))).unwrap();
    assert_eq!(runner.server().unwrap().url, server.url);

    // As shipped the template names the real weights: the server's refusal names them, by node.
    let before = editor.to_json();
    let error = runner.queue(&mut editor, Arc::new(|| {})).unwrap_err();
    let QueueError::Invalid(report) = &error else { panic!("not a validation report: {error}") };
    assert!(report.node_errors.contains_key("38"), "{error}");
    assert!(error.to_string().contains("node 38 (CLIPLoader): Value not in list"), "{error}");
    assert_eq!(editor.to_json(), before, "a refused graph is left as it was");

    use_demo_models(&mut editor, 2);
    let started = Instant::now();
    assert_eq!(runner.queue(&mut editor, Arc::new(|| {})).unwrap(), 0);
    assert!(runner.view.running, "shown as started at once");
    poll_until(&mut runner, "the run", |runner| !runner.busy());
    let view = &runner.view;
    assert_eq!(view.outcome.as_deref(), Some("The run finished."), "{view:?}");
    assert_eq!(runner.finished, 1);
    for (node, state) in &view.nodes {
        assert!(matches!(state, NodeRunState::Done | NodeRunState::Cached), "node {node}: {state:?}");
    }
    assert_eq!(view.nodes.get("72"), Some(&NodeRunState::Done), "the sampler ran");
    let (node, preview) = view.preview.as_ref().expect("a preview arrived");
    assert_eq!(node, "72");
    assert_eq!(preview.rgb.len(), (preview.width * preview.height * 3) as usize);
    let video = view.outputs.get("79").and_then(|files| files.first()).expect("the saved video");
    assert!(video.starts_with(root.path().join("output").join("remote")), "{}", video.display());
    let thumbnails = load_thumbnails(video, 260, 96).unwrap();
    assert!(!thumbnails.frames.is_empty());
    eprintln!("the run on the server took {:?}", started.elapsed());

    // Queued again unchanged but for the seed, the text encoder comes from the server's cache.
    runner.queue(&mut editor, Arc::new(|| {})).unwrap();
    poll_until(&mut runner, "the second run", |runner| !runner.busy() && runner.finished == 2);
    assert_eq!(runner.view.outcome.as_deref(), Some("The run finished."), "{:?}", runner.view);
    assert_eq!(runner.view.nodes.get("38"), Some(&NodeRunState::Cached), "{:?}", runner.view.nodes);
}

#[test]
fn a_server_that_is_not_there_is_named_and_the_graph_is_kept() {
    // A port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{free}");
    let root = tempfile::tempdir().unwrap();
    let mut editor = editor_in(root.path());
    use_demo_models(&mut editor, 2);
    let before = editor.to_json();
    let mut runner = Runner::remote(&editor, ServerAddress::parse(&url, None).unwrap()).unwrap();
    let error = runner.queue(&mut editor, Arc::new(|| {})).unwrap_err();
    assert!(matches!(error, QueueError::Unreachable { .. }), "{error}");
    assert!(error.to_string().starts_with(&format!("the server at {url} is not reachable: ")), "{error}");
    assert_eq!(editor.to_json(), before, "the graph and its seeds are unchanged");
    assert_eq!((runner.pending(), runner.view.running), (0, false));
    poll_until(&mut runner, "the menu's status", |runner| runner.server().unwrap().problem.is_some());

    // A server that wants a token the editor does not have says so.
    let server = TestServer::start(Some("secret-token"));
    let mut runner = Runner::remote(&editor, server.address(Some("wrong"))).unwrap();
    let error = runner.queue(&mut editor, Arc::new(|| {})).unwrap_err().to_string();
    assert!(error.contains("HTTP 401") && error.contains("--server-token"), "{error}");
}

#[test]
fn a_server_that_dies_mid_run_ends_the_run_with_that_outcome() {
    let mut server = TestServer::start(None);
    let root = tempfile::tempdir().unwrap();
    let mut editor = editor_in(root.path());
    use_demo_models(&mut editor, 30);
    let mut runner = Runner::remote(&editor, server.address(None)).unwrap();
    runner.queue(&mut editor, Arc::new(|| {})).unwrap();
    poll_until(&mut runner, "a node starting", |runner| {
        runner.view.nodes.values().any(|state| matches!(state, NodeRunState::Running { .. }))
    });
    server.kill();
    poll_until(&mut runner, "the run's end", |runner| !runner.view.running);
    let outcome = runner.view.outcome.clone().unwrap_or_default();
    let expected = format!("The server at {} is not reachable: ", server.url);
    assert!(outcome.starts_with(&expected), "{outcome}");
    assert_eq!(runner.finished, 1);
    let before = editor.to_json();
    let error = runner.queue(&mut editor, Arc::new(|| {})).unwrap_err();
    assert!(matches!(error, QueueError::Unreachable { .. }), "{error}");
    assert_eq!(editor.to_json(), before);
}

#[test]
fn clear_queue_and_stop_reach_the_server() {
    let server = TestServer::start(None);
    let root = tempfile::tempdir().unwrap();
    let mut editor = editor_in(root.path());
    use_demo_models(&mut editor, 30);
    let mut runner = Runner::remote(&editor, server.address(None)).unwrap();
    for ahead in 0..3 {
        assert_eq!(runner.queue(&mut editor, Arc::new(|| {})).unwrap(), ahead);
    }
    assert_eq!(runner.clear_queue(), 2);
    assert_eq!(runner.pending(), 0);
    runner.stop();
    poll_until(&mut runner, "the stop", |runner| !runner.busy() && runner.view.outcome.is_some());
    assert_eq!(runner.view.outcome.as_deref(), Some("The run was stopped."), "{:?}", runner.view);
    assert_eq!(runner.finished, 1);
    // The two dropped runs never start: the server's queue is empty.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        runner.poll();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(runner.finished, 1, "{:?}", runner.view);
    let videos = std::fs::read_dir(server.root.path().join("output")).into_iter().flatten().count();
    assert_eq!(videos, 0, "nothing was saved");
}

#[test]
fn the_combos_list_the_servers_files() {
    let server = TestServer::start(None);
    let checkpoints = server.root.path().join("models").join("checkpoints");
    std::fs::write(checkpoints.join("only-on-the-server.safetensors"), b"{}").unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut editor = editor_in(root.path());
    let class = "CheckpointLoaderSimple";
    assert!(!editor.catalog.offers(class, "ckpt_name", DEMO_CHECKPOINT), "the editor's machine has no models");
    let mut runner = Runner::remote(&editor, server.address(None)).unwrap();
    let start = Instant::now();
    while !runner.apply_server_lists(&mut editor) {
        runner.poll();
        assert!(start.elapsed() < WAIT, "no lists came: {:?}", runner.server());
        std::thread::sleep(Duration::from_millis(20));
    }
    for file in [DEMO_CHECKPOINT, "only-on-the-server.safetensors"] {
        assert!(editor.catalog.offers(class, "ckpt_name", file), "{file}");
    }
    assert!(editor.catalog.offers("CLIPLoader", "clip_name", DEMO_TEXT_ENCODER));
    // A new node starts on one of the server's files.
    let node = editor.add_node(class, [0.0, 0.0]).unwrap();
    let chosen = editor.widget(node, "ckpt_name").and_then(|value| value.as_str()).unwrap_or_default().to_string();
    assert!(editor.catalog.offers(class, "ckpt_name", &chosen), "{chosen}");

    // A file added on the server shows once the lists are read again.
    std::fs::write(checkpoints.join("added-later.safetensors"), b"{}").unwrap();
    runner.refresh_server_lists();
    let start = Instant::now();
    while !runner.apply_server_lists(&mut editor) {
        runner.poll();
        assert!(start.elapsed() < WAIT, "no lists came again: {:?}", runner.server());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(editor.catalog.offers(class, "ckpt_name", "added-later.safetensors"));
}

#[test]
fn the_window_names_its_server_and_checks_against_the_servers_lists() {
    let server = TestServer::start(None);
    let root = tempfile::tempdir().unwrap();
    let mut editor = editor_in(root.path());
    use_demo_models(&mut editor, 2);
    let runner = Runner::remote(&editor, server.address(None)).unwrap();
    let mut harness = harness(EditorApp::with_runner(editor, RecentFiles::load(None), runner));
    harness.run();
    assert!(harness.query_by_label(&format!("Server: {}", server.url)).is_some());
    // The demo models are only on the server: with its lists, the graph checks out.
    step_until(&mut harness, "the server's lists", |app| {
        app.editor.catalog.offers("CheckpointLoaderSimple", "ckpt_name", DEMO_CHECKPOINT)
    });
    harness.get_by_label("Check").click();
    harness.run();
    assert_eq!(harness.state().status, "The graph is ready to run.");

    // Where nothing listens, the menu bar says so and queueing names the server.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{free}");
    let editor = editor_in(root.path());
    let runner = Runner::remote(&editor, ServerAddress::parse(&url, None).unwrap()).unwrap();
    let mut harness = harness_on(EditorApp::with_runner(editor, RecentFiles::load(None), runner));
    step_until(&mut harness, "the server's status", |app| app.runner().server().unwrap().problem.is_some());
    harness.run();
    assert!(harness.query_by_label(&format!("Server: {url}")).is_some());
    assert!(harness.query_by_label_contains("not reachable: ").is_some());
    harness.get_by_label("Queue").click();
    harness.run();
    let status = harness.state().status.clone();
    assert!(status.starts_with(&format!("Not queued: the server at {url} is not reachable: ")), "{status}");
}

#[test]
fn a_run_the_server_refuses_at_its_turn_fails_at_no_node() {
    // The server checks a prompt again when its turn comes; a failure then names no node.
    let failure = kinograph_engine::ExecutionFailure {
        node_id: String::new(),
        node_type: String::new(),
        exception_message: "node 44 (CheckpointLoaderSimple): Value not in list".into(),
        exception_type: "invalid_prompt".into(),
        current_inputs: serde_json::Map::new(),
        executed: Vec::new(),
    };
    let mut view = kinograph_editor::model::run::RunView::starting(["44".to_string()]);
    let id: Arc<str> = Arc::from("p");
    view.apply(&kinograph_engine::Event::now(&id, kinograph_engine::EventKind::ExecutionError(failure)));
    assert_eq!(view.outcome.as_deref(), Some("The run failed: node 44 (CheckpointLoaderSimple): Value not in list"));
    assert_eq!(view.nodes.get("44"), Some(&NodeRunState::Queued));
}
