//! Bad input: each case ends with a one-line error naming the item and the asset, and a
//! non-zero exit.

use crate::common::*;

const ITEM: &str = "S2A_29RKH_20200219_0_L2A";

/// The stderr lines that start with `error:`.
fn error_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("error:")).map(str::to_string).collect()
}

fn assert_one_line_error(out: &std::process::Output, needles: &[&str]) {
    // 1 is terrastream's failure exit; a crash would be 101 (panic) or a signal.
    assert_eq!(out.status.code(), Some(1), "expected a clean failure; {}", describe(out));
    let lines = error_lines(out);
    assert!(
        lines.iter().any(|l| needles.iter().all(|n| l.contains(n))),
        "no error line names {needles:?}; {}",
        describe(out)
    );
}

#[test]
fn missing_asset_file_names_item_and_asset() {
    let tmp = tempfile::tempdir().expect("tmp");
    let assets = tmp.path().join("assets");
    mirror_scene_assets(&assets, "B05.tif");
    let cfg = write_config(tmp.path(), &s2_item_path(), &assets, &tmp.path().join("out"));
    let out = terrastream(&["map", &cfg.display().to_string()]);
    assert_one_line_error(&out, &[ITEM, "asset rededge1", "B05.tif"]);
    assert!(!tmp.path().join("out/embeddings/MGRS-29RKH_2020-02.parquet").exists(), "no output for a failed scene");
}

#[test]
fn corrupt_tiff_names_item_and_asset() {
    let tmp = tempfile::tempdir().expect("tmp");
    let assets = tmp.path().join("assets");
    mirror_scene_assets(&assets, "B8A.tif");
    // A TIFF header followed by garbage: the IFD offset points nowhere sensible.
    let mut bytes = b"II*\0\x08\0\0\0".to_vec();
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
    std::fs::write(assets.join("B8A.tif"), bytes).expect("write corrupt tiff");
    let cfg = write_config(tmp.path(), &s2_item_path(), &assets, &tmp.path().join("out"));
    let out = terrastream(&["map", &cfg.display().to_string()]);
    assert_one_line_error(&out, &[ITEM, "asset nir08", "B8A.tif"]);
}

#[test]
fn truncated_tiff_names_item_and_asset() {
    let tmp = tempfile::tempdir().expect("tmp");
    let assets = tmp.path().join("assets");
    mirror_scene_assets(&assets, "B02.tif");
    // The real header and IFDs, but the tile data cut off.
    let real = std::fs::read(s2_scene_dir().join("B02.tif")).expect("read B02");
    std::fs::write(assets.join("B02.tif"), &real[..real.len() / 3]).expect("write truncated");
    let cfg = write_config(tmp.path(), &s2_item_path(), &assets, &tmp.path().join("out"));
    let out = terrastream(&["map", &cfg.display().to_string()]);
    assert_one_line_error(&out, &[ITEM, "asset blue", "B02.tif"]);
    assert!(!tmp.path().join("out/embeddings/MGRS-29RKH_2020-02.parquet").exists(), "no partial output");
}

#[test]
fn item_without_bands_names_item_and_band() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut item: serde_json::Value = serde_json::from_slice(&std::fs::read(s2_item_path()).expect("item")).expect("json");
    let assets = item["assets"].as_object_mut().expect("assets");
    assets.retain(|k, _| k == "visual" || k == "thumbnail");
    let path = tmp.path().join("item.json");
    std::fs::write(&path, serde_json::to_vec(&item).expect("json")).expect("write item");
    let cfg = write_config(tmp.path(), &path, &s2_scene_dir(), &tmp.path().join("out"));
    let out = terrastream(&["map", &cfg.display().to_string()]);
    assert_one_line_error(&out, &[ITEM, "no asset for band B01", "coastal"]);
}
