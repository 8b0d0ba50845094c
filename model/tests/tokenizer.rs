//! Parity of the tokenizers (FSQ encoders of S2L2A, S1GRD, S1RTC, DEM, NDVI, LULC) and of the
//! LULC decoder with the reference (terratorch 1.2.11) on reduced random models. The fixtures
//! and how to regenerate them: `tests/data/make_tokenizer_fixtures.py`. Run with `--nocapture`
//! to see the maximum differences and equal counts.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{assert_close, torch_save};
use tch::{Device, Kind, Tensor};
use terrastream_model::{Error, Modality, TOKENIZED, Tokenizer, TokenizerConfig, TokenizerParts};

const ATOL: f64 = 1e-4;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizers")
}

fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(dir().join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json parses")
}

fn io() -> HashMap<String, Tensor> {
    tch::Tensor::read_safetensors(dir().join("io.safetensors"))
        .expect("io.safetensors")
        .into_iter()
        .collect()
}

/// The reduced configuration the fixtures were made with, read from meta.json.
fn reduced(m: Modality) -> TokenizerConfig {
    let r = &meta()["reduced"];
    let get = |k: &str| r[k].as_i64().expect("reduced size");
    TokenizerConfig::v1(m)
        .expect("tokenizer")
        .with_size(get("dim"), get("depth") as usize, get("heads"))
}

fn weights(m: Modality) -> PathBuf {
    dir().join(format!("weights_{}.safetensors", m.name()))
}

/// What each fixture file holds: only LULC has a ported decoder.
fn parts(m: Modality) -> TokenizerParts {
    if m == Modality::LULC {
        TokenizerParts::Both
    } else {
        TokenizerParts::Encoder
    }
}

fn load(m: Modality) -> Tokenizer {
    Tokenizer::load(&reduced(m), parts(m), weights(m), Device::Cpu).expect("load")
}

/// Asserts equal integer tensors and prints how many entries agree.
fn assert_ids_equal(name: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.size(), reference.size(), "{name}: shapes");
    let (a, b) = (ours.to_kind(Kind::Int64), reference.to_kind(Kind::Int64));
    let equal = a.eq_tensor(&b).sum(Kind::Int64).int64_value(&[]);
    println!("parity {name:<24} equal {equal}/{}", a.numel());
    assert_eq!(equal as usize, a.numel(), "{name}: ids differ");
}

#[test]
fn tokenizer_ids_match_reference() {
    let io = io();
    for m in TOKENIZED {
        let name = m.name();
        let tok = load(m);
        let x = &io[&format!("{name}.input")];
        let latents = tok.latents(x).expect("latents");
        assert_close(
            &format!("{name} latents"),
            &latents,
            &io[&format!("{name}.latents")],
            ATOL,
        );
        let ids = tok.tokenize(x).expect("tokenize");
        assert_eq!(ids.kind(), Kind::Int64);
        assert_ids_equal(&format!("{name} ids"), &ids, &io[&format!("{name}.ids")]);
        // The fixture must exercise the quantizer: many distinct ids, not one saturated code.
        let distinct = ids.reshape([-1]).unique_dim(0, true, false, false).0.size()[0];
        assert!(
            distinct * 5 > ids.numel() as i64,
            "{name}: only {distinct} distinct ids"
        );
    }
}

#[test]
fn lulc_one_hot_input_equals_class_ids() {
    let io = io();
    let tok = load(Modality::LULC);
    let classes = &io["LULC.input"];
    let one_hot = classes
        .to_kind(Kind::Int64)
        .one_hot(10)
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float);
    let a = tok.tokenize(classes).expect("class ids");
    let b = tok.tokenize(&one_hot).expect("one-hot");
    let c = tok.tokenize(&classes.unsqueeze(1)).expect("B x 1 x H x W");
    assert!(a.equal(&b) && a.equal(&c));
}

#[test]
fn lulc_decoder_matches_reference() {
    let io = io();
    let tok = load(Modality::LULC);
    let small = &io["LULC.small.ids"];
    let logits = tok.decode_logits(small).expect("logits");
    assert_eq!(logits.size(), [2, 10, 64, 64]);
    assert_close("LULC decoder logits", &logits, &io["LULC.small.logits"], ATOL);
    for tag in ["small", "random"] {
        let map = tok.decode_classes(&io[&format!("LULC.{tag}.ids")]).expect("classes");
        assert_eq!(map.kind(), Kind::Uint8);
        assert_ids_equal(&format!("LULC {tag} map"), &map, &io[&format!("LULC.{tag}.map")]);
    }
    // The decoder alone loads and gives the same map.
    let dec = Tokenizer::load(
        &reduced(Modality::LULC),
        TokenizerParts::Decoder,
        weights(Modality::LULC),
        Device::Cpu,
    )
    .expect("decoder only");
    assert!(
        dec.keys()
            .iter()
            .all(|k| !k.starts_with("encoder.") && !k.starts_with("quant_proj."))
    );
    let ids = &io["LULC.random.ids"];
    assert!(
        dec.decode_classes(ids)
            .expect("map")
            .equal(&tok.decode_classes(ids).expect("map"))
    );
    assert!(matches!(dec.tokenize(&io["LULC.input"]), Err(Error::NotBuilt { .. })));
}

#[test]
fn reads_the_official_key_layout() {
    // Keys and shapes of the full-size reference tokenizers (ViT-B), recorded by the script.
    let meta = meta();
    for m in TOKENIZED {
        let name = m.name();
        let layout = meta["official_layout"][name]["keys"].as_object().expect("layout");
        let mut want: Vec<(String, Vec<i64>)> = layout
            .iter()
            .map(|(k, v)| {
                let shape = v
                    .as_array()
                    .expect("shape")
                    .iter()
                    .map(|d| d.as_i64().expect("dim"))
                    .collect();
                (k.clone(), shape)
            })
            .collect();
        want.sort();
        let got = Tokenizer::key_shapes(&TokenizerConfig::v1(m).expect("config"), parts(m)).expect("build");
        assert_eq!(got, want, "{name}: keys and shapes of the official checkpoint");
        println!("layout {name:<6} {} keys match the official tokenizer", got.len());
    }
}

#[test]
fn loads_a_torch_save_file_and_names_bad_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Modality::LULC;
    let mut tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(weights(m)).expect("weights");
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let pt = dir.path().join("TerraMind_Tokenizer_LULC.pt");
    torch_save::write(&pt, &tensors);
    let io = io();
    let tok = Tokenizer::load(&reduced(m), TokenizerParts::Both, &pt, Device::Cpu).expect("load .pt");
    assert_ids_equal(
        "LULC ids (.pt)",
        &tok.tokenize(&io["LULC.input"]).expect("ids"),
        &io["LULC.ids"],
    );

    // Every missing and every mis-shaped key is named.
    let broken: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(k, _)| k != "decoder.out_proj.bias")
        .map(|(k, t)| {
            let t = if k == "quant_proj.weight" {
                t.narrow(0, 0, 4)
            } else {
                t.shallow_clone()
            };
            (k.clone(), t)
        })
        .collect();
    let bad = dir.path().join("broken.pt");
    torch_save::write(&bad, &broken);
    let err = Tokenizer::load(&reduced(m), TokenizerParts::Both, &bad, Device::Cpu).expect_err("broken");
    match &err {
        Error::Checkpoint {
            missing, mismatched, ..
        } => {
            assert_eq!(missing, &["decoder.out_proj.bias"]);
            assert_eq!(mismatched.len(), 1, "{err}");
            assert_eq!(mismatched[0].key, "quant_proj.weight");
            assert_eq!(mismatched[0].found, [4, 32, 1, 1]);
        }
        other => panic!("expected a checkpoint error, got {other}"),
    }

    // The S2L2A tokenizer on the DEM file: the patch projection has 1 band, not 12.
    let err = Tokenizer::load(
        &reduced(Modality::S2L2A),
        TokenizerParts::Encoder,
        weights(Modality::DEM),
        Device::Cpu,
    )
    .expect_err("wrong modality");
    assert!(
        matches!(&err, Error::Checkpoint { missing, mismatched, .. }
            if missing.is_empty() && mismatched.len() == 1 && mismatched[0].key == "encoder.proj.weight"),
        "{err}"
    );
    // DiVAE files hold no ported decoder.
    let err = Tokenizer::load(
        &reduced(Modality::LULC),
        TokenizerParts::Both,
        weights(Modality::DEM),
        Device::Cpu,
    )
    .expect_err("no decoder");
    assert!(
        matches!(&err, Error::Checkpoint { missing, .. } if missing.iter().any(|k| k == "decoder.out_proj.weight")),
        "{err}"
    );
}

#[test]
fn decodes_on_another_thread() {
    // The pipeline runs the decoder off the async runtime (spawn_blocking): it must be Send,
    // which the move into the thread checks at compile time.
    let tok = load(Modality::LULC);
    let io = io();
    let ids = io["LULC.small.ids"].shallow_clone();
    let want = io["LULC.small.map"].shallow_clone();
    let map = std::thread::spawn(move || tok.decode_classes(&ids).expect("map"))
        .join()
        .expect("thread");
    assert!(map.equal(&want));
}
