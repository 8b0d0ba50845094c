//! Parity of the encoder with the reference (terratorch 1.2.11) on the shared tiny fixture.
//! Run with `--nocapture` to see the maximum absolute difference of every tensor.

mod common;

use common::{assert_close, inputs, read, tiny};
use terrastream_model::Merge;

const ATOL: f64 = 1e-4;

#[test]
fn encoder_matches_reference() {
    let model = tiny(&[]);
    let inputs = inputs();
    let expected = read("outputs.safetensors");

    let embed = model.embed_tokens(&inputs).expect("embed");
    assert_close("embed", &embed, &expected["embed"], ATOL);

    let layers = model.forward_layers(&inputs).expect("layers");
    assert_eq!(layers.len(), 12);
    for (i, layer) in layers.iter().enumerate() {
        assert_close(
            &format!("layer_{i}"),
            layer,
            &expected[&format!("layer_{i}")],
            ATOL,
        );
    }

    let mean = model.encode(&inputs, Merge::Mean).expect("mean");
    assert_close("mean_last", &mean, &expected["mean_last"], ATOL);

    let pooled = model.embed_pooled(&inputs).expect("pooled");
    assert_eq!(pooled.size(), [2, 192]);
    let want = expected["mean_last"].mean_dim(1, false, None);
    assert_close("embed_pooled", &pooled, &want, ATOL);
}

#[test]
fn batch_size_does_not_change_results() {
    let model = tiny(&[]).with_batch_size(1);
    let inputs = inputs();
    let expected = read("outputs.safetensors");
    let mean = model.encode(&inputs, Merge::Mean).expect("mean");
    assert_close("mean_last (batch 1)", &mean, &expected["mean_last"], ATOL);
}

#[test]
fn merge_modes() {
    let model = tiny(&[]);
    let inputs = inputs();
    let expected = read("outputs.safetensors");
    let last = &expected["layer_11"];
    let none = model.encode(&inputs, Merge::None).expect("none");
    assert_close("merge none", &none, last, ATOL);
    let concat = model.encode(&inputs, Merge::Concat).expect("concat");
    assert_eq!(concat.size(), [2, 196, 384]);
    assert_close(
        "concat S1GRD half",
        &concat.narrow(2, 192, 192),
        &last.narrow(1, 196, 196),
        ATOL,
    );
    let max = model.encode(&inputs, Merge::Max).expect("max");
    assert_close(
        "merge max",
        &max,
        &last.narrow(1, 0, 196).maximum(&last.narrow(1, 196, 196)),
        ATOL,
    );
    let per = model.encode_per_modality(&inputs).expect("dict");
    assert_eq!(per.len(), 2);
    assert_close(
        "per-modality S2L2A",
        &per[0].1,
        &last.narrow(1, 0, 196),
        ATOL,
    );
}
