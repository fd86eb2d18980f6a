//! Integration tests of kinograph: the command-line program run as users run it, on real files.
//!
//! One test binary per crate: each file below is a module, so the crate's dependencies are linked once
//! rather than once per file (each link is over 100 MB of test binary). nextest still runs every test in
//! its own process. Run one file's tests with `cargo nextest run -p PACKAGE -E 'test(/^MODULE::/)'`.

mod api_to_ui;
mod cli;
mod cli_demo;
mod cli_edit;
mod cli_media;
mod cli_ui;
mod custom_nodes;
mod ltx2_reference;
mod ltx2_templates;
mod ltx2_workflow;
mod ltxv_098;
mod ltxv_bad_input;
mod ltxv_guides;
mod ltxv_lora;
mod ltxv_reference;
mod ltxv_templates;
mod memory_budget;
mod models;
mod server;
