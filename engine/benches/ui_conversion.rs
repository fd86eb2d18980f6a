//! Loading a UI workflow: parsing and converting the largest official template
//! (`video_wan_animate2_distilled.json`, 215 kB, three subgraphs), and saving it back.
//!
//! ComfyUI does this conversion in its web editor (`graphToPrompt`), so there is no backend time to set
//! beside ours. Run with `cargo bench -p kinograph-engine --bench ui_conversion`.

#[path = "../tests/comfy_schemas/mod.rs"]
mod comfy_schemas;

use kinograph_engine::{ConvertOptions, Environment, UiWorkflow, convert};
use std::time::{Duration, Instant};

const TEMPLATE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/comfy-templates/video_wan_animate2_distilled.json");
const REPEATS: usize = 50;

fn best_of(mut run: impl FnMut() -> Duration) -> Duration {
    (0..REPEATS).map(|_| run()).min().unwrap_or_default()
}

fn main() {
    let text = std::fs::read_to_string(TEMPLATE).unwrap_or_else(|error| panic!("{TEMPLATE}: {error}"));
    let registry = comfy_schemas::ltxv_registry();
    let env = Environment::default();
    let options = ConvertOptions::default();
    let workflow = UiWorkflow::parse(&text, "template").unwrap();
    let nodes = convert(&workflow, &registry, &env, &options).unwrap().prompt.nodes.len();
    println!("UI workflow {} kB → {nodes} API nodes, best of {REPEATS}", text.len() / 1000);
    let parse = best_of(|| {
        let started = Instant::now();
        std::hint::black_box(UiWorkflow::parse(&text, "template").unwrap());
        started.elapsed()
    });
    let both = best_of(|| {
        let started = Instant::now();
        let workflow = UiWorkflow::parse(&text, "template").unwrap();
        std::hint::black_box(convert(&workflow, &registry, &env, &options).unwrap());
        started.elapsed()
    });
    let save = best_of(|| {
        let started = Instant::now();
        std::hint::black_box(serde_json::to_string(&workflow.to_json()).unwrap());
        started.elapsed()
    });
    println!("  parse            {:>8.2} ms", parse.as_secs_f64() * 1e3);
    println!("  parse + convert  {:>8.2} ms", both.as_secs_f64() * 1e3);
    println!("  save (to text)   {:>8.2} ms", save.as_secs_f64() * 1e3);
}
