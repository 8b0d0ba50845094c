//! Polling a real STAC API (stac-server, memory backend, the 10 real `sentinel-2-c1-l2a` items
//! of tile 13TDE) with the watermark in a temporary output directory: every scene once across
//! restarts, late items found through the lookback window, updated items re-emitted only when
//! the config says so.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use terrastream_ingest::poll::{PollOptions, Poller, WATERMARK_KEY};
use terrastream_ingest::stac_api::{SearchParams, StacClient};
use terrastream_ingest::store::RemoteOptions;

use super::stac::{ids, load};
use crate::common::stac_api::StacApi;
use crate::common::*;

fn time(v: &serde_json::Value, key: &str) -> DateTime<Utc> {
    let s = v["properties"][key].as_str().unwrap_or_else(|| panic!("{key} of {}", v["id"]));
    DateTime::parse_from_rfc3339(s).expect("rfc3339").with_timezone(&Utc)
}

fn id(v: &serde_json::Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn open(rt: &tokio::runtime::Runtime, api: &StacApi, cid: &str, options: PollOptions, output: &Path) -> Poller {
    let client = StacClient::new(&api.url, RemoteOptions::default()).expect("client");
    // Pages of 3: the poll must gather every page.
    let params = SearchParams { collections: vec![cid.to_string()], limit: Some(3), ..Default::default() };
    rt.block_on(Poller::open(client, params, options, &output.display().to_string())).expect("open poller")
}

fn poll(rt: &tokio::runtime::Runtime, poller: &mut Poller) -> Vec<String> {
    rt.block_on(poller.poll()).expect("poll").into_iter().map(|i| i.id).collect()
}

#[test]
fn each_scene_is_emitted_once_across_restarts_and_late_items_are_found() {
    let (collection, _, mut raw) = load();
    let cid = collection.id.clone();
    raw.sort_by_key(|f| time(f, "datetime"));
    // The second latest scene is published late: after the first poll.
    let late = raw.remove(raw.len() - 2);
    let cutoff = raw.iter().map(|f| time(f, "datetime")).max().expect("items");
    assert!(time(&late, "datetime") < cutoff);
    let items: Vec<stac::Item> = raw.iter().map(|f| serde_json::from_value(f.clone()).expect("item")).collect();
    let api = StacApi::start(collection, items);
    let tmp = tempfile::tempdir().expect("tmp");
    let output = tmp.path().join("out");
    // A lookback that reaches the late scene, one hour to spare.
    let lookback = (cutoff - time(&late, "datetime") + chrono::Duration::hours(1)).to_std().expect("positive");
    let options = PollOptions { interval: Duration::from_secs(1), lookback, reprocess_updated: false };
    let rt = runtime();

    let mut poller = open(&rt, &api, &cid, options.clone(), &output);
    let first = poll(&rt, &mut poller);
    let want: BTreeSet<String> = raw.iter().map(id).collect();
    assert_eq!(first.len(), want.len(), "duplicates or missing: {first:?}");
    assert_eq!(first.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(poll(&rt, &mut poller), Vec::<String>::new(), "a second poll of the same process");
    rt.block_on(poller.commit()).expect("commit");

    // The watermark as stored: the latest acquisition, and the scenes inside the window.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output.join(WATERMARK_KEY)).expect("watermark file")).expect("json");
    let stored = DateTime::parse_from_rfc3339(state["cutoff"].as_str().expect("cutoff")).expect("time");
    assert_eq!(stored, cutoff);
    let in_window: BTreeSet<String> = raw
        .iter()
        .filter(|f| time(f, "datetime") >= cutoff - chrono::Duration::from_std(lookback).expect("d"))
        .map(|f| format!("{cid}/{}", id(f)))
        .collect();
    let seen: BTreeSet<String> = state["seen"].as_object().expect("seen").keys().cloned().collect();
    assert_eq!(seen, in_window);

    // A restart: nothing again.
    let searches = api.searches();
    let mut restarted = open(&rt, &api, &cid, options.clone(), &output);
    assert_eq!(poll(&rt, &mut restarted), Vec::<String>::new(), "emitted again after a restart");
    assert!(api.searches() > searches, "the restarted poller did search");

    // The late scene appears: emitted once.
    api.add_item(serde_json::from_value(late.clone()).expect("late item"));
    assert_eq!(poll(&rt, &mut restarted), vec![id(&late)]);
    rt.block_on(restarted.commit()).expect("commit");
    let mut again = open(&rt, &api, &cid, options, &output);
    assert_eq!(poll(&rt, &mut again), Vec::<String>::new());
}

#[test]
fn updated_scenes_are_emitted_again_only_when_configured() {
    let (collection, items, raw) = load();
    let cid = collection.id.clone();
    let tmp = tempfile::tempdir().expect("tmp");
    let output = tmp.path().join("out");
    let rt = runtime();
    let options = |reprocess_updated| PollOptions { reprocess_updated, ..PollOptions::default() };
    let api = StacApi::start(collection.clone(), items);
    let mut poller = open(&rt, &api, &cid, options(false), &output);
    assert_eq!(poll(&rt, &mut poller).len(), raw.len());
    rt.block_on(poller.commit()).expect("commit");

    // The latest scene is reprocessed by its provider: same id and datetime, later `updated`.
    let latest = raw.iter().max_by_key(|f| time(f, "datetime")).expect("items").clone();
    let mut updated = latest.clone();
    let stamp =
        (time(&latest, "updated") + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    updated["properties"]["updated"] = stamp.clone().into();
    let republished: Vec<stac::Item> = raw
        .iter()
        .map(|f| if id(f) == id(&latest) { updated.clone() } else { f.clone() })
        .map(|f| serde_json::from_value(f).expect("item"))
        .collect();
    let api = StacApi::start(collection, republished);

    let mut keep = open(&rt, &api, &cid, options(false), &output);
    assert_eq!(poll(&rt, &mut keep), Vec::<String>::new(), "reprocess_updated = false");
    let mut reprocess = open(&rt, &api, &cid, options(true), &output);
    let items = rt.block_on(reprocess.poll()).expect("poll");
    assert_eq!(items.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), vec![id(&latest)]);
    assert_eq!(items[0].properties.updated.as_deref(), Some(stamp.as_str()));
    rt.block_on(reprocess.commit()).expect("commit");
    let mut after = open(&rt, &api, &cid, options(true), &output);
    assert_eq!(poll(&rt, &mut after), Vec::<String>::new(), "the update is recorded");
}

#[test]
fn stac_poll_once_prints_new_items_and_keeps_the_watermark() {
    let (collection, items, raw) = load();
    let cid = collection.id.clone();
    let api = StacApi::start(collection, items);
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("out").display().to_string();
    let args = ["stac", "poll", &api.url, "--collections", &cid, "--limit", "4", "--state", &state, "--once"];
    let out = terrastream(&args);
    assert!(out.status.success(), "{}", describe(&out));
    let got = ids(&out.stdout);
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), raw.iter().map(id).collect::<BTreeSet<_>>());
    assert_eq!(got.len(), raw.len());
    let out = terrastream(&args);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(ids(&out.stdout).is_empty(), "second run printed items: {}", describe(&out));
    let out = terrastream(&["stac", "poll", &api.url, "--state", &state, "--once", "--lookback", "3 weeks"]);
    assert_eq!(out.status.code(), Some(2), "a bad duration is a usage error: {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 weeks"), "{}", describe(&out));
}
