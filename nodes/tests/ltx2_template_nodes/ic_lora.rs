//! `GetICLoRAParameters` and `LTXVAddGuide` taking its output.

use super::*;

// ---------------------------------------------------------------------------------------------------
// GetICLoRAParameters

#[test]
fn get_iclora_parameters_schema_is_comfyuis() {
    assert_eq!(
        object_info("GetICLoRAParameters"),
        json!({
            "input": {"required": {"iclora_model": ["MODEL"]}},
            "input_order": {"required": ["iclora_model"]},
            "output": ["IC_LORA_PARAMETERS"],
            "output_name": ["iclora_parameters"],
            "category": "model/conditioning/ltxv",
        })
    );
}

/// A LoRA file in `models/loras` with one tensor that matches no layer and `metadata`.
fn write_lora(root: &std::path::Path, name: &str, metadata: &[(&str, &str)]) {
    let folder = root.join("models/loras");
    std::fs::create_dir_all(&folder).unwrap();
    let data = vec![0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &data).unwrap();
    let metadata = (!metadata.is_empty())
        .then(|| metadata.iter().map(|(key, value)| ((*key).to_string(), (*value).to_string())).collect());
    safetensors::serialize_to_file([("unrelated.lora_A.weight", view)], metadata, &folder.join(name)).unwrap();
}

/// The factor comes from the metadata of the last LoRA applied whose file has metadata, as ComfyUI's
/// `lora_metadata` attachment: a later LoRA without metadata passes it on, one with metadata replaces it.
#[test]
fn get_iclora_parameters_reads_the_last_lora_metadata() {
    use kinograph_nodes::values::IcLoraParameters;
    let root = tempfile::tempdir().unwrap();
    kinograph_nodes::demo::write_demo_models(&root.path().join("models")).unwrap();
    write_lora(root.path(), "ic_x2.safetensors", &[("reference_downscale_factor", "2")]);
    write_lora(root.path(), "plain.safetensors", &[]);
    write_lora(root.path(), "other.safetensors", &[("ss_network_dim", "16")]);
    write_lora(root.path(), "broken.safetensors", &[("reference_downscale_factor", "inf")]);
    let env = Environment {
        output_dir: root.path().join("output"),
        input_dir: root.path().join("input"),
        models: kinograph_engine::ModelFolders::new(root.path().join("models")),
    };
    let try_run = |class: &str, pairs: Vec<(&str, Value)>| {
        let registry = kinograph_nodes::registry();
        let context = ExecutionContext::detached("1", class, env.clone());
        registry.get(class).unwrap().execute(&inputs(pairs), &context).map(|mut out| out.values.remove(0))
    };
    let run_in = |class: &str, pairs: Vec<(&str, Value)>| try_run(class, pairs).unwrap();
    let base =
        run_in("CheckpointLoaderSimple", vec![("ckpt_name", Value::from(kinograph_nodes::demo::DEMO_CHECKPOINT))]);
    let lora = |model: Value, name: &str| {
        run_in(
            "LoraLoaderModelOnly",
            vec![("model", model), ("lora_name", Value::from(name)), ("strength_model", Value::Float(1.0))],
        )
    };
    let factor = |model: &Value| {
        let out = run_in("GetICLoRAParameters", vec![("iclora_model", model.clone())]);
        out.downcast::<IcLoraParameters>().expect("IC_LORA_PARAMETERS").reference_downscale_factor
    };
    assert_eq!(factor(&base), 1, "no LoRA");
    let ic = lora(base.clone(), "ic_x2.safetensors");
    assert_eq!(factor(&ic), 2);
    assert_eq!(factor(&lora(ic.clone(), "plain.safetensors")), 2, "a LoRA without metadata passes it on");
    assert_eq!(factor(&lora(ic, "other.safetensors")), 1, "a LoRA with other metadata replaces it");
    // An infinite factor is an error naming the input and the file (ComfyUI raises on it too).
    let broken = lora(base, "broken.safetensors");
    let Err(error) = try_run("GetICLoRAParameters", vec![("iclora_model", broken)]) else {
        panic!("an infinite factor must fail")
    };
    let text = error.to_string();
    assert!(
        text.contains("'iclora_model'") && text.contains("broken.safetensors") && text.contains("finite"),
        "{text}"
    );
}

/// `LTXVAddGuide` takes `GetICLoRAParameters`' output: a factor of 1 changes nothing; a factor of 2 encodes the
/// guide at half size and dilates it onto the latent's grid (empty cells zero, their noise mask below 0); a
/// factor that does not divide the latent's size is refused naming the input.
#[test]
fn ltxv_add_guide_takes_iclora_parameters() {
    use kinograph_nodes::values::{IcLoraParameters, Image, Latent};
    let models = DemoModels::ltxv();
    let int = |value: i64| Value::Int(value.into());
    let mut loaded =
        models.run("CheckpointLoaderSimple", vec![("ckpt_name", Value::from(kinograph_nodes::demo::DEMO_CHECKPOINT))]);
    let vae = loaded.remove(2);
    let clip = models
        .run(
            "CLIPLoader",
            vec![
                ("clip_name", Value::from(kinograph_nodes::demo::DEMO_TEXT_ENCODER)),
                ("type", Value::from("ltxv")),
                ("device", Value::from("default")),
            ],
        )
        .remove(0);
    let text = models.run("CLIPTextEncode", vec![("text", Value::from("a fox")), ("clip", clip)]).remove(0);
    let latent = models
        .run(
            "EmptyLTXVLatentVideo",
            vec![("width", int(64)), ("height", int(64)), ("length", int(17)), ("batch_size", int(1))],
        )
        .remove(0);
    let pixels = Tensor::rand(0f32, 1.0, (1, 64, 64, 3), &Device::Cpu).unwrap();
    let image = Value::Object(Arc::new(Image::new(pixels)));
    let guide = |parameters: Option<i64>| {
        let mut pairs = vec![
            ("positive", text.clone()),
            ("negative", text.clone()),
            ("vae", vae.clone()),
            ("latent", latent.clone()),
            ("image", image.clone()),
            ("frame_idx", int(0)),
            ("strength", Value::Float(1.0)),
        ];
        if let Some(factor) = parameters {
            let value = IcLoraParameters { reference_downscale_factor: factor };
            pairs.push(("iclora_parameters", Value::Object(Arc::new(value))));
        }
        let registry = kinograph_nodes::registry();
        let context = ExecutionContext::detached("1", "LTXVAddGuide", models.env.clone());
        registry.get("LTXVAddGuide").unwrap().execute(&inputs(pairs), &context)
    };
    let samples = |out: &NodeOutput| -> Vec<f32> {
        let latent = out.values[2].downcast::<Latent>().unwrap();
        latent.samples.flatten_all().unwrap().to_vec1().unwrap()
    };
    let plain = samples(&guide(None).unwrap());
    assert_eq!(samples(&guide(Some(1)).unwrap()), plain);
    // The 64 × 64 latent is 2 × 2 cells: at factor 2 the guide is one cell, at row 0, column 0.
    let dilated = guide(Some(2)).unwrap();
    let latent = dilated.values[2].downcast::<Latent>().unwrap();
    let appended = latent.samples.narrow(2, 3, 1).unwrap();
    let cells: Vec<f32> = appended.abs().unwrap().sum((0, 1, 2)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(cells[0] > 0.0 && cells[1..].iter().all(|&c| c == 0.0), "only the first cell holds the guide: {cells:?}");
    let mask: Vec<f32> =
        latent.noise_mask.as_ref().unwrap().narrow(2, 3, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(mask, [0.0, -2.0, -2.0, -2.0]);
    let Err(error) = guide(Some(3)) else { panic!("a factor of 3 must be refused") };
    let text = error.to_string();
    assert!(text.contains("'iclora_parameters'") && text.contains("reference_downscale_factor 3"), "{text}");
}
