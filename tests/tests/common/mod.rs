//! Shared helpers: paths, the built binary, Python readers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `../shared/data`.
pub fn shared_data() -> PathBuf {
    repo_root().join("../shared/data")
}

/// The sample Sentinel-2 scene directory.
pub fn s2_scene_dir() -> PathBuf {
    shared_data().join("rio-tiler-pds/S2A_29RKH_20200219_0_L2A")
}

/// The sample scene's STAC item file.
pub fn s2_item_path() -> PathBuf {
    s2_scene_dir().join("S2A_29RKH_20200219_0_L2A.json")
}

/// A copy of the sample scene's files (as symlinks) in `dir`, without `skip`.
pub fn mirror_scene_assets(dir: &Path, skip: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for entry in std::fs::read_dir(s2_scene_dir()).expect("ls scene") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name.to_string_lossy() != skip {
            std::os::unix::fs::symlink(entry.path(), dir.join(&name)).expect("symlink");
        }
    }
}

/// Builds the workspace's binaries and examples once per test process, exactly as the
/// enclosing `cargo test --workspace` does (same profile, same feature resolution, so nothing
/// is compiled twice and nothing run here is stale), and returns `<target>/<profile>`.
pub fn built_workspace() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test binary lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("test exe");
        let dir = exe.parent().and_then(Path::parent).expect("target profile dir").to_path_buf();
        // For iterating on one test with binaries built by hand (`cargo build -p terrastream`).
        if std::env::var_os("TERRASTREAM_TESTS_NO_BUILD").is_some() {
            return dir;
        }
        let mut args = vec!["test", "--workspace", "--no-run", "--quiet"];
        if dir.file_name().is_some_and(|n| n == "release") {
            args.push("--release");
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut inner = Command::new(cargo);
        inner.args(&args).current_dir(repo_root());
        // Cargo gives this test process variables of its own (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`,
        // `OUT_DIR`, and `.cargo/config.toml`'s [env] LIBTORCH). Passed on to the inner cargo they
        // look like user settings: a build script that tracks one of them (ring's tracks
        // CARGO_MANIFEST_DIR, torch-sys's tracks LIBTORCH) is then out of date, and everything above
        // it, DataFusion and tch included, is compiled a second time, and again by the next outer
        // build. Only the user's own cargo settings go through.
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if set_by_cargo_for_tests(key, Path::new(&value)) {
                inner.env_remove(key);
            }
        }
        let status = inner.status().expect("run cargo test --no-run");
        assert!(status.success(), "cargo {} failed", args.join(" "));
        dir
    })
}

/// Whether `key` is one of the variables cargo sets for a test process (or its config's [env]),
/// as opposed to a setting of the user's (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_PROFILE_*`, ...).
fn set_by_cargo_for_tests(key: &str, value: &Path) -> bool {
    const USER: &[&str] = &[
        "CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_INCREMENTAL", "CARGO_BUILD_", "CARGO_PROFILE_", "CARGO_NET_",
        "CARGO_HTTP_", "CARGO_REGISTRIES_", "CARGO_REGISTRY_", "CARGO_TERM_", "CARGO_LOG", "CARGO_CACHE_",
    ];
    match key {
        "OUT_DIR" => true,
        // A LIBTORCH the user exported is theirs (the config's value does not override it).
        "LIBTORCH" => value == repo_root().join(".venv/libtorch"),
        k if k.starts_with("CARGO_") => !USER.iter().any(|u| k == *u || (u.ends_with('_') && k.starts_with(u))),
        _ => false,
    }
}

/// The `terrastream` binary (see [`built_workspace`]).
pub fn terrastream_bin() -> PathBuf {
    let bin = built_workspace().join("terrastream");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Writes `config` to `dir/run.toml` and runs `terrastream map` on it, which must succeed.
pub fn run_map(dir: &Path, config: &str) {
    let path = dir.join("run.toml");
    std::fs::write(&path, config).expect("write run.toml");
    let run = terrastream(&["map", &path.display().to_string(), "--json"]);
    assert!(run.status.success(), "map failed: {}", describe(&run));
}

/// Runs `terrastream args...` from the workspace root.
pub fn terrastream(args: &[&str]) -> Output {
    Command::new(terrastream_bin())
        .args(args)
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run terrastream")
}

/// The venv's Python (DuckDB is installed there by scripts/setup.sh).
pub fn venv_python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// Debian's Python, which has GDAL's bindings (`python3-gdal`).
pub fn gdal_python() -> PathBuf {
    PathBuf::from("/usr/bin/python3")
}

/// Runs a Python script with `args` and parses its stdout as JSON.
pub fn python_json(python: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python).arg("-c").arg(script).args(args).output().expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("python output is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Both streams of a finished process, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes a run config for `item` (a path) whose assets are read from `assets_dir`, with the
/// demo's settings, and returns its path.
pub fn write_config(dir: &Path, item: &Path, assets_dir: &Path, out: &Path) -> PathBuf {
    write_config_href(dir, item, &assets_dir.display().to_string(), out)
}

/// As [`write_config`], with the assets under `assets` (a directory or URL prefix).
pub fn write_config_href(dir: &Path, item: &Path, assets: &str, out: &Path) -> PathBuf {
    let cfg = format!(
        r#"[source]
items = ["{item}"]
[[source.rewrite]]
prefix = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A/"
replace = "{assets}/"
[model]
variant = "tiny"
seed = 1
device = "cpu"
[output]
dir = "{out}"
"#,
        item = item.display(),
        out = out.display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, cfg).expect("write config");
    path
}

pub mod faults;
pub mod http;
pub mod stac_api;

/// GDAL's COG validator with `--full-check=yes`.
pub fn validate_cog(file: &Path) -> (bool, String) {
    let out = Command::new(gdal_python())
        .arg("/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py")
        .arg("--full-check=yes")
        .arg(file)
        .output()
        .expect("run the COG validator");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `gdalinfo -json FILE`.
pub fn gdalinfo(file: &Path) -> serde_json::Value {
    let out = Command::new("gdalinfo").arg("-json").arg(file).output().expect("run gdalinfo");
    assert!(out.status.success(), "gdalinfo {}: {}", file.display(), describe(&out));
    serde_json::from_slice(&out.stdout).expect("gdalinfo json")
}
