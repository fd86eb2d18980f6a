//! MASK values in the disk cache, and noise masks fitted to the latent (`SetLatentNoiseMask`) and applied.

use super::*;

// ---------------------------------------------------------------------------------------------------
// MASK in the disk cache

/// A MASK is written to the disk cache and read back by its registered decoder with its shape and
/// values, as IMAGE and LATENT are (before the decoder was registered, `can_store` said no).
#[test]
fn masks_round_trip_through_the_disk_cache() {
    use kinograph_engine::{CacheEntry, DiskCache, Signature};
    use kinograph_nodes::values::Mask;
    let registry = kinograph_nodes::registry();
    let values = Tensor::from_vec(vec![0.0f32, 0.25, 0.5, 1.0, 0.75, 0.125], (1, 2, 3), &Device::Cpu).unwrap();
    let entry = CacheEntry::new(vec![Value::Object(Arc::new(Mask { values: values.clone() }))], None);
    assert!(DiskCache::can_store(&entry, &registry));
    let folder = tempfile::tempdir().unwrap();
    let disk = DiskCache::open(folder.path(), "test").unwrap();
    let signature = Signature([7; 32]);
    assert!(disk.store(&signature, &entry, &registry).unwrap());
    let loaded = disk.load(&signature, &registry).unwrap().expect("the stored entry");
    let mask = loaded.outputs[0].downcast::<Mask>().expect("a MASK comes back as a MASK");
    assert_eq!(mask.values.dims(), [1, 2, 3]);
    assert_eq!(
        mask.values.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        values.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

/// A stored mask without its tensor is refused by the decoder with a reason, not a panic.
#[test]
fn a_stored_mask_without_its_tensor_is_refused() {
    use kinograph_engine::StoredObject;
    let registry = kinograph_nodes::registry();
    let decoder = registry.decoder(kinograph_nodes::values::MASK_KIND).expect("the MASK decoder is registered");
    let stored = StoredObject { kind: kinograph_nodes::values::MASK_KIND.into(), metadata: json!({}), tensors: vec![] };
    let Err(reason) = decoder(stored) else { panic!("an empty stored mask must be refused") };
    assert!(reason.contains("'values'"), "{reason}");
}

// ---------------------------------------------------------------------------------------------------
// The noise mask fitted to the latent (SetLatentNoiseMask, LTXVImgToVideo) and the masked step

fn f32s(value: &Json) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn usizes(value: &Json) -> Vec<usize> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
}

/// The toy denoiser of the fixture, `(0.6 − 0.4σ)·x + 0.25·tanh(x) + 0.05`, in float32 as torch computes it.
struct ComfyToy;

impl Denoiser for ComfyToy {
    fn denoise(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor, SamplingError> {
        let scale = f64::from(0.6_f32 - 0.4_f32 * sigma as f32);
        Ok((x.affine(scale, 0.05)? + x.tanh()?.affine(0.25, 0.0)?)?)
    }
}

/// Masks fitted to latents as ComfyUI's `prepare_mask` fits them (`tests/data/noise_mask.json`, made with
/// ComfyUI's own code by `tools/fixtures/make_noise_mask_fixtures.py`): pixel masks trilinear to the latent's
/// frames and size, batches of mask frames along time, per-frame masks, channel repeats, batch cut and
/// cycled, audio masks bilinear; and one masked `euler` step through `sample_flow` with the fitted mask.
#[test]
fn noise_masks_are_fitted_and_applied_as_comfyui_does() {
    use kinograph_models::sampling::samplers::{Euler, sample_flow};
    use kinograph_nodes::diffusion::noise_mask::reshape_mask;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/noise_mask.json");
    let fixture: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    let mut stepped = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let shape = usizes(&case["latent_shape"]);
        let mask = Tensor::from_vec(f32s(&case["mask"]), usizes(&case["mask_shape"]), &Device::Cpu).unwrap();
        let fitted = reshape_mask(&mask, &shape).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(fitted.dims(), shape.as_slice(), "{name}");
        let ours: Vec<f32> = fitted.flatten_all().unwrap().to_vec1().unwrap();
        let difference = largest_difference(&ours, &f32s(&case["fitted"]));
        assert!(difference <= 1e-6, "{name}: the fitted mask is off by {difference}");
        if case["step"].is_null() {
            continue;
        }
        let step = &case["step"];
        let tensor = |key: &str| Tensor::from_vec(f32s(&step[key]), shape.as_slice(), &Device::Cpu).unwrap();
        let sigmas: Vec<f64> = f32s(&step["sigmas"]).into_iter().map(f64::from).collect();
        let mut callback = |_: &kinograph_models::sampling::samplers::StepInfo<'_>| Ok(());
        let mut options = SampleOptions { seed: 0, flow_shift: 2.37, callback: &mut callback };
        let output = sample_flow(
            &Euler,
            &mut ComfyToy,
            &tensor("noise"),
            &tensor("latent"),
            &sigmas,
            Some(&fitted),
            &mut options,
        )
        .unwrap();
        let output: Vec<f32> = output.flatten_all().unwrap().to_vec1().unwrap();
        let difference = largest_difference(&output, &f32s(&step["output"]));
        assert!(difference <= 1e-5, "{name}: the masked step is off by {difference}");
        stepped += 1;
    }
    assert_eq!(stepped, 3);
}

/// The pixel-space mask `SetLatentNoiseMask` stores reaches the sampler fitted to the latent: on the tiny
/// LTX-Video model, with the left half of the frame masked 0, the left latent column comes back as the
/// input latent exactly and the right one is generated. (Before the mask was fitted, a `[1, 1, 64, 64]`
/// mask could not be applied to a `[1, 128, 2, 2, 2]` latent at all.)
#[test]
fn set_latent_noise_mask_keeps_the_masked_region_when_sampling() {
    use kinograph_nodes::values::{Latent, Mask};
    let models = DemoModels::ltxv();
    let int = |value: i64| Value::Int(value.into());
    let model = models
        .run("CheckpointLoaderSimple", vec![("ckpt_name", Value::from(kinograph_nodes::demo::DEMO_CHECKPOINT))])
        .remove(0);
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
    let positive =
        models.run("CLIPTextEncode", vec![("text", Value::from("a fox in the snow")), ("clip", clip)]).remove(0);
    let empty = models
        .run(
            "EmptyLTXVLatentVideo",
            vec![("width", int(64)), ("height", int(64)), ("length", int(9)), ("batch_size", int(1))],
        )
        .remove(0);
    // Left half 0 (keep), right half 1 (generate).
    let columns: Vec<f32> = (0..64).map(|column| if column < 32 { 0.0 } else { 1.0 }).collect();
    let mask = Tensor::from_vec(columns.repeat(64), (1, 64, 64), &Device::Cpu).unwrap();
    let masked = models
        .run("SetLatentNoiseMask", vec![("samples", empty), ("mask", Value::Object(Arc::new(Mask { values: mask })))])
        .remove(0);
    let guider = models.run("BasicGuider", vec![("model", model), ("conditioning", positive)]).remove(0);
    let noise = models.run("RandomNoise", vec![("noise_seed", int(5))]).remove(0);
    let sampler = models.run("KSamplerSelect", vec![("sampler_name", Value::from("euler"))]).remove(0);
    let sigmas = models.run("ManualSigmas", vec![("sigmas", Value::from("1.0, 0.5, 0.0"))]).remove(0);
    let out = models
        .run(
            "SamplerCustomAdvanced",
            vec![
                ("noise", noise),
                ("guider", guider),
                ("sampler", sampler),
                ("sigmas", sigmas),
                ("latent_image", masked),
            ],
        )
        .remove(0);
    let samples = &out.downcast::<Latent>().unwrap().samples;
    assert_eq!(samples.dims(), [1, 128, 2, 2, 2]);
    let column =
        |index: usize| -> Vec<f32> { samples.narrow(4, index, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap() };
    assert!(column(0).iter().all(|&value| value == 0.0), "the kept half is the input latent (zeros)");
    assert!(column(1).iter().any(|&value| value.abs() > 1e-3), "the other half is generated");
}
