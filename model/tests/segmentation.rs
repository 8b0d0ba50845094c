//! Parity of the fine-tuned segmentation decoder and head with terratorch 1.2.11's
//! `FCNDecoder` + `SegmentationHead` (fixture and how to regenerate it:
//! `tests/data/make_segmentation_fixture.py`), and loading a whole fine-tuning checkpoint
//! (encoder under `model.encoder.`, decoder and head under `model.`).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{assert_close, torch_save};
use tch::{Device, Tensor};
use terrastream_model::{Config, Error, Merge, Modality, SegmentationConfig, Segmenter, read_tensors};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/segmentation")
}

fn io() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir().join("io.safetensors"))
        .expect("io.safetensors")
        .into_iter()
        .collect()
}

/// A whole fine-tuning checkpoint: the tiny fixture encoder under `model.encoder.` plus the
/// reference decoder and head of `case`.
fn checkpoint(case: &str, tmp: &tempfile::TempDir) -> PathBuf {
    let mut all: Vec<(String, Tensor)> = read_tensors(common::weights())
        .expect("encoder fixture")
        .into_iter()
        .map(|(k, t)| (format!("model.encoder.{k}"), t))
        .collect();
    all.extend(read_tensors(dir().join(format!("model_{case}.pt"))).expect("decoder fixture"));
    let path = tmp.path().join(format!("finetuned_{case}.pt"));
    torch_save::write(&path, &all);
    path
}

#[test]
fn sizes_come_from_the_checkpoint() {
    let a = SegmentationConfig::from_checkpoint(dir().join("model_a.pt")).expect("case a");
    assert_eq!(a, SegmentationConfig { channels: 16, num_convs: 4, head_channels: vec![], classes: 2 });
    let b = SegmentationConfig::from_checkpoint(dir().join("model_b.pt")).expect("case b");
    assert_eq!(b, SegmentationConfig { channels: 12, num_convs: 3, head_channels: vec![8], classes: 3 });
}

#[test]
fn decoder_and_head_match_terratorch() {
    let io = io();
    let tmp = tempfile::tempdir().expect("tmp");
    for case in ["a", "b"] {
        let seg = Segmenter::load(
            &Config::tiny(),
            &[Modality::S2L2A, Modality::S1GRD],
            checkpoint(case, &tmp),
            Device::Cpu,
        )
        .expect("fine-tuned checkpoint loads");
        let tokens = &io[&format!("{case}.tokens")];
        let expected = &io[&format!("{case}.logits")];
        let got = seg.decode_tokens(tokens, [14, 14], [224, 224]).expect("decode");
        assert_close(&format!("segmentation {case} logits"), &got, expected, 1e-4);
    }
}

#[test]
fn logits_run_the_encoder_then_the_head() {
    let tmp = tempfile::tempdir().expect("tmp");
    let seg = Segmenter::load(&Config::tiny(), &[Modality::S2L2A, Modality::S1GRD], checkpoint("a", &tmp), Device::Cpu)
        .expect("load");
    let inputs = common::inputs();
    let logits = seg.logits(&inputs).expect("logits");
    let (_, _, h, w) = inputs[0].1.size4().expect("4-d input");
    assert_eq!(logits.size(), vec![inputs[0].1.size()[0], 2, h, w]);
    let tokens = seg.encoder().encode(&inputs, Merge::Mean).expect("encode");
    let direct = seg.decode_tokens(&tokens, [h / 16, w / 16], [h, w]).expect("decode");
    assert_close("segmentation end to end", &logits, &direct, 1e-6);
}

#[test]
fn other_decoders_and_missing_keys_are_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A UNet-style decoder: named as unsupported, not half-loaded.
    let unet = tmp.path().join("unet.pt");
    torch_save::write(
        &unet,
        &[
            ("model.decoder.blocks.0.conv1.0.weight".into(), Tensor::zeros([4, 4, 3, 3], (tch::Kind::Float, Device::Cpu))),
            ("model.head.head.2.weight".into(), Tensor::zeros([2, 4, 1, 1], (tch::Kind::Float, Device::Cpu))),
            ("model.head.head.2.bias".into(), Tensor::zeros([2], (tch::Kind::Float, Device::Cpu))),
        ],
    );
    let err = SegmentationConfig::from_checkpoint(&unet).expect_err("unet");
    assert!(err.to_string().contains("FCNDecoder") && err.to_string().contains("unet.pt"), "{err}");
    // The decoder alone, without the encoder: every encoder key is reported missing.
    let err = Segmenter::load(&Config::tiny(), &[Modality::S1GRD], dir().join("model_a.pt"), Device::Cpu)
        .expect_err("no encoder");
    match err {
        Error::Checkpoint { missing, .. } => {
            assert!(missing.iter().any(|k| k.starts_with("encoder.0.")), "{missing:?}")
        }
        other => panic!("expected a checkpoint error, got {other}"),
    }
}

#[test]
fn saved_model_loads_back_equal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let seg_cfg = SegmentationConfig { channels: 8, num_convs: 4, head_channels: vec![6], classes: 2 };
    let a = Segmenter::random(&Config::tiny(), &[Modality::S1GRD], &seg_cfg, 3, Device::Cpu).expect("random");
    let path = tmp.path().join("seg.safetensors");
    a.save_safetensors(&path).expect("save");
    assert_eq!(SegmentationConfig::from_checkpoint(&path).expect("sizes"), seg_cfg);
    let b = Segmenter::load(&Config::tiny(), &[Modality::S1GRD], &path, Device::Cpu).expect("load");
    let x = vec![(Modality::S1GRD, Tensor::randn([1, 2, 64, 96], (tch::Kind::Float, Device::Cpu)))];
    let (la, lb) = (a.logits(&x).expect("a"), b.logits(&x).expect("b"));
    assert_eq!(la.size(), vec![1, 2, 64, 96]);
    assert_close("segmentation save/load", &la, &lb, 0.0);
}
