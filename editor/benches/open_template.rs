//! How long ComfyUI's subgraph templates take to open in the editor: the file read and parsed, the graph
//! built and the subgraph instances' schemas made (`Editor::open`), then the first frame laid out and drawn
//! (egui's UI pass, without the GPU upload). And entering each template's subgraphs. Prints the median and
//! worst of 20 opens per template, in milliseconds.
//!
//!     cargo bench -p kinograph-editor --bench open_template

use egui_kittest::Harness;
use kinograph_editor::app::EditorApp;
use kinograph_editor::model::recent::RecentFiles;
use kinograph_editor::model::{Catalog, Editor};
use kinograph_engine::Environment;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The templates, with how many subgraph definitions each holds.
const TEMPLATES: [(&str, usize); 3] =
    [("video_ltx2_t2v.json", 1), ("templates-car_product.json", 3), ("video_wan_animate2_distilled.json", 3)];

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() {
    let catalog = Arc::new(Catalog::new(Arc::new(kinograph_nodes::registry()), Environment::default()));
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/comfy-templates");
    for (name, definitions) in TEMPLATES {
        let path = folder.join(name);
        let mut opens = Vec::new();
        let mut with_frame = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let mut editor = Editor::new(Arc::clone(&catalog));
            editor.open(&path).expect("the template opens");
            opens.push(started.elapsed());
            let mut harness = Harness::builder().with_size([1400.0, 900.0]).build_ui_state(
                |ui, app: &mut EditorApp| app.show(ui),
                EditorApp::new(editor, RecentFiles::load(None)),
            );
            harness.step();
            with_frame.push(started.elapsed());
        }
        let mut editor = Editor::new(Arc::clone(&catalog));
        editor.open(&path).unwrap();
        let instances: Vec<_> =
            editor.graph().nodes.iter().map(|n| n.id).filter(|id| editor.is_subgraph_instance(*id)).collect();
        let started = Instant::now();
        for instance in &instances {
            editor.enter_subgraph(*instance).unwrap();
            editor.leave_subgraph();
        }
        let entering = started.elapsed();
        opens.sort();
        with_frame.sort();
        println!(
            "{name} ({definitions} subgraph definitions): open median {:.1} ms (worst {:.1}); open and first frame median {:.1} ms (worst {:.1}); entering and leaving its {} instances {:.1} ms",
            milliseconds(opens[opens.len() / 2]),
            milliseconds(opens[opens.len() - 1]),
            milliseconds(with_frame[with_frame.len() / 2]),
            milliseconds(with_frame[with_frame.len() - 1]),
            instances.len(),
            milliseconds(entering),
        );
    }
}
