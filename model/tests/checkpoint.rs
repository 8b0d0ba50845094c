//! PyTorch `torch.save` state dicts (the format of the official `TerraMind_v1_<variant>.pt`).

mod common;

use common::{assert_close, inputs, read, torch_save};
use tch::Device;
use terrastream_model::{Config, Error, Merge, Modality, TerraMind, read_tensors};

#[test]
fn reads_a_python_written_state_dict() {
    // Written by CPython's pickler (tests/data/make_state_dict.py), with tied and strided views.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/state_dict.pt");
    let t: std::collections::HashMap<String, tch::Tensor> =
        read_tensors(&path).expect("read").into_iter().collect();
    assert_eq!(t.len(), 4);
    let w = Vec::<f32>::try_from(t["layer.weight"].view([-1])).expect("f32");
    assert_eq!(w, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(t["layer.weight_t"].size(), [3, 2]);
    let wt = Vec::<f32>::try_from(t["layer.weight_t"].contiguous().view([-1])).expect("f32");
    assert_eq!(wt, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(Vec::<f32>::try_from(&t["tail"]).expect("f32"), [4.0, 5.0]);
    assert_eq!(
        Vec::<i64>::try_from(&t["ids"]).expect("i64"),
        [-1, 7, 1 << 40]
    );
}

#[test]
fn loads_the_fixture_weights_from_a_torch_save_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("TerraMind_v1_tiny.pt");
    let mut tensors: Vec<(String, tch::Tensor)> = read("weights.safetensors").into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    torch_save::write(&path, &tensors);

    let model = TerraMind::load(
        &Config::tiny(),
        &[Modality::S2L2A, Modality::S1GRD],
        &path,
        Device::Cpu,
    )
    .expect("load .pt");
    let expected = read("outputs.safetensors");
    let mean = model.encode(&inputs(), Merge::Mean).expect("encode");
    assert_close("mean_last (.pt)", &mean, &expected["mean_last"], 1e-4);

    // A missing key is named for .pt files too.
    let short: Vec<_> = tensors
        .into_iter()
        .filter(|(k, _)| k != "encoder.7.mlp.fc1.bias")
        .collect();
    let broken = dir.path().join("broken.pt");
    torch_save::write(&broken, &short);
    let err = TerraMind::load(&Config::tiny(), &[Modality::S2L2A], &broken, Device::Cpu)
        .expect_err("missing key");
    assert!(
        matches!(&err, Error::Checkpoint { missing, .. } if missing == &["encoder.7.mlp.fc1.bias"]),
        "{err}"
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("junk.pt");
    std::fs::write(&path, b"definitely not a zip archive").expect("write");
    assert!(matches!(read_tensors(&path), Err(Error::Read { .. })));
}
