//! The image, mask and small utility nodes against ComfyUI's maths (`tests/data/image_ops/`, made by
//! `tools/fixtures/make_image_op_fixtures.py` with torch, PIL, kornia and simpleeval): resizing by every method
//! (torch paths within 1e-5, PIL's 8-bit LANCZOS exactly), Canny's edge map exactly, the math expression's
//! three outputs, and each node's shapes, clamping and errors.

use candle_core::{Device, Tensor};
use kinograph_engine::{ApiPrompt, Environment, ExecutionContext, Executor, NodeInputs, RunOptions, RunStatus, Value};
use kinograph_nodes::values::{Image, Latent, Mask};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/image_ops");
const METHODS: [&str; 5] = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"];

/// A fixture tensor: its shape and values.
type Fixture = (Vec<usize>, Vec<f32>);

/// Every tensor of `image_ops.safetensors`.
fn fixtures() -> &'static HashMap<String, Fixture> {
    static FIXTURES: OnceLock<HashMap<String, Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let bytes = std::fs::read(format!("{DATA}/image_ops.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        file.tensors()
            .into_iter()
            .map(|(name, view)| {
                let values =
                    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                (name, (view.shape().to_vec(), values))
            })
            .collect()
    })
}

fn fixture(name: &str) -> &'static Fixture {
    fixtures().get(name).unwrap_or_else(|| panic!("no fixture '{name}'"))
}

fn fixture_tensor(name: &str) -> Tensor {
    let (shape, values) = fixture(name);
    Tensor::from_vec(values.clone(), shape.as_slice(), &Device::Cpu).unwrap()
}

fn image(name: &str) -> Value {
    Value::Object(Arc::new(Image::new(fixture_tensor(name))))
}

fn mask(name: &str) -> Value {
    Value::Object(Arc::new(Mask { values: fixture_tensor(name) }))
}

fn inputs(pairs: Vec<(&str, Value)>) -> NodeInputs {
    let mut inputs = NodeInputs::default();
    for (name, value) in pairs {
        inputs.insert(name, value);
    }
    inputs
}

fn run(class: &str, pairs: Vec<(&str, Value)>) -> Result<kinograph_engine::NodeOutput, kinograph_engine::NodeError> {
    let registry = kinograph_nodes::registry();
    let node = registry.get(class).unwrap_or_else(|| panic!("{class} is not registered"));
    node.execute(&inputs(pairs), &ExecutionContext::detached("1", class, Environment::default()))
}

fn tensor_of(value: &Value) -> Tensor {
    if let Some(image) = value.downcast::<Image>() {
        return image.pixels.clone();
    }
    value.downcast::<Mask>().expect("an IMAGE or a MASK").values.clone()
}

/// Asserts `value` has the fixture's shape and values within `tolerance`.
fn assert_matches(value: &Value, name: &str, tolerance: f32) {
    let tensor = tensor_of(value);
    let (shape, expected) = fixture(name);
    assert_eq!(tensor.dims(), shape.as_slice(), "{name}: shape");
    let actual: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
    let worst = actual.iter().zip(expected).map(|(a, e)| (a - e).abs()).fold(0f32, f32::max);
    assert!(worst <= tolerance, "{name}: largest difference {worst} > {tolerance}");
}

/// 1e-5 for torch's float32 paths; lanczos goes through bytes, so it must match exactly.
fn tolerance(method: &str) -> f32 {
    if method == "lanczos" { 0.0 } else { 1e-5 }
}

fn scale(image_value: Value, method: &str, (height, width): (i64, i64), crop: &str) -> Value {
    let pairs = vec![
        ("image", image_value),
        ("upscale_method", Value::from(method)),
        ("width", Value::Int(width.into())),
        ("height", Value::Int(height.into())),
        ("crop", Value::from(crop)),
    ];
    run("ImageScale", pairs).unwrap().values.remove(0)
}

#[test]
fn image_scale_matches_torch_and_pil_for_every_method() {
    for method in METHODS {
        for size in [(12, 16), (4, 5), (10, 4), (7, 9)] {
            let out = scale(image("input/rgb"), method, size, "disabled");
            assert_matches(&out, &format!("scale/{method}/{}x{}", size.0, size.1), tolerance(method));
        }
        for (size, name) in [((6, 6), "6x6"), ((5, 11), "5x11")] {
            let out = scale(image("input/rgb"), method, size, "center");
            assert_matches(&out, &format!("scale_center/{method}/{name}"), tolerance(method));
        }
        // RGBA goes through PIL premultiplied by alpha; a fully transparent row must not bleed.
        assert_matches(
            &scale(image("input/rgba"), method, (9, 7), "disabled"),
            &format!("rgba/{method}/9x7"),
            tolerance(method),
        );
    }
}

#[test]
fn image_scale_keeps_the_aspect_for_a_zero_side_and_passes_through_for_two() {
    let out = scale(image("input/rgb"), "bilinear", (0, 18), "disabled");
    // 7 × 18 / 9 = 14.
    assert_eq!(tensor_of(&out).dims(), [2, 14, 18, 3]);
    let out = scale(image("input/rgb"), "bilinear", (0, 0), "disabled");
    assert_matches(&out, "input/rgb", 0.0);
}

#[test]
fn image_scale_by_rounds_half_to_even_and_rejects_an_empty_result() {
    let run_by = |factor: f64| {
        let pairs = vec![
            ("image", image("input/rgb")),
            ("upscale_method", Value::from("area")),
            ("scale_by", Value::Float(factor)),
        ];
        run("ImageScaleBy", pairs)
    };
    // 7 × 1.5 = 10.5 → 10 and 9 × 1.5 = 13.5 → 14, as Python's round.
    assert_eq!(tensor_of(&run_by(1.5).unwrap().values[0]).dims(), [2, 10, 14, 3]);
    let error = run_by(0.01).unwrap_err().to_string();
    assert!(error.contains("scale_by") && error.contains("at least 1 pixel"), "{error}");
}

#[test]
fn scale_to_max_dimension_matches_the_fixture_size() {
    for method in METHODS {
        let pairs = vec![
            ("image", image("input/rgb")),
            ("upscale_method", Value::from(method)),
            ("largest_size", Value::Int(16)),
        ];
        // 9 wide → 16; 7 high → round(7 / 9 · 16) = 12.
        let out = run("ImageScaleToMaxDimension", pairs).unwrap().values.remove(0);
        assert_matches(&out, &format!("scale/{method}/12x16"), tolerance(method));
    }
}

#[test]
fn resize_images_by_longer_edge_matches_pil() {
    let resize = |name: &str, edge: i64| {
        run("ResizeImagesByLongerEdge", vec![("images", image(name)), ("longer_edge", Value::Int(edge.into()))])
    };
    assert_matches(&resize("input/rgb", 13).unwrap().values[0], "longer_edge/rgb/13", 0.0);
    // 11 × 4 → 6 × 2 shrinks both sides, where Pillow 13 may resample vertically first: one level apart at most.
    assert_matches(&resize("input/tall", 6).unwrap().values[0], "longer_edge/tall/6", 1.0 / 255.0 + 1e-6);
    // 4 wide at a longer edge of 2 on an 11-high image truncates to 0 columns.
    let error = resize("input/tall", 2).unwrap_err().to_string();
    assert!(error.contains("longer_edge"), "{error}");
}

#[test]
fn resize_and_pad_matches_comfyui() {
    for (name, (height, width), color, method) in [
        ("pad/white/lanczos/8x8", (8, 8), "white", "lanczos"),
        ("pad/black/area/5x12", (5, 12), "black", "area"),
        ("pad/white/bilinear/14x18", (14, 18), "white", "bilinear"),
    ] {
        let pairs = vec![
            ("image", image("input/rgb")),
            ("target_width", Value::Int(width)),
            ("target_height", Value::Int(height)),
            ("padding_color", Value::from(color)),
            ("interpolation", Value::from(method)),
        ];
        assert_matches(&run("ResizeAndPadImage", pairs).unwrap().values[0], name, tolerance(method));
    }
}

fn resize_node(input: Value, resize_type: &str, extra: Vec<(&str, Value)>, method: &str) -> Result<Value, String> {
    let mut pairs =
        vec![("input", input), ("resize_type", Value::from(resize_type)), ("scale_method", Value::from(method))];
    pairs.extend(extra);
    run("ResizeImageMaskNode", pairs).map(|mut output| output.values.remove(0)).map_err(|error| error.to_string())
}

#[test]
fn resize_image_mask_resizes_images_and_masks_by_each_rule() {
    for method in METHODS {
        let dims = vec![
            ("resize_type.width", Value::Int(13)),
            ("resize_type.height", Value::Int(5)),
            ("resize_type.crop", Value::from("disabled")),
        ];
        let out = resize_node(mask("input/mask"), "scale dimensions", dims, method).unwrap();
        assert!(out.downcast::<Mask>().is_some(), "a mask stays a mask");
        assert_matches(&out, &format!("mask/{method}/5x13"), tolerance(method));
        let longer = vec![("resize_type.longer_size", Value::Int(16))];
        let out = resize_node(image("input/rgb"), "scale longer dimension", longer, method).unwrap();
        assert_matches(&out, &format!("scale/{method}/12x16"), tolerance(method));
        let centre = vec![
            ("resize_type.width", Value::Int(11)),
            ("resize_type.height", Value::Int(5)),
            ("resize_type.crop", Value::from("center")),
        ];
        let out = resize_node(image("input/rgb"), "scale dimensions", centre, method).unwrap();
        assert_matches(&out, &format!("scale_center/{method}/5x11"), tolerance(method));
    }
    let shape = |resize_type: &str, extra: Vec<(&str, Value)>| {
        tensor_of(&resize_node(image("input/rgb"), resize_type, extra, "area").unwrap()).dims().to_vec()
    };
    assert_eq!(shape("scale by multiplier", vec![("resize_type.multiplier", Value::Float(1.5))]), [2, 10, 14, 3]);
    assert_eq!(shape("scale shorter dimension", vec![("resize_type.shorter_size", Value::Int(14))]), [2, 14, 18, 3]);
    assert_eq!(shape("scale width", vec![("resize_type.width", Value::Int(18))]), [2, 14, 18, 3]);
    assert_eq!(shape("scale height", vec![("resize_type.height", Value::Int(14))]), [2, 14, 18, 3]);
    // int(0.001 · 1024²) = 1048 pixels over 63: scale 4.08 → 29 × 37.
    assert_eq!(shape("scale total pixels", vec![("resize_type.megapixels", Value::Float(0.001))]), [2, 29, 37, 3]);
    // 7 × 9 to a multiple of 4: cover 8 × 8 at the larger factor (8/9 vs 4/7 → 8/9: 7 · 8/9 → ceil 6.2 = 7), crop 4 × 8.
    assert_eq!(shape("scale to multiple", vec![("resize_type.multiple", Value::Int(4))]), [2, 4, 8, 3]);
    let matched = vec![("resize_type.match", mask("input/mask")), ("resize_type.crop", Value::from("disabled"))];
    assert_eq!(
        tensor_of(&resize_node(image("input/tall"), "match size", matched, "bilinear").unwrap()).dims(),
        [1, 7, 9, 3]
    );
    let unchanged = vec![
        ("resize_type.width", Value::Int(0)),
        ("resize_type.height", Value::Int(0)),
        ("resize_type.crop", Value::from("center")),
    ];
    assert_matches(&resize_node(image("input/rgb"), "scale dimensions", unchanged, "area").unwrap(), "input/rgb", 0.0);
}

#[test]
fn resize_image_mask_names_the_missing_or_wrong_input() {
    let error =
        resize_node(image("input/rgb"), "scale dimensions", vec![("resize_type.height", Value::Int(4))], "area")
            .unwrap_err();
    assert!(error.contains("resize_type.width") && error.contains("scale dimensions"), "{error}");
    let error = resize_node(image("input/rgb"), "scale sideways", vec![], "area").unwrap_err();
    assert!(error.contains("resize_type") && error.contains("scale longer dimension"), "{error}");
    let error =
        resize_node(Value::Int(3), "scale width", vec![("resize_type.width", Value::Int(4))], "area").unwrap_err();
    assert!(error.contains("'input'") && error.contains("IMAGE or a MASK"), "{error}");
    let error = resize_node(
        image("input/rgb"),
        "scale longer dimension",
        vec![("resize_type.longer_size", Value::Int(0))],
        "area",
    )
    .unwrap_err();
    assert!(error.contains("resize_type.longer_size"), "{error}");
}

#[test]
fn canny_matches_kornia_edges() {
    for (low, high) in [(0.4, 0.8), (0.1, 0.3), (0.05, 0.99)] {
        let pairs = vec![
            ("image", image("input/canny")),
            ("low_threshold", Value::Float(low)),
            ("high_threshold", Value::Float(high)),
        ];
        let out = run("Canny", pairs).unwrap().values.remove(0);
        assert_matches(&out, &format!("canny/{low}_{high}/edges"), 0.0);
    }
    let expected_edges: f32 = fixture("canny/0.4_0.8/edges").1.iter().sum();
    assert!(expected_edges > 30.0, "the fixture has edges to find");
}

#[test]
fn canny_rejects_crossed_thresholds_and_alpha_images() {
    let run_canny = |image_value: Value, low: f64, high: f64| {
        let pairs =
            vec![("image", image_value), ("low_threshold", Value::Float(low)), ("high_threshold", Value::Float(high))];
        run("Canny", pairs).unwrap_err().to_string()
    };
    let error = run_canny(image("input/canny"), 0.9, 0.2);
    assert!(error.contains("low_threshold") && error.contains("high_threshold"), "{error}");
    let error = run_canny(image("input/rgba"), 0.1, 0.2);
    assert!(error.contains("'image'") && error.contains('4'), "{error}");
}

#[test]
fn empty_image_fills_the_colour() {
    let pairs = vec![
        ("width", Value::Int(3)),
        ("height", Value::Int(2)),
        ("batch_size", Value::Int(2)),
        ("color", Value::Int(0x12_34_56)),
    ];
    let out = run("EmptyImage", pairs).unwrap();
    let pixels = tensor_of(&out.values[0]);
    assert_eq!(pixels.dims(), [2, 2, 3, 3]);
    let values: Vec<f32> = pixels.flatten_all().unwrap().to_vec1().unwrap();
    let expected = [0x12, 0x34, 0x56].map(|v| (f64::from(v) / 255.0) as f32);
    assert!(values.chunks_exact(3).all(|pixel| pixel == expected));
    let pairs = vec![
        ("width", Value::Int(3)),
        ("height", Value::Int(2)),
        ("batch_size", Value::Int(1)),
        ("color", Value::Int(-1)),
    ];
    assert!(run("EmptyImage", pairs).unwrap_err().to_string().contains("color"));
}

fn batch_of(count: usize) -> Value {
    let values: Vec<f32> = (0..count).flat_map(|frame| vec![frame as f32; 2 * 2 * 3]).collect();
    Value::Object(Arc::new(Image::new(Tensor::from_vec(values, (count, 2, 2, 3), &Device::Cpu).unwrap())))
}

fn frame_values(value: &Value) -> Vec<f32> {
    let pixels = tensor_of(value);
    let count = pixels.dims()[0];
    (0..count).map(|i| pixels.get(i).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]).collect()
}

#[test]
fn image_from_batch_clamps_like_comfyui_and_repeat_tiles_the_batch() {
    let take = |index: i64, length: i64| {
        let pairs = vec![
            ("image", batch_of(5)),
            ("batch_index", Value::Int(index.into())),
            ("length", Value::Int(length.into())),
        ];
        frame_values(&run("ImageFromBatch", pairs).unwrap().values[0])
    };
    assert_eq!(take(1, 2), [1.0, 2.0]);
    assert_eq!(take(-2, 4), [3.0, 4.0]);
    assert_eq!(take(9, 3), [4.0]);
    assert_eq!(take(-9, 1), [0.0]);
    let out = run("RepeatImageBatch", vec![("image", batch_of(2)), ("amount", Value::Int(3))]).unwrap();
    assert_eq!(frame_values(&out.values[0]), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
}

#[test]
fn invert_and_image_size() {
    let inverted = run("ImageInvert", vec![("image", image("input/rgb"))]).unwrap().values.remove(0);
    let original: Vec<f32> = fixture("input/rgb").1.clone();
    let values: Vec<f32> = tensor_of(&inverted).flatten_all().unwrap().to_vec1().unwrap();
    assert!(values.iter().zip(&original).all(|(v, o)| *v == 1.0 - o));
    let out = run("GetImageSize", vec![("image", image("input/rgb"))]).unwrap();
    let ints: Vec<String> = out.values.iter().map(Value::display_text).collect();
    assert_eq!(ints, ["9", "7", "2"]);
    assert_eq!(out.ui.unwrap()["text"], json!(["width: 9, height: 7\n batch size: 2"]));
}

#[test]
fn mask_nodes() {
    let red = run("ImageToMask", vec![("image", image("input/rgba")), ("channel", Value::from("alpha"))])
        .unwrap()
        .values
        .remove(0);
    let values = tensor_of(&red);
    assert_eq!(values.dims(), [1, 6, 5]);
    let alpha: Vec<f32> = fixture("input/rgba").1.chunks_exact(4).map(|pixel| pixel[3]).collect();
    assert_eq!(values.flatten_all().unwrap().to_vec1::<f32>().unwrap(), alpha);
    let error = run("ImageToMask", vec![("image", image("input/rgb")), ("channel", Value::from("alpha"))]).unwrap_err();
    assert!(error.to_string().contains("channel"), "{error}");
    let solid =
        run("SolidMask", vec![("value", Value::Float(0.25)), ("width", Value::Int(4)), ("height", Value::Int(3))])
            .unwrap();
    let values = tensor_of(&solid.values[0]);
    assert_eq!(values.dims(), [1, 3, 4]);
    assert!(values.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| *v == 0.25));
}

#[test]
fn set_latent_noise_mask_reshapes_the_mask_as_comfyui_stores_it() {
    let samples = Tensor::zeros((2, 4, 3, 5, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    let latent = Value::Object(Arc::new(Latent::new(samples)));
    let out = run("SetLatentNoiseMask", vec![("samples", latent), ("mask", mask("input/mask"))]).unwrap();
    let latent = out.values[0].downcast::<Latent>().unwrap();
    assert_eq!(latent.noise_mask.as_ref().unwrap().dims(), [2, 1, 7, 9]);
    assert_eq!(latent.samples.dims(), [2, 4, 3, 5, 6]);
}

fn math(expression: &str, values: &serde_json::Map<String, Json>) -> Result<(f64, i128, bool), String> {
    let mut pairs = vec![("expression", Value::from(expression))];
    let names: Vec<String> = values.keys().map(|key| format!("values.{key}")).collect();
    for (name, value) in names.iter().zip(values.values()) {
        let value = match value {
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) if n.is_i64() => Value::Int(n.as_i64().unwrap().into()),
            Json::Number(n) => Value::Float(n.as_f64().unwrap()),
            other => panic!("unexpected fixture value {other}"),
        };
        pairs.push((name.as_str(), value));
    }
    let out = run("ComfyMathExpression", pairs).map_err(|error| error.to_string())?;
    let Value::Float(float) = out.values[0] else { panic!("FLOAT output") };
    let Value::Int(int) = out.values[1] else { panic!("INT output") };
    let boolean = matches!(out.values[2], Value::Bool(true));
    Ok((float, int, boolean))
}

#[test]
fn math_expression_matches_simpleeval() {
    let cases: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(format!("{DATA}/math_expressions.json")).unwrap()).unwrap();
    assert!(cases.len() > 80);
    for case in cases {
        let expression = case["expression"].as_str().unwrap();
        let values = case["values"].as_object().unwrap();
        let result = math(expression, values);
        if let Some(kind) = case.get("error") {
            let error = result.expect_err(&format!("'{expression}' must fail as in ComfyUI ({kind})"));
            assert!(error.contains("'expression'"), "'{expression}': the error names the input: {error}");
            continue;
        }
        let (float, int, boolean) = result.unwrap_or_else(|error| panic!("'{expression}' with {values:?}: {error}"));
        assert_eq!(float, case["float"].as_f64().unwrap(), "'{expression}' FLOAT");
        assert_eq!(int, i128::from(case["int"].as_i64().unwrap()), "'{expression}' INT");
        assert_eq!(boolean, case["bool"].as_bool().unwrap(), "'{expression}' BOOL");
    }
}

#[test]
fn math_expression_errors_say_what_to_fix() {
    let values = json!({"a": 1}).as_object().unwrap().clone();
    let error = math("b * 2", &values).unwrap_err();
    assert!(error.contains("'b' is not defined") && error.contains("values.b"), "{error}");
    let error = math("a +", &values).unwrap_err();
    assert!(error.contains("syntax error at character 4"), "{error}");
    let error = math("pow(a, 9999)", &values).unwrap_err();
    assert!(error.contains("exponent"), "{error}");
}

#[test]
fn resolution_selector_matches_comfyui() {
    let cases: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(format!("{DATA}/resolution_selector.json")).unwrap()).unwrap();
    for case in cases {
        let pairs = vec![
            ("aspect_ratio", Value::from(case["aspect_ratio"].as_str().unwrap())),
            ("megapixels", Value::Float(case["megapixels"].as_f64().unwrap())),
            ("multiple", Value::Int(case["multiple"].as_i64().unwrap().into())),
            ("minimum", Value::Int(case["minimum"].as_i64().unwrap().into())),
        ];
        let out = run("ResolutionSelector", pairs).unwrap();
        let sizes: Vec<String> = out.values.iter().map(Value::display_text).collect();
        assert_eq!(sizes, [case["width"].to_string(), case["height"].to_string()], "{case}");
    }
}

#[test]
fn a_prompt_with_autogrow_and_dynamic_combo_inputs_validates_and_runs() {
    let output = tempfile::tempdir().unwrap();
    let env = Environment { output_dir: output.path().to_path_buf(), ..Environment::default() };
    let executor = Executor::new(Arc::new(kinograph_nodes::registry()), env);
    let workflow = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PrimitiveInt", "inputs": {"value": 40}},
        "3": {"class_type": "ComfyMathExpression", "inputs": {"expression": "a / 2", "values.a": ["2", 0]}},
        "4": {"class_type": "ResizeImageMaskNode", "inputs": {"input": ["1", 0], "resize_type": "scale longer dimension",
            "resize_type.longer_size": ["3", 1], "scale_method": "lanczos"}},
        "5": {"class_type": "GetImageSize", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 1]}}
    });
    let prompt = ApiPrompt::from_json(workflow, "test").unwrap();
    let graph = Arc::new(executor.validate(&prompt).unwrap_or_else(|report| panic!("{}", report.to_text())));
    let outcome = tokio::runtime::Runtime::new().unwrap().block_on(executor.run(graph, RunOptions::default()));
    assert_eq!(outcome.status, RunStatus::Success);
    // Longer side 20 → 20 × 15.
    assert_eq!(outcome.outputs["6"]["text"], json!(["15"]));
}
