//! The LTX-Video 0.9.7 / 0.9.8 single-file layout (bfloat16, the causal temporal positioning flag, the
//! 0.9.5-type VAE with its timestep-conditioned decoder, the 13B's wider heads) on tiny checkpoints, run as
//! ComfyUI users run the dev and distilled models, against ComfyUI's own code
//! (`tools/fixtures/make_ltxv098_fixtures.py`): the latent within 1e-4, the frames within 1/255.

use super::ltxv_reference::run_against_reference;

#[test]
fn thirteen_b_layout_dev_text_to_video_matches_comfyui() {
    run_against_reference("ltxv_098_13b_t2v.json", "ltxv_098_13b_t2v.safetensors", ("72", 0));
}

#[test]
fn distilled_image_to_video_with_a_guide_matches_comfyui() {
    run_against_reference("ltxv_098_distilled_i2v.json", "ltxv_098_distilled_i2v.safetensors", ("74", 2));
}

/// The tensors of the 13B transformer (0.9.7/0.9.8) in a ComfyUI single file, with their shapes.
fn thirteen_b_tensors() -> Vec<(String, Vec<usize>)> {
    let (d, caption, channels) = (4096, 4096, 128);
    let mut tensors = vec![
        ("patchify_proj.weight".to_string(), vec![d, channels]),
        ("patchify_proj.bias".into(), vec![d]),
        ("adaln_single.emb.timestep_embedder.linear_1.weight".into(), vec![d, 256]),
        ("adaln_single.emb.timestep_embedder.linear_1.bias".into(), vec![d]),
        ("adaln_single.emb.timestep_embedder.linear_2.weight".into(), vec![d, d]),
        ("adaln_single.emb.timestep_embedder.linear_2.bias".into(), vec![d]),
        ("adaln_single.linear.weight".into(), vec![6 * d, d]),
        ("adaln_single.linear.bias".into(), vec![6 * d]),
        ("caption_projection.linear_1.weight".into(), vec![d, caption]),
        ("caption_projection.linear_1.bias".into(), vec![d]),
        ("caption_projection.linear_2.weight".into(), vec![d, d]),
        ("caption_projection.linear_2.bias".into(), vec![d]),
        ("scale_shift_table".into(), vec![2, d]),
        ("proj_out.weight".into(), vec![channels, d]),
        ("proj_out.bias".into(), vec![channels]),
    ];
    for block in 0..48 {
        let name = |rest: &str| format!("transformer_blocks.{block}.{rest}");
        tensors.push((name("scale_shift_table"), vec![6, d]));
        for attention in ["attn1", "attn2"] {
            for projection in ["to_q", "to_k", "to_v", "to_out.0"] {
                tensors.push((name(&format!("{attention}.{projection}.weight")), vec![d, d]));
                tensors.push((name(&format!("{attention}.{projection}.bias")), vec![d]));
            }
            tensors.push((name(&format!("{attention}.q_norm.weight")), vec![d]));
            tensors.push((name(&format!("{attention}.k_norm.weight")), vec![d]));
        }
        tensors.push((name("ff.net.0.proj.weight"), vec![4 * d, d]));
        tensors.push((name("ff.net.0.proj.bias"), vec![4 * d]));
        tensors.push((name("ff.net.2.weight"), vec![d, 4 * d]));
        tensors.push((name("ff.net.2.bias"), vec![d]));
    }
    tensors
}

/// A bfloat16 13B single file whose data is a hole (a sparse file: 26 GB long, nothing on disk), with the
/// release's transformer config in its metadata.
fn sparse_thirteen_b(folder: &std::path::Path) -> std::path::PathBuf {
    let mut header = serde_json::Map::new();
    let config = serde_json::json!({"transformer": {"num_attention_heads": 32, "attention_head_dim": 128,
        "cross_attention_dim": 4096, "caption_channels": 4096, "num_layers": 48, "in_channels": 128,
        "out_channels": 128, "causal_temporal_positioning": true, "norm_eps": 1e-6,
        "positional_embedding_theta": 10000.0, "positional_embedding_max_pos": [20, 2048, 2048],
        "timestep_scale_multiplier": 1000}});
    header.insert("__metadata__".into(), serde_json::json!({"config": config.to_string()}));
    let mut offset = 0usize;
    for (name, shape) in thirteen_b_tensors() {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(
            format!("model.diffusion_model.{name}"),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let path = folder.join("ltxv-13b-0.9.8-dev.safetensors");
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len((bytes.len() + offset) as u64).unwrap();
    path
}

#[test]
fn a_13b_single_file_is_read_as_the_13b_streamed_where_it_does_not_fit_and_refused_where_not_even_that_does() {
    use kinograph_models::ltxv::transformer::{detect_layout, read_config};
    use kinograph_models::weights::WeightSource;
    let folder = tempfile::tempdir().unwrap();
    let models = folder.path().join("models/diffusion_models");
    std::fs::create_dir_all(&models).unwrap();
    let path = sparse_thirteen_b(&models);

    let source = WeightSource::open(&[&path]).unwrap();
    let config = read_config(&source, &detect_layout(&source).unwrap()).unwrap();
    assert_eq!((config.num_layers, config.num_attention_heads, config.attention_head_dim), (48, 32, 128));
    assert_eq!(config.cross_attention_dim, 4096);
    assert!(config.causal_temporal_positioning);

    let prompt = serde_json::json!({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "ltxv-13b-0.9.8-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
    });
    let file = folder.path().join("load.json");
    std::fs::write(&file, prompt.to_string()).unwrap();
    let run = |limit: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kinograph"))
            .args(["run", file.to_str().unwrap(), "--models-dir"])
            .arg(folder.path().join("models"))
            .arg("--output-dir")
            .arg(folder.path().join("output"))
            .env("KINOGRAPH_MEMORY_LIMIT", limit)
            .env("KINOGRAPH_LOG", "info")
            .output()
            .unwrap()
    };
    // 13.0 billion parameters are 52 GB in float32: on a 24 GB machine the blocks stream from the file.
    let output = run("24G");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("streaming the transformer's blocks from the file (52.2 GB resident would not fit"),
        "{stderr}"
    );
    // What stays (0.6 GB) and two blocks in flight (1.1 GB each) do not fit in 2 GB: refused before any block
    // is read.
    let output = run("2G");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unet_name") && stderr.contains("even with its blocks streamed from the file"), "{stderr}");
}
