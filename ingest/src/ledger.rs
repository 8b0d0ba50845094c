//! The chip ledger: every chip read is counted as written, skipped (with the reason) or failed,
//! so a run's summary adds up and nothing is lost silently.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Thread-safe counts of a run's chips. Shared (`Arc`) between source, operators and sinks.
///
/// A ledger made with [`ChipLedger::child`] also adds everything to its parent, so a work unit
/// can keep its own counts while the run's totals stay current.
#[derive(Debug, Default)]
pub struct ChipLedger {
    parent: Option<std::sync::Arc<ChipLedger>>,
    planned: AtomicU64,
    read: AtomicU64,
    written: AtomicU64,
    failed_scenes: Mutex<Vec<String>>,
    skipped: Mutex<BTreeMap<String, u64>>,
    failed: Mutex<Vec<String>>,
}

/// A copy of the ledger's counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// Chips in the grids of the scenes opened so far.
    pub planned: u64,
    /// Chips cut from scenes.
    pub read: u64,
    /// Chips in the output.
    pub written: u64,
    /// Chips left out on purpose, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Scenes or chips that failed, each with its reason.
    pub failed: Vec<String>,
}

impl LedgerSnapshot {
    /// Total chips skipped.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

impl ChipLedger {
    /// An empty ledger whose counts are also added to `parent`.
    pub fn child(parent: std::sync::Arc<ChipLedger>) -> Self {
        Self { parent: Some(parent), ..Self::default() }
    }

    /// Counts `n` chips in the grid of a scene that was opened.
    pub fn add_planned(&self, n: u64) {
        self.planned.fetch_add(n, Ordering::Relaxed);
        if let Some(p) = &self.parent {
            p.add_planned(n);
        }
    }

    /// Records that scene `scene_id` failed for `reason`. Its partial output must be discarded.
    pub fn add_failed_scene(&self, scene_id: &str, reason: String) {
        self.failed_scenes.lock().unwrap_or_else(|p| p.into_inner()).push(scene_id.to_string());
        if let Some(p) = &self.parent {
            p.failed_scenes.lock().unwrap_or_else(|p| p.into_inner()).push(scene_id.to_string());
        }
        self.add_failed(reason);
    }

    /// True when scene `scene_id` failed.
    pub fn scene_failed(&self, scene_id: &str) -> bool {
        self.failed_scenes.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|s| s == scene_id)
    }

    /// Counts `n` chips read from a scene.
    pub fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
        if let Some(p) = &self.parent {
            p.add_read(n);
        }
    }

    /// Counts `n` chips written to the output.
    pub fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
        if let Some(p) = &self.parent {
            p.add_written(n);
        }
    }

    /// Counts `n` chips skipped for `reason`.
    pub fn add_skipped(&self, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        *self.skipped.lock().unwrap_or_else(|p| p.into_inner()).entry(reason.to_string()).or_default() += n;
        if let Some(p) = &self.parent {
            p.add_skipped(reason, n);
        }
    }

    /// Records a failure with its reason (which names the input).
    pub fn add_failed(&self, reason: String) {
        if let Some(p) = &self.parent {
            p.add_failed(reason.clone());
        }
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).push(reason);
    }

    /// The counts now.
    pub fn snapshot(&self) -> LedgerSnapshot {
        LedgerSnapshot {
            planned: self.planned.load(Ordering::Relaxed),
            read: self.read.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            skipped: self.skipped.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            failed: self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_adds_to_its_parent() {
        let run = std::sync::Arc::new(ChipLedger::default());
        let unit = ChipLedger::child(std::sync::Arc::clone(&run));
        unit.add_planned(4);
        unit.add_read(3);
        unit.add_written(2);
        unit.add_skipped("cloudy", 1);
        unit.add_failed_scene("S2A_X", "S2A_X: broken".into());
        run.add_read(10);
        let (u, r) = (unit.snapshot(), run.snapshot());
        assert_eq!((u.planned, u.read, u.written, u.skipped_total()), (4, 3, 2, 1));
        assert_eq!((r.planned, r.read, r.written, r.skipped_total()), (4, 13, 2, 1));
        assert_eq!(r.failed, vec!["S2A_X: broken".to_string()]);
        assert!(run.scene_failed("S2A_X") && unit.scene_failed("S2A_X"));
    }
}
