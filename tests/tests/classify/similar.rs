//! `similar`: the k chips most similar to a chip, checked against DuckDB's
//! `array_cosine_similarity` over the same files; `--point` finds the chip under a point.

use super::*;

#[test]
fn similar_chips_match_duckdb() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store().1.display().to_string();
    let query = &labelled()[0];
    let out = tmp.path().join("similar.geojson");
    let run = terrastream(&["similar", "--embeddings", &store, "--chip", &query.0, "--k", "5", "--out", out.to_str().expect("p")]);
    assert!(run.status.success(), "{}", describe(&run));
    let fc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("geojson");
    let got: Vec<(String, f64)> = fc["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| (f["id"].as_str().expect("id").to_string(), f["properties"]["score"].as_f64().expect("score")))
        .collect();
    let script = r#"
import json, sys, duckdb
con = duckdb.connect()
con.execute(f"CREATE VIEW e AS SELECT scene_id || '/' || chip_row || '/' || chip_col AS id, embedding::FLOAT[] AS v FROM read_parquet('{sys.argv[1]}/embeddings/**/*.parquet')")
rows = con.execute("""SELECT e.id, list_cosine_similarity(e.v, q.v) AS s FROM e, (SELECT v FROM e WHERE id = ?) q
  WHERE e.id <> ? ORDER BY s DESC, e.id LIMIT 5""", [sys.argv[2], sys.argv[2]]).fetchall()
print(json.dumps(rows))
"#;
    let want = python_json(&venv_python(), script, &[&store, &query.0]);
    let want: Vec<(String, f64)> =
        want.as_array().expect("rows").iter().map(|r| (r[0].as_str().expect("id").to_string(), r[1].as_f64().expect("s"))).collect();
    assert_eq!(got.len(), 5);
    for ((gi, gs), (wi, ws)) in got.iter().zip(&want) {
        assert!((gs - ws).abs() < 1e-5, "score {gi} {gs} vs DuckDB {wi} {ws}");
    }
    let ids = |v: &[(String, f64)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&got), ids(&want), "same chips, same order");
    assert!(!ids(&got).contains(&query.0), "the query chip itself is not returned");

    // The same query by a point inside the chip.
    let point = format!("{},{}", query.1, query.2);
    let by_point = terrastream(&["similar", "--embeddings", &store, "--point", &point, "--k", "5"]);
    assert!(by_point.status.success(), "{}", describe(&by_point));
    let fc2: serde_json::Value = serde_json::from_slice(&by_point.stdout).expect("geojson on stdout");
    assert_eq!(fc2["features"], fc["features"]);

    let far = terrastream(&["similar", "--embeddings", &store, "--point", "100,10"]);
    assert_eq!(far.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&far.stderr).contains("no chip"), "{}", describe(&far));
}
