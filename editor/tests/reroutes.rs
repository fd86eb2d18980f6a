//! Reroutes as ComfyUI has them: a small pill a link passes through, added from the palette, wired pin to
//! pin like any node, its output taking the type that reaches it; the prompt runs as if the link went
//! straight. The LTX-2 template's reroute (inside its subgraph) opens and saves unchanged.

use crate::ui::{catalog, drag, harness};
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::catalog::REROUTE_SIZE;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::{Editor, Pin};
use kinograph_engine::InputValue;

#[test]
fn a_reroute_from_the_palette_carries_a_link_and_takes_its_type() {
    let mut editor = Editor::new(catalog());
    let loader = editor.add_node("CheckpointLoaderSimple", [0.0, 0.0]).unwrap();
    let decode = editor.add_node("VAEDecode", [700.0, 0.0]).unwrap();
    let mut harness = harness(EditorApp::new(editor, RecentFiles::load(None)));
    harness.run();
    // Double-click empty canvas, pick Reroute.
    let spot = harness.state().canvas_to_screen(&harness.ctx, eframe::egui::Pos2::new(450.0, 200.0)).unwrap();
    harness.hover_at(spot);
    harness.step();
    crate::ui::click_at(&mut harness, spot, eframe::egui::PointerButton::Primary, 2);
    harness.get_by_label("Reroute").click();
    harness.run();
    let reroute = harness.state().editor.graph().nodes.iter().find(|n| n.is_reroute()).map(|n| n.id).unwrap();
    assert_eq!(harness.state().editor.graph().node(reroute).unwrap().size, REROUTE_SIZE);

    // The checkpoint's VAE (output 2) into the reroute, the reroute into the decoder's `vae` (input 1).
    let pin = |harness: &egui_kittest::Harness<'_, EditorApp>, node, output, slot| {
        harness.state().pin_on_screen(&harness.ctx, Pin { node, output, slot }).unwrap()
    };
    let (from, to) = (pin(&harness, loader, true, 2), pin(&harness, reroute, false, 0));
    drag(&mut harness, from, to);
    let (from, to) = (pin(&harness, reroute, true, 0), pin(&harness, decode, false, 1));
    drag(&mut harness, from, to);
    harness.run();
    let editor = &harness.state().editor;
    assert_eq!(editor.graph().node(reroute).unwrap().outputs[0].type_name, "VAE", "{}", harness.state().status);
    assert!(editor.graph().link_into(decode, 1).is_some_and(|link| link.from_node == reroute));

    // The prompt links the decoder straight to the checkpoint.
    let prompt = editor.to_prompt().unwrap().prompt;
    let vae = &prompt.nodes[&decode.to_string()].inputs["vae"];
    assert!(matches!(vae, InputValue::Link(link) if link.node == loader.to_string() && link.slot == 2), "{vae:?}");
    assert!(!prompt.nodes.contains_key(&reroute.to_string()), "a reroute is not a node of the prompt");
}
