//! The editor window driven as a user would, through egui's AccessKit tree (no renderer, no display):
//! open the palette, add a node, edit its widgets, undo and redo, and see a refused connection explained.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::{Catalog, Editor};
use kinograph_engine::Environment;
use serde_json::json;
use std::sync::{Arc, OnceLock};

pub(crate) fn catalog() -> Arc<Catalog> {
    static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
    Arc::clone(
        CATALOG.get_or_init(|| Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), Environment::default()))),
    )
}

pub(crate) fn harness(app: EditorApp) -> Harness<'static, EditorApp> {
    Harness::builder()
        .with_size([1400.0, 900.0])
        .with_step_dt(1.0 / 60.0)
        .build_ui_state(|ui, app: &mut EditorApp| app.show(ui), app)
}

pub(crate) fn harness_on(app: EditorApp) -> Harness<'static, EditorApp> {
    harness(app)
}

pub(crate) fn empty_app() -> EditorApp {
    EditorApp::new(Editor::new(catalog()), RecentFiles::load(None))
}

/// Opens the palette from the menu bar, searches and picks `display_name`.
pub(crate) fn add_through_palette(harness: &mut Harness<'_, EditorApp>, query: &str, display_name: &str) {
    harness.get_by_label("Add node").click();
    harness.run();
    harness.get_by_label("Search").type_text(query);
    harness.run();
    harness.get_by_label(display_name).click();
    harness.run();
}

#[test]
fn palette_adds_a_node_and_its_widgets_edit_and_undo() {
    let mut harness = harness(empty_app());
    add_through_palette(&mut harness, "empty ltxv latent", "EmptyLTXVLatentVideo");
    assert_eq!(harness.state().editor.graph().nodes.len(), 1);
    let id = harness.state().editor.graph().nodes[0].id;
    assert!(harness.query_by_label("Search").is_none(), "the palette closes after adding");

    // The width widget shows the schema default; focusing it selects the text, typing replaces it.
    let width = harness.get_by_label("width");
    assert_eq!(width.value().as_deref(), Some("768"));
    width.focus();
    harness.run();
    harness.get_by_label("width").type_text("1024");
    harness.key_press(eframe::egui::Key::Enter);
    harness.run();
    assert_eq!(harness.state().editor.widget(id, "width"), Some(&json!(1024)));

    harness.get_by_label("Undo").click();
    harness.run();
    assert_eq!(harness.state().editor.widget(id, "width"), Some(&json!(768)));
    harness.get_by_label("Redo").click();
    harness.run();
    assert_eq!(harness.state().editor.widget(id, "width"), Some(&json!(1024)));
    // Undo twice more: the width edit, then the node itself.
    harness.get_by_label("Undo").click();
    harness.run();
    harness.get_by_label("Undo").click();
    harness.run();
    assert!(harness.state().editor.graph().nodes.is_empty());
}

#[test]
fn a_text_widget_takes_typing_as_one_undo_step() {
    let mut harness = harness(empty_app());
    add_through_palette(&mut harness, "clip text encode", "CLIP Text Encode (Prompt)");
    let id = harness.state().editor.graph().nodes[0].id;
    harness.get_by_label("text").focus();
    harness.run();
    harness.get_by_label("text").type_text("a red fox");
    harness.run();
    harness.get_by_label("text").type_text(" at dusk");
    harness.run();
    // Clicking elsewhere ends the typing.
    harness.get_by_label("Check").click();
    harness.run();
    assert_eq!(harness.state().editor.widget(id, "text"), Some(&json!("a red fox at dusk")));
    harness.get_by_label("Undo").click();
    harness.run();
    assert_eq!(harness.state().editor.widget(id, "text"), Some(&json!("")));
}

#[test]
fn check_reports_what_is_missing() {
    let mut harness = harness(empty_app());
    add_through_palette(&mut harness, "vae decode", "VAE Decode");
    harness.get_by_label("Check").click();
    harness.run();
    let status = harness.state().status.clone();
    assert!(status.contains("problem"), "{status}");
}

#[test]
fn queueing_an_unready_graph_says_why_and_runs_nothing() {
    let mut harness = harness(empty_app());
    add_through_palette(&mut harness, "vae decode", "VAE Decode");
    harness.get_by_label("Queue").click();
    harness.run();
    let status = harness.state().status.clone();
    assert!(status.starts_with("Not queued: the graph is not ready to run"), "{status}");
    assert!(harness.query_by_label("Queue").is_some());
}

/// Presses and releases `button` at `spot` `times` times, a frame apart, then lets the UI settle.
pub(crate) fn click_at(
    harness: &mut Harness<'_, EditorApp>,
    spot: eframe::egui::Pos2,
    button: eframe::egui::PointerButton,
    times: usize,
) {
    for _ in 0..times {
        for pressed in [true, false] {
            harness.event(eframe::egui::Event::PointerButton {
                pos: spot,
                button,
                pressed,
                modifiers: eframe::egui::Modifiers::NONE,
            });
            harness.step();
        }
    }
    harness.run();
}

/// Double-clicks the empty canvas at `spot` and picks the LTX-Video scheduler from the palette.
pub(crate) fn add_by_double_click(spot: eframe::egui::Pos2) -> Harness<'static, EditorApp> {
    let mut harness = harness(empty_app());
    harness.hover_at(spot);
    harness.step();
    click_at(&mut harness, spot, eframe::egui::PointerButton::Primary, 2);
    harness.get_by_label("Search").type_text("ltxv scheduler");
    harness.run();
    harness.get_by_label("LTXVScheduler").click();
    harness.run();
    harness
}

#[test]
fn double_clicking_the_canvas_opens_the_palette_there() {
    use eframe::egui::Pos2;
    let left = add_by_double_click(Pos2::new(400.0, 500.0));
    let right = add_by_double_click(Pos2::new(900.0, 300.0));
    let (left, right) = (&left.state().editor.graph().nodes, &right.state().editor.graph().nodes);
    assert_eq!((left.len(), right.len()), (1, 1));
    // The node lands where the canvas was clicked.
    assert!(
        left[0].pos[0] < right[0].pos[0] && left[0].pos[1] > right[0].pos[1],
        "{:?} {:?}",
        left[0].pos,
        right[0].pos
    );
}

/// Drags with the primary button from `from` to `to` (screen points), as a pointer would move.
pub(crate) fn drag(harness: &mut Harness<'_, EditorApp>, from: eframe::egui::Pos2, to: eframe::egui::Pos2) {
    use eframe::egui::{Event, Modifiers, PointerButton};
    harness.hover_at(from);
    harness.step();
    harness.event(Event::PointerButton {
        pos: from,
        button: PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    harness.step();
    for step in 1..=8 {
        harness.hover_at(from + (to - from) * (step as f32 / 8.0));
        harness.step();
    }
    harness.event(Event::PointerButton {
        pos: to,
        button: PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    // A few frames rather than `run`: a socket's tooltip under the pointer keeps asking for repaints.
    for _ in 0..4 {
        harness.step();
    }
}

#[test]
fn letting_go_of_a_wire_in_empty_space_offers_the_nodes_that_take_its_type() {
    use kinograph_editor::model::Pin;
    let mut harness = harness(empty_app());
    add_through_palette(&mut harness, "empty ltxv latent", "EmptyLTXVLatentVideo");
    let latent = harness.state().editor.graph().nodes[0].id;
    let pin = Pin { node: latent, output: true, slot: 0 };
    let from = harness.state().pin_on_screen(&harness.ctx, pin).expect("drawn");
    let to = from + eframe::egui::vec2(250.0, 60.0);
    drag(&mut harness, from, to);

    assert!(harness.query_by_label("Add node taking LATENT").is_some(), "the palette opens for the pin's type");
    assert!(harness.query_by_label("VAE Decode").is_some());
    assert!(harness.query_by_label("CLIP Text Encode (Prompt)").is_none(), "no LATENT input, not offered");
    harness.get_by_label("VAE Decode").click();
    harness.run();

    let graph = harness.state().editor.graph();
    assert_eq!(graph.nodes.len(), 2);
    let decode = graph.nodes.iter().find(|node| node.class_type == "VAEDecode").expect("added");
    let link = graph.link_into(decode.id, 0).expect("linked to the pin");
    assert_eq!((link.from_node, link.from_slot), (latent, 0));
    // The node lands where the wire was let go.
    let placed = harness.state().canvas_to_screen(&harness.ctx, eframe::egui::pos2(decode.pos[0], decode.pos[1]));
    assert!(placed.expect("drawn").distance(to) < 2.0, "{placed:?} vs {to:?}");
    // One undo removes the node and its link.
    harness.get_by_label("Undo").click();
    harness.run();
    assert_eq!(harness.state().editor.graph().nodes.len(), 1);
    assert!(harness.state().editor.graph().links.is_empty());
}

/// The window with ComfyUI's LTX-Video text-to-video template open, drawn once.
pub(crate) fn template_harness() -> Harness<'static, EditorApp> {
    let template = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/comfy-templates/ltxv_text_to_video.json");
    let mut editor = Editor::new(catalog());
    editor.open(&template).unwrap();
    let mut harness = harness(EditorApp::new(editor, RecentFiles::load(None)));
    harness.run();
    harness
}

#[test]
fn dragging_a_group_title_moves_the_group_with_its_nodes_and_its_corner_resizes_it() {
    use eframe::egui::{Pos2, Vec2};
    let mut harness = template_harness();
    let [left, top, width, height] = harness.state().editor.graph().groups[0].bounding;
    let node = |harness: &Harness<'_, EditorApp>, id| harness.state().editor.graph().node(id).unwrap().pos;
    let (loader, latent) = (node(&harness, 44), node(&harness, 70));
    let screen = |harness: &Harness<'_, EditorApp>, point: Pos2| {
        harness.state().canvas_to_screen(&harness.ctx, point).expect("the canvas has been drawn")
    };
    let scale = (screen(&harness, Pos2::new(100.0, 0.0)) - screen(&harness, Pos2::ZERO)).x;

    let grip = screen(&harness, Pos2::new(left + width / 2.0, top + 12.0));
    drag(&mut harness, grip, grip + Vec2::new(120.0, 60.0));
    let moved = harness.state().editor.graph().groups[0].bounding;
    let delta = [(moved[0] - left) * scale / 100.0, (moved[1] - top) * scale / 100.0];
    assert!((delta[0] - 120.0).abs() < 1.0 && (delta[1] - 60.0).abs() < 1.0, "moved {delta:?} on screen");
    let loader_moved = node(&harness, 44);
    assert!((loader_moved[0] - loader[0] - (moved[0] - left)).abs() < 1e-3, "the loader moves with its group");
    assert!((loader_moved[1] - loader[1] - (moved[1] - top)).abs() < 1e-3);
    assert_eq!(node(&harness, 70), latent, "a node of another group stays");

    // The whole drag is one undo step.
    harness.get_by_label("Undo").click();
    harness.run();
    assert_eq!(harness.state().editor.graph().groups[0].bounding, [left, top, width, height]);
    assert_eq!(node(&harness, 44), loader);

    let corner = screen(&harness, Pos2::new(left + width - 4.0, top + height - 4.0));
    drag(&mut harness, corner, corner + Vec2::new(80.0, 40.0));
    let resized = harness.state().editor.graph().groups[0].bounding;
    assert_eq!(resized[..2], [left, top], "the corner opposite the handle stays");
    assert!((resized[2] - width - 80.0 * 100.0 / scale).abs() < 1.0, "{resized:?}");
    assert!((resized[3] - height - 40.0 * 100.0 / scale).abs() < 1.0, "{resized:?}");
    assert_eq!(node(&harness, 44), loader, "resizing moves no node");

    // The title's menu renames the group, and deletes it leaving its nodes.
    let right_click = |harness: &mut Harness<'_, EditorApp>, at: Pos2| {
        harness.hover_at(at);
        harness.step();
        click_at(harness, at, eframe::egui::PointerButton::Secondary, 1);
    };
    right_click(&mut harness, grip);
    harness.get_by_label("Group title").focus();
    harness.run();
    harness.get_by_label("Group title").type_text(" (fp16)");
    harness.run();
    harness.get_by_label("Rename group").click();
    harness.run();
    assert_eq!(harness.state().editor.graph().groups[0].title, "Step1 - Load models (fp16)");
    right_click(&mut harness, grip);
    harness.get_by_label("Delete group (keep its nodes)").click();
    harness.run();
    assert_eq!(harness.state().editor.graph().groups.len(), 3);
    assert_eq!(node(&harness, 44), loader);
}

#[test]
fn check_marks_the_inputs_at_fault_on_their_nodes() {
    let mut harness = template_harness();
    harness.get_by_label("Check").click();
    harness.run();
    // No model folders here: the checkpoint and the text encoder are not found.
    let faults = harness.state().faults().clone();
    let inputs = |id| faults[&id].iter().map(|fault| fault.input.clone()).collect::<Vec<_>>();
    assert_eq!(inputs(44), [Some("ckpt_name".to_string())], "{faults:?}");
    assert_eq!(inputs(38), [Some("clip_name".to_string())], "{faults:?}");
    assert!(faults[&44][0].message.contains("ltx-video-2b-v0.9.safetensors"), "{faults:?}");
    // Each shows under its node, naming the input.
    assert!(harness.query_by_label_contains("ckpt_name: ").is_some());
    assert!(harness.query_by_label_contains("clip_name: ").is_some());

    // With the checkpoint loader deleted and checked again, its mark goes and the inputs it fed are
    // marked instead.
    harness.state_mut().editor.select(44);
    harness.state_mut().editor.delete_selection();
    harness.get_by_label("Check").click();
    harness.run();
    let faults = harness.state().faults();
    assert!(!faults.contains_key(&44), "{faults:?}");
    let missing_model = faults.values().flatten().filter(|fault| fault.input.as_deref() == Some("model")).count();
    assert!(missing_model > 0, "{faults:?}");
    assert!(harness.query_by_label_contains("model: ").is_some());
}

/// An environment whose model folders hold the tiny demo models, with outputs under `root`.
pub(crate) fn demo_environment(root: &std::path::Path) -> Environment {
    let models = root.join("models");
    kinograph_nodes::demo::write_demo_models(&models).unwrap();
    Environment {
        output_dir: root.join("output"),
        input_dir: root.join("input"),
        models: kinograph_engine::ModelFolders::new(&models),
    }
}

/// Steps the window (as a user's would, 60 frames a second) until `done` holds, for at most five minutes.
pub(crate) fn step_until(harness: &mut Harness<'_, EditorApp>, what: &str, done: impl Fn(&EditorApp) -> bool) {
    let start = std::time::Instant::now();
    while !done(harness.state()) {
        assert!(
            start.elapsed() < std::time::Duration::from_mins(5),
            "{what} did not happen; status: {}",
            harness.state().status
        );
        harness.step();
        std::thread::sleep(std::time::Duration::from_millis(16));
    }
}
