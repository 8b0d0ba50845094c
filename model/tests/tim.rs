//! TiM parity with the reference (terratorch 1.2.11) on the shared tiny fixture, and sampling.

mod common;

use common::{assert_close, inputs, max_abs_diff, read, tiny};
use tch::{Device, Kind, Tensor};
use terrastream_model::{Config, Error, Merge, Modality, TerraMind, TimConfig};

const ATOL: f64 = 1e-4;

#[test]
fn tim_matches_reference() {
    let model = tiny(&[Modality::LULC]);
    let expected = read("outputs.safetensors");
    let cfg = TimConfig {
        keep_logits: true,
        ..TimConfig::argmax(&[Modality::LULC])
    };
    let out = model.tim(&inputs(), &cfg).expect("tim");

    let ids = out.ids(Modality::LULC).expect("LULC ids");
    let want = &expected["tim_LULC_ids"];
    let differing = ids.ne_tensor(want).sum(Kind::Int64).int64_value(&[]);
    println!(
        "parity tim_LULC_ids             differing = {differing} of {}",
        want.numel()
    );
    assert_eq!(differing, 0);

    let logits = &out.logits[0].1;
    assert_eq!(logits.size(), [2, 196, 4375]);
    let top5_ids = &expected["tim_LULC_logits_top5_ids"];
    let ours_at_ref = logits.gather(2, top5_ids, false);
    assert_close(
        "tim_LULC_logits_top5",
        &ours_at_ref,
        &expected["tim_LULC_logits_top5"],
        ATOL,
    );
    let (_, our_top5) = logits.topk(5, 2, true, true);
    let top5_differing = our_top5
        .ne_tensor(top5_ids)
        .sum(Kind::Int64)
        .int64_value(&[]);
    println!("parity tim_LULC_logits_top5_ids differing = {top5_differing}");
    assert_eq!(top5_differing, 0);

    assert_eq!(out.layers.len(), 12);
    for (i, layer) in out.layers.iter().enumerate() {
        assert_close(
            &format!("tim_layer_{i}"),
            layer,
            &expected[&format!("tim_layer_{i}")],
            ATOL,
        );
    }
    assert_eq!(
        out.modalities,
        [Modality::S2L2A, Modality::S1GRD, Modality::LULC]
    );
    assert_close(
        "tim_mean_last",
        &out.merged(Merge::Mean).expect("mean"),
        &expected["tim_mean_last"],
        ATOL,
    );
}

#[test]
fn sampling_is_seeded_and_batch_independent() {
    let model = TerraMind::random_with_tim(
        &Config::tiny(),
        &[Modality::S2L2A],
        &[Modality::LULC, Modality::NDVI],
        3,
        Device::Cpu,
    )
    .expect("random");
    let s2 = Tensor::randn([3, 12, 64, 96], (Kind::Float, Device::Cpu));
    let inputs = [(Modality::S2L2A, s2)];
    let cfg = TimConfig {
        targets: vec![Modality::LULC, Modality::NDVI],
        temperature: 1.0,
        top_p: 0.9,
        seed: 42,
        steps: 3,
        ..TimConfig::default()
    };
    let a = model.tim(&inputs, &cfg).expect("tim");
    let b = model.tim(&inputs, &cfg).expect("tim");
    let c = model
        .tim(
            &inputs,
            &TimConfig {
                seed: 43,
                ..cfg.clone()
            },
        )
        .expect("tim");
    let chunked = TerraMind::random_with_tim(
        &Config::tiny(),
        &[Modality::S2L2A],
        &[Modality::LULC, Modality::NDVI],
        3,
        Device::Cpu,
    )
    .expect("random")
    .with_batch_size(2)
    .tim(&inputs, &cfg)
    .expect("tim");
    for target in [Modality::LULC, Modality::NDVI] {
        let (ia, ib, ic) = (
            a.ids(target).expect("ids"),
            b.ids(target).expect("ids"),
            c.ids(target).expect("ids"),
        );
        assert_eq!(ia.size(), [3, 4 * 6]);
        assert_eq!(max_abs_diff(ia, ib), 0.0, "same seed, same ids");
        assert!(max_abs_diff(ia, ic) > 0.0, "another seed, other ids");
        assert_eq!(
            max_abs_diff(ia, chunked.ids(target).expect("ids")),
            0.0,
            "batch split changes nothing"
        );
    }
    assert_eq!(a.layers[11].size(), [3, 3 * 24, 192]);
    assert_eq!(a.merged(Merge::Mean).expect("mean").size(), [3, 24, 192]);
    assert_eq!(a.embed_pooled().expect("pooled").size(), [3, 192]);
}

#[test]
fn tim_errors_and_token_inputs() {
    let model = TerraMind::random_with_tim(
        &Config::tiny(),
        &[Modality::S2L2A],
        &[Modality::LULC],
        0,
        Device::Cpu,
    )
    .expect("random");
    let s2 = Tensor::randn([1, 12, 32, 32], (Kind::Float, Device::Cpu));
    let err = model.tim(
        &[(Modality::S2L2A, s2.shallow_clone())],
        &TimConfig::argmax(&[Modality::NDVI]),
    );
    assert!(matches!(err, Err(Error::NotBuilt { .. })));
    let err = model.tim(
        &[(Modality::S2L2A, s2.shallow_clone())],
        &TimConfig {
            top_p: 2.0,
            ..TimConfig::default()
        },
    );
    assert!(matches!(err, Err(Error::Config(_))));
    // Generated ids fed back as a token input give the TiM backbone's tokens.
    let out = model
        .tim(
            &[(Modality::S2L2A, s2.shallow_clone())],
            &TimConfig::argmax(&[Modality::LULC]),
        )
        .expect("tim");
    let ids = out.ids(Modality::LULC).expect("ids").view([1, 2, 2]);
    let again = model
        .forward_layers(&[(Modality::S2L2A, s2), (Modality::LULC, ids.shallow_clone())])
        .expect("layers");
    assert!(max_abs_diff(&again[11], &out.layers[11]) < 1e-5);
    // Out-of-vocabulary ids are an error.
    let bad = ids.full_like(5000);
    let err = model.forward_layers(&[(Modality::LULC, bad)]);
    assert!(matches!(err, Err(Error::InputShape { .. })));
}

#[test]
fn named_outputs_cover_the_fixture() {
    let model = tiny(&[Modality::LULC]);
    let expected = read("outputs.safetensors");
    let ours = model
        .named_outputs(&inputs(), Some(&TimConfig::argmax(&[Modality::LULC])))
        .expect("outputs");
    let mut names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<&str> = expected.keys().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(names, want);
    for (name, t) in &ours {
        if t.is_floating_point() {
            assert!(max_abs_diff(t, &expected[name]) <= ATOL, "{name}");
        } else {
            assert_eq!(max_abs_diff(t, &expected[name]), 0.0, "{name}");
        }
    }
}

#[test]
fn bf16_runs_close_to_f32() {
    let f32_model = tiny(&[Modality::LULC]);
    let bf16 = tiny(&[Modality::LULC]).with_precision(terrastream_model::Precision::Bf16);
    let inputs = inputs();
    let a = f32_model.encode(&inputs, Merge::Mean).expect("f32");
    let b = bf16.encode(&inputs, Merge::Mean).expect("bf16");
    assert_eq!(b.kind(), Kind::Float);
    let d = max_abs_diff(&a, &b);
    let scale = a.abs().max().double_value(&[]);
    println!("bf16 vs f32 mean_last max |diff| = {d:.3e} (values up to {scale:.2})");
    assert!(d < 0.1 * scale, "bf16 too far from f32: {d}");
    let out = bf16
        .tim(&inputs, &TimConfig::argmax(&[Modality::LULC]))
        .expect("tim bf16");
    assert_eq!(out.ids(Modality::LULC).expect("ids").size(), [2, 196]);
}
