//! `[model] tim`: the map job runs Thinking-in-Modalities. Each chip's generated LULC token ids
//! land in GeoParquet as `tim_LULC`, next to the TiM-conditioned embedding; adding `tim` to a
//! finished run's config maps its unit again.

use super::*;

/// Per row (sorted): scene id, chip row, chip col, number of LULC ids, their min and max, and
/// whether the embedding is finite.
const READ_TIM: &str = r#"
import glob, json, sys
import duckdb
files = sorted(glob.glob(sys.argv[1] + "/embeddings/**/*.parquet", recursive=True))
rows = duckdb.connect().execute("""
    SELECT scene_id, chip_row, chip_col, len(tim_LULC), list_min(tim_LULC), list_max(tim_LULC),
           list_bool_and(list_transform(embedding, lambda x: isfinite(x)))
    FROM read_parquet(?) ORDER BY scene_id, chip_row, chip_col""", [files]).fetchall()
print(json.dumps(rows))
"#;

#[test]
fn tim_lulc_ids_and_the_tim_conditioned_embedding_land_in_geoparquet() {
    let tmp = tempfile::tempdir().expect("tmp");
    let items = revisits(tmp.path(), &[(2, 19, 4.05)]);
    let out = tmp.path().join("out");
    let config = run_config(tmp.path(), &items, &out, "");
    let (status, plain) = map_json(&config, &[]);
    assert!(status.success(), "{plain:#}");
    let (before, _) = rows(&out);
    assert_eq!(before.len(), 9, "{plain:#}");

    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replacen("seed = 1\n", "seed = 1\ntim = [\"LULC\"]\n", 1)).expect("config");
    let (status, tim) = map_json(&config, &[]);
    assert!(status.success(), "{tim:#}");
    // The unit's fingerprint includes `tim`: the finished unit is mapped again, not skipped.
    assert_eq!((tim["units_done"].as_u64(), tim["units_skipped"].as_u64()), (Some(1), Some(0)), "{tim:#}");

    let v = python_json(&venv_python(), READ_TIM, &[&out.display().to_string()]);
    let rows_tim = v.as_array().expect("rows");
    assert_eq!(rows_tim.len(), 9, "the unit's file replaced, each chip once: {v}");
    for r in rows_tim {
        // A 224 px chip is 14 x 14 patches: one LULC token each, ids of the LULC tokenizer's
        // 4,375-entry codebook.
        assert_eq!(r[3], 196, "{r}");
        assert!(r[4].as_i64().is_some_and(|id| id >= 0), "{r}");
        assert!(r[5].as_i64().is_some_and(|id| id < 4375), "{r}");
        assert_eq!(r[6], true, "{r}");
    }
    // The embeddings are now the TiM-conditioned ones: no chip's equals its plain embedding.
    let (after, _) = rows(&out);
    assert_eq!(after.len(), before.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((&a.0, a.1, a.2), (&b.0, b.1, b.2));
        assert_ne!(a.3, b.3, "chip {} {} {}: same embedding with and without TiM", a.0, a.1, a.2);
    }
}
