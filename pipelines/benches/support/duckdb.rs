//! A long-lived DuckDB session (the venv's Python) that runs one query per request, so that
//! a bench can interleave its own runs with DuckDB's on the same files and threads.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

/// Runs one query per input line (JSON: the SQL) and answers with one line (JSON: seconds and
/// the rows, each a list of values).
const DUCKDB: &str = r#"
import json, sys, time
import duckdb
glob, threads = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{glob}')")
for line in sys.stdin:
    sql = json.loads(line)
    t = time.perf_counter()
    rows = con.execute(sql).fetchall()
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "rows": [list(r) for r in rows]}, default=str), flush=True)
"#;

/// The DuckDB process, with the files of `glob` as view `t`.
pub struct DuckDb {
    child: Child,
    out: std::io::BufReader<ChildStdout>,
}

impl DuckDb {
    /// Starts DuckDB on `threads` threads.
    pub fn start(python: &Path, glob: &str, threads: usize) -> Self {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(DUCKDB)
            .arg(glob)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the venv's python (scripts/setup.sh)");
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, out }
    }

    /// Seconds the query took inside DuckDB, and its rows.
    pub fn run(&mut self, sql: &str) -> (f64, Vec<Vec<serde_json::Value>>) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{}", serde_json::to_string(sql).expect("json")).expect("send to duckdb");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("duckdb answer");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("duckdb: {e}: {line}"));
        let rows = v["rows"].as_array().expect("rows").iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect();
        (v["seconds"].as_f64().expect("seconds"), rows)
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
