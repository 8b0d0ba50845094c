//! `terrastream model embed` against the reference implementation's parity fixture.

use crate::common::*;

/// Compares two safetensors files tensor by tensor: max |diff| of floats, count of differing
/// integers. The reference's `tim_*_logits_top5` hold the 5 largest logits at the reference's
/// own top-5 ids, which must match ours exactly.
const COMPARE: &str = r#"
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    types = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=types[v["dtype"]]).reshape(v["shape"])
    return out
ref, ours = load(sys.argv[1]), load(sys.argv[2])
report = {}
for k, r in ref.items():
    if k not in ours:
        report[k] = "missing"
        continue
    o = ours[k]
    if o.shape != r.shape:
        report[k] = f"shape {o.shape} != {r.shape}"
    elif r.dtype.kind == "f":
        report[k] = float(np.abs(o.astype(np.float64) - r).max())
    else:
        report[k] = int((o != r).sum())
print(json.dumps(report))
"#;

#[test]
fn model_embed_matches_the_reference_fixture() {
    let fixture = repo_root().join("../shared/fixtures/terramind/tiny_s2l2a_s1grd_tim_lulc");
    let tmp = tempfile::tempdir().expect("tmp");
    let output = tmp.path().join("out.safetensors");
    let out = terrastream(&[
        "model",
        "embed",
        "--variant",
        "tiny",
        "--checkpoint",
        &fixture.join("weights.safetensors").display().to_string(),
        "--input",
        &fixture.join("inputs.safetensors").display().to_string(),
        "--output",
        &output.display().to_string(),
        "--tim",
        "LULC",
        "--temperature",
        "0",
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let report = python_json(
        &venv_python(),
        COMPARE,
        &[&fixture.join("outputs.safetensors").display().to_string(), &output.display().to_string()],
    );
    let report = report.as_object().expect("report");
    assert!(report.len() >= 28, "compared only {} tensors", report.len());
    let mut worst = 0f64;
    for (k, v) in report {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let d = n.as_f64().unwrap_or(f64::NAN);
                assert!(d <= 1e-4, "{k}: max |diff| {d} > 1e-4");
                worst = worst.max(d);
            }
            serde_json::Value::Number(n) => assert_eq!(n.as_u64(), Some(0), "{k}: ids differ"),
            other => panic!("{k}: {other}"),
        }
    }
    println!("model embed vs reference: {} tensors, worst max |diff| {worst:.2e}", report.len());
}

#[test]
fn model_generate_decodes_tim_outputs_into_maps_and_images() {
    use tch::{Device, Kind, Tensor};
    use terrastream_model::{Modality, Tokenizer, TokenizerConfig, TokenizerParts};
    let fixture = repo_root().join("../shared/fixtures/terramind/tiny_s2l2a_s1grd_tim_lulc");
    let input = fixture.join("inputs.safetensors").display().to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let generated = tmp.path().join("generated.safetensors");
    let embedded = tmp.path().join("embedded.safetensors");
    let common = ["--variant", "tiny", "--input", &input, "--device", "cpu"];
    // Random weights (no checkpoint, no tokenizers): stated by the command, exercised here.
    let mut args = vec!["model", "generate", "--to", "LULC", "--temperature", "0", "--output"];
    args.push(generated.to_str().expect("path"));
    args.extend(common);
    let out = terrastream(&args);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RANDOM"), "{}", describe(&out));
    let mut args = vec!["model", "embed", "--tim", "LULC", "--temperature", "0", "--output"];
    args.push(embedded.to_str().expect("path"));
    args.extend(common);
    let out = terrastream(&args);
    assert!(out.status.success(), "{}", describe(&out));

    let read = |p: &std::path::Path| -> std::collections::HashMap<String, Tensor> {
        Tensor::read_safetensors(p).expect("safetensors").into_iter().collect()
    };
    let (g, e) = (read(&generated), read(&embedded));
    // The same TiM ids as `model embed --tim LULC` with the same weights and seed.
    assert!(g["tim_LULC_ids"].equal(&e["tim_LULC_ids"]), "generate and embed disagree on the LULC ids");
    let map = &g["LULC"];
    let (b, n) = g["tim_LULC_ids"].size2().expect("[B, N] ids");
    let side = (n as f64).sqrt() as i64;
    assert_eq!(map.size(), vec![b, side * 16, side * 16]);
    assert_eq!(map.kind(), Kind::Uint8);
    assert!(map.max().int64_value(&[]) < 10, "classes 0..10");
    // The map is the LULC decoder's argmax for those ids (the reduced random decoder the
    // command uses without --tokenizers: D of the variant, 2 blocks, seed 0).
    let tok = Tokenizer::random(
        &TokenizerConfig::v1(Modality::LULC).expect("lulc").with_size(192, 2, 3),
        TokenizerParts::Decoder,
        0,
        Device::Cpu,
    )
    .expect("tokenizer");
    let expect = tok.decode_classes(&g["tim_LULC_ids"].reshape([b, side, side])).expect("decode");
    assert!(map.equal(&expect), "the class map is not the decoder's output for the ids");

    // Chained generation of an image: LULC first, then S1GRD conditioned on it, decoded by the
    // S1GRD diffusion decoder (reduced, random: D of the variant, 2 blocks, a 32-channel U-Net
    // with one block per level, seed 0) in 2 DDIM steps from the noise of --noise-seed 3.
    let chained = tmp.path().join("chained.safetensors");
    let mut args = vec!["model", "generate", "--to", "LULC,S1GRD", "--steps", "2", "--noise-seed", "3", "--temperature", "0", "--output"];
    args.push(chained.to_str().expect("path"));
    args.extend(common);
    let out = terrastream(&args);
    assert!(out.status.success(), "{}", describe(&out));
    let c = read(&chained);
    let s1 = &c["S1GRD"];
    assert_eq!(s1.size(), vec![b, 2, side * 16, side * 16]);
    assert_eq!(s1.kind(), Kind::Float);
    let small = terrastream_model::UNetConfig { model_channels: 32, num_res_blocks: 1, ..terrastream_model::UNetConfig::v1() };
    let s1_tok = Tokenizer::random(
        &TokenizerConfig::v1(Modality::S1GRD).expect("s1").with_size(192, 2, 3).with_unet(small),
        TokenizerParts::Decoder,
        0,
        Device::Cpu,
    )
    .expect("tokenizer");
    let ids = c["tim_S1GRD_ids"].reshape([b, side, side]);
    let standardized = s1_tok.decode_image(&ids, 2, 3).expect("decode");
    // Back to dB with the v1 statistics: VV mean -12.599 std 5.195, VH mean -20.293 std 5.890.
    let mean = Tensor::from_slice(&[-12.599f32, -20.293]).reshape([1, 2, 1, 1]);
    let std = Tensor::from_slice(&[5.195f32, 5.890]).reshape([1, 2, 1, 1]);
    let db = &standardized * &std + &mean;
    assert!(s1.allclose(&db, 1e-5, 1e-4, false), "the S1GRD image is not the decoder's output in dB");
    // The last DDIM step returns the clamped x0, so every value is within one std of the mean.
    let vv = s1.select(1, 0);
    assert!(vv.min().double_value(&[]) >= -12.599 - 5.195 - 1e-3 && vv.max().double_value(&[]) <= -12.599 + 5.195 + 1e-3);
    // Chained: the same model (same targets, so the same random weights) generating S1GRD first,
    // before LULC exists to condition it, gives other S1GRD tokens.
    let alone = tmp.path().join("alone.safetensors");
    let mut args = vec!["model", "generate", "--to", "S1GRD,LULC", "--steps", "1", "--temperature", "0", "--output"];
    args.push(alone.to_str().expect("path"));
    args.extend(common);
    let out = terrastream(&args);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!read(&alone)["tim_S1GRD_ids"].equal(&c["tim_S1GRD_ids"]), "S1GRD did not depend on the generated LULC");

    // A modality without a tokenizer, and zero steps: clear errors, nothing written.
    let nothing = tmp.path().join("nothing.safetensors");
    for (to, steps, expect) in [("LULC,RGB", "10", "RGB"), ("S1GRD", "0", "steps")] {
        let mut args = vec!["model", "generate", "--to", to, "--steps", steps, "--output"];
        args.push(nothing.to_str().expect("path"));
        args.extend(common);
        let out = terrastream(&args);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(expect), "{}", describe(&out));
        assert!(!nothing.exists());
    }
    // Real weights without the tokenizer: named.
    let weights = fixture.join("weights.safetensors").display().to_string();
    let mut args = vec!["model", "generate", "--checkpoint", &weights, "--output"];
    args.push(nothing.to_str().expect("path"));
    args.extend(common);
    let out = terrastream(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tokenizers"), "{}", describe(&out));
}
