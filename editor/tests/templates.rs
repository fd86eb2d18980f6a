//! The template list: a folder of ComfyUI templates shown with their titles and thumbnails; a click opens
//! one.

use crate::ui::{catalog, harness};
use egui_kittest::kittest::Queryable;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::Editor;
use kinograph_editor::model::recent::RecentFiles;
use std::path::PathBuf;

#[test]
fn the_template_list_shows_titles_and_opens_the_one_clicked() {
    let folder = tempfile::tempdir().unwrap();
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/comfy-templates");
    for name in ["video_ltx2_t2v.json", "ltxv_text_to_video.json"] {
        std::fs::copy(templates.join(name), folder.path().join(name)).unwrap();
    }
    image::RgbaImage::from_pixel(8, 6, image::Rgba([200, 100, 0, 255]))
        .save(folder.path().join("video_ltx2_t2v.png"))
        .unwrap();
    let index = r#"[{"title": "Video", "templates": [{"name": "video_ltx2_t2v", "title": "LTX-2 Text to Video"}]}]"#;
    std::fs::write(folder.path().join("index.json"), index).unwrap();

    let mut app = EditorApp::new(Editor::new(catalog()), RecentFiles::load(None));
    app.templates_folder = folder.path().display().to_string();
    let mut harness = harness(app);
    harness.get_by_label("Templates").click();
    harness.run();
    assert!(harness.query_by_label("ltxv text to video").is_some());
    let listed = harness.state().templates.clone().unwrap();
    assert!(listed[0].thumbnail.is_some() && listed[1].thumbnail.is_none());
    harness.get_by_label("LTX-2 Text to Video").click();
    harness.run();
    let state = harness.state();
    assert_eq!(state.editor.path.as_deref(), Some(folder.path().join("video_ltx2_t2v.json").as_path()));
    assert!(state.editor.graph().nodes.iter().any(|node| state.editor.is_subgraph_instance(node.id)));
    assert!(state.templates.is_none(), "the list closes once a template is open");
}
