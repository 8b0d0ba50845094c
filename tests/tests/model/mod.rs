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
