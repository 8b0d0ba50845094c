//! One process or three shards into one output store: the same rows; re-running maps nothing
//! again; a unit whose item is broken fails alone and is retried.

use std::collections::BTreeMap;

use super::*;

#[test]
fn three_shards_write_the_rows_of_one_process() {
    let (_ref_tmp, ref_out, ref_summary) = reference_run();
    let (want, want_files) = rows(ref_out);
    assert_eq!(ref_summary["units_done"], 6, "{ref_summary:#}");
    assert!(!want.is_empty());
    assert_eq!(want_files, 6, "one file per scene");

    let tmp = tempfile::tempdir().expect("tmp");
    let items = revisits(tmp.path(), &SIX_MONTHS);
    let out = tmp.path().join("out");
    let config = run_config(tmp.path(), &items, &out, "");
    // The three shards run at the same time, as an array job's tasks would.
    let children: Vec<_> = (0..3)
        .map(|i| spawn_map(&config, &["--shard", &format!("{i}/3")]))
        .collect();
    let mut mine = 0;
    for (i, child) in children.into_iter().enumerate() {
        let o = child.wait_with_output().expect("wait shard");
        assert!(o.status.success(), "shard {i}/3: {}", describe(&o));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("shard summary");
        assert_eq!(s["shard"], format!("{i}/3"));
        assert_eq!(s["units_planned"], 6);
        assert_eq!(s["units_done"], s["units_mine"], "{s:#}");
        mine += s["units_mine"].as_u64().expect("units_mine");
    }
    assert_eq!(mine, 6, "the shards' units add up to the plan");
    let (got, files) = rows(&out);
    assert_eq!(files, want_files);
    assert_same_rows(&got, &want, "3 shards");

    // Each unit is in exactly one shard's plan, and its record names that shard.
    let mut planned: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let plan = terrastream(&[
            "map",
            "plan",
            &config.display().to_string(),
            "--shard",
            &shard,
            "--json",
        ]);
        assert!(plan.status.success(), "{}", describe(&plan));
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
        for u in plan["units"].as_array().expect("units") {
            let id = u["unit"].as_str().expect("unit").to_string();
            assert_eq!(u["shard"], shard.as_str());
            assert_eq!(u["state"], "done");
            let record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join(format!("_manifest/units/{id}.json"))).expect("record"))
                    .expect("record json");
            assert_eq!(record["shard"], shard.as_str(), "{record:#}");
            assert_eq!(record["attempt"], 1);
            assert!(
                planned.insert(id, shard.clone()).is_none(),
                "a unit in two shards' plans"
            );
        }
    }
    assert_eq!(planned.len(), 6, "{planned:?}");
}

#[test]
fn rerunning_a_finished_run_maps_nothing() {
    let (_tmp, out, _) = reference_run();
    let config = out.parent().expect("tmp").join("run.toml");
    let before: Vec<_> = files_with_mtime(out);
    let (status, summary) = map_json(&config, &[]);
    assert!(status.success(), "{summary:#}");
    assert_eq!(summary["units_skipped"], 6, "{summary:#}");
    assert_eq!(summary["units_done"], 0);
    assert_eq!(summary["chips_read"], 0);
    assert_eq!(files_with_mtime(out), before, "a finished run's files were touched");
}

fn files_with_mtime(out: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(out.join("embeddings"))
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| (e.path(), e.metadata().and_then(|m| m.modified()).expect("mtime")))
        .collect();
    v.sort();
    v
}

#[test]
fn a_broken_unit_fails_alone_and_is_retried() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut items = revisits(tmp.path(), &SIX_MONTHS[..2]);
    // March: an item whose red band is gone.
    let broken = revisits(tmp.path(), &[(3, 10, 30.0)]).remove(0);
    let mut item: serde_json::Value = serde_json::from_slice(&std::fs::read(&broken).expect("read")).expect("json");
    item["assets"].as_object_mut().expect("assets").remove("red");
    std::fs::write(&broken, serde_json::to_vec(&item).expect("ser")).expect("write");
    items.push(broken);
    let out = tmp.path().join("out");
    let config = run_config(tmp.path(), &items, &out, "");
    let (status, summary) = map_json(&config, &[]);
    assert_eq!(status.code(), Some(1), "{summary:#}");
    assert_eq!(summary["units_done"], 2, "{summary:#}");
    assert_eq!(summary["units_failed"], 1);
    let failures = summary["failures"].to_string();
    assert!(
        failures.contains("MGRS-29RKH_2020-03") && failures.contains("S2A_29RKH_20200310_0_L2A"),
        "{failures}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest/units/MGRS-29RKH_2020-03.json")).expect("record"))
            .expect("json");
    assert_eq!(record["state"], "failed");
    assert!(record["failures"].to_string().contains("B04"), "{record:#}");

    // The re-run maps only the failed unit again.
    let (status, summary) = map_json(&config, &[]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        (summary["units_skipped"].as_u64(), summary["units_failed"].as_u64()),
        (Some(2), Some(1)),
        "{summary:#}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest/units/MGRS-29RKH_2020-03.json")).expect("record"))
            .expect("json");
    assert_eq!(record["attempt"], 2);
}

#[test]
fn least_cloudy_selection_maps_one_scene_per_unit() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Three February scenes: the 2nd is the least cloudy.
    let items = revisits(tmp.path(), &[(2, 3, 20.0), (2, 13, 1.5), (2, 23, 60.0), (4, 9, 0.5)]);
    let out = tmp.path().join("out");
    let config = run_config(tmp.path(), &items, &out, "selection = \"least_cloudy\"");
    let plan = terrastream(&["map", "plan", &config.display().to_string(), "--json"]);
    assert!(plan.status.success(), "{}", describe(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let units = plan["units"].as_array().expect("units");
    assert_eq!(units.len(), 2, "{plan:#}");
    assert_eq!(units[0]["unit"], "MGRS-29RKH_2020-02");
    assert_eq!(units[0]["candidates"], 3);
    assert_eq!(units[0]["scenes"], serde_json::json!(["S2A_29RKH_20200213_0_L2A"]));
    assert_eq!(plan["totals"]["scenes"], 2);
    // The estimate comes from the item's proj:shape (the full-size tile, not the decimated
    // sample files): chips of 224 px every 448 px, the last one snapped to the edge.
    let item: serde_json::Value = serde_json::from_slice(&std::fs::read(&items[1]).expect("item")).expect("item json");
    let side = item["assets"]["blue"]["proj:shape"][0].as_u64().expect("proj:shape") as usize;
    let mut offsets: Vec<usize> = (0..=side - 224).step_by(448).collect();
    if offsets.last().is_some_and(|&o| o + 224 < side) {
        offsets.push(side - 224);
    }
    assert_eq!(units[0]["chips"], offsets.len() * offsets.len());
    assert_eq!(units[0]["state"], "pending");
}
