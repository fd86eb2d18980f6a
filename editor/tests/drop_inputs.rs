//! A picture dropped on a `LoadImage` node (a sound on `LoadAudio`) goes into the input folder, named as
//! ComfyUI names uploads, and the node loads it; dropped anywhere else it opens as a workflow would.

use crate::ui::harness;
use eframe::egui::{DroppedFile, Pos2};
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::{Catalog, Editor, InputFileError};
use kinograph_engine::{Environment, InputValue};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
struct Dropped(PathBuf);

impl DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|error| error.to_string())
    }
}

fn editor_with_input(input: &Path) -> Editor {
    let environment = Environment { input_dir: input.to_path_buf(), ..Environment::default() };
    Editor::new(Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), environment)))
}

fn png(path: &Path, shade: u8) {
    image::RgbImage::from_pixel(4, 4, image::Rgb([shade, 0, 0])).save(path).unwrap();
}

#[test]
fn a_picture_dropped_on_load_image_goes_to_the_input_folder_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let mut editor = editor_with_input(&input);
    let loader = editor.add_node("LoadImage", [0.0, 0.0]).unwrap();
    let picture = dir.path().join("cat.png");
    png(&picture, 10);
    let mut harness = harness(EditorApp::new(editor, RecentFiles::load(None)));
    harness.run();
    let node = harness.state().editor.graph().node(loader).unwrap().clone();
    let over =
        harness.state().canvas_to_screen(&harness.ctx, Pos2::new(node.pos[0] + 50.0, node.pos[1] + 20.0)).unwrap();
    harness.hover_at(over);
    harness.step();
    harness.input_mut().dropped_files.push(Arc::new(Dropped(picture.clone())));
    harness.run();
    let editor = &harness.state().editor;
    assert_eq!(editor.widget(loader, "image"), Some(&json!("cat.png")), "{}", harness.state().status);
    assert_eq!(std::fs::read(input.join("cat.png")).unwrap(), std::fs::read(&picture).unwrap());
    let prompt = editor.to_prompt().unwrap().prompt;
    assert_eq!(prompt.nodes[&loader.to_string()].inputs["image"], InputValue::Literal(json!("cat.png")));
}

#[test]
fn dropped_files_are_reused_or_numbered_as_comfyui_names_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let mut editor = editor_with_input(&input);
    let loader = editor.add_node("LoadImage", [0.0, 0.0]).unwrap();
    let (first, second) = (dir.path().join("a/photo.png"), dir.path().join("b/photo.png"));
    for (path, shade) in [(&first, 1), (&second, 2)] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        png(path, shade);
    }
    assert_eq!(editor.put_input_file(loader, &first).unwrap(), "photo.png");
    assert_eq!(editor.put_input_file(loader, &first).unwrap(), "photo.png", "the same bytes are reused");
    assert_eq!(editor.put_input_file(loader, &second).unwrap(), "photo (1).png", "other bytes are numbered");
    assert_eq!(editor.widget(loader, "image"), Some(&json!("photo (1).png")));
    let sampler = editor.add_node("KSamplerSelect", [0.0, 300.0]).unwrap();
    assert!(matches!(editor.put_input_file(sampler, &first), Err(InputFileError::NotALoader { .. })));
}
