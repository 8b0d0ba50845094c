//! Bad queries and bad locations: DataFusion's error with the tables and their columns, the
//! missing path named; the interactive shell on piped input.

use std::io::Write;
use std::process::Stdio;

use super::*;

#[test]
fn a_bad_query_lists_the_tables_and_columns() {
    let run = sql("SELECT no_such_column FROM embeddings", &[]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no_such_column"), "DataFusion's error is missing: {err}");
    assert!(
        err.contains("embeddings(") && err.contains("scene_id") && err.contains("embedding Float32["),
        "{err}"
    );
    assert!(err.contains("scenes(") && err.contains("runs("), "{err}");

    let run = sql("SELECT * FROM no_such_table", &[]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("no_such_table") && err.contains("embeddings("), "{err}");

    let run = sql("SELECT * FROM nearest(embeddings, 'not-a-chip', 3)", &[]);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("'<scene_id>/<chip_row>/<chip_col>'"),
        "{}",
        describe(&run)
    );
}

#[test]
fn a_missing_path_is_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("no-such-run");
    let run = terrastream(&["sql", "SELECT 1", "--tables", &missing.display().to_string()]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let run = terrastream(&["sql", "SELECT 1", "--tables", &tmp.path().display().to_string()]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&tmp.path().display().to_string()) && err.contains("not a terrastream output store"),
        "{err}"
    );
}

#[test]
fn named_parquet_tables_and_the_shell_with_history() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("chips.parquet");
    let run = sql(
        "SELECT scene_id, chip_row FROM embeddings",
        &["--format", "parquet", "--out", &file.display().to_string()],
    );
    assert!(run.status.success(), "{}", describe(&run));

    let mut child = Command::new(terrastream_bin())
        .args(["sql", "--format", "csv", "--tables"])
        .arg(format!("chips={}", file.display()))
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    let script = "SELECT count(*) AS n\n  FROM chips;\nSELECT nope FROM chips;\n\\q\n";
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let done = child.wait_with_output().expect("shell");
    assert!(done.status.success(), "{}", describe(&done));
    let out = String::from_utf8_lossy(&done.stdout);
    let want = duckdb("SELECT count(*) FROM e")[0][0].as_u64().expect("count");
    assert!(out.contains(&format!("n\n{want}\n")), "{}", describe(&done));
    assert!(
        String::from_utf8_lossy(&done.stderr).contains("nope"),
        "{}",
        describe(&done)
    );
    let history = std::fs::read_to_string(tmp.path().join("cache/terrastream/sql_history")).expect("history file");
    assert!(history.contains("FROM chips;"), "{history}");
}
