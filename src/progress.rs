//! Turning run events into what the user sees: progress bars on a terminal, plain lines otherwise,
//! or JSON lines for scripts.

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kinograph_engine::{Event, EventKind, EventSink, Graph, RunOutcome, RunStatus};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How `kinograph run` reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventMode {
    /// Progress bars (plain lines when stderr is not a terminal).
    Bars,
    /// One ComfyUI websocket-style JSON message per line on stdout.
    Json,
}

/// Reports one run.
pub struct Reporter {
    mode: EventMode,
    output_dir: std::path::PathBuf,
    labels: HashMap<String, String>,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    bars: HashMap<String, (ProgressBar, Instant)>,
    to_run: u64,
}

impl Reporter {
    pub fn new(mode: EventMode, output_dir: &std::path::Path) -> Self {
        Reporter {
            mode,
            output_dir: output_dir.to_path_buf(),
            labels: HashMap::new(),
            state: Mutex::new(BarState::default()),
        }
    }

    /// Knows the graph's node titles for labels.
    pub fn for_graph(mut self, graph: &Graph) -> Self {
        for node in &graph.nodes {
            let label = match &node.title {
                Some(title) if title != &node.class_type => format!("#{} {title} ({})", node.id, node.class_type),
                _ => format!("#{} {}", node.id, node.class_type),
            };
            self.labels.insert(node.id.clone(), label);
        }
        self
    }

    /// Reports a workflow that did not validate.
    pub fn invalid(&self, comfy: &Json, text: &str) {
        if self.mode == EventMode::Json {
            print_line(&json!({"type": "validation_error", "data": comfy}));
        }
        eprint!("{text}");
    }

    /// The event sink for the executor.
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let reporter = self.clone();
        Arc::new(move |event: &Event| reporter.on_event(event))
    }

    fn label(&self, node: &str) -> String {
        self.labels.get(node).cloned().unwrap_or_else(|| format!("#{node}"))
    }

    fn on_event(&self, event: &Event) {
        if self.mode == EventMode::Json {
            let mut message = event.to_comfy_json();
            // The run's last message (`executing` with no node) also says how much memory the process
            // held at its peak; ComfyUI's clients ignore the extra field.
            if let (EventKind::Finished, Some(data), Some(peak)) =
                (&event.kind, message.get_mut("data").and_then(Json::as_object_mut), peak_resident_bytes())
            {
                data.insert("peak_resident_bytes".into(), json!(peak));
            }
            print_line(&message);
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let interactive = std::io::stderr().is_terminal();
        match &event.kind {
            EventKind::ExecutionCached { nodes } => {
                state.to_run = self.labels.len().saturating_sub(nodes.len()) as u64;
                if !nodes.is_empty() {
                    eprintln!("{} node{} cached", nodes.len(), if nodes.len() == 1 { "" } else { "s" });
                }
                if interactive {
                    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                    let overall = multi.add(ProgressBar::new(state.to_run));
                    overall.set_style(
                        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} nodes  {elapsed}")
                            .expect("valid template")
                            .progress_chars("=> "),
                    );
                    overall.set_prefix("workflow");
                    state.overall = Some(overall);
                    state.multi = Some(multi);
                }
            }
            EventKind::Executing { node } => {
                let label = self.label(node);
                let bar = if let Some(multi) = &state.multi {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(ProgressStyle::with_template("  {spinner} {msg} {elapsed}").expect("valid template"));
                    bar.set_message(label);
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    bar
                } else {
                    eprintln!("running {label}");
                    ProgressBar::hidden()
                };
                state.bars.insert(node.clone(), (bar, Instant::now()));
            }
            EventKind::Progress { node, value, max, .. } => {
                if let Some((bar, _)) = state.bars.get(node) {
                    if bar.length() != Some(*max) {
                        bar.set_length(*max);
                        bar.set_style(
                            ProgressStyle::with_template("  {msg} [{bar:30}] {pos}/{len} {elapsed}<{eta}")
                                .expect("valid template")
                                .progress_chars("=> "),
                        );
                    }
                    bar.set_position(*value);
                }
            }
            EventKind::NodeFinished { node } => {
                if let Some((bar, started)) = state.bars.remove(node) {
                    bar.finish_and_clear();
                    if let Some(multi) = &state.multi {
                        multi.remove(&bar);
                        let _ = multi.println(format!("  done {} in {:.2?}", self.label(node), started.elapsed()));
                    } else {
                        eprintln!("done {} in {:.2?}", self.label(node), started.elapsed());
                    }
                }
                if let Some(overall) = &state.overall {
                    overall.inc(1);
                }
            }
            EventKind::ExecutionError(_) | EventKind::ExecutionInterrupted { .. } | EventKind::ExecutionSuccess => {
                for (_, (bar, _)) in state.bars.drain() {
                    bar.finish_and_clear();
                }
                if let Some(overall) = state.overall.take() {
                    overall.finish_and_clear();
                }
            }
            _ => {}
        }
    }

    /// Prints the outcome: outputs on success, the failing node on error; and in bars or plain mode the
    /// process's peak memory (in JSON mode it is in the run's last message).
    pub fn finish(&self, outcome: &RunOutcome) {
        if self.mode == EventMode::Json {
            let _ = std::io::stdout().flush();
        } else if let Some(peak) = peak_resident_bytes() {
            eprintln!("peak memory: {:.2} GiB resident (VmHWM)", peak as f64 / f64::from(1u32 << 30));
        }
        match outcome.status {
            RunStatus::Success => {
                if self.mode == EventMode::Bars {
                    for (node, ui) in &outcome.outputs {
                        print_ui(&self.label(node), ui, &self.output_dir);
                    }
                }
                eprintln!(
                    "finished in {:.2?}: {} node{} ran, {} cached",
                    outcome.duration,
                    outcome.executed.len(),
                    if outcome.executed.len() == 1 { "" } else { "s" },
                    outcome.cached.len()
                );
            }
            RunStatus::Failed => {
                if let Some(failure) = &outcome.failure {
                    eprintln!("error: node {} failed: {}", self.label(&failure.node_id), failure.exception_message);
                    if !failure.current_inputs.is_empty() {
                        eprintln!("  its inputs were:");
                        for (name, value) in &failure.current_inputs {
                            let shown = value.get(0).unwrap_or(value);
                            eprintln!("    {name} = {shown}");
                        }
                    }
                }
            }
            RunStatus::Interrupted => {
                eprintln!(
                    "interrupted after {:.2?}; {} node(s) had finished",
                    outcome.duration,
                    outcome.executed.len()
                );
            }
        }
    }
}

fn print_ui(label: &str, ui: &Json, output_dir: &std::path::Path) {
    // Savers list what they wrote under `files`, and images and videos under `images`.
    if let Some(files) = ui.get("files").or_else(|| ui.get("images")).and_then(Json::as_array) {
        let temp_dir = kinograph_nodes::nodes::image::temp_dir_beside(output_dir);
        for file in files {
            let folder = if file["type"] == "temp" { &temp_dir } else { output_dir };
            let subfolder = file["subfolder"].as_str().unwrap_or_default();
            let name = file["filename"].as_str().unwrap_or_default();
            println!("{label}: wrote {}", folder.join(subfolder).join(name).display());
        }
    } else if let Some(texts) = ui.get("text").and_then(Json::as_array) {
        for text in texts {
            println!("{label}: {}", text.as_str().map_or_else(|| text.to_string(), str::to_string));
        }
    } else {
        println!("{label}: {ui}");
    }
}

/// The process's peak resident memory so far, in bytes.
fn peak_resident_bytes() -> Option<u64> {
    kinograph_engine::memory::peak_resident_bytes()
}

fn print_line(value: &Json) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}
