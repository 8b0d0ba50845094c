//! Loading errors, random weights, input checks and band subsets.

mod common;

use std::collections::HashMap;

use common::{inputs, max_abs_diff, read, weights};
use tch::{Device, Kind, Tensor};
use terrastream_model::{Config, Error, Merge, Modality, TerraMind};

const MODS: [Modality; 2] = [Modality::S2L2A, Modality::S1GRD];

#[test]
fn missing_and_misshaped_keys_are_all_named() {
    let mut tensors: HashMap<String, Tensor> = read("weights.safetensors");
    tensors.remove("encoder.3.attn.qkv.weight");
    tensors.remove("encoder_embeddings.untok_sen1grd@224.mod_emb");
    tensors.insert(
        "encoder_norm.weight".into(),
        Tensor::zeros([191], (Kind::Float, Device::Cpu)),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.safetensors");
    let list: Vec<(String, Tensor)> = tensors.into_iter().collect();
    Tensor::write_safetensors(&list, &path).expect("write");

    let err = TerraMind::load(&Config::tiny(), &MODS, &path, Device::Cpu).expect_err("must fail");
    let msg = err.to_string();
    println!("{msg}");
    match &err {
        Error::Checkpoint {
            missing,
            mismatched,
            ..
        } => {
            assert_eq!(
                missing,
                &[
                    "encoder.3.attn.qkv.weight",
                    "encoder_embeddings.untok_sen1grd@224.mod_emb"
                ]
            );
            assert_eq!(mismatched.len(), 1);
            assert_eq!(mismatched[0].key, "encoder_norm.weight");
            assert_eq!(mismatched[0].expected, [192]);
            assert_eq!(mismatched[0].found, [191]);
        }
        other => panic!("unexpected error {other}"),
    }
    for key in [
        "encoder.3.attn.qkv.weight",
        "untok_sen1grd@224.mod_emb",
        "encoder_norm.weight",
        "[191]",
    ] {
        assert!(msg.contains(key), "{key} not in {msg}");
    }
}

#[test]
fn missing_file_and_unknown_format() {
    let err = TerraMind::load(
        &Config::tiny(),
        &MODS,
        "/nonexistent/w.safetensors",
        Device::Cpu,
    );
    assert!(matches!(err, Err(Error::Io { .. })));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.onnx");
    std::fs::write(&path, b"x").expect("write");
    let err = TerraMind::load(&Config::tiny(), &MODS, &path, Device::Cpu);
    assert!(matches!(err, Err(Error::UnknownFormat { .. })));
}

#[test]
fn extra_keys_are_ignored_and_only_needed_keys_created() {
    let s2_only =
        TerraMind::load(&Config::tiny(), &[Modality::S2L2A], weights(), Device::Cpu).expect("load");
    let keys = s2_only.keys();
    assert_eq!(keys.len(), 3 + 12 * 12 + 2);
    assert!(
        keys.iter()
            .all(|k| !k.contains("sen1grd") && !k.starts_with("decoder"))
    );
    let with_tim =
        TerraMind::random_with_tim(&Config::tiny(), &MODS, &[Modality::LULC], 0, Device::Cpu)
            .expect("random");
    let file = read("weights.safetensors");
    let mut fixture_keys: Vec<String> = file
        .keys()
        .filter(|k| !k.ends_with("decoder_embeddings.tok_lulc@224.token_emb.weight"))
        .cloned()
        .collect();
    fixture_keys.sort();
    assert_eq!(
        with_tim.keys(),
        fixture_keys,
        "TiM model keys = fixture keys minus the tied token_emb"
    );
}

#[test]
fn random_weights_are_deterministic_per_seed() {
    let inputs = inputs();
    let a = TerraMind::random(&Config::tiny(), &MODS, 1, Device::Cpu).expect("random");
    let b = TerraMind::random(&Config::tiny(), &MODS, 1, Device::Cpu).expect("random");
    let c = TerraMind::random(&Config::tiny(), &MODS, 2, Device::Cpu).expect("random");
    let (ea, eb, ec) = [&a, &b, &c]
        .map(|m| m.embed_pooled(&inputs).expect("embed"))
        .into();
    assert_eq!(max_abs_diff(&ea, &eb), 0.0);
    assert!(max_abs_diff(&ea, &ec) > 1e-3);
    // The scales follow the fixture README: LayerNorm weights around 1, Linear std 1/sqrt(fan_in).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("random.safetensors");
    a.save_safetensors(&path).expect("save");
    let t: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .expect("read")
        .into_iter()
        .collect();
    let qkv = &t["encoder.0.attn.qkv.weight"];
    assert!((qkv.std(true).double_value(&[]) - 1.0 / 192f64.sqrt()).abs() < 0.005);
    assert!(
        (t["encoder.0.norm1.weight"]
            .mean(Kind::Float)
            .double_value(&[])
            - 1.0)
            .abs()
            < 0.05
    );
    assert_eq!(t["encoder.0.norm1.bias"].abs().max().double_value(&[]), 0.0);
    // A saved random model loads back to the same outputs.
    let back = TerraMind::load(&Config::tiny(), &MODS, &path, Device::Cpu).expect("load");
    assert_eq!(
        max_abs_diff(&back.embed_pooled(&inputs).expect("embed"), &ea),
        0.0
    );
}

#[test]
fn non_square_chips() {
    let model = TerraMind::random(&Config::tiny(), &MODS, 0, Device::Cpu).expect("random");
    let s2 = Tensor::randn([1, 12, 224, 320], (Kind::Float, Device::Cpu));
    let s1 = Tensor::randn([1, 2, 224, 320], (Kind::Float, Device::Cpu));
    let inputs = [(Modality::S2L2A, s2), (Modality::S1GRD, s1)];
    let layers = model.forward_layers(&inputs).expect("layers");
    assert_eq!(layers.len(), 12);
    assert_eq!(layers[11].size(), [1, 2 * 14 * 20, 192]);
    assert_eq!(
        model.encode(&inputs, Merge::Mean).expect("mean").size(),
        [1, 280, 192]
    );
    assert_eq!(
        model.embed_pooled(&inputs).expect("pooled").size(),
        [1, 192]
    );
    assert_eq!(layers[11].isfinite().all().int64_value(&[]), 1);
}

#[test]
fn input_errors() {
    let model =
        TerraMind::random(&Config::tiny(), &[Modality::S2L2A], 0, Device::Cpu).expect("random");
    let f = (Kind::Float, Device::Cpu);
    let run = |inputs: &[(Modality, Tensor)]| model.embed_pooled(inputs);
    assert!(matches!(
        run(&[(Modality::S2L2A, Tensor::zeros([1, 12, 200, 224], f))]),
        Err(Error::ChipSize { h: 200, w: 224 })
    ));
    assert!(matches!(
        run(&[(Modality::S2L2A, Tensor::zeros([1, 11, 224, 224], f))]),
        Err(Error::InputShape { .. })
    ));
    assert!(matches!(
        run(&[(Modality::S1GRD, Tensor::zeros([1, 2, 224, 224], f))]),
        Err(Error::NotBuilt { .. })
    ));
    assert!(matches!(run(&[]), Err(Error::NoInputs)));
    let two = TerraMind::random(&Config::tiny(), &MODS, 0, Device::Cpu).expect("random");
    let err = two.embed_pooled(&[
        (Modality::S2L2A, Tensor::zeros([1, 12, 224, 224], f)),
        (Modality::S1GRD, Tensor::zeros([1, 2, 224, 240], f)),
    ]);
    assert!(matches!(err, Err(Error::GridMismatch { .. })));
    let err = two.embed_pooled(&[
        (Modality::S2L2A, Tensor::zeros([1, 12, 224, 224], f)),
        (Modality::S1GRD, Tensor::zeros([2, 2, 224, 224], f)),
    ]);
    assert!(matches!(err, Err(Error::InputShape { .. })));
}

#[test]
fn band_subsets_take_matching_projection_columns() {
    let full = common::tiny(&[]);
    let inputs = inputs();
    let s2 = &inputs[0].1;
    // Zero every band but RED, GREEN, BLUE, NIR_BROAD (indices 3, 2, 1, 7): the full model on that
    // input must equal the subset model on the 4 bands.
    let keep = [3i64, 2, 1, 7];
    let mask = Tensor::zeros([1, 12, 1, 1], (Kind::Float, Device::Cpu));
    for &i in &keep {
        let _ = mask.narrow(1, i, 1).fill_(1.0);
    }
    let masked = s2 * &mask;
    let subset = s2.index_select(1, &Tensor::from_slice(&keep));
    let sub = common::tiny(&[])
        .with_bands(Modality::S2L2A, &["RED", "B03", "blue", "NIR_BROAD"])
        .expect("bands");
    assert_eq!(sub.channels(Modality::S2L2A), Some(4));
    let a = full
        .encode(&[(Modality::S2L2A, masked)], Merge::Mean)
        .expect("full");
    let b = sub
        .encode(&[(Modality::S2L2A, subset)], Merge::Mean)
        .expect("subset");
    assert!(max_abs_diff(&a, &b) < 1e-4);
    assert!(matches!(
        common::tiny(&[]).with_bands(Modality::S2L2A, &["CIRRUS"]),
        Err(Error::UnknownBand { .. })
    ));
}
