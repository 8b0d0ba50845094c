//! Logging and progress.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use terrastream_ingest::ChipLedger;
use tracing_subscriber::EnvFilter;

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global `tracing` subscriber: level from `RUST_LOG` (default `info`), to stderr.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A chip progress bar fed from the ledger (hidden when stderr is not a terminal).
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts a bar that shows chips done (written + skipped) out of chips planned.
    pub fn start(ledger: Arc<ChipLedger>) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} chips ({per_sec}, eta {eta}) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                let s = ledger.snapshot();
                b.set_length(s.planned.max(s.read));
                b.set_position(s.written + s.skipped_total());
                if !s.failed.is_empty() {
                    b.set_message(format!("{} failed", s.failed.len()));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { bar, task }
    }

    /// Stops and clears the bar.
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// Progress of a mapping run: a bar of work units and a bar of chips (hidden when `quiet` or
/// when stderr is not a terminal).
pub struct RunProgress {
    bars: indicatif::MultiProgress,
    units: ProgressBar,
    chips: ProgressBar,
    done: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RunProgress {
    /// Starts the bars for `units` work units, chips fed from `ledger`.
    pub fn start(ledger: Arc<ChipLedger>, units: u64, quiet: bool) -> Self {
        let target = if quiet { indicatif::ProgressDrawTarget::hidden() } else { indicatif::ProgressDrawTarget::stderr() };
        let bars = indicatif::MultiProgress::with_draw_target(target);
        let style = |t: &str| ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar());
        let u = bars.add(ProgressBar::new(units));
        u.set_style(style("units [{elapsed_precise}] {bar:40} {pos}/{len} (eta {eta}) {msg}"));
        let chips = bars.add(ProgressBar::new(0));
        chips.set_style(style("chips [{elapsed_precise}] {bar:40} {pos}/{len} ({per_sec}) {msg}"));
        let c = chips.clone();
        let task = tokio::spawn(async move {
            loop {
                let s = ledger.snapshot();
                c.set_length(s.planned.max(s.read));
                c.set_position(s.written + s.skipped_total());
                if !s.failed.is_empty() {
                    c.set_message(format!("{} failed", s.failed.len()));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { bars, units: u, chips, done: Arc::default(), task }
    }

    /// The count of finished units (shared with [`Metrics`]).
    pub fn units_done(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.done)
    }

    /// Counts a finished unit.
    pub fn unit_finished(&self, outcome: &crate::map::UnitOutcome) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.units.inc(1);
        if outcome.state == "failed" {
            self.units.set_message(format!("last failed: {}", outcome.unit));
        }
    }

    /// Stops and clears the bars.
    pub fn finish(self) {
        self.task.abort();
        self.units.finish_and_clear();
        self.chips.finish_and_clear();
        let _ = self.bars.clear();
    }
}

/// Run metrics logged every 10 s through `tracing`: chips/s, units done, chips between source
/// and sink (the queues' depth), and the model's busy fraction.
pub struct Metrics {
    task: tokio::task::JoinHandle<()>,
}

impl Metrics {
    /// Starts logging.
    pub fn start(
        ledger: Arc<ChipLedger>,
        model_busy: Box<dyn Fn() -> Duration + Send>,
        units_done: Arc<std::sync::atomic::AtomicU64>,
        units_total: u64,
    ) -> Self {
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let busy0 = model_busy();
            let mut last = (std::time::Instant::now(), 0u64, busy0);
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let s = ledger.snapshot();
                let now = std::time::Instant::now();
                let (t0, w0, b0) = last;
                let dt = now.duration_since(t0).as_secs_f64().max(1e-9);
                let busy = model_busy();
                tracing::info!(
                    elapsed_s = started.elapsed().as_secs(),
                    units_done = units_done.load(std::sync::atomic::Ordering::Relaxed),
                    units_total,
                    chips_written = s.written,
                    chips_per_s = format!("{:.2}", (s.written - w0) as f64 / dt),
                    in_flight_chips = s.read.saturating_sub(s.written + s.skipped_total()),
                    device_busy = format!("{:.2}", (busy - b0).as_secs_f64() / dt),
                    "metrics"
                );
                last = (now, s.written, busy);
            }
        });
        Self { task }
    }

    /// Stops logging.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Peak resident set size of this process in bytes (`VmHWM`; Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
