//! Building and running the sinks' example programs, and the STAC schema check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

/// The Earth Search prefix of the sample scene's asset hrefs.
pub const ASSET_PREFIX: &str =
    "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A/";
/// The sample scene's item id.
pub const SCENE_ID: &str = "S2A_29RKH_20200219_0_L2A";

/// `<target>/<profile>/examples/<name>` of terrastream-sinks (see [`built_workspace`]).
pub fn sinks_example(name: &str) -> PathBuf {
    let bin = built_workspace().join("examples").join(name);
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Runs the `write_masks` example on the sample scene.
pub fn write_masks(out: &Path, kind: &str, chip: usize, stride: usize, compression: &str) -> Output {
    let scene = s2_scene_dir().canonicalize().expect("scene dir");
    Command::new(sinks_example("write_masks"))
        .arg(scene.join(format!("{SCENE_ID}.json")))
        .arg(ASSET_PREFIX)
        .arg(&scene)
        .arg(out)
        .args([kind, &chip.to_string(), &stride.to_string(), compression])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run write_masks")
}

/// The STAC and GeoJSON JSON schemas for offline validation, each file carrying its canonical
/// `$id`: `../shared/stac-schemas` when it exists; otherwise the STAC 1.0.0 core and GeoJSON
/// schemas that pystac 1.10 bundles (installed into the venv by `scripts/setup.sh`) together
/// with the extension schemas bundled in `tests/data/stac-extensions` (projection, raster, file,
/// table: the versions our items declare).
pub fn stac_schemas() -> Vec<PathBuf> {
    let shared = repo_root().join("../shared/stac-schemas");
    if shared.is_dir() {
        return vec![shared];
    }
    let site = python_json(
        &venv_python(),
        "import json, sysconfig; print(json.dumps(sysconfig.get_paths()['purelib']))",
        &[],
    );
    vec![
        PathBuf::from(site.as_str().expect("site-packages path")).join("pystac/validation/jsonschemas"),
        repo_root().join("tests/data/stac-extensions"),
    ]
}

/// Validates every STAC file given (items against the core item schema and each schema in
/// their `stac_extensions`, collections against the collection schema) with `jsonschema`,
/// offline: every `$ref` resolves inside the bundles (`os.pathsep`-separated folders). Also checks each item asset's
/// `file:size` and `file:checksum` against the file, and runs negative controls: one broken
/// copy of each item per schema in the bundle must fail. Extension schemas missing from the
/// bundles are listed in `skipped` (which the Rust side refuses); the core item and collection
/// schemas must be there. Prints
/// `{path: [errors]}`, `controls` and `skipped`.
pub const VALIDATE_STAC: &str = r##"
import copy, hashlib, json, os, pathlib, sys
from jsonschema import Draft7Validator
from referencing import Registry, Resource
resources = []
for bundle in sys.argv[1].split(os.pathsep):
    for p in pathlib.Path(bundle).rglob("*.json"):
        s = json.loads(p.read_text())
        resources.append((s["$id"].rstrip("#"), Resource.from_contents(s)))
registry = Registry().with_resources(resources)
known = {uri for uri, _ in resources}
ITEM = "https://schemas.stacspec.org/v1.0.0/item-spec/json-schema/item.json"
COLLECTION = "https://schemas.stacspec.org/v1.0.0/collection-spec/json-schema/collection.json"
TABLE = "https://stac-extensions.github.io/table/v1.2.0/schema.json"
skipped = set()
def errors(doc, uri):
    if uri not in known and uri != ITEM and uri != COLLECTION:
        # Reported, and refused by the caller: every declared extension must be checked.
        skipped.add(uri)
        return []
    if uri not in known:
        return [f"schema {uri} is not in the bundle"]
    v = Draft7Validator(registry.contents(uri), registry=registry)
    return [f"{uri}: /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
def schemas(doc):
    core = ITEM if doc.get("type") == "Feature" else COLLECTION
    return [core] + list(doc.get("stac_extensions", []))
out, controls = {}, {}
for path in sys.argv[2:]:
    doc = json.loads(pathlib.Path(path).read_text())
    errs = [e for uri in schemas(doc) for e in errors(doc, uri)]
    for key, asset in doc.get("assets", {}).items():
        f = pathlib.Path(path).parent / asset["href"]
        data = f.read_bytes()
        if asset.get("file:size") != len(data):
            errs.append(f"asset {key}: file:size {asset.get('file:size')} != {len(data)}")
        if asset.get("file:checksum") != "1220" + hashlib.sha256(data).hexdigest():
            errs.append(f"asset {key}: file:checksum mismatch")
    out[path] = errs
    if doc.get("type") == "Feature":
        broken = {}
        b = copy.deepcopy(doc); del b["properties"]["datetime"]; broken[ITEM] = b
        b = copy.deepcopy(doc); b["properties"]["proj:shape"] = [1]; broken["https://stac-extensions.github.io/projection/v1.1.0/schema.json"] = b
        b = copy.deepcopy(doc); b["assets"]["data"]["file:size"] = "big"; broken["https://stac-extensions.github.io/file/v2.1.0/schema.json"] = b
        if "table:row_count" in doc["properties"] and TABLE in known:
            b = copy.deepcopy(doc); b["properties"]["table:row_count"] = "many"; broken[TABLE] = b
        if "raster:bands" in doc["assets"]["data"]:
            b = copy.deepcopy(doc); b["assets"]["data"]["raster:bands"][0]["data_type"] = "u8"; broken["https://stac-extensions.github.io/raster/v1.1.0/schema.json"] = b
        controls[path] = {uri: len(errors(b, uri)) for uri, b in broken.items() if uri in known}
print(json.dumps({"errors": out, "controls": controls, "skipped": sorted(skipped)}))
"##;

/// Runs [`VALIDATE_STAC`] on `files` and asserts that they validate and that every negative
/// control fails.
pub fn assert_stac_valid(files: &[PathBuf]) {
    let schemas = stac_schemas();
    assert!(
        schemas.iter().all(|d| d.is_dir()),
        "the STAC JSON schemas are missing at {schemas:?} (scripts/setup.sh installs the core ones)"
    );
    let bundle = std::env::join_paths(&schemas).expect("schema dirs").to_string_lossy().into_owned();
    let mut args = vec![bundle];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = python_json(&venv_python(), VALIDATE_STAC, &args);
    for (path, errors) in report["errors"].as_object().expect("errors") {
        assert_eq!(errors.as_array().map(Vec::len), Some(0), "{path}: {errors:#}");
    }
    for (path, controls) in report["controls"].as_object().expect("controls") {
        let controls = controls.as_object().expect("per schema");
        assert!(
            controls.keys().any(|k| k.ends_with("item-spec/json-schema/item.json")),
            "{path}: no negative control against the core item schema: {controls:?}"
        );
        for (schema, n) in controls {
            assert!(n.as_u64().unwrap_or(0) > 0, "{path}: a broken copy still passes {schema}");
        }
    }
    assert_eq!(report["errors"].as_object().map(|o| o.len()), Some(files.len()));
    // Every extension an item declares is validated: a schema missing from the bundle fails.
    let skipped = report["skipped"].as_array().cloned().unwrap_or_default();
    assert!(skipped.is_empty(), "not validated, schemas not in {schemas:?}: {skipped:?}");
}
