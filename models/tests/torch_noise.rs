//! Seed-exact noise: `prepare_noise` against values torch produced (fixtures from
//! `tools/fixtures/make_ltxv_fixtures.py`, file `noise/torch_randn.safetensors`).
//!
//! Tolerance: 1e-6 absolute. The float32 fill path uses torch's vectorised log/sin/cos, which can
//! differ from correctly rounded maths by a few ULP; the serial path (fewer than 16 values) is exact.

use kinograph_models::sampling::torch_noise::{TorchGenerator, prepare_noise};
use safetensors::SafeTensors;

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ltxv/noise/torch_randn.safetensors")).unwrap()
}

fn floats(file: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let view = file.tensor(name).unwrap_or_else(|_| panic!("fixture has {name}"));
    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn assert_close(name: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{name}: length");
    for (index, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a - b).abs() <= 1e-6, "{name}[{index}]: ours {a}, torch {b}");
    }
}

#[test]
fn every_seed_and_shape_matches_torch() {
    let bytes = fixture();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for name in file.names() {
        let Some(rest) = name.strip_prefix("seed") else { continue };
        let Some((seed, shape)) = rest.split_once(".shape") else { continue };
        if shape.contains('.') {
            continue; // the template head/tail, checked below
        }
        let seed: i128 = seed.parse().unwrap();
        let shape: Vec<usize> = shape.split('x').map(|d| d.parse().unwrap()).collect();
        let expected = floats(&file, name);
        let ours = prepare_noise(seed, &shape, None);
        if expected.len() < 16 {
            assert_eq!(ours, expected, "{name}: the serial path is exact");
        } else {
            assert_close(name, &ours, &expected);
        }
        checked += 1;
    }
    assert_eq!(checked, 8 * 11, "8 seeds × 11 shapes");
}

#[test]
fn the_text_to_video_template_noise_matches_at_both_ends() {
    let bytes = fixture();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let ours = prepare_noise(497_797_676_867_141, &[1, 128, 13, 16, 24], None);
    assert_eq!(ours.len(), 638_976);
    assert_close("head", &ours[..1024], &floats(&file, "seed497797676867141.shape1x128x13x16x24.head"));
    assert_close("tail", &ours[ours.len() - 1024..], &floats(&file, "seed497797676867141.shape1x128x13x16x24.tail"));
}

#[test]
fn consecutive_draws_share_the_serial_cache() {
    let bytes = fixture();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut generator = TorchGenerator::new(7);
    for (draw, count) in [3, 16, 1, 20, 5, 2].into_iter().enumerate() {
        let name = format!("sequence_seed7.draw{draw}");
        let expected = floats(&file, &name);
        let ours = generator.randn(count);
        assert_close(&name, &ours, &expected);
    }
}

#[test]
fn batch_index_draws_one_item_per_index() {
    let bytes = fixture();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let ours = prepare_noise(42, &[2, 8, 3, 5, 7], Some(&[3, 1]));
    assert_close("batch_index", &ours, &floats(&file, "batch_index_seed42.shape2x8x3x5x7.inds3_1"));
}

#[test]
fn seeds_agreeing_in_their_low_32_bits_give_the_same_noise() {
    assert_eq!(prepare_noise(1 << 32, &[40], None), prepare_noise(0, &[40], None));
    assert_eq!(prepare_noise(497_797_676_867_141, &[40], None), prepare_noise(2_377_326_149, &[40], None));
    assert_eq!(prepare_noise(-1, &[40], None), prepare_noise(i128::from(u64::MAX), &[40], None));
}
