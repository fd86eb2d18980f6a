//! Running from the editor: ComfyUI's LTX-Video template, pointed at the tiny demo models by editing its
//! widgets, runs in-process on a thread of its own; the run view follows the engine's events and the seed
//! moves on after queueing.

use kinograph_editor::model::run::{NodeRunState, QueueError, Runner};
use kinograph_editor::model::{Catalog, Editor};
use kinograph_engine::{Environment, ModelFolders};
use kinograph_nodes::demo::{DEMO_CHECKPOINT, DEMO_TEXT_ENCODER, write_demo_models};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/comfy-templates/ltxv_text_to_video.json")
}

fn editor_in(root: &std::path::Path) -> Editor {
    let models = root.join("models");
    write_demo_models(&models).unwrap();
    let environment = Environment {
        output_dir: root.join("output"),
        input_dir: root.join("input"),
        models: ModelFolders::new(&models),
    };
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), environment));
    let mut editor = Editor::new(catalog);
    editor.open(&template_path()).unwrap();
    editor
}

/// Waits until every queued run has ended.
fn wait(runner: &mut Runner) {
    let start = Instant::now();
    while runner.busy() || runner.view.outcome.is_none() {
        runner.poll();
        assert!(start.elapsed() < Duration::from_mins(5), "the run did not finish: {:?}", runner.view);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_template_runs_on_the_demo_models_from_the_editor() {
    let root = tempfile::tempdir().unwrap();
    let mut editor = editor_in(root.path());
    let mut runner = Runner::new(&editor);

    // As shipped the template names the real weights, which are not here: queueing says which.
    let error = runner.queue(&mut editor, Arc::new(|| {})).unwrap_err();
    assert!(matches!(error, QueueError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("node 38 (CLIPLoader): Value not in list"), "{error}");
    assert!(error.to_string().contains("t5xxl_fp16.safetensors"), "{error}");

    editor.set_widget(44, "ckpt_name", json!(DEMO_CHECKPOINT)).unwrap();
    editor.set_widget(38, "clip_name", json!(DEMO_TEXT_ENCODER)).unwrap();
    for (input, value) in [("width", 64), ("height", 64), ("length", 9)] {
        editor.set_widget(70, input, json!(value)).unwrap();
    }
    editor.set_widget(71, "steps", json!(2)).unwrap();
    let seed_before = editor.widget(72, "noise_seed").cloned();
    let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&wakes);
    runner
        .queue(
            &mut editor,
            Arc::new(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
        )
        .unwrap();
    let seed_queued = editor.widget(72, "noise_seed").cloned();
    assert_ne!(seed_queued, seed_before, "randomize applies after queueing");
    // A second run queues behind the first, with the seed that moved on.
    assert_eq!(runner.queue(&mut editor, Arc::new(|| {})).unwrap(), 1);
    assert_eq!(runner.pending(), 1);
    assert_ne!(editor.widget(72, "noise_seed").cloned(), seed_queued, "each queued run has its own seed");
    let mut outcomes = Vec::new();
    let start = Instant::now();
    while runner.busy() || runner.finished < 2 {
        let finished = runner.finished;
        runner.poll();
        if runner.finished != finished {
            // The first run's view stays until the second starts.
            outcomes.push((runner.view.outcome.clone(), runner.view.nodes.get("72").cloned()));
        }
        assert!(start.elapsed() < Duration::from_mins(5), "the runs did not finish: {:?}", runner.view);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(runner.finished, 2);
    // Both ran the sampler: the second run's seed differs, so it is not taken from the cache.
    let done = (Some("The run finished.".to_string()), Some(NodeRunState::Done));
    assert_eq!(outcomes, vec![done.clone(), done], "{:?}", runner.view);
    for id in ["72", "8", "79"] {
        assert_eq!(runner.view.nodes.get(id), Some(&NodeRunState::Done), "node {id}: {:?}", runner.view.nodes);
    }
    assert!(wakes.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let videos: Vec<_> = walk(&root.path().join("output"));
    assert!(videos.iter().any(|p| p.extension().is_some_and(|e| e == "mp4")), "{videos:?}");

    // Queued again as the second run was, nothing changed: every node comes from the cache.
    editor.undo();
    runner.queue(&mut editor, Arc::new(|| {})).unwrap();
    wait(&mut runner);
    assert_eq!(runner.view.outcome.as_deref(), Some("The run finished."));
    assert_eq!(runner.view.nodes.get("72"), Some(&NodeRunState::Cached), "{:?}", runner.view.nodes);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { found.extend(walk(&path)) } else { found.push(path) }
    }
    found
}

#[test]
fn clear_queue_drops_the_waiting_runs_and_stop_ends_the_running_one() {
    let root = tempfile::tempdir().unwrap();
    let mut editor = editor_in(root.path());
    editor.set_widget(44, "ckpt_name", json!(DEMO_CHECKPOINT)).unwrap();
    editor.set_widget(38, "clip_name", json!(DEMO_TEXT_ENCODER)).unwrap();
    for (input, value) in [("width", 64), ("height", 64), ("length", 9)] {
        editor.set_widget(70, input, json!(value)).unwrap();
    }
    let mut runner = Runner::new(&editor);
    for ahead in 0..3 {
        assert_eq!(runner.queue(&mut editor, Arc::new(|| {})).unwrap(), ahead);
    }
    assert_eq!(runner.clear_queue(), 2);
    assert_eq!(runner.pending(), 0);
    // Stopped before its first node ends, the one run in progress reports that, and nothing follows it.
    runner.stop();
    wait(&mut runner);
    assert_eq!(runner.view.outcome.as_deref(), Some("The run was stopped."), "{:?}", runner.view);
    assert_eq!(runner.finished, 1);
    assert!(!walk(&root.path().join("output")).iter().any(|p| p.extension().is_some_and(|e| e == "mp4")));
}
