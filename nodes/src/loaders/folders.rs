//! Model files in ComfyUI's folder layout, as the loader nodes see them: the combo of files a folder kind
//! holds, and the path a chosen name resolves to (see `kinograph_engine::ModelFolders`).

use kinograph_engine::{Environment, InputSpec, NodeError};
use std::path::PathBuf;

/// The combo input `name` listing the files of `kind`; validation reports a missing file with the
/// folders searched and the files found.
pub fn model_input(name: &str, kind: &str, env: &Environment) -> InputSpec {
    InputSpec::model_file(name, kind, env)
}

/// The path of model file `name` of `kind`, or an error on `input` naming the folders searched and the
/// files found.
pub fn model_path(env: &Environment, kind: &str, input: &str, name: &str) -> Result<PathBuf, NodeError> {
    env.models.resolve(kind, name).map_err(|missing| NodeError::input(input, missing))
}
