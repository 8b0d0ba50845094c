//! PyTorch `torch.save` state dicts (the format of the official `TerraMind_v1_<variant>.pt`).

mod common;

use common::{assert_close, inputs, read, torch_save};
use std::path::PathBuf;

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

/// Every truncation of a real `torch.save` file, and many single-byte corruptions of it, give
/// an error naming the file or, where the damage misses what is read (padding, timestamps), the
/// very same tensors: never a panic, an abort, or silently different weights.
/// The reader is ours (zip + pickle), so it gets the adversarial inputs a user's broken download
/// would give it.
#[test]
fn truncated_and_corrupted_checkpoints_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/state_dict.pt")).expect("fixture");
    let path = dir.path().join("broken.pt");
    std::fs::write(&path, &good).expect("write");
    let original = read_tensors(&path).expect("the undamaged file reads");
    let mut errors = 0;
    let mut cases = 0;
    let mut check = |bytes: &[u8], what: &str| {
        std::fs::write(&path, bytes).expect("write");
        cases += 1;
        match std::panic::catch_unwind(|| read_tensors(&path)) {
            Ok(Err(e)) => {
                errors += 1;
                assert!(e.to_string().contains("broken.pt"), "{what}: the error names the file: {e}");
            }
            // Damage the reader does not notice must be damage that changes nothing it returns
            // (padding, timestamps): never silently different weights.
            Ok(Ok(t)) => assert!(
                t.len() == original.len()
                    && t.iter().zip(&original).all(|((ka, a), (kb, b))| ka == kb && a.equal(b)),
                "{what}: read without an error but the tensors differ"
            ),
            Err(_) => panic!("{what}: the reader panicked"),
        }
    };
    check(&[], "empty file");
    let step = (good.len() / 97).max(1);
    for cut in (0..good.len()).step_by(step) {
        check(&good[..cut], &format!("truncated at {cut} of {} bytes", good.len()));
    }
    // Deterministic positions and values (xorshift).
    let mut x: u64 = 0x5eed;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut bad = good.clone();
        let at = (x % good.len() as u64) as usize;
        bad[at] ^= (x >> 32) as u8 | 1;
        check(&bad, &format!("byte {at} flipped"));
    }
    println!("checkpoint reader: {cases} damaged files, {errors} errors naming the file, the rest read unchanged, no panic");
    assert!(errors > cases / 2, "most damage must be detected: {errors} of {cases}");
}
