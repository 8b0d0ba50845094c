//! The run manifest: one JSON record per work unit under `_manifest/units/`, and one per
//! invocation under `_manifest/runs/`, in the output store.
//!
//! A unit's record says `running` before its first chip is read and `done` or `failed` after
//! its files are committed. A re-run skips units that are `done` with an unchanged fingerprint
//! and maps everything else again: `failed` ones, and `running` ones (a process that died).
//! Output file names are deterministic per unit, so mapping a unit again replaces its files;
//! files an earlier attempt wrote that the new one did not are deleted. Each record is one
//! object written with a single put (atomic on every object_store backend), and each unit
//! belongs to exactly one shard, so shards never write the same record.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::output::OutputStore;

/// Where the manifest lives under the output.
pub const MANIFEST_DIR: &str = "_manifest";

/// A unit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    /// Being mapped (or the process mapping it died).
    Running,
    /// All its scenes mapped; its files committed.
    Done,
    /// Something failed; see `failures`.
    Failed,
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        })
    }
}

/// Chip counts of a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChipCounts {
    /// Chips in the scenes' grids.
    pub planned: u64,
    /// Chips read.
    pub read: u64,
    /// Chips written.
    pub written: u64,
    /// Chips left out on purpose, by reason.
    pub skipped: BTreeMap<String, u64>,
}

/// The record of one work unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitRecord {
    /// Unit id (`<tile>_<period>`).
    pub unit: String,
    /// State.
    pub state: UnitState,
    /// What the output depends on (settings, scene ids and `updated` times).
    pub fingerprint: String,
    /// Scene ids mapped.
    pub scenes: Vec<String>,
    /// The shard (`I/N`) that mapped it.
    pub shard: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the attempt started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// Chip counts.
    pub chips: ChipCounts,
    /// Output files, relative to the output location. While `running`: the files of the
    /// previous attempt, so that a crash never loses track of them.
    pub files: Vec<String>,
    /// Why scenes or chips failed, each naming its input.
    pub failures: Vec<String>,
}

/// The manifest of one output location.
#[derive(Debug, Clone)]
pub struct Manifest {
    out: OutputStore,
}

impl Manifest {
    /// The manifest under `out`.
    pub fn new(out: OutputStore) -> Self {
        Self { out }
    }

    fn unit_key(&self, unit: &str) -> object_store::path::Path {
        self.out.key(&format!("{MANIFEST_DIR}/units/{unit}.json"))
    }

    /// Every unit record, by unit id.
    pub async fn units(&self) -> Result<BTreeMap<String, UnitRecord>> {
        let prefix = self.out.key(&format!("{MANIFEST_DIR}/units"));
        let metas: Vec<_> = self
            .out
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .with_context(|| format!("listing the manifest {prefix}"))?;
        let mut out = BTreeMap::new();
        for meta in metas {
            if meta.location.extension() != Some("json") {
                continue;
            }
            let ctx = || format!("reading the manifest record {}", meta.location);
            let bytes = self
                .out
                .store
                .get(&meta.location)
                .await
                .with_context(ctx)?
                .bytes()
                .await
                .with_context(ctx)?;
            let record: UnitRecord = serde_json::from_slice(&bytes)
                .with_context(|| format!("manifest record {} is not valid", meta.location))?;
            out.insert(record.unit.clone(), record);
        }
        Ok(out)
    }

    /// Writes `record` (replacing the unit's previous one).
    pub async fn put(&self, record: &UnitRecord) -> Result<()> {
        let key = self.unit_key(&record.unit);
        let bytes = serde_json::to_vec_pretty(record)?;
        self.out
            .store
            .put(&key, PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing the manifest record {key}"))?;
        Ok(())
    }

    /// Writes the summary of one invocation under `_manifest/runs/`.
    pub async fn put_run(&self, name: &str, summary: &serde_json::Value) -> Result<String> {
        let relative = format!("{MANIFEST_DIR}/runs/{name}.json");
        let key = self.out.key(&relative);
        let bytes = serde_json::to_vec_pretty(summary)?;
        self.out
            .store
            .put(&key, PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing the run record {key}"))?;
        Ok(relative)
    }
}

/// Files of `previous` that `current` does not list.
pub fn stale_files(previous: &[String], current: &[String]) -> Vec<String> {
    let keep: BTreeSet<&String> = current.iter().collect();
    previous.iter().filter(|f| !keep.contains(f)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::output::OutputLocation;

    #[tokio::test]
    async fn records_round_trip_through_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = OutputLocation::Local(dir.path().to_path_buf()).open().expect("open");
        let manifest = Manifest::new(out);
        assert!(manifest.units().await.expect("empty").is_empty());
        let mut record = UnitRecord {
            unit: "MGRS-29RKH_2020-02".into(),
            state: UnitState::Running,
            fingerprint: "abc".into(),
            scenes: vec!["S2A_29RKH_20200219_0_L2A".into()],
            shard: "0/1".into(),
            attempt: 1,
            started: Utc::now(),
            finished: None,
            chips: ChipCounts::default(),
            files: vec![],
            failures: vec![],
        };
        manifest.put(&record).await.expect("put");
        record.state = UnitState::Done;
        record.files = vec!["embeddings/S2A_29RKH_20200219_0_L2A.parquet".into()];
        manifest.put(&record).await.expect("replace");
        let units = manifest.units().await.expect("list");
        assert_eq!(units.len(), 1);
        assert_eq!(units["MGRS-29RKH_2020-02"], record);
        assert!(dir.path().join("_manifest/units/MGRS-29RKH_2020-02.json").is_file());
        assert_eq!(
            stale_files(&["a".into(), "b".into()], &["b".into(), "c".into()]),
            vec!["a".to_string()]
        );
    }
}
