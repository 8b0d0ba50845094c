//! Query results against DuckDB and Python references; plans (top-k, pushdown, pruning) read
//! from EXPLAIN.

use super::*;

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `(scene_id, chip_row, chip_col)` of a row of ours (object) or DuckDB's (array).
fn id_of(v: &serde_json::Value) -> (String, i64, i64) {
    if v.is_array() {
        (
            v[0].as_str().expect("scene").to_string(),
            v[1].as_i64().expect("row"),
            v[2].as_i64().expect("col"),
        )
    } else {
        (
            v["scene_id"].as_str().expect("scene").to_string(),
            v["chip_row"].as_i64().expect("row"),
            v["chip_col"].as_i64().expect("col"),
        )
    }
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{what}: ours {a}, DuckDB {b}");
}

/// EXPLAIN's plan text (all plan rows).
fn explain(query: &str) -> String {
    sql_json(&format!("EXPLAIN {query}"))
        .iter()
        .map(|r| r["plan"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn vector_functions_match_duckdb_row_by_row() {
    let d = dim();
    let q = vector_literal(d, 1);
    let ours = sql_json(&format!(
        "SELECT scene_id, chip_row, chip_col, cosine_similarity(embedding, {q}) AS cos, l2_distance(embedding, {q}) AS l2, \
         inner_product(embedding, {q}) AS ip, vector_norm(embedding) AS norm FROM embeddings ORDER BY scene_id, chip_row, chip_col"
    ));
    let e = format!("embedding::FLOAT[{d}]");
    let ql = format!("{q}::FLOAT[{d}]");
    let theirs = duckdb(&format!(
        "SELECT scene_id, chip_row, chip_col, array_cosine_similarity({e}, {ql}), array_distance({e}, {ql}), \
         array_inner_product({e}, {ql}), sqrt(array_inner_product({e}, {e})) FROM e ORDER BY scene_id, chip_row, chip_col"
    ));
    assert_eq!(ours.len(), 75, "3 revisits x 25 chips");
    assert_eq!(
        ours.iter().map(id_of).collect::<Vec<_>>(),
        theirs.iter().map(id_of).collect::<Vec<_>>()
    );
    for (o, t) in ours.iter().zip(&theirs) {
        for (k, name) in [(3, "cos"), (4, "l2"), (5, "ip"), (6, "norm")] {
            close(f(&o[name]), f(&t[k]), name);
        }
    }
}

#[test]
fn top_k_cosine_runs_as_top_k_and_matches_duckdb() {
    let d = dim();
    let q = vector_literal(d, 2);
    let query = format!(
        "SELECT scene_id, chip_row, chip_col, cosine_similarity(embedding, {q}) AS s FROM embeddings \
         ORDER BY s DESC, scene_id, chip_row, chip_col LIMIT 7"
    );
    let plan = explain(&query);
    assert!(
        plan.contains("SortExec: TopK(fetch=7)"),
        "no top-k in the plan:\n{plan}"
    );
    // The sink's files keep embeddings in PLAIN pages, which the scan reads after the rest.
    assert!(
        plan.contains("LateListExec: late=[embedding]"),
        "embeddings not read late:\n{plan}"
    );
    let ours = sql_json(&query);
    let theirs = duckdb(&format!(
        "SELECT scene_id, chip_row, chip_col, array_cosine_similarity(embedding::FLOAT[{d}], {q}::FLOAT[{d}]) AS s FROM e \
         ORDER BY s DESC, scene_id, chip_row, chip_col LIMIT 7"
    ));
    assert_eq!(
        ours.iter().map(id_of).collect::<Vec<_>>(),
        theirs.iter().map(id_of).collect::<Vec<_>>()
    );
    for (o, t) in ours.iter().zip(&theirs) {
        close(f(&o["s"]), f(&t[3]), "cosine");
    }
}

#[test]
fn nearest_by_chip_id_and_by_vector_match_duckdb() {
    let d = dim();
    let chip = &duckdb(
        "SELECT scene_id, chip_row, chip_col FROM e ORDER BY scene_id DESC, chip_row, chip_col LIMIT 1 OFFSET 7",
    )[0];
    let (scene, row, col) = id_of(chip);
    let ours = sql_json(&format!(
        "SELECT scene_id, chip_row, chip_col, score FROM nearest(embeddings, '{scene}/{row}/{col}', 6)"
    ));
    let theirs = duckdb(&format!(
        "WITH q AS (SELECT embedding::FLOAT[{d}] AS v FROM e WHERE scene_id = '{scene}' AND chip_row = {row} AND chip_col = {col}) \
         SELECT scene_id, chip_row, chip_col, array_cosine_similarity(embedding::FLOAT[{d}], (SELECT v FROM q)) AS s FROM e \
         ORDER BY s DESC, scene_id, chip_row, chip_col LIMIT 6"
    ));
    assert_eq!(
        ours.iter().map(id_of).collect::<Vec<_>>(),
        theirs.iter().map(id_of).collect::<Vec<_>>()
    );
    for (o, t) in ours.iter().zip(&theirs) {
        close(f(&o["score"]), f(&t[3]), "score");
    }
    assert!(
        ours.iter().any(|r| id_of(r) == (scene.clone(), row, col)),
        "the query chip is its own neighbour"
    );

    let q = vector_literal(d, 3);
    let by_vector = sql_json(&format!(
        "SELECT scene_id, chip_row, chip_col, score FROM nearest(embeddings, {q}, 4)"
    ));
    let by_order = sql_json(&format!(
        "SELECT scene_id, chip_row, chip_col, cosine_similarity(embedding, {q}) AS score FROM embeddings \
         ORDER BY score DESC, scene_id, chip_row, chip_col LIMIT 4"
    ));
    assert_eq!(by_vector, by_order);

    let plan = explain(&format!("SELECT * FROM nearest(embeddings, {q}, 4)"));
    assert!(plan.contains("TopK(fetch=4)"), "nearest is not a top-k:\n{plan}");
}

/// The chip footprints (WKB, read with DuckDB) tested against a box in Python: intersects
/// (vertex of one inside the other, or crossing edges) and within (every vertex inside).
const SPATIAL_REFERENCE: &str = r#"
import json, struct, sys
import duckdb
out, box = sys.argv[1], [float(x) for x in sys.argv[2].split(",")]
rows = duckdb.connect().execute(f"SELECT scene_id, chip_row, chip_col, geometry FROM read_parquet('{out}/embeddings/**/*.parquet', hive_partitioning=false) ORDER BY 1, 2, 3").fetchall()
def rings(wkb):
    order = '<' if wkb[0] == 1 else '>'
    kind, = struct.unpack(order + 'I', wkb[1:5])
    assert kind == 3, kind
    n, = struct.unpack(order + 'I', wkb[5:9]); off = 9; out = []
    for _ in range(n):
        m, = struct.unpack(order + 'I', wkb[off:off + 4]); off += 4
        out.append([struct.unpack(order + 'dd', wkb[off + 16 * i: off + 16 * i + 16]) for i in range(m)]); off += 16 * m
    return out
x0, y0, x1, y1 = box
rect = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
def inside_rect(p): return x0 <= p[0] <= x1 and y0 <= p[1] <= y1
def inside_poly(p, ring):
    c = False
    for (ax, ay), (bx, by) in zip(ring, ring[1:]):
        if (ay > p[1]) != (by > p[1]) and p[0] < (bx - ax) * (p[1] - ay) / (by - ay) + ax: c = not c
    return c
def cross(p, q, r, s):
    def o(a, b, c): return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return o(p, q, r) * o(p, q, s) < 0 and o(r, s, p) * o(r, s, q) < 0
res = []
for sid, r, c, g in rows:
    ring = rings(bytes(g))[0]
    hit = any(inside_rect(p) for p in ring) or any(inside_poly(p, ring) for p in rect) or \
          any(cross(a, b, p, q) for a, b in zip(ring, ring[1:]) for p, q in zip(rect, rect[1:]))
    area = abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:]))) / 2
    res.append({"id": [sid, r, c], "intersects": hit, "within": all(inside_rect(p) for p in ring), "area": area, "first": ring[0]})
print(json.dumps(res))
"#;

#[test]
fn spatial_functions_match_a_reference_from_the_wkb() {
    let extent = &duckdb("SELECT min(bbox.xmin), min(bbox.ymin), max(bbox.xmax), max(bbox.ymax) FROM e")[0];
    let [x0, y0, x1, y1] = [f(&extent[0]), f(&extent[1]), f(&extent[2]), f(&extent[3])];
    // A box over part of the scene: some chips inside, some across its edges, some outside.
    let b = [
        x0 + 0.2 * (x1 - x0),
        y0 + 0.3 * (y1 - y0),
        x0 + 0.7 * (x1 - x0),
        y0 + 0.9 * (y1 - y0),
    ];
    let arg = b.iter().map(|v| format!("{v:.9}")).collect::<Vec<_>>().join(",");
    let b: Vec<f64> = arg.split(',').map(|v| v.parse().expect("f64")).collect();
    let reference = python_json(&venv_python(), SPATIAL_REFERENCE, &[&out().display().to_string(), &arg]);
    let reference = reference.as_array().expect("rows");
    let wkt = format!(
        "POLYGON(({0} {1}, {2} {1}, {2} {3}, {0} {3}, {0} {1}))",
        b[0], b[1], b[2], b[3]
    );
    let ours = sql_json(&format!(
        "SELECT scene_id, chip_row, chip_col, ST_Intersects(geometry, ST_GeomFromText('{wkt}')) AS i, \
         ST_Within(geometry, ST_GeomFromText('{wkt}')) AS w, ST_Area(geometry) AS area, ST_AsText(geometry) AS t \
         FROM embeddings ORDER BY scene_id, chip_row, chip_col"
    ));
    assert_eq!(ours.len(), reference.len());
    let (mut hits, mut within) = (0, 0);
    for (o, r) in ours.iter().zip(reference) {
        let id = (
            r["id"][0].as_str().expect("id").to_string(),
            r["id"][1].as_i64().expect("r"),
            r["id"][2].as_i64().expect("c"),
        );
        assert_eq!(id_of(o), id);
        assert_eq!(o["i"].as_bool(), r["intersects"].as_bool(), "ST_Intersects {id:?}");
        assert_eq!(o["w"].as_bool(), r["within"].as_bool(), "ST_Within {id:?}");
        assert!(
            (f(&o["area"]) - f(&r["area"])).abs() <= 1e-9 * f(&r["area"]),
            "ST_Area {id:?}"
        );
        let text = o["t"].as_str().expect("wkt");
        let first: Vec<f64> = text
            .trim_start_matches("POLYGON")
            .trim_start_matches([' ', '('])
            .split(',')
            .next()
            .expect("vertex")
            .split_whitespace()
            .map(|v| v.parse().expect("coordinate"))
            .collect();
        assert!(
            (first[0] - f(&r["first"][0])).abs() < 1e-9 && (first[1] - f(&r["first"][1])).abs() < 1e-9,
            "{text}"
        );
        hits += usize::from(r["intersects"].as_bool() == Some(true));
        within += usize::from(r["within"].as_bool() == Some(true));
    }
    assert!(
        hits > within && within > 0 && hits < ours.len(),
        "the box should split the chips: {hits} hit, {within} within"
    );
}

#[test]
fn bbox_filters_reach_the_parquet_scan_and_skip_row_groups() {
    let extent = &duckdb("SELECT min(bbox.xmin), max(bbox.xmax) FROM e")[0];
    let (x0, x1) = (f(&extent[0]), f(&extent[1]));
    let cut = x0 + 0.3 * (x1 - x0);
    let query = format!(
        "SELECT scene_id, chip_row, chip_col FROM embeddings WHERE bbox.xmax <= {cut} ORDER BY scene_id, chip_row, chip_col"
    );
    let plan = explain(&query);
    let scan = plan
        .lines()
        .find(|l| l.contains("DataSourceExec"))
        .unwrap_or_else(|| panic!("no scan:\n{plan}"));
    assert!(
        scan.contains("predicate=") && scan.contains("xmax"),
        "the bbox filter does not reach the scan:\n{plan}"
    );
    let ours = sql_json(&query);
    let theirs = duckdb(&format!(
        "SELECT scene_id, chip_row, chip_col FROM e WHERE bbox.xmax <= {cut} ORDER BY 1, 2, 3"
    ));
    assert!(!ours.is_empty() && ours.len() < 75);
    assert_eq!(
        ours.iter().map(id_of).collect::<Vec<_>>(),
        theirs.iter().map(id_of).collect::<Vec<_>>()
    );

    // EXPLAIN ANALYZE: row groups whose bbox statistics miss the filter are not read.
    let analyzed = explain(&format!("ANALYZE {query}"));
    let scan = analyzed
        .lines()
        .find(|l| l.contains("DataSourceExec"))
        .unwrap_or_else(|| panic!("{analyzed}"));
    let metric = |name: &str| -> Option<u64> {
        let at = scan.find(&format!("{name}="))? + name.len() + 1;
        scan[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let scanned = metric("output_rows").unwrap_or_else(|| panic!("no output_rows: {scan}"));
    assert!(scanned < 75, "every row was read: {scan}");
    assert!(scanned >= ours.len() as u64);
}

#[test]
fn date_partitions_are_pruned_and_time_filters_agree() {
    let query = "SELECT chip_row FROM embeddings WHERE date = DATE '2020-03-10'";
    let plan = explain(query);
    let scan = plan
        .lines()
        .find(|l| l.contains("DataSourceExec"))
        .unwrap_or_else(|| panic!("no scan:\n{plan}"));
    assert!(scan.contains("date=2020-03-10"), "{scan}");
    assert!(
        !scan.contains("date=2020-01-20") && !scan.contains("date=2020-02-19"),
        "other dates are read: {scan}"
    );
    let ours = sql_json(query).len() as u64;
    let theirs = duckdb("SELECT count(*) FROM e WHERE date = DATE '2020-03-10'")[0][0]
        .as_u64()
        .expect("count");
    assert_eq!(ours, theirs);
    assert!(ours > 0);

    let window = "datetime >= TIMESTAMP '2020-02-01 00:00:00+00' AND datetime < TIMESTAMP '2020-03-01 00:00:00+00'";
    let ours = sql_json(&format!("SELECT count(*) AS n FROM embeddings WHERE {window}"))[0]["n"].as_u64();
    let theirs = duckdb(&format!("SELECT count(*) FROM e WHERE {window}"))[0][0].as_u64();
    assert_eq!(ours, theirs);
}

#[test]
fn scenes_runs_and_units_tables() {
    let scenes = sql_json("SELECT scene_id, chips FROM scenes ORDER BY scene_id");
    let theirs = duckdb("SELECT scene_id, count(*) FROM e GROUP BY scene_id ORDER BY scene_id");
    assert_eq!(scenes.len(), theirs.len());
    for (o, t) in scenes.iter().zip(&theirs) {
        assert_eq!(o["scene_id"], t[0]);
        assert_eq!(o["chips"], t[1]);
    }
    let files = |dir: &str| std::fs::read_dir(out().join(dir)).map(|d| d.count()).unwrap_or(0);
    let runs = sql_json("SELECT count(*) AS n FROM runs")[0]["n"].as_u64().expect("n") as usize;
    assert_eq!(runs, files("_manifest/runs"));
    let units = sql_json("SELECT count(*) AS n FROM units")[0]["n"].as_u64().expect("n") as usize;
    assert_eq!(units, files("_manifest/units"));
}

#[test]
fn csv_and_parquet_outputs_hold_the_rows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("top.parquet");
    let query = "SELECT scene_id, chip_row, chip_col, embedding FROM embeddings WHERE chip_row = 1";
    let run = sql(query, &["--format", "parquet", "--out", &file.display().to_string()]);
    assert!(run.status.success(), "{}", describe(&run));
    let back = python_json(
        &venv_python(),
        "import duckdb, json, sys; print(json.dumps(duckdb.connect().execute(f\"SELECT count(*), sum(len(embedding)) FROM '{sys.argv[1]}'\").fetchone()))",
        &[&file.display().to_string()],
    );
    let theirs = duckdb("SELECT count(*), sum(len(embedding)) FROM e WHERE chip_row = 1");
    assert_eq!(back[0], theirs[0][0]);
    assert_eq!(back[1], theirs[0][1]);

    let run = sql(
        "SELECT scene_id, chip_row FROM embeddings WHERE chip_row = 1",
        &["--format", "csv"],
    );
    assert!(run.status.success(), "{}", describe(&run));
    let text = String::from_utf8_lossy(&run.stdout);
    assert_eq!(text.lines().next(), Some("scene_id,chip_row"));
    assert_eq!(text.lines().count() as u64 - 1, theirs[0][0].as_u64().expect("count"));
}
