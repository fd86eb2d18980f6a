//! The editor's model without a window: opening and saving ComfyUI's LTX-Video template, edits, their
//! refusals, selection, clipboard, undo and redo, conversion to an API prompt and seed control.

use kinograph_editor::model::{Catalog, EditError, Editor, MIN_GROUP_SIZE, NodeMode, SeedControl};
use kinograph_engine::{Environment, InputValue};
use serde_json::{Value as Json, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/comfy-templates/ltxv_text_to_video.json")
}

fn catalog() -> Arc<Catalog> {
    static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
    Arc::clone(
        CATALOG.get_or_init(|| Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), Environment::default()))),
    )
}

fn template() -> Editor {
    let mut editor = Editor::new(catalog());
    editor.open(&template_path()).expect("the LTX-Video template opens");
    editor
}

fn original_json() -> Json {
    serde_json::from_str(&std::fs::read_to_string(template_path()).unwrap()).unwrap()
}

#[test]
fn opening_and_saving_the_template_gives_the_same_json() {
    let editor = template();
    assert_eq!(editor.graph().nodes.len(), 14);
    assert_eq!(editor.to_json(), original_json());

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.json");
    let mut editor = editor;
    editor.save(&saved).unwrap();
    let written: Json = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(written, original_json());
    assert!(!editor.modified);
}

#[test]
fn edits_survive_saving_and_reopening() {
    let mut editor = template();
    editor.select(70);
    editor.move_selection([10.0, -5.5]);
    editor.set_title(70, "Video size").unwrap();
    editor.set_widget(70, "length", json!(49)).unwrap();
    editor.select(73);
    editor.toggle_mode(NodeMode::Bypassed);
    let sampler = editor.add_node("KSamplerSelect", [0.0, 800.0]).unwrap();
    editor.connect(sampler, 0, 72, 3).unwrap();
    let text = editor.to_json().to_string();

    let mut reopened = Editor::new(catalog());
    reopened.open_text(&text, "edited").unwrap();
    let node = reopened.graph().node(70).unwrap();
    assert_eq!(node.pos, [70.0, 384.5], "moved from [60, 390]");
    assert_eq!(node.title.as_deref(), Some("Video size"));
    assert_eq!(reopened.widget(70, "length"), Some(&json!(49)));
    assert_eq!(reopened.graph().node(73).unwrap().mode, NodeMode::Bypassed);
    let link = reopened.graph().link_into(72, 3).unwrap();
    assert_eq!((link.from_node, link.type_name.as_str()), (sampler, "SAMPLER"));
    assert_eq!(reopened.to_json(), editor.to_json(), "a second round trip changes nothing");
    // The old sampler link was replaced: one link into the input, and KSamplerSelect 73 feeds nothing.
    assert_eq!(reopened.graph().links.iter().filter(|l| l.to_node == 72 && l.to_slot == 3).count(), 1);
    let saved = editor.to_json();
    let old = saved["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 73).unwrap();
    assert_eq!(old["outputs"][0]["links"], json!([]));
    assert!(saved["last_node_id"].as_i64().unwrap() >= sampler);
}

#[test]
fn incompatible_connections_are_refused_with_the_types() {
    let mut editor = template();
    // EmptyLTXVLatentVideo's LATENT into SamplerCustom's model (MODEL).
    let error = editor.connect(70, 0, 72, 0).unwrap_err();
    assert_eq!(
        error,
        EditError::Incompatible {
            from: 70,
            output: "LATENT".into(),
            output_type: "LATENT".into(),
            to: 72,
            input: "model".into(),
            input_type: "MODEL".into()
        }
    );
    assert!(error.to_string().contains("gives LATENT, but input 'model' of node 72 takes MODEL"), "{error}");
    assert!(!editor.can_undo(), "a refused edit is not recorded");
    assert_eq!(editor.connect(72, 0, 72, 5), Err(EditError::SameNode));
    // VAEDecode (8) reads SamplerCustom (72): feeding 8's IMAGE back upstream would close a cycle; the
    // types must match first, so use LTXVScheduler's latent input via 72's LATENT output and back.
    assert_eq!(editor.connect(72, 0, 71, 0), Err(EditError::Cycle { from: 72, to: 71 }));
    assert_eq!(editor.connect(70, 5, 72, 0), Err(EditError::NoSuchOutput { node: 70, slot: 5 }));
    assert_eq!(editor.connect(999, 0, 72, 0), Err(EditError::NoSuchNode(999)));
}

#[test]
fn new_nodes_take_their_schema_defaults() {
    let mut editor = Editor::new(catalog());
    let id = editor.add_node("EmptyLTXVLatentVideo", [0.0, 0.0]).unwrap();
    assert_eq!(editor.widget(id, "width"), Some(&json!(768)));
    assert_eq!(editor.widget(id, "length"), Some(&json!(97)));
    assert_eq!(editor.selection, BTreeSet::from([id]));
    let sampler = editor.add_node("SamplerCustom", [300.0, 0.0]).unwrap();
    let node = editor.graph().node(sampler).unwrap();
    let inputs: Vec<&str> = node.inputs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(inputs, ["model", "positive", "negative", "sampler", "sigmas", "latent_image"]);
    assert_eq!(node.widget_list()[2], json!("randomize"), "a seed stores its control mode after it");
    assert!(editor.add_node("NoSuchClass", [0.0, 0.0]).is_none());
    assert!(editor.set_widget(id, "no_such_input", json!(1)).is_err());
}

#[test]
fn delete_removes_links_and_undo_redo_restore_every_edit() {
    let mut editor = template();
    let before = editor.to_json();
    editor.select(72);
    assert_eq!(editor.delete_selection(), 1);
    assert!(editor.graph().node(72).is_none());
    assert!(editor.graph().links.iter().all(|l| l.from_node != 72 && l.to_node != 72));
    let after_delete = editor.to_json();
    editor.set_widget(70, "width", json!(512)).unwrap();
    assert!(editor.undo());
    assert_eq!(editor.to_json(), after_delete);
    assert!(editor.undo());
    assert_eq!(editor.to_json(), before);
    assert!(!editor.undo(), "nothing more to undo");
    assert!(editor.redo());
    assert!(editor.graph().node(72).is_none());
    assert!(editor.redo());
    assert_eq!(editor.widget(70, "width"), Some(&json!(512)));
    assert!(!editor.redo());
}

#[test]
fn copy_paste_keeps_internal_links_only() {
    let mut editor = template();
    // The sampler selector, the scheduler and the sampler: two internal links (73→72, 71→72).
    editor.select_box([880.0, -30.0], [1230.0, 580.0], false);
    let selected = editor.selection.clone();
    assert!(selected.contains(&72) && selected.contains(&73) && selected.contains(&71), "{selected:?}");
    let internal = editor.graph().extract(&selected).links.len();
    assert_eq!(editor.copy(), selected.len());
    let pasted = editor.paste();
    assert_eq!(pasted.len(), selected.len());
    assert_eq!(editor.selection, pasted);
    let links_among =
        editor.graph().links.iter().filter(|l| pasted.contains(&l.from_node) && pasted.contains(&l.to_node));
    assert_eq!(links_among.count(), internal);
    assert!(internal >= 2);
    assert!(editor.graph().links.iter().all(|l| !pasted.contains(&l.to_node) || pasted.contains(&l.from_node)));
    let original = editor.graph().node(72).unwrap().pos;
    let copy = editor.graph().nodes.iter().find(|n| pasted.contains(&n.id) && n.class_type == "SamplerCustom").unwrap();
    assert_eq!(copy.pos, [original[0] + 30.0, original[1] + 30.0]);
    // Saved copies are new nodes with their own ids; the file still parses.
    let mut reopened = Editor::new(catalog());
    reopened.open_text(&editor.to_json().to_string(), "pasted").unwrap();
    let ids: Vec<i64> = reopened.graph().nodes.iter().map(|n| n.id).collect();
    assert_eq!(reopened.graph().nodes.len(), 14 + pasted.len(), "{ids:?} {pasted:?}");
    assert!(editor.undo());
    assert_eq!(editor.graph().nodes.len(), 14);
}

#[test]
fn duplicate_and_selection_toggles() {
    let mut editor = template();
    editor.select(6);
    editor.toggle_selected(7);
    assert_eq!(editor.selection, BTreeSet::from([6, 7]));
    editor.toggle_selected(6);
    assert_eq!(editor.selection, BTreeSet::from([7]));
    let copies = editor.duplicate();
    assert_eq!(copies.len(), 1);
    let copy = editor.graph().node(*copies.first().unwrap()).unwrap();
    assert_eq!(copy.title.as_deref(), Some("CLIP Text Encode (Negative Prompt)"));
    assert!(editor.graph().link_into(copy.id, 0).is_none(), "the link from outside is not copied");
}

#[test]
fn mute_and_bypass_toggle_and_reach_the_prompt() {
    let mut editor = template();
    editor.select(73);
    editor.toggle_mode(NodeMode::Muted);
    assert_eq!(editor.graph().node(73).unwrap().mode, NodeMode::Muted);
    editor.toggle_mode(NodeMode::Muted);
    assert_eq!(editor.graph().node(73).unwrap().mode, NodeMode::Normal);
    editor.select(79);
    editor.toggle_mode(NodeMode::Muted);
    let prompt = editor.to_prompt().unwrap().prompt;
    assert!(!prompt.nodes.contains_key("79"), "a muted node is left out of the prompt");
    assert!(prompt.nodes.contains_key("78"));
}

#[test]
fn the_template_converts_to_the_api_prompt_with_edited_values() {
    let mut editor = template();
    editor.set_widget(71, "steps", json!(12)).unwrap();
    let prompt = editor.to_prompt().unwrap().prompt;
    assert_eq!(prompt.nodes["71"].class_type.as_deref(), Some("LTXVScheduler"));
    assert!(matches!(&prompt.nodes["71"].inputs["steps"], InputValue::Literal(v) if *v == json!(12)));
    assert!(matches!(&prompt.nodes["72"].inputs["sampler"], InputValue::Link(link) if link.node == "73"));
    assert!(!prompt.nodes.contains_key("76"), "notes are not run");
}

#[test]
fn seed_controls_apply_after_a_queued_run() {
    let mut editor = template();
    editor.seed_random(7);
    let seed = |editor: &Editor| editor.widget(72, "noise_seed").and_then(Json::as_i64).unwrap();
    let start = seed(&editor);
    editor.set_seed_control(72, "noise_seed", SeedControl::Fixed).unwrap();
    assert_eq!(editor.after_queue(), 0);
    assert_eq!(seed(&editor), start);
    editor.set_seed_control(72, "noise_seed", SeedControl::Increment).unwrap();
    editor.after_queue();
    assert_eq!(seed(&editor), start + 1);
    editor.set_seed_control(72, "noise_seed", SeedControl::Decrement).unwrap();
    editor.after_queue();
    editor.after_queue();
    assert_eq!(seed(&editor), start - 1);
    editor.set_seed_control(72, "noise_seed", SeedControl::Randomize).unwrap();
    editor.after_queue();
    let random = seed(&editor);
    assert_ne!(random, start - 1);
    assert!((0..=1 << 50).contains(&random));
    assert!(editor.undo(), "the seed change is undoable");
    assert_eq!(seed(&editor), start - 1);
    // Decrement stops at the input's minimum.
    editor.set_widget(72, "noise_seed", json!(0)).unwrap();
    editor.set_seed_control(72, "noise_seed", SeedControl::Decrement).unwrap();
    assert_eq!(editor.after_queue(), 0);
    assert_eq!(seed(&editor), 0);
    assert!(editor.set_seed_control(70, "width", SeedControl::Fixed).is_err(), "width has no control");
}

#[test]
fn groups_notes_and_titles() {
    let mut editor = template();
    assert_eq!(editor.graph().groups.len(), 4);
    assert_eq!(editor.graph().groups[0].title, "Step1 - Load models");
    editor.rename_group(0, "Models").unwrap();
    assert!(editor.rename_group(9, "x").is_err());
    editor.select(70);
    let index = editor.group_selection("Size");
    let group = &editor.graph().groups[index];
    let (min, max) = editor.graph().node(70).unwrap().bounds();
    assert!(group.bounding[0] < min[0] && group.bounding[1] < min[1]);
    assert!(group.bounding[0] + group.bounding[2] > max[0] && group.bounding[1] + group.bounding[3] > max[1]);
    let note = editor.add_note("remember the seed", [0.0, 900.0]);
    editor.set_title(6, "").unwrap();
    let saved = editor.to_json();
    assert_eq!(saved["groups"][0]["title"], "Models");
    assert_eq!(saved["groups"][0]["color"], "#3f789e", "unknown group fields are kept");
    assert_eq!(saved["groups"][4]["title"], "Size");
    let note_json = saved["nodes"].as_array().unwrap().iter().find(|n| n["id"] == note).unwrap();
    assert_eq!(note_json["type"], "Note");
    assert_eq!(note_json["widgets_values"], json!(["remember the seed"]));
    let title_node = saved["nodes"].as_array().unwrap().iter().find(|n| n["id"] == 6).unwrap();
    assert!(title_node.get("title").is_none(), "an empty title falls back to the display name");
    let mut reopened = Editor::new(catalog());
    reopened.open_text(&saved.to_string(), "groups").unwrap();
    assert_eq!(reopened.graph().groups.len(), 5);
    assert_eq!(reopened.to_json(), saved);
}

#[test]
fn a_new_workflow_saves_as_a_ui_file_the_engine_reads() {
    let mut editor = Editor::new(catalog());
    let latent = editor.add_node("EmptyLTXVLatentVideo", [0.0, 0.0]).unwrap();
    let scheduler = editor.add_node("LTXVScheduler", [300.0, 0.0]).unwrap();
    editor.connect(latent, 0, scheduler, 0).unwrap();
    let saved = editor.to_json();
    assert_eq!(saved["links"], json!([[1, latent, 0, scheduler, 0, "LATENT"]]));
    let workflow = kinograph_engine::UiWorkflow::from_json(saved, "new").unwrap();
    assert_eq!(workflow.root.nodes.len(), 2);
    assert_eq!(workflow.root.nodes[1].inputs[0].link, Some(1));
    let prompt = editor.to_prompt().unwrap().prompt;
    assert!(
        matches!(&prompt.nodes[&scheduler.to_string()].inputs["latent"], InputValue::Link(link) if link.node == latent.to_string())
    );
    assert!(editor.disconnect(scheduler, 0));
    assert!(!editor.disconnect(scheduler, 0));
}

#[test]
fn palette_search_finds_by_words_in_any_case() {
    let catalog = catalog();
    let found: Vec<&str> = catalog.search("ltxv sched").iter().map(|s| s.class_type.as_str()).collect();
    assert_eq!(found, ["LTXVScheduler"]);
    assert!(catalog.search("").len() > 30);
    assert!(catalog.search("no such words here").is_empty());
}

#[test]
fn non_numeric_node_ids_are_refused_with_the_file_named() {
    let mut editor = Editor::new(catalog());
    let error = editor.open_text(r#"{"nodes": [{"id": "a", "type": "Note"}], "links": []}"#, "odd.json").unwrap_err();
    assert!(error.to_string().contains("odd.json: node id a is not a number"), "{error}");
}

#[test]
fn recent_files_put_the_newest_first_without_repeats_and_persist() {
    use kinograph_editor::model::recent::RecentFiles;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("config/kinograph/recent-files");
    let files: Vec<PathBuf> = (0..12).map(|i| dir.path().join(format!("w{i}.json"))).collect();
    for file in &files {
        std::fs::write(file, "{}").unwrap();
    }
    let mut recent = RecentFiles::load(Some(store.clone()));
    assert!(recent.paths.is_empty(), "a missing list is empty");
    for file in &files {
        recent.add(file).unwrap();
    }
    recent.add(&files[5]).unwrap();
    assert_eq!(recent.paths.len(), 10);
    assert!(recent.paths[0].ends_with("w5.json"));
    assert!(recent.paths[1].ends_with("w11.json"));
    assert_eq!(recent.paths.iter().filter(|p| p.ends_with("w5.json")).count(), 1);
    assert_eq!(RecentFiles::load(Some(store)).paths, recent.paths);
}

#[test]
fn a_file_without_version_or_links_keeps_its_shape() {
    let text = r#"{"nodes": [{"id": 3, "type": "Note", "pos": [0, 0], "size": [200, 80], "widgets_values": ["hi"]}]}"#;
    let mut editor = Editor::new(catalog());
    editor.open_text(text, "bare.json").unwrap();
    assert_eq!(editor.to_json(), serde_json::from_str::<Json>(text).unwrap());
}

#[test]
fn a_group_moves_with_its_nodes_resizes_and_goes_away_in_undoable_steps() {
    let mut editor = template();
    let inside = editor.graph().nodes_in_group(0).unwrap();
    assert!(inside.contains(&38) && inside.contains(&44), "the model loaders sit in Step1: {inside:?}");
    assert!(!inside.contains(&70), "the latent is in Step2");
    let position = |editor: &Editor, id| editor.graph().node(id).unwrap().pos;
    let (loader, latent) = (position(&editor, 44), position(&editor, 70));
    let corner = editor.graph().groups[0].bounding;

    // A drag over several frames is one undo step.
    editor.begin_gesture();
    for _ in 0..3 {
        editor.move_group(0, [10.0, -5.0]).unwrap();
    }
    editor.end_gesture();
    assert_eq!(position(&editor, 44), [loader[0] + 30.0, loader[1] - 15.0]);
    assert_eq!(position(&editor, 70), latent, "nodes outside the group stay");
    assert_eq!(editor.graph().groups[0].bounding[..2], [corner[0] + 30.0, corner[1] - 15.0]);
    editor.undo();
    assert_eq!(position(&editor, 44), loader);
    assert_eq!(editor.graph().groups[0].bounding, corner);

    editor.resize_group(0, [10.0, 500.0]).unwrap();
    assert_eq!(editor.graph().groups[0].bounding[2..], [MIN_GROUP_SIZE[0], 500.0]);
    assert_eq!(editor.graph().groups[0].bounding[..2], corner[..2], "the top-left corner stays");
    assert!(matches!(editor.move_group(9, [1.0, 1.0]), Err(EditError::NoSuchGroup(9))));

    editor.delete_group(0).unwrap();
    assert_eq!(editor.graph().groups.len(), 3);
    assert_eq!(position(&editor, 44), loader, "the nodes of a deleted group stay");
    editor.undo();
    assert_eq!(editor.graph().groups.len(), 4);
}

#[test]
fn classes_offered_for_a_pin_are_those_with_a_socket_of_its_type() {
    let catalog = catalog();
    let names = |schemas: Vec<&kinograph_engine::NodeSchema>| -> BTreeSet<String> {
        schemas.into_iter().map(|schema| schema.class_type.clone()).collect()
    };
    let taking_latent = names(catalog.compatible_classes("LATENT", true));
    let giving_vae = names(catalog.compatible_classes("VAE", false));
    for class in ["VAEDecode", "SamplerCustom", "KSampler"] {
        assert!(taking_latent.contains(class), "{class} takes LATENT: {taking_latent:?}");
    }
    for class in ["CLIPTextEncode", "CheckpointLoaderSimple", "EmptyLTXVLatentVideo"] {
        assert!(!taking_latent.contains(class), "{class} has no LATENT input");
    }
    assert!(giving_vae.contains("CheckpointLoaderSimple") && !giving_vae.contains("VAEDecode"), "{giving_vae:?}");
    // Checked against the sockets of each class's new instance, every class either way.
    for schema in catalog.search("") {
        let node = catalog.instantiate(&schema.class_type, [0.0, 0.0]).expect("a listed class");
        let takes = node.inputs.iter().any(|input| input.type_name == "LATENT" || input.type_name == "*");
        assert_eq!(takes, taking_latent.contains(&schema.class_type), "{}", schema.class_type);
        let gives = node.outputs.iter().any(|output| output.type_name == "VAE" || output.type_name == "*");
        assert_eq!(gives, giving_vae.contains(&schema.class_type), "{}", schema.class_type);
    }
}

#[test]
fn adding_a_node_from_a_pin_connects_it_in_one_undo_step() {
    use kinograph_editor::model::Pin;
    let mut editor = Editor::new(catalog());
    let latent = editor.add_node("EmptyLTXVLatentVideo", [0.0, 0.0]).expect("a built-in class");
    let pin = Pin { node: latent, output: true, slot: 0 };
    let (decode, link) = editor.add_connected("VAEDecode", [400.0, 0.0], pin).expect("VAEDecode takes LATENT");
    let graph = editor.graph();
    let link = graph.links.iter().find(|l| l.id == link).expect("the new link");
    assert_eq!((link.from_node, link.from_slot, link.to_node), (latent, 0, decode));
    assert_eq!(graph.node(decode).expect("added").inputs[link.to_slot].name, "samples");
    assert_eq!(graph.node(decode).expect("added").pos, [400.0, 0.0]);
    assert_eq!(editor.selection, BTreeSet::from([decode]));

    // From an input pin: the new node's first output of that type feeds it.
    let vae_input = Pin { node: decode, output: false, slot: 1 };
    let (loader, _) = editor.add_connected("CheckpointLoaderSimple", [-400.0, 0.0], vae_input).expect("gives VAE");
    let into_vae = editor.graph().link_into(decode, 1).expect("linked").clone();
    assert_eq!((into_vae.from_node, into_vae.from_slot, into_vae.type_name.as_str()), (loader, 2, "VAE"));

    // A class without a socket of the pin's type is refused and changes nothing.
    let before = editor.graph().clone();
    let refused = editor.add_connected("CLIPTextEncode", [0.0, 400.0], pin);
    assert!(matches!(refused, Err(EditError::NoCompatibleSocket { side: "input", .. })), "{refused:?}");
    assert_eq!(editor.graph(), &before);

    // One undo takes away the loader and its link together, the next the decoder and its link.
    assert!(editor.undo());
    assert!(editor.graph().node(loader).is_none() && editor.graph().link_into(decode, 1).is_none());
    assert!(editor.undo());
    assert_eq!(editor.graph().nodes.len(), 1);
    assert!(editor.graph().links.is_empty());
    assert!(editor.redo());
    assert_eq!(editor.graph().links.len(), 1);
}

#[test]
fn output_thumbnails_are_scaled_to_the_node_and_capped_in_frames() {
    use kinograph_editor::model::media::{downscale, load_thumbnails};
    use kinograph_nodes::media::mp4_writer::Mp4Writer;
    let dir = tempfile::tempdir().unwrap();
    let (width, height) = (96, 64);
    // Frame `index` is flat grey at 10 + 10·index, so each kept frame says which one it was.
    let frame = |index: usize| vec![(10 + 10 * index) as u8; width * height * 3];
    let video = dir.path().join("clip.mp4");
    let mut writer = Mp4Writer::create(&video, width, height, 24.0, &[]).unwrap();
    for index in 0..20 {
        writer.write_frame(&frame(index)).unwrap();
    }
    writer.finish().unwrap();

    let thumbnails = load_thumbnails(&video, 48, 8).unwrap();
    // 20 frames capped at 8: every third is kept (7 of them), played at a third of the rate.
    assert_eq!((thumbnails.width, thumbnails.height, thumbnails.frames.len()), (48, 32, 7));
    assert!((thumbnails.fps - 8.0).abs() < 1e-9, "{}", thumbnails.fps);
    for (kept, rgb) in thumbnails.frames.iter().enumerate() {
        assert_eq!(rgb.len(), 48 * 32 * 3);
        let mean = rgb.iter().map(|v| f64::from(*v)).sum::<f64>() / rgb.len() as f64;
        let expected = (10 + 30 * kept) as f64;
        // A flat frame survives H.264 at QP 28 within a couple of levels.
        assert!((mean - expected).abs() < 3.0, "kept frame {kept}: mean {mean}, expected {expected}");
    }

    // A still image: one frame, scaled to the width with its shape kept; the average of each block.
    let still = dir.path().join("still.png");
    let pixels: Vec<u8> = (0..100 * 50).flat_map(|i| if i % 100 < 50 { [0, 0, 0] } else { [200, 100, 50] }).collect();
    image::RgbImage::from_raw(100, 50, pixels.clone()).unwrap().save(&still).unwrap();
    let thumbnails = load_thumbnails(&still, 40, 8).unwrap();
    assert_eq!((thumbnails.width, thumbnails.height, thumbnails.frames.len(), thumbnails.fps), (40, 20, 1, 0.0));
    assert_eq!(thumbnails.frames[0], downscale(&pixels, 100, 50, 40, 20));
    assert_eq!(&thumbnails.frames[0][..3], &[0, 0, 0]);
    assert_eq!(&thumbnails.frames[0][39 * 3..40 * 3], &[200, 100, 50]);

    let error = load_thumbnails(&dir.path().join("notes.txt"), 40, 8).unwrap_err();
    assert!(error.contains("notes.txt") && error.contains("MP4"), "{error}");
    let error = load_thumbnails(&dir.path().join("missing.mp4"), 40, 8).unwrap_err();
    assert!(error.contains("missing.mp4"), "{error}");
}

#[test]
fn an_api_prompt_opens_laid_out_as_a_graph_and_untitled() {
    let prompt = template().to_prompt().unwrap().prompt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.json");
    std::fs::write(&path, prompt.to_json().to_string()).unwrap();
    let mut editor = Editor::new(catalog());
    editor.open_any(&path).unwrap();
    // Same classes as the prompt, one node each; Save must not write UI JSON over the API file.
    let mut classes: Vec<String> = editor.graph().nodes.iter().map(|node| node.class_type.clone()).collect();
    let mut expected: Vec<String> = prompt.nodes.values().filter_map(|node| node.class_type.clone()).collect();
    classes.sort();
    expected.sort();
    assert_eq!(classes, expected);
    assert_eq!(editor.path, None);
    assert_eq!(editor.graph().links.len(), template().graph().links.len());
    // And it converts back to the same prompt, values and links alike.
    let again = editor.to_prompt().unwrap().prompt;
    assert_eq!(again.nodes.len(), prompt.nodes.len());

    // A UI file keeps its place.
    let mut editor = Editor::new(catalog());
    editor.open_any(&template_path()).unwrap();
    assert_eq!(editor.path.as_deref(), Some(template_path().as_path()));
    let error = editor.open_any(&dir.path().join("missing.json")).unwrap_err().to_string();
    assert!(error.contains("missing.json"), "{error}");
}

/// A dynamic combo (`ResizeImageMaskNode`'s `resize_type`) shows the widgets of its choice: a new node has
/// those of the default choice, and choosing another option swaps them for the new option's defaults while
/// the widgets after it keep their values.
#[test]
fn choosing_a_dynamic_combo_option_swaps_its_widgets() {
    let mut editor = Editor::new(catalog());
    let id = editor.add_node("ResizeImageMaskNode", [0.0, 0.0]).unwrap();
    let values = |editor: &Editor| editor.graph().node(id).unwrap().widget_list().to_vec();
    assert_eq!(values(&editor), [json!("scale dimensions"), json!(512), json!(512), json!("center"), json!("area")]);
    editor.set_widget(id, "scale_method", json!("lanczos")).unwrap();
    editor.set_widget(id, "resize_type.width", json!(640)).unwrap();

    editor.set_widget(id, "resize_type", json!("scale longer dimension")).unwrap();
    assert_eq!(values(&editor), [json!("scale longer dimension"), json!(512), json!("lanczos")]);
    assert!(editor.set_widget(id, "resize_type.width", json!(1)).is_err(), "the width widget is gone");
    editor.set_widget(id, "resize_type.longer_size", json!(768)).unwrap();
    assert_eq!(editor.widget(id, "resize_type.longer_size"), Some(&json!(768)));
    assert_eq!(editor.widget(id, "scale_method"), Some(&json!("lanczos")));

    editor.set_widget(id, "resize_type", json!("scale dimensions")).unwrap();
    assert_eq!(values(&editor), [json!("scale dimensions"), json!(512), json!(512), json!("center"), json!("lanczos")]);
}
