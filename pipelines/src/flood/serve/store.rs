//! Event state: one JSON record per event under `<out>/_events/<id>.json`, each written to a
//! temporary file, synced and renamed over the old one, so a crash leaves the old record or the
//! new one, never a torn file. The records are also held in memory; the files are read once, at
//! start.
//!
//! An event's id is derived from its AOI and time (a hash of the AOI's canonical JSON and the
//! instant), so the same event posted twice, or found twice by a watcher, or posted again after
//! a restart, has one id and one record.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::flood::event::EventRequest;

/// Where records live under the output directory.
pub const EVENTS_DIR: &str = "_events";

/// An event's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a mapping slot.
    Queued,
    /// Being mapped.
    Running,
    /// Mapped; outputs listed.
    Done,
    /// Mapping failed; `error` says why.
    Failed,
}

impl Status {
    /// All states, for metrics.
    pub const ALL: [Status; 4] = [Status::Queued, Status::Running, Status::Done, Status::Failed];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }
}

/// One event's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    /// Id (16 hex digits, from the AOI and time).
    pub id: String,
    /// What was asked.
    pub request: EventRequest,
    /// Who asked: `api`, or `watch:<name>` for a scene found by a watcher.
    pub source: String,
    /// State.
    pub status: Status,
    /// Why mapping failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the event was accepted.
    pub created: DateTime<Utc>,
    /// When its latest mapping attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    /// When it finished (done or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    /// Mapping attempts started (a restart during a run makes more than one).
    #[serde(default)]
    pub attempts: u32,
    /// Output files, relative to the event's output directory (`/outputs/<id>/<file>`).
    #[serde(default)]
    pub files: Vec<String>,
    /// Flooded area, km².
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flooded_km2: Option<f64>,
    /// The mapping summary (scenes, methods, timings by stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
}

/// What [`EventStore::submit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new event, queued.
    New,
    /// A failed event submitted again: queued for another attempt.
    Retried,
    /// Already known (queued, running or done): nothing changed.
    Existing,
}

/// The event records of one output directory.
#[derive(Debug)]
pub struct EventStore {
    dir: PathBuf,
    records: Mutex<BTreeMap<String, EventRecord>>,
}

impl EventStore {
    /// Opens `<out>/_events` (created) and reads its records; a record that cannot be read is an
    /// error naming the file.
    pub fn open(out: &Path) -> anyhow::Result<Self> {
        let dir = out.join(EVENTS_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') {
                // A temporary file of a write the process did not finish.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let rec: EventRecord =
                serde_json::from_slice(&bytes).with_context(|| format!("{}: not an event record", path.display()))?;
            records.insert(rec.id.clone(), rec);
        }
        Ok(Self {
            dir,
            records: Mutex::new(records),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, EventRecord>> {
        // A panic while holding the lock leaves consistent records (each change is one insert).
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `req` (queued) unless the same event is known; returns its id and what happened.
    /// The record is on disk before this returns.
    pub fn submit(&self, req: &EventRequest, source: &str) -> anyhow::Result<(String, Submitted)> {
        let id = event_id(req);
        let mut records = self.lock();
        let (rec, what) = match records.get(&id) {
            Some(r) if r.status != Status::Failed => return Ok((id, Submitted::Existing)),
            Some(r) => {
                let mut r = r.clone();
                r.status = Status::Queued;
                r.error = None;
                r.finished = None;
                (r, Submitted::Retried)
            }
            None => (
                EventRecord {
                    id: id.clone(),
                    request: req.clone(),
                    source: source.to_string(),
                    status: Status::Queued,
                    error: None,
                    created: Utc::now(),
                    started: None,
                    finished: None,
                    attempts: 0,
                    files: Vec::new(),
                    flooded_km2: None,
                    summary: None,
                },
                Submitted::New,
            ),
        };
        self.write(&rec)?;
        records.insert(id.clone(), rec);
        Ok((id, what))
    }

    /// Changes one record with `f` and writes it; `None` for an unknown id.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut EventRecord)) -> anyhow::Result<Option<EventRecord>> {
        let mut records = self.lock();
        let Some(old) = records.get(id) else {
            return Ok(None);
        };
        let mut rec = old.clone();
        f(&mut rec);
        self.write(&rec)?;
        records.insert(id.to_string(), rec.clone());
        Ok(Some(rec))
    }

    /// One record.
    pub fn get(&self, id: &str) -> Option<EventRecord> {
        self.lock().get(id).cloned()
    }

    /// Every record, newest first.
    pub fn list(&self) -> Vec<EventRecord> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        all
    }

    /// Events by state.
    pub fn counts(&self) -> BTreeMap<Status, usize> {
        let mut n = BTreeMap::new();
        for r in self.lock().values() {
            *n.entry(r.status).or_default() += 1;
        }
        n
    }

    /// The events to (re)start: queued or running (a previous process stopped during them),
    /// oldest first. Running ones are set back to queued.
    pub fn requeue_unfinished(&self) -> anyhow::Result<Vec<String>> {
        let unfinished: Vec<EventRecord> = {
            let records = self.lock();
            let mut v: Vec<_> = records
                .values()
                .filter(|r| matches!(r.status, Status::Queued | Status::Running))
                .cloned()
                .collect();
            v.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
            v
        };
        for r in unfinished.iter().filter(|r| r.status == Status::Running) {
            self.update(&r.id, |r| r.status = Status::Queued)?;
        }
        Ok(unfinished.into_iter().map(|r| r.id).collect())
    }

    /// Writes a record atomically: temporary file, fsync, rename.
    fn write(&self, rec: &EventRecord) -> anyhow::Result<()> {
        let path = self.dir.join(format!("{}.json", rec.id));
        let tmp = self.dir.join(format!(".{}.json.tmp", rec.id));
        let json = serde_json::to_vec_pretty(rec).context("encoding an event record")?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

/// The id of an event: 16 hex digits of SHA-256 over the AOI's canonical JSON (keys sorted,
/// numbers as f64) and the event time (RFC 3339, nanoseconds, UTC). The name is not part of it.
pub fn event_id(req: &EventRequest) -> String {
    let mut canon = String::new();
    canonical(&req.aoi, &mut canon);
    let mut h = Sha256::new();
    h.update(canon.as_bytes());
    h.update(b"\n");
    h.update(req.event_time.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` has the form of an event id (so it can name a file).
pub fn is_event_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        // 1 and 1.0 are the same coordinate.
        Value::Number(n) => out.push_str(&format!("{:?}", n.as_f64().unwrap_or(f64::NAN))),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(aoi: &str, t: &str) -> EventRequest {
        EventRequest {
            name: None,
            aoi: serde_json::from_str(aoi).expect("aoi"),
            event_time: DateTime::parse_from_rfc3339(t).expect("t").with_timezone(&Utc),
        }
    }

    const SQ: &str = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}"#;

    #[test]
    fn the_id_ignores_key_order_number_form_offsets_and_the_name() {
        let a = req(SQ, "2024-05-01T12:00:00Z");
        let b = req(
            r#"{"coordinates":[[[0.0,0.0],[1.0,0],[1,1.0],[0,0]]],"type":"Polygon"}"#,
            "2024-05-01T14:00:00+02:00",
        );
        let mut named = a.clone();
        named.name = Some("x".into());
        assert_eq!(event_id(&a), event_id(&b));
        assert_eq!(event_id(&a), event_id(&named));
        assert!(is_event_id(&event_id(&a)), "{}", event_id(&a));
        assert_ne!(event_id(&a), event_id(&req(SQ, "2024-05-01T12:00:01Z")));
        assert_ne!(
            event_id(&a),
            event_id(&req(&SQ.replace("[1,1]", "[1,2]"), "2024-05-01T12:00:00Z"))
        );
    }

    #[test]
    fn records_survive_reopening_and_unfinished_ones_are_requeued() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = EventStore::open(tmp.path()).expect("open");
        let (a, what) = s.submit(&req(SQ, "2024-05-01T12:00:00Z"), "api").expect("a");
        assert_eq!(what, Submitted::New);
        assert_eq!(
            s.submit(&req(SQ, "2024-05-01T12:00:00Z"), "api").expect("again"),
            (a.clone(), Submitted::Existing)
        );
        let (b, _) = s.submit(&req(SQ, "2024-05-02T12:00:00Z"), "watch:x").expect("b");
        let (c, _) = s.submit(&req(SQ, "2024-05-03T12:00:00Z"), "api").expect("c");
        s.update(&a, |r| r.status = Status::Running).expect("run");
        s.update(&c, |r| r.status = Status::Done).expect("done");
        drop(s);
        std::fs::write(tmp.path().join(EVENTS_DIR).join(".x.json.tmp"), b"{torn").expect("torn");

        let s = EventStore::open(tmp.path()).expect("reopen");
        assert_eq!(s.list().len(), 3);
        let mut again = s.requeue_unfinished().expect("requeue");
        again.sort();
        let mut want = vec![a.clone(), b];
        want.sort();
        assert_eq!(again, want);
        assert_eq!(s.get(&a).expect("a").status, Status::Queued);
        assert_eq!(s.get(&c).expect("c").status, Status::Done);
        assert!(!tmp.path().join(EVENTS_DIR).join(".x.json.tmp").exists());
    }

    #[test]
    fn a_failed_event_submitted_again_is_retried() {
        let tmp = tempfile::tempdir().expect("tmp");
        let s = EventStore::open(tmp.path()).expect("open");
        let (a, _) = s.submit(&req(SQ, "2024-05-01T12:00:00Z"), "api").expect("a");
        s.update(&a, |r| {
            r.status = Status::Failed;
            r.error = Some("boom".into());
        })
        .expect("fail");
        assert_eq!(
            s.submit(&req(SQ, "2024-05-01T12:00:00Z"), "api").expect("retry").1,
            Submitted::Retried
        );
        let r = s.get(&a).expect("a");
        assert_eq!((r.status, r.error), (Status::Queued, None));
    }
}
