//! Integration tests of kinograph-editor: the editor model, its window (through AccessKit) and running graphs from it,
//! in-process and on a server.
//!
//! One test binary per crate: each file below is a module, so the crate's dependencies are linked once
//! rather than once per file (each link is over 100 MB of test binary). nextest still runs every test in
//! its own process. Run one file's tests with `cargo nextest run -p PACKAGE -E 'test(/^MODULE::/)'`.

mod dialogs;
mod drop_inputs;
mod model;
mod primitives;
mod remote;
mod reroutes;
mod run;
mod shortcuts;
mod sound;
mod subgraphs;
mod templates;
mod ui;
mod ui_runs;
mod ui_subgraphs;
mod widget_inputs;
