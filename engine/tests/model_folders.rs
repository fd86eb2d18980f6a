//! Model folders in ComfyUI's layout: aliases, extra paths files, listing and resolving files, and a
//! workflow that names a model file that is not there.

use kinograph_engine::{
    ApiPrompt, Environment, ErrorType, ExecutionContext, Executor, FolderError, InputSpec, ModelFolders, Node,
    NodeError, NodeInputs, NodeOutput, NodeSchema, Registry, RunOptions, RunStatus, validate,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"weights").unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_layout_follows_comfyui_with_its_legacy_folders() {
    let folders = ModelFolders::new("/data/models");
    assert_eq!(folders.search_paths("checkpoints"), vec![PathBuf::from("/data/models/checkpoints")]);
    let encoders = vec![PathBuf::from("/data/models/text_encoders"), PathBuf::from("/data/models/clip")];
    assert_eq!(folders.search_paths("text_encoders"), encoders);
    assert_eq!(folders.search_paths("clip"), encoders, "`clip` is the legacy name of text_encoders");
    let diffusion = vec![PathBuf::from("/data/models/unet"), PathBuf::from("/data/models/diffusion_models")];
    assert_eq!(folders.search_paths("diffusion_models"), diffusion);
    assert_eq!(folders.search_paths("unet"), diffusion);
    for kind in ["vae", "loras", "latent_upscale_models", "upscale_models", "embeddings", "controlnet"] {
        assert!(folders.is_known(kind), "{kind}");
    }
    assert!(folders.search_paths("no_such_kind").is_empty());
    assert_eq!(
        folders.download_path("unet"),
        Some(PathBuf::from("/data/models/diffusion_models")),
        "downloads go to the kind's own folder, not the legacy one searched first"
    );
}

#[test]
fn add_path_appends_once_and_creates_unknown_kinds() {
    let mut folders = ModelFolders::new("models");
    folders.add_path("clip", PathBuf::from("/shared/clip"));
    folders.add_path("text_encoders", PathBuf::from("/shared/./clip"));
    assert_eq!(folders.search_paths("text_encoders").last(), Some(&PathBuf::from("/shared/clip")));
    assert_eq!(folders.search_paths("text_encoders").len(), 3);

    folders.add_path("ipadapter", PathBuf::from("/shared/ipadapter"));
    assert!(folders.is_known("ipadapter"));
    assert_eq!(folders.kinds().last(), Some("ipadapter"));
    assert_eq!(folders.download_path("ipadapter"), Some(PathBuf::from("/shared/ipadapter")));

    folders.add_default_path("vae", PathBuf::from("models/vae"));
    assert_eq!(folders.search_paths("vae"), vec![PathBuf::from("models/vae")], "moved to the front, not repeated");
    folders.add_default_path("vae", PathBuf::from("/fast/vae"));
    assert_eq!(folders.search_paths("vae"), vec![PathBuf::from("/fast/vae"), PathBuf::from("models/vae")]);
    assert_eq!(folders.download_path("vae"), Some(PathBuf::from("/fast/vae")));
}

#[test]
fn list_is_recursive_sorted_deduplicated_and_filtered() {
    let root = tempfile::tempdir().unwrap();
    let models = root.path().join("models");
    touch(&models.join("checkpoints/b.safetensors"));
    touch(&models.join("checkpoints/a.CKPT"));
    touch(&models.join("checkpoints/ltx/video.sft"));
    touch(&models.join("checkpoints/readme.txt"));
    touch(&models.join("checkpoints/.git/objects/x.bin"));
    touch(&models.join("checkpoints/.kinograph-download-1/part.safetensors"));
    touch(&models.join("clip/t5.safetensors"));
    touch(&models.join("text_encoders/t5.safetensors"));
    touch(&models.join("text_encoders/umt5.bin"));
    touch(&models.join("diffusers/ltx-pipeline/model_index.json"));
    touch(&models.join("diffusers/ltx-pipeline/vae/diffusion_pytorch_model.safetensors"));
    touch(&models.join("diffusers/not-a-pipeline/config.json"));
    let folders = ModelFolders::new(&models);
    assert_eq!(folders.list("checkpoints"), vec!["a.CKPT", "b.safetensors", "ltx/video.sft"]);
    assert_eq!(folders.list("clip"), vec!["t5.safetensors", "umt5.bin"], "both folders, each name once");
    assert_eq!(folders.list("diffusers"), vec!["ltx-pipeline"]);
    assert!(folders.list("vae").is_empty(), "a folder that does not exist lists nothing");
    assert!(folders.list("no_such_kind").is_empty());
}

#[cfg(unix)]
#[test]
fn list_follows_links_and_survives_link_loops() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    touch(&store.join("big.safetensors"));
    let loras = root.path().join("models/loras");
    std::fs::create_dir_all(&loras).unwrap();
    std::os::unix::fs::symlink(&store, loras.join("linked")).unwrap();
    std::os::unix::fs::symlink(&loras, loras.join("loop")).unwrap();
    std::os::unix::fs::symlink(root.path().join("gone.safetensors"), loras.join("dangling.safetensors")).unwrap();
    let folders = ModelFolders::new(root.path().join("models"));
    assert_eq!(folders.list("loras"), vec!["linked/big.safetensors"]);
}

#[test]
fn resolve_searches_in_order_and_reports_what_it_searched() {
    let root = tempfile::tempdir().unwrap();
    let models = root.path().join("models");
    touch(&models.join("unet/ltxv.safetensors"));
    touch(&models.join("diffusion_models/ltxv.safetensors"));
    touch(&models.join("diffusion_models/sub/other.safetensors"));
    let folders = ModelFolders::new(&models);
    assert_eq!(folders.resolve("diffusion_models", "ltxv.safetensors").unwrap(), models.join("unet/ltxv.safetensors"));
    assert_eq!(
        folders.resolve("unet", "sub\\other.safetensors").unwrap(),
        models.join("diffusion_models/sub/other.safetensors")
    );
    assert!(
        folders.resolve("unet", "../diffusion_models/sub/other.safetensors").is_err(),
        "`..` cannot climb out of a search path into a sibling folder"
    );
    assert!(folders.resolve("unet", "sub/../../ltxv.safetensors").is_ok());
    assert!(folders.resolve("diffusion_models", "sub").is_err(), "a folder is not a model file");

    let missing = folders.resolve("diffusion_models", "ltxv-13b.safetensors").unwrap_err();
    assert_eq!(
        missing.to_string(),
        format!(
            "model file 'ltxv-13b.safetensors' not found in folder kind 'diffusion_models'; searched: {}, {}; \
             found: ltxv.safetensors, sub/other.safetensors",
            models.join("unet").display(),
            models.join("diffusion_models").display()
        )
    );
    let empty = folders.resolve("vae", "vae.safetensors").unwrap_err();
    assert!(empty.to_string().ends_with("; found: no files"), "{empty}");
    let unknown = folders.resolve("vea", "vae.safetensors").unwrap_err();
    assert!(unknown.to_string().contains("searched: nothing ('vea' is not a known folder kind)"), "{unknown}");
}

#[test]
fn extra_paths_file_adds_search_paths() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    touch(&shared.join("sd/Stable-diffusion/old.ckpt"));
    touch(&shared.join("sd/Lora/style.safetensors"));
    touch(&shared.join("sd/LyCORIS/lyco.safetensors"));
    touch(&root.path().join("config/fast-vae/vae.safetensors"));
    let yaml = root.path().join("config/extra_model_paths.yaml");
    write(
        &yaml,
        &format!(
            "# kept as ComfyUI writes it\n\
             a111:\n    base_path: {}\n    checkpoints: sd/Stable-diffusion\n    loras: |\n        sd/Lora\n        sd/LyCORIS\n\n\
             fast:\n    is_default: true\n    vae: fast-vae\n    clip: ../encoders\n",
            shared.display()
        ),
    );
    let models = root.path().join("models");
    let mut folders = ModelFolders::new(&models);
    folders.load_extra_paths(&yaml).unwrap();
    assert_eq!(
        folders.search_paths("checkpoints"),
        vec![models.join("checkpoints"), shared.join("sd/Stable-diffusion")]
    );
    assert_eq!(folders.list("loras"), vec!["lyco.safetensors", "style.safetensors"]);
    assert_eq!(folders.search_paths("vae")[0], root.path().join("config/fast-vae"), "is_default puts it first");
    assert_eq!(folders.search_paths("text_encoders")[0], root.path().join("encoders"), "relative to the file");
    assert_eq!(folders.download_path("vae"), Some(root.path().join("config/fast-vae")));
    assert_eq!(folders.resolve("checkpoints", "old.ckpt").unwrap(), shared.join("sd/Stable-diffusion/old.ckpt"));
}

#[test]
fn is_default_lines_end_up_last_first_as_in_comfyui() {
    let root = tempfile::tempdir().unwrap();
    let yaml = root.path().join("extra.yaml");
    write(
        &yaml,
        "net:\n  base_path: /net\n  is_default: true\n  checkpoints: |\n    models/checkpoints\n    /local/checkpoints\n",
    );
    let mut folders = ModelFolders::new("models");
    folders.load_extra_paths(&yaml).unwrap();
    assert_eq!(
        folders.search_paths("checkpoints"),
        vec![
            PathBuf::from("/local/checkpoints"),
            PathBuf::from("/net/models/checkpoints"),
            PathBuf::from("models/checkpoints")
        ]
    );
}

#[test]
fn extra_paths_errors_name_the_file_and_the_place() {
    let root = tempfile::tempdir().unwrap();
    let mut folders = ModelFolders::new("models");
    let absent = root.path().join("absent.yaml");
    let error = folders.load_extra_paths(&absent).unwrap_err();
    assert!(matches!(error, FolderError::Read { .. }));
    assert!(error.to_string().contains("absent.yaml"), "{error}");

    let yaml = root.path().join("bad.yaml");
    write(&yaml, "comfyui:\n  base_path: /x\n  checkpoints: ok\n  vae: [1, 2]\n");
    let error = folders.load_extra_paths(&yaml).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the extra model paths file {}: section 'comfyui', key 'vae': expected a list of folder paths, found an entry that is the number 1",
            yaml.display()
        )
    );
    assert_eq!(folders.search_paths("checkpoints"), vec![PathBuf::from("models/checkpoints")], "nothing added");

    write(&yaml, "comfyui:\n  checkpoints: [unclosed\n");
    let error = folders.load_extra_paths(&yaml).unwrap_err();
    assert!(matches!(error, FolderError::Syntax { .. }), "{error}");
    assert!(error.to_string().contains("line"), "{error}");
}

/// Loads a checkpoint by name and shows the path it resolved to.
struct LoadCheckpoint;

impl Node for LoadCheckpoint {
    fn schema(&self, env: &Environment) -> NodeSchema {
        NodeSchema::new("LoadCheckpoint")
            .input(InputSpec::model_file("ckpt_name", "checkpoints", env))
            .output("STRING", "path")
            .output_node()
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let name = inputs.string("ckpt_name")?;
        let path = context.env().models.resolve("checkpoints", name).map_err(NodeError::other)?;
        let path = path.display().to_string();
        Ok(NodeOutput::new(vec![path.as_str().into()]).with_ui(json!({"text": [path]})))
    }
}

fn environment(models: &Path) -> Environment {
    Environment { models: ModelFolders::new(models), ..Environment::default() }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(LoadCheckpoint).unwrap();
    registry
}

fn load(name: &str) -> ApiPrompt {
    ApiPrompt::from_json(json!({"1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": name}}}), "test").unwrap()
}

#[test]
fn model_file_inputs_are_plain_combos_in_object_info() {
    let root = tempfile::tempdir().unwrap();
    touch(&root.path().join("checkpoints/ltxv-2b.safetensors"));
    touch(&root.path().join("checkpoints/ltxv-13b.safetensors"));
    let info = registry().object_info(&environment(root.path()));
    assert_eq!(
        info["LoadCheckpoint"]["input"]["required"]["ckpt_name"],
        json!([["ltxv-13b.safetensors", "ltxv-2b.safetensors"], {"default": "ltxv-13b.safetensors"}])
    );
}

#[test]
fn a_missing_model_file_names_the_folders_searched_and_the_files_found() {
    let root = tempfile::tempdir().unwrap();
    touch(&root.path().join("checkpoints/ltxv-2b-0.9.8.safetensors"));
    let env = environment(root.path());
    let report = validate(&load("ltxv-2b-0.9.6.safetensors"), &registry(), &env).unwrap_err();
    let errors = report.errors_of(ErrorType::ValueNotInList);
    assert_eq!(errors.len(), 1, "{}", report.to_text());
    let (node, error) = errors[0];
    assert_eq!((node, error.input.as_deref()), ("1", Some("ckpt_name")));
    assert_eq!(error.message, "Value not in list");
    assert_eq!(error.extra_info["model_folder"], "checkpoints");
    assert_eq!(error.extra_info["searched_paths"], json!([root.path().join("checkpoints").display().to_string()]));
    assert_eq!(error.extra_info["closest_values"], json!(["ltxv-2b-0.9.8.safetensors"]));
    let text = report.to_text();
    let expected = format!(
        "node 1 (LoadCheckpoint), input 'ckpt_name': model file 'ltxv-2b-0.9.6.safetensors' not found in folder kind \
         'checkpoints'; searched: {}; found: ltxv-2b-0.9.8.safetensors; closest: 'ltxv-2b-0.9.8.safetensors'",
        root.path().join("checkpoints").display()
    );
    assert!(text.contains(&expected), "{text}");

    let empty = tempfile::tempdir().unwrap();
    let report = validate(&load("ltxv-2b-0.9.6.safetensors"), &registry(), &environment(empty.path())).unwrap_err();
    assert!(report.to_text().contains("; found: no files"), "{}", report.to_text());
}

#[test]
fn a_model_file_that_is_there_validates_and_resolves_when_run() {
    let root = tempfile::tempdir().unwrap();
    touch(&root.path().join("checkpoints/ltx/ltxv-2b.safetensors"));
    let executor = Executor::new(Arc::new(registry()), environment(root.path()));
    for name in ["ltx/ltxv-2b.safetensors", "ltx\\ltxv-2b.safetensors"] {
        let graph = Arc::new(executor.validate(&load(name)).unwrap_or_else(|report| panic!("{}", report.to_text())));
        let outcome = tokio::runtime::Runtime::new().unwrap().block_on(executor.run(graph, RunOptions::default()));
        assert_eq!(outcome.status, RunStatus::Success);
        let resolved = root.path().join("checkpoints/ltx/ltxv-2b.safetensors");
        assert_eq!(outcome.outputs["1"]["text"][0], json!(resolved.display().to_string()));
    }
}

#[test]
fn a_graph_lists_the_model_files_its_nodes_read() {
    let root = tempfile::tempdir().unwrap();
    touch(&root.path().join("checkpoints/ltxv-2b.safetensors"));
    touch(&root.path().join("checkpoints/ltxv-13b.safetensors"));
    let executor = Executor::new(Arc::new(registry()), environment(root.path()));
    let prompt = ApiPrompt::from_json(
        json!({
            "1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "ltxv-2b.safetensors"}},
            "2": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "ltxv-13b.safetensors"}},
        }),
        "test",
    )
    .unwrap();
    let graph = executor.validate(&prompt).unwrap_or_else(|report| panic!("{}", report.to_text()));
    let mut uses: Vec<(String, String, String)> = graph
        .model_files()
        .into_iter()
        .map(|model| (graph.nodes[model.node].id.clone(), model.folder, model.name))
        .collect();
    uses.sort();
    assert_eq!(
        uses,
        [
            ("1".to_string(), "checkpoints".to_string(), "ltxv-2b.safetensors".to_string()),
            ("2".to_string(), "checkpoints".to_string(), "ltxv-13b.safetensors".to_string()),
        ]
    );
}
