//! `flood.toml`, the service's config. Unknown keys are errors that name the key; relative paths
//! are relative to the config file's directory.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! out = "flood-out"            # event records (_events/), watermarks (_watch/), maps (maps/)
//! tokens = ["s3cret"]          # and/or token_file (one per line) and token_env (comma-separated)
//! concurrency = 1              # events mapped at once
//!
//! [limits]
//! max_body_bytes = 65536
//! max_area_km2 = 10000         # replaces [mapping] max_area_km2
//!
//! [assets]
//! allowed_hosts = ["sentinel-cogs.s3.us-west-2.amazonaws.com", "*.blob.core.windows.net"]
//!
//! [webhooks]
//! urls = ["https://example.org/hook"]
//! secret = "hmac key"          # or secret_env = "VAR"
//!
//! [mapping]                    # flood::event::EventConfig
//! stac = "https://earth-search.aws.element84.com/v1"
//!
//! [[watch]]
//! name = "ebro"
//! aoi = { type = "Polygon", coordinates = [[[-1.0, 41.0], [-0.5, 41.0], [-0.5, 41.5], [-1.0, 41.0]]] }
//! interval_s = 600
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::flood::event::EventConfig;
use crate::time_span::{MAX_DAYS, MAX_SECONDS};

/// The whole service config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0: any free port, logged and written to
    /// `<out>/_state/listen`).
    pub listen: SocketAddr,
    /// Output directory: event records, watermarks and the maps served under `/outputs/`.
    pub out: PathBuf,
    /// Bearer tokens accepted on every endpoint but `/healthz`.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// A file of further tokens, one per line (blank lines and `#` comments ignored).
    pub token_file: Option<PathBuf>,
    /// An environment variable holding further tokens, comma-separated.
    pub token_env: Option<String>,
    /// Events mapped at once (the rest wait, first in first out).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Where asset data may be read from.
    #[serde(default)]
    pub assets: Assets,
    /// Notifications when a map is ready or failed.
    #[serde(default)]
    pub webhooks: Webhooks,
    /// How events are mapped (`flood run`'s settings).
    pub mapping: EventConfig,
    /// AOIs polled for new Sentinel-1 scenes, each of which triggers an event.
    #[serde(default)]
    pub watch: Vec<Watch>,
}

fn default_concurrency() -> usize {
    1
}

/// Request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, bytes (larger: 413).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest AOI, km² (larger: 413); replaces `[mapping] max_area_km2` when given.
    pub max_area_km2: Option<f64>,
}

fn default_max_body() -> usize {
    64 * 1024
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            max_area_km2: None,
        }
    }
}

/// Hosts asset hrefs may point at. The STAC API's host is always allowed; hrefs produced by a
/// configured `[[mapping.rewrite]]` are trusted as the operator's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assets {
    /// Host names (`host` or `host:port`), or `*.domain` for any subdomain.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// Webhook notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhooks {
    /// URLs POSTed a JSON notification when an event's map is ready or failed.
    #[serde(default)]
    pub urls: Vec<String>,
    /// HMAC-SHA256 key of the `X-Terrastream-Signature` header.
    pub secret: Option<String>,
    /// An environment variable holding the key instead.
    pub secret_env: Option<String>,
    /// Deliveries tried per URL before giving up.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First retry delay, milliseconds; it doubles after each failure.
    #[serde(default = "default_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Time limit of one delivery, seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
}

fn default_attempts() -> u32 {
    6
}

fn default_backoff_ms() -> u64 {
    500
}

fn default_timeout_s() -> f64 {
    10.0
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            secret_env: None,
            max_attempts: default_attempts(),
            initial_backoff_ms: default_backoff_ms(),
            timeout_s: default_timeout_s(),
        }
    }
}

/// One watched AOI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// Name (letters, digits, `-`, `_`): names its events and its watermark directory.
    pub name: String,
    /// GeoJSON geometry (Polygon/MultiPolygon, WGS 84) as a TOML table.
    pub aoi: serde_json::Value,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval_s: f64,
    /// How far back each poll searches again for scenes published late, days.
    #[serde(default = "default_lookback")]
    pub lookback_days: f64,
    /// Scenes acquired before this are ignored (default: the service's start minus the lookback).
    pub since: Option<DateTime<Utc>>,
}

fn default_interval() -> f64 {
    600.0
}

fn default_lookback() -> f64 {
    3.0
}

impl ServeConfig {
    /// Reads and checks `path`; relative paths become relative to its directory.
    pub fn from_path(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut cfg = Self::parse(&text).with_context(|| format!("config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.out = base.join(&cfg.out);
        cfg.token_file = cfg.token_file.map(|f| base.join(f));
        Ok(cfg)
    }

    /// Parses and checks a config's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut cfg: Self = toml::from_str(text)?;
        if let Some(km2) = cfg.limits.max_area_km2 {
            if !(km2 > 0.0 && km2.is_finite()) {
                bail!("limits.max_area_km2: must be a positive number, got {km2}");
            }
            cfg.mapping.max_area_km2 = km2;
        }
        if cfg.concurrency == 0 {
            bail!("concurrency: must be at least 1");
        }
        if cfg.limits.max_body_bytes == 0 {
            bail!("limits.max_body_bytes: must be at least 1");
        }
        if reqwest::Url::parse(&cfg.mapping.stac).is_err() {
            bail!("mapping.stac: not a URL: {:?}", cfg.mapping.stac);
        }
        for url in &cfg.webhooks.urls {
            reqwest::Url::parse(url).with_context(|| format!("webhooks.urls: not a URL: {url:?}"))?;
        }
        if !cfg.webhooks.urls.is_empty() && cfg.webhooks.secret.is_none() && cfg.webhooks.secret_env.is_none() {
            bail!("webhooks.secret: webhooks need an HMAC secret (secret or secret_env)");
        }
        if cfg.webhooks.max_attempts == 0 {
            bail!("webhooks.max_attempts: must be at least 1");
        }
        if !(cfg.webhooks.timeout_s > 0.0 && cfg.webhooks.timeout_s <= MAX_SECONDS) {
            bail!("webhooks.timeout_s: must be a positive number of seconds, at most {MAX_SECONDS}");
        }
        crate::flood::event::check_config(&cfg.mapping).context("mapping")?;
        for (i, w) in cfg.watch.iter().enumerate() {
            let ok = !w.name.is_empty()
                && w.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                bail!(
                    "watch[{i}].name: use letters, digits, '-' and '_' only, got {:?}",
                    w.name
                );
            }
            if cfg.watch[..i].iter().any(|o| o.name == w.name) {
                bail!("watch[{i}].name: {:?} is used twice", w.name);
            }
            // Bounded so that the durations made from them cannot overflow (found by fuzzing).
            if !(w.interval_s > 0.0 && w.interval_s <= MAX_SECONDS) {
                bail!("watch[{i}].interval_s: must be a positive number of seconds, at most {MAX_SECONDS}");
            }
            if !(w.lookback_days >= 0.0 && w.lookback_days <= MAX_DAYS) {
                bail!("watch[{i}].lookback_days: must be zero or more days, at most {MAX_DAYS}");
            }
        }
        Ok(cfg)
    }

    /// Every accepted bearer token: `tokens`, `token_file`'s lines and `token_env`'s entries.
    /// No token at all is an error: the service does not run open.
    pub fn load_tokens(&self) -> anyhow::Result<Vec<String>> {
        let mut all = self.tokens.clone();
        if let Some(f) = &self.token_file {
            let text = std::fs::read_to_string(f).with_context(|| format!("token_file {}", f.display()))?;
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        if let Some(var) = &self.token_env {
            let v = std::env::var(var).with_context(|| format!("token_env: ${var} is not set"))?;
            all.extend(v.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from));
        }
        all.retain(|t| !t.trim().is_empty());
        if all.is_empty() {
            bail!("tokens: no bearer token configured (tokens, token_file or token_env)");
        }
        Ok(all)
    }

    /// The webhook HMAC key (`secret`, else `$secret_env`); `None` without webhooks.
    pub fn webhook_secret(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if self.webhooks.urls.is_empty() {
            return Ok(None);
        }
        if let Some(s) = &self.webhooks.secret {
            return Ok(Some(s.clone().into_bytes()));
        }
        let var = self
            .webhooks
            .secret_env
            .as_deref()
            .context("webhooks.secret: missing")?;
        let v = std::env::var(var).with_context(|| format!("webhooks.secret_env: ${var} is not set"))?;
        Ok(Some(v.into_bytes()))
    }

    /// The hosts asset hrefs may point at: the STAC API's and the configured ones.
    pub fn allowed_hosts(&self) -> Vec<String> {
        let mut hosts = self.assets.allowed_hosts.clone();
        if let Some(h) = reqwest::Url::parse(&self.mapping.stac)
            .ok()
            .as_ref()
            .and_then(super::hosts::authority)
        {
            hosts.push(h);
        }
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
listen = "127.0.0.1:0"
out = "o"
tokens = ["t"]
[mapping]
stac = "http://127.0.0.1:9/api"
"#;

    #[test]
    fn a_minimal_config_parses_with_defaults() {
        let c = ServeConfig::parse(MIN).expect("parse");
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.limits.max_body_bytes, 65536);
        assert_eq!(c.load_tokens().expect("tokens"), ["t"]);
        assert_eq!(c.allowed_hosts(), ["127.0.0.1:9"]);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = ServeConfig::parse(&format!("{MIN}\nbogus_key = 1\n")).expect_err("unknown");
        assert!(format!("{e:#}").contains("bogus_key"), "{e:#}");
        let e =
            ServeConfig::parse(&MIN.replace("tokens", "[limits]\nmax_bodee = 3\n[x]\ntokens")).expect_err("unknown");
        assert!(format!("{e:#}").contains("max_bodee"), "{e:#}");
    }

    #[test]
    fn limits_replace_the_mapping_area_and_are_checked() {
        let c = ServeConfig::parse(&format!("{MIN}\n[limits]\nmax_area_km2 = 5.0\n")).expect("parse");
        assert_eq!(c.mapping.max_area_km2, 5.0);
        let e = ServeConfig::parse(&format!("{MIN}\n[limits]\nmax_area_km2 = -1.0\n")).expect_err("negative");
        assert!(e.to_string().contains("limits.max_area_km2"), "{e}");
        let e = ServeConfig::parse(&format!("{MIN}\n[webhooks]\nurls = [\"http://x/\"]\n")).expect_err("no secret");
        assert!(e.to_string().contains("webhooks.secret"), "{e}");
        // Values whose durations would overflow (the fuzzer's kind) are refused when read.
        let e = ServeConfig::parse(&format!("{MIN}\n[webhooks]\ntimeout_s = 1e300\n")).expect_err("huge");
        assert!(e.to_string().contains("webhooks.timeout_s"), "{e}");
        let e = ServeConfig::parse(&MIN.replace("[mapping]", "[mapping]\nafter_days = 1e300")).expect_err("huge");
        assert!(format!("{e:#}").contains("after_days"), "{e:#}");
        let e = ServeConfig::parse(&MIN.replace("[mapping]", "[mapping]\nresolution_m = 0.000001")).expect_err("fine");
        assert!(format!("{e:#}").contains("resolution_m"), "{e:#}");
        let watch = "[[watch]]\nname = \"w\"\naoi = {}\n";
        let e = ServeConfig::parse(&format!("{MIN}\n{watch}interval_s = 1e30\n")).expect_err("huge");
        assert!(e.to_string().contains("watch[0].interval_s"), "{e}");
        let e = ServeConfig::parse(&format!("{MIN}\n{watch}lookback_days = 1e30\n")).expect_err("huge");
        assert!(e.to_string().contains("watch[0].lookback_days"), "{e}");
    }

    #[test]
    fn no_token_is_an_error() {
        let c = ServeConfig::parse(&MIN.replace("tokens = [\"t\"]", "")).expect("parse");
        assert!(c.load_tokens().expect_err("open").to_string().contains("tokens"));
    }

    #[test]
    fn watched_aois_are_tables() {
        let c = ServeConfig::parse(&format!(
            "{MIN}\n[[watch]]\nname = \"ebro\"\naoi = {{ type = \"Polygon\", coordinates = [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]] }}\ninterval_s = 2\n"
        ))
        .expect("parse");
        assert_eq!(c.watch[0].aoi["type"], "Polygon");
        assert_eq!(c.watch[0].interval_s, 2.0);
        let e = ServeConfig::parse(&format!("{MIN}\n[[watch]]\nname = \"a b\"\naoi = {{}}\n")).expect_err("name");
        assert!(e.to_string().contains("watch[0].name"), "{e}");
    }
}
