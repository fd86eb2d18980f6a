//! The cost of one editor frame with a 300-node graph open while the user pans and zooms: egui's UI pass
//! (layout, drawing commands for every node, widget and link) as the window runs it, without the GPU
//! upload. Prints the median, 95th percentile and worst of the measured frames, in milliseconds, for
//! views from the whole graph down to two nodes.
//!
//!     cargo bench -p kinograph-editor --bench frame_time

use eframe::egui::{Event, Modifiers, MouseWheelUnit, Rect, TouchPhase, pos2, vec2};
use egui_kittest::Harness;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::{Catalog, Editor};
use kinograph_engine::Environment;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A graph of 300 nodes: 25 copies of a 12-node text-to-video chain, each wired, in a grid.
fn three_hundred_nodes() -> Editor {
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), Environment::default()));
    let mut editor = Editor::new(catalog);
    let chain = [
        "CheckpointLoaderSimple",
        "CLIPLoader",
        "CLIPTextEncode",
        "CLIPTextEncode",
        "EmptyLTXVLatentVideo",
        "LTXVConditioning",
        "LTXVScheduler",
        "KSamplerSelect",
        "SamplerCustom",
        "VAEDecode",
        "CreateVideo",
        "SaveVideo",
    ];
    for copy in 0..25 {
        let (column, row) = ((copy % 5) as f32, (copy / 5) as f32);
        let ids: Vec<_> = chain
            .iter()
            .enumerate()
            .map(|(index, class)| {
                let pos = [column * 4200.0 + index as f32 * 340.0, row * 900.0 + (index % 3) as f32 * 260.0];
                editor.add_node(class, pos).expect("a built-in node")
            })
            .collect();
        // (from, output, to, input slot): the template's wiring.
        for (from, slot, to, input) in [
            (1, 0, 2, 0),
            (1, 0, 3, 0),
            (2, 0, 5, 0),
            (3, 0, 5, 1),
            (4, 0, 6, 0),
            (0, 0, 8, 0),
            (5, 0, 8, 1),
            (5, 1, 8, 2),
            (7, 0, 8, 3),
            (6, 0, 8, 4),
            (4, 0, 8, 5),
            (8, 0, 9, 0),
            (0, 2, 9, 1),
            (9, 0, 10, 0),
            (10, 0, 11, 0),
        ] {
            // Slots follow each node's socket order; a mismatch here would only drop a link.
            let _ = editor.connect(ids[from], slot, ids[to], input);
        }
    }
    editor
}

/// Pans and zooms for 240 frames over `view` (canvas units), returning each frame's time.
fn pan_and_zoom(harness: &mut Harness<'_, EditorApp>, view: Rect) -> Vec<Duration> {
    harness.state_mut().set_view(view);
    harness.hover_at(pos2(800.0, 500.0));
    // Settle: the first frames after a jump lay out what came into view.
    for _ in 0..10 {
        harness.step();
    }
    let mut frames: Vec<Duration> = Vec::new();
    for frame in 0..240 {
        let event = if frame % 2 == 0 {
            // Pan back and forth, so that the view stays on the same part of the graph.
            let sign = if frame % 4 == 0 { 1.0 } else { -1.0 };
            Event::MouseWheel {
                unit: MouseWheelUnit::Point,
                delta: vec2(12.0 * sign, 8.0 * sign),
                phase: TouchPhase::Move,
                modifiers: Modifiers::NONE,
            }
        } else {
            // Zoom in and out around the pointer.
            Event::MouseWheel {
                unit: MouseWheelUnit::Point,
                delta: vec2(0.0, if frame % 4 == 1 { 10.0 } else { -10.0 }),
                phase: TouchPhase::Move,
                modifiers: Modifiers::COMMAND,
            }
        };
        harness.event(event);
        let start = Instant::now();
        harness.step();
        frames.push(start.elapsed());
    }
    frames.sort();
    frames
}

fn main() {
    let editor = three_hundred_nodes();
    let nodes = editor.graph().nodes.len();
    let links = editor.graph().links.len();
    let app = EditorApp::new(editor, RecentFiles::load(None));
    let whole = app.view();
    let mut harness = Harness::builder()
        .with_size([1600.0, 1000.0])
        .with_step_dt(1.0 / 60.0)
        .build_ui_state(|ui, app: &mut EditorApp| app.show(ui), app);
    println!("{nodes} nodes, {links} links, 240 pan/zoom frames at 1600x1000 per view:");
    // The whole graph framed (zoom 0.1, nodes drawn without text); a quarter of it (zoom ~0.35, also
    // without text); the most nodes drawn in full (zoom ~0.43, just above where text goes); a dozen
    // nodes in full (zoom ~0.65); two nodes close up.
    let views = [
        ("whole graph", whole),
        ("a quarter", Rect::from_min_size(pos2(0.0, 0.0), vec2(4600.0, 2875.0))),
        ("most in detail", Rect::from_min_size(pos2(0.0, 0.0), vec2(3500.0, 2200.0))),
        ("a dozen nodes", Rect::from_min_size(pos2(4200.0, 900.0), vec2(2300.0, 1440.0))),
        ("close up", Rect::from_min_size(pos2(8400.0, 1800.0), vec2(800.0, 500.0))),
    ];
    let mut all = Vec::new();
    for (name, view) in views {
        let frames = pan_and_zoom(&mut harness, view);
        let (median, p95, worst) = summary(&frames);
        println!("  {name:>14}: median {median:.2} ms, 95th percentile {p95:.2} ms, worst {worst:.2} ms");
        all.extend(frames);
    }
    all.sort();
    let (median, p95, worst) = summary(&all);
    println!("  {:>14}: median {median:.2} ms, 95th percentile {p95:.2} ms, worst {worst:.2} ms", "all views");
}

/// Median, 95th percentile and worst of sorted frame times, in milliseconds.
fn summary(sorted: &[Duration]) -> (f64, f64, f64) {
    let at = |index: usize| sorted[index].as_secs_f64() * 1000.0;
    (at(sorted.len() / 2), at(sorted.len() * 95 / 100), at(sorted.len() - 1))
}
