//! Sigma schedules against torch float32 (fixtures from `tools/fixtures/make_sampling_fixtures.py`,
//! which follows ComfyUI's `LTXVScheduler` op for op). Tolerance: 1e-6 absolute.

use kinograph_models::sampling::schedules::{LtxvSchedule, linspace_f32};
use serde_json::Value;

#[test]
fn ltxv_scheduler_matches_comfyui_float32() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sampling/ltxv_scheduler.json"))
        .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let schedule = LtxvSchedule {
            steps: case["steps"].as_u64().unwrap() as usize,
            max_shift: case["max_shift"].as_f64().unwrap(),
            base_shift: case["base_shift"].as_f64().unwrap(),
            stretch: case["stretch"].as_bool().unwrap(),
            terminal: case["terminal"].as_f64().unwrap(),
        };
        let tokens = case["tokens"].as_u64().map(|t| t as usize);
        let ours = schedule.sigmas(tokens);
        let theirs: Vec<f64> = case["sigmas"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ours.len(), theirs.len(), "{case}");
        for (index, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!((f64::from(*a) - b).abs() <= 1e-6, "case {case}: sigma {index} is {a}, torch gives {b}");
        }
    }
}

#[test]
fn the_template_schedule_ends_at_the_terminal_then_zero() {
    let schedule = LtxvSchedule { steps: 30, max_shift: 2.05, base_shift: 0.95, stretch: true, terminal: 0.1 };
    let sigmas = schedule.sigmas(Some(13 * 16 * 24));
    assert_eq!(sigmas.len(), 31);
    assert_eq!(sigmas[0], 1.0);
    assert!((sigmas[29] - 0.1).abs() < 1e-6);
    assert_eq!(sigmas[30], 0.0);
    assert!(sigmas.windows(2).all(|pair| pair[0] > pair[1]), "strictly decreasing");
    assert!((schedule.shift(4992) - 2.370_833).abs() < 1e-6);
}

#[test]
fn a_single_step_is_not_stretched_into_nan() {
    let schedule = LtxvSchedule { steps: 1, max_shift: 2.05, base_shift: 0.95, stretch: true, terminal: 0.1 };
    for tokens in [None, Some(1024), Some(4992)] {
        let sigmas = schedule.sigmas(tokens);
        assert_eq!(sigmas.len(), 2);
        assert!((sigmas[0] - 0.1).abs() < 1e-6 && sigmas[1] == 0.0, "{tokens:?}: {sigmas:?}");
    }
}

#[test]
fn linspace_matches_torch_at_the_ends() {
    assert_eq!(linspace_f32(1.0, 0.0, 31).last(), Some(&0.0));
    assert_eq!(linspace_f32(1.0, 0.0, 2), vec![1.0, 0.0]);
    assert_eq!(linspace_f32(1.0, 0.0, 1), vec![1.0]);
    assert!(linspace_f32(1.0, 0.0, 0).is_empty());
}

/// `BasicScheduler` / `KSampler` schedules over LTX-Video's flow sigma table (shift 2.37), against
/// ComfyUI's scheduler functions run in torch float32. Tolerance: 1e-6 absolute.
#[test]
fn named_schedulers_match_comfyui_float32() {
    use kinograph_models::sampling::model_schedules::{FlowSampling, SCHEDULER_NAMES, schedule_with_denoise};
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sampling/model_schedules.json"))
            .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let sampling = FlowSampling::new(fixture["shift"].as_f64().unwrap());
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), SCHEDULER_NAMES.len() * 4 - 1);
    for case in cases {
        let name = case["scheduler"].as_str().unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let denoise = case["denoise"].as_f64().unwrap();
        let ours = schedule_with_denoise(&sampling, name, steps, denoise).unwrap();
        let theirs: Vec<f64> = case["sigmas"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ours.len(), theirs.len(), "{name} steps {steps} denoise {denoise}: {ours:?} vs {theirs:?}");
        for (index, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-6,
                "{name} steps {steps} denoise {denoise}: sigma {index} is {a}, torch gives {b}"
            );
        }
    }
    assert!(schedule_with_denoise(&sampling, "no_such", 4, 1.0).is_none());
    assert_eq!(schedule_with_denoise(&sampling, "simple", 4, 0.0), Some(Vec::new()));
    let single = schedule_with_denoise(&sampling, "kl_optimal", 1, 1.0).unwrap();
    assert_eq!(single, vec![sampling.sigma_max(), 0.0]);
}
