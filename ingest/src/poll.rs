//! Polling a STAC API for new scenes, with a watermark kept in the output store.
//!
//! Each poll searches from the watermark's cut-off (the latest acquisition `datetime` seen)
//! minus a lookback window, so items that are published late (acquired before the cut-off,
//! indexed after the last poll) are still found. The ids seen inside the window, with their
//! `updated` stamps, are kept so those items are not emitted twice; an item whose `updated`
//! changed is emitted again only when [`PollOptions::reprocess_updated`] says so. Entries older
//! than the window are dropped: an item acquired before `cut-off - lookback` is never searched
//! for again, whether new or updated.
//!
//! The watermark is a small JSON object at `<output>/_state/watermark.json`, written with a
//! single `put` after the caller has handled a poll's items ([`Poller::commit`]): object_store
//! writes local files to a staging file and renames it, and S3 replaces objects whole, so a
//! reader sees the old or the new watermark, never a torn one. Scenes are therefore emitted at
//! least once: a crash between emitting and committing emits them again after the restart.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use stac::Item;

use crate::stac_api::{SearchParams, StacClient};
use crate::store::{Location, Stores};
use crate::{Error, Result};

/// Where the watermark lives under an output prefix.
pub const WATERMARK_KEY: &str = "_state/watermark.json";

/// How a [`Poller`] searches and what it emits again.
#[derive(Debug, Clone, PartialEq)]
pub struct PollOptions {
    /// Time between polls (for callers that loop; [`Poller::poll`] polls once).
    pub interval: Duration,
    /// How far before the cut-off each poll searches again, for items that appear late.
    pub lookback: Duration,
    /// Emit an item again when its `updated` property changed since it was seen.
    pub reprocess_updated: bool,
}

impl Default for PollOptions {
    /// Every 10 minutes, 3 days of lookback, updated items not reprocessed.
    fn default() -> Self {
        Self { interval: Duration::from_secs(600), lookback: Duration::from_secs(3 * 86_400), reprocess_updated: false }
    }
}

/// An item seen inside the lookback window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Acquisition time (`datetime`, else `start_datetime`).
    pub datetime: DateTime<Utc>,
    /// The item's `updated` property when it was last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

/// The persisted polling state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Format version (1).
    pub version: u32,
    /// The latest acquisition time seen; `None` before the first poll.
    pub cutoff: Option<DateTime<Utc>>,
    /// Items seen inside the lookback window, by `<collection>/<id>`.
    pub seen: BTreeMap<String, Seen>,
}

/// What to do with one search result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen before: emit.
    New,
    /// Seen with another `updated`: emit when reprocessing updated items.
    Updated,
    /// Seen as it is.
    Unchanged,
}

impl Watermark {
    /// The lower bound of the next search: cut-off minus `lookback`.
    pub fn search_from(&self, lookback: Duration) -> Option<DateTime<Utc>> {
        let lookback = chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::MAX);
        self.cutoff.map(|c| c.checked_sub_signed(lookback).unwrap_or(DateTime::<Utc>::MIN_UTC))
    }

    /// Records an item (key `<collection>/<id>`) and says whether it is new, updated or
    /// unchanged; moves the cut-off forward.
    pub fn observe(&mut self, key: &str, datetime: DateTime<Utc>, updated: Option<&str>) -> Verdict {
        self.version = 1;
        self.cutoff = Some(self.cutoff.map_or(datetime, |c| c.max(datetime)));
        let verdict = match self.seen.get(key) {
            None => Verdict::New,
            Some(s) if changed(s.updated.as_deref(), updated) => Verdict::Updated,
            Some(_) => Verdict::Unchanged,
        };
        self.seen.insert(key.to_string(), Seen { datetime, updated: updated.map(str::to_string) });
        verdict
    }

    /// Drops the entries that the next search (from cut-off minus `lookback`) cannot return.
    pub fn prune(&mut self, lookback: Duration) {
        if let Some(from) = self.search_from(lookback) {
            self.seen.retain(|_, s| s.datetime >= from);
        }
    }
}

/// Whether `updated` stamps differ: compared as instants when both parse (serialisers write
/// `.537Z` and `.537000Z`), else as text. A stamp that appears or disappears is no update.
fn changed(before: Option<&str>, now: Option<&str>) -> bool {
    match (before, now) {
        (Some(a), Some(b)) => match (DateTime::parse_from_rfc3339(a), DateTime::parse_from_rfc3339(b)) {
            (Ok(a), Ok(b)) => a != b,
            _ => a != b,
        },
        _ => false,
    }
}

/// Polls one search of one STAC API for new scenes.
#[derive(Debug)]
pub struct Poller {
    client: StacClient,
    params: SearchParams,
    options: PollOptions,
    state_href: String,
    state: Location,
    watermark: Watermark,
}

impl Poller {
    /// A poller of `params` on `client` whose watermark lives under `output` (a directory,
    /// `file://`, `s3://` or `http(s)://` prefix); reads the watermark if there is one.
    pub async fn open(client: StacClient, params: SearchParams, options: PollOptions, output: &str) -> Result<Self> {
        let state_href = format!("{}/{WATERMARK_KEY}", output.trim_end_matches('/'));
        let cwd = std::env::current_dir().unwrap_or_default();
        let state = Stores::global().open(&state_href, &cwd)?;
        let herr = |reason: String| Error::Href { href: state_href.clone(), reason };
        let watermark = match state.store.get(&state.path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| herr(e.to_string()))?;
                serde_json::from_slice(&bytes).map_err(|e| herr(format!("not a watermark: {e}")))?
            }
            Err(object_store::Error::NotFound { .. }) => Watermark::default(),
            Err(e) => return Err(herr(e.to_string())),
        };
        Ok(Self { client, params, options, state_href, state, watermark })
    }

    /// The watermark as it stands (committed or not).
    pub fn watermark(&self) -> &Watermark {
        &self.watermark
    }

    /// The options.
    pub fn options(&self) -> &PollOptions {
        &self.options
    }

    /// Where the watermark is stored.
    pub fn state_href(&self) -> &str {
        &self.state_href
    }

    /// The search the next poll sends: the configured one, its datetime interval starting no
    /// earlier than the cut-off minus the lookback.
    pub fn next_search(&self) -> Result<SearchParams> {
        let datetime = window(self.params.datetime.as_deref(), self.watermark.search_from(self.options.lookback))?;
        Ok(SearchParams { datetime, ..self.params.clone() })
    }

    /// Searches once and returns the items not emitted before (and, with `reprocess_updated`,
    /// those updated since), in the API's order. The watermark moves in memory;
    /// [`Poller::commit`] stores it.
    pub async fn poll(&mut self) -> Result<Vec<Item>> {
        let params = self.next_search()?;
        let mut results = Box::pin(self.client.search(&params, None));
        let mut out = Vec::new();
        let (mut found, mut updated) = (0usize, 0usize);
        while let Some(item) = results.next().await {
            let item = item?;
            found += 1;
            let p = &item.properties;
            let Some(datetime) = p.datetime.or(p.start_datetime) else {
                tracing::warn!(item = %item.id, "item without datetime or start_datetime, skipped");
                continue;
            };
            let key = format!("{}/{}", item.collection.as_deref().unwrap_or(""), item.id);
            match self.watermark.observe(&key, datetime, p.updated.as_deref()) {
                Verdict::New => out.push(item),
                Verdict::Updated if self.options.reprocess_updated => {
                    updated += 1;
                    out.push(item);
                }
                Verdict::Updated | Verdict::Unchanged => {}
            }
        }
        self.watermark.prune(self.options.lookback);
        tracing::info!(found, emitted = out.len(), updated, cutoff = ?self.watermark.cutoff, "poll");
        Ok(out)
    }

    /// Stores the watermark (one atomic `put`).
    pub async fn commit(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.watermark)
            .map_err(|e| Error::Href { href: self.state_href.clone(), reason: e.to_string() })?;
        self.state.store.put(&self.state.path, PutPayload::from(json)).await.map_err(|e| Error::Href {
            href: self.state_href.clone(),
            reason: format!("writing the watermark: {e}"),
        })?;
        Ok(())
    }
}

/// The datetime parameter of a poll: the configured instant or interval, its start raised to
/// `from`.
fn window(configured: Option<&str>, from: Option<DateTime<Utc>>) -> Result<Option<String>> {
    let Some(from) = from else {
        return Ok(configured.map(str::to_string));
    };
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let Some(configured) = configured else {
        return Ok(Some(format!("{}/..", fmt(from))));
    };
    let Some((start, end)) = configured.split_once('/') else {
        // A single instant: nothing to narrow.
        return Ok(Some(configured.to_string()));
    };
    let start = match start {
        "" | ".." => from,
        s => DateTime::parse_from_rfc3339(s)
            .map_err(|e| Error::Option { key: "datetime".into(), reason: format!("{s:?}: {e}") })?
            .with_timezone(&Utc)
            .max(from),
    };
    Ok(Some(format!("{}/{end}", fmt(start))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn observe_tells_new_updated_and_unchanged_apart() {
        let mut w = Watermark::default();
        assert_eq!(w.observe("c/a", t("2024-04-10T00:00:00Z"), Some("2024-04-11T00:00:00.5Z")), Verdict::New);
        assert_eq!(
            w.observe("c/a", t("2024-04-10T00:00:00Z"), Some("2024-04-11T00:00:00.500000Z")),
            Verdict::Unchanged
        );
        assert_eq!(w.observe("c/a", t("2024-04-10T00:00:00Z"), Some("2024-04-12T00:00:00Z")), Verdict::Updated);
        assert_eq!(w.observe("c/a", t("2024-04-10T00:00:00Z"), None), Verdict::Unchanged);
        assert_eq!(w.observe("c/b", t("2024-04-01T00:00:00Z"), None), Verdict::New);
        assert_eq!(w.cutoff, Some(t("2024-04-10T00:00:00Z")));
        w.prune(Duration::from_secs(5 * 86_400));
        assert_eq!(w.seen.keys().collect::<Vec<_>>(), ["c/a"], "b is older than cut-off minus lookback");
    }

    #[test]
    fn the_window_starts_at_the_cutoff_minus_lookback() {
        let from = Some(t("2024-04-10T00:00:00Z"));
        assert_eq!(window(None, None).expect("w"), None);
        assert_eq!(window(None, from).expect("w").as_deref(), Some("2024-04-10T00:00:00.000000Z/.."));
        assert_eq!(
            window(Some("../2024-05-01T00:00:00Z"), from).expect("w").as_deref(),
            Some("2024-04-10T00:00:00.000000Z/2024-05-01T00:00:00Z")
        );
        assert_eq!(
            window(Some("2024-04-20T00:00:00Z/.."), from).expect("w").as_deref(),
            Some("2024-04-20T00:00:00.000000Z/..")
        );
        assert!(window(Some("yesterday/.."), from).expect_err("bad").to_string().contains("datetime"));
    }

    #[test]
    fn the_watermark_round_trips_through_json() {
        let mut w = Watermark::default();
        w.observe("c/a", t("2024-04-10T01:02:03.456789Z"), Some("2024-04-11T00:00:00Z"));
        let back: Watermark = serde_json::from_slice(&serde_json::to_vec(&w).expect("json")).expect("parse");
        assert_eq!(back, w);
    }
}
