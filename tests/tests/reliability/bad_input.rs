//! Bad input at every entry point a user feeds: run configs, STAC items, GeoTIFFs, SQL and the
//! flood service's config (AOIs, request bodies, checkpoints and damaged files have their own
//! tests). Each case must end in a clean failure (exit 1, no panic) whose message names what is
//! wrong: the config key, the item file, the asset, the function. A few inputs are not errors
//! (an item without `proj:*` fields: the CRS is read from the COG) and must map every chip.
//! The test prints the table of cases.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

use crate::map::ITEM_ID as ITEM;

/// What a case must end in.
enum Expect {
    /// Exit 1, no panic, and stderr containing every needle.
    Error(Vec<String>),
    /// Success with every chip of the scene written.
    AllChips,
}

struct Case {
    entry: &'static str,
    case: &'static str,
    args: Vec<String>,
    expect: Expect,
}

fn needles(n: &[&str]) -> Expect {
    Expect::Error(n.iter().map(|s| s.to_string()).collect())
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The demo config in `dir/name.toml` with `edit` applied to its text.
fn config(
    dir: &Path,
    name: &str,
    item: &Path,
    assets: &Path,
    edit: impl Fn(String) -> String,
) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("mkdir");
    let path = write_config(&sub, item, assets, &sub.join("out"));
    let text = edit(std::fs::read_to_string(&path).expect("read config"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn map_args(cfg: &Path) -> Vec<String> {
    vec!["map".into(), path_str(cfg), "--json".into()]
}

/// The sample item with `edit` applied, written to `dir/name.json`.
fn item(dir: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s2_item_path()).expect("item")).expect("json");
    edit(&mut v);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec(&v).expect("json")).expect("write item");
    path
}

/// A copy of the scene's assets (symlinks) in `dir/name/` whose red band (`B04.tif`) is what
/// `make` writes to the path it is given.
fn assets_with_red(dir: &Path, name: &str, make: impl Fn(&Path)) -> PathBuf {
    let assets = dir.join(name);
    mirror_scene_assets(&assets, "B04.tif");
    make(&assets.join("B04.tif"));
    assets
}

/// `gdal_translate` of the real red band with `options`.
fn gdal_translate(options: &'static [&'static str]) -> impl Fn(&Path) {
    move |to: &Path| {
        let out = Command::new("gdal_translate")
            .arg("-q")
            .args(options)
            .arg(s2_scene_dir().join("B04.tif"))
            .arg(to)
            .output()
            .expect("gdal_translate (Debian gdal-bin, installed by scripts/setup.sh)");
        assert!(
            out.status.success(),
            "gdal_translate {options:?}: {}",
            describe(&out)
        );
    }
}

fn map_cases(tmp: &Path) -> Vec<Case> {
    let scene = s2_scene_dir();
    let plain = s2_item_path();
    let cfg = |name: &str, edit: fn(String) -> String| config(tmp, name, &plain, &scene, edit);
    let mut cases = vec![];
    let mut add = |entry, case, args, expect| {
        cases.push(Case {
            entry,
            case,
            args,
            expect,
        })
    };

    let c = cfg("syntax", |t| t.replacen("[source]", "[source", 1));
    add(
        "run config",
        "TOML syntax error",
        map_args(&c),
        needles(&[&path_str(&c), "line 1, column 8"]),
    );
    let c = cfg("unknown-key", |t| {
        t.replacen("seed = 1", "seed = 1\nsead = 2", 1)
    });
    add(
        "run config",
        "misspelt key",
        map_args(&c),
        needles(&["unknown field `sead`", "expected one of"]),
    );
    let c = cfg("wrong-type", |t| {
        t.replacen("seed = 1", "seed = \"one\"", 1)
    });
    add(
        "run config",
        "wrong value type",
        map_args(&c),
        needles(&["seed = \"one\"", "expected u64"]),
    );
    let c = cfg("no-source", |t| {
        t.split("[model]")
            .nth(1)
            .map(|m| format!("[model]{m}"))
            .unwrap_or_default()
    });
    add(
        "run config",
        "missing [source]",
        map_args(&c),
        needles(&["missing field `source`"]),
    );
    let c = cfg("chip-size", |t| format!("{t}[grid]\nchip_size = 100\n"));
    add(
        "run config",
        "chip size not a multiple of 16",
        map_args(&c),
        needles(&["grid.chip_size", "multiple of 16", "100"]),
    );
    let c = cfg("variant", |t| t.replacen("\"tiny\"", "\"huge\"", 1));
    add(
        "run config",
        "unknown model variant",
        map_args(&c),
        needles(&["\"huge\"", "tiny, small, base or large"]),
    );
    let c = cfg("network", |t| {
        format!("{t}[source.network]\ntimeout_s = -1\n")
    });
    add(
        "run config",
        "negative network timeout",
        map_args(&c),
        needles(&["timeout_s"]),
    );
    let missing = tmp.join("no-such-config.toml");
    add(
        "run config",
        "file missing",
        map_args(&missing),
        needles(&[&path_str(&missing), "No such file"]),
    );

    let bad = |name: &str, edit: fn(&mut serde_json::Value)| item(tmp, name, edit);
    let cut = tmp.join("cut.json");
    std::fs::write(&cut, &std::fs::read(&plain).expect("item")[..700]).expect("write");
    let c = config(tmp, "item-cut", &cut, &scene, |t| t);
    add(
        "STAC item",
        "JSON cut short",
        map_args(&c),
        needles(&[&path_str(&cut), "not a STAC item", "EOF"]),
    );
    let i = bad("collection", |v| v["type"] = "Collection".into());
    let c = config(tmp, "item-collection", &i, &scene, |t| t);
    add(
        "STAC item",
        "a Collection, not an item",
        map_args(&c),
        needles(&[&path_str(&i), "expected Feature"]),
    );
    let i = bad("no-id", |v| {
        v.as_object_mut().map(|o| o.remove("id"));
    });
    let c = config(tmp, "item-no-id", &i, &scene, |t| t);
    add(
        "STAC item",
        "no id",
        map_args(&c),
        needles(&[&path_str(&i), "the item has no \"id\""]),
    );
    let i = bad("renamed-assets", |v| {
        if let Some(assets) = v["assets"].as_object_mut() {
            let renamed: serde_json::Map<String, serde_json::Value> = std::mem::take(assets)
                .into_iter()
                .map(|(k, mut a)| {
                    a.as_object_mut().map(|o| o.remove("eo:bands"));
                    (format!("band_{k}"), a)
                })
                .collect();
            *assets = renamed;
        }
    });
    let c = config(tmp, "item-renamed", &i, &scene, |t| t);
    add(
        "STAC item",
        "band asset keys unknown",
        map_args(&c),
        needles(&[ITEM, "no asset for band B01"]),
    );
    let i = bad("no-proj", |v| {
        let strip = |o: &mut serde_json::Map<String, serde_json::Value>| {
            o.retain(|k, _| !k.starts_with("proj:"))
        };
        v["properties"].as_object_mut().map(strip);
        if let Some(assets) = v["assets"].as_object_mut() {
            assets
                .values_mut()
                .filter_map(|a| a.as_object_mut())
                .for_each(strip);
        }
    });
    let c = config(tmp, "item-no-proj", &i, &scene, |t| t);
    add(
        "STAC item",
        "no proj:* fields (CRS from the COG)",
        map_args(&c),
        Expect::AllChips,
    );
    let i = bad("wrong-epsg", |v| v["properties"]["proj:epsg"] = 4326.into());
    let c = config(tmp, "item-wrong-epsg", &i, &scene, |t| t);
    add(
        "STAC item",
        "proj:epsg contradicts the COG",
        map_args(&c),
        Expect::AllChips,
    );

    let red = |name: &str, make: &dyn Fn(&Path)| {
        let assets = assets_with_red(tmp, name, make);
        config(tmp, &format!("tiff-{name}"), &plain, &assets, |t| t)
    };
    let tiff = |what: &str| {
        vec![
            ITEM.to_string(),
            "asset red".into(),
            "B04.tif".into(),
            what.to_string(),
        ]
    };
    add(
        "GeoTIFF",
        "strip layout",
        map_args(&red(
            "strip",
            &gdal_translate(&["-co", "TILED=NO", "-co", "COMPRESS=DEFLATE"]),
        )),
        Expect::Error(tiff("strip-organised")),
    );
    add(
        "GeoTIFF",
        "unsupported compression (LZMA)",
        map_args(&red(
            "lzma",
            &gdal_translate(&["-co", "TILED=YES", "-co", "COMPRESS=LZMA"]),
        )),
        Expect::Error(tiff("compression LZMA")),
    );
    add(
        "GeoTIFF",
        "complex samples (CInt16)",
        map_args(&red(
            "complex",
            &gdal_translate(&["-ot", "CInt16", "-co", "TILED=YES"]),
        )),
        Expect::Error(tiff("complex integer")),
    );
    add(
        "GeoTIFF",
        "zero-byte file",
        map_args(&red("empty", &|p: &Path| {
            std::fs::write(p, b"").expect("write")
        })),
        Expect::Error(tiff("0 bytes")),
    );
    add(
        "GeoTIFF",
        "garbage bytes",
        map_args(&red("garbage", &|p: &Path| {
            let bytes: Vec<u8> = (0..65536u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            std::fs::write(p, bytes).expect("write")
        })),
        Expect::Error(tiff("not a TIFF")),
    );
    add(
        "GeoTIFF",
        "a PNG named .tif",
        map_args(&red(
            "png",
            &gdal_translate(&["-of", "PNG", "-outsize", "5%", "5%"]),
        )),
        Expect::Error(tiff("not a TIFF")),
    );
    let fuzzed = repo_root().join("ingest/tests/data/fuzz/oversized-tag-count.tif");
    add(
        "GeoTIFF",
        "tag claiming 2^32 values (found by fuzzing)",
        map_args(&red("oversized-tag", &|p: &Path| {
            std::fs::copy(&fuzzed, p).expect("copy");
        })),
        Expect::Error(tiff("values (at most 16777216)")),
    );
    cases
}

fn sql_cases(tmp: &Path) -> Vec<Case> {
    let tables = path_str(crate::sql::out());
    let sql = |q: &str| {
        vec![
            "sql".to_string(),
            q.to_string(),
            "--tables".into(),
            tables.clone(),
        ]
    };
    let csv = tmp.join("chips.csv");
    std::fs::write(&csv, "scene_id,chip_row\nx,1\n").expect("write csv");
    let chip = format!("{}/0/0", crate::map::ITEM_ID);
    vec![
        Case {
            entry: "SQL",
            case: "syntax error",
            args: sql("SELEC 1"),
            expect: needles(&["SELEC", "embeddings("]),
        },
        Case {
            entry: "SQL",
            case: "vector function, one argument",
            args: sql("SELECT cosine_similarity(embedding) FROM embeddings"),
            expect: needles(&["cosine_similarity(vector, vector [, scale]): got 1 arguments"]),
        },
        Case {
            entry: "SQL",
            case: "vectors of different lengths",
            args: sql("SELECT cosine_similarity(embedding, [1.0, 2.0]) FROM embeddings"),
            expect: needles(&["cosine_similarity: vectors of", "and 2 values"]),
        },
        Case {
            entry: "SQL",
            case: "text where a vector goes",
            args: sql("SELECT l2_distance(scene_id, embedding) FROM embeddings"),
            expect: needles(&["l2_distance: expected a numeric vector", "Utf8"]),
        },
        Case {
            entry: "SQL",
            case: "nearest with k = -1",
            args: sql(&format!("SELECT * FROM nearest(embeddings, '{chip}', -1)")),
            expect: needles(&["nearest: k must be a positive integer, got -1"]),
        },
        Case {
            entry: "SQL",
            case: "nearest to a chip that is not there",
            args: sql("SELECT * FROM nearest(embeddings, 'no-scene/9/9', 3)"),
            expect: needles(&["nearest: no chip no-scene/9/9"]),
        },
        Case {
            entry: "SQL",
            case: "a CSV file as a table",
            args: vec![
                "sql".into(),
                "SELECT * FROM t".into(),
                "--tables".into(),
                format!("t={}", csv.display()),
            ],
            expect: needles(&[&path_str(&csv), "Parquet"]),
        },
    ]
}

fn serve_cases(tmp: &Path) -> Vec<Case> {
    let cfg = |name: &str, text: &str| {
        let p = tmp.join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!("listen = \"127.0.0.1:0\"\nout = \"out\"\ntokens = [\"t\"]\n{text}"),
        )
        .expect("write");
        vec!["flood".to_string(), "serve".into(), path_str(&p)]
    };
    let stac = "[mapping]\nstac = \"http://127.0.0.1:9/\"\n";
    vec![
        Case {
            entry: "flood service config",
            case: "misspelt key",
            args: cfg("serve-key", &format!("concurency = 2\n{stac}")),
            expect: needles(&["unknown field `concurency`", "concurrency"]),
        },
        Case {
            entry: "flood service config",
            case: "negative area limit",
            args: cfg(
                "serve-area",
                &format!("[limits]\nmax_area_km2 = -5\n{stac}"),
            ),
            expect: needles(&["limits.max_area_km2", "-5"]),
        },
        Case {
            entry: "flood service config",
            case: "listen address malformed",
            args: vec!["flood".into(), "serve".into(), {
                let p = tmp.join("serve-listen.toml");
                std::fs::write(
                    &p,
                    format!("listen = \"here\"\nout = \"out\"\ntokens = [\"t\"]\n{stac}"),
                )
                .expect("write");
                path_str(&p)
            }],
            expect: needles(&["invalid socket address"]),
        },
    ]
}

#[test]
fn bad_input_at_every_entry_point_is_a_clean_named_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cases = map_cases(tmp.path());
    cases.extend(sql_cases(tmp.path()));
    cases.extend(serve_cases(tmp.path()));
    let mut table = vec![
        format!("| entry point | case | exit | first error line |"),
        "|---|---|---|---|".to_string(),
    ];
    let mut failures = vec![];
    for c in &cases {
        let out = terrastream(&c.args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("")
            .to_string();
        let problem = match &c.expect {
            _ if stderr.contains("panicked") => Some("panicked".to_string()),
            Expect::Error(_) if out.status.code() != Some(1) => {
                Some(format!("exit {:?}, expected 1", out.status.code()))
            }
            Expect::Error(n) => {
                let missing: Vec<&String> =
                    n.iter().filter(|n| !stderr.contains(n.as_str())).collect();
                (!missing.is_empty()).then(|| format!("stderr does not name {missing:?}"))
            }
            Expect::AllChips => {
                let summary: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
                let written = summary["chips_written"].as_u64();
                (!out.status.success() || written != Some(25)).then(|| {
                    format!(
                        "expected all 25 chips, exit {:?}, written {written:?}",
                        out.status.code()
                    )
                })
            }
        };
        // The start says where, the end says what: long lines keep both.
        let chars: Vec<char> = first.chars().collect();
        let shown: String = match chars.len() {
            0 => "(mapped every chip)".into(),
            n if n > 150 => format!(
                "{} … {}",
                chars[..60].iter().collect::<String>(),
                chars[n - 85..].iter().collect::<String>()
            ),
            _ => first.clone(),
        };
        table.push(format!(
            "| {} | {} | {} | {} |",
            c.entry,
            c.case,
            out.status.code().unwrap_or(-1),
            shown.replace('|', "\\|")
        ));
        if let Some(p) = problem {
            failures.push(format!("{} / {}: {p}\n{}", c.entry, c.case, describe(&out)));
        }
    }
    println!("bad input, {} cases:\n{}", cases.len(), table.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
