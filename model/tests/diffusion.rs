//! Parity of the DiVAE tokenizers' diffusion decoder (patched U-Net + DDIM, trailing timesteps,
//! zero terminal SNR, x0 clamp) with the reference (terratorch 1.2.11) on a reduced random S1GRD
//! decoder, from the reference's own start noise. Fixtures and how to regenerate them:
//! `tests/data/make_diffusion_fixtures.py`. Run with `--nocapture` for the maximum differences.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::assert_close;
use tch::{Device, Tensor};
use terrastream_model::{Error, Modality, Tokenizer, TokenizerConfig, TokenizerParts, UNetConfig};

const ATOL: f64 = 1e-4;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/diffusion")
}

fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(dir().join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json parses")
}

fn io() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir().join("io.safetensors"))
        .expect("io.safetensors")
        .into_iter()
        .collect()
}

/// The reduced decoder the fixtures were made with, read from meta.json.
fn reduced() -> TokenizerConfig {
    let r = &meta()["reduced"];
    let int = |k: &str| r[k].as_i64().expect("reduced size");
    let list = |k: &str| -> Vec<i64> {
        r[k].as_array()
            .expect("list")
            .iter()
            .map(|v| v.as_i64().expect("int"))
            .collect()
    };
    let unet = UNetConfig {
        model_channels: int("model_channels"),
        num_res_blocks: int("num_res_blocks") as usize,
        attention_resolutions: list("attention_resolutions"),
        channel_mult: list("channel_mult"),
        patch_size: int("patch_size"),
    };
    TokenizerConfig::v1(Modality::S1GRD)
        .expect("config")
        .with_unet(unet)
}

fn load() -> Tokenizer {
    Tokenizer::load(
        &reduced(),
        TokenizerParts::Decoder,
        dir().join("weights_S1GRD.safetensors"),
        Device::Cpu,
    )
    .expect("load")
}

#[test]
fn one_step_is_the_unet_prediction_clamped() {
    // With one step the sampler returns the U-Net's x0 at t = 999, clamped: this isolates the
    // network (patching, conditioning, blocks, attention) from the sampler.
    let io = io();
    let tok = load();
    let image = tok
        .decode_image_from(&io["ids"], 1, &io["noise"])
        .expect("decode");
    assert_eq!(image.size(), [2, 2, 64, 96]);
    assert_close(
        "U-Net x0 at t=999",
        &image,
        &io["unet_t999"].clamp(-1.0, 1.0),
        ATOL,
    );
    // The fixture is not degenerate: most of the prediction lies inside the clamp.
    let inside = io["unet_t999"]
        .abs()
        .lt(1.0)
        .to_kind(tch::Kind::Float)
        .mean(tch::Kind::Float)
        .double_value(&[]);
    assert!(
        inside > 0.5,
        "only {inside} of the prediction is inside [-1, 1]"
    );
}

#[test]
fn ddim_decode_matches_reference() {
    let io = io();
    let tok = load();
    for steps in [10usize, 3] {
        let image = tok
            .decode_image_from(&io["ids"], steps, &io["noise"])
            .expect("decode");
        assert_close(
            &format!("image, {steps} steps"),
            &image,
            &io[&format!("image_{steps}")],
            ATOL,
        );
    }
    // Different noise gives a different image: the start noise is really used.
    let other = tok
        .decode_image_from(&io["ids"], 10, &io["noise"].neg())
        .expect("decode");
    assert!(common::max_abs_diff(&other, &io["image_10"]) > 0.1);
}

#[test]
fn reads_the_official_key_layout() {
    let meta = meta();
    for m in [
        Modality::S2L2A,
        Modality::S1GRD,
        Modality::S1RTC,
        Modality::DEM,
        Modality::NDVI,
    ] {
        let layout = meta["official_layout"][m.name()]
            .as_object()
            .expect("layout");
        let mut want: Vec<(String, Vec<i64>)> = layout
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_array()
                        .expect("shape")
                        .iter()
                        .map(|d| d.as_i64().expect("dim"))
                        .collect(),
                )
            })
            .collect();
        want.sort();
        let got = Tokenizer::key_shapes(
            &TokenizerConfig::v1(m).expect("config"),
            TokenizerParts::Decoder,
        )
        .expect("build");
        assert_eq!(
            got,
            want,
            "{}: decoder keys and shapes of the official checkpoint",
            m.name()
        );
        println!(
            "layout {:<6} {} decoder keys match the official tokenizer",
            m.name(),
            got.len()
        );
    }
}

#[test]
fn missing_and_misshaped_decoder_keys_are_named() {
    let dir_ = tempfile::tempdir().expect("tempdir");
    let tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(dir().join("weights_S1GRD.safetensors")).expect("weights");
    let broken: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(k, _)| k != "decoder.middle_block.1.qkv.bias")
        .map(|(k, t)| {
            (
                k.clone(),
                if k == "decoder.out.2.weight" {
                    t.narrow(0, 0, 8)
                } else {
                    t.shallow_clone()
                },
            )
        })
        .collect();
    let path = dir_.path().join("broken.safetensors");
    Tensor::write_safetensors(&broken, &path).expect("write");
    let err = Tokenizer::load(&reduced(), TokenizerParts::Decoder, &path, Device::Cpu)
        .expect_err("broken");
    match &err {
        Error::Checkpoint {
            missing,
            mismatched,
            ..
        } => {
            assert_eq!(missing, &["decoder.middle_block.1.qkv.bias"], "{err}");
            assert_eq!(mismatched.len(), 1, "{err}");
            assert_eq!(mismatched[0].key, "decoder.out.2.weight");
        }
        other => panic!("expected a checkpoint error, got {other}"),
    }
}
