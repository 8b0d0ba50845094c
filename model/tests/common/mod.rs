//! Shared helpers of the model tests: the parity fixture and tensor comparisons.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;

pub mod torch_save;

use tch::{Device, Tensor};
use terrastream_model::{Config, Modality, TerraMind};

/// `shared/fixtures/terramind/tiny_s2l2a_s1grd_tim_lulc`, found from this crate's directory.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/terramind/tiny_s2l2a_s1grd_tim_lulc")
}

pub fn weights() -> PathBuf {
    fixture_dir().join("weights.safetensors")
}

pub fn read(name: &str) -> HashMap<String, Tensor> {
    let path = fixture_dir().join(name);
    tch::no_grad(|| Tensor::read_safetensors(&path))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// The fixture inputs in their input order (S2L2A, S1GRD).
pub fn inputs() -> Vec<(Modality, Tensor)> {
    let mut t = read("inputs.safetensors");
    [Modality::S2L2A, Modality::S1GRD]
        .into_iter()
        .map(|m| (m, t.remove(m.name()).expect("fixture input")))
        .collect()
}

pub fn tiny(tim: &[Modality]) -> TerraMind {
    TerraMind::load_with_tim(
        &Config::tiny(),
        &[Modality::S2L2A, Modality::S1GRD],
        tim,
        weights(),
        Device::Cpu,
    )
    .expect("loading the fixture weights")
}

/// Largest absolute difference; panics on shape mismatch.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

/// Asserts `|a - b| <= atol` everywhere and prints the maximum under `name`.
pub fn assert_close(name: &str, a: &Tensor, b: &Tensor, atol: f64) -> f64 {
    let d = max_abs_diff(a, b);
    println!("parity {name:<24} max |diff| = {d:.3e}");
    assert!(d <= atol, "{name}: max |diff| {d:e} > {atol:e}");
    d
}
