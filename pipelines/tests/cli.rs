//! The `terrastream` binary's own checks. (Having an integration test also makes
//! `cargo test --workspace` build the binary, which the end-to-end tests in `tests/` run.)

use std::process::Command;

fn terrastream(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_terrastream")).args(args).output().expect("run terrastream")
}

#[test]
fn version_and_help() {
    let out = terrastream(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("terrastream "));
    let out = terrastream(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["map", "cog", "model", "stac"] {
        assert!(help.contains(command), "--help lacks {command}: {help}");
    }
}

#[test]
fn missing_config_names_the_file() {
    let out = terrastream(&["map", "/nonexistent/run.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error:") && stderr.contains("/nonexistent/run.toml"), "{stderr}");
}
