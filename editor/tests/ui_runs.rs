//! The editor window running graphs, driven as a user would through egui's AccessKit tree: a run's
//! output played under its save node, files dropped on the window, the text-to-video graph built and run
//! from scratch, and the nodes out of view left out of the frame.

use crate::ui::{catalog, click_at, demo_environment, drag, empty_app, harness, harness_on, step_until};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::{Catalog, Editor};
use serde_json::json;
use std::sync::Arc;

#[test]
fn the_save_node_plays_the_video_its_run_wrote() {
    use kinograph_nodes::demo::{DEMO_CHECKPOINT, DEMO_TEXT_ENCODER};
    let root = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), demo_environment(root.path())));
    let mut editor = Editor::new(catalog);
    let template = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/comfy-templates/ltxv_text_to_video.json");
    editor.open(&template).unwrap();
    editor.set_widget(44, "ckpt_name", json!(DEMO_CHECKPOINT)).unwrap();
    editor.set_widget(38, "clip_name", json!(DEMO_TEXT_ENCODER)).unwrap();
    for (input, value) in [("width", 64), ("height", 64), ("length", 9)] {
        editor.set_widget(70, input, json!(value)).unwrap();
    }
    editor.set_widget(71, "steps", json!(2)).unwrap();
    let mut harness = harness(EditorApp::new(editor, RecentFiles::load(None)));
    harness.get_by_label("Queue").click();
    harness.step();
    // Queued again while the first runs: it waits, the menu bar counts it, and Clear queue drops it.
    harness.get_by_label("Queue").click();
    harness.step();
    assert_eq!(harness.state().status, "Queued behind 1 run(s).");
    assert!(harness.query_by_label("1 queued").is_some());
    harness.get_by_label("Clear queue").click();
    harness.step();
    assert_eq!(harness.state().status, "Dropped 1 queued run(s).");
    harness.step();
    assert!(harness.query_by_label("1 queued").is_none());
    step_until(&mut harness, "the save node showing its video", |app| app.shown_output("79").is_some());

    let (file, frames) = harness.state().shown_output("79").map(|(f, n)| (f.to_path_buf(), n)).unwrap();
    assert!(file.starts_with(root.path().join("output")) && file.extension().is_some_and(|e| e == "mp4"), "{file:?}");
    assert!(file.is_file());
    // 9 frames asked for, all kept (under the cap).
    assert_eq!(frames, 9);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(harness.query_by_label(&format!("Output {name}: video, 9 frames")).is_some());

    // Dropped on a new window, the video opens the workflow it carries: the graph that made it, edits
    // included, untitled.
    let made = harness.state().editor.graph().clone();
    let mut other = harness_on(empty_app());
    drop_file(&mut other, &file);
    assert!(other.state().status.starts_with("Opened"), "{}", other.state().status);
    assert_eq!(other.state().editor.path, None);
    let graph = other.state().editor.graph();
    assert_eq!(graph.nodes.len(), made.nodes.len());
    assert_eq!(graph.links.len(), made.links.len());
    assert_eq!(other.state().editor.widget(70, "width"), Some(&json!(64)));
}

/// A file dropped on the window from a file manager.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl eframe::egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|error| error.to_string())
    }
}

fn drop_file(harness: &mut Harness<'_, EditorApp>, path: &std::path::Path) {
    harness.input_mut().dropped_files.push(Arc::new(Dropped(path.to_path_buf())));
    harness.run();
}

#[test]
fn dropping_a_workflow_opens_it_and_other_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let template = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/comfy-templates/ltxv_text_to_video.json");
    let copy = dir.path().join("mine.json");
    std::fs::copy(&template, &copy).unwrap();
    let mut harness = harness_on(empty_app());
    drop_file(&mut harness, &copy);
    assert_eq!(harness.state().editor.graph().nodes.len(), 14, "{}", harness.state().status);
    assert_eq!(harness.state().editor.path.as_deref(), Some(copy.as_path()));
    assert_eq!(harness.state().path_text, copy.display().to_string());

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a workflow").unwrap();
    drop_file(&mut harness, &notes);
    let status = harness.state().status.clone();
    assert!(status.contains("notes.txt") && status.contains("drop a workflow .json"), "{status}");
    assert_eq!(harness.state().editor.graph().nodes.len(), 14, "the open graph stays");

    // A PNG without a workflow in it is refused by what it lacks.
    let plain = dir.path().join("plain.png");
    image::RgbImage::new(4, 4).save(&plain).unwrap();
    drop_file(&mut harness, &plain);
    let status = harness.state().status.clone();
    assert!(status.starts_with("Could not open") && status.contains("plain.png"), "{status}");
    assert_eq!(harness.state().editor.graph().nodes.len(), 14);
}

/// Double-clicks the empty canvas at canvas point `at`, searches the palette for `class_type` and
/// picks it; returns the new node's id.
fn add_at(harness: &mut Harness<'_, EditorApp>, class_type: &str, at: eframe::egui::Pos2) -> i64 {
    let spot = harness.state().canvas_to_screen(&harness.ctx, at).expect("the canvas was drawn");
    harness.hover_at(spot);
    // Half a second from the last click, so that these two make a double-click of their own.
    for _ in 0..30 {
        harness.step();
    }
    click_at(harness, spot, eframe::egui::PointerButton::Primary, 2);
    assert!(harness.query_by_label("Search").is_some(), "no palette for {class_type} at {at:?} ({spot:?})");
    harness.get_by_label("Search").type_text(class_type);
    harness.run();
    let display_name = catalog().schema(class_type).expect("a built-in class").display_name.clone();
    harness.get_by_label(&display_name).click();
    harness.run();
    let graph = harness.state().editor.graph();
    let node = graph.nodes.last().expect("a node was added");
    assert_eq!(node.class_type, class_type);
    assert!((node.pos[0] - at.x).abs() < 1.0 && (node.pos[1] - at.y).abs() < 1.0, "{:?} vs {at:?}", node.pos);
    node.id
}

/// The pin of `node` named `name` (an output when `output`).
fn pin(harness: &Harness<'_, EditorApp>, node: i64, output: bool, name: &str) -> kinograph_editor::model::Pin {
    let instance = harness.state().editor.graph().node(node).expect("a node of the graph");
    let sockets = if output { &instance.outputs } else { &instance.inputs };
    let slot = sockets.iter().position(|socket| socket.name == name).unwrap_or_else(|| {
        panic!("node {node} ({}) has no {} named {name}", instance.class_type, if output { "output" } else { "input" })
    });
    kinograph_editor::model::Pin { node, output, slot }
}

/// Drags from output `from_name` of `from` to input `to_name` of `to`, pin to pin on screen.
fn wire(harness: &mut Harness<'_, EditorApp>, from: (i64, &str), to: (i64, &str)) {
    let output = pin(harness, from.0, true, from.1);
    let input = pin(harness, to.0, false, to.1);
    let start = harness.state().pin_on_screen(&harness.ctx, output).expect("drawn");
    let end = harness.state().pin_on_screen(&harness.ctx, input).expect("drawn");
    drag(harness, start, end);
}

/// Types `value` into the number field labelled `name` (the only one with that label) and confirms it.
fn type_number(harness: &mut Harness<'_, EditorApp>, name: &str, value: &str) {
    harness.get_by_label(name).focus();
    harness.run();
    harness.get_by_label(name).type_text(value);
    harness.key_press(eframe::egui::Key::Enter);
    harness.run();
}

/// Opens the list labelled `name` and picks `option`. The list is opened through AccessKit: on the
/// zoomed canvas AccessKit's rectangles are in canvas units, not where the pointer would have to go.
fn choose(harness: &mut Harness<'_, EditorApp>, name: &str, option: &str) {
    harness.get_by_label(name).click_accesskit();
    harness.run();
    harness.get_by_label(option).click();
    harness.run();
}

/// The text-to-video graph built from nothing as a user builds it: every node from the palette, every
/// link dragged pin to pin, the widgets set by typing and choosing; a wrong link refused with its reason;
/// saved and opened again unchanged; queued on the demo models until the save node plays the video.
#[test]
fn a_user_builds_the_text_to_video_graph_runs_it_and_sees_the_video() {
    use eframe::egui::{Rect, pos2, vec2};
    use kinograph_nodes::demo::{DEMO_CHECKPOINT, DEMO_TEXT_ENCODER};
    let root = tempfile::tempdir().unwrap();
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), demo_environment(root.path())));
    let mut app = EditorApp::new(Editor::new(catalog), RecentFiles::load(None));
    // Zoomed to a half, so that twelve nodes fit in the window with their widgets drawn.
    app.set_view(Rect::from_min_size(pos2(-100.0, -100.0), vec2(2800.0, 1750.0)));
    let mut harness = harness_on(app);
    harness.run();

    let column = |index: usize| index as f32 * 680.0;
    let clip_loader = add_at(&mut harness, "CLIPLoader", pos2(column(0), 0.0));
    let checkpoint = add_at(&mut harness, "CheckpointLoaderSimple", pos2(column(1), 0.0));
    let latent = add_at(&mut harness, "EmptyLTXVLatentVideo", pos2(column(2), 0.0));
    let sampler_select = add_at(&mut harness, "KSamplerSelect", pos2(column(3), 0.0));
    let positive = add_at(&mut harness, "CLIPTextEncode", pos2(column(0), 520.0));
    let negative = add_at(&mut harness, "CLIPTextEncode", pos2(column(1), 520.0));
    let conditioning = add_at(&mut harness, "LTXVConditioning", pos2(column(2), 520.0));
    let scheduler = add_at(&mut harness, "LTXVScheduler", pos2(column(3), 520.0));
    let sampler = add_at(&mut harness, "SamplerCustom", pos2(column(0), 1050.0));
    let decode = add_at(&mut harness, "VAEDecode", pos2(column(1), 1050.0));
    let create = add_at(&mut harness, "CreateVideo", pos2(column(2), 1050.0));
    let save = add_at(&mut harness, "SaveVideo", pos2(column(3), 1050.0));
    assert_eq!(harness.state().editor.graph().nodes.len(), 12);

    // A latent dragged onto the model input is refused, and the status line says why.
    wire(&mut harness, (latent, "LATENT"), (sampler, "model"));
    let status = harness.state().status.clone();
    assert!(
        status.starts_with("Not connected:") && status.contains("gives LATENT") && status.contains("takes MODEL"),
        "{status}"
    );
    assert!(harness.state().editor.graph().links.is_empty());

    for (from, to) in [
        ((clip_loader, "CLIP"), (positive, "clip")),
        ((clip_loader, "CLIP"), (negative, "clip")),
        ((positive, "CONDITIONING"), (conditioning, "positive")),
        ((negative, "CONDITIONING"), (conditioning, "negative")),
        ((latent, "LATENT"), (scheduler, "latent")),
        ((checkpoint, "MODEL"), (sampler, "model")),
        ((conditioning, "positive"), (sampler, "positive")),
        ((conditioning, "negative"), (sampler, "negative")),
        ((sampler_select, "SAMPLER"), (sampler, "sampler")),
        ((scheduler, "SIGMAS"), (sampler, "sigmas")),
        ((latent, "LATENT"), (sampler, "latent_image")),
        ((sampler, "output"), (decode, "samples")),
        ((checkpoint, "VAE"), (decode, "vae")),
        ((decode, "IMAGE"), (create, "images")),
        ((create, "VIDEO"), (save, "video")),
    ] {
        let links = harness.state().editor.graph().links.len();
        wire(&mut harness, from, to);
        let graph = harness.state().editor.graph();
        assert_eq!(graph.links.len(), links + 1, "{from:?} -> {to:?}: {}", harness.state().status);
        let input = pin(&harness, to.0, false, to.1);
        let link = graph.link_into(to.0, input.slot).expect("linked");
        assert_eq!((link.from_node, link.from_slot), (from.0, pin(&harness, from.0, true, from.1).slot));
    }

    choose(&mut harness, "ckpt_name", DEMO_CHECKPOINT);
    choose(&mut harness, "clip_name", DEMO_TEXT_ENCODER);
    choose(&mut harness, "type", "ltxv");
    type_number(&mut harness, "width", "64");
    type_number(&mut harness, "height", "64");
    type_number(&mut harness, "length", "9");
    type_number(&mut harness, "steps", "2");
    let editor = &harness.state().editor;
    assert_eq!(editor.widget(checkpoint, "ckpt_name"), Some(&json!(DEMO_CHECKPOINT)));
    assert_eq!(editor.widget(clip_loader, "clip_name"), Some(&json!(DEMO_TEXT_ENCODER)));
    assert_eq!(editor.widget(clip_loader, "type"), Some(&json!("ltxv")));
    for (name, value) in [("width", 64), ("height", 64), ("length", 9)] {
        assert_eq!(editor.widget(latent, name), Some(&json!(value)), "{name}");
    }
    assert_eq!(editor.widget(scheduler, "steps"), Some(&json!(2)));

    // Saved, then opened again from the same path: the same workflow.
    let file = root.path().join("text-to-video.json");
    harness.get_by_label("File").focus();
    harness.run();
    harness.get_by_label("File").type_text(&file.display().to_string());
    harness.run();
    harness.get_by_label("Save").click();
    harness.run();
    assert_eq!(harness.state().status, format!("Saved {}", file.display()));
    let saved = harness.state().editor.to_json();
    harness.get_by_label("Open").click();
    harness.run();
    assert_eq!(harness.state().status, format!("Opened {}", file.display()));
    assert_eq!(harness.state().editor.to_json(), saved);
    assert_eq!(harness.state().editor.graph().nodes.len(), 12);
    assert_eq!(harness.state().editor.graph().links.len(), 15);

    harness.get_by_label("Queue").click();
    // One frame: from here on the run's progress keeps asking for repaints.
    harness.step();
    assert_eq!(harness.state().status, "Running...");
    let key = save.to_string();
    step_until(&mut harness, "the save node showing the video", |app| app.shown_output(&key).is_some());
    let (video, frames) = harness.state().shown_output(&key).map(|(f, n)| (f.to_path_buf(), n)).unwrap();
    assert!(video.starts_with(root.path().join("output")) && video.is_file(), "{video:?}");
    assert_eq!(frames, 9);
    let name = video.file_name().unwrap().to_string_lossy().into_owned();
    assert!(harness.query_by_label(&format!("Output {name}: video, 9 frames")).is_some());
    step_until(&mut harness, "the run's outcome on the status line", |app| app.status == "The run finished.");
}

#[test]
fn nodes_out_of_view_are_not_laid_out_and_far_out_nodes_lose_their_widgets() {
    use eframe::egui::{Rect, pos2, vec2};
    let mut editor = Editor::new(catalog());
    let near = editor.add_node("EmptyLTXVLatentVideo", [0.0, 0.0]).unwrap();
    let far = editor.add_node("LTXVScheduler", [5000.0, 0.0]).unwrap();
    let mut app = EditorApp::new(editor, RecentFiles::load(None));
    app.set_view(Rect::from_min_size(pos2(-100.0, -100.0), vec2(1400.0, 900.0)));
    let mut harness = harness_on(app);
    harness.run();
    // Only the node in view has its widgets in the tree.
    assert!(harness.query_by_label("width").is_some());
    assert!(harness.query_by_label("steps").is_none(), "node {far} is out of view");

    // Panned over to the other node, the first one's widgets go and the second's come.
    harness.state_mut().set_view(Rect::from_min_size(pos2(4900.0, -100.0), vec2(1400.0, 900.0)));
    harness.run();
    assert!(harness.query_by_label("steps").is_some());
    assert!(harness.query_by_label("width").is_none(), "node {near} is out of view");

    // Both in view but zoomed out to a fifth: shapes and sockets only, no widgets.
    harness.state_mut().set_view(Rect::from_min_size(pos2(-500.0, -2000.0), vec2(7000.0, 4500.0)));
    harness.run();
    assert!(harness.query_by_label("steps").is_none() && harness.query_by_label("width").is_none());
    // Zoomed back in to a half, they are drawn in full again.
    harness.state_mut().set_view(Rect::from_min_size(pos2(-100.0, -100.0), vec2(2800.0, 1800.0)));
    harness.run();
    assert!(harness.query_by_label("width").is_some());
}
