//! Workflow files: ComfyUI's API prompt (what the engine executes) and its UI workflow (what the editor
//! saves), told apart by their shape, and workflows carried inside PNG and MP4 outputs.
//!
//! A UI workflow is converted to an API prompt by [`convert`], with the editor's rules; see
//! `docs/workflow-format.md`.

mod api;
mod api_to_ui;
pub mod dynamic_prompts;
mod edit;
pub mod embedded;
mod ui;
mod ui_to_api;
pub mod widgets;

pub use api::{ApiPrompt, InputValue, Link, PromptNode, WorkflowError, json_error, json_kind, parse_json, read_text};
pub use api_to_ui::ui_from_prompt;
pub use embedded::EmbeddedWorkflow;
pub use ui::{
    SUBGRAPH_INPUT_NODE, SUBGRAPH_OUTPUT_NODE, SubgraphDefinition, SubgraphSlot, UiGraph, UiInput, UiLink, UiNode,
    UiOutput, UiWorkflow,
};
pub use ui_to_api::{Conversion, ConversionWarning, ConvertOptions, convert, feeds_widget};

use crate::node::Environment;
use crate::registry::Registry;
use serde_json::Value as Json;
use std::path::Path;

/// A workflow in either format.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkflowFile {
    Api(ApiPrompt),
    Ui(UiWorkflow),
}

impl WorkflowFile {
    /// Reads a workflow file: JSON in either format, or a PNG or MP4 that carries one (the UI workflow
    /// is preferred, as it keeps titles; the API prompt is the fallback).
    pub fn load(path: &Path) -> Result<Self, WorkflowError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| WorkflowError::Io { path: origin.clone(), source })?;
        if embedded::container(&bytes).is_some() {
            return Self::from_embedded(&bytes, &origin);
        }
        let text = String::from_utf8(bytes).map_err(|_| WorkflowError::Shape {
            origin: origin.clone(),
            message: "the file is neither JSON text nor a PNG or MP4".into(),
        })?;
        Self::parse(&text, &origin)
    }

    /// Reads the workflow carried by PNG or MP4 bytes.
    pub fn from_embedded(bytes: &[u8], origin: &str) -> Result<Self, WorkflowError> {
        let found = embedded::extract(bytes)
            .map_err(|message| WorkflowError::Embedded { origin: origin.to_string(), message })?;
        let workflow = found.workflow.as_deref().map(|text| Self::parse(text, &format!("{origin} (workflow)")));
        match (workflow, found.prompt) {
            (Some(Ok(workflow)), _) => Ok(workflow),
            (Some(Err(_)) | None, Some(prompt)) => Self::parse(&prompt, &format!("{origin} (prompt)")),
            (Some(Err(error)), None) => Err(error),
            (None, None) => Err(WorkflowError::Embedded { origin: origin.to_string(), message: "no workflow".into() }),
        }
    }

    /// Parses JSON text in either format.
    pub fn parse(text: &str, origin: &str) -> Result<Self, WorkflowError> {
        Self::from_json(parse_json(text, origin)?, origin)
    }

    /// Tells the formats apart: a UI workflow has a `nodes` list.
    pub fn from_json(json: Json, origin: &str) -> Result<Self, WorkflowError> {
        if UiWorkflow::is_ui_json(&json) {
            Ok(WorkflowFile::Ui(UiWorkflow::from_json(json, origin)?))
        } else {
            Ok(WorkflowFile::Api(ApiPrompt::from_json(json, origin)?))
        }
    }

    /// The API prompt to run, converting a UI workflow (with its warnings).
    pub fn into_prompt(
        self,
        registry: &Registry,
        env: &Environment,
        options: &ConvertOptions,
    ) -> Result<Conversion, WorkflowError> {
        match self {
            WorkflowFile::Api(prompt) => Ok(Conversion { prompt, warnings: Vec::new() }),
            WorkflowFile::Ui(workflow) => convert(&workflow, registry, env, options),
        }
    }
}
